//! Command-line interface: every flag also reads a `CDCMON_*` environment variable, and every
//! default is the one the stack uses (ports from DESIGN.md).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::protocol::{Compression, ProtocolChoice};

#[derive(Debug, Parser)]
#[command(name = "cdcmon", version, about = "TiCDC change-data-capture monitor")]
pub struct Cli {
    /// Log output format (logs go to stderr; the event log is separate).
    #[arg(long, env = "CDCMON_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Log filter in `tracing` EnvFilter syntax, e.g. `info` or `cdcmon=debug,librdkafka=warn` (librdkafka's own lines use the target `librdkafka`).
    #[arg(long, env = "CDCMON_LOG", default_value = "info", global = true)]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume TiCDC messages from Kafka: count, log and expose metrics (the daemon).
    Consume(ConsumeArgs),
    /// Decode TiCDC messages from files and print one JSON object per event.
    Decode(DecodeArgs),
    /// Verify a running stack end to end, hop by hop.
    Smoke(crate::smoke::SmokeArgs),
    /// Database setup.
    #[command(subcommand)]
    Db(DbCommand),
    /// TiCDC changefeed management.
    #[command(subcommand)]
    Changefeed(ChangefeedCommand),
    /// The consumer side on any machine: an in-process mock Kafka with a generated TiCDC
    /// stream, consumed by the real consume path.
    Demo(crate::demo::DemoArgs),
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create schema `app`, seed rows and the application user, idempotently.
    Init(crate::db::DbInitArgs),
}

#[derive(Debug, Subcommand)]
pub enum ChangefeedCommand {
    /// Create the changefeed if absent and wait until it is `normal`.
    Ensure(crate::ticdc_api::ChangefeedEnsureArgs),
}

/// Flags of `cdcmon consume`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsumeArgs {
    /// Kafka bootstrap servers, comma-separated.
    #[arg(long, env = "CDCMON_BROKERS", default_value = crate::defaults::BROKERS)]
    pub brokers: String,
    /// Topic TiCDC writes to; a comma-separated list reads several, and an entry starting with
    /// `^` is a POSIX extended regex over the cluster's topics, as librdkafka matches it (Avro's
    /// one topic per table: `^tidb_app_.*`; classic group protocol only).
    #[arg(long, env = "CDCMON_TOPIC", default_value = crate::defaults::TOPIC,
          value_parser = crate::topics::validate)]
    pub topic: String,
    /// Consumer group. A new group starts from the earliest offset.
    #[arg(long, env = "CDCMON_GROUP", default_value = crate::defaults::GROUP)]
    pub group: String,
    /// TiCDC protocol: auto (detect per message), canal-json, open-protocol, debezium, simple,
    /// avro (needs --schema-registry-url).
    #[arg(long, env = "CDCMON_PROTOCOL", default_value = "auto")]
    pub protocol: ProtocolChoice,
    /// Value compression set by TiCDC's `large-message-handle-compression` (nothing in a message
    /// says so, so it must be configured): none, snappy, lz4.
    #[arg(long, env = "CDCMON_COMPRESSION", value_enum, default_value_t = Compression::None)]
    pub compression: Compression,
    /// HTTP address for /metrics, /healthz and /readyz.
    #[arg(long, env = "CDCMON_LISTEN", default_value = crate::defaults::LISTEN)]
    pub listen: SocketAddr,
    /// Event log destination: a file path (appended to), or `-` for stdout.
    #[arg(long, env = "CDCMON_EVENT_LOG", default_value = "-")]
    pub event_log: String,
    /// Rotate the event log file once it holds this many bytes (checked every commit interval;
    /// `events.ndjson` -> `events.ndjson.1` ...; 0 = never).
    #[arg(long, env = "CDCMON_EVENT_LOG_MAX_BYTES", default_value_t = 0)]
    pub event_log_max_bytes: u64,
    /// Rotate the event log file once it is this many seconds old (0 = never).
    #[arg(long, env = "CDCMON_EVENT_LOG_MAX_AGE_SECS", default_value_t = 0)]
    pub event_log_max_age_secs: u64,
    /// Rotated event log files kept (`.1` is the newest); older ones are deleted.
    #[arg(long, env = "CDCMON_EVENT_LOG_KEEP", default_value_t = 5)]
    pub event_log_keep: u32,
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
    /// Copy undecodable messages to this Kafka topic (same brokers), unchanged; refused if
    /// `--topic` would consume it.
    #[arg(long, env = "CDCMON_DEAD_LETTER_TOPIC")]
    pub dead_letter_topic: Option<String>,
    /// How often stored offsets are committed to Kafka, in ms (also the bound on duplicates
    /// after a crash).
    #[arg(long, env = "CDCMON_COMMIT_INTERVAL_MS", default_value_t = 1000)]
    pub commit_interval_ms: u64,
    /// Bound on the graceful stop at SIGTERM/SIGINT (final flush, commit, leaving the group), in
    /// ms; past it cdcmon exits 1 without the final commit (those events are read again).
    #[arg(long, env = "CDCMON_SHUTDOWN_TIMEOUT_MS", default_value_t = 8000)]
    pub shutdown_timeout_ms: u64,
    /// Threads that decode a backlog (canal-json, open-protocol, debezium) in batches while
    /// one loop thread logs, counts and commits in message order; 1 (default) decodes on the
    /// loop thread alone. Opt-in: no faster on a shared 2-core machine (docs/performance.md,
    /// issue 11 step 3).
    #[arg(long, env = "CDCMON_DECODE_THREADS", default_value_t = crate::decode_batch::DEFAULT_THREADS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub decode_threads: usize,
    /// Extra librdkafka consumer properties, `key=value`, applied last (e.g.
    /// `security.protocol=ssl`). Repeat the flag for several; values may contain commas
    /// (`debug=cgrp,topic`, `bootstrap.servers=a:9092,b:9092`). In one value (and in
    /// CDCMON_KAFKA_OPTIONS) a `;` or newline directly followed by `name=` (a lower-case
    /// property name) starts the next option: `debug=cgrp,topic;client.rack=r1`.
    #[arg(long = "kafka-option", env = "CDCMON_KAFKA_OPTIONS", value_parser = parse_kafka_options)]
    pub kafka_options: Vec<KafkaOptions>,
    /// Avro schema registry and row-checksum flags.
    #[command(flatten)]
    pub avro: crate::schema_registry::AvroArgs,
}

/// The librdkafka properties of one `--kafka-option` value (or of CDCMON_KAFKA_OPTIONS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaOptions(pub Vec<(String, String)>);

impl ConsumeArgs {
    /// Every `--kafka-option` property in order (a later one overrides an earlier one).
    pub fn kafka_options(&self) -> impl Iterator<Item = (&str, &str)> {
        self.kafka_options
            .iter()
            .flat_map(|o| o.0.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

/// Flags of `cdcmon decode`.
#[derive(Debug, Clone, clap::Args)]
pub struct DecodeArgs {
    /// TiCDC protocol: auto, canal-json, open-protocol, debezium, simple, avro.
    #[arg(long, env = "CDCMON_PROTOCOL", default_value = "auto")]
    pub protocol: ProtocolChoice,
    /// Value compression (TiCDC `large-message-handle-compression`): none, snappy, lz4.
    #[arg(long, env = "CDCMON_COMPRESSION", value_enum, default_value_t = Compression::None)]
    pub compression: Compression,
    /// File holding the Kafka message key (required for open-protocol).
    #[arg(long, env = "CDCMON_DECODE_KEY")]
    pub key: Option<PathBuf>,
    /// File holding the Kafka message value; `-` reads stdin.
    pub value: PathBuf,
    /// Avro schema registry and row-checksum flags.
    #[command(flatten)]
    pub avro: crate::schema_registry::AvroArgs,
}

/// Split `s` into `key=value` options at each `;` or newline that is directly followed
/// (after blanks) by `name=`, where `name` looks like a librdkafka property: lower-case letters,
/// digits, `_`, dot-separated (every librdkafka property is spelled so). Commas never split:
/// librdkafka list values (`debug`, `bootstrap.servers`) use them. Everything else is part of
/// the value, so the rule is unambiguous; a value that itself contains `;name=` cannot be given.
fn parse_kafka_options(s: &str) -> Result<KafkaOptions, String> {
    let mut options = Vec::new();
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if (c == ';' || c == '\n') && starts_with_property(&s[i + 1..]) {
            push_option(&s[start..i], &mut options)?;
            start = i + 1;
        }
    }
    push_option(&s[start..], &mut options)?;
    if options.is_empty() {
        return Err(format!("expected key=value, got {s:?}"));
    }
    Ok(KafkaOptions(options))
}

/// Whether `rest` begins with `name=` (blanks allowed around the name).
fn starts_with_property(rest: &str) -> bool {
    let rest = rest.trim_start();
    let Some((name, _)) = rest.split_once('=') else {
        return false;
    };
    let name = name.trim_end();
    !name.is_empty()
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

fn push_option(part: &str, options: &mut Vec<(String, String)>) -> Result<(), String> {
    // Blank pieces (a trailing newline of an env file) hold nothing.
    if part.trim().is_empty() {
        return Ok(());
    }
    options.push(parse_key_value(part)?);
    Ok(())
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

/// Install the global `tracing` subscriber (stderr).
pub fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("invalid --log filter {filter:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi_colours(std::io::IsTerminal::is_terminal(
            &std::io::stderr(),
        )));
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}

/// Colours only for a person at a terminal. tracing-subscriber colours by default (unless
/// `NO_COLOR`), also into a pipe: under systemd or Docker the escape codes would land in the
/// journal / json-file log, make journalctl store the line as bytes, and reach the service-log
/// index as `\x1b[2m…` around the timestamp and level, where Filebeat's level-word processor
/// (nix/lib/stack.nix `levelWords`) cannot read the level. `NO_COLOR` (no-color.org) is still
/// honoured at a terminal.
fn ansi_colours(stderr_is_terminal: bool) -> bool {
    stderr_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_has_an_env_var_and_help() {
        fn walk(cmd: &clap::Command, path: &str) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" || arg.is_positional() {
                    continue;
                }
                assert!(
                    arg.get_env().is_some(),
                    "{path} --{id} has no CDCMON_* environment variable"
                );
                let env = arg.get_env().unwrap_or_default().to_string_lossy();
                assert!(env.starts_with("CDCMON_"), "{path} --{id}: env {env}");
                assert!(arg.get_help().is_some(), "{path} --{id} has no help line");
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        walk(&Cli::command(), "cdcmon");
    }

    #[test]
    fn consume_defaults_are_the_stack_defaults() {
        let cli = Cli::try_parse_from(["cdcmon", "consume"]).unwrap();
        let Command::Consume(args) = cli.command else {
            panic!("not consume")
        };
        assert_eq!(args.brokers, "localhost:9092");
        assert_eq!(args.topic, "app_cdc");
        assert_eq!(args.group, "cdcmon");
        assert_eq!(args.listen.port(), 9102);
        assert_eq!(args.protocol, ProtocolChoice::Auto);
        assert_eq!(args.redact, ["password", "secret", "token"]);
        assert_eq!(
            (
                args.event_log_max_bytes,
                args.event_log_max_age_secs,
                args.event_log_keep
            ),
            (0, 0, 5),
            "rotation is off unless asked for"
        );
    }

    fn kafka_options_of(argv: &[&str]) -> Vec<(String, String)> {
        let cli = Cli::try_parse_from(argv).unwrap();
        let Command::Consume(args) = cli.command else {
            panic!("not consume")
        };
        args.kafka_options()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kafka_option_values_keep_their_commas() {
        assert_eq!(
            kafka_options_of(&[
                "cdcmon",
                "consume",
                "--kafka-option",
                "debug=cgrp,topic",
                "--kafka-option",
                "bootstrap.servers=a:9092,b:9092",
            ]),
            kv(&[
                ("debug", "cgrp,topic"),
                ("bootstrap.servers", "a:9092,b:9092")
            ])
        );
    }

    #[test]
    fn kafka_options_split_at_semicolons_and_newlines_before_a_name() {
        let got = parse_kafka_options(
            "debug=cgrp,topic; bootstrap.servers=a:9092,b:9092\nclient.rack = r1;\r\nfetch.wait.max.ms=50\n",
        )
        .unwrap();
        assert_eq!(
            got.0,
            kv(&[
                ("debug", "cgrp,topic"),
                ("bootstrap.servers", "a:9092,b:9092"),
                ("client.rack", "r1"),
                ("fetch.wait.max.ms", "50"),
            ])
        );
        // `;` not followed by a property name is part of the value.
        let got = parse_kafka_options("sasl.kerberos.kinit.cmd=kinit -k; echo ok=1").unwrap();
        assert_eq!(
            got.0,
            kv(&[("sasl.kerberos.kinit.cmd", "kinit -k; echo ok=1")])
        );
        assert!(
            parse_kafka_options("debug=cgrp;topic").unwrap().0 == kv(&[("debug", "cgrp;topic")])
        );
        assert!(parse_kafka_options("").is_err());
        assert!(parse_kafka_options("a=1;=2").unwrap().0 == kv(&[("a", "1;=2")]));
        let err = parse_kafka_options("novalue").unwrap_err();
        assert!(err.contains("novalue"), "{err}");
    }

    #[test]
    fn kafka_options_parse_and_reject_garbage() {
        assert_eq!(
            parse_key_value("a.b = c").unwrap(),
            ("a.b".to_owned(), "c".to_owned())
        );
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }
}
