//! The ndjson event log: one line per row or DDL event, shaped for Filebeat's ndjson parser and
//! the `cdc-events-*` index (format: `docs/event-log.md`).
//!
//! Lines are rendered by hand into a reused buffer (no intermediate `serde_json::Value`), and
//! written through a large `BufWriter`. Durability is decided by the consumer: it calls
//! [`EventLog::flush_durable`] before committing offsets, so a committed offset always means the
//! events before it are in the file.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use serde_json::value::RawValue;

use crate::event::{ChangeEvent, Column, EventKind};

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
/// processing millisecond and, within a transaction, their commit millisecond.
#[derive(Clone, Copy)]
struct StampCache {
    ms: i64,
    len: usize,
    text: [u8; 32],
}

impl Default for StampCache {
    fn default() -> Self {
        StampCache {
            ms: i64::MIN,
            len: 0,
            text: [0; 32],
        }
    }
}

impl StampCache {
    fn write(&mut self, out: &mut Vec<u8>, ms: i64) {
        if ms != self.ms {
            let mut v = Vec::with_capacity(32);
            write_rfc3339_ms(&mut v, ms);
            if v.len() > self.text.len() {
                // Years beyond 9999: too long for the cache, and never a real timestamp.
                out.extend_from_slice(&v);
                return;
            }
            self.text[..v.len()].copy_from_slice(&v);
            self.len = v.len();
            self.ms = ms;
        }
        out.extend_from_slice(&self.text[..self.len]);
    }
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
    let action: &str = match (ev.op, &ev.ddl) {
        (Some(op), _) => op.as_str(),
        (None, Some(ddl)) => &ddl.ddl_type,
        (None, None) => ev.kind.as_str(),
    };
    write_str(out, action);
    out.extend_from_slice(b",\"created\":\"");
    stamps.created.write(out, now_ms);
    out.extend_from_slice(b"\"},\"cdc\":{\"kind\":");
    write_str(out, ev.kind.as_str());
    out.extend_from_slice(b",\"db\":");
    write_str(out, &ev.db);
    out.extend_from_slice(b",\"table\":");
    write_str(out, &ev.table);
    if let Some(op) = ev.op {
        out.extend_from_slice(b",\"op\":");
        write_str(out, op.as_str());
    }
    if let Some(ts) = ev.commit_ts {
        out.extend_from_slice(b",\"commit_ts\":");
        write_u64(out, ts);
    }
    out.extend_from_slice(b",\"protocol\":");
    write_str(out, ev.protocol.as_str());
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
        write_columns(out, &ev.keys, opts);
        out.extend_from_slice(b",\"key\":\"");
        summary.start = out.len();
        write_key_summary(out, &ev.keys, opts);
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
    write_summary_message(out, ev, summary);
    out.extend_from_slice(b"\"}\n");
}

/// The `message` text, escaped, without quotes: `insert app.users id=1` /
/// `CREATE app.users: CREATE TABLE ...`. `summary` is the already escaped key summary in `out`.
fn write_summary_message(out: &mut Vec<u8>, ev: &ChangeEvent<'_>, summary: Range<usize>) {
    match (ev.op, &ev.ddl) {
        (Some(op), _) => {
            out.extend_from_slice(op.as_str().as_bytes());
            out.push(b' ');
            write_table(out, ev);
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
            write_table(out, ev);
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
            write_table(out, ev);
        }
    }
}

fn write_table(out: &mut Vec<u8>, ev: &ChangeEvent<'_>) {
    write_escaped(out, &ev.db);
    if !ev.table.is_empty() {
        out.push(b'.');
        write_escaped(out, &ev.table);
    }
}

/// `col=val,col2=val2` (string values unquoted, redacted columns `***`), JSON-escaped without
/// quotes, straight into `out`. `tests::key_summary` is the plain-`String` reference it must equal.
fn write_key_summary(out: &mut Vec<u8>, keys: &[Column<'_>], opts: &LogOptions) {
    for (i, col) in keys.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_escaped(out, &col.name);
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
fn push_plain_value(s: &mut String, raw: &RawValue) {
    let text = raw.get();
    if text.starts_with('"') {
        match serde_json::from_str::<std::borrow::Cow<'_, str>>(text) {
            Ok(v) => s.push_str(&v),
            Err(_) => s.push_str(text),
        }
    } else {
        s.push_str(text);
    }
}

fn write_columns(out: &mut Vec<u8>, cols: &[Column<'_>], opts: &LogOptions) {
    out.push(b'{');
    for (i, col) in cols.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, &col.name);
        out.push(b':');
        if opts.is_redacted(&col.name) {
            out.extend_from_slice(REDACTED.as_bytes());
        } else {
            write_raw(out, col.value.get());
        }
    }
    out.push(b'}');
}

/// Raw JSON text straight from the message: already valid JSON, no re-encoding. An object or
/// array value may be pretty-printed; its line breaks can only be insignificant whitespace (a
/// JSON string cannot hold a raw control character), so they become spaces and the event stays
/// on one line (found by the fuzzer, docs/fuzzing.md).
fn write_raw(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    if !bytes.iter().any(|&b| b == b'\n' || b == b'\r') {
        out.extend_from_slice(bytes);
        return;
    }
    out.extend(bytes.iter().map(|&b| match b {
        b'\n' | b'\r' => b' ',
        b => b,
    }));
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

/// Index of the first byte JSON must escape (`"`, `\`, below 0x20), word-at-a-time (SWAR).
fn first_to_escape(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Per byte, the high bit is set where the byte is zero (exact for the first such byte,
    // which is all that is needed to know whether a chunk needs the byte-wise scan).
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(c);
        let w = u64::from_le_bytes(word);
        let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        if below_space
            | has_zero(w ^ (ONES * u64::from(b'"')))
            | has_zero(w ^ (ONES * u64::from(b'\\')))
            != 0
        {
            break;
        }
        at += 8;
    }
    bytes[at..]
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .map(|p| at + p)
}

/// Decimal digits of `v` (no allocation), two digits per division.
fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    while v >= 100 {
        let pair = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if v >= 10 {
        let pair = v as usize * 2;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + v as u8;
    }
    out.extend_from_slice(&buf[i..]);
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

enum Destination {
    Stdout(BufWriter<io::Stdout>),
    File(BufWriter<File>),
}

/// The event-log writer: buffered appends, explicit durable flush.
pub struct EventLog {
    dest: Destination,
    opts: LogOptions,
    line: Vec<u8>,
    /// A second handle on the file (same open file description) for `fdatasync` off the loop.
    sync_handle: Option<Arc<File>>,
    stamps: Stamps,
}

/// 256 KiB: large enough that a burst of events costs few write syscalls.
const BUFFER_BYTES: usize = 256 * 1024;

impl EventLog {
    /// `path` `-` means stdout; anything else is a file opened for append (created if absent).
    pub fn open(path: &str, opts: LogOptions) -> anyhow::Result<Self> {
        let mut sync_handle = None;
        let dest = if path == "-" {
            Destination::Stdout(BufWriter::with_capacity(BUFFER_BYTES, io::stdout()))
        } else {
            let path = Path::new(path);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("cannot open event log {}: {e}", path.display()))?;
            let sync = file.try_clone().map_err(|e| {
                anyhow::anyhow!("cannot duplicate event log handle {}: {e}", path.display())
            })?;
            sync_handle = Some(Arc::new(sync));
            Destination::File(BufWriter::with_capacity(BUFFER_BYTES, file))
        };
        Ok(EventLog {
            dest,
            opts,
            line: Vec::with_capacity(1024),
            sync_handle,
            stamps: Stamps::default(),
        })
    }

    /// Append one event's line (buffered). Only row and DDL events are logged.
    pub fn write_event(
        &mut self,
        ev: &ChangeEvent<'_>,
        pos: &KafkaPosition<'_>,
        now_ms: i64,
    ) -> io::Result<()> {
        if !is_logged(ev.kind) {
            return Ok(());
        }
        self.line.clear();
        render_line_with(
            ev,
            pos,
            &self.opts,
            now_ms,
            &mut self.stamps,
            &mut self.line,
        );
        match &mut self.dest {
            Destination::Stdout(w) => w.write_all(&self.line),
            Destination::File(w) => w.write_all(&self.line),
        }
    }

    /// Hand buffered lines to the OS (no disk sync). Returns what to `fdatasync` to make them
    /// durable: the file (a shared handle, so the sync can run off the consume loop), or `None`
    /// for stdout, which has nothing to sync.
    pub fn flush_to_os(&mut self) -> io::Result<Option<Arc<File>>> {
        match &mut self.dest {
            Destination::Stdout(w) => w.flush().map(|()| None),
            Destination::File(w) => {
                w.flush()?;
                Ok(self.sync_handle.clone())
            }
        }
    }

    /// Flush buffered lines to the OS and, for a file, to disk (`fdatasync`).
    pub fn flush_durable(&mut self) -> io::Result<()> {
        match &mut self.dest {
            Destination::Stdout(w) => w.flush(),
            Destination::File(w) => {
                w.flush()?;
                w.get_ref().sync_data()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

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

    fn raw(s: &str) -> Cow<'static, RawValue> {
        Cow::Owned(RawValue::from_string(s.to_owned()).unwrap())
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
        ev.keys = vec![col("id", "\"7\"")];
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
        ];
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
        ev.keys = vec![col("k", "{\n  \"a\": [1,\r\n 2]\n}")];
        ev.values = ev.keys.clone();
        let mut out = Vec::new();
        render_line(&ev, &POS, &LogOptions::new(true, &[]), 0, &mut out);
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["cdc"]["keys"]["k"]["a"][1], 2);
        assert_eq!(v["cdc"]["values"]["k"]["a"][0], 1);
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
            log.write_event(&row_event(), &POS, 0).unwrap();
            let wm = ChangeEvent::new(Protocol::CanalJson, EventKind::Watermark);
            log.write_event(&wm, &POS, 0).unwrap();
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
                ev.keys = columns(&c["keys"], false);
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
        log.write_event(&row_event(), &POS, 0).unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), 0, "still buffered");
        let handle = log
            .flush_to_os()
            .unwrap()
            .expect("a file has a sync handle");
        handle.sync_data().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        // Writing on goes to the same file; the handle stays valid.
        log.write_event(&row_event(), &POS, 0).unwrap();
        log.flush_to_os().unwrap();
        handle.sync_data().unwrap();
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
        ] {
            let (mut cached, mut fresh) = (Vec::new(), Vec::new());
            cache.write(&mut cached, ms);
            write_rfc3339_ms(&mut fresh, ms);
            assert_eq!(cached, fresh, "{ms}");
        }
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
