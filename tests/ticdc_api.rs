//! `cdcmon changefeed ensure` and the TiCDC OpenAPI v2 client against recorded responses.
//!
//! The fixtures in `tests/fixtures/http/ticdc/` follow the documented shapes (see
//! `tests/fixtures/http/README.md` for each file's source):
//! - pingcap/docs `ticdc/ticdc-open-api-v2.md` (@002187b): error template
//!   `{"error_msg","error_code"}`, `GET /api/v2/health` → `{}`, the ChangeFeedInfo response body
//!   of create/get (`state`, `checkpoint_ts`, `checkpoint_time`, `error{addr,code,message}`);
//! - pingcap/tiflow `cdc/api/middleware/middleware.go` (@c7b2588): errors are written with gin
//!   `IndentedJSON`, 400 for `httpBadRequestError` (`ErrChangeFeedNotExists`, …, `cdc/api/util.go`),
//!   else 500 — so `ErrChangeFeedAlreadyExists` is HTTP 500 on classic TiCDC;
//! - pingcap/ticdc `pkg/api/util.go` (@b813e76): the new architecture lists
//!   `ErrChangeFeedAlreadyExists` as a bad request → HTTP 400;
//! - error texts from tiflow `pkg/errors/cdc_errors.go` (`[CDC:ErrXxx]message`).

#[path = "fixtures/http/server.rs"]
mod server;

use std::time::Duration;

use cdcmon::event::Protocol;
use cdcmon::ticdc_api::{
    ChangefeedEnsureArgs, CreateChangefeed, EnsureAction, TicdcClient, default_sink_uri, ensure,
    now_ms, run_ensure,
};
use server::{FixtureServer, reply};

const CF: &str = "/api/v2/changefeeds/app-cdc";
const CREATE: &str = "/api/v2/changefeeds";
const HEALTH: &str = "/api/v2/health";
/// `checkpoint_ts` of the fixtures (TICDC.md §4: >> 18 = 1677512812888 ms).
const FIXTURE_TSO: u64 = 439749918821711874;

fn request() -> CreateChangefeed {
    CreateChangefeed::new(
        "app-cdc",
        &default_sink_uri(Protocol::CanalJson),
        &["app.*".to_owned()],
    )
}

async fn run(
    server: &FixtureServer,
) -> anyhow::Result<(EnsureAction, cdcmon::ticdc_api::ChangefeedInfo)> {
    let client = TicdcClient::new(&server.url()).unwrap();
    ensure(
        &client,
        &request(),
        Duration::from_secs(10),
        Duration::from_millis(20),
    )
    .await
}

#[tokio::test]
async fn absent_changefeed_is_created_with_replica_config_and_waited_for() {
    let server = FixtureServer::start().await;
    server
        // TiCDC still electing an owner on the first probe.
        .route(
            "GET",
            HEALTH,
            vec![
                reply(500, "ticdc/health-unhealthy.json"),
                reply(200, "ticdc/health-ok.json"),
            ],
        )
        .route(
            "GET",
            CF,
            vec![
                reply(400, "ticdc/changefeed-not-exists.json"),
                // Kafka not reachable yet: `warning` is transient, keep waiting.
                reply(200, "ticdc/changefeed-warning.json"),
                reply(200, "ticdc/changefeed-normal.json"),
            ],
        )
        .route(
            "POST",
            CREATE,
            vec![reply(200, "ticdc/changefeed-created.json")],
        );

    let (action, info) = run(&server).await.unwrap();
    assert_eq!(action, EnsureAction::Created);
    assert_eq!(info.state, "normal");
    assert_eq!(info.checkpoint_ts, FIXTURE_TSO);
    // Lag from the TSO: now - 1677512812888 ms. The fixture's checkpoint_time is a UTC+8
    // wall clock; reading it as UTC would be 8 h off.
    let lag = info.checkpoint_lag_ms(now_ms()).unwrap();
    let expected = now_ms() - 1677512812888;
    assert!((lag - expected).abs() < 5_000, "{lag} vs {expected}");

    assert_eq!(server.requests_to("GET", HEALTH).len(), 2);
    let posts = server.requests_to("POST", CREATE);
    assert_eq!(posts.len(), 1);
    assert!(
        posts[0]
            .header("content-type")
            .is_some_and(|v| v.starts_with("application/json"))
    );
    let body: serde_json::Value = serde_json::from_str(&posts[0].body).unwrap();
    assert_eq!(body["changefeed_id"], "app-cdc");
    assert_eq!(
        body["sink_uri"],
        "kafka://127.0.0.1:9092/app_cdc?protocol=canal-json&enable-tidb-extension=true&partition-num=1&replication-factor=1&max-message-bytes=1048576"
    );
    assert_eq!(
        body["replica_config"],
        serde_json::json!({"filter": {"rules": ["app.*"]}, "ignore_ineligible_table": true})
    );
    // `config` would be silently ignored by TiCDC.
    assert!(body.get("config").is_none(), "{body}");
    assert_eq!(server.requests_to("GET", CF).len(), 3);
}

#[tokio::test]
async fn existing_changefeed_is_not_posted_again() {
    let server = FixtureServer::start().await;
    server
        .route("GET", HEALTH, vec![reply(200, "ticdc/health-ok.json")])
        .route("GET", CF, vec![reply(200, "ticdc/changefeed-normal.json")]);
    let (action, info) = run(&server).await.unwrap();
    assert_eq!(action, EnsureAction::AlreadyPresent);
    assert_eq!(info.state, "normal");
    assert!(server.requests_to("POST", CREATE).is_empty());
}

/// The GET said absent, but the POST lost a race: classic TiCDC answers HTTP 500.
#[tokio::test]
async fn already_exists_500_from_classic_ticdc_is_success() {
    already_exists_is_success(500).await;
}

/// Same race on the new architecture, which answers HTTP 400.
#[tokio::test]
async fn already_exists_400_from_new_architecture_is_success() {
    already_exists_is_success(400).await;
}

async fn already_exists_is_success(status: u16) {
    let server = FixtureServer::start().await;
    server
        .route("GET", HEALTH, vec![reply(200, "ticdc/health-ok.json")])
        .route(
            "GET",
            CF,
            vec![
                reply(400, "ticdc/changefeed-not-exists.json"),
                reply(200, "ticdc/changefeed-normal.json"),
            ],
        )
        .route(
            "POST",
            CREATE,
            vec![reply(status, "ticdc/changefeed-already-exists.json")],
        );
    let (action, info) = run(&server).await.unwrap();
    assert_eq!(action, EnsureAction::CreatedConcurrently);
    assert_eq!(info.state, "normal");
}

#[tokio::test]
async fn failed_changefeed_is_an_error_with_its_message_and_code() {
    let server = FixtureServer::start().await;
    server
        .route("GET", HEALTH, vec![reply(200, "ticdc/health-ok.json")])
        .route(
            "GET",
            CF,
            vec![
                reply(400, "ticdc/changefeed-not-exists.json"),
                reply(200, "ticdc/changefeed-failed.json"),
            ],
        )
        .route(
            "POST",
            CREATE,
            vec![reply(200, "ticdc/changefeed-created.json")],
        );
    let err = format!("{:#}", run(&server).await.unwrap_err());
    assert!(err.contains("changefeed app-cdc is failed"), "{err}");
    assert!(err.contains("CDC:ErrStartTsBeforeGC"), "{err}");
    assert!(
        err.contains("earlier than or equal to GC safepoint"),
        "{err}"
    );
    assert!(err.contains("127.0.0.1:8300"), "{err}");
}

#[tokio::test]
async fn api_error_on_create_carries_error_msg_and_error_code() {
    let server = FixtureServer::start().await;
    server
        .route("GET", HEALTH, vec![reply(200, "ticdc/health-ok.json")])
        .route(
            "GET",
            CF,
            vec![reply(400, "ticdc/changefeed-not-exists.json")],
        )
        .route(
            "POST",
            CREATE,
            vec![reply(400, "ticdc/sink-uri-invalid.json")],
        );
    let err = format!("{:#}", run(&server).await.unwrap_err());
    assert!(err.contains("cannot create changefeed app-cdc"), "{err}");
    assert!(err.contains("HTTP 400"), "{err}");
    assert!(err.contains("CDC:ErrSinkURIInvalid"), "{err}");
    assert!(
        err.contains("[CDC:ErrSinkURIInvalid]sink uri invalid"),
        "{err}"
    );
}

#[tokio::test]
async fn unhealthy_ticdc_gives_up_at_the_deadline_with_the_api_error() {
    let server = FixtureServer::start().await;
    server.route(
        "GET",
        HEALTH,
        vec![reply(500, "ticdc/health-unhealthy.json")],
    );
    let client = TicdcClient::new(&server.url()).unwrap();
    let err = ensure(
        &client,
        &request(),
        Duration::from_millis(800),
        Duration::from_millis(20),
    )
    .await
    .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("not healthy after"), "{err}");
    assert!(err.contains("CDC:ErrClusterIsUnhealthy"), "{err}");
    assert!(server.requests_to("GET", HEALTH).len() >= 2);
    assert!(server.requests_to("GET", CF).is_empty());
}

#[tokio::test]
async fn unreachable_ticdc_is_a_clear_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = TicdcClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let err = format!(
        "{:#}",
        ensure(
            &client,
            &request(),
            Duration::from_millis(300),
            Duration::from_millis(20)
        )
        .await
        .unwrap_err()
    );
    assert!(err.contains("cannot reach TiCDC"), "{err}");
}

/// The CLI entry point: `--protocol simple` without `--sink-uri` builds the default URI.
#[tokio::test]
async fn run_ensure_builds_the_default_sink_uri_from_protocol() {
    let server = FixtureServer::start().await;
    server
        .route("GET", HEALTH, vec![reply(200, "ticdc/health-ok.json")])
        .route(
            "GET",
            CF,
            vec![
                reply(400, "ticdc/changefeed-not-exists.json"),
                reply(200, "ticdc/changefeed-normal.json"),
            ],
        )
        .route(
            "POST",
            CREATE,
            vec![reply(200, "ticdc/changefeed-created.json")],
        );
    run_ensure(ChangefeedEnsureArgs {
        ticdc_url: format!("{}/", server.url()),
        changefeed_id: "app-cdc".to_owned(),
        sink_uri: None,
        protocol: Protocol::Simple,
        filter_rules: vec!["app.*".to_owned()],
        wait_timeout_secs: 10,
    })
    .await
    .unwrap();
    let posts = server.requests_to("POST", CREATE);
    let body: serde_json::Value = serde_json::from_str(&posts[0].body).unwrap();
    assert_eq!(
        body["sink_uri"],
        "kafka://127.0.0.1:9092/app_cdc?protocol=simple&partition-num=1&replication-factor=1&max-message-bytes=1048576"
    );
}
