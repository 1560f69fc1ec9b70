//! open-protocol: binary batch framing of JSON keys and values, modelled on TF
//! `pkg/sink/codec/open/open_protocol_encoder.go` / `open_protocol_message.go` and TC
//! `pkg/sink/codec/open/codec.go`, checked against `tests/fixtures/ticdc/open-protocol-*`.
//!
//! Rows are batched per partition up to [`MAX_BATCH_SIZE`] (TiCDC's `max-batch-size` default);
//! DDL and resolved events travel alone. Column `t` is the MySQL type code, `f` TiCDC's column
//! flags, `h` marks handle-key columns; integers are JSON numbers, decimals, strings and
//! timestamps JSON strings.

use super::{Kind, Message, Obj, json_str};
use crate::demo::generator::{ColumnDef, DdlChange, RowChange, SqlType, Table, Value};
use crate::event::RowOp;

/// TiCDC's default `max-batch-size` for open-protocol.
pub const MAX_BATCH_SIZE: usize = 16;

/// `codec.BatchVersion1`.
const BATCH_VERSION: u64 = 1;

/// Column flags (TF `cdc/model/sink.go` `ColumnFlagType`).
const BINARY: u32 = 1;
const HANDLE_KEY: u32 = 2;
const PRIMARY_KEY: u32 = 8;
const UNIQUE_KEY: u32 = 16;
const MULTIPLE_KEY: u32 = 32;

/// MySQL type codes (`mysql.TypeLonglong` ...).
fn type_code(ty: SqlType) -> u32 {
    match ty {
        SqlType::BigInt => 8,
        SqlType::Varchar(_) => 15,
        SqlType::Decimal => 246,
        SqlType::Timestamp => 7,
    }
}

fn flags(c: &ColumnDef) -> u32 {
    // Non-string columns have the binary charset, hence TiCDC's BinaryFlag on them.
    let mut f = if matches!(c.ty, SqlType::Varchar(_)) {
        0
    } else {
        BINARY
    };
    if c.primary {
        f |= HANDLE_KEY | PRIMARY_KEY;
    }
    if c.unique {
        f |= UNIQUE_KEY;
    }
    if c.indexed {
        f |= MULTIPLE_KEY;
    }
    f
}

fn columns(table: Table, row: &[Value]) -> String {
    let mut o = Obj::new();
    for (c, v) in table.columns().iter().zip(row) {
        let mut col = Obj::new();
        col.num("t", type_code(c.ty));
        if c.primary {
            col.raw("h", "true");
        }
        col.num("f", flags(c));
        match v {
            Value::Int(i) => col.num("v", i),
            other => col.raw("v", &json_str(&other.to_sql_string())),
        };
        o.raw(c.name, &col.finish());
    }
    o.finish()
}

pub fn row_key(r: &RowChange) -> String {
    Obj::new()
        .num("ts", r.commit_ts)
        .str("scm", Table::DB)
        .str("tbl", r.table.name())
        .num("t", 1)
        .finish()
}

pub fn row_value(r: &RowChange) -> String {
    let cols = columns(r.table, &r.row);
    let mut o = Obj::new();
    match (r.op, &r.old) {
        (RowOp::Delete, _) => o.raw("d", &cols),
        (RowOp::Update, Some(old)) => o.raw("u", &cols).raw("p", &columns(r.table, old)),
        _ => o.raw("u", &cols),
    };
    o.finish()
}

/// Key framing: version, then (length, JSON) per event.
pub fn frame_key<S: AsRef<[u8]>>(entries: &[S]) -> Vec<u8> {
    let mut out = BATCH_VERSION.to_be_bytes().to_vec();
    out.extend(frame_value(entries));
    out
}

/// Value framing: (length, JSON) per event.
pub fn frame_value<S: AsRef<[u8]>>(entries: &[S]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let e = e.as_ref();
        out.extend_from_slice(&(e.len() as u64).to_be_bytes());
        out.extend_from_slice(e);
    }
    out
}

pub fn ddl(d: &DdlChange) -> (Vec<u8>, Vec<u8>) {
    let key = Obj::new()
        .num("ts", d.commit_ts)
        .str("scm", Table::DB)
        .str("tbl", d.table.name())
        .num("t", 2)
        .finish();
    let value = Obj::new()
        .str("q", &d.query)
        .num("t", d.kind.tidb_action())
        .finish();
    (frame_key(&[key]), frame_value(&[value]))
}

/// A resolved event: key `{"ts":..,"t":3}`, value one empty entry (8 zero bytes).
pub fn resolved(ts: u64) -> (Vec<u8>, Vec<u8>) {
    let key = Obj::new().num("ts", ts).num("t", 3).finish();
    (frame_key(&[key]), frame_value(&[""]))
}

/// Row events waiting per partition for their batch to fill.
#[derive(Debug)]
pub struct Batches {
    pending: Vec<(Vec<String>, Vec<String>)>,
}

impl Batches {
    pub fn new(partitions: i32) -> Self {
        Batches {
            pending: (0..partitions.max(1)).map(|_| Default::default()).collect(),
        }
    }

    /// Add a row; returns the partition's batch once it is full.
    pub fn push(&mut self, partition: i32, r: &RowChange) -> Option<Message> {
        let slot = self.pending.get_mut(partition as usize)?;
        slot.0.push(row_key(r));
        slot.1.push(row_value(r));
        (slot.0.len() >= MAX_BATCH_SIZE).then(|| Self::take(partition, slot))
    }

    fn take(partition: i32, slot: &mut (Vec<String>, Vec<String>)) -> Message {
        let (keys, values) = std::mem::take(slot);
        Message {
            partition,
            key: Some(frame_key(&keys)),
            value: frame_value(&values),
            kind: Kind::Rows(keys.len() as u32),
        }
    }

    pub fn flush(&mut self, out: &mut Vec<Message>) {
        for (p, slot) in self.pending.iter_mut().enumerate() {
            if !slot.0.is_empty() {
                out.push(Self::take(p as i32, slot));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::encode::test_support::{fixture_json, sample_changes, shape};
    use crate::event::{EventKind, Protocol};
    use crate::protocol::test_support::fixture;
    use crate::protocol::{Compression, Decoder, ProtocolChoice};

    fn decoder() -> Decoder {
        Decoder::new(
            ProtocolChoice::Fixed(Protocol::OpenProtocol),
            Compression::None,
        )
    }

    #[test]
    fn framing_is_byte_identical_to_ticdc() {
        // The real batch of two: re-frame its JSON entries and compare bytes.
        let keys = String::from_utf8(fixture("open-protocol-insert-4-batch2.keys.jsonl")).unwrap();
        let values =
            String::from_utf8(fixture("open-protocol-insert-4-batch2.values.jsonl")).unwrap();
        let keys: Vec<&str> = keys.lines().collect();
        let values: Vec<&str> = values.lines().collect();
        assert_eq!(
            frame_key(&keys),
            fixture("open-protocol-insert-4-batch2.key.bin")
        );
        assert_eq!(
            frame_value(&values),
            fixture("open-protocol-insert-4-batch2.value.bin")
        );
        assert_eq!(
            resolved(12345678).1,
            fixture("open-protocol-resolved-1.value.bin")
        );
        assert_eq!(
            resolved(12345678).0,
            fixture("open-protocol-resolved-1.key.bin")
        );
    }

    #[test]
    fn rows_have_the_fixture_shape_and_round_trip_in_batches() {
        let (_, rows, _) = sample_changes();
        // Column objects: the fixture's handle column has t,h,f,v; others t,f,v.
        let fixture_cols = fixture_json("open-protocol-update-1.value.json");
        let col_shape = |c: &serde_json::Value| shape(c, &[]);
        for r in &rows {
            let name = match r.op {
                RowOp::Insert => "insert",
                RowOp::Update => "update",
                RowOp::Delete => "delete",
            };
            let key: serde_json::Value = serde_json::from_str(&row_key(r)).unwrap();
            let want = fixture_json(&format!("open-protocol-{name}-1.key.json"));
            assert_eq!(shape(&key, &[]), shape(&want, &[]), "{name} key");
            let value: serde_json::Value = serde_json::from_str(&row_value(r)).unwrap();
            let want = fixture_json(&format!("open-protocol-{name}-1.value.json"));
            assert_eq!(
                shape(&value, &["u", "p", "d"]),
                shape(&want, &["u", "p", "d"])
            );
            let cols = value.as_object().unwrap().values().next().unwrap();
            assert_eq!(col_shape(&cols["id"]), col_shape(&fixture_cols["u"]["a"]));
            for c in cols.as_object().unwrap().keys().filter(|k| *k != "id") {
                assert_eq!(col_shape(&cols[c]), col_shape(&fixture_cols["u"]["b"]));
            }
        }

        // Batched the way the encoder sends them: every event comes back, in order.
        let mut batches = Batches::new(2);
        let mut msgs = Vec::new();
        for r in &rows {
            msgs.extend(batches.push(super::super::row_partition(r.table, r.id(), 2), r));
        }
        batches.flush(&mut msgs);
        assert!(
            msgs.iter()
                .any(|m| m.kind == Kind::Rows(MAX_BATCH_SIZE as u32))
        );
        let mut d = decoder();
        let mut decoded = 0;
        for m in &msgs {
            let evs = d
                .decode(m.key.as_deref(), Some(&m.value))
                .unwrap()
                .into_strict()
                .unwrap();
            assert_eq!(Kind::Rows(evs.len() as u32), m.kind);
            for e in &evs {
                assert_eq!(e.kind, EventKind::Row);
                assert_eq!(e.db, "app");
                assert_eq!(e.keys.len(), 1, "the handle column is the key");
                assert!(
                    rows.iter().any(|r| Some(r.commit_ts) == e.commit_ts
                        && r.table.name() == e.table
                        && Some(r.op) == e.op
                        && e.keys[0].value.get() == r.id().to_string()),
                    "decoded a row that was generated"
                );
                decoded += 1;
            }
        }
        assert_eq!(decoded, rows.len());
    }

    #[test]
    fn ddl_and_resolved_have_the_fixture_shape_and_round_trip() {
        let (_, _, ddls) = sample_changes();
        let mut d = decoder();
        for x in &ddls {
            let (k, v) = ddl(x);
            let key: serde_json::Value = serde_json::from_slice(&k[16..]).unwrap();
            let value: serde_json::Value = serde_json::from_slice(&v[8..]).unwrap();
            assert_eq!(
                shape(&key, &[]),
                shape(&fixture_json("open-protocol-ddl-1.key.json"), &[])
            );
            assert_eq!(
                shape(&value, &[]),
                shape(&fixture_json("open-protocol-ddl-1.value.json"), &[])
            );
            let e = &d.decode(Some(&k), Some(&v)).unwrap().into_strict().unwrap()[0];
            assert_eq!((e.kind, e.commit_ts), (EventKind::Ddl, Some(x.commit_ts)));
            assert_eq!(
                e.ddl.as_ref().map(|d| d.ddl_type.to_string()),
                Some(x.kind.canal_type().to_owned())
            );
        }
        let (k, v) = resolved(99 << 18);
        let e = &d.decode(Some(&k), Some(&v)).unwrap().into_strict().unwrap()[0];
        assert_eq!(
            (e.kind, e.commit_ts),
            (EventKind::Watermark, Some(99 << 18))
        );
    }
}
