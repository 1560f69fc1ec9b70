//! The real consume loop against librdkafka's in-process mock cluster: a mixed stream of every
//! protocol's real TiCDC messages, DDL, watermarks and one garbage message; exact metrics, exact
//! event-log lines, graceful stop, and a restart that resumes from the committed offsets.

mod common;

use std::time::Duration;

use common::*;

/// Every fixture once, DDL placed as TiCDC places it: 29 Kafka messages, 14 row events, 4 DDL
/// (+ 6 broadcast copies), 4 watermarks, 1 bootstrap, 1 garbage message. Partition 0: canal-json
/// and garbage, 1: open-protocol, 2: debezium and simple. canal-json DDL goes to partition 0 only;
/// open-protocol, debezium and simple DDL to all three partitions (tiflow `release-8.5`
/// `cdc/sink/ddlsink/mq/mq_ddl_sink.go` `getDDLDispatchRule`).
fn mixed_stream() -> Vec<Msg> {
    let mut m = Vec::new();
    for f in ["insert", "update", "delete", "ddl", "watermark"] {
        m.push(Msg::value(0, fixture(&format!("canal-json-{f}-1.json"))));
    }
    m.push(Msg::value(0, b"\x00\x01not a ticdc message {".to_vec()));
    for f in [
        "insert-1",
        "update-1",
        "delete-1",
        "ddl-1",
        "resolved-1",
        "insert-4-batch2",
    ] {
        let key = fixture(&format!("open-protocol-{f}.key.bin"));
        let value = fixture(&format!("open-protocol-{f}.value.bin"));
        let partitions = if f == "ddl-1" { 0..3 } else { 1..2 };
        for p in partitions {
            m.push(Msg::keyed(p, key.clone(), value.clone()));
        }
    }
    for f in ["insert", "update", "delete", "ddl", "watermark"] {
        let key = fixture(&format!("debezium-{f}-1.key.json"));
        let value = fixture(&format!("debezium-{f}-1.json"));
        let partitions = if f == "ddl" { 0..3 } else { 2..3 };
        for p in partitions {
            m.push(Msg::keyed(p, key.clone(), value.clone()));
        }
    }
    for f in [
        "bootstrap",
        "insert",
        "update",
        "delete",
        "ddl",
        "watermark",
    ] {
        let partitions = if f == "ddl" { 0..3 } else { 2..3 };
        for p in partitions {
            m.push(Msg::value(p, fixture(&format!("simple-{f}-1.json"))));
        }
    }
    m
}

fn events(text: &str, db: &str, table: &str, op: &str) -> Option<f64> {
    metric(
        text,
        "cdc_events_total",
        &[("db", db), ("table", table), ("op", op)],
    )
}

#[test]
fn mixed_stream_is_counted_logged_and_resumed_exactly() {
    let cluster = mock_cluster(3);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("events.ndjson");

    let stream = mixed_stream();
    assert_eq!(stream.len(), 29);
    produce(&brokers, &stream);

    let consumer = RunningConsumer::start(&brokers, "g-mixed", &log_path, &[]);
    consumer.wait_messages(29.0, Duration::from_secs(60));
    // Give the loop one commit interval so the last message's events are surely counted.
    std::thread::sleep(Duration::from_millis(300));
    let m = consumer.metrics();

    // Rows: exact per table and op, across all four protocols.
    for (db, table, ins, upd, del) in [
        ("test", "employee", 1.0, 1.0, 1.0), // canal-json
        ("test", "t", 3.0, 1.0, 1.0),        // open-protocol: insert + 2-event batch
        ("test", "table1", 1.0, 1.0, 1.0),   // debezium
        ("simple", "user", 1.0, 1.0, 1.0),   // simple
    ] {
        assert_eq!(
            events(&m, db, table, "insert"),
            Some(ins),
            "{db}.{table} insert\n{m}"
        );
        assert_eq!(
            events(&m, db, table, "update"),
            Some(upd),
            "{db}.{table} update"
        );
        assert_eq!(
            events(&m, db, table, "delete"),
            Some(del),
            "{db}.{table} delete"
        );
    }
    assert_eq!(
        metric_sum(&m, "cdc_events_total", &[]),
        14.0,
        "DDL must not be in cdc_events_total"
    );
    // Row series exist only for (table, op) pairs that had rows: 4 tables x 3 ops. The DDL-only
    // "tables" (schema-level DDL with table "", the open-protocol CREATE of test.t which also
    // has rows, ...) get no zero series.
    let row_series: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("cdc_events_total{"))
        .collect();
    assert_eq!(row_series.len(), 12, "{row_series:#?}");
    assert!(
        !row_series.iter().any(|l| l.contains("table=\"\"")),
        "a DDL-only table got row series: {row_series:#?}"
    );
    // DDL: one per protocol, only in cdc_ddl_events_total, each counted once although three of
    // them arrived on all three partitions; the 6 copies are counted as such.
    assert_eq!(
        metric(&m, "cdcmon_ddl_broadcast_copies_total", &[]),
        Some(6.0)
    );
    let ddl_series: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("cdc_ddl_events_total"))
        .collect();
    assert_eq!(
        metric_sum(&m, "cdc_ddl_events_total", &[]),
        4.0,
        "{ddl_series:#?}"
    );
    assert_eq!(
        metric(
            &m,
            "cdc_ddl_events_total",
            &[("db", "test"), ("table", ""), ("type", "QUERY")]
        ),
        Some(1.0),
        "{ddl_series:#?}"
    );
    assert_eq!(
        metric(
            &m,
            "cdc_ddl_events_total",
            &[("db", "test"), ("table", "t"), ("type", "CREATE")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_sum(&m, "cdc_ddl_events_total", &[("type", "ALTER")]),
        1.0
    );
    assert_eq!(
        metric_sum(&m, "cdc_ddl_events_total", &[("type", "RENAME")]),
        1.0
    );
    // The garbage message: counted once, and the stream went on past it.
    assert_eq!(metric_sum(&m, "cdc_decode_errors_total", &[]), 1.0);
    assert_eq!(metric(&m, "cdcmon_watermarks_total", &[]), Some(4.0));
    // Watermarks seen on partitions 0 (canal 1640007049196 ms), 1 (open 12345678 >> 18 = 47 ms)
    // and 2 (debezium ts 3, then simple 447984124732375041 >> 18): every partition that carries
    // data has one, so the gauge is the minimum of the per-partition maxima, partition 1's
    // 0.047 s.
    assert_eq!(
        metric(&m, "cdc_watermark_timestamp_seconds", &[]),
        Some(0.047)
    );
    assert_eq!(metric(&m, "cdc_event_lag_seconds_count", &[]), Some(18.0));
    assert_eq!(metric(&m, "cdcmon_ready", &[]), Some(1.0));

    let stop_took = consumer.stop();
    assert!(
        stop_took < Duration::from_secs(10),
        "graceful stop took {stop_took:?}"
    );

    // The event log: one line per row or DDL event, nothing for watermarks/bootstrap/garbage.
    let lines = read_lines(&log_path);
    assert_eq!(lines.len(), 18);
    let rows: Vec<_> = lines.iter().filter(|l| l["cdc"]["kind"] == "row").collect();
    assert_eq!(rows.len(), 14);
    let canal_insert = rows
        .iter()
        .find(|l| l["cdc"]["protocol"] == "canal-json" && l["cdc"]["op"] == "insert")
        .expect("canal insert line");
    assert_eq!(canal_insert["cdc"]["db"], "test");
    assert_eq!(canal_insert["cdc"]["table"], "employee");
    assert_eq!(canal_insert["kafka"]["partition"], 0);
    assert_eq!(canal_insert["kafka"]["offset"], 0);
    assert_eq!(canal_insert["event"]["action"], "insert");
    // canal-json without the TiDB extension: @timestamp comes from `es` (1668067205238).
    assert_eq!(canal_insert["@timestamp"], "2022-11-10T08:00:05.238Z");
    let open_update = rows
        .iter()
        .find(|l| l["cdc"]["protocol"] == "open-protocol" && l["cdc"]["op"] == "update")
        .expect("open-protocol update line");
    assert_eq!(open_update["cdc"]["keys"]["a"], 1);
    assert_eq!(open_update["cdc"]["commit_ts"], 2);
    assert_eq!(open_update["kafka"]["offset"], 1);
    assert!(
        rows.iter().all(|l| l["cdc"].get("values").is_none()),
        "values are opt-in"
    );
    let ddl: Vec<_> = lines.iter().filter(|l| l["cdc"]["kind"] == "ddl").collect();
    assert_eq!(ddl.len(), 4, "one line per DDL, not per broadcast copy");
    assert!(ddl.iter().all(|l| l["cdc"].get("op").is_none()));
    assert!(
        ddl.iter().all(|l| l["kafka"]["partition"] == 0),
        "DDL is taken from partition 0: {ddl:#?}"
    );

    // Restart in the same group: only what was produced since is read (offsets were committed),
    // and all of it (nothing lost).
    let more: Vec<Msg> = (0..5)
        .map(|i| Msg::value(i % 3, fixture("canal-json-insert-1.json")))
        .collect();
    produce(&brokers, &more);
    let consumer = RunningConsumer::start(&brokers, "g-mixed", &log_path, &[]);
    consumer.wait_messages(5.0, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(1500));
    let m = consumer.metrics();
    assert_eq!(
        metric(&m, "cdcmon_kafka_messages_total", &[]),
        Some(5.0),
        "re-read old messages"
    );
    assert_eq!(events(&m, "test", "employee", "insert"), Some(5.0));
    assert_eq!(metric_sum(&m, "cdc_events_total", &[]), 5.0);
    consumer.stop();
    assert_eq!(read_lines(&log_path).len(), 18 + 5);
}

#[test]
fn metrics_and_health_answer_before_kafka_is_reachable() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on this port: the broker is unreachable from the start.
    let brokers = format!("127.0.0.1:{}", free_port());
    let consumer =
        RunningConsumer::start(&brokers, "g-nobroker", &dir.path().join("e.ndjson"), &[]);
    let (status, body) = http_get(consumer.addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("cdcmon_build_info{version="), "{body}");
    assert_eq!(http_get(consumer.addr, "/healthz").unwrap().0, 200);
    let (status, body) = http_get(consumer.addr, "/readyz").unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(http_get(consumer.addr, "/nope").unwrap().0, 404);
    let took = consumer.stop();
    assert!(took < Duration::from_secs(10), "stop took {took:?}");
}

#[test]
fn readyz_turns_ready_once_partitions_are_assigned() {
    let cluster = mock_cluster(2);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let consumer = RunningConsumer::start(&brokers, "g-ready", &dir.path().join("e.ndjson"), &[]);
    wait_until(Duration::from_secs(30), "/readyz 200", || {
        http_get(consumer.addr, "/readyz")
            .map(|(s, _)| s == 200)
            .unwrap_or(false)
    });
    let m = consumer.metrics();
    assert_eq!(
        metric(&m, "cdcmon_kafka_assigned_partitions", &[]),
        Some(2.0)
    );
    consumer.stop();
}
