//! The individual smoke checks, one module per hop, plus what they share: the HTTP helpers,
//! the bounded retry loop and the expected pipeline events.
//!
//! Every check is a plain `async fn` returning the one-line result text, so tests can run a
//! single hop against a real or recorded server without the runner.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::de::DeserializeOwned;

use crate::event::RowOp;

pub mod cdcmon;
pub mod elasticsearch;
pub mod grafana;
pub mod kafka;
pub mod prometheus;
pub mod ticdc;
pub mod tidb;

/// An error that waiting will not fix (bad credentials, a 404 route): ends [`retry`] at once.
#[derive(Debug)]
pub struct Permanent(pub String);

impl std::fmt::Display for Permanent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Permanent {}

/// Run `attempt` until it succeeds, fails permanently, or `deadline` has passed; backoff
/// 250 ms … 2 s, every failure logged. The last error is returned with the attempt count.
pub async fn retry<T, F, Fut>(what: &str, deadline: Duration, mut attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let start = Instant::now();
    let mut backoff = Duration::from_millis(250);
    let mut n = 1u32;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(err) if err.downcast_ref::<Permanent>().is_some() => return Err(err),
            Err(err) => {
                let elapsed = start.elapsed();
                if elapsed >= deadline {
                    return Err(err).with_context(|| {
                        format!(
                            "{what}: still failing after {n} attempts in {:.1} s",
                            elapsed.as_secs_f64()
                        )
                    });
                }
                let wait = backoff.min(deadline - elapsed);
                tracing::info!(check = what, attempt = n, error = %format!("{err:#}"), retry_in_ms = wait.as_millis() as u64, "not yet");
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                n += 1;
            }
        }
    }
}

/// The HTTP client every check uses: no TLS, bounded connect and request times.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .build()
        .context("cannot build the HTTP client")
}

/// At most 300 characters of a body, for error messages.
pub fn snippet(body: &str) -> String {
    let t = body.trim();
    match t.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", t.get(..cut).unwrap_or("")),
        None => t.to_owned(),
    }
}

/// Credentials of the Elasticsearch and Grafana checks.
pub use crate::basic_auth::BasicAuth;

/// GET `url`; returns status and body text. Transport errors name the URL.
pub async fn get_text(
    client: &reqwest::Client,
    url: &str,
    auth: Option<&BasicAuth>,
) -> anyhow::Result<(u16, String)> {
    let mut req = client.get(url);
    if let Some(a) = auth {
        req = req.basic_auth(&a.user, Some(&a.password));
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("GET {url} failed"))?;
    let status = resp.status().as_u16();
    let body = resp
        .text()
        .await
        .with_context(|| format!("GET {url}: cannot read the body"))?;
    Ok((status, body))
}

/// POST `body` as JSON to `url`; returns status and body text. Transport errors name the URL; a
/// body that cannot be read is "cannot read the {answer} answer" (`answer`: what the endpoint
/// returns, e.g. "search" or "query").
pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    auth: Option<&BasicAuth>,
    body: &serde_json::Value,
    answer: &str,
) -> anyhow::Result<(u16, String)> {
    let mut req = client.post(url);
    if let Some(a) = auth {
        req = req.basic_auth(&a.user, Some(&a.password));
    }
    let resp = req
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {url} failed"))?;
    let status = resp.status().as_u16();
    let text = resp
        .text()
        .await
        .with_context(|| format!("cannot read the {answer} answer"))?;
    Ok((status, text))
}

/// Parse a JSON body, or say what came instead.
pub fn parse_json<T: DeserializeOwned>(url: &str, status: u16, body: &str) -> anyhow::Result<T> {
    serde_json::from_str(body).with_context(|| {
        format!(
            "{url} answered HTTP {status} with an unexpected body: {}",
            snippet(body)
        )
    })
}

/// 401/403 never fix themselves: make them [`Permanent`].
pub fn refuse_auth_errors(url: &str, status: u16, body: &str) -> anyhow::Result<()> {
    if status == 401 || status == 403 {
        return Err(Permanent(format!(
            "{url} answered HTTP {status}: {} (check the credentials)",
            snippet(body)
        ))
        .into());
    }
    Ok(())
}

/// `(table, op)` → count, the unit of every pipeline comparison.
pub type RowCounts = BTreeMap<(String, String), f64>;

/// The smoke's DDL table in `app`: dropped if a crashed run left it, created, dropped again.
/// One smoke run at a time per database.
pub const DDL_TABLE: &str = "cdcmon_smoke_ddl";

/// What the pipeline step changes and therefore expects every hop to show.
#[derive(Debug, Clone)]
pub struct Expectation {
    /// Primary key of the marked `users` row and of its `orders` row.
    pub id: u64,
    /// Table created and dropped to produce DDL that must not count as rows. A fixed name
    /// ([`DDL_TABLE`]): a name per run would leave one `cdc_ddl_events_total` series per run
    /// behind, growing cardinality without bound.
    pub ddl_table: String,
    /// `(table, op)` → how many row events the change produces.
    pub rows: RowCounts,
}

impl Expectation {
    /// The standard change: insert, update, delete one `users` row and one `orders` row.
    pub fn for_marker(id: u64) -> Expectation {
        let mut rows = RowCounts::new();
        for table in ["users", "orders"] {
            for op in RowOp::ALL {
                rows.insert((table.to_owned(), op.as_str().to_owned()), 1.0);
            }
        }
        Expectation {
            id,
            ddl_table: DDL_TABLE.to_owned(),
            rows,
        }
    }

    /// The event-log `cdc.key` of the marked rows.
    pub fn key(&self) -> String {
        format!("id={}", self.id)
    }

    pub fn total_rows(&self) -> f64 {
        self.rows.values().sum()
    }
}

/// `users insert 1, users update 1, …` for messages.
pub fn describe_counts(counts: &RowCounts) -> String {
    counts
        .iter()
        .map(|((t, o), n)| format!("{t} {o} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A fresh marker id: milliseconds since the epoch × 1000 + process id digits. Far above the
/// seed ids (< 1000), unique per run, and it fits BIGINT.
pub fn new_marker_id() -> u64 {
    let ms = crate::ticdc_api::now_ms().max(0) as u64;
    ms * 1000 + u64::from(std::process::id() % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectation_covers_both_tables_and_all_ops() {
        let e = Expectation::for_marker(42);
        assert_eq!(e.rows.len(), 6);
        assert_eq!(e.total_rows(), 6.0);
        assert_eq!(e.key(), "id=42");
        // Fixed across runs: no new metric series per run (issue 10.4).
        assert_eq!(e.ddl_table, "cdcmon_smoke_ddl");
        assert_eq!(Expectation::for_marker(43).ddl_table, e.ddl_table);
        assert!(describe_counts(&e.rows).starts_with("orders delete 1"));
    }

    #[test]
    fn marker_ids_fit_bigint_and_are_above_seed_ids() {
        let id = new_marker_id();
        assert!(id > 1_000_000);
        assert!(id < i64::MAX as u64);
    }

    #[tokio::test]
    async fn retry_stops_on_permanent_errors_and_at_the_deadline() {
        let mut calls = 0;
        let err = retry("p", Duration::from_secs(10), || {
            calls += 1;
            async { Err::<(), _>(anyhow::Error::from(Permanent("nope".into()))) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 1);
        assert_eq!(err.to_string(), "nope");

        let start = Instant::now();
        let err = retry("t", Duration::from_millis(600), || async {
            Err::<(), _>(anyhow::anyhow!("down"))
        })
        .await
        .unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(600));
        assert!(
            format!("{err:#}").contains("t: still failing after"),
            "{err:#}"
        );

        let mut n = 0;
        let v = retry("ok", Duration::from_secs(5), || {
            n += 1;
            let fail = n < 2;
            async move {
                if fail {
                    anyhow::bail!("first");
                }
                Ok(7)
            }
        })
        .await
        .unwrap();
        assert_eq!(v, 7);
    }
}
