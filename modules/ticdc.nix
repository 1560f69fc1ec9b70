# TiCDC server (`cdc server`) plus one oneshot per declared changefeed, which runs
# `cdcmon changefeed ensure` (create if absent, then wait for state `normal`; idempotent, so a
# restart never fails on "changefeed already exists"). Dependencies are Wants= + readiness
# waits, never Requires= on a restarting unit (nix/lib/stack.nix `units`, issue 16.3).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    mkEnableOption
    mkPackageOption
    mkOption
    mkIf
    types
    getExe
    mapAttrs'
    nameValuePair
    ;
  cfg = config.services.ticdc;
  ports = import ../nix/ports.nix;
  stack = import ../nix/lib/stack.nix { inherit ports; };
  helpers = import ./lib.nix { inherit lib pkgs; };
  toml = pkgs.formats.toml { };
  apiUrl = "http://${cfg.advertiseAddress}";
  protocols = [
    "canal-json"
    "open-protocol"
    "debezium"
    "simple"
    "avro"
  ];
  # The URI `ensure` gets, and the protocol it names (ensure reads `protocol=` from it too).
  sinkUriOf = feed: if feed.sinkUri == null then stack.sinkUri { inherit (feed) protocol; } else feed.sinkUri;
  uriHas = re: uri: builtins.match ".*[?&]${re}([&#].*)?" uri != null;
  # TiCDC lower-cases protocol= (tiflow pkg/config/sink_protocol.go:52 @ release-8.5).
  isAvro = feed: uriHas "protocol=[aA][vV][rR][oO]" (sinkUriOf feed);
  # Go strconv.ParseBool's true spellings: gin binds enable-tidb-extension with it.
  goTrue = "(1|t|T|TRUE|true|True)";
  # Per changefeed: [ { assertion; message; } ], each message naming the option to set.
  feedAssertions =
    id: feed:
    let
      opt = "services.ticdc.changefeeds.${id}";
    in
    [
      {
        assertion = uriHas "protocol=${feed.protocol}" (sinkUriOf feed);
        message = "${opt}.sinkUri says a protocol other than ${opt}.protocol = \"${feed.protocol}\"; make them agree (the URI's protocol= is what TiCDC uses).";
      }
      {
        assertion = !(isAvro feed) || feed.schemaRegistry != null || uriHas "schema-registry=[^&#]+" (sinkUriOf feed);
        message = "${opt}: protocol avro needs a Confluent schema registry: set ${opt}.schemaRegistry (e.g. \"http://registry.internal:8081\"). nixpkgs has no schema-registry service, so the stack does not run one.";
      }
      {
        # `ensure` refuses this before calling TiCDC (exit 3, not retried), as TiCDC would
        # (tiflow pkg/sink/codec/common/config.go:386-396 @ release-8.5); the stack URI for
        # protocol avro has all three, so only an own sinkUri can miss them (audit B2 #5).
        assertion =
          !(isAvro feed)
          || feed.integrity.checkLevel != "correctness"
          || (
            uriHas "enable-tidb-extension=${goTrue}" (sinkUriOf feed)
            && uriHas "avro-decimal-handling-mode=string" (sinkUriOf feed)
            && uriHas "avro-bigint-unsigned-handling-mode=string" (sinkUriOf feed)
          );
        message = "${opt}: avro with integrity.checkLevel = \"correctness\" needs enable-tidb-extension=true, avro-decimal-handling-mode=string and avro-bigint-unsigned-handling-mode=string in ${opt}.sinkUri (TiCDC refuses the changefeed otherwise).";
      }
      {
        assertion = feed.schemaRegistry == null || isAvro feed;
        message = "${opt}.schemaRegistry is only for protocol avro (protocol is ${feed.protocol}); `cdcmon changefeed ensure` refuses it otherwise.";
      }
      {
        assertion = feed.schemaRegistry == null || builtins.match "[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*@.*" feed.schemaRegistry == null;
        message = "${opt}.schemaRegistry must not carry user:password@: it would be copied into the world-readable Nix store and shown on the command line.";
      }
    ];
in
{
  options.services.ticdc = {
    enable = mkEnableOption "the TiCDC change-data-capture server";

    package = mkPackageOption pkgs "ticdc" {
      extraDescription = "nixpkgs has no TiCDC; the flake provides one built from PingCAP's release binaries (nix/ticdc.nix).";
    };

    pdEndpoints = mkOption {
      type = types.listOf types.str;
      default = [ "http://127.0.0.1:${toString ports.pdClient}" ];
      description = "PD client URLs (`--pd`).";
    };

    address = mkOption {
      type = types.str;
      default = "${stack.listenDefaults.ticdc}:${toString ports.ticdc}";
      description = ''
        Listen address of the open API and /metrics (`--addr`). Loopback by default: the open API
        is unauthenticated and creates changefeeds that can copy every table anywhere. Widen it
        (e.g. `0.0.0.0:${toString ports.ticdc}`) only behind a firewall or for a throwaway VM
        (nix/vm.nix does, for its port-forward).
      '';
    };

    advertiseAddress = mkOption {
      type = types.str;
      default = "127.0.0.1:${toString ports.ticdc}";
      description = "Address other captures and clients use (`--advertise-addr`); also the API the changefeed oneshots call.";
    };

    settings = mkOption {
      type = toml.type;
      default = { };
      description = "TiCDC server configuration (TOML, `--config`), see <https://docs.pingcap.com/tidb/stable/ticdc-server-config>.";
    };

    changefeedTool = mkPackageOption pkgs "cdcmon" {
      extraDescription = "Provides `cdcmon changefeed ensure`, used by the per-changefeed oneshots.";
    };

    changefeeds = mkOption {
      default = { };
      description = "Changefeeds to ensure; the attribute name is the changefeed id.";
      example = lib.literalExpression ''{ app-cdc = { }; }'';
      type = types.attrsOf (
        types.submodule {
          options.sinkUri = mkOption {
            type = types.nullOr types.str;
            default = null;
            description = ''
              TiCDC sink URI. null: the stack's Kafka topic with `protocol`
              (nix/lib/stack.nix `sinkUri`; for canal-json
              `${stack.sinkUri { }}`). A URI set here decides the protocol by its own
              `protocol=` parameter, which must then equal `protocol`.
            '';
          };
          options.protocol = mkOption {
            type = types.enum protocols;
            default = "canal-json";
            description = ''
              TiCDC Kafka protocol. `avro` needs `schemaRegistry` and puts one table per topic
              (`topicRule`); the consumer then subscribes with a regex (docs/protocols.md).
            '';
          };
          options.schemaRegistry = mkOption {
            type = types.nullOr types.str;
            default = null;
            example = "http://registry.internal:8081";
            description = ''
              Confluent schema registry URL as TiCDC reaches it (`changefeed ensure
              --schema-registry`, the changefeed's `sink.schema_registry`). Required for
              `avro`, refused otherwise. No `user:password@` in it: the URL lands in the Nix
              store and on the command line (an assertion checks).
            '';
          };
          options.topicRule = mkOption {
            type = types.str;
            default = stack.avroTopicRule;
            description = "Avro topic dispatcher (`--topic-rule`); must contain `{schema}` and `{table}`.";
          };
          options.integrity = {
            checkLevel = mkOption {
              type = types.enum [
                "none"
                "correctness"
              ];
              default = "none";
              description = ''
                The changefeed's `integrity.integrity_check_level`: `correctness` makes TiCDC send
                TiDB's row checksum with every row (simple, avro), which cdcmon verifies. TiDB
                must also have `tidb_enable_row_level_checksum = ON` (`cdcmon db init
                --row-checksum`, docs/protocols.md).
              '';
            };
            corruptionHandleLevel = mkOption {
              type = types.enum [
                "warn"
                "error"
              ];
              default = "warn";
              description = "`integrity.corruption_handle_level`: `warn` flags a corrupted row and sends it, `error` stops the changefeed.";
            };
          };
          options.ifUnrecoverable = mkOption {
            type = types.enum [
              "fail"
              "recreate"
            ];
            default = "fail";
            description = ''
              What `cdcmon changefeed ensure --if-unrecoverable` does with a changefeed that can
              never resume (state `failed`, e.g. ErrGCTTLExceeded / ErrSnapshotLostByGC after
              more than TiCDC's `gc-ttl`, 24 h by default, of downtime or lag):
              `fail` exits with status 3, which this unit does not retry
              (RestartPreventExitStatus=3), so a person decides; `recreate` deletes it and
              creates it again from now, with a loud warning: changes made in the gap are not
              captured. Production keeps `fail`, raises `gc-ttl` (`settings.gc-ttl`) and alerts
              on the checkpoint lag (monitoring/prometheus/rules/ticdc.rules.yml); see
              docs/operations.md.
            '';
          };
        }
      );
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.pdEndpoints != [ ];
        message = "services.ticdc.pdEndpoints must name at least one PD client URL.";
      }
    ]
    ++ lib.concatLists (lib.mapAttrsToList feedAssertions cfg.changefeeds);

    systemd.services = {
      ticdc = {
        description = "TiCDC server";
        wantedBy = [ "multi-user.target" ];
        after = [ "network.target" ];
        serviceConfig = helpers.hardening // stack.restartBackoff // {
          Type = "exec";
          # Readiness wait instead of Requires=: start once PD answers (bounded by
          # TimeoutStartSec; a timeout is a failure that Restart= retries).
          ExecStartPre = lib.imap0 (
            i: pd: helpers.waitForHttp "pd-${toString i}" "${pd}/pd/api/v1/health"
          ) cfg.pdEndpoints;
          ExecStart = lib.escapeShellArgs [
            (getExe cfg.package)
            "server"
            "--pd=${lib.concatStringsSep "," cfg.pdEndpoints}"
            "--addr=${cfg.address}"
            "--advertise-addr=${cfg.advertiseAddress}"
            "--data-dir=%S/ticdc"
            "--config=${toml.generate "ticdc.toml" cfg.settings}"
          ];
          # Ready = the v2 status API answers (it does once the capture has registered).
          ExecStartPost = helpers.waitForHttp "ticdc" "${apiUrl}/api/v2/status";
          StateDirectory = "ticdc";
          StateDirectoryMode = "0700";
          WorkingDirectory = "%S/ticdc";
          Restart = stack.units.ticdc.restart;
          # A restart goes straight back to "activating": units ordered after TiCDC keep
          # waiting instead of failing with result `dependency` (systemd >= 254).
          RestartMode = "direct";
          TimeoutStartSec = "5min";
          LimitNOFILE = 1000000;
        };
      };
    }
    // mapAttrs' (
      id: feed:
      nameValuePair "ticdc-changefeed-${id}" {
        description = "Ensure TiCDC changefeed ${id}";
        wantedBy = [ "multi-user.target" ];
        after = [ "ticdc.service" ];
        wants = [ "ticdc.service" ];
        # The retry loop keeps the start job pending while TiCDC or Kafka settle, so units
        # ordered after this one (db init) wait for the changefeed instead of racing it.
        # Exit status 3 = "cannot resume, policy `fail`": stop at once, no retry.
        script = stack.retryScript {
          command = lib.escapeShellArgs (
            [
            (getExe cfg.changefeedTool)
            "changefeed"
            "ensure"
            "--ticdc-url=${apiUrl}"
            "--changefeed-id=${id}"
            "--sink-uri=${sinkUriOf feed}"
            "--if-unrecoverable=${feed.ifUnrecoverable}"
          ]
          # Only what differs from `ensure`'s defaults, so a canal-json feed's command line is
          # what it always was.
          ++ lib.optionals (isAvro feed) (
            lib.optional (feed.schemaRegistry != null) "--schema-registry=${feed.schemaRegistry}"
            ++ [ "--topic-rule=${feed.topicRule}" ]
          )
          ++ lib.optional (feed.integrity.checkLevel != "none") "--integrity-check-level=${feed.integrity.checkLevel}"
          ++ lib.optional (feed.integrity.corruptionHandleLevel != "warn") "--corruption-handle-level=${feed.integrity.corruptionHandleLevel}"
          );
          stopOn = 3;
        };
        # The attempt length the start-job timeout is computed from (nix/lib/stack.nix).
        environment.CDCMON_WAIT_TIMEOUT_SECS = toString stack.changefeedWaitSecs;
        serviceConfig = helpers.hardening // stack.restartBackoff // {
          Type = "oneshot";
          RemainAfterExit = true;
          Restart = "on-failure";
          RestartMode = "direct";
          RestartPreventExitStatus = 3;
          # Outlives the retry loop (a 5 min timeout killed it in its second 180 s attempt).
          TimeoutStartSec = "${toString (stack.oneshotTimeoutSecs stack.changefeedAttemptSecs)}s";
        };
      }
    ) cfg.changefeeds;
  };
}
