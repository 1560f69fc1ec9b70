# Helpers shared by the modules in this directory (needs nixpkgs `lib` and `pkgs`).
{ lib, pkgs }:
let
  inherit (lib) escapeShellArg;
in
{
  # systemd hardening baseline (STYLE.md §1 B, centrifugo). Units that need more (TiKV's
  # open-file limit, writable state) add to it; nothing here is relaxed silently.
  hardening = {
    DynamicUser = true;
    UMask = "0077";
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    PrivateUsers = true;
    ProtectProc = "invisible";
    # No ProcSubset = "pid": TiKV/TiDB size their caches and memory limits from /proc/meminfo,
    # and the prometheus process collector in cdcmon reads /proc/stat.
    ProtectClock = true;
    ProtectHostname = true;
    ProtectControlGroups = true;
    ProtectKernelLogs = true;
    ProtectKernelModules = true;
    ProtectKernelTunables = true;
    RestrictRealtime = true;
    RestrictNamespaces = true;
    RestrictSUIDSGID = true;
    RestrictAddressFamilies = [
      "AF_INET"
      "AF_INET6"
      "AF_UNIX"
    ];
    DeviceAllow = [ "" ];
    DevicePolicy = "closed";
    CapabilityBoundingSet = [ "" ];
    NoNewPrivileges = true;
    MemoryDenyWriteExecute = true;
    LockPersonality = true;
    RemoveIPC = true;
    SystemCallArchitectures = "native";
    SystemCallErrorNumber = "EPERM";
    SystemCallFilter = [
      "@system-service"
      "~@privileged"
    ];
  };

  # Readiness = the service answers HTTP, not "the process exists" and not a sleep. Used as
  # ExecStartPost, so units ordered After= this one start only once it answers. curl retries
  # once per second; the unit's TimeoutStartSec bounds the wait.
  waitForHttp =
    name: url:
    pkgs.writeShellScript "wait-for-${name}" ''
      exec ${lib.getExe pkgs.curl} --silent --show-error --fail --output /dev/null \
        --retry 600 --retry-delay 1 --retry-connrefused --retry-all-errors --max-time 5 \
        ${escapeShellArg url}
    '';

  # The oneshot that loads one of the repo's Elasticsearch index templates before Filebeat
  # writes (cdcmon-es-template in modules/stack.nix, cdcmon-logs-template in
  # modules/stack-logs.nix): PUT the file with the API its format needs (`stack.esTemplateApi`);
  # idempotent, retried by curl and then by systemd (Restart= from the unit graph
  # nix/lib/stack.nix `units`, looked up by `unit`).
  esTemplateService =
    {
      stack,
      unit,
      description,
      templateFile,
      url,
    }:
    {
      inherit description;
      wantedBy = [ "multi-user.target" ];
      before = [ "filebeat.service" ];
      serviceConfig = stack.restartBackoff // {
        Type = "oneshot";
        RemainAfterExit = true;
        DynamicUser = true;
        Restart = stack.units.${unit}.restart;
        TimeoutStartSec = "5min";
        ExecStart = lib.escapeShellArgs [
          (lib.getExe pkgs.curl)
          "--silent"
          "--show-error"
          "--fail"
          "--retry"
          "30"
          "--retry-connrefused"
          "-X"
          "PUT"
          "-H"
          "Content-Type: application/json"
          "--data-binary"
          "@${templateFile}"
          url
        ];
      };
    };

  # A credential path must not be in the world-readable store.
  notInStore = path: !(lib.hasPrefix builtins.storeDir (toString path));
}
