//! cdcmon's own `/metrics`: reachable, and `cdc_events_total` rises by exactly the marked
//! change while DDL stays out of the row counters.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{Expectation, RowCounts, describe_counts, get_text};
use crate::smoke::promtext::{self, Sample};

pub const ROW_METRIC: &str = "cdc_events_total";
pub const DDL_METRIC: &str = "cdc_ddl_events_total";

/// Scrape and parse `{base}/metrics`.
pub async fn scrape(client: &reqwest::Client, base: &str) -> anyhow::Result<Vec<Sample>> {
    let url = format!("{}/metrics", base.trim_end_matches('/'));
    let (status, body) = get_text(client, &url, None).await?;
    if status != 200 {
        bail!("{url} answered HTTP {status}: {}", super::snippet(&body));
    }
    promtext::parse(&body).map_err(|e| anyhow::anyhow!("{url} is not valid exposition text: {e}"))
}

/// `cdc_events_total` of database `app` by `(table, op)`.
pub fn row_counts(samples: &[Sample]) -> RowCounts {
    let mut out = RowCounts::new();
    for s in samples
        .iter()
        .filter(|s| s.name == ROW_METRIC && s.label("db") == Some("app"))
    {
        let key = (
            s.label("table").unwrap_or_default().to_owned(),
            s.label("op").unwrap_or_default().to_owned(),
        );
        *out.entry(key).or_insert(0.0) += s.value;
    }
    out
}

/// Sum of every `cdc_events_total` sample (all databases, tables, ops).
pub fn total_rows(samples: &[Sample]) -> f64 {
    promtext::sum(samples, ROW_METRIC, &[])
}

/// `/metrics` answers with valid text that includes `cdcmon_build_info`.
pub async fn reachable(
    client: &reqwest::Client,
    base: &str,
    deadline: Duration,
) -> anyhow::Result<String> {
    super::retry("cdcmon /metrics", deadline, || async {
        let samples = scrape(client, base).await?;
        let Some(build) = samples.iter().find(|s| s.name == "cdcmon_build_info") else {
            bail!("{base}/metrics has no cdcmon_build_info: is this cdcmon?");
        };
        Ok(format!(
            "cdcmon {base}/metrics: {} samples, version {}",
            samples.len(),
            build.label("version").unwrap_or("?")
        ))
    })
    .await
}

/// `after - before` per key of `expected` (missing series count as 0).
pub fn deltas(before: &RowCounts, after: &RowCounts, expected: &RowCounts) -> RowCounts {
    expected
        .keys()
        .map(|k| {
            let d = after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0);
            (k.clone(), d)
        })
        .collect()
}

/// Poll `/metrics` until every expected `(table, op)` rose by at least its count, then require
/// exactly that count: more means duplicates or DDL counted as rows.
pub async fn wait_for_exact_rise(
    client: &reqwest::Client,
    base: &str,
    before: &RowCounts,
    e: &Expectation,
    deadline: Duration,
) -> anyhow::Result<String> {
    let start = Instant::now();
    loop {
        let now = row_counts(&scrape(client, base).await.context("cannot scrape cdcmon")?);
        let d = deltas(before, &now, &e.rows);
        let reached = d.iter().all(|(k, v)| *v >= e.rows[k]);
        if reached {
            let over: RowCounts = d
                .iter()
                .filter(|(k, v)| **v > e.rows[*k])
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            if !over.is_empty() {
                bail!(
                    "{ROW_METRIC} rose by more than the change: {} (expected 1 each; duplicates, or another writer on app.*?)",
                    describe_counts(&over)
                );
            }
            return Ok(format!(
                "cdcmon {ROW_METRIC} rose by exactly {}",
                describe_counts(&d)
            ));
        }
        if start.elapsed() >= deadline {
            bail!(
                "after {:.0} s {ROW_METRIC} rose by only {} (expected 1 each)",
                deadline.as_secs_f64(),
                describe_counts(&d)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// DDL stayed out of the row counters: wait until cdcmon counted the DDL table's DDL (up to
/// `deadline`; absent for protocols without DDL), then require no row series for that table
/// and a total row rise of exactly the change's row count.
pub async fn ddl_not_counted_as_rows(
    client: &reqwest::Client,
    base: &str,
    total_before: f64,
    e: &Expectation,
    deadline: Duration,
) -> anyhow::Result<String> {
    let start = Instant::now();
    let ddl_matchers = [("db", "app"), ("table", e.ddl_table.as_str())];
    let samples = loop {
        let samples = scrape(client, base).await.context("cannot scrape cdcmon")?;
        let ddl = promtext::sum(&samples, DDL_METRIC, &ddl_matchers);
        if ddl >= 2.0 || start.elapsed() >= deadline {
            break samples;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let ddl = promtext::sum(&samples, DDL_METRIC, &ddl_matchers);
    let as_rows = promtext::sum(&samples, ROW_METRIC, &[("table", e.ddl_table.as_str())]);
    if as_rows > 0.0 {
        bail!(
            "DDL on app.{} was counted as {as_rows} row event(s) in {ROW_METRIC}",
            e.ddl_table
        );
    }
    let rise = total_rows(&samples) - total_before;
    if rise != e.total_rows() {
        bail!(
            "{ROW_METRIC} rose by {rise} in total, expected exactly {} (DDL counted as rows, or other writes during the smoke test)",
            e.total_rows()
        );
    }
    Ok(format!(
        "DDL not counted as rows: {DDL_METRIC} for app.{} = {ddl}, {ROW_METRIC} total rose by exactly {rise}",
        e.ddl_table
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_counts_group_by_table_and_op_of_app_only() {
        let samples = promtext::parse(
            "cdc_events_total{db=\"app\",table=\"users\",op=\"insert\"} 2\n\
             cdc_events_total{db=\"other\",table=\"users\",op=\"insert\"} 5\n\
             cdc_events_total{db=\"app\",table=\"orders\",op=\"delete\"} 1\n\
             cdc_ddl_events_total{db=\"app\",table=\"users\",type=\"ALTER\"} 1\n",
        )
        .unwrap();
        let c = row_counts(&samples);
        assert_eq!(c.len(), 2);
        assert_eq!(c[&("users".to_owned(), "insert".to_owned())], 2.0);
        assert_eq!(total_rows(&samples), 8.0);
        let e = Expectation::for_marker(1);
        let d = deltas(&RowCounts::new(), &c, &e.rows);
        assert_eq!(d.len(), 6);
        assert_eq!(d[&("orders".to_owned(), "delete".to_owned())], 1.0);
        assert_eq!(d[&("orders".to_owned(), "insert".to_owned())], 0.0);
    }
}
