//! Helpers shared by the consumer integration tests: the mock Kafka cluster, fixtures, a running
//! `cdcmon consume` (in-process), and a Prometheus text-format reader.
#![allow(dead_code)] // each test binary uses a different subset

pub mod files;

use std::collections::{BTreeMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdcmon::eventlog::{LogFs, OsFs};
use clap::Parser;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

pub const TOPIC: &str = "app_cdc";

/// Keeps the mock's per-partition backlog small (it silently drops data beyond 5 MiB).
pub const LZ4: &[(&str, &str)] = &[("compression.type", "lz4"), ("linger.ms", "20")];

pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ticdc")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// A mock cluster with `TOPIC` created with `partitions` partitions.
pub fn mock_cluster(partitions: i32) -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster
        .create_topic(TOPIC, partitions, 1)
        .expect("create topic");
    cluster
}

pub fn producer(brokers: &str) -> ThreadedProducer<DefaultProducerContext> {
    producer_with(brokers, &[])
}

/// A producer with extra librdkafka properties (e.g. `compression.type=lz4` to keep the mock's
/// per-partition backlog under its 5 MiB retention limit).
pub fn producer_with(
    brokers: &str,
    extra: &[(&str, &str)],
) -> ThreadedProducer<DefaultProducerContext> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "30000");
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    cfg.create().expect("producer")
}

/// One Kafka message to produce.
#[derive(Clone, Debug)]
pub struct Msg {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

impl Msg {
    pub fn value(partition: i32, value: Vec<u8>) -> Msg {
        Msg {
            partition,
            key: None,
            value: Some(value),
        }
    }
    pub fn keyed(partition: i32, key: Vec<u8>, value: Vec<u8>) -> Msg {
        Msg {
            partition,
            key: Some(key),
            value: Some(value),
        }
    }
}

/// Produce every message to `TOPIC` and wait until all are acknowledged.
pub fn produce(brokers: &str, msgs: &[Msg]) {
    produce_to(brokers, TOPIC, msgs, &[]);
}

/// Produce every message to `topic` with extra producer properties; wait for every ack.
pub fn produce_to(brokers: &str, topic: &str, msgs: &[Msg], extra: &[(&str, &str)]) {
    let producer = producer_with(brokers, extra);
    for m in msgs {
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).partition(m.partition);
        if let Some(k) = &m.key {
            rec = rec.key(k.as_slice());
        }
        if let Some(v) = &m.value {
            rec = rec.payload(v.as_slice());
        }
        let mut rec = rec;
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((err, back)) => {
                    // Queue full: let librdkafka drain, then retry the same record.
                    assert!(format!("{err}").contains("Queue full"), "produce: {err}");
                    producer.poll(Duration::from_millis(10));
                    rec = back;
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("flush producer");
}

/// `n` canal-json row messages round-robin over `partitions`, cycling insert/update/delete.
pub fn canal_rows(n: usize, partitions: i32) -> Vec<Msg> {
    let kinds = [
        fixture("canal-json-insert-1.json"),
        fixture("canal-json-update-1.json"),
        fixture("canal-json-delete-1.json"),
    ];
    (0..n)
        .map(|i| Msg::value((i % partitions as usize) as i32, kinds[i % 3].clone()))
        .collect()
}

/// Committed offsets of `group` for partitions `0..partitions` of `TOPIC` (a fresh,
/// unsubscribed client); a partition without a commit reads as 0.
pub fn committed(brokers: &str, group: &str, partitions: i32) -> BTreeMap<i32, i64> {
    committed_in(brokers, group, TOPIC, partitions)
        .into_iter()
        .map(|(p, off)| (p, off.max(0)))
        .collect()
}

/// Committed offsets of `group` for partitions `0..partitions` of `topic`; -1 where the group
/// never committed (so "nothing committed" and "committed 0" differ).
pub fn committed_in(
    brokers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    let out = got
        .elements()
        .iter()
        .map(|e| {
            let off = match e.offset() {
                Offset::Offset(o) => o,
                _ => -1,
            };
            (e.partition(), off)
        })
        .collect();
    // Drop the list before the client, or rd_kafka_destroy hangs (docs/KAFKA-TESTING.md).
    drop(got);
    drop(c);
    out
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A `cdcmon consume` running in-process on its own runtime thread.
pub struct RunningConsumer {
    pub addr: SocketAddr,
    pub event_log: PathBuf,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl RunningConsumer {
    /// `consume` with a 200 ms commit interval (before `extra`), writing the event log to disk.
    pub fn start(brokers: &str, group: &str, event_log: &Path, extra: &[&str]) -> RunningConsumer {
        let mut flags = vec!["--commit-interval-ms", "200"];
        flags.extend_from_slice(extra);
        Self::start_on(brokers, group, event_log, &flags, Arc::new(OsFs))
    }

    /// `consume` with exactly the flags `extra` (no commit interval added), writing the event log
    /// through `log_fs` (the fault-injecting file system of tests/event_log_durability.rs).
    pub fn start_on(
        brokers: &str,
        group: &str,
        event_log: &Path,
        extra: &[&str],
        log_fs: Arc<dyn LogFs>,
    ) -> RunningConsumer {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut argv = vec![
            "cdcmon".to_owned(),
            "consume".to_owned(),
            "--brokers".to_owned(),
            brokers.to_owned(),
            "--group".to_owned(),
            group.to_owned(),
            "--listen".to_owned(),
            listen.clone(),
            "--event-log".to_owned(),
            event_log.display().to_string(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        let cli = cdcmon::cli::Cli::try_parse_from(argv).expect("consume flags");
        let cdcmon::cli::Command::Consume(args) = cli.command else {
            unreachable!()
        };
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            // In-process: an overrun is logged, not fatal to the test binary; tests that care
            // assert their own stop-time bound.
            rt.block_on(cdcmon::consumer::run_with_log_fs(
                args,
                Arc::new(cdcmon::metrics::Metrics::new()?),
                token,
                cdcmon::consumer::log_stop_overrun,
                log_fs,
            ))
        });
        let c = RunningConsumer {
            addr: listen.parse().expect("addr"),
            event_log: event_log.to_owned(),
            shutdown,
            thread: Some(thread),
        };
        c.wait_http_up();
        c
    }

    fn wait_http_up(&self) {
        wait_until(Duration::from_secs(10), "cdcmon /healthz", || {
            http_get(self.addr, "/healthz")
                .map(|(s, _)| s == 200)
                .unwrap_or(false)
        });
    }

    pub fn metrics(&self) -> String {
        http_get(self.addr, "/metrics").expect("GET /metrics").1
    }

    /// Wait until `cdcmon_kafka_messages_total` reaches `n`.
    pub fn wait_messages(&self, n: f64, timeout: Duration) {
        wait_until(timeout, &format!("{n} messages consumed"), || {
            metric(&self.metrics(), "cdcmon_kafka_messages_total", &[]).unwrap_or(0.0) >= n
        });
    }

    /// Sum of every series of `name`; 0 while /metrics does not answer.
    pub fn metric_total(&self, name: &str) -> f64 {
        http_get(self.addr, "/metrics")
            .ok()
            .map_or(0.0, |(_, m)| metric_sum(&m, name, &[]))
    }

    /// Whether `consume` has returned.
    pub fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Wait (bounded) for `consume` to return by itself; its result.
    pub fn wait_exit(mut self, timeout: Duration) -> anyhow::Result<()> {
        wait_until(timeout, "consume to return", || self.finished());
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("consumer panicked")
    }

    /// Cancel (SIGTERM) and return `consume`'s result (waits at most 20 s).
    pub fn stop_result(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait_exit(Duration::from_secs(20))
    }

    /// SIGTERM equivalent; returns how long the graceful stop took (waits at most 30 s: these
    /// consumers' stop watchdog only logs, so a hung stop must fail the test, not stall it).
    pub fn stop(mut self) -> Duration {
        let started = Instant::now();
        self.shutdown.cancel();
        wait_until(Duration::from_secs(30), "consume to return", || {
            self.finished()
        });
        let result = self
            .thread
            .take()
            .expect("thread")
            .join()
            .expect("consumer thread panicked");
        result.expect("consume returned an error");
        started.elapsed()
    }
}

impl Drop for RunningConsumer {
    /// Also runs while a failed assertion unwinds: waits at most 30 s for `consume` to return,
    /// then leaves its thread to the end of the process rather than block the test's.
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                eprintln!(
                    "consume did not return within 30 s of its shutdown; thread left running"
                );
            }
        }
    }
}

/// A real `cdcmon consume` process (the built binary), for crash tests and the benchmark.
pub struct ChildConsumer {
    pub addr: SocketAddr,
    pub event_log: PathBuf,
    pub stderr_path: PathBuf,
    child: Option<std::process::Child>,
}

impl ChildConsumer {
    /// Start the binary; its stderr goes to `<event_log>.<port>.stderr`. Waits for `/healthz`.
    pub fn start(brokers: &str, group: &str, event_log: &Path, extra: &[&str]) -> ChildConsumer {
        Self::start_bin(
            env!("CARGO_BIN_EXE_cdcmon"),
            brokers,
            group,
            event_log,
            extra,
        )
    }

    /// [`start`](Self::start) with extra environment variables, set after the defaults (so
    /// `CDCMON_KAFKA_OPTIONS` or `CDCMON_LOG` given here apply).
    pub fn start_with_env(
        brokers: &str,
        group: &str,
        event_log: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> ChildConsumer {
        Self::spawn(
            env!("CARGO_BIN_EXE_cdcmon"),
            brokers,
            group,
            event_log,
            extra,
            env,
        )
    }

    pub fn start_bin(
        bin: &str,
        brokers: &str,
        group: &str,
        event_log: &Path,
        extra: &[&str],
    ) -> ChildConsumer {
        Self::spawn(bin, brokers, group, event_log, extra, &[])
    }

    fn spawn(
        bin: &str,
        brokers: &str,
        group: &str,
        event_log: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> ChildConsumer {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let stderr_path = event_log.with_extension(format!("{port}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["consume", "--brokers", brokers, "--group", group])
            .args(["--listen", &listen]);
        if !extra.contains(&"--commit-interval-ms") {
            cmd.args(["--commit-interval-ms", "200"]);
        }
        let child = cmd
            .arg("--event-log")
            .arg(event_log)
            .args(extra)
            // Tests set their own flags; do not let the caller's environment change them.
            .env_remove("CDCMON_KAFKA_OPTIONS")
            .env_remove("CDCMON_TOPIC")
            .env("CDCMON_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn cdcmon");
        let c = ChildConsumer {
            addr: listen.parse().expect("addr"),
            event_log: event_log.to_owned(),
            stderr_path,
            child: Some(child),
        };
        wait_until(Duration::from_secs(10), "cdcmon child /healthz", || {
            http_get(c.addr, "/healthz")
                .map(|(s, _)| s == 200)
                .unwrap_or(false)
        });
        c
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn metrics(&self) -> String {
        http_get(self.addr, "/metrics").expect("GET /metrics").1
    }

    /// Wait until `cdcmon_kafka_messages_total` reaches `n`.
    pub fn wait_messages(&self, n: f64, timeout: Duration) {
        wait_until(timeout, &format!("{n} messages consumed"), || {
            http_get(self.addr, "/metrics")
                .ok()
                .and_then(|(_, m)| metric(&m, "cdcmon_kafka_messages_total", &[]))
                .unwrap_or(0.0)
                >= n
        });
    }

    /// Peak resident set size so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    /// `kill -9`: no flush, no commit.
    pub fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit; returns how long the stop took and the exit status.
    pub fn terminate(mut self) -> (Duration, std::process::ExitStatus) {
        let mut c = self.child.take().expect("child");
        let started = Instant::now();
        signal(c.id(), libc::SIGTERM);
        let deadline = started + Duration::from_secs(30);
        loop {
            if let Some(status) = c.try_wait().expect("wait cdcmon") {
                return (started.elapsed(), status);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("cdcmon did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for ChildConsumer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Send `sig` to `pid` (no external `kill` binary: the Nix build sandbox may not have one).
pub fn signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// A `/proc/<pid>/status` field in KiB (`VmHWM:`, `VmRSS:`).
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Minimal blocking HTTP/1.1 GET (keeps the tests free of an HTTP client runtime).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Every sample of a `/metrics` body, parsed by the same parser `cdcmon smoke` uses; a malformed
/// line fails the test.
pub fn samples(text: &str) -> Vec<cdcmon::smoke::promtext::Sample> {
    cdcmon::smoke::promtext::parse(text).unwrap_or_else(|e| panic!("bad /metrics: {e}\n{text}"))
}

/// The value of one sample; `labels` must match exactly (all of them, no more).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(text)
        .into_iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.label(k) == Some(v))
        })
        .map(|s| s.value)
}

/// `cdcmon_kafka_assigned_partitions` in a /metrics text (0 before the first assignment).
pub fn assigned_partitions(text: &str) -> f64 {
    metric(text, "cdcmon_kafka_assigned_partitions", &[]).unwrap_or(0.0)
}

/// Sum of every sample of `name` whose labels include all of `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    cdcmon::smoke::promtext::sum(&samples(text), name, labels)
}

pub fn read_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event-log line {l}: {e}")))
        .collect()
}

/// The (partition, offset) of every complete line of the event log at `path`, in file order,
/// and the complete lines that carry none (a line without its newline yet is neither: it is
/// still being written, or a `kill -9` cut it).
pub fn complete_line_positions(path: &Path) -> (Vec<(i64, i64)>, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    let (mut positions, mut others) = (Vec::new(), Vec::new());
    for line in complete.lines() {
        let position = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| {
                Some((
                    v["kafka"]["partition"].as_i64()?,
                    v["kafka"]["offset"].as_i64()?,
                ))
            });
        match position {
            Some(position) => positions.push(position),
            None => others.push(line.to_owned()),
        }
    }
    (positions, others)
}

/// Distinct (partition, offset) of the complete lines of the event logs in `paths`, read while
/// consumers may still be appending (a line without its newline yet is not counted).
pub fn logged_positions(paths: &[&Path]) -> HashSet<(i64, i64)> {
    paths
        .iter()
        .flat_map(|path| complete_line_positions(path).0)
        .collect()
}
