# flake.nix's real `outputs` function applied to stub inputs (nix/tests/stub-lib.nix): nixpkgs'
# lib/pkgs, crane and nixosSystem are replaced, everything flake.nix itself computes is real.
# Lazy: only what a test forces is evaluated. Used by eval-flake.nix and scripts/check-nix.sh.
# `flakeFile`: another copy of flake.nix (scripts/check-nix.sh passes mutants of it).
# `scriptTexts = true`: `lib.getExe` of a writeShellApplication returns its script text, so
# `apps.<system>.<name>.program` is the script; scripts/check-nix.sh shellchecks it the way
# writeShellApplication's own checkPhase does at build time.
{
  flakeFile ? ../../flake.nix,
  scriptTexts ? false,
}:
let
  stub = import ./stub-lib.nix;
  flake = import flakeFile;
  lib =
    if scriptTexts then
      stub.lib
      // {
        getExe = p: p.text or "${p}/bin/main-program";
        nixosSystem = args: {
          nixosSystemArgs = args;
          config.system.build.vm = "/stub/run-vm";
        };
      }
    else
      stub.lib;
  inputs = {
    nixpkgs = {
      outPath = ./stub-nixpkgs.nix;
      inherit lib;
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
