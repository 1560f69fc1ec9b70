//! `docker/compose.yaml` against issue 16: every service that needs a password gets it as a
//! compose secret file (never an environment variable `docker inspect` would show) and names
//! it with a flag cdcmon really has; listeners stay on loopback; the changefeed job recreates a
//! changefeed that cannot resume; the consumer rotates its event log with the same numbers as
//! the NixOS modules (`nix/lib/stack.nix`).

mod common;

use common::files::root;

use std::collections::BTreeSet;
use std::process::Command;

use serde_norway::Value;

fn compose() -> Value {
    let path = root().join("docker/compose.yaml");
    let text = std::fs::read_to_string(&path).expect("read docker/compose.yaml");
    let mut v: Value = serde_norway::from_str(&text).expect("docker/compose.yaml is YAML");
    // The file shares settings through `<<: *anchor` merge keys.
    v.apply_merge().expect("merge keys");
    v
}

fn service<'a>(c: &'a Value, name: &str) -> &'a Value {
    c["services"]
        .get(name)
        .unwrap_or_else(|| panic!("compose has no service {name}"))
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(items) => items
            .iter()
            .map(|i| i.as_str().expect("a string item").to_owned())
            .collect(),
        Value::String(s) => vec![s.clone()],
        Value::Null => vec![],
        other => panic!("expected a list of strings, got {other:?}"),
    }
}

/// The secrets a service mounts (short syntax: names).
fn secrets_of(c: &Value, name: &str) -> BTreeSet<String> {
    strings(&service(c, name)["secrets"]).into_iter().collect()
}

/// `/run/secrets/<name>` paths a service's command refers to.
fn secret_paths_in_command(c: &Value, name: &str) -> BTreeSet<String> {
    strings(&service(c, name)["command"])
        .iter()
        .filter_map(|arg| arg.split_once("/run/secrets/").map(|(_, s)| s.to_owned()))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn every_service_that_needs_a_password_gets_it_as_a_secret_file() {
    let c = compose();
    // db-init creates the app user; smoke logs in as it and as Grafana's admin (issue 16.1);
    // Grafana reads its admin password and secret key.
    assert_eq!(secrets_of(&c, "db-init"), set(&["app_password"]));
    assert_eq!(
        secrets_of(&c, "smoke"),
        set(&["app_password", "grafana_admin_password"])
    );
    assert_eq!(
        secrets_of(&c, "grafana"),
        set(&["grafana_admin_password", "grafana_secret_key"])
    );
    // The commands point at the mounted files with cdcmon's flags.
    let smoke_cmd = strings(&service(&c, "smoke")["command"]);
    assert!(smoke_cmd.contains(&"--app-password-file=/run/secrets/app_password".to_owned()));
    assert!(
        smoke_cmd
            .contains(&"--grafana-password-file=/run/secrets/grafana_admin_password".to_owned())
    );
    let db_cmd = strings(&service(&c, "db-init")["command"]);
    assert!(db_cmd.contains(&"--app-password-file=/run/secrets/app_password".to_owned()));
}

#[test]
fn every_secret_a_command_reads_is_mounted_and_declared_as_a_file() {
    let c = compose();
    let declared = c["secrets"].as_mapping().expect("top-level secrets");
    for (name, svc) in c["services"].as_mapping().expect("services") {
        let name = name.as_str().expect("service name");
        let mounted = strings(&svc["secrets"]);
        for path in secret_paths_in_command(&c, name) {
            assert!(
                mounted.contains(&path),
                "service {name} reads /run/secrets/{path} but does not mount secret {path}"
            );
        }
        for secret in &mounted {
            let file = declared
                .get(secret.as_str())
                .and_then(|d| d.get("file"))
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("secret {secret} (service {name}) is not a file secret"));
            assert!(
                file.starts_with("./secrets/"),
                "secret {secret} must come from docker/secrets/ (git-ignored), got {file}"
            );
        }
    }
}

#[test]
fn no_password_travels_in_the_environment() {
    let c = compose();
    let text = std::fs::read_to_string(root().join("docker/compose.yaml")).expect("read");
    // No host-side interpolation of a secret into the file either.
    for word in ["PASSWORD}", "SECRET_KEY}", "${GRAFANA"] {
        assert!(!text.contains(word), "compose.yaml interpolates {word}");
    }
    for (name, svc) in c["services"].as_mapping().expect("services") {
        let Some(env) = svc.get("environment").and_then(Value::as_mapping) else {
            continue;
        };
        for key in env.keys() {
            let key = key.as_str().expect("env name").to_ascii_uppercase();
            let secretish = ["PASSWORD", "SECRET", "TOKEN"]
                .iter()
                .any(|w| key.contains(w));
            assert!(
                !secretish || key.ends_with("_FILE"),
                "service {name:?} passes {key} in the environment; use a compose secret file"
            );
        }
    }
}

#[test]
fn smoke_and_db_init_flags_exist_in_the_binary() {
    // The flags compose passes must be real (a typo would make the job fail at start).
    for (sub, flags) in [
        (
            vec!["smoke"],
            vec!["--app-password-file", "--grafana-password-file"],
        ),
        (
            vec!["db", "init"],
            vec!["--app-password-file", "--tidb-url"],
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_cdcmon"))
            .args(&sub)
            .arg("--help")
            .output()
            .expect("run cdcmon --help");
        let help = String::from_utf8_lossy(&out.stdout);
        for flag in flags {
            assert!(
                help.contains(flag),
                "`cdcmon {} --help` lists no {flag}",
                sub.join(" ")
            );
        }
    }
}

#[test]
fn listeners_stay_on_loopback() {
    let c = compose();
    let text = std::fs::read_to_string(root().join("docker/compose.yaml")).expect("read");
    assert!(
        !text.contains("0.0.0.0"),
        "compose uses host networking: a wildcard bind exposes an unauthenticated port"
    );
    // Every flag that chooses a bind address must be passed, with a loopback value: leaving one
    // out is not caught by the text check above, because the upstream default is a wildcard
    // (TiDB's `-status-host`, pingcap/tidb cmd/tidb-server/main.go, was missed once).
    let bind_flags: [(&str, &[&str]); 4] = [
        ("pd", &["--client-urls", "--peer-urls"]),
        ("tikv", &["--addr", "--status-addr"]),
        ("tidb", &["-host", "-status-host"]),
        ("ticdc", &["--addr"]),
    ];
    for (name, flags) in bind_flags {
        let cmd = strings(&service(&c, name)["command"]);
        for flag in flags {
            let value = cmd
                .iter()
                .find_map(|a| a.strip_prefix(&format!("{flag}=")))
                .unwrap_or_else(|| panic!("{name}: {flag} is not set: {cmd:?}"));
            let host = value.strip_prefix("http://").unwrap_or(value);
            assert!(
                host.starts_with("127.0.0.1:") || host == "127.0.0.1",
                "{name}: {flag}={value} is not loopback"
            );
        }
    }
    assert_eq!(
        service(&c, "cdcmon")["environment"]["CDCMON_LISTEN"].as_str(),
        Some("127.0.0.1:9102")
    );
}

#[test]
fn changefeed_job_recreates_a_changefeed_that_cannot_resume() {
    let c = compose();
    let cmd = strings(&service(&c, "changefeed")["command"]);
    assert_eq!(
        cmd.iter()
            .filter(|a| a.starts_with("--if-unrecoverable="))
            .collect::<Vec<_>>(),
        ["--if-unrecoverable=recreate"]
    );
}

#[test]
fn long_running_services_restart_and_jobs_retry() {
    let c = compose();
    for (name, svc) in c["services"].as_mapping().expect("services") {
        let name = name.as_str().expect("name");
        let restart = svc["restart"].as_str().unwrap_or("no");
        let expected = match name {
            "smoke" => "no",
            "kafka-topic" | "changefeed" | "db-init" | "es-template" => "on-failure",
            _ => "unless-stopped",
        };
        assert_eq!(restart, expected, "service {name}");
    }
}

#[test]
fn event_log_rotation_equals_the_nix_modules() {
    let c = compose();
    let env = &service(&c, "cdcmon")["environment"];
    if std::env::var_os("CDCMON_SKIP_NIX").is_some() {
        eprintln!("skipped the Nix comparison: CDCMON_SKIP_NIX is set");
        return;
    }
    let out = Command::new("nix-instantiate")
        .current_dir(root())
        .args([
            "--eval",
            "--strict",
            "--json",
            "-E",
            "(import ./nix/lib/stack.nix { }).eventLogEnv",
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!("nix-instantiate not runnable ({e}): apt-get install nix-bin, or set CDCMON_SKIP_NIX=1")
        });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nix: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(nix.len(), 4, "{nix:?}");
    for (key, value) in &nix {
        assert_eq!(
            env[key.as_str()].as_str(),
            value.as_str(),
            "cdcmon environment {key}"
        );
    }
}

fn avro_override() -> Value {
    let text = std::fs::read_to_string(root().join("docker/compose.avro.yaml"))
        .expect("read docker/compose.avro.yaml");
    serde_norway::from_str(&text).expect("docker/compose.avro.yaml is YAML")
}

/// `cdcmon <command...>` parsed by the binary's own CLI definition.
fn parse_cli(command: &[String]) -> cdcmon::cli::Command {
    use clap::Parser;
    let argv = std::iter::once("cdcmon".to_owned()).chain(command.iter().cloned());
    cdcmon::cli::Cli::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("{command:?} does not parse: {e}"))
        .command
}

/// issue 12: the Avro override's jobs parse, build the changefeed TiCDC accepts, and agree with
/// the consumer on the registry and the topics.
#[test]
fn avro_override_wires_changefeed_consumer_and_db_init_consistently() {
    use cdcmon::cli::{ChangefeedCommand, Command as Cmd, DbCommand};
    let base = compose();
    let over = avro_override();
    // It only adds the registry; every other service it names exists in the base file.
    for name in over["services"].as_mapping().expect("services").keys() {
        let name = name.as_str().expect("service name");
        assert!(
            name == "schema-registry" || base["services"].get(name).is_some(),
            "{name} is not a service of docker/compose.yaml"
        );
    }
    let registry = service(&over, "schema-registry");
    assert_eq!(
        registry["environment"]["SCHEMA_REGISTRY_LISTENERS"].as_str(),
        Some("http://127.0.0.1:8081"),
        "the registry listens on loopback like the rest of the stack"
    );
    // Audit B2 #6: dependents wait for a registry that answers, not one that merely started.
    let probe = strings(&registry["healthcheck"]["test"]);
    assert_eq!(probe.first().map(String::as_str), Some("CMD"), "{probe:?}");
    assert!(
        probe
            .iter()
            .any(|a| a.starts_with("http://127.0.0.1:8081/")),
        "{probe:?}"
    );
    for (name, svc) in over["services"].as_mapping().expect("services") {
        if let Some(dep) = svc["depends_on"].get("schema-registry") {
            assert_eq!(
                dep["condition"].as_str(),
                Some("service_healthy"),
                "{name:?} must wait for a healthy registry"
            );
        }
    }

    let Cmd::Changefeed(ChangefeedCommand::Ensure(args)) =
        parse_cli(&strings(&service(&over, "changefeed")["command"]))
    else {
        panic!("the changefeed job is not `changefeed ensure`");
    };
    let request = cdcmon::ticdc_api::CreateChangefeed::from_args(&args).expect("a valid request");
    assert!(
        request.sink_uri.contains("protocol=avro"),
        "{}",
        request.sink_uri
    );
    let sink = request
        .replica_config
        .sink
        .clone()
        .expect("avro sink config");
    let integrity = request.replica_config.integrity.expect("integrity config");
    assert_eq!(integrity.integrity_check_level.as_str(), "correctness");

    let env = &service(&over, "cdcmon")["environment"];
    assert_eq!(
        sink.schema_registry.as_deref(),
        env["CDCMON_SCHEMA_REGISTRY_URL"].as_str(),
        "TiCDC and cdcmon must use the same registry (both on the host network)"
    );
    // The consumer's topic regex takes every topic the dispatcher makes for schema `app`, and
    // nothing else.
    let topic = env["CDCMON_TOPIC"].as_str().expect("CDCMON_TOPIC");
    let pattern = topic
        .strip_prefix('^')
        .map(|_| topic)
        .expect("a `^` regex entry");
    let re = regex::Regex::new(pattern).expect("valid regex");
    let rule = &sink.dispatchers[0].topic;
    let topic_of =
        |schema: &str, table: &str| rule.replace("{schema}", schema).replace("{table}", table);
    assert!(
        re.is_match(&topic_of("app", "orders")),
        "{pattern} vs {rule}"
    );
    assert!(
        re.is_match(&topic_of("app", "users")),
        "{pattern} vs {rule}"
    );
    assert!(
        !re.is_match(&topic_of("other", "orders")),
        "{pattern} vs {rule}"
    );
    assert!(!re.is_match("app_cdc"), "{pattern}");

    let Cmd::Db(DbCommand::Init(db)) = parse_cli(&strings(&service(&over, "db-init")["command"]))
    else {
        panic!("the db-init job is not `db init`");
    };
    assert!(
        db.row_checksum,
        "row checksums need tidb_enable_row_level_checksum"
    );
    // Same server and secret as the base job.
    assert_eq!(
        secret_paths_in_command(&over, "db-init"),
        secret_paths_in_command(&base, "db-init")
    );
}
