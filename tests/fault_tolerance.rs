//! Fault tolerance of `cdcmon consume` against librdkafka's in-process mock cluster
//! (docs/architecture.md "Delivery", docs/performance.md "Fault tolerance"):
//! a 10 s broker outage, `kill -9` of the real binary and a restart, garbage of every protocol,
//! two processes sharing a group, and `/metrics` under concurrent scraping.
//!
//! Every test stops by itself within bounded time (each wait has a deadline).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use cdcmon::protocol::{Compression, Decoder, ProtocolChoice};
use common::*;

/// A dead member must leave the group quickly so a restarted process gets its partitions.
// `;` separates options inside one `--kafka-option` value (commas belong to values).
const FAST_SESSION: &str = "session.timeout.ms=6000;heartbeat.interval.ms=500";

fn row_events(m: &str) -> f64 {
    metric_sum(m, "cdc_events_total", &[])
}

/// (partition, offset) of every event-log line.
fn positions(path: &Path) -> Vec<(i64, i64)> {
    read_lines(path)
        .iter()
        .map(|l| {
            (
                l["kafka"]["partition"].as_i64().expect("partition"),
                l["kafka"]["offset"].as_i64().expect("offset"),
            )
        })
        .collect()
}

/// `positions` of a log a `kill -9` may have cut: a kill inside a `write(2)` can leave one torn
/// line (Linux stops a regular-file write between pages once a fatal signal is pending), which
/// the restart ends with a newline (docs/event-log.md). An unterminated last fragment is not a
/// line yet; at most one complete line may be unparsable (the torn one, ended by the restart).
/// Its event was not committed (commits follow a durable sync of whole lines), so the restart
/// reads it again: nothing is lost by skipping it.
fn positions_after_kill(path: &Path) -> Vec<(i64, i64)> {
    let (positions, torn) = complete_line_positions(path);
    assert!(torn.len() <= 1, "more than one torn line: {torn:?}");
    positions
}

/// The kill test's reading of a cut log, on the two states a torn write leaves.
#[test]
fn positions_after_kill_skip_one_torn_line_and_no_more() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.ndjson");
    let line = |p: i64, o: i64| format!("{{\"kafka\":{{\"partition\":{p},\"offset\":{o}}}}}\n");
    // Right after the kill: an unterminated fragment is not a line.
    let cut = format!("{}{}{{\"kafka\":{{\"parti", line(0, 0), line(1, 0));
    std::fs::write(&log, &cut).unwrap();
    assert_eq!(positions_after_kill(&log), vec![(0, 0), (1, 0)]);
    // After the restart ended it with a newline and appended more.
    std::fs::write(&log, format!("{cut}\n{}", line(1, 1))).unwrap();
    assert_eq!(positions_after_kill(&log), vec![(0, 0), (1, 0), (1, 1)]);
    // Two unparsable lines are not a kill's doing.
    std::fs::write(&log, format!("{cut}\nnot json\n{}", line(1, 1))).unwrap();
    assert!(std::panic::catch_unwind(|| positions_after_kill(&log)).is_err());
}

fn readyz(addr: std::net::SocketAddr) -> u16 {
    http_get(addr, "/readyz").map_or(0, |(s, _)| s)
}

/// The broker (also the group coordinator) is down for 10 s while messages are in flight:
/// `/metrics` keeps answering, `/readyz` says not ready, consumption resumes by itself and every
/// message is counted exactly once.
#[test]
fn broker_outage_mid_stream() {
    let cluster = mock_cluster(3);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.ndjson");
    let before = canal_rows(300, 3);
    let during = canal_rows(300, 3);
    produce(&brokers, &before);
    let consumer = RunningConsumer::start(&brokers, "g-outage", &log, &[]);
    consumer.wait_messages(300.0, Duration::from_secs(30));
    wait_until(Duration::from_secs(10), "ready before the outage", || {
        readyz(consumer.addr) == 200
    });

    cluster.broker_down(1).unwrap();
    let outage = Instant::now();
    // Produced while the broker is down: the producer holds them until it is back.
    let producer = {
        let brokers = brokers.clone();
        std::thread::spawn(move || produce(&brokers, &during))
    };
    wait_until(
        Duration::from_secs(8),
        "/readyz 503 during the outage",
        || readyz(consumer.addr) == 503,
    );
    let (_, body) = http_get(consumer.addr, "/readyz").unwrap();
    assert!(body.contains("no Kafka broker up"), "{body}");
    let mut scrapes = 0;
    while outage.elapsed() < Duration::from_secs(10) {
        let (status, m) = http_get(consumer.addr, "/metrics").expect("/metrics during outage");
        assert_eq!(status, 200);
        assert_eq!(metric(&m, "cdcmon_ready", &[]), Some(0.0));
        assert_eq!(row_events(&m), 300.0);
        scrapes += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(scrapes >= 10);
    cluster.broker_up(1).unwrap();

    producer.join().expect("producer thread");
    consumer.wait_messages(600.0, Duration::from_secs(60));
    wait_until(Duration::from_secs(20), "ready after the outage", || {
        readyz(consumer.addr) == 200
    });
    std::thread::sleep(Duration::from_millis(500));
    let m = consumer.metrics();
    assert_eq!(metric(&m, "cdcmon_kafka_messages_total", &[]), Some(600.0));
    assert_eq!(row_events(&m), 600.0);
    for op in ["insert", "update", "delete"] {
        assert_eq!(metric_sum(&m, "cdc_events_total", &[("op", op)]), 200.0);
    }
    consumer.stop();
    let mut seen = positions(&log);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 600, "every message logged once");
}

/// `cdcmon_kafka_messages_total` of a running process (0 while it does not answer).
fn consumed(c: &ChildConsumer) -> f64 {
    http_get(c.addr, "/metrics")
        .ok()
        .and_then(|(_, m)| metric(&m, "cdcmon_kafka_messages_total", &[]))
        .unwrap_or(0.0)
}

fn committed_total(brokers: &str, group: &str, partitions: i32) -> i64 {
    committed(brokers, group, partitions).values().sum()
}

/// `kill -9` of the real binary mid-stream, then a restart in the same group: every message is
/// logged and counted across the two runs (no loss), the restart resumes exactly at the offsets
/// the first run committed, and everything the first run committed was already in its log.
/// Duplicates are exactly the messages the first run logged past its last commit.
///
/// Paced by what the consumer has read and committed, not by the clock, so it holds whatever the
/// build profile and machine speed (a clock- or rate-based version failed under crane's release
/// nextest: the release consumer read a third of a pre-produced backlog before its first commit,
/// and outran a duplicate bound derived from a sampled rate; docs/sandbox-parity.md "Findings").
/// Batches are produced one at a time; each is read and then committed in full before the next
/// (which also proves the periodic commit catches up with the log). The kill comes once the first
/// run has been seen reading the last batch, so what it logged past its last commit, and thus the
/// duplicates, lies inside that one batch.
#[test]
fn kill_9_and_restart_lose_nothing() {
    const N: usize = 30_000;
    const BATCH: usize = N / 10;
    const COMMITTED_BATCHES: usize = 3;
    const PARTITIONS: i32 = 6;
    let cluster = mock_cluster(PARTITIONS);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.ndjson");
    let msgs = canal_rows(N, PARTITIONS);
    let mut batches = msgs.chunks(BATCH);

    let args = [
        "--commit-interval-ms",
        "200",
        "--kafka-option",
        FAST_SESSION,
    ];
    let first = ChildConsumer::start(&brokers, "g-kill", &log, &args);
    let mut produced = 0;
    for batch in batches.by_ref().take(COMMITTED_BATCHES) {
        produce_to(&brokers, TOPIC, batch, LZ4);
        produced += batch.len();
        first.wait_messages(produced as f64, Duration::from_secs(60));
        wait_until(
            Duration::from_secs(30),
            &format!("{produced} committed"),
            || committed_total(&brokers, "g-kill", PARTITIONS) == produced as i64,
        );
    }
    // The last batch of the first run: kill as soon as it is seen consuming it (mid-batch on a
    // slow machine; on a fast one it may have read and even committed all of it: then there are
    // no duplicates, which the checks below allow).
    let last = batches.next().expect("a fourth batch");
    produce_to(&brokers, TOPIC, last, LZ4);
    wait_until(Duration::from_secs(60), "the last batch being read", || {
        consumed(&first) > produced as f64
    });
    produced += last.len();
    first.kill9();
    let first_lines = positions_after_kill(&log);
    let done = committed(&brokers, "g-kill", PARTITIONS);
    // Durability: every offset below a committed offset is already in the first run's log.
    for (p, next) in &done {
        let logged = first_lines
            .iter()
            .filter(|(lp, lo)| lp == &i64::from(*p) && lo < next)
            .count() as i64;
        assert_eq!(
            logged, *next,
            "partition {p}: committed {next}, logged {logged}"
        );
    }
    let committed_total: i64 = done.values().sum();
    assert!(
        committed_total >= (COMMITTED_BATCHES * BATCH) as i64
            && committed_total as usize <= produced,
        "{done:?}"
    );

    // The rest of the stream, for the restart to read from the committed offsets on.
    for batch in batches {
        produce_to(&brokers, TOPIC, batch, LZ4);
    }
    let second = ChildConsumer::start(&brokers, "g-kill", &log, &args);
    let resumed = N as f64 - committed_total as f64;
    second.wait_messages(resumed, Duration::from_secs(90));
    std::thread::sleep(Duration::from_millis(300));
    let m = second.metrics();
    assert_eq!(
        metric(&m, "cdcmon_kafka_messages_total", &[]),
        Some(resumed),
        "the restart re-read from the committed offsets, no further back"
    );
    assert_eq!(row_events(&m), resumed);
    let (took, status) = second.terminate();
    assert!(status.success() && took < Duration::from_secs(10));

    let all = positions_after_kill(&log);
    let second_lines = &all[first_lines.len()..];
    assert_eq!(second_lines.len() as f64, resumed);
    for (p, o) in second_lines {
        let next = done.get(&(*p as i32)).copied().unwrap_or(0);
        assert!(*o >= next, "restart re-read {p}/{o} below committed {next}");
    }
    let mut union: Vec<_> = all.clone();
    union.sort();
    union.dedup();
    assert_eq!(union.len(), N, "no message lost");
    let duplicates = all.len() - N;
    assert_eq!(duplicates, first_lines.len() - committed_total as usize);
    // Everything before the last batch was committed before it was produced: only the last
    // batch can have been logged past the last commit.
    assert!(
        duplicates <= BATCH,
        "{duplicates} duplicates > the {BATCH} messages produced since the last observed commit"
    );
    eprintln!(
        "kill -9: {} logged by the first run, {committed_total} committed, {duplicates} duplicates (bound {BATCH})",
        first_lines.len()
    );
}

/// A Kafka message's key and value.
type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Bad variants of real messages of every protocol.
fn garbage() -> Vec<KeyValue> {
    let mut bad: Vec<KeyValue> = Vec::new();
    let half = |v: &[u8]| v[..v.len() / 2].to_vec();
    for f in ["canal-json-update-1.json", "simple-insert-1.json"] {
        let v = fixture(f);
        bad.push((None, Some(half(&v))));
        bad.push((None, Some(v[..1].to_vec())));
    }
    bad.push((
        None,
        Some(b"{\"id\":0,\"type\":\"MERGE\",\"data\":[{}]}".to_vec()),
    ));
    bad.push((None, Some(b"{\"id\":0,\"isDdl\":false}".to_vec())));
    bad.push((None, Some(b"{\"version\":1,\"type\":\"NOPE\"}".to_vec())));
    let (dk, dv) = (
        fixture("debezium-update-1.key.json"),
        fixture("debezium-update-1.json"),
    );
    bad.push((Some(dk.clone()), Some(half(&dv))));
    bad.push((Some(dk), Some(b"{\"payload\":{\"op\":\"x\"}}".to_vec())));
    let (ok, ov) = (
        fixture("open-protocol-insert-1.key.bin"),
        fixture("open-protocol-insert-1.value.bin"),
    );
    bad.push((Some(ok.clone()), Some(half(&ov))));
    bad.push((Some(half(&ok)), Some(ov.clone())));
    let mut long = ov.clone();
    long[..8].copy_from_slice(&u64::MAX.to_be_bytes());
    bad.push((Some(ok.clone()), Some(long)));
    let mut v2 = ok.clone();
    v2[7] = 2;
    bad.push((Some(v2), Some(ov.clone())));
    bad.push((Some(ok), None));
    bad.push((None, None));
    bad.push((None, Some(Vec::new())));
    bad.push((None, Some(b"\x00\x01\x02 binary garbage \xff\xfe".to_vec())));
    bad.push((None, Some(b"[1,2,3]".to_vec())));
    bad
}

/// Good messages of every protocol with garbage and truncated ones interleaved: the bad ones are
/// counted by reason (as the decoder classifies them), the stream never stalls, the good ones
/// are counted exactly.
#[test]
fn garbage_of_every_protocol_is_counted_and_skipped() {
    let cluster = mock_cluster(2);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.ndjson");

    let good: Vec<KeyValue> = vec![
        (None, Some(fixture("canal-json-insert-1.json"))),
        (None, Some(fixture("simple-update-1.json"))),
        (
            Some(fixture("debezium-delete-1.key.json")),
            Some(fixture("debezium-delete-1.json")),
        ),
        (
            Some(fixture("open-protocol-insert-4-batch2.key.bin")),
            Some(fixture("open-protocol-insert-4-batch2.value.bin")),
        ),
    ];
    let bad = garbage();
    // Expected outcome of each bad message, from the decoder itself (pure, same code).
    let mut decoder = Decoder::new(ProtocolChoice::Auto, Compression::None);
    let mut reasons: HashMap<&'static str, f64> = HashMap::new();
    for (k, v) in &bad {
        let e = decoder
            .decode(k.as_deref(), v.as_deref())
            .expect_err("garbage must not decode");
        *reasons.entry(e.reason.as_str()).or_default() += 1.0;
    }
    assert!(reasons.len() >= 5, "too few distinct reasons: {reasons:?}");

    let rounds = 20;
    let mut msgs = Vec::new();
    for r in 0..rounds {
        for (i, (k, v)) in good.iter().chain(bad.iter()).enumerate() {
            msgs.push(Msg {
                partition: ((r + i) % 2) as i32,
                key: k.clone(),
                value: v.clone(),
            });
        }
    }
    produce(&brokers, &msgs);
    let consumer = RunningConsumer::start(&brokers, "g-garbage", &log, &[]);
    consumer.wait_messages(msgs.len() as f64, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    let m = consumer.metrics();
    for (reason, n) in &reasons {
        assert_eq!(
            metric(&m, "cdc_decode_errors_total", &[("reason", reason)]),
            Some(n * rounds as f64),
            "reason {reason}"
        );
    }
    assert_eq!(
        metric_sum(&m, "cdc_decode_errors_total", &[]),
        (bad.len() * rounds) as f64
    );
    // Good per round: canal insert, simple update, debezium delete, open-protocol batch of 2.
    let r = rounds as f64;
    assert_eq!(row_events(&m), 5.0 * r);
    assert_eq!(
        metric(
            &m,
            "cdc_events_total",
            &[("db", "test"), ("table", "employee"), ("op", "insert")]
        ),
        Some(r)
    );
    assert_eq!(
        metric_sum(&m, "cdc_events_total", &[("table", "t"), ("op", "insert")]),
        2.0 * r
    );
    assert_eq!(metric_sum(&m, "cdc_events_total", &[("op", "delete")]), r);
    assert_eq!(metric_sum(&m, "cdc_events_total", &[("op", "update")]), r);
    consumer.stop();
    assert_eq!(read_lines(&log).len(), 5 * rounds);
}

/// Two processes in one group over six partitions: both get partitions, their counters add up
/// to what was produced, and each (partition, offset) is in exactly one of their event logs.
#[test]
fn two_processes_split_the_partitions() {
    const N: usize = 6_000;
    let cluster = mock_cluster(6);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let (log_a, log_b) = (dir.path().join("a.ndjson"), dir.path().join("b.ndjson"));
    let args = ["--kafka-option", FAST_SESSION];
    let a = ChildConsumer::start(&brokers, "g-two", &log_a, &args);
    let b = ChildConsumer::start(&brokers, "g-two", &log_b, &args);
    let assigned = |c: &ChildConsumer| {
        http_get(c.addr, "/metrics").map_or(0.0, |(_, m)| assigned_partitions(&m))
    };
    wait_until(
        Duration::from_secs(40),
        "6 partitions split over both",
        || {
            let (x, y) = (assigned(&a), assigned(&b));
            x > 0.0 && y > 0.0 && x + y == 6.0
        },
    );
    produce_to(&brokers, TOPIC, &canal_rows(N, 6), LZ4);
    wait_until(Duration::from_secs(60), "all consumed by the pair", || {
        let n = |c: &ChildConsumer| {
            http_get(c.addr, "/metrics")
                .ok()
                .map_or(0.0, |(_, m)| row_events(&m))
        };
        n(&a) + n(&b) >= N as f64
    });
    std::thread::sleep(Duration::from_millis(300));
    let (ma, mb) = (a.metrics(), b.metrics());
    let (na, nb) = (row_events(&ma), row_events(&mb));
    assert!(na > 0.0 && nb > 0.0, "{na} + {nb}");
    assert_eq!(na + nb, N as f64);
    assert_eq!(assigned(&a) + assigned(&b), 6.0);
    for c in [a, b] {
        let (took, status) = c.terminate();
        assert!(status.success() && took < Duration::from_secs(10));
    }
    let (pa, pb) = (positions(&log_a), positions(&log_b));
    let parts = |v: &[(i64, i64)]| {
        let mut p: Vec<i64> = v.iter().map(|x| x.0).collect();
        p.sort();
        p.dedup();
        p
    };
    let (parts_a, parts_b) = (parts(&pa), parts(&pb));
    assert!(
        parts_a.iter().all(|p| !parts_b.contains(p)),
        "{parts_a:?} / {parts_b:?}"
    );
    let mut union: Vec<_> = pa.iter().chain(pb.iter()).copied().collect();
    let total = union.len();
    union.sort();
    union.dedup();
    assert_eq!((total, union.len()), (N, N), "each message exactly once");
}

/// A second process joins while the first is consuming: the first revokes (flushing, syncing and
/// trying to commit what it logged, synchronously), the pair splits the partitions, and every
/// message is logged: none lost. The mock coordinator refuses commits while the group rebalances
/// (`RebalanceInProgress`; a real broker accepts them from the current generation), so here the
/// handover repeats what the first process logged since its last successful periodic commit
/// (bounded below).
///
/// Paced by observed state, not by the clock (a version with a pre-produced backlog failed under
/// crane's release nextest: the first process drained it before the second joined;
/// docs/sandbox-parity.md "Findings"). The first process reads and commits the first batches
/// alone; the second is started and one batch is produced while the group rebalances; the
/// remaining batches are produced only once the hand-over is seen (both hold partitions, six in
/// all), each after the pair has logged and committed the previous one. So the second process
/// has messages to read whatever the pace, and at any moment at most one batch is logged but not
/// committed: each revocation (whose commit the mock refuses) repeats at most that one batch.
/// Normally there is one, the first process's; on a loaded machine the mock may finish a
/// generation without a member that rejoined late and rebalance again (a loaded release run
/// repeated more than one batch), so the bound counts the revocations in both processes' logs.
#[test]
fn rebalance_mid_stream_hands_over_without_loss() {
    const N: usize = 40_000;
    const BATCH: usize = N / 10;
    const ALONE_BATCHES: usize = 3;
    let cluster = mock_cluster(6);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let (log_a, log_b) = (dir.path().join("a.ndjson"), dir.path().join("b.ndjson"));
    let msgs = canal_rows(N, 6);
    let mut batches = msgs.chunks(BATCH);
    let args = ["--kafka-option", FAST_SESSION];
    // Info logs: the revocations are counted from them.
    let info = [("CDCMON_LOG", "info")];
    let a = ChildConsumer::start_with_env(&brokers, "g-rebalance", &log_a, &args, &info);
    let mut produced = 0;
    for batch in batches.by_ref().take(ALONE_BATCHES) {
        produce_to(&brokers, TOPIC, batch, LZ4);
        produced += batch.len();
        a.wait_messages(produced as f64, Duration::from_secs(60));
        wait_until(
            Duration::from_secs(30),
            &format!("{produced} committed by the first process"),
            || committed_total(&brokers, "g-rebalance", 6) == produced as i64,
        );
    }
    let b = ChildConsumer::start_with_env(&brokers, "g-rebalance", &log_b, &args, &info);
    // In flight while the group rebalances: A reads it until it learns of the join (a heartbeat
    // later), then revokes.
    let in_flight = batches.next().expect("a batch for the rebalance");
    produce_to(&brokers, TOPIC, in_flight, LZ4);
    produced += in_flight.len();
    let assigned = |c: &ChildConsumer| {
        http_get(c.addr, "/metrics").map_or(0.0, |(_, m)| assigned_partitions(&m))
    };
    wait_until(
        Duration::from_secs(60),
        "the hand-over: both processes hold partitions, six in all",
        || {
            let (x, y) = (assigned(&a), assigned(&b));
            x > 0.0 && y > 0.0 && x + y == 6.0
        },
    );
    let counted = |c: &ChildConsumer| {
        http_get(c.addr, "/metrics")
            .ok()
            .map_or(0.0, |(_, m)| row_events(&m))
    };
    // Wait for every distinct message to be logged, not for the counters to sum to what was
    // produced: the handover repeats messages, so the sum can get there while some partition's
    // tail is still unread. Then for the group's commit to cover them.
    let all_logged = |n: usize| {
        wait_until(
            Duration::from_secs(90),
            &format!("{n} distinct messages logged by the pair"),
            || logged_positions(&[&log_a, &log_b]).len() == n,
        );
        wait_until(
            Duration::from_secs(30),
            &format!("{n} committed by the pair"),
            || committed_total(&brokers, "g-rebalance", 6) == n as i64,
        );
    };
    all_logged(produced);
    for batch in batches {
        produce_to(&brokers, TOPIC, batch, LZ4);
        produced += batch.len();
        all_logged(produced);
    }
    assert_eq!(produced, N);
    std::thread::sleep(Duration::from_millis(500));
    let (na, nb) = (counted(&a), counted(&b));
    let revocations = [&a, &b]
        .iter()
        .map(|c| c.stderr().matches("partitions revoked").count())
        .sum::<usize>();
    for c in [a, b] {
        let (_, status) = c.terminate();
        assert!(status.success());
    }
    assert!(
        nb > 0.0,
        "the second process read nothing after the hand-over ({na} + {nb})"
    );
    let (pa, pb) = (positions(&log_a), positions(&log_b));
    let mut union: Vec<_> = pa.iter().chain(pb.iter()).copied().collect();
    let total = union.len();
    union.sort();
    union.dedup();
    assert_eq!(union.len(), N, "no message lost");
    let duplicates = total - N;
    assert!(revocations >= 1, "the first process never revoked");
    // Everything before the in-flight batch was committed before the second process started,
    // and every later batch only after the previous one was committed: each revocation can
    // repeat at most one batch. No-loss above stays exact.
    let bound = BATCH * revocations;
    assert!(
        duplicates <= bound,
        "{duplicates} repeated > {bound} ({revocations} revocations × the {BATCH}-message batch)"
    );
    // Counters: every message once per process that handled it.
    assert_eq!(na + nb, total as f64);
    eprintln!(
        "rebalance: {na} + {nb} counted, {duplicates} repeated (bound {bound}, {revocations} revocations)"
    );
}

/// 32 clients × at least 50 scrapes of `/metrics` while the consumer works: no errors, every
/// response parses, counters never go backwards.
///
/// "While it works" is made true by pacing, not by hoping the backlog outlasts the scrapes (a
/// release build may drain a pre-produced backlog before the clients start): the messages are
/// produced in batches, each after the previous one was read, while the clients scrape, and the
/// clients scrape until everything is read. Some scrape must have seen the counter mid-stream.
#[test]
fn metrics_survive_concurrent_scrapes_while_consuming() {
    const N: usize = 20_000;
    const BATCHES: usize = 20;
    let cluster = mock_cluster(4);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let consumer = ChildConsumer::start(&brokers, "g-scrape", &dir.path().join("e.ndjson"), &[]);
    let addr = consumer.addr;
    let clients: Vec<_> = (0..32)
        .map(|_| {
            std::thread::spawn(move || {
                let (mut last, mut scrapes, mut mid_stream) = (0.0, 0, 0);
                while scrapes < 50 || last < N as f64 {
                    let (status, body) = http_get(addr, "/metrics").expect("scrape");
                    assert_eq!(status, 200);
                    // `samples` fails on any unparsable line.
                    let parsed = samples(&body).len();
                    assert!(parsed > 20, "short response:\n{body}");
                    let n = metric(&body, "cdcmon_kafka_messages_total", &[]).expect("counter");
                    assert!(n >= last, "counter went back {last} -> {n}");
                    if n > 0.0 && n < N as f64 {
                        mid_stream += 1;
                    }
                    last = n;
                    scrapes += 1;
                    assert!(scrapes < 100_000, "the consumer never got to {N} ({last})");
                }
                mid_stream
            })
        })
        .collect();
    let mut produced = 0;
    for batch in canal_rows(N, 4).chunks(N / BATCHES) {
        produce_to(&brokers, TOPIC, batch, LZ4);
        produced += batch.len();
        consumer.wait_messages(produced as f64, Duration::from_secs(60));
    }
    let mid_stream: usize = clients
        .into_iter()
        .map(|c| c.join().expect("scrape client failed"))
        .sum();
    assert!(mid_stream > 0, "no scrape saw the consumer mid-stream");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(row_events(&consumer.metrics()), N as f64);
    let (_, status) = consumer.terminate();
    assert!(status.success());
}
