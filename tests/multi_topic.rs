//! `--topic` as a list or a `^regex` (TiCDC's Avro layout: one table per topic, issue 12): the
//! real consume loop against librdkafka's mock cluster with a `tidb_app_*` family and an
//! unrelated topic. Every event is counted once by table, the unrelated topic is never read,
//! commits are exact per (topic, partition) — partition 0 of two topics never collide — a
//! restart resumes without loss or duplicates, and the watermark gauge is the minimum over
//! every topic-partition.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use rdkafka::mocking::MockCluster;

const USERS: &str = "tidb_app_users";
const ORDERS: &str = "tidb_app_orders";
const OTHER: &str = "other";

fn cluster(
    topics: &[(&str, i32)],
) -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("mock cluster");
    for (topic, partitions) in topics {
        cluster
            .create_topic(topic, *partitions, 1)
            .expect("create topic");
    }
    cluster
}

/// `n` canal-json inserts of `test.{table}` on `partition`, ids from `first_id`.
fn inserts(table: &str, partition: i32, first_id: usize, n: usize) -> Vec<Msg> {
    let template: serde_json::Value =
        serde_json::from_slice(&fixture("canal-json-insert-1.json")).expect("fixture json");
    (first_id..first_id + n)
        .map(|id| {
            let mut m = template.clone();
            m["table"] = table.into();
            m["data"][0]["id"] = id.to_string().into();
            Msg::value(partition, serde_json::to_vec(&m).expect("json"))
        })
        .collect()
}

fn inserts_of(text: &str, table: &str) -> Option<f64> {
    metric(
        text,
        "cdc_events_total",
        &[("db", "test"), ("table", table), ("op", "insert")],
    )
}

/// Event-log lines per `kafka.topic` (rows and DDL).
fn lines_by_topic(path: &std::path::Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in read_lines(path) {
        let topic = line["kafka"]["topic"]
            .as_str()
            .expect("kafka.topic")
            .to_owned();
        *out.entry(topic).or_default() += 1;
    }
    out
}

#[test]
fn regex_then_list_read_the_family_once_with_exact_commits_per_topic() {
    let cluster = cluster(&[(USERS, 2), (ORDERS, 2), (OTHER, 2)]);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("events.ndjson");

    // Partition 0 of users far ahead of partition 0 of orders: keyed by partition alone, one
    // commit would overwrite the other (offset 100 committed for orders, or 3 for users).
    let ddl = fixture("canal-json-ddl-1.json");
    let mut users = inserts("users", 0, 0, 100);
    users.extend(inserts("users", 1, 100, 7));
    // canal-json sends a DDL to partition 0 only; a broadcast copy on partition 1 (as the other
    // protocols send them) is counted once, from partition 0 *of its topic*.
    users.push(Msg::value(0, ddl.clone()));
    users.push(Msg::value(1, ddl.clone()));
    let mut orders = inserts("orders", 0, 0, 3);
    orders.extend(inserts("orders", 1, 3, 5));
    orders.push(Msg::value(0, ddl.clone()));
    orders.push(Msg::value(1, ddl));
    let other = inserts("other", 0, 0, 11);
    produce_to(&brokers, USERS, &users, &[]);
    produce_to(&brokers, ORDERS, &orders, &[]);
    produce_to(&brokers, OTHER, &other, &[]);

    let consumer =
        RunningConsumer::start(&brokers, "g-regex", &log_path, &["--topic", "^tidb_app_.*"]);
    consumer.wait_messages(119.0, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    let m = consumer.metrics();
    assert_eq!(
        metric(&m, "cdcmon_kafka_messages_total", &[]),
        Some(119.0),
        "the unrelated topic's 11 messages must not be read\n{m}"
    );
    assert_eq!(inserts_of(&m, "users"), Some(107.0), "{m}");
    assert_eq!(inserts_of(&m, "orders"), Some(8.0), "{m}");
    assert_eq!(inserts_of(&m, "other"), None, "{m}");
    assert_eq!(
        metric_sum(&m, "cdc_ddl_events_total", &[]),
        2.0,
        "one DDL per topic\n{m}"
    );
    assert_eq!(
        metric(&m, "cdcmon_ddl_broadcast_copies_total", &[]),
        Some(2.0)
    );
    // Both topics' partitions are assigned: 4, not 2 (partition numbers repeat across topics).
    assert_eq!(
        metric(&m, "cdcmon_kafka_assigned_partitions", &[]),
        Some(4.0),
        "{m}"
    );
    consumer.stop();

    assert_eq!(
        lines_by_topic(&log_path),
        BTreeMap::from([(USERS.to_owned(), 108), (ORDERS.to_owned(), 9)]),
        "every row and each topic's DDL logged once, with its source topic"
    );
    assert_eq!(
        committed_in(&brokers, "g-regex", USERS, 2),
        BTreeMap::from([(0, 101), (1, 8)])
    );
    assert_eq!(
        committed_in(&brokers, "g-regex", ORDERS, 2),
        BTreeMap::from([(0, 4), (1, 6)])
    );
    assert_eq!(
        committed_in(&brokers, "g-regex", OTHER, 2),
        BTreeMap::from([(0, -1), (1, -1)]),
        "nothing read from the unrelated topic, nothing committed for it"
    );

    // New messages, then a restart with an explicit list: it resumes where each topic-partition
    // left off (nothing read twice, nothing skipped).
    produce_to(&brokers, USERS, &inserts("users", 0, 1000, 5), &[]);
    produce_to(&brokers, ORDERS, &inserts("orders", 1, 1000, 2), &[]);
    let log2 = dir.path().join("events-2.ndjson");
    let consumer = RunningConsumer::start(
        &brokers,
        "g-regex",
        &log2,
        &["--topic", &format!("{USERS}, {ORDERS}")],
    );
    consumer.wait_messages(7.0, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(1500));
    let m = consumer.metrics();
    assert_eq!(
        metric(&m, "cdcmon_kafka_messages_total", &[]),
        Some(7.0),
        "{m}"
    );
    assert_eq!(inserts_of(&m, "users"), Some(5.0), "{m}");
    assert_eq!(inserts_of(&m, "orders"), Some(2.0), "{m}");
    consumer.stop();
    // Partitions interleave in the log; each one's messages are in order: compare sorted.
    let mut logged: Vec<(String, i64)> = read_lines(&log2)
        .iter()
        .map(|l| {
            let topic = l["kafka"]["topic"].as_str().unwrap_or("?").to_owned();
            (topic, l["kafka"]["offset"].as_i64().unwrap_or(-1))
        })
        .collect();
    logged.sort();
    let expected: Vec<(String, i64)> = (6..8)
        .map(|o| (ORDERS.to_owned(), o))
        .chain((101..106).map(|o| (USERS.to_owned(), o)))
        .collect();
    assert_eq!(logged, expected, "exactly the new messages, each once");
    assert_eq!(
        committed_in(&brokers, "g-regex", USERS, 2),
        BTreeMap::from([(0, 106), (1, 8)])
    );
    assert_eq!(
        committed_in(&brokers, "g-regex", ORDERS, 2),
        BTreeMap::from([(0, 4), (1, 8)])
    );
}

/// A simple-protocol watermark at physical time `ms`.
fn watermark(partition: i32, ms: u64) -> Msg {
    let body = format!(
        r#"{{"version":1,"type":"WATERMARK","commitTs":{},"buildTs":{ms}}}"#,
        ms << 18
    );
    Msg::value(partition, body.into_bytes())
}

#[test]
fn the_watermark_is_the_minimum_over_every_topic_partition() {
    let cluster = cluster(&[(USERS, 1), (ORDERS, 1)]);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("events.ndjson");

    // Partition 0 of both topics: tracked by partition alone they would share one slot whose
    // maximum (300) would be reported. 10 s apart: within the grace for topics TiCDC stopped
    // writing (src/watermark.rs STALE_WATERMARK_GRACE_MS), so both count.
    produce_to(&brokers, USERS, &[watermark(0, 1_700_000_300_000)], &[]);
    produce_to(&brokers, ORDERS, &[watermark(0, 1_700_000_290_000)], &[]);
    let consumer = RunningConsumer::start(
        &brokers,
        "g-wm",
        &log_path,
        &["--topic", &format!("{USERS},{ORDERS}")],
    );
    consumer.wait_messages(2.0, Duration::from_secs(60));
    let gauge = || metric(&consumer.metrics(), "cdc_watermark_timestamp_seconds", &[]);
    wait_until(Duration::from_secs(10), "watermark gauge", || {
        gauge().is_some()
    });
    assert_eq!(gauge(), Some(1_700_000_290.0));

    // Orders moves past users: the minimum is now users' watermark.
    produce_to(&brokers, ORDERS, &[watermark(0, 1_700_000_310_000)], &[]);
    consumer.wait_messages(3.0, Duration::from_secs(60));
    wait_until(Duration::from_secs(10), "watermark 300", || {
        gauge() == Some(1_700_000_300.0)
    });
    consumer.stop();
}

#[test]
fn a_dropped_tables_topic_does_not_freeze_the_watermark() {
    // `tidb_app_orders`'s table was dropped: TiCDC sends checkpoints only to the topics of
    // tables replicated now (src/watermark.rs), so its last watermark stays behind while users
    // keeps advancing. The topic still matches the pattern and is drained.
    let cluster = cluster(&[(USERS, 1), (ORDERS, 1)]);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("events.ndjson");
    produce_to(&brokers, ORDERS, &[watermark(0, 1_700_000_000_000)], &[]);
    produce_to(&brokers, USERS, &[watermark(0, 1_700_000_030_000)], &[]);
    let consumer = RunningConsumer::start(
        &brokers,
        "g-dropped",
        &log_path,
        &[
            "--topic",
            "^tidb_app_.*",
            "--kafka-option",
            "statistics.interval.ms=200",
        ],
    );
    consumer.wait_messages(2.0, Duration::from_secs(60));
    let gauge = || metric(&consumer.metrics(), "cdc_watermark_timestamp_seconds", &[]);
    // 30 s apart: within the grace, orders is the minimum.
    wait_until(Duration::from_secs(10), "watermark of orders", || {
        gauge() == Some(1_700_000_000.0)
    });
    // Users moves 120 s past orders, which receives nothing more: orders is left out once
    // statistics show it drained, and the gauge follows users instead of freezing.
    produce_to(&brokers, USERS, &[watermark(0, 1_700_000_120_000)], &[]);
    consumer.wait_messages(3.0, Duration::from_secs(60));
    wait_until(Duration::from_secs(10), "watermark of users", || {
        gauge() == Some(1_700_000_120.0)
    });
    consumer.stop();
}

#[test]
fn flag_combinations_that_cannot_work_are_refused_at_startup_with_one_line() {
    let refused = |args: &[&str], expected: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cdcmon"))
            .arg("consume")
            .args(args)
            .env("CDCMON_BROKERS", "127.0.0.1:1")
            .output()
            .expect("run cdcmon");
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.lines().any(|l| l.contains(expected)),
            "{args:?}: {stderr}"
        );
    };
    // The dead-letter topic is one the pattern consumes: dead letters read back forever.
    refused(
        &[
            "--topic",
            "^tidb_app_.*",
            "--dead-letter-topic",
            "tidb_app_dead",
        ],
        "--dead-letter-topic \"tidb_app_dead\" is also consumed (--topic entry \"^tidb_app_.*\")",
    );
    refused(
        &["--topic", "app_cdc,x", "--dead-letter-topic", "x"],
        "--dead-letter-topic \"x\" is also consumed",
    );
    // A pattern with KIP-848's consumer protocol: the broker's engine, not librdkafka's.
    refused(
        &[
            "--topic",
            "^tidb_app_.*",
            "--kafka-option",
            "group.protocol=consumer",
        ],
        "--topic regex \"^tidb_app_.*\" cannot be used with group.protocol=consumer",
    );
    // Perl syntax glibc would read as a letter.
    refused(
        &["--topic", "^tidb_\\d+"],
        "uses \"\\d\", Perl syntax that librdkafka's POSIX regcomp does not have",
    );
}

#[test]
fn a_bad_topic_regex_is_refused_at_startup_with_one_line() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cdcmon"))
        .args(["consume", "--topic", "app_cdc,^tidb_app_(users"])
        .output()
        .expect("run cdcmon");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains("--topic regex \"^tidb_app_(users\" is invalid: Unmatched ( or \\("),
        "{stderr}"
    );
}

/// Topic-partitions a member reports consumer lag for: the ones it owns.
fn owned(m: &str) -> Vec<(String, i32)> {
    let mut v: Vec<(String, i32)> = samples(m)
        .into_iter()
        .filter(|s| s.name == "cdc_kafka_consumer_lag_messages")
        .filter_map(|s| {
            let topic = s.labels.get("topic")?.clone();
            Some((topic, s.labels.get("partition")?.parse().ok()?))
        })
        .collect();
    v.sort();
    v
}

/// The watermark of (topic, partition) in the cooperative test, in seconds: all distinct, and
/// partition 0 of orders is the lowest while partition 0 of users is the highest.
fn wm_seconds(topic: &str, partition: i32) -> u64 {
    match (topic, partition) {
        (ORDERS, 0) => 10,
        (ORDERS, 1) => 20,
        (USERS, 1) => 30,
        _ => 40,
    }
}

/// Cooperative-sticky with a `^regex` subscription over two topics (the real binary, two
/// members): a member that gives up some topic-partitions keeps exactly the others in its
/// assignment, lag series and watermark minimum; rows produced afterwards are logged once
/// across both members, and the final commits are exact per (topic, partition).
#[test]
fn cooperative_rebalance_over_two_topics_keeps_each_topic_partition_apart() {
    let cluster = cluster(&[(USERS, 2), (ORDERS, 2), (OTHER, 2)]);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--topic",
        "^tidb_app_.*",
        "--commit-interval-ms",
        "200",
        "--kafka-option",
        "partition.assignment.strategy=cooperative-sticky",
        "--kafka-option",
        "session.timeout.ms=6000",
        "--kafka-option",
        "heartbeat.interval.ms=500",
    ];
    let log = |name: &str| dir.path().join(format!("{name}.ndjson"));
    let a = ChildConsumer::start(&brokers, "g-coop-topics", &log("a"), &args);
    wait_until(
        Duration::from_secs(60),
        "a owns all 4 topic-partitions",
        || assigned_partitions(&a.metrics()) == 4.0,
    );
    for topic in [USERS, ORDERS] {
        let wms: Vec<Msg> = (0..2)
            .map(|p| watermark(p, 1_000 * wm_seconds(topic, p)))
            .collect();
        produce_to(&brokers, topic, &wms, &[]);
    }
    a.wait_messages(4.0, Duration::from_secs(60));
    wait_until(Duration::from_secs(10), "a's minimum is orders p0", || {
        metric(&a.metrics(), "cdc_watermark_timestamp_seconds", &[]) == Some(10.0)
    });

    let b = ChildConsumer::start(&brokers, "g-coop-topics", &log("b"), &args);
    wait_until(
        Duration::from_secs(60),
        "4 topic-partitions over both",
        || {
            let (x, y) = (
                assigned_partitions(&a.metrics()),
                assigned_partitions(&b.metrics()),
            );
            x > 0.0 && y > 0.0 && x + y == 4.0
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    let (ma, mb) = (a.metrics(), b.metrics());
    let (oa, ob) = (owned(&ma), owned(&mb));
    assert_eq!(oa.len() as f64, assigned_partitions(&ma), "{ma}");
    assert_eq!(ob.len() as f64, assigned_partitions(&mb), "{mb}");
    let mut all: Vec<(String, i32)> = oa.iter().chain(&ob).cloned().collect();
    all.sort();
    assert_eq!(
        all,
        [(ORDERS, 0), (ORDERS, 1), (USERS, 0), (USERS, 1)].map(|(t, p)| (t.to_owned(), p)),
        "each topic-partition owned by exactly one member"
    );
    // a's minimum is over what it still owns (b starts its partitions fresh: no watermark yet).
    let expected = oa
        .iter()
        .map(|(t, p)| wm_seconds(t, *p) as f64)
        .fold(f64::MAX, f64::min);
    assert_eq!(
        metric(&ma, "cdc_watermark_timestamp_seconds", &[]),
        Some(expected),
        "a owns {oa:?}\n{ma}"
    );

    // Rows on every topic-partition after the handover: each logged by exactly one member.
    let mut users = inserts("users", 0, 0, 20);
    users.extend(inserts("users", 1, 20, 10));
    let mut orders = inserts("orders", 0, 0, 4);
    orders.extend(inserts("orders", 1, 4, 6));
    produce_to(&brokers, USERS, &users, &[]);
    produce_to(&brokers, ORDERS, &orders, &[]);
    produce_to(&brokers, OTHER, &inserts("other", 0, 0, 5), &[]);
    wait_until(Duration::from_secs(60), "40 rows over both members", || {
        read_lines(&log("a")).len() + read_lines(&log("b")).len() >= 40
    });
    for c in [a, b] {
        let (_, status) = c.terminate();
        assert!(status.success(), "{status}");
    }
    let mut rows: Vec<(String, i64, i64)> = read_lines(&log("a"))
        .into_iter()
        .chain(read_lines(&log("b")))
        .map(|l| {
            let k = &l["kafka"];
            let topic = k["topic"].as_str().unwrap_or("?").to_owned();
            let partition = k["partition"].as_i64().unwrap_or(-1);
            (topic, partition, k["offset"].as_i64().unwrap_or(-1))
        })
        .collect();
    let n = rows.len();
    rows.sort();
    rows.dedup();
    assert_eq!((n, rows.len()), (40, 40), "each row logged once: {rows:?}");
    assert!(rows.iter().all(|(t, _, _)| t != OTHER));
    // One watermark then the rows on each topic-partition: next offsets are 1 + rows.
    assert_eq!(
        committed_in(&brokers, "g-coop-topics", USERS, 2),
        BTreeMap::from([(0, 21), (1, 11)])
    );
    assert_eq!(
        committed_in(&brokers, "g-coop-topics", ORDERS, 2),
        BTreeMap::from([(0, 5), (1, 7)])
    );
    assert_eq!(
        committed_in(&brokers, "g-coop-topics", OTHER, 2),
        BTreeMap::from([(0, -1), (1, -1)])
    );
}
