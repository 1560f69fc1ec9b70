# Evaluates modules/tidb.nix, modules/ticdc.nix and modules/cdcmon.nix without nixpkgs, with a
# small stand-in for nixpkgs' `lib` and `pkgs` (only what these modules call; option types are
# not checked here, nixpkgs does that in the VM build). It reads option defaults and the
# generated systemd units the way the NixOS module system would for a plain
# `enable = true` configuration, and checks issue 16's rules on them:
#   nix-instantiate --eval --strict nix/tests/eval-modules.nix
# Each check throws with the expected and actual value on mismatch.
let
  json = builtins.toJSON;
  check =
    name: actual: expected:
    if actual == expected then
      name
    else
      throw "eval-modules: ${name}: expected ${json expected}, got ${json actual}";

  fakePkg = name: {
    inherit name;
    version = "0";
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
    meta.mainProgram = name;
  };
  anyType = { };
  types = {
    str = anyType;
    bool = anyType;
    int = anyType;
    path = anyType;
    package = anyType;
    lines = anyType;
    listOf = _: anyType;
    nullOr = _: anyType;
    enum = values: { inherit values; };
    either = _: _: anyType;
    oneOf = _: anyType;
    attrsOf = elem: { inherit elem; };
    submodule = module: { inherit module; };
  };
  lib = {
    inherit types;
    mkOption = o: o // { _isOption = true; };
    mkEnableOption = description: {
      _isOption = true;
      default = false;
      inherit description;
    };
    mkPackageOption = pkgs: name: _: {
      _isOption = true;
      default = pkgs.${name};
    };
    mkIf = cond: content: {
      _type = "if";
      inherit cond content;
    };
    mkDefault = v: v;
    literalExpression = t: t;
    getExe = p: "${p}/bin/${p.meta.mainProgram}";
    getExe' = p: bin: "${p}/bin/${bin}";
    # nixpkgs lib/strings.nix escapeShellArg (nixos-26.05): a word of only
    # [[:alnum:],._+:@%/-] is left bare, anything else single-quoted with ' as '\''. An
    # always-quoting stub let checks expect text real nixpkgs never produces (audit B2 #3).
    escapeShellArg =
      arg:
      let
        string = toString arg;
      in
      if builtins.match "[[:alnum:],._+:@%/-]+" string == null then
        "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] string}'"
      else
        string;
    escapeShellArgs = args: builtins.concatStringsSep " " (map lib.escapeShellArg args);
    optionalString = c: s: if c then s else "";
    inherit (builtins)
      concatStringsSep
      replaceStrings
      all
      mapAttrs
      ;
    imap0 = f: l: builtins.genList (i: f i (builtins.elemAt l i)) (builtins.length l);
    mapAttrsToList = f: a: map (n: f n a.${n}) (builtins.attrNames a);
    mapAttrs' = f: a: builtins.listToAttrs (map (n: f n a.${n}) (builtins.attrNames a));
    nameValuePair = name: value: { inherit name value; };
    hasPrefix = p: s: builtins.substring 0 (builtins.stringLength p) s == p;
    optional = c: x: if c then [ x ] else [ ];
    optionals = c: l: if c then l else [ ];
    optionalAttrs = c: a: if c then a else { };
    inherit (builtins) concatLists;
    mapAttrsRecursive =
      f: set:
      let
        go =
          path: v:
          if builtins.isAttrs v then builtins.mapAttrs (n: go (path ++ [ n ])) v else f path v;
      in
      go [ ] set;
  };
  # nixpkgs nixos/lib/utils.nix @ 0229f9ed9a895714550dc58c5585f7c9fb014129 escapeSystemdExecArg(s)
  # for strings: toJSON, then % -> %% and $ -> $$ (systemd specifiers and variables).
  utils = rec {
    escapeSystemdExecArg = arg: builtins.replaceStrings [ "%" "$" ] [ "%%" "$$" ] (builtins.toJSON arg);
    escapeSystemdExecArgs = args: builtins.concatStringsSep " " (map escapeSystemdExecArg args);
  };
  format = {
    type = anyType;
    generate = name: _: "/nix/store/00000000000000000000000000000000-${name}";
  };
  pkgs = {
    formats = {
      toml = _: format;
      keyValue = _: format;
    };
    writeShellScript = name: _: "/nix/store/00000000000000000000000000000000-${name}";
  }
  // builtins.listToAttrs (
    map (n: {
      name = n;
      value = fakePkg n;
    }) [ "curl" "tikv-pd" "tikv" "tidb" "ticdc" "cdcmon" ]
  );

  # Option tree -> the values a config with only `enable = true` would have.
  defaultsOf =
    opts:
    builtins.mapAttrs (
      _: o:
      if o ? _isOption then
        (
          if (o.type or { }) ? module && (o.default or { }) == { } then
            defaultsOf o.type.module.options
          else
            o.default or null
        )
      else
        defaultsOf o
    ) opts;
  recursiveUpdate =
    a: b:
    a
    // builtins.mapAttrs (
      n: v: if builtins.isAttrs v && builtins.isAttrs (a.${n} or null) then recursiveUpdate a.${n} v else v
    ) b;
  unIf = v: if builtins.isAttrs v && (v._type or null) == "if" then (if v.cond then v.content else { }) else v;

  # Wrap cfg under its option path (services.<name>) for the module's `config` argument.
  nest = path: value: builtins.foldl' (acc: p: { ${p} = acc; }) value (builtins.foldl' (acc: p: [ p ] ++ acc) [ ] path);
  evalAt =
    file: path: set:
    let
      m = import file {
        inherit lib pkgs utils;
        config = nest path cfg;
      };
      cfg = recursiveUpdate (defaultsOf (builtins.foldl' (acc: p: acc.${p}) m.options path)) set;
    in
    {
      inherit cfg;
      config = unIf m.config;
    };

  tidb = evalAt ../../modules/tidb.nix [ "services" "tidb-cluster" ] { enable = true; };
  ticdcFeedDefaults =
    defaultsOf
      (import ../../modules/ticdc.nix {
        inherit lib pkgs utils;
        config = { };
      }).options.services.ticdc.changefeeds.type.elem.module.options;
  ticdc = evalAt ../../modules/ticdc.nix [ "services" "ticdc" ] {
    enable = true;
    changefeeds.app-cdc = ticdcFeedDefaults;
  };
  cdcmon = evalAt ../../modules/cdcmon.nix [ "services" "cdcmon" ] {
    enable = true;
    dbInit = {
      enable = true;
      appPasswordFile = "/run/secrets/app-password";
    };
    smoke.enable = true;
  };

  # Avro + integrity (issue 12): the changefeed and consumer options, and the assertions that
  # catch a configuration TiCDC or cdcmon would refuse at run time.
  avroFeed =
    set:
    evalAt ../../modules/ticdc.nix [ "services" "ticdc" ] {
      enable = true;
      changefeeds.app-cdc = recursiveUpdate ticdcFeedDefaults set;
    };
  registryUrl = "http://registry.internal:8081";
  ticdcAvro = avroFeed {
    protocol = "avro";
    schemaRegistry = registryUrl;
    integrity.checkLevel = "correctness";
  };
  failed = m: map (a: a.message) (builtins.filter (a: !a.assertion) m.config.assertions);
  cdcmonWith =
    registry:
    evalAt ../../modules/cdcmon.nix [ "services" "cdcmon" ] {
      enable = true;
      schemaRegistry = registry;
    };
  cdcmonAvro = cdcmonWith {
    url = registryUrl;
    user = "cdcmon";
    passwordFile = "/run/secrets/schema-registry-password";
  };
  # Literal substring test: each regex metacharacter as a one-character bracket expression
  # (Nix's POSIX extended regex rejects `\{`). Needles here contain no `^`.
  has =
    needle: hay:
    let
      meta = [ "\\" "." "?" "{" "}" "[" "]" "(" ")" "*" "+" "$" "|" ];
    in
    builtins.length (builtins.split (builtins.replaceStrings meta (map (c: "[${c}]") meta) needle) hay) > 1;

  # modules/stack.nix itself (audit B2 #4): its options and the parts of its config that feed
  # our three modules, for canal-json and avro. Only what the checks force is evaluated (the
  # nixpkgs services it also configures need the real nixpkgs: the VM build).
  evalStack =
    set:
    let
      m = import ../../modules/stack.nix {
        inherit lib pkgs utils;
        config = {
          services = {
            cdcmon-stack = cfg;
            apache-kafka.package = fakePkg "apache-kafka";
            grafana = {
              package = fakePkg "grafana";
              dataDir = "/var/lib/grafana";
              settings.database = {
                type = "sqlite3";
                path = "/var/lib/grafana/data/grafana.db";
              };
            };
          };
        };
      };
      cfg = recursiveUpdate (defaultsOf m.options.services.cdcmon-stack) set;
      config = unIf m.config;
    in
    {
      inherit cfg config;
      failed = map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
      # The stack's definitions fed through the real ticdc/cdcmon modules.
      ticdc = evalAt ../../modules/ticdc.nix [ "services" "ticdc" ] (
        config.services.ticdc
        // { changefeeds.app-cdc = recursiveUpdate ticdcFeedDefaults config.services.ticdc.changefeeds.app-cdc; }
      );
      cdcmon = evalAt ../../modules/cdcmon.nix [ "services" "cdcmon" ] config.services.cdcmon;
    };
  stackBase = {
    enable = true;
    appPasswordFile = "/run/secrets/app-password";
  };
  stackCanal = evalStack stackBase;
  stackAvro = evalStack (
    stackBase
    // {
      protocol = "avro";
      schemaRegistry.url = registryUrl;
      integrity.checkLevel = "correctness";
    }
  );

  units = m: builtins.mapAttrs (_: unIf) m.config.systemd.services;
  tidbUnits = units tidb;
  ticdcUnits = units ticdc;
  cdcmonUnits = units cdcmon;
  allUnits = tidbUnits // ticdcUnits // cdcmonUnits;
  unitNames = builtins.attrNames allUnits;
  contains = needle: haystack: builtins.length (builtins.split needle haystack) > 1;
  stackLib = import ../lib/stack.nix { };
  # unit -> the flags that choose where it listens (pd-server/tikv-server/tidb-server/cdc --help).
  bindFlags = {
    tidb-pd = [
      "--client-urls"
      "--peer-urls"
    ];
    tidb-tikv = [
      "--addr"
      "--status-addr"
    ];
    tidb-server = [
      "-host"
      "-status-host"
    ];
    ticdc = [ "--addr" ];
  };
in
[
  # ---- listeners default to loopback (16.4) ------------------------------------------------
  (check "TiDB -host default" tidb.cfg.tidb.host "127.0.0.1")
  (check "TiDB server binds what -host says" (contains "'-host=127.0.0.1'" tidbUnits.tidb-server.serviceConfig.ExecStart) true)
  (check "TiCDC --addr default" ticdc.cfg.address "127.0.0.1:8300")
  (check "TiCDC server binds it" (contains "'--addr=127.0.0.1:8300'" ticdcUnits.ticdc.serviceConfig.ExecStart) true)
  (check "cdcmon CDCMON_LISTEN default" cdcmon.cfg.settings.CDCMON_LISTEN "127.0.0.1:9102")
  # Class guard: every flag that picks a bind address, and whose upstream default is a wildcard
  # or a non-loopback guess, is passed with a loopback value. The TiDB status port was missed
  # once (`-status-host` defaults to all interfaces, pingcap/tidb cmd/tidb-server/main.go @
  # 00da65f5) although `-host` was set: a new bind flag goes in this table.
  (check "every bind address of PD, TiKV, TiDB and TiCDC is loopback by default"
    (builtins.concatMap (
      u:
      builtins.filter (flag: !(contains "'${flag}=(http://)?127\\.0\\.0\\.1[:']" allUnits.${u}.serviceConfig.ExecStart)) bindFlags.${u}
    ) (builtins.attrNames bindFlags))
    [ ]
  )

  # ---- no Requires= on a unit that restarts (16.3) -----------------------------------------
  (check "no unit of these modules has Requires=" (builtins.filter (n: (allUnits.${n}.requires or [ ]) != [ ]) unitNames) [ ])
  (check "TiKV and TiDB want (not require) their dependencies" [
    tidbUnits.tidb-tikv.wants
    tidbUnits.tidb-server.wants
  ] [
    [ "tidb-pd.service" ]
    [ "tidb-pd.service" "tidb-tikv.service" ]
  ])
  (check "TiKV and TiDB wait for their dependencies' status URLs before starting" [
    tidbUnits.tidb-tikv.serviceConfig.ExecStartPre
    tidbUnits.tidb-server.serviceConfig.ExecStartPre
  ] [
    [ "/nix/store/00000000000000000000000000000000-wait-for-pd" ]
    [
      "/nix/store/00000000000000000000000000000000-wait-for-pd"
      "/nix/store/00000000000000000000000000000000-wait-for-tikv"
    ]
  ])
  (check "TiCDC waits for PD" ticdcUnits.ticdc.serviceConfig.ExecStartPre [
    "/nix/store/00000000000000000000000000000000-wait-for-pd-0"
  ])
  (check "every restarting unit has RestartMode=direct and a bounded backoff"
    (builtins.filter (
      n:
      let
        sc = allUnits.${n}.serviceConfig;
      in
      (sc.Restart or "no") != "no" && ((sc.RestartMode or "normal") != "direct" || !(sc ? RestartSec))
    ) unitNames)
    [ ]
  )
  (check "units that restart" (builtins.filter (n: (allUnits.${n}.serviceConfig.Restart or "no") != "no") unitNames) [
    "cdcmon"
    "cdcmon-db-init"
    "ticdc"
    "ticdc-changefeed-app-cdc"
    "tidb-pd"
    "tidb-server"
    "tidb-tikv"
  ])

  # ---- changefeed policy (16.2) -------------------------------------------------------------
  (check "ifUnrecoverable defaults to fail in the plain module" ticdcFeedDefaults.ifUnrecoverable "fail")
  (check "the changefeed oneshot passes the policy and retries inside" [
    (contains "'--if-unrecoverable=fail'" ticdcUnits.ticdc-changefeed-app-cdc.script)
    (contains "while :; do" ticdcUnits.ticdc-changefeed-app-cdc.script)
    (contains "-eq 3 ] && exit 3" ticdcUnits.ticdc-changefeed-app-cdc.script)
  ] [ true true true ])
  (check "exit status 3 is never retried by systemd" ticdcUnits.ticdc-changefeed-app-cdc.serviceConfig.RestartPreventExitStatus 3)
  (check "the changefeed wants TiCDC" ticdcUnits.ticdc-changefeed-app-cdc.wants [ "ticdc.service" ])
  # Class guard: a oneshot that retries inside must outlive its loop's last attempt, or systemd
  # kills it mid-attempt (it had 5 min for a 240 s budget of 180 s attempts).
  (check "the changefeed oneshot's start timeout outlives its retry loop"
    (
      let
        feed = ticdcUnits.ticdc-changefeed-app-cdc;
        timeout = builtins.fromJSON (builtins.head (builtins.match "([0-9]+)s" feed.serviceConfig.TimeoutStartSec));
        wait = builtins.fromJSON feed.environment.CDCMON_WAIT_TIMEOUT_SECS;
      in
      [
        (timeout > stackLib.retryBudgetSecs + wait + 90 + 30 + stackLib.retryMaxDelaySecs)
        (contains "deadline=[$][(][(] [$][(]date [+]%s[)] [+] ${toString stackLib.retryBudgetSecs} [)][)]" feed.script)
      ]
    )
    [ true true ]
  )

  # ---- avro + integrity wiring (issue 12) ----------------------------------------------------
  (check "the default changefeed command is canal-json and passes no avro/integrity flag" (
    let
      script = ticdcUnits.ticdc-changefeed-app-cdc.script;
    in
    [
      (has "'--sink-uri=${stackLib.sinkUri { }}'" script)
      (has "protocol=canal-json" script)
      (has "--schema-registry" script)
      (has "--topic-rule" script)
      (has "--integrity-check-level" script)
      (has "--corruption-handle-level" script)
    ]
  ) [ true true false false false false ])
  (check "the default configuration passes every assertion" (failed ticdc ++ failed cdcmon) [ ])
  (check "an avro + correctness changefeed evaluates, asserts nothing, and passes every flag" (
    let
      script = (units ticdcAvro).ticdc-changefeed-app-cdc.script;
    in
    [
      (failed ticdcAvro)
      (has "'--sink-uri=${stackLib.sinkUri { protocol = "avro"; }}'" script)
      (has "protocol=avro&enable-tidb-extension=true&avro-decimal-handling-mode=string&avro-bigint-unsigned-handling-mode=string" script)
      (has "'--schema-registry=${registryUrl}'" script)
      (has "'--topic-rule=tidb_{schema}_{table}'" script)
      (has "'--integrity-check-level=correctness'" script)
      (has "--corruption-handle-level" script)
    ]
  ) [ [ ] true true true true true false ])
  (check "avro without a schema registry fails one assertion that names the option" (
    map (m: has "services.ticdc.changefeeds.app-cdc.schemaRegistry" m) (failed (avroFeed { protocol = "avro"; }))
  ) [ true ])
  (check "a registry URL in the sink URI is enough for avro" (failed (avroFeed {
    protocol = "avro";
    sinkUri = "kafka://127.0.0.1:9092/app_cdc?protocol=avro&schema-registry=http://r:8081&enable-tidb-extension=true";
  })) [ ])
  (check "an own avro sinkUri without the string handling modes fails an assertion under correctness" (
    let
      uri = "kafka://127.0.0.1:9092/app_cdc?protocol=avro&enable-tidb-extension=true";
      feed = extra: failed (avroFeed ({
        protocol = "avro";
        schemaRegistry = registryUrl;
        sinkUri = uri + extra;
      } // { integrity.checkLevel = "correctness"; }));
    in
    [
      (map (m: has "avro-decimal-handling-mode=string" m) (feed ""))
      (feed "&avro-decimal-handling-mode=string&avro-bigint-unsigned-handling-mode=string")
    ]
  ) [ [ true ] [ ] ])
  (check "a registry with user:password@ is refused (it would be in the store)" (
    map (m: has "user:password@" m) (failed (avroFeed {
      protocol = "avro";
      schemaRegistry = "https://cdc:secret@registry.internal:8081";
    }))
  ) [ true ])
  (check "a registry on a canal-json changefeed is refused" (
    map (m: has "only for protocol avro" m) (failed (avroFeed { schemaRegistry = registryUrl; }))
  ) [ true ])
  (check "protocol and a sinkUri naming another protocol are refused" (
    builtins.any (m: has "sinkUri says a protocol other than" m) (failed (avroFeed {
      protocol = "avro";
      schemaRegistry = registryUrl;
      sinkUri = stackLib.sinkUri { };
    }))
  ) true)
  (check "the consumer's default command line is unchanged, with no credential" [
    cdcmonUnits.cdcmon.serviceConfig.ExecStart
    (cdcmonUnits.cdcmon.serviceConfig ? LoadCredential)
  ] [ "/nix/store/00000000000000000000000000000000-cdcmon/bin/cdcmon consume" false ])
  (check "an avro consumer gets the registry flags and its password as a credential" [
    (failed cdcmonAvro)
    (units cdcmonAvro).cdcmon.serviceConfig.ExecStart
    (units cdcmonAvro).cdcmon.serviceConfig.LoadCredential
  ] [
    [ ]
    ''"/nix/store/00000000000000000000000000000000-cdcmon/bin/cdcmon" "consume" "--schema-registry-url=${registryUrl}" "--schema-registry-user=cdcmon" --schema-registry-password-file=%d/schema-registry-password''
    [ "schema-registry-password:/run/secrets/schema-registry-password" ]
  ])
  # Audit B2 #2: systemd expands %specifiers and $VARS in Exec lines whatever the shell quoting;
  # user-supplied values are escaped for systemd, the credential path's %d is not.
  (check "systemd specifiers and variables in user-supplied values reach cdcmon as written" [
    (units (cdcmonWith {
      url = "http://registry.internal:8081/a%20b";
      user = "svc$USER%h";
      passwordFile = "/run/secrets/pw";
    })).cdcmon.serviceConfig.ExecStart
    (units (evalAt ../../modules/cdcmon.nix [ "services" "cdcmon" ] {
      enable = true;
      dbInit = {
        enable = true;
        tidbUrl = "mysql://root@127.0.0.1:4000/?x=%n$HOME";
        appPasswordFile = "/run/secrets/app-password";
      };
    })).cdcmon-db-init.serviceConfig.ExecStart
  ] [
    ''"/nix/store/00000000000000000000000000000000-cdcmon/bin/cdcmon" "consume" "--schema-registry-url=http://registry.internal:8081/a%%20b" "--schema-registry-user=svc$$USER%%h" --schema-registry-password-file=%d/schema-registry-password''
    ''"/nix/store/00000000000000000000000000000000-cdcmon/bin/cdcmon" "db" "init" "--tidb-url=mysql://root@127.0.0.1:4000/?x=%%n$$HOME" --app-password-file=%d/app-password''
  ])
  (check "the escapeShellArg stub behaves like nixpkgs' (its documented examples)" [
    (lib.escapeShellArg "esc'ape\nme")
    (lib.escapeShellArgs [ "one" "two three" "four'five" ])
    (lib.escapeShellArg "/nix/store/x-y/bin/z")
  ] [ "'esc'\\''ape\nme'" "one 'two three' 'four'\\''five'" "/nix/store/x-y/bin/z" ])
  (check "the escapeSystemdExecArgs stub behaves like nixpkgs' utils.nix" (utils.escapeSystemdExecArgs [
    "a b"
    "50%"
    "$X"
    ''q"''
  ]) ''"a b" "50%%" "$$X" "q\""'')
  (check "registry secrets in the store, half a basic auth, or a password in the URL are refused" (
    map (r: builtins.length (failed (cdcmonWith r))) [
      {
        url = registryUrl;
        user = "cdcmon";
        passwordFile = "/nix/store/00000000000000000000000000000000-pw";
      }
      {
        url = registryUrl;
        user = "cdcmon";
        passwordFile = null;
      }
      {
        url = null;
        user = "cdcmon";
        passwordFile = "/run/secrets/pw";
      }
      {
        url = "http://cdcmon:pw@registry.internal:8081";
        user = null;
        passwordFile = null;
      }
    ]
  ) [ 1 1 1 1 ])

  (check "db init turns on TiDB's row checksum only when asked" [
    (has "--row-checksum" cdcmonUnits.cdcmon-db-init.serviceConfig.ExecStart)
    (has " --row-checksum" (units (evalAt ../../modules/cdcmon.nix [ "services" "cdcmon" ] {
      enable = true;
      dbInit = {
        enable = true;
        appPasswordFile = "/run/secrets/app-password";
        rowChecksum = true;
      };
    })).cdcmon-db-init.serviceConfig.ExecStart)
  ] [ false true ])

  # ---- modules/stack.nix protocol wiring (audit B2 #4, #6, #11) ----------------------------
  (check "the canal-json stack: no assertion, app_cdc, no registry, smoke on" [
    stackCanal.failed
    stackCanal.config.services.cdcmon.settings.CDCMON_TOPIC
    stackCanal.config.services.cdcmon.schemaRegistry.url
    stackCanal.config.services.cdcmon.smoke.enable
    (failed stackCanal.ticdc ++ failed stackCanal.cdcmon)
    (has "protocol=canal-json" (units stackCanal.ticdc).ticdc-changefeed-app-cdc.script)
    ((units stackCanal.cdcmon).cdcmon-smoke != { })
  ] [ [ ] "app_cdc" null true [ ] true true ])
  (check "the avro stack: per-table topics, the registry for TiCDC and cdcmon, checksums, no smoke" [
    stackAvro.failed
    stackAvro.config.services.cdcmon.settings.CDCMON_TOPIC
    stackAvro.config.services.cdcmon.schemaRegistry.url
    stackAvro.config.services.cdcmon.dbInit.rowChecksum
    stackAvro.config.services.cdcmon.smoke.enable
    (failed stackAvro.ticdc ++ failed stackAvro.cdcmon)
    (has "'--schema-registry=${registryUrl}'" (units stackAvro.ticdc).ticdc-changefeed-app-cdc.script)
    (has "'--integrity-check-level=correctness'" (units stackAvro.ticdc).ticdc-changefeed-app-cdc.script)
    (has ''"--schema-registry-url=${registryUrl}"'' (units stackAvro.cdcmon).cdcmon.serviceConfig.ExecStart)
    (has " --row-checksum" (units stackAvro.cdcmon).cdcmon-db-init.serviceConfig.ExecStart)
    # mkIf false: the module system leaves no unit (unIf gives { }).
    ((units stackAvro.cdcmon).cdcmon-smoke != { })
  ] [ [ ] "^tidb_app_.*" registryUrl true false [ ] true true true true false ])
  (check "an avro stack without a registry fails its assertion" (
    map (m: has "services.cdcmon-stack.schemaRegistry.url" m) (evalStack (stackBase // { protocol = "avro"; })).failed
  ) [ true ])

  # ---- event log rotation (16.8) -----------------------------------------------------------
  (check "cdcmon rotates its event log by default" [
    cdcmon.cfg.settings.CDCMON_EVENT_LOG_MAX_BYTES
    cdcmon.cfg.settings.CDCMON_EVENT_LOG_KEEP
    cdcmon.cfg.settings.CDCMON_EVENT_LOG_MAX_AGE_SECS
  ] [ "268435456" "8" "0" ])
]
