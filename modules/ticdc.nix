# TiCDC server (`cdc server`) plus one oneshot per declared changefeed, which runs
# `cdcmon changefeed ensure` (create if absent, then wait for state `normal`; idempotent, so a
# restart never fails on "changefeed already exists").
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
    getExe
    mapAttrs'
    nameValuePair
    ;
  cfg = config.services.ticdc;
  ports = import ../nix/ports.nix;
  stack = import ../nix/lib/stack.nix { inherit ports; };
  helpers = import ./lib.nix { inherit lib pkgs; };
  toml = pkgs.formats.toml { };
  apiUrl = "http://${cfg.advertiseAddress}";
in
{
  options.services.ticdc = {
    enable = mkEnableOption "the TiCDC change-data-capture server";

    package = mkPackageOption pkgs "ticdc" {
      extraDescription = "nixpkgs has no TiCDC; the flake provides one built from PingCAP's release binaries (nix/ticdc.nix).";
    };

    pdEndpoints = mkOption {
      type = types.listOf types.str;
      default = [ "http://127.0.0.1:${toString ports.pdClient}" ];
      description = "PD client URLs (`--pd`).";
    };

    address = mkOption {
      type = types.str;
      default = "0.0.0.0:${toString ports.ticdc}";
      description = "Listen address of the open API and /metrics (`--addr`). The upstream default 127.0.0.1 would hide it from a VM port-forward.";
    };

    advertiseAddress = mkOption {
      type = types.str;
      default = "127.0.0.1:${toString ports.ticdc}";
      description = "Address other captures and clients use (`--advertise-addr`); also the API the changefeed oneshots call.";
    };

    settings = mkOption {
      type = toml.type;
      default = { };
      description = "TiCDC server configuration (TOML, `--config`), see <https://docs.pingcap.com/tidb/stable/ticdc-server-config>.";
    };

    changefeedTool = mkPackageOption pkgs "cdcmon" {
      extraDescription = "Provides `cdcmon changefeed ensure`, used by the per-changefeed oneshots.";
    };

    changefeeds = mkOption {
      default = { };
      description = "Changefeeds to ensure; the attribute name is the changefeed id.";
      example = lib.literalExpression ''{ app-cdc = { }; }'';
      type = types.attrsOf (
        types.submodule {
          options.sinkUri = mkOption {
            type = types.str;
            default = stack.sinkUri { };
            defaultText = stack.sinkUri { };
            description = "TiCDC sink URI (nix/lib/stack.nix `sinkUri` builds Kafka ones).";
          };
        }
      );
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.pdEndpoints != [ ];
        message = "services.ticdc.pdEndpoints must name at least one PD client URL.";
      }
    ];

    systemd.services = {
      ticdc = {
        description = "TiCDC server";
        wantedBy = [ "multi-user.target" ];
        after = [ "network.target" ];
        serviceConfig = helpers.hardening // {
          Type = "exec";
          ExecStart = lib.escapeShellArgs [
            (getExe cfg.package)
            "server"
            "--pd=${lib.concatStringsSep "," cfg.pdEndpoints}"
            "--addr=${cfg.address}"
            "--advertise-addr=${cfg.advertiseAddress}"
            "--data-dir=%S/ticdc"
            "--config=${toml.generate "ticdc.toml" cfg.settings}"
          ];
          # Ready = the v2 status API answers (it does once the capture has registered).
          ExecStartPost = helpers.waitForHttp "ticdc" "${apiUrl}/api/v2/status";
          StateDirectory = "ticdc";
          StateDirectoryMode = "0700";
          WorkingDirectory = "%S/ticdc";
          Restart = "on-failure";
          RestartSec = "5s";
          TimeoutStartSec = "5min";
          LimitNOFILE = 1000000;
        };
      };
    }
    // mapAttrs' (
      id: feed:
      nameValuePair "ticdc-changefeed-${id}" {
        description = "Ensure TiCDC changefeed ${id}";
        wantedBy = [ "multi-user.target" ];
        after = [ "ticdc.service" ];
        requires = [ "ticdc.service" ];
        serviceConfig = helpers.hardening // {
          Type = "oneshot";
          RemainAfterExit = true;
          ExecStart = lib.escapeShellArgs [
            (getExe cfg.changefeedTool)
            "changefeed"
            "ensure"
            "--ticdc-url=${apiUrl}"
            "--changefeed-id=${id}"
            # `%` would be a systemd specifier.
            "--sink-uri=${lib.replaceStrings [ "%" ] [ "%%" ] feed.sinkUri}"
          ];
          # Kafka or the capture may still be settling; `ensure` is idempotent, so retry.
          Restart = "on-failure";
          RestartSec = "5s";
          TimeoutStartSec = "5min";
        };
      }
    ) cfg.changefeeds;
  };
}
