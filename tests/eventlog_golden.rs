//! Golden event-log lines: every TiCDC fixture (tests/fixtures/ticdc, a superset of
//! /work/shared/fixtures/ticdc), decoded and rendered as the event log renders it, must give the
//! bytes in `tests/fixtures/golden/eventlog-lines.txt`, which was produced by the code BEFORE the
//! column-value change of issue 11: first at 997ab01, then, after this test's mutations were
//! widened, again by the new test run at 1ebf089 (main just before the perf2 merge, the old
//! decoders), so it still proves the merged decoders byte-identical. Besides each fixture as it is,
//! 1,000 deterministic mutations per fixture (bytes swapped for quotes, backslashes, escapes,
//! lone surrogates, cut-off numbers, digits, control bytes, invalid and multi-byte UTF-8, ...)
//! are decoded and rendered too; their lines and errors go into one FNV-1a digest per fixture,
//! so a changed escape or validation rule anywhere shows up. Open-protocol mutants are mutated
//! inside the batch framing (key JSON and value JSON, re-framed with correct lengths) so they
//! reach the key and row readers; the golden line counts how many got past the framing checks
//! (`past-framing`) and how many rendered at least one event (`rendered`).
//!
//! Re-blessed once since, by 0386688 (session 13, branch s13-strict, on main d58ee0a), when the
//! canal-json fast path stopped decoding messages serde_json refuses (`docs/performance.md`,
//! "Issue 11, step 6a"): only the ten canal-json fixtures' `rendered` counts and digests changed,
//! by 672 mutants (ddl-1 32, delete-1 113, insert-1 127, update-1 68, watermark-1 41, tc
//! claim-check 32, tc ddl-erase 71, tc delete-handle-key-only 51, tc insert-rowkey 70, tc
//! watermark-es0 67). A throwaway check compared every fixture's 1,000 mutants before and after:
//! each changed verdict was "before: decoded, after: error" on a mutant
//! `serde_json::from_slice::<Value>` refuses; no other line, fixture or verdict changed.
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
    // Escapes and numbers that end early or are malformed, lone surrogates, bytes JSON forbids.
    b"\\ud800",
    b"\\udc00",
    b"\\u12\"",
    b"\\uZZZZ",
    b"1.",
    b"1e",
    b"1e+",
    b"-",
    b".5",
    b"\x7f",
    b"\xff",
    b"\xc3",
    b"\xe2\x82",
    b"\x00",
    b"\x1f",
    b"\r",
];

/// A deterministic xorshift stream for one seed.
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// 1 to 3 random edits: a few bytes replaced by one of the `PIECES`.
fn mutate(value: &[u8], seed: u64) -> Vec<u8> {
    let mut next = rng(seed);
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

/// Open-protocol's batch framing (src/protocol/open_protocol.rs, after TiCDC's
/// `codec.BatchVersion1`): `version(u64 BE) = 1 | len | keyJSON | ...` in the key and
/// `len | valueJSON | ...` in the value. Written out here, not taken from the crate, so the test
/// builds against the code before and after a decoder change alike.
struct OpenFrames {
    keys: Vec<Vec<u8>>,
    values: Vec<Vec<u8>>,
}

const OPEN_VERSION: u64 = 1;

fn split_frames(mut rest: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (head, tail) = rest.split_first_chunk::<8>()?;
        let len = usize::try_from(u64::from_be_bytes(*head)).ok()?;
        if len > tail.len() {
            return None;
        }
        out.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    Some(out)
}

/// The entries of an open-protocol message, if `key`/`value` are one with valid framing.
fn open_frames(key: Option<&[u8]>, value: &[u8]) -> Option<OpenFrames> {
    let (version, entries) = key?.split_first_chunk::<8>()?;
    if u64::from_be_bytes(*version) != OPEN_VERSION {
        return None;
    }
    let keys = split_frames(entries)?;
    let values = split_frames(value)?;
    (!keys.is_empty() && keys.len() == values.len()).then_some(OpenFrames { keys, values })
}

fn frame(entries: &[Vec<u8>], version: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if version {
        out.extend_from_slice(&OPEN_VERSION.to_be_bytes());
    }
    for e in entries {
        out.extend_from_slice(&(e.len() as u64).to_be_bytes());
        out.extend_from_slice(e);
    }
    out
}

/// One mutant of a message as `(key, value)`. Open-protocol messages get their key and value
/// JSON mutated *inside* the framing and re-framed with correct lengths, so the mutant reaches
/// the JSON readers (key reader and row reader) instead of dying on a broken length prefix;
/// one seed in eight still mutates the raw value bytes, prefixes included, for the framing
/// checks. Every other protocol has its value mutated as it is.
fn mutant(key: Option<&[u8]>, value: &[u8], seed: u64) -> (Option<Vec<u8>>, Vec<u8>) {
    let Some(mut frames) = open_frames(key, value) else {
        return (key.map(<[u8]>::to_vec), mutate(value, seed));
    };
    let mut next = rng(seed ^ 0x5DEE_CE66_D1CE_4E5B);
    let which = (next() % frames.keys.len() as u64) as usize;
    match next() % 8 {
        0 => return (key.map(<[u8]>::to_vec), mutate(value, seed)),
        1..=3 => frames.keys[which] = mutate(&frames.keys[which], seed),
        4..=6 => frames.values[which] = mutate(&frames.values[which], seed),
        _ => {
            frames.keys[which] = mutate(&frames.keys[which], seed);
            frames.values[which] = mutate(&frames.values[which], seed.wrapping_add(MUTATIONS));
        }
    }
    (
        Some(frame(&frames.keys, true)),
        frame(&frames.values, false),
    )
}

/// Whether a rendered mutant got past the message-level checks (framing, batch version), i.e.
/// reached the per-entry JSON readers.
fn past_framing(rendered: &str) -> bool {
    !(rendered.starts_with("ERR Framing ") || rendered.starts_with("ERR UnsupportedVersion "))
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
        let (mut decoded, mut framed) = (0, 0);
        for seed in 0..MUTATIONS {
            let (k, v) = mutant(key.as_deref(), &value, seed + 1);
            let before = mutated.len();
            render(k.as_deref(), &v, &mut mutated);
            if !mutated[before..].starts_with("ERR") {
                decoded += 1;
            }
            if past_framing(&mutated[before..]) {
                framed += 1;
            }
        }
        let _ = writeln!(
            out,
            "mutations {MUTATIONS} past-framing {framed} rendered {decoded} digest {:016x}",
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
    // Open-protocol mutants must mostly reach the JSON readers, not die on the framing.
    let mut open = 0;
    for (name, stats) in want
        .split("## ")
        .filter_map(|b| b.split_once('\n'))
        .filter(|(name, _)| name.contains("open-protocol"))
    {
        let framed: u64 = stats
            .split(" past-framing ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no past-framing count"));
        assert!(
            framed >= MUTATIONS * 3 / 4,
            "{name}: {framed} mutants past framing"
        );
        open += 1;
    }
    assert!(open >= 10, "open-protocol fixtures in the golden file");
}
