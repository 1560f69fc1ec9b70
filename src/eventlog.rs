//! The ndjson event log: one line per row or DDL event, shaped for Filebeat's ndjson parser and
//! the `cdc-events-*` index (format: `docs/event-log.md`).
//!
//! Lines are rendered by hand (no intermediate `serde_json::Value`) straight into one 256 KiB
//! buffer, a message's lines all at once, and written in large appends. Durability is decided by
//! the consumer: it syncs ([`EventLog::flush_to_os`] + [`DurableHandle::sync`], or
//! [`EventLog::flush_durable`]) before committing offsets, so a committed offset always means the
//! events before it are on disk; a failed sync ends that for good ([`SyncFailure`]). Size/age
//! rotation ([`Rotation`]) runs between messages, after a sync of the old file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::event::{ChangeEvent, Column, ColumnValue, EventKind};

/// Where in Kafka an event came from.
#[derive(Debug, Clone, Copy)]
pub struct KafkaPosition<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// What the log shows of row values.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Include `cdc.values` / `cdc.old_values`.
    pub log_values: bool,
    /// Lower-case substrings: a column whose name contains one is masked as `"***"`.
    pub redact: Vec<String>,
}

impl LogOptions {
    pub fn new(log_values: bool, redact: &[String]) -> Self {
        LogOptions {
            log_values,
            redact: redact
                .iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }

    fn is_redacted(&self, column: &str) -> bool {
        self.redact
            .iter()
            .any(|pattern| contains_ignore_ascii_case(column, pattern))
    }
}

/// `needle` must already be lower case.
fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    n.is_empty()
        || h.windows(n.len())
            .any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b))
}

/// Whether an event kind gets a log line (watermarks and bootstrap do not).
pub fn is_logged(kind: EventKind) -> bool {
    matches!(kind, EventKind::Row | EventKind::Ddl)
}

const REDACTED: &str = "\"***\"";
/// DDL statements can be long; the `message` summary keeps the start, `cdc.ddl.query` has all.
const MESSAGE_QUERY_CHARS: usize = 200;

/// Render one event as a JSON line (with the trailing newline) appended to `out`.
///
/// Hot path: everything is written straight into `out` (no `format!`, no intermediate
/// `String`s), so a line costs no allocation once `out` has grown to line size.
pub fn render_line(
    ev: &ChangeEvent<'_>,
    pos: &KafkaPosition<'_>,
    opts: &LogOptions,
    now_ms: i64,
    out: &mut Vec<u8>,
) {
    render_line_with(ev, pos, opts, now_ms, &mut Stamps::default(), out);
}

/// The last rendered RFC 3339 text of one timestamp: consecutive events usually share their
/// processing millisecond and, within a transaction, their commit millisecond; when they do not,
/// they usually share the second (only the milliseconds are rewritten) or the day (the date is
/// kept, `civil_from_days` skipped). `tests::cached_timestamps_render_like_fresh_ones` proves it
/// equal to [`write_rfc3339_ms`] over runs that stay in a second and cross seconds, days, years
/// and the epoch, forwards and backwards.
#[derive(Clone, Copy)]
struct StampCache {
    /// `text` renders `ms` (false: nothing cached, or a year outside 0..=9999).
    valid: bool,
    ms: i64,
    /// Unix second and day of `ms`.
    sec: i64,
    day: i64,
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`: always 24 bytes for years 0..=9999.
    text: [u8; 24],
}

impl Default for StampCache {
    fn default() -> Self {
        StampCache {
            valid: false,
            ms: 0,
            sec: 0,
            day: 0,
            text: *b"0000-00-00T00:00:00.000Z",
        }
    }
}

impl StampCache {
    fn write(&mut self, out: &mut Vec<u8>, ms: i64) {
        if (ms != self.ms || !self.valid) && !self.update(ms) {
            // A year outside 0..=9999 (never a real commit time): rendered uncached.
            write_rfc3339_ms(out, ms);
            return;
        }
        // A fixed 24-byte copy: inlined, no `memcpy` call.
        out.extend_from_slice(&self.text);
    }

    /// Make `text` the rendering of `ms`, recomputing only what changed; false if the year is
    /// outside 0..=9999 (then nothing is cached).
    fn update(&mut self, ms: i64) -> bool {
        let sec = ms.div_euclid(1000);
        if !self.valid || sec != self.sec {
            let day = sec.div_euclid(86_400);
            if !self.valid || day != self.day {
                let (y, m, d) = civil_from_days(day);
                if !(0..=9999).contains(&y) {
                    self.valid = false;
                    return false;
                }
                let y = y as usize;
                self.text[0..2].copy_from_slice(pair(y / 100));
                self.text[2..4].copy_from_slice(pair(y % 100));
                self.text[5..7].copy_from_slice(pair(m as usize));
                self.text[8..10].copy_from_slice(pair(d as usize));
                self.day = day;
            }
            let sod = sec.rem_euclid(86_400) as usize;
            self.text[11..13].copy_from_slice(pair(sod / 3600));
            self.text[14..16].copy_from_slice(pair(sod % 3600 / 60));
            self.text[17..19].copy_from_slice(pair(sod % 60));
            self.sec = sec;
        }
        let milli = ms.rem_euclid(1000) as usize;
        self.text[20] = b'0' + (milli / 100) as u8;
        self.text[21..23].copy_from_slice(pair(milli % 100));
        self.ms = ms;
        self.valid = true;
        true
    }
}

/// `00`..`99`: the decimal digit pairs [`StampCache`] writes a timestamp's fields with.
const PAIRS: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

/// The two decimal digits of `v` (< 100).
fn pair(v: usize) -> &'static [u8; 2] {
    &PAIRS[v]
}

/// Caches for `@timestamp` (commit time) and `event.created` (processing time).
#[derive(Default, Clone, Copy)]
struct Stamps {
    commit: StampCache,
    created: StampCache,
}

fn render_line_with(
    ev: &ChangeEvent<'_>,
    pos: &KafkaPosition<'_>,
    opts: &LogOptions,
    now_ms: i64,
    stamps: &mut Stamps,
    out: &mut Vec<u8>,
) {
    let commit_ms = ev.commit_time_ms().unwrap_or(now_ms);
    out.extend_from_slice(b"{\"@timestamp\":\"");
    stamps.commit.write(out, commit_ms);
    out.extend_from_slice(
        b"\",\"event\":{\"kind\":\"event\",\"dataset\":\"cdcmon.cdc\",\"action\":",
    );
    // Op, kind and protocol names are fixed ASCII words that JSON never escapes
    // (`tests::fixed_names_need_no_escaping`): copied without the escape scan.
    match (ev.op, &ev.ddl) {
        (Some(op), _) => write_plain_str(out, op.as_str()),
        (None, Some(ddl)) => write_str(out, &ddl.ddl_type),
        (None, None) => write_plain_str(out, ev.kind.as_str()),
    }
    out.extend_from_slice(b",\"created\":\"");
    stamps.created.write(out, now_ms);
    out.extend_from_slice(b"\"},\"cdc\":{\"kind\":\"");
    out.extend_from_slice(ev.kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"db\":\"");
    // `message` repeats db and table: it copies these escaped texts.
    let db = escaped_range(out, &ev.db);
    out.extend_from_slice(b"\",\"table\":\"");
    let table = escaped_range(out, &ev.table);
    out.push(b'"');
    if let Some(op) = ev.op {
        out.extend_from_slice(b",\"op\":");
        write_plain_str(out, op.as_str());
    }
    if let Some(ts) = ev.commit_ts {
        out.extend_from_slice(b",\"commit_ts\":");
        write_u64(out, ts);
    }
    out.extend_from_slice(b",\"protocol\":");
    write_plain_str(out, ev.protocol.as_str());
    if let Some(ddl) = &ev.ddl {
        out.extend_from_slice(b",\"ddl\":{\"type\":");
        write_str(out, &ddl.ddl_type);
        out.extend_from_slice(b",\"query\":");
        write_str(out, &ddl.query);
        out.push(b'}');
    }
    // Where the escaped key summary sits in `out`, so `message` can copy it instead of
    // rendering it again.
    let mut summary = 0..0;
    if ev.kind == EventKind::Row {
        out.extend_from_slice(b",\"keys\":");
        let first_name = write_columns(out, &ev.keys, opts);
        out.extend_from_slice(b",\"key\":\"");
        summary.start = out.len();
        write_key_summary(out, &ev.keys, opts, first_name);
        summary.end = out.len();
        out.push(b'"');
        out.extend_from_slice(if ev.partial {
            b",\"partial\":true"
        } else {
            b",\"partial\":false"
        });
        // TiDB row checksum (simple, Avro): `cdc.checksum` ok/mismatch/absent.
        if let Some(ck) = &ev.checksum {
            out.extend_from_slice(b",\"checksum\":");
            write_str(out, ck.verdict.as_str());
            if ck.corrupted {
                out.extend_from_slice(b",\"checksum_corrupted\":true");
            }
        }
        if opts.log_values {
            out.extend_from_slice(b",\"values\":");
            write_columns(out, &ev.values, opts);
            if !ev.old_values.is_empty() {
                out.extend_from_slice(b",\"old_values\":");
                write_columns(out, &ev.old_values, opts);
            }
        }
    }
    if let Some(location) = &ev.claim_check_location {
        out.extend_from_slice(b",\"claim_check_location\":");
        write_str(out, location);
    }
    out.extend_from_slice(b"},\"kafka\":{\"topic\":");
    write_str(out, pos.topic);
    out.extend_from_slice(b",\"partition\":");
    write_i64(out, i64::from(pos.partition));
    out.extend_from_slice(b",\"offset\":");
    write_i64(out, pos.offset);
    out.extend_from_slice(b"},\"message\":\"");
    write_summary_message(out, ev, summary, [db, table]);
    out.extend_from_slice(b"\"}\n");
}

/// The `message` text, escaped, without quotes: `insert app.users id=1` /
/// `CREATE app.users: CREATE TABLE ...`. `summary` is the already escaped key summary in `out`.
/// `db_table` are the escaped `cdc.db` and `cdc.table` texts in `out`.
fn write_summary_message(
    out: &mut Vec<u8>,
    ev: &ChangeEvent<'_>,
    summary: Range<usize>,
    db_table: [Range<usize>; 2],
) {
    match (ev.op, &ev.ddl) {
        (Some(op), _) => {
            out.extend_from_slice(op.as_str().as_bytes());
            out.push(b' ');
            write_table(out, &db_table);
            if !ev.keys.is_empty() {
                out.push(b' ');
                out.extend_from_within(summary);
            }
            if ev.partial {
                out.extend_from_slice(b" (partial)");
            }
        }
        (None, Some(ddl)) => {
            write_escaped(out, &ddl.ddl_type);
            out.push(b' ');
            write_table(out, &db_table);
            out.extend_from_slice(b": ");
            match ddl.query.char_indices().nth(MESSAGE_QUERY_CHARS) {
                Some((cut, _)) => {
                    write_escaped(out, ddl.query.get(..cut).unwrap_or_default());
                    out.extend_from_slice("…".as_bytes());
                }
                None => write_escaped(out, &ddl.query),
            }
        }
        (None, None) => {
            out.extend_from_slice(ev.kind.as_str().as_bytes());
            out.push(b' ');
            write_table(out, &db_table);
        }
    }
}

/// `db.table` (`db` alone without a table), copied from their escaped texts in `out`.
fn write_table(out: &mut Vec<u8>, [db, table]: &[Range<usize>; 2]) {
    out.extend_from_within(db.clone());
    if !table.is_empty() {
        out.push(b'.');
        out.extend_from_within(table.clone());
    }
}

/// `s` escaped into `out`; returns where it went.
fn escaped_range(out: &mut Vec<u8>, s: &str) -> Range<usize> {
    let start = out.len();
    write_escaped(out, s);
    start..out.len()
}

/// `col=val,col2=val2` (string values unquoted, redacted columns `***`), JSON-escaped without
/// quotes, straight into `out`. `tests::key_summary` is the plain-`String` reference it must equal.
/// `first_name` is where the first key's escaped name already sits in `out` (`write_columns`
/// of `cdc.keys`): copied, not escaped again.
fn write_key_summary(
    out: &mut Vec<u8>,
    keys: &[Column<'_>],
    opts: &LogOptions,
    first_name: Range<usize>,
) {
    for (i, col) in keys.iter().enumerate() {
        if i > 0 {
            out.push(b',');
            write_escaped(out, &col.name);
        } else {
            out.extend_from_within(first_name.clone());
        }
        out.push(b'=');
        if opts.is_redacted(&col.name) {
            out.extend_from_slice(b"***");
            continue;
        }
        let text = col.value.get();
        match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            // A JSON string without backslashes is its own escaped text: copy it.
            Some(inner) if !inner.contains('\\') => out.extend_from_slice(inner.as_bytes()),
            Some(_) => {
                let mut plain = String::new();
                push_plain_value(&mut plain, &col.value);
                write_escaped(out, &plain);
            }
            // Numbers, booleans, null: JSON text, never in need of escaping; objects and
            // arrays (not keys in practice) may hold quotes.
            None => write_escaped(out, text),
        }
    }
}

/// A JSON string value without its quotes and escapes; anything else as its JSON text.
fn push_plain_value(s: &mut String, value: &ColumnValue<'_>) {
    let text = value.get();
    if text.starts_with('"') {
        match serde_json::from_str::<std::borrow::Cow<'_, str>>(text) {
            Ok(v) => s.push_str(&v),
            Err(_) => s.push_str(text),
        }
    } else {
        s.push_str(text);
    }
}

/// `{"name":value,...}`; returns where the first column's escaped name (without quotes) went
/// in `out` (empty without columns).
fn write_columns(out: &mut Vec<u8>, cols: &[Column<'_>], opts: &LogOptions) -> Range<usize> {
    out.push(b'{');
    let mut first_name = 0..0;
    for (i, col) in cols.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        let name = escaped_range(out, &col.name);
        if i == 0 {
            first_name = name;
        }
        out.push(b'"');
        out.push(b':');
        if opts.is_redacted(&col.name) {
            out.extend_from_slice(REDACTED.as_bytes());
        } else {
            write_raw(out, col.value.get());
        }
    }
    out.push(b'}');
    first_name
}

/// Raw JSON text straight from the message: already valid JSON, no re-encoding. An object or
/// array value may be pretty-printed; its line breaks can only be insignificant whitespace (a
/// JSON string cannot hold a raw control character), so they become spaces and the event stays
/// on one line (found by the fuzzer, docs/fuzzing.md).
fn write_raw(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    // A value that starts with a quote is one JSON string (a `ColumnValue` has no surrounding
    // whitespace), which cannot hold a raw line break: no scan (most values are strings).
    if bytes.first() == Some(&b'"') || !bytes.iter().any(|&b| b == b'\n' || b == b'\r') {
        out.extend_from_slice(bytes);
        return;
    }
    out.extend(bytes.iter().map(|&b| match b {
        b'\n' | b'\r' => b' ',
        b => b,
    }));
}

/// A JSON string literal of a fixed name that needs no escaping (op, kind, protocol).
fn write_plain_str(out: &mut Vec<u8>, s: &str) {
    debug_assert!(first_to_escape(s.as_bytes()).is_none(), "{s:?}");
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// A JSON string literal, escaped.
fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_escaped(out, s);
    out.push(b'"');
}

/// The JSON escaping of `s` without quotes, byte for byte what `serde_json` writes: `"` `\`
/// and control characters escaped (`\n` etc. where JSON has a short form), the rest verbatim.
fn write_escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // Names, ops and key values almost never need escaping: find out 8 bytes at a time.
    let Some(first) = first_to_escape(bytes) else {
        out.extend_from_slice(bytes);
        return;
    };
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate().skip(first) {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        start = i + 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Index of the first byte JSON must escape (`"`, `\`, below 0x20), word-at-a-time (SWAR). The
/// last 1..=7 bytes (all of most names) are checked as one word too, padded with spaces (which
/// need no escaping) and read as 4 + 2 + 1 bytes; only a word that needs escaping is scanned
/// byte by byte (`tests::swar_escape_scan_finds_the_first_byte_to_escape`).
fn first_to_escape(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Per byte, the high bit is set where the byte is zero (exact for the first such byte,
    // which is all that is needed to know whether a chunk needs the byte-wise scan).
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    let needs_escape = |w: u64| {
        let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        below_space
            | has_zero(w ^ (ONES * u64::from(b'"')))
            | has_zero(w ^ (ONES * u64::from(b'\\')))
            != 0
    };
    let scan_from = |at: usize| {
        bytes[at..]
            .iter()
            .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
            .map(|p| at + p)
    };
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(c);
        if needs_escape(u64::from_le_bytes(word)) {
            return scan_from(at);
        }
        at += 8;
    }
    let rest = chunks.remainder();
    if rest.is_empty() {
        return None;
    }
    // Bytes `len..8` are spaces.
    let w = crate::words::tail_word(rest) | ((ONES * 0x20) & (!0u64 << (rest.len() * 8)));
    if needs_escape(w) { scan_from(at) } else { None }
}

/// Exactly eight decimal ASCII digits of `x` (< 10^8), zero-padded, as one little-endian word
/// (first digit in the lowest byte), computed in lanes of one word (SWAR): split into two
/// four-digit halves (32-bit lanes), each into two two-digit parts (`* 10486 >> 20` is `/ 100`
/// below 43,699), each into two digits (16-bit lanes, `* 103 >> 10` is `/ 10` below 179). No
/// lane product reaches the next lane. `tests::integers_render_like_std` checks it against std.
fn digits8(x: u32) -> u64 {
    let halves = u64::from(x / 10_000) | u64::from(x % 10_000) << 32;
    let hundreds_q = ((halves * 10_486) >> 20) & 0x0000_007f_0000_007f;
    let parts = ((halves - 100 * hundreds_q) << 16) | hundreds_q;
    let tens = ((parts * 103) >> 10) & 0x000f_000f_000f_000f;
    let digits = tens | ((parts - 10 * tens) << 8);
    digits | 0x3030_3030_3030_3030
}

/// `x` (< 10^8) without leading zeros. The eight padded digits are one little-endian word
/// (first digit lowest); shifting the leading `0`s out moves the number to the front, the whole
/// word is appended and cut back to the digit count: fixed-size moves only, no `memcpy` call.
#[inline]
fn write_up_to_8(out: &mut Vec<u8>, x: u32) {
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    let word = digits8(x);
    // Leading `0` digits: the low bytes that equal b'0' (at most 7: `0` keeps one digit).
    let skip = ((word ^ ZEROS).trailing_zeros() / 8).min(7) as usize;
    let end = out.len() + 8 - skip;
    out.extend_from_slice(&(word >> (skip * 8)).to_le_bytes());
    out.truncate(end);
}

/// Decimal digits of `v` (no allocation): eight-digit chunks at fixed positions (a commit ts
/// has 18 digits: three chunks), no variable-length copy (`tests::integers_render_like_std`).
#[inline]
fn write_u64(out: &mut Vec<u8>, v: u64) {
    const E8: u64 = 100_000_000;
    if v < E8 {
        write_up_to_8(out, v as u32);
    } else if v < E8 * E8 {
        write_up_to_8(out, (v / E8) as u32);
        out.extend_from_slice(&digits8((v % E8) as u32).to_le_bytes());
    } else {
        // At most 1844 above 10^16.
        write_up_to_8(out, (v / (E8 * E8)) as u32);
        let rest = v % (E8 * E8);
        out.extend_from_slice(&digits8((rest / E8) as u32).to_le_bytes());
        out.extend_from_slice(&digits8((rest % E8) as u32).to_le_bytes());
    }
}

fn write_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    write_u64(out, v.unsigned_abs());
}

/// `v` as exactly `width` digits (`v` < 10^width).
fn write_padded(out: &mut Vec<u8>, v: u32, width: u32) {
    let mut div = 10u32.pow(width - 1);
    while div > 0 {
        out.push(b'0' + ((v / div) % 10) as u8);
        div /= 10;
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-24T11:33:57.123Z`.
pub fn write_rfc3339_ms(out: &mut Vec<u8>, unix_ms: i64) {
    let secs = unix_ms.div_euclid(1000);
    let ms = unix_ms.rem_euclid(1000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    if (0..=9999).contains(&y) {
        write_padded(out, y as u32, 4);
    } else {
        // Outside RFC 3339's range (never a real commit time): the cold path may allocate.
        out.extend_from_slice(format!("{y:04}").as_bytes());
    }
    out.push(b'-');
    write_padded(out, m, 2);
    out.push(b'-');
    write_padded(out, d, 2);
    out.push(b'T');
    write_padded(out, sod / 3600, 2);
    out.push(b':');
    write_padded(out, (sod % 3600) / 60, 2);
    out.push(b':');
    write_padded(out, sod % 60, 2);
    out.push(b'.');
    write_padded(out, ms, 3);
    out.push(b'Z');
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The file under the event log: what the writer needs from it. The daemon uses
/// [`std::fs::File`]; tests wrap one to inject write and sync failures into the real consume
/// loop (`tests/event_log_durability.rs`).
pub trait LogFile: Send + Sync {
    /// One `write(2)` at the end of the file (opened for append); may write less than `buf`.
    fn write(&self, buf: &[u8]) -> io::Result<usize>;
    /// `fdatasync(2)`.
    fn sync_data(&self) -> io::Result<()>;
    /// The underlying file, for its metadata and the torn-tail check at open.
    fn file(&self) -> &File;
}

impl LogFile for File {
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        Write::write(&mut &*self, buf)
    }
    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
    fn file(&self) -> &File {
        self
    }
}

/// The file-system operations of the event log and its rotation. [`OsFs`] in the daemon; tests
/// wrap it to fail or "crash" at a chosen step.
pub trait LogFs: Send + Sync {
    /// Open (create if absent) `path` for appending.
    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn LogFile>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// `fsync(2)` of a directory, so renames and new entries in it survive a crash.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFs;

impl LogFs for OsFs {
    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn LogFile>> {
        // Readable too: opening checks the last byte for a torn line.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        Ok(Arc::new(file))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// When the event log is rotated (`--event-log-max-bytes`, `--event-log-max-age-secs`,
/// `--event-log-keep`; `docs/event-log.md`).
#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    /// Rotate once the file holds this many bytes; 0 = never.
    pub max_bytes: u64,
    /// Rotate once the file is this old (and not empty); `None` = never.
    pub max_age: Option<Duration>,
    /// Rotated files kept: `PATH.1` (newest) … `PATH.keep`.
    pub keep: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_bytes: 0,
            max_age: None,
            keep: 5,
        }
    }
}

impl Rotation {
    pub fn enabled(&self) -> bool {
        self.max_bytes > 0 || self.max_age.is_some()
    }
}

/// A failed `fdatasync` of the event log (or of its directory after a rotation). Linux reports a
/// writeback error once and may have dropped the unwritten pages: a later sync can succeed
/// without those lines ever reaching the disk ("fsyncgate"). So a failure is final for this
/// process: every later sync reports it again and nothing past the last good sync is committed.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "fdatasync of event log {path} failed: {source}; lines written since the last successful \
     sync may not be on disk, so no offset past it is committed (exiting: a restart reads them \
     again)"
)]
pub struct SyncFailure {
    pub path: PathBuf,
    #[source]
    pub source: Arc<io::Error>,
}

impl SyncFailure {
    /// The errno of the failed sync, when the OS gave one.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// Serializes every sync of the event log and remembers the first failure for good. Two syncs
/// must not overlap: the kernel reports a writeback error to only one of two concurrent
/// `fdatasync`s of the same open file, and the other would then commit.
#[derive(Default)]
struct SyncGate {
    failure: Mutex<Option<SyncFailure>>,
}

impl SyncGate {
    fn lock(&self) -> MutexGuard<'_, Option<SyncFailure>> {
        self.failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Run `sync` unless a sync already failed; record its failure.
    fn sync(&self, path: &Path, sync: impl FnOnce() -> io::Result<()>) -> Result<(), SyncFailure> {
        let mut failure = self.lock();
        if let Some(f) = &*failure {
            return Err(f.clone());
        }
        sync().map_err(|e| {
            let f = SyncFailure {
                path: path.to_owned(),
                source: Arc::new(e),
            };
            *failure = Some(f.clone());
            f
        })
    }

    fn failure(&self) -> Option<SyncFailure> {
        self.lock().clone()
    }
}

/// What [`EventLog::flush_to_os`] hands out: a sync of the file the flushed lines are in, which
/// can run off the consume loop.
pub struct DurableHandle {
    file: Arc<dyn LogFile>,
    path: Arc<Path>,
    gate: Arc<SyncGate>,
}

impl DurableHandle {
    /// `fdatasync` the file; once any sync of this log failed, always that failure.
    pub fn sync(&self) -> Result<(), SyncFailure> {
        self.gate.sync(&self.path, || self.file.sync_data())
    }
}

enum Destination {
    Stdout(io::Stdout),
    File(FileLog),
}

/// The file destination: the open file, its size and age for rotation, the sync gate.
struct FileLog {
    path: Arc<Path>,
    fs: Arc<dyn LogFs>,
    file: Arc<dyn LogFile>,
    /// A regular file (synced, rotatable); `false` for a device or pipe, never synced.
    regular: bool,
    /// Bytes in the current file (what was there at open plus what this process wrote).
    bytes: u64,
    /// When the current file was started (its birth time when the file system reports it).
    started: Instant,
    rotation: Rotation,
    gate: Arc<SyncGate>,
}

/// The event-log writer: whole messages rendered into one buffer, written in large appends,
/// explicit durable flush, rotation at commit time.
pub struct EventLog {
    dest: Destination,
    opts: LogOptions,
    /// Rendered lines not yet in the file: always whole messages, so a write failure never
    /// leaves part of a message to be rendered again (issue 10.7).
    buf: Vec<u8>,
    /// How much of the front of `buf` a short write already put in the file; the next write
    /// resumes there, which completes a line a short write tore.
    written: usize,
    stamps: Stamps,
}

/// 256 KiB: large enough that a burst of events costs few write syscalls.
const BUFFER_BYTES: usize = 256 * 1024;

impl EventLog {
    /// `path` `-` means stdout; anything else is a file opened for append (created if absent),
    /// never rotated.
    pub fn open(path: &str, opts: LogOptions) -> anyhow::Result<Self> {
        Self::open_with(path, opts, Rotation::default(), Arc::new(OsFs))
    }

    /// [`EventLog::open`] with rotation, on the given file system. A file whose last line was
    /// torn (a `kill -9` in the middle of a write) gets a newline first, so the fragment stays a
    /// line of its own instead of corrupting the next one; its message was never committed and is
    /// read and written again.
    pub fn open_with(
        path: &str,
        opts: LogOptions,
        rotation: Rotation,
        fs: Arc<dyn LogFs>,
    ) -> anyhow::Result<Self> {
        let dest = if path == "-" {
            if rotation.enabled() {
                anyhow::bail!(
                    "--event-log-max-bytes/--event-log-max-age-secs rotate a file; the event \
                     log is `-` (stdout), which cannot be rotated (set --event-log to a path, \
                     or both limits to 0)"
                );
            }
            Destination::Stdout(io::stdout())
        } else {
            if rotation.enabled() && rotation.keep == 0 {
                anyhow::bail!(
                    "--event-log-keep 0 with rotation would delete {path} as soon as it is \
                     rotated, before Filebeat has read it; keep at least 1"
                );
            }
            let path: Arc<Path> = Arc::from(Path::new(path));
            let created = std::fs::symlink_metadata(&path).is_err();
            let (file, bytes, started) = open_file(&*fs, &path)
                .map_err(|e| anyhow::anyhow!("cannot open event log {}: {e}", path.display()))?;
            // A character device or pipe (`/dev/null`, a FIFO to another process): fdatasync
            // fails there with EINVAL, which the sync gate would take as a lost write and stop
            // the daemon on. Such a destination is a stream, like stdout: lines handed to the
            // OS are as durable as it gets, and it cannot be rotated.
            let regular = file
                .file()
                .metadata()
                .map(|m| m.file_type().is_file())
                .map_err(|e| anyhow::anyhow!("cannot stat event log {}: {e}", path.display()))?;
            if !regular && rotation.enabled() {
                anyhow::bail!(
                    "event log {} is not a regular file (a device or pipe), which cannot be \
                     rotated: set --event-log-max-bytes and --event-log-max-age-secs to 0",
                    path.display()
                );
            }
            if created {
                // A new file's name is durable only once its directory is synced: "Calling
                // fsync() does not necessarily ensure that the entry in the directory containing
                // the file has also reached disk. For that an explicit fsync() on a file
                // descriptor for the directory is also needed" (fsync(2)). Without it, lines
                // fdatasync'ed into the new file and committed could vanish with its entry in
                // a power failure (first start, or a restart after a crash between a rotation's
                // rename of PATH and its directory sync).
                let dir = parent_dir(&path);
                fs.sync_dir(&dir).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot sync directory {} after creating event log {}: {e}",
                        dir.display(),
                        path.display()
                    )
                })?;
            }
            Destination::File(FileLog {
                regular,
                path,
                fs,
                file,
                bytes,
                started,
                rotation,
                gate: Arc::new(SyncGate::default()),
            })
        };
        Ok(EventLog {
            dest,
            opts,
            buf: Vec::with_capacity(BUFFER_BYTES + 64 * 1024),
            written: 0,
            stamps: Stamps::default(),
        })
    }

    /// Append the lines of one message's events (only row and DDL events are logged), all or
    /// nothing: if the buffer is full and cannot be written out, nothing of this message is
    /// taken (`Err`) and the caller retries the whole message; otherwise all its lines are
    /// buffered and the message needs no retry. No allocation once the buffer has grown.
    pub fn write_message<'e, 'a: 'e>(
        &mut self,
        events: impl IntoIterator<Item = &'e ChangeEvent<'a>>,
        pos: &KafkaPosition<'_>,
        now_ms: i64,
    ) -> io::Result<()> {
        if self.buf.len() >= BUFFER_BYTES {
            self.write_out()?;
        }
        for ev in events.into_iter().filter(|ev| is_logged(ev.kind)) {
            render_line_with(ev, pos, &self.opts, now_ms, &mut self.stamps, &mut self.buf);
        }
        Ok(())
    }

    /// Write the whole buffer to the destination. A short write or an error keeps the unwritten
    /// rest (and only it) for the next call.
    fn write_out(&mut self) -> io::Result<()> {
        while self.written < self.buf.len() {
            let rest = &self.buf[self.written..];
            let n = match &mut self.dest {
                Destination::Stdout(out) => out.lock().write(rest),
                Destination::File(f) => f.file.write(rest),
            };
            match n {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written += n;
                    if let Destination::File(f) = &mut self.dest {
                        f.bytes += n as u64;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.buf.clear();
        self.written = 0;
        Ok(())
    }

    /// Hand buffered lines to the OS (no disk sync). Returns what to `fdatasync` to make them
    /// durable (a handle that can run off the consume loop), or `None` for stdout, which has
    /// nothing to sync.
    pub fn flush_to_os(&mut self) -> io::Result<Option<DurableHandle>> {
        self.write_out()?;
        match &mut self.dest {
            Destination::Stdout(out) => out.lock().flush().map(|()| None),
            Destination::File(f) if !f.regular => Ok(None),
            Destination::File(f) => Ok(Some(DurableHandle {
                file: f.file.clone(),
                path: f.path.clone(),
                gate: f.gate.clone(),
            })),
        }
    }

    /// Flush buffered lines to the OS and, for a file, to disk (`fdatasync`). After a failed
    /// sync this always fails ([`EventLog::sync_failure`]).
    pub fn flush_durable(&mut self) -> io::Result<()> {
        match self.flush_to_os()? {
            Some(handle) => handle.sync().map_err(io::Error::other),
            None => Ok(()),
        }
    }

    /// The sync failure that ended this log's durability, if one happened.
    pub fn sync_failure(&self) -> Option<SyncFailure> {
        match &self.dest {
            Destination::File(f) => f.gate.failure(),
            Destination::Stdout(_) => None,
        }
    }

    /// Rotate if the file reached `max_bytes` or `max_age` (checked by the consumer once per
    /// commit tick: a byte counter and a clock read, nothing per line). `Ok(true)`: rotated. An
    /// error leaves the current file in use and the rotation due; when it was a failed sync,
    /// [`EventLog::sync_failure`] says so and the caller must stop.
    pub fn rotate_if_due(&mut self) -> io::Result<bool> {
        let Destination::File(f) = &self.dest else {
            return Ok(false);
        };
        let size = f.bytes + (self.buf.len() - self.written) as u64;
        let by_size = f.rotation.max_bytes > 0 && size >= f.rotation.max_bytes;
        let by_age = size > 0
            && f.rotation
                .max_age
                .is_some_and(|age| f.started.elapsed() >= age);
        if !(by_size || by_age) {
            return Ok(false);
        }
        self.rotate()?;
        Ok(true)
    }

    /// logrotate-style: `PATH.keep` → `PATH.keep+1` … `PATH` → `PATH.1`, a fresh `PATH`, the
    /// files above `keep` deleted, then the directory synced. Only at a message boundary (the whole buffer written first) and
    /// only after the old file's lines are on disk, so every committed offset's line stays
    /// durable under whatever name. A crash part-way leaves each file under its old or its new
    /// name (renames go from the oldest down, each into a free slot): nothing uncommitted is
    /// lost, at worst a number is skipped or a file above `keep` is left for the next
    /// rotation to delete (`docs/event-log.md`).
    fn rotate(&mut self) -> io::Result<()> {
        self.write_out()?;
        let Destination::File(f) = &mut self.dest else {
            return Ok(());
        };
        let file = f.file.clone();
        f.gate
            .sync(&f.path, || file.sync_data())
            .map_err(io::Error::other)?;
        let keep = f.rotation.keep;
        let dir = parent_dir(&f.path);
        // Only the numbers that exist (a directory listing, not `keep` renames to try), from
        // the highest down, each one up into a slot that is free (its file already moved up):
        // no rename replaces a file. The expired ones (now above `keep`) are deleted only after
        // the new file exists. Deleting first (a rename onto `.keep`) freed an inode that the
        // new file could get at once (ext4 hands out the lowest free inode of the group);
        // Filebeat's `file_identity.native` then sees, at its next scan, the old `.keep`
        // "renamed" to the new file and resumes at the old file's offset, skipping the new
        // file's first lines whenever it has already grown past that offset (elastic/beats
        // filebeat/input/filestream fswatch.go `watch`: a path whose id moved is a rename;
        // input.go `openFile` restarts from 0 only when the file is smaller than the offset).
        for n in rotated_numbers(&f.path, &dir)? {
            rename_if_exists(&*f.fs, &numbered(&f.path, n), &numbered(&f.path, n + 1))?;
        }
        rename_if_exists(&*f.fs, &f.path, &numbered(&f.path, 1))?;
        let (new_file, bytes, _) = open_file(&*f.fs, &f.path)?;
        // From here on new lines go to the new file, whatever happens below.
        f.file = new_file;
        f.bytes = bytes;
        f.started = Instant::now();
        remove_beyond(&*f.fs, &f.path, &dir, keep);
        let fs = f.fs.clone();
        f.gate
            .sync(&f.path, || fs.sync_dir(&dir))
            .map_err(io::Error::other)?;
        tracing::info!(path = %f.path.display(), keep, "event log rotated");
        Ok(())
    }
}

/// Open `path` for append; returns the file, its size and when it was started. A torn last line
/// gets its newline (see [`EventLog::open_with`]).
fn open_file(fs: &dyn LogFs, path: &Path) -> io::Result<(Arc<dyn LogFile>, u64, Instant)> {
    let file = fs.open_append(path)?;
    let meta = file.file().metadata()?;
    let mut bytes = meta.len();
    if bytes > 0 {
        use std::os::unix::fs::FileExt;
        let mut last = [0u8; 1];
        file.file().read_exact_at(&mut last, bytes - 1)?;
        if last[0] != b'\n' {
            let fragment = torn_fragment_len(file.file(), bytes)?;
            tracing::warn!(
                path = %path.display(),
                fragment_bytes = fragment,
                "event log ends in a torn line (a crash mid-write); terminating it so the next \
                 line starts clean (its events are uncommitted and will be written again)"
            );
            if file.write(b"\n")? != 1 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            bytes += 1;
        }
    }
    // The file's age counts from its birth where the file system reports one (statx), so a
    // restart does not reset --event-log-max-age-secs; otherwise from now.
    let now = Instant::now();
    let started = meta
        .created()
        .ok()
        .and_then(|born| std::time::SystemTime::now().duration_since(born).ok())
        .and_then(|age| now.checked_sub(age))
        .filter(|_| bytes > 0)
        .unwrap_or(now);
    Ok((file, bytes, started))
}

/// Bytes after the last newline of a file of `len` bytes (for the log line; reads at most 1 MiB).
fn torn_fragment_len(file: &File, len: u64) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let window = len.min(1 << 20);
    let mut tail = vec![0u8; window as usize];
    file.read_exact_at(&mut tail, len - window)?;
    Ok(match tail.iter().rposition(|&b| b == b'\n') {
        Some(i) => window - i as u64 - 1,
        None => window,
    })
}

/// `PATH.n`.
pub fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn rename_if_exists(fs: &dyn LogFs, from: &Path, to: &Path) -> io::Result<()> {
    match fs.rename(from, to) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("rename {} -> {}: {e}", from.display(), to.display()),
            )
        }),
    }
}

/// The n of every `PATH.n` in `dir`, highest first.
fn rotated_numbers(path: &Path, dir: &Path) -> io::Result<Vec<u32>> {
    let base = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let mut numbers: Vec<u32> = std::fs::read_dir(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("list {}: {e}", dir.display())))?
        .flatten()
        .filter_map(|entry| {
            entry
                .file_name()
                .to_str()?
                .strip_prefix(base)?
                .strip_prefix('.')?
                .parse()
                .ok()
        })
        .collect();
    numbers.sort_unstable_by_key(|n| std::cmp::Reverse(*n));
    Ok(numbers)
}

/// Delete `PATH.n` for every n > keep (left by a larger keep, or by a crash mid-rotation).
/// Best effort: a file that cannot be deleted is logged and tried again at the next rotation.
fn remove_beyond(fs: &dyn LogFs, path: &Path, dir: &Path, keep: u32) {
    let numbers = match rotated_numbers(path, dir) {
        Ok(numbers) => numbers,
        Err(err) => {
            tracing::warn!(error = %err, "cannot list rotated event logs");
            return;
        }
    };
    for n in numbers.into_iter().filter(|n| *n > keep) {
        let old = numbered(path, n);
        if let Err(err) = fs.remove_file(&old) {
            tracing::warn!(path = %old.display(), error = %err, "cannot delete an expired rotated event log");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use serde_json::value::RawValue;

    /// `render_line` copies these names without the escape scan (`write_plain_str`).
    #[test]
    fn fixed_names_need_no_escaping() {
        use crate::event::{Protocol, RowOp};
        let kinds = [
            EventKind::Row,
            EventKind::Ddl,
            EventKind::Watermark,
            EventKind::Bootstrap,
        ];
        let names = kinds
            .iter()
            .map(|k| k.as_str())
            .chain(RowOp::ALL.iter().map(|o| o.as_str()))
            .chain(
                Protocol::ALL
                    .iter()
                    .chain([&Protocol::Avro])
                    .map(|p| p.as_str()),
            );
        for name in names {
            assert!(!name.is_empty());
            assert_eq!(serde_json::to_string(name).unwrap(), format!("\"{name}\""));
        }
    }

    /// Reference for `write_key_summary`: the same summary built the obvious way, with `String`s.
    fn key_summary(keys: &[Column<'_>], opts: &LogOptions) -> String {
        let mut s = String::new();
        for (i, col) in keys.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&col.name);
            s.push('=');
            if opts.is_redacted(&col.name) {
                s.push_str("***");
            } else {
                push_plain_value(&mut s, &col.value);
            }
        }
        s
    }
    use crate::event::{Ddl, Protocol, RowOp};

    fn raw(s: &str) -> ColumnValue<'static> {
        ColumnValue::from_boxed_raw(RawValue::from_string(s.to_owned()).unwrap())
    }

    fn col(name: &str, v: &str) -> Column<'static> {
        Column {
            name: Cow::Owned(name.to_owned()),
            value: raw(v),
        }
    }

    fn row_event() -> ChangeEvent<'static> {
        let mut ev = ChangeEvent::new(Protocol::CanalJson, EventKind::Row);
        ev.op = Some(RowOp::Update);
        ev.db = "app".into();
        ev.table = "users".into();
        ev.commit_ts = Some(439749918821711874); // 2023-02-27T15:46:52.888Z
        ev.keys = vec![col("id", "\"7\"")].into();
        ev.values = vec![
            col("id", "\"7\""),
            col("name", "\"a \\\"q\\\"\""),
            col("Password_Hash", "\"x\""),
        ];
        ev.old_values = vec![col("name", "null")];
        ev
    }

    const POS: KafkaPosition<'static> = KafkaPosition {
        topic: "app_cdc",
        partition: 2,
        offset: 41,
    };

    #[test]
    fn row_line_has_the_documented_shape() {
        let mut out = Vec::new();
        render_line(
            &row_event(),
            &POS,
            &LogOptions::default(),
            1_700_000_000_001,
            &mut out,
        );
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["@timestamp"], "2023-02-27T15:46:52.888Z");
        assert_eq!(v["event"]["action"], "update");
        assert_eq!(v["event"]["created"], "2023-11-14T22:13:20.001Z");
        assert_eq!(v["cdc"]["kind"], "row");
        assert_eq!(v["cdc"]["db"], "app");
        assert_eq!(v["cdc"]["table"], "users");
        assert_eq!(v["cdc"]["op"], "update");
        assert_eq!(v["cdc"]["commit_ts"].as_u64(), Some(439749918821711874));
        assert_eq!(v["cdc"]["protocol"], "canal-json");
        assert_eq!(v["cdc"]["keys"]["id"], "7");
        assert_eq!(v["cdc"]["key"], "id=7");
        assert_eq!(v["cdc"]["partial"], false);
        assert!(v["cdc"].get("values").is_none(), "values are opt-in");
        assert_eq!(v["kafka"]["topic"], "app_cdc");
        assert_eq!(v["kafka"]["partition"], 2);
        assert_eq!(v["kafka"]["offset"], 41);
        assert_eq!(v["message"], "update app.users id=7");
    }

    #[test]
    fn values_are_opt_in_and_redacted() {
        let mut out = Vec::new();
        let opts = LogOptions::new(true, &["password".into(), " SECRET ".into()]);
        render_line(&row_event(), &POS, &opts, 0, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["cdc"]["values"]["name"], "a \"q\"");
        assert_eq!(v["cdc"]["values"]["Password_Hash"], "***");
        assert_eq!(v["cdc"]["old_values"]["name"], serde_json::Value::Null);
        assert!(!String::from_utf8_lossy(&out).contains("\"x\""));
    }

    #[test]
    fn ddl_line_has_type_and_no_row_fields() {
        let mut ev = ChangeEvent::new(Protocol::Simple, EventKind::Ddl);
        ev.db = "app".into();
        ev.table = "orders".into();
        ev.commit_ts = Some(1 << 18);
        ev.ddl = Some(Ddl {
            ddl_type: "CREATE".into(),
            query: "CREATE TABLE orders (id INT PRIMARY KEY)\n".into(),
        });
        let mut out = Vec::new();
        render_line(&ev, &POS, &LogOptions::default(), 0, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["@timestamp"], "1970-01-01T00:00:00.001Z");
        assert_eq!(v["event"]["action"], "CREATE");
        assert_eq!(v["cdc"]["kind"], "ddl");
        assert!(v["cdc"].get("op").is_none());
        assert!(v["cdc"].get("keys").is_none());
        assert_eq!(v["cdc"]["ddl"]["type"], "CREATE");
        assert_eq!(
            v["cdc"]["ddl"]["query"],
            "CREATE TABLE orders (id INT PRIMARY KEY)\n"
        );
        assert_eq!(
            v["message"],
            "CREATE app.orders: CREATE TABLE orders (id INT PRIMARY KEY)\n"
        );
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1, "one line");
    }

    #[test]
    fn civil_dates_are_right_around_edges() {
        let fmt = |ms| {
            let mut v = Vec::new();
            write_rfc3339_ms(&mut v, ms);
            String::from_utf8(v).unwrap()
        };
        assert_eq!(fmt(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(fmt(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(fmt(1_640_007_049_196), "2021-12-20T13:30:49.196Z");
        assert_eq!(fmt(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(fmt(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn escaping_is_byte_identical_to_serde_json() {
        let mut all_controls = String::new();
        for b in 0u8..0x20 {
            all_controls.push(char::from(b));
        }
        for s in [
            "",
            "plain",
            "a \"q\" b",
            "back\\slash",
            "tab\there\nnl\r",
            "é ü 🦀 …",
            "\u{7f}del",
            &all_controls,
        ] {
            let mut ours = Vec::new();
            write_str(&mut ours, s);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
        for v in [0u64, 7, 10, 99, 439749918821711874, u64::MAX] {
            let mut ours = Vec::new();
            write_u64(&mut ours, v);
            assert_eq!(ours, v.to_string().as_bytes());
        }
        for v in [0i64, -1, 41, i64::MIN, i64::MAX] {
            let mut ours = Vec::new();
            write_i64(&mut ours, v);
            assert_eq!(ours, v.to_string().as_bytes());
        }
    }

    #[test]
    fn swar_escape_scan_finds_the_first_byte_to_escape() {
        let naive = |b: &[u8]| b.iter().position(|&c| c < 0x20 || c == b'"' || c == b'\\');
        let mut cases: Vec<Vec<u8>> = vec![Vec::new(), b"plain ascii text, 29 bytes ok".to_vec()];
        for len in 0..40 {
            for at in 0..len {
                for special in [b'"', b'\\', 0u8, 0x1f, b'\n', 0x20, 0x7f, 0x80, 0xff] {
                    let mut v = vec![b'a'; len];
                    v[at] = special;
                    cases.push(v);
                }
            }
        }
        for c in &cases {
            assert_eq!(first_to_escape(c), naive(c), "{c:?}");
        }
    }

    /// `key` and `message` as the writer rendered them before it wrote into the buffer directly:
    /// the strings built with `String`s, then JSON-encoded.
    #[test]
    fn key_and_message_match_the_string_reference() {
        let opts = LogOptions::new(false, &["secret".into()]);
        let mut ev = row_event();
        ev.db = "d\"b".into();
        ev.table = "t\\able\n".into();
        ev.keys = vec![
            col("id", "\"7\""),
            col("na\"me", "\"a \\\"q\\\" \\u0041\\n\""),
            col("n", "12.5"),
            col("my_SECRET", "\"x\""),
            col("obj", "{\"a\":\"b\"}"),
        ]
        .into();
        ev.partial = true;
        let mut out = Vec::new();
        render_line(&ev, &POS, &opts, 0, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let key = key_summary(&ev.keys, &opts);
        assert_eq!(
            key,
            "id=7,na\"me=a \"q\" A\n,n=12.5,my_SECRET=***,obj={\"a\":\"b\"}"
        );
        assert_eq!(v["cdc"]["key"], key.as_str());
        assert_eq!(
            v["message"],
            format!("update d\"b.t\\able\n {key} (partial)").as_str()
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(&serde_json::to_string(&key).unwrap()),
            "{text}"
        );

        // DDL: the query is cut at 200 characters (not bytes) in `message`.
        let mut ddl = ChangeEvent::new(Protocol::CanalJson, EventKind::Ddl);
        ddl.db = "app".into();
        let query = format!("ALTER TABLE \"x\" {}", "é".repeat(300));
        ddl.ddl = Some(Ddl {
            ddl_type: "ALTER".into(),
            query: query.clone().into(),
        });
        let mut out = Vec::new();
        render_line(&ddl, &POS, &opts, 0, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let cut: String = query.chars().take(MESSAGE_QUERY_CHARS).collect();
        assert_eq!(v["message"], format!("ALTER app: {cut}…").as_str());
        assert_eq!(v["cdc"]["ddl"]["query"], query.as_str());
    }

    #[test]
    fn pretty_printed_raw_values_stay_on_one_line() {
        let mut ev = row_event();
        ev.keys = vec![col("k", "{\n  \"a\": [1,\r\n 2]\n}")].into();
        ev.values = ev.keys.to_vec();
        let mut out = Vec::new();
        render_line(&ev, &POS, &LogOptions::new(true, &[]), 0, &mut out);
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["cdc"]["keys"]["k"]["a"][1], 2);
        assert_eq!(v["cdc"]["values"]["k"]["a"][0], 1);
    }

    /// Audit (audit-canal) of `write_raw`'s shortcut (a value starting with `"` is copied without
    /// the line-break scan): values that reach it through the real canal-json decoder, both its
    /// fast path and serde (a `\u0069d` member name sends the message there), stay on one line
    /// and come out as the message had them. Strings cannot hold a raw line break (serde_json
    /// refuses control bytes in strings, 1.0.154 `read.rs` `ignore_str`); objects and arrays can.
    #[test]
    fn decoded_values_with_line_breaks_stay_on_one_line() {
        use crate::protocol::{Compression, Decoder, ProtocolChoice};
        let values = [
            r#""a\nb\r\nc""#,
            "\"raw \u{2028} and \u{2029}\"",
            r#""esc \u2028 \u000a \"q\" \\ \/""#,
            r#""lone \ud800""#,
            "{\n  \"a\": \"x\\ny\",\r\n  \"b\": [1,\n 2]\n}",
            "[\n\"s\",\r\n{\"k\":\n\"v\"}\n]",
            "-1.5e3",
            "null",
        ];
        let mut decoder = Decoder::new(ProtocolChoice::Auto, Compression::None);
        let opts = LogOptions::new(true, &[]);
        for v in values {
            for id_member in [r#""id""#, r#""\u0069d""#] {
                let msg = format!(
                    r#"{{{id_member}:0,"database":"app","table":"t","pkNames":["k"],"isDdl":false,"type":"INSERT","es":1,"ts":2,"sql":"","sqlType":{{"k":4,"v":12}},"mysqlType":{{"k":"int","v":"json"}},"old":null,"data":[{{"k":{v},"v":{v}}}]}}"#
                );
                let decoded = decoder.decode(None, Some(msg.as_bytes())).unwrap();
                let ev = &decoded.events[0];
                assert_eq!(ev.values[1].value.get(), v, "{msg}");
                let mut out = Vec::new();
                render_line(ev, &POS, &opts, 0, &mut out);
                assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1, "{v:?}");
                assert_eq!(out.last(), Some(&b'\n'));
                serde_json::from_slice::<serde::de::IgnoredAny>(&out).unwrap();
                // `Value` refuses a lone surrogate; every other value must read back equal.
                if !v.contains("\\ud800") {
                    let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
                    let want: serde_json::Value = serde_json::from_str(v).unwrap();
                    assert_eq!(line["cdc"]["values"]["v"], want, "{v:?}");
                    assert_eq!(line["cdc"]["keys"]["k"], want, "{v:?}");
                }
            }
        }
    }

    #[test]
    fn redaction_is_case_insensitive_substring() {
        let opts = LogOptions::new(false, &["token".into()]);
        assert!(opts.is_redacted("api_TOKEN"));
        assert!(!opts.is_redacted("tok"));
        assert_eq!(
            key_summary(&[col("Token", "1"), col("b", "\"x\"")], &opts),
            "Token=***,b=x"
        );
    }

    #[test]
    fn file_destination_appends_and_skips_watermarks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        let path_str = path.to_str().unwrap();
        for _ in 0..2 {
            let mut log = EventLog::open(path_str, LogOptions::default()).unwrap();
            let wm = ChangeEvent::new(Protocol::CanalJson, EventKind::Watermark);
            log.write_message(&[row_event(), wm], &POS, 0).unwrap();
            log.flush_durable().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().all(|l| l.contains("\"op\":\"update\"")));
    }

    /// RFC 3339 `YYYY-MM-DDTHH:MM:SS.mmmZ` → unix ms (test helper; inverse of write_rfc3339_ms).
    fn parse_rfc3339_ms(s: &str) -> i64 {
        let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap();
        let (y, m, d) = (n(0..4), n(5..7), n(8..10));
        // Howard Hinnant's days_from_civil.
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        ((days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)) * 1000) + n(20..23)
    }

    fn columns(v: &serde_json::Value, secret: bool) -> Vec<Column<'static>> {
        let Some(obj) = v.as_object() else {
            return Vec::new();
        };
        obj.iter()
            .map(|(k, v)| {
                // The golden files show masked values; feed the writer a real secret instead.
                let text = if secret && v == "***" {
                    "\"s3cr3t\"".to_owned()
                } else {
                    v.to_string()
                };
                col(k, &text)
            })
            .collect()
    }

    /// The golden lines in `monitoring/testdata/` are what the Filebeat/Elasticsearch/Grafana tests
    /// check. Rebuild each event and render it with the real writer: the output must equal the
    /// golden line field for field, so those tests test what cdcmon really writes.
    #[test]
    fn real_writer_reproduces_the_monitoring_golden_lines() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring/testdata");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("ndjson") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let golden: serde_json::Value = serde_json::from_str(line).unwrap();
                let c = &golden["cdc"];
                let kind = match c["kind"].as_str().unwrap() {
                    "row" => EventKind::Row,
                    "ddl" => EventKind::Ddl,
                    other => panic!("{}: kind {other}", path.display()),
                };
                let protocol = Protocol::from_name(c["protocol"].as_str().unwrap()).unwrap();
                let mut ev = ChangeEvent::new(protocol, kind);
                ev.op = c["op"].as_str().map(|op| match op {
                    "insert" => RowOp::Insert,
                    "update" => RowOp::Update,
                    "delete" => RowOp::Delete,
                    other => panic!("op {other}"),
                });
                ev.db = c["db"].as_str().unwrap().to_owned().into();
                ev.table = c["table"].as_str().unwrap().to_owned().into();
                ev.commit_ts = c["commit_ts"].as_u64();
                ev.keys = columns(&c["keys"], false).into();
                ev.values = columns(&c["values"], true);
                ev.old_values = columns(&c["old_values"], true);
                ev.partial = c["partial"].as_bool().unwrap_or(false);
                ev.claim_check_location = c["claim_check_location"]
                    .as_str()
                    .map(|s| Cow::Owned(s.to_owned()));
                ev.ddl = c.get("ddl").map(|d| Ddl {
                    ddl_type: d["type"].as_str().unwrap().to_owned().into(),
                    query: d["query"].as_str().unwrap().to_owned().into(),
                });
                let k = &golden["kafka"];
                let pos = KafkaPosition {
                    topic: k["topic"].as_str().unwrap(),
                    partition: k["partition"].as_i64().unwrap() as i32,
                    offset: k["offset"].as_i64().unwrap(),
                };
                let opts = LogOptions::new(c.get("values").is_some(), &["token".into()]);
                let now = parse_rfc3339_ms(golden["event"]["created"].as_str().unwrap());
                let mut out = Vec::new();
                render_line(&ev, &pos, &opts, now, &mut out);
                let ours: serde_json::Value = serde_json::from_slice(&out).unwrap();
                assert_eq!(ours, golden, "{}", path.display());
                checked += 1;
            }
        }
        assert!(
            checked >= 4,
            "only {checked} golden lines found in {}",
            dir.display()
        );
    }

    #[test]
    fn flush_to_os_hands_out_a_handle_that_syncs_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        let mut log = EventLog::open(path.to_str().unwrap(), LogOptions::default()).unwrap();
        log.write_message(&[row_event()], &POS, 0).unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), 0, "still buffered");
        let handle = log
            .flush_to_os()
            .unwrap()
            .expect("a file has a sync handle");
        handle.sync().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        // Writing on goes to the same file; the handle stays valid.
        log.write_message(&[row_event()], &POS, 0).unwrap();
        log.flush_to_os().unwrap();
        handle.sync().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
        let mut stdout = EventLog::open("-", LogOptions::default()).unwrap();
        assert!(stdout.flush_to_os().unwrap().is_none());
    }

    #[test]
    fn cached_timestamps_render_like_fresh_ones() {
        let mut cache = StampCache::default();
        for ms in [
            0,
            0,
            1,
            1,
            -1,
            1_700_000_000_001,
            1_700_000_000_001,
            253_402_300_800_000,
            253_402_300_800_000,
            253_402_300_799_999,
            -62_167_219_200_001,
            -62_167_219_200_000,
            i64::MIN,
            i64::MAX,
            0,
        ] {
            let (mut cached, mut fresh) = (Vec::new(), Vec::new());
            cache.write(&mut cached, ms);
            write_rfc3339_ms(&mut fresh, ms);
            assert_eq!(cached, fresh, "{ms}");
        }
        // The same-second and same-day shortcuts: sequences that stay in a second, cross
        // seconds, minutes, days, months, years, the epoch, leave the cacheable years (0..=9999)
        // and come back, forwards and backwards, after both caches' previous values.
        let mut cache = Stamps::default();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut checked = 0;
        // 2026-12-31T23:59:59.000Z, 1970-01-01T00:00:00.000Z, 2000-02-29T23:59:59.000Z,
        // 9999-12-31T23:59:59.000Z, 0000-01-01T00:00:00.000Z.
        for start in [
            1_798_761_599_000i64,
            0,
            951_868_799_000,
            253_402_300_799_000,
            -62_167_219_200_000,
        ] {
            let mut ms = start - 3_000;
            for _ in 0..20_000 {
                ms += match next() % 12 {
                    0 => -((next() % 1500) as i64),
                    1 => (next() % 5000) as i64,
                    2 => (next() % 200_000_000) as i64 - 100_000_000,
                    3 => (next() % 5_000_000) as i64 - 2_500_000,
                    _ => (next() % 3) as i64,
                };
                // Both caches, as the writer uses them: commit time and processing time.
                let created = ms + (next() % 2500) as i64;
                let (mut cached, mut fresh) = (Vec::new(), Vec::new());
                cache.commit.write(&mut cached, ms);
                cache.created.write(&mut cached, created);
                write_rfc3339_ms(&mut fresh, ms);
                write_rfc3339_ms(&mut fresh, created);
                assert_eq!(cached, fresh, "{ms} {created}");
                checked += 1;
            }
        }
        assert_eq!(checked, 100_000);
    }

    /// `write_u64` / `write_i64` (eight-digit words, the leading one cut back to its digits)
    /// against std's formatting: every digit count, the powers of ten and their neighbours,
    /// extremes and random values, appended after existing bytes.
    #[test]
    fn integers_render_like_std() {
        let mut values = vec![0u64, 1, 9, u64::MAX, u64::MAX - 1];
        let mut p = 1u64;
        while let Some(q) = p.checked_mul(10) {
            values.extend([p - 1, p, p + 1, q - 1]);
            p = q;
        }
        values.push(p);
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            values.push(rng >> (rng % 64));
        }
        for v in values {
            let mut out = b"x".to_vec();
            write_u64(&mut out, v);
            assert_eq!(out, format!("x{v}").into_bytes(), "{v}");
            for i in [v as i64, (v as i64).wrapping_neg(), i64::MIN, i64::MAX] {
                let mut out = b"[".to_vec();
                write_i64(&mut out, i);
                assert_eq!(out, format!("[{i}").into_bytes(), "{i}");
            }
        }
    }

    /// A [`LogFs`] over the real one that fails on cue: the `n`th write call (1-based) writes
    /// only part of its buffer, write calls in `fail_writes` fail, the `fail_sync`th sync fails,
    /// and from operation `crash_at` (open/rename/remove/sync_dir, 1-based) on, everything fails
    /// as if the process had died there.
    #[derive(Default)]
    struct Faulty {
        short_write: Option<usize>,
        fail_writes: std::ops::Range<usize>,
        fail_sync: Option<usize>,
        crash_at: Option<usize>,
        writes: std::sync::atomic::AtomicUsize,
        syncs: std::sync::atomic::AtomicUsize,
        ops: Mutex<Vec<String>>,
    }

    struct FaultyFile {
        file: File,
        fs: Arc<Faulty>,
    }

    fn count(n: &std::sync::atomic::AtomicUsize) -> usize {
        n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
    }

    impl LogFile for FaultyFile {
        fn write(&self, buf: &[u8]) -> io::Result<usize> {
            let n = count(&self.fs.writes);
            if self.fs.fail_writes.contains(&n) {
                return Err(io::Error::from_raw_os_error(28)); // ENOSPC
            }
            if self.fs.short_write == Some(n) {
                // Cut inside a line, not at its end.
                return LogFile::write(&self.file, &buf[..buf.len() / 2 + 1]);
            }
            LogFile::write(&self.file, buf)
        }
        fn sync_data(&self) -> io::Result<()> {
            if self.fs.fail_sync == Some(count(&self.fs.syncs)) {
                return Err(io::Error::from_raw_os_error(5)); // EIO
            }
            self.file.sync_data()
        }
        fn file(&self) -> &File {
            &self.file
        }
    }

    struct FaultyFs(Arc<Faulty>);

    impl FaultyFs {
        fn op(&self, what: String) -> io::Result<()> {
            let mut ops = self.0.ops.lock().unwrap();
            ops.push(what);
            if self.0.crash_at.is_some_and(|k| ops.len() >= k) {
                return Err(io::Error::other("crashed here"));
            }
            Ok(())
        }
    }

    fn name(p: &Path) -> String {
        p.file_name().unwrap().to_string_lossy().into_owned()
    }

    impl LogFs for FaultyFs {
        fn open_append(&self, path: &Path) -> io::Result<Arc<dyn LogFile>> {
            self.op(format!("open {}", name(path)))?;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(path)?;
            Ok(Arc::new(FaultyFile {
                file,
                fs: self.0.clone(),
            }))
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            // A rename onto an existing file deletes that file: say so, tests forbid it.
            let replaces = if to.exists() { " (replaces)" } else { "" };
            self.op(format!("rename {} {}{replaces}", name(from), name(to)))?;
            std::fs::rename(from, to)
        }
        fn remove_file(&self, path: &Path) -> io::Result<()> {
            self.op(format!("remove {}", name(path)))?;
            std::fs::remove_file(path)
        }
        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            self.op("sync_dir".to_owned())?;
            OsFs.sync_dir(dir)
        }
    }

    /// A row event with key `id=<id>` at `offset`.
    fn keyed(id: u64) -> ChangeEvent<'static> {
        let mut ev = row_event();
        ev.keys = vec![col("id", &id.to_string())].into();
        ev
    }

    fn at(offset: i64) -> KafkaPosition<'static> {
        KafkaPosition {
            topic: "app_cdc",
            partition: 0,
            offset,
        }
    }

    /// Every line of the log files in `dir` parsed (panics on a torn line), as (offset, id).
    fn lines_in(dir: &Path) -> Vec<(i64, u64)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("torn line {line:?}: {e}"));
                out.push((
                    v["kafka"]["offset"].as_i64().unwrap(),
                    v["cdc"]["keys"]["id"].as_u64().unwrap(),
                ));
            }
        }
        out.sort();
        out
    }

    fn faulty_log(path: &Path, faults: Faulty, rotation: Rotation) -> (EventLog, Arc<Faulty>) {
        let faults = Arc::new(faults);
        let log = EventLog::open_with(
            path.to_str().unwrap(),
            LogOptions::default(),
            rotation,
            Arc::new(FaultyFs(faults.clone())),
        )
        .unwrap();
        (log, faults)
    }

    /// Issue 10.7: a short write, then errors, in the middle of a buffer of multi-event
    /// messages: retried writes resume where the short write stopped, so every line is in the
    /// file exactly once and whole.
    #[test]
    fn a_short_write_then_errors_neither_double_nor_tear_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        let faults = Faulty {
            short_write: Some(1),
            fail_writes: 2..4,
            ..Faulty::default()
        };
        let (mut log, _) = faulty_log(&path, faults, Rotation::default());
        let mut id = 0;
        for offset in 0..10 {
            let events: Vec<_> = (0..16)
                .map(|_| {
                    id += 1;
                    keyed(id)
                })
                .collect();
            log.write_message(&events, &at(offset), 0).unwrap();
        }
        assert!(log.flush_to_os().is_err(), "short write, then ENOSPC");
        let torn = std::fs::read(&path).unwrap();
        assert_ne!(torn.last(), Some(&b'\n'), "the short write tore a line");
        assert!(log.flush_durable().is_err(), "ENOSPC again");
        log.flush_durable().unwrap();
        let got = lines_in(dir.path());
        let want: Vec<(i64, u64)> = (0..160).map(|i| (i as i64 / 16, i as u64 + 1)).collect();
        assert_eq!(got, want);
    }

    /// Issue 10.7, the other half: when the buffer is full and cannot be written, the next
    /// message is refused whole (nothing of it rendered), and its retry logs it once.
    #[test]
    fn a_message_refused_on_a_full_buffer_is_taken_whole_on_retry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        let faults = Faulty {
            fail_writes: 1..3,
            ..Faulty::default()
        };
        let (mut log, faults) = faulty_log(&path, faults, Rotation::default());
        let mut offset = 0;
        // Fill the buffer past its limit without any write.
        while log.buf.len() < BUFFER_BYTES {
            log.write_message(
                &[keyed(offset as u64), keyed(offset as u64 + 1_000_000)],
                &at(offset),
                0,
            )
            .unwrap();
            offset += 1;
        }
        assert_eq!(faults.writes.load(std::sync::atomic::Ordering::SeqCst), 0);
        let message = [keyed(offset as u64), keyed(offset as u64 + 1_000_000)];
        for _ in 0..2 {
            let before = log.buf.len();
            assert!(log.write_message(&message, &at(offset), 0).is_err());
            assert_eq!(
                log.buf.len(),
                before,
                "nothing of a refused message is kept"
            );
        }
        log.write_message(&message, &at(offset), 0).unwrap();
        log.flush_durable().unwrap();
        let got = lines_in(dir.path());
        assert_eq!(got.len() as i64, 2 * (offset + 1));
        let mut dedup = got.clone();
        dedup.dedup();
        assert_eq!(dedup, got, "no line twice");
        assert_eq!(got.iter().filter(|(o, _)| *o == offset).count(), 2);
    }

    /// Issue 10.6 (fsyncgate): once a sync failed, every later sync of the log fails with that
    /// failure without asking the kernel again (which would say "fine"), through the
    /// background handle and `flush_durable` alike.
    #[test]
    fn a_failed_sync_is_final() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        let faults = Faulty {
            fail_sync: Some(2),
            ..Faulty::default()
        };
        let (mut log, faults) = faulty_log(&path, faults, Rotation::default());
        log.write_message(&[keyed(1)], &at(0), 0).unwrap();
        let handle = log.flush_to_os().unwrap().unwrap();
        handle.sync().unwrap();
        assert!(log.sync_failure().is_none());
        log.write_message(&[keyed(2)], &at(1), 0).unwrap();
        log.flush_to_os().unwrap();
        let failure = handle.sync().unwrap_err();
        assert_eq!(failure.errno(), Some(5));
        assert_eq!(failure.path, path);
        let text = failure.to_string();
        assert!(
            text.contains(path.to_str().unwrap()) && text.contains("os error 5"),
            "{text}"
        );
        // The kernel would report success now; the log must not ask it.
        assert!(log.flush_durable().is_err());
        assert!(handle.sync().is_err());
        assert!(log.rotate().is_err(), "no rotation on an undurable file");
        assert_eq!(faults.syncs.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(log.sync_failure().unwrap().errno(), Some(5));
    }

    fn rotating(max_bytes: u64, keep: u32) -> Rotation {
        Rotation {
            max_bytes,
            max_age: None,
            keep,
        }
    }

    fn file_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Size rotation: logrotate numbering (`.1` newest), `keep` files kept, the directory
    /// synced after the renames and the new file, the old file synced before.
    #[test]
    fn rotation_renames_keeps_and_syncs_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        let (mut log, faults) = faulty_log(&path, Faulty::default(), rotating(1000, 2));
        assert!(!log.rotate_if_due().unwrap(), "empty: not due");
        let mut offset = 0;
        let mut write_until_rotated = |log: &mut EventLog| loop {
            log.write_message(&[keyed(offset as u64)], &at(offset), 0)
                .unwrap();
            offset += 1;
            if log.rotate_if_due().unwrap() {
                return;
            }
        };
        write_until_rotated(&mut log);
        assert_eq!(file_names(dir.path()), ["events.ndjson", "events.ndjson.1"]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        assert!(std::fs::metadata(numbered(&path, 1)).unwrap().len() >= 1000);
        assert_eq!(faults.syncs.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Left by an earlier, larger keep: deleted at the next rotation.
        std::fs::write(numbered(&path, 9), b"{}\n").unwrap();
        for _ in 0..3 {
            write_until_rotated(&mut log);
        }
        assert_eq!(
            file_names(dir.path()),
            ["events.ndjson", "events.ndjson.1", "events.ndjson.2"]
        );
        let ops = faults.ops.lock().unwrap().clone();
        assert!(
            ops.contains(&"remove events.ndjson.10".to_owned()),
            "{ops:?}"
        );
        // No file is deleted before the new one exists, by a rename onto it or otherwise: the
        // new file must not get the inode of a file Filebeat knows (see `rotate`).
        assert!(!ops.iter().any(|op| op.ends_with("(replaces)")), "{ops:?}");
        assert_eq!(
            &ops[ops.len() - 6..],
            [
                "rename events.ndjson.2 events.ndjson.3",
                "rename events.ndjson.1 events.ndjson.2",
                "rename events.ndjson events.ndjson.1",
                "open events.ndjson",
                "remove events.ndjson.3",
                "sync_dir"
            ]
        );
        // .1 is newer than .2: its first offset follows .2's last.
        let first = |n| {
            let text = std::fs::read_to_string(numbered(&path, n)).unwrap();
            let offs: Vec<i64> = text
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["kafka"]["offset"]
                        .as_i64()
                        .unwrap()
                })
                .collect();
            (offs[0], *offs.last().unwrap())
        };
        assert_eq!(first(2).1 + 1, first(1).0);
        assert_eq!(
            first(1).1 + 1,
            offset,
            "the new file is empty, .1 has the latest"
        );
    }

    /// A crash (kill -9) at every step of a rotation, then a restart on the same directory that
    /// writes on and rotates again: every line written and synced is still in some file, whole,
    /// exactly once; numbering may skip (a half-done rename chain) but never reorders.
    #[test]
    fn a_crash_at_any_step_of_a_rotation_loses_nothing() {
        // Steps of one rotation with keep 3 and files .1 .2 already there: rename .2 .3,
        // rename .1 .2, rename base .1, open base, sync_dir.
        for crash_at in 1..=5 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("events.ndjson");
            let mut offset = 0i64;
            let mut write = |log: &mut EventLog, n: i64| {
                for _ in 0..n {
                    log.write_message(&[keyed(offset as u64)], &at(offset), 0)
                        .unwrap();
                    offset += 1;
                }
            };
            {
                let (mut log, _) = faulty_log(&path, Faulty::default(), rotating(1, 3));
                for _ in 0..2 {
                    write(&mut log, 3);
                    assert!(log.rotate_if_due().unwrap());
                }
                write(&mut log, 3);
                log.flush_durable().unwrap();
            }
            // Reopened on a file system that "dies" at the given step (its op 1 is this open).
            let faults = Faulty {
                crash_at: Some(1 + crash_at),
                ..Faulty::default()
            };
            let (mut log, faults) = faulty_log(&path, faults, rotating(1, 3));
            assert!(log.rotate_if_due().is_err());
            let ops = faults.ops.lock().unwrap().clone();
            assert_eq!(ops.len(), 1 + crash_at, "{ops:?}");
            drop(log); // the process dies here: nothing more happens
            let before = lines_in(dir.path());
            assert_eq!(
                before.len(),
                9,
                "crash at step {crash_at}: {:?}",
                file_names(dir.path())
            );
            // Restart: writes on, rotates again, all fine.
            let (mut log, _) = faulty_log(&path, Faulty::default(), rotating(1, 10));
            write(&mut log, 3);
            assert!(log.rotate_if_due().unwrap());
            write(&mut log, 3);
            log.flush_durable().unwrap();
            let after = lines_in(dir.path());
            let want: Vec<(i64, u64)> = (0..15).map(|o| (o, o as u64)).collect();
            assert_eq!(
                after,
                want,
                "crash at step {crash_at}: {:?}",
                file_names(dir.path())
            );
            // Higher number = older, whatever the gaps.
            let mut last_first = i64::MAX;
            for n in (1..=10)
                .rev()
                .map(|n| numbered(&path, n))
                .chain([path.clone()])
            {
                let Ok(text) = std::fs::read_to_string(&n) else {
                    continue;
                };
                if let Some(l) = text.lines().next() {
                    let o =
                        serde_json::from_str::<serde_json::Value>(l).unwrap()["kafka"]["offset"]
                            .as_i64()
                            .unwrap();
                    assert!(
                        last_first == i64::MAX || o > last_first,
                        "{} out of order",
                        n.display()
                    );
                    last_first = o;
                }
            }
        }
    }

    /// A torn last line (kill -9 inside a write) is terminated at open, so the next line is not
    /// glued to it.
    #[test]
    fn a_torn_tail_is_terminated_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        std::fs::write(&path, b"{\"whole\":1}\n{\"torn\":").unwrap();
        let mut log = EventLog::open(path.to_str().unwrap(), LogOptions::default()).unwrap();
        log.write_message(&[keyed(7)], &at(3), 0).unwrap();
        log.flush_durable().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[..2], ["{\"whole\":1}", "{\"torn\":"]);
        let v: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(v["kafka"]["offset"], 3);
    }

    /// fsync(2): a new file's directory entry needs a directory sync. Creating the log syncs
    /// its directory before any line can be committed; reopening an existing file does not.
    #[test]
    fn creating_the_log_syncs_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        let (log, faults) = faulty_log(&path, Faulty::default(), Rotation::default());
        drop(log);
        assert_eq!(
            *faults.ops.lock().unwrap(),
            ["open events.ndjson", "sync_dir"]
        );
        let (_log, faults) = faulty_log(&path, Faulty::default(), Rotation::default());
        assert_eq!(*faults.ops.lock().unwrap(), ["open events.ndjson"]);
        // A directory that cannot be synced is an error at start, not a silent risk.
        let other = dir.path().join("other.ndjson");
        let faults = Arc::new(Faulty {
            crash_at: Some(2),
            ..Faulty::default()
        });
        let err = EventLog::open_with(
            other.to_str().unwrap(),
            LogOptions::default(),
            Rotation::default(),
            Arc::new(FaultyFs(faults)),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("cannot sync directory"), "{err}");
    }

    #[test]
    fn age_rotation_skips_an_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        let rotation = Rotation {
            max_bytes: 0,
            max_age: Some(Duration::from_millis(1)),
            keep: 2,
        };
        let (mut log, _) = faulty_log(&path, Faulty::default(), rotation);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!log.rotate_if_due().unwrap(), "nothing to rotate");
        log.write_message(&[keyed(1)], &at(0), 0).unwrap();
        assert!(log.rotate_if_due().unwrap());
        assert!(!log.rotate_if_due().unwrap(), "the new file is empty");
        assert_eq!(file_names(dir.path()), ["events.ndjson", "events.ndjson.1"]);
    }

    #[test]
    fn rotation_of_stdout_or_with_keep_0_is_refused() {
        let err = EventLog::open_with("-", LogOptions::default(), rotating(10, 5), Arc::new(OsFs))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("stdout") && err.contains("--event-log-max-bytes"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.ndjson");
        let err = EventLog::open_with(
            path.to_str().unwrap(),
            LogOptions::default(),
            rotating(10, 0),
            Arc::new(OsFs),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("--event-log-keep 0"), "{err}");
        // Stdout without rotation is fine.
        assert!(EventLog::open("-", LogOptions::default()).is_ok());
    }

    /// `--event-log /dev/null` (the demo docs' "no event log"): a device is a stream, not a
    /// file to fdatasync (it fails with EINVAL there, which the sync gate would treat as a lost
    /// write and stop the daemon on), and it cannot be rotated.
    #[test]
    fn a_device_is_written_but_never_synced_or_rotated() {
        let mut log = EventLog::open("/dev/null", LogOptions::default()).unwrap();
        log.write_message(&[row_event()], &POS, 0).unwrap();
        assert!(log.flush_to_os().unwrap().is_none(), "nothing to fdatasync");
        log.flush_durable().unwrap();
        assert!(log.sync_failure().is_none());
        let err = EventLog::open_with(
            "/dev/null",
            LogOptions::default(),
            rotating(10, 5),
            Arc::new(OsFs),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn unopenable_path_is_a_clear_error() {
        let err = EventLog::open("/nonexistent-dir/x.ndjson", LogOptions::default())
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("/nonexistent-dir/x.ndjson"),
            "{err}"
        );
    }
}
