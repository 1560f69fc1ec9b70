#!/usr/bin/env bash
# Static checks of the Nix side that run without nixpkgs, a store cache or network
# (docs/nix.md "What is verified where"). Needs nix-instantiate (Debian: nix-bin), jq and
# shellcheck.
# It installs nothing.
#   1. every tracked or untracked (not ignored) *.nix file parses;
#   2. nix/tests/eval-*.nix evaluate (they throw on a wrong value); eval-lock.nix checks that
#      flake.lock pins exactly the revisions documented in docs/nix.md;
#   3. docker/compose.yaml uses the image tag nix/images.nix builds (the Cargo.toml version);
#   4. the flake guards (nix/tests/flake-guards.nix, run as eval-flake.nix in step 2) reject
#      known-bad files: the pre-fix nix/ticdc.nix from git history, and each fixed file with its
#      fix undone (mutations of the current files, so this tracks later edits);
#   5. a missing TiCDC pin fails with the command that makes it, and that command's script
#      (nix/ticdc-source.nix pinScript), run with a fake `nix`, writes pins the flake accepts;
#   6. every app's writeShellApplication script passes `bash -n` and shellcheck, as its
#      build-time checkPhase requires (with a negative test);
#   7. every repository file the tests open is in nix/package.nix's crane source
#      (nix/tests/crane-src.nix), or checks.nextest would not find it in the sandbox.
# docs/nix.md "Defects and guards" maps each defect to the step that catches it.
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

# Every repository file the tests, benches and examples open must be in the crane source of
# nix/package.nix: checks.nextest runs in the Nix sandbox, where anything else is missing.
# Read paths: repository-relative string literals (joined onto CARGO_MANIFEST_DIR) and
# include_str!/include_bytes! targets; *.rs and *.toml are in crane's commonCargoSources.
crane_src_missing() {
  local entries=$1 p e ok
  while IFS= read -r p; do
    [ -n "$p" ] || continue
    case $p in *.rs | *.toml | Cargo.lock) continue ;; esac
    ok=0
    while IFS= read -r e; do
      if [ "$p" = "$e" ] || [ "${p#"$e"/}" != "$p" ]; then ok=1; fi
    done <<<"$entries"
    [ "$ok" = 1 ] || echo "$p"
  done < <(
    grep -rhoE '"(tests|monitoring|sql|docker|docs|nix|modules|scripts|benches|examples)/[^" ]*"' \
      --include='*.rs' src tests benches examples 2>/dev/null | tr -d '"'
    grep -roE 'include_(str|bytes)!\("[^"]+"' --include='*.rs' src tests benches examples 2>/dev/null |
      while IFS= read -r hit; do
        f=${hit%%:*}
        inc=${hit#*\"}
        realpath -m --relative-to=. "$(dirname "$f")/${inc%\"}"
      done
  ) | sort -u
}
if ! crane_entries=$(nix-instantiate --eval --strict --json nix/tests/crane-src.nix 2>"$PWD/.crane-src.err" | jq -r '.[]'); then
  echo "check-nix: cannot evaluate nix/tests/crane-src.nix:" >&2
  cat .crane-src.err >&2
  fail=1
else
  missing=$(crane_src_missing "$crane_entries")
  if [ -n "$missing" ]; then
    echo "check-nix: files the tests read are not in nix/package.nix's crane source (checks.nextest would not find them):" >&2
    printf '  %s\n' $missing >&2
    fail=1
  else
    echo "check-nix: every file the tests read is in the crane source of nix/package.nix ($(printf '%s\n' "$crane_entries" | wc -l) fileset entries)"
  fi
  # Negative test: without monitoring/ in the source, the monitoring tests' files are missing.
  if [ -z "$(crane_src_missing "$(grep -vx monitoring <<<"$crane_entries")")" ]; then
    echo "check-nix: negative test 'crane source without monitoring/': NOT detected" >&2
    fail=1
  else
    echo "check-nix: negative test 'crane source without monitoring/': detected"
  fi
fi
rm -f .crane-src.err

tmp=$(mktemp -d)
mutants=()
cleanup() {
  rm -rf "$tmp"
  for m in "${mutants[@]}"; do rm -f "$m"; done
}
trap cleanup EXIT

# expect_rejected LABEL WANT SUBSTITUTE: flake-guards.nix with SUBSTITUTE (a Nix attrset of
# repository path -> replacement file) must fail, and its error must contain WANT.
expect_rejected() {
  local label=$1 want=$2 substitute=$3 out
  if out=$(nix-instantiate --eval --strict \
    -E "import ./nix/tests/flake-guards.nix { substitute = ${substitute}; }" 2>&1); then
    echo "check-nix: negative test '${label}': the guards ACCEPTED a known-bad file" >&2
    fail=1
  elif ! grep -qF -- "$want" <<<"$out"; then
    echo "check-nix: negative test '${label}': failed, but not with '${want}':" >&2
    printf '%s\n' "$out" >&2
    fail=1
  else
    echo "check-nix: negative test '${label}': rejected"
  fi
}

# mutant FILE LABEL SED-SCRIPT: sets m to a copy of FILE, next to it (relative imports keep
# working), with SED-SCRIPT applied. Fails if the edit changed nothing (the fix was rewritten:
# update the mutation here). Not run in a subshell, so cleanup sees every copy.
mutant() {
  local file=$1 label=$2 script=$3
  m="$PWD/$(dirname "$file")/.guard-mutant-${label}.nix"
  mutants+=("$m")
  sed -e "$script" "$file" >"$m"
  if cmp -s "$file" "$m"; then
    echo "check-nix: mutation '${label}' did not change ${file}; update scripts/check-nix.sh" >&2
    fail=1
  fi
}

# Defect 2 (callPackage formals). The file as it was before the fix, when history has it.
if git cat-file -e 4b3fbb4:nix/ticdc.nix 2>/dev/null; then
  git show 4b3fbb4:nix/ticdc.nix >"$tmp/ticdc-4b3fbb4.nix"
  expect_rejected "pre-fix nix/ticdc.nix (src ? null, version ? \"8.1.1\")" '"src","version"' \
    "{ \"nix/ticdc.nix\" = $tmp/ticdc-4b3fbb4.nix; }"
else
  echo "check-nix: commit 4b3fbb4 not in this clone; the mutation tests below cover nix/ticdc.nix"
fi
mutant nix/ticdc.nix ticdc-src 's/^  lib,$/  lib,\n  src ? null,/'
expect_rejected "nix/ticdc.nix with an optional src formal" '"names":["src"]' "{ \"nix/ticdc.nix\" = $m; }"
mutant nix/images.nix images-es \
  's/^  elasticsearchPackage,$/  elasticsearch ? pkgs.elasticsearch8,\n  elasticsearchPackage ? elasticsearch,/'
expect_rejected "nix/images.nix with elasticsearch ? pkgs.elasticsearch8" '"names":["elasticsearch"]' \
  "{ \"nix/images.nix\" = $m; }"
# Defect 4 (nixosConfigurations evaluated by `nix flake check`).
mutant nix/vm.nix vm-rootfs '/^  fileSystems."\/" = lib.mkDefault {$/,/^  };$/d'
expect_rejected "nix/vm.nix without fileSystems./" 'nix/vm.nix: fileSystems."/" outside vmVariant' \
  "{ \"nix/vm.nix\" = $m; }"
mutant nix/vm.nix vm-grub '/^  boot.loader.grub.enable = /d'
expect_rejected "nix/vm.nix with grub left enabled" 'boot.loader.grub.enable = mkDefault false' \
  "{ \"nix/vm.nix\" = $m; }"
# Defect 6 (TiDB advertise address).
mutant modules/tidb.nix tidb-advertise '/"-advertise-address=/d'
expect_rejected "modules/tidb.nix without -advertise-address" 'tidb-server gets -advertise-address' \
  "{ \"modules/tidb.nix\" = $m; }"
# Re-audit (issue 9, reviewer): nixosModules wrappers without a fixed key are imported once per
# reference, so default + ticdc defined services.ticdc.package twice (types.package: unique).
mutant flake.nix flake-key '/^            key = "cdcmon-flake#package-defaults-ticdc";$/d'
expect_rejected "flake.nix with an unkeyed package-defaults module" 'defined more than once: ["services.ticdc.changefeedTool","services.ticdc.package"]' \
  "{ \"flake.nix\" = $m; }"
# Re-audit: `nix flake check` rejects an app with attributes other than type/program/meta.
mutant flake.nix flake-app-attr 's/^            meta.description = "Prefetch/            name = "pin-ticdc";\n&/'
expect_rejected "flake.nix with an extra attribute on an app" 'apps.x86_64-linux.pin-ticdc' \
  "{ \"flake.nix\" = $m; }"
# Defect 7 (smoke step timeout).
mutant tests/nixos/smoke.nix smoke-timeout 's/, timeout=\${p smokeStepTimeout}//'
expect_rejected "tests/nixos/smoke.nix with the driver's default timeout" 'smoke step timeout' \
  "{ \"tests/nixos/smoke.nix\" = $m; }"

# Defect 3 (TiCDC pin): the missing-pin message names the command, and the command works.
mkdir -p "$tmp/pin/nix" "$tmp/bin"
cp nix/ticdc-source.nix "$tmp/pin/nix/"
printf '{"version":"%s","hashes":{"x86_64-linux":null,"aarch64-linux":null}}\n' \
  "$(nix-instantiate --eval -E '(import ./nix/ticdc-source.nix).version' 2>/dev/null | tr -d '"')" \
  >"$tmp/pin/nix/ticdc-pins.json"
if out=$(nix-instantiate --eval --strict -E "(import $tmp/pin/nix/ticdc-source.nix).hash \"x86_64-linux\"" 2>&1); then
  echo "check-nix: an unpinned TiCDC hash evaluated: $out" >&2
  fail=1
elif ! grep -qF 'nix run .#pin-ticdc' <<<"$out"; then
  echo "check-nix: the missing-pin error does not name 'nix run .#pin-ticdc':" >&2
  printf '%s\n' "$out" >&2
  fail=1
else
  echo "check-nix: a missing TiCDC pin fails evaluation naming 'nix run .#pin-ticdc'"
fi
# A fake `nix` answering `store prefetch-file --json URL` the way Nix does, with a hash made
# from the URL, and logging the URLs asked for.
cat >"$tmp/bin/nix" <<'FAKE'
#!/usr/bin/env bash
url=${!#}
echo "$url" >>"$FAKE_NIX_LOG"
printf '{"hash":"sha256-fake-%s","storePath":"/nix/store/fake"}\n' "$(basename "$url")"
FAKE
chmod +x "$tmp/bin/nix"
nix-instantiate --eval --strict --json -E '(import ./nix/ticdc-source.nix).pinScript' 2>/dev/null |
  jq -r . >"$tmp/pin-ticdc.sh"
# writeShellApplication runs shellcheck (and `bash -n`) on its text at build time, so a
# shellcheck finding fails `nix run .#pin-ticdc` / `nix run .#stack` before they start. Check
# every app's script here the same way: flake.nix evaluated with getExe returning the text.
# shellcheck_apps FLAKE-FILE LABEL: 0 if every app script of that flake.nix passes.
shellcheck_apps() {
  local flake=$1 label=$2 apps app ok=0
  if ! apps=$(nix-instantiate --eval --strict --json -E \
    "(import ./nix/tests/flake-stub.nix { flakeFile = $flake; scriptTexts = true; }).outputs.apps.x86_64-linux" \
    2>"$tmp/apps.err"); then
    echo "check-nix: $label: cannot evaluate the apps' scripts:" >&2
    cat "$tmp/apps.err" >&2
    return 1
  fi
  for app in $(jq -r 'keys[]' <<<"$apps"); do
    # writeShellApplication's preamble (errexit, nounset, pipefail), then the text.
    { printf '#!/usr/bin/env bash\nset -o errexit\nset -o nounset\nset -o pipefail\n'
      jq -r --arg a "$app" '.[$a].program' <<<"$apps"; } >"$tmp/app-$app.sh"
    if bash -n "$tmp/app-$app.sh" 2>/dev/null && shellcheck "$tmp/app-$app.sh" >"$tmp/app-$app.sc" 2>&1; then
      echo "check-nix: $label: apps.$app script passes shellcheck"
    else
      echo "check-nix: $label: apps.$app script fails shellcheck (writeShellApplication would not build):" >&2
      cat "$tmp/app-$app.sc" >&2
      ok=1
    fi
  done
  return "$ok"
}
if ! command -v shellcheck >/dev/null 2>&1; then
  echo "check-nix: shellcheck not found (install shellcheck): cannot check the apps' scripts" >&2
  fail=1
else
  shellcheck_apps ./flake.nix flake.nix || fail=1
  mutant flake.nix app-sc 's/exec ${lib.getExe vm} "\$@"/exec ${lib.getExe vm} $@/'
  if shellcheck_apps "$m" "negative test (unquoted \$@ in the stack app)" >/dev/null 2>&1; then
    echo "check-nix: negative test 'unquoted \$@ in the stack app': shellcheck ACCEPTED it" >&2
    fail=1
  else
    echo "check-nix: negative test 'unquoted \$@ in the stack app': rejected by shellcheck"
  fi
fi

if ! (cd "$tmp/pin" && FAKE_NIX_LOG="$tmp/urls" PATH="$tmp/bin:$PATH" \
  bash -o errexit -o nounset -o pipefail "$tmp/pin-ticdc.sh" >/dev/null 2>"$tmp/pin.err"); then
  echo "check-nix: the pin-ticdc script failed:" >&2
  cat "$tmp/pin.err" >&2
  fail=1
elif ! got=$(nix-instantiate --eval --strict --json -E "let s = import $tmp/pin/nix/ticdc-source.nix; in map s.hash s.systems ++ map s.url s.systems" 2>"$tmp/got.err"); then
  echo "check-nix: the pins pin-ticdc wrote do not evaluate:" >&2
  cat "$tmp/got.err" >&2
  fail=1
else
  want=$(nix-instantiate --eval --strict --json -E "let s = import ./nix/ticdc-source.nix; in map (sys: \"sha256-fake-\" + baseNameOf (s.url sys)) s.systems ++ map s.url s.systems" 2>/dev/null)
  asked=$(jq -R . "$tmp/urls" | jq -sc 'sort')
  urls=$(jq -c '.[length/2:] | sort' <<<"$want")
  if [ "$got" != "$want" ] || [ "$asked" != "$urls" ]; then
    echo "check-nix: pin-ticdc wrote ${got}, expected ${want} (fetched ${asked})" >&2
    fail=1
  else
    echo "check-nix: pin-ticdc prefetches both arches and writes pins the flake accepts"
  fi
fi


# The VM test's Python (tests/nixos/smoke.nix testScript) compiles: it only runs under KVM, so a
# quoting slip in its shell-in-Python-in-Nix strings would otherwise show only in that run.
if script=$(nix-instantiate --eval --strict --json -E '(import ./tests/nixos/smoke.nix { pkgs = { testers.runNixOSTest = x: x; }; self = { nixosModules.default = { }; }; }).testScript { nodes.machine.systemd.services.cdcmon-smoke.serviceConfig.TimeoutStartSec = "15min"; }' 2>"$tmp/smoke-script.err") &&
  jq -r . <<<"$script" | python3 -c 'import sys; compile(sys.stdin.read(), "testScript", "exec")' 2>"$tmp/smoke-script.err"; then
  echo "check-nix: tests/nixos/smoke.nix testScript is valid Python"
else
  echo "check-nix: tests/nixos/smoke.nix testScript does not evaluate or compile:" >&2
  cat "$tmp/smoke-script.err" >&2
  fail=1
fi

exit "$fail"
