//! The consume loop against librdkafka's mock cluster with several partitions, fed as TiCDC
//! really feeds Kafka (issue 10): broadcast DDL counted once per group, the watermark gauge only
//! when it is known, the minimum over data-carrying partitions, cooperative rebalancing, and
//! `--kafka-option` values with commas. docs/protocols.md has the TiCDC sources.

mod common;

use std::time::Duration;

use common::*;

/// A dead member leaves quickly, so a second process gets its share soon (see fault_tolerance).
const FAST_SESSION: &str = "session.timeout.ms=6000;heartbeat.interval.ms=500";

fn open_protocol(name: &str, partition: i32) -> Msg {
    Msg::keyed(
        partition,
        fixture(&format!("open-protocol-{name}.key.bin")),
        fixture(&format!("open-protocol-{name}.value.bin")),
    )
}

/// A simple-protocol WATERMARK whose TSO's physical part is `ms` milliseconds.
fn simple_watermark(partition: i32, ms: u64) -> Msg {
    let value = format!(
        r#"{{"version":1,"type":"WATERMARK","commitTs":{},"buildTs":1}}"#,
        ms << 18
    );
    Msg::value(partition, value.into_bytes())
}

/// Partitions this consumer reports consumer lag for: the ones it owns.
fn lag_partitions(m: &str) -> Vec<i32> {
    let mut p: Vec<i32> = samples(m)
        .into_iter()
        .filter(|s| s.name == "cdc_kafka_consumer_lag_messages")
        .filter_map(|s| s.labels.get("partition").and_then(|v| v.parse().ok()))
        .collect();
    p.sort();
    p
}

/// Point 2 + 3 on the real loop: a watermark on partition 0 while partition 1 has delivered rows
/// but no watermark is not a minimum (it could be ahead of partition 1); once partition 1 sends
/// one, the gauge is the minimum over both.
#[test]
fn watermark_waits_for_every_partition_that_carries_data() {
    let cluster = mock_cluster(3);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let consumer = RunningConsumer::start(&brokers, "g-wm-min", &dir.path().join("e.ndjson"), &[]);

    // Partition 0: watermark 5,000 ms; partition 1: an open-protocol row, no watermark yet;
    // partition 2: nothing at all (librdkafka's statistics show it drained, lo = hi, so it holds
    // nothing back; without that wiring the last assertion below finds no gauge).
    produce(
        &brokers,
        &[simple_watermark(0, 5_000), open_protocol("insert-1", 1)],
    );
    consumer.wait_messages(2.0, Duration::from_secs(60));
    // Which partitions hold the minimum back also comes from librdkafka's statistics (a drained
    // partition does not): wait for that state instead of sleeping a fixed time, which a loaded
    // machine overran.
    wait_until(Duration::from_secs(30), "one partition waiting", || {
        metric(
            &consumer.metrics(),
            "cdcmon_watermark_partitions_waiting",
            &[],
        ) == Some(1.0)
    });
    let m = consumer.metrics();
    assert_eq!(
        metric(&m, "cdc_watermark_timestamp_seconds", &[]),
        None,
        "partition 1 has rows and no watermark: no minimum may be reported\n{m}"
    );
    assert_eq!(
        metric(&m, "cdcmon_watermark_partitions_waiting", &[]),
        Some(1.0)
    );

    produce(&brokers, &[simple_watermark(1, 3_000)]);
    consumer.wait_messages(3.0, Duration::from_secs(60));
    wait_until(
        Duration::from_secs(30),
        "the minimum over both partitions",
        || metric(&consumer.metrics(), "cdc_watermark_timestamp_seconds", &[]).is_some(),
    );
    let m = consumer.metrics();
    assert_eq!(
        metric(&m, "cdc_watermark_timestamp_seconds", &[]),
        Some(3.0)
    );
    assert_eq!(
        metric(&m, "cdcmon_watermark_partitions_waiting", &[]),
        Some(0.0)
    );
    consumer.stop();
}

/// Point 2: classic TiCDC's debezium encoder sends no watermarks: the gauge stays absent (not a
/// 1970 zero) and nothing is "waiting", since the protocol is not expected to send any.
#[test]
fn no_watermark_series_for_a_protocol_without_watermarks() {
    let cluster = mock_cluster(2);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let consumer = RunningConsumer::start(&brokers, "g-wm-none", &dir.path().join("e.ndjson"), &[]);
    let msgs: Vec<Msg> = ["insert", "update", "delete"]
        .iter()
        .enumerate()
        .map(|(i, f)| {
            Msg::keyed(
                (i % 2) as i32,
                fixture(&format!("debezium-{f}-1.key.json")),
                fixture(&format!("debezium-{f}-1.json")),
            )
        })
        .collect();
    produce(&brokers, &msgs);
    consumer.wait_messages(3.0, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    let m = consumer.metrics();
    assert_eq!(metric_sum(&m, "cdc_events_total", &[]), 3.0);
    assert!(
        !m.lines()
            .any(|l| l.starts_with("cdc_watermark_timestamp_seconds ")),
        "no watermark was received: the gauge must not exist\n{m}"
    );
    assert_eq!(
        metric(&m, "cdcmon_watermark_partitions_waiting", &[]),
        Some(0.0)
    );
    consumer.stop();
}

/// Point 1 with two processes in the group: a DDL TiCDC broadcast to all three partitions is
/// counted and logged once in total, by whichever process owns partition 0; the other copies are
/// counted as copies.
#[test]
fn broadcast_ddl_counts_once_across_two_processes() {
    let cluster = mock_cluster(3);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let (log_a, log_b) = (dir.path().join("a.ndjson"), dir.path().join("b.ndjson"));
    let args = ["--kafka-option", FAST_SESSION];
    let a = ChildConsumer::start(&brokers, "g-ddl-two", &log_a, &args);
    let b = ChildConsumer::start(&brokers, "g-ddl-two", &log_b, &args);
    wait_until(Duration::from_secs(60), "3 partitions over both", || {
        let (x, y) = (
            assigned_partitions(&a.metrics()),
            assigned_partitions(&b.metrics()),
        );
        x > 0.0 && y > 0.0 && x + y == 3.0
    });
    // As TiCDC sends an open-protocol DDL (PartitionAll), plus one row per partition.
    let mut msgs: Vec<Msg> = (0..3).map(|p| open_protocol("ddl-1", p)).collect();
    msgs.extend((0..3).map(|p| open_protocol("insert-1", p)));
    produce(&brokers, &msgs);
    let total =
        |name: &str| metric_sum(&a.metrics(), name, &[]) + metric_sum(&b.metrics(), name, &[]);
    wait_until(Duration::from_secs(60), "6 messages over both", || {
        total("cdcmon_kafka_messages_total") >= 6.0
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(total("cdc_ddl_events_total"), 1.0, "one DDL, counted once");
    assert_eq!(total("cdcmon_ddl_broadcast_copies_total"), 2.0);
    assert_eq!(total("cdc_events_total"), 3.0);
    for c in [a, b] {
        let (_, status) = c.terminate();
        assert!(status.success());
    }
    let lines: Vec<_> = [log_a, log_b].iter().flat_map(|p| read_lines(p)).collect();
    let ddl: Vec<_> = lines.iter().filter(|l| l["cdc"]["kind"] == "ddl").collect();
    assert_eq!(ddl.len(), 1, "{ddl:#?}");
    assert_eq!(ddl[0]["kafka"]["partition"], 0);
    assert_eq!(lines.len(), 4);
}

/// Point 8 (and the revoke half of point 3): with cooperative-sticky, a second member joining
/// makes the first give up only some partitions. The first must keep reporting the partitions
/// it still owns (readiness, `cdcmon_kafka_assigned_partitions`), and its watermark minimum must
/// drop the revoked partitions' watermarks.
#[test]
fn cooperative_rebalance_keeps_the_real_assignment() {
    let cluster = mock_cluster(3);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    // Separate flags (not one `;`-joined value), so this test runs unchanged on builds without
    // point 9 and proves point 8 alone.
    let args = [
        "--kafka-option",
        "partition.assignment.strategy=cooperative-sticky",
        "--kafka-option",
        "session.timeout.ms=6000",
        "--kafka-option",
        "heartbeat.interval.ms=500",
        "--kafka-option",
        "debug=cgrp",
    ];
    let start = |name: &str| {
        ChildConsumer::start_with_env(
            &brokers,
            "g-coop",
            &dir.path().join(format!("{name}.ndjson")),
            &args,
            &[("CDCMON_LOG", "info,librdkafka=debug")],
        )
    };
    let a = start("a");
    wait_until(Duration::from_secs(60), "a owns all 3 partitions", || {
        assigned_partitions(&a.metrics()) == 3.0
    });
    // The mock really runs the cooperative protocol (else this test would prove nothing):
    // librdkafka's cgrp debug log names it.
    assert!(
        a.stderr().contains("COOPERATIVE"),
        "cooperative-sticky not in use:\n{}",
        a.stderr()
    );
    // A distinct watermark per partition: 1 s, 2 s, 3 s.
    produce(
        &brokers,
        &(0..3)
            .map(|p| simple_watermark(p, 1_000 * (p as u64 + 1)))
            .collect::<Vec<_>>(),
    );
    a.wait_messages(3.0, Duration::from_secs(60));
    wait_until(Duration::from_secs(10), "a's minimum is 1 s", || {
        metric(&a.metrics(), "cdc_watermark_timestamp_seconds", &[]) == Some(1.0)
    });

    let b = start("b");
    wait_until(Duration::from_secs(60), "3 partitions over both", || {
        let (x, y) = (
            assigned_partitions(&a.metrics()),
            assigned_partitions(&b.metrics()),
        );
        x > 0.0 && y > 0.0 && x + y == 3.0
    });
    // Settled: a still owns and reports its remaining partitions and is ready.
    std::thread::sleep(Duration::from_secs(2));
    let ma = a.metrics();
    let mb = b.metrics();
    assert_eq!(
        assigned_partitions(&ma) + assigned_partitions(&mb),
        3.0,
        "{ma}\n{mb}"
    );
    assert!(assigned_partitions(&ma) >= 1.0);
    assert_eq!(metric(&ma, "cdcmon_ready", &[]), Some(1.0), "{ma}");
    assert_eq!(http_get(a.addr, "/readyz").unwrap().0, 200);
    // a's minimum is over the partitions it still owns: each of them sent its watermark.
    let owned = lag_partitions(&ma);
    assert_eq!(owned.len() as f64, assigned_partitions(&ma), "{ma}");
    let expected = owned
        .iter()
        .map(|&p| (p + 1) as f64)
        .fold(f64::MAX, f64::min);
    assert_eq!(
        metric(&ma, "cdc_watermark_timestamp_seconds", &[]),
        Some(expected),
        "owned {owned:?}\n{ma}"
    );
    for c in [a, b] {
        let (_, status) = c.terminate();
        assert!(status.success());
    }
}

/// Point 9 on the binary: a comma-carrying bootstrap list in CDCMON_KAFKA_OPTIONS (the first
/// broker is dead, the second the mock) overrides `--brokers`, so the consumer becomes ready
/// only if the value reached librdkafka whole.
#[test]
fn kafka_option_values_with_commas_reach_librdkafka() {
    let cluster = mock_cluster(1);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let dead = format!("127.0.0.1:{}", free_port());
    let options = format!("bootstrap.servers={dead},{brokers};debug=cgrp,topic");
    let c = ChildConsumer::start_with_env(
        &dead,
        "g-commas",
        &dir.path().join("e.ndjson"),
        &[],
        &[("CDCMON_KAFKA_OPTIONS", options.as_str())],
    );
    wait_until(
        Duration::from_secs(60),
        "/readyz 200 via the second broker",
        || {
            http_get(c.addr, "/readyz")
                .map(|(s, _)| s == 200)
                .unwrap_or(false)
        },
    );
    let stderr = c.stderr();
    let (_, status) = c.terminate();
    assert!(status.success(), "{stderr}");
}
