{
  description = "cdcmon: TiDB -> TiCDC -> Kafka -> cdcmon monitoring stack (package, NixOS modules, VM, images)";

  # Pins (flake.lock, provenance in docs/nix.md): nixos-26.05 @ 531670d8, crane v0.23.4 @ 10e6e3cb.
  # crane >= 0.23 needs Nix >= 2.31.2 to evaluate this flake.
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
    crane.url = "github:ipetkov/crane/v0.23.4";
  };

  outputs =
    {
      self,
      nixpkgs,
      crane,
    }:
    let
      inherit (nixpkgs) lib;
      # Linux only: the stack is NixOS services; the TiCDC binary exists for both arches.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      # Elasticsearch is the only package we use that may be unfree: elasticsearch8 was Elastic
      # License 2.0 only; the newest stored nixpkgs elasticsearch8 (8.19.16) is
      # `OR [ agpl3Only elastic20 sspl ]`. Allow exactly pname "elasticsearch" either way.
      pkgsFor = lib.genAttrs systems (
        system:
        import nixpkgs {
          inherit system;
          config.allowUnfreePredicate = pkg: builtins.elem (lib.getName pkg) [ "elasticsearch" ];
        }
      );
      eachSystem = f: lib.genAttrs systems (system: f pkgsFor.${system});

      build =
        pkgs:
        let
          rust = pkgs.callPackage ./nix/package.nix { craneLib = crane.mkLib pkgs; };
          ticdc = pkgs.callPackage ./nix/ticdc.nix { };
        in
        {
          inherit rust ticdc;
          # Every optional formal of a callPackage'd file is passed here explicitly, and names
          # that exist in pkgs are avoided (callPackage fills them regardless of defaults):
          # nix/tests/eval-flake.nix fails otherwise (docs/nix.md, defect 2).
          images = pkgs.callPackage ./nix/images.nix {
            cdcmon = rust.package;
            inherit ticdc;
            elasticsearchPackage = pkgs.elasticsearch8;
          };
        };
      builds = lib.mapAttrs (_: build) pkgsFor;
      vmName = system: if system == "x86_64-linux" then "stack" else "stack-${system}";

      # Point the modules' package options at this flake's packages (they default to
      # pkgs.cdcmon / pkgs.ticdc, which nixpkgs does not have). One small module per option
      # group, each with a fixed `key`: the module system imports a keyed module once however
      # often it is reached, so a deployment that imports several of our modules (default +
      # ticdc, or default and its alias stack) defines each package option once. Without the
      # key each wrapper is a new anonymous module and the second `mkDefault` definition of a
      # `types.package` option fails ("defined multiple times": nixpkgs lib/types.nix,
      # `package.merge` uses `mergeOneOption`). Guarded by nix/tests/flake-guards.nix.
      packageDefaults = {
        cdcmon =
          { lib, pkgs, ... }:
          let
            b = builds.${pkgs.stdenv.hostPlatform.system};
          in
          {
            key = "cdcmon-flake#package-defaults-cdcmon";
            config.services.cdcmon.package = lib.mkDefault b.rust.package;
          };
        ticdc =
          { lib, pkgs, ... }:
          let
            b = builds.${pkgs.stdenv.hostPlatform.system};
          in
          {
            key = "cdcmon-flake#package-defaults-ticdc";
            config.services.ticdc = {
              package = lib.mkDefault b.ticdc;
              changefeedTool = lib.mkDefault b.rust.package;
            };
          };
      };
      withPackages = name: module: defaults: {
        key = "cdcmon-flake#nixosModules-${name}";
        imports = [ module ] ++ map (d: packageDefaults.${d}) defaults;
      };
    in
    {
      packages = eachSystem (
        pkgs:
        let
          b = builds.${pkgs.stdenv.hostPlatform.system};
        in
        {
          default = b.rust.package;
          cdcmon = b.rust.package;
          inherit (b) ticdc;
          docker-images = b.images;
        }
      );

      nixosModules = {
        default = withPackages "stack" ./modules/stack.nix [
          "cdcmon"
          "ticdc"
        ];
        stack = self.nixosModules.default;
        tidb-cluster = ./modules/tidb.nix;
        ticdc = withPackages "ticdc" ./modules/ticdc.nix [ "ticdc" ];
        cdcmon = withPackages "cdcmon" ./modules/cdcmon.nix [ "cdcmon" ];
      };

      # `stack` on x86_64-linux, `stack-aarch64-linux` on ARM hosts.
      nixosConfigurations = builtins.listToAttrs (
        map (
          system:
          lib.nameValuePair (vmName system) (
            lib.nixosSystem {
              modules = [
                self.nixosModules.default
                ./nix/vm.nix
                { nixpkgs.pkgs = pkgsFor.${system}; }
              ];
            }
          )
        ) systems
      );

      apps = eachSystem (
        pkgs:
        let
          inherit (pkgs.stdenv.hostPlatform) system;
          vm = self.nixosConfigurations.${vmName system}.config.system.build.vm;
          urls = (import ./nix/lib/stack.nix { }).hostUrls;
          stackApp = pkgs.writeShellApplication {
            name = "cdcmon-stack";
            text = ''
              cat <<'URLS'
              cdcmon stack VM (8 GiB, 4 cores; disk image ./stack.qcow2 persists between runs)
                TiDB          ${urls.tidb}
                TiCDC         ${urls.ticdc}
                Kafka         ${urls.kafka}   (topic app_cdc)
                Prometheus    ${urls.prometheus}
                Grafana       ${urls.grafana}   (admin/admin unless configured)
                Elasticsearch ${urls.elasticsearch}
                cdcmon        ${urls.cdcmon}
              Services need a few minutes after boot; `journalctl -u cdcmon-smoke` in the VM shows
              the end-to-end check. Quit QEMU with Ctrl-a x.
              URLS
              exec ${lib.getExe vm} "$@"
            '';
          };
          # Writes nix/ticdc-pins.json: the only step that needs network outside Nix's own
          # fetchers (no hash of PingCAP's cdc tarballs is readable offline; docs/nix.md "Pins").
          ticdcSource = import ./nix/ticdc-source.nix;
          pinTicdc = pkgs.writeShellApplication {
            name = "pin-ticdc";
            runtimeInputs = [ pkgs.jq ];
            text = ticdcSource.pinScript;
          };
        in
        {
          stack = {
            type = "app";
            program = lib.getExe stackApp;
            meta.description = "Boot the whole stack in a QEMU VM with host port-forwards";
          };
          pin-ticdc = {
            type = "app";
            program = lib.getExe pinTicdc;
            meta.description = "Prefetch TiCDC's release tarballs (both arches) and write nix/ticdc-pins.json";
          };
        }
      );

      checks = eachSystem (
        pkgs:
        let
          b = builds.${pkgs.stdenv.hostPlatform.system};
        in
        {
          package = b.rust.package;
          inherit (b.rust) clippy fmt nextest;
          smoke = import ./tests/nixos/smoke.nix { inherit pkgs self; };
        }
      );

      devShells = eachSystem (
        pkgs:
        let
          b = builds.${pkgs.stdenv.hostPlatform.system};
        in
        {
          default = (crane.mkLib pkgs).devShell {
            checks = {
              inherit (b.rust) clippy nextest;
            };
            packages = [
              pkgs.cargo-nextest
              pkgs.apacheKafka # kafka-console-consumer.sh against localhost:9094
              pkgs.prometheus.cli # promtool
            ];
          };
        }
      );

      formatter = eachSystem (pkgs: pkgs.nixfmt-tree);
    };
}
