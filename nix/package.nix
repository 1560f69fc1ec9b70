# cdcmon built with crane: one dependency build (`cargoArtifacts`) shared by the package and
# every cargo check. Returns { package, clippy, fmt, nextest }.
{
  lib,
  craneLib,
  cmake,
  pkg-config,
  zlib,
  curl,
  prometheus,
}:
let
  root = ../.;
  # Cargo sources plus the non-Rust files the tests read (scripts/check-nix.sh fails when a
  # file the tests open is missing here: nix/tests/crane-src.nix). Nix files, docs and the rest
  # of docker/ are left out so editing them does not rebuild Rust; docker/compose.yaml and
  # docker/compose.avro.yaml are in because tests/compose.rs reads them.
  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      (craneLib.fileset.commonCargoSources root)
      (lib.fileset.maybeMissing ../tests/fixtures)
      (lib.fileset.maybeMissing ../monitoring)
      (lib.fileset.maybeMissing ../sql)
      (lib.fileset.maybeMissing ../docker/compose.yaml)
      (lib.fileset.maybeMissing ../docker/compose.avro.yaml)
    ];
  };

  commonArgs = {
    inherit src;
    strictDeps = true;
    # rdkafka's `cmake-build` feature builds librdkafka with cmake (the default ./configure path
    # needs /usr/bin/env, absent in the sandbox). crane's configurePhase does not run the cmake
    # setup hook, but say so explicitly.
    nativeBuildInputs = [
      cmake
      pkg-config
    ];
    # curl: librdkafka 2.12.x (rdkafka 0.39, cmake-build) includes <curl/curl.h> even with
    # WITH_CURL=0 (`#ifdef WITH_OAUTHBEARER_OIDC` against a config.h that defines it as 0;
    # librdkafka issues #5135 and #5204, fix pending in PR #5309). Drop it once rdkafka-sys
    # ships a librdkafka with that fix.
    buildInputs = [
      zlib
      curl
    ];
    dontUseCmakeConfigure = true;
    # No input for TLS: reqwest uses rustls with the ring provider (Cargo.toml), and ring 0.17
    # from crates.io compiles its C and pregenerated assembly with stdenv's cc alone (its
    # build.rs runs perlasm only in a git checkout); no aws-lc-rs (cmake/perl/nasm/go) in
    # Cargo.lock.
  };

  cargoArtifacts = craneLib.buildDepsOnly commonArgs;
in
{
  package = craneLib.buildPackage (
    commonArgs
    // {
      inherit cargoArtifacts;
      # Tests run in the separate nextest check (crane quick-start pattern).
      doCheck = false;
      meta = {
        description = "TiCDC change-data-capture monitor";
        license = lib.licenses.asl20;
        mainProgram = "cdcmon";
        platforms = lib.platforms.linux;
      };
    }
  );

  clippy = craneLib.cargoClippy (
    commonArgs
    // {
      inherit cargoArtifacts;
      cargoClippyExtraArgs = "--all-targets -- --deny warnings";
    }
  );

  fmt = craneLib.cargoFmt { inherit src; };

  # What runs in the sandbox and what is skipped there, and why: docs/nix.md "Tests in the
  # nextest sandbox". crane v0.23.4 lib/cargoNextest.nix passes these attrs through to
  # mkCargoDerivation (it only appends cargo-nextest to nativeBuildInputs and merges `env`), and
  # the tests run in its checkPhase (doCheck defaults to true), where nativeBuildInputs are on
  # PATH.
  nextest = craneLib.cargoNextest (
    commonArgs
    // {
      inherit cargoArtifacts;
      nativeBuildInputs = commonArgs.nativeBuildInputs ++ [
        # promtool for the rule/config/dashboard tests (tests/monitoring_*.rs). nixpkgs'
        # prometheus moves bin/promtool to its `cli` output (pkgs/by-name/pr/prometheus/package.nix,
        # `moveToOutput bin/promtool $cli`); its NixOS module uses `cfg.package.cli` the same way.
        prometheus.cli
        # The server binary, for tests/smoke_prometheus.rs (loopback only, which the sandbox has).
        prometheus
      ];
      env = {
        # Run smoke_prometheus.rs instead of skipping it when `prometheus` is missing.
        CDCMON_TEST_PROMETHEUS = "1";
        # tests/nix_parity.rs needs nix-instantiate and a Nix store, neither of which exists
        # inside the build sandbox; scripts/check-nix.sh + `cargo test` run it in CI.
        CDCMON_SKIP_NIX = "1";
      };
      # Every test binary runs here, tests/fault_tolerance.rs included: its tests are paced by
      # what the consumer has read and committed, so they hold under crane's release profile
      # (docs/sandbox-parity.md, "Findings"). No `cargoNextestExtraArgs`: crane v0.23.4
      # lib/cargoNextest.nix defaults it to "" (`cargoNextestExtraArgs ? ""`).
      partitions = 1;
      partitionType = "count";
      cargoNextestPartitionsExtraArgs = "--no-tests=pass";
    }
  );
}
