//! The schema-registry client over real HTTP (a local recorded-response server shaped like
//! Confluent's answers), its outage retry, and `cdcmon decode --protocol avro` end to end.

#[path = "fixtures/http/server.rs"]
mod server;

use std::sync::Arc;
use std::time::Duration;

use cdcmon::protocol::avro::SchemaStore;
use cdcmon::schema_registry::{
    Backoff, BasicAuth, HttpSchemaRegistry, RegistryError, SchemaRegistry, WaitObserver,
    fetch_until_cached,
};
use server::{FixtureServer, raw};

fn vectors() -> serde_json::Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/avro/vectors.json"
    );
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// The registry's recorded answer for `id` (`{"schema": "..."}`), as JSON text.
fn answer(id: u32) -> String {
    vectors()["worked_row"][format!("registry_GET_/schemas/ids/{id}")].to_string()
}

const NOT_FOUND: &str = r#"{"error_code":40403,"message":"Schema 7 not found"}"#;

#[tokio::test]
async fn get_schema_by_id_with_basic_auth_and_404() {
    let srv = FixtureServer::start().await;
    srv.route("GET", "/schemas/ids/2", vec![raw(200, &answer(2))]);
    srv.route("GET", "/schemas/ids/7", vec![raw(404, NOT_FOUND)]);
    let auth = BasicAuth {
        user: "cdc".into(),
        password: "pw".into(),
    };
    let reg = HttpSchemaRegistry::new(&format!("{}/", srv.url()), Some(auth), None).unwrap();
    let schema = reg.schema_by_id(2).await.unwrap();
    assert_eq!(
        schema,
        vectors()["worked_row"]["value_schema"].as_str().unwrap()
    );
    let req = &srv.requests_to("GET", "/schemas/ids/2")[0];
    assert!(
        req.header("accept")
            .unwrap()
            .starts_with("application/vnd.schemaregistry.v1+json")
    );
    // base64("cdc:pw")
    assert_eq!(req.header("authorization"), Some("Basic Y2RjOnB3"));
    let e = reg.schema_by_id(7).await.unwrap_err();
    assert_eq!(
        e,
        RegistryError::NotFound {
            id: 7,
            code: 40403,
            message: "Schema 7 not found".into()
        }
    );
    assert!(e.is_permanent());
}

struct Count(std::sync::Mutex<(u32, u32)>);
impl WaitObserver for Count {
    fn failed(&self, _: &RegistryError, _: u32, _: Duration) {
        self.0.lock().unwrap().0 += 1;
    }
    fn fetched(&self, _: u32, attempts: u32) {
        self.0.lock().unwrap().1 = attempts;
    }
}

#[tokio::test]
async fn outage_is_waited_out_and_404_gives_up() {
    let srv = FixtureServer::start().await;
    srv.route(
        "GET",
        "/schemas/ids/2",
        vec![raw(503, "{}"), raw(500, "{}"), raw(200, &answer(2))],
    );
    srv.route("GET", "/schemas/ids/7", vec![raw(404, NOT_FOUND)]);
    let reg = HttpSchemaRegistry::new(&srv.url(), None, None).unwrap();
    let store = Arc::new(SchemaStore::default());
    let fast = Backoff {
        initial: Duration::from_millis(5),
        max: Duration::from_millis(20),
    };
    let obs = Count(Default::default());
    let never = std::future::pending::<()>();
    assert_eq!(
        fetch_until_cached(&reg, &store, 2, fast, &obs, never).await,
        Ok(true)
    );
    assert_eq!(
        *obs.0.lock().unwrap(),
        (2, 3),
        "two failures, fetched on the third try"
    );
    assert_eq!(store.get(2).unwrap().table, "t");
    let never = std::future::pending::<()>();
    let e = fetch_until_cached(&reg, &store, 7, fast, &obs, never)
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::NotFound { .. }), "{e}");
    assert_eq!(
        srv.requests_to("GET", "/schemas/ids/7").len(),
        1,
        "404 is not retried"
    );
    // A registry that never answers: the stop future ends the wait without an error.
    srv.route("GET", "/schemas/ids/9", vec![raw(503, "{}")]);
    let stop = tokio::time::sleep(Duration::from_millis(100));
    assert_eq!(
        fetch_until_cached(&reg, &store, 9, fast, &obs, stop).await,
        Ok(false)
    );
}

#[test]
fn decode_cli_fetches_schemas_and_prints_the_checksum_verdict() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let srv = rt.block_on(FixtureServer::start());
    srv.route("GET", "/schemas/ids/1", vec![raw(200, &answer(1))]);
    srv.route("GET", "/schemas/ids/2", vec![raw(200, &answer(2))]);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/avro");
    let run = |tz: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cdcmon"))
            .args([
                "decode",
                "--protocol",
                "avro",
                "--schema-registry-url",
                &srv.url(),
            ])
            .args(["--ticdc-time-zone", tz, "--key"])
            .arg(format!("{dir}/worked_row_key.bin"))
            .arg(format!("{dir}/worked_row_value.bin"))
            .env_remove("CDCMON_SCHEMA_REGISTRY_URL")
            .output()
            .unwrap()
    };
    let out = run("Asia/Shanghai");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["protocol"], "avro");
    assert_eq!(line["op"], "insert");
    assert_eq!(line["checksum"], "ok");
    assert_eq!(line["commit_ts"].as_u64(), Some(446736536876613633));
    let out = run("UTC");
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["checksum"], "mismatch");
    // Without a registry: one readable line, non-zero exit.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cdcmon"))
        .args(["decode", "--protocol", "avro"])
        .arg(format!("{dir}/worked_row_value.bin"))
        .env_remove("CDCMON_SCHEMA_REGISTRY_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--schema-registry-url"), "{err}");
    // An unknown time zone is refused by the flag parser.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cdcmon"))
        .args(["decode", "--ticdc-time-zone", "Mars/Base", "-"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Mars/Base"));
}
