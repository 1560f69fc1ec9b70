# TiCDC (`cdc`) from PingCAP's release binary on the TiUP mirror; nixpkgs has no TiCDC
# (NIX-FACTS §2). URL, version and hash: nix/ticdc-source.nix + nix/ticdc-pins.json; until
# `nix run .#pin-ticdc` has filled the pins, building this fails with a message naming that
# command (docs/nix.md "Pins").
#
# Formals: only names that *must* come from pkgs. No optional formals: callPackage fills every
# formal whose name exists in pkgs, defaults notwithstanding (nixpkgs lib/customisation.nix,
# `allArgs = intersectAttrs fargs autoArgs // args`), and `pkgs.src` / `pkgs.version` exist
# (defect 2; guarded by nix/tests/eval-flake.nix).
{
  lib,
  stdenv,
  fetchurl,
  autoPatchelfHook,
}:
let
  source = import ./ticdc-source.nix;
  inherit (stdenv.hostPlatform) system;
in
stdenv.mkDerivation {
  pname = "ticdc";
  inherit (source) version;

  src = fetchurl {
    url = source.url system;
    hash = source.hash system;
  };
  # The tarball's layout is not documented; the installPhase looks for the `cdc` file anywhere.
  sourceRoot = ".";

  # tiflow builds `cdc` with CGO_ENABLED=0 (Makefile `GOBUILD`, read on an older branch; not
  # confirmed for release-8.5). autoPatchelfHook is kept either way: it skips statically linked
  # executables ("skipping … because it is statically linked", nixpkgs
  # pkgs/by-name/au/auto-patchelf/source/auto-patchelf.py) and, for a dynamic one, fails the
  # build naming any library it cannot resolve.
  nativeBuildInputs = [ autoPatchelfHook ];
  buildInputs = [ stdenv.cc.cc.lib ];

  dontConfigure = true;
  dontBuild = true;
  installPhase = ''
    runHook preInstall
    cdc=$(find . -type f -name cdc | head -n 1)
    if [ -z "$cdc" ]; then
      echo "ticdc: no 'cdc' binary in $src" >&2
      exit 1
    fi
    install -Dm755 "$cdc" "$out/bin/cdc"
    runHook postInstall
  '';

  doInstallCheck = true;
  # runHook: stdenv's default installCheckPhase runs the pre/post hooks; an override must too.
  installCheckPhase = ''
    runHook preInstallCheck
    $out/bin/cdc version
    runHook postInstallCheck
  '';

  passthru = {
    inherit (source) pinCommand;
  };

  meta = {
    description = "TiCDC, TiDB's change data capture (PingCAP release binary)";
    homepage = "https://github.com/pingcap/tiflow";
    license = lib.licenses.asl20;
    sourceProvenance = [ lib.sourceTypes.binaryNativeCode ];
    mainProgram = "cdc";
    platforms = source.systems;
  };
}
