//! `cdcmon demo`, the real binary: for every protocol a `--duration 5` run must exit 0 and its
//! `/metrics` and event log must count every event the generator reports producing
//! (`--stats-file`) exactly once, by table and op, with DDL kept apart. Plus: SIGTERM stops it
//! cleanly, and `--kafka-listen` lets a second `cdcmon consume` join the same topic.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

struct Demo {
    child: Child,
    addr: std::net::SocketAddr,
    dir: tempfile::TempDir,
}

impl Demo {
    /// Start `cdcmon demo` with `args`; stdout and stderr go to files in a temp dir.
    fn start(args: &[&str]) -> Demo {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cdcmon"));
        cmd.arg("demo")
            .args(["--listen", &listen, "--summary-secs", "1"])
            .arg("--stats-file")
            .arg(dir.path().join("stats.json"))
            .args(args)
            // The test sets its own flags; do not let the caller's environment change them.
            .env_remove("CDCMON_PROTOCOL")
            .env_remove("CDCMON_TOPIC")
            .env_remove("CDCMON_GROUP")
            .env_remove("CDCMON_EVENT_LOG")
            .env_remove("CDCMON_KAFKA_OPTIONS")
            .env("CDCMON_LOG", "info")
            .stdout(std::fs::File::create(dir.path().join("stdout")).expect("stdout file"))
            .stderr(std::fs::File::create(dir.path().join("stderr")).expect("stderr file"));
        let child = cmd.spawn().expect("spawn cdcmon demo");
        Demo {
            child,
            addr: listen.parse().expect("addr"),
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.path("stderr")).unwrap_or_default()
    }

    fn wait_exit(&mut self, bound: Duration) -> ExitStatus {
        let until = Instant::now() + bound;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait demo") {
                return s;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                panic!(
                    "demo did not exit within {bound:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_file(path: &Path, bound: Duration, demo: &mut Demo) {
    let until = Instant::now() + bound;
    while !path.exists() {
        if let Some(s) = demo.child.try_wait().expect("wait demo") {
            panic!(
                "demo exited with {s} before writing {}; stderr:\n{}",
                path.display(),
                demo.stderr()
            );
        }
        assert!(
            Instant::now() < until,
            "no {} after {bound:?}; stderr:\n{}",
            path.display(),
            demo.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// table → key → count, from the stats file's nested objects.
fn nested(v: &Value) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for (table, inner) in v.as_object().expect("object") {
        for (k, n) in inner.as_object().expect("object") {
            out.insert((table.clone(), k.clone()), n.as_f64().expect("count"));
        }
    }
    out
}

/// `--duration 5` in `protocol`: exit 0, and every produced event counted exactly once.
fn run_protocol(protocol: &str, event_log_to_stdout: bool) {
    let log_arg = if event_log_to_stdout {
        None
    } else {
        Some(
            tempfile::NamedTempFile::new()
                .expect("tmp")
                .into_temp_path(),
        )
    };
    let mut args = vec![
        "--protocol",
        protocol,
        "--duration",
        "5",
        "--linger-secs",
        "10",
        "--partitions",
        "3",
    ];
    let log_path_string;
    if let Some(p) = &log_arg {
        log_path_string = p.display().to_string();
        args.extend(["--event-log", &log_path_string]);
    }
    let mut demo = Demo::start(&args);
    let stats_path = demo.path("stats.json");
    wait_for_file(&stats_path, Duration::from_secs(60), &mut demo);
    // The stats file is written once the consumer has read everything; /metrics stays up for
    // --linger-secs after it.
    let (status, metrics) = http_get(demo.addr, "/metrics").expect("GET /metrics during linger");
    assert_eq!(status, 200);
    let stats: Value =
        serde_json::from_str(&std::fs::read_to_string(&stats_path).unwrap()).unwrap();

    // SIGTERM ends the linger early; the stop is still clean.
    signal(demo.child.id(), libc::SIGTERM);
    let exit = demo.wait_exit(Duration::from_secs(30));
    let stderr = demo.stderr();
    assert!(exit.success(), "{protocol}: exit {exit}; stderr:\n{stderr}");

    // What was produced.
    assert_eq!(stats["protocol"], protocol);
    assert_eq!(stats["delivery_errors"], 0, "{stats}");
    assert_eq!(stats["consumed_messages"], stats["messages"], "{stats}");
    let rows = nested(&stats["rows"]);
    let ddl = nested(&stats["ddl"]);
    let rows_total = stats["rows_total"].as_f64().unwrap();
    let ddl_total = stats["ddl_total"].as_f64().unwrap();
    assert!(rows_total > 500.0, "5 s at 300/s: {rows_total}");
    assert_eq!(rows.values().sum::<f64>(), rows_total);
    assert!(ddl_total >= 1.0, "a DDL within 5 s: {stats}");
    assert!(
        rows.values().all(|n| *n > 0.0),
        "every table × op occurs: {rows:?}"
    );
    let watermarks = stats["watermarks"].as_f64().unwrap();
    // About one a second plus a last one, each to all 3 partitions (the exact number is
    // compared with /metrics below; this only checks that they flow).
    assert!(
        watermarks >= 3.0 * 2.0 && watermarks % 3.0 == 0.0,
        "watermarks to each of 3 partitions: {watermarks}"
    );

    // /metrics: each (table, op) exactly as produced; DDL apart, once per statement.
    for ((table, op), n) in &rows {
        let got = metric(
            &metrics,
            "cdc_events_total",
            &[("db", "app"), ("table", table), ("op", op)],
        );
        assert_eq!(got, Some(*n), "{protocol} cdc_events_total{{{table},{op}}}");
    }
    assert_eq!(
        metric_sum(&metrics, "cdc_events_total", &[]),
        rows_total,
        "no other rows"
    );
    for ((table, ty), n) in &ddl {
        let got = metric(
            &metrics,
            "cdc_ddl_events_total",
            &[("db", "app"), ("table", table), ("type", ty)],
        );
        assert_eq!(
            got,
            Some(*n),
            "{protocol} cdc_ddl_events_total{{{table},{ty}}}"
        );
    }
    assert_eq!(
        metric_sum(&metrics, "cdc_ddl_events_total", &[]),
        ddl_total,
        "{protocol}: one DDL count per statement"
    );
    assert_eq!(
        metric(&metrics, "cdcmon_watermarks_total", &[]),
        Some(watermarks)
    );
    assert_eq!(metric_sum(&metrics, "cdc_decode_errors_total", &[]), 0.0);
    assert_eq!(
        metric(&metrics, "cdcmon_kafka_messages_total", &[]),
        stats["messages"].as_f64()
    );
    assert!(metric(&metrics, "cdc_watermark_timestamp_seconds", &[]).unwrap_or(0.0) > 1.7e9);

    // The event log: one line per row and DDL event, nothing else, same counts.
    let log_path = log_arg
        .as_deref()
        .map_or(demo.path("stdout"), Path::to_path_buf);
    let lines = read_lines(&log_path);
    let mut log_rows: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut log_ddl: BTreeMap<(String, String), f64> = BTreeMap::new();
    for l in &lines {
        assert_eq!(l["cdc"]["protocol"], protocol);
        assert_eq!(l["cdc"]["db"], "app");
        let table = l["cdc"]["table"].as_str().unwrap().to_owned();
        match l["cdc"]["kind"].as_str() {
            Some("row") => {
                assert!(
                    l["cdc"]["keys"]["id"].is_string() || l["cdc"]["keys"]["id"].is_number(),
                    "key logged: {l}"
                );
                *log_rows
                    .entry((table, l["cdc"]["op"].as_str().unwrap().to_owned()))
                    .or_default() += 1.0;
            }
            Some("ddl") => {
                *log_ddl
                    .entry((table, l["event"]["action"].as_str().unwrap().to_owned()))
                    .or_default() += 1.0;
            }
            other => panic!("unexpected event-log line kind {other:?}: {l}"),
        }
    }
    assert_eq!(log_rows, rows, "{protocol}: event-log rows");
    assert_eq!(log_ddl, ddl, "{protocol}: event-log DDL");

    // The summary went to stderr (never into a stdout event log) and so did the final report.
    assert!(
        stderr.contains("events/s: insert"),
        "live summary on stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("all consumed"),
        "final report on stderr:\n{stderr}"
    );
    let stdout = std::fs::read_to_string(demo.path("stdout")).unwrap_or_default();
    // (Every stdout line parsed as an event-log line above, when the log went there.)
    assert!(
        !stdout.lines().any(|l| l.starts_with("cdcmon demo")),
        "no summary on stdout"
    );
}

#[test]
fn canal_json_counts_every_event_once() {
    run_protocol("canal-json", false);
}

#[test]
fn open_protocol_counts_every_event_once() {
    run_protocol("open-protocol", false);
}

#[test]
fn debezium_counts_every_event_once() {
    run_protocol("debezium", false);
}

/// Also the default event log (stdout): it must hold only event lines.
#[test]
fn simple_counts_every_event_once_with_the_event_log_on_stdout() {
    run_protocol("simple", true);
}

#[test]
fn sigterm_stops_a_running_demo_cleanly_and_reports() {
    let mut demo = Demo::start(&[]);
    wait_until(Duration::from_secs(30), "demo consuming", || {
        http_get(demo.addr, "/metrics")
            .ok()
            .and_then(|(_, m)| metric(&m, "cdcmon_kafka_messages_total", &[]))
            .unwrap_or(0.0)
            > 10.0
    });
    signal(demo.child.id(), libc::SIGTERM);
    let started = Instant::now();
    let exit = demo.wait_exit(Duration::from_secs(30));
    assert!(exit.success(), "exit {exit}; stderr:\n{}", demo.stderr());
    assert!(started.elapsed() < Duration::from_secs(15));
    let stats: Value =
        serde_json::from_str(&std::fs::read_to_string(demo.path("stats.json")).unwrap()).unwrap();
    assert!(stats["rows_total"].as_u64().unwrap() > 0);
    assert!(demo.stderr().contains("cdcmon demo done"));
}

#[test]
fn kafka_listen_pins_the_broker_for_a_second_consumer() {
    let port = free_port();
    let pinned = format!("127.0.0.1:{port}");
    let mut demo = Demo::start(&["--kafka-listen", &pinned]);
    // A second, independent consumer group on the pinned address sees the same stream.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("second.ndjson");
    let second = ChildConsumer::start(
        &pinned,
        "second-consumer",
        &log,
        &["--protocol", "canal-json"],
    );
    second.wait_messages(50.0, Duration::from_secs(30));
    let m = second.metrics();
    assert!(metric_sum(&m, "cdc_events_total", &[("db", "app")]) > 0.0);
    assert_eq!(metric_sum(&m, "cdc_decode_errors_total", &[]), 0.0);
    // The demo's own consumer bootstraps from the pinned address too.
    let stderr = demo.stderr();
    let consuming = stderr
        .lines()
        .find(|l| l.contains("consuming"))
        .unwrap_or_default();
    assert!(consuming.contains(&pinned), "{stderr}");
    let (_, status) = second.terminate();
    assert!(status.success());
    signal(demo.child.id(), libc::SIGTERM);
    assert!(demo.wait_exit(Duration::from_secs(30)).success());
}

#[test]
fn a_busy_listen_address_is_one_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(env!("CARGO_BIN_EXE_cdcmon"))
        .args(["demo", "--duration", "2", "--event-log", "/dev/null"])
        .args(["--kafka-listen", &format!("127.0.0.1:{port}")])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .env("CDCMON_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .expect("run demo");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--kafka-listen"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one readable line: {err}");
}
