# The repository paths in the crane source of nix/package.nix (its `lib.fileset`), read from the
# real file with stub `lib` and `craneLib`. Builtins only. scripts/check-nix.sh checks that every
# repository file the tests, benches and examples open is inside it: `checks.nextest` runs in the
# Nix sandbox, where a file left out of the source does not exist (tests/compose.rs reading
# docker/compose.yaml once failed that way). crane's commonCargoSources is `*.rs`, `*.toml`
# and Cargo.lock anywhere (crane v0.23.4 lib/fileset/commonCargoSources.nix).
let
  root = toString ../..;
  relative = p: builtins.substring (builtins.stringLength root + 1) (-1) (toString p);
  lib = {
    fileset = {
      toSource = { root, fileset }: fileset;
      unions = l: l;
      maybeMissing = p: p;
    };
  };
  craneLib = {
    fileset.commonCargoSources = _: "<commonCargoSources: *.rs *.toml Cargo.lock>";
    buildDepsOnly = args: args;
    buildPackage = args: args;
    cargoClippy = args: args;
    cargoFmt = args: args;
    cargoNextest = args: args;
  };
  package = import ../package.nix {
    inherit lib craneLib;
    cmake = "cmake";
    pkg-config = "pkg-config";
    zlib = "zlib";
    curl = "curl";
    prometheus = {
      cli = "prometheus.cli";
    };
  };
in
map (e: if builtins.isPath e then relative e else e) package.nextest.src
