# Evaluation tests for nix/lib/stack.nix and nix/ports.nix. Builtins only: run with
#   nix-instantiate --eval --strict nix/tests/eval-stack.nix
# Each check throws with the expected and actual value on mismatch; success prints the list of
# check names.
let
  ports = import ../ports.nix;
  stack = import ../lib/stack.nix { };
  json = builtins.toJSON;
  check =
    name: actual: expected:
    if actual == expected then
      name
    else
      throw "eval-stack: ${name}: expected ${json expected}, got ${json actual}";

  portValues = builtins.attrValues ports;
  unique = l: builtins.length l == builtins.length (builtins.attrNames (builtins.listToAttrs (map (p: { name = toString p; value = true; }) l)));
  kafka = stack.kafkaSettings { };
  dockerHosts = builtins.mapAttrs (name: _: name) stack.localHosts;
in
[
  (check "ports are the DESIGN.md numbers" ports {
    tidb = 4000;
    tidbStatus = 10080;
    pdClient = 2379;
    pdPeer = 2380;
    tikv = 20160;
    tikvStatus = 20180;
    ticdc = 8300;
    kafka = 9092;
    kafkaController = 9093;
    kafkaExternal = 9094;
    prometheus = 9090;
    grafana = 3000;
    elasticsearch = 9200;
    elasticsearchTransport = 9300;
    cdcmon = 9102;
  })
  (check "no two services share a port" (unique portValues) true)
  (check "VM forwards exactly the host ports of issue 5" stack.forwardedPorts [
    4000
    8300
    9094
    9090
    3000
    9200
    9102
  ])
  (check "default sink URI is the fixed one" (stack.sinkUri { })
    "kafka://127.0.0.1:9092/app_cdc?protocol=canal-json&enable-tidb-extension=true&partition-num=1&replication-factor=1&max-message-bytes=1048576"
  )
  (check "sink URI without canal-json drops enable-tidb-extension"
    (stack.sinkUri {
      protocol = "open-protocol";
      host = "kafka";
      partitionNum = 3;
    })
    "kafka://kafka:9092/app_cdc?protocol=open-protocol&partition-num=3&replication-factor=1&max-message-bytes=1048576"
  )
  (check "sink URI keeps extra parameters last"
    (stack.sinkUri {
      extraParams = [
        {
          name = "compression";
          value = "lz4";
        }
      ];
    })
    "kafka://127.0.0.1:9092/app_cdc?protocol=canal-json&enable-tidb-extension=true&partition-num=1&replication-factor=1&max-message-bytes=1048576&compression=lz4"
  )
  (check "kafka listeners: 9092 inside, 9093 controller, 9094 host (loopback, issue 16.4)" kafka."listeners" [
    "PLAINTEXT://127.0.0.1:9092"
    "CONTROLLER://127.0.0.1:9093"
    "EXTERNAL://127.0.0.1:9094"
  ])
  (check "kafka advertises 9092 and 127.0.0.1:9094, never the controller (issue 16.5)" kafka."advertised.listeners" [
    "PLAINTEXT://127.0.0.1:9092"
    "EXTERNAL://127.0.0.1:9094"
  ])
  (check "kafka quorum voter is node 1 on the controller port" kafka."controller.quorum.voters" [
    "1@127.0.0.1:9093"
  ])
  (check "single broker: internal topics have replication factor 1" [
    kafka."offsets.topic.replication.factor"
    kafka."transaction.state.log.replication.factor"
    kafka."transaction.state.log.min.isr"
  ] [ 1 1 1 ])
  (check "server.properties rendering matches the nixpkgs module's"
    (stack.renderProperties {
      "a.list" = [
        "x"
        "y"
      ];
      "b.int" = 1;
      "c.bool" = false;
      "d.null" = null;
    })
    ''
      a.list=x,y
      b.int=1
      c.bool=false
    ''
  )
  (check "docker broker advertises the compose service name"
    (stack.kafkaSettings { advertisedHost = "kafka"; })."advertised.listeners"
    [
      "PLAINTEXT://kafka:9092"
      "EXTERNAL://127.0.0.1:9094"
    ]
  )
  (check "scrape targets (VM)" (map (j: (builtins.head j.static_configs).targets) (stack.scrapeConfigs { })) [
    [ "127.0.0.1:9102" ]
    [ "127.0.0.1:8300" ]
    [ "127.0.0.1:2379" ]
    [ "127.0.0.1:20180" ]
    [ "127.0.0.1:10080" ]
    [ "127.0.0.1:9090" ]
  ])
  (check "scrape job names" (map (j: j.job_name) (stack.scrapeConfigs { })) [
    "cdcmon"
    "ticdc"
    "pd"
    "tikv"
    "tidb"
    "prometheus"
  ])
  (check "scrape targets (docker) use service names"
    (map (j: (builtins.head j.static_configs).targets) (stack.scrapeConfigs { hosts = dockerHosts; }))
    [
      [ "cdcmon:9102" ]
      [ "ticdc:8300" ]
      [ "pd:2379" ]
      [ "tikv:20180" ]
      [ "tidb:10080" ]
      [ "prometheus:9090" ]
    ]
  )
  (check "filebeat writes daily indices matching the template pattern"
    [
      (stack.filebeatOutput { }).index
      stack.filebeatSetup.template.pattern
      (stack.filebeatOutput { }).enabled
    ]
    [
      "cdc-events-%{+yyyy.MM.dd}"
      "cdc-events-*"
      true
    ]
  )
  (check "ES template API: composable vs legacy"
    [
      (stack.esTemplateApi {
        index_patterns = [ "cdc-events-*" ];
        template = { };
      })
      (stack.esTemplateApi {
        index_patterns = [ "cdc-events-*" ];
        mappings = { };
      })
    ]
    [
      "_index_template"
      "_template"
    ]
  )
  (check "smoke endpoints (VM)" (stack.endpointEnv { }) {
    CDCMON_BROKERS = "127.0.0.1:9092";
    CDCMON_TOPIC = "app_cdc";
    CDCMON_TIDB_URL = "mysql://root@127.0.0.1:4000";
    CDCMON_TICDC_URL = "http://127.0.0.1:8300";
    CDCMON_PROMETHEUS_URL = "http://127.0.0.1:9090";
    CDCMON_ELASTICSEARCH_URL = "http://127.0.0.1:9200";
    CDCMON_GRAFANA_URL = "http://127.0.0.1:3000";
    CDCMON_CDCMON_URL = "http://127.0.0.1:9102";
  })
  (check "TiKV small-node defaults" stack.tikvSmallNode {
    storage = {
      reserve-space = "0MB";
      block-cache.capacity = "512MB";
    };
  })
  # ---- protocol wiring (issue 12): services.cdcmon-stack.protocol / schemaRegistry / integrity ----
  (check "canal-json (the default) changes nothing: no registry, the single topic, no TiDB setting"
    (
      let
        w = stack.protocolWiring { };
      in
      {
        inherit (w) changefeed consumerTopic consumerRegistryUrl rowChecksum;
        failed = builtins.filter (a: !a.assertion) w.assertions;
      }
    )
    {
      changefeed = {
        protocol = "canal-json";
        schemaRegistry = null;
        integrity = {
          checkLevel = "none";
          corruptionHandleLevel = "warn";
        };
      };
      consumerTopic = "app_cdc";
      consumerRegistryUrl = null;
      rowChecksum = false;
      failed = [ ];
    }
  )
  (check "avro + correctness: registry to both, the per-table topic regex, row checksums on"
    (
      let
        w = stack.protocolWiring {
          protocol = "avro";
          schemaRegistryUrl = "http://registry.internal:8081";
          checkLevel = "correctness";
          corruptionHandleLevel = "error";
        };
      in
      {
        inherit (w) changefeed consumerTopic consumerRegistryUrl rowChecksum;
        failed = builtins.filter (a: !a.assertion) w.assertions;
      }
    )
    {
      changefeed = {
        protocol = "avro";
        schemaRegistry = "http://registry.internal:8081";
        integrity = {
          checkLevel = "correctness";
          corruptionHandleLevel = "error";
        };
      };
      consumerTopic = "^tidb_app_.*";
      consumerRegistryUrl = "http://registry.internal:8081";
      rowChecksum = true;
      failed = [ ];
    }
  )
  (check "avro without a registry URL fails with a message naming the option"
    (map (a: builtins.match ".*services[.]cdcmon-stack[.]schemaRegistry[.]url.*nixpkgs has no schema-registry.*" (builtins.replaceStrings [ "\n" ] [ " " ] a.message) != null) (
      builtins.filter (a: !a.assertion) (stack.protocolWiring { protocol = "avro"; }).assertions
    ))
    [ true ]
  )
  (check "a registry URL is not passed on for a protocol other than avro"
    (stack.protocolWiring { schemaRegistryUrl = "http://r:8081"; }).changefeed.schemaRegistry
    null
  )
  (check "row checksums on a protocol that carries none are refused"
    (map (p: builtins.length (builtins.filter (a: !a.assertion) (stack.protocolWiring {
      protocol = p;
      schemaRegistryUrl = "http://r:8081";
      checkLevel = "correctness";
    }).assertions)) [ "canal-json" "open-protocol" "debezium" "simple" "avro" ])
    [ 1 1 1 0 0 ]
  )
  (check "avro topic regex escapes the rule's dots" (stack.avroTopicRegex "cdc.{schema}.{table}" "app") "^cdc\\.app\\..*")
]
