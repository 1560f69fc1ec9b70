//! A schema-registry outage mid-stream loses nothing: the real `cdcmon consume` binary against
//! librdkafka's mock cluster, fed the DERIVED framed Avro vectors, while a local registry
//! answers 503 for one schema id several times. The waiting message is decoded after the
//! registry recovers, in order, and every event is counted and logged exactly once; `/readyz`
//! says why it is not ready meanwhile; a tampered checksum is counted and logged as a mismatch.

mod common;

#[path = "fixtures/http/server.rs"]
mod server;

use std::time::Duration;

use common::*;
use server::{FixtureServer, raw};

fn avro_fixture(name: &str) -> Vec<u8> {
    let p = format!("{}/tests/fixtures/avro/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn answer(id: u32) -> String {
    let v: serde_json::Value = serde_json::from_slice(&avro_fixture("vectors.json")).unwrap();
    v["worked_row"][format!("registry_GET_/schemas/ids/{id}")].to_string()
}

#[test]
fn registry_outage_mid_stream_loses_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let registry = rt.block_on(FixtureServer::start());
    registry.route("GET", "/schemas/ids/1", vec![raw(200, &answer(1))]);
    registry.route("GET", "/schemas/ids/2", vec![raw(200, &answer(2))]);
    // Schema id 3 (the same value schema under a new id, as after a schema change): the
    // registry is "down" for four tries, then answers.
    let mut outage = vec![raw(503, r#"{"error_code":50301,"message":"down"}"#); 4];
    outage.push(raw(200, &answer(2)));
    registry.route("GET", "/schemas/ids/3", outage);

    let key = avro_fixture("worked_row_key.bin");
    let value = avro_fixture("worked_row_value.bin");
    let mut value3 = value.clone();
    value3[1..5].copy_from_slice(&3u32.to_be_bytes());
    let mut tampered = value.clone();
    let at = tampered
        .windows(10)
        .position(|w| w == b"3458821086")
        .unwrap();
    tampered[at + 9] = b'7';
    let msgs = vec![
        Msg::keyed(0, key.clone(), value.clone()),
        Msg {
            partition: 0,
            key: Some(key.clone()),
            value: None,
        }, // tombstone = delete
        Msg::keyed(0, key.clone(), value3), // waits for schema 3
        Msg::keyed(0, key.clone(), value.clone()),
        Msg::keyed(0, key.clone(), tampered),
    ];

    let cluster = mock_cluster(1);
    let brokers = cluster.bootstrap_servers();
    produce(&brokers, &msgs);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.ndjson");
    let url = registry.url();
    let c = ChildConsumer::start(
        &brokers,
        "avro-outage",
        &log,
        &[
            "--protocol",
            "avro",
            "--schema-registry-url",
            &url,
            "--ticdc-time-zone",
            "Asia/Shanghai",
        ],
    );
    // While schema 3 is unavailable, /readyz says so.
    let mut said_why = false;
    wait_until(Duration::from_secs(30), "readyz names the registry", || {
        if let Ok((503, body)) = http_get(c.addr, "/readyz") {
            said_why |= body.contains("schema registry");
        }
        said_why
    });
    let done = |m: &str| {
        metric(
            m,
            "cdc_events_total",
            &[("db", "test"), ("table", "t"), ("op", "insert")],
        ) == Some(4.0)
    };
    wait_until(Duration::from_secs(60), "all 5 messages counted", || {
        done(&c.metrics())
    });
    let m = c.metrics();
    let t = [("db", "test"), ("table", "t")];
    assert_eq!(
        metric(
            &m,
            "cdc_events_total",
            &[("db", "test"), ("table", "t"), ("op", "delete")]
        ),
        Some(1.0)
    );
    assert_eq!(metric(&m, "cdc_checksum_verified_total", &t), Some(3.0));
    assert_eq!(metric(&m, "cdc_checksum_mismatch_total", &t), Some(1.0));
    assert_eq!(
        metric(
            &m,
            "cdc_decode_errors_total",
            &[("reason", "schema_unavailable")]
        ),
        Some(0.0)
    );
    assert!(
        registry.requests_to("GET", "/schemas/ids/3").len() >= 5,
        "retried until it answered"
    );
    assert_eq!(
        registry.requests_to("GET", "/schemas/ids/2").len(),
        1,
        "cached by id"
    );
    wait_until(Duration::from_secs(10), "ready again", || {
        matches!(http_get(c.addr, "/readyz"), Ok((200, _)))
    });
    let stderr = c.stderr();
    let (_, status) = c.terminate();
    assert!(status.success(), "{status:?}");

    // Every offset logged once, in order; the tampered row is flagged in its line.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let offsets: Vec<i64> = lines
        .iter()
        .map(|l| l["kafka"]["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(offsets, [0, 1, 2, 3, 4]);
    let verdicts: Vec<&str> = lines
        .iter()
        .map(|l| l["cdc"]["checksum"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["ok", "absent", "ok", "ok", "mismatch"]);
    assert!(stderr.contains("schema registry unavailable"), "{stderr}");
    assert!(
        stderr.contains("row checksum mismatch") && stderr.contains("offset"),
        "{stderr}"
    );
}
