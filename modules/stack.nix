# The whole cdcmon stack on one NixOS machine: our modules (TiDB cluster, TiCDC, cdcmon) wired
# to the nixpkgs modules services.apache-kafka, services.elasticsearch, services.filebeat,
# services.prometheus and services.grafana. Every port comes from nix/ports.nix and every
# generated setting from nix/lib/stack.nix (tested without nixpkgs by scripts/check-nix.sh).
# Option names used below were checked against nixpkgs sources: see docs/nix.md.
# Every listener binds loopback unless `listenAddress` widens it (only nix/vm.nix does), and the
# systemd dependency graph is nix/lib/stack.nix `units` (Wants= + readiness, RestartMode=direct;
# never Requires= on a restarting unit). Operations: docs/operations.md.
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
    getExe'
    optional
    mkDefault
    ;
  cfg = config.services.cdcmon-stack;
  ports = import ../nix/ports.nix;
  stack = import ../nix/lib/stack.nix { inherit ports; };
  helpers = import ./lib.nix { inherit lib pkgs; };
  str = toString;

  secretsDir = "/var/lib/cdcmon-secrets";
  template = builtins.fromJSON (builtins.readFile cfg.elasticsearch.indexTemplate);
  esUrl = "http://127.0.0.1:${str ports.elasticsearch}";
  kafkaTopics = getExe' config.services.apache-kafka.package "kafka-topics.sh";
  rulesDir = ../monitoring/prometheus/rules;
  repoRuleFiles = map (f: rulesDir + "/${f}") (
    builtins.filter (lib.hasSuffix ".yml") (builtins.attrNames (builtins.readDir rulesDir))
  );
  # Units the smoke test needs up; each is "active" only once ready (probes / oneshots).
  stackUnits = [
    "tidb-server.service"
    "ticdc.service"
    "ticdc-changefeed-${stack.changefeedId}.service"
    "cdcmon-db-init.service"
    "cdcmon.service"
    "elasticsearch.service"
    "cdcmon-es-template.service"
    "filebeat.service"
    "prometheus.service"
    "grafana.service"
  ];
  svc = name: "${name}.service";
  wiring = stack.protocolWiring {
    inherit (cfg) protocol;
    schemaRegistryUrl = cfg.schemaRegistry.url;
    inherit (cfg.integrity) checkLevel corruptionHandleLevel;
  };
  # Exposure check (issue 16.4): host ports opened by openFirewall that answer without any
  # authentication, with the reason, for the assertion message.
  exposedUnauthenticated =
    lib.filterAttrs (port: _: builtins.elem (lib.toInt port) stack.forwardedPorts) stack.unauthenticatedPorts
    // lib.optionalAttrs (cfg.grafana.adminPasswordFile == null) {
      "${str ports.grafana}" = "Grafana: admin/admin (no adminPasswordFile)";
    };
  grafanaCfg = config.services.grafana;
  grafanaDb = grafanaCfg.settings.database;
  # Grafana sets admin_password only when it first creates the admin user (issue 16.6); later
  # starts reset it to the credential with Grafana's own CLI (grafana/grafana
  # pkg/cmd/grafana-cli/commands/commands.go: `admin reset-admin-password --password-from-stdin`,
  # `--user-id` default 1). On the very first start there is no database yet and the server
  # creates the user with the configured password itself.
  # The nixpkgs unit passes its generated config.ini to the server only (`grafana server
  # -homepath dataDir -config <store path>`; nixos/modules/services/monitoring/grafana.nix @
  # 88c82ee3), and that file is not an option we can read. With `--homepath` alone the CLI
  # loads conf/defaults.ini (linked there by the unit's preStart), whose database is
  # `data/grafana.db` under the home path: the server's only while `settings.database.path`
  # keeps its default. So the CLI is pointed at the server's database explicitly through
  # Grafana's GF_<SECTION>_<KEY> environment overrides, and the existence check reads the same
  # option. Only sqlite3 is handled: for another database the CLI would need its credentials.
  grafanaResetAdminPassword = pkgs.writeShellScript "grafana-reset-admin-password" ''
    set -eu
    if [ ${lib.escapeShellArg grafanaDb.type} != sqlite3 ]; then
      echo "grafana: WARNING: database type ${grafanaDb.type}: adminPasswordFile is applied only when Grafana creates the admin user; reset it by hand after changing it" >&2
      exit 0
    fi
    if [ ! -e ${lib.escapeShellArg grafanaDb.path} ]; then
      echo "grafana: first start, the server creates admin with the configured password"
      exit 0
    fi
    export GF_DATABASE_TYPE=sqlite3 GF_DATABASE_PATH=${lib.escapeShellArg grafanaDb.path}
    if ! ${getExe' grafanaCfg.package "grafana"} cli --homepath ${grafanaCfg.dataDir} \
        admin reset-admin-password --password-from-stdin < "$CREDENTIALS_DIRECTORY/admin-password"; then
      echo "grafana: WARNING: could not apply adminPasswordFile; the stored admin password is unchanged" >&2
      exit 1
    fi
  '';
in
{
  imports = [
    ./tidb.nix
    ./ticdc.nix
    ./cdcmon.nix
    # Service logs (issue 14): the stack units' journal -> stack-logs-* (second Filebeat input).
    ./stack-logs.nix
  ];

  options.services.cdcmon-stack = {
    enable = mkEnableOption "the complete cdcmon stack (TiDB, TiCDC, Kafka, cdcmon, Elasticsearch, Filebeat, Prometheus, Grafana)";

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Open the host-facing ports (${lib.concatMapStringsSep ", " str stack.forwardedPorts}).
        Most of them answer without authentication, so this also needs
        `allowUnauthenticatedExposure` (an assertion says which ports and why) and a
        `listenAddress` other than loopback to be of any use.
      '';
    };

    allowUnauthenticatedExposure = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Acknowledge that `openFirewall` exposes endpoints without authentication (TiDB root
        without a password, TiCDC's changefeed API, Kafka PLAINTEXT, Elasticsearch with security
        off, Prometheus, cdcmon metrics). Only for a throwaway machine (nix/vm.nix sets it).
      '';
    };

    listenAddress = mkOption {
      type = types.str;
      default = stack.listenAddress;
      example = stack.vmListenAddress;
      description = ''
        Address every host-facing listener binds (TiDB, TiCDC, Kafka EXTERNAL, cdcmon,
        Elasticsearch, Prometheus, Grafana); each service's own option can still override it.
        Loopback by default: nothing in the stack authenticates. nix/vm.nix sets `0.0.0.0`
        because QEMU's port-forward reaches the guest NIC, not its loopback.
      '';
    };

    appPasswordFile = mkOption {
      type = types.str;
      default = "${secretsDir}/app-password";
      description = "Password of the `app` database user. Generated on first boot (root-only, 0600) if the default path does not exist.";
    };

    protocol = mkOption {
      type = types.enum [
        "canal-json"
        "open-protocol"
        "debezium"
        "simple"
        "avro"
      ];
      default = "canal-json";
      description = ''
        TiCDC's Kafka protocol for the stack's changefeed. `avro` needs `schemaRegistry.url`
        (the stack runs no registry: nixpkgs has no module for one), puts one table per topic
        (`tidb_app_<table>`) and makes cdcmon subscribe to `^tidb_app_.*`. See
        docs/protocols.md, "Running the stack on Avro".
      '';
    };

    schemaRegistry = {
      url = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "http://registry.internal:8081";
        description = "Confluent schema registry for `protocol = \"avro\"`, reached by TiCDC and cdcmon alike (no `user:password@`: it would be in the Nix store).";
      };
      user = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "cdcmon's registry basic-auth user (with `passwordFile`). TiCDC's registry access cannot carry credentials from here.";
      };
      passwordFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "File with cdcmon's registry password, passed with LoadCredential (never copied into the store).";
      };
    };

    integrity = {
      checkLevel = mkOption {
        type = types.enum [
          "none"
          "correctness"
        ];
        default = "none";
        description = ''
          `correctness`: the changefeed sends TiDB's row checksums (simple, avro), `db init`
          turns on `tidb_enable_row_level_checksum`, and cdcmon verifies every row
          (`cdc_checksum_*` metrics).
        '';
      };
      corruptionHandleLevel = mkOption {
        type = types.enum [
          "warn"
          "error"
        ];
        default = "warn";
        description = "What TiCDC does when its own checksum check fails: `warn` (flag and send) or `error` (stop the changefeed).";
      };
    };

    kafka.externalHost = mkOption {
      type = types.str;
      default = "127.0.0.1";
      example = "kafka.example.internal";
      description = ''
        Host advertised for Kafka's EXTERNAL listener (port ${str ports.kafkaExternal}): the
        address clients outside the machine are told to connect to. The default, the literal
        127.0.0.1 (not `localhost`, which may resolve to ::1 and miss QEMU's IPv4-only forward),
        suits clients on the VM's host; set a name remote clients can reach otherwise.
      '';
    };

    kafka.clusterId = mkOption {
      type = types.str;
      # base64url("cdcmon-stack-kfk"): 16 bytes, as `kafka-storage.sh random-uuid` would give.
      default = "Y2RjbW9uLXN0YWNrLWtmaw";
      description = "KRaft cluster id used to format the log directory on first start.";
    };

    elasticsearch = {
      package = mkPackageOption pkgs "elasticsearch8" {
        extraDescription = ''
          Elasticsearch 8's licence differs between nixpkgs revisions (Elastic License 2.0,
          unfree; newer revisions `OR [ agpl3Only elastic20 sspl ]`): the flake's pkgs allow
          exactly pname "elasticsearch" either way. It pairs with filebeat8 (same major); see
          docs/nix.md.
        '';
      };
      indexTemplate = mkOption {
        type = types.path;
        default = ../monitoring/elasticsearch/cdc-events-template.json;
        description = "Index template for the `${stack.esIndexPattern}` indices, loaded before Filebeat starts.";
      };
    };

    prometheus.ruleFiles = mkOption {
      type = types.listOf types.path;
      default = repoRuleFiles;
      defaultText = lib.literalExpression "monitoring/prometheus/rules/*.yml";
      description = "Alert/recording rule files (checked by promtool at build time).";
    };

    grafana = {
      dashboards = mkOption {
        type = types.path;
        default = ../monitoring/grafana/dashboards;
        description = "Directory of dashboard JSON files provisioned into Grafana.";
      };
      adminPasswordFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "File with Grafana's admin password. null keeps admin/admin (with a warning).";
      };
      secretKeyFile = mkOption {
        type = types.str;
        default = "${secretsDir}/grafana-secret-key";
        description = "File with Grafana's secret_key (no default since NixOS 26.05). Generated on first boot if the default path does not exist.";
      };
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = lib.all helpers.notInStore (
          [
            cfg.appPasswordFile
            cfg.grafana.secretKeyFile
          ]
          ++ lib.optional (cfg.grafana.adminPasswordFile != null) cfg.grafana.adminPasswordFile
        );
        message = "services.cdcmon-stack secret files must not be in the Nix store (world-readable).";
      }
      {
        # An assertion rather than a warning: a warning scrolls past in a rebuild, while these
        # ports hand out the whole database (issue 16.4). The opt-out is one explicit line.
        assertion = !cfg.openFirewall || cfg.allowUnauthenticatedExposure;
        message = ''
          services.cdcmon-stack.openFirewall would expose endpoints without authentication:
          ${lib.concatStringsSep "\n  " (lib.mapAttrsToList (port: why: "${port}: ${why}") exposedUnauthenticated)}
          Set services.cdcmon-stack.allowUnauthenticatedExposure = true only on a throwaway
          machine (nix/vm.nix does); otherwise keep openFirewall = false and reach the services
          through an SSH tunnel or a reverse proxy with authentication.
        '';
      }
    ]
    ++ wiring.assertions;
    warnings = optional (cfg.grafana.adminPasswordFile == null) ''
      services.cdcmon-stack: Grafana keeps the default admin/admin login. Set
      services.cdcmon-stack.grafana.adminPasswordFile for anything but a local test VM.
    '';

    networking.firewall.allowedTCPPorts = mkIf cfg.openFirewall stack.forwardedPorts;

    # ---- our services -----------------------------------------------------------------------
    services.tidb-cluster.enable = true;

    services.tidb-cluster.tidb.host = mkDefault cfg.listenAddress;

    services.ticdc = {
      enable = true;
      address = mkDefault "${cfg.listenAddress}:${str ports.ticdc}";
      # A throwaway dev stack: after more than gc-ttl (24 h) of downtime the changefeed can never
      # resume; recreate it from now (loudly: the gap is lost) instead of stalling forever.
      # Production keeps the module default `fail` (docs/operations.md).
      changefeeds.${stack.changefeedId} = {
        ifUnrecoverable = "recreate";
        inherit (wiring.changefeed) protocol schemaRegistry integrity;
      };
    };

    services.cdcmon = {
      enable = true;
      settings.CDCMON_LISTEN = mkDefault "${cfg.listenAddress}:${str ports.cdcmon}";
      # canal-json: the module's own default topic; avro: the per-table topics' regex.
      settings.CDCMON_TOPIC = mkDefault wiring.consumerTopic;
      schemaRegistry = {
        # mkDefault like the settings above: a host may point cdcmon at another registry
        # address than TiCDC's (audit B2 #11).
        url = mkDefault wiring.consumerRegistryUrl;
        user = mkDefault cfg.schemaRegistry.user;
        passwordFile = mkDefault cfg.schemaRegistry.passwordFile;
      };
      dbInit = {
        enable = true;
        appPasswordFile = cfg.appPasswordFile;
        inherit (wiring) rowChecksum;
      };
      smoke = {
        # `cdcmon smoke` follows its marker row on one topic (CDCMON_TOPIC, app_cdc); an avro
        # stack writes each table to its own tidb_app_<table> topic and nothing to app_cdc, so
        # the smoke test could only fail there: off by default on avro (audit B2 #6,
        # docs/protocols.md).
        enable = mkDefault (cfg.protocol != "avro");
        grafanaPasswordFile = cfg.grafana.adminPasswordFile;
      };
    };

    # ---- Kafka (nixpkgs services.apache-kafka, KRaft single node) ---------------------------
    services.apache-kafka = {
      enable = true;
      inherit (cfg.kafka) clusterId;
      formatLogDirs = true;
      settings = stack.kafkaSettings {
        externalListenHost = cfg.listenAddress;
        inherit (cfg.kafka) externalHost;
      };
      jvmOptions = [
        "-Xms512m"
        "-Xmx512m"
        # Kafka 4 logs through Log4j 2; the module's -Dlog4j.configuration (Log4j 1) is ignored.
        (stack.kafkaLog4j2Option (pkgs.writeText "kafka-log4j2.properties" stack.kafkaLog4j2Properties))
      ];
    };

    # ---- Elasticsearch (nixpkgs services.elasticsearch) ------------------------------------
    services.elasticsearch = {
      enable = true;
      inherit (cfg.elasticsearch) package;
      # Loopback unless listenAddress widens it (nix/vm.nix, for QEMU's forward to the guest NIC).
      listenAddress = mkDefault cfg.listenAddress;
      port = ports.elasticsearch;
      tcp_port = ports.elasticsearchTransport;
      # Not `single_node = true`: for every ES >= 7 the nixpkgs module then also writes
      # `gateway.auto_import_dangling_indices: true` (nixos/modules/services/search/
      # elasticsearch.nix, newest stored copy), a setting Elastic's 8.0 breaking changes list as
      # removed with "an error on startup". Single-node discovery goes into extraConf instead.
      single_node = false;
      # Plain HTTP without auth inside a throwaway VM (ES 8 enables TLS+auth by default);
      # no ML node (native controller, memory) for a log index. The module writes
      # `network.host: <listenAddress>`, which also binds the transport port (9300) unless
      # `transport.host` says otherwise ("Defaults to the address given by network.host",
      # Elasticsearch networking settings): a single node has no peers, so it stays on loopback
      # when nix/vm.nix widens the HTTP port.
      extraConf = ''
        discovery.type: single-node
        xpack.security.enabled: false
        xpack.ml.enabled: false
        transport.host: 127.0.0.1
      '';
      extraJavaOptions = [
        "-Xms1g"
        "-Xmx1g"
      ];
    };

    # ---- Filebeat (nixpkgs services.filebeat): event log -> Elasticsearch -------------------
    services.filebeat = {
      enable = true;
      package = pkgs.filebeat8;
      inputs.cdcmon-events = stack.filebeatInput { };
      settings = {
        output.elasticsearch = stack.filebeatOutput { };
        setup = stack.filebeatSetup;
      };
    };

    # ---- Prometheus (nixpkgs services.prometheus) -----------------------------------------
    services.prometheus = {
      enable = true;
      # nixpkgs' default is 0.0.0.0.
      listenAddress = mkDefault cfg.listenAddress;
      port = ports.prometheus;
      globalConfig = stack.prometheusGlobal;
      scrapeConfigs = stack.scrapeConfigs { };
      inherit (cfg.prometheus) ruleFiles;
    };

    # ---- Grafana (nixpkgs services.grafana) -----------------------------------------------
    services.grafana = {
      enable = true;
      settings = {
        server = {
          http_addr = mkDefault cfg.listenAddress;
          http_port = ports.grafana;
        };
        security = {
          admin_user = "admin";
          # Credentials below are loaded by systemd (LoadCredential) into
          # /run/credentials/grafana.service; Grafana reads them through its file provider.
          admin_password =
            if cfg.grafana.adminPasswordFile == null then
              "admin"
            else
              "$__file{/run/credentials/grafana.service/admin-password}";
          secret_key = "$__file{/run/credentials/grafana.service/secret-key}";
        };
        analytics.reporting_enabled = false;
      };
      provision = {
        enable = true;
        # The repo's file, as tested by tests/monitoring_dashboard.rs (uids the dashboards use).
        datasources.path = ../monitoring/grafana/provisioning/datasources/datasources.yml;
        dashboards.settings = {
          apiVersion = 1;
          providers = [
            {
              name = "cdcmon";
              options.path = cfg.grafana.dashboards;
            }
          ];
        };
      };
    };

    # ---- glue units -------------------------------------------------------------------------
    # The dependency graph (After=/Wants=/Requires=) for every unit of the stack comes from
    # nix/lib/stack.nix `units` (checked by nix/tests/eval-units.nix): Wants= plus readiness
    # waits, RestartMode=direct on everything that restarts, Requires= only on the secrets
    # generator, which never restarts.
    systemd.services = lib.mkMerge [
      (lib.mapAttrs (_: u: {
        after = map svc (u.wants ++ u.requires);
        wants = map svc u.wants;
        requires = map svc u.requires;
        serviceConfig = lib.optionalAttrs (u.restart != "no") { RestartMode = "direct"; };
      }) stack.units)
      {
        # Generate the secrets that have no user-provided file yet, on the machine, root-only.
        cdcmon-secrets = {
          description = "cdcmon stack: generate missing local secrets";
          wantedBy = [ "multi-user.target" ];
          serviceConfig = {
            Type = "oneshot";
            RemainAfterExit = true;
            StateDirectory = "cdcmon-secrets";
            StateDirectoryMode = "0700";
            UMask = "0077";
          };
          path = [ pkgs.coreutils ];
          script = ''
            for f in ${secretsDir}/app-password ${secretsDir}/grafana-secret-key; do
              [ -s "$f" ] || head -c 24 /dev/urandom | base64 | tr -d '/+=\n' > "$f"
            done
          '';
        };

        # Kafka: nixpkgs' unit has no Restart= (issue 16.7). SIGTERM exits 143, which the
        # nixpkgs unit already counts as success, so on-failure never fights a clean stop.
        apache-kafka.serviceConfig = stack.restartBackoff // {
          Restart = stack.units.apache-kafka.restart;
        };

        # Explicit topic creation (partition count and replication are ours, not TiCDC's
        # auto-create). `--if-not-exists` makes it idempotent; the loop waits for the broker.
        cdcmon-kafka-topic = {
          description = "Create Kafka topic ${stack.topic}";
          wantedBy = [ "multi-user.target" ];
          serviceConfig = stack.restartBackoff // {
            Type = "oneshot";
            RemainAfterExit = true;
            DynamicUser = true;
            Restart = stack.units.cdcmon-kafka-topic.restart;
            # Outlives the retry loop (nix/lib/stack.nix oneshotTimeoutSecs).
            TimeoutStartSec = "${str (stack.oneshotTimeoutSecs stack.kafkaTopicAttemptSecs)}s";
          };
          script = stack.retryScript {
            command = lib.escapeShellArgs [
              kafkaTopics
              "--bootstrap-server"
              "127.0.0.1:${str ports.kafka}"
              "--create"
              "--if-not-exists"
              "--topic"
              stack.topic
              "--partitions"
              "1"
              "--replication-factor"
              "1"
            ];
          };
        };

        # Load the repo's index template with the API its format needs, before Filebeat writes.
        cdcmon-es-template = helpers.esTemplateService {
          inherit stack;
          unit = "cdcmon-es-template";
          description = "Load the ${stack.esTemplateName} Elasticsearch index template";
          templateFile = cfg.elasticsearch.indexTemplate;
          url = "${esUrl}/${stack.esTemplateApi template}/${stack.esTemplateName}";
        };

        grafana.serviceConfig = {
          LoadCredential = [
            "secret-key:${cfg.grafana.secretKeyFile}"
          ]
          ++ optional (cfg.grafana.adminPasswordFile != null) "admin-password:${cfg.grafana.adminPasswordFile}";
          # `-`: a failed reset is logged loudly but does not keep Grafana down.
          ExecStartPre = lib.mkIf (cfg.grafana.adminPasswordFile != null) (
            lib.mkAfter [ "-${grafanaResetAdminPassword}" ]
          );
        };

        # Only with the smoke unit itself: ordering alone would create an empty unit.
        cdcmon-smoke = mkIf config.services.cdcmon.smoke.enable {
          after = stackUnits;
          wants = stackUnits;
        };
      }
    ];
  };
}
