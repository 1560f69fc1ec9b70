//! canal-json with the TiDB extension (`enable-tidb-extension=true`, which the watermarks need):
//! modelled on TF `pkg/sink/codec/canal/canal_json_row_event_encoder.go`
//! (`newJSONMessageForDML`, `newJSONMessageForDDL`, `newJSONMessageForCheckpoint`) and the real
//! messages `tests/fixtures/ticdc/canal-json-*.json`. Every value is a string (or null), `old` of
//! an update holds the whole previous row (`only-output-updated-columns` is off by default),
//! `es` is the commit's physical time and `ts` the encode time, both in ms.

use super::{Obj, json_str};
use crate::demo::generator::{ColumnDef, DdlChange, RowChange, SqlType, Table};
use crate::event::RowOp;

/// Java SQL type codes (`java.sql.Types`) as canal writes them in `sqlType`.
fn sql_type(ty: SqlType) -> i32 {
    match ty {
        SqlType::BigInt => -5,
        SqlType::Varchar(_) => 12,
        SqlType::Decimal => 3,
        SqlType::Timestamp => 93,
    }
}

fn mysql_type(ty: SqlType) -> &'static str {
    match ty {
        SqlType::BigInt => "bigint",
        SqlType::Varchar(_) => "varchar",
        SqlType::Decimal => "decimal",
        SqlType::Timestamp => "timestamp",
    }
}

fn type_maps(cols: &[ColumnDef]) -> (String, String) {
    let (mut sql, mut mysql) = (Obj::new(), Obj::new());
    for c in cols {
        sql.num(c.name, sql_type(c.ty));
        mysql.str(c.name, mysql_type(c.ty));
    }
    (sql.finish(), mysql.finish())
}

fn row_object(table: Table, row: &[crate::demo::generator::Value]) -> String {
    let mut o = Obj::new();
    for (c, v) in table.columns().iter().zip(row) {
        o.str(c.name, &v.to_sql_string());
    }
    o.finish()
}

pub fn row(r: &RowChange, now_ms: u64) -> Vec<u8> {
    let ty = match r.op {
        RowOp::Insert => "INSERT",
        RowOp::Update => "UPDATE",
        RowOp::Delete => "DELETE",
    };
    let (sql_types, mysql_types) = type_maps(r.table.columns());
    let data = format!("[{}]", row_object(r.table, &r.row));
    let old = match &r.old {
        Some(old) => format!("[{}]", row_object(r.table, old)),
        None => "null".to_owned(),
    };
    Obj::new()
        .num("id", 0)
        .str("database", Table::DB)
        .str("table", r.table.name())
        .raw("pkNames", r#"["id"]"#)
        .raw("isDdl", "false")
        .str("type", ty)
        .num("es", r.commit_ts >> 18)
        .num("ts", now_ms)
        .str("sql", "")
        .raw("sqlType", &sql_types)
        .raw("mysqlType", &mysql_types)
        // `old` before `data`, as TiCDC's hand-written DML writer puts them (TF
        // `canal_json_row_event_encoder.go`, TC `canal_json_encoder.go` `newJSONMessageForDML`);
        // DDL and watermarks are `json.Marshal` of `JSONMessage`, field order `data`, `old`.
        .raw("old", &old)
        .raw("data", &data)
        .raw("_tidb", &format!(r#"{{"commitTs":{}}}"#, r.commit_ts))
        .finish()
        .into_bytes()
}

pub fn ddl(d: &DdlChange, now_ms: u64) -> Vec<u8> {
    Obj::new()
        .num("id", 0)
        .str("database", Table::DB)
        .str("table", d.table.name())
        .null("pkNames")
        .raw("isDdl", "true")
        .str("type", d.kind.canal_type())
        .num("es", d.commit_ts >> 18)
        .num("ts", now_ms)
        .raw("sql", &json_str(&d.query))
        .null("sqlType")
        .null("mysqlType")
        .null("data")
        .null("old")
        .raw("_tidb", &format!(r#"{{"commitTs":{}}}"#, d.commit_ts))
        .finish()
        .into_bytes()
}

pub fn watermark(ts: u64, now_ms: u64) -> Vec<u8> {
    Obj::new()
        .num("id", 0)
        .str("database", "")
        .str("table", "")
        .null("pkNames")
        .raw("isDdl", "false")
        .str("type", "TIDB_WATERMARK")
        .num("es", ts >> 18)
        .num("ts", now_ms)
        .str("sql", "")
        .null("sqlType")
        .null("mysqlType")
        .null("data")
        .null("old")
        .raw("_tidb", &format!(r#"{{"watermarkTs":{ts}}}"#))
        .finish()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::encode::test_support::{
        assert_row_event_of, fixture_json, sample_changes, shape,
    };
    use crate::event::{EventKind, Protocol};
    use crate::protocol::{Compression, Decoder, ProtocolChoice};

    const OPAQUE: &[&str] = &["sqlType", "mysqlType", "data", "old"];

    fn decoder() -> Decoder {
        Decoder::new(
            ProtocolChoice::Fixed(Protocol::CanalJson),
            Compression::None,
        )
    }

    #[test]
    fn rows_have_the_fixture_shape_and_round_trip() {
        let (_, rows, _) = sample_changes();
        let mut d = decoder();
        for r in &rows {
            let bytes = row(r, 1);
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let name = match r.op {
                RowOp::Insert => "insert",
                RowOp::Update => "update",
                RowOp::Delete => "delete",
            };
            // The fixtures were taken without the TiDB extension: ours adds `_tidb.commitTs`.
            let mut want = shape(&fixture_json(&format!("canal-json-{name}-1.json")), OPAQUE);
            want.extend(["_tidb".to_owned(), "_tidb.commitTs".to_owned()]);
            assert_eq!(shape(&v, OPAQUE), want, "{name}");
            // Same column set in data, old, sqlType and mysqlType, as TiCDC writes them.
            let names = |k: &str| -> Vec<String> {
                let o = if v[k].is_array() { &v[k][0] } else { &v[k] };
                o.as_object().unwrap().keys().cloned().collect()
            };
            assert_eq!(names("data"), names("sqlType"));
            assert_eq!(names("data"), names("mysqlType"));
            if r.op == RowOp::Update {
                assert_eq!(names("data"), names("old"));
            }

            let evs = d.decode(None, Some(&bytes)).unwrap().into_strict().unwrap();
            assert_eq!(evs.len(), 1);
            let e = &evs[0];
            assert_row_event_of(e, r);
            assert_eq!(e.keys.len(), 1);
            assert_eq!(e.keys[0].value.get(), format!("\"{}\"", r.id()));
            assert_eq!(e.old_values.is_empty(), r.op != RowOp::Update);
            // Member order as TiCDC writes a DML message: `old`, then `data`, then `_tidb`.
            let text = String::from_utf8(bytes).unwrap();
            let at = |m: &str| text.find(m).unwrap_or_else(|| panic!("{m} in {text}"));
            assert!(at(",\"old\":") < at(",\"data\":"), "{text}");
            assert!(at(",\"data\":") < at(",\"_tidb\":"), "{text}");
        }
    }

    #[test]
    fn ddl_and_watermark_have_the_fixture_shape_and_round_trip() {
        let (_, _, ddls) = sample_changes();
        let mut d = decoder();
        let want = shape(&fixture_json("canal-json-ddl-1.json"), &[]);
        for x in &ddls {
            let bytes = ddl(x, 1);
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(shape(&v, &[]), want);
            let e = &d.decode(None, Some(&bytes)).unwrap().into_strict().unwrap()[0];
            assert_eq!(e.kind, EventKind::Ddl);
            assert_eq!(&*e.table, x.table.name());
            assert_eq!(e.commit_ts, Some(x.commit_ts));
            let ddl = e.ddl.as_ref().unwrap();
            assert_eq!(
                (&*ddl.ddl_type, &*ddl.query),
                (x.kind.canal_type(), &*x.query)
            );
        }
        let bytes = watermark(429918007904436226, 1);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let fixture = fixture_json("canal-json-watermark-1.json");
        assert_eq!(shape(&v, &[]), shape(&fixture, &[]));
        assert_eq!(
            v["es"], fixture["es"],
            "es is the watermark's physical time"
        );
        let e = &d.decode(None, Some(&bytes)).unwrap().into_strict().unwrap()[0];
        assert_eq!(
            (e.kind, e.commit_ts),
            (EventKind::Watermark, Some(429918007904436226))
        );
    }
}
