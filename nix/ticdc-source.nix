# Where TiCDC comes from: the standalone `cdc` tarball of PingCAP's TiUP mirror, version and
# hashes from nix/ticdc-pins.json (written by `nix run .#pin-ticdc`). Builtins only, so
# nix/tests/eval-flake.nix and scripts/check-nix.sh can test it without nixpkgs.
#
# Why the mirror tarball: PingCAP's package docs (`binary-package.md`, 7.6+) list
# `cdc-{version}-linux-{arch}.tar.gz` in the *toolkit* package, not in
# `tidb-community-server`, so the server archive never held TiCDC (docs/nix.md, defect 3).
# Version: the 8.5 line that nixpkgs' tikv / tikv-pd (8.5.5) are in.
# No hash of these files is readable offline; a missing pin fails with the command that makes it.
let
  pins = builtins.fromJSON (builtins.readFile ./ticdc-pins.json);
  archOf = {
    x86_64-linux = "amd64";
    aarch64-linux = "arm64";
  };
  pinCommand = "nix run .#pin-ticdc";
  arch =
    system:
    archOf.${system} or (throw "ticdc: no PingCAP `cdc` binary for ${system} (only ${toString (builtins.attrNames archOf)})");
in
rec {
  inherit (pins) version;
  inherit pinCommand;
  pinsFile = "nix/ticdc-pins.json";
  systems = builtins.attrNames archOf;
  url = system: "https://tiup-mirrors.pingcap.com/cdc-v${version}-linux-${arch system}.tar.gz";
  # Body of `nix run .#pin-ticdc` (flake.nix wraps it with writeShellApplication, jq on PATH;
  # scripts/check-nix.sh runs it with a fake `nix`). Writes pinsFile with the flat sha256 that
  # `nix store prefetch-file` prints, which is what fetchurl in nix/ticdc.nix checks.
  pinScript = ''
    pins=${pinsFile}
    if [ ! -f "$pins" ]; then
      echo "pin-ticdc: run this from the cdcmon repository root (no $pins here)" >&2
      exit 1
    fi
    prefetch() {
      echo "pin-ticdc: fetching $1" >&2
      nix --extra-experimental-features nix-command store prefetch-file --json "$1" | jq -er .hash
    }
    x86_64=$(prefetch "${url "x86_64-linux"}")
    aarch64=$(prefetch "${url "aarch64-linux"}")
    jq -n --arg version "${version}" --arg x86_64 "$x86_64" --arg aarch64 "$aarch64" \
      '{version: $version, hashes: {"x86_64-linux": $x86_64, "aarch64-linux": $aarch64}}' \
      >"$pins.tmp"
    mv "$pins.tmp" "$pins"
    cat "$pins"
    echo "pin-ticdc: wrote $pins; commit it (git add $pins)" >&2
  '';
  hash =
    system:
    let
      h = pins.hashes.${system} or null;
    in
    if h == null then
      throw ''
        ticdc: ${pinsFile} has no hash for ${url system} (${system}).
        Run once on a machine with network, from the repository root:
          ${pinCommand}
        then commit ${pinsFile}.
      ''
    else
      h;
}
