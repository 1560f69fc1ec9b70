# flake.lock must pin exactly the revisions whose lock entries are known valid
# (NIX-FACTS.md §5; provenance in docs/nix.md). Builtins only:
#   nix-instantiate --eval --strict nix/tests/eval-lock.nix
let
  lock = builtins.fromJSON (builtins.readFile ../../flake.lock);
  check =
    name: actual: expected:
    if actual == expected then
      name
    else
      throw "eval-lock: ${name}: expected ${builtins.toJSON expected}, got ${builtins.toJSON actual}";
  node = n: lock.nodes.${n};
in
[
  (check "lock format" {
    inherit (lock) version root;
  } {
    version = 7;
    root = "root";
  })
  (check "root inputs" lock.nodes.root.inputs {
    crane = "crane";
    nixpkgs = "nixpkgs";
  })
  (check "nixpkgs pin (nixos-26.05, 2026-08-03)" (node "nixpkgs") {
    locked = {
      lastModified = 1785734586;
      narHash = "sha256-ODZkEK9Gy50yg6h98u7KkitZ3oc/uuTFK00bh1CRdNA=";
      owner = "NixOS";
      repo = "nixpkgs";
      rev = "531670d871c0e29724a02f3cbcac170adc65b58c";
      type = "github";
    };
    original = {
      owner = "NixOS";
      ref = "nixos-26.05";
      repo = "nixpkgs";
      type = "github";
    };
  })
  (check "crane pin (v0.23.4)" (node "crane") {
    locked = {
      lastModified = 1779041105;
      narHash = "sha256-nnGD2f8OlAZT2i5OfwikJsw+ifWfiA4d6A8BWlgOXV0=";
      owner = "ipetkov";
      repo = "crane";
      rev = "10e6e3cb966f7cfcc789fe5eee7a85f3188ce08b";
      type = "github";
    };
    original = {
      owner = "ipetkov";
      ref = "v0.23.4";
      repo = "crane";
      type = "github";
    };
  })
]
