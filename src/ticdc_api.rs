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
    /// debezium, simple.
    #[arg(long, env = "CDCMON_SINK_PROTOCOL", default_value = "canal-json", value_parser = parse_protocol)]
    pub protocol: Protocol,
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
        format!("unknown protocol {s:?}: expected canal-json, open-protocol, debezium or simple")
    })
}

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
        // Avro also needs `--schema-registry` on the changefeed (not wired here yet).
        Protocol::Avro => "&enable-tidb-extension=true",
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

/// The part of `replica_config` we set; everything else keeps TiCDC's defaults.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplicaConfig {
    pub filter: FilterConfig,
    /// Skip tables without a primary key or not-null unique key instead of refusing the
    /// changefeed (`CDC:ErrTableIneligible`).
    pub ignore_ineligible_table: bool,
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
            },
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

/// The process exit status for an error of `cdcmon changefeed ensure`: 3 for [`Unrecoverable`]
/// anywhere in the chain, else 1.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err
        .chain()
        .any(|e| e.downcast_ref::<Unrecoverable>().is_some())
    {
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
    tracing::info!(changefeed = id, sink_uri = %request.sink_uri, rules = ?request.replica_config.filter.rules, "creating changefeed");
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
            if info.sink_uri != request.sink_uri && !info.sink_uri.is_empty() {
                // Changing a changefeed means pause → update → resume; `ensure` does not do that
                // behind the operator's back.
                tracing::warn!(
                    changefeed = id,
                    existing = %info.sink_uri,
                    requested = %request.sink_uri,
                    "existing changefeed has a different sink URI; left unchanged"
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
    let client = TicdcClient::new(&args.ticdc_url)?;
    let sink_uri = args
        .sink_uri
        .clone()
        .unwrap_or_else(|| default_sink_uri(args.protocol));
    let request = CreateChangefeed::new(&args.changefeed_id, &sink_uri, &args.filter_rules);
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
    fn protocol_flag_rejects_auto() {
        assert!(parse_protocol("auto").is_err());
        assert_eq!(parse_protocol("simple"), Ok(Protocol::Simple));
    }
}
