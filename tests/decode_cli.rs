//! `cdcmon decode` end to end: the built binary on the real TiCDC fixtures.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ticdc")
        .join(name)
}

fn cdcmon(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cdcmon"));
    cmd.arg("decode")
        .args(args)
        // The flags have env fallbacks: make sure the caller's environment does not leak in.
        .env_remove("CDCMON_PROTOCOL")
        .env_remove("CDCMON_COMPRESSION")
        .env_remove("CDCMON_DECODE_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn cdcmon");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().expect("wait for cdcmon")
}

fn events(out: &Output) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "cdcmon failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn path(name: &str) -> String {
    fixture(name).display().to_string()
}

#[test]
fn canal_json_rows_ddl_and_watermark() {
    let out = cdcmon(
        &[
            "--protocol",
            "canal-json",
            &path("canal-json-insert-1.json"),
        ],
        None,
    );
    let ev = &events(&out)[0];
    assert_eq!(ev["kind"], "row");
    assert_eq!(ev["op"], "insert");
    assert_eq!(ev["db"], "test");
    assert_eq!(ev["table"], "employee");
    assert_eq!(ev["keys"]["id"], "101");
    assert_eq!(ev["protocol"], "canal-json");

    let out = cdcmon(&[&path("canal-json-ddl-1.json")], None);
    let ev = &events(&out)[0];
    assert_eq!(ev["kind"], "ddl");
    assert_eq!(ev["ddl_type"], "QUERY");
    assert_eq!(ev["commit_ts"].as_u64(), Some(429918007904436226));

    let out = cdcmon(
        &["--protocol", "auto", &path("canal-json-watermark-1.json")],
        None,
    );
    let ev = &events(&out)[0];
    assert_eq!(ev["kind"], "watermark");
    assert_eq!(ev["commit_ts"].as_u64(), Some(429918007904436226));
    assert!(ev.get("op").is_none());
}

#[test]
fn open_protocol_batch_prints_every_event() {
    let out = cdcmon(
        &[
            "--protocol",
            "open-protocol",
            "--key",
            &path("open-protocol-insert-4-batch2.key.bin"),
            &path("open-protocol-insert-4-batch2.value.bin"),
        ],
        None,
    );
    let evs = events(&out);
    assert_eq!(evs.len(), 2);
    for (ev, a) in evs.iter().zip([1, 2]) {
        assert_eq!(ev["kind"], "row");
        assert_eq!(ev["op"], "insert");
        assert_eq!(ev["db"], "test");
        assert_eq!(ev["table"], "t");
        assert_eq!(ev["commit_ts"], 1);
        assert_eq!(ev["keys"]["a"], a);
    }

    let out = cdcmon(
        &[
            "--key",
            &path("open-protocol-resolved-1.key.bin"),
            &path("open-protocol-resolved-1.value.bin"),
        ],
        None,
    );
    let ev = &events(&out)[0];
    assert_eq!(ev["kind"], "watermark");
    assert_eq!(ev["commit_ts"], 12345678);
}

#[test]
fn debezium_and_simple_from_stdin() {
    let value = std::fs::read(fixture("debezium-delete-1.json")).expect("fixture");
    let out = cdcmon(
        &[
            "--protocol",
            "debezium",
            "--key",
            &path("debezium-delete-1.key.json"),
            "-",
        ],
        Some(&value),
    );
    let ev = &events(&out)[0];
    assert_eq!(ev["op"], "delete");
    assert_eq!(ev["keys"]["tiny"], 2);
    assert_eq!(ev["commit_ts"], 1);

    let value = std::fs::read(fixture("simple-bootstrap-1.json")).expect("fixture");
    let out = cdcmon(&["-"], Some(&value));
    let ev = &events(&out)[0];
    assert_eq!(ev["kind"], "bootstrap");
    assert_eq!(ev["table"], "new_user");
    assert!(ev.get("commit_ts").is_none());

    let out = cdcmon(&[&path("simple-update-1.json")], None);
    let ev = &events(&out)[0];
    assert_eq!(ev["op"], "update");
    assert_eq!(ev["commit_ts"].as_u64(), Some(447984099186180098));
}

#[test]
fn compressed_input() {
    let raw = std::fs::read(fixture("simple-watermark-1.json")).expect("fixture");
    let packed = cdcmon::protocol::compression::compress(cdcmon::protocol::Compression::Lz4, &raw)
        .expect("compress");
    let out = cdcmon(&["--compression", "lz4", "-"], Some(&packed));
    let ev = &events(&out)[0];
    assert_eq!(ev["kind"], "watermark");
    assert_eq!(ev["commit_ts"].as_u64(), Some(447984124732375041));
}

fn failure(out: &Output) -> String {
    assert!(!out.status.success(), "expected failure");
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr).trim_end().to_owned();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn undecodable_input_fails_with_one_line() {
    let out = cdcmon(
        &[
            "--protocol",
            "open-protocol",
            &path("open-protocol-insert-1.value.bin"),
        ],
        None,
    );
    let err = failure(&out);
    assert!(err.starts_with("cdcmon: "), "{err}");
    assert!(
        err.contains("open-protocol") && err.contains("missing_key"),
        "{err}"
    );

    let out = cdcmon(&["-"], Some(b"{\"hello\":1}"));
    let err = failure(&out);
    assert!(err.contains("unknown_protocol"), "{err}");

    let out = cdcmon(
        &["--protocol", "canal-json", "-"],
        Some(br#"{"isDdl":false,"type":"FOO","data":[{}]}"#),
    );
    let err = failure(&out);
    assert!(
        err.contains(r#"canal-json: field `type` has unknown value "FOO" (unknown_type)"#),
        "{err}"
    );

    let out = cdcmon(&["/nonexistent/cdcmon-value.json"], None);
    let err = failure(&out);
    assert!(err.contains("/nonexistent/cdcmon-value.json"), "{err}");
}

#[test]
fn new_architecture_claim_check_key_with_ohk_twice_decodes() {
    // pingcap/ticdc writes `"ohk":true,…,"ohk":false,"ccl":…` (issue 15): last wins.
    let out = cdcmon(
        &[
            "--key",
            &path("tc-open-protocol-claim-check.key.bin"),
            &path("tc-open-protocol-claim-check.value.bin"),
        ],
        None,
    );
    let evs = events(&out);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["op"], "insert");
    assert_eq!(evs[0]["partial"], true);
    assert_eq!(
        evs[0]["claim_check_location"],
        "file:///tmp/claim-check/message-1.json"
    );
    assert_eq!(evs[0]["keys"]["a"], 1);
}

#[test]
fn batch_with_a_bad_event_prints_the_good_ones_and_fails() {
    // issue 10 point 5: event 1 of 3 is truncated; events 0 and 2 are printed, the bad one is
    // named on stderr in one line, and the exit status is non-zero.
    let out = cdcmon(
        &[
            "--key",
            &path("tc-open-protocol-batch3-one-bad.key.bin"),
            &path("tc-open-protocol-batch3-one-bad.value.bin"),
        ],
        None,
    );
    assert!(!out.status.success(), "a bad event must fail the command");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["keys"]["a"], 1);
    assert_eq!(lines[1]["keys"]["a"], 3);
    let err = String::from_utf8_lossy(&out.stderr).trim_end().to_owned();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("1 of 3 events undecodable") && err.contains("value entry 1"),
        "{err}"
    );
    assert!(err.contains("(invalid_json)"), "{err}");
}
