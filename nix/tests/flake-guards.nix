# Guards for the flake classes of defect that need no nixpkgs (docs/nix.md "Defects and guards").
# Evaluates the real flake.nix `outputs` against stub inputs (flake-stub.nix) and the real
# modules/tidb.nix, nix/vm.nix and tests/nixos/smoke.nix against a stub lib. Builtins only:
#   nix-instantiate --eval --strict nix/tests/eval-flake.nix   (= this file applied to { })
# `substitute` replaces a checked file by its repository path, e.g.
# { "nix/ticdc.nix" = /tmp/old-ticdc.nix; }: scripts/check-nix.sh uses it to prove each guard
# rejects a known-bad file (the pre-fix nix/ticdc.nix, and each fixed file with its fix undone).
{
  substitute ? { },
}:
let
  inherit (import ./flake-stub.nix { flakeFile = pick ../../flake.nix; }) outputs stub;
  inherit (stub) lib;
  json = builtins.toJSON;
  check =
    name: ok: detail:
    if ok then name else throw "flake-guards: ${name}: ${detail}";
  systems = builtins.attrNames outputs.packages;
  root = toString ../..;
  relative = path: builtins.substring (builtins.stringLength root + 1) (-1) (toString path);
  pick = path: substitute.${relative path} or path;

  # ---- defect 2: callPackage formals -------------------------------------------------------
  # callPackage passes pkgs.<name> for every formal whose name exists in pkgs, whatever its
  # default (nixpkgs lib/customisation.nix: `allArgs = intersectAttrs fargs autoArgs // args`).
  # So an optional formal is only safe if the call site passes it. The call sites are found by
  # evaluating flake.nix with a recording callPackage (stub-lib.nix), over every package output.
  sites = builtins.concatMap (
    system:
    map (p: p.callPackageSite) (
      builtins.filter (p: p ? callPackageSite) (builtins.attrValues outputs.packages.${system})
    )
  ) systems;
  siteFiles = builtins.attrNames (
    builtins.listToAttrs (
      map (s: {
        name = toString s.file;
        value = true;
      }) sites
    )
  );
  fileOf = s: pick s.file;
  unpassedOptional =
    s:
    let
      formals = builtins.functionArgs (import (fileOf s));
    in
    builtins.filter (n: formals.${n} && !(builtins.elem n s.argNames)) (builtins.attrNames formals);
  offenders = builtins.filter (o: o.names != [ ]) (
    map (s: {
      file = toString (fileOf s);
      names = unpassedOptional s;
    }) sites
  );
  # Every `pkgs.callPackage ./…` written in flake.nix must be one the recorder saw (else a new
  # call site outside `packages` would escape this check).
  writtenSites =
    (builtins.length (builtins.split "callPackage \\./" (builtins.readFile (pick ../../flake.nix))) - 1) / 2;

  # ---- defect 4: nixosConfigurations pass the NixOS assertions outside the VM variant --------
  configs = outputs.nixosConfigurations;
  vmModule = import (pick ../vm.nix) {
    inherit lib;
    config = { };
    pkgs = { };
  };
  isDefault = v: v ? _type && v._type == "override" && v.priority == 1000;

  # ---- defect 6: TiDB advertises an explicit address ---------------------------------------
  tidbModule = import (pick ../../modules/tidb.nix) {
    inherit lib;
    pkgs = stub.pkgsFor "x86_64-linux";
    config.services.tidb-cluster = tidbCfg;
  };
  tidbOpts = tidbModule.options.services.tidb-cluster;
  component = name: {
    package = "<${name}>";
    settings = { };
  };
  tidbCfg = {
    enable = true;
    pd = component "tikv-pd";
    tikv = component "tikv";
    tidb = component "tidb" // {
      host = tidbOpts.tidb.host.default;
      advertiseAddress = tidbOpts.tidb.advertiseAddress.default or "<no advertiseAddress option>";
    };
  };
  tidbExec = tidbModule.config.content.systemd.services.tidb-server.serviceConfig.ExecStart;
  advertised = builtins.match ".*'-advertise-address=([^']*)'.*" tidbExec;

  # ---- defect 7: the VM test's smoke step outlives the unit's own start timeout -------------
  smokeTest = import (pick ../../tests/nixos/smoke.nix) {
    pkgs = stub.pkgsFor "x86_64-linux";
    self = outputs;
  };
  smokeScript =
    if builtins.isFunction smokeTest.testScript then
      smokeTest.testScript {
        nodes.machine.systemd.services.cdcmon-smoke.serviceConfig.TimeoutStartSec = "15min";
      }
    else
      smokeTest.testScript;

  # ---- nixosModules: importing several of them defines each package default once ----------
  # types.package merges with mergeOneOption, so two `mkDefault` definitions of
  # services.ticdc.package (one per anonymous wrapper) fail evaluation; the module system
  # imports a module with a `key` only once. Walk every nixosModules entry as the module
  # system would (functions applied to stub arguments, paths left unopened: they are ours and
  # set no package default), keep one copy per key, and count the definitions.
  moduleArgs = {
    inherit lib;
    pkgs = stub.pkgsFor "x86_64-linux";
    config = { };
    options = { };
  };
  packageOptions = [
    "package"
    "changefeedTool"
  ];
  # mkMerge / mkIf (stub-lib.nix shapes) are looked through.
  packageDefs = v: configDefs (v.config or v);
  configDefs =
    c:
    if (c._type or null) == "merge" then
      builtins.concatMap configDefs c.contents
    else if (c._type or null) == "if" then
      configDefs c.content
    else
      serviceDefs (c.services or { });
  serviceDefs =
    services:
    builtins.concatMap (
      s:
      map (o: "services.${s}.${o}") (
        builtins.filter (o: builtins.elem o packageOptions) (builtins.attrNames services.${s})
      )
    ) (builtins.attrNames services);
  expand =
    m:
    if builtins.isPath m || builtins.isString m then
      [ ]
    else
      let
        v = if builtins.isFunction m then m moduleArgs else m;
      in
      [
        {
          key = v.key or null;
          defines = packageDefs v;
        }
      ]
      ++ builtins.concatMap expand (v.imports or [ ]);
  imported = builtins.concatMap expand (builtins.attrValues outputs.nixosModules);
  keyedOnce = builtins.attrValues (
    builtins.listToAttrs (
      map (e: {
        name = e.key;
        value = e;
      }) (builtins.filter (e: e.key != null) imported)
    )
  );
  moduleInstances = keyedOnce ++ builtins.filter (e: e.key == null) imported;
  allDefines = builtins.concatMap (e: e.defines) moduleInstances;
  definedTwice = builtins.attrNames (
    builtins.listToAttrs (
      map (d: {
        name = d;
        value = true;
      }) (builtins.filter (d: builtins.length (builtins.filter (x: x == d) allDefines) > 1) allDefines)
    )
  );

  # ---- apps: `nix flake check` (src/nix/flake.cc, checkApp) throws "app '…' has unsupported
  # attribute" for anything but type, program and meta, and `program` must be a string.
  appAttrsBad = builtins.concatMap (
    system:
    builtins.concatMap (
      name:
      let
        app = outputs.apps.${system}.${name};
        extra = builtins.filter (a: !builtins.elem a [ "type" "program" "meta" ]) (builtins.attrNames app);
      in
      if extra == [ ] && app.type == "app" && builtins.isString app.program && builtins.isString (app.meta.description or null) then
        [ ]
      else
        [ "apps.${system}.${name}: ${json (builtins.attrNames app)}" ]
    ) (builtins.attrNames outputs.apps.${system})
  ) systems;

  # ---- defect 3: TiCDC pin -------------------------------------------------------------------
  ticdcSource = import ../ticdc-source.nix;
  pins = builtins.fromJSON (builtins.readFile ../ticdc-pins.json);
  pinApp = outputs.apps.x86_64-linux.pin-ticdc;
in
[
  (check "callPackage: the recorder saw every call site written in flake.nix"
    (builtins.length siteFiles == writtenSites)
    "flake.nix has ${toString writtenSites} `callPackage ./…` calls, packages.* reach ${json siteFiles}"
  )
  (check "callPackage: every optional formal is passed explicitly" (offenders == [ ])
    "optional formals the call site does not pass (callPackage fills them from pkgs whatever the default; pass them in flake.nix or rename them): ${json offenders}"
  )
  (check "nixosConfigurations: every entry includes nix/vm.nix"
    (builtins.all (n: builtins.elem ../vm.nix configs.${n}.nixosSystemArgs.modules) (
      builtins.attrNames configs
    ))
    "entries ${json (builtins.attrNames configs)}"
  )
  (check "nix/vm.nix: fileSystems.\"/\" outside vmVariant, as mkDefault"
    (
      vmModule ? fileSystems."/"
      && isDefault vmModule.fileSystems."/"
      && vmModule.fileSystems."/".content ? device
      && vmModule.fileSystems."/".content ? fsType
    )
    "got ${json (vmModule.fileSystems or null)}"
  )
  (check "nix/vm.nix: boot.loader.grub.enable = mkDefault false outside vmVariant"
    (
      (vmModule.boot.loader.grub.enable or null) == {
        _type = "override";
        priority = 1000;
        content = false;
      }
    )
    "got ${json (vmModule.boot.loader.grub.enable or null)}"
  )
  (check "modules/tidb.nix: advertiseAddress defaults to loopback"
    (tidbCfg.tidb.advertiseAddress == "127.0.0.1")
    "default ${json tidbCfg.tidb.advertiseAddress}"
  )
  (check "modules/tidb.nix: tidb-server gets -advertise-address=<option value>"
    (advertised == [ tidbCfg.tidb.advertiseAddress ])
    "ExecStart ${tidbExec}"
  )
  (check "tests/nixos/smoke.nix: smoke step timeout = unit TimeoutStartSec (15min) + 60 s"
    (builtins.match ".*execute\\(\"systemctl start cdcmon-smoke.service\", timeout=960\\).*" smokeScript != null)
    "the testScript does not pass timeout=960 to the smoke step"
  )
  (check "nixosModules: importing all of them defines each package default once (keyed wrappers)"
    (definedTwice == [ ] && allDefines != [ ])
    "defined more than once: ${json definedTwice} (a wrapper module without a fixed `key` is imported once per reference)"
  )
  (check "apps: only type/program/meta, type \"app\", program a string, meta.description set"
    (appAttrsBad == [ ])
    "${json appAttrsBad}"
  )
  (check "TiCDC: pinned version is in nixpkgs' 8.5 line (tikv/tikv-pd 8.5.5)"
    (builtins.match "8\\.5\\.[0-9]+" ticdcSource.version != null)
    "version ${ticdcSource.version}"
  )
  (check "TiCDC: a missing hash fails evaluation, a present one is used"
    (builtins.all (
      system:
      let
        r = builtins.tryEval (ticdcSource.hash system);
      in
      if pins.hashes.${system} == null then !r.success else r.value == pins.hashes.${system}
    ) ticdcSource.systems)
    "hashes ${json pins.hashes}"
  )
  (check "apps.pin-ticdc is an app whose program is its script"
    (pinApp.type == "app" && pinApp.program == "/stub/pin-ticdc/bin/<mainProgram>")
    "got ${json pinApp}"
  )
]
