# Service logs (issue 14): every stack unit's journal into Elasticsearch, beside the change
# events. Imported by modules/stack.nix; a separate file so the event-log wiring there stays as
# it is. What is shipped and how it is parsed is data in nix/lib/stack.nix (`journaldInput`,
# identical to the second input of monitoring/filebeat/filebeat.yml: tests/nix_parity.rs).
# Options set here, and the nixpkgs source each was checked against: docs/nix.md.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption mkIf types;
  cfg = config.services.cdcmon-stack;
  ports = import ../nix/ports.nix;
  stack = import ../nix/lib/stack.nix { inherit ports; };
  helpers = import ./lib.nix { inherit lib pkgs; };
  template = builtins.fromJSON (builtins.readFile cfg.logs.indexTemplate);
  esUrl = "http://127.0.0.1:${toString ports.elasticsearch}";
  templateUnit = "cdcmon-logs-template.service";
in
{
  options.services.cdcmon-stack.logs.indexTemplate = mkOption {
    type = types.path;
    default = ../monitoring/elasticsearch/stack-logs-template.json;
    description = "Index template for the `${stack.logsIndexPattern}` indices (service logs), loaded before Filebeat starts.";
  };

  config = mkIf cfg.enable {
    # A second Filebeat input; the event-log input and the output stay as modules/stack.nix sets
    # them. The input's own `index` sends these documents to stack-logs-*, never cdc-events-*.
    services.filebeat.inputs.stack-journal = stack.journaldInput;

    systemd.services.filebeat = {
      # Filebeat 8.x's journald input runs `journalctl` found on PATH (elastic/beats
      # filebeat/input/journald/pkg/journalctl/reader.go: exec.Command("journalctl", ...)); a
      # NixOS unit's PATH holds only what `path` lists, so add systemd's journalctl.
      path = [ config.systemd.package ];
      # nixpkgs' filebeat unit sets no User= (it runs as root, which reads every journal);
      # the journal group keeps this input working if that unit ever drops to a DynamicUser.
      serviceConfig.SupplementaryGroups = [ "systemd-journal" ];
      # The logs template exists before the first stack-logs-* document (else ES would map the
      # index dynamically for the day). cdcmon-logs-template is a unit of the graph
      # (nix/lib/stack.nix `units`); the edge is added here to leave the event-log graph alone.
      wants = [ templateUnit ];
      after = [ templateUnit ];
    };

    # Same unit as cdcmon-es-template (modules/stack.nix), from modules/lib.nix.
    systemd.services.cdcmon-logs-template = helpers.esTemplateService {
      inherit stack;
      unit = "cdcmon-logs-template";
      description = "Load the ${stack.logsTemplateName} Elasticsearch index template (service logs)";
      templateFile = cfg.logs.indexTemplate;
      url = "${esUrl}/${stack.esTemplateApi template}/${stack.logsTemplateName}";
    };
  };
}
