//! Prometheus hops: `/-/ready`, cdcmon's scrape target is up, and the raw `cdc_events_total`
//! series (HTTP API `/api/v1/query`) rise by the marked change.
//!
//! Raw series, not `increase()`: `increase` extrapolates to the window edges and returns
//! fractions, while the change is a handful of events that must be counted exactly.
//! API shapes: Prometheus docs "HTTP API" (`/api/v1/query` → `{"status":"success","data":
//! {"resultType":"vector","result":[{"metric":{…},"value":[ts,"v"]}]}}`, `/api/v1/targets` →
//! `activeTargets[].{scrapeUrl,health,lastError}`), "Management API" (`/-/ready`).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;

use super::{Expectation, RowCounts, describe_counts, get_text, parse_json, snippet};
use crate::smoke::checks::cdcmon::deltas;

#[derive(Debug, Deserialize)]
struct ApiResponse<T> {
    status: String,
    // Missing `Option` fields deserialize as `None` (no `default` attribute: it would demand
    // `T: Default`).
    data: Option<T>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct VectorData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<VectorSample>,
}

#[derive(Debug, Deserialize)]
struct VectorSample {
    metric: std::collections::BTreeMap<String, String>,
    /// `[unix_seconds, "value"]`
    value: (f64, String),
}

#[derive(Debug, Deserialize)]
struct TargetsData {
    #[serde(rename = "activeTargets")]
    active_targets: Vec<Target>,
}

#[derive(Debug, Deserialize)]
struct Target {
    #[serde(rename = "scrapeUrl")]
    scrape_url: String,
    health: String,
    #[serde(rename = "lastError", default)]
    last_error: String,
}

fn base(url: &str) -> &str {
    url.trim_end_matches('/')
}

/// `GET /-/ready` answers 200.
pub async fn ready(
    client: &reqwest::Client,
    url: &str,
    deadline: Duration,
) -> anyhow::Result<String> {
    let ready_url = format!("{}/-/ready", base(url));
    super::retry("prometheus ready", deadline, || async {
        let (status, body) = get_text(client, &ready_url, None).await?;
        if status != 200 {
            bail!("{ready_url} answered HTTP {status}: {}", snippet(&body));
        }
        Ok(format!("Prometheus {} ready", base(url)))
    })
    .await
}

/// `host:port` of an `http://host:port/...` URL.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

fn port(authority: &str) -> Option<&str> {
    authority.rsplit_once(':').map(|(_, p)| p)
}

/// Prometheus has an active target for cdcmon's `/metrics` and its last scrape succeeded.
/// Matched by `host:port`, else by port alone (Prometheus may scrape `localhost:9102` while the
/// smoke test uses `127.0.0.1:9102`).
pub async fn target_up(
    client: &reqwest::Client,
    url: &str,
    cdcmon_url: &str,
    deadline: Duration,
) -> anyhow::Result<String> {
    let targets_url = format!("{}/api/v1/targets?state=active", base(url));
    let want = authority(cdcmon_url).to_owned();
    super::retry("prometheus target", deadline, || async {
        let (status, body) = get_text(client, &targets_url, None).await?;
        let resp: ApiResponse<TargetsData> = parse_json(&targets_url, status, &body)?;
        let Some(data) = resp.data.filter(|_| resp.status == "success") else {
            bail!(
                "{targets_url}: {}",
                resp.error.unwrap_or_else(|| snippet(&body))
            );
        };
        let exact = data
            .active_targets
            .iter()
            .find(|t| authority(&t.scrape_url) == want);
        let by_port = || {
            data.active_targets.iter().find(|t| {
                port(authority(&t.scrape_url)) == port(&want) && t.scrape_url.ends_with("/metrics")
            })
        };
        let Some(t) = exact.or_else(by_port) else {
            let all: Vec<&str> = data
                .active_targets
                .iter()
                .map(|t| t.scrape_url.as_str())
                .collect();
            bail!("no active scrape target for {want}; targets: {all:?}");
        };
        if t.health != "up" {
            bail!(
                "target {} is {} (last error: {})",
                t.scrape_url,
                t.health,
                t.last_error
            );
        }
        Ok(format!("Prometheus scrapes {} (up)", t.scrape_url))
    })
    .await
}

/// Instant query; the vector result.
async fn query(
    client: &reqwest::Client,
    url: &str,
    promql: &str,
) -> anyhow::Result<Vec<VectorSample>> {
    let query_url = format!("{}/api/v1/query", base(url));
    let resp = client
        .get(&query_url)
        .query(&[("query", promql)])
        .send()
        .await
        .with_context(|| format!("GET {query_url} failed"))?;
    let status = resp.status().as_u16();
    let body = resp.text().await.context("cannot read the query answer")?;
    let parsed: ApiResponse<VectorData> = parse_json(&query_url, status, &body)?;
    match parsed.data {
        Some(d) if parsed.status == "success" && d.result_type == "vector" => Ok(d.result),
        _ => bail!(
            "query {promql:?} failed: HTTP {status}: {}",
            parsed.error.unwrap_or_else(|| snippet(&body))
        ),
    }
}

/// The row counters of database `app` as Prometheus last scraped them, by `(table, op)`.
pub async fn row_counts(client: &reqwest::Client, url: &str) -> anyhow::Result<RowCounts> {
    let samples = query(
        client,
        url,
        r#"sum by (table, op) (cdc_events_total{db="app"})"#,
    )
    .await?;
    let mut out = RowCounts::new();
    for s in samples {
        let key = (
            s.metric.get("table").cloned().unwrap_or_default(),
            s.metric.get("op").cloned().unwrap_or_default(),
        );
        let v: f64 = s
            .value
            .1
            .parse()
            .with_context(|| format!("bad sample value {:?}", s.value.1))?;
        out.insert(key, v);
    }
    Ok(out)
}

/// Poll until Prometheus' series rose by at least the change for every `(table, op)`.
/// "At least": Prometheus sees whatever else happened between two scrapes; the exact count is
/// asserted on cdcmon itself.
pub async fn wait_for_increase(
    client: &reqwest::Client,
    url: &str,
    before: &RowCounts,
    e: &Expectation,
    deadline: Duration,
) -> anyhow::Result<String> {
    let start = Instant::now();
    loop {
        let now = row_counts(client, url).await?;
        let d = deltas(before, &now, &e.rows);
        if d.iter().all(|(k, v)| *v >= e.rows[k]) {
            return Ok(format!(
                "Prometheus cdc_events_total rose by {}",
                describe_counts(&d)
            ));
        }
        if start.elapsed() >= deadline {
            bail!(
                "after {:.0} s Prometheus shows cdc_events_total rising by only {} (is cdcmon scraped, and how often?)",
                deadline.as_secs_f64(),
                describe_counts(&d)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_and_ports() {
        assert_eq!(authority("http://127.0.0.1:9102/metrics"), "127.0.0.1:9102");
        assert_eq!(authority("http://localhost:9102"), "localhost:9102");
        assert_eq!(port("localhost:9102"), Some("9102"));
    }

    #[test]
    fn query_answer_shape_parses() {
        // Prometheus docs, HTTP API, "Instant queries" example shape.
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"op":"insert","table":"users"},"value":[1435781451.781,"3"]}]}}"#;
        let r: ApiResponse<VectorData> = serde_json::from_str(body).unwrap();
        let d = r.data.unwrap();
        assert_eq!(d.result[0].metric["table"], "users");
        assert_eq!(d.result[0].value.1, "3");
    }
}
