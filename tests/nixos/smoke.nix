# VM smoke test: one node with the whole stack; wait for every unit and port, then run
# `cdcmon smoke` (exits 0 only if every hop passed) and double-check the hops it claims.
# Wired as checks.<system>.smoke by flake.nix; needs KVM (see docs/nix.md).
{ pkgs, self }:
let
  ports = import ../../nix/ports.nix;
  stack = import ../../nix/lib/stack.nix { inherit ports; };
  p = toString;

  # systemd time span -> seconds, for the values our units use ("15min", "90s", "300").
  seconds =
    span:
    let
      m = builtins.match "([0-9]+)(s|min|h)?" (toString span);
      n = builtins.fromJSON (builtins.head m);
      unit = builtins.elemAt m 1;
    in
    if m == null then
      throw "tests/nixos/smoke.nix: cannot read the time span '${toString span}'"
    else if unit == "min" then
      n * 60
    else if unit == "h" then
      n * 3600
    else
      n;
in
pkgs.testers.runNixOSTest {
  name = "cdcmon-smoke";
  globalTimeout = 2700;

  nodes.machine = {
    imports = [ self.nixosModules.default ];
    services.cdcmon-stack.enable = true;
    system.stateVersion = "26.05";
    virtualisation = {
      # ES alone needs ~3 GB in the nixpkgs ELK test; TiKV, two JVMs and Grafana come on top.
      memorySize = 8192;
      cores = 4;
      diskSize = 16384;
    };
  };

  # A function of the nodes so the smoke step's timeout is read from the unit itself.
  testScript =
    { nodes, ... }:
    let
      # The driver's execute() kills the command after `timeout` seconds (default 900, the
      # same as the unit's 15 min, so the two would race). Give systemd the first word: its
      # TimeoutStartSec plus a minute for `systemctl` to report the failure.
      smokeUnitTimeout = seconds nodes.machine.systemd.services.cdcmon-smoke.serviceConfig.TimeoutStartSec;
      smokeStepTimeout = smokeUnitTimeout + 60;
    in
    ''
    import json

    start_all()

    with subtest("TiDB cluster is ready (PD -> TiKV -> TiDB, probed by the units)"):
        for unit in ["tidb-pd", "tidb-tikv", "tidb-server"]:
            machine.wait_for_unit(f"{unit}.service", timeout=900)
        machine.wait_for_open_port(${p ports.tidb})

    with subtest("Kafka is up and the topic exists"):
        machine.wait_for_unit("apache-kafka.service")
        machine.wait_for_open_port(${p ports.kafka})
        machine.wait_for_open_port(${p ports.kafkaExternal})
        machine.wait_for_unit("cdcmon-kafka-topic.service")

    with subtest("TiCDC and the changefeed"):
        machine.wait_for_unit("ticdc.service")
        machine.wait_for_open_port(${p ports.ticdc})
        machine.wait_for_unit("ticdc-changefeed-${stack.changefeedId}.service")
        feed = json.loads(machine.succeed(
            "curl -fsS http://127.0.0.1:${p ports.ticdc}/api/v2/changefeeds/${stack.changefeedId}"))
        assert feed["state"] == "normal", feed

    with subtest("database initialised, consumer serving metrics"):
        machine.wait_for_unit("cdcmon-db-init.service")
        machine.wait_for_unit("cdcmon.service")
        machine.wait_for_open_port(${p ports.cdcmon})
        machine.wait_until_succeeds("curl -fsS http://127.0.0.1:${p ports.cdcmon}/metrics | grep -q cdcmon_build_info")

    with subtest("logging and monitoring"):
        for unit in ["elasticsearch", "cdcmon-es-template", "cdcmon-logs-template", "filebeat", "prometheus", "grafana"]:
            machine.wait_for_unit(f"{unit}.service")
        for port in [${p ports.elasticsearch}, ${p ports.prometheus}, ${p ports.grafana}]:
            machine.wait_for_open_port(port)
        machine.succeed("curl -fsS http://127.0.0.1:${p ports.grafana}/api/datasources/uid/prometheus -u admin:admin")
        machine.succeed("curl -fsS http://127.0.0.1:${p ports.grafana}/api/datasources/uid/elasticsearch -u admin:admin")
        # Service logs (issue 14): their own datasource and index template.
        machine.succeed("curl -fsS http://127.0.0.1:${p ports.grafana}/api/datasources/uid/elasticsearch-logs -u admin:admin")
        machine.succeed("curl -fsS http://127.0.0.1:${p ports.elasticsearch}/_index_template/${stack.logsTemplateName}")

    with subtest("cdcmon smoke passes every hop"):
        # nixos/lib/test-driver/src/test_driver/machine/__init__.py: execute(command,
        # check_return=True, check_output=True, timeout=900) wraps the command in `timeout`.
        rc, out = machine.execute("systemctl start cdcmon-smoke.service", timeout=${p smokeStepTimeout})
        print(machine.succeed("journalctl -u cdcmon-smoke.service --no-pager"))
        assert rc == 0, "cdcmon smoke failed (journal above)"

    with subtest("the hops smoke reported are visible independently"):
        machine.wait_until_succeeds(
            "curl -fsS 'http://127.0.0.1:${p ports.prometheus}/api/v1/query?query=up%7Bjob%3D%22cdcmon%22%7D' | grep -q '\"1\"\\]'",
            timeout=120)
        machine.wait_until_succeeds(
            "curl -fsS 'http://127.0.0.1:${p ports.prometheus}/api/v1/query?query=sum(cdc_events_total)' | grep -q '\"result\":\\[{'",
            timeout=120)
        machine.wait_until_succeeds(
            "curl -fsS 'http://127.0.0.1:${p ports.elasticsearch}/${stack.esIndexPattern}/_count' | grep -qv '\"count\":0'",
            timeout=120)
        # Service logs (issue 14): the smoke unit's own journal lines reached stack-logs-* under
        # its service name (smoke's check 23 asserts the marker line; this is the index seen
        # from outside), and none of them leaked into the event-log indices.
        machine.wait_until_succeeds(
            "curl -fsS 'http://127.0.0.1:${p ports.elasticsearch}/${stack.logsIndexPattern}/_count?q=service.name:cdcmon-smoke' | grep -qv '\"count\":0'",
            timeout=120)
        machine.succeed(
            "curl -fsS 'http://127.0.0.1:${p ports.elasticsearch}/${stack.esIndexPattern}/_count?q=service.name:*' | grep -q '\"count\":0'")
        machine.succeed("test -s ${stack.eventLog}")
  '';
}
