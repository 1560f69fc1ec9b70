//! simple (`protocol=simple`, TiCDC ≥ v8.0), JSON encoding: one event per Kafka message.
//!
//! `type`: `INSERT`/`UPDATE`/`DELETE` (DML: `data` = new row, `old` = old/deleted row), the eight
//! canal DDL types (`sql`, `tableSchema`, `preTableSchema`), `WATERMARK` (`commitTs` = watermark),
//! `BOOTSTRAP` (`tableSchema`, `commitTs:0`). DML does not say which columns form the key, so the
//! [`SchemaCache`] remembers each table's primary key (else its first non-null unique index)
//! from BOOTSTRAP and DDL `tableSchema` (TiCDC sends BOOTSTRAP before a table's first DML).
//! The Avro encoding (`encoding-format="avro"`) is not supported.
//!
//! Sources: TF `pkg/sink/codec/simple/message.go`, `encoder.go`, `decoder.go`;
//! DOCS `ticdc/ticdc-simple-protocol.md`.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;

use super::json::{Columns, CowStr, pick};
use super::{DecodeError, canal_ddl_type, json_err, missing, unknown_value};
use crate::event::{ChangeEvent, Ddl, EventKind, KeyColumns, Protocol, RowOp};

const P: Protocol = Protocol::Simple;

/// Tables remembered at most; past it the cache starts over (a bounded memory, and BOOTSTRAP is
/// re-sent every 120 s, so keys come back).
pub const MAX_CACHED_TABLES: usize = 100_000;

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default, rename = "type")]
    ty: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    database: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    table: Option<CowStr<'a>>,
    /// u64 TSO, exact.
    #[serde(default, rename = "commitTs")]
    commit_ts: Option<u64>,
    #[serde(borrow, default)]
    sql: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    data: Option<Columns<'a>>,
    #[serde(borrow, default)]
    old: Option<Columns<'a>>,
    #[serde(default, rename = "handleKeyOnly")]
    handle_key_only: Option<bool>,
    #[serde(borrow, default, rename = "claimCheckLocation")]
    claim_check_location: Option<CowStr<'a>>,
    #[serde(borrow, default, rename = "tableSchema")]
    table_schema: Option<TableSchema<'a>>,
    #[serde(borrow, default, rename = "preTableSchema")]
    pre_table_schema: Option<TableSchema<'a>>,
    /// TiDB row checksum (integrity `correctness`), verified in `crate::checksum::simple`.
    #[serde(default)]
    checksum: Option<crate::checksum::simple::SimpleChecksum>,
}

#[derive(Deserialize)]
struct TableSchema<'a> {
    #[serde(borrow, default)]
    schema: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    table: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    indexes: Option<Vec<IndexSchema<'a>>>,
    /// Column names and types, for row-checksum verification.
    #[serde(borrow, default)]
    columns: Vec<crate::checksum::simple::SchemaColumn<'a>>,
}

#[derive(Deserialize)]
struct IndexSchema<'a> {
    #[serde(default)]
    unique: bool,
    #[serde(default)]
    primary: bool,
    #[serde(default)]
    nullable: bool,
    #[serde(borrow, default)]
    columns: Vec<CowStr<'a>>,
}

impl TableSchema<'_> {
    fn names(&self) -> (&str, &str) {
        (
            self.schema.as_ref().map_or("", CowStr::as_str),
            self.table.as_ref().map_or("", CowStr::as_str),
        )
    }

    /// The primary key; else the first unique index whose columns are all NOT NULL (TiDB's
    /// handle key for tables without a primary key).
    fn key_columns(&self) -> Vec<String> {
        let indexes = self.indexes.as_deref().unwrap_or_default();
        indexes
            .iter()
            .find(|i| i.primary)
            .or_else(|| indexes.iter().find(|i| i.unique && !i.nullable))
            .map(|i| i.columns.iter().map(|c| c.as_str().to_owned()).collect())
            .unwrap_or_default()
    }
}

/// Per-table key column names learned from BOOTSTRAP and DDL messages.
#[derive(Debug, Default)]
pub struct SchemaCache {
    tables: HashMap<String, HashMap<String, Vec<String>>>,
    len: usize,
    /// Column types for row-checksum verification.
    types: crate::checksum::simple::TypeCache,
}

impl SchemaCache {
    /// The key column names of `db.table`, if known.
    pub fn key_names(&self, db: &str, table: &str) -> Option<&[String]> {
        self.tables.get(db)?.get(table).map(Vec::as_slice)
    }

    /// Number of tables remembered.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn learn(&mut self, schema: &TableSchema<'_>) {
        let (db, table) = schema.names();
        if table.is_empty() {
            return;
        }
        self.types.learn(db, table, &schema.columns);
        if self.len >= MAX_CACHED_TABLES && self.key_names(db, table).is_none() {
            self.tables.clear();
            self.len = 0;
        }
        let old = self
            .tables
            .entry(db.to_owned())
            .or_default()
            .insert(table.to_owned(), schema.key_columns());
        if old.is_none() {
            self.len += 1;
        }
    }

    fn forget(&mut self, schema: &TableSchema<'_>) {
        let (db, table) = schema.names();
        self.types.forget(db, table);
        if let Some(tables) = self.tables.get_mut(db) {
            if tables.remove(table).is_some() {
                self.len = self.len.saturating_sub(1);
            }
            if tables.is_empty() {
                self.tables.remove(db);
            }
        }
    }

    /// Decode one simple-protocol value, updating the cache from BOOTSTRAP/DDL messages.
    pub fn decode<'a>(&mut self, value: &'a [u8]) -> Result<ChangeEvent<'a>, DecodeError> {
        let msg: Message<'a> = super::from_json(value).map_err(|e| json_err(P, "value", &e))?;
        let ty = msg.ty.ok_or_else(|| missing(P, "type"))?;
        let op = match ty.as_str() {
            "INSERT" => Some(RowOp::Insert),
            "UPDATE" => Some(RowOp::Update),
            "DELETE" => Some(RowOp::Delete),
            _ => None,
        };
        let kind = match (op, ty.as_str()) {
            (Some(_), _) => EventKind::Row,
            (None, "WATERMARK") => EventKind::Watermark,
            (None, "BOOTSTRAP") => EventKind::Bootstrap,
            (None, t) if super::DDL_TYPES.contains(&t) => EventKind::Ddl,
            (None, t) => return Err(unknown_value(P, "type", t)),
        };
        let mut ev = ChangeEvent::new(P, kind);
        match kind {
            EventKind::Watermark => {
                ev.commit_ts = Some(msg.commit_ts.ok_or_else(|| missing(P, "commitTs"))?);
            }
            EventKind::Bootstrap => {
                let schema = msg.table_schema.ok_or_else(|| missing(P, "tableSchema"))?;
                self.learn(&schema);
                ev.db = schema.schema.map_or(Cow::Borrowed(""), |s| s.0);
                ev.table = schema.table.map_or(Cow::Borrowed(""), |s| s.0);
            }
            EventKind::Ddl => {
                let ddl_type = canal_ddl_type(ty.as_str());
                ev.commit_ts = msg.commit_ts;
                match ddl_type {
                    "ERASE" => {
                        for s in [&msg.pre_table_schema, &msg.table_schema]
                            .into_iter()
                            .flatten()
                        {
                            self.forget(s);
                        }
                    }
                    _ => {
                        if ddl_type == "RENAME" {
                            if let Some(pre) = &msg.pre_table_schema {
                                self.forget(pre);
                            }
                        }
                        if let Some(s) = &msg.table_schema {
                            self.learn(s);
                        }
                    }
                }
                // `tableSchema` is absent for schema-level DDL such as DROP DATABASE.
                if let Some(s) = msg.table_schema.or(msg.pre_table_schema) {
                    ev.db = s.schema.map_or(Cow::Borrowed(""), |s| s.0);
                    ev.table = s.table.map_or(Cow::Borrowed(""), |s| s.0);
                }
                ev.ddl = Some(Ddl {
                    ddl_type: Cow::Borrowed(ddl_type),
                    query: msg.sql.map_or(Cow::Borrowed(""), |s| s.0),
                });
            }
            EventKind::Row => {
                let op = op.ok_or_else(|| missing(P, "type"))?;
                ev.commit_ts = Some(msg.commit_ts.ok_or_else(|| missing(P, "commitTs"))?);
                ev.db = msg.database.map_or(Cow::Borrowed(""), |s| s.0);
                ev.table = msg.table.map_or(Cow::Borrowed(""), |s| s.0);
                let (values, old) = match op {
                    RowOp::Insert => (msg.data.ok_or_else(|| missing(P, "data"))?, None),
                    RowOp::Update => (msg.data.ok_or_else(|| missing(P, "data"))?, msg.old),
                    RowOp::Delete => (msg.old.ok_or_else(|| missing(P, "old"))?, None),
                };
                let handle_key_only = msg.handle_key_only.unwrap_or(false);
                ev.keys = match self.key_names(&ev.db, &ev.table) {
                    Some(names) => pick(&values.0, names),
                    // A handle-key-only row holds nothing but the key columns.
                    None if handle_key_only => values.0.iter().cloned().collect(),
                    None => KeyColumns::None,
                };
                ev.op = Some(op);
                ev.values = values.0;
                ev.old_values = old.map(|c| c.0).unwrap_or_default();
                ev.partial = handle_key_only || msg.claim_check_location.is_some();
                ev.claim_check_location = msg.claim_check_location.map(|s| s.0);
                if let Some(ck) = msg.checksum {
                    let (db, table) = (&ev.db, &ev.table);
                    let checked = self
                        .types
                        .verify(db, table, &ck, op, &ev.values, &ev.old_values);
                    ev.checksum = Some(checked);
                }
            }
        }
        Ok(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::DecodeErrorReason;
    use crate::protocol::test_support::{cols, fixture, pairs};

    #[test]
    fn insert_without_bootstrap_has_no_keys() {
        let mut c = SchemaCache::default();
        let v = fixture("simple-insert-1.json");
        let ev = c.decode(&v).unwrap();
        assert_eq!((ev.kind, ev.op), (EventKind::Row, Some(RowOp::Insert)));
        assert_eq!((&*ev.db, &*ev.table), ("simple", "user"));
        assert_eq!(ev.commit_ts, Some(447984084414103554));
        assert!(ev.keys.is_empty());
        assert_eq!(
            cols(&ev.values),
            pairs(&[
                ("age", r#""25""#),
                ("id", r#""1""#),
                ("name", r#""John Doe""#),
                ("score", r#""90.5""#)
            ])
        );
        assert!(ev.values.iter().all(|c| c.value.is_borrowed()));
    }

    #[test]
    fn bootstrap_then_dml_gets_keys() {
        let mut c = SchemaCache::default();
        let boot = fixture("simple-bootstrap-1.json");
        let ev = c.decode(&boot).unwrap();
        assert_eq!(ev.kind, EventKind::Bootstrap);
        assert_eq!(
            (&*ev.db, &*ev.table, ev.commit_ts),
            ("simple", "new_user", None)
        );
        assert_eq!(
            c.key_names("simple", "new_user"),
            Some(&["id".to_owned()][..])
        );

        // The DDL fixture announces `simple.user` (ALTER ADD COLUMN) with PK `id`.
        let ddl = fixture("simple-ddl-1.json");
        let ev = c.decode(&ddl).unwrap();
        assert_eq!((ev.kind, ev.op), (EventKind::Ddl, None));
        assert_eq!((&*ev.db, &*ev.table), ("simple", "user"));
        assert_eq!(ev.commit_ts, Some(447987408682614795));
        let d = ev.ddl.unwrap();
        assert_eq!(d.ddl_type, "ALTER");
        assert_eq!(
            d.query,
            "ALTER TABLE `user` ADD COLUMN `createTime` TIMESTAMP"
        );

        let v = fixture("simple-insert-1.json");
        let ev = c.decode(&v).unwrap();
        assert_eq!(cols(&ev.keys), pairs(&[("id", r#""1""#)]));

        let v = fixture("simple-update-1.json");
        let ev = c.decode(&v).unwrap();
        assert_eq!(ev.op, Some(RowOp::Update));
        assert_eq!(ev.commit_ts, Some(447984099186180098));
        assert_eq!(cols(&ev.keys), pairs(&[("id", r#""1""#)]));
        assert_eq!(cols(&ev.values)[3], ("score".into(), r#""95""#.into()));
        assert_eq!(
            cols(&ev.old_values)[3],
            ("score".into(), r#""90.5""#.into())
        );

        let v = fixture("simple-delete-1.json");
        let ev = c.decode(&v).unwrap();
        assert_eq!(ev.op, Some(RowOp::Delete));
        assert_eq!(ev.commit_ts, Some(447984114259722243));
        assert_eq!(cols(&ev.keys), pairs(&[("id", r#""1""#)]));
        assert_eq!(cols(&ev.values)[3], ("score".into(), r#""95""#.into()));
        assert!(ev.old_values.is_empty());
    }

    #[test]
    fn watermark_fixture() {
        let mut c = SchemaCache::default();
        let v = fixture("simple-watermark-1.json");
        let ev = c.decode(&v).unwrap();
        assert_eq!(ev.kind, EventKind::Watermark);
        assert_eq!(ev.commit_ts, Some(447984124732375041));
        // TICDC.md §4: buildTs - (commitTs >> 18) = 1251 ms for this message.
        assert_eq!(1708923816911 - ev.commit_time_ms().unwrap(), 1251);
    }

    #[test]
    fn rename_and_drop_update_the_cache() {
        let mut c = SchemaCache::default();
        let schema = |t: &str, pk: &str| {
            format!(
                r#"{{"schema":"d","table":"{t}","indexes":[{{"name":"u","unique":true,"primary":false,"nullable":false,"columns":["{pk}"]}}]}}"#
            )
        };
        let create = format!(
            r#"{{"version":1,"type":"CREATE","sql":"create table a","commitTs":1,"buildTs":1,"tableSchema":{}}}"#,
            schema("a", "code")
        );
        c.decode(create.as_bytes()).unwrap();
        // Without a primary key, the non-null unique index is the key.
        assert_eq!(c.key_names("d", "a"), Some(&["code".to_owned()][..]));
        let rename = format!(
            r#"{{"version":1,"type":"RENAME","sql":"rename table a to b","commitTs":2,"buildTs":1,"tableSchema":{},"preTableSchema":{}}}"#,
            schema("b", "code"),
            schema("a", "code")
        );
        let ev = c.decode(rename.as_bytes()).unwrap();
        assert_eq!(
            (&*ev.table, ev.ddl.unwrap().ddl_type.as_ref()),
            ("b", "RENAME")
        );
        assert_eq!(c.key_names("d", "a"), None);
        assert!(c.key_names("d", "b").is_some());
        let drop = format!(
            r#"{{"version":1,"type":"ERASE","sql":"drop table b","commitTs":3,"buildTs":1,"preTableSchema":{}}}"#,
            schema("b", "code")
        );
        let ev = c.decode(drop.as_bytes()).unwrap();
        assert_eq!(ev.ddl.unwrap().ddl_type, "ERASE");
        assert!(c.is_empty());
        // Schema-level DDL has no table schema.
        let q = br#"{"version":1,"type":"QUERY","sql":"DROP DATABASE d","commitTs":4,"buildTs":1}"#;
        let ev = c.decode(q).unwrap();
        assert_eq!((&*ev.db, &*ev.table), ("", ""));
        assert_eq!(ev.ddl.unwrap().ddl_type, "QUERY");
    }

    #[test]
    fn handle_key_only_and_claim_check() {
        let mut c = SchemaCache::default();
        let v = br#"{"version":1,"database":"d","table":"t","type":"UPDATE","commitTs":9,"buildTs":1,"handleKeyOnly":true,"data":{"id":"1"},"old":{"id":"1"}}"#;
        let ev = c.decode(v).unwrap();
        assert!(ev.partial);
        assert_eq!(ev.op, Some(RowOp::Update));
        assert_eq!(cols(&ev.keys), pairs(&[("id", r#""1""#)]));
        let v = br#"{"version":1,"database":"d","table":"t","type":"DELETE","commitTs":9,"buildTs":1,"claimCheckLocation":"file:///tmp/x.json","handleKeyOnly":true,"old":{"id":"2"}}"#;
        let ev = c.decode(v).unwrap();
        assert!(ev.partial);
        assert_eq!(
            ev.claim_check_location.as_deref(),
            Some("file:///tmp/x.json")
        );
        // TIMESTAMP values are objects, kept raw.
        let v = br#"{"version":1,"database":"d","table":"t","type":"INSERT","commitTs":9,"buildTs":1,"data":{"ts":{"location":"UTC","value":"2024-01-01 00:00:00"}}}"#;
        let ev = c.decode(v).unwrap();
        assert_eq!(
            cols(&ev.values)[0].1,
            r#"{"location":"UTC","value":"2024-01-01 00:00:00"}"#
        );
    }

    #[test]
    fn errors() {
        let mut c = SchemaCache::default();
        let e = c
            .decode(br#"{"version":1,"type":"NOPE","commitTs":1}"#)
            .unwrap_err();
        assert_eq!(e.reason, DecodeErrorReason::UnknownType);
        assert_eq!(
            e.to_string(),
            r#"simple: field `type` has unknown value "NOPE" (unknown_type)"#
        );
        let e = c
            .decode(br#"{"version":1,"type":"INSERT","commitTs":1}"#)
            .unwrap_err();
        assert_eq!(e.reason, DecodeErrorReason::MissingField);
        let e = c
            .decode(br#"{"version":1,"type":"WATERMARK"}"#)
            .unwrap_err();
        assert_eq!(e.reason, DecodeErrorReason::MissingField);
        let e = c
            .decode(br#"{"version":1,"type":"BOOTSTRAP","commitTs":0}"#)
            .unwrap_err();
        assert_eq!(e.reason, DecodeErrorReason::MissingField);
        let e = c.decode(b"\x00avro").unwrap_err();
        assert_eq!(e.reason, DecodeErrorReason::InvalidJson);
    }

    #[test]
    fn cache_is_bounded() {
        let mut c = SchemaCache::default();
        for i in 0..(MAX_CACHED_TABLES + 5) {
            let v = format!(
                r#"{{"version":1,"type":"BOOTSTRAP","commitTs":0,"buildTs":1,"tableSchema":{{"schema":"d","table":"t{i}","indexes":[]}}}}"#
            );
            c.decode(v.as_bytes()).unwrap();
        }
        assert!(c.len() <= MAX_CACHED_TABLES);
    }
}
