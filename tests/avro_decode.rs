//! The Avro decoder on the DERIVED framed vectors (`tests/fixtures/avro/`): the worked row's
//! key/value decode to the row with a verified checksum; tombstones are deletes; DDL and
//! watermark pseudo-messages; a missing schema asks for its id instead of failing the message;
//! `--protocol auto` tells Avro apart from open-protocol only by a non-zero schema id.

use std::sync::Arc;

use cdcmon::checksum::Verdict;
use cdcmon::event::{EventKind, Protocol, RowOp};
use cdcmon::protocol::avro::{AvroDecoder, SchemaStore};
use cdcmon::protocol::{Compression, DecodeErrorReason, Decoder, ProtocolChoice};
use serde_json::Value as Json;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/avro/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn vectors() -> Json {
    serde_json::from_slice(&fixture("vectors.json")).expect("vectors.json")
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A store filled from the recorded registry answers (`{"schema": "..."}` by id).
fn store() -> Arc<SchemaStore> {
    let v = vectors();
    let store = Arc::new(SchemaStore::default());
    for id in [1u32, 2] {
        let answer = &v["worked_row"][format!("registry_GET_/schemas/ids/{id}")];
        store
            .insert(id, answer["schema"].as_str().unwrap())
            .unwrap();
    }
    store
}

fn decoder(tz: &str, choice: ProtocolChoice) -> Decoder {
    Decoder::new(choice, Compression::None)
        .with_avro(AvroDecoder::new(store(), tz.parse().unwrap()))
}

#[test]
fn worked_row_decodes_and_verifies() {
    let (k, v) = (
        fixture("worked_row_key.bin"),
        fixture("worked_row_value.bin"),
    );
    let vec = vectors();
    assert_eq!(
        k,
        unhex(vec["worked_row"]["kafka_key_hex"].as_str().unwrap())
    );
    assert_eq!(
        v,
        unhex(vec["worked_row"]["kafka_value_hex"].as_str().unwrap())
    );
    for choice in [ProtocolChoice::Fixed(Protocol::Avro), ProtocolChoice::Auto] {
        let mut d = decoder("Asia/Shanghai", choice);
        let evs = d.decode(Some(&k), Some(&v)).unwrap().into_strict().unwrap();
        assert_eq!(evs.len(), 1);
        let ev = &evs[0];
        assert_eq!(
            (ev.protocol, ev.kind, ev.op),
            (Protocol::Avro, EventKind::Row, Some(RowOp::Insert))
        );
        assert_eq!((&*ev.db, &*ev.table), ("test", "t"));
        assert_eq!(ev.commit_ts, Some(446736536876613633));
        let cols: Vec<(String, String)> = ev
            .values
            .iter()
            .map(|c| (c.name.to_string(), c.value.get().to_owned()))
            .collect();
        let expect = [
            ("id", "1"),
            ("name", "\"Alice\""),
            ("price", "\"12.50\""),
            ("amount", "\"18446744073709551615\""),
            ("ratio", "1.5"),
            ("flags", "5"),
            ("color", "\"green\""),
            ("tags", "\"a,c\""),
            ("ts", "\"2024-01-02 11:04:05.678\""),
            ("dt", "\"2024-01-02 03:04:05\""),
            ("d", "\"2024-01-02\""),
            ("tm", "\"12:34:56.70\""),
            ("js", r#""{\"a\": 1, \"b\": [true, null]}""#),
            ("bin", "\"AP8=\""),
            ("note", "null"),
        ];
        let expect: Vec<(String, String)> = expect
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(cols, expect);
        assert_eq!(ev.keys.len(), 1);
        assert_eq!((&*ev.keys[0].name, ev.keys[0].value.get()), ("id", "1"));
        let ck = ev.checksum.as_ref().unwrap();
        assert_eq!(
            (ck.verdict, ck.corrupted),
            (Verdict::Ok, false),
            "{:?}",
            ck.detail
        );
    }
    // The same bytes with the wrong TiCDC time zone: the TIMESTAMP text no longer matches.
    let mut d = decoder("UTC", ProtocolChoice::Fixed(Protocol::Avro));
    let ev = &d.decode(Some(&k), Some(&v)).unwrap().events[0];
    assert_eq!(ev.checksum.as_ref().unwrap().verdict, Verdict::Mismatch);
}

/// Flip one byte in the value's Avro body: it either fails to decode (a counted decode error)
/// or decodes to a row whose checksum does not verify; never a silent "ok".
#[test]
fn flipped_value_bytes_never_verify() {
    let (k, v) = (
        fixture("worked_row_key.bin"),
        fixture("worked_row_value.bin"),
    );
    let mut d = decoder("Asia/Shanghai", ProtocolChoice::Fixed(Protocol::Avro));
    // Offsets of the checksum string itself (and the header) are skipped: changing the carried
    // checksum is a different test. The checksum string "3458821086" sits near the end.
    let sum_at = v.windows(10).position(|w| w == b"3458821086").unwrap();
    let (mut errors, mut mismatches) = (0, 0);
    for pos in 5..v.len() {
        if (sum_at..sum_at + 10).contains(&pos) {
            continue;
        }
        for flip in [0x01u8, 0x40, 0xff] {
            let mut m = v.clone();
            m[pos] ^= flip;
            match d.decode(Some(&k), Some(&m)) {
                Err(_) => errors += 1,
                Ok(decoded) => {
                    let evs = decoded.into_strict().unwrap();
                    let ck = evs[0].checksum.clone().unwrap();
                    // A flip inside the extension fields (op, commit ts, corrupted, version)
                    // leaves the row columns intact: those may still verify.
                    let row_intact = evs[0].values.len() == 15
                        && evs[0]
                            .values
                            .iter()
                            .map(|c| c.value.get())
                            .collect::<Vec<_>>()
                            == decoder("Asia/Shanghai", ProtocolChoice::Fixed(Protocol::Avro))
                                .decode(Some(&k), Some(&v))
                                .unwrap()
                                .events[0]
                                .values
                                .iter()
                                .map(|c| c.value.get().to_owned())
                                .collect::<Vec<_>>();
                    if !row_intact {
                        assert_ne!(ck.verdict, Verdict::Ok, "byte {pos} ^ {flip:#x} passed");
                        mismatches += 1;
                    }
                }
            }
        }
    }
    assert!(
        mismatches > 100 && errors > 10,
        "mismatches {mismatches}, errors {errors}"
    );
}

#[test]
fn carried_checksum_changes_are_mismatches() {
    let (k, v) = (
        fixture("worked_row_key.bin"),
        fixture("worked_row_value.bin"),
    );
    let mut d = decoder("Asia/Shanghai", ProtocolChoice::Fixed(Protocol::Avro));
    let sum_at = v.windows(10).position(|w| w == b"3458821086").unwrap();
    let mut m = v.clone();
    m[sum_at + 9] = b'7';
    let ev = &d.decode(Some(&k), Some(&m)).unwrap().events[0];
    let ck = ev.checksum.as_ref().unwrap();
    assert_eq!(ck.verdict, Verdict::Mismatch);
    assert!(
        ck.detail.as_deref().unwrap().contains("3458821087"),
        "{:?}",
        ck.detail
    );
}

#[test]
fn tombstone_is_a_delete_with_key_only() {
    let k = fixture("worked_row_key.bin");
    let mut d = decoder("UTC", ProtocolChoice::Auto);
    for value in [None, Some(&b""[..])] {
        let ev = &d.decode(Some(&k), value).unwrap().events[0];
        assert_eq!((ev.kind, ev.op), (EventKind::Row, Some(RowOp::Delete)));
        assert_eq!((&*ev.db, &*ev.table, ev.partial), ("test", "t", true));
        assert_eq!(ev.keys[0].value.get(), "1");
        assert_eq!(ev.checksum.as_ref().unwrap().verdict, Verdict::Absent);
    }
    // New-architecture delete marker: 0x03 + BE commitTs.
    let v = vectors();
    let marker = unhex(
        v["newarch_delete_value_hex (ticdc>=v8.5.7, extension+watermark only)"]
            .as_str()
            .unwrap(),
    );
    let ev = &d.decode(Some(&k), Some(&marker)).unwrap().events[0];
    assert_eq!(
        (ev.op, ev.commit_ts),
        (Some(RowOp::Delete), Some(446736536876613633))
    );
}

#[test]
fn ddl_and_watermark_pseudo_messages() {
    let v = vectors();
    let mut d = decoder("UTC", ProtocolChoice::Auto);
    let wm = unhex(
        v["watermark_value_hex (ts=1591943372224)"]
            .as_str()
            .unwrap(),
    );
    let ev = &d.decode(None, Some(&wm)).unwrap().events[0];
    assert_eq!(
        (ev.protocol, ev.kind, ev.commit_ts),
        (Protocol::Avro, EventKind::Watermark, Some(1591943372224))
    );
    let ddl = unhex(v["ddl_value_hex"].as_str().unwrap());
    let ev = &d.decode(None, Some(&ddl)).unwrap().events[0];
    assert_eq!(ev.kind, EventKind::Ddl);
    let info = ev.ddl.as_ref().unwrap();
    assert_eq!(
        (&*info.ddl_type, &*info.query),
        ("CREATE", "CREATE TABLE t (id INT PRIMARY KEY)")
    );
    assert_eq!(
        (&*ev.db, &*ev.table, ev.commit_ts),
        ("test", "t", Some(446736536876613633))
    );
}

#[test]
fn unknown_schema_id_names_the_id_and_recovers_after_fetch() {
    let (k, v) = (
        fixture("worked_row_key.bin"),
        fixture("worked_row_value.bin"),
    );
    let store = Arc::new(SchemaStore::default());
    let mut d = Decoder::new(ProtocolChoice::Fixed(Protocol::Avro), Compression::None).with_avro(
        AvroDecoder::new(store.clone(), "Asia/Shanghai".parse().unwrap()),
    );
    let e = d.decode(Some(&k), Some(&v)).unwrap_err();
    assert_eq!(e.reason, DecodeErrorReason::SchemaUnavailable);
    assert_eq!(d.avro().unwrap().missing_schema(), Some(2));
    let vec = vectors();
    store
        .insert(2, vec["worked_row"]["value_schema"].as_str().unwrap())
        .unwrap();
    let _ = d.decode(Some(&k), Some(&v)).unwrap_err();
    assert_eq!(
        d.avro().unwrap().missing_schema(),
        Some(1),
        "then the key schema"
    );
    store
        .insert(1, vec["worked_row"]["key_schema"].as_str().unwrap())
        .unwrap();
    let ev = &d.decode(Some(&k), Some(&v)).unwrap().events[0];
    assert_eq!(ev.checksum.as_ref().unwrap().verdict, Verdict::Ok);
    assert_eq!(d.avro().unwrap().missing_schema(), None);
}

#[test]
fn tiflow_envelope_vector_and_bad_input() {
    // TF avro_test.go TestAvroEnvelope: schema id 8, {id: 7}.
    let store = Arc::new(SchemaStore::default());
    store
        .insert(8, r#"{"type":"record","name":"avroenvelope","namespace":"default.testdb","fields":[{"name":"id","type":"int","default":0}]}"#)
        .unwrap();
    let mut d = Decoder::new(ProtocolChoice::Fixed(Protocol::Avro), Compression::None)
        .with_avro(AvroDecoder::new(store, Default::default()));
    let v = vectors();
    let msg = unhex(
        v["tiflow_TestAvroEnvelope_message_hex (schema id 8, id=7)"]
            .as_str()
            .unwrap(),
    );
    let ev = &d.decode(None, Some(&msg)).unwrap().events[0];
    assert_eq!(ev.values[0].value.get(), "7");
    assert_eq!(ev.checksum.as_ref().unwrap().verdict, Verdict::Absent);
    // Truncated body, trailing garbage, not framed, no key on a tombstone.
    assert_eq!(
        d.decode(None, Some(&msg[..5])).unwrap_err().reason,
        DecodeErrorReason::InvalidAvro
    );
    let mut long = msg.clone();
    long.push(0);
    assert_eq!(
        d.decode(None, Some(&long)).unwrap_err().reason,
        DecodeErrorReason::InvalidAvro
    );
    assert_eq!(
        d.decode(None, Some(b"{\"id\":1}")).unwrap_err().reason,
        DecodeErrorReason::Framing
    );
    assert_eq!(
        d.decode(None, None).unwrap_err().reason,
        DecodeErrorReason::EmptyValue
    );
}

#[test]
fn auto_keeps_open_protocol_and_json_when_avro_is_enabled() {
    let mut d = decoder("UTC", ProtocolChoice::Auto);
    let ticdc = |n: &str| {
        std::fs::read(format!(
            "{}/tests/fixtures/ticdc/{n}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let (k, v) = (
        ticdc("open-protocol-resolved-1.key.bin"),
        ticdc("open-protocol-resolved-1.value.bin"),
    );
    assert_eq!(
        d.decode(Some(&k), Some(&v)).unwrap().events[0].protocol,
        Protocol::OpenProtocol
    );
    let v = ticdc("canal-json-delete-1.json");
    assert_eq!(
        d.decode(None, Some(&v)).unwrap().events[0].protocol,
        Protocol::CanalJson
    );
    // Without a registry, auto never routes to Avro.
    let mut plain = Decoder::new(ProtocolChoice::Auto, Compression::None);
    let e = plain
        .decode(
            Some(&fixture("worked_row_key.bin")),
            Some(&fixture("worked_row_value.bin")),
        )
        .unwrap_err();
    assert_ne!(e.protocol, Some(Protocol::Avro));
}
