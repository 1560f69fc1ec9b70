//! `cdcmon smoke`: verify a running stack hop by hop, then drive one marked change through
//! every hop (TiDB → TiCDC → Kafka → cdcmon → Prometheus / Elasticsearch) and assert it arrives.
//!
//! Each check has a deadline and prints one line (`[ok] 5/22 …`); the first failure stops the
//! run with its reason and a non-zero exit. `--json` adds a machine-readable report.
//! Layout: this file holds the flags, the fixed plan and the runner; `report` the output;
//! `checks/*` one module per hop; `promtext` the `/metrics` parser.

use std::collections::BTreeSet;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::protocol::{Compression, ProtocolChoice};
use crate::ticdc_api::TicdcClient;

pub mod checks;
pub mod promtext;
pub mod report;

use checks::{BasicAuth, Expectation, RowCounts};
use report::{CheckResult, Report, Status};

/// Groups of checks that `--skip` can turn off (a deployment without that hop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum CheckGroup {
    Tidb,
    Ticdc,
    Kafka,
    Prometheus,
    Elasticsearch,
    Grafana,
    Cdcmon,
    Schema,
    AppUser,
    Pipeline,
    /// Service logs (issue 14): the smoke's own start line in `stack-logs-*`.
    Logs,
}

impl CheckGroup {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckGroup::Tidb => "tidb",
            CheckGroup::Ticdc => "ticdc",
            CheckGroup::Kafka => "kafka",
            CheckGroup::Prometheus => "prometheus",
            CheckGroup::Elasticsearch => "elasticsearch",
            CheckGroup::Grafana => "grafana",
            CheckGroup::Cdcmon => "cdcmon",
            CheckGroup::Schema => "schema",
            CheckGroup::AppUser => "app-user",
            CheckGroup::Pipeline => "pipeline",
            CheckGroup::Logs => "logs",
        }
    }
}

/// Every check, in run order: the numbering `k/23` comes from here.
pub const PLAN: [(CheckGroup, &str); 23] = [
    (CheckGroup::Tidb, "TiDB reachable"),
    (CheckGroup::Ticdc, "TiCDC health"),
    (CheckGroup::Ticdc, "changefeed normal"),
    (CheckGroup::Kafka, "Kafka topic"),
    (CheckGroup::Prometheus, "Prometheus ready"),
    (CheckGroup::Prometheus, "Prometheus scrapes cdcmon"),
    (CheckGroup::Elasticsearch, "Elasticsearch health"),
    (CheckGroup::Grafana, "Grafana health"),
    (CheckGroup::Grafana, "Grafana dashboard"),
    (CheckGroup::Grafana, "Grafana datasources"),
    (CheckGroup::Cdcmon, "cdcmon /metrics"),
    (CheckGroup::Schema, "schema"),
    (CheckGroup::AppUser, "application user login"),
    (CheckGroup::Cdcmon, "cdcmon caught up"),
    (CheckGroup::Pipeline, "marked change"),
    (CheckGroup::Kafka, "events on Kafka"),
    (CheckGroup::Cdcmon, "cdcmon row counters"),
    (CheckGroup::Prometheus, "Prometheus row counters"),
    (CheckGroup::Elasticsearch, "Elasticsearch documents"),
    (CheckGroup::Grafana, "Grafana Elasticsearch query"),
    (CheckGroup::Grafana, "Grafana pie query"),
    (CheckGroup::Cdcmon, "DDL not counted as rows"),
    (CheckGroup::Logs, "service log line"),
];

/// Index in [`PLAN`] of the marked change; every later check up to [`SERVICE_LOG`] depends on it.
const MARKED_CHANGE: usize = 14;

/// Index in [`PLAN`] of the service-log check, last so Filebeat has had the whole run to ship
/// the start line; it does not depend on the marked change.
const SERVICE_LOG: usize = 22;

/// Flags of `cdcmon smoke`. Boxed because `cli::Command` holds every subcommand's flags
/// inline and this set is the largest by far; `Deref` keeps `args.brokers` working.
#[derive(Debug, Clone, clap::Args)]
pub struct SmokeArgs {
    #[command(flatten)]
    pub options: Box<SmokeOptions>,
}

impl std::ops::Deref for SmokeArgs {
    type Target = SmokeOptions;
    fn deref(&self) -> &SmokeOptions {
        &self.options
    }
}

/// The flags themselves (see [`SmokeArgs`]).
#[derive(Debug, Clone, clap::Args)]
pub struct SmokeOptions {
    /// Kafka bootstrap servers, comma-separated.
    #[arg(long, env = "CDCMON_BROKERS", default_value = crate::defaults::BROKERS)]
    pub brokers: String,
    /// Topic TiCDC writes to.
    #[arg(long, env = "CDCMON_TOPIC", default_value = crate::defaults::TOPIC)]
    pub topic: String,
    /// TiCDC protocol on the topic, for decoding the marked events: auto, canal-json,
    /// open-protocol, debezium, simple.
    #[arg(long, env = "CDCMON_PROTOCOL", default_value = "auto")]
    pub protocol: ProtocolChoice,
    /// Value compression set by TiCDC's `large-message-handle-compression`: none, snappy, lz4.
    #[arg(long, env = "CDCMON_COMPRESSION", value_enum, default_value_t = Compression::None)]
    pub compression: Compression,
    /// Avro schema registry (for `--protocol avro`) and row-checksum flags.
    #[command(flatten)]
    pub avro: crate::schema_registry::AvroArgs,
    /// TiDB account that may create a table in `app`, `mysql://user:password@host:port`.
    #[arg(
        long,
        env = "CDCMON_TIDB_URL",
        default_value = crate::defaults::TIDB_URL
    )]
    pub tidb_url: String,
    /// Application user whose login is checked.
    #[arg(long, env = "CDCMON_APP_USER", default_value = "app")]
    pub app_user: String,
    /// File with the application user's password; without it CDCMON_APP_PASSWORD is used.
    #[arg(long, env = "CDCMON_APP_PASSWORD_FILE")]
    pub app_password_file: Option<PathBuf>,
    /// TiCDC server (OpenAPI v2) base URL.
    #[arg(
        long,
        env = "CDCMON_TICDC_URL",
        default_value = crate::defaults::TICDC_URL
    )]
    pub ticdc_url: String,
    /// Changefeed that must be `normal`.
    #[arg(long, env = "CDCMON_CHANGEFEED_ID", default_value = crate::defaults::CHANGEFEED_ID)]
    pub changefeed_id: String,
    /// Prometheus base URL.
    #[arg(
        long,
        env = "CDCMON_PROMETHEUS_URL",
        default_value = crate::defaults::PROMETHEUS_URL
    )]
    pub prometheus_url: String,
    /// Elasticsearch base URL.
    #[arg(
        long,
        env = "CDCMON_ELASTICSEARCH_URL",
        default_value = crate::defaults::ELASTICSEARCH_URL
    )]
    pub elasticsearch_url: String,
    /// Index pattern holding the event-log documents.
    #[arg(
        long,
        env = "CDCMON_ELASTICSEARCH_INDEX",
        default_value = crate::defaults::ELASTICSEARCH_INDEX
    )]
    pub elasticsearch_index: String,
    /// Index pattern holding the stack services' logs (issue 14); the smoke's own start line
    /// must arrive there.
    #[arg(long, env = "CDCMON_LOGS_INDEX", default_value = crate::defaults::LOGS_INDEX)]
    pub logs_index: String,
    /// `service.name` the smoke's own log lines get in the logs index: its systemd unit without
    /// `.service` (NixOS) or its compose service (`smoke`).
    #[arg(long, env = "CDCMON_LOGS_SERVICE", default_value = "cdcmon-smoke")]
    pub logs_service: String,
    /// Grafana base URL.
    #[arg(
        long,
        env = "CDCMON_GRAFANA_URL",
        default_value = crate::defaults::GRAFANA_URL
    )]
    pub grafana_url: String,
    /// Grafana user for the API checks (basic auth).
    #[arg(long, env = "CDCMON_GRAFANA_USER", default_value = "admin")]
    pub grafana_user: String,
    /// File with the Grafana user's password; without it Grafana's default `admin` is tried
    /// (with a warning).
    #[arg(long, env = "CDCMON_GRAFANA_PASSWORD_FILE")]
    pub grafana_password_file: Option<PathBuf>,
    /// Title of the provisioned dashboard that must exist.
    #[arg(long, env = "CDCMON_GRAFANA_DASHBOARD", default_value = "TiDB CDC")]
    pub grafana_dashboard: String,
    /// Grafana datasource uids whose health checks must pass, comma-separated.
    #[arg(
        long = "grafana-datasource",
        env = "CDCMON_GRAFANA_DATASOURCES",
        value_delimiter = ',',
        default_value = "prometheus,elasticsearch"
    )]
    pub grafana_datasources: Vec<String>,
    /// cdcmon's HTTP address (the consumer's /metrics).
    #[arg(
        long,
        env = "CDCMON_CDCMON_URL",
        default_value = crate::defaults::CDCMON_URL
    )]
    pub cdcmon_url: String,
    /// Check groups to skip, comma-separated or repeated, for hops a deployment does not
    /// have: tidb, ticdc, kafka, prometheus, elasticsearch, grafana, cdcmon, schema, app-user,
    /// pipeline, logs. Skipped checks are reported loudly.
    #[arg(long, env = "CDCMON_SKIP", value_enum, value_delimiter = ',')]
    pub skip: Vec<CheckGroup>,
    /// Deadline of each reachability check, in seconds (services may still be starting).
    #[arg(long, env = "CDCMON_SMOKE_TIMEOUT_SECS", default_value_t = 30)]
    pub timeout_secs: u64,
    /// Deadline of each pipeline check (the marked change reaching a hop), in seconds.
    #[arg(
        long,
        env = "CDCMON_SMOKE_PIPELINE_TIMEOUT_SECS",
        default_value_t = 120
    )]
    pub pipeline_timeout_secs: u64,
    /// Write a JSON report: to --json-report if given, else to stdout (the per-check lines
    /// then go to stderr).
    #[arg(long, env = "CDCMON_SMOKE_JSON")]
    pub json: bool,
    /// Path of the JSON report (implies --json).
    #[arg(long, env = "CDCMON_SMOKE_JSON_REPORT")]
    pub json_report: Option<PathBuf>,
}

/// An earlier check failed; the run stops.
#[derive(Debug)]
pub struct Stopped;

/// Walks [`PLAN`], runs or skips each check, prints its line and keeps the results.
pub struct Runner {
    next: usize,
    skip: BTreeSet<CheckGroup>,
    results: Vec<CheckResult>,
    out: Box<dyn Write + Send>,
    start: Instant,
}

impl Runner {
    pub fn new(skip: &[CheckGroup], out: Box<dyn Write + Send>) -> Runner {
        Runner {
            next: 0,
            skip: skip.iter().copied().collect(),
            results: Vec::new(),
            out,
            start: Instant::now(),
        }
    }

    pub fn skips(&self, group: CheckGroup) -> bool {
        self.skip.contains(&group)
    }

    fn record(&mut self, status: Status, message: String, elapsed: Duration) -> &CheckResult {
        let (group, name) = PLAN[self.next.min(PLAN.len() - 1)];
        self.next += 1;
        self.results.push(CheckResult {
            index: self.next,
            total: PLAN.len(),
            group: group.as_str().to_owned(),
            name: name.to_owned(),
            status,
            message,
            elapsed_ms: elapsed.as_millis() as u64,
        });
        let line = self
            .results
            .last()
            .map(CheckResult::line)
            .unwrap_or_default();
        // The report is the product; a closed stdout must not abort the checks.
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
        &self.results[self.results.len() - 1]
    }

    fn current_group(&self) -> CheckGroup {
        PLAN[self.next.min(PLAN.len() - 1)].0
    }

    /// Run the next planned check (unless its group is skipped) with a hard limit of
    /// `limit` + 15 s over the check's own deadline, so nothing can hang the run.
    pub async fn check<T>(
        &mut self,
        group: CheckGroup,
        limit: Duration,
        fut: impl Future<Output = anyhow::Result<(T, String)>>,
    ) -> Result<Option<T>, Stopped> {
        debug_assert_eq!(
            self.current_group(),
            group,
            "check {} out of plan",
            self.next + 1
        );
        if self.skips(group) {
            self.record(
                Status::Skipped,
                format!("skipped (--skip {})", group.as_str()),
                Duration::ZERO,
            );
            return Ok(None);
        }
        let start = Instant::now();
        let hard = limit + Duration::from_secs(15);
        let outcome = match tokio::time::timeout(hard, fut).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!(
                "no result within {:.0} s",
                hard.as_secs_f64()
            )),
        };
        match outcome {
            Ok((value, message)) => {
                self.record(Status::Ok, message, start.elapsed());
                Ok(Some(value))
            }
            Err(err) => {
                self.record(Status::Failed, format!("{err:#}"), start.elapsed());
                Err(Stopped)
            }
        }
    }

    /// Skip the next planned check because something it needs did not run.
    pub fn skip_dependent(&mut self, reason: &str) {
        self.record(Status::Skipped, reason.to_owned(), Duration::ZERO);
    }

    /// Mark the rest of the plan as not run and build the report.
    pub fn finish(mut self, marker: Option<u64>) -> Report {
        let failed = self.results.iter().any(|r| r.status == Status::Failed);
        while self.next < PLAN.len() {
            let (group, name) = PLAN[self.next];
            self.next += 1;
            self.results.push(CheckResult {
                index: self.next,
                total: PLAN.len(),
                group: group.as_str().to_owned(),
                name: name.to_owned(),
                status: Status::NotRun,
                message: "not run: an earlier check failed".to_owned(),
                elapsed_ms: 0,
            });
        }
        let report = Report {
            ok: !failed,
            marker,
            skipped_groups: self.skip.iter().map(|g| g.as_str().to_owned()).collect(),
            checks: self.results,
            elapsed_ms: self.start.elapsed().as_millis() as u64,
        };
        for line in report.summary() {
            let _ = writeln!(self.out, "{line}");
        }
        let _ = self.out.flush();
        report
    }
}

/// State captured just before the marked change (after cdcmon caught up), for the "it rose
/// by at least" checks and the Kafka start offsets.
#[derive(Debug, Default)]
struct Before {
    kafka_offsets: Option<Vec<(i32, i64)>>,
    cdcmon_rows: Option<RowCounts>,
    cdcmon_ddl: f64,
    prometheus_rows: Option<RowCounts>,
}

fn grafana_auth(args: &SmokeArgs) -> anyhow::Result<BasicAuth> {
    let password = match &args.grafana_password_file {
        Some(path) => crate::secret_file::read_secret_as_grafana(path, "Grafana password")?,
        None => {
            tracing::warn!(
                "no --grafana-password-file: trying Grafana's default password; change it in production"
            );
            "admin".to_owned()
        }
    };
    Ok(BasicAuth {
        user: args.grafana_user.clone(),
        password,
    })
}

/// Run every check and return the report (the per-check lines go to `out`).
pub async fn run_checks(args: &SmokeArgs, out: Box<dyn Write + Send>) -> anyhow::Result<Report> {
    use checks::{cdcmon, elasticsearch, grafana, kafka, prometheus, ticdc, tidb};

    let http = checks::http_client()?;
    let ticdc_client = TicdcClient::new(&args.ticdc_url)?;
    let t = Duration::from_secs(args.timeout_secs);
    let pt = Duration::from_secs(args.pipeline_timeout_secs);
    let mut r = Runner::new(&args.skip, out);
    let e = Expectation::for_marker(checks::new_marker_id());
    let mut marker = None;
    // The smoke's start line: its unit's journal (compose: its container log) carries it to the
    // logs index, where the last check looks for it (issue 14).
    let log_expectation = elasticsearch::LogExpectation {
        marker: elasticsearch::log_marker(e.id),
        service: args.logs_service.clone(),
        level: "INFO".to_owned(),
    };
    tracing::info!("smoke started; log marker {}", log_expectation.marker);

    let outcome: Result<(), Stopped> = async {
        use CheckGroup as G;
        let unit = |f: anyhow::Result<String>| f.map(|m| ((), m));

        r.check(G::Tidb, t, async {
            unit(tidb::select_one(&args.tidb_url, t).await)
        })
        .await?;
        r.check(G::Ticdc, t, async {
            unit(ticdc::health(&ticdc_client, t).await)
        })
        .await?;
        r.check(G::Ticdc, t, async {
            unit(ticdc::changefeed_normal(&ticdc_client, &args.changefeed_id, t).await)
        })
        .await?;
        r.check(G::Kafka, t, async {
            unit(kafka::topic_metadata(&args.brokers, &args.topic, t).await)
        })
        .await?;
        r.check(G::Prometheus, t, async {
            unit(prometheus::ready(&http, &args.prometheus_url, t).await)
        })
        .await?;
        r.check(G::Prometheus, t, async {
            unit(prometheus::target_up(&http, &args.prometheus_url, &args.cdcmon_url, t).await)
        })
        .await?;
        r.check(G::Elasticsearch, t, async {
            unit(elasticsearch::cluster_health(&http, &args.elasticsearch_url, t).await)
        })
        .await?;
        r.check(G::Grafana, t, async {
            unit(grafana::health(&http, &args.grafana_url, t).await)
        })
        .await?;
        // Read once; a missing password file fails the first check that needs it.
        let auth: Result<BasicAuth, String> = if r.skips(G::Grafana) {
            Err("Grafana checks skipped".to_owned())
        } else {
            grafana_auth(args).map_err(|e| format!("{e:#}"))
        };
        let dashboard_uid = r
            .check(G::Grafana, t, async {
                let auth = auth.clone().map_err(anyhow::Error::msg)?;
                grafana::find_dashboard(&http, &args.grafana_url, &auth, &args.grafana_dashboard, t)
                    .await
            })
            .await?;
        r.check(G::Grafana, t, async {
            let auth = auth.clone().map_err(anyhow::Error::msg)?;
            unit(
                grafana::datasources(
                    &http,
                    &args.grafana_url,
                    &auth,
                    &args.grafana_datasources,
                    t,
                )
                .await,
            )
        })
        .await?;
        r.check(G::Cdcmon, t, async {
            unit(cdcmon::reachable(&http, &args.cdcmon_url, t).await)
        })
        .await?;
        r.check(G::Schema, t, async {
            unit(tidb::schema(&args.tidb_url).await)
        })
        .await?;
        r.check(G::AppUser, t, async {
            let password = crate::db::resolve_app_password(args.app_password_file.as_deref())
                .context("cannot check the application login (or pass --skip app-user)")?;
            unit(tidb::app_login(&args.tidb_url, &args.app_user, &password).await)
        })
        .await?;

        // ---- cdcmon caught up: no baseline before it has consumed everything older ----
        if r.skips(G::Tidb) {
            r.skip_dependent("skipped: needs TiDB's TSO (--skip tidb)");
        } else {
            r.check(G::Cdcmon, pt, async {
                let tso = tidb::current_tso(&args.tidb_url).await?;
                unit(
                    cdcmon::wait_caught_up(
                        &http,
                        &args.cdcmon_url,
                        tso,
                        pt,
                        Duration::from_secs(15).min(pt),
                    )
                    .await,
                )
            })
            .await?;
        }

        // ---- pipeline: one marked change through every hop ----
        let before = if r.skips(G::Tidb) {
            r.skip_dependent("skipped: needs TiDB (--skip tidb)");
            None
        } else {
            let (skip_kafka, skip_cdcmon, skip_prom) = (
                r.skips(G::Kafka),
                r.skips(G::Cdcmon),
                r.skips(G::Prometheus),
            );
            r.check(G::Pipeline, pt, async {
                let mut before = Before::default();
                if !skip_kafka {
                    before.kafka_offsets = Some(
                        kafka::end_offsets(&args.brokers, &args.topic)
                            .await
                            .context("cannot read the topic's end offsets")?,
                    );
                }
                if !skip_cdcmon {
                    let samples = cdcmon::scrape(&http, &args.cdcmon_url).await?;
                    before.cdcmon_rows = Some(cdcmon::row_counts(&samples));
                    before.cdcmon_ddl = cdcmon::ddl_count(&samples, &e);
                }
                if !skip_prom {
                    before.prometheus_rows =
                        Some(prometheus::row_counts(&http, &args.prometheus_url).await?);
                }
                let mut msg = tidb::apply_change(&args.tidb_url, &e).await?;
                if let Some(o) = &before.kafka_offsets {
                    msg.push_str(&format!(
                        "; Kafka start offsets {}",
                        kafka::describe_offsets(o)
                    ));
                }
                Ok((before, msg))
            })
            .await?
        };
        match before {
            Some(before) => {
                marker = Some(e.id);
                pipeline_checks(&mut r, args, &http, &auth, &dashboard_uid, &e, &before, pt)
                    .await?;
            }
            None => {
                for _ in MARKED_CHANGE + 1..SERVICE_LOG {
                    r.skip_dependent("skipped: no marked change was made");
                }
            }
        }

        // ---- service logs: the smoke's start line in the logs index ----
        r.check(G::Logs, pt, async {
            unit(
                elasticsearch::wait_for_log_line(
                    &http,
                    &args.elasticsearch_url,
                    &args.logs_index,
                    &log_expectation,
                    pt,
                )
                .await,
            )
        })
        .await?;
        Ok(())
    }
    .await;
    // `Stopped` already printed its line; the report says the rest.
    let _ = outcome;
    Ok(r.finish(marker))
}

/// Checks 16..22: the marked change at every hop after TiDB.
#[allow(clippy::too_many_arguments)]
async fn pipeline_checks(
    r: &mut Runner,
    args: &SmokeArgs,
    http: &reqwest::Client,
    auth: &Result<BasicAuth, String>,
    dashboard_uid: &Option<String>,
    e: &Expectation,
    before: &Before,
    pt: Duration,
) -> Result<(), Stopped> {
    use CheckGroup as G;
    use checks::{cdcmon, elasticsearch, grafana, kafka, prometheus};
    let unit = |f: anyhow::Result<String>| f.map(|m| ((), m));
    r.check(G::Kafka, pt, async {
        let offsets = before.kafka_offsets.clone().unwrap_or_default();
        let seen = kafka::wait_for_events_with(
            &args.brokers,
            &args.topic,
            &offsets,
            (args.protocol, args.compression, &args.avro),
            e,
            pt,
        )
        .await?;
        unit(Ok(kafka::describe_seen(&args.topic, &seen)))
    })
    .await?;
    r.check(G::Cdcmon, pt, async {
        let b = before.cdcmon_rows.clone().unwrap_or_default();
        unit(cdcmon::wait_for_rise(http, &args.cdcmon_url, &b, e, pt).await)
    })
    .await?;
    r.check(G::Prometheus, pt, async {
        let b = before.prometheus_rows.clone().unwrap_or_default();
        unit(prometheus::wait_for_increase(http, &args.prometheus_url, &b, e, pt).await)
    })
    .await?;
    r.check(G::Elasticsearch, pt, async {
        unit(
            elasticsearch::wait_for_documents(
                http,
                &args.elasticsearch_url,
                &args.elasticsearch_index,
                e,
                pt,
            )
            .await,
        )
    })
    .await?;
    for pie in [false, true] {
        r.check(G::Grafana, pt, async {
            let auth = auth.clone().map_err(anyhow::Error::msg)?;
            let uid = dashboard_uid
                .clone()
                .context("no dashboard uid (the dashboard check did not run)")?;
            let url = &args.grafana_url;
            unit(if pie {
                let b = before.prometheus_rows.as_ref();
                grafana::wait_for_pie(http, url, &auth, &uid, e, b, pt).await
            } else {
                grafana::wait_for_marked_rows(http, url, &auth, &uid, e, pt).await
            })
        })
        .await?;
    }
    // DDL reaches cdcmon in the same partition order; 15 s is plenty once the rows arrived.
    r.check(G::Cdcmon, pt, async {
        unit(
            cdcmon::ddl_not_counted_as_rows(
                http,
                &args.cdcmon_url,
                before.cdcmon_ddl,
                e,
                Duration::from_secs(15).min(pt),
            )
            .await,
        )
    })
    .await?;
    Ok(())
}

/// Entry point of `cdcmon smoke`.
pub async fn run(args: SmokeArgs) -> anyhow::Result<()> {
    let json = args.json || args.json_report.is_some();
    // JSON on stdout needs the human lines out of its way.
    let human: Box<dyn Write + Send> = if json && args.json_report.is_none() {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let report = run_checks(&args, human).await?;
    if json {
        match &args.json_report {
            Some(path) => {
                let file = std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                report
                    .write_json(std::io::BufWriter::new(file))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            None => report
                .write_json(std::io::stdout().lock())
                .context("cannot write the JSON report")?,
        }
    }
    if let Some(failed) = report.checks.iter().find(|c| c.status == Status::Failed) {
        anyhow::bail!(
            "smoke test failed at {}/{} {}: {}",
            failed.index,
            failed.total,
            failed.name,
            failed.message
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: SmokeArgs,
    }

    fn args(extra: &[&str]) -> SmokeArgs {
        let mut argv = vec!["smoke"];
        argv.extend_from_slice(extra);
        Wrapper::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn defaults_are_the_stack_defaults() {
        let a = args(&[]);
        assert_eq!(a.brokers, "localhost:9092");
        assert_eq!(a.topic, "app_cdc");
        assert_eq!(a.tidb_url, "mysql://root@127.0.0.1:4000");
        assert_eq!(a.ticdc_url, "http://127.0.0.1:8300");
        assert_eq!(a.prometheus_url, "http://127.0.0.1:9090");
        assert_eq!(a.elasticsearch_url, "http://127.0.0.1:9200");
        assert_eq!(a.grafana_url, "http://127.0.0.1:3000");
        assert_eq!(a.cdcmon_url, "http://127.0.0.1:9102");
        assert_eq!(a.grafana_datasources, ["prometheus", "elasticsearch"]);
        assert_eq!(a.logs_index, "stack-logs-*");
        assert_eq!(a.logs_service, "cdcmon-smoke");
        assert!(a.skip.is_empty());
    }

    #[test]
    fn skip_takes_lists_and_repeats() {
        let a = args(&["--skip", "grafana,elasticsearch", "--skip", "app-user"]);
        assert_eq!(
            a.skip,
            [
                CheckGroup::Grafana,
                CheckGroup::Elasticsearch,
                CheckGroup::AppUser
            ]
        );
        assert!(Wrapper::try_parse_from(["smoke", "--skip", "nope"]).is_err());
    }

    #[test]
    fn plan_names_every_group_and_pipeline_follows_the_reachability_checks() {
        for g in [
            CheckGroup::Tidb,
            CheckGroup::Ticdc,
            CheckGroup::Kafka,
            CheckGroup::Prometheus,
            CheckGroup::Elasticsearch,
            CheckGroup::Grafana,
            CheckGroup::Cdcmon,
            CheckGroup::Schema,
            CheckGroup::AppUser,
            CheckGroup::Pipeline,
            CheckGroup::Logs,
        ] {
            assert!(PLAN.iter().any(|(pg, _)| *pg == g), "{g:?}");
        }
        assert_eq!(PLAN[SERVICE_LOG].0, CheckGroup::Logs);
        assert_eq!(SERVICE_LOG, PLAN.len() - 1, "the service-log check is last");
        assert_eq!(PLAN[MARKED_CHANGE].0, CheckGroup::Pipeline);
        assert_eq!(
            PLAN[MARKED_CHANGE - 1].0,
            CheckGroup::Cdcmon,
            "caught up before it"
        );
    }

    /// Everything skipped: walks the whole plan, numbers 1..=23, passes loudly.
    #[tokio::test]
    async fn skipping_every_group_walks_the_plan_and_warns() {
        let all = "tidb,ticdc,kafka,prometheus,elasticsearch,grafana,cdcmon,schema,app-user,pipeline,logs";
        let a = args(&["--skip", all]);
        let buf = SharedBuf::default();
        let report = run_checks(&a, Box::new(buf.clone())).await.unwrap();
        assert!(report.ok);
        assert_eq!(report.checks.len(), PLAN.len());
        assert!(report.checks.iter().all(|c| c.status == Status::Skipped));
        assert_eq!(report.checks[22].index, 23);
        let text = buf.text();
        assert!(
            text.contains("[skip] 1/23 TiDB reachable: skipped (--skip tidb)"),
            "{text}"
        );
        assert!(
            text.contains("[skip] 15/23 marked change: skipped: needs TiDB"),
            "{text}"
        );
        assert!(
            text.contains("[skip] 16/23 events on Kafka: skipped: no marked change was made"),
            "{text}"
        );
        assert!(
            text.contains("[skip] 22/23 DDL not counted as rows: skipped: no marked change"),
            "{text}"
        );
        assert!(
            text.contains("[skip] 23/23 service log line: skipped (--skip logs)"),
            "{text}"
        );
        assert!(text.contains("NOT verified"), "{text}");
    }

    /// Without the marked change (no TiDB) the service-log check still runs, last.
    #[tokio::test]
    async fn service_log_check_runs_without_the_pipeline_and_fails_clearly() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let a = args(&[
            "--skip",
            "tidb,ticdc,kafka,prometheus,elasticsearch,grafana,cdcmon,schema,app-user,pipeline",
            "--elasticsearch-url",
            &format!("http://127.0.0.1:{port}"),
            "--pipeline-timeout-secs",
            "1",
        ]);
        let buf = SharedBuf::default();
        let report = run_checks(&a, Box::new(buf.clone())).await.unwrap();
        assert!(!report.ok);
        assert_eq!(report.checks[SERVICE_LOG].status, Status::Failed);
        assert_eq!(report.checks[SERVICE_LOG].group, "logs");
        assert_eq!(report.count(Status::NotRun), 0);
        let text = buf.text();
        assert!(
            text.contains("[skip] 21/23 Grafana pie query: skipped: no marked change was made"),
            "{text}"
        );
        assert!(text.contains("[FAIL] 23/23 service log line:"), "{text}");
    }

    /// A failure stops the run: later checks are `not_run`, the summary names the failure.
    #[tokio::test]
    async fn first_failure_stops_the_run() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let a = args(&[
            "--skip",
            "tidb,ticdc,kafka",
            "--prometheus-url",
            &format!("http://127.0.0.1:{port}"),
            "--timeout-secs",
            "1",
        ]);
        let buf = SharedBuf::default();
        let report = run_checks(&a, Box::new(buf.clone())).await.unwrap();
        assert!(!report.ok);
        assert_eq!(report.checks[4].status, Status::Failed);
        assert_eq!(report.checks[5].status, Status::NotRun);
        assert_eq!(report.count(Status::NotRun), 18);
        let text = buf.text();
        assert!(text.contains("[FAIL] 5/23 Prometheus ready:"), "{text}");
        assert!(
            text.contains("smoke FAILED at 5/23 (Prometheus ready); 18 check(s) not run"),
            "{text}"
        );
    }

    #[derive(Clone, Default)]
    struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl SharedBuf {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    impl Write for SharedBuf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
