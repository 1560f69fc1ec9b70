# `import nixpkgs { system; config; }` for nix/tests/flake-stub.nix: the stub pkgs of stub-lib.nix.
{ system, ... }: (import ./stub-lib.nix).pkgsFor system
