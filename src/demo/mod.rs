//! `cdcmon demo`: the whole consumer side in one process, without Kafka or TiDB.
//!
//! librdkafka's in-process mock cluster ([`broker`]) holds topic `app_cdc`; the [`generator`]
//! makes a realistic change stream of the `app` database, the [`encode`] modules write it the way
//! TiCDC's Kafka sink does in the chosen protocol, and the real consume path
//! ([`crate::consumer::run_with_metrics`], the code behind `cdcmon consume`) reads it: the same
//! `/metrics`, `/healthz`, `/readyz`, event log and at-least-once commits. A one-line summary goes
//! to stderr every few seconds. With `--duration` the demo stops producing, waits until the
//! consumer has read every produced message, reports what it produced (stderr, `--stats-file`)
//! and exits 0. Design notes: `docs/demo.md`.

pub mod broker;
pub mod encode;
pub mod generator;
mod stats;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::event::Protocol;
use crate::metrics::Metrics;

use self::encode::{Encoder, Message};
use self::generator::{Change, Generator, Mix};
pub use self::stats::Produced;

/// Most messages the producer may be ahead of the consumer: the mock broker silently drops data
/// beyond 100,000 message sets or 5 MiB per partition (docs/demo.md).
const MAX_BACKLOG_MESSAGES: u64 = 20_000;
/// How often the generator catches up with `--rate`.
const TICK: Duration = Duration::from_millis(20);
/// TiCDC sends a watermark (resolved ts) about once a second.
const WATERMARK_INTERVAL: Duration = Duration::from_secs(1);
/// Row events generated per tick at most (`--rate max`).
const MAX_ROWS_PER_TICK: u64 = 4_000;
/// How long the end of a run waits for the consumer to read everything produced.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// `--rate`: row events per second, or as fast as the consumer keeps up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    PerSec(f64),
    Max,
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Rate::Max);
        }
        match s.parse::<f64>() {
            Ok(r) if r.is_finite() && r > 0.0 => Ok(Rate::PerSec(r)),
            _ => Err(format!(
                "expected events per second (> 0) or `max`, got {s:?}"
            )),
        }
    }
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    // The demo has no Avro encoder (nor a schema registry to serve its schemas).
    let encodable = Protocol::from_name(s).filter(|p| *p != Protocol::Avro);
    encodable.ok_or_else(|| {
        format!("unknown protocol {s:?}: expected canal-json, open-protocol, debezium or simple")
    })
}

/// Flags of `cdcmon demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// TiCDC protocol of the generated stream (and of the consumer): canal-json, open-protocol,
    /// debezium, simple.
    #[arg(long, env = "CDCMON_PROTOCOL", default_value = "canal-json", value_parser = parse_protocol)]
    pub protocol: Protocol,
    /// Row events per second, or `max` (as fast as the consumer keeps up).
    #[arg(long, env = "CDCMON_DEMO_RATE", default_value = "300")]
    pub rate: Rate,
    /// Partitions of the demo topic.
    #[arg(long, env = "CDCMON_DEMO_PARTITIONS", default_value_t = 3,
          value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub partitions: i32,
    /// Stop after this many seconds, once everything produced is consumed (exit 0); without it
    /// the demo runs until SIGINT/SIGTERM.
    #[arg(long, env = "CDCMON_DEMO_DURATION")]
    pub duration: Option<u64>,
    /// Pin the mock Kafka broker to HOST:PORT (relayed, and advertised in its metadata), so kcat
    /// or another `cdcmon consume --brokers HOST:PORT` can join; default: 127.0.0.1, random port.
    #[arg(long, env = "CDCMON_DEMO_KAFKA_LISTEN")]
    pub kafka_listen: Option<SocketAddr>,
    /// Seconds between the summary lines on stderr (0: none).
    #[arg(long, env = "CDCMON_DEMO_SUMMARY_SECS", default_value_t = 5)]
    pub summary_secs: u64,
    /// At the end, write what the demo produced (per table and op, DDL, watermarks) to this JSON
    /// file.
    #[arg(long, env = "CDCMON_DEMO_STATS_FILE")]
    pub stats_file: Option<PathBuf>,
    /// After `--duration`, keep serving /metrics this many seconds before exiting (a last
    /// Prometheus scrape); the stats file is written before.
    #[arg(long, env = "CDCMON_DEMO_LINGER_SECS", default_value_t = 0)]
    pub linger_secs: u64,
    /// Seed of the generated stream (the same seed gives the same rows).
    #[arg(long, env = "CDCMON_DEMO_SEED", default_value_t = 20_26)]
    pub seed: u64,

    // The consume path's flags, as `cdcmon consume` has them.
    /// Topic to create and produce to.
    #[arg(long, env = "CDCMON_TOPIC", default_value = crate::defaults::TOPIC)]
    pub topic: String,
    /// Consumer group of the demo's consumer.
    #[arg(long, env = "CDCMON_GROUP", default_value = crate::defaults::GROUP)]
    pub group: String,
    /// HTTP address for /metrics, /healthz and /readyz.
    #[arg(long, env = "CDCMON_LISTEN", default_value = crate::defaults::LISTEN)]
    pub listen: SocketAddr,
    /// Event log destination: a file path (appended to), or `-` for stdout.
    #[arg(long, env = "CDCMON_EVENT_LOG", default_value = "-")]
    pub event_log: String,
    /// Also log row values (off by default; redacted columns are masked even then).
    #[arg(long, env = "CDCMON_LOG_VALUES")]
    pub log_values: bool,
    /// Column-name substrings (case-insensitive, comma-separated) whose values are masked.
    #[arg(
        long,
        env = "CDCMON_REDACT",
        value_delimiter = ',',
        default_value = "password,secret,token"
    )]
    pub redact: Vec<String>,
    /// How often stored offsets are committed, in ms.
    #[arg(long, env = "CDCMON_COMMIT_INTERVAL_MS", default_value_t = 1000)]
    pub commit_interval_ms: u64,
    /// Bound on the consumer's graceful stop, in ms.
    #[arg(long, env = "CDCMON_SHUTDOWN_TIMEOUT_MS", default_value_t = 8000)]
    pub shutdown_timeout_ms: u64,
}

impl DemoArgs {
    /// The `cdcmon consume` flags for this demo, parsed by the consume command itself so every
    /// consume flag the demo does not set keeps its own default.
    fn consume_args(&self, brokers: &str) -> anyhow::Result<crate::cli::ConsumeArgs> {
        let mut argv: Vec<String> = [
            "cdcmon",
            "consume",
            "--brokers",
            brokers,
            "--topic",
            &self.topic,
            "--group",
            &self.group,
            "--protocol",
            self.protocol.as_str(),
            "--listen",
            &self.listen.to_string(),
            "--event-log",
            &self.event_log,
            "--commit-interval-ms",
            &self.commit_interval_ms.to_string(),
            "--shutdown-timeout-ms",
            &self.shutdown_timeout_ms.to_string(),
            // Given explicitly so that CDCMON_COMPRESSION / CDCMON_KAFKA_OPTIONS meant for a real
            // broker (compressed values, TLS, SASL) do not reach the mock: the demo produces
            // plain values, and `client.id=cdcmon` is consume's own default.
            "--compression",
            "none",
            "--kafka-option",
            "client.id=cdcmon",
        ]
        .map(str::to_owned)
        .into();
        let redact: Vec<&str> = self
            .redact
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect();
        if !redact.is_empty() {
            argv.push(format!("--redact={}", redact.join(",")));
        }
        if self.log_values {
            argv.push("--log-values".into());
        }
        let cli = crate::cli::Cli::try_parse_from(&argv)
            .map_err(|e| anyhow::anyhow!("demo: consume flags {argv:?}: {e}"))?;
        match cli.command {
            crate::cli::Command::Consume(args) => Ok(args),
            _ => anyhow::bail!("demo: consume flags did not parse as `consume`"),
        }
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    crate::pipeline::now_ms().max(0) as u64
}

/// Run the demo until `shutdown` (SIGINT/SIGTERM) or `--duration`.
pub async fn run(args: DemoArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let broker = broker::Broker::start(&args.topic, args.partitions, args.kafka_listen).await?;
    let consume = args.consume_args(&broker.bootstrap)?;
    let metrics = Arc::new(Metrics::new()?);
    let consumer_stop = CancellationToken::new();
    let mut consumer = tokio::spawn(crate::consumer::run_with_metrics(
        consume,
        metrics.clone(),
        consumer_stop.clone(),
        crate::consumer::exit_on_stop_overrun,
    ));
    tracing::info!(
        protocol = %args.protocol,
        partitions = args.partitions,
        brokers = %broker.bootstrap,
        topic = %args.topic,
        listen = %args.listen,
        "demo: producing a TiCDC change stream into the mock Kafka cluster"
    );

    let started = Instant::now();
    let deadline = args.duration.map(|d| started + Duration::from_secs(d));
    let mut run = Producing {
        generator: Generator::new(args.seed, Mix::default(), now_ms()),
        encoder: Encoder::new(args.protocol, args.partitions),
        produced: Produced::new(args.protocol, args.partitions),
        started,
        last_watermark: started,
        out: Vec::new(),
    };
    let mut summary = stats::Summary::new(started);
    let summary_every = Duration::from_secs(args.summary_secs);
    let mut next_summary = started + summary_every;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut consumer_done = None;

    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = sleep_until_opt(deadline) => break,
            done = &mut consumer => { consumer_done = Some(done); break }
            _ = tick.tick() => {}
        }
        let backlog = run.produced.messages.saturating_sub(metrics.messages.get());
        if backlog < MAX_BACKLOG_MESSAGES {
            run.step(args.rate);
            run.send(&broker, &args.topic).await?;
        }
        if args.summary_secs > 0 && Instant::now() >= next_summary {
            next_summary += summary_every;
            eprintln!("{}", summary.line(&metrics, &run.produced));
        }
    }
    if let Some(done) = consumer_done {
        // The consumer ended on its own: its error (e.g. --listen in use) is the demo's.
        done.context("the demo's consumer task panicked")??;
        anyhow::bail!("the demo's consumer stopped unexpectedly");
    }

    // The end: pending batches, a last watermark, everything acknowledged and consumed.
    run.finish();
    run.send(&broker, &args.topic).await?;
    if let Err(err) = broker.flush(Duration::from_secs(10)) {
        tracing::error!(error = %err, "demo: producer flush");
    }
    let drain_bound = if shutdown.is_cancelled() {
        Duration::from_secs(3)
    } else {
        DRAIN_TIMEOUT
    };
    let drained = wait_consumed(&metrics, run.produced.messages, drain_bound, &mut consumer).await;
    run.produced.delivery_errors = broker
        .deliveries
        .failed
        .load(std::sync::atomic::Ordering::Relaxed);
    run.produced.consumed_messages = metrics.messages.get();
    run.produced.seconds = started.elapsed().as_secs_f64();
    eprintln!("{}", summary.final_line(&metrics, &run.produced, drained));
    if let Some(path) = &args.stats_file {
        run.produced
            .write(path)
            .with_context(|| format!("cannot write --stats-file {}", path.display()))?;
    }
    if args.linger_secs > 0 && !shutdown.is_cancelled() {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_secs(args.linger_secs)) => {}
        }
    }
    consumer_stop.cancel();
    let result = consumer
        .await
        .context("the demo's consumer task panicked")?;
    drop(broker);
    result?;
    // A run that ended by itself must have delivered and consumed everything it produced.
    let produced = &run.produced;
    if !shutdown.is_cancelled() && (!drained || produced.delivery_errors > 0) {
        anyhow::bail!(
            "not every produced message was consumed: {} produced, {} not delivered, {} consumed within {}s",
            produced.messages,
            produced.delivery_errors,
            produced.consumed_messages,
            DRAIN_TIMEOUT.as_secs()
        );
    }
    Ok(())
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Wait until the consumer has read `messages` messages; false on timeout.
async fn wait_consumed(
    metrics: &Metrics,
    messages: u64,
    bound: Duration,
    consumer: &mut tokio::task::JoinHandle<anyhow::Result<()>>,
) -> bool {
    let until = Instant::now() + bound;
    while metrics.messages.get() < messages {
        if Instant::now() >= until || consumer.is_finished() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// The producing half of a run.
struct Producing {
    generator: Generator,
    encoder: Encoder,
    produced: Produced,
    started: Instant,
    last_watermark: Instant,
    out: Vec<Message>,
}

impl Producing {
    /// Generate and encode what is due by now.
    fn step(&mut self, rate: Rate) {
        let now = now_ms();
        let due = match rate {
            Rate::PerSec(r) => {
                let target = (r * self.started.elapsed().as_secs_f64()) as u64;
                target
                    .saturating_sub(self.produced.rows_total)
                    .min(MAX_ROWS_PER_TICK)
            }
            Rate::Max => MAX_ROWS_PER_TICK,
        };
        let mut rows = 0;
        while rows < due {
            for change in self.generator.next_transaction(now) {
                if let Change::Row(_) = change {
                    rows += 1;
                }
                self.emit(&change, now);
            }
        }
        // TiCDC sends what it has: no batch waits for the next tick.
        self.encoder.flush(&mut self.out);
        if self.last_watermark.elapsed() >= WATERMARK_INTERVAL {
            self.last_watermark = Instant::now();
            let w = self.generator.watermark(now);
            self.emit(&w, now);
        }
    }

    /// Flush batches and send a final watermark.
    fn finish(&mut self) {
        let now = now_ms();
        self.encoder.flush(&mut self.out);
        let w = self.generator.watermark(now);
        self.emit(&w, now);
    }

    fn emit(&mut self, change: &Change, now: u64) {
        self.produced.count_change(change);
        let generator = &self.generator;
        let schema = |t| generator.schema(t).clone();
        self.encoder.encode(change, &schema, now, &mut self.out);
    }

    /// Produce the encoded messages.
    async fn send(&mut self, broker: &broker::Broker, topic: &str) -> anyhow::Result<()> {
        for m in std::mem::take(&mut self.out) {
            broker
                .send(topic, m.partition, m.key.as_deref(), &m.value)
                .await?;
            self.produced.count_message(&m);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> DemoArgs {
        let mut argv = vec!["cdcmon", "demo"];
        argv.extend(extra);
        let cli = crate::cli::Cli::try_parse_from(argv).unwrap();
        match cli.command {
            crate::cli::Command::Demo(a) => a,
            _ => panic!("not demo"),
        }
    }

    #[test]
    fn defaults_and_rate_parsing() {
        let a = parse(&[]);
        assert_eq!(a.protocol, Protocol::CanalJson);
        assert_eq!(a.rate, Rate::PerSec(300.0));
        assert_eq!(a.listen.port(), 9102);
        assert_eq!(a.event_log, "-");
        assert_eq!(parse(&["--rate", "MAX"]).rate, Rate::Max);
        assert!("0".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
        assert!(crate::cli::Cli::try_parse_from(["cdcmon", "demo", "--protocol", "auto"]).is_err());
        // No Avro encoder in the demo: avro is refused at parse time, not silently empty.
        assert!(crate::cli::Cli::try_parse_from(["cdcmon", "demo", "--protocol", "avro"]).is_err());
        assert!(crate::cli::Cli::try_parse_from(["cdcmon", "demo", "--partitions", "0"]).is_err());
    }

    #[test]
    fn consume_args_carry_the_demo_flags() {
        let a = parse(&[
            "--protocol",
            "simple",
            "--group",
            "g1",
            "--redact",
            "pin, ,email",
            "--log-values",
            "--event-log",
            "/tmp/x.ndjson",
        ]);
        let c = a.consume_args("127.0.0.1:1234").unwrap();
        assert_eq!(c.brokers, "127.0.0.1:1234");
        assert_eq!(c.group, "g1");
        assert_eq!(c.topic, "app_cdc");
        assert_eq!(
            c.protocol,
            crate::protocol::ProtocolChoice::Fixed(Protocol::Simple)
        );
        assert_eq!(c.redact, ["pin", "email"]);
        assert!(c.log_values);
        assert_eq!(c.event_log, "/tmp/x.ndjson");
        assert_eq!(c.compression, crate::protocol::Compression::None);
        // Compared through Debug: the option list's type is consume's to change.
        let options = format!("{:?}", c.kafka_options);
        assert!(options.contains(r#"("client.id", "cdcmon")"#), "{options}");
        assert_eq!(options.matches("client.id").count(), 1, "{options}");
    }

    #[test]
    fn the_rate_is_kept_and_ddl_and_watermarks_come_along() {
        let mut p = Producing {
            generator: Generator::new(1, Mix::default(), now_ms()),
            encoder: Encoder::new(Protocol::CanalJson, 2),
            produced: Produced::new(Protocol::CanalJson, 2),
            started: Instant::now() - Duration::from_secs(4),
            last_watermark: Instant::now() - Duration::from_secs(2),
            out: Vec::new(),
        };
        p.step(Rate::PerSec(300.0));
        // 4 s at 300/s; a transaction may overshoot by its last rows.
        let rows = p.produced.rows_total;
        assert!((1200..1203).contains(&rows), "{rows}");
        assert_eq!(
            p.produced.ddl_total, 1,
            "the first DDL comes after 200 rows"
        );
        let watermark_msgs = p
            .out
            .iter()
            .filter(|m| m.kind == encode::Kind::Watermark)
            .count();
        assert_eq!(watermark_msgs, 2, "one per partition");
        p.step(Rate::PerSec(300.0));
        let due = (300.0 * p.started.elapsed().as_secs_f64()) as u64;
        assert!(p.produced.rows_total <= due + 3, "no more than the rate");
    }
}
