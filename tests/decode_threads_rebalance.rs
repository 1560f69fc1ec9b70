//! `--decode-threads` (src/decode_batch.rs) across a rebalance, against the mock cluster and the
//! real binary: a member joins while the first one is working through a backlog in batches, so
//! revokes arrive while batches are being gathered. Nothing may be lost, every committed offset
//! must be covered by logged lines at every moment, and every logged line is counted exactly
//! once by the process that logged it (a held message of a revoked partition is neither logged
//! nor counted).
//!
//! Paced by observed state (messages read, partitions assigned, lines logged, offsets
//! committed), never by the clock; every wait has a deadline.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;

const FAST_SESSION: &str = "session.timeout.ms=6000;heartbeat.interval.ms=500";
const PARTITIONS: i32 = 6;
/// Messages per produce call of the background producer.
const CHUNK: usize = 2_000;
/// The producer stops here at the latest, whatever the pace.
const MAX_PRODUCED: usize = 80_000;

/// Every offset below each partition's committed offset is in a log: read the commits first
/// (a commit follows the sync of the lines it covers), then the logs.
fn assert_commits_covered_by_logs(brokers: &str, group: &str, paths: &[&Path]) -> usize {
    let commits: BTreeMap<i32, i64> = committed(brokers, group, PARTITIONS);
    let seen = logged_positions(paths);
    for (&p, &next) in &commits {
        for offset in 0..next {
            assert!(
                seen.contains(&(i64::from(p), offset)),
                "partition {p}: offset {offset} committed (next {next}) but in no event log"
            );
        }
    }
    seen.len()
}

fn lines(path: &Path) -> usize {
    read_lines(path).len()
}

#[test]
fn a_rebalance_during_a_backlog_loses_nothing_and_commits_only_logged_offsets() {
    let cluster = mock_cluster(PARTITIONS);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let (log_a, log_b) = (dir.path().join("a.ndjson"), dir.path().join("b.ndjson"));
    let group = "g-decode-threads";
    // Two decode threads whatever the machine's default, a short commit interval so commits
    // happen during the hand-over, info logs for the revocations.
    let args = [
        "--decode-threads",
        "2",
        "--commit-interval-ms",
        "200",
        "--kafka-option",
        FAST_SESSION,
    ];
    let info = [("CDCMON_LOG", "info")];
    let a = ChildConsumer::start_with_env(&brokers, group, &log_a, &args, &info);

    // A backlog that keeps coming until the hand-over is over.
    let stop = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(AtomicUsize::new(0));
    let producer = {
        let (brokers, stop, produced) = (brokers.clone(), stop.clone(), produced.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) && produced.load(Ordering::SeqCst) < MAX_PRODUCED {
                produce_to(&brokers, TOPIC, &canal_rows(CHUNK, PARTITIONS), LZ4);
                produced.fetch_add(CHUNK, Ordering::SeqCst);
            }
        })
    };
    a.wait_messages((2 * CHUNK) as f64, Duration::from_secs(60));
    let b = ChildConsumer::start_with_env(&brokers, group, &log_b, &args, &info);
    let assigned = |c: &ChildConsumer| {
        http_get(c.addr, "/metrics").map_or(0.0, |(_, m)| assigned_partitions(&m))
    };
    wait_until(
        Duration::from_secs(90),
        "the hand-over: both processes hold partitions, six in all",
        || {
            assert_commits_covered_by_logs(&brokers, group, &[&log_a, &log_b]);
            let (x, y) = (assigned(&a), assigned(&b));
            x > 0.0 && y > 0.0 && x + y == f64::from(PARTITIONS)
        },
    );
    // The second process reads its share of the backlog, then the producer stops.
    wait_until(Duration::from_secs(90), "the second process reads", || {
        assert_commits_covered_by_logs(&brokers, group, &[&log_a, &log_b]);
        let read = http_get(b.addr, "/metrics")
            .ok()
            .and_then(|(_, m)| metric(&m, "cdcmon_kafka_messages_total", &[]))
            .unwrap_or(0.0);
        read >= CHUNK as f64 || produced.load(Ordering::SeqCst) >= MAX_PRODUCED
    });
    stop.store(true, Ordering::SeqCst);
    producer.join().expect("producer thread");
    let produced = produced.load(Ordering::SeqCst);
    wait_until(
        Duration::from_secs(120),
        &format!("{produced} distinct messages logged and committed by the pair"),
        || {
            let logged = assert_commits_covered_by_logs(&brokers, group, &[&log_a, &log_b]);
            logged == produced
                && committed(&brokers, group, PARTITIONS).values().sum::<i64>() == produced as i64
        },
    );
    // A commit can be answered after the last check: take the counters once both are quiet.
    std::thread::sleep(Duration::from_millis(500));
    let rows = |c: &ChildConsumer| {
        http_get(c.addr, "/metrics").map_or(0.0, |(_, m)| metric_sum(&m, "cdc_events_total", &[]))
    };
    let (na, nb) = (rows(&a), rows(&b));
    let stderr_paths = [a.stderr_path.clone(), b.stderr_path.clone()];
    for c in [a, b] {
        let (_, status) = c.terminate();
        assert!(status.success());
    }
    // Read after the stop: the decode pool reports its parallel batches when the loop ends.
    let stderr: String = stderr_paths
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap_or_default())
        .collect();
    let revocations = stderr.matches("partitions revoked").count();
    let dropped_batches = stderr.matches("revoked meanwhile dropped").count();
    // That report is logged only when batches > 0 (src/consumer.rs): without it every batch
    // was decoded serially, and this test would not have exercised the parallel path at all.
    let pool_reports: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("decode pool: the loop's waits"))
        .collect();
    assert!(
        !pool_reports.is_empty(),
        "no parallel batch was decoded by either process:\n{stderr}"
    );
    assert!(revocations >= 1, "the first process never revoked");
    assert!(
        nb > 0.0,
        "the second process read nothing after the hand-over"
    );
    let union = logged_positions(&[&log_a, &log_b]);
    assert_eq!(union.len(), produced, "no message lost");
    // Counted exactly what each logged: a dropped held message is neither.
    let (la, lb) = (lines(&log_a), lines(&log_b));
    assert_eq!(na, la as f64, "first process: counted = logged");
    assert_eq!(nb, lb as f64, "second process: counted = logged");
    eprintln!(
        "decode-threads rebalance: {produced} produced, {la} + {lb} logged, {revocations} \
         revocations, {dropped_batches} batches with held messages of revoked partitions dropped; \
         decode pool: {pool_reports:?}"
    );
}
