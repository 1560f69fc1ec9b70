//! TiCDC OpenAPI v2 client and `cdcmon changefeed ensure`.
//!
//! Shapes and error codes (TICDC.md §5; pingcap/docs `ticdc/ticdc-open-api-v2.md`; classic TiCDC
//! pingcap/tiflow `cdc/api/v2/model.go`, `cdc/api/util.go`, `cdc/api/middleware/middleware.go`;
//! new architecture pingcap/ticdc `api/v2/model.go`, `pkg/api/util.go`):
//! - every error body is `{"error_msg": "...", "error_code": "CDC:ErrXxx"}`;
//! - `GET /api/v2/health` → 200 `{}` when healthy;
//! - `GET /api/v2/changefeeds/{id}` → `ChangeFeedInfo` (`state`, `checkpoint_ts`, `error`), or
//!   400 `CDC:ErrChangeFeedNotExists`;
//! - `POST /api/v2/changefeeds` with `ChangefeedConfig` (`changefeed_id`, `sink_uri`,
//!   `replica_config`) → 200 `ChangeFeedInfo`; an existing id gives
//!   `CDC:ErrChangeFeedAlreadyExists`, HTTP 500 on classic TiCDC, 400 on the new architecture.
//!
//! - `POST /api/v2/tso` with `{}` → `{"timestamp": <physical ms>, "logic_time": <logical>}`
//!   from the default upstream's PD (tiflow `cdc/api/v2/tso.go` `QueryTso`, which binds an
//!   `UpstreamConfig` body and so needs at least `{}`; pingcap/ticdc `api/v2/tso.go` ignores it);
//! - `DELETE /api/v2/changefeeds/{id}` → 200 `{}` (`EmptyResponse`) once the owner removed it
//!   (tiflow `cdc/api/v2/changefeed.go` `deleteChangefeed` waits for that, up to about a minute).
//!
//! Creation is not idempotent on the server, so `ensure` reads first and treats "already exists"
//! as success: restarting the stack must never fail (or kill TiCDC) because the changefeed exists.
//!
//! `normal` alone proves little: TiCDC writes it at creation, and an existing changefeed whose
//! sink is dead still reads `normal` until the owner's next tick. `ensure` therefore reads a TSO
//! when it starts and waits until the checkpoint has passed it.
//!
//! A `failed` changefeed never resumes by itself (tiflow `cdc/owner/feed_state_manager.go`
//! `HandleError`: the GC fast-fail codes of `pkg/errors/helper.go` `ChangeFeedGCFastFailError`
//! — `ErrGCTTLExceeded`, `ErrSnapshotLostByGC`, `ErrStartTsBeforeGC` — and unretryable errors set
//! state `failed` and stop it). `--if-unrecoverable` says what to do: `fail` ends with exit
//! status [`EXIT_UNRECOVERABLE`], which the stack's units do not retry; `recreate` deletes and
//! recreates a changefeed whose data was lost to GC, from now.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::event::{Protocol, tso_physical_ms};

/// `error_code` of a GET for an unknown changefeed.
pub const ERR_NOT_EXISTS: &str = "CDC:ErrChangeFeedNotExists";
/// `error_code` of a POST for an existing changefeed id.
pub const ERR_ALREADY_EXISTS: &str = "CDC:ErrChangeFeedAlreadyExists";

/// Error codes that mean the changefeed's data was (or is about to be) garbage-collected: no
/// resume can bring it back (tiflow `pkg/errors/helper.go` `ChangeFeedGCFastFailError`; texts in
/// `pkg/errors/cdc_errors.go`; raised by `pkg/txnutil/gc/gc_manager.go` `CheckStaleCheckpointTs`).
/// The owner stores them as `RunningError.code` (`cdc/owner/changefeed.go` `handleErr`), and the
/// v2 API shows them as `error.code` of a `failed` changefeed.
pub const GC_LOST_CODES: [&str; 3] = [
    "CDC:ErrGCTTLExceeded",
    "CDC:ErrSnapshotLostByGC",
    "CDC:ErrStartTsBeforeGC",
];

/// Exit status of `cdcmon changefeed ensure` for a changefeed that cannot resume. The stack's
/// units list it in `RestartPreventExitStatus=`: retrying every few seconds fixes nothing.
pub const EXIT_UNRECOVERABLE: u8 = 3;

/// What `ensure` does with a changefeed that cannot resume (state `failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IfUnrecoverable {
    /// One error line and exit status 3: an operator decides.
    Fail,
    /// For a changefeed failed by GC (`ErrGCTTLExceeded`, `ErrSnapshotLostByGC`,
    /// `ErrStartTsBeforeGC`): delete it and create it again from now. Changes made while it was
    /// down are NOT replicated. Other failures still end with exit status 3.
    Recreate,
}

/// Flags of `cdcmon changefeed ensure`.
#[derive(Debug, Clone, clap::Args)]
pub struct ChangefeedEnsureArgs {
    /// TiCDC server (OpenAPI v2) base URL.
    #[arg(
        long,
        env = "CDCMON_TICDC_URL",
        default_value = crate::defaults::TICDC_URL
    )]
    pub ticdc_url: String,
    /// Changefeed id (`^[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*$`).
    #[arg(long, env = "CDCMON_CHANGEFEED_ID", default_value = crate::defaults::CHANGEFEED_ID)]
    pub changefeed_id: String,
    /// Sink URI as TiCDC sees it. Default: the stack's Kafka topic with --protocol, i.e.
    /// kafka://127.0.0.1:9092/app_cdc?protocol=canal-json&enable-tidb-extension=true&partition-num=1&replication-factor=1&max-message-bytes=1048576
    #[arg(long, env = "CDCMON_SINK_URI")]
    pub sink_uri: Option<String>,
    /// Protocol of the default sink URI (ignored with --sink-uri): canal-json, open-protocol,
    /// debezium, simple, avro (needs --schema-registry; one topic per table, see --topic-rule).
    #[arg(long, env = "CDCMON_SINK_PROTOCOL", default_value = "canal-json", value_parser = parse_protocol)]
    pub protocol: Protocol,
    /// Confluent schema registry as TiCDC reaches it, for an avro sink (the changefeed's
    /// `sink.schema_registry`, what `cdc cli changefeed create --schema-registry` sets).
    #[arg(long, env = "CDCMON_SCHEMA_REGISTRY")]
    pub schema_registry: Option<String>,
    /// Topic dispatcher of an avro sink (default tidb_{schema}_{table}): Avro puts one table per
    /// topic, so the rule must contain `{schema}` and `{table}` (TiCDC refuses anything else).
    /// Consume them with `cdcmon consume --topic '^tidb_app_.*'`. Ignored, with a warning, for
    /// other protocols.
    // No clap default_value: `None` tells "not given" from "given", so a rule given for a
    // protocol that ignores it is reported (audit B2 #9).
    #[arg(long, env = "CDCMON_TOPIC_RULE")]
    pub topic_rule: Option<String>,
    /// TiCDC row-checksum integrity check (`integrity.integrity_check_level`): `none` or
    /// `correctness` (simple and avro then carry TiDB's row checksums; TiDB also needs
    /// `tidb_enable_row_level_checksum = ON`).
    #[arg(long, env = "CDCMON_INTEGRITY_CHECK_LEVEL", value_enum, default_value_t = IntegrityCheckLevel::None)]
    pub integrity_check_level: IntegrityCheckLevel,
    /// What TiCDC does when its own checksum check fails (`integrity.corruption_handle_level`):
    /// `warn` (flag the event `corrupted` and send it) or `error` (stop the changefeed).
    #[arg(long, env = "CDCMON_CORRUPTION_HANDLE_LEVEL", value_enum, default_value_t = CorruptionHandleLevel::Warn)]
    pub corruption_handle_level: CorruptionHandleLevel,
    /// Table filter rules of the changefeed (TiDB table-filter syntax), comma-separated.
    #[arg(
        long = "filter-rule",
        env = "CDCMON_FILTER_RULES",
        value_delimiter = ',',
        default_value = "app.*"
    )]
    pub filter_rules: Vec<String>,
    /// How long to wait for TiCDC to be healthy and the changefeed to be `normal` with its
    /// checkpoint past the TSO read at start, in seconds.
    #[arg(long, env = "CDCMON_WAIT_TIMEOUT_SECS", default_value_t = 180)]
    pub wait_timeout_secs: u64,
    /// What to do with a changefeed that cannot resume (state `failed`): `fail` (exit status 3,
    /// not retried by the stack's units) or `recreate` (only for data lost to GC: delete it and
    /// create it again from now; changes made in the gap are lost).
    #[arg(
        long,
        env = "CDCMON_CHANGEFEED_IF_UNRECOVERABLE",
        value_enum,
        default_value_t = IfUnrecoverable::Fail
    )]
    pub if_unrecoverable: IfUnrecoverable,
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    Protocol::from_name(s).ok_or_else(|| {
        format!(
            "unknown protocol {s:?}: expected canal-json, open-protocol, debezium, simple or avro"
        )
    })
}

/// The avro topic dispatcher `ensure` sets by default: `tidb_app_orders` for table `app.orders`.
pub const DEFAULT_AVRO_TOPIC_RULE: &str = "tidb_{schema}_{table}";

/// `integrity.integrity_check_level` (tiflow `pkg/integrity/integrity.go` `CheckLevelNone`,
/// `CheckLevelCorrectness`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntegrityCheckLevel {
    /// No row checksums (TiCDC's default).
    None,
    /// TiCDC verifies TiDB's row checksum and sends it with every row (simple, avro).
    Correctness,
}

/// `integrity.corruption_handle_level` (tiflow `pkg/integrity/integrity.go`
/// `CorruptionHandleLevelWarn`, `CorruptionHandleLevelError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CorruptionHandleLevel {
    /// Log it, flag the event `corrupted`, send it anyway (TiCDC's default).
    Warn,
    /// Log it and stop the changefeed.
    Error,
}

/// Whether `rule` is a topic expression TiCDC accepts for avro: tiflow
/// `cdc/sink/dmlsink/mq/dispatcher/topic/expression.go:39-41` `avroTopicNameRE`
/// `^[A-Za-z0-9\._\-]*\{schema\}[A-Za-z0-9\._\-]*\{table\}[A-Za-z0-9\._\-]*$`
/// (`ValidateForAvro`, called by `dispatcher/event_router.go:263-275` for protocol avro).
pub fn is_avro_topic_rule(rule: &str) -> bool {
    let literal = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    let Some((prefix, rest)) = rule.split_once("{schema}") else {
        return false;
    };
    let Some((middle, suffix)) = rest.split_once("{table}") else {
        return false;
    };
    literal(prefix) && literal(middle) && literal(suffix)
}

/// The value of query parameter `name` in a sink URI (no percent-decoding: the names and values
/// `ensure` checks are plain words).
pub fn sink_uri_param<'a>(uri: &'a str, name: &str) -> Option<&'a str> {
    let query = uri.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// `scheme://user:pass@host` → `scheme://***@host`, for logs and errors.
pub fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

/// Sink-URI parameters of the stack's avro changefeed (tiflow `pkg/sink/codec/common/config.go`):
/// `enable-tidb-extension` adds `_tidb_op` (without it an update cannot be told from an
/// insert) and the commit ts; DECIMAL and BIGINT UNSIGNED as strings, exact, and required with
/// row checksums (`config.go:386-396` rejects avro + integrity without all three). Not
/// `avro-enable-watermark`: TiCDC marks it "only used for internal testing" (`config.go:58-62,
/// 161-164`), so an avro changefeed sends no watermarks and no DDL.
pub const AVRO_URI_PARAMS: &str = "&enable-tidb-extension=true&avro-decimal-handling-mode=string&avro-bigint-unsigned-handling-mode=string";

/// The stack's default sink URI for `protocol`.
///
/// `enable-tidb-extension` only for canal-json (commitTs and watermarks) and debezium
/// (watermarks in the new architecture, pingcap/ticdc `pkg/sink/codec/debezium/encoder.go`;
/// classic TiCDC's debezium encoder sends none with or without it, tiflow
/// `pkg/sink/codec/debezium/encoder.go`); classic TiCDC logs a warning and ignores it for the others
/// (pingcap/tiflow `pkg/sink/codec/common/config.go` `Validate`).
pub fn default_sink_uri(protocol: Protocol) -> String {
    let extension = match protocol {
        Protocol::CanalJson | Protocol::Debezium => "&enable-tidb-extension=true",
        Protocol::OpenProtocol | Protocol::Simple => "",
        // The registry goes in `replica_config.sink.schema_registry`, not here (the URI is logged
        // and compared; a registry URL may carry a password). See AVRO_URI_PARAMS.
        Protocol::Avro => AVRO_URI_PARAMS,
    };
    format!(
        "kafka://{}/{}?protocol={}{extension}&partition-num=1&replication-factor=1&max-message-bytes=1048576",
        crate::defaults::SINK_BROKER,
        crate::defaults::TOPIC,
        protocol.as_str()
    )
}

// ---------------------------------------------------------------------------------------------
// Wire types
// ---------------------------------------------------------------------------------------------

/// `POST /api/v2/changefeeds` body (`ChangefeedConfig`). The replica configuration goes in
/// `replica_config`: a field named `config` is silently ignored by the server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CreateChangefeed {
    pub changefeed_id: String,
    pub sink_uri: String,
    pub replica_config: ReplicaConfig,
}

/// The part of `replica_config` we set; everything else keeps TiCDC's defaults: the server
/// decodes the body into `GetDefaultReplicaConfig()` (tiflow `cdc/api/v2/changefeed.go`
/// `createChangefeed`), so an absent field or object stays at its default.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplicaConfig {
    pub filter: FilterConfig,
    /// Skip tables without a primary key or not-null unique key instead of refusing the
    /// changefeed (`CDC:ErrTableIneligible`).
    pub ignore_ineligible_table: bool,
    /// Only for avro (registry + topic dispatcher).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<SinkConfig>,
    /// Only when not TiCDC's default (`none` / `warn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<IntegrityConfig>,
}

/// `replica_config.sink` (tiflow `cdc/api/v2/model.go` `SinkConfig`: `schema_registry`,
/// `dispatchers`; the same names in pingcap/ticdc `api/v2/model.go`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct SinkConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dispatchers: Vec<DispatchRule>,
}

/// One `sink.dispatchers` entry (tiflow `model.go` `DispatchRule`: `matcher`, `topic`; the
/// partition dispatcher stays TiCDC's default).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct DispatchRule {
    #[serde(default)]
    pub matcher: Vec<String>,
    #[serde(default)]
    pub topic: String,
}

/// `replica_config.integrity` (tiflow `model.go` `IntegrityConfig`: `integrity_check_level`,
/// `corruption_handle_level` — the v2 API's names; the internal `integrity.Config` uses
/// hyphens, which the API does not read).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct IntegrityConfig {
    pub integrity_check_level: IntegrityCheckLevel,
    pub corruption_handle_level: CorruptionHandleLevel,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FilterConfig {
    pub rules: Vec<String>,
}

impl CreateChangefeed {
    pub fn new(id: &str, sink_uri: &str, rules: &[String]) -> Self {
        CreateChangefeed {
            changefeed_id: id.to_owned(),
            sink_uri: sink_uri.to_owned(),
            replica_config: ReplicaConfig {
                filter: FilterConfig {
                    rules: rules.to_vec(),
                },
                ignore_ineligible_table: true,
                sink: None,
                integrity: None,
            },
        }
    }

    /// An avro sink: one topic per table (`topic_rule` for the tables of the filter) and the
    /// registry (`None`: it is in the sink URI's `schema-registry=`, which TiCDC also reads,
    /// tiflow `pkg/sink/codec/common/config.go:214-216`). tiflow routes a row by the first
    /// dispatcher whose matcher matches, then by an implicit `*.*` rule to the sink URI's
    /// topic (`cdc/sink/dmlsink/mq/dispatcher/event_router.go:43-53`).
    pub fn with_avro(mut self, schema_registry: Option<&str>, topic_rule: &str) -> Self {
        let matcher = self.replica_config.filter.rules.clone();
        self.replica_config.sink = Some(SinkConfig {
            schema_registry: schema_registry.map(str::to_owned),
            dispatchers: vec![DispatchRule {
                matcher,
                topic: topic_rule.to_owned(),
            }],
        });
        self
    }

    /// The integrity config, sent only when it is not TiCDC's default.
    pub fn with_integrity(
        mut self,
        check: IntegrityCheckLevel,
        handle: CorruptionHandleLevel,
    ) -> Self {
        let config = IntegrityConfig {
            integrity_check_level: check,
            corruption_handle_level: handle,
        };
        self.replica_config.integrity = (config != IntegrityConfig::DEFAULT).then_some(config);
        self
    }

    /// The request `cdcmon changefeed ensure` sends for `args`, or why TiCDC would refuse it.
    pub fn from_args(args: &ChangefeedEnsureArgs) -> anyhow::Result<Self> {
        let sink_uri = args
            .sink_uri
            .clone()
            .unwrap_or_else(|| default_sink_uri(args.protocol));
        // With --sink-uri the URI's own `protocol=` decides, not --protocol. TiCDC lower-cases
        // it (tiflow pkg/config/sink_protocol.go:52 `strings.ToLower(protocol)` @ release-8.5).
        let protocol = sink_uri_param(&sink_uri, "protocol")
            .unwrap_or("")
            .to_ascii_lowercase();
        let protocol = protocol.as_str();
        let topic_rule = args
            .topic_rule
            .as_deref()
            .unwrap_or(DEFAULT_AVRO_TOPIC_RULE);
        let registry = args.schema_registry.as_deref().filter(|r| !r.is_empty());
        let mut request = CreateChangefeed::new(&args.changefeed_id, &sink_uri, &args.filter_rules);
        if protocol == Protocol::Avro.as_str() {
            let in_uri =
                sink_uri_param(&sink_uri, "schema-registry").is_some_and(|v| !v.is_empty());
            if registry.is_none() && !in_uri {
                // TiCDC would refuse it too (config.go:358-364), with a less direct message.
                return Err(refused(
                    "protocol avro needs a schema registry: set --schema-registry (env CDCMON_SCHEMA_REGISTRY) to the registry URL as TiCDC reaches it".to_owned(),
                ));
            }
            if !is_avro_topic_rule(topic_rule) {
                return Err(refused(format!(
                    "--topic-rule {topic_rule:?} is not valid for avro: it must contain {{schema}} then {{table}} with only [A-Za-z0-9._-] around them, e.g. {DEFAULT_AVRO_TOPIC_RULE}"
                )));
            }
            request = request.with_avro(registry, topic_rule);
        } else {
            if let Some(registry) = registry {
                return Err(refused(format!(
                    "--schema-registry {} is only for protocol avro, but the sink URI says protocol={protocol}",
                    redact_userinfo(registry)
                )));
            }
            if let Some(rule) = &args.topic_rule {
                tracing::warn!(
                    protocol,
                    topic_rule = %rule,
                    "--topic-rule is only used for protocol avro; ignored (every table goes to the sink URI's topic)"
                );
            }
        }
        if args.integrity_check_level == IntegrityCheckLevel::Correctness {
            if protocol == Protocol::Avro.as_str() {
                // tiflow pkg/sink/codec/common/config.go:386-396.
                for (name, want) in [
                    ("enable-tidb-extension", "true"),
                    ("avro-decimal-handling-mode", "string"),
                    ("avro-bigint-unsigned-handling-mode", "string"),
                ] {
                    let have = sink_uri_param(&sink_uri, name);
                    // enable-tidb-extension is a Go bool bound by gin's form binding
                    // (strconv.ParseBool); the handling modes are compared as written
                    // (tiflow pkg/sink/codec/common/config.go:157-162, 391 @ release-8.5).
                    let ok = if want == "true" {
                        have.and_then(parse_go_bool) == Some(true)
                    } else {
                        have == Some(want)
                    };
                    if !ok {
                        return Err(refused(format!(
                            "avro with --integrity-check-level correctness needs {name}={want} in the sink URI (TiCDC refuses the changefeed otherwise)"
                        )));
                    }
                }
            } else if protocol != Protocol::Simple.as_str() {
                tracing::warn!(
                    protocol,
                    "integrity-check-level correctness: only the simple and avro protocols carry TiDB's row checksum, so cdcmon verifies none on this sink"
                );
            }
        }
        Ok(request.with_integrity(args.integrity_check_level, args.corruption_handle_level))
    }

    /// How an existing changefeed's configuration differs from this request, one line per
    /// field (`ensure` reports them and changes nothing).
    pub fn differences(&self, existing: &ChangefeedInfo) -> Vec<String> {
        let mut out = Vec::new();
        if !existing.sink_uri.is_empty() && existing.sink_uri != self.sink_uri {
            out.push(format!(
                "sink URI {:?}, requested {:?}",
                existing.sink_uri, self.sink_uri
            ));
        }
        // Without `config` (an old server, a partial answer) nothing more can be compared.
        let Some(config) = &existing.config else {
            return out;
        };
        let want_sink = self.replica_config.sink.clone().unwrap_or_default();
        let none = || "none".to_owned();
        let want_registry = want_sink
            .schema_registry
            .as_deref()
            .filter(|r| !r.is_empty())
            .map_or_else(none, redact_userinfo);
        let have_registry = config
            .pointer("/sink/schema_registry")
            .and_then(|v| v.as_str())
            .filter(|r| !r.is_empty())
            .map_or_else(none, redact_userinfo);
        if want_registry != have_registry {
            out.push(format!(
                "schema registry {have_registry}, requested {want_registry}"
            ));
        }
        // Each dispatcher as (matcher, topic): a changed matcher routes other tables to the
        // rule's topics just as a changed topic does (audit B2 #9).
        let want_rules: Vec<(Vec<String>, String)> = want_sink
            .dispatchers
            .iter()
            .filter(|r| !r.topic.is_empty())
            .map(|r| (r.matcher.clone(), r.topic.clone()))
            .collect();
        let have_rules: Vec<(Vec<String>, String)> = config
            .pointer("/sink/dispatchers")
            .and_then(|v| v.as_array())
            .map(|rules| {
                rules
                    .iter()
                    .filter_map(|r| {
                        let topic = r.get("topic").and_then(|t| t.as_str())?;
                        let matcher = r
                            .get("matcher")
                            .and_then(|m| m.as_array())
                            .map(|m| {
                                m.iter()
                                    .filter_map(|x| x.as_str().map(str::to_owned))
                                    .collect()
                            })
                            .unwrap_or_default();
                        (!topic.is_empty()).then(|| (matcher, topic.to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if want_rules != have_rules {
            let show = |rules: &[(Vec<String>, String)]| {
                rules
                    .iter()
                    .map(|(m, t)| format!("{m:?} -> {t}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.push(format!(
                "topic dispatchers [{}], requested [{}]",
                show(&have_rules),
                show(&want_rules)
            ));
        }
        let want = self
            .replica_config
            .integrity
            .unwrap_or(IntegrityConfig::DEFAULT);
        let level = |name: &str, default: &'static str| {
            config
                .pointer(&format!("/integrity/{name}"))
                .and_then(|v| v.as_str())
                .unwrap_or(default)
                .to_owned()
        };
        let have_check = level("integrity_check_level", "none");
        let have_handle = level("corruption_handle_level", "warn");
        if have_check != want.integrity_check_level.as_str()
            || have_handle != want.corruption_handle_level.as_str()
        {
            out.push(format!(
                "integrity {have_check}/{have_handle}, requested {}/{}",
                want.integrity_check_level.as_str(),
                want.corruption_handle_level.as_str()
            ));
        }
        out
    }
}

impl IntegrityConfig {
    /// TiCDC's default (`pkg/config/replica_config.go` `defaultReplicaConfig`).
    pub const DEFAULT: IntegrityConfig = IntegrityConfig {
        integrity_check_level: IntegrityCheckLevel::None,
        corruption_handle_level: CorruptionHandleLevel::Warn,
    };
}

impl IntegrityCheckLevel {
    pub const fn as_str(self) -> &'static str {
        match self {
            IntegrityCheckLevel::None => "none",
            IntegrityCheckLevel::Correctness => "correctness",
        }
    }
}

impl CorruptionHandleLevel {
    pub const fn as_str(self) -> &'static str {
        match self {
            CorruptionHandleLevel::Warn => "warn",
            CorruptionHandleLevel::Error => "error",
        }
    }
}

/// `{"error_msg","error_code"}`, TiCDC's error body for every endpoint.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ApiErrorBody {
    pub error_msg: String,
    #[serde(default)]
    pub error_code: String,
}

/// A changefeed's running error (`RunningError`: `time`, `addr`, `code`, `message`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Default)]
pub struct RunningError {
    #[serde(default)]
    pub addr: String,
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

impl std::fmt::Display for RunningError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}", self.message, self.code)?;
        if !self.addr.is_empty() {
            write!(f, ", capture {}", self.addr)?;
        }
        f.write_str(")")
    }
}

/// The fields of `ChangeFeedInfo` (GET one / POST answer) that `ensure` and `smoke` use.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ChangefeedInfo {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub sink_uri: String,
    /// `normal`, `pending`, `warning`, `failed`, `stopped`, `removed`, `finished` (older docs
    /// also `error`); empty while uninitialized.
    #[serde(default)]
    pub state: String,
    /// The checkpoint TSO. GET-one names it `checkpoint_ts`, the list endpoint `checkpoint_tso`.
    #[serde(default, alias = "checkpoint_tso")]
    pub checkpoint_ts: u64,
    /// Formatted in the TiCDC server's local time zone without an offset: display only.
    #[serde(default)]
    pub checkpoint_time: Option<String>,
    #[serde(default)]
    pub error: Option<RunningError>,
    /// The changefeed's replica config as TiCDC shows it (tiflow `model.go` `ChangeFeedInfo.Config`,
    /// filled by `toAPIModel` from `ToAPIReplicaConfig`), kept as JSON: `ensure` only compares a
    /// few fields, and a value it does not know must not make the whole answer unreadable.
    #[serde(default)]
    pub config: Option<serde_json::Value>,
}

/// `POST /api/v2/tso` answer (tiflow `cdc/api/v2/model.go` `Tso`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct Tso {
    /// PD's physical time, ms since the epoch.
    pub timestamp: i64,
    pub logic_time: i64,
}

impl Tso {
    /// The composed TSO, `physical << 18 | logical`, as `checkpoint_ts` is written.
    pub fn composed(&self) -> u64 {
        ((self.timestamp.max(0) as u64) << 18) | (self.logic_time.max(0) as u64 & ((1 << 18) - 1))
    }
}

impl ChangefeedInfo {
    /// `failed` with one of [`GC_LOST_CODES`]: the data between the checkpoint and now is gone.
    pub fn lost_to_gc(&self) -> bool {
        self.state == "failed"
            && self
                .error
                .as_ref()
                .is_some_and(|e| GC_LOST_CODES.contains(&e.code.as_str()))
    }

    /// Checkpoint lag in ms from `checkpoint_ts` (`now - (tso >> 18)`), never from
    /// `checkpoint_time`, whose time zone is unknown. `None` before the first checkpoint.
    pub fn checkpoint_lag_ms(&self, now_ms: i64) -> Option<i64> {
        (self.checkpoint_ts > 0).then(|| now_ms - tso_physical_ms(self.checkpoint_ts))
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What a failed TiCDC call looked like.
#[derive(Debug, thiserror::Error)]
pub enum TicdcError {
    /// TiCDC answered with its error body.
    #[error("TiCDC {method} {path} answered HTTP {status}: {} ({})", .body.error_msg, .body.error_code)]
    Api {
        method: &'static str,
        path: String,
        status: u16,
        body: ApiErrorBody,
    },
    /// An answer that is neither the expected shape nor an error body.
    #[error("TiCDC {method} {path} answered HTTP {status} with an unexpected body: {snippet}")]
    Unexpected {
        method: &'static str,
        path: String,
        status: u16,
        snippet: String,
    },
    /// No answer at all.
    #[error("cannot reach TiCDC at {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

/// A changefeed that cannot resume without an operator: `ensure` exits with
/// [`EXIT_UNRECOVERABLE`] (see [`exit_code`]).
#[derive(Debug, thiserror::Error)]
#[error("{description}; {advice}")]
pub struct Unrecoverable {
    pub description: String,
    pub advice: &'static str,
}

/// A changefeed configuration `ensure` refuses before calling TiCDC: running it again cannot
/// help, so it exits with [`EXIT_UNRECOVERABLE`] like [`Unrecoverable`] and the stack's retry
/// loop (modules/ticdc.nix, `-eq 3 ] && exit 3`) stops instead of retrying forever.
#[derive(Debug, thiserror::Error)]
#[error("refused changefeed configuration: {0}")]
pub struct ConfigRefused(pub String);

fn refused(reason: String) -> anyhow::Error {
    ConfigRefused(reason).into()
}

/// Go's `strconv.ParseBool`: 1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False
/// (go/src/strconv/atob.go); anything else is no bool.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The process exit status for an error of `cdcmon changefeed ensure`: 3 for [`Unrecoverable`]
/// or [`ConfigRefused`] anywhere in the chain, else 1.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(|e| {
        e.downcast_ref::<Unrecoverable>().is_some() || e.downcast_ref::<ConfigRefused>().is_some()
    }) {
        EXIT_UNRECOVERABLE
    } else {
        1
    }
}

fn unrecoverable(id: &str, info: &ChangefeedInfo, policy: IfUnrecoverable) -> Unrecoverable {
    let advice = match (info.lost_to_gc(), policy) {
        (true, IfUnrecoverable::Fail) => {
            "its data was garbage-collected, so it can never resume: recreate it (changes since its checkpoint are lost), e.g. with --if-unrecoverable recreate"
        }
        (true, IfUnrecoverable::Recreate) => {
            "it failed again after being recreated: check TiCDC's log"
        }
        (false, _) => {
            "it will not resume by itself: fix the cause and run `cdc cli changefeed resume` (--if-unrecoverable recreate only recreates changefeeds lost to GC)"
        }
    };
    Unrecoverable {
        description: describe_bad_state(id, info),
        advice,
    }
}

impl TicdcError {
    pub fn error_code(&self) -> Option<&str> {
        match self {
            TicdcError::Api { body, .. } => Some(&body.error_code),
            _ => None,
        }
    }
}

/// Result of [`TicdcClient::create_changefeed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Created(Box<ChangefeedInfo>),
    /// Someone (an earlier run, another node) created it first: as good as created.
    AlreadyExisted,
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// A small TiCDC OpenAPI v2 client.
#[derive(Debug, Clone)]
pub struct TicdcClient {
    base: String,
    http: reqwest::Client,
}

fn snippet(body: &str) -> String {
    let trimmed = body.trim();
    match trimmed.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", trimmed.get(..cut).unwrap_or("")),
        None => trimmed.to_owned(),
    }
}

impl TicdcClient {
    /// `base` like `http://127.0.0.1:8300` (a trailing `/` is fine).
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(TicdcClient {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call<B: Serialize>(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&B>,
    ) -> Result<(u16, String), TicdcError> {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "POST" => self.http.post(&url),
            // The server waits for the owner to remove the changefeed (up to about a minute).
            "DELETE" => self.http.delete(&url).timeout(Duration::from_secs(90)),
            _ => self.http.get(&url),
        };
        let req = match body {
            Some(b) => req.json(b),
            None => req,
        };
        let resp = req.send().await.map_err(|source| TicdcError::Transport {
            url: url.clone(),
            source,
        })?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|source| TicdcError::Transport { url, source })?;
        Ok((status, text))
    }

    fn error(method: &'static str, path: &str, status: u16, text: &str) -> TicdcError {
        match serde_json::from_str::<ApiErrorBody>(text) {
            Ok(body) => TicdcError::Api {
                method,
                path: path.to_owned(),
                status,
                body,
            },
            Err(_) => TicdcError::Unexpected {
                method,
                path: path.to_owned(),
                status,
                snippet: snippet(text),
            },
        }
    }

    /// `GET /api/v2/health`: `Ok` on 200.
    pub async fn health(&self) -> Result<(), TicdcError> {
        let path = "/api/v2/health";
        let (status, text) = self.call::<()>("GET", path, None).await?;
        if status == 200 {
            Ok(())
        } else {
            Err(Self::error("GET", path, status, &text))
        }
    }

    /// `GET /api/v2/changefeeds/{id}`: `None` when TiCDC says `CDC:ErrChangeFeedNotExists`.
    pub async fn get_changefeed(&self, id: &str) -> Result<Option<ChangefeedInfo>, TicdcError> {
        let path = format!("/api/v2/changefeeds/{id}");
        let (status, text) = self.call::<()>("GET", &path, None).await?;
        if status == 200 {
            return serde_json::from_str(&text)
                .map(Some)
                .map_err(|_| TicdcError::Unexpected {
                    method: "GET",
                    path,
                    status,
                    snippet: snippet(&text),
                });
        }
        let err = Self::error("GET", &path, status, &text);
        if err.error_code() == Some(ERR_NOT_EXISTS) {
            return Ok(None);
        }
        Err(err)
    }

    /// `POST /api/v2/changefeeds`. "Already exists" (HTTP 500 classic, 400 new architecture)
    /// is [`Created::AlreadyExisted`], not an error.
    pub async fn create_changefeed(&self, req: &CreateChangefeed) -> Result<Created, TicdcError> {
        let path = "/api/v2/changefeeds";
        let (status, text) = self.call("POST", path, Some(req)).await?;
        if status == 200 {
            return serde_json::from_str(&text)
                .map(|info| Created::Created(Box::new(info)))
                .map_err(|_| TicdcError::Unexpected {
                    method: "POST",
                    path: path.to_owned(),
                    status,
                    snippet: snippet(&text),
                });
        }
        let err = Self::error("POST", path, status, &text);
        if err.error_code() == Some(ERR_ALREADY_EXISTS) {
            return Ok(Created::AlreadyExisted);
        }
        Err(err)
    }

    /// `POST /api/v2/tso`: a fresh TSO from the upstream PD.
    pub async fn query_tso(&self) -> Result<Tso, TicdcError> {
        let path = "/api/v2/tso";
        let (status, text) = self
            .call("POST", path, Some(&serde_json::json!({})))
            .await?;
        if status == 200 {
            return serde_json::from_str(&text).map_err(|_| TicdcError::Unexpected {
                method: "POST",
                path: path.to_owned(),
                status,
                snippet: snippet(&text),
            });
        }
        Err(Self::error("POST", path, status, &text))
    }

    /// `DELETE /api/v2/changefeeds/{id}`; TiCDC answers 200 `{}` also when it did not exist.
    pub async fn delete_changefeed(&self, id: &str) -> Result<(), TicdcError> {
        let path = format!("/api/v2/changefeeds/{id}");
        let (status, text) = self.call::<()>("DELETE", &path, None).await?;
        if status == 200 {
            return Ok(());
        }
        Err(Self::error("DELETE", &path, status, &text))
    }

    /// Poll the health endpoint until it answers 200 or `deadline` passes; logs every attempt.
    pub async fn wait_healthy(&self, deadline: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut backoff = Duration::from_millis(200);
        let mut attempt = 1u32;
        loop {
            match self.health().await {
                Ok(()) => {
                    tracing::info!(url = %self.base, attempt, "TiCDC is healthy");
                    return Ok(());
                }
                Err(err) => {
                    let elapsed = start.elapsed();
                    if elapsed >= deadline {
                        return Err(err).with_context(|| {
                            format!(
                                "TiCDC at {} not healthy after {attempt} attempts in {:.1} s",
                                self.base,
                                elapsed.as_secs_f64()
                            )
                        });
                    }
                    let wait = backoff.min(deadline - elapsed);
                    tracing::warn!(
                        attempt,
                        error = %err,
                        retry_in_ms = wait.as_millis() as u64,
                        left_s = (deadline - elapsed).as_secs(),
                        "TiCDC not healthy yet"
                    );
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    attempt += 1;
                }
            }
        }
    }

    /// Poll the changefeed until it is `normal` and, with `min_checkpoint`, its checkpoint has
    /// reached that TSO (proof that it replicates now, not just that it was created).
    /// `failed` ends the wait with [`Unrecoverable`]; `error` (older TiCDC), `stopped`,
    /// `removed` and `finished`, which no waiting fixes either, with the changefeed's own error;
    /// `pending`, `warning` and an empty state are transient and keep it going.
    pub async fn wait_normal(
        &self,
        id: &str,
        min_checkpoint: Option<u64>,
        deadline: Duration,
        poll: Duration,
    ) -> anyhow::Result<ChangefeedInfo> {
        match self
            .wait_normal_or_failed(id, min_checkpoint, deadline, poll)
            .await?
        {
            Settled::Normal(info) => Ok(info),
            Settled::Failed(info) => Err(unrecoverable(id, &info, IfUnrecoverable::Fail).into()),
        }
    }

    /// [`Self::wait_normal`], but a `failed` changefeed is handed back for the caller's policy.
    async fn wait_normal_or_failed(
        &self,
        id: &str,
        min_checkpoint: Option<u64>,
        deadline: Duration,
        poll: Duration,
    ) -> anyhow::Result<Settled> {
        let start = Instant::now();
        loop {
            let last;
            match self.get_changefeed(id).await {
                Ok(Some(info)) => match info.state.as_str() {
                    "normal" => match min_checkpoint {
                        Some(tso) if info.checkpoint_ts < tso => {
                            last = format!(
                                "changefeed {id} is normal but its checkpoint_ts {} ({}) has not reached TSO {tso} ({}), read when the wait began: is its sink (Kafka) reachable from TiCDC? See TiCDC's log",
                                info.checkpoint_ts,
                                describe_tso(info.checkpoint_ts),
                                describe_tso(tso)
                            );
                            tracing::info!(
                                changefeed = id,
                                checkpoint_ts = info.checkpoint_ts,
                                wanted = tso,
                                "normal, waiting for the checkpoint to pass the start TSO"
                            );
                        }
                        _ => return Ok(Settled::Normal(info)),
                    },
                    "failed" => return Ok(Settled::Failed(info)),
                    "error" | "stopped" | "removed" | "finished" => {
                        bail!("{}", describe_bad_state(id, &info));
                    }
                    state => {
                        last = describe_bad_state(id, &info);
                        tracing::info!(changefeed = id, state, error = ?info.error, "waiting for state normal");
                    }
                },
                Ok(None) => {
                    last = format!("changefeed {id} does not exist");
                    tracing::warn!(changefeed = id, "changefeed not found while waiting");
                }
                Err(err) => {
                    last = err.to_string();
                    tracing::warn!(changefeed = id, error = %err, "cannot read the changefeed");
                }
            }
            let elapsed = start.elapsed();
            if elapsed >= deadline {
                bail!(
                    "changefeed {id} not normal after {:.1} s: {last}",
                    elapsed.as_secs_f64()
                );
            }
            tokio::time::sleep(poll.min(deadline - elapsed)).await;
        }
    }
}

/// How a wait for `normal` ended, short of an error.
enum Settled {
    Normal(ChangefeedInfo),
    Failed(ChangefeedInfo),
}

/// `changefeed X is failed: <message> (<code>)`.
pub fn describe_bad_state(id: &str, info: &ChangefeedInfo) -> String {
    let state = if info.state.is_empty() {
        "uninitialized"
    } else {
        info.state.as_str()
    };
    match &info.error {
        Some(e) => format!("changefeed {id} is {state}: {e}"),
        None => format!("changefeed {id} is {state}"),
    }
}

/// A TSO's physical time as RFC 3339 UTC, for messages.
pub fn describe_tso(tso: u64) -> String {
    let mut out = Vec::with_capacity(24);
    crate::eventlog::write_rfc3339_ms(&mut out, tso_physical_ms(tso));
    String::from_utf8_lossy(&out).into_owned()
}

/// `checkpoint lag 1.2 s` (or `no checkpoint yet`).
pub fn describe_lag(info: &ChangefeedInfo, now_ms: i64) -> String {
    match info.checkpoint_lag_ms(now_ms) {
        Some(ms) => format!("checkpoint lag {:.1} s", ms as f64 / 1000.0),
        None => "no checkpoint yet".to_owned(),
    }
}

/// What `ensure` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnsureAction {
    AlreadyPresent,
    Created,
    CreatedConcurrently,
    /// It had failed for good (data lost to GC) and `--if-unrecoverable recreate` replaced it.
    Recreated,
}

async fn create(client: &TicdcClient, request: &CreateChangefeed) -> anyhow::Result<EnsureAction> {
    let id = request.changefeed_id.as_str();
    let sink = request.replica_config.sink.clone().unwrap_or_default();
    let integrity = request
        .replica_config
        .integrity
        .unwrap_or(IntegrityConfig::DEFAULT);
    tracing::info!(
        changefeed = id,
        sink_uri = %request.sink_uri,
        rules = ?request.replica_config.filter.rules,
        schema_registry = sink.schema_registry.as_deref().map(redact_userinfo),
        topic_rules = ?sink.dispatchers.iter().map(|d| d.topic.as_str()).collect::<Vec<_>>(),
        integrity_check_level = integrity.integrity_check_level.as_str(),
        corruption_handle_level = integrity.corruption_handle_level.as_str(),
        "creating changefeed"
    );
    Ok(
        match client
            .create_changefeed(request)
            .await
            .with_context(|| format!("cannot create changefeed {id}"))?
        {
            Created::Created(_) => EnsureAction::Created,
            Created::AlreadyExisted => {
                tracing::info!(
                    changefeed = id,
                    "created concurrently by someone else; using it"
                );
                EnsureAction::CreatedConcurrently
            }
        },
    )
}

/// The whole `ensure` flow: healthy → read a TSO → GET → POST if absent (or delete and POST
/// for a changefeed lost to GC under [`IfUnrecoverable::Recreate`]) → wait for `normal` with
/// the checkpoint past that TSO.
pub async fn ensure(
    client: &TicdcClient,
    request: &CreateChangefeed,
    policy: IfUnrecoverable,
    deadline: Duration,
    poll: Duration,
) -> anyhow::Result<(EnsureAction, ChangefeedInfo)> {
    let start = Instant::now();
    client.wait_healthy(deadline).await?;
    let id = request.changefeed_id.as_str();
    let start_tso = client
        .query_tso()
        .await
        .context("cannot read a TSO from TiCDC (POST /api/v2/tso)")?
        .composed();
    tracing::info!(changefeed = id, start_tso, at = %describe_tso(start_tso), "the checkpoint must pass this TSO");
    let action = match client
        .get_changefeed(id)
        .await
        .with_context(|| format!("cannot look up changefeed {id}"))?
    {
        Some(info) if info.state == "failed" => {
            recreate_or_fail(client, request, &info, policy).await?
        }
        Some(info) => {
            tracing::info!(changefeed = id, state = %info.state, "changefeed exists; not recreating it");
            // Changing a changefeed means pause → update → resume; `ensure` does not do that
            // behind the operator's back (the same for the sink URI, the registry, the topic
            // dispatcher and the integrity config): one warning per difference.
            for difference in request.differences(&info) {
                tracing::warn!(
                    changefeed = id,
                    difference = %difference,
                    "existing changefeed is configured differently; left unchanged (pause, `cdc cli changefeed update`, resume to change it)"
                );
            }
            EnsureAction::AlreadyPresent
        }
        None => create(client, request).await?,
    };
    let mut action = action;
    // At most one recreation per run, however the create went (ours or a concurrent one).
    let mut recreated = action == EnsureAction::Recreated;
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        match client
            .wait_normal_or_failed(id, Some(start_tso), left, poll)
            .await?
        {
            Settled::Normal(info) => return Ok((action, info)),
            // Failed while we waited: after downtime TiCDC first reads the `normal` stored
            // before it, and fails the changefeed for GC only at its next stale-checkpoint
            // check (tiflow `cdc/owner/changefeed.go` `tick`; pingcap/ticdc
            // `coordinator/coordinator.go` `checkStaleCheckpointTs`). The policy applies here
            // too, once: a changefeed that fails again after being recreated goes to a person.
            Settled::Failed(info) if !recreated => {
                action = recreate_or_fail(client, request, &info, policy).await?;
                recreated = true;
            }
            Settled::Failed(info) => {
                return Err(unrecoverable(id, &info, IfUnrecoverable::Recreate).into());
            }
        }
    }
}

/// A `failed` changefeed: under [`IfUnrecoverable::Recreate`] one lost to GC is deleted and
/// created again from now; anything else is [`Unrecoverable`].
async fn recreate_or_fail(
    client: &TicdcClient,
    request: &CreateChangefeed,
    info: &ChangefeedInfo,
    policy: IfUnrecoverable,
) -> anyhow::Result<EnsureAction> {
    let id = request.changefeed_id.as_str();
    if !(info.lost_to_gc() && policy == IfUnrecoverable::Recreate) {
        return Err(unrecoverable(id, info, policy).into());
    }
    tracing::error!(
        changefeed = id,
        error = ?info.error,
        checkpoint_ts = info.checkpoint_ts,
        checkpoint = %describe_tso(info.checkpoint_ts),
        "RECREATING changefeed lost to GC (--if-unrecoverable recreate): every change to the replicated tables since its checkpoint is LOST and will never reach Kafka"
    );
    client
        .delete_changefeed(id)
        .await
        .with_context(|| format!("cannot delete the failed changefeed {id}"))?;
    Ok(match create(client, request).await? {
        EnsureAction::Created => EnsureAction::Recreated,
        other => other,
    })
}

/// Entry point of `cdcmon changefeed ensure`.
pub async fn run_ensure(args: ChangefeedEnsureArgs) -> anyhow::Result<()> {
    let request = CreateChangefeed::from_args(&args)?;
    let client = TicdcClient::new(&args.ticdc_url)?;
    let (action, info) = ensure(
        &client,
        &request,
        args.if_unrecoverable,
        Duration::from_secs(args.wait_timeout_secs),
        Duration::from_secs(1),
    )
    .await?;
    let what = match action {
        EnsureAction::AlreadyPresent => "already present",
        EnsureAction::Created => "created",
        EnsureAction::CreatedConcurrently => "created concurrently",
        EnsureAction::Recreated => "RECREATED from now (changes since the old checkpoint are lost)",
    };
    println!(
        "changefeed {} {what}, state {}, {} (checkpoint_ts {})",
        args.changefeed_id,
        info.state,
        describe_lag(&info, now_ms()),
        info.checkpoint_ts
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_uses_replica_config_not_config() {
        let req = CreateChangefeed::new("app-cdc", "kafka://k:9092/t", &["app.*".to_owned()]);
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "changefeed_id": "app-cdc",
                "sink_uri": "kafka://k:9092/t",
                "replica_config": {"filter": {"rules": ["app.*"]}, "ignore_ineligible_table": true}
            })
        );
        assert!(json.get("config").is_none());
    }

    #[test]
    fn default_sink_uri_per_protocol() {
        assert_eq!(
            default_sink_uri(Protocol::CanalJson),
            "kafka://127.0.0.1:9092/app_cdc?protocol=canal-json&enable-tidb-extension=true&partition-num=1&replication-factor=1&max-message-bytes=1048576"
        );
        assert!(default_sink_uri(Protocol::Debezium).contains("enable-tidb-extension=true"));
        let open = default_sink_uri(Protocol::OpenProtocol);
        assert!(
            open.contains("protocol=open-protocol&partition-num=1"),
            "{open}"
        );
        assert!(!default_sink_uri(Protocol::Simple).contains("tidb-extension"));
    }

    #[test]
    fn lag_comes_from_the_tso_not_the_formatted_time() {
        // TICDC.md §4: checkpoint_tso 439749918821711874 >> 18 = 1677512812888, printed by a
        // UTC+8 server as "2023-02-27 23:46:52.888".
        let info: ChangefeedInfo = serde_json::from_str(
            r#"{"id":"test","state":"normal","checkpoint_tso":439749918821711874,
                "checkpoint_time":"2023-02-27 23:46:52.888","error":null}"#,
        )
        .unwrap();
        assert_eq!(info.checkpoint_ts, 439749918821711874);
        assert_eq!(info.checkpoint_lag_ms(1677512812888 + 1200), Some(1200));
        assert_eq!(
            describe_lag(&info, 1677512812888 + 1200),
            "checkpoint lag 1.2 s"
        );
        let fresh = ChangefeedInfo {
            checkpoint_ts: 0,
            ..info
        };
        assert_eq!(fresh.checkpoint_lag_ms(5), None);
    }

    #[test]
    fn go_bools_are_parsed_like_strconv_parse_bool() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(t), Some(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(f), Some(false), "{f}");
        }
        for bad in ["", "yes", "tRUE", "on", " true"] {
            assert_eq!(parse_go_bool(bad), None, "{bad}");
        }
    }

    /// TiCDC lower-cases `protocol=` and binds `enable-tidb-extension` with strconv.ParseBool, so
    /// `protocol=AVRO&enable-tidb-extension=1` is an avro sink with the extension on (audit B2 #8).
    #[test]
    fn sink_uri_protocol_is_case_insensitive_and_bools_are_go_bools() {
        let uri = "kafka://k:9092/t?protocol=AVRO&enable-tidb-extension=1&avro-decimal-handling-mode=string&avro-bigint-unsigned-handling-mode=string";
        let args = ensure_args(&[
            &format!("--sink-uri={uri}"),
            "--schema-registry=http://registry:8081",
            "--integrity-check-level=correctness",
        ])
        .unwrap();
        let req = CreateChangefeed::from_args(&args).unwrap();
        let sink = req.replica_config.sink.expect("treated as avro");
        assert_eq!(sink.dispatchers[0].topic, DEFAULT_AVRO_TOPIC_RULE);
        // A value Go does not parse as true is still refused.
        let bad = uri.replace("enable-tidb-extension=1", "enable-tidb-extension=yes");
        let args = ensure_args(&[
            &format!("--sink-uri={bad}"),
            "--schema-registry=http://registry:8081",
            "--integrity-check-level=correctness",
        ])
        .unwrap();
        let err = CreateChangefeed::from_args(&args).unwrap_err();
        assert!(
            err.to_string().contains("enable-tidb-extension=true"),
            "{err}"
        );
    }

    /// Configuration refusals exit 3 (not retried by the stack's loop, audit B2 #5); a plain
    /// error stays 1.
    #[test]
    fn refused_configurations_exit_with_the_do_not_retry_status() {
        for extra in [
            &["--protocol=avro"][..],
            &[
                "--protocol=avro",
                "--schema-registry=http://r:8081",
                "--topic-rule=x",
            ],
            &["--schema-registry=http://r:8081"],
            &[
                "--sink-uri=kafka://k:9092/t?protocol=avro",
                "--schema-registry=http://r:8081",
                "--integrity-check-level=correctness",
            ],
        ] {
            let err = CreateChangefeed::from_args(&ensure_args(extra).unwrap()).unwrap_err();
            assert_eq!(exit_code(&err), EXIT_UNRECOVERABLE, "{extra:?}: {err}");
            let wrapped = err.context("changefeed ensure");
            assert_eq!(exit_code(&wrapped), EXIT_UNRECOVERABLE);
        }
        assert_eq!(exit_code(&anyhow::anyhow!("cannot reach TiCDC")), 1);
    }

    #[test]
    fn protocol_flag_rejects_auto() {
        assert!(parse_protocol("auto").is_err());
        assert_eq!(parse_protocol("simple"), Ok(Protocol::Simple));
        assert_eq!(parse_protocol("avro"), Ok(Protocol::Avro));
    }

    /// `cdcmon changefeed ensure ...` parsed by the real CLI definition.
    fn ensure_args(extra: &[&str]) -> Result<ChangefeedEnsureArgs, clap::Error> {
        use clap::Parser;
        let argv = ["cdcmon", "changefeed", "ensure"].iter().chain(extra);
        match crate::cli::Cli::try_parse_from(argv)?.command {
            crate::cli::Command::Changefeed(crate::cli::ChangefeedCommand::Ensure(args)) => {
                Ok(args)
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn avro_and_integrity_flags_parse_and_default_to_ticdc_defaults() {
        let args = ensure_args(&[]).unwrap();
        assert_eq!(args.protocol, Protocol::CanalJson);
        assert_eq!(args.schema_registry, None);
        assert_eq!(args.topic_rule, None, "not given: the avro default applies");
        assert_eq!(args.integrity_check_level, IntegrityCheckLevel::None);
        assert_eq!(args.corruption_handle_level, CorruptionHandleLevel::Warn);

        let args = ensure_args(&[
            "--protocol=avro",
            "--schema-registry=http://registry:8081",
            "--topic-rule=cdc_{schema}.{table}",
            "--integrity-check-level=correctness",
            "--corruption-handle-level=error",
        ])
        .unwrap();
        assert_eq!(args.protocol, Protocol::Avro);
        assert_eq!(
            args.schema_registry.as_deref(),
            Some("http://registry:8081")
        );
        assert_eq!(args.topic_rule.as_deref(), Some("cdc_{schema}.{table}"));
        assert_eq!(args.integrity_check_level, IntegrityCheckLevel::Correctness);
        assert_eq!(args.corruption_handle_level, CorruptionHandleLevel::Error);

        let err = ensure_args(&["--integrity-check-level=full"]).unwrap_err();
        assert!(err.to_string().contains("correctness"), "{err}");
        let err = ensure_args(&["--corruption-handle-level=panic"]).unwrap_err();
        assert!(err.to_string().contains("warn"), "{err}");
    }

    #[test]
    fn avro_integrity_request_body_uses_tiflow_api_v2_field_names() {
        let args = ensure_args(&[
            "--protocol=avro",
            "--schema-registry=http://registry:8081",
            "--filter-rule=app.*,!app.secret",
            "--integrity-check-level=correctness",
        ])
        .unwrap();
        let req = CreateChangefeed::from_args(&args).unwrap();
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            serde_json::json!({
                "changefeed_id": "app-cdc",
                "sink_uri": "kafka://127.0.0.1:9092/app_cdc?protocol=avro&enable-tidb-extension=true&avro-decimal-handling-mode=string&avro-bigint-unsigned-handling-mode=string&partition-num=1&replication-factor=1&max-message-bytes=1048576",
                "replica_config": {
                    "filter": {"rules": ["app.*", "!app.secret"]},
                    "ignore_ineligible_table": true,
                    "sink": {
                        "schema_registry": "http://registry:8081",
                        "dispatchers": [
                            {"matcher": ["app.*", "!app.secret"], "topic": "tidb_{schema}_{table}"}
                        ]
                    },
                    "integrity": {
                        "integrity_check_level": "correctness",
                        "corruption_handle_level": "warn"
                    }
                }
            })
        );
    }

    #[test]
    fn integrity_alone_is_sent_for_simple_and_nothing_extra_for_defaults() {
        let args = ensure_args(&[
            "--protocol=simple",
            "--integrity-check-level=correctness",
            "--corruption-handle-level=error",
        ])
        .unwrap();
        let json = serde_json::to_value(CreateChangefeed::from_args(&args).unwrap()).unwrap();
        assert_eq!(
            json["replica_config"]["integrity"],
            serde_json::json!({"integrity_check_level": "correctness", "corruption_handle_level": "error"})
        );
        assert!(json["replica_config"].get("sink").is_none(), "{json}");
        // Defaults: the canal-json body stays exactly what it was before avro existed.
        let json =
            serde_json::to_value(CreateChangefeed::from_args(&ensure_args(&[]).unwrap()).unwrap())
                .unwrap();
        assert_eq!(
            json["replica_config"],
            serde_json::json!({"filter": {"rules": ["app.*"]}, "ignore_ineligible_table": true})
        );
    }

    #[test]
    fn avro_requests_ticdc_would_refuse_are_refused_with_the_flag_to_set() {
        let err = |extra: &[&str]| {
            CreateChangefeed::from_args(&ensure_args(extra).unwrap())
                .unwrap_err()
                .to_string()
        };
        let e = err(&["--protocol=avro"]);
        assert!(
            e.contains("--schema-registry") && e.contains("CDCMON_SCHEMA_REGISTRY"),
            "{e}"
        );
        let e = err(&[
            "--protocol=avro",
            "--schema-registry=http://r:8081",
            "--topic-rule=app_cdc",
        ]);
        assert!(
            e.contains("--topic-rule \"app_cdc\"") && e.contains("{schema}"),
            "{e}"
        );
        // A password in the registry URL never reaches an error message.
        let e = err(&["--schema-registry=https://u:secret@r:8081"]);
        assert!(
            e.contains("only for protocol avro") && e.contains("protocol=canal-json"),
            "{e}"
        );
        assert!(!e.contains("secret"), "{e}");
        // Avro + row checksums without the string modes (tiflow config.go:386-396).
        let e = err(&[
            "--sink-uri=kafka://k:9092/t?protocol=avro&enable-tidb-extension=true",
            "--schema-registry=http://r:8081",
            "--integrity-check-level=correctness",
        ]);
        assert!(e.contains("avro-decimal-handling-mode=string"), "{e}");
    }

    #[test]
    fn sink_uri_protocol_wins_over_the_protocol_flag() {
        // --sink-uri says avro and carries its registry: the dispatcher is still set, and no
        // --schema-registry is needed.
        let args = ensure_args(&[
            "--sink-uri=kafka://k:9092/t?protocol=avro&schema-registry=http://r:8081&enable-tidb-extension=true",
        ])
        .unwrap();
        let json = serde_json::to_value(CreateChangefeed::from_args(&args).unwrap()).unwrap();
        assert_eq!(
            json["replica_config"]["sink"],
            serde_json::json!({"dispatchers": [{"matcher": ["app.*"], "topic": "tidb_{schema}_{table}"}]})
        );
        // --protocol avro with a canal-json --sink-uri: no dispatcher, and a registry is refused.
        let args = ensure_args(&[
            "--protocol=avro",
            "--sink-uri=kafka://k:9092/t?protocol=canal-json",
        ])
        .unwrap();
        let json = serde_json::to_value(CreateChangefeed::from_args(&args).unwrap()).unwrap();
        assert!(json["replica_config"].get("sink").is_none(), "{json}");
    }

    #[test]
    fn avro_topic_rule_check_equals_tiflows_regex() {
        // tiflow cdc/sink/dmlsink/mq/dispatcher/topic/expression.go:39-41.
        let re = regex::Regex::new(
            r"^[A-Za-z0-9\._\-]*\{schema\}[A-Za-z0-9\._\-]*\{table\}[A-Za-z0-9\._\-]*$",
        )
        .unwrap();
        for rule in [
            "tidb_{schema}_{table}",
            "{schema}{table}",
            "{schema}.{table}-v1",
            "a{schema}b{table}c",
            "{table}_{schema}",
            "{schema}",
            "{table}",
            "app_cdc",
            "",
            "tidb {schema}_{table}",
            "x/{schema}_{table}",
            "{schema}_{table}_{table}",
            "{schema}_{schema}_{table}",
            "{schema}_{Table}",
            "é{schema}{table}",
        ] {
            assert_eq!(is_avro_topic_rule(rule), re.is_match(rule), "{rule:?}");
        }
    }

    #[test]
    fn sink_uri_params_and_redaction() {
        let uri = "kafka://k:9092/t?protocol=avro&enable-tidb-extension=true&flag&x=";
        assert_eq!(sink_uri_param(uri, "protocol"), Some("avro"));
        assert_eq!(sink_uri_param(uri, "enable-tidb-extension"), Some("true"));
        assert_eq!(sink_uri_param(uri, "flag"), Some(""));
        assert_eq!(sink_uri_param(uri, "x"), Some(""));
        assert_eq!(sink_uri_param(uri, "tidb"), None);
        assert_eq!(sink_uri_param("kafka://k:9092/t", "protocol"), None);
        assert_eq!(
            redact_userinfo("https://user:p@ss@reg:8081/x?a=b@c"),
            "https://***@reg:8081/x?a=b@c"
        );
        assert_eq!(redact_userinfo("http://reg:8081"), "http://reg:8081");
        assert_eq!(redact_userinfo("reg:8081"), "reg:8081");
    }

    #[test]
    fn differences_name_each_changed_field_and_nothing_when_equal() {
        let avro = CreateChangefeed::from_args(
            &ensure_args(&[
                "--protocol=avro",
                "--schema-registry=http://u:pw@registry:8081",
                "--integrity-check-level=correctness",
            ])
            .unwrap(),
        )
        .unwrap();
        // What tiflow's GET shows for exactly this changefeed (ToAPIReplicaConfig: integrity
        // always present, dispatchers with matcher/partition/topic).
        let same: ChangefeedInfo = serde_json::from_value(serde_json::json!({
            "id": "app-cdc", "state": "normal", "sink_uri": avro.sink_uri,
            "config": {"sink": {"schema_registry": "http://u:pw@registry:8081",
                                "dispatchers": [{"matcher": ["app.*"], "partition": "default", "topic": "tidb_{schema}_{table}"}]},
                       "integrity": {"integrity_check_level": "correctness", "corruption_handle_level": "warn"}}
        }))
        .unwrap();
        assert_eq!(avro.differences(&same), Vec::<String>::new());
        // A canal-json changefeed as TiCDC shows it, defaults spelled out.
        let canal: ChangefeedInfo = serde_json::from_value(serde_json::json!({
            "id": "app-cdc", "state": "normal", "sink_uri": default_sink_uri(Protocol::CanalJson),
            "config": {"sink": {"protocol": "canal-json"},
                       "integrity": {"integrity_check_level": "none", "corruption_handle_level": "warn"}}
        }))
        .unwrap();
        let diffs = avro.differences(&canal);
        assert_eq!(diffs.len(), 4, "{diffs:?}");
        assert!(diffs[0].starts_with("sink URI"), "{diffs:?}");
        assert_eq!(
            diffs[1],
            "schema registry none, requested http://***@registry:8081"
        );
        assert_eq!(
            diffs[2],
            "topic dispatchers [], requested [[\"app.*\"] -> tidb_{schema}_{table}]"
        );
        assert_eq!(diffs[3], "integrity none/warn, requested correctness/warn");
        // Same topic, another matcher: other tables would be routed by it (audit B2 #9).
        let other_matcher: ChangefeedInfo = serde_json::from_value(serde_json::json!({
            "id": "app-cdc", "state": "normal", "sink_uri": avro.sink_uri,
            "config": {"sink": {"schema_registry": "http://u:pw@registry:8081",
                                "dispatchers": [{"matcher": ["shop.*"], "partition": "default", "topic": "tidb_{schema}_{table}"}]},
                       "integrity": {"integrity_check_level": "correctness", "corruption_handle_level": "warn"}}
        }))
        .unwrap();
        assert_eq!(
            avro.differences(&other_matcher),
            [
                "topic dispatchers [[\"shop.*\"] -> tidb_{schema}_{table}], requested [[\"app.*\"] -> tidb_{schema}_{table}]"
            ]
        );
        let plain = CreateChangefeed::from_args(&ensure_args(&[]).unwrap()).unwrap();
        assert_eq!(plain.differences(&canal), Vec::<String>::new());
        // A server that shows no config: only the sink URI is compared.
        let bare = ChangefeedInfo {
            config: None,
            ..canal
        };
        assert_eq!(avro.differences(&bare).len(), 1);
    }
}
