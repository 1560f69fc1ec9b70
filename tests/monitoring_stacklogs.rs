//! Service logs (issue 14): the journald input of `monitoring/filebeat/filebeat.yml`, replayed on
//! recorded journal entries the way Filebeat 8.x would process them, against
//! `monitoring/elasticsearch/stack-logs-template.json` and the Grafana panels that read it.
//!
//! What is modelled, and from where (elastic/beats sources, read at the commits named):
//! * `journalctl --output=json` entries (`monitoring/testdata/journal/entries.ndjson`, one object
//!   per line, all values strings, the field set of beats'
//!   `filebeat/input/journald/pkg/journalctl/testdata/sample-journal-event.json` @9d70ebda)
//!   become events as `filebeat/input/journald/input.go` `readerAdapter.Next` builds them:
//!   `MESSAGE` -> `message`, `__REALTIME_TIMESTAMP` (µs) -> `@timestamp`, every other field
//!   through the conversion table of `pkg/journalfield/default.go` (@00b7f187; the subset for
//!   the fields our entries hold is [`JOURNAL_FIELDS`]), unknown fields into `journald.custom.*`
//!   (lower case, leading `_` trimmed: `pkg/journalfield/conv.go`), `event.kind: event`.
//!   Field meanings: systemd.journal-fields(7).
//! * The input's processors are read from the YAML and interpreted with libbeat's semantics for
//!   exactly the processors and conditions the file uses (anything else fails the test):
//!   `copy_fields`, `add_fields`, `dissect` (`libbeat/processors/dissect/dissect.go` `extract`
//!   @075bf8f7 and `processor.go` @`mapper`: ignore_failure, overwrite_keys, the
//!   `log.flags: dissect_parsing_error` tag), and the conditions `has_fields`, `not`, `and`,
//!   `regexp` (Go RE2; the `regex` crate accepts the same syntax for these patterns), `range`.
//!   A processor error stops the chain as in libbeat `processors.Processors.Run`; the fixtures
//!   must produce none.
//! * PingCAP's unified log format (tikv/rfcs `text/0018-unified-log-format.md` @12d130d4, whose
//!   samples are the fixtures) is parsed a second time by an independent reference parser
//!   ([`pingcap_reference`]), and level and message must agree with the dissect result.

mod common;

use std::collections::BTreeSet;

use common::files::{expand_dotted, read_json, read_yaml, rfc3339_ms, root};
use serde_json::{Map, Value, json};

// ------------------------------------------------------------------------------------------------
// Files

fn filebeat() -> Value {
    expand_dotted(read_yaml(&root().join("monitoring/filebeat/filebeat.yml")))
}

fn journal_input() -> Value {
    filebeat()["filebeat"]["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "stack-journal")
        .cloned()
        .expect("filebeat.yml has the journald input `stack-journal`")
}

fn template() -> Value {
    read_json(&root().join("monitoring/elasticsearch/stack-logs-template.json"))
}

fn entries() -> Vec<Value> {
    let text =
        std::fs::read_to_string(root().join("monitoring/testdata/journal/entries.ndjson")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).expect("one journal entry per line"))
        .collect()
}

// ------------------------------------------------------------------------------------------------
// Dotted-path access on events (mapstr.M semantics: `a.b` is nested)

fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur.as_object()?.get(part)?;
    }
    Some(cur)
}

fn has(v: &Value, path: &str) -> bool {
    get(v, path).is_some()
}

fn put(v: &mut Value, path: &str, value: Value) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().unwrap();
    let mut cur = v;
    for p in parts {
        let obj = cur.as_object_mut().expect("path through a scalar");
        cur = obj
            .entry(p.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
    }
    cur.as_object_mut().unwrap().insert(last.to_string(), value);
}

fn deep_update(dst: &mut Value, src: &Value) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, v) in s {
                match d.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        deep_update(existing, v)
                    }
                    _ => {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (d, s) => *d = s.clone(),
    }
}

/// `{a: {b: 1}}` -> `[("a.b", 1)]` (libbeat's `mapstr.M.Flatten`).
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, c, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

// ------------------------------------------------------------------------------------------------
// journalctl JSON -> Filebeat event (input.go readerAdapter.Next + journalfield conversion)

/// (journal field, ECS names, integer?) from beats `pkg/journalfield/default.go`, for the fields
/// the fixtures contain. `MESSAGE` is not here: input.go moves it to `message` itself.
const JOURNAL_FIELDS: &[(&str, &[&str], bool)] = &[
    ("_BOOT_ID", &["journald.host.boot_id"], false),
    ("_CAP_EFFECTIVE", &["journald.process.capabilities"], false),
    ("_CMDLINE", &["journald.process.command_line"], false),
    ("CODE_FILE", &["journald.code.file"], false),
    ("CODE_FUNC", &["journald.code.func"], false),
    ("CODE_LINE", &["journald.code.line"], true),
    ("_COMM", &["journald.process.name"], false),
    ("_EXE", &["journald.process.executable"], false),
    ("_GID", &["journald.gid"], true),
    ("_HOSTNAME", &["host.hostname"], false),
    ("_MACHINE_ID", &["host.id"], false),
    ("MESSAGE_ID", &["message_id"], false),
    ("_PID", &["journald.pid"], true),
    (
        "PRIORITY",
        &["syslog.priority", "log.syslog.priority"],
        true,
    ),
    (
        "SYSLOG_FACILITY",
        &["syslog.facility", "log.syslog.facility.code"],
        true,
    ),
    ("SYSLOG_IDENTIFIER", &["syslog.identifier"], false),
    ("_SYSTEMD_CGROUP", &["systemd.cgroup"], false),
    ("_SYSTEMD_INVOCATION_ID", &["systemd.invocation_id"], false),
    ("_SYSTEMD_SLICE", &["systemd.slice"], false),
    ("_SYSTEMD_UNIT", &["systemd.unit"], false),
    ("_TRANSPORT", &["systemd.transport"], false),
    ("_UID", &["journald.uid"], true),
    ("UNIT", &["journald.unit"], false),
    ("COREDUMP_UNIT", &["journald.coredump.unit"], false),
    (
        "OBJECT_SYSTEMD_UNIT",
        &["journald.object.systemd.unit"],
        false,
    ),
];
/// Dropped by default.go (kept in the registry cursor instead).
const JOURNAL_DROPPED: &[&str] = &["__MONOTONIC_TIMESTAMP", "__CURSOR"];

/// Journal microseconds → Filebeat's millisecond `@timestamp` (the sub-millisecond part is
/// dropped, as Filebeat's date formatting does).
fn rfc3339_from_micros(us: i64) -> String {
    rfc3339_ms(us.div_euclid(1000))
}

fn journal_event(entry: &Value) -> Value {
    let fields = entry.as_object().expect("a journal entry is an object");
    let mut ev = json!({});
    let realtime: i64 = fields["__REALTIME_TIMESTAMP"]
        .as_str()
        .expect("journalctl writes __REALTIME_TIMESTAMP as a string")
        .parse()
        .unwrap();
    put(&mut ev, "@timestamp", json!(rfc3339_from_micros(realtime)));
    put(&mut ev, "message", fields["MESSAGE"].clone());
    for (k, v) in fields {
        if k == "MESSAGE" || JOURNAL_DROPPED.contains(&k.as_str()) {
            continue;
        }
        match JOURNAL_FIELDS.iter().find(|(name, _, _)| name == k) {
            Some((_, names, integer)) => {
                let s = v.as_str().expect("journalctl values are strings");
                let value = if *integer {
                    json!(s.parse::<i64>().expect("integer field"))
                } else {
                    json!(s)
                };
                for n in *names {
                    put(&mut ev, n, value.clone());
                }
            }
            None => {
                let key = k.trim_start_matches('_').to_lowercase();
                let custom = ev
                    .as_object_mut()
                    .unwrap()
                    .entry("journald")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .unwrap()
                    .entry("custom")
                    .or_insert_with(|| json!({}));
                custom.as_object_mut().unwrap().insert(key, v.clone());
            }
        }
    }
    ecs_enrichment(&mut ev);
    put(&mut ev, "event.kind", json!("event"));
    put(&mut ev, "event.created", json!("2026-11-30T01:02:04.000Z"));
    // What every Filebeat event carries besides (libbeat pipeline): input type, agent, ecs, host.
    put(&mut ev, "input.type", json!("journald"));
    put(&mut ev, "agent.type", json!("filebeat"));
    put(&mut ev, "agent.version", json!("8.19.19"));
    put(&mut ev, "ecs.version", json!("8.0.0"));
    put(&mut ev, "host.name", json!("stack"));
    ev
}

/// beats `pkg/journalfield/conv.go` `withECSEnrichment` for prefix `journald` (no audit login
/// uid and no `OBJECT_*` fields in the fixtures): `user.id`/`user.group.id` from the uid/gid as
/// strings, `process.pid`, and `process.command_line` with its `process.args` split by
/// `cmdlineRegexp`. (`setProcessFields` reads `journald.name`/`journald.executable`, which the
/// conversion never writes, so no `process.name`; `_CAP_EFFECTIVE=0` expands to nothing.)
fn ecs_enrichment(ev: &mut Value) {
    if let Some(uid) = get(ev, "journald.uid").and_then(Value::as_i64) {
        put(ev, "user.id", json!(uid.to_string()));
        if let Some(gid) = get(ev, "journald.gid").and_then(Value::as_i64) {
            put(ev, "user.group.id", json!(gid.to_string()));
        }
    }
    if let Some(pid) = get(ev, "journald.pid").cloned() {
        put(ev, "process.pid", pid);
    }
    if let Some(cmdline) = get(ev, "journald.process.command_line")
        .and_then(Value::as_str)
        .map(str::to_owned)
    {
        let re = regex::Regex::new(r#""(\\"|[^"])*?"|[^\s]+"#).unwrap();
        let args: Vec<&str> = re.find_iter(&cmdline).map(|m| m.as_str()).collect();
        put(ev, "process.command_line", json!(cmdline));
        put(ev, "process.args_count", json!(args.len()));
        put(ev, "process.args", json!(args));
    }
}

// ------------------------------------------------------------------------------------------------
// libbeat conditions and processors (only what the file uses)

fn condition(cond: &Value, ev: &Value) -> bool {
    let obj = cond.as_object().expect("a condition is an object");
    assert_eq!(obj.len(), 1, "one operator per condition object: {cond}");
    let (op, arg) = obj.iter().next().unwrap();
    match op.as_str() {
        "has_fields" => arg
            .as_array()
            .unwrap()
            .iter()
            .all(|f| has(ev, f.as_str().unwrap())),
        "not" => !condition(arg, ev),
        "and" => arg.as_array().unwrap().iter().all(|c| condition(c, ev)),
        "regexp" => {
            let mut flat = Vec::new();
            flatten("", arg, &mut flat);
            flat.iter().all(|(field, pattern)| {
                let re = regex::Regex::new(pattern.as_str().unwrap()).expect("valid RE2 pattern");
                get(ev, field)
                    .and_then(Value::as_str)
                    .is_some_and(|s| re.is_match(s))
            })
        }
        "range" => {
            let mut flat = Vec::new();
            flatten("", arg, &mut flat);
            flat.iter().all(|(field_op, bound)| {
                let (field, op) = field_op.rsplit_once('.').unwrap();
                let bound = bound.as_f64().unwrap();
                let Some(x) = get(ev, field).and_then(Value::as_f64) else {
                    return false;
                };
                match op {
                    "gte" => x >= bound,
                    "gt" => x > bound,
                    "lte" => x <= bound,
                    "lt" => x < bound,
                    other => panic!("range operator {other}"),
                }
            })
        }
        other => panic!("condition {other} is not modelled; extend the test"),
    }
}

/// A parsed dissect tokenizer: leading delimiter, then (key, following delimiter) pairs.
struct Tokenizer {
    delimiters: Vec<String>,
    keys: Vec<String>,
}

fn tokenizer(t: &str) -> Tokenizer {
    let mut delimiters = Vec::new();
    let mut keys = Vec::new();
    let mut rest = t;
    let mut lit = String::new();
    while let Some(start) = rest.find("%{") {
        lit.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("unclosed %{") + start;
        let key = &rest[start + 2..end];
        assert!(
            !key.is_empty()
                && !key.starts_with(['?', '+', '&', '*'])
                && !key.contains("->")
                && !key.contains('|'),
            "dissect modifiers are not modelled: %{{{key}}}"
        );
        delimiters.push(std::mem::take(&mut lit));
        keys.push(key.to_string());
        rest = &rest[end + 1..];
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        delimiters.push(lit);
    }
    Tokenizer { delimiters, keys }
}

/// beats `Dissector.extract` + `resolve` for plain keys.
fn dissect(t: &Tokenizer, s: &str) -> Result<Vec<(String, String)>, String> {
    if s.is_empty() {
        return Err("empty".into());
    }
    // Hard match of the first delimiter at offset 0.
    let first = &t.delimiters[0];
    if !s.starts_with(first.as_str()) {
        return Err(format!("could not find beginning delimiter {first:?}"));
    }
    let mut offset = first.len();
    let mut values = Vec::new();
    for (i, next) in t.delimiters.iter().enumerate().skip(1) {
        let end = s[offset..]
            .find(next.as_str())
            .map(|p| p + offset)
            .ok_or_else(|| format!("could not find delimiter {next:?}"))?;
        values.push((t.keys[i - 1].clone(), s[offset..end].to_string()));
        offset = end + next.len();
    }
    // A key after the last delimiter takes the rest.
    if values.len() < t.keys.len() {
        let rest = if offset < s.len() { &s[offset..] } else { "" };
        values.push((t.keys[values.len()].clone(), rest.to_string()));
    }
    Ok(values)
}

/// Run one processor; `Err` = libbeat would stop the chain here.
fn run_processor(p: &Value, ev: &mut Value) -> Result<(), String> {
    let obj = p.as_object().expect("a processor is an object");
    assert_eq!(obj.len(), 1, "one processor per list item: {p}");
    let (name, cfg) = obj.iter().next().unwrap();
    if let Some(when) = cfg.get("when") {
        if !condition(when, ev) {
            return Ok(());
        }
    }
    match name.as_str() {
        "copy_fields" => {
            let fail = cfg["fail_on_error"].as_bool().unwrap_or(true);
            let ignore_missing = cfg["ignore_missing"].as_bool().unwrap_or(false);
            for f in cfg["fields"].as_array().unwrap() {
                let (from, to) = (f["from"].as_str().unwrap(), f["to"].as_str().unwrap());
                let err = match get(ev, from).cloned() {
                    None if ignore_missing => None,
                    None => Some(format!("could not fetch value for key: {from}")),
                    Some(_) if has(ev, to) => Some(format!("target field {to} already exists")),
                    Some(v) => {
                        put(ev, to, v);
                        None
                    }
                };
                if let (Some(e), true) = (err, fail) {
                    return Err(e);
                }
            }
            Ok(())
        }
        "add_fields" => {
            let target = cfg["target"].as_str().unwrap_or("fields");
            let mut add = json!({});
            if target.is_empty() {
                add = cfg["fields"].clone();
            } else {
                put(&mut add, target, cfg["fields"].clone());
            }
            deep_update(ev, &add);
            Ok(())
        }
        "dissect" => {
            let field = cfg["field"].as_str().unwrap_or("message");
            let prefix = cfg["target_prefix"].as_str().unwrap_or("dissect");
            let ignore_failure = cfg["ignore_failure"].as_bool().unwrap_or(false);
            let overwrite = cfg["overwrite_keys"].as_bool().unwrap_or(false);
            let t = tokenizer(cfg["tokenizer"].as_str().unwrap());
            let s = get(ev, field)
                .ok_or_else(|| format!("dissect: no field {field}"))?
                .as_str()
                .ok_or_else(|| format!("dissect: {field} is not a string"))?
                .to_string();
            match dissect(&t, &s) {
                Err(e) => {
                    let mut flags = get(ev, "log.flags").cloned().unwrap_or(json!([]));
                    flags
                        .as_array_mut()
                        .unwrap()
                        .push(json!("dissect_parsing_error"));
                    put(ev, "log.flags", flags);
                    if ignore_failure { Ok(()) } else { Err(e) }
                }
                Ok(values) => {
                    let key = |k: &str| {
                        if prefix.is_empty() {
                            k.to_string()
                        } else {
                            format!("{prefix}.{k}")
                        }
                    };
                    if !overwrite {
                        if let Some((k, _)) = values.iter().find(|(k, _)| has(ev, &key(k))) {
                            return Err(format!("cannot override existing key with {}", key(k)));
                        }
                    }
                    for (k, v) in values {
                        put(ev, &key(&k), json!(v));
                    }
                    Ok(())
                }
            }
        }
        other => panic!("processor {other} is not modelled; extend the test"),
    }
}

fn process(input: &Value, mut ev: Value) -> Value {
    for p in input["processors"].as_array().expect("processors") {
        if let Err(e) = run_processor(p, &mut ev) {
            panic!("processor {p} failed on {ev}: {e} (libbeat would skip the rest)");
        }
    }
    ev
}

fn documents() -> Vec<Value> {
    let input = journal_input();
    entries()
        .iter()
        .map(|e| process(&input, journal_event(e)))
        .collect()
}

// ------------------------------------------------------------------------------------------------
// Independent reference parser of the unified log format (RFC 0018)

/// `(LEVEL, message)` of a unified-log-format line, or `None` if the line is not one. The message
/// section is `[message]`, JSON-string encoded when it holds a space, quote, `=` or bracket.
fn pingcap_reference(line: &str) -> Option<(String, String)> {
    let mut rest = line;
    let mut section = || -> Option<String> {
        let r = rest.strip_prefix('[')?;
        let close = r.find(']')?;
        let inner = r[..close].to_string();
        rest = r[close + 1..].strip_prefix(' ').unwrap_or(&r[close + 1..]);
        Some(inner)
    };
    let time = section()?;
    let ok_time = time.len() == 30 && time.as_bytes()[4] == b'/' && time.as_bytes()[10] == b' ';
    let level = section()?;
    if !ok_time
        || !["FATAL", "ERROR", "WARN", "INFO", "DEBUG"].contains(&level.as_str())
        || section().is_none()
    {
        return None;
    }
    let r = rest.strip_prefix('[')?;
    let message = if r.starts_with('"') {
        // A JSON string: read it with a JSON parser up to its closing quote.
        let mut de = serde_json::Deserializer::from_str(r).into_iter::<String>();
        de.next()?.ok()?
    } else {
        r[..r.find(']')?].to_string()
    };
    Some((level, message))
}

// ------------------------------------------------------------------------------------------------
// Tests

/// What each fixture must become: (systemd unit of the entry, service.name, log.level, message).
const EXPECTED: &[(&str, &str, &str, &str)] = &[
    ("tidb-tikv.service", "tidb-tikv", "INFO", "TiKV Started"),
    ("tidb-server.service", "tidb-server", "WARN", "DDL_Finished"),
    ("tidb-server.service", "tidb-server", "WARN", "Slow query"),
    ("tidb-tikv.service", "tidb-tikv", "FATAL", "TiKV panic"),
    // Documented limit: an escaped quote directly before `]` inside a quoted message ends it
    // early (dissect takes the first `"]`); event.original keeps the whole line.
    ("ticdc.service", "ticdc", "ERROR", "write \\"),
    (
        "cdcmon-smoke.service",
        "cdcmon-smoke",
        "INFO",
        "2026-11-30T01:02:03.456789Z  INFO cdcmon::smoke: smoke started; log marker cdcmon-smoke-1796000523456123",
    ),
    (
        "init.scope",
        "tidb-pd",
        "WARN",
        "tidb-pd.service: Failed with result 'exit-code'.",
    ),
    (
        "init.scope",
        "cdcmon-kafka-topic",
        "ERROR",
        "Failed to start Create Kafka topic app_cdc.",
    ),
    (
        "prometheus.service",
        "prometheus",
        // Its own logfmt level, not journald's priority 6 (nix/lib/stack.nix `levelWords`).
        "WARN",
        "time=2026-11-30T01:02:03.456Z level=WARN source=manager.go:163 msg=\"Error sending alert\" component=notifier",
    ),
    // The other services' formats keep their line as message and take the level from it:
    // cdcmon's tracing-subscriber JSON (CDCMON_LOG_FORMAT=json, the module's default) ...
    (
        "cdcmon.service",
        "cdcmon",
        "ERROR",
        r#"{"timestamp":"2026-11-30T01:02:03.466123Z","level":"ERROR","fields":{"message":"event log write failed; retrying","error":"No space left on device (os error 28)"},"target":"cdcmon::sink"}"#,
    ),
    // ... Grafana's logfmt (lower-case level) ...
    (
        "grafana.service",
        "grafana",
        "ERROR",
        r#"logger=context userId=1 orgId=1 uname=admin t=2026-11-30T01:02:03.467123Z level=error msg="Request Completed" method=POST path=/api/ds/query status=500"#,
    ),
    // ... Kafka's log4j `[%d] %p %m (%c)%n` ...
    (
        "apache-kafka.service",
        "apache-kafka",
        "WARN",
        "[2026-11-30 01:02:03,468] WARN [SocketServer listenerType=BROKER, nodeId=1] Unexpected error from /127.0.0.1 (channelId=127.0.0.1:9092-127.0.0.1:51234-0); closing connection (org.apache.kafka.common.network.Selector)",
    ),
    // ... and Elasticsearch's log4j `[%d{ISO8601}][%-5p][%c{1.}]` (its DiskThresholdMonitor).
    (
        "elasticsearch.service",
        "elasticsearch",
        "WARN",
        "[2026-11-30T01:02:03,469][WARN ][o.e.c.r.a.DiskThresholdMonitor] [stack] high disk watermark [90%] exceeded on [stack][/var/lib/elasticsearch/data] free: 1gb[9.5%], shards will be relocated away from this node",
    ),
    // A TiKV crash: systemd-coredump@… writes it (priority 2, the field set of beats'
    // pkg/journalctl/testdata/coredump.json), `journalctl --unit tidb-tikv.service` matches it
    // by COREDUMP_UNIT=, and it is tidb-tikv's, not systemd-coredump's.
    (
        "systemd-coredump@0-3732-0.service",
        "tidb-tikv",
        "FATAL",
        "Process 2001 (tikv-server) of user 61234 dumped core.\n\nStack trace of thread 2001:\n#0  0x00007f27c56a8e44 n/a (libc.so.6 + 0x94e44)\n#1  0x00007f27c5650a30 raise (libc.so.6 + 0x3ca30)\n#2  0x00007f27c56384c3 abort (libc.so.6 + 0x244c3)\nELF object binary architecture: AMD x86-64\n",
    ),
];

#[test]
fn journal_entries_become_documents_with_unit_level_host_and_message() {
    let entries = entries();
    let docs = documents();
    assert_eq!(docs.len(), EXPECTED.len(), "one expectation per fixture");
    for ((entry, doc), (unit, service, level, message)) in entries.iter().zip(&docs).zip(EXPECTED) {
        let ctx = format!("fixture {}", entry["MESSAGE"]);
        assert_eq!(get(doc, "systemd.unit"), Some(&json!(unit)), "{ctx}");
        assert_eq!(get(doc, "service.name"), Some(&json!(service)), "{ctx}");
        assert_eq!(get(doc, "log.level"), Some(&json!(level)), "{ctx}");
        assert_eq!(get(doc, "message"), Some(&json!(message)), "{ctx}");
        // The raw line, always.
        assert_eq!(get(doc, "event.original"), Some(&entry["MESSAGE"]), "{ctx}");
        assert_eq!(
            get(doc, "host.hostname"),
            Some(&entry["_HOSTNAME"]),
            "{ctx}"
        );
        let priority: i64 = entry["PRIORITY"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            get(doc, "log.syslog.priority"),
            Some(&json!(priority)),
            "{ctx}"
        );
        // __REALTIME_TIMESTAMP (µs since the epoch) is the document time.
        let us: i64 = entry["__REALTIME_TIMESTAMP"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            get(doc, "@timestamp"),
            Some(&json!(rfc3339_from_micros(us))),
            "{ctx}"
        );
        // ECS enrichment of the journal's process fields.
        let pid: i64 = entry["_PID"].as_str().unwrap().parse().unwrap();
        assert_eq!(get(doc, "process.pid"), Some(&json!(pid)), "{ctx}");
        assert_eq!(get(doc, "user.id"), Some(&entry["_UID"]), "{ctx}");
        if let Some(cmdline) = entry.get("_CMDLINE") {
            assert_eq!(get(doc, "process.args"), Some(&json!([cmdline])), "{ctx}");
        }
        // PingCAP lines keep their time and source; nothing failed to parse by surprise.
        if let Some(src) = get(doc, "pingcap.source") {
            assert!(
                src.as_str().unwrap().contains(':') || src == "<unknown>",
                "{ctx}"
            );
        }
    }
    // The PID-1 lines get their service from UNIT=, not from init.scope; no parse error tags
    // except the unit dissect that had nothing to take (init.scope is not a .service).
    let flagged: Vec<&Value> = docs.iter().filter(|d| has(d, "log.flags")).collect();
    assert!(
        flagged.is_empty(),
        "unexpected dissect failures: {flagged:?}"
    );
}

#[test]
fn pingcap_lines_parse_like_the_reference_parser() {
    let docs = documents();
    let mut compared = 0;
    for (entry, doc) in entries().iter().zip(&docs) {
        let line = entry["MESSAGE"].as_str().unwrap();
        let reference = pingcap_reference(line);
        let parsed = has(doc, "pingcap.time").then(|| {
            (
                get(doc, "log.level").unwrap().as_str().unwrap().to_string(),
                get(doc, "message").unwrap().as_str().unwrap().to_string(),
            )
        });
        if line.contains("\\\"]") {
            // The documented limit: same level, message cut at the escaped quote.
            let (rl, rm) = reference.expect("a PingCAP line");
            let (pl, pm) = parsed.expect("dissect still matches");
            assert_eq!(pl, rl);
            assert!(rm.starts_with(pm.trim_end_matches('\\')), "{rm} / {pm}");
            continue;
        }
        assert_eq!(parsed, reference, "{line}");
        compared += usize::from(reference.is_some());
    }
    assert_eq!(compared, 4, "the four RFC samples");
}

#[test]
fn reference_parser_and_dissect_model_agree_on_edge_cases() {
    // Sanity of the two models themselves on lines that are not in the journal fixtures.
    let t = tokenizer("[%{a}] [%{b}] [%{c}] [%{d}]");
    assert_eq!(
        dissect(&t, "[x] [y] [z] [w] [k=v]").unwrap(),
        [("a", "x"), ("b", "y"), ("c", "z"), ("d", "w")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    assert!(
        dissect(&t, " [x] [y] [z] [w]").is_err(),
        "hard match at offset 0"
    );
    assert!(dissect(&t, "[x] [y] [z]").is_err(), "missing delimiter");
    let svc = tokenizer("%{service.name}.service");
    assert_eq!(
        dissect(&svc, "ticdc-changefeed-app-cdc.service").unwrap(),
        [(
            "service.name".to_string(),
            "ticdc-changefeed-app-cdc".to_string()
        )]
    );
    assert!(dissect(&svc, "init.scope").is_err());
    assert_eq!(
        pingcap_reference(r#"[2018/12/15 14:20:11.015 +08:00] [INFO] [a.go:1] ["a \"b\""]"#),
        Some(("INFO".into(), "a \"b\"".into()))
    );
    assert_eq!(pingcap_reference("level=info msg=x"), None);
}

/// Leaves of a document with their values.
fn leaves(doc: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    flatten("", doc, &mut out);
    out
}

/// The explicit mapping of a dotted path, the flattened field it sits in, or None.
fn mapping_of(tmpl: &Value, path: &str) -> Option<Value> {
    let mut props = &tmpl["template"]["mappings"]["properties"];
    let mut node: Option<&Value> = None;
    for part in path.split('.') {
        if node.is_some_and(|n| n["type"] == "flattened") {
            return node.cloned();
        }
        let m = props.get(part)?;
        node = Some(m);
        props = &m["properties"];
    }
    node.cloned()
}

#[test]
fn documents_fit_the_logs_template() {
    let tmpl = template();
    // Strings without an explicit mapping become keywords (the template's dynamic template);
    // numbers become long by Elasticsearch's dynamic mapping. Everything the dashboard, the
    // smoke check and the docs name is mapped explicitly.
    let dynamic = &tmpl["template"]["mappings"]["dynamic_templates"][0]["strings_as_keyword"];
    assert_eq!(dynamic["match_mapping_type"], "string");
    assert_eq!(dynamic["mapping"]["type"], "keyword");
    let mut seen = BTreeSet::new();
    for doc in documents() {
        for (path, value) in leaves(&doc).into_iter().flat_map(|(p, v)| match v {
            // An array is indexed as its elements.
            Value::Array(items) => items.into_iter().map(|i| (p.clone(), i)).collect(),
            other => vec![(p, other)],
        }) {
            seen.insert(path.clone());
            let Some(m) = mapping_of(&tmpl, &path) else {
                assert!(
                    value.is_string() || value.is_i64(),
                    "{path}: {value} has no mapping and no dynamic rule"
                );
                continue;
            };
            match (m["type"].as_str().unwrap(), &value) {
                ("flattened", _) => {}
                ("keyword" | "text", Value::String(_)) => {}
                ("long", Value::Number(n)) => assert!(n.is_i64(), "{path}"),
                ("date", Value::String(s)) => assert!(
                    s.len() == 24 && s.ends_with('Z'),
                    "{path}: {s} is not RFC 3339 UTC with ms"
                ),
                (t, v) => panic!("{path}: {v} does not fit mapping {t}"),
            }
        }
    }
    for f in [
        "@timestamp",
        "message",
        "event.original",
        "log.level",
        "log.syslog.priority",
        "service.name",
        "systemd.unit",
        "host.hostname",
        "journald.unit",
        "pingcap.time",
        "pingcap.source",
    ] {
        assert!(seen.contains(f), "no fixture produces {f}");
        assert!(
            mapping_of(&tmpl, f).is_some_and(|m| m["type"] != "flattened"),
            "{f} must be mapped explicitly"
        );
    }
    // The raw line is stored, not indexed (ECS event.original).
    assert_eq!(mapping_of(&tmpl, "event.original").unwrap()["index"], false);
}

#[test]
fn logs_template_makes_the_event_logs_choices() {
    let logs = template();
    let events = read_json(&root().join("monitoring/elasticsearch/cdc-events-template.json"));
    assert_eq!(logs["index_patterns"], json!(["stack-logs-*"]));
    assert!(logs.get("data_stream").is_none(), "plain daily indices");
    assert_eq!(logs["priority"], events["priority"]);
    assert_eq!(logs["template"]["settings"], events["template"]["settings"]);
    assert_eq!(
        logs["template"]["mappings"]["dynamic_templates"],
        events["template"]["mappings"]["dynamic_templates"]
    );
    // No ILM policy in either (Filebeat runs with setup.ilm.enabled: false).
    assert!(
        logs["template"]["settings"]["index"]
            .get("lifecycle")
            .is_none()
    );
    assert_eq!(filebeat()["setup"]["ilm"]["enabled"], false);
}

#[test]
fn journal_input_is_separate_from_the_event_log() {
    let cfg = filebeat();
    let input = journal_input();
    assert_eq!(input["type"], "journald");
    assert_eq!(input["enabled"], true);
    // Its own index family: the per-input `index` wins over output.elasticsearch.index.
    assert_eq!(input["index"], "stack-logs-%{+yyyy.MM.dd}");
    assert!(
        cfg["output"]["elasticsearch"]["index"]
            .as_str()
            .unwrap()
            .starts_with("cdc-events-")
    );
    // Every unit the stack runs (and the smoke unit) is read, each a .service.
    let units: Vec<&str> = input["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    for u in [
        "tidb-pd.service",
        "tidb-tikv.service",
        "tidb-server.service",
        "ticdc.service",
        "apache-kafka.service",
        "cdcmon.service",
        "cdcmon-smoke.service",
        "elasticsearch.service",
        "filebeat.service",
        "prometheus.service",
        "grafana.service",
    ] {
        assert!(units.contains(&u), "{u} is not shipped");
    }
    // Every fixture is one `journalctl --unit U` returns for a shipped U (systemd
    // src/shared/logs-show.c add_matches_for_unit: _SYSTEMD_UNIT=U; or a coredump,
    // MESSAGE_ID=fc2e22bc… _UID=0 COREDUMP_UNIT=U; or PID 1 about U, _PID=1 UNIT=U; or a root
    // daemon about U, _UID=0 OBJECT_SYSTEMD_UNIT=U), and its service.name is that U.
    let docs = documents();
    for (e, doc) in entries().iter().zip(&docs) {
        let field = |k: &str| e[k].as_str();
        let matched = [
            field("_SYSTEMD_UNIT"),
            (field("MESSAGE_ID") == Some("fc2e22bc6ee647b6b90729ab34a250b1")
                && field("_UID") == Some("0"))
            .then(|| field("COREDUMP_UNIT"))
            .flatten(),
            (field("_PID") == Some("1"))
                .then(|| field("UNIT"))
                .flatten(),
            (field("_UID") == Some("0"))
                .then(|| field("OBJECT_SYSTEMD_UNIT"))
                .flatten(),
        ]
        .into_iter()
        .flatten()
        .find(|u| units.contains(u))
        .unwrap_or_else(|| {
            panic!(
                "journalctl --unit returns no shipped unit for {}",
                e["MESSAGE"]
            )
        });
        assert_eq!(
            get(doc, "service.name").and_then(Value::as_str),
            matched.strip_suffix(".service"),
            "fixture {}",
            e["MESSAGE"]
        );
    }
}

#[test]
fn logs_panels_use_only_template_fields() {
    let tmpl = template();
    let dash = read_json(&root().join("monitoring/grafana/dashboards/tidb-cdc.json"));
    let ds = read_yaml(&root().join("monitoring/grafana/provisioning/datasources/datasources.yml"));
    let logs_ds = ds["datasources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["uid"] == "elasticsearch-logs")
        .expect("a datasource with uid elasticsearch-logs")
        .clone();
    assert_eq!(logs_ds["type"], "elasticsearch");
    assert_eq!(logs_ds["jsonData"]["index"], "stack-logs-*");
    let mut fields: BTreeSet<String> = BTreeSet::new();
    for key in ["timeField", "logMessageField", "logLevelField"] {
        fields.insert(logs_ds["jsonData"][key].as_str().unwrap().to_string());
    }
    let panels: Vec<&Value> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["datasource"]["uid"] == "elasticsearch-logs")
        .collect();
    let types: BTreeSet<&str> = panels.iter().map(|p| p["type"].as_str().unwrap()).collect();
    assert!(types.contains("logs"), "a Service logs panel");
    assert!(types.contains("timeseries"), "a warning/error count panel");
    for p in &panels {
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], "elasticsearch-logs");
            fields.insert(t["timeField"].as_str().unwrap().to_string());
            let q = t["query"].as_str().unwrap();
            for token in q.split(|c: char| c.is_whitespace() || c == '(' || c == ')') {
                if let Some((f, _)) = token.split_once(':') {
                    if !f.is_empty() {
                        fields.insert(f.to_string());
                    }
                }
            }
            for agg in t["bucketAggs"].as_array().into_iter().flatten() {
                if let Some(f) = agg["field"].as_str() {
                    fields.insert(f.to_string());
                }
            }
        }
    }
    // The dashboard variables that filter them.
    for v in dash["templating"]["list"].as_array().unwrap() {
        if v["datasource"]["uid"] == "elasticsearch-logs" {
            let q: Value = serde_json::from_str(v["query"].as_str().unwrap()).unwrap();
            fields.insert(q["field"].as_str().unwrap().to_string());
        }
    }
    for f in ["@timestamp", "service.name", "log.level", "message"] {
        assert!(
            fields.contains(f),
            "the logs panels must use {f}: {fields:?}"
        );
    }
    for f in &fields {
        let m = mapping_of(&tmpl, f).unwrap_or_else(|| panic!("{f} is not in the logs template"));
        assert_ne!(m["type"], "flattened", "{f}");
    }
}

/// The recorded Elasticsearch answer `cdcmon smoke`'s check is tested against
/// (tests/fixtures/http/elasticsearch/search-logs-marker.json) holds exactly the document this
/// pipeline makes of the smoke's journal line: same fields, same values apart from the marker.
#[test]
fn smoke_fixture_holds_the_document_of_the_smoke_line() {
    let entries = entries();
    let i = entries
        .iter()
        .position(|e| e["_SYSTEMD_UNIT"] == "cdcmon-smoke.service")
        .expect("a cdcmon-smoke fixture");
    let ours = leaves(&documents()[i]);
    let answer =
        read_json(&root().join("tests/fixtures/http/elasticsearch/search-logs-marker.json"));
    let hit = &answer["hits"]["hits"][0];
    assert!(hit["_index"].as_str().unwrap().starts_with("stack-logs-"));
    let theirs = leaves(&hit["_source"]);
    let paths = |l: &[(String, Value)]| l.iter().map(|(p, _)| p.clone()).collect::<BTreeSet<_>>();
    assert_eq!(paths(&ours), paths(&theirs));
    let marker = |v: &Value| {
        v.as_str()
            .map(|s| s.replace("1796000523456123", "900000000000123"))
            .map_or(v.clone(), Value::from)
    };
    let theirs: std::collections::BTreeMap<String, Value> = theirs.into_iter().collect();
    for (p, a) in &ours {
        if p == "@timestamp" || p.starts_with("journald.custom") {
            continue;
        }
        assert_eq!(marker(a), theirs[p], "{p}");
    }
}
