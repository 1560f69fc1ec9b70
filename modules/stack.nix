# The whole cdcmon stack on one NixOS machine: our modules (TiDB cluster, TiCDC, cdcmon) wired
# to the nixpkgs modules services.apache-kafka, services.elasticsearch, services.filebeat,
# services.prometheus and services.grafana. Every port comes from nix/ports.nix and every
# generated setting from nix/lib/stack.nix (tested without nixpkgs by scripts/check-nix.sh).
# Option names used below were checked against nixpkgs sources: see docs/nix.md.
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
  # systemd dependencies in one line: after + requires.
  needs = units: {
    after = units;
    requires = units;
  };
in
{
  imports = [
    ./tidb.nix
    ./ticdc.nix
    ./cdcmon.nix
  ];

  options.services.cdcmon-stack = {
    enable = mkEnableOption "the complete cdcmon stack (TiDB, TiCDC, Kafka, cdcmon, Elasticsearch, Filebeat, Prometheus, Grafana)";

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the host-facing ports (${lib.concatMapStringsSep ", " str stack.forwardedPorts}).";
    };

    appPasswordFile = mkOption {
      type = types.str;
      default = "${secretsDir}/app-password";
      description = "Password of the `app` database user. Generated on first boot (root-only, 0600) if the default path does not exist.";
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
          Elasticsearch 8 is unfree (Elastic License 2.0): allow it with
          `nixpkgs.config.allowUnfreePredicate` (the flake's pkgs allow exactly pname
          "elasticsearch"). It pairs with filebeat8 (same major); see docs/nix.md.
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
    ];
    warnings = optional (cfg.grafana.adminPasswordFile == null) ''
      services.cdcmon-stack: Grafana keeps the default admin/admin login. Set
      services.cdcmon-stack.grafana.adminPasswordFile for anything but a local test VM.
    '';

    networking.firewall.allowedTCPPorts = mkIf cfg.openFirewall stack.forwardedPorts;

    # ---- our services -----------------------------------------------------------------------
    services.tidb-cluster.enable = true;

    services.ticdc = {
      enable = true;
      changefeeds.${stack.changefeedId} = { };
    };

    services.cdcmon = {
      enable = true;
      dbInit = {
        enable = true;
        appPasswordFile = cfg.appPasswordFile;
      };
      smoke = {
        enable = true;
        grafanaPasswordFile = cfg.grafana.adminPasswordFile;
      };
    };

    # ---- Kafka (nixpkgs services.apache-kafka, KRaft single node) ---------------------------
    services.apache-kafka = {
      enable = true;
      inherit (cfg.kafka) clusterId;
      formatLogDirs = true;
      settings = stack.kafkaSettings { };
      jvmOptions = [
        "-Xms512m"
        "-Xmx512m"
      ];
    };

    # ---- Elasticsearch (nixpkgs services.elasticsearch) ------------------------------------
    services.elasticsearch = {
      enable = true;
      inherit (cfg.elasticsearch) package;
      # QEMU hostfwd delivers to the guest NIC, so loopback-only would hide :9200 from the host.
      listenAddress = "0.0.0.0";
      port = ports.elasticsearch;
      tcp_port = ports.elasticsearchTransport;
      single_node = true;
      # Plain HTTP without auth inside a throwaway VM (ES 8 enables TLS+auth by default);
      # no ML node (native controller, memory) for a log index.
      extraConf = ''
        xpack.security.enabled: false
        xpack.ml.enabled: false
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
          http_addr = "0.0.0.0";
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
    systemd.services = {
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

      # Explicit topic creation (partition count and replication are ours, not TiCDC's
      # auto-create). `--if-not-exists` makes it idempotent; the loop waits for the broker.
      cdcmon-kafka-topic = needs [ "apache-kafka.service" ] // {
        description = "Create Kafka topic ${stack.topic}";
        wantedBy = [ "multi-user.target" ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          DynamicUser = true;
          TimeoutStartSec = "5min";
        };
        script = ''
          until ${kafkaTopics} --bootstrap-server 127.0.0.1:${str ports.kafka} --create --if-not-exists \
              --topic ${stack.topic} --partitions 1 --replication-factor 1; do
            sleep 2
          done
        '';
      };

      # Load the repo's index template with the API its format needs, before Filebeat writes.
      cdcmon-es-template = needs [ "elasticsearch.service" ] // {
        description = "Load the ${stack.esTemplateName} Elasticsearch index template";
        wantedBy = [ "multi-user.target" ];
        before = [ "filebeat.service" ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          DynamicUser = true;
          ExecStart = lib.escapeShellArgs [
            (lib.getExe pkgs.curl)
            "--silent"
            "--show-error"
            "--fail"
            "--retry"
            "30"
            "--retry-connrefused"
            "-X"
            "PUT"
            "-H"
            "Content-Type: application/json"
            "--data-binary"
            "@${cfg.elasticsearch.indexTemplate}"
            "${esUrl}/${stack.esTemplateApi template}/${stack.esTemplateName}"
          ];
        };
      };

      filebeat = {
        after = [ "cdcmon-es-template.service" ];
        wants = [ "cdcmon-es-template.service" ];
      };

      grafana = needs [ "cdcmon-secrets.service" ] // {
        serviceConfig.LoadCredential = [
          "secret-key:${cfg.grafana.secretKeyFile}"
        ]
        ++ optional (cfg.grafana.adminPasswordFile != null) "admin-password:${cfg.grafana.adminPasswordFile}";
      };

      ticdc = needs [
        "tidb-pd.service"
        "tidb-tikv.service"
        "tidb-server.service"
      ];

      # The changefeed exists before db init seeds rows, so the seed is captured too.
      "ticdc-changefeed-${stack.changefeedId}" = needs [ "cdcmon-kafka-topic.service" ];

      cdcmon-db-init = needs [
        "cdcmon-secrets.service"
        "tidb-server.service"
        "ticdc-changefeed-${stack.changefeedId}.service"
      ];

      cdcmon = {
        after = [ "cdcmon-kafka-topic.service" ];
        wants = [ "cdcmon-kafka-topic.service" ];
      };

      cdcmon-smoke = {
        after = stackUnits;
        wants = stackUnits;
      };
    };
  };
}
