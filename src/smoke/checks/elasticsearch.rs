//! Elasticsearch hops: cluster health, and the event documents of the marked change.
//!
//! Shapes: Elasticsearch reference "Cluster health API" (`GET /_cluster/health` →
//! `{"cluster_name","status":"green|yellow|red","number_of_nodes",…}`) and "Search API"
//! (`hits.hits[]._source`). The documents are cdcmon event-log lines shipped by Filebeat:
//! `cdc.table`, `cdc.op`, `cdc.key` (`id=<n>`), `message` (`insert app.users id=<n>`).

use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Deserialize;

use super::{Expectation, RowCounts, describe_counts, get_text, parse_json, post_json, snippet};

#[derive(Debug, Deserialize)]
pub struct ClusterHealth {
    pub cluster_name: String,
    pub status: String,
    #[serde(default)]
    pub number_of_nodes: u64,
}

#[derive(Debug, Deserialize)]
struct SearchResponse {
    hits: Hits,
}

#[derive(Debug, Deserialize)]
struct Hits {
    hits: Vec<Hit>,
}

#[derive(Debug, Deserialize)]
struct Hit {
    #[serde(rename = "_source", default)]
    source: serde_json::Value,
}

fn base(url: &str) -> &str {
    url.trim_end_matches('/')
}

/// `/_cluster/health` is green or yellow (a single-node cluster is yellow as soon as an index
/// has replicas configured). Red is retried until `deadline`, then a failure.
pub async fn cluster_health(
    client: &reqwest::Client,
    url: &str,
    deadline: Duration,
) -> anyhow::Result<String> {
    let health_url = format!("{}/_cluster/health", base(url));
    super::retry("elasticsearch health", deadline, || async {
        let (status, body) = get_text(client, &health_url, None).await?;
        super::refuse_auth_errors(&health_url, status, &body)?;
        if status != 200 {
            bail!("{health_url} answered HTTP {status}: {}", snippet(&body));
        }
        let h: ClusterHealth = parse_json(&health_url, status, &body)?;
        match h.status.as_str() {
            "green" | "yellow" => Ok(format!(
                "Elasticsearch cluster {} is {} ({} node(s))",
                h.cluster_name, h.status, h.number_of_nodes
            )),
            other => bail!("Elasticsearch cluster {} is {other}", h.cluster_name),
        }
    })
    .await
}

/// The search for the marked rows' documents: by `cdc.key` (keyword, as Filebeat's template
/// maps strings, or `.keyword` under default dynamic mapping) or by the marker in `message`.
pub fn marker_query(e: &Expectation) -> serde_json::Value {
    let key = e.key();
    serde_json::json!({
        "size": 100,
        "query": {
            "bool": {
                "should": [
                    {"term": {"cdc.key": key}},
                    {"term": {"cdc.key.keyword": key}},
                    {"match_phrase": {"message": key}}
                ],
                "minimum_should_match": 1
            }
        }
    })
}

/// Count the hits that really are the marked rows, by `(table, op)`.
fn count_hits(hits: &[Hit], e: &Expectation) -> RowCounts {
    let key = e.key();
    let id = e.id.to_string();
    let mut out = RowCounts::new();
    for h in hits {
        let cdc = &h.source["cdc"];
        let key_matches = cdc["key"].as_str() == Some(key.as_str())
            || cdc["keys"]["id"].as_str() == Some(id.as_str())
            || cdc["keys"]["id"].as_u64() == Some(e.id);
        if cdc["db"].as_str() != Some("app") || !key_matches {
            continue;
        }
        let (Some(table), Some(op)) = (cdc["table"].as_str(), cdc["op"].as_str()) else {
            continue;
        };
        let k = (table.to_owned(), op.to_owned());
        if e.rows.contains_key(&k) {
            *out.entry(k).or_insert(0.0) += 1.0;
        }
    }
    out
}

/// Poll `{index}/_search` until a document exists for every expected `(table, op)` (at least
/// one: Filebeat and the consumer deliver at least once) or `deadline` passes.
pub async fn wait_for_documents(
    client: &reqwest::Client,
    url: &str,
    index: &str,
    e: &Expectation,
    deadline: Duration,
) -> anyhow::Result<String> {
    let search_url = format!("{}/{index}/_search", base(url));
    let body = marker_query(e);
    let start = Instant::now();
    loop {
        let (status, text) = post_json(client, &search_url, None, &body, "search").await?;
        if status != 200 {
            bail!("{search_url} answered HTTP {status}: {}", snippet(&text));
        }
        let parsed: SearchResponse = parse_json(&search_url, status, &text)?;
        let counts = count_hits(&parsed.hits.hits, e);
        if e.rows
            .keys()
            .all(|k| counts.get(k).copied().unwrap_or(0.0) >= 1.0)
        {
            return Ok(format!(
                "Elasticsearch {index} holds the event documents of {} ({})",
                e.key(),
                describe_counts(&counts)
            ));
        }
        if start.elapsed() >= deadline {
            let missing: Vec<String> = e
                .rows
                .keys()
                .filter(|k| !counts.contains_key(*k))
                .map(|(t, o)| format!("{t} {o}"))
                .collect();
            let found = if counts.is_empty() {
                "none".to_owned()
            } else {
                describe_counts(&counts)
            };
            bail!(
                "after {:.0} s {index} has no document of {} for: {} (found: {found}); check Filebeat and the event log",
                deadline.as_secs_f64(),
                e.key(),
                missing.join(", ")
            );
        }
        // Elasticsearch makes new documents searchable after its 1 s refresh interval.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

// ---- Service logs (issue 14) --------------------------------------------------------------------

/// The text `cdcmon smoke` logs (tracing, INFO) as its first line, so that its own unit's
/// journal (NixOS) or container log (compose) carries a line nobody else can have written.
pub fn log_marker(id: u64) -> String {
    format!("cdcmon-smoke-{id}")
}

/// What the service-log check expects of the document holding the marker line.
#[derive(Debug, Clone)]
pub struct LogExpectation {
    /// Unique text in the line ([`log_marker`]).
    pub marker: String,
    /// `service.name` of the document: the smoke's unit without `.service` (NixOS
    /// `cdcmon-smoke`) or its compose service (`smoke`).
    pub service: String,
    /// `log.level` of the document: the line is logged at INFO (journal priority 6).
    pub level: String,
}

/// The search for the marker line: a phrase in `message` (text), so the hyphenated marker is
/// matched as its tokens in order.
pub fn log_marker_query(marker: &str) -> serde_json::Value {
    serde_json::json!({
        "size": 20,
        "query": {"match_phrase": {"message": marker}}
    })
}

/// A field of `_source` by dotted path, nested (as Filebeat sends events) or as a literal
/// dotted key.
fn source_field<'a>(source: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let nested = path
        .split('.')
        .try_fold(source, |cur, part| cur.as_object()?.get(part));
    nested.or_else(|| source.get(path))
}

#[derive(Debug, Deserialize)]
struct LogHit {
    #[serde(rename = "_index", default)]
    index: String,
    #[serde(rename = "_source", default)]
    source: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct LogSearch {
    hits: LogHits,
}

#[derive(Debug, Deserialize)]
struct LogHits {
    hits: Vec<LogHit>,
}

/// Poll `{index}/_search` until the marker line is there, then assert its `service.name` and
/// `log.level`: reaching the index is not enough, the document must say which service wrote it
/// at which level (what the dashboard filters on). A marker document with other values fails at
/// once, naming what it holds.
pub async fn wait_for_log_line(
    client: &reqwest::Client,
    url: &str,
    index: &str,
    e: &LogExpectation,
    deadline: Duration,
) -> anyhow::Result<String> {
    let search_url = format!("{}/{index}/_search", base(url));
    let body = log_marker_query(&e.marker);
    let start = Instant::now();
    loop {
        let (status, text) = post_json(client, &search_url, None, &body, "search").await?;
        if status != 200 {
            bail!(
                "{search_url} answered HTTP {status}: {} (pass --skip logs if this deployment ships no service logs)",
                snippet(&text)
            );
        }
        let parsed: LogSearch = parse_json(&search_url, status, &text)?;
        let with_marker: Vec<&LogHit> = parsed
            .hits
            .hits
            .iter()
            .filter(|h| {
                ["message", "event.original"].iter().any(|f| {
                    source_field(&h.source, f)
                        .and_then(|v| v.as_str())
                        .is_some_and(|s| s.contains(&e.marker))
                })
            })
            .collect();
        let field = |h: &LogHit, f: &str| {
            source_field(&h.source, f)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        if let Some(h) = with_marker.iter().find(|h| {
            field(h, "service.name").as_deref() == Some(e.service.as_str())
                && field(h, "log.level").as_deref() == Some(e.level.as_str())
        }) {
            return Ok(format!(
                "Elasticsearch {index} holds the smoke's start line (service.name {}, log.level {}) in {}",
                e.service, e.level, h.index
            ));
        }
        if let Some(h) = with_marker.first() {
            bail!(
                "the smoke's start line reached {} but with service.name {:?} and log.level {:?}, expected {:?} and {:?}; check the Filebeat processors (docs/monitoring.md \"Service logs\")",
                h.index,
                field(h, "service.name"),
                field(h, "log.level"),
                e.service,
                e.level
            );
        }
        if start.elapsed() >= deadline {
            bail!(
                "after {:.0} s no document in {index} holds the smoke's start line {:?}; check Filebeat's service-log input (or pass --skip logs if this deployment ships no service logs)",
                deadline.as_secs_f64(),
                e.marker
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
