# The flake guards (flake-guards.nix) on the files as they are; scripts/check-nix.sh runs every
# nix/tests/eval-*.nix and, separately, flake-guards.nix on known-bad inputs.
import ./flake-guards.nix { }
