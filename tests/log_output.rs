//! cdcmon's own log lines as a service-log pipeline sees them (issue 14): stderr is a pipe under
//! systemd (journal) and Docker (json-file), so the text format must carry no ANSI escape codes,
//! and its level must be readable by the Filebeat level-word processors of
//! monitoring/filebeat/filebeat.yml (the same regexps as nix/lib/stack.nix `levelWords`).

mod common;

use std::io::{BufRead, BufReader};

use common::files::{expand_dotted, read_yaml, root};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The first stderr line of `cdcmon smoke` (its INFO start line, logged before any network
/// call) with stderr a pipe; every endpoint points at a closed port, the process is killed after
/// the line.
fn first_smoke_line(format: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cdcmon"))
        .args(["--log-format", format, "--log", "info", "smoke"])
        .env_remove("NO_COLOR")
        .env("CDCMON_TICDC_URL", "http://127.0.0.1:1")
        .env("CDCMON_PROMETHEUS_URL", "http://127.0.0.1:1")
        .env("CDCMON_ELASTICSEARCH_URL", "http://127.0.0.1:1")
        .env("CDCMON_GRAFANA_URL", "http://127.0.0.1:1")
        .env("CDCMON_CDCMON_URL", "http://127.0.0.1:1")
        .env("CDCMON_TIDB_URL", "mysql://root@127.0.0.1:1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cdcmon starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stderr).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
    line.expect("cdcmon smoke logs a start line within 60 s")
}

/// The regexp of the level-word processor for `level` in the tested filebeat.yml.
fn level_regexp(level: &str) -> regex::Regex {
    let yml = expand_dotted(read_yaml(&root().join("monitoring/filebeat/filebeat.yml")));
    let journal = yml["filebeat"]["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .find(|i| i["id"] == "stack-journal")
        .expect("stack-journal input");
    journal["processors"]
        .as_array()
        .expect("processors")
        .iter()
        .filter_map(|p| {
            let a = &p["add_fields"];
            (a["fields"]["level"].as_str() == Some(level))
                .then(|| a["when"]["and"].as_array())
                .flatten()
                .and_then(|c| {
                    c.iter()
                        .find_map(|c| c["regexp"]["message"].as_str().map(str::to_owned))
                })
        })
        .map(|re| regex::Regex::new(&re).expect("valid regexp"))
        .next()
        .unwrap_or_else(|| panic!("no level-word processor for {level}"))
}

#[test]
fn text_logs_into_a_pipe_carry_no_colour_and_a_readable_level() {
    let line = first_smoke_line("text");
    assert!(
        line.contains("smoke started; log marker cdcmon-smoke-"),
        "{line:?}"
    );
    assert!(
        !line.contains('\u{1b}'),
        "ANSI escape codes in a piped log line: {line:?}"
    );
    assert!(
        level_regexp("INFO").is_match(line.trim_end()),
        "Filebeat's INFO level word does not match {line:?}"
    );
}

#[test]
fn json_logs_carry_a_level_filebeat_reads() {
    let line = first_smoke_line("json");
    assert!(line.contains("cdcmon-smoke-"), "{line:?}");
    assert!(
        level_regexp("INFO").is_match(line.trim_end()),
        "Filebeat's INFO level word does not match {line:?}"
    );
}
