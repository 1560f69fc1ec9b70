# dockerTools images of every service, from the same packages the NixOS modules use, plus the
# compose file (docker/compose.yaml). All images carry the tag `version` (Cargo.toml), which
# compose pins; nothing is pulled. Compose runs every container with host networking, so the
# generated configs are the VM's (loopback + nix/ports.nix) and the repo's monitoring files
# apply unchanged. Result: a directory of `<name>.tar.gz` image files + compose.yaml
# (docs/docker.md).
{
  lib,
  pkgs,
  cdcmon,
  ticdc,
  # Passed explicitly by flake.nix (pkgs.elasticsearch8). Not named `elasticsearch` and no
  # default: callPackage would fill that name from pkgs.elasticsearch (7.x) whatever the default
  # says (docs/nix.md, defect 2).
  elasticsearchPackage,
}:
let
  inherit (lib) getExe getExe';
  version = (lib.importTOML ../Cargo.toml).package.version;
  ports = import ./ports.nix;
  stack = import ./lib/stack.nix { inherit ports; };
  str = toString;
  yaml = pkgs.formats.yaml { };
  json = pkgs.formats.json { };
  ini = pkgs.formats.ini { };
  toml = pkgs.formats.toml { };

  # One image: name cdcmon/<name>:<version>, fake /etc/passwd, curl for compose healthchecks,
  # writable /tmp.
  image =
    {
      name,
      entrypoint,
      contents ? [ ],
      env ? [ ],
      user ? "65534:65534",
      stateDirs ? [ ],
      labels ? { },
    }:
    pkgs.dockerTools.buildLayeredImage {
      name = "cdcmon/${name}";
      tag = version;
      contents = [
        pkgs.dockerTools.fakeNss
        pkgs.curl
        pkgs.coreutils
      ]
      ++ contents;
      fakeRootCommands = ''
        mkdir -p tmp ${lib.concatStringsSep " " (map (d: "." + d) stateDirs)}
        chmod 1777 tmp
        ${lib.concatMapStrings (d: "chown -R ${user} .${d}\n") stateDirs}
      '';
      enableFakechroot = false;
      config = {
        Entrypoint = entrypoint;
        Env = [ "SSL_CERT_FILE=${pkgs.cacert}/etc/ssl/certs/ca-bundle.crt" ] ++ env;
        User = user;
        Labels = {
          "org.opencontainers.image.version" = version;
          "org.opencontainers.image.source" = "cdcmon";
        }
        // labels;
      };
    };
  component = pkg: { "org.cdcmon.component.version" = pkg.version or "unknown"; };

  # ---- generated configuration (same generators as the NixOS stack module) ----------------
  kafkaProperties = pkgs.writeText "server.properties" (
    stack.renderProperties (stack.kafkaSettings { logDirs = [ "/var/lib/kafka" ]; })
  );
  kafka = pkgs.apacheKafka;
  kafkaStart = pkgs.writeShellScript "kafka-start" ''
    set -eu
    [ -f /var/lib/kafka/meta.properties ] || \
      ${kafka}/bin/kafka-storage.sh format -t "''${KAFKA_CLUSTER_ID:-Y2RjbW9uLXN0YWNrLWtmaw}" -c ${kafkaProperties}
    exec ${kafka.passthru.jre}/bin/java -Xms512m -Xmx512m \
      ${stack.kafkaLog4j2Option (pkgs.writeText "kafka-log4j2.properties" stack.kafkaLog4j2Properties)} \
      -cp "${kafka}/libs/*" kafka.Kafka ${kafkaProperties}
  '';

  esYml = pkgs.writeText "elasticsearch.yml" ''
    network.host: ${stack.listenDefaults.elasticsearch}
    http.port: ${str ports.elasticsearch}
    transport.port: ${str ports.elasticsearchTransport}
    discovery.type: single-node
    xpack.security.enabled: false
    xpack.ml.enabled: false
  '';
  esLog4j = pkgs.writeText "log4j2.properties" ''
    appender.console.type = Console
    appender.console.name = console
    appender.console.layout.type = PatternLayout
    appender.console.layout.pattern = [%d{ISO8601}][%-5p][%-25c{1.}] %marker%m%n
    rootLogger.level = info
    rootLogger.appenderRef.console.ref = console
  '';
  # What nixpkgs' elasticsearch module does in preStart: a writable ES_HOME with the package's
  # lib/modules linked in and the config copied (ES writes its keystore next to it).
  esStart = pkgs.writeShellScript "elasticsearch-start" ''
    set -eu
    home=/var/lib/elasticsearch
    mkdir -p $home/config $home/logs $home/plugins $home/data
    ln -sfT ${elasticsearchPackage}/lib $home/lib
    ln -sfT ${elasticsearchPackage}/modules $home/modules
    cp -f ${esYml} $home/config/elasticsearch.yml
    cp -f ${esLog4j} $home/config/log4j2.properties
    cp -f ${elasticsearchPackage}/config/jvm.options $home/config/jvm.options
    chmod u+w $home/config/*
    export ES_HOME=$home ES_PATH_CONF=$home/config ES_JAVA_OPTS="''${ES_JAVA_OPTS:--Xms1g -Xmx1g}"
    exec ${elasticsearchPackage}/bin/elasticsearch
  '';
  esTemplateLoad =
    let
      tplFile = ../monitoring/elasticsearch/cdc-events-template.json;
      api = stack.esTemplateApi (builtins.fromJSON (builtins.readFile tplFile));
    in
    pkgs.writeShellScript "es-template" ''
      set -e
      ${getExe pkgs.curl} -sS --fail --retry 60 --retry-delay 2 --retry-connrefused --retry-all-errors \
        -X PUT -H 'Content-Type: application/json' --data-binary @${tplFile} \
        http://127.0.0.1:${str ports.elasticsearch}/${api}/${stack.esTemplateName}
      # Service logs (issue 14): the stack-logs-* template, before Filebeat starts.
      exec ${getExe pkgs.curl} -sS --fail --retry 60 --retry-delay 2 --retry-connrefused --retry-all-errors \
        -X PUT -H 'Content-Type: application/json' --data-binary @${logsTemplateFile} \
        http://127.0.0.1:${str ports.elasticsearch}/${logsTemplateApi}/${stack.logsTemplateName}
    '';

  # The service-logs template (issue 14), PUT by the same job after the event-log one.
  logsTemplateFile = ../monitoring/elasticsearch/stack-logs-template.json;
  logsTemplateApi = stack.esTemplateApi (builtins.fromJSON (builtins.readFile logsTemplateFile));

  filebeatYml = json.generate "filebeat.yml" {
    filebeat.inputs = [
      (stack.filebeatInput { })
      # Service logs (issue 14): the containers' json-file logs -> stack-logs-*; needs the
      # mounts docker/compose.yaml gives the filebeat service (docs/docker.md "Service logs").
      stack.containerLogsInput
    ];
    output.elasticsearch = stack.filebeatOutput { };
    setup = stack.filebeatSetup;
  };

  # Same content as the VM: the repo's prometheus.yml semantics, built from nix/lib/stack.nix,
  # with the repo's rule files.
  prometheusYml = yaml.generate "prometheus.yml" {
    global = stack.prometheusGlobal;
    rule_files = [ "${../monitoring/prometheus/rules}/*.yml" ];
    scrape_configs = stack.scrapeConfigs { };
  };

  grafanaProvisioning = pkgs.linkFarm "grafana-provisioning" {
    # The repo's tested file (host networking: the same 127.0.0.1 URLs as in the VM).
    "datasources/datasources.yaml" = ../monitoring/grafana/provisioning/datasources/datasources.yml;
    "dashboards/dashboards.yaml" = yaml.generate "dashboards.yaml" {
      apiVersion = 1;
      providers = [
        {
          name = "cdcmon";
          type = "file";
          options.path = "${../monitoring/grafana/dashboards}";
        }
      ];
    };
  };
  grafanaIni = ini.generate "grafana.ini" {
    paths = {
      data = "/var/lib/grafana";
      logs = "/var/lib/grafana/log";
      plugins = "/var/lib/grafana/plugins";
      provisioning = "${grafanaProvisioning}";
    };
    server = {
      http_addr = stack.listenDefaults.grafana;
      http_port = ports.grafana;
    };
    # No secret in the image or in the environment (`docker inspect` shows it): compose
    # mounts both as secret files (docs/docker.md).
    security = {
      admin_user = "admin";
      admin_password = "$__file{/run/secrets/grafana_admin_password}";
      secret_key = "$__file{/run/secrets/grafana_secret_key}";
    };
    analytics.reporting_enabled = false;
  };

  # Grafana applies admin_password only when it creates the admin user; on every later start
  # reset it to the secret with Grafana's CLI (grafana/grafana pkg/cmd/grafana-cli/commands:
  # `cli --homepath --config admin reset-admin-password --password-from-stdin`).
  grafanaHome = "${pkgs.grafana}/share/grafana";
  grafanaStart = pkgs.writeShellScript "grafana-start" ''
    set -eu
    if [ -e /var/lib/grafana/grafana.db ]; then
      ${getExe' pkgs.grafana "grafana"} cli --homepath ${grafanaHome} --config ${grafanaIni} \
        admin reset-admin-password --password-from-stdin < /run/secrets/grafana_admin_password \
        || echo "grafana-start: WARNING: could not apply the grafana_admin_password secret" >&2
    fi
    exec ${getExe' pkgs.grafana "grafana"} server --homepath=${grafanaHome} --config=${grafanaIni}
  '';

  images = {
    cdcmon-consumer = image {
      name = "cdcmon-consumer";
      contents = [ cdcmon ];
      entrypoint = [
        (getExe cdcmon)
        "consume"
      ];
      # Event log with cdcmon's own rotation, and /metrics on loopback (host networking).
      env = lib.mapAttrsToList (n: v: "${n}=${v}") stack.eventLogEnv ++ [
        "CDCMON_LISTEN=${stack.listenDefaults.cdcmon}:${str ports.cdcmon}"
      ];
      stateDirs = [ "/var/log/cdcmon" ];
    };
    # Also runs `db init` and `changefeed ensure` (compose overrides the entrypoint's argument).
    cdcmon-smoke = image {
      name = "cdcmon-smoke";
      contents = [ cdcmon ];
      entrypoint = [ (getExe cdcmon) ];
      env = lib.mapAttrsToList (n: v: "${n}=${v}") (stack.endpointEnv { });
    };
    pd = image {
      name = "pd";
      contents = [ pkgs.tikv-pd ];
      entrypoint = [ (getExe' pkgs.tikv-pd "pd-server") ];
      stateDirs = [ "/var/lib/pd" ];
      labels = component pkgs.tikv-pd;
    };
    tikv = image {
      name = "tikv";
      contents = [ pkgs.tikv ];
      entrypoint = [
        (getExe' pkgs.tikv "tikv-server")
        "--config=${toml.generate "tikv.toml" stack.tikvSmallNode}"
      ];
      stateDirs = [ "/var/lib/tikv" ];
      labels = component pkgs.tikv;
    };
    tidb = image {
      name = "tidb";
      contents = [ pkgs.tidb ];
      entrypoint = [ (getExe' pkgs.tidb "tidb-server") ];
      labels = component pkgs.tidb;
    };
    ticdc = image {
      name = "ticdc";
      contents = [ ticdc ];
      entrypoint = [ (getExe ticdc) ];
      stateDirs = [ "/var/lib/ticdc" ];
      labels = component ticdc;
    };
    kafka = image {
      name = "kafka";
      contents = [ kafka ];
      entrypoint = [ kafkaStart ];
      stateDirs = [ "/var/lib/kafka" ];
      labels = component kafka;
    };
    elasticsearch = image {
      name = "elasticsearch";
      # Elasticsearch refuses to run as root; nobody is fine.
      entrypoint = [ esStart ];
      stateDirs = [ "/var/lib/elasticsearch" ];
      labels = component elasticsearchPackage;
    };
    es-template = image {
      name = "es-template";
      entrypoint = [ esTemplateLoad ];
    };
    filebeat = image {
      name = "filebeat";
      contents = [ pkgs.filebeat8 ];
      entrypoint = [
        (getExe pkgs.filebeat8)
        "-e"
        "-c"
        filebeatYml
        "--path.data"
        "/var/lib/filebeat"
      ];
      # Reads the consumer's event log volume.
      user = "0:0";
      stateDirs = [ "/var/lib/filebeat" ];
      labels = component pkgs.filebeat8;
    };
    prometheus = image {
      name = "prometheus";
      contents = [ pkgs.prometheus ];
      entrypoint = [
        (getExe pkgs.prometheus)
        "--config.file=${prometheusYml}"
        "--storage.tsdb.path=/var/lib/prometheus"
        "--web.listen-address=${stack.listenDefaults.prometheus}:${str ports.prometheus}"
      ];
      stateDirs = [ "/var/lib/prometheus" ];
      labels = component pkgs.prometheus;
    };
    grafana = image {
      name = "grafana";
      contents = [ pkgs.grafana ];
      entrypoint = [ grafanaStart ];
      stateDirs = [ "/var/lib/grafana" ];
      labels = component pkgs.grafana;
    };
  };
in
pkgs.linkFarm "cdcmon-docker-images-${version}" (
  lib.mapAttrs' (n: img: lib.nameValuePair "${n}.tar.gz" img) images
  // {
    "compose.yaml" = ../docker/compose.yaml;
  }
)
// {
  inherit images version;
}
