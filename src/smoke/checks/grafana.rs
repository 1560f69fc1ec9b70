//! Grafana hops: `/api/health`, the provisioned dashboard found by `/api/search`, each
//! datasource's own health check, and — the real proof — the marked change queried through
//! Grafana (`POST /api/ds/query`) with the dashboard's own queries.
//!
//! Datasource health alone proves little: Grafana's Elasticsearch check only queries
//! `_cluster/health`, and index or time-field problems are mere warnings (grafana PR #99894).
//!
//! `/api/ds/query` (grafana `pkg/api/ds_query.go` `QueryMetricsV2`): body `dtos.MetricRequest`
//! `{"queries":[{refId, datasource{type,uid}, …model}], "from", "to"}` (epoch ms strings are
//! accepted); answer `backend.QueryDataResponse` `{"results":{refId:{"status","frames":[{"schema":
//! {"fields":[{"name","type","labels"}]},"data":{"values":[[column]…]}}]}}}`, HTTP 400 when any
//! query has an `error`. Elasticsearch `raw_data` queries (`metrics:[{"type":"raw_data"}]`,
//! `query`, `timeField`) answer one frame whose fields are the flattened `_source` names
//! (`cdc.key`, `cdc.table`, …; grafana `pkg/tsdb/elasticsearch/response_parser.go`
//! `processRawDataResponse`); Prometheus instant queries answer a frame per series with a
//! `Time` and a `Value` field carrying the series' labels (grafana
//! `pkg/promlib/converter/testdata/prom-vector-frame.jsonc`).
//!
//! Shapes (Grafana docs `developers/http_api`): `other.md` "Health API" (`{"commit",
//! "database":"ok","version"}`), `folder_dashboard_search.md` (`[{"uid","title","type":
//! "dash-db",…}]`), `data_source.md` "Check data source health" (`{"message","status":"OK"}`);
//! a failing check answers HTTP 400 with `"status":"ERROR"` (grafana `pkg/api/datasources.go`
//! `checkDatasourceHealth`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;

use super::{
    BasicAuth, Expectation, RowCounts, describe_counts, get_text, parse_json, post_json,
    refuse_auth_errors, snippet,
};

#[derive(Debug, Deserialize)]
struct Health {
    #[serde(default)]
    database: String,
    #[serde(default)]
    version: String,
}

#[derive(Debug, Deserialize)]
struct SearchHit {
    #[serde(default)]
    uid: String,
    title: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(rename = "folderTitle", default)]
    folder_title: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DatasourceHealth {
    #[serde(default)]
    status: String,
    #[serde(default)]
    message: String,
}

fn base(url: &str) -> &str {
    url.trim_end_matches('/')
}

/// `GET /api/health`: 200 and `database: ok`. Needs no login.
pub async fn health(
    client: &reqwest::Client,
    url: &str,
    deadline: Duration,
) -> anyhow::Result<String> {
    let health_url = format!("{}/api/health", base(url));
    super::retry("grafana health", deadline, || async {
        let (status, body) = get_text(client, &health_url, None).await?;
        if status != 200 {
            bail!("{health_url} answered HTTP {status}: {}", snippet(&body));
        }
        let h: Health = parse_json(&health_url, status, &body)?;
        if h.database != "ok" {
            bail!("Grafana database is {:?}", h.database);
        }
        Ok(format!(
            "Grafana {} healthy (version {}, database ok)",
            base(url),
            h.version
        ))
    })
    .await
}

/// A dashboard titled exactly `title` is found by `/api/search` (i.e. it was provisioned).
pub async fn dashboard(
    client: &reqwest::Client,
    url: &str,
    auth: &BasicAuth,
    title: &str,
    deadline: Duration,
) -> anyhow::Result<String> {
    find_dashboard(client, url, auth, title, deadline)
        .await
        .map(|(_, msg)| msg)
}

/// [`dashboard`], also returning the dashboard's uid.
pub async fn find_dashboard(
    client: &reqwest::Client,
    url: &str,
    auth: &BasicAuth,
    title: &str,
    deadline: Duration,
) -> anyhow::Result<(String, String)> {
    let search_url = format!("{}/api/search", base(url));
    super::retry("grafana dashboard", deadline, || async {
        let resp = client
            .get(&search_url)
            .basic_auth(&auth.user, Some(&auth.password))
            .query(&[("query", title), ("type", "dash-db")])
            .send()
            .await?;
        let status = resp.status().as_u16();
        let body = resp.text().await?;
        refuse_auth_errors(&search_url, status, &body)?;
        if status != 200 {
            bail!("{search_url} answered HTTP {status}: {}", snippet(&body));
        }
        let hits: Vec<SearchHit> = parse_json(&search_url, status, &body)?;
        // `query` is a substring match: insist on the exact title.
        let Some(hit) = hits
            .iter()
            .find(|h| h.title == title && (h.kind.is_empty() || h.kind == "dash-db"))
        else {
            let titles: Vec<&str> = hits.iter().map(|h| h.title.as_str()).collect();
            bail!(
                "no dashboard titled {title:?} (search found {titles:?}); is provisioning loaded?"
            );
        };
        Ok((
            hit.uid.clone(),
            format!(
                "Grafana dashboard {title:?} provisioned (uid {}{})",
                hit.uid,
                hit.folder_title
                    .as_deref()
                    .map(|f| format!(", folder {f:?}"))
                    .unwrap_or_default()
            ),
        ))
    })
    .await
}

/// Every datasource in `uids` passes its health check.
pub async fn datasources(
    client: &reqwest::Client,
    url: &str,
    auth: &BasicAuth,
    uids: &[String],
    deadline: Duration,
) -> anyhow::Result<String> {
    if uids.is_empty() {
        bail!("no datasource uids to check");
    }
    super::retry("grafana datasources", deadline, || async {
        let mut ok = Vec::new();
        for uid in uids {
            let health_url = format!("{}/api/datasources/uid/{uid}/health", base(url));
            let (status, body) = get_text(client, &health_url, Some(auth)).await?;
            refuse_auth_errors(&health_url, status, &body)?;
            if status == 404 {
                bail!("datasource {uid:?} not found ({health_url} answered 404): is it provisioned with that uid?");
            }
            let h: DatasourceHealth = parse_json(&health_url, status, &body)?;
            if status != 200 || h.status != "OK" {
                bail!(
                    "datasource {uid:?} health check: HTTP {status}, status {}: {}",
                    h.status,
                    h.message
                );
            }
            ok.push(format!("{uid} ({})", h.message.trim_end_matches('.')));
        }
        Ok(format!("Grafana datasources healthy: {}", ok.join(", ")))
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Queries through Grafana
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct QueryDataResponse {
    #[serde(default)]
    results: BTreeMap<String, DataResponse>,
}

#[derive(Debug, Deserialize)]
struct DataResponse {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    frames: Vec<Frame>,
}

#[derive(Debug, Deserialize)]
struct Frame {
    schema: Schema,
    #[serde(default)]
    data: Option<FrameData>,
}

#[derive(Debug, Deserialize)]
struct Schema {
    #[serde(default)]
    fields: Vec<Field>,
}

#[derive(Debug, Deserialize)]
struct Field {
    name: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
struct FrameData {
    #[serde(default)]
    values: Vec<Vec<serde_json::Value>>,
}

impl Frame {
    fn column(&self, name: &str) -> Option<&[serde_json::Value]> {
        let i = self.schema.fields.iter().position(|f| f.name == name)?;
        self.data
            .as_ref()
            .and_then(|d| d.values.get(i))
            .map(Vec::as_slice)
    }
}

/// `GET /api/dashboards/uid/{uid}` → the dashboard model (`.dashboard`).
async fn load_dashboard(
    client: &reqwest::Client,
    url: &str,
    auth: &BasicAuth,
    uid: &str,
) -> anyhow::Result<serde_json::Value> {
    let dash_url = format!("{}/api/dashboards/uid/{uid}", base(url));
    let (status, body) = get_text(client, &dash_url, Some(auth)).await?;
    refuse_auth_errors(&dash_url, status, &body)?;
    if status != 200 {
        bail!("{dash_url} answered HTTP {status}: {}", snippet(&body));
    }
    let v: serde_json::Value = parse_json(&dash_url, status, &body)?;
    match v.get("dashboard") {
        Some(d) if d.is_object() => Ok(d.clone()),
        _ => bail!("{dash_url} has no `dashboard` object: {}", snippet(&body)),
    }
}

/// Every panel, also those nested in rows.
fn panels(dashboard: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// A panel's first target that satisfies `pick`, with the panel's datasource filled in when
/// the target has none; the target is returned as a `/api/ds/query` query with refId `A`.
fn find_target(
    dashboard: &serde_json::Value,
    pick: impl Fn(&serde_json::Value, &serde_json::Value) -> bool,
) -> Option<(String, serde_json::Value)> {
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if pick(panel, target) {
                let mut q = target.clone();
                if q.get("datasource").is_none_or(|d| d.is_null()) {
                    q["datasource"] = panel["datasource"].clone();
                }
                q["refId"] = "A".into();
                let title = panel["title"].as_str().unwrap_or("?").to_owned();
                return Some((title, q));
            }
        }
    }
    None
}

fn datasource_type<'a>(panel: &'a serde_json::Value, target: &'a serde_json::Value) -> &'a str {
    target["datasource"]["type"]
        .as_str()
        .or_else(|| panel["datasource"]["type"].as_str())
        .unwrap_or("")
}

/// The dashboard's pie chart query (Prometheus) as a `/api/ds/query` query.
pub fn pie_query(dashboard: &serde_json::Value) -> anyhow::Result<(String, serde_json::Value)> {
    find_target(dashboard, |panel, target| {
        panel["type"] == "piechart"
            && datasource_type(panel, target) == "prometheus"
            && target["expr"].is_string()
    })
    .context("the dashboard has no pie chart panel with a Prometheus query")
}

/// The dashboard's raw-events query (Elasticsearch `raw_data`), with its Lucene `query`
/// replaced by the marked rows' `cdc.key`.
pub fn marked_rows_query(
    dashboard: &serde_json::Value,
    e: &Expectation,
) -> anyhow::Result<(String, serde_json::Value)> {
    let (title, mut q) = find_target(dashboard, |panel, target| {
        datasource_type(panel, target) == "elasticsearch"
            && target["metrics"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["type"] == "raw_data"))
    })
    .context("the dashboard has no Elasticsearch raw_data panel")?;
    q["query"] = format!("cdc.key:\"{}\"", e.key()).into();
    Ok((title, q))
}

/// `POST /api/ds/query` with one query over `[from_ms, to_ms]`; the frames of refId `A`.
async fn ds_query(
    client: &reqwest::Client,
    url: &str,
    auth: &BasicAuth,
    query: &serde_json::Value,
    from_ms: i64,
    to_ms: i64,
) -> anyhow::Result<Vec<Frame>> {
    let query_url = format!("{}/api/ds/query", base(url));
    let body = serde_json::json!({
        "queries": [query],
        "from": from_ms.to_string(),
        "to": to_ms.to_string(),
    });
    let (status, text) = post_json(client, &query_url, Some(auth), &body, "query").await?;
    refuse_auth_errors(&query_url, status, &text)?;
    let parsed: QueryDataResponse = parse_json(&query_url, status, &text)?;
    let Some(a) = parsed
        .results
        .into_iter()
        .find(|(k, _)| k == "A")
        .map(|(_, v)| v)
    else {
        bail!(
            "{query_url} answered HTTP {status} without results.A: {}",
            snippet(&text)
        );
    };
    if let Some(err) = a.error {
        bail!("{query_url}: the query failed in Grafana (HTTP {status}): {err}");
    }
    if status != 200 {
        bail!("{query_url} answered HTTP {status}: {}", snippet(&text));
    }
    Ok(a.frames)
}

/// Count the marked rows in raw_data frames by `(table, op)`. Grafana flattens `_source` into
/// `cdc.key`, `cdc.table`, …, but its `flatten` stops descending after 10 nested objects per
/// document (a global count, in map order), so a document may instead carry a whole `cdc`
/// object: both are read.
fn count_marked_rows(frames: &[Frame], e: &Expectation) -> RowCounts {
    let key = e.key();
    let mut out = RowCounts::new();
    for f in frames {
        let flat = |name: &str, i: usize| -> Option<String> {
            f.column(name)
                .and_then(|c| c.get(i))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let nested = |name: &str, i: usize| -> Option<String> {
            f.column("cdc")
                .and_then(|c| c.get(i))
                .and_then(|v| v.get(name))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let rows = f
            .data
            .as_ref()
            .and_then(|d| d.values.first())
            .map_or(0, Vec::len);
        for i in 0..rows {
            let get = |n: &str| flat(&format!("cdc.{n}"), i).or_else(|| nested(n, i));
            if get("key").as_deref() != Some(key.as_str()) || get("db").as_deref() != Some("app") {
                continue;
            }
            let (Some(t), Some(o)) = (get("table"), get("op")) else {
                continue;
            };
            let k = (t, o);
            if e.rows.contains_key(&k) {
                *out.entry(k).or_insert(0.0) += 1.0;
            }
        }
    }
    out
}

/// The marked rows, queried through Grafana's Elasticsearch datasource with the dashboard's
/// raw-events query: a row for every `(table, op)` of the change, polled until `deadline`.
pub async fn wait_for_marked_rows(
    client: &reqwest::Client,
    url: &str,
    auth: &BasicAuth,
    dashboard_uid: &str,
    e: &Expectation,
    deadline: Duration,
) -> anyhow::Result<String> {
    let dashboard = load_dashboard(client, url, auth, dashboard_uid).await?;
    let (panel, query) = marked_rows_query(&dashboard, e)?;
    let start = Instant::now();
    loop {
        let now = crate::ticdc_api::now_ms();
        let frames = ds_query(client, url, auth, &query, now - 3_600_000, now + 300_000).await?;
        let counts = count_marked_rows(&frames, e);
        if e.rows.keys().all(|k| counts.contains_key(k)) {
            return Ok(format!(
                "Grafana answers panel {panel:?}'s Elasticsearch query for {} with every marked row ({})",
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
            bail!(
                "after {:.0} s Grafana's Elasticsearch datasource returns no row of {} for: {} (query {})",
                deadline.as_secs_f64(),
                e.key(),
                missing.join(", "),
                query["query"]
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `op` → last value of each series in Prometheus frames.
fn values_by_label(frames: &[Frame], label: &str) -> BTreeMap<String, Option<f64>> {
    let mut out = BTreeMap::new();
    for f in frames {
        for (i, field) in f.schema.fields.iter().enumerate() {
            let Some(v) = field.labels.as_ref().and_then(|l| l.get(label)) else {
                continue;
            };
            let last = f
                .data
                .as_ref()
                .and_then(|d| d.values.get(i))
                .and_then(|c| c.last())
                .and_then(serde_json::Value::as_f64);
            out.insert(v.clone(), last);
        }
    }
    out
}

/// The raw row counters of database `app` by operation, asked through the pie chart's
/// Prometheus datasource. The pie's own series prove little: a table's three op series appear
/// together on its first row event, so they exist long before this run's change.
pub const RAW_OPS_EXPR: &str = r#"sum by (op) (cdc_events_total{db="app"})"#;

/// [`RAW_OPS_EXPR`] as an instant `/api/ds/query` query on the pie query's datasource.
pub fn raw_ops_query(pie_query: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "refId": "A",
        "datasource": pie_query["datasource"].clone(),
        "expr": RAW_OPS_EXPR,
        "instant": true,
        "range": false,
    })
}

/// `op` → what the marked change adds to `sum by (op)` (its rows over every table).
fn expected_by_op(e: &Expectation) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for ((_, op), n) in &e.rows {
        *out.entry(op.clone()).or_insert(0.0) += n;
    }
    out
}

/// `op` → the baseline summed over the tables (what [`RAW_OPS_EXPR`] read before the change).
fn baseline_by_op(before: &RowCounts) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for ((_, op), n) in before {
        *out.entry(op.clone()).or_insert(0.0) += n;
    }
    out
}

fn describe_ops(values: &BTreeMap<String, f64>) -> String {
    values
        .iter()
        .map(|(o, v)| format!("{o} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The dashboard's pie query through Grafana's Prometheus datasource answers a series for
/// every operation of the marked change, and the raw counters ([`RAW_OPS_EXPR`]) through the
/// same datasource rose since `before` (the smoke's Prometheus baseline, by `(table, op)`) by at
/// least the change for every operation. The pie's values are `increase(…[1h])`, extrapolated
/// and blind to a series' first sample, so they are reported, not compared. Without a
/// baseline (`--skip prometheus`) the counters are reported as not compared.
pub async fn wait_for_pie(
    client: &reqwest::Client,
    url: &str,
    auth: &BasicAuth,
    dashboard_uid: &str,
    e: &Expectation,
    before: Option<&RowCounts>,
    deadline: Duration,
) -> anyhow::Result<String> {
    let dashboard = load_dashboard(client, url, auth, dashboard_uid).await?;
    let (panel, query) = pie_query(&dashboard)?;
    let raw_query = raw_ops_query(&query);
    let expected = expected_by_op(e);
    let baseline = before.map(baseline_by_op);
    let start = Instant::now();
    loop {
        let now = crate::ticdc_api::now_ms();
        let frames = ds_query(client, url, auth, &query, now - 3_600_000, now).await?;
        let by_op = values_by_label(&frames, "op");
        let missing: Vec<&str> = expected
            .keys()
            .map(String::as_str)
            .filter(|o| !by_op.contains_key(*o))
            .collect();
        // Rises of the raw counters since the baseline, once the pie is complete.
        let mut rises: Option<BTreeMap<String, f64>> = None;
        if missing.is_empty() {
            if let Some(baseline) = &baseline {
                let raw = ds_query(client, url, auth, &raw_query, now - 300_000, now).await?;
                let totals = values_by_label(&raw, "op");
                rises = Some(
                    expected
                        .keys()
                        .map(|o| {
                            let total = totals.get(o).copied().flatten().unwrap_or(0.0);
                            let base = baseline.get(o).copied().unwrap_or(0.0);
                            (o.clone(), total - base)
                        })
                        .collect(),
                );
            }
        }
        let risen = rises.as_ref().is_some_and(|r| {
            expected
                .iter()
                .all(|(o, n)| r.get(o).is_some_and(|d| d >= n))
        });
        if missing.is_empty() && (risen || baseline.is_none()) {
            let shown: Vec<String> = by_op
                .iter()
                .map(|(o, v)| match v {
                    Some(v) => format!("{o} {v:.1}"),
                    None => format!("{o} (no value)"),
                })
                .collect();
            let counters = match &rises {
                Some(r) => format!(
                    "; its raw counters {RAW_OPS_EXPR} rose by {}",
                    describe_ops(r)
                ),
                None => "; raw counters not compared (no Prometheus baseline: --skip prometheus)"
                    .to_owned(),
            };
            return Ok(format!(
                "Grafana answers panel {panel:?}'s Prometheus query {} with every operation of the change: {}{counters}",
                query["expr"],
                shown.join(", ")
            ));
        }
        if start.elapsed() >= deadline {
            if !missing.is_empty() {
                bail!(
                    "after {:.0} s Grafana's answer to panel {panel:?}'s query {} has no series for: {} (found: {:?})",
                    deadline.as_secs_f64(),
                    query["expr"],
                    missing.join(", "),
                    by_op.keys().collect::<Vec<_>>()
                );
            }
            bail!(
                "after {:.0} s Grafana's Prometheus datasource shows {RAW_OPS_EXPR} rising by only {} since the smoke's baseline (the change adds {})",
                deadline.as_secs_f64(),
                rises.as_ref().map(describe_ops).unwrap_or_default(),
                describe_ops(&expected)
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document Grafana did not flatten (a whole `cdc` object column) still counts.
    #[test]
    fn unflattened_cdc_objects_are_read_too() {
        let frame: Frame = serde_json::from_value(serde_json::json!({
            "schema": {"fields": [{"name": "@timestamp"}, {"name": "cdc"}, {"name": "cdc.key"}]},
            "data": {"values": [
                [1, 2],
                [{"db": "app", "table": "users", "op": "insert", "key": "id=7"}, null],
                [null, "id=7"]
            ]}
        }))
        .unwrap();
        let e = Expectation::for_marker(7);
        let counts = count_marked_rows(&[frame], &e);
        // Row 0 from the object; row 1 has a key but no table/op/db: not counted.
        assert_eq!(describe_counts(&counts), "users insert 1");
    }
}
