//! `cargo bench --bench throughput`: cdcmon's consume path against raw ceilings, in one run.
//!
//! Per workload (canal-json with the TiDB extension, then open-protocol batches) it measures:
//! 1. `ceiling_per_sec`: a bare rdkafka `BaseConsumer` that only receives the messages;
//! 2. `events_per_sec`: the real `cdcmon consume` binary (child process) on the same topic and
//!    broker, until its `/metrics` accounts for every produced event; its peak RSS (`VmHWM`);
//!    and, on stderr, its CPU per event by thread (the ceiling's too);
//! 3. `pipeline_events_per_sec`: `Pipeline::process` (decode, count, event log to a file) fed
//!    from memory on one thread;
//! 4. `parse_only_per_sec`: `serde_json` parsing the same bytes into a `serde_json::Value`.
//!
//! Broker: librdkafka's in-process mock cluster, one broker, 64 partitions, producer
//! `compression.type=lz4`, so each partition's backlog stays far below the mock's 5 MiB
//! retention limit; every count is asserted, so a silent drop fails the run. Both consumers use
//! `fetch.wait.max.ms=100`. Rates are measured from the first to the last message seen, so the
//! ~3.2 s group join of the mock is excluded on both sides: the ceiling by its own clock, cdcmon
//! by the `event.created` stamps (its clock when it handled the message, millisecond resolution)
//! of the first and last lines of its event log. `/metrics` is scraped every
//! `CDCMON_BENCH_SCRAPE_MS` (default 200) only to see that the run is over: scraping every 20 ms
//! and timing by the scrapes, as until 2026-11-30, cost the child ~0.07 µs of CPU per event
//! (~4 %: gather, the process collector's `/proc` reads, hyper) and put up to 20 ms of poll
//! delay in the rate. Per-thread CPU on stderr: the child's is per event, the ceiling's per
//! Kafka message (the same for canal-json); threads that ended before the end are not in it.
//! Then the consume loop's wall time per event, split by its scheduler times (`schedstat`) into
//! running, waiting for a CPU, and off CPU (blocked or idle): a loop running ~100 % of the wall
//! time is what bounds the rate; much waiting means the machine was busy; much off-CPU time
//! means it waited on a lock, the disk or the fetcher.
//!
//! Env: `CDCMON_BENCH_MESSAGES` (default 1,000,000 canal-json messages; the open-protocol run
//! carries the same number of events), `CDCMON_BENCH_PARTITIONS` (default 64),
//! `CDCMON_BENCH_ONLY` (`canal` or `open` to run one workload).
//!
//! The last line printed is the canal-json run's summary (`docs/performance.md`). Its last two
//! fields are CPU time, steadier than wall time on a shared machine: `cpu_us_per_event` is the
//! cdcmon child's user + sys CPU (`/proc/<pid>/stat`, from its start to the last event) per
//! event, `cpu_us_per_msg` the bare drain's (its polling thread plus the librdkafka threads it
//! started, `/proc/self/task/<tid>/stat`) per Kafka message. Appended after them: the
//! `decode_threads` of the run (`CDCMON_DECODE_THREADS`, which the cdcmon child reads too, or
//! the default 1), step 3's CPU µs per event (`pipeline_cpu_us_per_event`, the bench process's
//! `/proc/self/stat`), and step 3 as the consume loop runs it with `pipeline_decode_threads`
//! (`decode_threads`, at least 2) decode threads (`pipeline_threads_events_per_sec`,
//! `pipeline_threads_cpu_us_per_event`: batches of 256 decoded in parallel, handled in order),
//! then how long that loop thread waited for the pool's workers at the end of a batch
//! (`pipeline_threads_wait_us_per_batch` on average, `pipeline_threads_wait_us_max` worst) and
//! the share of messages the workers decoded (`pipeline_threads_offloaded`, 0 to 1).

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cdcmon::eventlog::{EventLog, KafkaPosition, LogOptions};
use cdcmon::metrics::Metrics;
use cdcmon::pipeline::{self, Pipeline, Sink};
use cdcmon::protocol::{Compression, Decoder, ProtocolChoice};
use common::{ChildConsumer, Msg, http_get, metric, metric_sum, produce_to};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;

const FETCH_WAIT_MS: &str = "100";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

// The demo's generator helpers (`src/demo/`): the same xorshift64* and TSO layout this workload
// always used, and open-protocol's batch framing, so each exists once. The workloads below stay
// as they were (three tables, fixed clock) so the figures in docs/performance.md stay comparable.
use cdcmon::demo::encode::open_protocol::{frame_key, frame_value};
use cdcmon::demo::generator::{Rng, tso};

/// A generated workload and what cdcmon must count for it.
struct Workload {
    name: &'static str,
    msgs: Vec<Msg>,
    rows: u64,
    ddl: u64,
    watermarks: u64,
}

impl Workload {
    fn events(&self) -> u64 {
        self.rows + self.ddl + self.watermarks
    }
    fn bytes(&self) -> usize {
        self.msgs
            .iter()
            .map(|m| m.key.as_ref().map_or(0, Vec::len) + m.value.as_ref().map_or(0, Vec::len))
            .sum()
    }
}

const BASE_MS: u64 = 1_764_000_000_000;
/// Data messages between two watermark broadcasts (TiCDC sends one to every partition).
const WATERMARK_EVERY: usize = 10_000;

/// One row of one of three tables as canal-json column maps: (table, sqlType, mysqlType, data).
fn canal_row(rng: &mut Rng, id: u64) -> (&'static str, String, String, String) {
    match rng.below(3) {
        0 => (
            "users",
            r#"{"id":-5,"name":12,"email":12,"password_hash":12,"created_at":93}"#.into(),
            r#"{"id":"bigint","name":"varchar","email":"varchar","password_hash":"varchar","created_at":"timestamp"}"#.into(),
            format!(
                r#"{{"id":"{id}","name":"user {id}","email":"user{id}@example.com","password_hash":"$2y$10${:016x}","created_at":"2026-11-24 11:{:02}:{:02}"}}"#,
                rng.next_u64(),
                rng.below(60),
                rng.below(60)
            ),
        ),
        1 => (
            "orders",
            r#"{"id":-5,"user_id":-5,"amount":3,"status":12,"created_at":93}"#.into(),
            r#"{"id":"bigint","user_id":"bigint","amount":"decimal(12,2)","status":"varchar(16)","created_at":"timestamp"}"#.into(),
            format!(
                r#"{{"id":"{id}","user_id":"{}","amount":"{}.{:02}","status":"{}","created_at":"2026-11-24 11:{:02}:{:02}"}}"#,
                rng.below(100_000),
                rng.below(1000),
                rng.below(100),
                ["new", "paid", "shipped", "done"][rng.below(4) as usize],
                rng.below(60),
                rng.below(60)
            ),
        ),
        _ => (
            "payments",
            r#"{"id":-5,"order_id":-5,"amount":3,"method":12,"paid_at":93}"#.into(),
            r#"{"id":"bigint","order_id":"bigint","amount":"decimal(12,2)","method":"varchar(16)","paid_at":"timestamp"}"#.into(),
            format!(
                r#"{{"id":"{id}","order_id":"{}","amount":"{}.{:02}","method":"{}","paid_at":"2026-11-24 11:{:02}:{:02}"}}"#,
                rng.below(1_000_000),
                rng.below(1000),
                rng.below(100),
                ["card", "sepa", "paypal"][rng.below(3) as usize],
                rng.below(60),
                rng.below(60)
            ),
        ),
    }
}

/// canal-json with the TiDB extension: ~500 B rows over three tables (50 % insert, 35 % update,
/// 14 % delete), 1 % DDL, and a watermark to every partition every `WATERMARK_EVERY` messages.
fn canal_workload(n: usize, partitions: i32) -> Workload {
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    let mut w = Workload {
        name: "canal-json",
        msgs: Vec::with_capacity(n),
        rows: 0,
        ddl: 0,
        watermarks: 0,
    };
    let mut i = 0u64;
    while w.msgs.len() < n {
        i += 1;
        let ms = BASE_MS + i / 10;
        let commit_ts = tso(ms, i);
        if i as usize % WATERMARK_EVERY == 0 && w.msgs.len() + partitions as usize <= n {
            for p in 0..partitions {
                let v = format!(
                    r#"{{"id":0,"database":"","table":"","pkNames":null,"isDdl":false,"type":"TIDB_WATERMARK","es":{ms},"ts":{},"sql":"","sqlType":null,"mysqlType":null,"data":null,"old":null,"_tidb":{{"watermarkTs":{commit_ts}}}}}"#,
                    ms + 3
                );
                w.msgs.push(Msg::value(p, v.into_bytes()));
                w.watermarks += 1;
            }
            continue;
        }
        let id = rng.below(1_000_000);
        let partition = (rng.next_u64() % partitions as u64) as i32;
        let roll = rng.below(100);
        let (table, sql_type, mysql_type, data) = canal_row(&mut rng, id);
        let v = if roll == 0 {
            w.ddl += 1;
            format!(
                r#"{{"id":0,"database":"app","table":"{table}","pkNames":null,"isDdl":true,"type":"ALTER","es":{ms},"ts":{},"sql":"ALTER TABLE `app`.`{table}` ADD COLUMN `note_{i}` varchar(64) NULL","sqlType":null,"mysqlType":null,"data":null,"old":null,"_tidb":{{"commitTs":{commit_ts}}}}}"#,
                ms + 3
            )
        } else {
            w.rows += 1;
            let (ty, old) = match roll {
                1..=50 => ("INSERT", "null".to_owned()),
                51..=85 => {
                    let (_, _, _, old) = canal_row(&mut rng, id);
                    ("UPDATE", format!("[{old}]"))
                }
                _ => ("DELETE", "null".to_owned()),
            };
            // Member order as TiCDC's encoder writes a row: `old` before `data` (pingcap/tiflow
            // pkg/sink/codec/canal/canal_json_row_event_encoder.go, `newJSONMessageForDML`:
            // `"old":null,"data":` for an insert, `"old":[..],"data":[..]` for an update). Until
            // 2026-11-30 this wrote `data` first, which no TiCDC writes (docs/performance.md).
            format!(
                r#"{{"id":0,"database":"app","table":"{table}","pkNames":["id"],"isDdl":false,"type":"{ty}","es":{ms},"ts":{},"sql":"","sqlType":{sql_type},"mysqlType":{mysql_type},"old":{old},"data":[{data}],"_tidb":{{"commitTs":{commit_ts}}}}}"#,
                ms + 3
            )
        };
        // DDL on partition 0: cdcmon counts DDL from there only (TiCDC sends canal-json DDL to
        // partition 0 alone; broadcast copies elsewhere are skipped, src/watermark.rs).
        let partition = if roll == 0 { 0 } else { partition };
        w.msgs.push(Msg::value(partition, v.into_bytes()));
    }
    w
}

fn open_columns(rng: &mut Rng, id: u64) -> String {
    format!(
        r#"{{"id":{{"t":8,"h":true,"f":11,"v":{id}}},"user_id":{{"t":8,"f":1,"v":{}}},"amount":{{"t":246,"f":1,"v":"{}.{:02}"}},"status":{{"t":15,"f":0,"v":"{}"}},"created_at":{{"t":7,"f":1,"v":"2026-11-24 11:{:02}:{:02}"}}}}"#,
        rng.below(100_000),
        rng.below(1000),
        rng.below(100),
        ["new", "paid", "shipped", "done"][rng.below(4) as usize],
        rng.below(60),
        rng.below(60)
    )
}

/// open-protocol: row events batched 16 per Kafka message (TiCDC's default batch size) over
/// three tables, 1 % DDL (alone), a resolved event to every partition every `WATERMARK_EVERY`
/// events. `n_events` events in total.
fn open_workload(n_events: usize, partitions: i32) -> Workload {
    const BATCH: usize = 16;
    let mut rng = Rng::new(0x2545_F491_4F6C_DD1D);
    let mut w = Workload {
        name: "open-protocol",
        msgs: Vec::new(),
        rows: 0,
        ddl: 0,
        watermarks: 0,
    };
    let tables = ["users", "orders", "payments"];
    let mut i = 0u64;
    let mut since_watermark = 0usize;
    while (w.events() as usize) < n_events {
        i += 1;
        let ms = BASE_MS + i;
        let left = n_events - w.events() as usize;
        if since_watermark >= WATERMARK_EVERY && left >= partitions as usize {
            since_watermark = 0;
            for p in 0..partitions {
                let k = frame_key(&[format!(r#"{{"ts":{},"t":3}}"#, tso(ms, 0))]);
                w.msgs.push(Msg::keyed(p, k, vec![0u8; 8]));
                w.watermarks += 1;
            }
            continue;
        }
        let table = tables[rng.below(3) as usize];
        let partition = (rng.next_u64() % partitions as u64) as i32;
        if rng.below(100) == 0 || left == 1 {
            let k = frame_key(&[format!(
                r#"{{"ts":{},"scm":"app","tbl":"{table}","t":2}}"#,
                tso(ms, 1)
            )]);
            let v = frame_value(&[format!(
                r#"{{"q":"ALTER TABLE `app`.`{table}` ADD COLUMN `note_{i}` varchar(64) NULL","t":5}}"#
            )]);
            // Partition 0 only: the copies TiCDC broadcasts to the other partitions are skipped
            // by cdcmon (src/watermark.rs), so the workload's DDL count stays one per DDL.
            w.msgs.push(Msg::keyed(0, k, v));
            w.ddl += 1;
            since_watermark += 1;
            continue;
        }
        let batch = BATCH.min(left);
        let mut keys = Vec::with_capacity(batch);
        let mut values = Vec::with_capacity(batch);
        for j in 0..batch as u64 {
            let id = rng.below(1_000_000);
            keys.push(format!(
                r#"{{"ts":{},"scm":"app","tbl":"{table}","rid":{id},"t":1}}"#,
                tso(ms, j)
            ));
            let cols = open_columns(&mut rng, id);
            values.push(match rng.below(100) {
                0..=49 => format!(r#"{{"u":{cols}}}"#),
                50..=85 => format!(r#"{{"u":{cols},"p":{}}}"#, open_columns(&mut rng, id)),
                _ => format!(r#"{{"d":{cols}}}"#),
            });
        }
        w.msgs.push(Msg::keyed(
            partition,
            frame_key(&keys),
            frame_value(&values),
        ));
        w.rows += batch as u64;
        since_watermark += batch;
    }
    w
}

/// User + system CPU of a process or thread in µs: fields 14 and 15 of a `/proc/.../stat` file
/// (`proc(5)`), counted after the parenthesised command name, which may contain spaces.
fn stat_cpu_us(stat_path: &str) -> Option<f64> {
    let text = std::fs::read_to_string(stat_path).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) * 1e6 / ticks)
}

/// One thread of a process: its id, its name (`comm`) and its CPU µs so far.
struct ThreadCpu {
    tid: String,
    name: String,
    cpu_us: f64,
}

/// The threads under `task_dir` (`/proc/self/task`, `/proc/<pid>/task`); a thread that ends
/// while they are read is left out.
fn threads_cpu(task_dir: &str) -> Vec<ThreadCpu> {
    let Ok(tasks) = std::fs::read_dir(task_dir) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let dir = task.path();
            Some(ThreadCpu {
                tid: task.file_name().into_string().ok()?,
                name: std::fs::read_to_string(dir.join("comm"))
                    .ok()?
                    .trim()
                    .to_owned(),
                cpu_us: stat_cpu_us(&dir.join("stat").to_string_lossy())?,
            })
        })
        .collect()
}

/// A thread's scheduler time so far (`/proc/<pid>/task/<tid>/schedstat`, `sched-stats.rst` of
/// the kernel docs): on a CPU, and runnable but waiting for one; both in µs.
struct SchedTime {
    running_us: f64,
    waiting_us: f64,
}

fn sched_time(schedstat_path: &str) -> Option<SchedTime> {
    let text = std::fs::read_to_string(schedstat_path).ok()?;
    let mut fields = text.split_whitespace();
    let running_ns: f64 = fields.next()?.parse().ok()?;
    let waiting_ns: f64 = fields.next()?.parse().ok()?;
    Some(SchedTime {
        running_us: running_ns / 1e3,
        waiting_us: waiting_ns / 1e3,
    })
}

/// Where a thread's wall time per event went during a run of `wall_us_per_event`: running,
/// waiting for a CPU (the machine was busy), and the rest, off CPU (blocked on a lock or I/O, or
/// idle with nothing to do). `sched` covers the run plus up to a scrape interval before and
/// after it. The consume loop does little then (the last batch, handled after its stamp; the
/// commit ticks; librdkafka's statistics, parsed once a second; the consumer queue's polls), so
/// it is read as the run's: a few ms against a 1 M-message run of ~1 s, which shows as a little
/// more running and a little less off CPU than there was.
fn wall_breakdown(sched: &SchedTime, events: f64, wall_us_per_event: f64) -> String {
    let running = sched.running_us / events;
    let waiting = sched.waiting_us / events;
    let off_cpu = wall_us_per_event - running - waiting;
    if off_cpu < 0.0 {
        // The work outside the span, and the stamps' 1 ms resolution, are most of a run of a
        // few ms (the test mode's).
        return format!(
            "wall {wall_us_per_event:.3}, running {running:.3}, waiting for a CPU {waiting:.3} \
             (a run this short cannot be split: the loop's work outside it weighs too much)"
        );
    }
    format!(
        "wall {wall_us_per_event:.3} = running {running:.3} + waiting for a CPU {waiting:.3} \
         + off CPU {off_cpu:.3}"
    )
}

/// `name µs, …`: the threads' CPU divided by `per` (events or messages), summed by thread name,
/// largest first.
fn cpu_by_name<'t>(threads: impl IntoIterator<Item = &'t ThreadCpu>, per: f64) -> String {
    let mut by_name: Vec<(&str, f64)> = Vec::new();
    for t in threads {
        match by_name.iter_mut().find(|(n, _)| *n == t.name) {
            Some((_, total)) => *total += t.cpu_us,
            None => by_name.push((&t.name, t.cpu_us)),
        }
    }
    by_name.sort_by(|a, b| b.1.total_cmp(&a.1));
    by_name
        .iter()
        .map(|(name, us)| format!("{name} {:.3}", us / per))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Step 1: a bare consumer that only receives: messages/s expressed as events/s of the workload,
/// and its CPU µs per message (this thread plus the threads the consumer started; the mock
/// broker's threads existed before and are left out).
fn ceiling(brokers: &str, topic: &str, w: &Workload) -> (f64, f64) {
    let before: std::collections::HashSet<String> = threads_cpu("/proc/self/task")
        .into_iter()
        .map(|t| t.tid)
        .collect();
    let self_before = stat_cpu_us("/proc/thread-self/stat").expect("thread-self stat");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bench-ceiling-{topic}"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", FETCH_WAIT_MS)
        .create()
        .expect("ceiling consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let want = w.msgs.len();
    let (mut got, mut bytes) = (0usize, 0usize);
    let mut first = None;
    let mut last_progress = Instant::now();
    while got < want {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                got += 1;
                bytes += m.payload_len();
                last_progress = Instant::now();
            }
            Some(Err(e)) => eprintln!("ceiling consumer error: {e}"),
            None => assert!(
                last_progress.elapsed() < Duration::from_secs(60),
                "ceiling consumer stalled at {got}/{want} messages"
            ),
        }
    }
    let elapsed = first.expect("first message").elapsed();
    let self_cpu = stat_cpu_us("/proc/thread-self/stat").expect("thread-self stat") - self_before;
    let started: Vec<ThreadCpu> = threads_cpu("/proc/self/task")
        .into_iter()
        .filter(|t| !before.contains(&t.tid))
        .collect();
    let started_cpu: f64 = started.iter().map(|t| t.cpu_us).sum();
    eprintln!(
        "  ceiling CPU µs per message by thread: polling {:.3}, {}",
        self_cpu / want as f64,
        cpu_by_name(&started, want as f64)
    );
    black_box(bytes);
    consumer.unsubscribe();
    drop(consumer);
    (
        w.events() as f64 / elapsed.as_secs_f64(),
        (self_cpu + started_cpu) / want as f64,
    )
}

/// Step 2: the real binary. Returns (events/s, peak RSS MiB, CPU µs per event).
fn full_consume(
    brokers: &str,
    topic: &str,
    w: &Workload,
    dir: &std::path::Path,
) -> (f64, f64, f64) {
    // CDCMON_BENCH_LOG_DIR: where the child writes its event log (default: a temp dir on disk).
    let log_dir = std::env::var("CDCMON_BENCH_LOG_DIR").map_or(dir.to_owned(), Into::into);
    let log = log_dir.join(format!("{topic}.ndjson"));
    let bin = std::env::var("CDCMON_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_cdcmon").to_owned());
    let child = ChildConsumer::start_bin(
        &bin,
        brokers,
        &format!("bench-cdcmon-{topic}"),
        &log,
        &[
            "--topic",
            topic,
            "--commit-interval-ms",
            "1000",
            "--kafka-option",
            &format!("fetch.wait.max.ms={FETCH_WAIT_MS}"),
        ],
    );
    // CDCMON_BENCH_PERF=<file>: sample the child with `perf record` (cpu-clock) while it runs.
    let perf = std::env::var("CDCMON_BENCH_PERF").ok().map(|out| {
        std::process::Command::new("perf")
            .args([
                "record",
                "-e",
                "cpu-clock",
                "-F",
                "999",
                "-g",
                "-o",
                &out,
                "-p",
            ])
            .arg(child.pid().to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("perf record")
    });
    let want = w.events() as f64;
    // The scrapes only tell when the run is over; the rate comes from the event log's own
    // stamps (below). A scrape costs the child CPU (gather, the process collector's /proc reads,
    // hyper): at the old 20 ms interval its HTTP thread took ~0.09 µs per event, against ~0.02
    // at 200 ms (docs/performance.md, "Issue 11, session 14").
    let scrape = Duration::from_millis(env_usize("CDCMON_BENCH_SCRAPE_MS", 200) as u64);
    let mut last_progress = (Instant::now(), 0.0);
    // The last scrape that saw no message handled: the run started after it. Together with the
    // scrape that sees the end, it bounds the run, a check on the child's wall-clock stamps.
    let mut none_yet = Instant::now();
    // The consume loop runs on the child's main thread (tid = pid). Its scheduler times at that
    // scrape and at the end bound what it did in the run, without the start-up before it.
    let loop_schedstat = format!("/proc/{0}/task/{0}/schedstat", child.pid());
    let mut loop_before_run = sched_time(&loop_schedstat);
    let run_bound = loop {
        std::thread::sleep(scrape);
        let scraped_at = Instant::now();
        let Ok((200, m)) = http_get(child.addr, "/metrics") else {
            continue;
        };
        let messages = metric(&m, "cdcmon_kafka_messages_total", &[]).unwrap_or(0.0);
        if messages == 0.0 {
            none_yet = scraped_at;
            loop_before_run = sched_time(&loop_schedstat);
        }
        let counted = metric_sum(&m, "cdc_events_total", &[])
            + metric_sum(&m, "cdc_ddl_events_total", &[])
            + metric(&m, "cdcmon_watermarks_total", &[]).unwrap_or(0.0);
        if counted >= want {
            assert_eq!(counted, want, "over-counted");
            assert_eq!(messages, w.msgs.len() as f64, "messages");
            assert_eq!(metric_sum(&m, "cdc_decode_errors_total", &[]), 0.0);
            assert_eq!(metric_sum(&m, "cdc_events_total", &[]), w.rows as f64);
            assert_eq!(metric_sum(&m, "cdc_ddl_events_total", &[]), w.ddl as f64);
            break none_yet.elapsed();
        }
        if counted > last_progress.1 {
            last_progress = (Instant::now(), counted);
        }
        assert!(
            last_progress.0.elapsed() < Duration::from_secs(60),
            "cdcmon stalled at {counted}/{want} events; stderr:\n{}",
            child.stderr()
        );
    };
    let peak_kib = child.peak_rss_kib().expect("VmHWM");
    let cpu_us = stat_cpu_us(&format!("/proc/{}/stat", child.pid())).expect("child stat");
    // Where the child's CPU went, by thread name: the consume loop is the `cdcmon` thread.
    let child_threads = threads_cpu(&format!("/proc/{}/task", child.pid()));
    eprintln!(
        "  cdcmon CPU µs per event by thread: {}",
        cpu_by_name(&child_threads, want)
    );
    // Whether the loop bounds the rate shows in where its wall time went, printed below once the
    // run's span is known.
    let loop_in_run = sched_time(&loop_schedstat)
        .zip(loop_before_run)
        .map(|(end, start)| SchedTime {
            running_us: end.running_us - start.running_us,
            waiting_us: end.waiting_us - start.waiting_us,
        })
        // All zeros: the kernel does not keep these times (`fs/proc/base.c` prints `0 0 0`
        // without sched_info), or the pid is not the loop's (a wrapper that did not `exec`).
        .filter(|sched| sched.running_us > 0.0);
    if let Some(mut perf) = perf {
        common::signal(perf.id(), libc::SIGINT);
        let _ = perf.wait();
    }
    let (stop, status) = child.terminate();
    assert!(status.success(), "cdcmon exit {status}");
    eprintln!("  cdcmon stopped in {stop:?}");
    let span = log_span(&log);
    assert_eq!(span.lines, w.rows + w.ddl, "event-log lines");
    let _ = std::fs::remove_file(&log);
    // From the first to the last logged event, as the ceiling counts from its first to its last
    // message. A stamp has millisecond resolution; a run under 1 ms counts as 1 ms. The stamps
    // are the child's wall clock: a clock step during the run would fail this check rather than
    // print a wrong rate.
    let elapsed_ms = span.last_created_ms - span.first_created_ms;
    assert!(
        elapsed_ms >= 0 && elapsed_ms as f64 <= run_bound.as_secs_f64() * 1000.0 + 2.0,
        "the event log's stamps span {elapsed_ms} ms, outside 0..={run_bound:?} the scrapes \
         bound the run to: did the clock step?"
    );
    let elapsed_ms = elapsed_ms.max(1);
    match loop_in_run {
        Some(sched) => eprintln!(
            "  cdcmon consume loop µs per event: {}",
            wall_breakdown(&sched, want, elapsed_ms as f64 * 1000.0 / want)
        ),
        None => eprintln!(
            "  cdcmon consume loop: no scheduler times (no /proc/<pid>/task/<pid>/schedstat, \
             all zeros without the kernel's sched_info, or CDCMON_BENCH_BIN is a wrapper that \
             does not exec)"
        ),
    }
    (
        want * 1000.0 / elapsed_ms as f64,
        peak_kib as f64 / 1024.0,
        cpu_us / want,
    )
}

/// What the child's event log says of the run: its line count and the `event.created` stamps
/// (the child's clock when it handled the message, read once per received batch) of its first
/// and last line, in unix milliseconds.
struct LogSpan {
    lines: u64,
    first_created_ms: i64,
    last_created_ms: i64,
}

fn log_span(path: &std::path::Path) -> LogSpan {
    use std::io::{Read, Seek, SeekFrom};
    // Read in 1 MiB chunks (the log of a 1 M-message run is ~400 MB): count the newlines, keep
    // the first line, then read the last line from the file's tail.
    let mut f = std::fs::File::open(path).expect("event log");
    let mut buf = vec![0u8; 1 << 20];
    let (mut lines, mut first) = (0u64, Vec::new());
    loop {
        let k = f.read(&mut buf).expect("read event log");
        if k == 0 {
            break;
        }
        if lines == 0 {
            let end = buf[..k].iter().position(|&b| b == b'\n').unwrap_or(k);
            first.extend_from_slice(&buf[..end]);
        }
        lines += buf[..k].iter().filter(|&&b| b == b'\n').count() as u64;
    }
    let len = f.metadata().expect("event log metadata").len();
    let tail_at = len.saturating_sub(64 * 1024);
    f.seek(SeekFrom::Start(tail_at)).expect("seek event log");
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).expect("read event log tail");
    let last = tail
        .strip_suffix(b"\n")
        .unwrap_or(&tail)
        .rsplit(|&b| b == b'\n')
        .next()
        .expect("a last line");
    LogSpan {
        lines,
        first_created_ms: created_ms(&first),
        last_created_ms: created_ms(last),
    }
}

/// The `event.created` stamp of one event-log line (`YYYY-MM-DDTHH:MM:SS.mmmZ`), unix ms.
fn created_ms(line: &[u8]) -> i64 {
    const KEY: &[u8] = b"\"created\":\"";
    let at = line
        .windows(KEY.len())
        .position(|w| w == KEY)
        .expect("event.created in an event-log line")
        + KEY.len();
    let stamp = std::str::from_utf8(&line[at..at + 24]).expect("ASCII stamp");
    chrono::DateTime::parse_from_rfc3339(stamp)
        .unwrap_or_else(|e| panic!("event.created {stamp:?}: {e}"))
        .timestamp_millis()
}

/// Step 3: `Pipeline::process` from memory, one thread, event log to a file (flushed and
/// synced at the end, inside the timing).
fn pipeline_only(topic: &str, w: &Workload, dir: &std::path::Path) -> f64 {
    pipeline_batches(topic, w, dir, 1).events_per_sec
}

/// Step 3 as `cdcmon consume --decode-threads <threads>` runs it: batches of
/// `decode_batch::MAX_MESSAGES` decoded on `threads` threads, then handled in order on this
/// one (`threads` 1: `Pipeline::process` per message, as before).
fn pipeline_batches(
    topic: &str,
    w: &Workload,
    dir: &std::path::Path,
    threads: usize,
) -> PipelineRun {
    let path = dir.join(format!("{topic}-pipeline.ndjson"));
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let log = EventLog::open(
        &path.display().to_string(),
        LogOptions::new(false, &["password".into(), "secret".into(), "token".into()]),
    )
    .expect("event log");
    let sink = Arc::new(Mutex::new(Sink::new(log)));
    let mut p = Pipeline::new(
        Decoder::new(ProtocolChoice::Auto, Compression::None),
        metrics.clone(),
        sink.clone(),
    );
    let mut offsets = vec![0i64; 1024];
    let mut waits = None;
    let cpu_before = stat_cpu_us("/proc/self/stat").expect("self stat");
    let started = Instant::now();
    let mut events = 0usize;
    let mut next_pos = |partition: i32| {
        let offset = &mut offsets[partition as usize];
        *offset += 1;
        KafkaPosition {
            topic,
            partition,
            offset: *offset - 1,
        }
    };
    let mut count = |outcome: std::io::Result<pipeline::Outcome>| match outcome {
        Ok(pipeline::Outcome::Processed { events: e }) => events += e,
        other => panic!("pipeline: {other:?}"),
    };
    if threads <= 1 {
        for m in &w.msgs {
            let pos = next_pos(m.partition);
            count(p.process(
                &pos,
                m.key.as_deref(),
                m.value.as_deref(),
                pipeline::now_ms(),
            ));
        }
    } else {
        let pool = cdcmon::decode_batch::DecodePool::new(threads).expect("decode pool");
        for chunk in w.msgs.chunks(cdcmon::decode_batch::MAX_MESSAGES) {
            let payloads: Vec<cdcmon::decode_batch::Payload<'_>> = chunk
                .iter()
                .map(|m| (m.key.as_deref(), m.value.as_deref()))
                .collect();
            let decoded = pool.decode(p.decoder(), &payloads);
            for (m, pre) in chunk.iter().zip(decoded) {
                let pos = next_pos(m.partition);
                count(match pre {
                    Some(pre) => p.handle(&pos, m.key.as_deref(), pre, pipeline::now_ms()),
                    None => p.process(
                        &pos,
                        m.key.as_deref(),
                        m.value.as_deref(),
                        pipeline::now_ms(),
                    ),
                });
            }
        }
        waits = Some(pool.waits());
    }
    pipeline::lock(&sink)
        .event_log
        .flush_durable()
        .expect("flush");
    let elapsed = started.elapsed();
    let cpu = stat_cpu_us("/proc/self/stat").expect("self stat") - cpu_before;
    assert_eq!(events as u64, w.events());
    let _ = std::fs::remove_file(&path);
    PipelineRun {
        events_per_sec: w.events() as f64 / elapsed.as_secs_f64(),
        cpu_us_per_event: cpu / w.events() as f64,
        waits,
    }
}

/// One in-memory pipeline run.
struct PipelineRun {
    events_per_sec: f64,
    /// The process's CPU µs per event (`/proc/self/stat`: every thread, the idle mock
    /// broker's too).
    cpu_us_per_event: f64,
    /// With decode threads: the loop thread's waits for workers at the end of batches.
    waits: Option<cdcmon::decode_batch::PoolWaits>,
}

/// Step 4: `serde_json::Value` parse of the same bytes (open-protocol: every framed key and
/// value JSON), one thread; in events/s of the workload.
fn parse_only(w: &Workload) -> f64 {
    fn entries(mut b: &[u8], skip_version: bool, mut f: impl FnMut(&[u8])) {
        if skip_version {
            b = &b[8..];
        }
        while b.len() >= 8 {
            let len = u64::from_be_bytes(b[..8].try_into().expect("8 bytes")) as usize;
            f(&b[8..8 + len]);
            b = &b[8 + len..];
        }
    }
    let parse = |b: &[u8]| {
        if !b.is_empty() {
            let v: serde_json::Value = serde_json::from_slice(b).expect("parse");
            black_box(v);
        }
    };
    let open = w.name == "open-protocol";
    let started = Instant::now();
    for m in &w.msgs {
        let value = m.value.as_deref().unwrap_or_default();
        if open {
            entries(m.key.as_deref().unwrap_or_default(), true, parse);
            entries(value, false, parse);
        } else {
            parse(value);
        }
    }
    w.events() as f64 / started.elapsed().as_secs_f64()
}

fn run(
    cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
    w: &Workload,
) -> String {
    // CDCMON_BENCH_PIPELINE_ONLY=1: only steps 3 and 4 (for profiling the in-memory path).
    if std::env::var_os("CDCMON_BENCH_PIPELINE_ONLY").is_some() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pipeline = pipeline_only("bench", w, dir.path());
        let parse = parse_only(w);
        return format!(
            "pipeline_events_per_sec={pipeline:.0} parse_only_per_sec={parse:.0} pipeline_ratio={:.3}",
            pipeline / parse
        );
    }
    let partitions = env_usize("CDCMON_BENCH_PARTITIONS", 64) as i32;
    let topic = format!("bench_{}", w.name.replace('-', "_"));
    let brokers = cluster.bootstrap_servers();
    cluster
        .create_topic(&topic, partitions, 1)
        .expect("create topic");
    let dir = tempfile::tempdir().expect("tempdir");
    eprintln!(
        "[{}] {} messages, {} events ({} rows, {} DDL, {} watermarks), {:.1} MiB, {partitions} partitions",
        w.name,
        w.msgs.len(),
        w.events(),
        w.rows,
        w.ddl,
        w.watermarks,
        w.bytes() as f64 / 1048576.0
    );
    let t = Instant::now();
    produce_to(
        &brokers,
        &topic,
        &w.msgs,
        &[
            ("compression.type", "lz4"),
            ("linger.ms", "50"),
            ("batch.num.messages", "10000"),
            ("batch.size", "1000000"),
            ("queue.buffering.max.messages", "1000000"),
            ("queue.buffering.max.kbytes", "1048576"),
        ],
    );
    eprintln!("  produced in {:.1?}", t.elapsed());
    let (ceiling, drain_cpu) = ceiling(&brokers, &topic, w);
    eprintln!("  ceiling: {ceiling:.0} events/s, {drain_cpu:.3} CPU µs per message");
    let (events, rss, cpu) = full_consume(&brokers, &topic, w, dir.path());
    eprintln!(
        "  cdcmon consume: {events:.0} events/s, peak RSS {rss:.1} MiB, {cpu:.3} CPU µs per event"
    );
    let serial = pipeline_batches(&topic, w, dir.path(), 1);
    let (pipeline, pipeline_cpu) = (serial.events_per_sec, serial.cpu_us_per_event);
    eprintln!("  pipeline: {pipeline:.0} events/s, {pipeline_cpu:.3} CPU µs per event");
    // The consumer's --decode-threads (its env var reaches the child above too); the batched
    // pipeline runs with at least 2 so it is always measured (and, under `cargo test`, tested).
    let threads: usize = std::env::var("CDCMON_DECODE_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(cdcmon::decode_batch::DEFAULT_THREADS);
    let pipeline_threads = threads.max(2);
    let run = pipeline_batches(&topic, w, dir.path(), pipeline_threads);
    let (batched, batched_cpu) = (run.events_per_sec, run.cpu_us_per_event);
    // The loop thread's wait for pool workers at the end of a batch: average and worst, µs.
    // And the share of messages the workers decoded.
    let (wait_avg, wait_max, offloaded) = run.waits.map_or((0.0, 0.0, 0.0), |pw| {
        (
            pw.total.as_secs_f64() * 1e6 / pw.batches.max(1) as f64,
            pw.max.as_secs_f64() * 1e6,
            pw.offloaded as f64 / w.msgs.len().max(1) as f64,
        )
    });
    eprintln!(
        "  pipeline, {pipeline_threads} decode threads: {batched:.0} events/s, {batched_cpu:.3} CPU µs per event, loop waits for workers {wait_avg:.1} µs per batch (worst {wait_max:.0} µs), workers decoded {:.1} % of the messages",
        offloaded * 100.0
    );
    let parse = parse_only(w);
    eprintln!("  parse only: {parse:.0} events/s");
    format!(
        "events_per_sec={events:.0} ceiling_per_sec={ceiling:.0} ratio={:.3} pipeline_events_per_sec={pipeline:.0} parse_only_per_sec={parse:.0} pipeline_ratio={:.3} peak_rss_mib={rss:.1} cpu_us_per_event={cpu:.3} cpu_us_per_msg={drain_cpu:.3} decode_threads={threads} pipeline_cpu_us_per_event={pipeline_cpu:.3} pipeline_decode_threads={pipeline_threads} pipeline_threads_events_per_sec={batched:.0} pipeline_threads_cpu_us_per_event={batched_cpu:.3} pipeline_threads_wait_us_per_batch={wait_avg:.1} pipeline_threads_wait_us_max={wait_max:.0} pipeline_threads_offloaded={offloaded:.3}",
        events / ceiling,
        pipeline / parse
    )
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument (a filter) is ignored. Without it this
    // runs under `cargo test --all-targets` (CI, debug build): a small run that still asserts
    // every event is accounted for, so the program is tested, but its timings mean nothing.
    let measuring = std::env::args().any(|a| a == "--bench");
    let n = env_usize(
        "CDCMON_BENCH_MESSAGES",
        if measuring { 1_000_000 } else { 5_000 },
    );
    if !measuring {
        println!(
            "throughput: test mode ({n} messages; run `cargo bench --bench throughput` to measure)"
        );
    }
    let partitions = env_usize("CDCMON_BENCH_PARTITIONS", 64) as i32;
    let only = std::env::var("CDCMON_BENCH_ONLY").unwrap_or_default();
    let cluster = MockCluster::new(1).expect("mock cluster");
    let mut open_line = None;
    if only.is_empty() || only == "open" {
        let w = open_workload(n, partitions);
        open_line = Some(run(&cluster, &w));
    }
    let mut integrity_line = None;
    if only.is_empty() || only == "integrity" {
        integrity_line = Some(integrity(if measuring { 200_000 } else { 2_000 }));
    }
    let mut canal_line = None;
    if only.is_empty() || only == "canal" {
        let w = canal_workload(n, partitions);
        canal_line = Some(run(&cluster, &w));
    }
    if let Some(l) = open_line {
        println!("throughput[open-protocol]: {l}");
    }
    if let Some(l) = integrity_line {
        println!("throughput[integrity]: {l}");
    }
    if let Some(l) = canal_line {
        println!("throughput: {l}");
    }
}

/// The cost of Avro and of row-checksum verification, decode only, one thread, from memory
/// (so events/s is also CPU per event): canal-json (a real TiCDC insert) for reference, the
/// DERIVED 15-column Avro row without a checksum (`_tidb_row_level_checksum` = ""), and the same
/// row with its checksum verified. Every decode is asserted (ok verdict), so it cannot go quiet.
fn integrity(n: usize) -> String {
    use cdcmon::checksum::Verdict;
    use cdcmon::event::Protocol;
    use cdcmon::protocol::avro::{AvroDecoder, SchemaStore};
    let avro = |name: &str| {
        let p = format!("{}/tests/fixtures/avro/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&p).expect("avro fixture")
    };
    let vectors: serde_json::Value = serde_json::from_slice(&avro("vectors.json")).expect("json");
    let store = Arc::new(SchemaStore::default());
    store
        .insert(
            1,
            vectors["worked_row"]["key_schema"]
                .as_str()
                .expect("key schema"),
        )
        .expect("key schema");
    store
        .insert(
            2,
            vectors["worked_row"]["value_schema"]
                .as_str()
                .expect("value schema"),
        )
        .expect("value schema");
    let key = avro("worked_row_key.bin");
    let with_sum = avro("worked_row_value.bin");
    // The checksum string (zigzag length 10 = 0x14, then "3458821086") → "" (length 0).
    let mut without = Vec::new();
    let at = with_sum
        .windows(11)
        .position(|w| w == b"\x143458821086")
        .expect("checksum field");
    without.extend_from_slice(&with_sum[..at]);
    without.push(0);
    without.extend_from_slice(&with_sum[at + 11..]);
    let canal = common::fixture("canal-json-insert-1.json");

    let mut canal_d = Decoder::new(
        ProtocolChoice::Fixed(Protocol::CanalJson),
        Compression::None,
    );
    let mut d = Decoder::new(ProtocolChoice::Fixed(Protocol::Avro), Compression::None).with_avro(
        AvroDecoder::new(store, "Asia/Shanghai".parse().expect("tz")),
    );
    // Best of three interleaved rounds: the first round warms caches, and interleaving keeps a
    // burst of load on the shared machine from favouring one variant.
    let (mut canal_rate, mut avro_rate, mut verify_rate) = (0f64, 0f64, 0f64);
    for _ in 0..3 {
        canal_rate = canal_rate.max(rate(n, || {
            black_box(
                canal_d
                    .decode(None, Some(&canal))
                    .expect("canal")
                    .events
                    .len(),
            )
        }));
        avro_rate = avro_rate.max(rate(n, || {
            let evs = d.decode(Some(&key), Some(&without)).expect("avro").events;
            assert_eq!(
                evs[0].checksum.as_ref().map(|c| c.verdict),
                Some(Verdict::Absent)
            );
            black_box(evs.len())
        }));
        verify_rate = verify_rate.max(rate(n, || {
            let evs = d.decode(Some(&key), Some(&with_sum)).expect("avro").events;
            assert_eq!(
                evs[0].checksum.as_ref().map(|c| c.verdict),
                Some(Verdict::Ok)
            );
            black_box(evs.len())
        }));
    }
    let ns = |r: f64| 1e9 / r;
    format!(
        "canal_json_decode_per_sec={canal_rate:.0} ({:.0} ns/event) avro_decode_per_sec={avro_rate:.0} ({:.0} ns/event) avro_decode_verify_per_sec={verify_rate:.0} ({:.0} ns/event, checksum +{:.0} ns/event, 15 columns)",
        ns(canal_rate),
        ns(avro_rate),
        ns(verify_rate),
        ns(verify_rate) - ns(avro_rate)
    )
}

/// Events per second of `n` calls of `f` (each returns how many events it decoded).
fn rate(n: usize, mut f: impl FnMut() -> usize) -> f64 {
    let started = Instant::now();
    let mut events = 0;
    for _ in 0..n {
        events += f();
    }
    assert_eq!(events, n, "one event per message");
    events as f64 / started.elapsed().as_secs_f64()
}
