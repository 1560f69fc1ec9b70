//! simple (`protocol=simple`, JSON encoding), modelled on TF `pkg/sink/codec/simple/message.go`
//! and `encoder.go` and `tests/fixtures/ticdc/simple-*.json`. DML carries no key information: the
//! consumer learns each table's key from BOOTSTRAP (sent before a table's first row, then every
//! 120 s) and DDL (`tableSchema`, `preTableSchema`). Row values are strings, as TiCDC writes them.

use super::{Obj, json_str};
use crate::demo::generator::{ColumnDef, DdlChange, RowChange, SqlType, Table, TableSchema, Value};
use crate::event::RowOp;

/// `simple` protocol version.
const VERSION: u32 = 1;

fn data_type(c: &ColumnDef) -> String {
    let mut o = Obj::new();
    let (mysql_type, length) = match c.ty {
        SqlType::BigInt => ("bigint", 20),
        SqlType::Varchar(n) => ("varchar", n),
        SqlType::Decimal => ("decimal", 12),
        SqlType::Timestamp => ("timestamp", 19),
    };
    o.str("mysqlType", mysql_type);
    if matches!(c.ty, SqlType::Varchar(_)) {
        o.str("charset", "utf8mb4").str("collate", "utf8mb4_bin");
    } else {
        o.str("charset", "binary").str("collate", "binary");
    }
    o.num("length", length);
    if c.ty == SqlType::Decimal {
        o.num("decimal", 2);
    }
    o.finish()
}

fn column_default(table: Table, c: &ColumnDef) -> String {
    match (table, c.name) {
        (_, "created_at") => json_str("CURRENT_TIMESTAMP"),
        (Table::Orders, "status") => json_str("new"),
        _ => "null".into(),
    }
}

fn table_schema(s: &TableSchema) -> String {
    let cols: Vec<String> = s
        .table
        .columns()
        .iter()
        .map(|c| {
            Obj::new()
                .str("name", c.name)
                .raw("dataType", &data_type(c))
                .raw("nullable", "false")
                .raw("default", &column_default(s.table, c))
                .finish()
        })
        .collect();
    let index = |name: &str, unique: bool, primary: bool, cols: &[&str]| {
        let cols: Vec<String> = cols.iter().map(|c| json_str(c)).collect();
        Obj::new()
            .str("name", name)
            .raw("unique", if unique { "true" } else { "false" })
            .raw("primary", if primary { "true" } else { "false" })
            .raw("nullable", "false")
            .raw("columns", &format!("[{}]", cols.join(",")))
            .finish()
    };
    let mut indexes = vec![index("primary", true, true, &["id"])];
    indexes.extend(s.indexes.iter().map(|(n, u, c)| index(n, *u, false, c)));
    Obj::new()
        .str("schema", Table::DB)
        .str("table", s.table.name())
        .num("tableID", s.table.table_id())
        .num("version", s.version)
        .raw("columns", &format!("[{}]", cols.join(",")))
        .raw("indexes", &format!("[{}]", indexes.join(",")))
        .finish()
}

/// The `location` of TIMESTAMP values: TiCDC's `--tz` (the demo's timestamps are UTC).
const TIME_ZONE: &str = "UTC";

fn columns(table: Table, row: &[Value]) -> String {
    let mut o = Obj::new();
    for (c, v) in table.columns().iter().zip(row) {
        match v {
            // TIMESTAMP is an object in simple's JSON, in both architectures (TC
            // `simple/message.go` `encodeValue`, TF `encodeValue`: `{"location","value"}`).
            Value::Timestamp(t) => {
                o.raw(
                    c.name,
                    &Obj::new()
                        .str("location", TIME_ZONE)
                        .str("value", t)
                        .finish(),
                );
            }
            other => {
                o.str(c.name, &other.to_sql_string());
            }
        }
    }
    o.finish()
}

pub fn row(r: &RowChange, schema: &TableSchema, now_ms: u64) -> Vec<u8> {
    let ty = match r.op {
        RowOp::Insert => "INSERT",
        RowOp::Update => "UPDATE",
        RowOp::Delete => "DELETE",
    };
    let mut o = Obj::new();
    o.num("version", VERSION)
        .str("database", Table::DB)
        .str("table", r.table.name())
        .num("tableID", r.table.table_id())
        .str("type", ty)
        .num("commitTs", r.commit_ts)
        .num("buildTs", now_ms)
        .num("schemaVersion", schema.version);
    let cols = columns(r.table, &r.row);
    match (r.op, &r.old) {
        (RowOp::Delete, _) => o.raw("old", &cols),
        (RowOp::Update, Some(old)) => o.raw("data", &cols).raw("old", &columns(r.table, old)),
        _ => o.raw("data", &cols),
    };
    o.finish().into_bytes()
}

pub fn bootstrap(schema: &TableSchema, now_ms: u64) -> Vec<u8> {
    Obj::new()
        .num("version", VERSION)
        .str("type", "BOOTSTRAP")
        .num("commitTs", 0)
        .num("buildTs", now_ms)
        .raw("tableSchema", &table_schema(schema))
        .finish()
        .into_bytes()
}

pub fn ddl(d: &DdlChange, now_ms: u64) -> Vec<u8> {
    Obj::new()
        .num("version", VERSION)
        .str("type", d.kind.canal_type())
        .str("sql", &d.query)
        .num("commitTs", d.commit_ts)
        .num("buildTs", now_ms)
        .raw("tableSchema", &table_schema(&d.schema))
        .raw("preTableSchema", &table_schema(&d.pre_schema))
        .finish()
        .into_bytes()
}

pub fn watermark(ts: u64, now_ms: u64) -> Vec<u8> {
    Obj::new()
        .num("version", VERSION)
        .str("type", "WATERMARK")
        .num("commitTs", ts)
        .num("buildTs", now_ms)
        .finish()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::demo::encode::test_support::{
        assert_row_event_of, fixture_json, sample_changes, shape,
    };
    use crate::event::{EventKind, Protocol};
    use crate::protocol::{Compression, Decoder, ProtocolChoice};

    const OPAQUE: &[&str] = &["data", "old", "dataType"];

    fn decoder() -> Decoder {
        Decoder::new(ProtocolChoice::Fixed(Protocol::Simple), Compression::None)
    }

    #[test]
    fn rows_have_the_fixture_shape_and_get_keys_from_bootstrap() {
        let (g, rows, _) = sample_changes();
        let mut d = decoder();
        for t in Table::ALL {
            let b = bootstrap(g.schema(t), 1);
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            assert_eq!(
                shape(&v, OPAQUE),
                shape(&fixture_json("simple-bootstrap-1.json"), OPAQUE)
            );
            // dataType: the fixture's fields, plus `decimal` for DECIMAL columns.
            let want = shape(
                &fixture_json("simple-bootstrap-1.json")["tableSchema"]["columns"][0]["dataType"],
                &[],
            );
            for c in v["tableSchema"]["columns"].as_array().unwrap() {
                let mut got: BTreeSet<String> = shape(&c["dataType"], &[]);
                got.remove("decimal");
                assert_eq!(got, want);
            }
            assert_eq!(
                d.decode(None, Some(&b)).unwrap().into_strict().unwrap()[0].kind,
                EventKind::Bootstrap
            );
        }
        for r in &rows {
            let name = match r.op {
                RowOp::Insert => "insert",
                RowOp::Update => "update",
                RowOp::Delete => "delete",
            };
            let bytes = row(r, g.schema(r.table), 1);
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let fixture = fixture_json(&format!("simple-{name}-1.json"));
            assert_eq!(shape(&v, OPAQUE), shape(&fixture, OPAQUE), "{name}");
            let e = &d.decode(None, Some(&bytes)).unwrap().into_strict().unwrap()[0];
            assert_row_event_of(e, r);
            assert_eq!(e.keys.len(), 1, "key learned from BOOTSTRAP");
            assert_eq!(e.keys[0].value.get(), format!("\"{}\"", r.id()));
            // TIMESTAMP columns are `{"location","value"}` objects, as TiCDC writes them.
            let row = if r.op == RowOp::Delete {
                &v["old"]
            } else {
                &v["data"]
            };
            let created = &row["created_at"];
            assert_eq!(created["location"], "UTC", "{created}");
            assert!(created["value"].is_string(), "{created}");
        }
    }

    #[test]
    fn ddl_and_watermark_have_the_fixture_shape_and_round_trip() {
        let (_, _, ddls) = sample_changes();
        let mut d = decoder();
        let fixture = fixture_json("simple-ddl-1.json");
        for x in &ddls {
            let bytes = ddl(x, 1);
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(shape(&v, OPAQUE), shape(&fixture, OPAQUE));
            let e = &d.decode(None, Some(&bytes)).unwrap().into_strict().unwrap()[0];
            assert_eq!((e.kind, e.commit_ts), (EventKind::Ddl, Some(x.commit_ts)));
            assert_eq!(&*e.table, x.table.name());
            assert_eq!(
                e.ddl.as_ref().map(|d| d.ddl_type.to_string()),
                Some(x.kind.canal_type().to_owned())
            );
        }
        let bytes = watermark(5 << 18, 1);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            shape(&v, &[]),
            shape(&fixture_json("simple-watermark-1.json"), &[])
        );
        let e = &d.decode(None, Some(&bytes)).unwrap().into_strict().unwrap()[0];
        assert_eq!((e.kind, e.commit_ts), (EventKind::Watermark, Some(5 << 18)));
    }
}
