//! The normalized change event that every TiCDC protocol decodes into.
//!
//! Events borrow from the Kafka message they were decoded from (`'a`): the hot path never copies
//! a table name or a column value. Column values are kept as the raw JSON text the protocol wrote
//! ([`ColumnValue`]), so the event log can emit them without re-encoding; their meaning depends on
//! the protocol (canal-json writes every value as a string, open-protocol writes typed values, ...).

use std::borrow::Cow;

use serde_json::value::RawValue;

/// The TiCDC Kafka protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    CanalJson,
    OpenProtocol,
    Debezium,
    Simple,
    /// Confluent-framed Avro; needs a schema registry (`protocol::avro`).
    Avro,
}

impl Protocol {
    /// The protocols that decode without a schema registry (Avro needs one: not listed here).
    pub const ALL: [Protocol; 4] = [
        Protocol::CanalJson,
        Protocol::OpenProtocol,
        Protocol::Debezium,
        Protocol::Simple,
    ];

    /// The name TiCDC uses in a sink URI (`protocol=...`), also our CLI spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::CanalJson => "canal-json",
            Protocol::OpenProtocol => "open-protocol",
            Protocol::Debezium => "debezium",
            Protocol::Simple => "simple",
            Protocol::Avro => "avro",
        }
    }

    pub fn from_name(name: &str) -> Option<Protocol> {
        Protocol::ALL
            .into_iter()
            .chain([Protocol::Avro])
            .find(|p| p.as_str() == name)
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a decoded message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A row change (INSERT/UPDATE/DELETE).
    Row,
    /// A schema change.
    Ddl,
    /// A checkpoint signal: canal-json `TIDB_WATERMARK`, open-protocol resolved, debezium `m`,
    /// simple `WATERMARK`. `commit_ts` holds the watermark TSO.
    Watermark,
    /// simple-protocol `BOOTSTRAP` (table schema announcement).
    Bootstrap,
}

impl EventKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Row => "row",
            EventKind::Ddl => "ddl",
            EventKind::Watermark => "watermark",
            EventKind::Bootstrap => "bootstrap",
        }
    }
}

/// A row operation. Lower case is the fixed spelling in metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RowOp {
    Insert,
    Update,
    Delete,
}

impl RowOp {
    pub const ALL: [RowOp; 3] = [RowOp::Insert, RowOp::Update, RowOp::Delete];

    pub const fn as_str(self) -> &'static str {
        match self {
            RowOp::Insert => "insert",
            RowOp::Update => "update",
            RowOp::Delete => "delete",
        }
    }
}

/// Primary-key (or handle-key) columns. Most keys have one column, which is kept inline: building
/// the keys of such a row allocates nothing (~150 instructions of malloc/free per event,
/// `docs/performance.md` "Issue 11, step 3"). Derefs to `[Column]` (`iter`, `len`, indexing, ...);
/// made from a `Vec` with `.into()` or from an iterator with `collect()`. A plain enum, not a
/// `smallvec::SmallVec`, because it must stay covariant in `'a` like the rest of the event (an
/// owned `ChangeEvent<'static>` is returned as a `ChangeEvent<'a>`).
#[derive(Debug, Clone, Default)]
pub enum KeyColumns<'a> {
    #[default]
    None,
    One(Column<'a>),
    Many(Vec<Column<'a>>),
}

impl<'a> std::ops::Deref for KeyColumns<'a> {
    type Target = [Column<'a>];
    fn deref(&self) -> &[Column<'a>] {
        match self {
            KeyColumns::None => &[],
            KeyColumns::One(c) => std::slice::from_ref(c),
            KeyColumns::Many(v) => v,
        }
    }
}

impl<'a> From<Vec<Column<'a>>> for KeyColumns<'a> {
    fn from(mut v: Vec<Column<'a>>) -> Self {
        match v.len() {
            0 => KeyColumns::None,
            1 => v.pop().map_or(KeyColumns::None, KeyColumns::One),
            _ => KeyColumns::Many(v),
        }
    }
}

impl<'a> FromIterator<Column<'a>> for KeyColumns<'a> {
    fn from_iter<I: IntoIterator<Item = Column<'a>>>(iter: I) -> Self {
        let mut iter = iter.into_iter();
        let Some(first) = iter.next() else {
            return KeyColumns::None;
        };
        match iter.next() {
            None => KeyColumns::One(first),
            Some(second) => {
                let mut v = vec![first, second];
                v.extend(iter);
                KeyColumns::Many(v)
            }
        }
    }
}

impl<'a> KeyColumns<'a> {
    /// The columns as a `Vec` (allocates).
    pub fn into_vec(self) -> Vec<Column<'a>> {
        match self {
            KeyColumns::None => Vec::new(),
            KeyColumns::One(c) => vec![c],
            KeyColumns::Many(v) => v,
        }
    }

    pub fn into_owned(self) -> KeyColumns<'static> {
        match self {
            KeyColumns::None => KeyColumns::None,
            KeyColumns::One(c) => KeyColumns::One(c.into_owned()),
            KeyColumns::Many(v) => {
                KeyColumns::Many(v.into_iter().map(Column::into_owned).collect())
            }
        }
    }
}

/// One column: its name and its value as raw JSON text (`null` for SQL NULL).
#[derive(Debug, Clone)]
pub struct Column<'a> {
    pub name: Cow<'a, str>,
    pub value: ColumnValue<'a>,
}

impl Column<'_> {
    pub fn into_owned(self) -> Column<'static> {
        Column {
            name: Cow::Owned(self.name.into_owned()),
            value: self.value.into_owned(),
        }
    }
}

/// The text of one valid JSON value, usually borrowed from the message.
///
/// Valid by construction: it is made from a serde_json [`RawValue`] (which serde_json validated)
/// or, inside the crate, from text a decoder checked by serde_json's own rules
/// ([`ColumnValue::from_checked`]). Unlike `Cow<RawValue>` it can be made without a serde_json
/// call per value, which was ~1,900 instructions of a canal-json message (docs/performance.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnValue<'a>(Cow<'a, str>);

impl<'a> ColumnValue<'a> {
    /// A value serde_json validated, borrowed.
    pub fn from_raw(raw: &'a RawValue) -> Self {
        ColumnValue(Cow::Borrowed(raw.get()))
    }

    /// A value serde_json validated, owned.
    pub fn from_boxed_raw(raw: Box<RawValue>) -> ColumnValue<'static> {
        ColumnValue(Cow::Owned(Box::<str>::from(raw).into_string()))
    }

    /// `text` is exactly one JSON value that `serde_json::from_str::<&RawValue>` accepts (no
    /// surrounding whitespace); the caller checked it (e.g. the canal-json scanner's string
    /// check, which follows serde_json's `ignore_str`).
    /// Crate-private (only the decoders vouch for text); a debug build re-checks every value with
    /// serde_json, so the whole test suite exercises the invariant.
    pub(crate) fn from_checked(text: &'a str) -> Self {
        debug_assert!(
            serde_json::from_str::<&RawValue>(text).is_ok() && text.trim() == text,
            "ColumnValue::from_checked given text serde_json does not accept as one value: {text:?}"
        );
        ColumnValue(Cow::Borrowed(text))
    }

    /// The JSON text (`"abc"`, `12`, `null`, ...).
    pub fn get(&self) -> &str {
        &self.0
    }

    /// Borrowed from the message (no copy was made).
    pub fn is_borrowed(&self) -> bool {
        matches!(self.0, Cow::Borrowed(_))
    }

    pub fn into_owned(self) -> ColumnValue<'static> {
        ColumnValue(Cow::Owned(self.0.into_owned()))
    }
}

/// DDL details.
#[derive(Debug, Clone)]
pub struct Ddl<'a> {
    /// Always one of the canal DDL types `CREATE ERASE TRUNCATE RENAME CINDEX DINDEX ALTER QUERY`
    /// (`protocol::DDL_TYPES`): canal-json and simple carry it; open-protocol's TiDB action code
    /// is mapped as TiCDC's canal encoder maps it; debezium's is classified from the statement.
    /// One small set keeps the `type` label of `cdc_ddl_events_total` bounded.
    pub ddl_type: Cow<'a, str>,
    pub query: Cow<'a, str>,
}

/// A decoded TiCDC event.
#[derive(Debug, Clone)]
pub struct ChangeEvent<'a> {
    pub protocol: Protocol,
    pub kind: EventKind,
    /// Set for `EventKind::Row` only.
    pub op: Option<RowOp>,
    /// Schema name; empty when the message has none (watermarks).
    pub db: Cow<'a, str>,
    /// Table name; empty when the message has none (watermarks, schema-level DDL).
    pub table: Cow<'a, str>,
    /// The commit TSO (watermark TSO for watermarks) when the message carries one.
    pub commit_ts: Option<u64>,
    /// Physical commit time in ms when the message has it but no TSO (canal-json `es` without
    /// the TiDB extension). Prefer [`ChangeEvent::commit_time_ms`].
    pub commit_physical_ms: Option<i64>,
    pub ddl: Option<Ddl<'a>>,
    /// Primary-key (or handle-key) column values.
    pub keys: KeyColumns<'a>,
    /// The new row (insert, update) or the deleted row (delete).
    pub values: Vec<Column<'a>>,
    /// The old row of an update, when the protocol carries it.
    pub old_values: Vec<Column<'a>>,
    /// Only handle-key columns are present (canal `onlyHandleKey`, open-protocol `ohk`, simple
    /// `handleKeyOnly`, or a claim-check message): the full row lives elsewhere.
    pub partial: bool,
    /// Where the full message was stored (claim-check), if anywhere.
    pub claim_check_location: Option<Cow<'a, str>>,
    /// TiDB row-checksum verdict (simple and Avro row events; `None` for protocols without
    /// checksums). See `crate::checksum`.
    pub checksum: Option<crate::checksum::RowChecksum>,
}

/// TSO → physical milliseconds since the Unix epoch (`tikv/client-go` `oracle.ExtractPhysical`).
pub const fn tso_physical_ms(ts: u64) -> i64 {
    (ts >> 18) as i64
}

impl<'a> ChangeEvent<'a> {
    /// An event of `kind` with every optional part empty; decoders fill in the rest.
    pub fn new(protocol: Protocol, kind: EventKind) -> Self {
        ChangeEvent {
            protocol,
            kind,
            op: None,
            db: Cow::Borrowed(""),
            table: Cow::Borrowed(""),
            commit_ts: None,
            commit_physical_ms: None,
            ddl: None,
            keys: KeyColumns::None,
            values: Vec::new(),
            old_values: Vec::new(),
            partial: false,
            claim_check_location: None,
            checksum: None,
        }
    }

    /// Commit time in ms since the Unix epoch (`commit_ts >> 18`), if known.
    pub fn commit_time_ms(&self) -> Option<i64> {
        self.commit_ts
            .map(tso_physical_ms)
            .or(self.commit_physical_ms)
    }

    /// Detach from the message buffer (used when the bytes were decompressed into a temporary).
    pub fn into_owned(self) -> ChangeEvent<'static> {
        fn cols(v: Vec<Column<'_>>) -> Vec<Column<'static>> {
            v.into_iter().map(Column::into_owned).collect()
        }
        ChangeEvent {
            protocol: self.protocol,
            kind: self.kind,
            op: self.op,
            db: Cow::Owned(self.db.into_owned()),
            table: Cow::Owned(self.table.into_owned()),
            commit_ts: self.commit_ts,
            commit_physical_ms: self.commit_physical_ms,
            ddl: self.ddl.map(|d| Ddl {
                ddl_type: Cow::Owned(d.ddl_type.into_owned()),
                query: Cow::Owned(d.query.into_owned()),
            }),
            keys: self.keys.into_owned(),
            values: cols(self.values),
            old_values: cols(self.old_values),
            partial: self.partial,
            claim_check_location: self
                .claim_check_location
                .map(|c| Cow::Owned(c.into_owned())),
            checksum: self.checksum,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tso_to_physical_matches_ticdc_docs() {
        // TICDC.md §4: watermarkTs 429918007904436226 >> 18 = 1640007049196 (= that message's `es`).
        assert_eq!(tso_physical_ms(429918007904436226), 1640007049196);
        let mut ev = ChangeEvent::new(Protocol::CanalJson, EventKind::Watermark);
        assert_eq!(ev.commit_time_ms(), None);
        ev.commit_physical_ms = Some(5);
        assert_eq!(ev.commit_time_ms(), Some(5));
        ev.commit_ts = Some(439749918821711874);
        assert_eq!(ev.commit_time_ms(), Some(1677512812888));
    }

    #[test]
    fn key_columns_hold_what_they_were_made_from() {
        let col = |n: &str| Column {
            name: Cow::Owned(n.to_owned()),
            value: ColumnValue::from_checked("1"),
        };
        let names = |k: &KeyColumns<'_>| k.iter().map(|c| c.name.to_string()).collect::<Vec<_>>();
        for n in 0..4 {
            let cols: Vec<Column<'_>> = (0..n).map(|i| col(&format!("c{i}"))).collect();
            let want: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
            let from_vec = KeyColumns::from(cols.clone());
            let collected: KeyColumns<'_> = cols.clone().into_iter().collect();
            for k in [&from_vec, &collected] {
                assert_eq!(names(k), want);
                assert_eq!((k.len(), k.is_empty()), (n, n == 0));
                // One column is inline, more are a Vec.
                let inline = matches!(k, KeyColumns::None | KeyColumns::One(_));
                assert_eq!(inline, n <= 1, "{n}");
            }
            assert_eq!(names(&from_vec.clone().into_owned()), want);
            assert_eq!(from_vec.into_vec().len(), n);
        }
    }

    #[test]
    fn protocol_names_round_trip() {
        for p in Protocol::ALL {
            assert_eq!(Protocol::from_name(p.as_str()), Some(p));
        }
        assert_eq!(Protocol::from_name("avro"), Some(Protocol::Avro));
        assert_eq!(Protocol::from_name("avro-glue"), None);
    }
}
