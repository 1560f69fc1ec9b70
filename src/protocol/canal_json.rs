//! canal-json (`protocol=canal-json`): one JSON event per Kafka message.
//!
//! Sources: TF `pkg/sink/codec/canal/canal_json_message.go`, `canal_json_row_event_encoder.go`,
//! `canal_entry.go`; DOCS `ticdc/ticdc-canal-json.md`. Classification follows TF
//! `JSONMessage.messageType`: `isDdl` → DDL, else `type == "TIDB_WATERMARK"` → watermark, else
//! DML. The Kafka key is not used (TiCDC sends none).

use std::borrow::Cow;

use serde::Deserialize;

use super::json::{Columns, CowStr, pick};
use super::{
    DecodeError, DecodeErrorReason, canal_ddl_type, err, json_err, missing, unknown_value,
};
use crate::event::{ChangeEvent, Column, Ddl, EventKind, Protocol, RowOp};

const P: Protocol = Protocol::CanalJson;

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    database: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    table: Option<CowStr<'a>>,
    #[serde(borrow, default, rename = "pkNames")]
    pk_names: Option<Vec<CowStr<'a>>>,
    #[serde(default, rename = "isDdl")]
    is_ddl: Option<bool>,
    #[serde(borrow, default, rename = "type")]
    ty: Option<CowStr<'a>>,
    #[serde(default)]
    es: Option<i64>,
    #[serde(borrow, default)]
    sql: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    data: Option<Vec<Columns<'a>>>,
    #[serde(borrow, default)]
    old: Option<Vec<Columns<'a>>>,
    #[serde(borrow, default, rename = "_tidb")]
    tidb: Option<TidbExtension<'a>>,
}

/// `_tidb`, written only with `enable-tidb-extension=true`.
#[derive(Deserialize, Default)]
struct TidbExtension<'a> {
    /// u64 TSO: parsed as an integer, exact above 2^53.
    #[serde(default, rename = "commitTs")]
    commit_ts: Option<u64>,
    #[serde(default, rename = "watermarkTs")]
    watermark_ts: Option<u64>,
    #[serde(default, rename = "onlyHandleKey")]
    only_handle_key: Option<bool>,
    #[serde(borrow, default, rename = "claimCheckLocation")]
    claim_check_location: Option<CowStr<'a>>,
}

fn first_row(rows: Option<Vec<Columns<'_>>>) -> Option<Vec<Column<'_>>> {
    // TiCDC writes exactly one row per message (TICDC.md §1 "Batching").
    rows.and_then(|r| r.into_iter().next()).map(|c| c.0)
}

/// Decode one canal-json value.
pub fn decode(value: &[u8]) -> Result<ChangeEvent<'_>, DecodeError> {
    let msg: Message<'_> = super::from_json(value).map_err(|e| json_err(P, "value", &e))?;
    let ty = msg.ty.ok_or_else(|| missing(P, "type"))?;
    let tidb = msg.tidb.unwrap_or_default();

    let kind = if msg.is_ddl.unwrap_or(false) {
        EventKind::Ddl
    } else if ty.as_str() == "TIDB_WATERMARK" {
        EventKind::Watermark
    } else {
        EventKind::Row
    };
    let mut ev = ChangeEvent::new(P, kind);
    ev.db = msg.database.map_or(Cow::Borrowed(""), |s| s.0);
    ev.table = msg.table.map_or(Cow::Borrowed(""), |s| s.0);
    ev.commit_ts = match kind {
        EventKind::Watermark => tidb.watermark_ts,
        _ => tidb.commit_ts,
    };
    if ev.commit_ts.is_none() {
        // Without the TiDB extension `es` (= commitTs >> 18, TC `canal_json_encoder.go`
        // `convertToCanalTs`) is the only commit time. 0 means "no time" (a tiny TSO, as in
        // TiCDC's tests), not 1970: a lag computed from it would read 56 years.
        ev.commit_physical_ms = msg.es.filter(|&ms| ms > 0);
    }

    match kind {
        EventKind::Ddl => {
            ev.ddl = Some(Ddl {
                ddl_type: Cow::Borrowed(canal_ddl_type(ty.as_str())),
                query: msg.sql.map_or(Cow::Borrowed(""), |s| s.0),
            });
        }
        EventKind::Watermark | EventKind::Bootstrap => {}
        EventKind::Row => {
            let op = match ty.as_str() {
                "INSERT" => RowOp::Insert,
                "UPDATE" => RowOp::Update,
                "DELETE" => RowOp::Delete,
                other => return Err(unknown_value(P, "type", other)),
            };
            // INSERT/UPDATE: `data` is the new row; DELETE: `data` is the deleted row.
            let values = first_row(msg.data).ok_or_else(|| {
                err(
                    P,
                    DecodeErrorReason::MissingField,
                    format!("{} message has no row in `data`", ty.as_str()),
                )
            })?;
            if op == RowOp::Update {
                // Kept as sent: with `only-output-updated-columns` it holds only changed columns.
                ev.old_values = first_row(msg.old).unwrap_or_default();
            }
            if let Some(pk) = &msg.pk_names {
                ev.keys = pick(&values, pk);
            }
            ev.values = values;
            ev.op = Some(op);
            ev.partial =
                tidb.only_handle_key.unwrap_or(false) || tidb.claim_check_location.is_some();
            ev.claim_check_location = tidb.claim_check_location.map(|s| s.0);
        }
    }
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::test_support::{cols, fixture, pairs};

    #[test]
    fn insert_fixture() {
        let v = fixture("canal-json-insert-1.json");
        let ev = decode(&v).unwrap();
        assert_eq!((ev.kind, ev.op), (EventKind::Row, Some(RowOp::Insert)));
        assert_eq!((&*ev.db, &*ev.table), ("test", "employee"));
        // No TiDB extension: only `es`.
        assert_eq!(ev.commit_ts, None);
        assert_eq!(ev.commit_physical_ms, Some(1668067205238));
        assert_eq!(ev.commit_time_ms(), Some(1668067205238));
        assert_eq!(cols(&ev.keys), pairs(&[("id", r#""101""#)]));
        assert_eq!(
            cols(&ev.values),
            pairs(&[
                ("FirstName", r#""Bob""#),
                ("HireDate", r#""2014-06-04""#),
                ("LastName", r#""Smith""#),
                ("OfficeLocation", r#""New York""#),
                ("id", r#""101""#),
            ])
        );
        assert!(ev.old_values.is_empty());
        assert!(!ev.partial);
        // Zero-copy: names and values point into the message.
        assert!(matches!(ev.db, Cow::Borrowed(_)));
        assert!(
            ev.values
                .iter()
                .all(|c| matches!(c.value, Cow::Borrowed(_)))
        );
        assert!(ev.values.iter().all(|c| matches!(c.name, Cow::Borrowed(_))));
    }

    #[test]
    fn update_fixture() {
        let v = fixture("canal-json-update-1.json");
        let ev = decode(&v).unwrap();
        assert_eq!(ev.op, Some(RowOp::Update));
        assert_eq!(ev.commit_physical_ms, Some(1668067229137));
        assert_eq!(cols(&ev.keys), pairs(&[("id", r#""101""#)]));
        assert_eq!(
            cols(&ev.values)[3],
            ("OfficeLocation".into(), r#""Los Angeles""#.into())
        );
        assert_eq!(
            cols(&ev.old_values)[3],
            ("OfficeLocation".into(), r#""New York""#.into())
        );
        assert_eq!(ev.old_values.len(), 5);
    }

    #[test]
    fn delete_fixture() {
        let v = fixture("canal-json-delete-1.json");
        let ev = decode(&v).unwrap();
        assert_eq!(ev.op, Some(RowOp::Delete));
        assert_eq!((&*ev.db, &*ev.table), ("test", "employee"));
        assert_eq!(ev.commit_physical_ms, Some(1668067230388));
        // The deleted row is in `data`.
        assert_eq!(cols(&ev.keys), pairs(&[("id", r#""101""#)]));
        assert_eq!(
            cols(&ev.values)[1],
            ("HireDate".into(), r#""2015-10-08""#.into())
        );
        assert!(ev.old_values.is_empty());
    }

    #[test]
    fn ddl_fixture() {
        let v = fixture("canal-json-ddl-1.json");
        let ev = decode(&v).unwrap();
        assert_eq!((ev.kind, ev.op), (EventKind::Ddl, None));
        assert_eq!((&*ev.db, &*ev.table), ("test", ""));
        assert_eq!(ev.commit_ts, Some(429918007904436226));
        assert_eq!(ev.commit_physical_ms, None);
        let ddl = ev.ddl.unwrap();
        assert_eq!(ddl.ddl_type, "QUERY");
        assert_eq!(ddl.query, "drop database if exists test");
    }

    #[test]
    fn watermark_fixture_is_exact_above_2_pow_53() {
        let v = fixture("canal-json-watermark-1.json");
        let ev = decode(&v).unwrap();
        assert_eq!(ev.kind, EventKind::Watermark);
        assert_eq!(ev.commit_ts, Some(429918007904436226));
        assert_eq!(ev.commit_time_ms(), Some(1640007049196));
        assert_eq!((&*ev.db, &*ev.table), ("", ""));
        // Odd values above 2^53 are not representable in f64: they must survive.
        let odd = br#"{"isDdl":false,"type":"TIDB_WATERMARK","es":1,"_tidb":{"watermarkTs":18446744073709551615}}"#;
        assert_eq!(decode(odd).unwrap().commit_ts, Some(u64::MAX));
    }

    #[test]
    fn tidb_extension_dml_with_commit_ts() {
        let v = br#"{"id":0,"database":"app","table":"users","pkNames":["id","org"],"isDdl":false,"type":"INSERT","es":1,"ts":2,"sql":"","sqlType":{"id":-5},"mysqlType":{"id":"bigint"},"old":null,"data":[{"org":"7","id":"9007199254740993","name":null}],"_tidb":{"commitTs":429918007904436227}}"#;
        let ev = decode(v).unwrap();
        assert_eq!(ev.commit_ts, Some(429918007904436227));
        assert_eq!(ev.commit_physical_ms, None);
        // Keys in pkNames order; NULL stays a raw `null`.
        assert_eq!(
            cols(&ev.keys),
            pairs(&[("id", r#""9007199254740993""#), ("org", r#""7""#)])
        );
        assert_eq!(cols(&ev.values)[2], ("name".into(), "null".into()));
    }

    #[test]
    fn only_handle_key_and_claim_check_are_partial() {
        let ohk = br#"{"id":0,"database":"d","table":"t","pkNames":["id"],"isDdl":false,"type":"UPDATE","es":1,"data":[{"id":"1"}],"old":[{"id":"1"}],"_tidb":{"commitTs":5,"onlyHandleKey":true}}"#;
        let ev = decode(ohk).unwrap();
        assert_eq!(
            (ev.kind, ev.op, ev.partial),
            (EventKind::Row, Some(RowOp::Update), true)
        );
        assert_eq!(ev.claim_check_location, None);
        assert_eq!(cols(&ev.keys), pairs(&[("id", r#""1""#)]));

        let cc = br#"{"id":0,"database":"d","table":"t","pkNames":["id"],"isDdl":false,"type":"DELETE","es":1,"data":[{"id":"2"}],"old":null,"_tidb":{"commitTs":6,"claimCheckLocation":"s3:/claim-check-bucket/abc.json"}}"#;
        let ev = decode(cc).unwrap();
        assert_eq!((ev.op, ev.partial), (Some(RowOp::Delete), true));
        assert_eq!(
            ev.claim_check_location.as_deref(),
            Some("s3:/claim-check-bucket/abc.json")
        );
    }

    #[test]
    fn es_zero_is_no_time_and_type_decides_the_kind() {
        // TC `newJSONMessage4CheckpointEvent` with a small TSO writes `es` 0.
        let wm = br#"{"id":0,"database":"","table":"","pkNames":null,"isDdl":false,"type":"TIDB_WATERMARK","es":0,"ts":1,"sql":"","sqlType":null,"mysqlType":null,"data":null,"old":null,"_tidb":{"watermarkTs":3}}"#;
        let ev = decode(wm).unwrap();
        assert_eq!((ev.kind, ev.commit_ts), (EventKind::Watermark, Some(3)));
        let dml = br#"{"id":0,"database":"d","table":"t","pkNames":["a"],"isDdl":false,"type":"INSERT","es":0,"ts":1,"data":[{"a":"1"}],"old":null}"#;
        let ev = decode(dml).unwrap();
        assert_eq!((ev.commit_ts, ev.commit_physical_ms), (None, None));
        assert_eq!(ev.commit_time_ms(), None);
        // A DELETE that also carries a `watermarkTs` is a row: `type` decides, and its commit
        // time is `commitTs`, never the watermark.
        let del = br#"{"id":0,"database":"d","table":"t","pkNames":["a"],"isDdl":false,"type":"DELETE","es":1,"ts":1,"data":[{"a":"1"}],"old":null,"_tidb":{"commitTs":7,"watermarkTs":9}}"#;
        let ev = decode(del).unwrap();
        assert_eq!(
            (ev.kind, ev.op, ev.commit_ts),
            (EventKind::Row, Some(RowOp::Delete), Some(7))
        );
        // A watermark without `watermarkTs` (omitempty of 0) has no TSO and is still no row.
        let bare = br#"{"id":0,"isDdl":false,"type":"TIDB_WATERMARK","es":0,"ts":1,"_tidb":{}}"#;
        let ev = decode(bare).unwrap();
        assert_eq!(
            (ev.kind, ev.commit_ts, ev.commit_time_ms()),
            (EventKind::Watermark, None, None)
        );
    }

    #[test]
    fn rowkey_and_unknown_members_are_ignored() {
        // TC `output-row-key=true`: `_tidb.rowkey` (base64 of the TiKV row key).
        let v = br#"{"id":0,"database":"d","table":"t","pkNames":["a"],"isDdl":false,"type":"INSERT","es":1,"ts":1,"sql":"","data":[{"a":"1"}],"old":null,"_tidb":{"commitTs":5,"rowkey":"dIAAAAAAAABwX3KAAAAAAAAAAQ=="},"future":{"x":[1]}}"#;
        let ev = decode(v).unwrap();
        assert_eq!((ev.commit_ts, ev.partial), (Some(5), false));
    }

    #[test]
    fn ddl_types_are_bounded() {
        for (t, want) in [
            ("CREATE", "CREATE"),
            ("CINDEX", "CINDEX"),
            ("ERASE", "ERASE"),
            ("WHATEVER", "QUERY"),
        ] {
            let v = format!(
                r#"{{"database":"d","table":"t","isDdl":true,"type":"{t}","es":1,"sql":"x"}}"#
            );
            let ev = decode(v.as_bytes()).unwrap();
            assert_eq!(ev.ddl.unwrap().ddl_type, want);
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let e = decode(br#"{"database":"d","isDdl":false,"type":"FOO","es":1,"data":[{}]}"#)
            .unwrap_err();
        assert_eq!(e.reason, DecodeErrorReason::UnknownType);
        assert_eq!(
            e.to_string(),
            r#"canal-json: field `type` has unknown value "FOO" (unknown_type)"#
        );

        let e = decode(br#"{"database":"d","isDdl":false,"es":1}"#).unwrap_err();
        assert_eq!(e.reason, DecodeErrorReason::MissingField);
        assert!(e.detail.contains("`type`"), "{}", e.detail);

        let e = decode(br#"{"isDdl":false,"type":"INSERT","data":null}"#).unwrap_err();
        assert_eq!(e.reason, DecodeErrorReason::MissingField);

        let e = decode(br#"{"isDdl":false,"type":"INSERT","data":[]}"#).unwrap_err();
        assert_eq!(e.reason, DecodeErrorReason::MissingField);

        let e = decode(b"{\"isDdl\":fals").unwrap_err();
        assert_eq!(e.reason, DecodeErrorReason::InvalidJson);

        let e = decode(br#"{"isDdl":"yes","type":"INSERT"}"#).unwrap_err();
        assert_eq!(e.reason, DecodeErrorReason::MissingField);

        // Details are bounded even when the offending value is huge.
        let long = format!(r#"{{"isDdl":false,"type":"{}"}}"#, "X".repeat(10_000));
        let e = decode(long.as_bytes()).unwrap_err();
        assert!(e.detail.len() < 300, "{}", e.detail.len());
    }
}
