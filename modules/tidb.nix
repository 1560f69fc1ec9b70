# Single-node TiDB cluster from the nixpkgs packages `tikv-pd`, `tikv` and `tidb`:
# PD -> TiKV -> TiDB, each unit "started" only once its status endpoint answers (ExecStartPost
# probe), so After= ordering means "ready", not "forked". Ports come from nix/ports.nix.
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
    ;
  cfg = config.services.tidb-cluster;
  ports = import ../nix/ports.nix;
  helpers = import ./lib.nix { inherit lib pkgs; };
  stack = import ../nix/lib/stack.nix { inherit ports; };
  toml = pkgs.formats.toml { };
  str = toString;
  loopback = "127.0.0.1";
  pdClientUrl = "http://${loopback}:${str ports.pdClient}";
  pdPeerUrl = "http://${loopback}:${str ports.pdPeer}";

  settingsOption =
    component: docs:
    mkOption {
      type = toml.type;
      default = { };
      description = "${component} configuration file (TOML), see <${docs}>. Passed with `--config`.";
    };

  # Common unit shape: hardened, DynamicUser with its own StateDirectory, readiness probe.
  # Dependencies are Wants= plus a readiness wait on each dependency's status URL (`waitFor`),
  # never Requires=: one failed start of a required unit would fail its dependents for good
  # (systemd issue #18856; nix/lib/stack.nix `units`, issue 16.3).
  mkUnit =
    {
      description,
      state,
      exec,
      ready,
      deps ? [ ],
      waitFor ? { },
    }:
    {
      inherit description;
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ] ++ deps;
      wants = deps;
      serviceConfig = helpers.hardening // stack.restartBackoff // {
        Type = "exec";
        ExecStartPre = lib.mapAttrsToList helpers.waitForHttp waitFor;
        ExecStart = exec;
        ExecStartPost = helpers.waitForHttp state ready;
        StateDirectory = state;
        StateDirectoryMode = "0700";
        WorkingDirectory = "%S/${state}";
        Restart = "on-failure";
        # An automatic restart goes straight back to "activating", so units ordered after this
        # one keep waiting instead of failing with result `dependency` (systemd >= 254).
        RestartMode = "direct";
        # First start bootstraps raft/system tables; the probe above is the real gate.
        TimeoutStartSec = "10min";
        # TiKV refuses to start below 82920 open files; TiDB and PD warn. One limit for all.
        LimitNOFILE = 1000000;
      };
    };
in
{
  options.services.tidb-cluster = {
    enable = mkEnableOption "a single-node TiDB cluster (PD, TiKV and TiDB server)";

    pd = {
      package = mkPackageOption pkgs "tikv-pd" { };
      settings = settingsOption "PD" "https://docs.pingcap.com/tidb/stable/pd-configuration-file";
    };

    tikv = {
      package = mkPackageOption pkgs "tikv" { };
      settings = settingsOption "TiKV" "https://docs.pingcap.com/tidb/stable/tikv-configuration-file";
    };

    tidb = {
      package = mkPackageOption pkgs "tidb" { };
      settings = settingsOption "TiDB" "https://docs.pingcap.com/tidb/stable/tidb-configuration-file";
      host = mkOption {
        type = types.str;
        default = stack.listenDefaults.tidb;
        description = ''
          Address the MySQL protocol port (${str ports.tidb}) binds to. Loopback by default: the
          stack's `root` user has no password. nix/vm.nix widens it to `0.0.0.0` because a QEMU
          host port-forward reaches the guest NIC, not its loopback.
        '';
      };
      advertiseAddress = mkOption {
        type = types.str;
        default = loopback;
        description = ''
          Address TiDB registers in PD (`-advertise-address`). Set explicitly because the
          hardened unit has no `AF_NETLINK`, so Go cannot list interfaces and TiDB would
          otherwise advertise its `-host` value (`0.0.0.0`).
        '';
      };
    };
  };

  config = mkIf cfg.enable {
    # Small-VM defaults; every value is overridable (mkDefault) through `tikv.settings`.
    services.tidb-cluster.tikv.settings = lib.mapAttrsRecursive (_: lib.mkDefault) (
      (import ../nix/lib/stack.nix { inherit ports; }).tikvSmallNode
    );

    systemd.services.tidb-pd = mkUnit {
      description = "TiDB placement driver (PD)";
      state = "tidb-pd";
      exec = lib.escapeShellArgs [
        (getExe' cfg.pd.package "pd-server")
        "--name=pd-1"
        "--data-dir=%S/tidb-pd"
        "--client-urls=${pdClientUrl}"
        "--advertise-client-urls=${pdClientUrl}"
        "--peer-urls=${pdPeerUrl}"
        "--advertise-peer-urls=${pdPeerUrl}"
        "--initial-cluster=pd-1=${pdPeerUrl}"
        "--config=${toml.generate "pd.toml" cfg.pd.settings}"
      ];
      ready = "${pdClientUrl}/pd/api/v1/health";
    };

    systemd.services.tidb-tikv = mkUnit {
      description = "TiKV storage node";
      state = "tidb-tikv";
      deps = [ "tidb-pd.service" ];
      waitFor.pd = "${pdClientUrl}/pd/api/v1/health";
      exec = lib.escapeShellArgs [
        (getExe' cfg.tikv.package "tikv-server")
        "--addr=${loopback}:${str ports.tikv}"
        "--advertise-addr=${loopback}:${str ports.tikv}"
        "--status-addr=${loopback}:${str ports.tikvStatus}"
        "--pd=${loopback}:${str ports.pdClient}"
        "--data-dir=%S/tidb-tikv"
        "--config=${toml.generate "tikv.toml" cfg.tikv.settings}"
      ];
      ready = "http://${loopback}:${str ports.tikvStatus}/status";
    };

    systemd.services.tidb-server = mkUnit {
      description = "TiDB SQL server";
      state = "tidb-server";
      deps = [
        "tidb-pd.service"
        "tidb-tikv.service"
      ];
      waitFor = {
        pd = "${pdClientUrl}/pd/api/v1/health";
        tikv = "http://${loopback}:${str ports.tikvStatus}/status";
      };
      exec = lib.escapeShellArgs [
        (getExe' cfg.tidb.package "tidb-server")
        "-host=${cfg.tidb.host}"
        # Flag name: pingcap/tidb cmd/tidb-server/main.go (`nmAdvertiseAddress = "advertise-address"`).
        "-advertise-address=${cfg.tidb.advertiseAddress}"
        "-P=${str ports.tidb}"
        "-status=${str ports.tidbStatus}"
        # The status port (metrics, /status, but also /mvcc/*, /schema, /settings: row data and
        # live config, unauthenticated) binds every interface unless told otherwise (pingcap/tidb
        # cmd/tidb-server/main.go: `statusHost = fset.String(nmStatusHost, <wildcard>, ...)`,
        # nmStatusHost = "status-host"). Only Prometheus and the readiness probe on this machine
        # read it, so it stays on loopback even when `host` is widened.
        "-status-host=${loopback}"
        "-store=tikv"
        "-path=${loopback}:${str ports.pdClient}"
        "-config=${toml.generate "tidb.toml" cfg.tidb.settings}"
      ];
      ready = "http://${loopback}:${str ports.tidbStatus}/status";
    };
  };
}
