//! The structural index of `examples/structural_index_bound.rs` (the measured lower bound of a
//! simdjson-style decoder, docs/performance.md "Issue 11, session 16") finds exactly what a
//! byte-at-a-time scan finds on valid JSON, on documents that exercise what the demo corpus
//! does not:
//! escaped quotes, backslash runs across the 64-byte blocks, operators inside strings,
//! multi-byte UTF-8 and documents of every length around the block size. And cdcmon decodes
//! every message of the corpus the example measures.

#[path = "../examples/structural_index_bound.rs"]
mod bound;

use cdcmon::demo::generator::Rng;
use cdcmon::event::Protocol;
use cdcmon::protocol::{Compression, Decoded, Decoder, ProtocolChoice};

/// A random JSON text (serde_json's encoding, so escapes are as JSON writes them).
fn random_json(rng: &mut Rng, depth: u32) -> serde_json::Value {
    use serde_json::Value;
    match rng.below(if depth == 0 { 4 } else { 6 }) {
        0 => Value::Null,
        1 => Value::from(rng.next_u64() as i64),
        2 | 3 => Value::String(random_string(rng)),
        4 => Value::Array(
            (0..rng.below(5))
                .map(|_| random_json(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.below(5))
                .map(|_| (random_string(rng), random_json(rng, depth - 1)))
                .collect(),
        ),
    }
}

/// Strings heavy in what the index must get right: quotes and backslashes (escaped by the
/// encoder, so runs of backslashes of every length appear), operators, non-ASCII.
fn random_string(rng: &mut Rng) -> String {
    const PIECES: [&str; 12] = [
        "\"",
        "\\",
        "\\\\",
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "é",
        "日本",
        "plain text ",
    ];
    (0..rng.below(12))
        .map(|_| PIECES[rng.below(PIECES.len() as u64) as usize])
        .collect()
}

#[test]
fn the_index_matches_a_bytewise_scan_on_random_json() {
    if !bound::index::supported() {
        eprintln!("skipped: this CPU lacks AVX2, PCLMULQDQ, BMI1 or POPCNT");
        return;
    }
    let mut rng = Rng::new(0x51D);
    let mut offsets = Vec::new();
    let mut with_backslash = 0;
    for case in 0..3_000 {
        let text = serde_json::to_vec(&random_json(&mut rng, 4)).expect("a Value encodes");
        with_backslash += usize::from(text.contains(&b'\\'));
        bound::index::structurals(&text, &mut offsets);
        assert_eq!(
            offsets,
            bound::structurals_bytewise(&text),
            "case {case}: {}",
            String::from_utf8_lossy(&text)
        );
    }
    // The cases must exercise the escape path, or the comparison proves little.
    assert!(
        with_backslash > 1_000,
        "{with_backslash} cases with a backslash"
    );
}

#[test]
fn backslash_runs_across_a_block_boundary_are_read_as_json_reads_them() {
    if !bound::index::supported() {
        eprintln!("skipped: this CPU lacks AVX2, PCLMULQDQ, BMI1 or POPCNT");
        return;
    }
    let mut offsets = Vec::new();
    // A string whose run of backslashes ends at, or crosses, byte 64 of the document, with
    // an even run (the quote after it closes the string) and an odd one (the quote is escaped).
    for run in 1..=6 {
        for pad in 50..70 {
            let text = format!(r#"{{"k":"{}{}"}}"#, "a".repeat(pad), "\\".repeat(run));
            let text = if run % 2 == 0 {
                text
            } else {
                format!(r#"{{"k":"{}{}""}}"#, "a".repeat(pad), "\\".repeat(run))
            };
            let value: serde_json::Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("the test's own JSON is valid: {e}: {text}"));
            assert!(value.is_object());
            bound::index::structurals(text.as_bytes(), &mut offsets);
            assert_eq!(
                offsets,
                bound::structurals_bytewise(text.as_bytes()),
                "run {run}, pad {pad}: {text}"
            );
            // `{`, the key's quote, `:`, the value's quote, `}`: the string's own quotes and
            // backslashes are not structural.
            assert_eq!(offsets.len(), 5, "run {run}, pad {pad}: {text}");
        }
    }
}

#[test]
fn cdcmon_decodes_every_message_of_the_measured_corpus() {
    let corpus = bound::demo_rows(500);
    assert_eq!(corpus.len(), 500);
    let mut decoder = Decoder::new(
        ProtocolChoice::Fixed(Protocol::CanalJson),
        Compression::None,
    );
    for (i, msg) in corpus.iter().enumerate() {
        let mut decoded = Decoded::default();
        bound::cdcmon_decode(&mut decoder, msg, &mut decoded)
            .unwrap_or_else(|e| panic!("message {i}: {e}"));
        assert_eq!(decoded.events.len(), 1, "message {i}");
    }
}
