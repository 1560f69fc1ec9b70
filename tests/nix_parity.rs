//! The NixOS modules express Prometheus scrape jobs and Filebeat settings as Nix attributes
//! (`nix/lib/stack.nix`), while the tests of `monitoring/` check the YAML files. This test
//! evaluates the Nix side with `nix-instantiate` (no nixpkgs needed) and asserts it says the same
//! as the tested YAML, so the VM/docker stack cannot drift from what CI verified.
//! Needs `nix-instantiate` (Debian `nix-bin`); set `CDCMON_SKIP_NIX=1` to skip explicitly.

mod common;

use common::files::{env_defaults, expand_dotted, root};

use std::process::Command;

use serde_json::{Value, json};

/// `None` when skipping was asked for; panics with an install hint when the tool is missing.
fn eval_nix(expr: &str) -> Option<Value> {
    if std::env::var_os("CDCMON_SKIP_NIX").is_some() {
        eprintln!("skipped: CDCMON_SKIP_NIX is set");
        return None;
    }
    let out = Command::new("nix-instantiate")
        .current_dir(root())
        .args(["--eval", "--strict", "--json", "-E", expr])
        .output()
        .unwrap_or_else(|e| {
            panic!("nix-instantiate not runnable ({e}): apt-get install nix-bin, or set CDCMON_SKIP_NIX=1")
        });
    assert!(
        out.status.success(),
        "nix-instantiate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("nix-instantiate --json output"))
}

fn yaml(rel: &str) -> Value {
    let text = std::fs::read_to_string(root().join(rel)).expect(rel);
    let v: serde_norway::Value = serde_norway::from_str(&text).expect(rel);
    serde_json::to_value(v).expect("yaml as json")
}

const STACK: &str = "(import ./nix/lib/stack.nix { })";

#[test]
fn nix_scrape_jobs_equal_the_tested_prometheus_yml() {
    let Some(nix) = eval_nix(&format!(
        "{{ jobs = {STACK}.scrapeConfigs {{ }}; global = {STACK}.prometheusGlobal; }}"
    )) else {
        return;
    };
    let normalise = |jobs: &Value| -> Vec<Value> {
        let mut v: Vec<Value> = jobs
            .as_array()
            .expect("scrape_configs list")
            .iter()
            .map(|j| {
                json!({
                    "job_name": j["job_name"],
                    "metrics_path": j.get("metrics_path").cloned().unwrap_or(json!("/metrics")),
                    "targets": j["static_configs"][0]["targets"],
                })
            })
            .collect();
        v.sort_by_key(|j| j["job_name"].as_str().unwrap_or_default().to_owned());
        v
    };
    let file = yaml("monitoring/prometheus/prometheus.yml");
    assert_eq!(normalise(&nix["jobs"]), normalise(&file["scrape_configs"]));
    for key in ["scrape_interval", "evaluation_interval"] {
        assert_eq!(nix["global"][key], file["global"][key], "global.{key}");
    }
}

#[test]
fn nix_filebeat_input_and_output_equal_the_tested_filebeat_yml() {
    let Some(nix) = eval_nix(&format!(
        "{{ input = {STACK}.filebeatInput {{ }}; output = {STACK}.filebeatOutput {{ }}; setup = {STACK}.filebeatSetup; }}"
    )) else {
        return;
    };
    let file = env_defaults(expand_dotted(yaml("monitoring/filebeat/filebeat.yml")));
    let file_input = &file["filebeat"]["inputs"][0];
    assert_eq!(expand_dotted(nix["input"].clone()), *file_input);
    let out = &file["output"]["elasticsearch"];
    for key in ["enabled", "hosts", "index"] {
        assert_eq!(nix["output"][key], out[key], "output.elasticsearch.{key}");
    }
    let setup = &file["setup"];
    assert_eq!(nix["setup"]["ilm"]["enabled"], setup["ilm"]["enabled"]);
    for key in ["name", "pattern"] {
        assert_eq!(
            nix["setup"]["template"][key], setup["template"][key],
            "setup.template.{key}"
        );
    }
    // Deliberate difference: under NixOS a oneshot PUTs the template (modules/stack.nix), so
    // Filebeat itself must not load one.
    assert_eq!(nix["setup"]["template"]["enabled"], false);
}

/// Service logs (issue 14): the NixOS journald input is the tested second input of
/// filebeat.yml, it ships every unit of the graph, and the compose container input parses lines
/// with the same processors into the same index family.
#[test]
fn nix_service_logs_inputs_equal_the_tested_filebeat_yml() {
    let Some(nix) = eval_nix(&format!(
        "{{ journald = {STACK}.journaldInput; containers = {STACK}.containerLogsInput; \
         graph = builtins.attrNames {STACK}.units; pattern = {STACK}.logsIndexPattern; \
         template = {STACK}.logsTemplateName; line = {STACK}.logLineProcessors; \
         pingcap = {STACK}.pingcapProcessors; levels = {STACK}.levelWordProcessors; }}"
    )) else {
        return;
    };
    let file = env_defaults(expand_dotted(yaml("monitoring/filebeat/filebeat.yml")));
    let file_input = file["filebeat"]["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .find(|i| i["id"] == "stack-journal")
        .expect("filebeat.yml has the stack-journal input");
    assert_eq!(expand_dotted(nix["journald"].clone()), *file_input);

    // Every unit of the systemd graph (and the smoke unit) is shipped.
    let units: Vec<&str> = nix["journald"]["units"]
        .as_array()
        .expect("units")
        .iter()
        .map(|u| u.as_str().expect("unit name"))
        .collect();
    for n in nix["graph"].as_array().expect("graph").iter() {
        let unit = format!("{}.service", n.as_str().expect("unit"));
        assert!(units.contains(&unit.as_str()), "{unit} is not shipped");
    }
    assert!(units.contains(&"cdcmon-smoke.service"));

    // The compose input: same index family, same raw-line and PingCAP processors.
    let c = &nix["containers"];
    assert_eq!(c["index"], nix["journald"]["index"]);
    let pattern = nix["pattern"].as_str().expect("pattern");
    assert_eq!(pattern, "stack-logs-*");
    assert!(
        c["index"]
            .as_str()
            .expect("index")
            .starts_with(pattern.trim_end_matches('*'))
    );
    let procs = c["processors"].as_array().expect("processors");
    for p in nix["line"]
        .as_array()
        .expect("line")
        .iter()
        .chain(nix["pingcap"].as_array().expect("pingcap"))
        .chain(nix["levels"].as_array().expect("levels"))
    {
        assert!(procs.contains(p), "container input lacks {p}");
        assert!(
            nix["journald"]["processors"]
                .as_array()
                .expect("processors")
                .contains(p),
            "journald input lacks {p}"
        );
    }
    // A container line's own level word wins over the INFO default (the default only fills in
    // a missing log.level, so it must come after every level-word processor).
    let default_info = procs
        .iter()
        .position(|p| {
            p["add_fields"]["when"] == serde_json::json!({"not": {"has_fields": ["log.level"]}})
        })
        .expect("the container input's INFO default");
    for p in nix["levels"].as_array().expect("levels") {
        let at = procs.iter().position(|q| q == p).expect("level processor");
        assert!(at < default_info, "{p} comes after the INFO default");
    }
    assert_eq!(c["type"], "filestream");
    assert_eq!(c["id"], "stack-containers");
    assert_eq!(c["parsers"][0]["container"]["format"], "docker");
    // docker/compose.yaml mounts what the container input reads: the log directory and the
    // socket add_docker_metadata asks, both read-only, and tells smoke its service name.
    let compose = yaml("docker/compose.yaml");
    let mounts: Vec<&str> = compose["services"]["filebeat"]["volumes"]
        .as_array()
        .expect("filebeat volumes")
        .iter()
        .map(|v| v.as_str().expect("short volume syntax"))
        .collect();
    let log_dir = c["paths"][0]
        .as_str()
        .expect("path")
        .trim_end_matches("/*/*.log");
    assert!(
        mounts.contains(&format!("{log_dir}:{log_dir}:ro").as_str()),
        "{mounts:?}"
    );
    let socket = procs
        .iter()
        .find_map(|p| p["add_docker_metadata"]["host"].as_str())
        .expect("add_docker_metadata host")
        .trim_start_matches("unix://");
    assert!(
        mounts.contains(&format!("{socket}:{socket}:ro").as_str()),
        "{mounts:?}"
    );
    assert_eq!(
        compose["services"]["smoke"]["environment"]["CDCMON_LOGS_SERVICE"],
        "smoke"
    );
    // The template the oneshot/job loads is the file for that pattern.
    let tmpl: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("monitoring/elasticsearch/stack-logs-template.json"))
            .expect("template"),
    )
    .expect("template json");
    assert_eq!(tmpl["index_patterns"], json!([pattern]));
    assert_eq!(nix["template"], "stack-logs");
}

/// The port of `scheme://host:port/...` or `host:port`.
fn port_of(url: &str) -> u64 {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host_port = after_scheme.split('/').next().unwrap_or_default();
    let host_port = host_port.rsplit_once('@').map_or(host_port, |(_, hp)| hp);
    host_port
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

#[test]
fn rust_endpoint_defaults_use_the_ports_of_nix_ports_nix() {
    let Some(ports) = eval_nix("import ./nix/ports.nix") else {
        return;
    };
    use cdcmon::defaults as d;
    for (name, url, key) in [
        ("BROKERS", d::BROKERS, "kafka"),
        ("SINK_BROKER", d::SINK_BROKER, "kafka"),
        ("LISTEN", d::LISTEN, "cdcmon"),
        ("CDCMON_URL", d::CDCMON_URL, "cdcmon"),
        ("TIDB_URL", d::TIDB_URL, "tidb"),
        ("TICDC_URL", d::TICDC_URL, "ticdc"),
        ("PROMETHEUS_URL", d::PROMETHEUS_URL, "prometheus"),
        ("ELASTICSEARCH_URL", d::ELASTICSEARCH_URL, "elasticsearch"),
        ("GRAFANA_URL", d::GRAFANA_URL, "grafana"),
    ] {
        assert_eq!(
            Some(port_of(url)),
            ports[key].as_u64(),
            "defaults::{name} vs ports.{key}"
        );
    }
    let Some(stack) = eval_nix(&format!(
        "{{ topic = {STACK}.topic; group = {STACK}.consumerGroup; changefeed = {STACK}.changefeedId; index = {STACK}.esIndexPattern; }}"
    )) else {
        return;
    };
    assert_eq!(stack["topic"], d::TOPIC);
    assert_eq!(stack["group"], d::GROUP);
    assert_eq!(stack["changefeed"], d::CHANGEFEED_ID);
    assert_eq!(stack["index"], d::ELASTICSEARCH_INDEX);
}

#[test]
fn nix_sink_uri_equals_changefeed_ensure_default_for_every_protocol() {
    // ALL lists the registry-free protocols; avro's URI is built by both sides too.
    let protocols = cdcmon::event::Protocol::ALL
        .into_iter()
        .chain([cdcmon::event::Protocol::Avro]);
    for protocol in protocols {
        let Some(nix) = eval_nix(&format!(
            "{STACK}.sinkUri {{ protocol = \"{}\"; }}",
            protocol.as_str()
        )) else {
            return;
        };
        assert_eq!(
            nix,
            cdcmon::ticdc_api::default_sink_uri(protocol),
            "{protocol}"
        );
    }
}

/// Runs `retryScript` (the loop inside the stack's oneshots, issue 16.3) with `bash -e` against a
/// command script; returns (exit status, attempts made).
fn run_retry_script(attempt_body: &str, budget: u32) -> Option<(i32, u32)> {
    let script = eval_nix(&format!(
        "{STACK}.retryScript {{ command = \"./attempt\"; budget = {budget}; maxDelay = 1; stopOn = 3; }}"
    ))?;
    let dir = tempfile::tempdir().expect("tempdir");
    let attempt = dir.path().join("attempt");
    std::fs::write(
        &attempt,
        format!("#!/bin/sh\nn=$(($(cat count 2>/dev/null || echo 0) + 1))\necho $n > count\n{attempt_body}\n"),
    )
    .expect("write attempt");
    let mut perms = std::fs::metadata(&attempt).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&attempt, perms).expect("chmod");
    // NixOS runs a unit's `script` with bash under `set -e`; so does this test.
    let out = Command::new("bash")
        .current_dir(dir.path())
        .args(["-e", "-c", script.as_str().expect("script text")])
        .output()
        .expect("run sh");
    let attempts = std::fs::read_to_string(dir.path().join("count"))
        .expect("count")
        .trim()
        .parse()
        .expect("count number");
    Some((out.status.code().expect("exit code"), attempts))
}

#[test]
fn oneshot_retry_loop_retries_until_success() {
    // Fails twice (dependency not ready), then succeeds: the unit's start job succeeds.
    let Some(result) = run_retry_script("[ \"$n\" -ge 3 ] || exit 1", 30) else {
        return;
    };
    assert_eq!(result, (0, 3));
}

#[test]
fn oneshot_retry_loop_stops_at_once_on_the_no_retry_status() {
    // `changefeed ensure --if-unrecoverable=fail` exits 3: retrying cannot help.
    let Some(result) = run_retry_script("exit 3", 30) else {
        return;
    };
    assert_eq!(result, (3, 1));
}

#[test]
fn oneshot_retry_loop_gives_up_after_its_budget_with_the_last_status() {
    // Never succeeds: after the budget the unit fails (and systemd's Restart= takes over).
    let Some((status, attempts)) = run_retry_script("exit 7", 2) else {
        return;
    };
    assert_eq!(status, 7);
    assert!(
        (2..=4).contains(&attempts),
        "{attempts} attempts in a 2 s budget"
    );
}
