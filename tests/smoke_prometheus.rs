//! The smoke test's Kafka, cdcmon and Prometheus checks against real programs: librdkafka's mock
//! cluster, the real `cdcmon consume` binary, and a real Prometheus (apt `prometheus`) scraping
//! it every second. Only TiDB/TiCDC are replaced: the canal-json messages TiCDC would write for
//! the smoke test's marked change are produced directly (shapes as in
//! `tests/fixtures/ticdc/canal-json-*.json`).
//!
//! Runs when `CDCMON_TEST_PROMETHEUS=1` (then a missing `prometheus` is a failure) or when
//! `prometheus` is on PATH; otherwise prints that it was skipped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cdcmon::protocol::{Compression, ProtocolChoice};
use cdcmon::smoke::checks::{self, Expectation, cdcmon as metrics, kafka, prometheus};
use cdcmon::ticdc_api::now_ms;
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const TOPIC: &str = "app_cdc";

/// Kills the child on drop so a failing assertion leaves no process behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn prometheus_binary() -> Option<PathBuf> {
    let forced = std::env::var("CDCMON_TEST_PROMETHEUS").is_ok_and(|v| v == "1");
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("prometheus"))
            .find(|p| p.is_file())
    });
    match (found, forced) {
        (Some(p), _) => Some(p),
        (None, true) => panic!("CDCMON_TEST_PROMETHEUS=1 but no `prometheus` on PATH"),
        (None, false) => None,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::File::create(dir.join(name)).unwrap()
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// canal-json row message, as TiCDC writes it with `enable-tidb-extension=true`.
fn canal_row(
    table: &str,
    kind: &str,
    id: u64,
    name: &str,
    old_name: Option<&str>,
    ts: u64,
) -> String {
    let col = if table == "users" { "name" } else { "status" };
    let data = serde_json::json!([{ "id": id.to_string(), col: name }]);
    let old = match old_name {
        Some(o) => serde_json::json!([{ col: o }]),
        None => serde_json::Value::Null,
    };
    serde_json::json!({
        "id": 0, "database": "app", "table": table, "pkNames": ["id"], "isDdl": false,
        "type": kind, "es": ts >> 18, "ts": (ts >> 18) + 5, "sql": "",
        "sqlType": {"id": -5, col: 12}, "mysqlType": {"id": "bigint", col: "varchar"},
        "old": old, "data": data, "_tidb": {"commitTs": ts}
    })
    .to_string()
}

fn canal_ddl(table: &str, kind: &str, sql: &str, ts: u64) -> String {
    serde_json::json!({
        "id": 0, "database": "app", "table": table, "pkNames": null, "isDdl": true,
        "type": kind, "es": ts >> 18, "ts": (ts >> 18) + 5, "sql": sql,
        "sqlType": null, "mysqlType": null, "data": null, "old": null,
        "_tidb": {"commitTs": ts}
    })
    .to_string()
}

/// The messages the smoke test's marked change produces (tidb::change_statements, in order).
fn marked_change(e: &Expectation) -> Vec<String> {
    let id = e.id;
    let base = (now_ms() as u64) << 18;
    let ts = |i: u64| base + (i << 18);
    let ddl = &e.ddl_table;
    vec![
        canal_ddl(
            ddl,
            "CREATE",
            &format!("CREATE TABLE `{ddl}` (`id` BIGINT NOT NULL PRIMARY KEY)"),
            ts(0),
        ),
        canal_row("users", "INSERT", id, "smoke", None, ts(1)),
        canal_row("orders", "INSERT", id, "smoke", None, ts(2)),
        canal_row("users", "UPDATE", id, "smoke updated", Some("smoke"), ts(3)),
        canal_row(
            "orders",
            "UPDATE",
            id,
            "smoke-updated",
            Some("smoke"),
            ts(4),
        ),
        canal_row("orders", "DELETE", id, "smoke-updated", None, ts(5)),
        canal_row("users", "DELETE", id, "smoke updated", None, ts(6)),
        canal_ddl(ddl, "ERASE", &format!("DROP TABLE `{ddl}`"), ts(7)),
    ]
}

fn produce(brokers: &str, values: &[String]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap();
    for v in values {
        producer
            .send(
                BaseRecord::<[u8], [u8]>::to(TOPIC)
                    .partition(0)
                    .payload(v.as_bytes()),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_checks_follow_a_change_through_kafka_cdcmon_and_prometheus() {
    let Some(prom_bin) = prometheus_binary() else {
        eprintln!(
            "SKIPPED smoke_checks_follow_a_change_through_kafka_cdcmon_and_prometheus: no `prometheus` on PATH (apt install prometheus, or set CDCMON_TEST_PROMETHEUS=1)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cluster: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();

    // The real consumer binary.
    let cdcmon_port = free_port();
    let cdcmon_url = format!("http://127.0.0.1:{cdcmon_port}");
    let _consumer = Guard(
        Command::new(env!("CARGO_BIN_EXE_cdcmon"))
            .args(["consume", "--brokers", &brokers, "--topic", TOPIC])
            .args(["--group", "smoke-prometheus-test"])
            .args(["--listen", &format!("127.0.0.1:{cdcmon_port}")])
            .arg("--event-log")
            .arg(dir.path().join("events.ndjson"))
            .stdout(Stdio::null())
            .stderr(log_file(dir.path(), "cdcmon.log"))
            .spawn()
            .unwrap(),
    );

    // A real Prometheus scraping it every second.
    let prom_port = free_port();
    let prom_url = format!("http://127.0.0.1:{prom_port}");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: cdcmon\n    static_configs:\n      - targets: ['127.0.0.1:{cdcmon_port}']\n"
        ),
    )
    .unwrap();
    let _prometheus = Guard(
        Command::new(&prom_bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(log_file(dir.path(), "prometheus.log"))
            .spawn()
            .unwrap(),
    );

    let http = checks::http_client().unwrap();
    let t = Duration::from_secs(30);
    let logs = || {
        format!(
            "\n--- cdcmon.log ---\n{}\n--- prometheus.log ---\n{}",
            tail(&dir.path().join("cdcmon.log")),
            tail(&dir.path().join("prometheus.log"))
        )
    };

    // Reachability checks, exactly as `cdcmon smoke` runs them.
    let msg = kafka::topic_metadata(&brokers, TOPIC, t).await.unwrap();
    assert!(msg.contains("topic app_cdc has 1 partition(s)"), "{msg}");
    let msg = metrics::reachable(&http, &cdcmon_url, t)
        .await
        .unwrap_or_else(|e| panic!("{e:#}{}", logs()));
    assert!(msg.contains("version"), "{msg}");
    prometheus::ready(&http, &prom_url, t)
        .await
        .unwrap_or_else(|e| panic!("{e:#}{}", logs()));
    let msg = prometheus::target_up(&http, &prom_url, &cdcmon_url, t)
        .await
        .unwrap_or_else(|e| panic!("{e:#}{}", logs()));
    assert!(msg.ends_with("(up)"), "{msg}");

    // The pipeline step's "before" snapshot, then the change as TiCDC would deliver it.
    let e = Expectation::for_marker(checks::new_marker_id());
    let offsets = kafka::end_offsets(&brokers, TOPIC).await.unwrap();
    let samples = metrics::scrape(&http, &cdcmon_url).await.unwrap();
    let cdcmon_before = metrics::row_counts(&samples);
    let cdcmon_total_before = metrics::total_rows(&samples);
    let prom_before = prometheus::row_counts(&http, &prom_url).await.unwrap();
    produce(&brokers, &marked_change(&e));

    let seen = kafka::wait_for_events(
        &brokers,
        TOPIC,
        &offsets,
        ProtocolChoice::Auto,
        Compression::None,
        &e,
        t,
    )
    .await
    .unwrap();
    assert_eq!(seen.rows, e.rows, "{seen:?}");
    assert_eq!(seen.ddl, 2, "{seen:?}");
    assert_eq!(seen.decode_errors, 0, "{seen:?}");

    let msg = metrics::wait_for_exact_rise(&http, &cdcmon_url, &cdcmon_before, &e, t)
        .await
        .unwrap_or_else(|err| panic!("{err:#}{}", logs()));
    assert!(msg.contains("rose by exactly"), "{msg}");
    let msg = prometheus::wait_for_increase(&http, &prom_url, &prom_before, &e, t)
        .await
        .unwrap_or_else(|err| panic!("{err:#}{}", logs()));
    assert!(msg.contains("users insert 1"), "{msg}");
    let msg = metrics::ddl_not_counted_as_rows(&http, &cdcmon_url, cdcmon_total_before, &e, t)
        .await
        .unwrap_or_else(|err| panic!("{err:#}{}", logs()));
    assert!(msg.contains("= 2,"), "{msg}");

    // A second, unexpected row event makes the exact check fail (it is not a `>=` check).
    let extra = canal_row(
        "users",
        "INSERT",
        e.id,
        "dup",
        None,
        (now_ms() as u64) << 18,
    );
    produce(&brokers, &[extra]);
    let err = loop {
        match metrics::wait_for_exact_rise(&http, &cdcmon_url, &cdcmon_before, &e, t).await {
            Err(err) => break format!("{err:#}"),
            Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    assert!(
        err.contains("rose by more than the change: users insert 2"),
        "{err}"
    );
}
