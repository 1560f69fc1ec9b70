//! Smoke checks for Elasticsearch, Grafana and TiCDC against recorded responses.
//!
//! Fixture shapes (details and sources in `tests/fixtures/http/README.md`):
//! - Elasticsearch reference, "Cluster health API" example response (`cluster-health-*.json`) and
//!   "Search API" response (`hits.hits[]._source`), with `_source` lines shaped like
//!   `monitoring/testdata/event-line-row-insert.ndjson` plus Filebeat's fields;
//! - Grafana `docs/sources/developers/http_api/other.md` (Health API),
//!   `folder_dashboard_search.md` (search hits), `data_source.md` ("Check data source health":
//!   `{"message","status":"OK"}`), and grafana `pkg/api/datasources.go` `checkDatasourceHealth`
//!   (non-OK → HTTP 400 with `"status":"ERROR"`);
//! - Grafana `POST /api/ds/query` answers (`grafana/ds-query-*.json`): `backend.QueryDataResponse`
//!   as `pkg/api/ds_query.go` streams it; the Elasticsearch frame built by the rules of
//!   `pkg/tsdb/elasticsearch/response_parser.go` `processRawDataResponse` from
//!   `elasticsearch/search-smoke-*.json`, the Prometheus frames shaped like
//!   `pkg/promlib/converter/testdata/prom-vector-frame.jsonc`;
//! - TiCDC as in `tests/ticdc_api.rs`.

#[path = "fixtures/http/server.rs"]
mod server;

use std::time::Duration;

use cdcmon::smoke::checks::{BasicAuth, Expectation, elasticsearch, grafana, ticdc};
use cdcmon::ticdc_api::TicdcClient;
use server::{FixtureServer, raw, reply};

/// The marker the search fixtures were recorded with.
const MARKER: u64 = 900000000000123;
const SHORT: Duration = Duration::from_millis(700);

fn http() -> reqwest::Client {
    cdcmon::smoke::checks::http_client().unwrap()
}

fn auth() -> BasicAuth {
    BasicAuth {
        user: "admin".into(),
        password: "s3cret".into(),
    }
}

#[tokio::test]
async fn elasticsearch_yellow_is_healthy() {
    let s = FixtureServer::start().await;
    s.route(
        "GET",
        "/_cluster/health",
        vec![reply(200, "elasticsearch/cluster-health-yellow.json")],
    );
    let msg = elasticsearch::cluster_health(&http(), &s.url(), SHORT)
        .await
        .unwrap();
    assert_eq!(
        msg,
        "Elasticsearch cluster testcluster is yellow (1 node(s))"
    );
}

#[tokio::test]
async fn elasticsearch_red_is_retried_then_fails() {
    let s = FixtureServer::start().await;
    s.route(
        "GET",
        "/_cluster/health",
        vec![reply(200, "elasticsearch/cluster-health-red.json")],
    );
    let err = format!(
        "{:#}",
        elasticsearch::cluster_health(&http(), &s.url(), SHORT)
            .await
            .unwrap_err()
    );
    assert!(err.contains("cluster testcluster is red"), "{err}");
    assert!(s.requests_to("GET", "/_cluster/health").len() >= 2);
}

#[tokio::test]
async fn elasticsearch_red_then_yellow_passes() {
    let s = FixtureServer::start().await;
    s.route(
        "GET",
        "/_cluster/health",
        vec![
            reply(200, "elasticsearch/cluster-health-red.json"),
            reply(200, "elasticsearch/cluster-health-yellow.json"),
        ],
    );
    elasticsearch::cluster_health(&http(), &s.url(), Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn elasticsearch_documents_of_the_marker_are_found_and_counted() {
    let s = FixtureServer::start().await;
    s.route(
        "POST",
        "/cdc-events-*/_search",
        vec![
            // Filebeat has not shipped everything yet on the first look.
            reply(200, "elasticsearch/search-empty.json"),
            reply(200, "elasticsearch/search-smoke-partial.json"),
            reply(200, "elasticsearch/search-smoke-hits.json"),
        ],
    );
    let e = Expectation::for_marker(MARKER);
    let msg = elasticsearch::wait_for_documents(
        &http(),
        &s.url(),
        "cdc-events-*",
        &e,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert!(
        msg.starts_with(
            "Elasticsearch cdc-events-* holds the event documents of id=900000000000123"
        ),
        "{msg}"
    );
    // The duplicate delivery of the users insert is counted, not hidden.
    assert!(msg.contains("users insert 2"), "{msg}");
    let searches = s.requests_to("POST", "/cdc-events-*/_search");
    assert_eq!(searches.len(), 3);
    let body: serde_json::Value = serde_json::from_str(&searches[0].body).unwrap();
    assert_eq!(
        body["query"]["bool"]["should"][0]["term"]["cdc.key"],
        "id=900000000000123"
    );
}

#[tokio::test]
async fn elasticsearch_missing_documents_fail_with_what_is_missing() {
    let s = FixtureServer::start().await;
    s.route(
        "POST",
        "/cdc-events-*/_search",
        vec![reply(200, "elasticsearch/search-smoke-partial.json")],
    );
    let e = Expectation::for_marker(MARKER);
    let err = format!(
        "{:#}",
        elasticsearch::wait_for_documents(&http(), &s.url(), "cdc-events-*", &e, SHORT)
            .await
            .unwrap_err()
    );
    assert!(err.contains("orders delete"), "{err}");
    assert!(err.contains("found: users insert 1"), "{err}");
}

#[tokio::test]
async fn elasticsearch_marker_of_another_run_does_not_count() {
    let s = FixtureServer::start().await;
    s.route(
        "POST",
        "/cdc-events-*/_search",
        vec![reply(200, "elasticsearch/search-smoke-hits.json")],
    );
    let e = Expectation::for_marker(MARKER + 1);
    assert!(
        elasticsearch::wait_for_documents(&http(), &s.url(), "cdc-events-*", &e, SHORT)
            .await
            .is_err()
    );
}

fn log_expectation(service: &str) -> elasticsearch::LogExpectation {
    elasticsearch::LogExpectation {
        marker: elasticsearch::log_marker(MARKER),
        service: service.to_owned(),
        level: "INFO".to_owned(),
    }
}

/// Issue 14: the smoke's start line is found in stack-logs-* by its marker, and the document
/// says which service wrote it at which level.
#[tokio::test]
async fn service_log_line_is_found_with_its_service_and_level() {
    let s = FixtureServer::start().await;
    s.route(
        "POST",
        "/stack-logs-*/_search",
        vec![
            // Filebeat has not shipped the line yet on the first look.
            reply(200, "elasticsearch/search-empty.json"),
            reply(200, "elasticsearch/search-logs-marker.json"),
        ],
    );
    let msg = elasticsearch::wait_for_log_line(
        &http(),
        &s.url(),
        "stack-logs-*",
        &log_expectation("cdcmon-smoke"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(
        msg,
        "Elasticsearch stack-logs-* holds the smoke's start line (service.name cdcmon-smoke, \
         log.level INFO) in stack-logs-2026.11.30"
    );
    let searches = s.requests_to("POST", "/stack-logs-*/_search");
    assert_eq!(searches.len(), 2);
    let body: serde_json::Value = serde_json::from_str(&searches[0].body).unwrap();
    assert_eq!(
        body["query"]["match_phrase"]["message"],
        "cdcmon-smoke-900000000000123"
    );
}

#[tokio::test]
async fn service_log_line_with_the_wrong_service_fails_at_once() {
    let s = FixtureServer::start().await;
    s.route(
        "POST",
        "/stack-logs-*/_search",
        vec![reply(200, "elasticsearch/search-logs-marker.json")],
    );
    // Compose names the service `smoke`; a NixOS document says cdcmon-smoke.
    let err = elasticsearch::wait_for_log_line(
        &http(),
        &s.url(),
        "stack-logs-*",
        &log_expectation("smoke"),
        Duration::from_secs(30),
    )
    .await
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("with service.name Some(\"cdcmon-smoke\") and log.level Some(\"INFO\"), expected \"smoke\""),
        "{text}"
    );
    assert_eq!(s.requests_to("POST", "/stack-logs-*/_search").len(), 1);

    let s = FixtureServer::start().await;
    s.route(
        "POST",
        "/stack-logs-*/_search",
        vec![reply(
            200,
            "elasticsearch/search-logs-marker-no-service.json",
        )],
    );
    let err = elasticsearch::wait_for_log_line(
        &http(),
        &s.url(),
        "stack-logs-*",
        &log_expectation("cdcmon-smoke"),
        SHORT,
    )
    .await
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("with service.name None"),
        "{err:#}"
    );
}

#[tokio::test]
async fn service_log_line_missing_names_the_marker_and_the_skip() {
    let s = FixtureServer::start().await;
    s.route(
        "POST",
        "/stack-logs-*/_search",
        vec![reply(200, "elasticsearch/search-empty.json")],
    );
    let err = elasticsearch::wait_for_log_line(
        &http(),
        &s.url(),
        "stack-logs-*",
        &log_expectation("cdcmon-smoke"),
        SHORT,
    )
    .await
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("no document in stack-logs-* holds the smoke's start line \"cdcmon-smoke-900000000000123\""),
        "{text}"
    );
    assert!(text.contains("--skip logs"), "{text}");
}

#[tokio::test]
async fn grafana_health_dashboard_and_datasources_pass() {
    let s = FixtureServer::start().await;
    s.route(
        "GET",
        "/api/health",
        vec![reply(200, "grafana/health.json")],
    )
    .route(
        "GET",
        "/api/search",
        vec![reply(200, "grafana/search-dashboard.json")],
    )
    .route(
        "GET",
        "/api/datasources/uid/prometheus/health",
        vec![reply(200, "grafana/datasource-health-prometheus-ok.json")],
    )
    .route(
        "GET",
        "/api/datasources/uid/elasticsearch/health",
        vec![reply(
            200,
            "grafana/datasource-health-elasticsearch-ok.json",
        )],
    );
    let c = http();
    let health = grafana::health(&c, &s.url(), SHORT).await.unwrap();
    assert!(health.contains("version 5.1.3, database ok"), "{health}");
    let dash = grafana::dashboard(&c, &s.url(), &auth(), "TiDB CDC", SHORT)
        .await
        .unwrap();
    assert_eq!(
        dash,
        "Grafana dashboard \"TiDB CDC\" provisioned (uid tidb-cdc, folder \"cdcmon\")"
    );
    let uids = ["prometheus".to_owned(), "elasticsearch".to_owned()];
    let ds = grafana::datasources(&c, &s.url(), &auth(), &uids, SHORT)
        .await
        .unwrap();
    assert!(
        ds.contains("prometheus (Successfully queried the Prometheus API)"),
        "{ds}"
    );
    assert!(
        ds.contains("elasticsearch (Elasticsearch data source is healthy)"),
        "{ds}"
    );

    // Basic auth on the API calls, and the search asks for dashboards by title.
    let search = &s.requests_to("GET", "/api/search")[0];
    assert_eq!(
        search.header("authorization"),
        Some("Basic YWRtaW46czNjcmV0")
    );
    assert!(search.target.contains("query=TiDB+CDC") || search.target.contains("query=TiDB%20CDC"));
    assert!(search.target.contains("type=dash-db"));
}

#[tokio::test]
async fn grafana_search_needs_the_exact_title() {
    let s = FixtureServer::start().await;
    s.route(
        "GET",
        "/api/search",
        vec![reply(200, "grafana/search-other-dashboard.json")],
    );
    let err = format!(
        "{:#}",
        grafana::dashboard(&http(), &s.url(), &auth(), "TiDB CDC", SHORT)
            .await
            .unwrap_err()
    );
    assert!(err.contains("no dashboard titled \"TiDB CDC\""), "{err}");
    assert!(err.contains("TiDB CDC (old copy)"), "{err}");
}

#[tokio::test]
async fn grafana_bad_credentials_fail_at_once() {
    let s = FixtureServer::start().await;
    s.route(
        "GET",
        "/api/search",
        vec![reply(401, "grafana/unauthorized.json")],
    );
    let err = format!(
        "{:#}",
        grafana::dashboard(
            &http(),
            &s.url(),
            &auth(),
            "TiDB CDC",
            Duration::from_secs(20)
        )
        .await
        .unwrap_err()
    );
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(err.contains("Invalid username or password"), "{err}");
    assert_eq!(s.requests_to("GET", "/api/search").len(), 1, "not retried");
}

#[tokio::test]
async fn grafana_failing_datasource_reports_its_message() {
    let s = FixtureServer::start().await;
    s.route(
        "GET",
        "/api/datasources/uid/prometheus/health",
        vec![reply(400, "grafana/datasource-health-error.json")],
    )
    .route(
        "GET",
        "/api/datasources/uid/elasticsearch/health",
        vec![reply(
            200,
            "grafana/datasource-health-elasticsearch-ok.json",
        )],
    );
    let uids = ["prometheus".to_owned(), "elasticsearch".to_owned()];
    let err = format!(
        "{:#}",
        grafana::datasources(&http(), &s.url(), &auth(), &uids, SHORT)
            .await
            .unwrap_err()
    );
    assert!(
        err.contains("datasource \"prometheus\" health check: HTTP 400, status ERROR"),
        "{err}"
    );
    assert!(err.contains("connection refused"), "{err}");
}

#[tokio::test]
async fn ticdc_smoke_checks_report_lag_and_failure() {
    let s = FixtureServer::start().await;
    s.route(
        "GET",
        "/api/v2/health",
        vec![reply(200, "ticdc/health-ok.json")],
    )
    .route(
        "GET",
        "/api/v2/changefeeds/app-cdc",
        vec![reply(200, "ticdc/changefeed-normal.json")],
    )
    .route(
        "GET",
        "/api/v2/changefeeds/broken",
        vec![reply(200, "ticdc/changefeed-failed.json")],
    );
    let client = TicdcClient::new(&s.url()).unwrap();
    let health = ticdc::health(&client, SHORT).await.unwrap();
    assert!(health.ends_with("healthy"), "{health}");
    let normal = ticdc::changefeed_normal(&client, "app-cdc", SHORT)
        .await
        .unwrap();
    assert!(
        normal.starts_with("changefeed app-cdc normal, checkpoint lag "),
        "{normal}"
    );
    let err = format!(
        "{:#}",
        ticdc::changefeed_normal(&client, "broken", SHORT)
            .await
            .unwrap_err()
    );
    assert!(err.contains("is failed"), "{err}");
    assert!(err.contains("CDC:ErrStartTsBeforeGC"), "{err}");
}

const DASHBOARD_UID: &str = "tidb-cdc";
const DS_QUERY: &str = "/api/ds/query";

/// `GET /api/dashboards/uid/{uid}` answers `{"dashboard": <model>, "meta": {...}}` (grafana
/// `docs/sources/developers/http_api/dashboard.md`, "Get dashboard by uid"); the model is the
/// repository's own provisioned dashboard, so the checks run its real queries.
fn dashboard_route(s: &FixtureServer) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("monitoring/grafana/dashboards/tidb-cdc.json");
    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let body = serde_json::json!({
        "dashboard": model,
        "meta": {"isStarred": false, "url": "/d/tidb-cdc/tidb-cdc", "folderId": 1,
                 "folderUid": "cdcmon", "slug": "tidb-cdc", "provisioned": true}
    });
    s.route(
        "GET",
        &format!("/api/dashboards/uid/{DASHBOARD_UID}"),
        vec![raw(200, &body.to_string())],
    );
}

/// issue 10.11: the marked rows are asked for through Grafana's Elasticsearch datasource with
/// the dashboard's raw-events query, and the dashboard's pie query through Prometheus.
#[tokio::test]
async fn grafana_queries_find_the_marked_rows_and_the_pie_series() {
    let s = FixtureServer::start().await;
    dashboard_route(&s);
    s.route(
        "POST",
        DS_QUERY,
        vec![
            // Filebeat has not shipped everything yet on the first look.
            reply(200, "grafana/ds-query-es-partial.json"),
            reply(200, "grafana/ds-query-es-marked.json"),
        ],
    );
    let e = Expectation::for_marker(MARKER);
    let c = http();
    let msg = grafana::wait_for_marked_rows(
        &c,
        &s.url(),
        &auth(),
        DASHBOARD_UID,
        &e,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert!(msg.contains("Raw CDC events (Elasticsearch)"), "{msg}");
    assert!(msg.contains("users insert 2"), "{msg}");
    assert!(msg.contains("orders delete 1"), "{msg}");
    let reqs = s.requests_to("POST", DS_QUERY);
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[0].header("authorization"),
        Some("Basic YWRtaW46czNjcmV0")
    );
    let body: serde_json::Value = serde_json::from_str(&reqs[0].body).unwrap();
    let q = &body["queries"][0];
    assert_eq!(q["refId"], "A");
    assert_eq!(q["datasource"]["uid"], "elasticsearch");
    assert_eq!(q["query"], "cdc.key:\"id=900000000000123\"");
    assert_eq!(q["metrics"][0]["type"], "raw_data");
    assert_eq!(q["timeField"], "@timestamp");
    let from: i64 = body["from"].as_str().unwrap().parse().unwrap();
    let to: i64 = body["to"].as_str().unwrap().parse().unwrap();
    assert!(to - from >= 3_600_000, "{body}");

    // The pie lacks `delete` at first (no counter query then); the second look finds every op
    // and asks the raw counters through the same datasource, 2 above the baseline per op.
    s.route(
        "POST",
        DS_QUERY,
        vec![
            reply(200, "grafana/ds-query-prom-pie-no-delete.json"),
            reply(200, "grafana/ds-query-prom-pie.json"),
            reply(200, "grafana/ds-query-prom-ops-total.json"),
        ],
    );
    let before = baseline();
    let msg = grafana::wait_for_pie(
        &c,
        &s.url(),
        &auth(),
        DASHBOARD_UID,
        &e,
        Some(&before),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert!(
        msg.contains("Row events in the last 1 h by operation"),
        "{msg}"
    );
    assert!(msg.contains("delete 2.0, insert 14.6, update 2.0"), "{msg}");
    assert!(
        msg.contains(
            r#"sum by (op) (cdc_events_total{db="app"}) rose by delete 2, insert 2, update 2"#
        ),
        "{msg}"
    );
    let reqs = s.requests_to("POST", DS_QUERY);
    // ES 2 + pie without delete + pie + raw counters.
    assert_eq!(reqs.len(), 5);
    let pie: serde_json::Value = serde_json::from_str(&reqs[3].body).unwrap();
    let q = &pie["queries"][0];
    assert_eq!(q["datasource"]["uid"], "prometheus");
    assert_eq!(q["expr"], "sum by (op) (increase(cdc_events_total[1h]))");
    assert_eq!(q["instant"], true);
    let raw: serde_json::Value = serde_json::from_str(&reqs[4].body).unwrap();
    let q = &raw["queries"][0];
    assert_eq!(q["refId"], "A");
    assert_eq!(q["datasource"]["uid"], "prometheus");
    assert_eq!(q["expr"], r#"sum by (op) (cdc_events_total{db="app"})"#);
    assert_eq!(q["instant"], true);
}

/// The smoke's Prometheus baseline by `(table, op)`: 2 below `ds-query-prom-ops-total.json`
/// for every op once summed over the tables (`items` has no row of the change).
fn baseline() -> cdcmon::smoke::checks::RowCounts {
    [
        (("users", "insert"), 14.0),
        (("orders", "insert"), 13.0),
        (("items", "insert"), 2.0),
        (("users", "update"), 5.0),
        (("orders", "update"), 5.0),
        (("users", "delete"), 4.0),
        (("orders", "delete"), 4.0),
    ]
    .into_iter()
    .map(|((t, o), n)| ((t.to_owned(), o.to_owned()), n))
    .collect()
}

/// The pie's three series exist from a table's first row event on, long before this run: the
/// raw counters through Grafana must have risen by the change for every op, or the check fails.
#[tokio::test]
async fn grafana_pie_with_counters_not_risen_by_the_change_fails() {
    let s = FixtureServer::start().await;
    dashboard_route(&s);
    s.route(
        "POST",
        DS_QUERY,
        vec![
            reply(200, "grafana/ds-query-prom-pie.json"),
            reply(200, "grafana/ds-query-prom-ops-total.json"),
        ],
    );
    let e = Expectation::for_marker(MARKER);
    // One delete more in the baseline: the counters rose by only 1 delete.
    let mut before = baseline();
    before.insert(("users".to_owned(), "delete".to_owned()), 5.0);
    let err = format!(
        "{:#}",
        grafana::wait_for_pie(
            &http(),
            &s.url(),
            &auth(),
            DASHBOARD_UID,
            &e,
            Some(&before),
            SHORT
        )
        .await
        .unwrap_err()
    );
    assert!(
        err.contains(r#"shows sum by (op) (cdc_events_total{db="app"}) rising by only delete 1, insert 2, update 2"#),
        "{err}"
    );
    assert!(
        err.contains("the change adds delete 2, insert 2, update 2"),
        "{err}"
    );
    // Without a baseline (--skip prometheus) the pie alone passes, and says so.
    let msg = grafana::wait_for_pie(&http(), &s.url(), &auth(), DASHBOARD_UID, &e, None, SHORT)
        .await
        .unwrap();
    assert!(msg.contains("raw counters not compared"), "{msg}");
}

#[tokio::test]
async fn grafana_query_without_a_marked_row_fails_with_what_is_missing() {
    let s = FixtureServer::start().await;
    dashboard_route(&s);
    s.route(
        "POST",
        DS_QUERY,
        vec![reply(200, "grafana/ds-query-es-partial.json")],
    );
    let e = Expectation::for_marker(MARKER);
    let err = format!(
        "{:#}",
        grafana::wait_for_marked_rows(&http(), &s.url(), &auth(), DASHBOARD_UID, &e, SHORT)
            .await
            .unwrap_err()
    );
    assert!(
        err.contains("returns no row of id=900000000000123 for:"),
        "{err}"
    );
    assert!(err.contains("orders delete"), "{err}");
    // Another run's marker is not this run's evidence.
    s.route(
        "POST",
        DS_QUERY,
        vec![reply(200, "grafana/ds-query-es-marked.json")],
    );
    let other = Expectation::for_marker(MARKER + 1);
    assert!(
        grafana::wait_for_marked_rows(&http(), &s.url(), &auth(), DASHBOARD_UID, &other, SHORT)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn grafana_pie_without_an_operation_fails() {
    let s = FixtureServer::start().await;
    dashboard_route(&s);
    s.route(
        "POST",
        DS_QUERY,
        vec![reply(200, "grafana/ds-query-prom-pie-no-delete.json")],
    );
    let e = Expectation::for_marker(MARKER);
    let err = format!(
        "{:#}",
        grafana::wait_for_pie(
            &http(),
            &s.url(),
            &auth(),
            DASHBOARD_UID,
            &e,
            Some(&baseline()),
            SHORT
        )
        .await
        .unwrap_err()
    );
    assert!(err.contains("has no series for: delete"), "{err}");
}

/// A query error inside Grafana (HTTP 400, `results.A.error`) is reported with its text.
#[tokio::test]
async fn grafana_query_errors_are_reported() {
    let s = FixtureServer::start().await;
    dashboard_route(&s);
    s.route(
        "POST",
        DS_QUERY,
        vec![reply(400, "grafana/ds-query-error.json")],
    );
    let e = Expectation::for_marker(MARKER);
    let err = format!(
        "{:#}",
        grafana::wait_for_marked_rows(&http(), &s.url(), &auth(), DASHBOARD_UID, &e, SHORT)
            .await
            .unwrap_err()
    );
    assert!(
        err.contains("the query failed in Grafana (HTTP 400)"),
        "{err}"
    );
    assert!(
        err.contains("no such index [cdc-events-2023.02.27]"),
        "{err}"
    );
}
