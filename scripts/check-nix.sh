#!/usr/bin/env bash
# Static checks of the Nix side that run without nixpkgs, a store cache or network
# (docs/nix.md "What is verified where"). Needs only nix-instantiate (Debian: nix-bin).
# It installs nothing.
#   1. every tracked or untracked (not ignored) *.nix file parses;
#   2. nix/tests/eval-*.nix evaluate (they throw on a wrong value); eval-lock.nix checks that
#      flake.lock pins exactly the revisions documented in docs/nix.md;
#   3. docker/compose.yaml uses the image tag nix/images.nix builds (the Cargo.toml version).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nix-instantiate >/dev/null 2>&1; then
  echo "check-nix: nix-instantiate not found (install nix-bin)" >&2
  exit 1
fi

fail=0
count=0
while IFS= read -r -d '' f; do
  count=$((count + 1))
  if ! nix-instantiate --parse "$f" >/dev/null; then
    echo "check-nix: parse error in $f" >&2
    fail=1
  fi
done < <(git ls-files -z --cached --others --exclude-standard -- '*.nix')
echo "check-nix: parsed $count .nix files"

for t in nix/tests/eval-*.nix; do
  [ -e "$t" ] || continue
  if out=$(nix-instantiate --eval --strict "$t" 2>&1); then
    n=$(printf '%s' "$out" | grep -o '" "' | wc -l)
    echo "check-nix: $t: $((n + 1)) checks passed"
  else
    echo "check-nix: $t failed:" >&2
    printf '%s\n' "$out" >&2
    fail=1
  fi
done

if [ -e docker/compose.yaml ]; then
  version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)
  bad=$(grep -E '^\s+image:' docker/compose.yaml | grep -v ":${version}\$" || true)
  if [ -n "$bad" ]; then
    echo "check-nix: docker/compose.yaml images must be tagged ${version} (Cargo.toml):" >&2
    printf '%s\n' "$bad" >&2
    fail=1
  elif grep -q 'latest' docker/compose.yaml; then
    echo "check-nix: docker/compose.yaml mentions 'latest'" >&2
    fail=1
  else
    echo "check-nix: docker/compose.yaml images are tagged ${version}"
  fi
fi

exit "$fail"
