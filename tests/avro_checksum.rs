//! Row-checksum encodings against every DERIVED vector in `tests/fixtures/avro/vectors.json`
//! (TiDB `TestColumnEncode` cases, the `TestRowChecksum`-like row, the worked row's intermediate
//! CRCs and final checksum), plus mutation tests: one flipped byte in any column value of the
//! worked row never verifies.

#![allow(clippy::approx_constant)] // 3.14 is TiDB's TestColumnEncode value, not π

use cdcmon::checksum::{
    ColumnKind, Value, Verdict, check_side, encode_value, row_checksum, split_allowed,
};
use serde_json::Value as Json;

fn vectors() -> Json {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/avro/vectors.json"
    );
    serde_json::from_slice(&std::fs::read(path).expect("vectors.json"))
        .expect("vectors.json is JSON")
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn encode(kind: &ColumnKind, v: Value<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_value(kind, v, chrono_tz::UTC, &mut out).expect("encodes");
    out
}

/// Every `rowcodec_column_encodings` case: the input as a decoded value of its type. A case in
/// the file without an entry here fails the test, so no vector is skipped.
fn case_input(case: &str) -> (ColumnKind, Value<'static>) {
    use ColumnKind::*;
    match case {
        "tinyint/neg" => (Integer, Value::Int(-2)),
        "tinyint/min/signed" => (Integer, Value::Int(-128)),
        "smallint/max/unsigned" => (Integer, Value::Uint(65535)),
        "int/min/signed" => (Integer, Value::Int(-2147483648)),
        "bigint/min/signed" => (Integer, Value::Int(i64::MIN)),
        "bigint/max/unsigned" => (Integer, Value::Bytes(b"18446744073709551615")),
        "mediumint/min/signed" => (Integer, Value::Int(-8388608)),
        "year" => (Integer, Value::Int(2023)),
        "varchar" => (Bytes, Value::Bytes(b"foo")),
        "varchar/empty" => (Bytes, Value::Bytes(b"")),
        "float" => (Float, Value::F32(3.14)),
        "float/nan" => (Float, Value::F32(f32::NAN)),
        "double" => (Double, Value::F64(3.14)),
        "enum" => (
            Enum {
                allowed: split_allowed("a,b,c"),
            },
            Value::Bytes(b"b"),
        ),
        "set" => (
            Set {
                allowed: split_allowed("a,b,c"),
            },
            Value::Bytes(b"a,c"),
        ),
        "bit" => (Bit, Value::Bytes(&[0x12, 0x34])),
        "bit/truncate" => (
            Bit,
            Value::Bytes(&[0x12, 0x34, 0x12, 0x34, 0x12, 0x34, 0x12, 0x34, 0xff]),
        ),
        "decimal/zero" => (Bytes, Value::Bytes(b"0.000")),
        "decimal/pos" => (Bytes, Value::Bytes(b"3.14")),
        "decimal/neg" => (Bytes, Value::Bytes(b"-1.2")),
        "decimal/min(12,6)" => (Bytes, Value::Bytes(b"-999999.999999")),
        "datetime fsp3 of FromDate(2023,1,2,3,4,5,678us)" => {
            (Bytes, Value::Bytes(b"2023-01-02 03:04:05.000"))
        }
        "date" => (Bytes, Value::Bytes(b"2023-01-02")),
        "datetime/zero" => (Bytes, Value::Bytes(b"0000-00-00 00:00:00")),
        "time fsp6 8h7m0.123456s" => (Bytes, Value::Bytes(b"08:07:00.123456")),
        "time/zero" => (Bytes, Value::Bytes(b"00:00:00")),
        "time/max fsp3" => (Bytes, Value::Bytes(b"838:59:59.000")),
        "json/1 (nil)" => (Bytes, Value::Bytes(b"null")),
        "json/2 (42)" => (Bytes, Value::Bytes(b"42")),
        "null (any type)" => (Integer, Value::Null),
        other => panic!("vectors.json case {other:?} has no input here: add it"),
    }
}

#[test]
fn every_column_encoding_vector() {
    let v = vectors();
    let cases = v["rowcodec_column_encodings"].as_array().expect("cases");
    assert_eq!(cases.len(), 30, "vectors.json changed: review the cases");
    for case in cases {
        let name = case["case"].as_str().expect("case name");
        let (kind, value) = case_input(name);
        let expected = unhex(case["bytes_hex"].as_str().expect("bytes_hex"));
        assert_eq!(encode(&kind, value), expected, "case {name}");
    }
    // NULL is empty for every kind.
    for kind in [
        ColumnKind::Bytes,
        ColumnKind::Timestamp,
        ColumnKind::Bit,
        ColumnKind::Float,
    ] {
        assert!(encode(&kind, Value::Null).is_empty());
    }
}

#[test]
fn row_checksum_example() {
    let v = vectors();
    let ex = &v["row_checksum_example_TestRowChecksum_like"];
    let (int, text) = (ColumnKind::Integer, ColumnKind::Bytes);
    let cols = [
        (&int, Value::Null),
        (&int, Value::Int(42)),
        (&text, Value::Bytes(b"foobar")),
    ];
    let concat: Vec<u8> = cols.iter().flat_map(|(k, v)| encode(k, *v)).collect();
    assert_eq!(concat, unhex(ex["concat_hex"].as_str().unwrap()));
    let crc = row_checksum(cols, chrono_tz::UTC).unwrap();
    assert_eq!(u64::from(crc), ex["crc32_ieee"].as_u64().unwrap());
}

/// The worked row, as the Avro decoder hands it over: (name, kind, value).
fn worked_row() -> Vec<(&'static str, ColumnKind, Value<'static>)> {
    use ColumnKind::*;
    vec![
        ("id", Integer, Value::Int(1)),
        ("name", Bytes, Value::Bytes(b"Alice")),
        ("price", Bytes, Value::Bytes(b"12.50")),
        ("amount", Integer, Value::Bytes(b"18446744073709551615")),
        ("ratio", Float, Value::F32(1.5)),
        ("flags", Bit, Value::Bytes(&[0x05])),
        (
            "color",
            Enum {
                allowed: split_allowed("red,green,blue"),
            },
            Value::Bytes(b"green"),
        ),
        (
            "tags",
            Set {
                allowed: split_allowed("a,b,c"),
            },
            Value::Bytes(b"a,c"),
        ),
        ("ts", Timestamp, Value::Bytes(b"2024-01-02 11:04:05.678")),
        ("dt", Bytes, Value::Bytes(b"2024-01-02 03:04:05")),
        ("d", Bytes, Value::Bytes(b"2024-01-02")),
        ("tm", Bytes, Value::Bytes(b"12:34:56.70")),
        ("js", Bytes, Value::Bytes(br#"{"a": 1, "b": [true, null]}"#)),
        ("bin", Bytes, Value::Bytes(&[0x00, 0xff])),
        ("note", Bytes, Value::Null),
    ]
}

#[test]
fn worked_row_intermediate_crcs_and_final_checksum() {
    let v = vectors();
    let w = &v["worked_row"];
    let tz: chrono_tz::Tz = w["ticdc_server_tz"].as_str().unwrap().parse().unwrap();
    let steps = w["checksum_steps"].as_array().unwrap();
    let row = worked_row();
    assert_eq!(steps.len(), row.len());
    let mut hasher = crc32fast::Hasher::new();
    let mut concat = Vec::new();
    for ((name, kind, value), step) in row.iter().zip(steps) {
        assert_eq!(*name, step["column"].as_str().unwrap());
        let mut bytes = Vec::new();
        encode_value(kind, *value, tz, &mut bytes).unwrap();
        assert_eq!(
            bytes,
            unhex(step["bytes_hex"].as_str().unwrap()),
            "column {name}"
        );
        hasher.update(&bytes);
        concat.extend_from_slice(&bytes);
        assert_eq!(
            u64::from(hasher.clone().finalize()),
            step["crc_after"].as_u64().unwrap(),
            "crc after {name}"
        );
    }
    assert_eq!(concat, unhex(w["checksum_concat_hex"].as_str().unwrap()));
    let expected = w["expected_checksum"].as_u64().unwrap();
    assert_eq!(expected, 3458821086);
    let crc = row_checksum(row.iter().map(|(_, k, v)| (k, *v)), tz).unwrap();
    assert_eq!(u64::from(crc), expected);
    // The TIMESTAMP depends on the zone: read as UTC text it does not verify.
    assert_ne!(
        u64::from(row_checksum(row.iter().map(|(_, k, v)| (k, *v)), chrono_tz::UTC).unwrap()),
        expected
    );
}

/// Flip every bit position's worth of one byte in every byte of every non-null column value:
/// the row must never verify (a mismatch or an encoding error, never a pass).
#[test]
fn flipped_byte_in_any_column_never_verifies() {
    let tz = chrono_tz::Asia::Shanghai;
    let expected = 3458821086u64;
    let row = worked_row();
    let mut mutations = 0;
    for (i, (name, _, value)) in row.iter().enumerate() {
        let owned: Vec<u8> = match value {
            Value::Bytes(b) => b.to_vec(),
            Value::Int(n) => n.to_le_bytes().to_vec(),
            Value::F32(f) => f.to_le_bytes().to_vec(),
            Value::Null => continue,
            other => panic!("unexpected {other:?}"),
        };
        for pos in 0..owned.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut m = owned.clone();
                m[pos] ^= flip;
                let mutated = match value {
                    Value::Bytes(_) => Value::Bytes(&m),
                    Value::Int(_) => Value::Int(i64::from_le_bytes(m.clone().try_into().unwrap())),
                    Value::F32(_) => Value::F32(f32::from_le_bytes(m.clone().try_into().unwrap())),
                    _ => unreachable!(),
                };
                let cols = row
                    .iter()
                    .enumerate()
                    .map(|(j, (_, k, v))| (k, if i == j { mutated } else { *v }));
                let (verdict, detail) = check_side("current", expected, cols, tz);
                assert_eq!(
                    verdict,
                    Verdict::Mismatch,
                    "column {name} byte {pos} ^ {flip:#x} passed ({detail:?})"
                );
                mutations += 1;
            }
        }
    }
    assert!(mutations > 400, "only {mutations} mutations");
    // And the unmutated row passes.
    let (verdict, _) = check_side("current", expected, row.iter().map(|(_, k, v)| (k, *v)), tz);
    assert_eq!(verdict, Verdict::Ok);
}
