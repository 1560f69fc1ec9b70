//! Golden event-log lines: every TiCDC fixture (tests/fixtures/ticdc, a superset of
//! /work/shared/fixtures/ticdc), decoded and rendered as the event log renders it, must give the
//! bytes in `tests/fixtures/golden/eventlog-lines.txt`, which was produced by the code BEFORE the
//! column-value change of issue 11 (commit that added this test). Besides each fixture as it is,
//! 1,000 deterministic mutations per fixture (bytes swapped for quotes, backslashes, escapes,
//! digits, multi-byte UTF-8, ...) are decoded and rendered too; their lines and errors go into
//! one FNV-1a digest per fixture, so a changed escape or validation rule anywhere shows up.
//!
//! Regenerate (only when a change of the log format is intended):
//! `CDCMON_BLESS_GOLDEN=1 cargo test --test eventlog_golden`.

use std::fmt::Write as _;
use std::path::Path;

use cdcmon::eventlog::{KafkaPosition, LogOptions, render_line};
use cdcmon::protocol::{Compression, Decoder, ProtocolChoice};

const GOLDEN: &str = "tests/fixtures/golden/eventlog-lines.txt";
const MUTATIONS: u64 = 1000;
/// A fixed processing time, so the lines do not depend on the clock.
const NOW_MS: i64 = 1_764_000_000_123;

/// Each message fixture (value file) with its key file, if any, sorted by name.
fn messages(dir: &Path) -> Vec<(String, Option<Vec<u8>>, Vec<u8>)> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("fixture dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .into_string()
                .expect("utf-8")
        })
        .collect();
    names.sort();
    let read = |n: &str| std::fs::read(dir.join(n)).ok();
    let mut out = Vec::new();
    for n in &names {
        let (stem, key_name) = if let Some(stem) = n.strip_suffix(".value.bin") {
            (stem, format!("{stem}.key.bin"))
        } else if let Some(stem) = n.strip_suffix(".json") {
            if stem.ends_with(".key") || stem.ends_with(".value") {
                continue; // open-protocol's decoded copies and debezium keys
            }
            (stem, format!("{stem}.key.json"))
        } else {
            continue;
        };
        let value = read(n).expect("fixture");
        out.push((stem.to_owned(), read(&key_name), value));
    }
    out
}

fn options() -> [(&'static str, LogOptions); 3] {
    [
        ("keys", LogOptions::new(false, &[])),
        ("values", LogOptions::new(true, &[])),
        (
            "redact",
            LogOptions::new(true, &["name".into(), "ID".into()]),
        ),
    ]
}

/// Decode one message with a fresh auto-detecting decoder and render every event under every
/// option set; errors are rendered as `ERR <reason> <detail>`.
fn render(key: Option<&[u8]>, value: &[u8], out: &mut String) {
    let mut decoder = Decoder::new(ProtocolChoice::Auto, Compression::None);
    match decoder.decode(key, Some(value)) {
        Err(e) => {
            let _ = writeln!(out, "ERR {:?} {e}", e.reason);
        }
        Ok(d) => {
            for (i, ev) in d.events.iter().enumerate() {
                for (name, opts) in options() {
                    let pos = KafkaPosition {
                        topic: "app_cdc",
                        partition: 3,
                        offset: i as i64,
                    };
                    let mut line = Vec::new();
                    render_line(ev, &pos, &opts, NOW_MS, &mut line);
                    let _ = write!(out, "{name} ");
                    out.push_str(&String::from_utf8_lossy(&line));
                }
            }
            for e in &d.errors {
                let _ = writeln!(out, "ERR {:?} {e}", e.reason);
            }
        }
    }
}

/// Replacement material: what makes the JSON scanners and value checks take other branches.
const PIECES: &[&[u8]] = &[
    b"\\",
    b"\"",
    b"\\\"",
    b"\\\\",
    b"\\n",
    b"\\u00e9",
    b"\\ud83d\\ude00",
    b"\\uZZ",
    b"\\x",
    "é".as_bytes(),
    "😀".as_bytes(),
    b"0",
    b"-1.5e3",
    b"01",
    b"null",
    b"true",
    b" ",
    b"\t",
    b"\n",
    b"\x01",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"a",
];

fn mutate(value: &[u8], seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut v = value.to_vec();
    let edits = 1 + next() % 3;
    for _ in 0..edits {
        if v.is_empty() {
            break;
        }
        let at = (next() % v.len() as u64) as usize;
        let piece = PIECES[(next() % PIECES.len() as u64) as usize];
        let cut = (next() % 3) as usize;
        let end = (at + cut).min(v.len());
        v.splice(at..end, piece.iter().copied());
    }
    v
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn golden_text() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ticdc");
    let mut out = String::new();
    for (name, key, value) in messages(&dir) {
        let _ = writeln!(out, "## {name}");
        render(key.as_deref(), &value, &mut out);
        let mut mutated = String::new();
        let mut decoded = 0;
        for seed in 0..MUTATIONS {
            let m = mutate(&value, seed + 1);
            let before = mutated.len();
            render(key.as_deref(), &m, &mut mutated);
            if !mutated[before..].starts_with("ERR") {
                decoded += 1;
            }
        }
        let _ = writeln!(
            out,
            "mutations {MUTATIONS} rendered {decoded} digest {:016x}",
            fnv1a(mutated.as_bytes())
        );
    }
    out
}

#[test]
fn event_log_lines_match_the_golden_file() {
    let got = golden_text();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    if std::env::var_os("CDCMON_BLESS_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, &got).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path).expect("golden file (see the module comment)");
    for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
        assert_eq!(g, w, "line {} of {GOLDEN} differs", i + 1);
    }
    assert_eq!(got.lines().count(), want.lines().count(), "line count");
    // The file must cover real work: many fixtures, row lines with values, mutations that
    // decode.
    assert!(
        want.matches("## ").count() >= 40,
        "fixtures in the golden file"
    );
    assert!(want.contains("\"values\":{"), "rendered values");
    assert!(
        want.lines()
            .filter_map(|l| l.split(" rendered ").nth(1))
            .any(|r| !r.starts_with("0 ")),
        "some mutations decode"
    );
}
