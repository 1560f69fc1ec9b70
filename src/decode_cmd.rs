//! `cdcmon decode`: decode TiCDC messages from files and print the normalized events, one JSON
//! object per line (DESIGN.md "`cdcmon decode` (fixed)").

use std::io::{Read, Write};
use std::path::Path;

use anyhow::Context;

use crate::cli::DecodeArgs;
use crate::event::{ChangeEvent, Column};
use crate::protocol::Decoder;

/// Largest input file we read: the same bound as a decompressed message.
const MAX_INPUT_BYTES: u64 = crate::protocol::compression::MAX_DECOMPRESSED_BYTES as u64;

/// Run `cdcmon decode`: read the value (`-` = stdin) and optional key, decode, print one JSON
/// line per event to `out`. Errors are one line naming the file or the protocol and the problem.
pub fn run(args: &DecodeArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let value = read_input(&args.value)?;
    let key = args.key.as_deref().map(read_input).transpose()?;
    let mut decoder = args
        .avro
        .apply(Decoder::new(args.protocol, args.compression))?;
    let registry = args.avro.registry()?;
    let decoded = crate::schema_registry::decode_fetching(
        &mut decoder,
        registry.as_deref(),
        key.as_deref(),
        Some(&value),
    )
    .map_err(|e| anyhow::anyhow!("cannot decode {}: {e}", display_name(&args.value)))?;
    // The good events of a partly bad open-protocol batch are printed, as the consume path
    // keeps them; the bad ones make the command fail (one line, every error named).
    let mut line = Vec::with_capacity(512);
    for ev in &decoded.events {
        line.clear();
        write_event_json(ev, &mut line);
        line.push(b'\n');
        out.write_all(&line).context("cannot write to stdout")?;
    }
    out.flush().context("cannot write to stdout")?;
    if decoded.errors.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "cannot decode {}: {} of {} events undecodable: {}",
        display_name(&args.value),
        decoded.errors.len(),
        decoded.errors.len() + decoded.events.len(),
        summarize(&decoded.errors)
    )
}

/// The first few errors on one line, then how many more.
fn summarize(errors: &[crate::protocol::DecodeError]) -> String {
    const SHOWN: usize = 5;
    let mut s = errors
        .iter()
        .take(SHOWN)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if errors.len() > SHOWN {
        s.push_str(&format!("; and {} more", errors.len() - SHOWN));
    }
    s
}

fn display_name(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "stdin".to_owned()
    } else {
        path.display().to_string()
    }
}

fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_INPUT_BYTES + 1)
            .read_to_end(&mut buf)
            .context("cannot read stdin")?;
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_INPUT_BYTES + 1).read_to_end(&mut buf))
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    if buf.len() as u64 > MAX_INPUT_BYTES {
        anyhow::bail!(
            "{} is larger than {MAX_INPUT_BYTES} bytes",
            display_name(path)
        );
    }
    Ok(buf)
}

/// The JSON line `cdcmon decode` prints for one event.
pub fn event_to_json(ev: &ChangeEvent<'_>) -> String {
    let mut buf = Vec::with_capacity(256);
    write_event_json(ev, &mut buf);
    // Every piece written is valid UTF-8 (serde_json strings and RawValue text).
    String::from_utf8(buf).unwrap_or_default()
}

/// Append the JSON object for `ev` to `buf`:
/// `protocol`, `kind`, `op` (rows), `db`, `table`, `commit_ts` (when known),
/// `commit_physical_ms` (when only that is known), `ddl_type`/`query` (DDL), `partial`,
/// `claim_check_location` (when set), `keys`, `values`, `old_values` (objects of raw values).
pub fn write_event_json(ev: &ChangeEvent<'_>, buf: &mut Vec<u8>) {
    buf.extend_from_slice(b"{\"protocol\":");
    json_str(buf, ev.protocol.as_str());
    buf.extend_from_slice(b",\"kind\":");
    json_str(buf, ev.kind.as_str());
    if let Some(op) = ev.op {
        buf.extend_from_slice(b",\"op\":");
        json_str(buf, op.as_str());
    }
    buf.extend_from_slice(b",\"db\":");
    json_str(buf, &ev.db);
    buf.extend_from_slice(b",\"table\":");
    json_str(buf, &ev.table);
    if let Some(ts) = ev.commit_ts {
        buf.extend_from_slice(format!(",\"commit_ts\":{ts}").as_bytes());
    } else if let Some(ms) = ev.commit_physical_ms {
        buf.extend_from_slice(format!(",\"commit_physical_ms\":{ms}").as_bytes());
    }
    if let Some(ddl) = &ev.ddl {
        buf.extend_from_slice(b",\"ddl_type\":");
        json_str(buf, &ddl.ddl_type);
        buf.extend_from_slice(b",\"query\":");
        json_str(buf, &ddl.query);
    }
    buf.extend_from_slice(if ev.partial {
        b",\"partial\":true"
    } else {
        b",\"partial\":false"
    });
    if let Some(loc) = &ev.claim_check_location {
        buf.extend_from_slice(b",\"claim_check_location\":");
        json_str(buf, loc);
    }
    // Row checksum verdict for the protocols that carry TiDB's checksum (simple, Avro).
    if ev.kind == crate::event::EventKind::Row
        && matches!(
            ev.protocol,
            crate::event::Protocol::Simple | crate::event::Protocol::Avro
        )
    {
        let verdict = ev
            .checksum
            .as_ref()
            .map_or(crate::checksum::Verdict::Absent, |c| c.verdict);
        buf.extend_from_slice(b",\"checksum\":");
        json_str(buf, verdict.as_str());
    }
    buf.extend_from_slice(b",\"keys\":");
    json_columns(buf, &ev.keys);
    if ev.kind == crate::event::EventKind::Row {
        buf.extend_from_slice(b",\"values\":");
        json_columns(buf, &ev.values);
        if !ev.old_values.is_empty() {
            buf.extend_from_slice(b",\"old_values\":");
            json_columns(buf, &ev.old_values);
        }
    }
    buf.push(b'}');
}

fn json_str(buf: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail; the fallback keeps the output valid JSON anyway.
    if serde_json::to_writer(&mut *buf, s).is_err() {
        buf.extend_from_slice(b"\"\"");
    }
}

fn json_columns(buf: &mut Vec<u8>, cols: &[Column<'_>]) {
    buf.push(b'{');
    for (i, c) in cols.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        json_str(buf, &c.name);
        buf.push(b':');
        buf.extend_from_slice(c.value.get().as_bytes());
    }
    buf.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Compression, ProtocolChoice};
    use std::path::PathBuf;

    fn fixture_path(name: &str) -> PathBuf {
        PathBuf::from(format!(
            "{}/tests/fixtures/ticdc/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
    }

    fn run_on(
        protocol: &str,
        key: Option<&str>,
        value: &str,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let args = DecodeArgs {
            protocol: protocol.parse().map_err(anyhow::Error::msg)?,
            compression: Compression::None,
            key: key.map(fixture_path),
            value: fixture_path(value),
            avro: Default::default(),
        };
        let mut out = Vec::new();
        run(&args, &mut out)?;
        let text = String::from_utf8(out)?;
        text.lines().map(|l| Ok(serde_json::from_str(l)?)).collect()
    }

    #[test]
    fn prints_one_line_per_event() {
        let lines = run_on(
            "auto",
            Some("open-protocol-insert-4-batch2.key.bin"),
            "open-protocol-insert-4-batch2.value.bin",
        )
        .unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["op"], "insert");
        assert_eq!(lines[1]["keys"]["a"], 2);
        assert_eq!(lines[1]["values"]["b"], 223);
        assert_eq!(lines[1]["protocol"], "open-protocol");
    }

    #[test]
    fn output_fields() {
        let l = &run_on("canal-json", None, "canal-json-update-1.json").unwrap()[0];
        assert_eq!(l["kind"], "row");
        assert_eq!(l["op"], "update");
        assert_eq!(l["db"], "test");
        assert_eq!(l["table"], "employee");
        assert_eq!(l["commit_physical_ms"], 1668067229137u64);
        assert!(l.get("commit_ts").is_none());
        assert_eq!(l["keys"]["id"], "101");
        assert_eq!(l["old_values"]["OfficeLocation"], "New York");
        assert_eq!(l["partial"], false);

        let l = &run_on("auto", None, "canal-json-ddl-1.json").unwrap()[0];
        assert_eq!(l["kind"], "ddl");
        assert_eq!(l["ddl_type"], "QUERY");
        assert_eq!(l["query"], "drop database if exists test");
        assert!(l.get("op").is_none());

        // commit_ts above 2^53 is printed exactly.
        let evs = run_on("auto", None, "canal-json-watermark-1.json").unwrap();
        assert_eq!(evs[0]["kind"], "watermark");
        assert_eq!(evs[0]["commit_ts"].as_u64(), Some(429918007904436226));
    }

    #[test]
    fn event_to_json_escapes_names() {
        let v = br#"{"isDdl":false,"type":"INSERT","database":"d\"b","table":"t","pkNames":["a\nb"],"data":[{"a\nb":"1"}],"es":1}"#;
        let ev = crate::protocol::canal_json::decode(v).unwrap();
        let line = event_to_json(&ev);
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["db"], "d\"b");
        assert_eq!(parsed["keys"]["a\nb"], "1");
    }

    #[test]
    fn errors_are_one_line() {
        let e = run_on("open-protocol", None, "open-protocol-insert-1.value.bin").unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("open-protocol") && msg.contains("missing_key"),
            "{msg}"
        );
        assert!(!msg.contains('\n'));

        let e = run_on("simple", None, "canal-json-insert-1.json").unwrap_err();
        assert!(format!("{e:#}").contains("simple: "), "{e:#}");

        let e = run_on("auto", None, "does-not-exist.json").unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("does-not-exist.json"), "{msg}");

        let args = DecodeArgs {
            protocol: ProtocolChoice::Auto,
            compression: Compression::None,
            key: Some(fixture_path("nope.key")),
            value: fixture_path("canal-json-insert-1.json"),
            avro: Default::default(),
        };
        let e = run(&args, &mut Vec::new()).unwrap_err();
        assert!(format!("{e:#}").contains("nope.key"));
    }
}
