//! Property tests: no input makes any decoder panic — arbitrary bytes, and real TiCDC messages
//! truncated or mutated — for every protocol choice, with and without compression. Whatever
//! decodes must also print as valid JSON.

use cdcmon::decode_cmd::event_to_json;
use cdcmon::event::Protocol;
use cdcmon::protocol::compression::compress;
use cdcmon::protocol::{Compression, Decoded, Decoder, ProtocolChoice};
use proptest::prelude::*;

const FIXTURES: &[(Option<&[u8]>, &[u8])] = &[
    (
        None,
        include_bytes!("fixtures/ticdc/canal-json-insert-1.json"),
    ),
    (
        None,
        include_bytes!("fixtures/ticdc/canal-json-update-1.json"),
    ),
    (
        None,
        include_bytes!("fixtures/ticdc/canal-json-delete-1.json"),
    ),
    (None, include_bytes!("fixtures/ticdc/canal-json-ddl-1.json")),
    (
        None,
        include_bytes!("fixtures/ticdc/canal-json-watermark-1.json"),
    ),
    (None, include_bytes!("fixtures/ticdc/simple-insert-1.json")),
    (None, include_bytes!("fixtures/ticdc/simple-update-1.json")),
    (None, include_bytes!("fixtures/ticdc/simple-delete-1.json")),
    (None, include_bytes!("fixtures/ticdc/simple-ddl-1.json")),
    (
        None,
        include_bytes!("fixtures/ticdc/simple-bootstrap-1.json"),
    ),
    (
        None,
        include_bytes!("fixtures/ticdc/simple-watermark-1.json"),
    ),
    (
        Some(include_bytes!("fixtures/ticdc/debezium-insert-1.key.json")),
        include_bytes!("fixtures/ticdc/debezium-insert-1.json"),
    ),
    (
        Some(include_bytes!("fixtures/ticdc/debezium-update-1.key.json")),
        include_bytes!("fixtures/ticdc/debezium-update-1.json"),
    ),
    (
        Some(include_bytes!("fixtures/ticdc/debezium-delete-1.key.json")),
        include_bytes!("fixtures/ticdc/debezium-delete-1.json"),
    ),
    (
        Some(include_bytes!("fixtures/ticdc/debezium-ddl-1.key.json")),
        include_bytes!("fixtures/ticdc/debezium-ddl-1.json"),
    ),
    (
        Some(include_bytes!(
            "fixtures/ticdc/debezium-watermark-1.key.json"
        )),
        include_bytes!("fixtures/ticdc/debezium-watermark-1.json"),
    ),
    (
        Some(include_bytes!(
            "fixtures/ticdc/open-protocol-insert-1.key.bin"
        )),
        include_bytes!("fixtures/ticdc/open-protocol-insert-1.value.bin"),
    ),
    (
        Some(include_bytes!(
            "fixtures/ticdc/open-protocol-update-1.key.bin"
        )),
        include_bytes!("fixtures/ticdc/open-protocol-update-1.value.bin"),
    ),
    (
        Some(include_bytes!(
            "fixtures/ticdc/open-protocol-delete-1.key.bin"
        )),
        include_bytes!("fixtures/ticdc/open-protocol-delete-1.value.bin"),
    ),
    (
        Some(include_bytes!("fixtures/ticdc/open-protocol-ddl-1.key.bin")),
        include_bytes!("fixtures/ticdc/open-protocol-ddl-1.value.bin"),
    ),
    (
        Some(include_bytes!(
            "fixtures/ticdc/open-protocol-resolved-1.key.bin"
        )),
        include_bytes!("fixtures/ticdc/open-protocol-resolved-1.value.bin"),
    ),
    (
        Some(include_bytes!(
            "fixtures/ticdc/open-protocol-insert-4-batch2.key.bin"
        )),
        include_bytes!("fixtures/ticdc/open-protocol-insert-4-batch2.value.bin"),
    ),
    // New architecture (pingcap/ticdc; sources in fixtures/ticdc/README.md).
    (
        None,
        include_bytes!("fixtures/ticdc/tc-canal-json-insert-rowkey.json"),
    ),
    (
        None,
        include_bytes!("fixtures/ticdc/tc-canal-json-ddl-erase.json"),
    ),
    (
        None,
        include_bytes!("fixtures/ticdc/tc-canal-json-watermark-es0.json"),
    ),
    (
        None,
        include_bytes!("fixtures/ticdc/tc-simple-delete-claim-check.json"),
    ),
    (
        Some(include_bytes!(
            "fixtures/ticdc/tc-debezium-ddl-create.key.json"
        )),
        include_bytes!("fixtures/ticdc/tc-debezium-ddl-create.json"),
    ),
    (
        Some(include_bytes!(
            "fixtures/ticdc/tc-debezium-watermark.key.json"
        )),
        include_bytes!("fixtures/ticdc/tc-debezium-watermark.json"),
    ),
    (
        Some(include_bytes!(
            "fixtures/ticdc/tc-debezium-insert-start-ts.key.json"
        )),
        include_bytes!("fixtures/ticdc/tc-debezium-insert-start-ts.json"),
    ),
    (
        Some(include_bytes!(
            "fixtures/ticdc/tc-open-protocol-claim-check.key.bin"
        )),
        include_bytes!("fixtures/ticdc/tc-open-protocol-claim-check.value.bin"),
    ),
    (
        Some(include_bytes!(
            "fixtures/ticdc/tc-open-protocol-update-only-updated-columns.key.bin"
        )),
        include_bytes!("fixtures/ticdc/tc-open-protocol-update-only-updated-columns.value.bin"),
    ),
];

/// Frame one open-protocol key/value JSON pair as TiCDC does.
fn frame(key_json: &[u8], value_json: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut k = 1u64.to_be_bytes().to_vec();
    k.extend_from_slice(&(key_json.len() as u64).to_be_bytes());
    k.extend_from_slice(key_json);
    let mut v = (value_json.len() as u64).to_be_bytes().to_vec();
    v.extend_from_slice(value_json);
    (k, v)
}

fn choices() -> Vec<ProtocolChoice> {
    let mut c = vec![ProtocolChoice::Auto];
    c.extend(Protocol::ALL.into_iter().map(ProtocolChoice::Fixed));
    c
}

const COMPRESSIONS: [Compression; 3] = [Compression::None, Compression::Snappy, Compression::Lz4];

/// Decode with every protocol choice and compression; must not panic; output must be JSON.
fn decode_everywhere(key: Option<&[u8]>, value: Option<&[u8]>) {
    for choice in choices() {
        for compression in COMPRESSIONS {
            let mut d = Decoder::new(choice, compression);
            match d.decode(key, value) {
                Ok(decoded) => {
                    // Per-event errors (open-protocol batches) are bounded like message errors.
                    for e in &decoded.errors {
                        assert!(!e.detail.is_empty());
                        assert!(e.detail.chars().count() <= 241, "detail too long");
                    }
                    for ev in &decoded.events {
                        let line = event_to_json(ev);
                        // RawValue validates the syntax without serde_json's depth limit:
                        // a deeply nested column value is valid and passed through as is.
                        assert!(
                            serde_json::from_str::<&serde_json::value::RawValue>(&line).is_ok(),
                            "not JSON: {}",
                            line.get(..200).unwrap_or(&line)
                        );
                    }
                }
                Err(e) => {
                    assert!(!e.detail.is_empty());
                    assert!(e.detail.chars().count() <= 241, "detail too long");
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
}

fn mutate(data: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut out = data.to_vec();
    for m in muts {
        match *m {
            Mutation::Truncate(n) => out.truncate(n % (out.len() + 1)),
            Mutation::Flip(i, b) if !out.is_empty() => {
                let i = i % out.len();
                out[i] ^= b;
            }
            Mutation::Insert(i, b) => {
                let i = i % (out.len() + 1);
                out.insert(i, b);
            }
            Mutation::Remove(i) if !out.is_empty() => {
                let i = i % out.len();
                out.remove(i);
            }
            _ => {}
        }
    }
    out
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1u8..).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn arbitrary_bytes_never_panic(
        key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..256)),
    ) {
        decode_everywhere(key.as_deref(), value.as_deref());
    }

    #[test]
    fn open_protocol_header_with_arbitrary_tail_never_panics(
        tail in proptest::collection::vec(any::<u8>(), 0..80),
        value in proptest::collection::vec(any::<u8>(), 0..80),
        len in any::<u64>(),
    ) {
        // Version 1 header, then an arbitrary (often huge) length and bytes.
        let mut key = vec![0, 0, 0, 0, 0, 0, 0, 1];
        key.extend_from_slice(&len.to_be_bytes());
        key.extend_from_slice(&tail);
        decode_everywhere(Some(&key), Some(&value));
    }

    #[test]
    fn mutated_fixtures_never_panic(
        index in 0..FIXTURES.len(),
        key_muts in proptest::collection::vec(mutation(), 0..4),
        value_muts in proptest::collection::vec(mutation(), 1..6),
    ) {
        let (key, value) = FIXTURES[index];
        let key = key.map(|k| mutate(k, &key_muts));
        let value = mutate(value, &value_muts);
        decode_everywhere(key.as_deref(), Some(&value));
    }

    #[test]
    fn mutated_compressed_fixtures_never_panic(
        index in 0..FIXTURES.len(),
        lz4 in any::<bool>(),
        muts in proptest::collection::vec(mutation(), 1..4),
    ) {
        let c = if lz4 { Compression::Lz4 } else { Compression::Snappy };
        let (key, value) = FIXTURES[index];
        let packed = compress(c, value).expect("compress");
        let value = mutate(&packed, &muts);
        decode_everywhere(key, Some(&value));
    }
}

#[test]
fn every_fixture_decodes_with_auto_and_its_own_protocol() {
    for (key, value) in FIXTURES {
        let mut d = Decoder::new(ProtocolChoice::Auto, Compression::None);
        let events = d
            .decode(*key, Some(value))
            .and_then(Decoded::into_strict)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!events.is_empty());
        let p = events[0].protocol;
        let mut d = Decoder::new(ProtocolChoice::Fixed(p), Compression::None);
        assert_eq!(
            d.decode(*key, Some(value))
                .and_then(Decoded::into_strict)
                .map(|e| e.len())
                .ok(),
            Some(events.len())
        );
    }
}

#[test]
fn deep_nesting_never_overflows_the_stack() {
    let deep_array = format!(
        r#"{{"isDdl":false,"type":"INSERT","data":[{{"a":{}1{}}}]}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let deep_payload = format!("{}{}", r#"{"payload":"#.repeat(10_000), "}".repeat(10_000));
    let deep_simple = format!(
        r#"{{"version":1,"type":"INSERT","commitTs":1,"data":{{"a":{}1{}}}}}"#,
        r#"{"x":"#.repeat(50_000),
        "}".repeat(50_000)
    );
    for value in [&deep_array, &deep_payload, &deep_simple] {
        decode_everywhere(None, Some(value.as_bytes()));
    }
    // Column values are captured raw (no recursion): deep but valid JSON passes through.
    let mut d = Decoder::new(ProtocolChoice::Auto, Compression::None);
    let evs = d
        .decode(None, Some(deep_array.as_bytes()))
        .expect("valid JSON")
        .events;
    assert_eq!(evs[0].values[0].value.get().len(), 200_001);
    // Nested structure that serde walks is cut by serde_json's recursion limit.
    let e = d.decode(None, Some(deep_payload.as_bytes())).unwrap_err();
    assert_eq!(e.protocol, Some(Protocol::Debezium));
}

proptest! {
    /// Last-wins duplicates are no licence for garbage (issue 15): every strict prefix of the
    /// new architecture's claim-check key (`"ohk"` twice), correctly framed, is one
    /// per-event error and no event.
    #[test]
    fn truncated_duplicate_member_keys_never_decode(cut in 0usize..200) {
        let key_json: &[u8] = include_bytes!("fixtures/ticdc/tc-open-protocol-claim-check.key.json");
        let key_json = key_json.trim_ascii_end();
        let value_json = br#"{"u":{"a":{"t":1,"h":true,"f":11,"v":1}}}"#;
        let cut = cut % key_json.len();
        let (k, v) = frame(&key_json[..cut], value_json);
        let mut d = Decoder::new(ProtocolChoice::Auto, Compression::None);
        let decoded = d.decode(Some(&k), Some(&v)).expect("framing is valid");
        prop_assert!(decoded.events.is_empty());
        prop_assert_eq!(decoded.errors.len(), 1);
        // The whole key decodes, with the last `ohk` and the location.
        let (k, v) = frame(key_json, value_json);
        let evs = d.decode(Some(&k), Some(&v)).and_then(Decoded::into_strict).expect("whole key");
        prop_assert!(evs[0].partial && evs[0].claim_check_location.is_some());
    }
}
