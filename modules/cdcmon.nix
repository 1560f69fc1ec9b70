# cdcmon: the consumer daemon (`cdcmon consume`), the idempotent `cdcmon db init` oneshot and the
# `cdcmon smoke` oneshot. cdcmon is configured only through flags and their CDCMON_* environment
# twins, so `settings` is rendered with pkgs.formats.keyValue into an EnvironmentFile.
{
  config,
  lib,
  pkgs,
  # nixpkgs nixos/lib/utils.nix, a module argument of every NixOS module
  # (nixos/modules/misc/extra-arguments.nix `_module.args.utils`).
  utils,
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
    hasPrefix
    ;
  cfg = config.services.cdcmon;
  ports = import ../nix/ports.nix;
  stack = import ../nix/lib/stack.nix { inherit ports; };
  helpers = import ./lib.nix { inherit lib pkgs; };
  envFormat = pkgs.formats.keyValue { };
  envFile = envFormat.generate "cdcmon.env" cfg.settings;
  exe = getExe cfg.package;
  eventLog = cfg.settings.CDCMON_EVENT_LOG;
  registry = cfg.schemaRegistry;
  registryAuth = registry.user != null && registry.passwordFile != null;
  strOption =
    default: description:
    mkOption {
      type = types.str;
      inherit default description;
    };
in
{
  options.services.cdcmon = {
    enable = mkEnableOption "cdcmon, the TiCDC Kafka consumer (Prometheus metrics + ndjson event log)";

    package = mkPackageOption pkgs "cdcmon" {
      extraDescription = "The flake's `packages.default` (crane build of this repository).";
    };

    settings = mkOption {
      default = { };
      description = ''
        Environment of `cdcmon consume`: every flag has a `CDCMON_*` twin (`cdcmon consume --help`).
        Free-form; the options below are the ones the stack relies on.
      '';
      example = {
        CDCMON_LOG_VALUES = true;
        CDCMON_DEAD_LETTER_TOPIC = "app_cdc_dlq";
      };
      type = types.submodule {
        freeformType = envFormat.type;
        options = {
          CDCMON_BROKERS = strOption "127.0.0.1:${toString ports.kafka}" "Kafka bootstrap servers.";
          CDCMON_TOPIC = strOption stack.topic "Topic TiCDC writes to.";
          CDCMON_GROUP = strOption stack.consumerGroup "Consumer group (a new group starts at the earliest offset).";
          CDCMON_LISTEN = strOption "${stack.listenDefaults.cdcmon}:${toString ports.cdcmon}" "HTTP address of /metrics, /healthz and /readyz (unauthenticated; loopback unless you widen it).";
          CDCMON_EVENT_LOG = strOption stack.eventLog "ndjson event log (read by Filebeat); `-` writes to the journal instead.";
          # Rotation inside cdcmon (issue 16.8): the CLI default is "never rotate"; the module
          # rotates at 256 MiB and keeps 8 files (nix/lib/stack.nix `eventLogRotation` says why).
          CDCMON_EVENT_LOG_MAX_BYTES = strOption stack.eventLogEnv.CDCMON_EVENT_LOG_MAX_BYTES "Rotate the event log when it reaches this many bytes (0 = never).";
          CDCMON_EVENT_LOG_KEEP = strOption stack.eventLogEnv.CDCMON_EVENT_LOG_KEEP "Rotated event-log files kept (events.ndjson.1 = newest); older ones are deleted.";
          CDCMON_EVENT_LOG_MAX_AGE_SECS = strOption stack.eventLogEnv.CDCMON_EVENT_LOG_MAX_AGE_SECS "Also rotate when the live file is this old (0 = off).";
          CDCMON_LOG_FORMAT = strOption "json" "Format of cdcmon's own logs (`text` or `json`).";
        };
      };
    };

    schemaRegistry = {
      url = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "http://registry.internal:8081";
        description = ''
          Confluent schema registry for TiCDC's avro protocol (`cdcmon consume
          --schema-registry-url`); with the default `CDCMON_PROTOCOL=auto` it also turns on
          Avro detection. No `user:password@` here (it would land in the Nix store): use `user`
          and `passwordFile`. An `https://` registry is checked against the system's CAs
          (`security.pki.certificateFiles`); for a private CA set
          `settings.CDCMON_SCHEMA_REGISTRY_CA_FILE` to its PEM file (public, may be in the store).
        '';
      };
      user = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Registry basic-auth user (`--schema-registry-user`), with `passwordFile`.";
      };
      passwordFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/run/secrets/schema-registry-password";
        description = ''
          File with the registry basic-auth password (first line). Passed with systemd
          `LoadCredential` (`--schema-registry-password-file=%d/schema-registry-password`), so it
          is read at start and never copied into the Nix store.
        '';
      };
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Open the metrics port (${toString ports.cdcmon}) in the firewall. /metrics has no
        authentication; it also needs `settings.CDCMON_LISTEN` on a non-loopback address.
      '';
    };

    dbInit = {
      enable = mkEnableOption "the `cdcmon db init` oneshot (schema `app`, seed rows, application user; idempotent)";
      tidbUrl = strOption "mysql://root@127.0.0.1:${toString ports.tidb}" "Administrative TiDB URL (`--tidb-url`).";
      rowChecksum = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Also `SET GLOBAL tidb_enable_row_level_checksum = ON` (`db init --row-checksum`),
          which TiCDC's `integrity-check-level = correctness` needs to have checksums to send.
          TiDB only; skipped with a warning on MySQL/MariaDB.
        '';
      };
      appPasswordFile = mkOption {
        type = types.str;
        example = "/run/secrets/cdcmon-app-password";
        description = ''
          File holding the application user's password. Passed with systemd `LoadCredential`,
          so it is read by systemd at start and never copied into the Nix store.
        '';
      };
    };

    smoke = {
      enable = mkEnableOption "the `cdcmon-smoke` oneshot (`cdcmon smoke`: drives a change through every hop)";
      startAtBoot = mkOption {
        type = types.bool;
        default = false;
        description = "Run the smoke test once at boot, after the whole stack. Otherwise run `systemctl start cdcmon-smoke`.";
      };
      grafanaPasswordFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = ''
          File with Grafana's admin password, for the smoke test's Grafana API checks (passed with
          `LoadCredential`). null: smoke tries Grafana's default `admin` and says so.
        '';
      };
      environment = mkOption {
        type = types.attrsOf types.str;
        default = stack.endpointEnv { };
        defaultText = lib.literalExpression "(import ./nix/lib/stack.nix { }).endpointEnv { }";
        description = "Endpoints for `cdcmon smoke` (CDCMON_* variables).";
      };
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        # LogsDirectory=cdcmon is the only writable place under ProtectSystem=strict.
        assertion = eventLog == "-" || hasPrefix "/var/log/cdcmon/" eventLog;
        message = "services.cdcmon.settings.CDCMON_EVENT_LOG must be `-` or a file under /var/log/cdcmon/ (got ${eventLog}).";
      }
      {
        assertion = cfg.smoke.grafanaPasswordFile == null || helpers.notInStore cfg.smoke.grafanaPasswordFile;
        message = "services.cdcmon.smoke.grafanaPasswordFile must not be in the Nix store: the store is world-readable.";
      }
      {
        assertion = registry.passwordFile == null || helpers.notInStore registry.passwordFile;
        message = "services.cdcmon.schemaRegistry.passwordFile must not be in the Nix store: the store is world-readable.";
      }
      {
        assertion = (registry.user == null) == (registry.passwordFile == null);
        message = "services.cdcmon.schemaRegistry.user and .passwordFile go together (basic auth needs both).";
      }
      {
        assertion = registry.url != null || registry.user == null;
        message = "services.cdcmon.schemaRegistry.user is set but schemaRegistry.url is null.";
      }
      {
        assertion = registry.url == null || builtins.match "[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*@.*" registry.url == null;
        message = "services.cdcmon.schemaRegistry.url must not carry user:password@ (it would be in the world-readable Nix store): use schemaRegistry.user and schemaRegistry.passwordFile.";
      }
      {
        assertion = !cfg.dbInit.enable || helpers.notInStore cfg.dbInit.appPasswordFile;
        message = "services.cdcmon.dbInit.appPasswordFile must not be in the Nix store: the store is world-readable.";
      }
    ];

    warnings = lib.optional (cfg.openFirewall && hasPrefix "127." cfg.settings.CDCMON_LISTEN) ''
      services.cdcmon.openFirewall opens port ${toString ports.cdcmon}, but cdcmon listens on
      ${cfg.settings.CDCMON_LISTEN} (loopback): nothing outside the machine can reach it.
    '';

    networking.firewall.allowedTCPPorts = lib.optional cfg.openFirewall ports.cdcmon;

    systemd.services.cdcmon = {
      description = "cdcmon TiCDC consumer";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ];
      serviceConfig = helpers.hardening // {
        Type = "exec";
        # utils.escapeSystemdExecArgs (nixpkgs nixos/lib/utils.nix @ 0229f9ed9a89): each value
        # JSON-quoted with `%` -> `%%` and `$` -> `$$`, so a `%` or `$` in a user-supplied URL or
        # name reaches cdcmon as written instead of being expanded by systemd (a shell quote,
        # lib.escapeShellArgs, does not protect against that: systemd does not run a shell).
        # The credential argument is appended unescaped: its `%d` ($CREDENTIALS_DIRECTORY) must
        # be expanded; only the path is on the command line, never the secret.
        ExecStart =
          if registry.url == null then
            "${exe} consume"
          else
            utils.escapeSystemdExecArgs (
              [
                exe
                "consume"
                "--schema-registry-url=${registry.url}"
              ]
              ++ lib.optional registryAuth "--schema-registry-user=${registry.user}"
            )
            + lib.optionalString registryAuth " --schema-registry-password-file=%d/schema-registry-password";
        EnvironmentFile = envFile;
        # /var/log/cdcmon (via /var/log/private with DynamicUser); Filebeat runs as root and reads it.
        LogsDirectory = "cdcmon";
        Restart = stack.units.cdcmon.restart;
        RestartSec = "2s";
        RestartMode = "direct";
        # cdcmon flushes and commits on SIGTERM (CDCMON_SHUTDOWN_TIMEOUT_MS, 8 s by default).
        TimeoutStopSec = "20s";
      }
      // lib.optionalAttrs registryAuth {
        LoadCredential = [ "schema-registry-password:${registry.passwordFile}" ];
      };
    };

    systemd.services.cdcmon-db-init = mkIf cfg.dbInit.enable {
      description = "cdcmon: create schema, seed rows and the application user";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ];
      serviceConfig = helpers.hardening // {
        Type = "oneshot";
        RemainAfterExit = true;
        LoadCredential = [ "app-password:${cfg.dbInit.appPasswordFile}" ];
        # Values escaped for systemd (see cdcmon above); `%d` ($CREDENTIALS_DIRECTORY) left
        # for systemd to expand: only the path is on the command line, never the secret.
        ExecStart =
          utils.escapeSystemdExecArgs [
            exe
            "db"
            "init"
            "--tidb-url=${cfg.dbInit.tidbUrl}"
          ]
          + " --app-password-file=%d/app-password"
          + lib.optionalString cfg.dbInit.rowChecksum " --row-checksum";
        # `db init` waits for TiDB itself (CDCMON_WAIT_TIMEOUT_SECS); after that, systemd retries
        # with bounded backoff. RestartMode=direct: smoke, ordered after it, keeps waiting.
        Restart = stack.units.cdcmon-db-init.restart;
        RestartMode = "direct";
        inherit (stack.restartBackoff) RestartSec RestartSteps RestartMaxDelaySec;
        TimeoutStartSec = "5min";
      };
    };

    systemd.services.cdcmon-smoke = mkIf cfg.smoke.enable {
      description = "cdcmon end-to-end smoke test";
      wantedBy = lib.optional cfg.smoke.startAtBoot "multi-user.target";
      after = [ "network.target" ];
      inherit (cfg.smoke) environment;
      serviceConfig = helpers.hardening // {
        # No RemainAfterExit: every `systemctl start cdcmon-smoke` runs the check again.
        Type = "oneshot";
        # Secrets reach smoke as credential files (%d = $CREDENTIALS_DIRECTORY), never as values:
        # the app password for the "application user can log in" check, Grafana's for its API.
        LoadCredential =
          lib.optional cfg.dbInit.enable "app-password:${cfg.dbInit.appPasswordFile}"
          ++ lib.optional (cfg.smoke.grafanaPasswordFile != null) "grafana-password:${cfg.smoke.grafanaPasswordFile}";
        # Only fixed words and `%d` credential paths: nothing user-supplied to escape.
        ExecStart = lib.concatStringsSep " " (
          [
            exe
            "smoke"
          ]
          ++ lib.optional cfg.dbInit.enable "--app-password-file=%d/app-password"
          ++ lib.optional (cfg.smoke.grafanaPasswordFile != null) "--grafana-password-file=%d/grafana-password"
        );
        TimeoutStartSec = "15min";
      };
    };
  };
}
