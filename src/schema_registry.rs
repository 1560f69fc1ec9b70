//! Confluent schema-registry client: the one call a consumer needs, `GET /schemas/ids/{id}`.
//!
//! Behind the [`SchemaRegistry`] trait so tests use recorded answers ([`RecordedRegistry`]) and
//! HTTP tests drive [`HttpSchemaRegistry`] against local servers (`tests/avro_registry.rs`;
//! https with a private CA: `tests/schema_registry_tls.rs`). The answer's only field read is
//! `schema` (a string holding the Avro schema JSON); 404 is
//! `{"error_code":40403,"message":"Schema not found"}`. Sources: tiflow release-8.5
//! `pkg/sink/codec/avro/confluent_schema_registry.go:205-285,412-466` (request, `Accept`
//! header, 5xx retried with backoff capped at 30 s, 4xx not) and `mock_schema_registry.go`.
//!
//! [`fetch_until_cached`] is the consume loop's wait: a registry that is down must not lose or
//! skip events, so transient failures are retried (capped exponential backoff) until the schema
//! arrives or cdcmon stops; only a definitive answer (404/4xx/malformed schema) gives up.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::protocol::avro::SchemaStore;

/// `Accept` TiCDC sends (TF `confluent_schema_registry.go:226`).
pub const ACCEPT: &str =
    "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json, application/json";

/// Why a schema could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("schema id {id} not found in the schema registry (error_code {code}): {message}")]
    NotFound { id: u32, code: i64, message: String },
    #[error("schema registry answered HTTP {status} for schema id {id}: {body}")]
    Status { id: u32, status: u16, body: String },
    #[error("cannot reach the schema registry for schema id {id}: {detail}")]
    Transport { id: u32, detail: String },
    #[error("schema registry answer for schema id {id} is unusable: {detail}")]
    BadAnswer { id: u32, detail: String },
}

impl RegistryError {
    /// A definitive answer: asking again will not help (404 and other 4xx except 408/429,
    /// or a schema that does not parse). Transport errors and 5xx are transient.
    pub fn is_permanent(&self) -> bool {
        match self {
            RegistryError::NotFound { .. } | RegistryError::BadAnswer { .. } => true,
            RegistryError::Status { status, .. } => {
                (400..500).contains(status) && *status != 408 && *status != 429
            }
            RegistryError::Transport { .. } => false,
        }
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Fetches the schema JSON text of a schema id.
pub trait SchemaRegistry: Send + Sync {
    fn schema_by_id(&self, id: u32) -> BoxFuture<'_, Result<String, RegistryError>>;
}

/// The registry's credentials: user from a flag, password from a file (never from the command
/// line).
pub use crate::basic_auth::BasicAuth;

impl BasicAuth {
    /// `user` + the schema registry's password from `password_file` (`crate::secret_file`: one
    /// trailing line ending is not part of it; empty or multi-line files are refused).
    pub fn from_file(user: &str, password_file: &Path) -> anyhow::Result<BasicAuth> {
        let password = crate::secret_file::read_secret(password_file, "schema-registry password")?;
        Ok(BasicAuth {
            user: user.to_owned(),
            password,
        })
    }
}

/// The real registry over `http://` or `https://`. TLS is rustls (ring provider) trusting the
/// system's certificates (rustls-native-certs: `SSL_CERT_FILE`, else the distribution's bundle,
/// e.g. `/etc/ssl/certs/ca-certificates.crt` on NixOS and Debian), plus the PEM certificates of
/// `--schema-registry-ca-file` for a private CA (docs/protocols.md "Schema registry over https").
#[derive(Debug, Clone)]
pub struct HttpSchemaRegistry {
    base: String,
    client: reqwest::Client,
    auth: Option<BasicAuth>,
}

impl HttpSchemaRegistry {
    pub fn new(
        base_url: &str,
        auth: Option<BasicAuth>,
        ca_file: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let base = base_url.trim_end_matches('/').to_owned();
        let https = base.starts_with("https://");
        if !https && !base.starts_with("http://") {
            anyhow::bail!(
                "--schema-registry-url {base_url:?}: expected an http:// or https:// URL"
            );
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10));
        if let Some(path) = ca_file {
            if !https {
                // The file would be ignored: say so rather than let a plain-text URL pass as
                // the TLS setup someone meant.
                anyhow::bail!(
                    "--schema-registry-ca-file {} is set but --schema-registry-url {base_url:?} \
                     is not https://",
                    path.display()
                );
            }
            for cert in read_ca_file(path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| anyhow::anyhow!("{}", error_chain(&e)))
            .context("cannot build the schema-registry HTTP client")?;
        Ok(HttpSchemaRegistry { base, client, auth })
    }

    async fn fetch(&self, id: u32) -> Result<String, RegistryError> {
        let url = format!("{}/schemas/ids/{id}", self.base);
        let mut req = self.client.get(&url).header("Accept", ACCEPT);
        if let Some(a) = &self.auth {
            req = req.basic_auth(&a.user, Some(&a.password));
        }
        let resp = req.send().await.map_err(|e| RegistryError::Transport {
            id,
            detail: format!("GET {url}: {}", error_chain(&e)),
        })?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(|e| RegistryError::Transport {
            id,
            detail: format!("GET {url}: reading the body: {}", error_chain(&e)),
        })?;
        parse_answer(id, status, &body)
    }
}

/// The PEM certificates of a CA file (one or more, e.g. a root and an intermediate).
fn read_ca_file(path: &Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let what = || format!("--schema-registry-ca-file {}", path.display());
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", what()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate bundle: {e}", what()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "{}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)",
            what()
        );
    }
    Ok(certs)
}

/// A reqwest error with its causes on one line. reqwest's own text is only "error sending
/// request for url (...)"; the reason (refused, timed out, the TLS alert or certificate
/// problem) is in the source chain. A failed certificate check also gets a hint at the fix.
fn error_chain(err: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cause: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = cause {
        let text = e.to_string();
        // hyper-util and std::io repeat their inner error's text; print each once.
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = e.source();
    }
    let mut line = parts.join(": ");
    // rustls: `Error::InvalidCertificate` displays as "invalid peer certificate: ..."
    // (rustls 0.23 src/error.rs).
    if line.contains("invalid peer certificate") {
        line.push_str(
            " (TLS certificate verification failed: the registry's certificate is not signed by \
             a trusted CA or does not match the host; for a private CA set \
             --schema-registry-ca-file)",
        );
    }
    line
}

impl SchemaRegistry for HttpSchemaRegistry {
    fn schema_by_id(&self, id: u32) -> BoxFuture<'_, Result<String, RegistryError>> {
        Box::pin(self.fetch(id))
    }
}

/// Interpret a registry answer: 200 `{"schema": "..."}`; 404 `{"error_code":40403,...}`.
pub fn parse_answer(id: u32, status: u16, body: &str) -> Result<String, RegistryError> {
    #[derive(serde::Deserialize)]
    struct Ok200 {
        schema: String,
    }
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        #[serde(default)]
        error_code: i64,
        #[serde(default)]
        message: String,
    }
    let short = || crate::protocol::sample(body);
    match status {
        200 => serde_json::from_str::<Ok200>(body)
            .map(|a| a.schema)
            .map_err(|e| RegistryError::BadAnswer {
                id,
                detail: format!("expected {{\"schema\": \"...\"}}: {e}"),
            }),
        404 => {
            let e: ErrorBody = serde_json::from_str(body).unwrap_or(ErrorBody {
                error_code: 0,
                message: short(),
            });
            Err(RegistryError::NotFound {
                id,
                code: e.error_code,
                message: e.message,
            })
        }
        _ => Err(RegistryError::Status {
            id,
            status,
            body: short(),
        }),
    }
}

/// Answers from memory, shaped like the registry's: for tests and recorded fixtures.
#[derive(Debug, Default, Clone)]
pub struct RecordedRegistry {
    pub schemas: HashMap<u32, String>,
}

impl SchemaRegistry for RecordedRegistry {
    fn schema_by_id(&self, id: u32) -> BoxFuture<'_, Result<String, RegistryError>> {
        let answer = self
            .schemas
            .get(&id)
            .cloned()
            .ok_or_else(|| RegistryError::NotFound {
                id,
                code: 40403,
                message: "Schema not found".into(),
            });
        Box::pin(async move { answer })
    }
}

/// Retry policy for [`fetch_until_cached`].
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    /// 200 ms doubling up to 30 s, TiCDC's cap for the same call.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

/// What the wait reports while it waits (readiness, logs). `Sync` so the consume future that
/// holds one across an await stays `Send` (`cdcmon demo` spawns it on the runtime).
pub trait WaitObserver: Sync {
    /// Attempt `attempt` failed transiently; the next try is in `retry_in`.
    fn failed(&self, err: &RegistryError, attempt: u32, retry_in: Duration);
    /// The schema is cached (after `attempts` tries).
    fn fetched(&self, id: u32, attempts: u32);
}

/// Fetch `id` into `store`, retrying transient failures with capped exponential backoff until
/// it succeeds, a permanent error comes back (returned), or `stop` resolves (`Ok(false)`).
/// `Ok(true)`: cached, decode the same message again.
pub async fn fetch_until_cached(
    registry: &dyn SchemaRegistry,
    store: &Arc<SchemaStore>,
    id: u32,
    backoff: Backoff,
    observer: &dyn WaitObserver,
    stop: impl Future<Output = ()>,
) -> Result<bool, RegistryError> {
    tokio::pin!(stop);
    let mut delay = backoff.initial;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let outcome = tokio::select! {
            biased;
            _ = &mut stop => return Ok(false),
            r = registry.schema_by_id(id) => r,
        };
        let err = match outcome {
            Ok(text) => match store.insert(id, &text) {
                Ok(()) => {
                    observer.fetched(id, attempt);
                    return Ok(true);
                }
                Err(detail) => RegistryError::BadAnswer { id, detail },
            },
            Err(e) => e,
        };
        if err.is_permanent() {
            return Err(err);
        }
        observer.failed(&err, attempt, delay);
        tokio::select! {
            biased;
            _ = &mut stop => return Ok(false),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(backoff.max);
    }
}

/// Marks `/readyz` not ready while the registry is unreachable, and logs every attempt.
struct ReadinessObserver<'a> {
    readiness: &'a crate::http::Readiness,
    pos: &'a crate::eventlog::KafkaPosition<'a>,
}

impl WaitObserver for ReadinessObserver<'_> {
    fn failed(&self, err: &RegistryError, attempt: u32, retry_in: Duration) {
        self.readiness
            .schema_registry_down
            .store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(error = %err, attempt, retry_in_ms = retry_in.as_millis() as u64,
            partition = self.pos.partition, offset = self.pos.offset,
            "schema registry unavailable; the message waits for its schema (not skipped)");
    }
    fn fetched(&self, id: u32, attempts: u32) {
        self.readiness
            .schema_registry_down
            .store(false, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(schema_id = id, attempts, "fetched Avro schema");
    }
}

/// The consume loop's answer to [`crate::pipeline::Outcome::SchemaMissing`]: fetch `id` into
/// the pipeline's schema store, waiting out transient registry failures.
/// `Some(None)`: cached, process the same message again. `Some(Some(outcome))`: the registry
/// says the schema does not exist, the message is counted undecodable and skipped (as TiCDC's
/// own decoder errors on it). `None`: cdcmon is stopping; the message stays uncommitted.
pub async fn wait_for_schema(
    registry: Option<&dyn SchemaRegistry>,
    pipeline: &mut crate::pipeline::Pipeline,
    pos: &crate::eventlog::KafkaPosition<'_>,
    id: u32,
    readiness: &crate::http::Readiness,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Option<Option<crate::pipeline::Outcome>> {
    use crate::protocol::{DecodeError, DecodeErrorReason};
    let give_up = |detail: String| {
        DecodeError::new(
            Some(crate::event::Protocol::Avro),
            DecodeErrorReason::SchemaUnavailable,
            detail,
        )
    };
    let (Some(registry), Some(store)) = (registry, pipeline.schema_store()) else {
        return Some(Some(pipeline.give_up(
            pos,
            give_up(format!("schema id {id}: no schema registry configured")),
        )));
    };
    let observer = ReadinessObserver { readiness, pos };
    match fetch_until_cached(
        registry,
        &store,
        id,
        Backoff::default(),
        &observer,
        shutdown.cancelled(),
    )
    .await
    {
        Ok(true) => Some(None),
        Ok(false) => None,
        Err(err) => {
            readiness
                .schema_registry_down
                .store(false, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(error = %err, partition = pos.partition, offset = pos.offset,
                "Avro schema cannot be fetched; message skipped as undecodable");
            Some(Some(pipeline.give_up(pos, give_up(err.to_string()))))
        }
    }
}

/// `cdcmon decode`'s and `smoke`'s decode: on a missing Avro schema, fetch it (a few tries on a private
/// runtime: a CLI should fail, not wait forever) and decode again. Errors are one line.
pub fn decode_fetching<'a>(
    decoder: &mut crate::protocol::Decoder,
    registry: Option<&dyn SchemaRegistry>,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
) -> anyhow::Result<crate::protocol::Decoded<'a>> {
    use crate::protocol::DecodeErrorReason;
    // A key and a value schema: two fetches at most, plus one decode that succeeds.
    for _ in 0..3 {
        match decoder.decode(key, value) {
            Ok(decoded) => return Ok(decoded),
            Err(e) if e.reason == DecodeErrorReason::SchemaUnavailable => {
                let (Some(registry), Some(avro)) = (registry, decoder.avro()) else {
                    return Err(e.into());
                };
                let Some(id) = avro.missing_schema() else {
                    return Err(e.into());
                };
                let store = avro.store().clone();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("cannot start the async runtime")?;
                // Created inside the runtime (a `Sleep` needs its timer).
                let stop = async { tokio::time::sleep(Duration::from_secs(20)).await };
                let backoff = Backoff {
                    initial: Duration::from_millis(200),
                    max: Duration::from_secs(2),
                };
                let observer = LastFailure::default();
                match runtime.block_on(fetch_until_cached(
                    registry, &store, id, backoff, &observer, stop,
                )) {
                    Ok(true) => {}
                    Ok(false) => {
                        // The reason (refused, TLS, 5xx) is in the last failure; without it
                        // the line would only say "unreachable".
                        let last = observer
                            .0
                            .lock()
                            .ok()
                            .and_then(|l| l.clone())
                            .unwrap_or_else(|| "no answer".into());
                        anyhow::bail!(
                            "schema id {id}: schema registry unreachable for 20 s; last error: {last}"
                        )
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("schemas keep missing after fetching them")
}

/// Logs through `tracing` only (used by `cdcmon decode`).
pub struct LogObserver;

impl WaitObserver for LogObserver {
    fn failed(&self, err: &RegistryError, attempt: u32, retry_in: Duration) {
        tracing::warn!(error = %err, attempt, retry_in_ms = retry_in.as_millis() as u64,
            "schema registry unavailable; the message waits (not skipped)");
    }
    fn fetched(&self, id: u32, attempts: u32) {
        tracing::info!(schema_id = id, attempts, "fetched Avro schema");
    }
}

/// [`LogObserver`] that also keeps the last failure, for a CLI's final error line.
#[derive(Default)]
struct LastFailure(std::sync::Mutex<Option<String>>);

impl WaitObserver for LastFailure {
    fn failed(&self, err: &RegistryError, attempt: u32, retry_in: Duration) {
        LogObserver.failed(err, attempt, retry_in);
        if let Ok(mut last) = self.0.lock() {
            *last = Some(err.to_string());
        }
    }
    fn fetched(&self, id: u32, attempts: u32) {
        LogObserver.fetched(id, attempts);
    }
}

/// Avro / schema-registry / checksum flags, shared by `consume`, `decode` and `smoke`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AvroArgs {
    /// Confluent schema registry for the avro protocol, e.g. `http://registry:8081` (enables
    /// Avro under `--protocol auto` too).
    #[arg(long, env = "CDCMON_SCHEMA_REGISTRY_URL")]
    pub schema_registry_url: Option<String>,
    /// Schema-registry basic-auth user (with --schema-registry-password-file).
    #[arg(
        long,
        env = "CDCMON_SCHEMA_REGISTRY_USER",
        requires = "schema_registry_password_file"
    )]
    pub schema_registry_user: Option<String>,
    /// File holding the schema-registry basic-auth password (first line).
    #[arg(
        long,
        env = "CDCMON_SCHEMA_REGISTRY_PASSWORD_FILE",
        requires = "schema_registry_user"
    )]
    pub schema_registry_password_file: Option<std::path::PathBuf>,
    /// PEM file of the CA (or CAs) that signed an https schema registry's certificate, trusted
    /// in addition to the system's; for a private CA.
    #[arg(long, env = "CDCMON_SCHEMA_REGISTRY_CA_FILE")]
    pub schema_registry_ca_file: Option<std::path::PathBuf>,
    /// The TiCDC server's time zone (IANA name): TIMESTAMP values are written in it, and TiDB's
    /// row checksum is taken on their UTC text.
    #[arg(long, env = "CDCMON_TICDC_TIME_ZONE", default_value = "UTC")]
    pub ticdc_time_zone: crate::checksum::TicdcTimeZone,
}

impl AvroArgs {
    /// The registry client, when `--schema-registry-url` is set.
    pub fn registry(&self) -> anyhow::Result<Option<Arc<dyn SchemaRegistry>>> {
        let Some(url) = &self.schema_registry_url else {
            return Ok(None);
        };
        let auth = match (
            &self.schema_registry_user,
            &self.schema_registry_password_file,
        ) {
            (Some(user), Some(file)) => Some(BasicAuth::from_file(user, file)?),
            _ => None,
        };
        Ok(Some(Arc::new(HttpSchemaRegistry::new(
            url,
            auth,
            self.schema_registry_ca_file.as_deref(),
        )?)))
    }

    /// `decoder`, with Avro enabled when a registry is configured. `--protocol avro` without a
    /// registry is refused here, at startup, with the flag to set.
    pub fn apply(
        &self,
        decoder: crate::protocol::Decoder,
    ) -> anyhow::Result<crate::protocol::Decoder> {
        use crate::protocol::ProtocolChoice;
        if self.schema_registry_url.is_none() {
            if decoder.choice() == ProtocolChoice::Fixed(crate::event::Protocol::Avro) {
                anyhow::bail!(
                    "--protocol avro needs --schema-registry-url (env CDCMON_SCHEMA_REGISTRY_URL)"
                );
            }
            return Ok(decoder);
        }
        let store = Arc::new(SchemaStore::default());
        Ok(decoder.with_avro(crate::protocol::avro::AvroDecoder::new(
            store,
            self.ticdc_time_zone,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_parsed_like_confluent_shapes() {
        assert_eq!(
            parse_answer(1, 200, r#"{"schema":"{\"type\":\"string\"}"}"#).unwrap(),
            r#"{"type":"string"}"#
        );
        let e = parse_answer(
            9,
            404,
            r#"{"error_code":40403,"message":"Schema 9 not found"}"#,
        )
        .unwrap_err();
        assert_eq!(
            e,
            RegistryError::NotFound {
                id: 9,
                code: 40403,
                message: "Schema 9 not found".into()
            }
        );
        assert!(e.is_permanent());
        let e = parse_answer(1, 503, "busy").unwrap_err();
        assert!(!e.is_permanent(), "{e}");
        assert!(parse_answer(1, 401, "{}").unwrap_err().is_permanent());
        assert!(!parse_answer(1, 429, "{}").unwrap_err().is_permanent());
        assert!(parse_answer(1, 200, "{}").unwrap_err().is_permanent());
    }

    #[test]
    fn http_and_https_urls_only() {
        assert!(HttpSchemaRegistry::new("http://localhost:8081/", None, None).is_ok());
        assert!(HttpSchemaRegistry::new("https://registry:8081", None, None).is_ok());
        let e = HttpSchemaRegistry::new("ftp://x", None, None).unwrap_err();
        assert!(e.to_string().contains("https://"), "{e}");
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = HttpSchemaRegistry::new("https://r", None, Some(&missing)).unwrap_err();
        let text = format!("{e:#}");
        assert!(text.contains("--schema-registry-ca-file") && text.contains("missing.pem"));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = HttpSchemaRegistry::new("https://r", None, Some(&empty)).unwrap_err();
        assert!(format!("{e:#}").contains("no PEM certificate"), "{e:#}");
        // A CA file with a plain-text URL would be ignored: refused instead.
        let e = HttpSchemaRegistry::new("http://r", None, Some(&empty)).unwrap_err();
        assert!(e.to_string().contains("is not https://"), "{e}");
    }

    #[test]
    fn password_file_and_redacted_debug() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret\n").unwrap();
        let a = BasicAuth::from_file("u", &p).unwrap();
        assert_eq!(a.password, "s3cret");
        assert!(!format!("{a:?}").contains("s3cret"));
        let e = BasicAuth::from_file("u", &dir.path().join("nope")).unwrap_err();
        assert!(e.to_string().contains("password file"), "{e}");
    }
}
