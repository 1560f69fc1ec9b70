//! Event-log durability on the real consume loop with librdkafka's mock cluster
//! (docs/architecture.md "Delivery", docs/event-log.md "Durability" and "Rotation"):
//!
//! - issue 10.6 (fsyncgate): a failed `fdatasync` of the log, periodic or at shutdown, commits
//!   nothing past the last successful sync, stops the loop and ends `consume` with an error
//!   naming the file and the errno (the binary exits 1);
//! - issue 10.7: short writes and write errors in the middle of multi-event messages neither
//!   double nor tear a line;
//! - issue 16.8: size rotation on the real binary under load (every message in exactly one line
//!   across all files, no torn line), retention, and `kill -9` at random moments of a
//!   rotation-heavy run (nothing lost).
//!
//! The failure tests run the library's `consumer::run_with_log_fs` (the same loop the binary
//! runs, on a file system that fails on cue); the rotation tests run the built binary.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cdcmon::eventlog::{LogFile, LogFs, OsFs};
use common::*;

/// A dead member must leave the group quickly so a restarted process gets its partitions.
const FAST_SESSION: &str = "session.timeout.ms=6000;heartbeat.interval.ms=500";

// ---------------------------------------------------------------------------------------------
// A file system that fails on cue.

/// Write calls (1-based, counted over every file) in `fail_writes` fail with ENOSPC; write
/// `short_write` puts only part of its buffer in the file (inside a line); sync `fail_sync`
/// fails with EIO (later syncs would succeed, as on Linux after a writeback error). The file
/// length at each successful sync before the first failure is recorded.
#[derive(Default)]
struct Faults {
    short_write: Option<usize>,
    fail_writes: std::ops::Range<usize>,
    fail_sync: Option<usize>,
    writes: AtomicUsize,
    syncs: AtomicUsize,
    /// File length at the last successful sync before the first failed one.
    durable_len: Mutex<Option<u64>>,
    failed: std::sync::atomic::AtomicBool,
}

struct FaultyFile {
    file: File,
    faults: Arc<Faults>,
}

impl LogFile for FaultyFile {
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let n = self.faults.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if self.faults.fail_writes.contains(&n) {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        if self.faults.short_write == Some(n) && buf.len() > 1 {
            return LogFile::write(&self.file, &buf[..buf.len() / 2 + 1]);
        }
        LogFile::write(&self.file, buf)
    }

    fn sync_data(&self) -> io::Result<()> {
        let n = self.faults.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        if self.faults.fail_sync == Some(n) {
            self.faults.failed.store(true, Ordering::SeqCst);
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.file.sync_data()?;
        if !self.faults.failed.load(Ordering::SeqCst) {
            *self.faults.durable_len.lock().unwrap() = Some(self.file.metadata()?.len());
        }
        Ok(())
    }

    fn file(&self) -> &File {
        &self.file
    }
}

struct FaultyFs(Arc<Faults>);

impl LogFs for FaultyFs {
    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn LogFile>> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        Ok(Arc::new(FaultyFile {
            file,
            faults: self.0.clone(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        OsFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        OsFs.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        OsFs.sync_dir(dir)
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Open-protocol batch messages of `rows` insert events each (TiCDC batches up to
/// `max-batch-size` events per message; canal-json carries one row per message). Key column
/// `a` numbers the events from 0 across the stream: one message, many events, many lines.
fn multi_event_messages(n: usize, rows: usize, partitions: i32) -> Vec<Msg> {
    let framed = |out: &mut Vec<u8>, json: &str| {
        out.extend_from_slice(&(json.len() as u64).to_be_bytes());
        out.extend_from_slice(json.as_bytes());
    };
    (0..n)
        .map(|i| {
            let mut key = 1u64.to_be_bytes().to_vec(); // batch format version 1
            let mut value = Vec::new();
            for r in 0..rows {
                framed(&mut key, r#"{"ts":1,"scm":"test","tbl":"t","t":1}"#);
                framed(
                    &mut value,
                    &format!(
                        r#"{{"u":{{"a":{{"t":1,"h":true,"f":11,"v":{}}},"b":{{"t":3,"f":65,"v":123}}}}}}"#,
                        i * rows + r
                    ),
                );
            }
            Msg::keyed((i % partitions as usize) as i32, key, value)
        })
        .collect()
}

/// (partition, offset) of a parsed line.
fn position(l: &serde_json::Value) -> (i64, i64) {
    (
        l["kafka"]["partition"].as_i64().expect("partition"),
        l["kafka"]["offset"].as_i64().expect("offset"),
    )
}

/// The event log and its rotated files, oldest first: `PATH.N` … `PATH.1`, `PATH`.
fn log_files(path: &Path) -> Vec<PathBuf> {
    let dir = path.parent().unwrap();
    let base = path.file_name().unwrap().to_str().unwrap().to_owned();
    let mut numbered: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            let n = name.strip_prefix(&base)?.strip_prefix('.')?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    numbered.sort_by_key(|n| std::cmp::Reverse(n.0));
    let mut files: Vec<PathBuf> = numbered.into_iter().map(|(_, p)| p).collect();
    if path.exists() {
        files.push(path.to_owned());
    }
    files
}

/// Every line of one file, strictly parsed (a torn line fails the test).
fn strict_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: torn line {l:?}: {e}", path.display()))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Issue 10.6: fsyncgate.

/// The 4th periodic sync fails. `consume` must stop by itself with an error naming the file and
/// the errno, and the group's committed offsets must all be covered by what was in the file at
/// the last successful sync (today's code synced again at the next tick, the kernel said
/// "fine", and it committed lines that may never have reached the disk).
#[test]
fn a_failed_periodic_sync_commits_nothing_more_and_stops() {
    const N: usize = 30_000;
    let cluster = mock_cluster(3);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.ndjson");
    let faults = Arc::new(Faults {
        fail_sync: Some(4),
        ..Faults::default()
    });
    let c = RunningConsumer::start_on(
        &brokers,
        "g-syncfail",
        &log,
        &["--commit-interval-ms", "100"],
        Arc::new(FaultyFs(faults.clone())),
    );
    // Paced by what the consumer has read, not by the clock: a sync runs only when a tick has new
    // lines, and a backlog drained within three ticks (a release build, or a slow group join that
    // let a clock-paced producer finish first) never reaches the 4th, failing sync. Each batch
    // is read before the next is produced, with two ticks in between: every batch brings a sync.
    let mut produced = 0;
    for batch in canal_rows(N, 3).chunks(N / 10) {
        if c.finished() {
            break;
        }
        produce_to(&brokers, common::TOPIC, batch, LZ4);
        produced += batch.len();
        wait_until(
            Duration::from_secs(30),
            "the batch read, or consume stopped",
            || c.finished() || c.metric_total("cdcmon_kafka_messages_total") >= produced as f64,
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let err = c
        .wait_exit(Duration::from_secs(60))
        .expect_err("consume must end with an error after a failed fdatasync");
    let text = format!("{err:#}");
    assert!(
        text.contains(log.to_str().unwrap()) && text.contains("os error 5"),
        "the error names the file and the errno: {text}"
    );
    assert!(faults.syncs.load(Ordering::SeqCst) >= 4);

    // Nothing committed beyond the lines that were in the file at the last good sync.
    let durable_len = faults.durable_len.lock().unwrap().expect("3 good syncs");
    let bytes = std::fs::read(&log).unwrap();
    let durable = std::str::from_utf8(&bytes[..durable_len as usize]).unwrap();
    let mut durable_next: HashMap<i64, i64> = HashMap::new();
    for l in durable.lines() {
        let (p, o) = position(&serde_json::from_str(l).unwrap());
        let next = durable_next.entry(p).or_default();
        *next = (*next).max(o + 1);
    }
    let done = committed(&brokers, "g-syncfail", 3);
    let committed_total: i64 = done.values().sum();
    assert!(committed_total > 0, "the good syncs committed: {done:?}");
    for (p, next) in &done {
        let durable = durable_next.get(&i64::from(*p)).copied().unwrap_or(0);
        assert!(
            *next <= durable,
            "partition {p}: committed {next} but only offsets below {durable} were synced"
        );
    }
    // It stopped consuming: far from everything was read.
    let logged = bytes.iter().filter(|&&b| b == b'\n').count();
    assert!(logged < N, "consumption stopped ({logged} of {N} logged)");
    eprintln!(
        "failed sync: {committed_total} committed, {} lines durable, {logged} logged",
        durable.lines().count()
    );
}

/// The first sync ever is the shutdown's: it fails. Nothing may be committed (today's code
/// logged it, and the revoke that leaving the group triggers synced again and committed), and
/// `consume` returns the error.
#[test]
fn a_failed_sync_at_shutdown_commits_nothing() {
    const N: usize = 600;
    let cluster = mock_cluster(3);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.ndjson");
    produce(&brokers, &canal_rows(N, 3));
    let faults = Arc::new(Faults {
        fail_sync: Some(1),
        ..Faults::default()
    });
    let c = RunningConsumer::start_on(
        &brokers,
        "g-syncfail-stop",
        &log,
        &["--commit-interval-ms", "600000"],
        Arc::new(FaultyFs(faults.clone())),
    );
    wait_until(Duration::from_secs(60), "all consumed", || {
        c.metric_total("cdcmon_kafka_messages_total") >= N as f64
    });
    assert!(!c.finished(), "no sync before the stop");
    let result = c.stop_result();
    let done = committed(&brokers, "g-syncfail-stop", 3);
    assert!(
        done.values().all(|o| *o == 0),
        "nothing committed: {done:?}"
    );
    assert_eq!(faults.syncs.load(Ordering::SeqCst), 1, "no second sync");
    let err = result.expect_err("the failed shutdown sync is an error");
    assert!(format!("{err:#}").contains("os error 5"), "{err:#}");
}

// ---------------------------------------------------------------------------------------------
// Issue 10.7: whole messages, no doubled or torn line.

/// Messages of 12 events each; the event log's 2nd write is short (it stops inside a line) and
/// writes 3 to 6 fail with ENOSPC, on the periodic flush and on a full buffer alike. Every row
/// is in the file exactly once, every line parses, and every row is counted once.
#[test]
fn short_and_failed_writes_mid_message_neither_double_nor_tear_lines() {
    const MESSAGES: usize = 3_000;
    const ROWS: usize = 12;
    let cluster = mock_cluster(3);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.ndjson");
    produce_to(
        &brokers,
        common::TOPIC,
        &multi_event_messages(MESSAGES, ROWS, 3),
        LZ4,
    );
    let faults = Arc::new(Faults {
        short_write: Some(2),
        fail_writes: 3..7,
        ..Faults::default()
    });
    let c = RunningConsumer::start_on(
        &brokers,
        "g-shortwrite",
        &log,
        &["--commit-interval-ms", "100"],
        Arc::new(FaultyFs(faults.clone())),
    );
    wait_until(Duration::from_secs(90), "all consumed", || {
        c.metric_total("cdcmon_kafka_messages_total") >= MESSAGES as f64
    });
    std::thread::sleep(Duration::from_millis(300));
    let rows_counted = c.metric_total("cdc_events_total");
    let errors = c.metric_total("cdcmon_event_log_errors_total");
    c.stop_result().expect("graceful stop");
    assert!(faults.writes.load(Ordering::SeqCst) >= 7, "the faults ran");
    assert!(errors >= 4.0, "write errors are counted: {errors}");
    assert_eq!(rows_counted, (MESSAGES * ROWS) as f64);

    let lines = strict_lines(&log);
    let mut ids: Vec<u64> = lines
        .iter()
        .map(|l| l["cdc"]["keys"]["a"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), MESSAGES * ROWS, "no line twice, none missing");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), MESSAGES * ROWS);
    // A message's rows sit together, at its own offset.
    for chunk in lines.chunks(ROWS) {
        let first = position(&chunk[0]);
        assert!(chunk.iter().all(|l| position(l) == first));
    }
}

// ---------------------------------------------------------------------------------------------
// Issue 16.8: rotation on the real binary.

/// Small `--event-log-max-bytes`, a large keep: many rotations while a backlog is consumed.
/// Every (partition, offset) is in exactly one line across all files, every line parses, every
/// rotated file reached the limit, and numbering is logrotate's (`.1` newest): per partition,
/// offsets only grow from the highest-numbered file to the current one.
#[test]
fn many_rotations_under_load_keep_every_line_exactly_once() {
    const N: usize = 20_000;
    const MAX_BYTES: u64 = 32 * 1024;
    let cluster = mock_cluster(4);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.ndjson");
    let max = MAX_BYTES.to_string();
    let c = ChildConsumer::start(
        &brokers,
        "g-rotate",
        &log,
        &[
            "--event-log-max-bytes",
            &max,
            "--event-log-keep",
            "100000",
            "--commit-interval-ms",
            "50",
        ],
    );
    // Rotation is checked once per commit tick, so a single backlog drained within a few ticks
    // (a fast build, an idle machine) rotates only a few times. Produce in batches, each far
    // above max-bytes, with a few ticks after each: at least one rotation per batch whatever the
    // drain rate (CI once saw 10 files from one 20,000-message backlog).
    const BATCHES: usize = 12;
    let rows = canal_rows(N, 4);
    for (i, batch) in rows.chunks(N / BATCHES + 1).enumerate() {
        produce_to(&brokers, common::TOPIC, batch, LZ4);
        let done = ((i + 1) * (N / BATCHES + 1)).min(N);
        c.wait_messages(done as f64, Duration::from_secs(90));
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, status) = c.terminate();
    assert!(status.success(), "{status}");

    let files = log_files(&log);
    assert!(files.len() > BATCHES, "only {} files", files.len());
    let mut seen: Vec<(i64, i64)> = Vec::new();
    let mut last_in_partition: HashMap<i64, i64> = HashMap::new();
    for f in &files {
        if f != &log {
            let len = std::fs::metadata(f).unwrap().len();
            assert!(len >= MAX_BYTES, "{} rotated at {len} bytes", f.display());
        }
        for l in strict_lines(f) {
            let (p, o) = position(&l);
            let last = last_in_partition.entry(p).or_insert(-1);
            assert!(o > *last, "{}: {p}/{o} after {last}", f.display());
            *last = o;
            seen.push((p, o));
        }
    }
    let total = seen.len();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!((total, seen.len()), (N, N), "each message exactly once");
    eprintln!("rotation: {N} lines in {} files", files.len());
}

/// `--event-log-keep 3`: after many rotations exactly the current file and `.1`–`.3` are left,
/// and what they hold is the newest part of every partition, with no gap.
#[test]
fn retention_keeps_exactly_keep_rotated_files() {
    const N: usize = 6_000;
    const PARTITIONS: i32 = 3;
    let cluster = mock_cluster(PARTITIONS);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.ndjson");
    let c = ChildConsumer::start(
        &brokers,
        "g-keep",
        &log,
        &[
            "--event-log-max-bytes",
            "16384",
            "--event-log-keep",
            "3",
            "--commit-interval-ms",
            "50",
        ],
    );
    // Rotation is checked once per commit tick, so the number of rotations depends on how many
    // ticks the run spans. Produce in batches, each far above max-bytes, and let a few ticks
    // pass after each: at least one rotation per batch however fast the consumer drains (a
    // single backlog let a fast build read everything within four ticks, keeping every line).
    const BATCHES: usize = 10;
    let rows = canal_rows(N, PARTITIONS);
    for (i, batch) in rows.chunks(N / BATCHES).enumerate() {
        produce_to(&brokers, common::TOPIC, batch, LZ4);
        c.wait_messages(((i + 1) * (N / BATCHES)) as f64, Duration::from_secs(90));
        std::thread::sleep(Duration::from_millis(250));
    }
    let (_, status) = c.terminate();
    assert!(status.success(), "{status}");

    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("events.ndjson") && !n.ends_with(".stderr"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "events.ndjson",
            "events.ndjson.1",
            "events.ndjson.2",
            "events.ndjson.3"
        ]
    );
    let mut per_partition: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for f in log_files(&log) {
        for l in strict_lines(&f) {
            let (p, o) = position(&l);
            per_partition.entry(p).or_default().push(o);
        }
    }
    let per = (N as i32 / PARTITIONS) as i64;
    let kept: usize = per_partition.values().map(Vec::len).sum();
    assert!(
        kept < N,
        "the oldest files are gone ({kept} of {N} lines left)"
    );
    // The backlog is read a partition at a time, so one partition may lie wholly in the kept
    // files; what is kept of each must still be its newest lines, without a gap.
    for (p, offsets) in &per_partition {
        let first = offsets[0];
        let want: Vec<i64> = (first..per).collect();
        assert_eq!(offsets, &want, "partition {p}: the newest lines, no gap");
    }
    assert!(
        per_partition.values().any(|o| o[0] > 0),
        "some partition's oldest lines were deleted"
    );
}

/// Distinct (partition, offset) pairs in the complete lines of the log and its rotated files.
fn distinct_positions(log: &Path) -> usize {
    let mut seen = std::collections::HashSet::new();
    for f in log_files(log) {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let whole = text.rsplit_once('\n').map_or("", |(w, _)| w);
        for l in whole.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(l) {
                seen.insert(position(&v));
            }
        }
    }
    seen.len()
}

/// A tiny xorshift for kill timings (seed printed, so a failure can be replayed).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// `kill -9` at random moments of a run that rotates every commit tick, six times, then a run
/// to the end: every produced (partition, offset) is in some file (duplicates allowed, loss
/// not). A kill inside a `write(2)` can leave a torn last line: the restart terminates it, so
/// at most one unparsable fragment per kill, and every other line parses.
#[test]
fn kill_9_during_rotations_loses_nothing() {
    const N: usize = 30_000;
    const PARTITIONS: i32 = 6;
    const KILLS: usize = 6;
    let cluster = mock_cluster(PARTITIONS);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.ndjson");
    produce_to(&brokers, common::TOPIC, &canal_rows(N, PARTITIONS), LZ4);
    let args = [
        "--event-log-max-bytes",
        "8192",
        "--event-log-keep",
        "1000000",
        "--commit-interval-ms",
        "20",
        "--kafka-option",
        FAST_SESSION,
    ];
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill timing seed {seed}");
    let mut rng = Rng(seed);
    let mut mid_rotation = 0;
    for _ in 0..KILLS {
        let c = ChildConsumer::start(&brokers, "g-rotate-kill", &log, &args);
        // Once it is consuming (and so rotating), kill it at a random moment. A fast build may
        // have read the whole backlog in an earlier run: then there is nothing left to consume
        // and the kills stop (the final run below still checks every line).
        let mut drained = false;
        wait_until(Duration::from_secs(60), "consuming", || {
            drained = distinct_positions(&log) == N;
            drained
                || http_get(c.addr, "/metrics")
                    .ok()
                    .and_then(|(_, m)| metric(&m, "cdcmon_kafka_messages_total", &[]))
                    .unwrap_or(0.0)
                    >= 100.0
        });
        if drained {
            c.kill9();
            break;
        }
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        c.kill9();
        // A half-done rename chain shows as a missing current file or a gap in the numbers.
        let files = log_files(&log);
        let numbered = files.iter().filter(|f| **f != log).count();
        let max_n = files
            .first()
            .and_then(|f| f.extension())
            .and_then(|e| e.to_str()?.parse::<usize>().ok())
            .unwrap_or(0);
        if !log.exists() || numbered != max_n {
            mid_rotation += 1;
        }
    }
    let c = ChildConsumer::start(&brokers, "g-rotate-kill", &log, &args);
    let deadline = Instant::now() + Duration::from_secs(180);
    let (lines, fragments) = loop {
        let mut seen = std::collections::HashSet::new();
        let (mut lines, mut fragments) = (0, 0);
        for f in log_files(&log) {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            // The current file's last line may be mid-write right now: whole lines only.
            let whole = text.rsplit_once('\n').map_or("", |(w, _)| w);
            for l in whole.lines() {
                lines += 1;
                match serde_json::from_str::<serde_json::Value>(l) {
                    Ok(v) => {
                        seen.insert(position(&v));
                    }
                    Err(_) => fragments += 1,
                }
            }
        }
        if seen.len() == N {
            break (lines, fragments);
        }
        if Instant::now() > deadline {
            let per = (N as i32 / PARTITIONS) as i64;
            let missing: Vec<(i64, i64)> = (0..i64::from(PARTITIONS))
                .flat_map(|p| (0..per).map(move |o| (p, o)))
                .filter(|po| !seen.contains(po))
                .collect();
            panic!(
                "{} of {N} messages in the logs; missing {} e.g. {:?}; committed {:?}; \
                 consumed {:?}\n{}",
                seen.len(),
                missing.len(),
                &missing[..missing.len().min(20)],
                committed(&brokers, "g-rotate-kill", PARTITIONS),
                http_get(c.addr, "/metrics").ok().and_then(|(_, m)| metric(
                    &m,
                    "cdcmon_kafka_messages_total",
                    &[]
                )),
                c.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let (_, status) = c.terminate();
    assert!(status.success(), "{status}");
    assert!(
        fragments <= KILLS,
        "{fragments} unparsable lines after {KILLS} kills"
    );
    let files = log_files(&log).len();
    eprintln!(
        "kill -9 x{KILLS}: {lines} lines ({} duplicates, {fragments} torn fragments) in {files} \
         files; {mid_rotation} kills caught a rename chain half done",
        lines - N - fragments
    );
}

/// Rotating stdout is refused at start, with one readable line, before Kafka is contacted.
#[test]
fn rotating_stdout_is_refused_at_start() {
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cdcmon"))
        .args([
            "consume",
            "--event-log",
            "-",
            "--event-log-max-bytes",
            "1000",
        ])
        .args(["--listen", "127.0.0.1:0", "--brokers", "127.0.0.1:1"])
        .env_remove("CDCMON_EVENT_LOG_MAX_AGE_SECS")
        .env("CDCMON_LOG", "warn")
        .output()
        .expect("run cdcmon");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("cdcmon: ") && last.contains("stdout") && last.contains("rotate"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}
