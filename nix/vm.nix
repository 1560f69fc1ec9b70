# The `nix run .#stack` machine: the stack module plus VM sizing, host port-forwards and a
# root console. Options under virtualisation.vmVariant apply only to `system.build.vm`.
{ lib, ... }:
let
  stack = import ./lib/stack.nix { };
in
{
  networking.hostName = "stack"; # -> run-stack-vm
  system.stateVersion = "26.05";

  services.cdcmon-stack = {
    enable = true;
    # The host reaches the guest NIC through QEMU SLiRP, so the listeners must bind it and the
    # guest firewall must let it in. Only this throwaway VM does that: the modules default to
    # loopback, and opening unauthenticated ports needs the explicit acknowledgement below.
    # The forwards themselves bind 127.0.0.1 on the host (forwardPorts below).
    listenAddress = stack.vmListenAddress;
    openFirewall = true;
    allowUnauthenticatedExposure = true;
    # Kafka's EXTERNAL listener is advertised as 127.0.0.1:9094 (the module default): the
    # host-side forward is IPv4 only, and `localhost` may resolve to ::1 first.
  };
  # Run `cdcmon smoke` once everything is up; see `journalctl -u cdcmon-smoke`.
  services.cdcmon.smoke.startAtBoot = true;

  services.getty.autologinUser = "root";

  virtualisation.vmVariant.virtualisation = {
    memorySize = 8192;
    cores = 4;
    diskSize = 16384;
    graphics = false;
    forwardPorts = map (port: {
      from = "host";
      host.address = "127.0.0.1";
      host.port = port;
      guest.port = port;
    }) stack.forwardedPorts;
  };

  documentation.enable = lib.mkDefault false;

  # `nix flake check` evaluates config.system.build.toplevel of every nixosConfigurations entry
  # (Nix src/nix/flake.cc, checkNixOSConfiguration), i.e. *this* configuration, not its
  # vmVariant: without a root file system and with grub enabled its assertions fail (defect 4).
  # mkDefault so qemu-vm.nix still wins inside the VM: it sets
  # `fileSystems = mkIf (cfg.fileSystems != { }) (mkVMOverride cfg.fileSystems)` and boots the
  # kernel directly (nixos/modules/virtualisation/qemu-vm.nix @ 00008e8e). Guarded by
  # nix/tests/eval-flake.nix. This machine is only ever run as `system.build.vm`.
  fileSystems."/" = lib.mkDefault {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
  };
  boot.loader.grub.enable = lib.mkDefault false;
}
