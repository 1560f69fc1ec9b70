# Evaluation tests for issue 16 (listeners, Kafka advertised listeners, the systemd dependency
# graph, the retry loop of the oneshots). Builtins only, like eval-stack.nix:
#   nix-instantiate --eval --strict nix/tests/eval-units.nix
# Each check throws with the expected and actual value on mismatch; success prints the list of
# check names. The modules themselves need nixpkgs' lib; eval-modules.nix evaluates them with a
# small stand-in for it. Here: the data they are built from (nix/lib/stack.nix) and guards on
# the module sources.
let
  stack = import ../lib/stack.nix { };
  json = builtins.toJSON;
  check =
    name: actual: expected:
    if actual == expected then
      name
    else
      throw "eval-units: ${name}: expected ${json expected}, got ${json actual}";

  units = stack.units;
  names = builtins.attrNames units;
  restarts = n: units.${n}.restart != "no";
  # (unit, required unit) pairs where the required unit restarts: must be none (issue 16.3).
  badRequires = builtins.concatMap (
    n: map (r: "${n} requires ${r}") (builtins.filter restarts units.${n}.requires)
  ) names;
  # Every dependency names a unit of the graph (a typo would silently order on nothing).
  unknownDeps = builtins.concatMap (
    n: builtins.filter (d: !(units ? ${d})) (units.${n}.wants ++ units.${n}.requires)
  ) names;
  occurrences = needle: text: (builtins.length (builtins.split needle text) - 1) / 2;
  source = f: builtins.readFile (../../modules + "/${f}");
  kafka = stack.kafkaSettings { };
  kafkaVm = stack.kafkaSettings { externalListenHost = stack.vmListenAddress; };
  feed = "ticdc-changefeed-${stack.changefeedId}";
in
[
  # ---- listeners (16.4) ------------------------------------------------------------------
  (check "every listener defaults to loopback" stack.listenDefaults {
    tidb = "127.0.0.1";
    ticdc = "127.0.0.1";
    cdcmon = "127.0.0.1";
    elasticsearch = "127.0.0.1";
    grafana = "127.0.0.1";
    prometheus = "127.0.0.1";
    kafkaExternal = "127.0.0.1";
  })
  (check "only the VM address is the wildcard" [
    stack.listenAddress
    stack.vmListenAddress
  ] [ "127.0.0.1" "0.0.0.0" ])
  (check "no module hard-codes a wildcard listener (they read stack.listenDefaults)"
    (map (f: occurrences "\"0\\.0\\.0\\.0" (source f)) [
      "tidb.nix"
      "ticdc.nix"
      "cdcmon.nix"
      "stack.nix"
    ])
    [ 0 0 0 0 ]
  )
  (check "modules take their listener defaults from nix/lib/stack.nix"
    [
      (occurrences "default = stack\\.listenDefaults\\.tidb;" (source "tidb.nix"))
      (occurrences "default = \"[$][{]stack\\.listenDefaults\\.ticdc[}]:" (source "ticdc.nix"))
      (occurrences "strOption \"[$][{]stack\\.listenDefaults\\.cdcmon[}]:" (source "cdcmon.nix"))
    ]
    [ 1 1 1 ]
  )
  (check "Elasticsearch's transport port stays on loopback when listenAddress widens HTTP"
    (occurrences "transport\\.host: 127\\.0\\.0\\.1" (source "stack.nix"))
    1
  )
  (check "unauthenticated ports named for the openFirewall assertion" (builtins.attrNames stack.unauthenticatedPorts) [
    "4000"
    "8300"
    "9090"
    "9094"
    "9102"
    "9200"
  ])
  (check "every unauthenticated port is a forwarded port" (builtins.filter (
    p: !(builtins.elem (builtins.fromJSON p) stack.forwardedPorts)
  ) (builtins.attrNames stack.unauthenticatedPorts)) [ ])

  # ---- Kafka (16.5, 16.7) ------------------------------------------------------------------
  (check "kafka binds loopback by default, controller always" kafka."listeners" [
    "PLAINTEXT://127.0.0.1:9092"
    "CONTROLLER://127.0.0.1:9093"
    "EXTERNAL://127.0.0.1:9094"
  ])
  (check "kafka advertises 127.0.0.1:9094 (not localhost) for the host" kafka."advertised.listeners" [
    "PLAINTEXT://127.0.0.1:9092"
    "EXTERNAL://127.0.0.1:9094"
  ])
  (check "VM: EXTERNAL binds the guest NIC, still advertised as 127.0.0.1:9094" [
    kafkaVm."listeners"
    kafkaVm."advertised.listeners"
  ] [
    [
      "PLAINTEXT://127.0.0.1:9092"
      "CONTROLLER://127.0.0.1:9093"
      "EXTERNAL://0.0.0.0:9094"
    ]
    [
      "PLAINTEXT://127.0.0.1:9092"
      "EXTERNAL://127.0.0.1:9094"
    ]
  ])
  (check "external host is an option" (stack.kafkaSettings { externalHost = "kafka.example.internal"; })."advertised.listeners" [
    "PLAINTEXT://127.0.0.1:9092"
    "EXTERNAL://kafka.example.internal:9094"
  ])
  (check "the controller voter is reachable on the address it binds" kafka."controller.quorum.voters" [
    "1@127.0.0.1:9093"
  ])
  (check "Kafka gets a Log4j 2 configuration file (not the ignored Log4j 1 property)"
    [
      (stack.kafkaLog4j2Option "/x.properties")
      (occurrences "rootLogger.appenderRef.stdout.ref = STDOUT" stack.kafkaLog4j2Properties)
      (occurrences "appender.console.type = Console" stack.kafkaLog4j2Properties)
    ]
    [ "-Dlog4j2.configurationFile=file:/x.properties" 1 1 ]
  )
  (check "apache-kafka restarts (nixpkgs' unit has no Restart=)" units.apache-kafka.restart "on-failure")

  # ---- systemd dependency graph (16.3) -----------------------------------------------------
  (check "no unit Requires= a unit that restarts" badRequires [ ])
  (check "every dependency is a unit of the graph" unknownDeps [ ])
  (check "Requires= only on the secrets generator, which never restarts"
    (builtins.filter (n: units.${n}.requires != [ ]) names)
    [
      "cdcmon-db-init"
      "grafana"
    ]
  )
  (check "the chains of issue 16.3 are ordered (wants)" [
    units.tidb-tikv.wants
    units.tidb-server.wants
    units.ticdc.wants
    units.${feed}.wants
    units.cdcmon-db-init.wants
    units.cdcmon-kafka-topic.wants
  ] [
    [ "tidb-pd" ]
    [ "tidb-pd" "tidb-tikv" ]
    [ "tidb-pd" "tidb-tikv" "tidb-server" ]
    [ "ticdc" "cdcmon-kafka-topic" ]
    [ "tidb-server" feed ]
    [ "apache-kafka" ]
  ])
  (check "every long-running service and retrying oneshot restarts" (builtins.filter (n: !restarts n) names) [
    "cdcmon-secrets"
  ])
  (check "no module file writes Requires= itself (modules/stack.nix maps the graph)"
    (map (f: occurrences "requires =" (source f)) [
      "tidb.nix"
      "ticdc.nix"
      "cdcmon.nix"
      "stack.nix"
    ])
    [ 0 0 0 1 ]
  )
  (check "restarting units get RestartMode=direct (tidb, ticdc, changefeed, cdcmon, graph)"
    (map (f: occurrences "RestartMode = \"direct\"" (source f)) [
      "tidb.nix"
      "ticdc.nix"
      "cdcmon.nix"
      "stack.nix"
    ])
    [ 1 2 2 1 ]
  )
  (check "the changefeed oneshot does not retry exit status 3 (ensure --if-unrecoverable=fail)"
    (occurrences "RestartPreventExitStatus = 3;" (source "ticdc.nix"))
    1
  )
  (check "bounded backoff" stack.restartBackoff {
    RestartSec = "2s";
    RestartSteps = 6;
    RestartMaxDelaySec = "1min";
  })

  # ---- event log rotation (16.8) -----------------------------------------------------------
  (check "rotation defaults: 256 MiB x 8, no age limit" stack.eventLogEnv {
    CDCMON_EVENT_LOG = "/var/log/cdcmon/events.ndjson";
    CDCMON_EVENT_LOG_MAX_BYTES = "268435456";
    CDCMON_EVENT_LOG_KEEP = "8";
    CDCMON_EVENT_LOG_MAX_AGE_SECS = "0";
  })
  (check "Filebeat follows the rotated files" (stack.filebeatInput { }).paths [
    "/var/log/cdcmon/events.ndjson"
    "/var/log/cdcmon/events.ndjson.[0-9]*"
  ])
]
