//! cdcmon's own `/metrics`: reachable, caught up before the change (lag 0, watermark past a
//! TSO), `cdc_events_total` rising by at least the marked change (the counters are global:
//! other traffic adds to them), and DDL kept out of the row counters.

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

/// Poll `/metrics` until every expected `(table, op)` rose by at least its count. Only "at
/// least": the counters are global, and other writers on `app.*` add to them. The exact
/// evidence of the marked events comes from Kafka and Elasticsearch, which carry the marker.
pub async fn wait_for_rise(
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
        if d.iter().all(|(k, v)| *v >= e.rows[k]) {
            return Ok(format!(
                "cdcmon {ROW_METRIC} rose by at least the change: {}",
                describe_counts(&d)
            ));
        }
        if start.elapsed() >= deadline {
            bail!(
                "after {:.0} s {ROW_METRIC} rose by only {} (expected at least 1 each)",
                deadline.as_secs_f64(),
                describe_counts(&d)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// cdcmon's progress as `/metrics` shows it, for the caught-up wait.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// `cdc_kafka_consumer_lag_messages` summed over partitions; `None` without any partition.
    pub lag: Option<f64>,
    /// `cdc_watermark_timestamp_seconds` in ms; `None` when absent, NaN, or 0 (never received).
    pub watermark_ms: Option<i64>,
    /// `cdcmon_watermarks_total`: whether the stream carries watermarks at all.
    pub watermarks_received: f64,
}

impl Progress {
    pub fn from_samples(samples: &[Sample]) -> Progress {
        let lags: Vec<f64> = samples
            .iter()
            .filter(|s| s.name == LAG_METRIC)
            .map(|s| s.value)
            .collect();
        let watermark_ms = samples
            .iter()
            .find(|s| s.name == WATERMARK_METRIC)
            .map(|s| s.value)
            .filter(|v| v.is_finite() && *v > 0.0)
            .map(|v| (v * 1000.0).round() as i64);
        Progress {
            lag: (!lags.is_empty()).then(|| lags.iter().sum()),
            watermark_ms,
            watermarks_received: promtext::sum(samples, WATERMARKS_TOTAL, &[]),
        }
    }

    fn describe(&self) -> String {
        let lag = match self.lag {
            Some(l) => format!("consumer lag {l}"),
            None => "no partition assigned (no lag series)".to_owned(),
        };
        let wm = match self.watermark_ms {
            Some(ms) => format!("watermark {}", describe_ms(ms)),
            None => "no watermark".to_owned(),
        };
        format!("{lag}, {wm}")
    }
}

fn describe_ms(ms: i64) -> String {
    let mut out = Vec::with_capacity(24);
    crate::eventlog::write_rfc3339_ms(&mut out, ms);
    String::from_utf8_lossy(&out).into_owned()
}

pub const LAG_METRIC: &str = "cdc_kafka_consumer_lag_messages";
pub const WATERMARK_METRIC: &str = "cdc_watermark_timestamp_seconds";
pub const WATERMARKS_TOTAL: &str = "cdcmon_watermarks_total";

/// Wait until cdcmon has caught up with everything committed before `tso`: consumer lag 0 on
/// every assigned partition and, when the stream carries watermarks, the minimum watermark at
/// or past `tso`. A stream that has delivered no watermark at all after `no_watermark_grace`
/// (debezium on classic TiCDC, canal-json without `enable-tidb-extension`) is judged by lag
/// alone, and the message says so.
pub async fn wait_caught_up(
    client: &reqwest::Client,
    base: &str,
    tso: u64,
    deadline: Duration,
    no_watermark_grace: Duration,
) -> anyhow::Result<String> {
    let want_ms = crate::event::tso_physical_ms(tso);
    let start = Instant::now();
    loop {
        let p =
            Progress::from_samples(&scrape(client, base).await.context("cannot scrape cdcmon")?);
        if p.lag == Some(0.0) {
            match p.watermark_ms {
                Some(ms) if ms >= want_ms => {
                    return Ok(format!(
                        "cdcmon caught up: consumer lag 0, watermark {} at or past TSO {tso} ({}) read before the change",
                        describe_ms(ms),
                        describe_ms(want_ms)
                    ));
                }
                _ if p.watermarks_received == 0.0 && start.elapsed() >= no_watermark_grace => {
                    return Ok(format!(
                        "cdcmon caught up by consumer lag only (0): no watermark received in {:.0} s, the protocol carries none (debezium, canal-json without enable-tidb-extension)",
                        start.elapsed().as_secs_f64()
                    ));
                }
                _ => {}
            }
        }
        if start.elapsed() >= deadline {
            bail!(
                "after {:.0} s cdcmon has not caught up with TSO {tso} ({}): {}",
                deadline.as_secs_f64(),
                describe_ms(want_ms),
                p.describe()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `cdc_ddl_events_total` of the smoke's DDL table (every DDL type).
pub fn ddl_count(samples: &[Sample], e: &Expectation) -> f64 {
    promtext::sum(
        samples,
        DDL_METRIC,
        &[("db", "app"), ("table", e.ddl_table.as_str())],
    )
}

/// DDL stayed out of the row counters: wait until cdcmon counted the change's CREATE and DROP
/// of the DDL table (up to `deadline`; absent for protocols without DDL), then require that no
/// `cdc_events_total` series exists for that table. Other writers cannot fake or hide this.
pub async fn ddl_not_counted_as_rows(
    client: &reqwest::Client,
    base: &str,
    ddl_before: f64,
    e: &Expectation,
    deadline: Duration,
) -> anyhow::Result<String> {
    let start = Instant::now();
    let samples = loop {
        let samples = scrape(client, base).await.context("cannot scrape cdcmon")?;
        if ddl_count(&samples, e) - ddl_before >= 2.0 || start.elapsed() >= deadline {
            break samples;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let ddl = ddl_count(&samples, e) - ddl_before;
    let as_rows = promtext::sum(&samples, ROW_METRIC, &[("table", e.ddl_table.as_str())]);
    if as_rows > 0.0 {
        bail!(
            "DDL on app.{} was counted as {as_rows} row event(s) in {ROW_METRIC}",
            e.ddl_table
        );
    }
    let note = if ddl < 2.0 {
        " (fewer than the change's CREATE and DROP: this stream carries no DDL, e.g. debezium on classic TiCDC)"
    } else {
        ""
    };
    Ok(format!(
        "DDL not counted as rows: {DDL_METRIC} for app.{} rose by {ddl}{note}, no {ROW_METRIC} series for it",
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
        let e = Expectation::for_marker(1);
        let d = deltas(&RowCounts::new(), &c, &e.rows);
        assert_eq!(d.len(), 6);
        assert_eq!(d[&("orders".to_owned(), "delete".to_owned())], 1.0);
        assert_eq!(d[&("orders".to_owned(), "insert".to_owned())], 0.0);
    }
}

#[cfg(test)]
mod progress_tests {
    use super::*;

    #[test]
    fn progress_reads_lag_watermark_and_count() {
        let samples = promtext::parse(
            "cdc_kafka_consumer_lag_messages{partition=\"0\"} 0\n\
             cdc_kafka_consumer_lag_messages{partition=\"1\"} 2\n\
             cdc_watermark_timestamp_seconds 1677512812.888\n\
             cdcmon_watermarks_total 5\n",
        )
        .unwrap();
        let p = Progress::from_samples(&samples);
        assert_eq!(p.lag, Some(2.0));
        assert_eq!(p.watermark_ms, Some(1677512812888));
        assert_eq!(p.watermarks_received, 5.0);
        // Never received: absent, 0 or NaN all mean "no watermark", not 1970.
        for text in [
            "",
            "cdc_watermark_timestamp_seconds 0\n",
            "cdc_watermark_timestamp_seconds NaN\n",
        ] {
            let p = Progress::from_samples(&promtext::parse(text).unwrap());
            assert_eq!(p.watermark_ms, None, "{text:?}");
            assert_eq!(p.lag, None);
        }
    }
}
