//! Corpus-driven mutation fuzzer for every decoder (cargo-fuzz needs nightly; this runs on
//! stable). Seeds are the real TiCDC messages in `tests/fixtures/ticdc/`; each execution mutates
//! a seed's key and/or value 1–4 times (bit flips, byte inserts/deletes/overwrites, truncation,
//! splicing with another fixture, JSON-token insertion, open-protocol length-field corruption,
//! chunk duplication), decodes it under `catch_unwind`, and renders every decoded event as an
//! event-log line that must be one syntactically valid JSON document. A panic or an invalid line is a crash.
//!
//! ```text
//! cargo run --release --example fuzz_decoders -- [EXECS_PER_TARGET] [SEED] [CRASH_DIR]
//! ```
//! Defaults: 100000 executions per target, seed 1, crashes written to `target/fuzz-crashes/`
//! (`<target>-<n>.key` / `.value`). Prints one line per target; exits 1 if anything crashed.
//! The CI test `tests/fuzz_decoders.rs` runs 20k executions per target. docs/fuzzing.md.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Instant;

use cdcmon::eventlog::{KafkaPosition, LogOptions, render_line};
use cdcmon::protocol::compression::compress;
use cdcmon::protocol::{
    Compression, Decoded, Decoder, ProtocolChoice, canal_json, debezium, detect, open_protocol,
    simple,
};

/// What the fuzzer drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    CanalJson,
    OpenProtocol,
    Debezium,
    Simple,
    /// `Decoder` with `--protocol auto`, uncompressed.
    Auto,
    /// `Decoder` with `--protocol auto` and snappy/lz4 (inputs are compressed seeds, mutated).
    Compressed,
    /// `Decoder` with `--protocol auto` and a schema registry (schemas pre-cached): Avro rows,
    /// tombstones, pseudo-messages, checksum verification; seeds `tests/fixtures/avro/`.
    Avro,
}

impl Target {
    pub const ALL: [Target; 7] = [
        Target::CanalJson,
        Target::OpenProtocol,
        Target::Debezium,
        Target::Simple,
        Target::Auto,
        Target::Compressed,
        Target::Avro,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::CanalJson => "canal-json",
            Target::OpenProtocol => "open-protocol",
            Target::Debezium => "debezium",
            Target::Simple => "simple",
            Target::Auto => "auto",
            Target::Compressed => "auto-compressed",
            Target::Avro => "avro",
        }
    }
}

/// A seed: Kafka key and value.
#[derive(Clone, Debug)]
pub struct Input {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// The outcome of a run over one target.
#[derive(Debug, Default)]
pub struct Report {
    pub executions: u64,
    pub decoded: u64,
    pub rejected: u64,
    pub crashes: u64,
    pub seconds: f64,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ticdc")
}

fn read(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// Fixture files of one protocol: classic (`<prefix>…`) and new architecture (`tc-<prefix>…`).
fn names(prefix: &str, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures dir")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            let n = n.strip_prefix("tc-").unwrap_or(n);
            n.starts_with(prefix) && n.ends_with(suffix)
        })
        .collect();
    v.sort();
    v
}

/// The seed corpus of a target, from the fixtures.
pub fn corpus(target: Target) -> Vec<Input> {
    let canal = || {
        names("canal-json-", ".json")
            .into_iter()
            .map(|n| Input {
                key: None,
                value: Some(read(&n)),
            })
            .collect::<Vec<_>>()
    };
    let simple = || {
        names("simple-", ".json")
            .into_iter()
            .map(|n| Input {
                key: None,
                value: Some(read(&n)),
            })
            .collect::<Vec<_>>()
    };
    let debezium = || {
        names("debezium-", ".json")
            .into_iter()
            .filter(|n| !n.ends_with(".key.json"))
            .map(|n| Input {
                key: Some(read(&n.replace(".json", ".key.json"))),
                value: Some(read(&n)),
            })
            .collect::<Vec<_>>()
    };
    let open = || {
        names("open-protocol-", ".key.bin")
            .into_iter()
            .map(|n| Input {
                key: Some(read(&n)),
                value: Some(read(&n.replace(".key.bin", ".value.bin"))),
            })
            .collect::<Vec<_>>()
    };
    match target {
        Target::CanalJson => canal(),
        Target::OpenProtocol => open(),
        Target::Debezium => debezium(),
        Target::Simple => simple(),
        Target::Auto => [canal(), open(), debezium(), simple()].concat(),
        Target::Avro => avro_corpus(),
        Target::Compressed => {
            let mut out = Vec::new();
            for c in [Compression::Snappy, Compression::Lz4] {
                for i in [canal(), debezium(), simple()].concat() {
                    let z = |b: &Option<Vec<u8>>| {
                        b.as_ref().map(|b| compress(c, b).expect("compress seed"))
                    };
                    out.push(Input {
                        key: z(&i.key),
                        value: z(&i.value),
                    });
                }
            }
            out
        }
    }
}

fn avro_fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/avro")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn avro_vectors() -> serde_json::Value {
    serde_json::from_slice(&avro_fixture("vectors.json")).expect("vectors.json")
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// Avro seeds: the worked row (key + value), its tombstone, the DDL / watermark / delete-marker
/// pseudo-messages and tiflow's envelope vector.
fn avro_corpus() -> Vec<Input> {
    let v = avro_vectors();
    let hex = |k: &str| unhex(v[k].as_str().unwrap_or_default());
    let (key, value) = (
        avro_fixture("worked_row_key.bin"),
        avro_fixture("worked_row_value.bin"),
    );
    vec![
        Input {
            key: Some(key.clone()),
            value: Some(value),
        },
        Input {
            key: Some(key.clone()),
            value: None,
        },
        Input {
            key: None,
            value: Some(hex("ddl_value_hex")),
        },
        Input {
            key: None,
            value: Some(hex("watermark_value_hex (ts=1591943372224)")),
        },
        Input {
            key: Some(key),
            value: Some(hex(
                "newarch_delete_value_hex (ticdc>=v8.5.7, extension+watermark only)",
            )),
        },
        Input {
            key: None,
            value: Some(hex(
                "tiflow_TestAvroEnvelope_message_hex (schema id 8, id=7)",
            )),
        },
    ]
}

/// `--protocol auto` with a registry whose schemas 1, 2 (worked row) and 8 (envelope) are cached.
fn avro_decoder() -> Decoder {
    use cdcmon::protocol::avro::{AvroDecoder, SchemaStore};
    let v = avro_vectors();
    let store = std::sync::Arc::new(SchemaStore::default());
    for (id, k) in [(1, "key_schema"), (2, "value_schema")] {
        store
            .insert(id, v["worked_row"][k].as_str().unwrap_or_default())
            .expect("schema");
    }
    store
        .insert(8, r#"{"type":"record","name":"avroenvelope","namespace":"default.testdb","fields":[{"name":"id","type":"int","default":0}]}"#)
        .expect("schema 8");
    let tz = "Asia/Shanghai".parse().expect("tz");
    Decoder::new(ProtocolChoice::Auto, Compression::None).with_avro(AvroDecoder::new(store, tz))
}

/// xorshift64*: deterministic, no dependencies.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

const INTERESTING_BYTES: &[u8] = b"\"{}[],:\\\x00\xff\x7f\x80\xc3\xe2\n0-e.";
const JSON_TOKENS: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "-0",
    "1e999",
    "-1",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "1.5e-400",
    "\"\"",
    "\"x\"",
    "\"\\ud800\"",
    "\"\\u0000\"",
    "\"\\\"",
    "{}",
    "[]",
    "[null]",
    "{\"a\":",
    "]]]]",
    "}}}}",
    ",",
    ":",
    "\"type\":\"UPDATE\"",
    "\"isDdl\":true",
    "\"type\":\"TIDB_WATERMARK\"",
    "\"data\":[{}]",
    "\"pkNames\":[\"id\"]",
    "\"op\":\"u\"",
    "\"t\":2",
    "\"t\":3",
    "\"d\":{}",
    "\"p\":{\"a\":{\"v\":1}}",
    "\"type\":\"BOOTSTRAP\"",
    "\"version\":1",
    "\"payload\":null",
    // New-architecture shapes (issue 15): duplicated members (last wins), claim-check and
    // partition members, canal `_tidb.rowkey`, debezium `start_ts`, DDL and watermark.
    "\"ohk\":true,\"ohk\":false",
    "\"ccl\":\"s3://b/x.json\"",
    "\"ptn\":112",
    "\"ts\":1,\"ts\":2",
    "\"rowkey\":\"dIA=\"",
    "\"watermarkTs\":3",
    "\"es\":0",
    "\"type\":\"ERASE\"",
    "\"start_ts\":1",
    "\"op\":\"m\"",
    "\"ddl\":\"DROP TABLE t\"",
    "\"handleKeyOnly\":true",
];

/// Byte offsets of the u64 length fields of an open-protocol key (after the version) or value.
fn length_fields(b: &[u8], skip_version: bool) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = if skip_version { 8 } else { 0 };
    while b.len() >= 8 && at <= b.len() - 8 {
        out.push(at);
        let len = u64::from_be_bytes(b[at..at + 8].try_into().unwrap_or([0xff; 8]));
        match usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_add(8))
            .and_then(|l| at.checked_add(l))
        {
            Some(next) => at = next,
            None => break,
        }
    }
    out
}

fn mutate_bytes(rng: &mut Rng, b: &mut Vec<u8>, other: &[u8], is_open_key: Option<bool>) {
    let op = rng.below(11);
    match op {
        // Bit flip.
        0 if !b.is_empty() => {
            let i = rng.below(b.len());
            b[i] ^= 1 << rng.below(8);
        }
        // Byte insert.
        1 => {
            let i = rng.below(b.len() + 1);
            let v = if rng.chance(2) {
                INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())]
            } else {
                rng.next_u64() as u8
            };
            b.insert(i, v);
        }
        // Delete a range.
        2 if !b.is_empty() => {
            let i = rng.below(b.len());
            let n = 1 + rng.below((b.len() - i).min(16));
            b.drain(i..i + n);
        }
        // Truncate.
        3 => {
            let n = rng.below(b.len() + 1);
            b.truncate(n);
        }
        // Splice: our prefix, another input's suffix.
        4 if !other.is_empty() => {
            let cut = rng.below(b.len() + 1);
            let from = rng.below(other.len());
            b.truncate(cut);
            b.extend_from_slice(&other[from..]);
        }
        // JSON token insertion.
        5 | 6 => {
            let i = rng.below(b.len() + 1);
            let t = JSON_TOKENS[rng.below(JSON_TOKENS.len())].as_bytes();
            b.splice(i..i, t.iter().copied());
        }
        // Overwrite a byte with an interesting one.
        7 if !b.is_empty() => {
            let i = rng.below(b.len());
            b[i] = INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())];
        }
        // Duplicate a chunk.
        8 if !b.is_empty() => {
            let i = rng.below(b.len());
            let n = 1 + rng.below((b.len() - i).min(64));
            let chunk = b[i..i + n].to_vec();
            let at = rng.below(b.len() + 1);
            b.splice(at..at, chunk);
        }
        // Deep nesting.
        9 => {
            let i = rng.below(b.len() + 1);
            let depth = 1 + rng.below(200);
            let open = if rng.chance(2) { b'[' } else { b'{' };
            b.splice(i..i, std::iter::repeat_n(open, depth));
        }
        // open-protocol: corrupt a length field (or, elsewhere, any 8 bytes as a u64).
        _ => {
            let fields = match is_open_key {
                Some(k) => length_fields(b, k),
                None => Vec::new(),
            };
            let at = if fields.is_empty() {
                if b.len() < 8 {
                    return;
                }
                rng.below(b.len() - 7)
            } else {
                fields[rng.below(fields.len())]
            };
            let old = u64::from_be_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
            let new = match rng.below(6) {
                0 => 0,
                1 => u64::MAX,
                2 => old.wrapping_add(1 + rng.below(4) as u64),
                3 => old.saturating_sub(1 + rng.below(4) as u64),
                4 => 1u64 << rng.below(64),
                _ => rng.next_u64(),
            };
            b[at..at + 8].copy_from_slice(&new.to_be_bytes());
        }
    }
}

/// One mutated input from the corpus.
pub fn mutate(rng: &mut Rng, corpus: &[Input], target: Target) -> Input {
    let mut input = corpus[rng.below(corpus.len())].clone();
    let other = &corpus[rng.below(corpus.len())];
    let open = matches!(target, Target::OpenProtocol | Target::Auto);
    for _ in 0..1 + rng.below(4) {
        let on_key = input.key.is_some() && rng.chance(3);
        if on_key {
            let donor = other.key.as_deref().unwrap_or_default();
            if let Some(k) = input.key.as_mut() {
                mutate_bytes(rng, k, donor, open.then_some(true));
            }
        } else {
            let donor = other.value.as_deref().unwrap_or_default();
            let v = input.value.get_or_insert_with(Vec::new);
            mutate_bytes(rng, v, donor, open.then_some(false));
        }
    }
    // Occasionally drop the key or the value entirely.
    if rng.chance(50) {
        input.key = None;
    }
    if rng.chance(200) {
        input.value = None;
    }
    input
}

/// Decode with `target` and render every event; `Ok(true)` decoded, `Ok(false)` rejected,
/// `Err` an invalid event-log line (a bug, like a panic).
fn execute<'a>(
    target: Target,
    input: &'a Input,
    simple_cache: &mut simple::SchemaCache,
    decoders: &mut [Decoder; 4],
    compressed_pick: usize,
) -> Result<bool, String> {
    let key = input.key.as_deref();
    let value = input.value.as_deref();
    let one = |e| (vec![e], Vec::new());
    let parts = |d: Decoded<'a>| (d.events.into_vec(), d.errors);
    let decoded = match target {
        Target::CanalJson => canal_json::decode(value.unwrap_or_default()).map(one),
        Target::OpenProtocol => open_protocol::decode(key, value, Compression::None).map(parts),
        Target::Debezium => debezium::decode(key, value.unwrap_or_default()).map(one),
        Target::Simple => simple_cache.decode(value.unwrap_or_default()).map(one),
        Target::Auto => {
            // detect() must agree with the decoder never panicking either.
            let _ = detect::detect(key, value.unwrap_or_default());
            decoders[0].decode(key, value).map(parts)
        }
        Target::Compressed => decoders[1 + compressed_pick % 2]
            .decode(key, value)
            .map(parts),
        Target::Avro => decoders[3].decode(key, value).map(parts),
    };
    let Ok((events, errors)) = decoded else {
        return Ok(false);
    };
    // Per-event errors (open-protocol batches only) stay bounded like message errors.
    for e in &errors {
        if e.detail.chars().count() > 241 {
            return Err(format!("unbounded error detail: {e}"));
        }
    }
    if events.is_empty() {
        return Ok(false);
    }
    let opts = LogOptions::new(compressed_pick % 3 == 0, &["id".into(), "token".into()]);
    let pos = KafkaPosition {
        topic: "app_cdc",
        partition: 1,
        offset: 42,
    };
    let mut line = Vec::new();
    for ev in &events {
        line.clear();
        render_line(ev, &pos, &opts, 1_700_000_000_000, &mut line);
        // Syntax, not number range: column values are copied raw, and a number such as
        // `1e9991` is valid JSON that `serde_json::Value` refuses (docs/fuzzing.md).
        let newlines = line.iter().filter(|&&b| b == b'\n').count();
        if newlines != 1 || line.last() != Some(&b'\n') {
            return Err(format!(
                "event-log line is not one line: {}",
                String::from_utf8_lossy(&line)
            ));
        }
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&line) {
            return Err(format!(
                "invalid event-log line ({e}): {}",
                String::from_utf8_lossy(&line)
            ));
        }
    }
    Ok(true)
}

/// Run `executions` mutated inputs through `target`. Crashing inputs go to `crash_dir`.
pub fn run(target: Target, executions: u64, seed: u64, crash_dir: Option<&Path>) -> Report {
    let corpus = corpus(target);
    assert!(!corpus.is_empty(), "no seeds for {}", target.name());
    let mut rng = Rng::new(seed ^ (target as u64 + 1).wrapping_mul(0x1000_0000_01b3));
    let mut report = Report::default();
    let mut simple_cache = simple::SchemaCache::default();
    let new_decoders = || {
        [
            Decoder::new(ProtocolChoice::Auto, Compression::None),
            Decoder::new(ProtocolChoice::Auto, Compression::Snappy),
            Decoder::new(ProtocolChoice::Auto, Compression::Lz4),
            avro_decoder(),
        ]
    };
    let mut decoders = new_decoders();
    install_quiet_hook();
    let started = Instant::now();
    for i in 0..executions {
        // The simple protocol's schema cache grows with every table name it is shown: start
        // over now and then so a long run measures decoding, not an ever larger map.
        if i % 10_000 == 0 {
            simple_cache = simple::SchemaCache::default();
            decoders = new_decoders();
        }
        let input = if rng.chance(20) {
            corpus[rng.below(corpus.len())].clone()
        } else {
            mutate(&mut rng, &corpus, target)
        };
        let pick = rng.below(6);
        IN_EXECUTION.set(true);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            execute(target, &input, &mut simple_cache, &mut decoders, pick)
        }));
        IN_EXECUTION.set(false);
        report.executions += 1;
        match outcome {
            Ok(Ok(true)) => report.decoded += 1,
            Ok(Ok(false)) => report.rejected += 1,
            Ok(Err(msg)) => {
                report.crashes += 1;
                save_crash(crash_dir, target, report.crashes, &input, &msg);
            }
            Err(panic) => {
                report.crashes += 1;
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                save_crash(
                    crash_dir,
                    target,
                    report.crashes,
                    &input,
                    &format!("panic: {msg}"),
                );
                // State may be inconsistent after a panic: start clean.
                simple_cache = simple::SchemaCache::default();
                decoders = new_decoders();
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report
}

thread_local! {
    /// Set while a fuzzed input runs: its panics are counted and saved, not printed.
    static IN_EXECUTION: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A panic hook that is silent inside executions and the previous hook everywhere else (so a
/// bug in the harness or a failing assertion still prints).
fn install_quiet_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_EXECUTION.get() {
                previous(info);
            }
        }));
    });
}

fn save_crash(dir: Option<&Path>, target: Target, n: u64, input: &Input, msg: &str) {
    eprintln!("CRASH {} #{n}: {msg}", target.name());
    let Some(dir) = dir else { return };
    if n > 20 {
        return;
    }
    let _ = std::fs::create_dir_all(dir);
    let base = dir.join(format!("{}-{n}", target.name()));
    if let Some(k) = &input.key {
        let _ = std::fs::write(base.with_extension("key"), k);
    }
    if let Some(v) = &input.value {
        let _ = std::fs::write(base.with_extension("value"), v);
    }
    let _ = std::fs::write(base.with_extension("txt"), msg);
}

#[allow(dead_code)] // the CI test includes this file as a module and has its own main
fn main() {
    let mut args = std::env::args().skip(1);
    let execs: u64 = args
        .next()
        .and_then(|a| a.replace('_', "").parse().ok())
        .unwrap_or(100_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let crash_dir = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-crashes"));
    let only = std::env::var("FUZZ_TARGET").unwrap_or_default();
    let mut total_crashes = 0;
    for target in Target::ALL {
        if !only.is_empty() && only != target.name() {
            continue;
        }
        let r = run(target, execs, seed, Some(&crash_dir));
        total_crashes += r.crashes;
        println!(
            "fuzz {}: executions={} decoded={} rejected={} crashes={} seconds={:.1} execs_per_sec={:.0}",
            target.name(),
            r.executions,
            r.decoded,
            r.rejected,
            r.crashes,
            r.seconds,
            r.executions as f64 / r.seconds.max(1e-9)
        );
    }
    if total_crashes > 0 {
        std::process::exit(1);
    }
}
