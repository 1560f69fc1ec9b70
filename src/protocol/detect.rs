//! `--protocol auto`: tell the four TiCDC protocols apart, per message, cheaply.
//!
//! 1. open-protocol is the only binary protocol: its key starts with the batch version header,
//!    the 8-byte big-endian `1` (TF `pkg/sink/codec/encoder.go` `BatchVersion1`).
//! 2. Everything else is a JSON value. The first top-level key usually decides, because TiCDC's
//!    encoders write their fields in a fixed order: canal-json starts with `"id"`, simple with
//!    `"version"`, debezium with `"payload"` (or `"schema"`).
//! 3. Otherwise every top-level key is read (values skipped) and the key set decides:
//!    canal-json has `isDdl`/`pkNames`/`es`; simple has `version` + `type` + `buildTs`/`commitTs`;
//!    debezium has `payload`/`schema`, or `op` + `source` when unwrapped.

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

use super::{DecodeError, DecodeErrorReason};
use crate::event::Protocol;

/// open-protocol batch header: version 1 as a big-endian u64.
pub const OPEN_PROTOCOL_HEADER: [u8; 8] = [0, 0, 0, 0, 0, 0, 0, 1];

/// Whether the Kafka key starts with the open-protocol version-1 header.
pub fn has_open_protocol_header(key: Option<&[u8]>) -> bool {
    key.and_then(|k| k.get(..8)) == Some(&OPEN_PROTOCOL_HEADER[..])
}

/// Detect the protocol of one message.
pub fn detect(key: Option<&[u8]>, value: &[u8]) -> Result<Protocol, DecodeError> {
    if has_open_protocol_header(key) {
        return Ok(Protocol::OpenProtocol);
    }
    detect_json(value)
}

/// Detect which JSON protocol `value` is.
pub fn detect_json(value: &[u8]) -> Result<Protocol, DecodeError> {
    if let Some(p) = first_key(value).and_then(by_first_key) {
        return Ok(p);
    }
    let keys = probe_keys(value).ok_or_else(|| {
        DecodeError::new(
            None,
            DecodeErrorReason::UnknownProtocol,
            "value is not a JSON object and the key has no open-protocol header",
        )
    })?;
    keys.protocol().ok_or_else(|| {
        DecodeError::new(
            None,
            DecodeErrorReason::UnknownProtocol,
            "JSON value has none of the top-level fields of canal-json, simple or debezium",
        )
    })
}

fn by_first_key(key: &[u8]) -> Option<Protocol> {
    match key {
        b"id" => Some(Protocol::CanalJson),
        b"version" => Some(Protocol::Simple),
        b"payload" | b"schema" => Some(Protocol::Debezium),
        _ => None,
    }
}

/// The first key of a JSON object, if it has no escapes (a byte scan, no parsing).
fn first_key(value: &[u8]) -> Option<&[u8]> {
    let mut rest = skip_ws(value);
    rest = rest.strip_prefix(b"{")?;
    rest = skip_ws(rest);
    rest = rest.strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    match rest.get(end) {
        Some(b'"') => rest.get(..end),
        _ => None,
    }
}

fn skip_ws(mut s: &[u8]) -> &[u8] {
    while let Some((&b, rest)) = s.split_first() {
        if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            break;
        }
        s = rest;
    }
    s
}

#[derive(Debug, Default, Clone, Copy)]
struct Keys {
    is_ddl: bool,
    pk_names: bool,
    es: bool,
    version: bool,
    ty: bool,
    build_ts: bool,
    commit_ts: bool,
    payload: bool,
    schema: bool,
    op: bool,
    source: bool,
}

impl Keys {
    fn protocol(self) -> Option<Protocol> {
        if self.is_ddl || self.pk_names || self.es {
            Some(Protocol::CanalJson)
        } else if self.version && self.ty && (self.build_ts || self.commit_ts) {
            Some(Protocol::Simple)
        } else if self.payload || self.schema || (self.op && self.source) {
            Some(Protocol::Debezium)
        } else {
            None
        }
    }
}

/// Read the top-level keys of a JSON object, skipping values.
fn probe_keys(value: &[u8]) -> Option<Keys> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Keys;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
            let mut k = Keys::default();
            while let Some(name) = map.next_key::<super::json::CowStr<'de>>()? {
                match name.as_str() {
                    "isDdl" => k.is_ddl = true,
                    "pkNames" => k.pk_names = true,
                    "es" => k.es = true,
                    "version" => k.version = true,
                    "type" => k.ty = true,
                    "buildTs" => k.build_ts = true,
                    "commitTs" => k.commit_ts = true,
                    "payload" => k.payload = true,
                    "schema" => k.schema = true,
                    "op" => k.op = true,
                    "source" => k.source = true,
                    _ => {}
                }
                map.next_value::<IgnoredAny>()?;
            }
            Ok(k)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(value);
    de.deserialize_map(V).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/ticdc/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn every_fixture_is_detected() {
        let cases = [
            ("canal-json-insert-1.json", Protocol::CanalJson),
            ("canal-json-update-1.json", Protocol::CanalJson),
            ("canal-json-delete-1.json", Protocol::CanalJson),
            ("canal-json-ddl-1.json", Protocol::CanalJson),
            ("canal-json-watermark-1.json", Protocol::CanalJson),
            ("simple-insert-1.json", Protocol::Simple),
            ("simple-update-1.json", Protocol::Simple),
            ("simple-delete-1.json", Protocol::Simple),
            ("simple-ddl-1.json", Protocol::Simple),
            ("simple-bootstrap-1.json", Protocol::Simple),
            ("simple-watermark-1.json", Protocol::Simple),
            ("debezium-insert-1.json", Protocol::Debezium),
            ("debezium-update-1.json", Protocol::Debezium),
            ("debezium-delete-1.json", Protocol::Debezium),
            ("debezium-ddl-1.json", Protocol::Debezium),
            ("debezium-watermark-1.json", Protocol::Debezium),
        ];
        for (name, want) in cases {
            let value = fixture(name);
            assert_eq!(detect(None, &value).unwrap(), want, "{name}");
            // The full probe agrees with the first-key shortcut.
            assert_eq!(
                probe_keys(&value).unwrap().protocol(),
                Some(want),
                "{name} (probe)"
            );
        }
        for name in [
            "insert-1",
            "update-1",
            "delete-1",
            "ddl-1",
            "resolved-1",
            "insert-4-batch2",
        ] {
            let key = fixture(&format!("open-protocol-{name}.key.bin"));
            let value = fixture(&format!("open-protocol-{name}.value.bin"));
            assert_eq!(
                detect(Some(&key), &value).unwrap(),
                Protocol::OpenProtocol,
                "{name}"
            );
        }
    }

    #[test]
    fn reordered_fields_fall_back_to_the_full_probe() {
        let canal = br#"{"database":"d","table":"t","isDdl":false,"type":"INSERT","es":1}"#;
        assert_eq!(first_key(canal), Some(&b"database"[..]));
        assert_eq!(detect_json(canal).unwrap(), Protocol::CanalJson);
        let simple = br#" {"type":"WATERMARK","version":1,"commitTs":5,"buildTs":1}"#;
        assert_eq!(detect_json(simple).unwrap(), Protocol::Simple);
        let dbz = br#"{"before":null,"after":{"a":1},"op":"c","source":{"db":"d"}}"#;
        assert_eq!(detect_json(dbz).unwrap(), Protocol::Debezium);
        let escaped = br#"{"\u0069d":0,"pkNames":null}"#;
        assert_eq!(first_key(escaped), None);
        assert_eq!(detect_json(escaped).unwrap(), Protocol::CanalJson);
    }

    #[test]
    fn unknown_input_is_unknown_protocol() {
        for value in [
            &b"not json"[..],
            b"[1,2]",
            br#"{"hello":"world"}"#,
            b"",
            b"{",
            b"\x00\x00\x00\x00\x00\x00\x00\x02",
        ] {
            let e = detect(None, value).unwrap_err();
            assert_eq!(e.reason, DecodeErrorReason::UnknownProtocol, "{value:?}");
            assert_eq!(e.protocol, None);
        }
        // A key with another version is not open-protocol.
        let key = [0, 0, 0, 0, 0, 0, 0, 2, 0];
        assert!(!has_open_protocol_header(Some(&key)));
        assert!(!has_open_protocol_header(Some(&key[..3])));
        assert!(!has_open_protocol_header(None));
    }
}
