//! debezium (`protocol=debezium`, TiCDC ≥ v8.0): Debezium MySQL-connector style JSON.
//!
//! Value: `{"payload":{...}, "schema":{...}}`; `schema` is absent with
//! `debezium-disable-schema=true` (TF `pkg/sink/codec/debezium/codec_test.go`, both shapes). An
//! unwrapped payload at the top level (`{"op":..,"source":..}`, as Kafka Connect writes without
//! the envelope) is accepted too.
//! - `op`: `c` insert, `u` update, `d` delete, `r` snapshot read (treated as insert; TiCDC never
//!   sends it), `m` watermark with `source.commit_ts` = watermark ts.
//! - No `op` but `ddl`: DDL. No `op` and no `ddl`: a watermark, like TF's decoder `HasNext`.
//! - Keys: the Kafka key's `payload` (the handle-key columns) for row events. Without a key the
//!   value alone does not say which columns are the key, so `keys` stays empty.
//!
//! Sources: TF `pkg/sink/codec/debezium/codec.go`, `encoder.go`, `decoder.go`, `codec_test.go`;
//! TC `pkg/sink/codec/debezium/encoder.go`; DOCS `ticdc/ticdc-debezium.md`.

use std::borrow::Cow;

use serde::Deserialize;

use super::json::{Columns, CowStr};
use super::{DecodeError, err, json_err, missing, unknown_value};
use crate::event::{ChangeEvent, Ddl, EventKind, Protocol, RowOp};

const P: Protocol = Protocol::Debezium;

#[derive(Deserialize)]
struct Payload<'a> {
    /// The envelope: when present the real payload is in here (see [`Payload::unwrap`]).
    #[serde(borrow, default)]
    payload: Option<Box<Payload<'a>>>,
    #[serde(borrow, default)]
    op: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    before: Option<Columns<'a>>,
    #[serde(borrow, default)]
    after: Option<Columns<'a>>,
    #[serde(borrow, default)]
    source: Option<Source<'a>>,
    #[serde(borrow, default)]
    ddl: Option<CowStr<'a>>,
    #[serde(borrow, default, rename = "databaseName")]
    database_name: Option<CowStr<'a>>,
}

impl<'a> Payload<'a> {
    /// The event fields: inside `payload` with the schema envelope, at the top without it
    /// (`debezium-disable-schema=true`).
    fn without_envelope(self) -> Payload<'a> {
        match self.payload {
            Some(inner) => *inner,
            None => self,
        }
    }
}

#[derive(Deserialize, Default)]
struct Source<'a> {
    #[serde(borrow, default)]
    db: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    table: Option<CowStr<'a>>,
    /// TiDB extension: the commit TSO (u64, exact).
    #[serde(default)]
    commit_ts: Option<u64>,
    /// `commitTs >> 18` (TF `codec.go` `EncodeValue`).
    #[serde(default)]
    ts_ms: Option<i64>,
}

#[derive(Deserialize)]
struct Key<'a> {
    #[serde(borrow, default)]
    payload: Option<Columns<'a>>,
}

/// Decode one debezium message. `key` is optional and only supplies `keys`; a key that is not
/// a debezium key document is ignored rather than failing the event.
pub fn decode<'a>(key: Option<&'a [u8]>, value: &'a [u8]) -> Result<ChangeEvent<'a>, DecodeError> {
    let top: Payload<'a> = super::from_json(value).map_err(|e| json_err(P, "value", &e))?;
    let p = top.without_envelope();
    let source = p.source.unwrap_or_default();

    let kind = match p.op.as_ref().map(CowStr::as_str) {
        Some("c" | "r" | "u" | "d") => EventKind::Row,
        Some("m") => EventKind::Watermark,
        Some(other) => return Err(unknown_value(P, "op", other)),
        None if p.ddl.is_some() => EventKind::Ddl,
        None if source.commit_ts.is_some() => EventKind::Watermark,
        None => {
            return Err(err(
                P,
                super::DecodeErrorReason::MissingField,
                "payload has none of `op`, `ddl` or `source.commit_ts`",
            ));
        }
    };
    let mut ev = ChangeEvent::new(P, kind);
    ev.db = source
        .db
        .filter(|d| !d.0.is_empty())
        .or(p.database_name)
        .map_or(Cow::Borrowed(""), |s| s.0);
    ev.table = source.table.map_or(Cow::Borrowed(""), |s| s.0);
    ev.commit_ts = source.commit_ts;
    if ev.commit_ts.is_none() {
        ev.commit_physical_ms = source.ts_ms.filter(|&ms| ms > 0);
    }

    match kind {
        EventKind::Ddl => {
            let query = p.ddl.map_or(Cow::Borrowed(""), |s| s.0);
            ev.ddl = Some(Ddl {
                ddl_type: Cow::Borrowed(classify_ddl(&query)),
                query,
            });
        }
        EventKind::Watermark | EventKind::Bootstrap => {}
        EventKind::Row => {
            let op = match p.op.as_ref().map(CowStr::as_str) {
                Some("u") => RowOp::Update,
                Some("d") => RowOp::Delete,
                _ => RowOp::Insert,
            };
            let (values, old) = match op {
                RowOp::Insert => (p.after.ok_or_else(|| missing(P, "after"))?, None),
                // `before` is absent with `[sink.debezium] output-old-value=false`.
                RowOp::Update => (p.after.ok_or_else(|| missing(P, "after"))?, p.before),
                RowOp::Delete => (p.before.ok_or_else(|| missing(P, "before"))?, None),
            };
            ev.op = Some(op);
            ev.values = values.0;
            ev.old_values = old.map(|c| c.0).unwrap_or_default();
            ev.keys = key
                .and_then(|k| super::from_json::<Key<'a>>(k).ok())
                .and_then(|k| k.payload)
                .map(|c| c.0.into())
                .unwrap_or_default();
        }
    }
    Ok(ev)
}

/// Classify a DDL statement into a canal DDL type by its leading keywords, the way TiDB's
/// action types map in TF `canal_entry.go` `convertDdlEventType`:
/// `CREATE TABLE` → CREATE, `CREATE INDEX` → CINDEX, `DROP TABLE` → ERASE, `DROP INDEX` →
/// DINDEX, `TRUNCATE` → TRUNCATE, `RENAME TABLE` → RENAME, `ALTER TABLE` → CINDEX/DINDEX for a
/// single index or key clause, RENAME for `RENAME [TO|AS]`, else ALTER; everything else QUERY.
pub fn classify_ddl(sql: &str) -> &'static str {
    let tokens = Tokens::new(sql);
    let mut words = tokens.filter(|t| !t.is_empty());
    let first = words.next().unwrap_or_default();
    let upper = |w: &str| w.to_ascii_uppercase();
    match upper(first).as_str() {
        "CREATE" => {
            let mut w = words.next().map(upper).unwrap_or_default();
            // CREATE [OR REPLACE] [GLOBAL|LOCAL] [TEMPORARY] TABLE / [UNIQUE|FULLTEXT|SPATIAL] INDEX
            while matches!(
                w.as_str(),
                "OR" | "REPLACE" | "GLOBAL" | "LOCAL" | "TEMPORARY"
            ) {
                w = words.next().map(upper).unwrap_or_default();
            }
            match w.as_str() {
                "TABLE" => "CREATE",
                "INDEX" | "UNIQUE" | "FULLTEXT" | "SPATIAL" | "VECTOR" => "CINDEX",
                _ => "QUERY",
            }
        }
        "DROP" => {
            let mut w = words.next().map(upper).unwrap_or_default();
            while matches!(w.as_str(), "TEMPORARY" | "GLOBAL") {
                w = words.next().map(upper).unwrap_or_default();
            }
            match w.as_str() {
                "TABLE" | "TABLES" => "ERASE",
                "INDEX" => "DINDEX",
                _ => "QUERY",
            }
        }
        "TRUNCATE" => "TRUNCATE",
        "RENAME" => match words.next().map(upper).as_deref() {
            Some("TABLE" | "TABLES") => "RENAME",
            _ => "QUERY",
        },
        "ALTER" => match words.next().map(upper).as_deref() {
            Some("TABLE") => classify_alter_table(sql),
            _ => "QUERY",
        },
        _ => "QUERY",
    }
}

fn classify_alter_table(sql: &str) -> &'static str {
    let toks: Vec<&str> = Tokens::new(sql).filter(|t| !t.is_empty()).collect();
    // Skip `ALTER TABLE name[.name]`.
    let mut i = 3;
    while toks.get(i) == Some(&".") {
        i += 2;
    }
    let rest = toks.get(i..).unwrap_or_default();
    // Several clauses are one multi-schema change in TiDB: ALTER.
    let mut depth = 0i32;
    for t in rest {
        match *t {
            "(" => depth += 1,
            ")" => depth -= 1,
            "," if depth == 0 => return "ALTER",
            _ => {}
        }
    }
    let w = |n: usize| {
        rest.get(n)
            .map(|s| s.to_ascii_uppercase())
            .unwrap_or_default()
    };
    match w(0).as_str() {
        "ADD" => {
            let mut n = 1;
            if w(n) == "CONSTRAINT" {
                n += 1;
                if !matches!(w(n).as_str(), "PRIMARY" | "UNIQUE" | "FOREIGN" | "CHECK") {
                    n += 1; // the constraint's symbol
                }
            }
            match w(n).as_str() {
                "INDEX" | "KEY" | "UNIQUE" | "PRIMARY" | "FOREIGN" | "FULLTEXT" | "SPATIAL"
                | "VECTOR" => "CINDEX",
                _ => "ALTER",
            }
        }
        "DROP" => match w(1).as_str() {
            "INDEX" | "KEY" | "PRIMARY" | "FOREIGN" => "DINDEX",
            _ => "ALTER",
        },
        "RENAME" => match w(1).as_str() {
            "INDEX" | "KEY" | "COLUMN" => "ALTER",
            _ => "RENAME",
        },
        _ => "ALTER",
    }
}

/// A tiny SQL lexer: words, quoted identifiers/strings (as one token), single punctuation;
/// whitespace and comments are skipped.
struct Tokens<'s> {
    rest: &'s str,
}

impl<'s> Tokens<'s> {
    fn new(sql: &'s str) -> Self {
        Tokens { rest: sql }
    }
}

impl<'s> Iterator for Tokens<'s> {
    type Item = &'s str;
    fn next(&mut self) -> Option<&'s str> {
        loop {
            self.rest = self.rest.trim_start();
            if let Some(r) = self.rest.strip_prefix("/*") {
                self.rest = r.find("*/").and_then(|i| r.get(i + 2..)).unwrap_or("");
            } else if self.rest.starts_with("-- ") || self.rest.starts_with('#') {
                self.rest = self
                    .rest
                    .find('\n')
                    .and_then(|i| self.rest.get(i..))
                    .unwrap_or("");
            } else {
                break;
            }
        }
        let mut chars = self.rest.char_indices();
        let (_, c) = chars.next()?;
        let end = if matches!(c, '`' | '\'' | '"') {
            // Quoted: up to the closing quote (doubled quotes just continue the scan).
            self.rest
                .get(1..)
                .and_then(|r| r.find(c))
                .map_or(self.rest.len(), |i| i + 2)
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            self.rest
                .char_indices()
                .find(|(_, ch)| !(ch.is_alphanumeric() || *ch == '_' || *ch == '$'))
                .map_or(self.rest.len(), |(i, _)| i)
        } else {
            c.len_utf8()
        };
        let (tok, rest) = self.rest.split_at(end.min(self.rest.len()));
        self.rest = rest;
        Some(tok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::DecodeErrorReason;
    use crate::protocol::test_support::{cols, fixture, pairs};

    fn dec_fixture(name: &str) -> (Vec<u8>, Vec<u8>) {
        (
            fixture(&format!("debezium-{name}.key.json")),
            fixture(&format!("debezium-{name}.json")),
        )
    }

    #[test]
    fn insert_fixture() {
        let (k, v) = dec_fixture("insert-1");
        let ev = decode(Some(&k), &v).unwrap();
        assert_eq!((ev.kind, ev.op), (EventKind::Row, Some(RowOp::Insert)));
        assert_eq!(
            (&*ev.db, &*ev.table, ev.commit_ts),
            ("test", "table1", Some(1))
        );
        assert_eq!(cols(&ev.keys), pairs(&[("tiny", "1")]));
        assert_eq!(cols(&ev.values), pairs(&[("tiny", "1")]));
        assert!(ev.old_values.is_empty());
        assert!(ev.values.iter().all(|c| c.value.is_borrowed()));
    }

    #[test]
    fn update_fixture() {
        let (k, v) = dec_fixture("update-1");
        let ev = decode(Some(&k), &v).unwrap();
        assert_eq!(ev.op, Some(RowOp::Update));
        assert_eq!(ev.commit_ts, Some(1));
        assert_eq!(cols(&ev.keys), pairs(&[("tiny", "1")]));
        assert_eq!(cols(&ev.values), pairs(&[("tiny", "1")]));
        assert_eq!(cols(&ev.old_values), pairs(&[("tiny", "2")]));
    }

    #[test]
    fn delete_fixture() {
        let (k, v) = dec_fixture("delete-1");
        let ev = decode(Some(&k), &v).unwrap();
        assert_eq!(ev.op, Some(RowOp::Delete));
        assert_eq!(cols(&ev.keys), pairs(&[("tiny", "2")]));
        assert_eq!(cols(&ev.values), pairs(&[("tiny", "2")]));
        // Without a key there is nothing that names the key columns.
        let ev = decode(None, &v).unwrap();
        assert!(ev.keys.is_empty());
        assert_eq!(ev.op, Some(RowOp::Delete));
    }

    #[test]
    fn ddl_fixture() {
        let (k, v) = dec_fixture("ddl-1");
        let ev = decode(Some(&k), &v).unwrap();
        assert_eq!((ev.kind, ev.op), (EventKind::Ddl, None));
        assert_eq!(
            (&*ev.db, &*ev.table, ev.commit_ts),
            ("test", "table1", Some(1))
        );
        let ddl = ev.ddl.unwrap();
        assert_eq!(ddl.ddl_type, "RENAME");
        assert_eq!(ddl.query, "RENAME TABLE test.table1 to test.table2");
        // The DDL key (`databaseName`) is not a row key.
        assert!(ev.keys.is_empty());
    }

    #[test]
    fn watermark_fixture() {
        let (k, v) = dec_fixture("watermark-1");
        let ev = decode(Some(&k), &v).unwrap();
        assert_eq!(ev.kind, EventKind::Watermark);
        assert_eq!(ev.commit_ts, Some(3));
        assert_eq!((&*ev.db, &*ev.table), ("", ""));
    }

    #[test]
    fn without_schema_envelope_and_unwrapped() {
        // `debezium-disable-schema=true`: still `{"payload":..}`, no `schema`.
        let v = br#"{"payload":{"before":null,"after":{"id":9,"s":"x"},"op":"c","source":{"db":"app","table":"users","commit_ts":449034917208096770,"ts_ms":1712920000000},"ts_ms":1,"transaction":null}}"#;
        let k = br#"{"payload":{"id":9}}"#;
        let ev = decode(Some(k), v).unwrap();
        assert_eq!((&*ev.db, &*ev.table), ("app", "users"));
        assert_eq!(ev.commit_ts, Some(449034917208096770));
        assert_eq!(cols(&ev.keys), pairs(&[("id", "9")]));
        // The payload at the top level.
        let v = br#"{"before":{"id":9},"after":null,"op":"d","source":{"db":"app","table":"users","ts_ms":1712920000000}}"#;
        let ev = decode(None, v).unwrap();
        assert_eq!(ev.op, Some(RowOp::Delete));
        assert_eq!(ev.commit_ts, None);
        assert_eq!(ev.commit_physical_ms, Some(1712920000000));
        // Update without `before` (output-old-value=false).
        let v = br#"{"payload":{"after":{"id":1},"op":"u","source":{"db":"a","table":"b","commit_ts":5}}}"#;
        let ev = decode(None, v).unwrap();
        assert_eq!(ev.op, Some(RowOp::Update));
        assert!(ev.old_values.is_empty());
        // A garbage key costs the keys, not the event.
        let ev = decode(Some(b"\x01\x02"), v).unwrap();
        assert!(ev.keys.is_empty());
    }

    #[test]
    fn errors() {
        let e = decode(None, br#"{"payload":{"op":"x","source":{}}}"#).unwrap_err();
        assert_eq!(e.reason, DecodeErrorReason::UnknownType);
        assert_eq!(
            e.to_string(),
            r#"debezium: field `op` has unknown value "x" (unknown_type)"#
        );
        let e = decode(
            None,
            br#"{"payload":{"op":"c","before":null,"after":null}}"#,
        )
        .unwrap_err();
        assert_eq!(e.reason, DecodeErrorReason::MissingField);
        let e = decode(None, br#"{"payload":{"op":"d","after":{"a":1}}}"#).unwrap_err();
        assert_eq!(e.reason, DecodeErrorReason::MissingField);
        let e = decode(None, br#"{"payload":{}}"#).unwrap_err();
        assert_eq!(e.reason, DecodeErrorReason::MissingField);
        let e = decode(None, b"{\"payload\":").unwrap_err();
        assert_eq!(e.reason, DecodeErrorReason::InvalidJson);
    }

    #[test]
    fn ddl_statements_are_classified() {
        let cases = [
            ("CREATE TABLE t (a int)", "CREATE"),
            ("create temporary table t (a int)", "CREATE"),
            ("CREATE UNIQUE INDEX i ON t(a)", "CINDEX"),
            ("CREATE DATABASE d", "QUERY"),
            ("CREATE OR REPLACE VIEW v AS SELECT 1", "QUERY"),
            ("DROP TABLE IF EXISTS t", "ERASE"),
            ("DROP INDEX i ON t", "DINDEX"),
            ("DROP DATABASE d", "QUERY"),
            ("drop view v", "QUERY"),
            ("TRUNCATE TABLE t", "TRUNCATE"),
            ("RENAME TABLE a TO b, c TO d", "RENAME"),
            ("ALTER TABLE `my db`.`t` ADD COLUMN c int", "ALTER"),
            ("ALTER TABLE t ADD INDEX i(a)", "CINDEX"),
            ("ALTER TABLE t ADD UNIQUE KEY u(a, b)", "CINDEX"),
            (
                "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES p(id)",
                "CINDEX",
            ),
            ("ALTER TABLE t ADD PRIMARY KEY (a)", "CINDEX"),
            ("ALTER TABLE t DROP PRIMARY KEY", "DINDEX"),
            ("ALTER TABLE d.t DROP INDEX i", "DINDEX"),
            ("ALTER TABLE t DROP COLUMN c", "ALTER"),
            ("ALTER TABLE t ADD INDEX i(a), ADD COLUMN c int", "ALTER"),
            ("ALTER TABLE t RENAME TO t2", "RENAME"),
            ("ALTER TABLE t RENAME INDEX a TO b", "ALTER"),
            ("ALTER DATABASE d CHARACTER SET utf8mb4", "QUERY"),
            ("/* hint */ CREATE TABLE t (a int)", "CREATE"),
            ("  -- note\n  TRUNCATE t", "TRUNCATE"),
            ("", "QUERY"),
            ("`", "QUERY"),
            ("ALTER TABLE", "ALTER"),
        ];
        for (sql, want) in cases {
            assert_eq!(classify_ddl(sql), want, "{sql}");
        }
    }
}
