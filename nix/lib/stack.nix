# Pure logic of the stack: names, the changefeed sink URI, Kafka/Prometheus/Grafana/Filebeat
# settings and the smoke endpoints. Builtins only (no nixpkgs lib, no pkgs) so that
# scripts/check-nix.sh can evaluate and test it with a bare `nix-instantiate` (no nixpkgs on CI).
# The NixOS modules (VM) and nix/images.nix (docker) both call it; they differ only in `hosts`.
{
  ports ? import ../ports.nix,
}:
let
  str = toString;
  join = builtins.concatStringsSep;
  # Ordered query string: TiCDC does not care about the order, but the documented default URI
  # (DESIGN.md / issue 5) has this order and tests compare strings.
  query = pairs: join "&" (map (p: "${p.name}=${str p.value}") pairs);
  param = name: value: { inherit name value; };
in
rec {
  inherit ports;

  topic = "app_cdc";
  changefeedId = "app-cdc";
  consumerGroup = "cdcmon";
  eventLog = "/var/log/cdcmon/events.ndjson";
  # Filebeat writes daily indices `cdc-events-YYYY.MM.DD`; the index template
  # (monitoring/elasticsearch/cdc-events-template.json) and the Grafana datasource match the
  # pattern.
  esIndexPrefix = "cdc-events";
  esIndexPattern = "${esIndexPrefix}-*";
  esTemplateName = esIndexPrefix;

  # Where each service is reached from the other services. The VM uses loopback everywhere;
  # docker compose passes its service names instead.
  localHosts = {
    tidb = "127.0.0.1";
    pd = "127.0.0.1";
    tikv = "127.0.0.1";
    ticdc = "127.0.0.1";
    kafka = "127.0.0.1";
    prometheus = "127.0.0.1";
    grafana = "127.0.0.1";
    elasticsearch = "127.0.0.1";
    cdcmon = "127.0.0.1";
  };

  # Host ports `nix run .#stack` forwards into the VM (and compose publishes).
  forwardedPorts = [
    ports.tidb
    ports.ticdc
    ports.kafkaExternal
    ports.prometheus
    ports.grafana
    ports.elasticsearch
    ports.cdcmon
  ];

  # TiCDC Kafka sink URI for a changefeed. `enable-tidb-extension` means something for canal-json
  # (commit ts, TIDB_WATERMARK) and debezium (watermark `m` events, new TiCDC architecture only:
  # classic TiCDC's debezium encoder sends none; docs/protocols.md); TiCDC ignores it for the
  # others. Same as `cdcmon changefeed ensure`'s default (tests/nix_parity.rs).
  sinkUri =
    {
      host ? "127.0.0.1",
      port ? ports.kafka,
      topic ? "app_cdc",
      protocol ? "canal-json",
      partitionNum ? 1,
      replicationFactor ? 1,
      maxMessageBytes ? 1048576,
      extraParams ? [ ],
    }:
    "kafka://${host}:${str port}/${topic}?"
    + query (
      [ (param "protocol" protocol) ]
      ++ (
        if protocol == "canal-json" || protocol == "debezium" then
          [ (param "enable-tidb-extension" "true") ]
        else
          [ ]
      )
      ++ [
        (param "partition-num" partitionNum)
        (param "replication-factor" replicationFactor)
        (param "max-message-bytes" maxMessageBytes)
      ]
      ++ extraParams
    );

  # Single-node KRaft broker+controller. PLAINTEXT (9092) is what TiCDC and cdcmon use inside
  # the VM / compose network; EXTERNAL (9094) is advertised as localhost:9094 for clients on the
  # host (QEMU hostfwd or a published compose port). The controller listener is never advertised.
  # Keys are the dotted server.properties names, as services.apache-kafka.settings wants them.
  kafkaSettings =
    {
      advertisedHost ? "localhost",
      externalHost ? "localhost",
      nodeId ? 1,
      logDirs ? [ "/var/lib/apache-kafka" ],
    }:
    {
      "node.id" = nodeId;
      "process.roles" = [
        "broker"
        "controller"
      ];
      "listeners" = [
        "PLAINTEXT://:${str ports.kafka}"
        "CONTROLLER://:${str ports.kafkaController}"
        "EXTERNAL://:${str ports.kafkaExternal}"
      ];
      "advertised.listeners" = [
        "PLAINTEXT://${advertisedHost}:${str ports.kafka}"
        "EXTERNAL://${externalHost}:${str ports.kafkaExternal}"
      ];
      "listener.security.protocol.map" = [
        "PLAINTEXT:PLAINTEXT"
        "CONTROLLER:PLAINTEXT"
        "EXTERNAL:PLAINTEXT"
      ];
      "inter.broker.listener.name" = "PLAINTEXT";
      "controller.listener.names" = [ "CONTROLLER" ];
      # The controller talks to itself, so loopback is right in the VM and in a container.
      "controller.quorum.voters" = [ "${str nodeId}@localhost:${str ports.kafkaController}" ];
      "log.dirs" = logDirs;
      # One broker: every internal topic must fit a replication factor of 1.
      "offsets.topic.replication.factor" = 1;
      "transaction.state.log.replication.factor" = 1;
      "transaction.state.log.min.isr" = 1;
      "num.partitions" = 1;
      # cdcmon is the only group member; do not wait 3 s before the first assignment.
      "group.initial.rebalance.delay.ms" = 0;
    };

  # server.properties text with the same value rendering as nixpkgs' apache-kafka module
  # (bool -> true/false, int -> decimal, list -> comma-joined). Used for the docker image,
  # where there is no NixOS module to render it.
  renderProperties =
    settings:
    let
      render =
        v:
        if builtins.isBool v then
          (if v then "true" else "false")
        else if builtins.isList v then
          join "," (map render v)
        else
          str v;
      names = builtins.filter (n: settings.${n} != null) (builtins.attrNames settings);
    in
    join "" (map (n: "${n}=${render settings.${n}}\n") names);

  # Prometheus `global` (same as monitoring/prometheus/prometheus.yml; tests/nix_parity.rs).
  prometheusGlobal = {
    scrape_interval = "15s";
    evaluation_interval = "15s";
  };

  # Prometheus scrape jobs. Job names are what the alert rules and dashboards select on.
  scrapeConfigs =
    {
      hosts ? localHosts,
    }:
    map
      (j: {
        job_name = j.name;
        static_configs = [ { targets = [ "${j.host}:${str j.port}" ]; } ];
      })
      [
        {
          name = "cdcmon";
          host = hosts.cdcmon;
          port = ports.cdcmon;
        }
        {
          name = "ticdc";
          host = hosts.ticdc;
          port = ports.ticdc;
        }
        {
          name = "pd";
          host = hosts.pd;
          port = ports.pdClient;
        }
        {
          name = "tikv";
          host = hosts.tikv;
          port = ports.tikvStatus;
        }
        {
          name = "tidb";
          host = hosts.tidb;
          port = ports.tidbStatus;
        }
        {
          name = "prometheus";
          host = hosts.prometheus;
          port = ports.prometheus;
        }
      ];

  # Grafana datasources are not generated here: the stack provisions the repo's tested file
  # monitoring/grafana/provisioning/datasources/datasources.yml as is (one source of truth).

  # Filebeat: tail the ndjson event log; the ndjson parser with an empty target puts the ECS-ish
  # fields (`@timestamp`, `cdc.*`, `kafka.*`, `message`) at the document root.
  filebeatInput =
    {
      path ? eventLog,
    }:
    # Same input as monitoring/filebeat/filebeat.yml (tests/nix_parity.rs compares them).
    {
      type = "filestream";
      id = "cdcmon-events";
      enabled = true;
      paths = [ path ];
      # Inode+device identity: Filebeat 9's default fingerprint identity skips files under
      # 1 KiB, which would hold back the first events.
      file_identity.native = null;
      prospector.scanner.check_interval = "5s";
      parsers = [
        {
          ndjson = {
            target = "";
            overwrite_keys = true;
            add_error_key = true;
            expand_keys = false;
          };
        }
      ];
    };

  filebeatOutput =
    {
      hosts ? localHosts,
    }:
    {
      # `enabled`, not `enable`: the newer nixpkgs filebeat module asserts on exactly one
      # output with `enabled = true` (NIX-FACTS §1.3).
      enabled = true;
      hosts = [ "http://${hosts.elasticsearch}:${str ports.elasticsearch}" ];
      index = "${esIndexPrefix}-%{+yyyy.MM.dd}";
    };

  # The index template is loaded by our own oneshot (so its content is exactly the repo file);
  # Filebeat must neither load its own template nor switch the index to ILM/data streams.
  filebeatSetup = {
    ilm.enabled = false;
    template = {
      enabled = false;
      name = esTemplateName;
      pattern = esIndexPattern;
    };
  };

  # Which Elasticsearch API takes a template file: composable templates have a `template` key,
  # legacy ones carry `mappings`/`settings` at the top.
  esTemplateApi = tpl: if tpl ? template then "_index_template" else "_template";

  # Environment for `cdcmon smoke` (and anything else that needs every endpoint). Environment
  # variables rather than flags: every cdcmon flag has a CDCMON_* twin, and an unused variable
  # is harmless where an unknown flag would be fatal.
  endpointEnv =
    {
      hosts ? localHosts,
    }:
    {
      CDCMON_BROKERS = "${hosts.kafka}:${str ports.kafka}";
      CDCMON_TOPIC = topic;
      CDCMON_TIDB_URL = "mysql://root@${hosts.tidb}:${str ports.tidb}";
      CDCMON_TICDC_URL = "http://${hosts.ticdc}:${str ports.ticdc}";
      CDCMON_PROMETHEUS_URL = "http://${hosts.prometheus}:${str ports.prometheus}";
      CDCMON_ELASTICSEARCH_URL = "http://${hosts.elasticsearch}:${str ports.elasticsearch}";
      CDCMON_GRAFANA_URL = "http://${hosts.grafana}:${str ports.grafana}";
      CDCMON_CDCMON_URL = "http://${hosts.cdcmon}:${str ports.cdcmon}";
    };

  # TiKV settings for a small single-node VM (overridable with lib.mkDefault in the module):
  # no 5 GB reserve-space placeholder file on a 16 GB disk, and a block cache that leaves room
  # for Elasticsearch and the JVMs instead of ~45 % of RAM.
  tikvSmallNode = {
    storage = {
      reserve-space = "0MB";
      block-cache.capacity = "512MB";
    };
  };

  # URLs printed by `nix run .#stack`.
  hostUrls = {
    tidb = "mysql://root@127.0.0.1:${str ports.tidb}";
    ticdc = "http://127.0.0.1:${str ports.ticdc}/api/v2/status";
    kafka = "localhost:${str ports.kafkaExternal}";
    prometheus = "http://127.0.0.1:${str ports.prometheus}";
    grafana = "http://127.0.0.1:${str ports.grafana}";
    elasticsearch = "http://127.0.0.1:${str ports.elasticsearch}";
    cdcmon = "http://127.0.0.1:${str ports.cdcmon}/metrics";
  };
}
