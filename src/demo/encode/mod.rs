//! Encoders: the generator's [`Change`]s as the Kafka messages TiCDC's Kafka sink writes, one
//! module per protocol, each modelled on TiCDC's encoder and checked against the real messages
//! in `tests/fixtures/ticdc/` (tests in each module: field sets equal the fixture's, and every
//! message decodes with cdcmon's own decoder to what was generated).
//!
//! Dispatch, as TiCDC's MQ sink does it (TF `cdc/sink/dmlsink/mq/dispatcher`,
//! `pkg/sink/ddlsink/mq/mq_ddl_sink.go`):
//! - rows: by primary-key value (the `index-value` dispatcher), so one row stays in order;
//! - DDL: canal-json to partition 0 only, every other protocol to every partition;
//! - watermarks (resolved ts): to every partition;
//! - simple BOOTSTRAP: to every partition, before a table's first row and every 120 s.

use crate::event::Protocol;

use super::generator::{Change, Table, TableSchema};

pub mod canal_json;
pub mod debezium;
pub mod open_protocol;
pub mod simple;

/// What a message carries, for the producer's own accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One or more row events (open-protocol batches several).
    Rows(u32),
    Ddl,
    Watermark,
    Bootstrap,
}

/// One Kafka message to produce.
#[derive(Debug, Clone)]
pub struct Message {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub kind: Kind,
}

/// The partition of a row with primary key `id` (TiCDC's `index-value` dispatcher hashes the
/// key columns; any stable hash keeps a row's changes in order).
pub fn row_partition(table: Table, id: i64, partitions: i32) -> i32 {
    let h = (id as u64 ^ (table.table_id() as u64).rotate_left(32))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        >> 33;
    (h % partitions.max(1) as u64) as i32
}

/// A protocol encoder with its per-stream state.
#[derive(Debug)]
pub struct Encoder {
    protocol: Protocol,
    partitions: i32,
    open: open_protocol::Batches,
    /// simple: when each table's BOOTSTRAP was last sent (ms), if ever.
    bootstrapped: [Option<u64>; 2],
}

/// TiCDC's default `send-bootstrap-interval-in-sec` (simple protocol).
pub const BOOTSTRAP_INTERVAL_MS: u64 = 120_000;

impl Encoder {
    pub fn new(protocol: Protocol, partitions: i32) -> Self {
        Encoder {
            protocol,
            partitions: partitions.max(1),
            open: open_protocol::Batches::new(partitions.max(1)),
            bootstrapped: [None; 2],
        }
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Encode one change built at `now_ms`; `schema` gives a table's current schema (simple's
    /// BOOTSTRAP). Open-protocol rows may stay batched until [`Encoder::flush`], a DDL or a
    /// watermark.
    pub fn encode(
        &mut self,
        change: &Change,
        schema: &dyn Fn(Table) -> TableSchema,
        now_ms: u64,
        out: &mut Vec<Message>,
    ) {
        let all = 0..self.partitions;
        match (self.protocol, change) {
            (Protocol::CanalJson, Change::Row(r)) => out.push(Message {
                partition: row_partition(r.table, r.id(), self.partitions),
                key: None,
                value: canal_json::row(r, now_ms),
                kind: Kind::Rows(1),
            }),
            (Protocol::CanalJson, Change::Ddl(d)) => out.push(Message {
                partition: 0,
                key: None,
                value: canal_json::ddl(d, now_ms),
                kind: Kind::Ddl,
            }),
            (Protocol::CanalJson, Change::Watermark(ts)) => {
                let value = canal_json::watermark(*ts, now_ms);
                out.extend(all.map(|p| Message {
                    partition: p,
                    key: None,
                    value: value.clone(),
                    kind: Kind::Watermark,
                }));
            }
            (Protocol::OpenProtocol, Change::Row(r)) => {
                let p = row_partition(r.table, r.id(), self.partitions);
                if let Some(m) = self.open.push(p, r) {
                    out.push(m);
                }
            }
            (Protocol::OpenProtocol, Change::Ddl(d)) => {
                // A DDL is a barrier: rows before it go first.
                self.open.flush(out);
                let (key, value) = open_protocol::ddl(d);
                out.extend(all.map(|p| Message {
                    partition: p,
                    key: Some(key.clone()),
                    value: value.clone(),
                    kind: Kind::Ddl,
                }));
            }
            (Protocol::OpenProtocol, Change::Watermark(ts)) => {
                self.open.flush(out);
                let (key, value) = open_protocol::resolved(*ts);
                out.extend(all.map(|p| Message {
                    partition: p,
                    key: Some(key.clone()),
                    value: value.clone(),
                    kind: Kind::Watermark,
                }));
            }
            (Protocol::Debezium, Change::Row(r)) => out.push(Message {
                partition: row_partition(r.table, r.id(), self.partitions),
                key: Some(debezium::row_key(r)),
                value: debezium::row(r, now_ms),
                kind: Kind::Rows(1),
            }),
            (Protocol::Debezium, Change::Ddl(d)) => {
                let (key, value) = (debezium::ddl_key(), debezium::ddl(d, now_ms));
                out.extend(all.map(|p| Message {
                    partition: p,
                    key: Some(key.clone()),
                    value: value.clone(),
                    kind: Kind::Ddl,
                }));
            }
            (Protocol::Debezium, Change::Watermark(ts)) => {
                let (key, value) = (debezium::watermark_key(), debezium::watermark(*ts, now_ms));
                out.extend(all.map(|p| Message {
                    partition: p,
                    key: Some(key.clone()),
                    value: value.clone(),
                    kind: Kind::Watermark,
                }));
            }
            (Protocol::Simple, Change::Row(r)) => {
                let slot = r.table as usize;
                let due = self.bootstrapped[slot]
                    .is_none_or(|at| now_ms.saturating_sub(at) >= BOOTSTRAP_INTERVAL_MS);
                if due {
                    self.bootstrapped[slot] = Some(now_ms);
                    let value = simple::bootstrap(&schema(r.table), now_ms);
                    out.extend(all.clone().map(|p| Message {
                        partition: p,
                        key: None,
                        value: value.clone(),
                        kind: Kind::Bootstrap,
                    }));
                }
                out.push(Message {
                    partition: row_partition(r.table, r.id(), self.partitions),
                    key: None,
                    value: simple::row(r, &schema(r.table), now_ms),
                    kind: Kind::Rows(1),
                });
            }
            (Protocol::Simple, Change::Ddl(d)) => {
                let value = simple::ddl(d, now_ms);
                out.extend(all.map(|p| Message {
                    partition: p,
                    key: None,
                    value: value.clone(),
                    kind: Kind::Ddl,
                }));
            }
            (Protocol::Simple, Change::Watermark(ts)) => {
                let value = simple::watermark(*ts, now_ms);
                out.extend(all.map(|p| Message {
                    partition: p,
                    key: None,
                    value: value.clone(),
                    kind: Kind::Watermark,
                }));
            }
            // `cdcmon demo --protocol` rejects avro (`demo::parse_protocol`): no Avro encoder.
            (Protocol::Avro, _) => {}
        }
    }

    /// Emit every batched message (open-protocol); nothing for the other protocols.
    pub fn flush(&mut self, out: &mut Vec<Message>) {
        self.open.flush(out);
    }
}

/// A tiny JSON object writer: TiCDC writes its messages field by field in a fixed order
/// (`pkg/util/json_writer.go`), and so do we, without building a `serde_json::Value` per event.
pub(crate) struct Obj {
    buf: String,
    empty: bool,
}

impl Obj {
    pub fn new() -> Self {
        Obj {
            buf: String::from("{"),
            empty: true,
        }
    }
    fn key(&mut self, k: &str) {
        if !self.empty {
            self.buf.push(',');
        }
        self.empty = false;
        push_json_str(&mut self.buf, k);
        self.buf.push(':');
    }
    /// A field whose value is already JSON text.
    pub fn raw(&mut self, k: &str, json: &str) -> &mut Self {
        self.key(k);
        self.buf.push_str(json);
        self
    }
    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        push_json_str(&mut self.buf, v);
        self
    }
    pub fn num(&mut self, k: &str, v: impl std::fmt::Display) -> &mut Self {
        self.key(k);
        self.buf.push_str(&v.to_string());
        self
    }
    pub fn null(&mut self, k: &str) -> &mut Self {
        self.raw(k, "null")
    }
    pub fn finish(&mut self) -> String {
        let mut s = std::mem::take(&mut self.buf);
        s.push('}');
        s
    }
}

/// `s` as a JSON string literal.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    // serde_json's escaping is the reference; a `&str` always serializes.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned()));
}

pub(crate) fn json_str(s: &str) -> String {
    let mut out = String::new();
    push_json_str(&mut out, s);
    out
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Shape comparison with the real fixtures, and sample changes of every kind.

    use std::collections::BTreeSet;

    use serde_json::Value;

    use crate::demo::generator::{Change, DdlChange, Generator, Mix, RowChange};
    use crate::event::{ChangeEvent, EventKind, RowOp};

    /// `e` is the row event of `r`: kind Row, `r`'s op, database `app`, `r`'s table and commit ts
    /// (what every demo encoder's row message must decode to).
    #[track_caller]
    pub fn assert_row_event_of(e: &ChangeEvent<'_>, r: &RowChange) {
        assert_eq!(
            (e.kind, e.op, &*e.db, &*e.table, e.commit_ts),
            (
                EventKind::Row,
                Some(r.op),
                "app",
                r.table.name(),
                Some(r.commit_ts)
            )
        );
    }

    pub fn fixture_json(name: &str) -> Value {
        let bytes = crate::protocol::test_support::fixture(name);
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// The set of object field paths of `v` (`a.b`, arrays as `a[]`), not descending into the
    /// fields named in `opaque` (column maps, whose names depend on the table).
    pub fn shape(v: &Value, opaque: &[&str]) -> BTreeSet<String> {
        fn walk(v: &Value, path: &str, opaque: &[&str], out: &mut BTreeSet<String>) {
            match v {
                Value::Object(m) => {
                    for (k, child) in m {
                        let p = if path.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        };
                        out.insert(p.clone());
                        if !opaque.contains(&k.as_str()) {
                            walk(child, &p, opaque, out);
                        }
                    }
                }
                Value::Array(a) => {
                    if let Some(first) = a.first() {
                        walk(first, &format!("{path}[]"), opaque, out);
                    }
                }
                _ => {}
            }
        }
        let mut out = BTreeSet::new();
        walk(v, "", opaque, &mut out);
        out
    }

    /// Changes of every kind from a real generator run: insert, update, delete of both tables,
    /// and DDL of every kind.
    pub fn sample_changes() -> (Generator, Vec<RowChange>, Vec<DdlChange>) {
        let mix = Mix {
            ddl_every_rows: 50,
            ..Mix::default()
        };
        let mut g = Generator::new(11, mix, 1_764_000_000_000);
        let (mut rows, mut ddls) = (Vec::new(), Vec::new());
        let mut ms = 1_764_000_000_000;
        while rows.len() < 600 {
            ms += 3;
            for c in g.next_transaction(ms) {
                match c {
                    Change::Row(r) => rows.push(r),
                    Change::Ddl(d) => ddls.push(d),
                    Change::Watermark(_) => {}
                }
            }
        }
        for op in RowOp::ALL {
            assert!(rows.iter().any(|r| r.op == op), "{op:?} sampled");
        }
        (g, rows, ddls)
    }
}
