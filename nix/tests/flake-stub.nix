# flake.nix's real `outputs` function applied to stub inputs (nix/tests/stub-lib.nix): nixpkgs'
# lib/pkgs, crane and nixosSystem are replaced, everything flake.nix itself computes is real.
# Lazy: only what a test forces is evaluated. Used by eval-flake.nix and scripts/check-nix.sh.
# `flakeFile`: another copy of flake.nix (scripts/check-nix.sh passes mutants of it).
{
  flakeFile ? ../../flake.nix,
}:
let
  stub = import ./stub-lib.nix;
  flake = import flakeFile;
  inputs = {
    nixpkgs = {
      outPath = ./stub-nixpkgs.nix;
      inherit (stub) lib;
    };
    crane = {
      mkLib = _pkgs: {
        devShell = args: args;
      };
    };
  };
  outputs = flake.outputs (inputs // { self = outputs // { outPath = toString ../..; }; });
in
{
  inherit outputs stub;
}
