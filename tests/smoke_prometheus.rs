//! The smoke test's Kafka, cdcmon and Prometheus checks against real programs: librdkafka's mock
//! cluster, the real `cdcmon consume` binary, and a real Prometheus (apt `prometheus`) scraping
//! it every second. Only TiDB/TiCDC are replaced: the canal-json messages TiCDC would write for
//! the smoke test's marked change are produced directly (shapes as in
//! `/work/shared/fixtures/ticdc/canal-json-*.json`: rows, DDL and `TIDB_WATERMARK`).
//!
//! `smoke_passes_under_concurrent_traffic_and_fails_on_a_missing_marked_event` (issue 10.10)
//! also needs a real MariaDB (`CDCMON_TEST_MYSQL_URL`, `. scripts/ci-mariadb.sh`) and runs the
//! whole `cdcmon smoke` check sequence in-process while another writer keeps changing
//! `app.users` and `app.orders`. Its TiCDC stand-in is described at [`TicdcStandIn`].
//!
//! Runs when `CDCMON_TEST_PROMETHEUS=1` (then a missing `prometheus` is a failure) or when
//! `prometheus` is on PATH; otherwise prints that it was skipped.

#[path = "fixtures/http/server.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use cdcmon::protocol::{Compression, ProtocolChoice};
use cdcmon::smoke::checks::{self, Expectation, cdcmon as metrics, kafka, prometheus};
use cdcmon::smoke::report::Status;
use cdcmon::ticdc_api::now_ms;
use mysql::prelude::Queryable;
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

/// `TIDB_WATERMARK` message (`_tidb.watermarkTs`), as TiCDC broadcasts it to every partition.
fn canal_watermark(ts: u64) -> String {
    serde_json::json!({
        "id": 0, "database": "", "table": "", "pkNames": null, "isDdl": false,
        "type": "TIDB_WATERMARK", "es": ts >> 18, "ts": (ts >> 18) + 5, "sql": "",
        "sqlType": null, "mysqlType": null, "data": null, "old": null,
        "_tidb": {"watermarkTs": ts}
    })
    .to_string()
}

fn now_tso() -> u64 {
    (now_ms() as u64) << 18
}

/// The messages the smoke test's marked change produces (tidb::change_statements, in order;
/// `DROP TABLE IF EXISTS` of a missing table creates no DDL job, so no message), without the
/// `(table, op)` in `missing`.
fn marked_change(e: &Expectation, missing: Option<(&str, &str)>) -> Vec<String> {
    let id = e.id;
    let base = now_tso();
    let ts = |i: u64| base + (i << 18);
    let ddl = &e.ddl_table;
    let rows = [
        ("users", "INSERT", "smoke", None, 1),
        ("orders", "INSERT", "smoke", None, 2),
        ("users", "UPDATE", "smoke updated", Some("smoke"), 3),
        ("orders", "UPDATE", "smoke-updated", Some("smoke"), 4),
        ("orders", "DELETE", "smoke-updated", None, 5),
        ("users", "DELETE", "smoke updated", None, 6),
    ];
    let mut out = vec![canal_ddl(
        ddl,
        "CREATE",
        &format!("CREATE TABLE `{ddl}` (`id` BIGINT NOT NULL PRIMARY KEY)"),
        ts(0),
    )];
    for (table, kind, name, old, i) in rows {
        if missing == Some((table, kind)) {
            continue;
        }
        out.push(canal_row(table, kind, id, name, old, ts(i)));
    }
    out.push(canal_ddl(
        ddl,
        "ERASE",
        &format!("DROP TABLE `{ddl}`"),
        ts(7),
    ));
    // TiCDC's next checkpoint, past the whole change.
    out.push(canal_watermark(ts(8)));
    out
}

fn producer(brokers: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "10000")
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

fn send(p: &ThreadedProducer<DefaultProducerContext>, partition: i32, value: &str) {
    p.send(
        BaseRecord::<[u8], [u8]>::to(TOPIC)
            .partition(partition)
            .payload(value.as_bytes()),
    )
    .map_err(|(e, _)| e)
    .unwrap();
}

fn produce(brokers: &str, values: &[String]) {
    let p = producer(brokers);
    for v in values {
        send(&p, 0, v);
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// Mock Kafka with `partitions`, the real `cdcmon consume` binary and a real Prometheus
/// scraping it every second.
struct Stack {
    dir: tempfile::TempDir,
    _cluster: MockCluster<'static, DefaultProducerContext>,
    brokers: String,
    cdcmon_url: String,
    prom_url: String,
    _consumer: Guard,
    _prometheus: Guard,
}

impl Stack {
    fn start(prom_bin: &Path, partitions: i32, group: &str) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let cluster: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1).unwrap();
        cluster.create_topic(TOPIC, partitions, 1).unwrap();
        let brokers = cluster.bootstrap_servers();

        let cdcmon_port = free_port();
        let consumer = Guard(
            Command::new(env!("CARGO_BIN_EXE_cdcmon"))
                .args(["consume", "--brokers", &brokers, "--topic", TOPIC])
                .args(["--group", group])
                .args(["--listen", &format!("127.0.0.1:{cdcmon_port}")])
                .arg("--event-log")
                .arg(dir.path().join("events.ndjson"))
                .stdout(Stdio::null())
                .stderr(log_file(dir.path(), "cdcmon.log"))
                .spawn()
                .unwrap(),
        );

        let prom_port = free_port();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: cdcmon\n    static_configs:\n      - targets: ['127.0.0.1:{cdcmon_port}']\n"
            ),
        )
        .unwrap();
        let prometheus = Guard(
            Command::new(prom_bin)
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
        Stack {
            dir,
            _cluster: cluster,
            brokers,
            cdcmon_url: format!("http://127.0.0.1:{cdcmon_port}"),
            prom_url: format!("http://127.0.0.1:{prom_port}"),
            _consumer: consumer,
            _prometheus: prometheus,
        }
    }

    fn logs(&self) -> String {
        format!(
            "\n--- cdcmon.log ---\n{}\n--- prometheus.log ---\n{}",
            tail(&self.dir.path().join("cdcmon.log")),
            tail(&self.dir.path().join("prometheus.log"))
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_checks_follow_a_change_through_kafka_cdcmon_and_prometheus() {
    let Some(prom_bin) = prometheus_binary() else {
        eprintln!(
            "SKIPPED smoke_checks_follow_a_change_through_kafka_cdcmon_and_prometheus: no `prometheus` on PATH (apt install prometheus, or set CDCMON_TEST_PROMETHEUS=1)"
        );
        return;
    };
    let stack = Stack::start(&prom_bin, 1, "smoke-prometheus-test");
    let (brokers, cdcmon_url, prom_url) = (&stack.brokers, &stack.cdcmon_url, &stack.prom_url);
    let http = checks::http_client().unwrap();
    let t = Duration::from_secs(30);

    // Reachability checks, exactly as `cdcmon smoke` runs them.
    let msg = kafka::topic_metadata(brokers, TOPIC, t).await.unwrap();
    assert!(msg.contains("topic app_cdc has 1 partition(s)"), "{msg}");
    let msg = metrics::reachable(&http, cdcmon_url, t)
        .await
        .unwrap_or_else(|e| panic!("{e:#}{}", stack.logs()));
    assert!(msg.contains("version"), "{msg}");
    prometheus::ready(&http, prom_url, t)
        .await
        .unwrap_or_else(|e| panic!("{e:#}{}", stack.logs()));
    let msg = prometheus::target_up(&http, prom_url, cdcmon_url, t)
        .await
        .unwrap_or_else(|e| panic!("{e:#}{}", stack.logs()));
    assert!(msg.ends_with("(up)"), "{msg}");

    // Caught up (issue 10.10): a TSO read now is not yet covered by any watermark...
    let tso = now_tso();
    let err = metrics::wait_caught_up(&http, cdcmon_url, tso, Duration::from_secs(2), t)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("has not caught up"), "{err:#}");
    // ...and is once TiCDC's next watermark arrived.
    produce(brokers, &[canal_watermark(tso + (1 << 18))]);
    let msg = metrics::wait_caught_up(&http, cdcmon_url, tso, t, t)
        .await
        .unwrap_or_else(|e| panic!("{e:#}{}", stack.logs()));
    assert!(msg.contains("consumer lag 0, watermark"), "{msg}");

    // The pipeline step's "before" snapshot, then the change as TiCDC would deliver it.
    let e = Expectation::for_marker(checks::new_marker_id());
    let offsets = kafka::end_offsets(brokers, TOPIC).await.unwrap();
    let samples = metrics::scrape(&http, cdcmon_url).await.unwrap();
    let cdcmon_before = metrics::row_counts(&samples);
    let ddl_before = metrics::ddl_count(&samples, &e);
    let prom_before = prometheus::row_counts(&http, prom_url).await.unwrap();
    produce(brokers, &marked_change(&e, None));

    let seen = kafka::wait_for_events(
        brokers,
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

    let msg = metrics::wait_for_rise(&http, cdcmon_url, &cdcmon_before, &e, t)
        .await
        .unwrap_or_else(|err| panic!("{err:#}{}", stack.logs()));
    assert!(msg.contains("rose by at least the change"), "{msg}");
    let msg = prometheus::wait_for_increase(&http, prom_url, &prom_before, &e, t)
        .await
        .unwrap_or_else(|err| panic!("{err:#}{}", stack.logs()));
    assert!(msg.contains("users insert 1"), "{msg}");
    let msg = metrics::ddl_not_counted_as_rows(&http, cdcmon_url, ddl_before, &e, t)
        .await
        .unwrap_or_else(|err| panic!("{err:#}{}", stack.logs()));
    assert!(msg.contains("rose by 2,"), "{msg}");

    // A second run whose orders update never reached Kafka fails on the marked events, even
    // though the global counters still rise (the first run's events are older than the offsets).
    let e2 = Expectation::for_marker(e.id + 1);
    let offsets = kafka::end_offsets(brokers, TOPIC).await.unwrap();
    produce(brokers, &marked_change(&e2, Some(("orders", "UPDATE"))));
    let err = kafka::wait_for_events(
        brokers,
        TOPIC,
        &offsets,
        ProtocolChoice::Auto,
        Compression::None,
        &e2,
        Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains(&format!(
            "still missing row events for id={}: orders update 1",
            e2.id
        )),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Under concurrent traffic, against MariaDB (issue 10.10)
// ---------------------------------------------------------------------------------------------

fn mysql_url(test: &str) -> Option<String> {
    match std::env::var("CDCMON_TEST_MYSQL_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!(
                "SKIPPED {test}: set CDCMON_TEST_MYSQL_URL (. scripts/ci-mariadb.sh) to run it"
            );
            None
        }
    }
}

/// Marker ids are epoch ms × 1000: anything this large is the smoke's.
const MARKER_FLOOR: i64 = 1_000_000_000_000;

/// Writer ids: above the seed ids, far below any marker.
const WRITER_IDS: i64 = 5_000_000;

/// Stands in for TiCDC on MariaDB, which has neither TiCDC nor `TIDB_CURRENT_TSO()`:
/// - row changes: `AFTER INSERT/UPDATE/DELETE` triggers on `app.users` and `app.orders` copy
///   every committed row change (whoever made it: the smoke or the concurrent writer) into an
///   outbox table; a thread drains it and produces one canal-json row message per change,
///   partitioned by table (TiCDC's table dispatcher);
/// - watermarks: before each drain it takes the wall clock as a TSO (`ms << 18`, PD's physical
///   part is wall-clock ms); every transaction committed before that instant is visible to the
///   drain's `SELECT`, so after producing the drained rows a `TIDB_WATERMARK` with that TSO is
///   true, and is broadcast to every partition as TiCDC does;
/// - `TIDB_CURRENT_TSO()`: a stored function `app.TIDB_CURRENT_TSO()` returning the same clock
///   as a TSO; the smoke connects with default database `app`, so its unqualified call finds it.
/// - DDL: MariaDB offers no DDL hook short of the binlog, so no DDL messages are produced here
///   (the DDL path is covered by `smoke_checks_follow_a_change_through_kafka_cdcmon_and_prometheus`).
///
/// `drop_marked` makes it lose the marked `orders` update (a marker-sized id), as a broken
/// pipeline would.
struct TicdcStandIn {
    stop: Arc<AtomicBool>,
    drop_marked: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const STAND_IN_SETUP: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS app.cdcmon_test_outbox (seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, tbl VARCHAR(16) NOT NULL, op VARCHAR(8) NOT NULL, row_id BIGINT NOT NULL, val VARCHAR(255) NOT NULL, old_val VARCHAR(255) NULL)",
    "DROP TRIGGER IF EXISTS app.cdcmon_test_users_ins",
    "DROP TRIGGER IF EXISTS app.cdcmon_test_users_upd",
    "DROP TRIGGER IF EXISTS app.cdcmon_test_users_del",
    "DROP TRIGGER IF EXISTS app.cdcmon_test_orders_ins",
    "DROP TRIGGER IF EXISTS app.cdcmon_test_orders_upd",
    "DROP TRIGGER IF EXISTS app.cdcmon_test_orders_del",
    "CREATE TRIGGER app.cdcmon_test_users_ins AFTER INSERT ON app.users FOR EACH ROW INSERT INTO app.cdcmon_test_outbox (tbl, op, row_id, val) VALUES ('users', 'INSERT', NEW.id, NEW.name)",
    "CREATE TRIGGER app.cdcmon_test_users_upd AFTER UPDATE ON app.users FOR EACH ROW INSERT INTO app.cdcmon_test_outbox (tbl, op, row_id, val, old_val) VALUES ('users', 'UPDATE', NEW.id, NEW.name, OLD.name)",
    "CREATE TRIGGER app.cdcmon_test_users_del AFTER DELETE ON app.users FOR EACH ROW INSERT INTO app.cdcmon_test_outbox (tbl, op, row_id, val) VALUES ('users', 'DELETE', OLD.id, OLD.name)",
    "CREATE TRIGGER app.cdcmon_test_orders_ins AFTER INSERT ON app.orders FOR EACH ROW INSERT INTO app.cdcmon_test_outbox (tbl, op, row_id, val) VALUES ('orders', 'INSERT', NEW.id, NEW.status)",
    "CREATE TRIGGER app.cdcmon_test_orders_upd AFTER UPDATE ON app.orders FOR EACH ROW INSERT INTO app.cdcmon_test_outbox (tbl, op, row_id, val, old_val) VALUES ('orders', 'UPDATE', NEW.id, NEW.status, OLD.status)",
    "CREATE TRIGGER app.cdcmon_test_orders_del AFTER DELETE ON app.orders FOR EACH ROW INSERT INTO app.cdcmon_test_outbox (tbl, op, row_id, val) VALUES ('orders', 'DELETE', OLD.id, OLD.status)",
    "DROP FUNCTION IF EXISTS app.TIDB_CURRENT_TSO",
    "CREATE FUNCTION app.TIDB_CURRENT_TSO() RETURNS BIGINT UNSIGNED NOT DETERMINISTIC RETURN CAST(FLOOR(UNIX_TIMESTAMP(NOW(6)) * 1000) AS UNSIGNED) << 18",
    "DELETE FROM app.cdcmon_test_outbox",
];

const STAND_IN_TEARDOWN: &[&str] = &[
    "DROP TRIGGER IF EXISTS app.cdcmon_test_users_ins",
    "DROP TRIGGER IF EXISTS app.cdcmon_test_users_upd",
    "DROP TRIGGER IF EXISTS app.cdcmon_test_users_del",
    "DROP TRIGGER IF EXISTS app.cdcmon_test_orders_ins",
    "DROP TRIGGER IF EXISTS app.cdcmon_test_orders_upd",
    "DROP TRIGGER IF EXISTS app.cdcmon_test_orders_del",
    "DROP FUNCTION IF EXISTS app.TIDB_CURRENT_TSO",
    "DROP TABLE IF EXISTS app.cdcmon_test_outbox",
];

impl TicdcStandIn {
    fn start(url: &str, brokers: &str, partitions: i32) -> TicdcStandIn {
        let mut conn = mysql::Conn::new(mysql::Opts::from_url(url).unwrap()).unwrap();
        for stmt in STAND_IN_SETUP {
            conn.query_drop(stmt)
                .unwrap_or_else(|e| panic!("{stmt}: {e}"));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let drop_marked = Arc::new(AtomicBool::new(false));
        let (stop2, drop2, brokers) = (stop.clone(), drop_marked.clone(), brokers.to_owned());
        let thread = std::thread::spawn(move || {
            let p = producer(&brokers);
            while !stop2.load(Ordering::Relaxed) {
                let watermark = now_tso();
                let rows: Vec<(i64, String, String, i64, String, Option<String>)> = conn
                    .query("SELECT seq, tbl, op, row_id, val, old_val FROM app.cdcmon_test_outbox ORDER BY seq")
                    .unwrap();
                for (_, tbl, op, row_id, val, old) in &rows {
                    if drop2.load(Ordering::Relaxed)
                        && tbl == "orders"
                        && op == "UPDATE"
                        && *row_id >= MARKER_FLOOR
                    {
                        continue;
                    }
                    let partition = if tbl == "users" { 0 } else { 1 % partitions };
                    let msg = canal_row(tbl, op, *row_id as u64, val, old.as_deref(), now_tso());
                    send(&p, partition, &msg);
                }
                p.flush(Duration::from_secs(10)).unwrap();
                if let Some(max) = rows.iter().map(|r| r.0).max() {
                    // Rows committed late with a lower seq are still there for the next drain.
                    let seqs: Vec<String> = rows.iter().map(|r| r.0.to_string()).collect();
                    conn.query_drop(format!(
                        "DELETE FROM app.cdcmon_test_outbox WHERE seq <= {max} AND seq IN ({})",
                        seqs.join(",")
                    ))
                    .unwrap();
                }
                for partition in 0..partitions {
                    send(&p, partition, &canal_watermark(watermark));
                }
                p.flush(Duration::from_secs(10)).unwrap();
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        TicdcStandIn {
            stop,
            drop_marked,
            thread: Some(thread),
        }
    }
}

impl Drop for TicdcStandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Keeps inserting, updating and deleting `app.users` and `app.orders` rows (ids from
/// [`WRITER_IDS`]) until dropped; counts its statements.
struct Writer {
    stop: Arc<AtomicBool>,
    statements: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(url: &str) -> Writer {
        let mut conn = mysql::Conn::new(mysql::Opts::from_url(url).unwrap()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let statements = Arc::new(AtomicU64::new(0));
        let (stop2, n) = (stop.clone(), statements.clone());
        let thread = std::thread::spawn(move || {
            let mut i = WRITER_IDS + i64::from(std::process::id() % 1000) * 10_000;
            while !stop2.load(Ordering::Relaxed) {
                i += 1;
                for stmt in [
                    format!(
                        "INSERT INTO app.users (id, email, name) VALUES ({i}, 'writer-{i}@test.invalid', 'writer {i}')"
                    ),
                    format!(
                        "INSERT INTO app.orders (id, user_id, amount, status) VALUES ({i}, {i}, 2.50, 'new')"
                    ),
                    format!("UPDATE app.users SET name = 'writer {i} renamed' WHERE id = {i}"),
                    format!("UPDATE app.orders SET status = 'paid' WHERE id = {i}"),
                    format!("DELETE FROM app.orders WHERE id = {i}"),
                    format!("DELETE FROM app.users WHERE id = {i}"),
                ] {
                    conn.query_drop(&stmt)
                        .unwrap_or_else(|e| panic!("{stmt}: {e}"));
                    n.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(30));
                }
            }
        });
        Writer {
            stop,
            statements,
            thread: Some(thread),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(clap::Parser)]
struct SmokeCli {
    #[command(flatten)]
    args: cdcmon::smoke::SmokeArgs,
}

/// `url` with default database `app` (the stand-in's `TIDB_CURRENT_TSO()` lives there).
fn with_app_db(url: &str) -> String {
    format!("{}/app", url.trim_end_matches('/'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_passes_under_concurrent_traffic_and_fails_on_a_missing_marked_event() {
    let test = "smoke_passes_under_concurrent_traffic_and_fails_on_a_missing_marked_event";
    let Some(url) = mysql_url(test) else { return };
    let Some(prom_bin) = prometheus_binary() else {
        eprintln!("SKIPPED {test}: no `prometheus` on PATH");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("app-password");
    std::fs::write(&pw, "smoke-traffic-pw\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cdcmon"))
        .args(["db", "init", "--tidb-url", &url, "--app-password-file"])
        .arg(&pw)
        .output()
        .unwrap();
    assert!(out.status.success(), "db init: {out:?}");

    let partitions = 3;
    let stack = Stack::start(&prom_bin, partitions, "smoke-traffic-test");
    let stand_in = TicdcStandIn::start(&url, &stack.brokers, partitions);
    // Real TiCDC is not here; its API answers as recorded (health, a normal changefeed).
    let ticdc = server::FixtureServer::start().await;
    ticdc
        .route(
            "GET",
            "/api/v2/health",
            vec![server::reply(200, "ticdc/health-ok.json")],
        )
        .route(
            "GET",
            "/api/v2/changefeeds/app-cdc",
            vec![server::reply(200, "ticdc/changefeed-normal.json")],
        );
    let writer = Writer::start(&url);

    let smoke_args = |pipeline_timeout: &str| {
        let ticdc_url = ticdc.url();
        let argv = [
            "smoke",
            "--brokers",
            &stack.brokers,
            "--protocol",
            "canal-json",
            "--tidb-url",
            &with_app_db(&url),
            "--app-password-file",
            pw.to_str().unwrap(),
            "--ticdc-url",
            &ticdc_url,
            "--prometheus-url",
            &stack.prom_url,
            "--cdcmon-url",
            &stack.cdcmon_url,
            "--skip",
            "elasticsearch,grafana,logs",
            "--timeout-secs",
            "60",
            "--pipeline-timeout-secs",
            pipeline_timeout,
        ];
        <SmokeCli as clap::Parser>::try_parse_from(argv)
            .unwrap()
            .args
    };
    let http = checks::http_client().unwrap();
    let total = |text: &str| -> f64 {
        cdcmon::smoke::promtext::parse(text)
            .unwrap()
            .iter()
            .filter(|s| s.name == "cdc_events_total")
            .map(|s| s.value)
            .sum()
    };
    let scrape_total = || async {
        let (_, body) = checks::get_text(&http, &format!("{}/metrics", stack.cdcmon_url), None)
            .await
            .unwrap();
        total(&body)
    };

    // 1. Passes with the writer running throughout.
    let written_before = writer.statements.load(Ordering::Relaxed);
    let rows_before = scrape_total().await;
    let buf = SharedBuf::default();
    let report = cdcmon::smoke::run_checks(&smoke_args("60"), Box::new(buf.clone()))
        .await
        .unwrap();
    let written = writer.statements.load(Ordering::Relaxed) - written_before;
    let rows_rise = scrape_total().await - rows_before;
    assert!(report.ok, "{}{}", buf.text(), stack.logs());
    for c in &report.checks {
        let expected = if ["elasticsearch", "grafana", "logs"].contains(&c.group.as_str()) {
            Status::Skipped
        } else {
            Status::Ok
        };
        assert_eq!(c.status, expected, "{}", buf.text());
    }
    // The other writer really wrote during the run, and cdcmon counted more than the smoke's 6.
    assert!(
        written >= 12,
        "writer made only {written} changes\n{}",
        buf.text()
    );
    assert!(
        rows_rise > 6.0,
        "cdc_events_total rose by {rows_rise}\n{}",
        buf.text()
    );
    let text = buf.text();
    eprintln!("--- smoke under traffic ---\n{text}");
    assert!(
        text.contains("cdcmon caught up: consumer lag 0, watermark"),
        "{text}"
    );

    // 2. The same stack loses the marked orders update: the run fails at the Kafka check,
    // although every global counter still rises (the writer's orders updates).
    stand_in.drop_marked.store(true, Ordering::Relaxed);
    let buf = SharedBuf::default();
    let report = cdcmon::smoke::run_checks(&smoke_args("15"), Box::new(buf.clone()))
        .await
        .unwrap();
    eprintln!("--- smoke losing a marked event ---\n{}", buf.text());
    assert!(!report.ok, "{}", buf.text());
    let failed: Vec<_> = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Failed)
        .collect();
    assert_eq!(failed.len(), 1, "{}", buf.text());
    assert_eq!(failed[0].name, "events on Kafka", "{}", buf.text());
    let marker = report.marker.unwrap();
    assert!(
        failed[0].message.contains(&format!(
            "still missing row events for id={marker}: orders update 1"
        )),
        "{}",
        buf.text()
    );

    drop(writer);
    drop(stand_in);
    let mut conn = mysql::Conn::new(mysql::Opts::from_url(&url).unwrap()).unwrap();
    for stmt in STAND_IN_TEARDOWN {
        conn.query_drop(stmt).unwrap();
    }
}

#[derive(Clone, Default)]
struct SharedBuf(Arc<std::sync::Mutex<Vec<u8>>>);

impl SharedBuf {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
