# A stand-in for the parts of nixpkgs `lib` (and `pkgs`) that flake.nix, nix/vm.nix,
# modules/tidb.nix and tests/nixos/smoke.nix touch when evaluated by nix/tests/eval-flake.nix.
# Builtins only. Module-system functions return the same shapes as nixpkgs lib/modules.nix
# (`{ _type = "override"; priority; content; }`, `{ _type = "if"; condition; content; }`) so a
# test can tell mkDefault from a plain value. Anything not stubbed here fails loudly
# ("attribute missing"), which is the point: the test then says what it could not evaluate.
rec {
  lib = rec {
    # lib/modules.nix
    mkOverride = priority: content: {
      _type = "override";
      inherit priority content;
    };
    mkDefault = mkOverride 1000;
    mkForce = mkOverride 50;
    mkVMOverride = mkOverride 10;
    mkIf = condition: content: {
      _type = "if";
      inherit condition content;
    };
    mkMerge = contents: {
      _type = "merge";
      inherit contents;
    };
    # lib/options.nix: options evaluate to their declaration, so tests can read `.default`.
    mkOption = decl: decl;
    mkEnableOption = name: {
      default = false;
      description = "Whether to enable ${name}.";
    };
    mkPackageOption = _pkgs: name: _extra: {
      default = "<pkgs.${name}>";
    };
    types = {
      str = "str";
      bool = "bool";
      port = "port";
      path = "path";
      package = "package";
      nullOr = t: "nullOr ${t}";
      listOf = t: "listOf ${t}";
      attrsOf = t: "attrsOf ${t}";
      enum = l: "enum";
      submodule = m: "submodule";
    };
    # lib/attrsets.nix, lib/lists.nix, lib/strings.nix (same semantics for these inputs)
    genAttrs =
      names: f:
      builtins.listToAttrs (
        map (n: {
          name = n;
          value = f n;
        }) names
      );
    nameValuePair = name: value: { inherit name value; };
    mapAttrs = builtins.mapAttrs;
    optionalAttrs = c: a: if c then a else { };
    optional = c: x: if c then [ x ] else [ ];
    optionals = c: l: if c then l else [ ];
    mapAttrsRecursive =
      f: set:
      let
        recurse =
          path:
          builtins.mapAttrs (
            name: value: if builtins.isAttrs value then recurse (path ++ [ name ]) value else f (path ++ [ name ]) value
          );
      in
      recurse [ ] set;
    concatStringsSep = builtins.concatStringsSep;
    concatMapStrings = f: l: builtins.concatStringsSep "" (map f l);
    replaceStrings = builtins.replaceStrings;
    hasPrefix = p: s: builtins.substring 0 (builtins.stringLength p) s == p;
    # Shell quoting as in lib/strings.nix (single quotes, ' -> '\'').
    escapeShellArg = a: "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] (toString a)}'";
    escapeShellArgs = args: builtins.concatStringsSep " " (map escapeShellArg args);
    getExe = p: "${p}/bin/<mainProgram>";
    getExe' = p: name: "${p}/bin/${name}";
    getName = p: p.pname or "<name>";
    importTOML = _: {
      package.version = "0.0.0-stub";
    };
    assertMsg = c: msg: if c then true else throw msg;
    # lib/ nixosSystem (nixpkgs flake.nix): record the arguments instead of evaluating NixOS.
    nixosSystem = args: { nixosSystemArgs = args; };
  };

  # pkgs for one system: callPackage records its call site (file + names passed explicitly);
  # every other package is a string naming it.
  pkgsFor =
    system:
    let
      record =
        file: args:
        let
          self = {
            callPackageSite = {
              inherit file;
              argNames = builtins.attrNames args;
            };
            # nix/package.nix returns { package, clippy, fmt, nextest }.
            package = self;
            clippy = self;
            fmt = self;
            nextest = self;
          };
        in
        self;
    in
    {
      stdenv.hostPlatform.system = system;
      callPackage = record;
      writeShellApplication = args: args // { outPath = "/stub/${args.name}"; };
      writeShellScript = name: _text: "/stub/${name}";
      testers.runNixOSTest = args: args;
      formats.toml = _: {
        type = "toml";
        generate = name: _value: "/stub/${name}";
      };
      curl = "<pkgs.curl>";
      jq = "<pkgs.jq>";
      elasticsearch8 = "<pkgs.elasticsearch8>";
      nixfmt-tree = "<pkgs.nixfmt-tree>";
    };
}
