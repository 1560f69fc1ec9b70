//! debezium (`protocol=debezium`), as TiCDC writes it with `debezium-disable-schema=true`:
//! `{"payload":{...}}` without the `schema` half, key `{"payload":{<handle columns>}}`.
//! Modelled on TF `pkg/sink/codec/debezium/codec.go` (`EncodeKey`, `EncodeValue`, `EncodeDDLEvent`,
//! `EncodeCheckpointEvent`) and `tests/fixtures/ticdc/debezium-*`. `debezium-output-old-value`
//! is on by default, so an update carries `before`. Values as `writeDebeziumFieldValue` writes
//! them: BIGINT a number, DECIMAL a float, TIMESTAMP an `io.debezium.time.ZonedTimestamp` string
//! in UTC, VARCHAR a string.

use super::{Obj, json_str};
use crate::demo::generator::{DdlChange, DdlKind, RowChange, SqlType, Table, Value};
use crate::event::RowOp;

/// `source.name` and `source.cluster_id`: TiCDC's cluster id (its default is `default`).
const CLUSTER_ID: &str = "default";

fn value_json(ty: SqlType, v: &Value) -> String {
    match (ty, v) {
        (_, Value::Int(i)) => i.to_string(),
        (_, Value::Cents(c)) => format!("{}", *c as f64 / 100.0),
        (SqlType::Timestamp, Value::Timestamp(t)) => json_str(&format!("{}Z", t.replace(' ', "T"))),
        (_, other) => json_str(&other.to_sql_string()),
    }
}

fn columns(table: Table, row: &[Value]) -> String {
    let mut o = Obj::new();
    for (c, v) in table.columns().iter().zip(row) {
        o.raw(c.name, &value_json(c.ty, v));
    }
    o.finish()
}

fn source(db: &str, table: &str, commit_ts: u64) -> String {
    Obj::new()
        .str("version", "2.4.0.Final")
        .str("connector", "TiCDC")
        .str("name", CLUSTER_ID)
        .num("ts_ms", commit_ts >> 18)
        .str("snapshot", "false")
        .str("db", db)
        .str("table", table)
        .num("server_id", 0)
        .null("gtid")
        .str("file", "")
        .num("pos", 0)
        .num("row", 0)
        .num("thread", 0)
        .null("query")
        .num("commit_ts", commit_ts)
        .str("cluster_id", CLUSTER_ID)
        .finish()
}

fn envelope(payload: &str) -> Vec<u8> {
    Obj::new().raw("payload", payload).finish().into_bytes()
}

/// The Kafka key: the handle-key columns (`id`).
pub fn row_key(r: &RowChange) -> Vec<u8> {
    envelope(&Obj::new().num("id", r.id()).finish())
}

pub fn row(r: &RowChange, now_ms: u64) -> Vec<u8> {
    let cols = columns(r.table, &r.row);
    let mut p = Obj::new();
    let (op, before, after) = match r.op {
        RowOp::Insert => ("c", "null".to_owned(), cols),
        RowOp::Update => (
            "u",
            r.old
                .as_ref()
                .map_or("null".to_owned(), |o| columns(r.table, o)),
            cols,
        ),
        RowOp::Delete => ("d", cols, "null".to_owned()),
    };
    // Member order of TC `codec.go` `EncodeValue` (TF's is the same): `source`, `ts_ms`,
    // `transaction`, `op`, then insert `before` (null) `after`, delete `after` (null) `before`,
    // update `before` `after`.
    p.raw("source", &source(Table::DB, r.table.name(), r.commit_ts))
        .num("ts_ms", now_ms)
        .null("transaction")
        .str("op", op);
    if r.op == RowOp::Delete {
        p.raw("after", &after).raw("before", &before);
    } else {
        p.raw("before", &before).raw("after", &after);
    }
    envelope(&p.finish())
}

pub fn ddl_key() -> Vec<u8> {
    envelope(&Obj::new().str("databaseName", Table::DB).finish())
}

/// (jdbcType, typeName, typeExpression). TC `debezium/helper.go` `getExpressionAndName`
/// returns the bare type name for VARCHAR and DECIMAL (no length or scale).
fn jdbc_type(ty: SqlType) -> (i32, &'static str, &'static str) {
    match ty {
        SqlType::BigInt => (-5, "BIGINT", "BIGINT"),
        SqlType::Varchar(_) => (12, "VARCHAR", "VARCHAR"),
        SqlType::Decimal => (3, "DECIMAL", "DECIMAL"),
        SqlType::Timestamp => (2014, "TIMESTAMP", "TIMESTAMP"),
    }
}

/// `defaultValueExpression` as TC `codec.go` `EncodeDDLEvent` writes the schema's defaults
/// (`CURRENT_TIMESTAMP` becomes `1970-01-01 00:00:00`; `sql/schema.sql`).
fn default_expression(table: Table, column: &str) -> String {
    match (table, column) {
        (_, "created_at") => json_str("1970-01-01 00:00:00"),
        (Table::Orders, "status") => json_str("new"),
        _ => "null".into(),
    }
}

fn table_change(d: &DdlChange) -> String {
    let cols: Vec<String> = d
        .table
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (jdbc, name, expr) = jdbc_type(c.ty);
            // TC `helper.go` `getLen`/`getScale`: BIGINT at its default width has no length,
            // TIMESTAMP's length is its fractional digits (0).
            let (length, scale) = match c.ty {
                SqlType::Varchar(n) => (n.to_string(), "null".to_owned()),
                SqlType::Decimal => ("12".into(), "2".into()),
                SqlType::Timestamp => ("0".into(), "null".into()),
                SqlType::BigInt => ("null".into(), "null".into()),
            };
            let charset = match c.ty {
                SqlType::Varchar(_) => json_str("utf8mb4"),
                _ => "null".into(),
            };
            Obj::new()
                .str("name", c.name)
                .num("jdbcType", jdbc)
                .null("nativeType")
                .null("comment")
                .raw(
                    "defaultValueExpression",
                    &default_expression(d.table, c.name),
                )
                .null("enumValues")
                .str("typeName", name)
                .str("typeExpression", expr)
                .raw("charsetName", &charset)
                .raw("length", &length)
                .raw("scale", &scale)
                .num("position", i + 1)
                .raw("optional", "false")
                .raw("autoIncremented", "false")
                .raw("generated", "false")
                .finish()
        })
        .collect();
    let table = Obj::new()
        .str("defaultCharsetName", "utf8mb4")
        .raw("primaryKeyColumnNames", r#"["id"]"#)
        .raw("columns", &format!("[{}]", cols.join(",")))
        .null("comment")
        .finish();
    // TC `codec.go` `EncodeDDLEvent`: add index and table comment are ALTER, drop index DROP.
    let change_type = match d.kind {
        DdlKind::DropIndex => "DROP",
        DdlKind::AddIndex | DdlKind::TableComment => "ALTER",
    };
    let change = Obj::new()
        .str("type", change_type)
        .str("id", &format!("\"{}\".\"{}\"", Table::DB, d.table.name()))
        .raw("table", &table)
        .finish();
    format!("[{change}]")
}

pub fn ddl(d: &DdlChange, now_ms: u64) -> Vec<u8> {
    let p = Obj::new()
        .raw("source", &source(Table::DB, d.table.name(), d.commit_ts))
        .num("ts_ms", now_ms)
        .str("databaseName", Table::DB)
        .null("schemaName")
        .str("ddl", &d.query)
        .raw("tableChanges", &table_change(d))
        .finish();
    envelope(&p)
}

pub fn watermark_key() -> Vec<u8> {
    envelope("{}")
}

pub fn watermark(ts: u64, now_ms: u64) -> Vec<u8> {
    // TC `codec.go` `EncodeCheckpointEvent`: `source`, `ts_ms`, `transaction`, `op`.
    let p = Obj::new()
        .raw("source", &source("", "", ts))
        .num("ts_ms", now_ms)
        .null("transaction")
        .str("op", "m")
        .finish();
    envelope(&p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::encode::test_support::{
        assert_row_event_of, fixture_json, sample_changes, shape,
    };
    use crate::event::{EventKind, Protocol};
    use crate::protocol::{Compression, Decoder, ProtocolChoice};

    const OPAQUE: &[&str] = &["before", "after"];

    fn decoder() -> Decoder {
        Decoder::new(ProtocolChoice::Fixed(Protocol::Debezium), Compression::None)
    }

    fn payload_shape(v: &serde_json::Value) -> std::collections::BTreeSet<String> {
        shape(&v["payload"], OPAQUE)
    }

    #[test]
    fn rows_have_the_fixture_shape_and_round_trip() {
        let (_, rows, _) = sample_changes();
        let mut d = decoder();
        for r in &rows {
            let name = match r.op {
                RowOp::Insert => "insert",
                RowOp::Update => "update",
                RowOp::Delete => "delete",
            };
            let (k, v) = (row_key(r), row(r, 1));
            let value: serde_json::Value = serde_json::from_slice(&v).unwrap();
            let fixture = fixture_json(&format!("debezium-{name}-1.json"));
            assert_eq!(shape(&value, OPAQUE), shape(&fixture, OPAQUE), "{name}");
            let key: serde_json::Value = serde_json::from_slice(&k).unwrap();
            let fixture_key = fixture_json(&format!("debezium-{name}-1.key.json"));
            assert_eq!(
                key.as_object().unwrap().keys().collect::<Vec<_>>(),
                fixture_key.as_object().unwrap().keys().collect::<Vec<_>>()
            );
            if r.table == Table::Orders {
                assert!(
                    value["payload"][if r.op == RowOp::Delete {
                        "before"
                    } else {
                        "after"
                    }]["amount"]
                        .is_number()
                );
            }

            let e = &d.decode(Some(&k), Some(&v)).unwrap().into_strict().unwrap()[0];
            assert_row_event_of(e, r);
            assert_eq!(e.keys.len(), 1);
            assert_eq!(e.keys[0].value.get(), r.id().to_string().as_str());
            // Member order as TC `codec.go` `EncodeValue` writes the payload.
            let text = String::from_utf8(v).unwrap();
            let at = |m: &str| text.find(m).unwrap_or_else(|| panic!("{m} in {text}"));
            let order: &[&str] = match r.op {
                RowOp::Delete => &[
                    "\"source\":",
                    "\"transaction\":",
                    "\"op\":",
                    "\"after\":",
                    "\"before\":",
                ],
                _ => &[
                    "\"source\":",
                    "\"transaction\":",
                    "\"op\":",
                    "\"before\":",
                    "\"after\":",
                ],
            };
            assert!(order.windows(2).all(|w| at(w[0]) < at(w[1])), "{text}");
        }
    }

    #[test]
    fn ddl_and_watermark_have_the_fixture_payload_shape_and_round_trip() {
        let (_, _, ddls) = sample_changes();
        let mut d = decoder();
        let fixture = fixture_json("debezium-ddl-1.json");
        for x in &ddls {
            let (k, v) = (ddl_key(), ddl(x, 1));
            let value: serde_json::Value = serde_json::from_slice(&v).unwrap();
            assert_eq!(payload_shape(&value), payload_shape(&fixture));
            let key: serde_json::Value = serde_json::from_slice(&k).unwrap();
            assert_eq!(
                shape(&key["payload"], &[]),
                shape(&fixture_json("debezium-ddl-1.key.json")["payload"], &[])
            );
            let e = &d.decode(Some(&k), Some(&v)).unwrap().into_strict().unwrap()[0];
            assert_eq!((e.kind, e.commit_ts), (EventKind::Ddl, Some(x.commit_ts)));
            assert_eq!(&*e.table, x.table.name());
            let change = &value["payload"]["tableChanges"][0];
            let want = if x.kind == DdlKind::DropIndex {
                "DROP"
            } else {
                "ALTER"
            };
            assert_eq!(change["type"], want, "{}", x.query);
            for c in change["table"]["columns"].as_array().unwrap() {
                assert!(!c["typeExpression"].as_str().unwrap().contains('('), "{c}");
            }
            assert_eq!(
                e.ddl.as_ref().map(|d| d.ddl_type.to_string()),
                Some(x.kind.canal_type().to_owned()),
                "{}",
                x.query
            );
        }
        let v = watermark(7 << 18, 1);
        let value: serde_json::Value = serde_json::from_slice(&v).unwrap();
        assert_eq!(
            payload_shape(&value),
            payload_shape(&fixture_json("debezium-watermark-1.json"))
        );
        let k = watermark_key();
        let e = &d.decode(Some(&k), Some(&v)).unwrap().into_strict().unwrap()[0];
        assert_eq!((e.kind, e.commit_ts), (EventKind::Watermark, Some(7 << 18)));
    }
}
