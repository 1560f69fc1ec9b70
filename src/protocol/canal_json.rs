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
    DecodeError, DecodeErrorReason, Events, canal_ddl_type, err, json_err, missing, unknown_value,
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

/// The members of a message that decide the event, whichever parser read them.
struct Header<'a> {
    database: Option<Cow<'a, str>>,
    table: Option<Cow<'a, str>>,
    is_ddl: Option<bool>,
    ty: Option<Cow<'a, str>>,
    es: Option<i64>,
    sql: Option<Cow<'a, str>>,
    tidb: TidbExtension<'a>,
}

/// The event kind as TF `JSONMessage.messageType` decides it (`None` when `type` is missing).
fn kind_of(is_ddl: Option<bool>, ty: Option<&str>) -> Option<EventKind> {
    let ty = ty?;
    Some(if is_ddl.unwrap_or(false) {
        EventKind::Ddl
    } else if ty == "TIDB_WATERMARK" {
        EventKind::Watermark
    } else {
        EventKind::Row
    })
}

/// Decode one canal-json value.
///
/// Well-formed messages of the usual shape take [`fast`], a scanner that reads only the members
/// cdcmon uses (~3× fewer instructions, `docs/performance.md`); anything it does not fully
/// understand (an escape in a name, a repeated member, a float, bad syntax, a decode error) is
/// decoded again by serde below, so errors and unusual input behave exactly as before.
///
/// The event is appended to `out` (the message's events, empty on entry), built where it
/// stays: returning the ~290-byte event by value through every layer up to the pipeline cost
/// ~450 instructions of `memcpy` per message (`docs/performance.md`, "building the canal-json
/// event in place"). On `Err` nothing was appended.
#[inline]
pub fn decode_into<'a>(value: &'a [u8], out: &mut Events<'a>) -> Result<(), DecodeError> {
    if let Some(text) = as_str(value)
        && fast::decode_into(text, out).is_some()
    {
        return Ok(());
    }
    out.push(decode_serde(value)?);
    Ok(())
}

/// [`decode_into`] returning the event (tests, tools).
pub fn decode(value: &[u8]) -> Result<ChangeEvent<'_>, DecodeError> {
    let mut out = Events::new();
    decode_into(value, &mut out)?;
    out.pop().ok_or_else(|| missing(P, "event"))
}

/// `value` as text when it is UTF-8. TiCDC's messages are usually pure ASCII (non-ASCII text
/// arrives as is, but names and most values are ASCII), and checking that
/// ([`super::is_ascii`], ~110 instructions for the bench's ~550-byte message) is much cheaper
/// than `from_utf8`.
fn as_str(value: &[u8]) -> Option<&str> {
    if super::is_ascii(value) {
        // SAFETY: ASCII bytes are valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(value) })
    } else {
        std::str::from_utf8(value).ok()
    }
}

/// The reference decoder: serde derive over the whole message.
fn decode_serde(value: &[u8]) -> Result<ChangeEvent<'_>, DecodeError> {
    let msg: Message<'_> = super::from_json(value).map_err(|e| json_err(P, "value", &e))?;
    let header = Header {
        database: msg.database.map(|s| s.0),
        table: msg.table.map(|s| s.0),
        is_ddl: msg.is_ddl,
        ty: msg.ty.map(|s| s.0),
        es: msg.es,
        sql: msg.sql.map(|s| s.0),
        tidb: msg.tidb.unwrap_or_default(),
    };
    let mut ev = ChangeEvent::new(P, EventKind::Row);
    build(
        header,
        msg.pk_names.as_deref(),
        first_row(msg.data),
        first_row(msg.old),
        &mut ev,
    )?;
    Ok(ev)
}

/// Fill `ev` (fresh from `ChangeEvent::new(P, _)`, filled where it lies: see [`decode_into`])
/// from the decoded members; `old` is used only by an UPDATE. On `Err` `ev` is to be dropped.
#[inline]
fn build<'a>(
    h: Header<'a>,
    pk_names: Option<&[impl AsRef<str>]>,
    data: Option<Vec<Column<'a>>>,
    old: Option<Vec<Column<'a>>>,
    ev: &mut ChangeEvent<'a>,
) -> Result<(), DecodeError> {
    let kind = kind_of(h.is_ddl, h.ty.as_deref()).ok_or_else(|| missing(P, "type"))?;
    let ty = h.ty.unwrap_or_default();
    let tidb = h.tidb;
    ev.kind = kind;
    ev.db = h.database.unwrap_or(Cow::Borrowed(""));
    ev.table = h.table.unwrap_or(Cow::Borrowed(""));
    ev.commit_ts = match kind {
        EventKind::Watermark => tidb.watermark_ts,
        _ => tidb.commit_ts,
    };
    if ev.commit_ts.is_none() {
        // Without the TiDB extension `es` (= commitTs >> 18, TC `canal_json_encoder.go`
        // `convertToCanalTs`) is the only commit time. 0 means "no time" (a tiny TSO, as in
        // TiCDC's tests), not 1970: a lag computed from it would read 56 years.
        ev.commit_physical_ms = h.es.filter(|&ms| ms > 0);
    }

    match kind {
        EventKind::Ddl => {
            ev.ddl = Some(Ddl {
                ddl_type: Cow::Borrowed(canal_ddl_type(&ty)),
                query: h.sql.unwrap_or(Cow::Borrowed("")),
            });
        }
        EventKind::Watermark | EventKind::Bootstrap => {}
        EventKind::Row => {
            let op = row_op(&ty).ok_or_else(|| unknown_value(P, "type", &ty))?;
            // INSERT/UPDATE: `data` is the new row; DELETE: `data` is the deleted row.
            let values = data.ok_or_else(|| {
                err(
                    P,
                    DecodeErrorReason::MissingField,
                    format!("{ty} message has no row in `data`"),
                )
            })?;
            if op == RowOp::Update {
                // Kept as sent: with `only-output-updated-columns` it holds only changed columns.
                ev.old_values = old.unwrap_or_default();
            }
            if let Some(pk) = pk_names {
                ev.keys = pick(&values, pk);
            }
            ev.values = values;
            ev.op = Some(op);
            ev.partial =
                tidb.only_handle_key.unwrap_or(false) || tidb.claim_check_location.is_some();
            ev.claim_check_location = tidb.claim_check_location.map(|s| s.0);
        }
    }
    Ok(())
}

fn row_op(ty: &str) -> Option<RowOp> {
    match ty {
        "INSERT" => Some(RowOp::Insert),
        "UPDATE" => Some(RowOp::Update),
        "DELETE" => Some(RowOp::Delete),
        _ => None,
    }
}

/// A scanner for the canal-json messages TiCDC writes. It returns `None` (and the caller uses
/// serde) for anything outside the common shape, so it never has to produce an error itself.
///
/// What it saves over serde derive: members cdcmon does not use (`sqlType`, `mysqlType`, `id`,
/// `ts`, unknown ones) and rows it does not need (`old` unless the event is an UPDATE, every row
/// after the first, `data` of DDL and watermarks) are skipped without building anything, but
/// checked by serde_json's grammar (`Scan::skip_value`, `Scan::skip_rows`), so the fast path
/// decodes a message only if serde would (since session 13, `docs/performance.md` step 6a;
/// before, skipped members were only matched by brackets and quotes); no `Vec` for `pkNames` (a
/// fixed buffer) or for the row list. Column values are still validated by serde_json (each is a
/// `&RawValue`), names and strings must be plain (no escape, no control character) or the
/// message goes to serde. Differential tests check that on valid and invalid JSON alike the
/// fast path decodes only what serde decodes, and to the same event.
/// open-protocol's row values use the same [`fast::Scan`] (`open_protocol::fast`).
pub(super) mod fast {
    use std::borrow::Cow;

    use serde_json::value::RawValue;

    use super::{Header, P, TidbExtension, build, kind_of, row_op};
    use crate::event::{Column, ColumnValue, EventKind, RowOp};
    use crate::protocol::Events;
    use crate::protocol::json::CowStr;

    /// More primary-key columns than this go to serde (TiCDC tables rarely have more than 3).
    const MAX_PK: usize = 8;

    /// Skipped objects and arrays nested deeper than this go to serde ([`Scan::skip_value`]:
    /// serde's `ignore_value` has no limit, the scanner recurses); TiCDC's are flat.
    const MAX_SKIP_DEPTH: u32 = 64;

    /// [`decode_into`] returning the event (tests).
    #[cfg(test)]
    pub(super) fn decode(text: &str) -> Option<crate::event::ChangeEvent<'_>> {
        let mut out = Events::new();
        decode_into(text, &mut out)?;
        out.pop()
    }

    /// The fast path of [`super::decode_into`]: `None` (nothing appended) sends the message
    /// to serde.
    pub(super) fn decode_into<'a>(text: &'a str, out: &mut Events<'a>) -> Option<()> {
        let mut s = Scan {
            text,
            b: text.as_bytes(),
            i: 0,
        };
        let mut h = Header {
            database: None,
            table: None,
            is_ddl: None,
            ty: None,
            es: None,
            sql: None,
            tidb: TidbExtension::default(),
        };
        let mut pk = [""; MAX_PK];
        let mut pk_len: Option<usize> = None;
        // `data`/`old` as spans, parsed at the end when `type` came after them; TiCDC writes
        // `isDdl` and `type` first, so usually they are parsed (or skipped) where they stand.
        let (mut data, mut old) = (None::<&str>, None::<&str>);
        let (mut data_rows, mut old_rows) = (None, None);
        let mut seen = 0u32;
        s.eat(b'{')?;
        if s.peek()? != b'}' {
            // The member TiCDC writes next ([`Member`] order): a guess, checked in full.
            let mut next = 0usize;
            loop {
                let member = match s.expected_member(next) {
                    Some(m) => m,
                    None => {
                        let key = s.plain_str()?;
                        s.eat(b':')?;
                        member_of(key)
                    }
                };
                next = member as usize + 1;
                let bit = match member {
                    Member::Database => {
                        h.database = s.opt_str()?.map(Cow::Borrowed);
                        1
                    }
                    Member::Table => {
                        h.table = s.opt_str()?.map(Cow::Borrowed);
                        2
                    }
                    Member::PkNames => {
                        pk_len = s.pk_names(&mut pk)?;
                        4
                    }
                    Member::IsDdl => {
                        h.is_ddl = s.opt_bool()?;
                        8
                    }
                    Member::Type => {
                        h.ty = s.opt_str()?.map(Cow::Borrowed);
                        16
                    }
                    Member::Es => {
                        h.es = s.opt_i64()?;
                        32
                    }
                    Member::Sql => {
                        h.sql = s.opt_str()?.map(Cow::Borrowed);
                        64
                    }
                    Member::Data => {
                        match known_kind(&h, seen) {
                            Some(EventKind::Row) => data_rows = Some(s.rows()?),
                            Some(_) => s.skip_null()?,
                            None => data = s.span()?,
                        }
                        128
                    }
                    Member::Old => {
                        match known_kind(&h, seen) {
                            Some(EventKind::Row) if h.ty.as_deref() == Some("UPDATE") => {
                                old_rows = Some(s.rows()?);
                            }
                            Some(_) => s.skip_null()?,
                            None => old = s.span()?,
                        }
                        256
                    }
                    Member::Tidb => {
                        h.tidb = s.tidb()?;
                        512
                    }
                    // `id`, `ts`, `sqlType`, `mysqlType` and unknown members: serde ignores
                    // them too (a repeat is no error there).
                    Member::Id | Member::Ts => {
                        s.skip_number()?;
                        0
                    }
                    Member::SqlType | Member::MysqlType => {
                        s.skip_map()?;
                        0
                    }
                    Member::Other => {
                        s.skip_value()?;
                        0
                    }
                };
                // serde derive rejects a repeated member: leave it to serde.
                if seen & bit != 0 {
                    return None;
                }
                seen |= bit;
                if !s.next_member()? {
                    break;
                }
            }
        } else {
            s.i += 1;
        }
        s.ws();
        if s.i != s.b.len() {
            return None;
        }
        // Rows are built only for a row event, `old` only for an UPDATE.
        let (rows, old_rows) = match kind_of(h.is_ddl, h.ty.as_deref()) {
            Some(EventKind::Row) => {
                let op = row_op(h.ty.as_deref().unwrap_or_default());
                let rows = match (data_rows, data) {
                    (Some(rows), _) => rows,
                    (None, Some(d)) => first_row(d)?,
                    (None, None) => None,
                };
                let old_rows = match (old_rows, old) {
                    (Some(rows), _) => rows,
                    (None, Some(o)) if op == Some(RowOp::Update) => first_row(o)?,
                    _ => None,
                };
                (rows, old_rows)
            }
            _ => (None, None),
        };
        let pk = pk_len.map(|n| &pk[..n]);
        // An error (unknown type, no row) is left to serde, which reports it with the same
        // reason from the same members, or a syntax error first if the message has one.
        let ev = crate::protocol::push_new(out, P, EventKind::Row);
        if build(h, pk, rows, old_rows, ev).is_err() {
            out.pop();
            return None;
        }
        Some(())
    }

    /// The top-level members in the order TiCDC writes them (TF `canal_json_row_event_encoder.go`,
    /// TC `canal_json_encoder.go` `newJSONMessageForDML`), except that DML rows come as `old`
    /// then `data` (`tc-canal-json-*` fixtures), which [`Scan::expected_member`] also guesses.
    /// Only a guess: it checks the whole name, and any other order decodes the same through the
    /// general path (`member_of`).
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Member {
        Id,
        Database,
        Table,
        PkNames,
        IsDdl,
        Type,
        Es,
        Ts,
        Sql,
        SqlType,
        MysqlType,
        Data,
        Old,
        Tidb,
        Other,
    }

    fn member_of(key: &str) -> Member {
        match key {
            "id" => Member::Id,
            "database" => Member::Database,
            "table" => Member::Table,
            "pkNames" => Member::PkNames,
            "isDdl" => Member::IsDdl,
            "type" => Member::Type,
            "es" => Member::Es,
            "ts" => Member::Ts,
            "sql" => Member::Sql,
            "sqlType" => Member::SqlType,
            "mysqlType" => Member::MysqlType,
            "data" => Member::Data,
            "old" => Member::Old,
            "_tidb" => Member::Tidb,
            _ => Member::Other,
        }
    }

    impl Scan<'_> {
        /// If the input continues with the name of the member number `next` of [`Member`] and
        /// its colon, exactly (`"database":`, no whitespace, no escape), consume it. Each arm
        /// compares a constant of known length, a few loads instead of a string scan and a
        /// `match` on the name (~100 instructions per member, `docs/performance.md`).
        #[inline]
        fn expected_member(&mut self, next: usize) -> Option<Member> {
            let rest = self.b.get(self.i..)?;
            macro_rules! guess {
                ($lit:literal, $m:expr) => {{
                    if rest.starts_with($lit) {
                        self.i += $lit.len();
                        return Some($m);
                    }
                    None
                }};
                ($lit:literal, $m:expr, or $lit2:literal, $m2:expr) => {{
                    if rest.starts_with($lit) {
                        self.i += $lit.len();
                        return Some($m);
                    }
                    guess!($lit2, $m2)
                }};
            }
            match next {
                0 => guess!(br#""id":"#, Member::Id),
                1 => guess!(br#""database":"#, Member::Database),
                2 => guess!(br#""table":"#, Member::Table),
                3 => guess!(br#""pkNames":"#, Member::PkNames),
                4 => guess!(br#""isDdl":"#, Member::IsDdl),
                5 => guess!(br#""type":"#, Member::Type),
                6 => guess!(br#""es":"#, Member::Es),
                7 => guess!(br#""ts":"#, Member::Ts),
                8 => guess!(br#""sql":"#, Member::Sql),
                9 => guess!(br#""sqlType":"#, Member::SqlType),
                10 => guess!(br#""mysqlType":"#, Member::MysqlType),
                // DML rows come as `old`, `data` (TF/TC `newJSONMessageForDML`), DDL and
                // watermarks (`JSONMessage` marshalled) as `data`, `old`: both are guessed.
                11 => guess!(br#""data":"#, Member::Data, or br#""old":"#, Member::Old),
                12 => guess!(br#""old":"#, Member::Old, or br#""_tidb":"#, Member::Tidb),
                13 => guess!(br#""_tidb":"#, Member::Tidb, or br#""data":"#, Member::Data),
                _ => None,
            }
        }
    }

    /// The kind once `isDdl` (bit 8) and `type` (bit 16) have been read, else `None`.
    fn known_kind(h: &Header<'_>, seen: u32) -> Option<EventKind> {
        if seen & 24 != 24 {
            return None;
        }
        kind_of(h.is_ddl, h.ty.as_deref())
    }

    /// The first row of a `[{...}, ...]` span as columns; `None` inside when the list is empty.
    fn first_row(span: &str) -> Option<Option<Vec<Column<'_>>>> {
        let mut s = Scan {
            text: span,
            b: span.as_bytes(),
            i: 0,
        };
        let rows = s.rows()?;
        s.ws();
        (s.i == s.b.len()).then_some(rows)
    }

    impl<'a> Scan<'a> {
        /// `null`, or the first row of `[{...}, ...]` as columns (`None` inside when there is none).
        fn rows(&mut self) -> Option<Option<Vec<Column<'a>>>> {
            let s = self;
            if s.null()? {
                return Some(None);
            }
            s.eat(b'[')?;
            if s.peek()? == b']' {
                return Some(None);
            }
            let mut cols = Vec::with_capacity(8);
            s.eat(b'{')?;
            if s.peek()? == b'}' {
                s.i += 1;
            } else {
                // The columns on a copy of the scanner, so that its position stays in a
                // register instead of being stored through `self` at every step.
                let mut t = Scan {
                    text: s.text,
                    b: s.b,
                    i: s.i,
                };
                loop {
                    let name = t.plain_str()?;
                    t.eat(b':')?;
                    let value = t.column_value()?;
                    cols.push(Column {
                        name: Cow::Borrowed(name),
                        value,
                    });
                    if !t.next_member()? {
                        break;
                    }
                }
                s.i = t.i;
            }
            // Rows after the first are never used (TiCDC writes one): skipped.
            loop {
                match s.peek()? {
                    b',' => {
                        s.i += 1;
                        s.skip_columns()?;
                    }
                    b']' => {
                        s.i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
            Some(Some(cols))
        }
    }

    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;

    /// High bit set in every byte of `v` equal to `c` (exact for the lowest such byte).
    #[inline]
    fn bytes_eq(v: u64, c: u8) -> u64 {
        let x = v ^ (LO * u64::from(c));
        x.wrapping_sub(LO) & !x & HI
    }

    /// The index of the first `"` or `\\` (with `controls`, also a byte below 0x20) at or after
    /// `from`: 16 bytes at a time with SSE2 on x86-64, then 8 at a time (SWAR), then bytes.
    /// Strings are most of a message. Only the SSE2 loop is inlined: with the SWAR tail in line
    /// too, every caller set up its six 64-bit constants first (~35 instructions per string,
    /// `docs/performance.md`), and the last 15 bytes of a message are rarely inside a string.
    #[inline(always)]
    fn quote_or_escape(b: &[u8], mut i: usize, controls: bool) -> Option<usize> {
        #[cfg(target_arch = "x86_64")]
        while let Some(chunk) = b.get(i..i + 16) {
            let m = quote_mask_sse2(chunk.try_into().ok()?, controls);
            if m != 0 {
                return Some(i + m.trailing_zeros() as usize);
            }
            i += 16;
        }
        quote_or_escape_tail(b, i, controls)
    }

    /// [`quote_or_escape`] after its SSE2 blocks: 8 bytes at a time (SWAR), then bytes.
    #[inline(never)]
    fn quote_or_escape_tail(b: &[u8], mut i: usize, controls: bool) -> Option<usize> {
        while let Some(chunk) = b.get(i..i + 8) {
            let v = u64::from_le_bytes(chunk.try_into().ok()?);
            let mut m = bytes_eq(v, b'"') | bytes_eq(v, b'\\');
            if controls {
                m |= v.wrapping_sub(LO * 0x20) & !v & HI;
            }
            if m != 0 {
                return Some(i + (m.trailing_zeros() / 8) as usize);
            }
            i += 8;
        }
        let tail = b.get(i..)?;
        tail.iter()
            .position(|&c| c == b'"' || c == b'\\' || (controls && c < 0x20))
            .map(|p| i + p)
    }

    /// Bit k set when byte k of `chunk` is `"` or `\\` (with `controls`, also below 0x20).
    #[cfg(target_arch = "x86_64")]
    #[inline]
    fn quote_mask_sse2(chunk: &[u8; 16], controls: bool) -> u32 {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8,
            _mm_or_si128, _mm_set1_epi8,
        };
        // SAFETY: SSE2 is part of the x86_64 baseline (enabled on every x86_64 target); the
        // unaligned load reads exactly the 16 bytes of `chunk`.
        unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
            let mut m = _mm_or_si128(
                _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8)),
                _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8)),
            );
            if controls {
                // Unsigned `v <= 0x1f`: max(v, 0x1f) == 0x1f.
                let limit = _mm_set1_epi8(0x1f);
                m = _mm_or_si128(m, _mm_cmpeq_epi8(_mm_max_epu8(v, limit), limit));
            }
            _mm_movemask_epi8(m) as u32
        }
    }

    /// The value of the 8 ASCII digits in `v` (little-endian: the first digit is the lowest
    /// byte), which the caller checked are digits (SWAR: the well-known multiply-and-shift
    /// reduction of pairs, quads and octets).
    #[inline(always)]
    fn eight_digits_value(v: u64) -> u64 {
        digit_values_value(v - 0x3030_3030_3030_3030)
    }

    /// The value of 8 decimal digit values (0..=9 per byte, the first digit lowest).
    #[inline(always)]
    fn digit_values_value(mut x: u64) -> u64 {
        x = (x * 10 + (x >> 8)) & 0x00FF_00FF_00FF_00FF;
        x = (x * 100 + (x >> 16)) & 0x0000_FFFF_0000_FFFF;
        (x * 10_000 + (x >> 32)) & 0xFFFF_FFFF
    }

    /// The end of the run of ASCII digits at `i` (`i` when there is none): 16 bytes at a time
    /// with SSE2 on x86-64, then bytes. TSOs have 18–19 digits, `es`/`ts` 13.
    #[inline]
    fn digits_end(b: &[u8], mut i: usize) -> usize {
        #[cfg(target_arch = "x86_64")]
        while let Some(chunk) = b.get(i..i + 16) {
            let m = non_digit_mask_sse2(chunk);
            if m != 0 {
                return i + m.trailing_zeros() as usize;
            }
            i += 16;
        }
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    }

    /// Bit k set when byte k of the 16-byte `chunk` is not an ASCII digit.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn non_digit_mask_sse2(chunk: &[u8]) -> u32 {
        use std::arch::x86_64::{
            __m128i, _mm_cmpgt_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8,
            _mm_or_si128, _mm_set1_epi8,
        };
        assert!(chunk.len() == 16);
        // SAFETY: SSE2 is part of the x86_64 baseline (enabled on every x86_64 target); the
        // unaligned load reads exactly the 16 bytes of `chunk` (length asserted above, which
        // the callers' `get(i..i + 16)` lets the compiler remove).
        unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
            // Signed compares: bytes 0x80..=0xff are negative, below `0`, so not digits.
            let m = _mm_or_si128(
                _mm_cmplt_epi8(v, _mm_set1_epi8(b'0' as i8)),
                _mm_cmpgt_epi8(v, _mm_set1_epi8(b'9' as i8)),
            );
            _mm_movemask_epi8(m) as u32
        }
    }

    /// The value of `d`, 1 to 19 ASCII digits (< 10^19 < 2^64: no overflow).
    #[inline(always)]
    fn digits_value(d: &[u8]) -> u64 {
        debug_assert!(!d.is_empty() && d.len() <= 19 && d.iter().all(u8::is_ascii_digit));
        const POW10: [u64; 8] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000];
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&d[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let len = d.len();
        if len < 8 {
            return d.iter().fold(0, |n, &c| n * 10 + u64::from(c - b'0'));
        }
        let mut n = eight_digits_value(word(0));
        if len >= 16 {
            n = n * 100_000_000 + eight_digits_value(word(8));
        }
        let rest = len % 8;
        if rest != 0 {
            // The last 8 digits, of which the first `8 - rest` were read above: cleared (the
            // first digit is the lowest byte), they count as leading zeros.
            let last = (word(len - 8) - 0x3030_3030_3030_3030) & (u64::MAX << (8 * (8 - rest)));
            n = n * POW10[rest] + digit_values_value(last);
        }
        n
    }

    /// Where the object opened at `b[open]` ends (past its `}`), if it is a compact flat map
    /// `{"name":value,...}` whose names and string values have no escape or control character
    /// and whose other values are integers: the usual `sqlType`/`mysqlType`, checked here
    /// with the position in a register. `None` for anything else (whitespace, an escape, a
    /// fraction, nesting, a member longer than 63 bytes, an error): then
    /// [`Scan::skip_object`] decides, from `open`. Accepts only what `skip_object` accepts,
    /// ending where it ends (test `flat_map_end_agrees_with_skip_object`).
    ///
    /// SSE2: the bytes are classified 64 at a time ([`Stops`]): a member's quotes are the next
    /// set bits of the quote mask, and a window's strings are checked for backslashes and
    /// control bytes at once when the scan leaves it (`docs/performance.md`, step 6a).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn flat_map_end(b: &[u8], open: usize) -> Option<usize> {
        let mut i = open + 1;
        if b.get(i) == Some(&b'}') {
            return Some(i + 1);
        }
        let mut w = Stops::at(b, i)?;
        // `i`: where a member's name should open.
        'members: loop {
            // The member's quotes, if they are all in the window: bit 0 is `b[i]`.
            let off = i - w.base;
            'member: {
                if off >= 64 {
                    break 'member;
                }
                let mut qs = w.quotes >> off;
                if qs & 1 == 0 {
                    return None;
                }
                qs &= qs - 1;
                if qs == 0 {
                    break 'member;
                }
                // The name's closing quote, then `:`.
                let q = i + qs.trailing_zeros() as usize;
                if b.get(q + 1) != Some(&b':') {
                    return None;
                }
                let v = q + 2;
                let end = if b.get(v) == Some(&b'"') {
                    // The next quote is `b[v]` if it is in the window (`b[q + 1]` is `:`),
                    // the one after it the value's closing quote.
                    qs &= qs - 1;
                    if qs == 0 {
                        break 'member;
                    }
                    qs &= qs - 1;
                    if qs == 0 {
                        break 'member;
                    }
                    i + qs.trailing_zeros() as usize + 1
                } else {
                    integer_end(b, v)?
                };
                match *b.get(end)? {
                    b',' => i = end + 1,
                    b'}' => return w.strings_clean_before(end).then_some(end + 1),
                    _ => return None,
                }
                continue 'members;
            }
            // The member is not all in the window: the next window starts with it (unless this
            // one did, then it is too long for the fast path).
            if w.base == i || !w.strings_clean_before(i) {
                return None;
            }
            w = Stops::at_out_of_line(b, i)?;
        }
    }

    /// [`flat_map_end`] member by member with [`member_end`] (other targets).
    #[cfg(not(target_arch = "x86_64"))]
    #[inline]
    fn flat_map_end(b: &[u8], open: usize) -> Option<usize> {
        let mut i = open + 1;
        if b.get(i) == Some(&b'}') {
            return Some(i + 1);
        }
        loop {
            if b.get(i) != Some(&b'"') {
                return None;
            }
            i = member_end(b, i)?;
            match *b.get(i)? {
                b',' => i += 1,
                b'}' => return Some(i + 1),
                _ => return None,
            }
        }
    }

    /// The quotes and the bytes a string may not hold unescaped here (backslashes, bytes below
    /// 0x20) of the 64 bytes `b[base..base + 64]`, bit k for byte `base + k`; past the end of
    /// `b` the window is zero-padded (zero is a control byte, no quote).
    #[cfg(target_arch = "x86_64")]
    struct Stops {
        base: usize,
        quotes: u64,
        bad: u64,
    }

    #[cfg(target_arch = "x86_64")]
    impl Stops {
        /// The window at `base`; `None` when `base` is past the end of `b`.
        #[inline(always)]
        fn at(b: &[u8], base: usize) -> Option<Stops> {
            match b.get(base..base + 64) {
                Some(w) => Some(Stops::of(base, w.try_into().ok()?)),
                None => Stops::at_tail(b, base),
            }
        }

        /// [`Stops::at`], called where the window moves (rarely: out of line).
        #[inline(never)]
        fn at_out_of_line(b: &[u8], base: usize) -> Option<Stops> {
            Stops::at(b, base)
        }

        /// [`Stops::at`] in the last 63 bytes of `b`: zero-padded.
        #[cold]
        #[inline(never)]
        fn at_tail(b: &[u8], base: usize) -> Option<Stops> {
            let rest = b.get(base..).filter(|r| !r.is_empty())?;
            let mut padded = [0u8; 64];
            padded[..rest.len()].copy_from_slice(rest);
            Some(Stops::of(base, &padded))
        }

        #[inline(always)]
        fn of(base: usize, w: &[u8; 64]) -> Stops {
            use std::arch::x86_64::{
                __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8,
                _mm_or_si128, _mm_set1_epi8, _mm_setzero_si128,
            };
            let (mut quotes, mut bad) = (0u64, 0u64);
            // SAFETY: SSE2 is part of the x86_64 baseline (enabled on every x86_64 target);
            // each unaligned load reads the 16 bytes `w[16 * k..16 * k + 16]`, `k < 4`, inside
            // the 64 of `w`.
            unsafe {
                let limit = _mm_set1_epi8(0x1f);
                let mut any_bad = _mm_setzero_si128();
                let mut bads = [_mm_setzero_si128(); 4];
                for (k, bad_k) in bads.iter_mut().enumerate() {
                    let v = _mm_loadu_si128(w.as_ptr().add(16 * k).cast::<__m128i>());
                    let q = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8)));
                    quotes |= u64::from(q as u32) << (16 * k);
                    // Backslashes and bytes below 0x20 (unsigned `v <= 0x1f`:
                    // max(v, 0x1f) == 0x1f).
                    *bad_k = _mm_or_si128(
                        _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8)),
                        _mm_cmpeq_epi8(_mm_max_epu8(v, limit), limit),
                    );
                    any_bad = _mm_or_si128(any_bad, *bad_k);
                }
                // Usually there is none: their positions only when there is one.
                if _mm_movemask_epi8(any_bad) != 0 {
                    for (k, m) in bads.iter().enumerate() {
                        bad |= u64::from(_mm_movemask_epi8(*m) as u32) << (16 * k);
                    }
                }
            }
            Stops { base, quotes, bad }
        }

        /// No backslash or control byte in the window before `end` (`end >= self.base`).
        /// Checked when the scan leaves the window: everything it accepted there before `end`
        /// is strings found by their quotes in the window, or bytes it compared one by one.
        #[inline(always)]
        fn strings_clean_before(&self, end: usize) -> bool {
            let n = end - self.base;
            let below = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
            self.bad & below == 0
        }
    }

    /// The end of the member `"name":value` of a flat map whose name opens at `b[i]`: the
    /// name and a string value without escape or control byte, any other value an integer
    /// ([`integer_end`]). `None` for anything else.
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    #[inline]
    fn member_end(b: &[u8], i: usize) -> Option<usize> {
        let q = quote_or_escape(b, i + 1, true)?;
        if b[q] != b'"' || b.get(q + 1) != Some(&b':') {
            return None;
        }
        let v = q + 2;
        if b.get(v) == Some(&b'"') {
            let q = quote_or_escape(b, v + 1, true)?;
            return (b[q] == b'"').then_some(q + 1);
        }
        integer_end(b, v)
    }

    /// The end of the JSON integer at `b[i]` (`-`, then `0` or a digit run not starting
    /// with `0`), `None` if none starts there. A fraction or exponent after it is the
    /// caller's to refuse (a flat map's member must be followed by `,` or `}`).
    #[inline(always)]
    fn integer_end(b: &[u8], mut i: usize) -> Option<usize> {
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match *b.get(i)? {
            b'0' => Some(i + 1),
            b'1'..=b'9' => {
                i += 1;
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                Some(i)
            }
            _ => None,
        }
    }

    pub(in crate::protocol) struct Scan<'a> {
        pub(in crate::protocol) text: &'a str,
        pub(in crate::protocol) b: &'a [u8],
        pub(in crate::protocol) i: usize,
    }

    /// `text` is one JSON number by RFC 8259's grammar, which is what serde_json's
    /// `ignore_integer`/`ignore_decimal`/`ignore_exponent` accept (serde_json 1.0.154
    /// `src/de.rs`): `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn is_json_number(text: &str) -> bool {
        number_end(text.as_bytes(), 0) == Some(text.len())
    }

    /// The end of the JSON number at `i` (the grammar of [`is_json_number`]), or `None` if what
    /// is there does not start like one. Shared with open-protocol's row reader.
    #[inline]
    pub(in crate::protocol) fn number_end(b: &[u8], mut i: usize) -> Option<usize> {
        let digits = |i: &mut usize| {
            let start = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i - start
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                digits(&mut i);
            }
            _ => return None,
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if digits(&mut i) == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                return None;
            }
        }
        Some(i)
    }

    impl<'a> Scan<'a> {
        pub(in crate::protocol) fn new(text: &'a str) -> Self {
            Scan {
                text,
                b: text.as_bytes(),
                i: 0,
            }
        }

        /// Only whitespace is left.
        pub(in crate::protocol) fn at_end(&mut self) -> bool {
            self.ws();
            self.i == self.b.len()
        }

        /// A column value, checked by serde_json's rules without calling it for strings,
        /// numbers, `true`, `false` and `null` (objects and arrays are validated by serde_json,
        /// whose `RawValue` is what `from_checked` stands in for).
        #[inline(always)]
        pub(in crate::protocol) fn column_value(&mut self) -> Option<ColumnValue<'a>> {
            // Usually a string right after the `:` (canal-json's values all are).
            let start = self.i;
            if self.b.get(start) == Some(&b'"') {
                self.checked_str()?;
                // `b[start]` is the opening quote, `b[self.i - 1]` the closing one (ASCII).
                return Some(ColumnValue::from_checked(self.span_text(start, self.i)));
            }
            self.column_value_other()
        }

        /// [`Scan::column_value`] after whitespace, or of a value that is not a string.
        #[inline(never)]
        fn column_value_other(&mut self) -> Option<ColumnValue<'a>> {
            self.ws();
            let start = self.i;
            if self.b.get(start) == Some(&b'"') {
                self.checked_str()?;
                // As in `column_value`: quotes at both ends.
                return Some(ColumnValue::from_checked(self.span_text(start, self.i)));
            }
            let opens = matches!(self.b.get(start), Some(b'{' | b'['));
            self.skip_value()?;
            let text = &self.text[start..self.i];
            if !opens && (matches!(text, "null" | "true" | "false") || is_json_number(text)) {
                Some(ColumnValue::from_checked(text))
            } else {
                serde_json::from_str::<&RawValue>(text)
                    .ok()
                    .map(ColumnValue::from_raw)
            }
        }

        /// `text[start..end]` without `str` indexing's two char-boundary checks (~130
        /// instructions per message in the out-of-line `get` alone, ~230 with the slicing
        /// around it: `docs/performance.md`, step 5c).
        /// Callers prove `start <= end <= b.len()` and that both ends are char boundaries: an
        /// index is one when it is `b.len()`, when `b[index]` is ASCII, or when `b[index - 1]`
        /// is ASCII (valid UTF-8, which `text` is, never has a continuation byte there).
        #[inline(always)]
        fn span_text(&self, start: usize, end: usize) -> &'a str {
            debug_assert!(self.text.get(start..end).is_some(), "{start}..{end}");
            // SAFETY: the caller's proof above: in bounds, both ends char boundaries.
            unsafe { self.text.get_unchecked(start..end) }
        }

        #[inline]
        fn ws(&mut self) {
            while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
                self.i += 1;
            }
        }

        #[inline]
        pub(in crate::protocol) fn peek(&mut self) -> Option<u8> {
            self.ws();
            self.b.get(self.i).copied()
        }

        #[inline]
        pub(in crate::protocol) fn eat(&mut self, c: u8) -> Option<()> {
            // Compact JSON (TiCDC's): the byte is usually right there.
            if self.b.get(self.i) == Some(&c) {
                self.i += 1;
                return Some(());
            }
            (self.peek()? == c).then(|| self.i += 1)
        }

        /// After a member: `true` on `,`, `false` on `}`.
        #[inline]
        pub(in crate::protocol) fn next_member(&mut self) -> Option<bool> {
            // Compact JSON: the `,` or `}` is usually right there.
            let more = match self.b.get(self.i) {
                Some(b',') => true,
                Some(b'}') => false,
                _ => match self.peek()? {
                    b',' => true,
                    b'}' => false,
                    _ => return None,
                },
            };
            self.i += 1;
            Some(more)
        }

        fn literal(&mut self, word: &[u8]) -> bool {
            let hit = self.b[self.i..].starts_with(word);
            if hit {
                self.i += word.len();
            }
            hit
        }

        /// `null` → `Some(true)`; otherwise nothing is consumed.
        pub(in crate::protocol) fn null(&mut self) -> Option<bool> {
            self.peek()?;
            Some(self.literal(b"null"))
        }

        /// A string with neither escapes nor control characters, borrowed from the input.
        #[inline(always)]
        pub(in crate::protocol) fn plain_str(&mut self) -> Option<&'a str> {
            // Names and values usually follow `{`, `,` or `:` directly: no whitespace to skip.
            if self.b.get(self.i) == Some(&b'"') {
                self.i += 1;
            } else {
                self.eat(b'"')?;
            }
            let start = self.i;
            let end = quote_or_escape(self.b, start, true)?;
            if self.b[end] != b'"' {
                return None;
            }
            self.i = end + 1;
            // `b[start - 1]` and `b[end]` are quotes (ASCII), `start <= end < b.len()`.
            Some(self.span_text(start, end))
        }

        #[inline]
        pub(in crate::protocol) fn opt_str(&mut self) -> Option<Option<&'a str>> {
            // A string is usually right there: no whitespace or `null` test first.
            if self.b.get(self.i) == Some(&b'"') {
                return self.plain_str().map(Some);
            }
            self.opt_str_other()
        }

        /// [`Scan::opt_str`] after whitespace, or of `null`.
        #[inline(never)]
        fn opt_str_other(&mut self) -> Option<Option<&'a str>> {
            if self.null()? {
                return Some(None);
            }
            self.plain_str().map(Some)
        }

        pub(in crate::protocol) fn opt_bool(&mut self) -> Option<Option<bool>> {
            if self.null()? {
                Some(None)
            } else if self.literal(b"true") {
                Some(Some(true))
            } else if self.literal(b"false") {
                Some(Some(false))
            } else {
                None
            }
        }

        /// A JSON integer that fits a u64 (no sign, fraction or exponent; no leading zero).
        #[inline(always)]
        fn u64(&mut self) -> Option<u64> {
            let start = self.i;
            let end = digits_end(self.b, start);
            let digits = self.b.get(start..end)?;
            match digits {
                [] => return None,
                [b'0', _, ..] => return None,
                _ => {}
            }
            // A fraction or exponent makes it a float: serde decides what that means.
            if let Some(b'.' | b'e' | b'E') = self.b.get(end) {
                return None;
            }
            let n = match digits.len() {
                ..=19 => digits_value(digits),
                // 20 digits may overflow; more always do (the first is not `0`).
                20 => digits_value(&digits[..19])
                    .checked_mul(10)?
                    .checked_add(u64::from(digits[19] - b'0'))?,
                _ => return None,
            };
            self.i = end;
            Some(n)
        }

        pub(in crate::protocol) fn opt_u64(&mut self) -> Option<Option<u64>> {
            // Usually the digits are right there: no whitespace or `null` test first.
            if !self.b.get(self.i).is_some_and(u8::is_ascii_digit) && self.null()? {
                return Some(None);
            }
            self.u64().map(Some)
        }

        fn opt_i64(&mut self) -> Option<Option<i64>> {
            if !self.b.get(self.i).is_some_and(u8::is_ascii_digit) && self.null()? {
                return Some(None);
            }
            let negative = self.b[self.i] == b'-';
            if negative {
                self.i += 1;
            }
            let n = self.u64()?;
            let v = if negative {
                // serde_json reads `-0` as the float -0.0, which an i64 refuses (1.0.154
                // `de.rs` `parse_number`): serde's business.
                if n == 0 {
                    return None;
                }
                0i64.checked_sub_unsigned(n)?
            } else {
                i64::try_from(n).ok()?
            };
            Some(Some(v))
        }

        /// `pkNames`: `null` or an array of at most [`MAX_PK`] plain strings.
        fn pk_names(&mut self, out: &mut [&'a str; MAX_PK]) -> Option<Option<usize>> {
            if self.null()? {
                return Some(None);
            }
            self.eat(b'[')?;
            let mut n = 0;
            if self.peek()? == b']' {
                self.i += 1;
                return Some(Some(0));
            }
            loop {
                *out.get_mut(n)? = self.plain_str()?;
                n += 1;
                match self.peek()? {
                    b',' => self.i += 1,
                    b']' => {
                        self.i += 1;
                        return Some(Some(n));
                    }
                    _ => return None,
                }
            }
        }

        /// `data`/`old`: `null` or the text of the array, parsed later if it is needed.
        fn span(&mut self) -> Option<Option<&'a str>> {
            if self.null()? {
                return Some(None);
            }
            if self.peek()? != b'[' {
                return None;
            }
            let start = self.i;
            self.skip_rows()?;
            // `b[start]` is `[`, `b[self.i - 1]` the closing `]` (ASCII).
            Some(Some(self.span_text(start, self.i)))
        }

        /// `_tidb`: `null` or an object; the members cdcmon reads, others skipped.
        fn tidb(&mut self) -> Option<TidbExtension<'a>> {
            let mut t = TidbExtension::default();
            if self.null()? {
                return Some(t);
            }
            self.eat(b'{')?;
            if self.peek()? == b'}' {
                self.i += 1;
                return Some(t);
            }
            let mut seen = 0u32;
            loop {
                let key = self.plain_str()?;
                self.eat(b':')?;
                let bit = match key {
                    "commitTs" => {
                        t.commit_ts = self.opt_u64()?;
                        1
                    }
                    "watermarkTs" => {
                        t.watermark_ts = self.opt_u64()?;
                        2
                    }
                    "onlyHandleKey" => {
                        t.only_handle_key = self.opt_bool()?;
                        4
                    }
                    "claimCheckLocation" => {
                        t.claim_check_location = self.opt_str()?.map(|s| CowStr(Cow::Borrowed(s)));
                        8
                    }
                    _ => {
                        self.skip_value()?;
                        0
                    }
                };
                if seen & bit != 0 {
                    return None;
                }
                seen |= bit;
                if !self.next_member()? {
                    return Some(t);
                }
            }
        }

        /// Past one value, accepting exactly what serde_json accepts for a value it ignores (`id`,
        /// `ts`, `sqlType`, `mysqlType`, unknown members: `Deserializer::ignore_value`) or keeps
        /// as a `RawValue` (serde_json 1.0.154 `src/de.rs`): strings as [`Scan::checked_str`],
        /// only the scalars `null`, `true`, `false` and RFC 8259 numbers ([`number_end`]),
        /// objects with string keys, no trailing comma. `None` for anything serde refuses, and
        /// for nesting deeper than [`MAX_SKIP_DEPTH`] (serde decides). What follows the value is
        /// the caller's to check, as in serde. (Until session 13 this matched only brackets and
        /// quotes and ran scalars to a delimiter: `docs/performance.md`, step 6a.)
        fn skip_value(&mut self) -> Option<()> {
            self.skip_value_in(0)
        }

        /// [`Scan::skip_value`] of a member that is usually a flat map (`sqlType`,
        /// `mysqlType`): [`flat_map_end`] without `skip_value`'s call and dispatch.
        #[inline(always)]
        fn skip_map(&mut self) -> Option<()> {
            if self.b.get(self.i) == Some(&b'{')
                && let Some(end) = flat_map_end(self.b, self.i)
            {
                self.i = end;
                return Some(());
            }
            self.skip_value()
        }

        /// [`Scan::skip_value`] inside `depth` enclosing skipped objects or arrays.
        fn skip_value_in(&mut self, depth: u32) -> Option<()> {
            match self.peek()? {
                b'"' => self.checked_str(),
                b'{' => {
                    if let Some(end) = flat_map_end(self.b, self.i) {
                        self.i = end;
                        return Some(());
                    }
                    self.skip_object(depth)
                }
                b'[' => self.skip_array(depth),
                b'n' => self.literal(b"null").then_some(()),
                b't' => self.literal(b"true").then_some(()),
                b'f' => self.literal(b"false").then_some(()),
                _ => {
                    self.i = number_end(self.b, self.i)?;
                    Some(())
                }
            }
        }

        /// [`Scan::skip_value`] of the object at `self.i` (its `{`). Usually a flat map
        /// (`sqlType`, `mysqlType`): a string or number right after each colon is read in
        /// line, anything else through `skip_value_in`.
        fn skip_object(&mut self, depth: u32) -> Option<()> {
            if depth >= MAX_SKIP_DEPTH {
                return None;
            }
            self.i += 1;
            if self.peek()? == b'}' {
                self.i += 1;
                return Some(());
            }
            loop {
                if self.b.get(self.i) != Some(&b'"') && self.peek()? != b'"' {
                    return None;
                }
                self.checked_str()?;
                self.eat(b':')?;
                match self.b.get(self.i) {
                    Some(b'"') => self.checked_str()?,
                    Some(b'-' | b'0'..=b'9') => self.i = number_end(self.b, self.i)?,
                    _ => self.skip_value_in(depth + 1)?,
                }
                if !self.next_member()? {
                    return Some(());
                }
            }
        }

        /// [`Scan::skip_value`] of the array at `self.i` (its `[`).
        fn skip_array(&mut self, depth: u32) -> Option<()> {
            if depth >= MAX_SKIP_DEPTH {
                return None;
            }
            self.i += 1;
            if self.peek()? == b']' {
                self.i += 1;
                return Some(());
            }
            loop {
                self.skip_value_in(depth + 1)?;
                match self.peek()? {
                    b',' => self.i += 1,
                    b']' => {
                        self.i += 1;
                        return Some(());
                    }
                    _ => return None,
                }
            }
        }

        /// A row that is not read (every row after the first, the rows of an unused
        /// `data`/`old`), checked as serde's `Columns` reads it: an object whose names are
        /// plain strings and whose values `skip_value` accepts. serde decodes the names (an
        /// escaped lone surrogate, which `checked_str` lets pass as serde's `ignore_str` does,
        /// is an error there), so a name with any escape goes to serde; the values it keeps
        /// raw.
        fn skip_columns(&mut self) -> Option<()> {
            if self.peek()? != b'{' {
                return None;
            }
            self.i += 1;
            if self.peek()? == b'}' {
                self.i += 1;
                return Some(());
            }
            loop {
                self.plain_str()?;
                self.eat(b':')?;
                self.skip_value_in(1)?;
                if !self.next_member()? {
                    return Some(());
                }
            }
        }

        /// An unused `data`/`old` as serde's `Option<Vec<Columns>>` checks it: `null`, or an
        /// array of rows ([`Scan::skip_columns`]).
        fn skip_rows(&mut self) -> Option<()> {
            if self.null()? {
                return Some(());
            }
            self.eat(b'[')?;
            if self.peek()? == b']' {
                self.i += 1;
                return Some(());
            }
            loop {
                self.skip_columns()?;
                match self.peek()? {
                    b',' => self.i += 1,
                    b']' => {
                        self.i += 1;
                        return Some(());
                    }
                    _ => return None,
                }
            }
        }

        /// [`Scan::skip_value`] of a member whose value is usually an integer (`id`, `ts`): an
        /// integer without fraction or exponent (`0` or a digit run not starting with `0`) is
        /// passed here, 16 digits at a time, and ends where `skip_value` ends (test
        /// `skip_number_and_skip_null_end_where_the_full_skips_end`); anything else goes to
        /// `skip_value`.
        #[inline]
        fn skip_number(&mut self) -> Option<()> {
            let start = self.i;
            let end = match self.b.get(start) {
                Some(b'0') => start + 1,
                Some(b'1'..=b'9') => digits_end(self.b, start + 1),
                _ => return self.skip_value(),
            };
            if let Some(b'.' | b'e' | b'E') = self.b.get(end) {
                return self.skip_value();
            }
            self.i = end;
            Some(())
        }

        /// [`Scan::skip_rows`] of a member that is usually `null` (an INSERT's `old`, a DDL's
        /// rows): `null` is passed here with one 4-byte compare, anything else goes to
        /// `skip_rows`, ending where it ends.
        #[inline]
        fn skip_null(&mut self) -> Option<()> {
            if self.b.get(self.i..self.i + 4) == Some(b"null") {
                self.i += 4;
                return Some(());
            }
            self.skip_rows()
        }

        /// A string at `self.i`, past its closing quote, if serde_json would accept it as a
        /// `RawValue`: no control character, only the escapes `\" \\ \/ \b \f \n \r \t` and
        /// `\u` with four hex digits (a lone surrogate is accepted, as serde_json's
        /// `ignore_str`/`ignore_escape` do: serde_json 1.0.154 `src/read.rs`).
        #[inline(always)]
        fn checked_str(&mut self) -> Option<()> {
            // Usually no escape: the first quote, backslash or control character is the end.
            let at = quote_or_escape(self.b, self.i + 1, true)?;
            if self.b.get(at) == Some(&b'"') {
                self.i = at + 1;
                return Some(());
            }
            self.i = at;
            self.checked_str_escaped()
        }

        /// [`Scan::checked_str`] from its first backslash or control character at `self.i`.
        #[inline(never)]
        fn checked_str_escaped(&mut self) -> Option<()> {
            loop {
                let at = quote_or_escape(self.b, self.i, true)?;
                match self.b[at] {
                    b'"' => {
                        self.i = at + 1;
                        return Some(());
                    }
                    b'\\' => match *self.b.get(at + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i = at + 2,
                        b'u' => {
                            let hex = self.b.get(at + 2..at + 6)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.i = at + 6;
                        }
                        _ => return None,
                    },
                    // A control character.
                    _ => return None,
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// Advance a replayable xorshift stream (test inputs without a rand crate).
        fn xorshift(state: &mut u64) {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
        }

        /// The member guess hits every member of TiCDC's own messages: DML with `old` before
        /// `data` (TF/TC `newJSONMessageForDML`, `tc-canal-json-*` fixtures), DDL and watermarks
        /// with `data` before `old` (the marshalled `JSONMessage`), and the older `data`, `old`
        /// DML fixtures.
        #[test]
        fn member_guess_hits_every_member_of_ticdc_messages() {
            let dir = format!("{}/tests/fixtures/ticdc", env!("CARGO_MANIFEST_DIR"));
            let mut checked = 0;
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if !(name.contains("canal-json") && name.ends_with(".json")) {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let text = text.trim_end();
                // Two fixtures are pretty-printed documentation examples: no guess there.
                if text.contains('\n') {
                    continue;
                }
                let mut s = Scan::new(text);
                s.eat(b'{').unwrap();
                let mut next = 0;
                loop {
                    let at = s.i;
                    let member = s.expected_member(next).unwrap_or_else(|| {
                        panic!(
                            "{name}: no guess at {:?}",
                            &text[at..(at + 20).min(text.len())]
                        )
                    });
                    next = member as usize + 1;
                    s.skip_value().unwrap();
                    if !s.next_member().unwrap() {
                        break;
                    }
                }
                assert_eq!(s.i, text.len(), "{name}");
                checked += 1;
            }
            assert!(checked >= 7, "{checked}");
        }

        /// `quote_or_escape` (SSE2 blocks, SWAR words, bytes) finds what a byte loop finds.
        #[test]
        fn quote_or_escape_finds_the_first_quote_escape_or_control() {
            let mut state = 0x9E37_79B9_7F4A_7C15u64;
            const BYTES: &[u8] =
                b"aaaaaaaaaaaaaaaaaaaaaaa \"\\\x00\x1f\x20\x7f\x80\x9f\xa2\xdc\xff";
            for _ in 0..20_000 {
                xorshift(&mut state);
                let len = (state % 70) as usize;
                let v: Vec<u8> = (0..len)
                    .map(|_| {
                        xorshift(&mut state);
                        BYTES[(state % BYTES.len() as u64) as usize]
                    })
                    .collect();
                let from = (state % (len as u64 + 1)) as usize;
                for controls in [false, true] {
                    let want = v[from..]
                        .iter()
                        .position(|&c| c == b'"' || c == b'\\' || (controls && c < 0x20))
                        .map(|p| from + p);
                    assert_eq!(quote_or_escape(&v, from, controls), want, "{v:?} {from}");
                }
            }
        }

        /// `u64` reads what `str::parse::<u64>` reads from a JSON integer, and refuses the rest.
        #[test]
        fn u64_reads_integers_like_parse() {
            let mut cases: Vec<String> = [
                "0",
                "7",
                "12345678",
                "123456789",
                "1234567890123456",
                "12345678901234567",
                "462479379842039809",
                "9999999999999999999",
                "18446744073709551615",
                "18446744073709551616",
                "99999999999999999999",
                "123456789012345678901",
                "00",
                "01",
                "0123456789",
                "1234567a",
                "12345678a",
                "1.5",
                "1e3",
                "",
                "-1",
                "1234567/",
                "1234567:",
            ]
            .iter()
            .map(|c| c.to_string())
            .collect();
            let mut state = 0x2545_F491_4F6C_DD1Du64;
            for _ in 0..5_000 {
                xorshift(&mut state);
                let digits = (state % 21) as usize + 1;
                cases.push(state.to_string().chars().cycle().take(digits).collect());
            }
            for text in cases {
                // The long tail: the digits are found 16 bytes at a time (SSE2).
                for tail in ["", ",", "}", " ", "x", r#","sql":"................""#] {
                    let input = format!("{text}{tail}");
                    let mut s = Scan::new(&input);
                    let ours = s.u64();
                    // Reference: the leading digits by `str::parse`, refused with a leading zero
                    // or when a fraction or exponent follows (a float is serde's business).
                    let digits = input.bytes().take_while(u8::is_ascii_digit).count();
                    let after = input.as_bytes().get(digits).copied();
                    let want = match &input[..digits] {
                        d if d.len() > 1 && d.starts_with('0') => None,
                        _ if matches!(after, Some(b'.' | b'e' | b'E')) => None,
                        d => d.parse::<u64>().ok(),
                    };
                    assert_eq!(ours, want, "{input:?}");
                    if ours.is_some() {
                        assert_eq!(s.i, digits, "{input:?}");
                    }
                }
            }
        }

        /// `digits_end` (SSE2 blocks, then bytes) ends where a byte loop ends, on any bytes.
        #[test]
        fn digits_end_agrees_with_the_byte_loop() {
            let mut state = 0x9E37_79B9_7F4A_7C15u64;
            const BYTES: &[u8] =
                b"0123456789012345678901234567890123456789/:,.\x00\x80\xb0\xb9\xff";
            let mut long = 0;
            for _ in 0..20_000 {
                xorshift(&mut state);
                let len = (state % 60) as usize;
                let v: Vec<u8> = (0..len)
                    .map(|_| {
                        xorshift(&mut state);
                        BYTES[(state % BYTES.len() as u64) as usize]
                    })
                    .collect();
                let from = (state % (len as u64 + 1)) as usize;
                let want = from + v[from..].iter().take_while(|c| c.is_ascii_digit()).count();
                assert_eq!(digits_end(&v, from), want, "{v:?} {from}");
                long += usize::from(want - from >= 16);
            }
            assert!(long > 100, "{long}");
        }

        /// Values for the skip tests: serde's scalars, strings, objects and arrays, and
        /// near misses of each (the step-4a leniencies: `docs/performance.md`, step 6a).
        const SKIP_VALUES: [&str; 52] = [
            "0",
            "7",
            "1764000000126",
            "462479379842039809123",
            "-5",
            "-0",
            "1.5",
            "1764000000126.25e-3",
            "1E5",
            " 12",
            "12 ",
            "null",
            "true",
            "false",
            r#""""#,
            r#""x""#,
            r#""a\"b\\c\/\u00e9""#,
            r#""\ud800""#,
            "l1732000000000",
            "1732000000000l",
            "tru",
            "nul",
            "nulll",
            "falsey",
            "01",
            "1.",
            ".5",
            "-",
            "+1",
            "1e",
            "0x10",
            "NaN",
            r#""\x""#,
            "\"a\tb\"",
            "\"a\u{1}b\"",
            r#""\u12""#,
            r#""open"#,
            "[]",
            "{}",
            "[1]",
            r#"[{"a":"1"}]"#,
            r#"[{"a":"1"},{"b":[1,{"c":null}]}]"#,
            r#"{"id":-5,"name":12}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":tru}"#,
            r#"{"a":1,}"#,
            r#"[1,]"#,
            r#"{"a" 1}"#,
            r#"{"a":1 "b":2}"#,
            r#"[{"a":01}]"#,
            r#"[{"a":"1"},{"b":"\x"}]"#,
            r#"{"a":{"b":["c",{"d":"e\u0041"}]},"f":[]}"#,
        ];

        /// `skip_number` (`id`, `ts`) accepts and ends exactly as `skip_value` does, and
        /// `skip_null` (an unused `data`/`old`) as `skip_rows` does.
        #[test]
        fn skip_number_and_skip_null_end_where_the_full_skips_end() {
            let (mut numbers, mut nulls) = (0, 0);
            for value in SKIP_VALUES {
                for tail in ["", ",", "}", "]", " ", ":", "x", r#","sql":"..........""#] {
                    let text = format!("{value}{tail}");
                    for null in [false, true] {
                        let (mut a, mut b) = (Scan::new(&text), Scan::new(&text));
                        let (got, want) = if null {
                            (a.skip_null(), b.skip_rows())
                        } else {
                            (a.skip_number(), b.skip_value())
                        };
                        assert_eq!(got, want, "{text:?}");
                        if got.is_some() {
                            assert_eq!(a.i, b.i, "{text:?}");
                        }
                    }
                    numbers += usize::from(
                        text.as_bytes().first().is_some_and(u8::is_ascii_digit)
                            && Scan::new(&text).skip_number().is_some(),
                    );
                    nulls += usize::from(
                        text.starts_with("null") && Scan::new(&text).skip_null().is_some(),
                    );
                }
            }
            assert!(numbers > 40 && nulls > 10, "{numbers} {nulls}");
        }

        /// A value `skip_value` accepts (followed by nothing but whitespace) is exactly one
        /// serde_json accepts as a whole document of ignored content, on the fixed values and
        /// on ~20,000 generated ones with random damage.
        #[test]
        fn skip_value_accepts_what_serde_accepts() {
            fn check(text: &str) -> bool {
                let mut s = Scan::new(text);
                let fast = s.skip_value().is_some() && s.at_end();
                let serde = serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
                assert_eq!(fast, serde, "{text:?}");
                fast
            }
            let mut accepted = 0;
            for v in SKIP_VALUES {
                accepted += usize::from(check(v));
            }
            let mut state = 0x2545_F491_4F6C_DD1Du64;
            let mut next = |n: usize| {
                xorshift(&mut state);
                (state % n as u64) as usize
            };
            let atoms = [
                "0",
                "-12",
                "3.5e-2",
                "true",
                "false",
                "null",
                r#""s""#,
                r#""\n\u00e9\ud83d""#,
                "\"\"",
            ];
            for _ in 0..20_000 {
                // A random nested value, then 0 to 2 bytes replaced by JSON-ish ones.
                fn gen_value(
                    next: &mut dyn FnMut(usize) -> usize,
                    atoms: &[&str],
                    depth: u32,
                ) -> String {
                    match if depth > 3 { 0 } else { next(4) } {
                        0 | 1 => atoms[next(atoms.len())].to_owned(),
                        2 => {
                            let n = next(4);
                            let items: Vec<String> =
                                (0..n).map(|_| gen_value(next, atoms, depth + 1)).collect();
                            format!("[{}]", items.join(","))
                        }
                        _ => {
                            let n = next(4);
                            let items: Vec<String> = (0..n)
                                .map(|k| format!(r#""k{k}":{}"#, gen_value(next, atoms, depth + 1)))
                                .collect();
                            format!("{{{}}}", items.join(","))
                        }
                    }
                }
                let mut text = gen_value(&mut next, &atoms, 0).into_bytes();
                for _ in 0..next(3) {
                    if text.is_empty() {
                        break;
                    }
                    let at = next(text.len());
                    let damage = b"{}[]\",: \t\\x0-.eE\x01";
                    text[at] = damage[next(damage.len())];
                }
                if let Ok(text) = std::str::from_utf8(&text) {
                    accepted += usize::from(check(text));
                }
            }
            assert!(accepted > 5_000, "{accepted}");
        }

        /// `flat_map_end` (the `sqlType`/`mysqlType` fast path) accepts only what
        /// `skip_object` accepts and ends where it ends, on flat maps with damage anywhere,
        /// strings around 64 bytes (its window), and maps ending near the end of the buffer.
        #[test]
        fn flat_map_end_agrees_with_skip_object() {
            let mut state = 0x9E37_79B9_7F4A_7C15u64;
            let mut next = |n: usize| {
                xorshift(&mut state);
                (state % n as u64) as usize
            };
            let (mut fast, mut total) = (0, 0);
            for _ in 0..30_000 {
                let mut map = String::from("{");
                for k in 0..next(8) {
                    if k > 0 {
                        map.push(',');
                    }
                    let name_len = [1, 2, 8, 13, 30, 62, 63, 64, 70][next(9)];
                    map.push('"');
                    map.push_str(&"n".repeat(name_len));
                    map.push_str("\":");
                    match next(3) {
                        0 => map.push_str(["-5", "12", "0", "93", "1234567"][next(5)]),
                        _ => {
                            let len = [0, 3, 7, 15, 31, 40, 63][next(7)];
                            map.push('"');
                            map.push_str(&"v".repeat(len));
                            map.push('"');
                        }
                    }
                }
                map.push('}');
                let mut bytes = map.into_bytes();
                for _ in 0..next(3) {
                    let at = next(bytes.len());
                    let damage = b"{}[]\",: \t\\x0-.eE\x01\x1f5";
                    bytes[at] = damage[next(damage.len())];
                }
                let pad = [0, 1, 30, 70][next(4)];
                let mut text = "a".repeat(next(3));
                let open = text.len();
                text.push_str(std::str::from_utf8(&bytes).expect("ASCII"));
                text.push_str(&",".repeat(pad));
                let b = text.as_bytes();
                if b[open] != b'{' {
                    continue;
                }
                total += 1;
                let mut s = Scan::new(&text);
                s.i = open;
                let full = s.skip_object(0).map(|()| s.i);
                if let Some(end) = flat_map_end(b, open) {
                    fast += 1;
                    assert_eq!(Some(end), full, "{text:?}");
                }
            }
            assert!(fast > 2_500 && total > fast, "{fast} of {total}");
        }

        /// The members the scanner skips (`id`, `ts`, `sqlType`, `mysqlType`, unknown ones, an
        /// INSERT's or DELETE's `old`, a DDL's `data`) take exactly what serde_json takes
        /// there: the fast path decodes such a message if and only if serde does, and then
        /// agrees (d1e61e6's test, session 12, with objects and arrays now validated too).
        #[test]
        fn skipped_members_accept_what_serde_accepts() {
            let (mut fast_ok, mut refused) = (0, 0);
            for value in SKIP_VALUES {
                for (member, ty) in [
                    ("id", "INSERT"),
                    ("ts", "INSERT"),
                    ("sqlType", "INSERT"),
                    ("mysqlType", "UPDATE"),
                    ("extra", "DELETE"),
                    ("old", "INSERT"),
                    ("old", "DELETE"),
                    ("data", "ALTER"),
                ] {
                    let is_ddl = ty == "ALTER";
                    let mut members = vec![
                        r#""id":0"#.to_owned(),
                        r#""database":"app""#.to_owned(),
                        r#""table":"users""#.to_owned(),
                        r#""pkNames":["id"]"#.to_owned(),
                        format!(r#""isDdl":{is_ddl}"#),
                        format!(r#""type":"{ty}""#),
                        r#""es":1764000000123"#.to_owned(),
                        r#""ts":1764000000126"#.to_owned(),
                        r#""sql":"""#.to_owned(),
                        r#""sqlType":{"id":-5}"#.to_owned(),
                        r#""mysqlType":{"id":"bigint"}"#.to_owned(),
                        r#""old":null"#.to_owned(),
                        r#""data":[{"id":"1"}]"#.to_owned(),
                        r#""_tidb":{"commitTs":462479379842039809}"#.to_owned(),
                    ];
                    let own = format!(r#""{member}":{value}"#);
                    let name = format!(r#""{member}":"#);
                    match members.iter().position(|m| m.starts_with(&name)) {
                        Some(at) => members[at] = own,
                        None => members.insert(8, own),
                    }
                    let text = format!("{{{}}}", members.join(","));
                    let serde = super::super::decode_serde(text.as_bytes());
                    match (decode(&text), &serde) {
                        (Some(ev), Ok(_)) => {
                            assert_eq!(
                                format!("{:?}", Ok::<_, ()>(ev)),
                                format!("{:?}", serde.as_ref().map_err(|_| ())),
                                "{text}"
                            );
                            fast_ok += 1;
                        }
                        (None, Err(_)) => refused += 1,
                        (fast, _) => panic!("fast {} serde {serde:?}: {text}", fast.is_some()),
                    }
                }
            }
            assert!(fast_ok > 80 && refused > 150, "{fast_ok} {refused}");
        }

        /// `is_json_number` accepts exactly the numbers serde_json accepts as a `RawValue`.
        #[test]
        fn json_numbers_as_serde_json_reads_them() {
            let cases = [
                "0",
                "-0",
                "1",
                "-1",
                "10",
                "01",
                "-01",
                "00",
                "1.",
                ".5",
                "1.5",
                "-1.5",
                "1e5",
                "1E+5",
                "1e-5",
                "1e",
                "1e+",
                "1.e5",
                "1.5e",
                "-",
                "--1",
                "+1",
                "1x",
                "0x10",
                "18446744073709551616",
                "1.25E-400",
                "1e999",
                "",
                "1 ",
                "NaN",
                "-Infinity",
                "123456789012345678901234567890.5",
            ];
            let mut valid = 0;
            for text in cases {
                let serde = serde_json::from_str::<&RawValue>(text).is_ok() && !text.ends_with(' ');
                assert_eq!(is_json_number(text), serde, "{text:?}");
                valid += usize::from(serde);
            }
            assert!(valid >= 12, "{valid}");
        }

        /// `checked_str` stands in for `serde_json::from_str::<&RawValue>` on a string value:
        /// it must accept exactly what serde_json accepts, and end where the string ends.
        #[test]
        fn checked_str_accepts_what_serde_json_accepts() {
            // JSON string bodies as written in a message (backslashes are JSON escapes).
            let bodies = [
                r"",
                r"abc",
                r"caf\u00e9",
                r"\ud83d\ude00",
                r"\ud800",
                r"\uDC00x",
                r"\u00",
                r"\u00g0",
                r"\uZZZZ",
                r"\x",
                r"\'",
                r"\\\\",
                r#"\\\""#,
                r"a\/b",
                r"\b\f\n\r\t",
                r"raw\ttab",
                r"ctl\u0001",
                "é😀",
                r"long string with no escape at all",
                r"\",
                r"end\\",
                r"x\u12",
            ];
            let mut checked = 0;
            for body in bodies {
                // Raw control characters too: a literal tab, newline, NUL, 0x1f (and DEL, which
                // JSON allows).
                for variant in [body.to_owned(), body.replace(r"raw\t", "raw\t")] {
                    for extra in ["", "\t", "\n", "\u{0}", "\u{1f}", "\u{7f}"] {
                        let text = format!("\"{variant}{extra}\"");
                        let serde = serde_json::from_str::<&RawValue>(&text).is_ok();
                        let mut s = Scan {
                            text: &text,
                            b: text.as_bytes(),
                            i: 0,
                        };
                        let ours = s.checked_str().is_some() && s.i == text.len();
                        assert_eq!(ours, serde, "{text:?}");
                        checked += usize::from(serde);
                    }
                }
            }
            assert!(checked > 20, "some strings are valid: {checked}");
            // A string followed by more text ends at its closing quote.
            let text = r#""a\"b","c""#;
            let mut s = Scan {
                text,
                b: text.as_bytes(),
                i: 0,
            };
            assert_eq!(s.checked_str(), Some(()));
            assert_eq!(&text[..s.i], r#""a\"b""#);
        }
    }
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
        assert!(ev.values.iter().all(|c| c.value.is_borrowed()));
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

    /// Every canal-json fixture plus the shapes the decoder tests above use.
    fn corpus() -> Vec<Vec<u8>> {
        let dir = format!("{}/tests/fixtures/ticdc", env!("CARGO_MANIFEST_DIR"));
        let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                name.contains("canal-json") && name.ends_with(".json")
            })
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        out.push(br#"{"id":0,"database":"app","table":"users","pkNames":["id","org"],"isDdl":false,"type":"UPDATE","es":1,"ts":2,"sql":"","sqlType":{"id":-5},"mysqlType":{"id":"bigint"},"old":[{"org":"6","id":"9","name":"a\"b"}],"data":[{"org":"7","id":"9007199254740993","name":null},{"x":1}],"_tidb":{"commitTs":429918007904436227,"rowkey":"dA=="}}"#.to_vec());
        out.push(br#" { "database" : "d" , "table" : "t" , "pkNames" : [ ] , "isDdl" : false , "type" : "DELETE" , "es" : -3 , "data" : [ { "a" : [1, {"b": "]"}] , "c" : -0.5e3 } ] , "old" : null } "#.to_vec());
        out
    }

    fn debug(r: &Result<ChangeEvent<'_>, DecodeError>) -> String {
        format!("{r:?}")
    }

    #[test]
    fn fast_path_takes_the_usual_messages_and_agrees_with_serde() {
        let mut fast_hits = 0;
        for v in corpus() {
            let text = std::str::from_utf8(&v).unwrap();
            let slow = decode_serde(&v);
            assert!(slow.is_ok(), "{text}: {slow:?}");
            if let Some(ev) = fast::decode(text) {
                fast_hits += 1;
                assert_eq!(debug(&Ok(ev)), debug(&slow), "{text}");
            }
            // The public decoder gives what serde gives.
            assert_eq!(debug(&decode(&v)), debug(&slow), "{text}");
        }
        // Only a name with an escape or an odd shape may leave the fast path.
        let corpus = corpus();
        assert!(
            fast_hits >= corpus.len() - 1,
            "{fast_hits}/{}",
            corpus.len()
        );
    }

    /// The member-name guess (`fast::Member` order) is only a shortcut: members in any order
    /// take the fast path and decode as serde decodes them.
    #[test]
    fn fast_path_decodes_members_in_any_order() {
        let members = [
            r#""id":0"#,
            r#""database":"app""#,
            r#""table":"users""#,
            r#""pkNames":["id"]"#,
            r#""isDdl":false"#,
            r#""type":"UPDATE""#,
            r#""es":1764000000000"#,
            r#""ts":1764000000003"#,
            r#""sql":"""#,
            r#""sqlType":{"id":-5,"name":12}"#,
            r#""mysqlType":{"id":"bigint","name":"enum('a}','b')"}"#,
            r#""data":[{"id":"7","name":"b"}]"#,
            r#""old":[{"id":"7","name":"a"}]"#,
            r#""_tidb":{"commitTs":462479379842039809}"#,
        ];
        let mut order: Vec<usize> = (0..members.len()).collect();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..200 {
            if round > 0 {
                // Fisher-Yates with a xorshift stream (replayable).
                for i in (1..order.len()).rev() {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    order.swap(i, (state % (i as u64 + 1)) as usize);
                }
            }
            let text = format!(
                "{{{}}}",
                order
                    .iter()
                    .map(|&i| members[i])
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let slow = decode_serde(text.as_bytes());
            let ev = fast::decode(&text).unwrap_or_else(|| panic!("fast path refused {text}"));
            assert_eq!(ev.op, Some(RowOp::Update), "{text}");
            assert_eq!(ev.old_values.len(), 2, "{text}");
            assert_eq!(debug(&Ok(ev)), debug(&slow), "{text}");
        }
    }

    #[test]
    fn fast_path_falls_back_on_what_it_does_not_understand() {
        for v in [
            // Repeated member (serde: duplicate field), escaped name, float commitTs,
            // leading zero, trailing garbage, unknown type, missing row.
            &br#"{"type":"INSERT","type":"DELETE","data":[{"a":"1"}]}"#[..],
            br#"{"type":"INSERT","data":[{"a\u0062":"1"}]}"#,
            br#"{"type":"INSERT","data":[{"a":"1"}],"_tidb":{"commitTs":1.5}}"#,
            br#"{"type":"INSERT","data":[{"a":"1"}],"_tidb":{"commitTs":01}}"#,
            br#"{"type":"INSERT","data":[{"a":"1"}]} x"#,
            br#"{"type":"MERGE","data":[{"a":"1"}]}"#,
            br#"{"type":"INSERT","data":[]}"#,
            br#"{"type":"INSERT","data":[{"a":tru}]}"#,
            // `-0`: serde_json reads it as the float -0.0 (1.0.154 `de.rs` `parse_number`:
            // "Convert into a float if we underflow, or on `-0`"), which an i64 `es` refuses.
            br#"{"isDdl":false,"type":"INSERT","es":-0,"data":[{"a":"1"}]}"#,
            // Escaped (here: lone-surrogate) column names in rows the fast path skips: the
            // skipped rows' names are read as plain strings, so escapes go to serde, which
            // refuses these (found by the step-6a audit: accepting escapes there let them in).
            br#"{"isDdl":false,"type":"INSERT","data":[{"a":"1"},{"\ud800":"2"}]}"#,
            br#"{"isDdl":false,"type":"INSERT","data":[{"a":"1"}],"old":[{"\ud800":"2"}]}"#,
            br#"{"isDdl":true,"type":"CREATE","data":[{"\udc00":"2"}]}"#,
        ] {
            let text = std::str::from_utf8(v).unwrap();
            assert!(fast::decode(text).is_none(), "{text}");
            assert_eq!(debug(&decode(v)), debug(&decode_serde(v)), "{text}");
        }
    }

    /// A skipped member nested deeper than the fast path's limit goes to serde (which refuses
    /// it at its own recursion limit) instead of recursing: without the limit, 200,000 `[`
    /// overflowed the stack and aborted the process (step-6a audit).
    #[test]
    fn deep_nesting_in_skipped_members_goes_to_serde() {
        let deep = "[".repeat(200_000);
        for text in [
            format!(r#"{{"isDdl":false,"type":"INSERT","zz":{deep},"data":[{{"a":"1"}}]}}"#),
            format!(
                r#"{{"isDdl":false,"type":"INSERT","sqlType":{{"a":{deep}}},"data":[{{"a":"1"}}]}}"#
            ),
            format!(r#"{{"isDdl":false,"type":"INSERT","data":[{{"a":"1"}},{{"b":{deep}}}]}}"#),
        ] {
            assert!(fast::decode(&text).is_none(), "{}", &text[..60]);
            assert!(decode(text.as_bytes()).is_err(), "{}", &text[..60]);
        }
    }

    /// Mutations of the corpus: whenever the fast path decodes a message, serde decodes it too
    /// and to the same event (since session 13 also where serde refuses: the fast path then
    /// steps aside, `docs/performance.md` step 6a).
    #[test]
    fn fast_path_agrees_with_serde_on_mutations() {
        let corpus = corpus();
        const BYTES: &[u8] = b"{}[]\",:\\ 0-1.eEtrufalsn\tx";
        let (mut agreed, mut both_ok) = (0, 0);
        for v in
            crate::protocol::test_support::mutants(&corpus, 0x9E37_79B9_7F4A_7C15, BYTES, 30_000)
        {
            let Ok(text) = std::str::from_utf8(&v) else {
                continue;
            };
            let slow = decode_serde(&v);
            if let Some(ev) = fast::decode(text) {
                assert_eq!(debug(&Ok(ev)), debug(&slow), "{text}");
                both_ok += 1;
            }
            agreed += 1;
        }
        assert!(agreed > 20_000 && both_ok > 1_000, "{agreed} {both_ok}");
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

    /// Audit (audit-canal): messages built from TiCDC's shape with adversarial parts aimed at
    /// the step-3 fast path: JSON whitespace at every token boundary (the `eat`/`next_member`/
    /// member-guess shortcuts), integers of 1–22 digits with signs, leading zeros, fractions and
    /// exponents (`u64` 8 digits at a time, overflow from the 20th digit), flat `sqlType`/
    /// `mysqlType` maps whose strings hold `{}[]"\` and escapes at every offset of the 16-byte
    /// blocks and end within 16 bytes of the buffer end, lone surrogates, non-ASCII, control
    /// bytes, repeated and reordered members, trailing bytes. The fast path must give serde's
    /// event or step aside, and `decode` must equal serde, on valid and invalid JSON alike.
    #[test]
    fn audit_generated_messages_agree_with_serde() {
        struct Rng(u64);
        impl Rng {
            fn next(&mut self) -> u64 {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0
            }
            fn below(&mut self, n: usize) -> usize {
                (self.next() % n as u64) as usize
            }
            fn one_in(&mut self, n: usize) -> bool {
                self.below(n) == 0
            }
        }
        fn digits(r: &mut Rng, n: usize) -> String {
            (0..n)
                .map(|_| char::from(b'0' + r.below(10) as u8))
                .collect()
        }
        fn number(r: &mut Rng) -> String {
            // Mostly what TiCDC writes (13-digit ms, 18-digit TSO), so that messages decode.
            if !r.one_in(4) {
                let n = if r.one_in(2) { 12 } else { 17 };
                return format!("{}{}", 1 + r.below(9), digits(r, n));
            }
            let mut n = match r.below(9) {
                0 => {
                    let n = 1 + r.below(3);
                    digits(r, n)
                }
                1 => format!("{}{}", 1 + r.below(9), {
                    let n = 12;
                    digits(r, n)
                }),
                2 => format!("{}{}", 1 + r.below(9), {
                    let n = 17 + r.below(2);
                    digits(r, n)
                }),
                3 => [
                    "18446744073709551615",
                    "18446744073709551616",
                    "9999999999999999999",
                ][r.below(3)]
                .to_string(),
                4 => [
                    "9223372036854775807",
                    "9223372036854775808",
                    "99999999999999999999",
                ][r.below(3)]
                .to_string(),
                5 => format!("{}{}", 1 + r.below(9), {
                    let n = 19 + r.below(3);
                    digits(r, n)
                }),
                6 => format!("0{}", {
                    let n = r.below(17);
                    digits(r, n)
                }),
                7 => format!("{}{}", 1 + r.below(9), {
                    let n = 7 + r.below(10);
                    digits(r, n)
                }),
                _ => "0".to_string(),
            };
            if r.one_in(4) {
                n.insert(0, '-');
            }
            match r.below(12) {
                0 => n.push_str(".5"),
                1 => n.push_str("e3"),
                2 => n.push_str("E-1"),
                _ => {}
            }
            n
        }
        /// A JSON string literal (valid unless a raw control byte is picked). `surrogates`: lone
        /// surrogate escapes, which serde_json accepts in a `RawValue` but not in a decoded
        /// string, so a name holding one is refused by serde even in a member the fast path skips
        /// (the documented deviation, `docs/protocols.md`): names go without them.
        fn string(r: &mut Rng, surrogates: bool) -> String {
            const PARTS: &[&str] = &[
                "a",
                "b",
                "x",
                " ",
                "{",
                "}",
                "[",
                "]",
                ",",
                ":",
                "\\\"",
                "\\\\",
                "\\/",
                "\\n",
                "\\t",
                "\\u00e9",
                "\\ud800",
                "\\udc00x",
                "\\u2028",
                "é",
                "🦀",
                "\u{2028}",
                "enum('a}','b]')",
                "0123456789abcdef",
            ];
            let mut s = String::from("\"");
            for _ in 0..r.below(24) {
                let part = PARTS[r.below(PARTS.len())];
                if r.one_in(300) {
                    s.push('\n');
                } else if surrogates || !part.starts_with("\\ud") {
                    s.push_str(part);
                }
            }
            s.push('"');
            s
        }
        fn name(r: &mut Rng) -> String {
            if r.one_in(8) {
                string(r, false)
            } else {
                format!(
                    "\"{}\"",
                    ["id", "name", "c_1", "a}b", "x]", "é"][r.below(6)]
                )
            }
        }
        fn flat_map(r: &mut Rng, strings: bool) -> String {
            if r.one_in(6) {
                return "null".into();
            }
            let mut m = String::from("{");
            for k in 0..r.below(6) {
                if k > 0 {
                    m.push(',');
                }
                m.push_str(&name(r));
                m.push(':');
                m.push_str(&if strings { string(r, true) } else { number(r) });
            }
            m.push('}');
            m
        }
        fn value(r: &mut Rng) -> String {
            match r.below(8) {
                0..=3 => string(r, true),
                4 => number(r),
                5 => ["null", "true", "false"][r.below(3)].to_string(),
                6 => format!("{{\n  \"a\": [1,\r\n {}]\n}}", string(r, true)),
                _ => format!("[{}, {}]", number(r), string(r, true)),
            }
        }
        fn row(r: &mut Rng) -> String {
            let mut m = String::from("{");
            for k in 0..1 + r.below(4) {
                if k > 0 {
                    m.push(',');
                }
                m.push_str(&name(r));
                m.push(':');
                m.push_str(&value(r));
            }
            m.push('}');
            m
        }
        fn rows(r: &mut Rng) -> String {
            match r.below(8) {
                0 => "null".into(),
                1 => "[]".into(),
                2 => format!("[{},{}]", row(r), row(r)),
                _ => format!("[{}]", row(r)),
            }
        }
        /// JSON whitespace after every structural byte outside strings, at random.
        fn spaced(r: &mut Rng, compact: &str) -> String {
            let mut out = String::new();
            let (mut in_str, mut esc) = (false, false);
            for c in compact.chars() {
                out.push(c);
                if in_str {
                    if esc {
                        esc = false;
                    } else if c == '\\' {
                        esc = true;
                    } else if c == '"' {
                        in_str = false;
                    }
                    continue;
                }
                if c == '"' {
                    in_str = true;
                }
                if matches!(c, '{' | '}' | '[' | ']' | ':' | ',') && r.one_in(4) {
                    for _ in 0..1 + r.below(3) {
                        out.push([' ', '\t', '\n', '\r'][r.below(4)]);
                    }
                }
            }
            out
        }

        let mut r = Rng(0x5DEE_CE66_D1CE_4E5B);
        let (mut valid, mut fast_hits, mut serde_ok) = (0, 0, 0);
        for _ in 0..AUDIT_ROUNDS {
            let (is_ddl, ty) = match r.below(6) {
                0 => ("false", "\"INSERT\""),
                1 => ("false", "\"DELETE\""),
                2 => ("false", "\"TIDB_WATERMARK\""),
                3 => ("true", "\"CREATE\""),
                _ => ("false", "\"UPDATE\""),
            };
            let mut members: Vec<(&str, String)> = vec![
                ("id", number(&mut r)),
                (
                    "database",
                    if r.one_in(10) {
                        "null".into()
                    } else {
                        name(&mut r)
                    },
                ),
                ("table", name(&mut r)),
                ("pkNames", format!("[{}]", name(&mut r))),
                ("isDdl", is_ddl.into()),
                ("type", ty.into()),
                ("es", number(&mut r)),
                ("ts", number(&mut r)),
                (
                    "sql",
                    if r.one_in(4) {
                        string(&mut r, false)
                    } else {
                        "\"\"".into()
                    },
                ),
                ("sqlType", flat_map(&mut r, false)),
                ("mysqlType", flat_map(&mut r, true)),
                ("data", rows(&mut r)),
                ("old", rows(&mut r)),
                (
                    "_tidb",
                    format!(
                        r#"{{"commitTs":{},"watermarkTs":{}}}"#,
                        number(&mut r),
                        number(&mut r)
                    ),
                ),
            ];
            if r.one_in(10) {
                let k = r.below(members.len());
                let dup = members[k].clone();
                members.insert(r.below(members.len() + 1), dup);
            }
            if r.one_in(10) {
                let (a, b) = (r.below(members.len()), r.below(members.len()));
                members.swap(a, b);
            }
            if r.one_in(3) {
                // `sqlType`/`mysqlType` last: their end lies within 16 bytes of the buffer end.
                let k = 9 + r.below(2);
                let m = members.remove(k);
                members.push(m);
            }
            let body: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("\"{k}\":{v}"))
                .collect();
            let mut text = format!("{{{}}}", body.join(","));
            if r.one_in(2) {
                text = spaced(&mut r, &text);
            }
            match r.below(20) {
                0 => text.push_str(" \n"),
                1 => text.push('x'),
                2 => text.insert(0, ' '),
                _ => {}
            }
            // Invalid JSON (a damaged tail, a bad escape) is checked too: the fast path must
            // step aside there (since session 13; before, only valid JSON was compared).
            valid += usize::from(serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok());
            let slow = decode_serde(text.as_bytes());
            serde_ok += usize::from(slow.is_ok());
            if let Some(ev) = fast::decode(&text) {
                fast_hits += 1;
                assert_eq!(debug(&Ok(ev)), debug(&slow), "{text}");
            }
            assert_eq!(debug(&decode(text.as_bytes())), debug(&slow), "{text}");
        }
        assert!(
            valid > AUDIT_ROUNDS / 2 && fast_hits > valid / 10 && serde_ok >= fast_hits,
            "{valid} valid, {fast_hits} fast, {serde_ok} serde ok"
        );
    }

    const AUDIT_ROUNDS: usize = 20_000;
}
