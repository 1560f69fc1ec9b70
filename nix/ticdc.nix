# TiCDC (`cdc`) from PingCAP's release binaries; nixpkgs has no TiCDC package (NIX-FACTS §2).
#
# HASH PROVENANCE (read docs/nix.md "Pins"): no hash of a standalone
# `cdc-v8.5.x-linux-*.tar.gz` was found in any readable source, and we do not invent one. The
# only known hashes are fetchzip (NAR) hashes of PingCAP's offline TiUP package
# `tidb-community-server-v8.1.1-linux-{amd64,arm64}.tar.gz`, taken from
# nika-industries/nika `flake-modules/tikv/makeTikvBinary.nix` at commit
# a052b4499d4445593c6acedcab4997c07210258c (x86_64 -> CovqGP…, aarch64 -> ZtFqm…; an older
# commit of that file used the arm64 value for both systems, so the mapping is the later fix,
# UNVERIFIED by a download here). That archive holds one tarball per component; we unpack
# `cdc-v8.1.1-linux-<arch>.tar.gz` from it (UNVERIFIED that it is present, see docs/nix.md).
# Consequences: a large download (the whole offline mirror) and TiCDC 8.1.1 against
# TiDB/TiKV/PD 8.5.x from nixpkgs. To use a newer TiCDC, override `src` and `version`, e.g.
#   ticdc.override { version = "8.5.4"; src = fetchurl { url = "https://tiup-mirrors.pingcap.com/cdc-v8.5.4-linux-amd64.tar.gz"; hash = "<nix store prefetch-file output>"; }; }
{
  lib,
  stdenv,
  fetchzip,
  autoPatchelfHook,
  src ? null,
  version ? "8.1.1",
}:
let
  inherit (stdenv.hostPlatform) system;
  arch =
    {
      x86_64-linux = "amd64";
      aarch64-linux = "arm64";
    }
    .${system} or (throw "ticdc: no PingCAP binary for ${system}");
  offlineVersion = "8.1.1";
  offlineHashes = {
    x86_64-linux = "sha256-CovqGP4nciRWfB+mGQcCP+VBkVOmC6hzRXO2gvXylpc=";
    aarch64-linux = "sha256-ZtFqm4PllBRIGiRLzBynWvdcmegXD8WMPzknXwJYKBg=";
  };
  # Exactly the fetchzip call of the source above (url + hash, default stripRoot), so the NAR
  # hash refers to the same tree.
  offlinePackage = fetchzip {
    url = "https://download.pingcap.org/tidb-community-server-v${offlineVersion}-linux-${arch}.tar.gz";
    hash = offlineHashes.${system};
  };
in
assert lib.assertMsg (
  src != null || version == offlineVersion
) "ticdc: version ${version} needs its own `src` (only ${offlineVersion} has a known hash)";
stdenv.mkDerivation {
  pname = "ticdc";
  inherit version;
  src = if src != null then src else "${offlinePackage}/cdc-v${offlineVersion}-linux-${arch}.tar.gz";
  sourceRoot = ".";

  # The release binary is dynamically linked against glibc; autoPatchelfHook fails the build
  # naming any library it cannot resolve.
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
  installCheckPhase = ''
    $out/bin/cdc version
  '';

  meta = {
    description = "TiCDC, TiDB's change data capture (PingCAP release binary)";
    homepage = "https://github.com/pingcap/tiflow";
    license = lib.licenses.asl20;
    sourceProvenance = [ lib.sourceTypes.binaryNativeCode ];
    mainProgram = "cdc";
    platforms = [
      "x86_64-linux"
      "aarch64-linux"
    ];
  };
}
