//! issue 10 point 5 through `Pipeline::process`: an open-protocol batch with one bad event
//! logs and counts its good events, counts the bad one by reason, and marks the message done.

use std::sync::{Arc, Mutex};

use cdcmon::eventlog::{EventLog, KafkaPosition, LogOptions};
use cdcmon::metrics::Metrics;
use cdcmon::pipeline::{self, Outcome, Pipeline, Sink};
use cdcmon::protocol::{Compression, Decoder, ProtocolChoice};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/ticdc/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn a_bad_event_does_not_drop_its_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.ndjson");
    let log = EventLog::open(&path.display().to_string(), LogOptions::new(false, &[]))
        .expect("event log");
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let sink = Arc::new(Mutex::new(Sink::new(log)));
    let mut p = Pipeline::new(
        Decoder::new(ProtocolChoice::Auto, Compression::None),
        metrics.clone(),
        sink.clone(),
    );
    let (k, v) = (
        fixture("tc-open-protocol-batch3-one-bad.key.bin"),
        fixture("tc-open-protocol-batch3-one-bad.value.bin"),
    );
    let pos = KafkaPosition {
        topic: "app_cdc",
        partition: 0,
        offset: 41,
    };
    let outcome = p
        .process(&pos, Some(&k), Some(&v), pipeline::now_ms())
        .expect("no I/O error");
    assert!(
        matches!(outcome, Outcome::Processed { events: 2 }),
        "{outcome:?}"
    );
    let text = String::from_utf8(metrics.render()).expect("utf-8");
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .to_owned()
    };
    assert!(
        line("cdc_decode_errors_total{reason=\"invalid_json\"}").ends_with(" 1"),
        "{text}"
    );
    let inserts = text
        .lines()
        .find(|l| l.starts_with("cdc_events_total") && l.contains("op=\"insert\""))
        .unwrap_or_else(|| panic!("no insert series in\n{text}"));
    assert!(inserts.ends_with(" 2"), "{inserts}");
    // The message is done: its next offset awaits commit.
    let mut guard = pipeline::lock(&sink);
    let tp = guard.topics.key(pos.topic, 0);
    assert_eq!(guard.pending.get(&tp), Some(&42));
    drop(guard);
    pipeline::lock(&sink)
        .event_log
        .flush_durable()
        .expect("flush");
    let logged = std::fs::read_to_string(&path).expect("event log");
    assert_eq!(logged.lines().count(), 2, "{logged}");
}
