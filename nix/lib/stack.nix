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
  # Avro: one topic per table (TiCDC requires {schema} and {table} in the topic rule, tiflow
  # cdc/sink/dmlsink/mq/dispatcher/topic/expression.go:39-41), consumed by a librdkafka regex
  # subscription (a `--topic` entry starting with `^`). `ensure --topic-rule` default.
  avroTopicRule = "tidb_{schema}_{table}";
  appSchema = "app";
  # `^tidb_app_.*` for the rule above: the rule with {schema} = the stack's schema, {table} =
  # any name, dots escaped (TiCDC keeps `.` in topic names; the Avro encoder only sanitizes
  # them in subject names).
  avroTopicRegex =
    rule: schema:
    "^"
    + builtins.replaceStrings [ "{schema}" "{table}" "." ] [ schema ".*" "\\." ] rule;
  consumerGroup = "cdcmon";
  eventLog = "/var/log/cdcmon/events.ndjson";
  # cdcmon's own rotation of the event log (issue 16.8; `--event-log-max-bytes`,
  # `--event-log-keep`, `--event-log-max-age-secs`): events.ndjson -> .1 (newest) ... .8,
  # the oldest beyond `keep` deleted. 256 MiB x (8 rotated + 1 live) = at most ~2.3 GiB on disk,
  # about 1.5 h of history at 1,000 events/s (~400 B a line) and days at the stack's usual
  # rate: enough for Filebeat to catch up after an Elasticsearch outage of that length, small
  # enough for the VM's 16 GiB disk next to TiKV, Kafka and Elasticsearch. No age limit: an idle
  # stack keeps its few lines instead of producing empty files.
  eventLogRotation = {
    maxBytes = 256 * 1024 * 1024;
    keep = 8;
    maxAgeSecs = 0;
  };
  eventLogEnv = {
    CDCMON_EVENT_LOG = eventLog;
    CDCMON_EVENT_LOG_MAX_BYTES = str eventLogRotation.maxBytes;
    CDCMON_EVENT_LOG_KEEP = str eventLogRotation.keep;
    CDCMON_EVENT_LOG_MAX_AGE_SECS = str eventLogRotation.maxAgeSecs;
  };
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

  # Where each listener binds by default (issue 16.4): loopback everywhere. Nothing in the stack
  # authenticates (TiDB root has no password, Elasticsearch security is off, TiCDC's open API
  # creates changefeeds that copy any table anywhere, Kafka and the metrics endpoints are open),
  # so a real host must opt in to exposure listener by listener. Only nix/vm.nix widens them to
  # `vmListenAddress`, because QEMU's SLiRP port-forward delivers to the guest NIC, not to its
  # loopback. The modules take their option defaults from here (eval-listeners.nix checks them).
  listenAddress = "127.0.0.1";
  vmListenAddress = "0.0.0.0";
  listenDefaults = {
    tidb = listenAddress; # services.tidb-cluster.tidb.host (-host)
    ticdc = listenAddress; # services.ticdc.address (--addr)
    cdcmon = listenAddress; # services.cdcmon.settings.CDCMON_LISTEN
    elasticsearch = listenAddress; # services.elasticsearch.listenAddress
    grafana = listenAddress; # services.grafana.settings.server.http_addr
    prometheus = listenAddress; # services.prometheus.listenAddress (nixpkgs default 0.0.0.0)
    kafkaExternal = listenAddress; # the EXTERNAL listener (9094) of services.apache-kafka
  };

  # Host ports that answer without any authentication, and why. Opening one of them in the
  # firewall (services.cdcmon-stack.openFirewall) is refused by an assertion unless
  # services.cdcmon-stack.allowUnauthenticatedExposure says the exposure is intended.
  unauthenticatedPorts = {
    "${str ports.tidb}" = "TiDB: user root has no password";
    "${str ports.ticdc}" = "TiCDC open API: creates changefeeds that copy any table anywhere";
    "${str ports.kafkaExternal}" = "Kafka EXTERNAL listener: PLAINTEXT, no SASL";
    "${str ports.prometheus}" = "Prometheus: no authentication";
    "${str ports.elasticsearch}" = "Elasticsearch: xpack security disabled";
    "${str ports.cdcmon}" = "cdcmon /metrics: no authentication";
  };

  # The stack's protocol choice (services.cdcmon-stack.protocol, .schemaRegistry.url,
  # .integrity.*) -> what the changefeed, the consumer and `db init` get. canal-json (the default)
  # leaves every one of them as it was: no registry, the single topic, no TiDB setting.
  protocolWiring =
    {
      protocol ? "canal-json",
      schemaRegistryUrl ? null,
      checkLevel ? "none",
      corruptionHandleLevel ? "warn",
    }:
    let
      avro = protocol == "avro";
    in
    {
      changefeed = {
        inherit protocol;
        schemaRegistry = if avro then schemaRegistryUrl else null;
        integrity = { inherit checkLevel corruptionHandleLevel; };
      };
      # Avro: every `tidb_app_<table>` topic, by a librdkafka regex subscription.
      consumerTopic = if avro then avroTopicRegex avroTopicRule appSchema else topic;
      consumerRegistryUrl = if avro then schemaRegistryUrl else null;
      # TiDB computes row checksums only with this global on (db init --row-checksum).
      rowChecksum = checkLevel == "correctness";
      # [ { assertion; message; } ] for the stack module.
      assertions = [
        {
          assertion = !avro || schemaRegistryUrl != null;
          message = ''
            services.cdcmon-stack.protocol = "avro" needs services.cdcmon-stack.schemaRegistry.url:
            the URL of a Confluent-compatible schema registry that both TiCDC and cdcmon reach.
            nixpkgs has no schema-registry service module, so the stack runs none; point the
            option at an existing one (docs/protocols.md, "Running the stack on Avro").
          '';
        }
        {
          assertion = checkLevel == "none" || protocol == "avro" || protocol == "simple";
          message = ''
            services.cdcmon-stack.integrity.checkLevel = "correctness" needs protocol "simple"
            or "avro": only they carry TiDB's row checksum (protocol is ${protocol}).
          '';
        }
      ];
    };

  # TiCDC Kafka sink URI for a changefeed. `enable-tidb-extension` means something for canal-json
  # (commit ts, TIDB_WATERMARK) and debezium (watermark `m` events, new TiCDC architecture only:
  # classic TiCDC's debezium encoder sends none; docs/protocols.md); TiCDC ignores it for the
  # others. Avro gets `_tidb_op`/commit ts and exact DECIMAL / BIGINT UNSIGNED strings, which row
  # checksums require (tiflow pkg/sink/codec/common/config.go:386-396; src/ticdc_api.rs
  # AVRO_URI_PARAMS); its registry and topic dispatcher are changefeed config, not URI.
  # Same as `cdcmon changefeed ensure`'s default (tests/nix_parity.rs).
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
        else if protocol == "avro" then
          [
            (param "enable-tidb-extension" "true")
            (param "avro-decimal-handling-mode" "string")
            (param "avro-bigint-unsigned-handling-mode" "string")
          ]
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

  # Single-node KRaft broker+controller. PLAINTEXT (9092) is what TiCDC and cdcmon use on the same
  # machine; EXTERNAL (9094) is for clients elsewhere: it binds `externalListenHost` (loopback
  # unless nix/vm.nix widens it for the QEMU forward) and is advertised as
  # `externalHost:9094`. The default is the literal 127.0.0.1, not `localhost`: a host client
  # that resolves localhost to ::1 first would miss QEMU's IPv4-only forward (issue 16.5), and a
  # remote client must be told a name it can reach (set services.cdcmon-stack.kafka.externalHost).
  # The controller listener stays on loopback and is never advertised.
  # Keys are the dotted server.properties names, as services.apache-kafka.settings wants them.
  kafkaSettings =
    {
      advertisedHost ? "127.0.0.1",
      internalListenHost ? "127.0.0.1",
      externalHost ? "127.0.0.1",
      externalListenHost ? listenDefaults.kafkaExternal,
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
        "PLAINTEXT://${internalListenHost}:${str ports.kafka}"
        "CONTROLLER://127.0.0.1:${str ports.kafkaController}"
        "EXTERNAL://${externalListenHost}:${str ports.kafkaExternal}"
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
      # The controller talks to itself over the loopback address it binds.
      "controller.quorum.voters" = [ "${str nodeId}@127.0.0.1:${str ports.kafkaController}" ];
      "log.dirs" = logDirs;
      # One broker: every internal topic must fit a replication factor of 1.
      "offsets.topic.replication.factor" = 1;
      "transaction.state.log.replication.factor" = 1;
      "transaction.state.log.min.isr" = 1;
      "num.partitions" = 1;
      # cdcmon is the only group member; do not wait 3 s before the first assignment.
      "group.initial.rebalance.delay.ms" = 0;
    };

  # Kafka 4 logs through Log4j 2 and ignores the Log4j 1 `-Dlog4j.configuration` the nixpkgs
  # module passes (apache/kafka 4.x bin/kafka-server-start.sh and connect-standalone.sh set
  # `-Dlog4j2.configurationFile=...` and call Log4j 1 files deprecated). Console only: the
  # journal (VM) or `docker logs` (images) keep it. Properties format: Log4j 2 core reads it
  # without the YAML/JSON extra jars.
  kafkaLog4j2Properties = ''
    status = warn
    appender.console.type = Console
    appender.console.name = STDOUT
    appender.console.layout.type = PatternLayout
    appender.console.layout.pattern = [%d] %p %m (%c)%n
    rootLogger.level = INFO
    rootLogger.appenderRef.stdout.ref = STDOUT
    # Per-request logging is noise at INFO.
    logger.request.name = kafka.request.logger
    logger.request.level = WARN
  '';
  kafkaLog4j2Option = file: "-Dlog4j2.configurationFile=file:${file}";

  # The systemd dependency graph of the stack (issue 16.3), as data so that
  # nix/tests/eval-units.nix can check it without nixpkgs; modules/stack.nix turns it into
  # After=/Wants=/Requires= and gives every restarting unit RestartMode=direct.
  #
  # Rule: never `Requires=` a unit that has `Restart=`. When a required unit fails while
  # starting, systemd fails every queued dependent with result `dependency` and never starts it
  # again, even after Restart= brings the required unit up (systemd issue #18856). So
  #   * dependencies are `wants` (ordering + pull-in, no failure propagation); each long-running
  #     unit waits for what it needs itself (ExecStartPre readiness probes in modules/tidb.nix
  #     and modules/ticdc.nix; the oneshots retry inside with bounded backoff);
  #   * every restarting unit gets RestartMode=direct (systemd >= 254): an automatic restart
  #     goes straight back to "activating" instead of through "failed", so start jobs ordered
  #     after it keep waiting instead of failing (nixpkgs uses the same pair on its bcachefs
  #     unlock oneshots, nixos/modules/tasks/filesystems/bcachefs.nix);
  #   * `requires` is allowed only on a unit without Restart= (the secrets generator): its
  #     failure is permanent anyway and the dependent cannot start without its files.
  # `restart` is the unit's Restart= value: ours are set in modules/*.nix; the nixpkgs ones are
  # what their modules set (elasticsearch, filebeat, prometheus: always; grafana: on-failure);
  # apache-kafka has none in nixpkgs and gets ours in modules/stack.nix (issue 16.7).
  units =
    let
      unit =
        restart: wants: requires:
        {
          inherit restart wants requires;
        };
      feed = "ticdc-changefeed-${changefeedId}";
    in
    {
      tidb-pd = unit "on-failure" [ ] [ ];
      tidb-tikv = unit "on-failure" [ "tidb-pd" ] [ ];
      tidb-server = unit "on-failure" [ "tidb-pd" "tidb-tikv" ] [ ];
      ticdc = unit "on-failure" [ "tidb-pd" "tidb-tikv" "tidb-server" ] [ ];
      apache-kafka = unit "on-failure" [ ] [ ];
      cdcmon-kafka-topic = unit "on-failure" [ "apache-kafka" ] [ ];
      # The changefeed exists before db init seeds rows, so the seed is captured too.
      ${feed} = unit "on-failure" [ "ticdc" "cdcmon-kafka-topic" ] [ ];
      cdcmon-secrets = unit "no" [ ] [ ];
      cdcmon-db-init = unit "on-failure" [ "tidb-server" feed ] [ "cdcmon-secrets" ];
      cdcmon = unit "always" [ "cdcmon-kafka-topic" ] [ ];
      elasticsearch = unit "always" [ ] [ ];
      cdcmon-es-template = unit "on-failure" [ "elasticsearch" ] [ ];
      # The stack-logs-* index template (issue 14); modules/stack.nix orders Filebeat after it.
      cdcmon-logs-template = unit "on-failure" [ "elasticsearch" ] [ ];
      filebeat = unit "always" [ "cdcmon-es-template" ] [ ];
      prometheus = unit "always" [ ] [ ];
      grafana = unit "on-failure" [ ] [ "cdcmon-secrets" ];
    };

  # Bounded exponential backoff for the restarting units we own (systemd >= 254
  # RestartSteps=/RestartMaxDelaySec=): 2 s, growing over 6 steps to at most 1 min, forever.
  restartBackoff = {
    RestartSec = "2s";
    RestartSteps = 6;
    RestartMaxDelaySec = "1min";
  };

  # Start-job timeout of a oneshot that retries inside (retryScript): the loop's budget, plus
  # one last attempt begun just before the deadline, plus the longest sleep, plus a margin.
  # Shorter, and systemd kills the loop in the middle of an attempt (result `timeout`; for
  # `changefeed ensure --if-unrecoverable=recreate` possibly between its DELETE and its POST)
  # instead of letting it give up with the attempt's own exit status.
  retryBudgetSecs = 240;
  retryMaxDelaySecs = 16;
  oneshotTimeoutSecs = attemptSecs: retryBudgetSecs + attemptSecs + retryMaxDelaySecs + 30;
  # One `cdcmon changefeed ensure`: TiCDC health plus the wait for state `normal`
  # (`--wait-timeout-secs`, passed as CDCMON_WAIT_TIMEOUT_SECS by modules/ticdc.nix), a DELETE
  # when recreating (cdcmon allows it 90 s; TiCDC waits up to about a minute for the owner) and
  # the POST (30 s).
  changefeedWaitSecs = 180;
  changefeedAttemptSecs = changefeedWaitSecs + 90 + 30;
  # One `kafka-topics.sh --create`: the admin client gives up after default.api.timeout.ms
  # (60 s by default).
  kafkaTopicAttemptSecs = 60;

  # A oneshot's retry loop inside ExecStart, so its start job stays pending (and units ordered
  # after it keep waiting) while a dependency settles: delay doubles from 1 s up to `maxDelay`
  # seconds, for at most `budget` seconds; exit status `stopOn` (e.g. 3 = "cannot be fixed by
  # retrying") ends the loop at once. Plain POSIX sh, no nixpkgs needed to render it.
  retryScript =
    {
      command,
      budget ? retryBudgetSecs,
      maxDelay ? retryMaxDelaySecs,
      stopOn ? null,
    }:
    ''
      deadline=$(( $(date +%s) + ${str budget} ))
      delay=1
      while :; do
        rc=0
        ${command} || rc=$?
        [ "$rc" -eq 0 ] && exit 0
        ${if stopOn == null then "" else "[ \"$rc\" -eq ${str stopOn} ] && exit ${str stopOn}"}
        if [ "$(date +%s)" -ge "$deadline" ]; then
          echo "giving up after ${str budget}s (last exit status $rc); systemd restarts the unit" >&2
          exit "$rc"
        fi
        echo "attempt failed with exit status $rc; retrying in ''${delay}s" >&2
        sleep "$delay"
        delay=$(( delay * 2 > ${str maxDelay} ? ${str maxDelay} : delay * 2 ))
      done
    '';

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
      # The live file and cdcmon's rotated ones (events.ndjson.1 ... .N). The rotated names
      # must match: filestream's scanner reports a file that moved to a name outside `paths`
      # as deleted, and close.on_state_change.removed (default true) then stops its reader
      # before it has read the lines written just before the rotation. Inside `paths`, the
      # move is a rename of the same identity: the reader keeps its offset and finishes the
      # file, nothing is read twice (elastic/beats filebeat/input/filestream/fswatch.go
      # `watch`, prospector.go `onRename`/`onRemove`, config.go defaults).
      paths = [
        path
        "${path}.[0-9]*"
      ];
      # Inode+device identity: follows renames, and unlike Filebeat 9's default fingerprint
      # identity it does not skip files under 1 KiB, which would hold back the first events.
      # Inode reuse after cdcmon deletes the oldest file is harmless once Filebeat has seen the
      # deletion (clean_removed, default true, drops that state at the next scan); see
      # docs/operations.md "Disk and event-log rotation".
      file_identity.native = null;
      # Keep following a renamed file to its end (the default; stated because it is essential).
      close.on_state_change.renamed = false;
      clean_removed = true;
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
    kafka = "127.0.0.1:${str ports.kafkaExternal}";
    prometheus = "http://127.0.0.1:${str ports.prometheus}";
    grafana = "http://127.0.0.1:${str ports.grafana}";
    elasticsearch = "http://127.0.0.1:${str ports.elasticsearch}";
    cdcmon = "http://127.0.0.1:${str ports.cdcmon}/metrics";
  };

  # ---- Service logs (issue 14): every stack service's log beside the events -----------------
  # A separate daily index family, never cdc-events-*: each logs input carries its own `index`
  # (Filebeat's per-input index, elastic/beats filebeat/channel/connector.go
  # `add_formatted_index`), which wins over output.elasticsearch.index. Its template
  # (monitoring/elasticsearch/stack-logs-template.json) makes the same choices as the event
  # log's: composable, ILM off, 1 shard, 0 replicas.
  logsIndexPrefix = "stack-logs";
  logsIndexPattern = "${logsIndexPrefix}-*";
  logsTemplateName = logsIndexPrefix;
  logsIndex = "${logsIndexPrefix}-%{+yyyy.MM.dd}";

  # The systemd units whose journal is shipped: every unit of the dependency graph plus the
  # smoke oneshot (its start line is what `cdcmon smoke` looks for), sorted.
  journalUnits = map (n: "${n}.service") (
    builtins.sort builtins.lessThan (builtins.attrNames units ++ [ "cdcmon-smoke" ])
  );

  # Processors shared by the journal and the container inputs: keep the raw line, parse
  # PingCAP's unified log format (tikv/rfcs text/0018-unified-log-format.md:
  # `[date_time] [LEVEL] [source_file:line] [message] [key=value]...`, the message JSON-quoted
  # when it holds a space, quote, `=` or bracket, else bare). Dissect semantics (elastic/beats
  # libbeat/processors/dissect/dissect.go `extract`): each delimiter is the first occurrence
  # after the previous one, text after the last delimiter is ignored, a failure leaves the event
  # as it was (ignore_failure) tagged `log.flags: dissect_parsing_error`.
  # tests/monitoring_stacklogs.rs models exactly this and checks it on PingCAP's own samples.
  pingcapHeaderRegexp = ''^\[\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{3} [+-]\d\d:\d\d\] \[[A-Z]+\] \[[^\]]*\] \['';
  logLineProcessors = [
    {
      copy_fields = {
        fields = [
          {
            from = "message";
            to = "event.original";
          }
        ];
        ignore_missing = true;
        fail_on_error = false;
      };
    }
  ];
  pingcapProcessors = [
    {
      dissect = {
        when.regexp.message = "${pingcapHeaderRegexp}\"";
        tokenizer = ''[%{pingcap.time}] [%{log.level}] [%{pingcap.source}] ["%{message}"]'';
        target_prefix = "";
        overwrite_keys = true;
        ignore_failure = true;
      };
    }
    {
      dissect = {
        when.regexp.message = "${pingcapHeaderRegexp}[^\"]";
        tokenizer = "[%{pingcap.time}] [%{log.level}] [%{pingcap.source}] [%{message}]";
        target_prefix = "";
        overwrite_keys = true;
        ignore_failure = true;
      };
    }
  ];
  # journald priority (systemd.journal-fields(7): 0 emerg ... 7 debug) -> PingCAP level names,
  # for every line that did not carry its own level.
  priorityLevels = [
    {
      level = "FATAL";
      gte = 0;
      lte = 2;
    }
    {
      level = "ERROR";
      gte = 3;
      lte = 3;
    }
    {
      level = "WARN";
      gte = 4;
      lte = 4;
    }
    {
      level = "INFO";
      gte = 5;
      lte = 6;
    }
    {
      level = "DEBUG";
      gte = 7;
      lte = 7;
    }
  ];
  noLevel.not.has_fields = [ "log.level" ];

  # The level word of the other services' own formats, for a line PingCAP's format did not
  # match. journald gives every stdout/stderr line the unit's SyslogLevel= (info), so without
  # this Prometheus' `level=WARN`, Grafana's `level=error`, cdcmon's own WARN/ERROR, Kafka's and
  # Elasticsearch's log4j WARN/ERROR would all be INFO and missing from the warnings/errors
  # panel. Formats (each regexp alternative, in order):
  #   logfmt `level=<word>` (Prometheus 3 log/slog `level=WARN`, Grafana `level=error`,
  #     case-insensitive);
  #   tracing-subscriber JSON `{"timestamp":"…","level":"WARN",…}` (cdcmon, CDCMON_LOG_FORMAT=json);
  #   tracing-subscriber text `2026-11-30T01:02:03.456789Z  WARN target: …` (cdcmon text, no ANSI:
  #     src/cli.rs init_logging);
  #   Kafka's log4j `[2026-11-30 01:02:03,456] WARN … (logger)` (`[%d] %p %m (%c)%n`);
  #   Elasticsearch's log4j `[2026-11-30T01:02:03,456][WARN ][logger] …` (`[%d{ISO8601}][%-5p]`).
  # tests/monitoring_stacklogs.rs replays a line of each format.
  levelWords = [
    {
      level = "FATAL";
      logfmt = "fatal|crit|critical|panic|emerg|alert";
      upper = "FATAL";
    }
    {
      level = "ERROR";
      logfmt = "error|eror|err";
      upper = "ERROR";
    }
    {
      level = "WARN";
      logfmt = "warn|warning";
      upper = "WARN";
    }
    {
      level = "INFO";
      logfmt = "info|notice";
      upper = "INFO";
    }
    {
      level = "DEBUG";
      logfmt = "debug|dbug|trace";
      upper = "DEBUG|TRACE";
    }
  ];
  levelWordRegexp =
    w:
    builtins.concatStringsSep "|" [
      ''(^|\s)level="?(?i:${w.logfmt})"?(\s|$)''
      ''^\{"timestamp":"[^"]*","level":"(${w.upper})"''
      ''^\d{4}-\d\d-\d\dT[0-9:.]+Z +(${w.upper}) ''
      ''^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\] (${w.upper}) ''
      ''^\[\d{4}-\d\d-\d\dT[0-9:.,]+\]\[(${w.upper}) *\]''
    ];
  levelWordProcessors = map (w: {
    add_fields = {
      when."and" = [
        noLevel
        { regexp.message = levelWordRegexp w; }
      ];
      target = "log";
      fields.level = w.level;
    };
  }) levelWords;
  # service.name from a unit field: `tidb-pd.service` -> `tidb-pd`; only while none is set.
  unitToService = field: {
    dissect = {
      when."and" = [
        { has_fields = [ field ]; }
        noService
      ];
      inherit field;
      tokenizer = "%{service.name}.service";
      target_prefix = "";
      ignore_failure = true;
    };
  };
  noService.not.has_fields = [ "service.name" ];

  # Filebeat 8.x journald input (it runs `journalctl --utc --output=json --follow --unit U ...`:
  # elastic/beats filebeat/input/journald/pkg/journalctl/reader.go); same as the second input
  # of monitoring/filebeat/filebeat.yml (tests/nix_parity.rs).
  journaldInput = {
    type = "journald";
    id = "stack-journal";
    enabled = true;
    index = logsIndex;
    units = journalUnits;
    processors =
      logLineProcessors
      # service.name: the unit PID 1 speaks about (UNIT=: "Failed with result ..."; mapped to
      # journald.unit by beats' journalfield/default.go, to journald.custom.unit by versions
      # without that entry), else the unit that wrote the line (_SYSTEMD_UNIT).
      ++ map unitToService [
        "journald.unit"
        "journald.custom.unit"
        # `journalctl --unit U` also matches a coredump of U (COREDUMP_UNIT=, written by
        # systemd-coredump@…) and root daemons' messages about U (OBJECT_SYSTEMD_UNIT=):
        # systemd src/shared/logs-show.c add_matches_for_unit. Those lines are U's, not the
        # writer's (a TiKV crash is tidb-tikv's). beats journalfield: journald.coredump.unit,
        # journald.object.systemd.unit.
        "journald.coredump.unit"
        "journald.object.systemd.unit"
        "systemd.unit"
      ]
      ++ pingcapProcessors
      ++ levelWordProcessors
      ++ map (p: {
        add_fields = {
          when."and" = [
            noLevel
            {
              range."log.syslog.priority" = {
                inherit (p) gte lte;
              };
            }
          ];
          target = "log";
          fields.level = p.level;
        };
      }) priorityLevels;
  };

  # Docker Compose: the containers' json-file logs (docker/compose.yaml mounts
  # /var/lib/docker/containers and the Docker socket read-only into the Filebeat container;
  # docs/docker.md). Only containers of the compose project `cdcmon`; service.name is the
  # compose service (add_docker_metadata's dedotted label); a line without its own level is INFO
  # (a container's stdout/stderr carries no priority).
  containerLogsInput = {
    type = "filestream";
    id = "stack-containers";
    enabled = true;
    index = logsIndex;
    paths = [ "/var/lib/docker/containers/*/*.log" ];
    parsers = [
      {
        container = {
          stream = "all";
          format = "docker";
        };
      }
    ];
    processors = [
      { add_docker_metadata.host = "unix:///var/run/docker.sock"; }
      {
        drop_event.when.not.equals."container.labels.com_docker_compose_project" = "cdcmon";
      }
      {
        copy_fields = {
          fields = [
            {
              from = "container.labels.com_docker_compose_service";
              to = "service.name";
            }
            {
              from = "host.name";
              to = "host.hostname";
            }
          ];
          ignore_missing = true;
          fail_on_error = false;
        };
      }
    ]
    ++ logLineProcessors
    ++ pingcapProcessors
    ++ levelWordProcessors
    ++ [
      {
        add_fields = {
          when = noLevel;
          target = "log";
          fields.level = "INFO";
        };
      }
    ];
  };
}
