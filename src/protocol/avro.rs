//! avro (`protocol=avro`): Confluent-framed Avro with a schema registry, one table per topic.
//!
//! Wire format (TF = pingcap/tiflow release-8.5 d94457526fcccdb236c14d7fa53e3ca3a9f9914e,
//! `pkg/sink/codec/avro/{avro.go,decoder.go,confluent_schema_registry.go}`; full reading in
//! `/work/shared/docs/TICDC-AVRO.md` §1):
//! - key and value: `0x00`, schema id (i32 big-endian), one Avro binary datum;
//! - INSERT/UPDATE: key record + value record (row columns, then `_tidb_op` `c`/`u`,
//!   `_tidb_commit_ts`, `_tidb_commit_physical_time` with `enable-tidb-extension`, then
//!   `_tidb_row_level_checksum`, `_tidb_corrupted`, `_tidb_checksum_version` with integrity on);
//! - DELETE: key only, value null (a Kafka tombstone): only the handle-key columns are known;
//!   new-architecture TiCDC ≥ v8.5.7 with `avro-enable-watermark` sends `0x03` + BE commitTs;
//! - with `avro-enable-watermark` (test-only): DDL `0x01` + JSON, watermark `0x02` + BE u64.
//!
//! The TiDB column types live in each field's `connect.parameters` (`tidb_type`, `allowed`),
//! which apache-avro drops when it parses a schema, so [`SchemaStore`] keeps what it needs from
//! the raw schema JSON next to the parsed schema. Schemas come from the registry by id
//! (`crate::schema_registry`): decoding is sync and pure, so an unknown id is an error
//! ([`DecodeErrorReason::SchemaUnavailable`]) that tells the caller which id to fetch before it
//! decodes the same message again ([`AvroDecoder::missing_schema`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use apache_avro::types::Value as Avro;
use base64::Engine;
use serde_json::value::RawValue;

use super::{DecodeError, DecodeErrorReason, err};
use crate::checksum::{self, ColumnKind, RowChecksum, TicdcTimeZone, Value as CkValue};
use crate::event::{ChangeEvent, Column, ColumnValue, Ddl, EventKind, Protocol, RowOp};

const P: Protocol = Protocol::Avro;

/// Confluent wire-format magic byte.
pub const MAGIC: u8 = 0x00;
/// Value prefixes of TiCDC's pseudo-messages (TF `avro.go:946-951`, TC `helper.go:48-54`).
pub const DDL_PREFIX: u8 = 0x01;
pub const WATERMARK_PREFIX: u8 = 0x02;
pub const DELETE_MARKER_PREFIX: u8 = 0x03;

/// Schemas kept at most; a full store starts over (ids are re-fetched on demand).
pub const MAX_CACHED_SCHEMAS: usize = 10_000;

/// The schema id of a Confluent-framed message, and its Avro body. Id 0 is never assigned
/// (TiCDC rejects it, TF `confluent_schema_registry.go:57-65`), which is also what keeps an
/// open-protocol key (`00 00000000 000001…`) from ever looking framed.
pub fn framed(bytes: &[u8]) -> Option<(u32, &[u8])> {
    match bytes {
        [MAGIC, a, b, c, d, body @ ..] => {
            let id = u32::from_be_bytes([*a, *b, *c, *d]);
            (id != 0).then_some((id, body))
        }
        _ => None,
    }
}

/// Whether a message is TiCDC Avro (used by `--protocol auto`, and only when a schema registry
/// is configured). JSON never starts with a byte below 0x09; open-protocol keys have id bytes 0.
pub fn looks_like_avro(key: Option<&[u8]>, value: Option<&[u8]>) -> bool {
    let key_framed = key.is_some_and(|k| framed(k).is_some());
    match value {
        None | Some([]) => key_framed,
        Some(v) if framed(v).is_some() => true,
        Some([DDL_PREFIX, b'{', ..]) => key.is_none_or(<[u8]>::is_empty),
        Some([WATERMARK_PREFIX, ..]) | Some([DELETE_MARKER_PREFIX, ..]) => {
            v_len_is(value, 9) && (key.is_none_or(<[u8]>::is_empty) || key_framed)
        }
        _ => false,
    }
}

fn v_len_is(value: Option<&[u8]>, len: usize) -> bool {
    value.is_some_and(|v| v.len() == len)
}

/// A decoded Avro record: `(field name, value)` in schema order.
type RecordFields = Vec<(String, Avro)>;

/// What the decoder needs from one field of a TiCDC record schema.
#[derive(Debug, Clone)]
pub struct FieldInfo {
    pub name: String,
    /// `connect.parameters.tidb_type`, e.g. `INT`, `BIGINT UNSIGNED`, `TIMESTAMP`.
    pub tidb_type: Option<String>,
    /// How the checksum encodes it; `None` for an unknown `tidb_type`.
    pub kind: Option<ColumnKind>,
    /// `scale` of a precise-mode decimal (`bytes` + `logicalType: decimal`).
    pub decimal_scale: Option<u32>,
}

/// A registry schema: parsed for apache-avro, plus the TiDB facts from the raw JSON.
#[derive(Debug)]
pub struct CachedSchema {
    pub avro: apache_avro::Schema,
    /// The raw JSON the registry returned (kept: `connect.parameters` live only there).
    pub raw: String,
    /// Database: the namespace after its first `.` (TF `decoder.go:242-245`).
    pub db: String,
    /// Table: the record name. Both are TiCDC-sanitized names.
    pub table: String,
    pub fields: Vec<FieldInfo>,
    /// Number of row columns: the fields before `_tidb_op` (TF `decoder.go:191-196`).
    pub row_columns: usize,
}

impl CachedSchema {
    /// Parse a registry schema (the string in `{"schema": "..."}`).
    pub fn parse(raw: &str) -> Result<CachedSchema, String> {
        let avro =
            apache_avro::Schema::parse_str(raw).map_err(|e| format!("not an Avro schema: {e}"))?;
        let json: serde_json::Value =
            serde_json::from_str(raw).map_err(|e| format!("schema is not JSON: {e}"))?;
        if json.get("type").and_then(|t| t.as_str()) != Some("record") {
            return Err("schema is not an Avro record".into());
        }
        let table = json["name"].as_str().unwrap_or("").to_owned();
        let namespace = json["namespace"].as_str().unwrap_or("");
        let db = namespace
            .split_once('.')
            .map_or("", |(_, db)| db)
            .to_owned();
        let fields: Vec<FieldInfo> = json["fields"]
            .as_array()
            .ok_or("record has no fields array")?
            .iter()
            .map(field_info)
            .collect();
        let row_columns = fields
            .iter()
            .position(|f| f.name == "_tidb_op")
            .unwrap_or(fields.len());
        Ok(CachedSchema {
            avro,
            raw: raw.to_owned(),
            db,
            table,
            fields,
            row_columns,
        })
    }
}

fn field_info(field: &serde_json::Value) -> FieldInfo {
    let name = field["name"].as_str().unwrap_or("").to_owned();
    // A nullable column is a union with "null": `["null",T]` or `[T,"null"]` (TF
    // `avro.go:554-571`); take the non-null branch.
    let ty = match &field["type"] {
        serde_json::Value::Array(branches) => branches
            .iter()
            .find(|b| b.as_str() != Some("null"))
            .unwrap_or(&serde_json::Value::Null),
        t => t,
    };
    let params = &ty["connect.parameters"];
    let tidb_type = params["tidb_type"].as_str().map(str::to_owned);
    let kind = tidb_type
        .as_deref()
        .and_then(|t| ColumnKind::from_avro_tidb_type(t, params["allowed"].as_str()));
    let decimal_scale = (ty["logicalType"].as_str() == Some("decimal"))
        .then(|| ty["scale"].as_u64().unwrap_or(0) as u32);
    FieldInfo {
        name,
        tidb_type,
        kind,
        decimal_scale,
    }
}

/// Schemas by registry id, shared by the decoder (reads) and the consume loop (fills misses).
#[derive(Debug, Default)]
pub struct SchemaStore {
    schemas: RwLock<HashMap<u32, Arc<CachedSchema>>>,
}

impl SchemaStore {
    pub fn get(&self, id: u32) -> Option<Arc<CachedSchema>> {
        self.schemas
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Parse and remember the registry's schema text for `id`.
    pub fn insert(&self, id: u32, raw: &str) -> Result<(), String> {
        let parsed = Arc::new(CachedSchema::parse(raw).map_err(|e| format!("schema {id}: {e}"))?);
        let mut map = self.schemas.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_CACHED_SCHEMAS && !map.contains_key(&id) {
            map.clear();
        }
        map.insert(id, parsed);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.schemas.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Decodes TiCDC Avro messages against a [`SchemaStore`].
#[derive(Debug, Clone)]
pub struct AvroDecoder {
    store: Arc<SchemaStore>,
    tz: TicdcTimeZone,
    missing: Option<u32>,
}

impl AvroDecoder {
    pub fn new(store: Arc<SchemaStore>, tz: TicdcTimeZone) -> Self {
        // apache-avro trusts length prefixes up to this many bytes per allocation (default
        // 512 MiB); a message is at most a few MiB, so a hostile length fails fast instead.
        apache_avro::max_allocation_bytes(64 << 20);
        AvroDecoder {
            store,
            tz,
            missing: None,
        }
    }

    pub fn store(&self) -> &Arc<SchemaStore> {
        &self.store
    }

    pub fn time_zone(&self) -> TicdcTimeZone {
        self.tz
    }

    /// The schema id the last [`DecodeErrorReason::SchemaUnavailable`] error was about.
    pub fn missing_schema(&self) -> Option<u32> {
        self.missing
    }

    /// Decode one Kafka message (always one event: Avro has no batches).
    pub fn decode(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<ChangeEvent<'static>, DecodeError> {
        self.missing = None;
        let key = key.filter(|k| !k.is_empty());
        match value.filter(|v| !v.is_empty()) {
            None => {
                let key = key.ok_or_else(|| {
                    err(
                        P,
                        DecodeErrorReason::EmptyValue,
                        "message has neither key nor value",
                    )
                })?;
                self.delete(key, None)
            }
            Some([DDL_PREFIX, json @ ..]) if key.is_none() => ddl(json),
            Some([WATERMARK_PREFIX, ts @ ..]) => {
                let mut ev = ChangeEvent::new(P, EventKind::Watermark);
                ev.commit_ts = Some(be_u64(ts, "watermark")?);
                Ok(ev)
            }
            Some([DELETE_MARKER_PREFIX, ts @ ..]) => {
                let key = key.ok_or_else(|| missing_key("delete marker"))?;
                self.delete(key, Some(be_u64(ts, "delete marker")?))
            }
            Some(v) => self.row(key, v),
        }
    }

    fn schema(&mut self, id: u32) -> Result<Arc<CachedSchema>, DecodeError> {
        self.store.get(id).ok_or_else(|| {
            self.missing = Some(id);
            err(
                P,
                DecodeErrorReason::SchemaUnavailable,
                format!("schema id {id} is not cached (fetch it from the schema registry)"),
            )
        })
    }

    /// Decode a framed datum: its schema and its record fields.
    fn datum(
        &mut self,
        bytes: &[u8],
        what: &str,
    ) -> Result<(Arc<CachedSchema>, RecordFields), DecodeError> {
        let (id, mut body) = framed(bytes).ok_or_else(|| {
            err(
                P,
                DecodeErrorReason::Framing,
                format!("{what} is not Confluent-framed (0x00 + non-zero schema id)"),
            )
        })?;
        let schema = self.schema(id)?;
        let value = apache_avro::from_avro_datum(&schema.avro, &mut body, None)
            .map_err(|e| invalid(format!("{what} (schema {id}): {e}")))?;
        if !body.is_empty() {
            return Err(invalid(format!(
                "{what} (schema {id}): {} bytes after the datum",
                body.len()
            )));
        }
        match value {
            Avro::Record(fields) => Ok((schema, fields)),
            _ => Err(invalid(format!("{what} (schema {id}) is not a record"))),
        }
    }

    fn delete(
        &mut self,
        key: &[u8],
        commit_ts: Option<u64>,
    ) -> Result<ChangeEvent<'static>, DecodeError> {
        let (schema, fields) = self.datum(key, "key")?;
        let mut ev = ChangeEvent::new(P, EventKind::Row);
        ev.op = Some(RowOp::Delete);
        ev.db = Cow::Owned(schema.db.clone());
        ev.table = Cow::Owned(schema.table.clone());
        ev.commit_ts = commit_ts;
        ev.keys = columns(&schema, &fields, fields.len())?.into();
        // Only the handle key of the deleted row is sent; Avro deletes carry no checksum.
        ev.values = ev.keys.to_vec();
        ev.partial = true;
        ev.checksum = Some(RowChecksum::absent());
        Ok(ev)
    }

    fn row(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
    ) -> Result<ChangeEvent<'static>, DecodeError> {
        let (schema, fields) = self.datum(value, "value")?;
        let mut ev = ChangeEvent::new(P, EventKind::Row);
        ev.db = Cow::Owned(schema.db.clone());
        ev.table = Cow::Owned(schema.table.clone());
        ev.values = columns(&schema, &fields, schema.row_columns)?;
        let ext = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| unwrap_union(v))
        };
        // Without `enable-tidb-extension` TiCDC's Avro cannot tell an update from an insert;
        // it is counted as an insert.
        ev.op = Some(match ext("_tidb_op") {
            Some(Avro::String(op)) if op == "u" => RowOp::Update,
            Some(Avro::String(op)) if op == "c" || op.is_empty() => RowOp::Insert,
            Some(Avro::String(op)) => {
                return Err(err(
                    P,
                    DecodeErrorReason::UnknownType,
                    format!("_tidb_op {}", super::sample(op)),
                ));
            }
            _ => RowOp::Insert,
        });
        ev.commit_ts = match ext("_tidb_commit_ts") {
            Some(Avro::Long(ts)) if *ts > 0 => Some(*ts as u64),
            _ => None,
        };
        if let Some(k) = key {
            let (kschema, kfields) = self.datum(k, "key")?;
            ev.keys = columns(&kschema, &kfields, kfields.len())?.into();
        }
        let expected = match ext("_tidb_row_level_checksum") {
            Some(Avro::String(s)) if s.is_empty() => 0,
            Some(Avro::String(s)) => s.parse::<u64>().map_err(|_| {
                invalid(format!(
                    "_tidb_row_level_checksum {} is not a number",
                    super::sample(s)
                ))
            })?,
            _ => 0,
        };
        let corrupted = matches!(ext("_tidb_corrupted"), Some(Avro::Boolean(true)));
        ev.checksum = Some(self.verify(&schema, &fields, expected, corrupted));
        Ok(ev)
    }

    /// Recompute the row checksum over the row columns in schema order (ID order when the
    /// checksum is on, TF `avro.go:57-68,584-587`).
    fn verify(
        &self,
        schema: &CachedSchema,
        fields: &[(String, Avro)],
        expected: u64,
        corrupted: bool,
    ) -> RowChecksum {
        if expected == 0 {
            return RowChecksum {
                corrupted,
                ..RowChecksum::absent()
            };
        }
        let mut values = Vec::with_capacity(schema.row_columns);
        for (i, (name, v)) in fields.iter().take(schema.row_columns).enumerate() {
            let info = schema.fields.get(i);
            match (
                info.and_then(|f| f.kind.as_ref()),
                checksum_value(unwrap_union(v)),
            ) {
                (Some(kind), Some(value)) => values.push((kind, value)),
                (None, _) => {
                    let t = info.and_then(|f| f.tidb_type.as_deref()).unwrap_or("none");
                    return checksum::combine(
                        &[(
                            checksum::Verdict::Mismatch,
                            Some(format!("column {name}: unknown tidb_type {t:?}")),
                        )],
                        corrupted,
                    );
                }
                (Some(_), None) => {
                    return checksum::combine(
                        &[(
                            checksum::Verdict::Mismatch,
                            Some(format!("column {name}: Avro value cannot be checksummed")),
                        )],
                        corrupted,
                    );
                }
            }
        }
        let side = checksum::check_side("current", expected, values, self.tz.0);
        checksum::combine(&[side], corrupted)
    }
}

fn unwrap_union(v: &Avro) -> &Avro {
    match v {
        Avro::Union(_, inner) => inner,
        v => v,
    }
}

fn checksum_value(v: &Avro) -> Option<CkValue<'_>> {
    Some(match v {
        Avro::Null => CkValue::Null,
        Avro::Int(i) => CkValue::Int(i64::from(*i)),
        Avro::Long(i) => CkValue::Int(*i),
        Avro::Float(f) => CkValue::F32(*f),
        Avro::Double(f) => CkValue::F64(*f),
        Avro::String(s) => CkValue::Bytes(s.as_bytes()),
        Avro::Bytes(b) | Avro::Fixed(_, b) => CkValue::Bytes(b),
        _ => return None,
    })
}

/// The first `n` record fields as event columns (values as JSON text).
fn columns(
    schema: &CachedSchema,
    fields: &[(String, Avro)],
    n: usize,
) -> Result<Vec<Column<'static>>, DecodeError> {
    fields
        .iter()
        .take(n)
        .enumerate()
        .map(|(i, (name, v))| {
            let info = schema.fields.get(i);
            let json = json_of(unwrap_union(v), info)
                .ok_or_else(|| invalid(format!("column {name}: unsupported Avro value")))?;
            let raw =
                RawValue::from_string(json).map_err(|e| invalid(format!("column {name}: {e}")))?;
            Ok(Column {
                name: Cow::Owned(name.clone()),
                value: ColumnValue::from_boxed_raw(raw),
            })
        })
        .collect()
}

/// One Avro value as JSON text: numbers as numbers, text as strings, BIT as its integer,
/// other bytes as base64 (as the simple protocol writes binary), decimals as exact text.
fn json_of(v: &Avro, info: Option<&FieldInfo>) -> Option<String> {
    let tidb_type = info.and_then(|f| f.tidb_type.as_deref());
    Some(match v {
        Avro::Null => "null".to_owned(),
        Avro::Boolean(b) => b.to_string(),
        Avro::Int(i) => i.to_string(),
        Avro::Long(i) => i.to_string(),
        Avro::Float(f) if f.is_finite() => serde_json::to_string(f).ok()?,
        Avro::Double(f) if f.is_finite() => serde_json::to_string(f).ok()?,
        Avro::Float(_) | Avro::Double(_) => "null".to_owned(),
        Avro::String(s) => serde_json::to_string(s).ok()?,
        Avro::Bytes(b) | Avro::Fixed(_, b) if tidb_type == Some("BIT") => {
            checksum::bit_value(b).to_string()
        }
        Avro::Bytes(b) | Avro::Fixed(_, b) => {
            format!(
                "\"{}\"",
                base64::engine::general_purpose::STANDARD.encode(b)
            )
        }
        Avro::Decimal(d) => {
            let bytes: Vec<u8> = Vec::try_from(d).ok()?;
            let scale = info.and_then(|f| f.decimal_scale).unwrap_or(0);
            format!("\"{}\"", decimal_text(&bytes, scale))
        }
        _ => return None,
    })
}

/// Two's-complement big-endian unscaled integer + scale → decimal text (`-12.50`).
pub fn decimal_text(bytes: &[u8], scale: u32) -> String {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    // Magnitude: negate two's complement for negatives.
    let mut mag: Vec<u8> = if negative {
        let mut m: Vec<u8> = bytes.iter().map(|b| !b).collect();
        for b in m.iter_mut().rev() {
            let (s, carry) = b.overflowing_add(1);
            *b = s;
            if !carry {
                break;
            }
        }
        m
    } else {
        bytes.to_vec()
    };
    // Repeated division by 10 (schoolbook, base 256).
    let mut digits = Vec::new();
    while mag.iter().any(|&b| b != 0) {
        let mut rem = 0u32;
        for b in mag.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
    }
    let scale = scale as usize;
    while digits.len() <= scale {
        digits.push(b'0');
    }
    digits.reverse();
    let (int, frac) = digits.split_at(digits.len() - scale);
    let mut s = String::with_capacity(digits.len() + 2);
    if negative {
        s.push('-');
    }
    s.push_str(std::str::from_utf8(int).unwrap_or("0"));
    if scale > 0 {
        s.push('.');
        s.push_str(std::str::from_utf8(frac).unwrap_or(""));
    }
    s
}

/// `0x01` + `{"query","type","schema","table","commitTs"}` (TF `avro.go:273-306`).
fn ddl(json: &[u8]) -> Result<ChangeEvent<'static>, DecodeError> {
    #[derive(serde::Deserialize)]
    struct DdlMsg {
        #[serde(default)]
        query: String,
        #[serde(default, rename = "type")]
        action: u64,
        #[serde(default)]
        schema: String,
        #[serde(default)]
        table: String,
        #[serde(default, rename = "commitTs")]
        commit_ts: u64,
    }
    let msg: DdlMsg = serde_json::from_slice(json).map_err(|e| super::json_err(P, "DDL", &e))?;
    let mut ev = ChangeEvent::new(P, EventKind::Ddl);
    ev.db = Cow::Owned(msg.schema);
    ev.table = Cow::Owned(msg.table);
    ev.commit_ts = (msg.commit_ts > 0).then_some(msg.commit_ts);
    ev.ddl = Some(Ddl {
        ddl_type: Cow::Borrowed(super::open_protocol::ddl_type_of_action(msg.action)),
        query: Cow::Owned(msg.query),
    });
    Ok(ev)
}

fn be_u64(b: &[u8], what: &str) -> Result<u64, DecodeError> {
    <[u8; 8]>::try_from(b).map(u64::from_be_bytes).map_err(|_| {
        err(
            P,
            DecodeErrorReason::Framing,
            format!(
                "{what}: expected 8 bytes of big-endian TSO, got {}",
                b.len()
            ),
        )
    })
}

fn missing_key(what: &str) -> DecodeError {
    err(
        P,
        DecodeErrorReason::MissingKey,
        format!("{what} without its Kafka key"),
    )
}

fn invalid(detail: String) -> DecodeError {
    err(P, DecodeErrorReason::InvalidAvro, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_and_detection() {
        assert_eq!(framed(&[0, 0, 0, 0, 8, 0x0e]), Some((8, &[0x0e][..])));
        assert_eq!(framed(&[0, 0, 0, 0, 0, 1]), None, "id 0 is never assigned");
        assert_eq!(framed(&[0, 0, 0, 1]), None, "short");
        assert_eq!(framed(b"{\"a\":1}"), None);
        // An open-protocol key is never Avro: its id bytes are zero.
        let op_key = [0u8, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        assert!(!looks_like_avro(Some(&op_key), Some(&op_key)));
        assert!(!looks_like_avro(None, Some(b"{\"id\":1}")));
        assert!(looks_like_avro(Some(&[0, 0, 0, 0, 1, 2]), None));
        assert!(looks_like_avro(None, Some(&[0, 0, 0, 0, 2, 2])));
        assert!(looks_like_avro(
            None,
            Some(&[2, 0, 0, 1, 0x72, 0xa7, 0x38, 0x1d, 0xc0])
        ));
        assert!(!looks_like_avro(None, Some(&[2, 0, 0])));
        assert!(looks_like_avro(None, Some(b"\x01{\"query\":\"\"}")));
    }

    #[test]
    fn decimal_text_handles_sign_and_scale() {
        assert_eq!(decimal_text(&[0x04, 0xe2], 2), "12.50");
        assert_eq!(decimal_text(&[0xfb, 0x1e], 2), "-12.50");
        assert_eq!(decimal_text(&[0x05], 3), "0.005");
        assert_eq!(decimal_text(&[], 0), "0");
        assert_eq!(decimal_text(&[0x00], 2), "0.00");
        // 2^64 needs 9 bytes.
        assert_eq!(
            decimal_text(&[1, 0, 0, 0, 0, 0, 0, 0, 0], 0),
            "18446744073709551616"
        );
    }
}
