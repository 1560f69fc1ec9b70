//! cdcmon's event-log lines, as Filebeat ships them, against the Elasticsearch index template and
//! the Filebeat configuration.
//!
//! The golden lines in monitoring/testdata/event-line-*.ndjson have exactly the shape cdcmon's
//! writer produces (src/eventlog.rs checks its own output against them key for key). Here each line
//! is decoded the way Filebeat's filestream `ndjson` parser does with our settings (one JSON object
//! per line, `target: ""` so keys land at the document root, `overwrite_keys` so the line's
//! `@timestamp` and `message` win, `expand_keys` off), and the resulting document must fit the
//! template: every field explicitly mapped with a compatible type, db/table/op keywords,
//! `@timestamp` a date, keys flattened.

mod common;

use common::files::{env_default, expand_dotted, read_json, rfc3339_ms, root};

use std::collections::BTreeSet;

use serde_json::{Map, Value};

fn filebeat_config() -> Value {
    let path = root().join("monitoring/filebeat/filebeat.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    expand_dotted(serde_norway::from_str(&text).unwrap())
}

fn template() -> Value {
    read_json(&root().join("monitoring/elasticsearch/cdc-events-template.json"))
}

struct Golden {
    name: String,
    raw: String,
}

fn golden_lines() -> Vec<Golden> {
    let dir = root().join("monitoring/testdata");
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("event-line-") && name.ends_with(".ndjson") {
            let raw = std::fs::read_to_string(&path).unwrap();
            out.push(Golden { name, raw });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(
        out.len() >= 4,
        "expected golden lines for insert, update with values, DDL, partial"
    );
    out
}

/// Filebeat's `expand_keys`: de-dot keys recursively into nested objects.
fn expand_keys(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, child) in map {
                let child = expand_keys(child);
                let mut parts: Vec<&str> = k.split('.').collect();
                let last = parts.pop().unwrap();
                let mut cur = &mut out;
                for p in parts {
                    cur = cur
                        .entry(p.to_string())
                        .or_insert_with(|| Value::Object(Map::new()))
                        .as_object_mut()
                        .unwrap();
                }
                cur.insert(last.to_string(), child);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Decode one line as Filebeat's filestream ndjson parser does with monitoring/filebeat/filebeat.yml:
/// the line must be one JSON object; with `target: ""` its keys become the document's root keys and,
/// with `overwrite_keys`, replace what Filebeat set itself (`message` = the raw line, `@timestamp` =
/// read time). Filebeat's own metadata (agent, host, log, input, ecs) is added next to them.
fn filebeat_decode(line: &str, read_time: &str) -> Map<String, Value> {
    let ndjson = &filebeat_config()["filebeat"]["inputs"][0]["parsers"][0]["ndjson"];
    assert_eq!(ndjson["target"], "", "keys must land at the root");
    assert_eq!(ndjson["overwrite_keys"], true);
    let parsed: Value = serde_json::from_str(line).expect("an event-log line is JSON");
    let parsed = if ndjson["expand_keys"] == true {
        expand_keys(&parsed)
    } else {
        parsed
    };
    let Value::Object(fields) = parsed else {
        panic!("an event-log line must be a JSON object")
    };
    let mut doc = Map::new();
    doc.insert("@timestamp".into(), Value::String(read_time.into()));
    doc.insert("message".into(), Value::String(line.into()));
    doc.insert(
        "log".into(),
        serde_json::json!({"offset": 0, "file": {"path": "/var/log/cdcmon/events.ndjson"}}),
    );
    doc.insert("input".into(), serde_json::json!({"type": "filestream"}));
    for (k, v) in fields {
        doc.insert(k, v); // overwrite_keys
    }
    doc
}

/// The mapping of a dotted path in the template, if any, and whether it sits inside a flattened
/// field (whose sub-keys need no mapping).
fn mapping_of<'a>(tmpl: &'a Value, path: &str) -> Option<&'a Value> {
    let mut props = &tmpl["template"]["mappings"]["properties"];
    let mut node = None;
    for part in path.split('.') {
        let m = props.get(part)?;
        node = Some(m);
        props = &m["properties"];
    }
    node
}

/// Walk a document; for every leaf, check the template maps it with a compatible type.
fn check_against_template(tmpl: &Value, prefix: &str, v: &Value, seen: &mut BTreeSet<String>) {
    let Value::Object(map) = v else {
        unreachable!()
    };
    for (k, child) in map {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        seen.insert(path.clone());
        let mapping = mapping_of(tmpl, &path)
            .unwrap_or_else(|| panic!("field {path} is not mapped in the index template"));
        let ty = mapping["type"].as_str();
        match (ty, child) {
            (Some("flattened"), Value::Object(_)) => {}
            (Some("flattened"), other) => panic!("{path}: flattened field holds {other}"),
            (None, Value::Object(_)) => check_against_template(tmpl, &path, child, seen),
            (Some(t), Value::Object(_)) => panic!("{path}: object value but mapped as {t}"),
            (Some("keyword" | "text"), Value::String(_)) => {}
            (Some("date"), Value::String(s)) => {
                assert!(
                    is_rfc3339_ms_utc(s),
                    "{path}: {s:?} is not RFC 3339 UTC with ms"
                )
            }
            (Some("long"), Value::Number(n)) => assert!(
                n.as_i64().is_some(),
                "{path}: {n} does not fit an Elasticsearch long"
            ),
            (Some("integer"), Value::Number(n)) => assert!(
                n.as_i64().is_some_and(|x| i32::try_from(x).is_ok()),
                "{path}: {n} does not fit an integer"
            ),
            (Some("boolean"), Value::Bool(_)) => {}
            (t, value) => panic!("{path}: value {value} does not fit mapping type {t:?}"),
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, as cdcmon writes it and Filebeat parses `@timestamp`.
fn is_rfc3339_ms_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[test]
fn rfc3339_helper() {
    assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    // TICDC.md: checkpoint_tso 439749918821711874 >> 18 = 2023-02-27 15:46:52.888 UTC.
    assert_eq!(
        rfc3339_ms((439_749_918_821_711_874u64 >> 18) as i64),
        "2023-02-27T15:46:52.888Z"
    );
}

#[test]
fn golden_lines_are_single_json_objects_without_dotted_keys() {
    for g in golden_lines() {
        assert!(g.raw.ends_with('\n'), "{}: must end with a newline", g.name);
        assert_eq!(g.raw.lines().count(), 1, "{}: one line per event", g.name);
        let v: Value = serde_json::from_str(g.raw.trim_end()).unwrap();
        assert!(v.is_object(), "{}", g.name);
        // Nested objects, never dotted keys: with or without expand_keys the document is the same.
        assert_eq!(
            expand_keys(&v),
            v,
            "{}: dotted keys would be expanded",
            g.name
        );
    }
}

#[test]
fn golden_lines_have_the_event_log_shape() {
    let ddl_types = [
        "CREATE", "ERASE", "TRUNCATE", "RENAME", "CINDEX", "DINDEX", "ALTER", "QUERY",
    ];
    let mut kinds = BTreeSet::new();
    for g in golden_lines() {
        let v: Value = serde_json::from_str(g.raw.trim_end()).unwrap();
        let n = &g.name;
        let top: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            top,
            BTreeSet::from(["@timestamp", "event", "cdc", "kafka", "message"]),
            "{n}"
        );
        assert_eq!(v["event"]["kind"], "event", "{n}");
        assert_eq!(v["event"]["dataset"], "cdcmon.cdc", "{n}");
        assert_eq!(v["kafka"]["topic"], "app_cdc", "{n}");
        assert!(
            v["kafka"]["partition"].is_u64() && v["kafka"]["offset"].is_u64(),
            "{n}"
        );
        // @timestamp is the commit time: commit_ts >> 18 milliseconds.
        let ts = v["cdc"]["commit_ts"].as_u64().expect("commit_ts is a u64");
        assert_eq!(v["@timestamp"], rfc3339_ms((ts >> 18) as i64), "{n}");
        assert!(
            is_rfc3339_ms_utc(v["event"]["created"].as_str().unwrap()),
            "{n}"
        );
        let cdc = &v["cdc"];
        let kind = cdc["kind"].as_str().unwrap();
        kinds.insert(kind.to_string());
        match kind {
            "row" => {
                let op = cdc["op"].as_str().unwrap();
                assert!(["insert", "update", "delete"].contains(&op), "{n}");
                assert_eq!(v["event"]["action"], op, "{n}");
                let keys = cdc["keys"].as_object().expect("cdc.keys object");
                let summary: Vec<String> = keys
                    .iter()
                    .map(|(k, val)| match val {
                        Value::String(s) => format!("{k}={s}"),
                        other => format!("{k}={other}"),
                    })
                    .collect();
                assert_eq!(
                    cdc["key"],
                    summary.join(","),
                    "{n}: cdc.key summarises cdc.keys"
                );
                assert!(cdc["partial"].is_boolean(), "{n}");
                assert!(
                    v["message"].as_str().unwrap().starts_with(&format!(
                        "{op} {}.{} ",
                        cdc["db"].as_str().unwrap(),
                        cdc["table"].as_str().unwrap()
                    )),
                    "{n}"
                );
            }
            "ddl" => {
                assert!(cdc.get("op").is_none(), "{n}: DDL has no cdc.op");
                assert!(cdc.get("keys").is_none(), "{n}: DDL has no cdc.keys");
                let t = cdc["ddl"]["type"].as_str().unwrap();
                assert!(ddl_types.contains(&t), "{n}");
                assert_eq!(v["event"]["action"], t, "{n}");
                assert!(cdc["ddl"]["query"].is_string(), "{n}");
            }
            other => panic!("{n}: unexpected cdc.kind {other}"),
        }
    }
    assert_eq!(kinds, BTreeSet::from(["ddl".into(), "row".into()]));
}

#[test]
fn filebeat_documents_fit_the_index_template() {
    let tmpl = template();
    let mut seen = BTreeSet::new();
    for g in golden_lines() {
        let doc = filebeat_decode(g.raw.trim_end(), "2030-01-01T00:00:00.000Z");
        // The commit time, not Filebeat's read time, is the document's time.
        let line: Value = serde_json::from_str(g.raw.trim_end()).unwrap();
        assert_eq!(doc["@timestamp"], line["@timestamp"], "{}", g.name);
        assert_eq!(doc["message"], line["message"], "{}", g.name);
        // Fields at the root, as the dashboard and the template expect them.
        for path in ["cdc", "kafka", "event"] {
            assert!(doc.contains_key(path), "{}: {path} not at the root", g.name);
        }
        // Only cdcmon's own fields are checked against the template; Filebeat's metadata (log,
        // input, agent, host, ecs) is left to the template's dynamic string-to-keyword rule.
        let ours: Map<String, Value> = doc
            .into_iter()
            .filter(|(k, _)| !["log", "input"].contains(&k.as_str()))
            .collect();
        check_against_template(&tmpl, "", &Value::Object(ours), &mut seen);
    }
    // The fields the dashboard filters and shows, mapped as the issue requires.
    for (path, ty) in [
        ("@timestamp", "date"),
        ("event.created", "date"),
        ("event.action", "keyword"),
        ("cdc.db", "keyword"),
        ("cdc.table", "keyword"),
        ("cdc.op", "keyword"),
        ("cdc.kind", "keyword"),
        ("cdc.key", "keyword"),
        ("cdc.keys", "flattened"),
        ("cdc.values", "flattened"),
        ("cdc.old_values", "flattened"),
        ("cdc.ddl.type", "keyword"),
        ("cdc.commit_ts", "long"),
        ("kafka.offset", "long"),
    ] {
        assert!(seen.contains(path), "no golden line exercises {path}");
        assert_eq!(
            mapping_of(&tmpl, path).and_then(|m| m["type"].as_str()),
            Some(ty),
            "{path}"
        );
    }
    // Values of flattened fields may be strings (canal-json) or numbers (open-protocol).
    let update: Value = golden_lines()
        .iter()
        .map(|g| serde_json::from_str::<Value>(g.raw.trim_end()).unwrap())
        .find(|v| v["cdc"]["protocol"] == "open-protocol")
        .expect("an open-protocol golden line");
    assert!(
        update["cdc"]["keys"]
            .as_object()
            .unwrap()
            .values()
            .any(Value::is_number)
    );
}

#[test]
fn template_is_a_composable_template_for_the_filebeat_index() {
    let tmpl = template();
    let cfg = filebeat_config();
    let patterns: Vec<&str> = tmpl["index_patterns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(patterns, ["cdc-events-*"]);
    assert!(
        tmpl.get("data_stream").is_none(),
        "plain daily indices, not a data stream"
    );
    assert!(tmpl["template"]["mappings"]["properties"].is_object());

    let es = &cfg["output"]["elasticsearch"];
    let index = es["index"].as_str().unwrap();
    assert!(index.starts_with("cdc-events-"), "{index}");
    let setup = &cfg["setup"];
    assert_eq!(setup["ilm"]["enabled"], false, "custom index needs ILM off");
    assert_eq!(setup["template"]["name"], "cdc-events");
    assert_eq!(setup["template"]["pattern"], "cdc-events-*");
    let json = &setup["template"]["json"];
    assert_eq!(json["enabled"], true);
    assert_eq!(json["name"], setup["template"]["name"]);
    assert_eq!(json["data_stream"], false);
    let path = env_default(json["path"].as_str().unwrap());
    assert!(
        path.ends_with("/cdc-events-template.json"),
        "Filebeat must load monitoring/elasticsearch/cdc-events-template.json, got {path}"
    );
}

#[test]
fn filebeat_reads_only_the_event_log_and_keeps_its_own_logs_out() {
    let cfg = filebeat_config();
    let inputs = cfg["filebeat"]["inputs"].as_array().unwrap();
    // The event log is the first input and the only one without an index of its own; every
    // other input (the service logs, issue 14) routes to stack-logs-*, never cdc-events-*
    // (tests/monitoring_stacklogs.rs checks that input).
    for other in &inputs[1..] {
        let index = other["index"].as_str().unwrap_or_default();
        assert!(
            index.starts_with("stack-logs-"),
            "input {} must write to its own stack-logs-* index, got {index:?}",
            other["id"]
        );
    }
    let input = &inputs[0];
    assert!(
        input.get("index").is_none(),
        "the event log uses the output's cdc-events-* index"
    );
    assert_eq!(input["type"], "filestream");
    assert!(
        input["id"].as_str().is_some_and(|s| !s.is_empty()),
        "filestream needs an id"
    );
    let paths: Vec<String> = input["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| env_default(p.as_str().unwrap()))
        .collect();
    // The live file and cdcmon's rotated files (events.ndjson.1 ... .N), nothing else.
    assert_eq!(
        paths,
        [
            "/var/log/cdcmon/events.ndjson",
            "/var/log/cdcmon/events.ndjson.[0-9]*"
        ]
    );
    let parsers = input["parsers"].as_array().unwrap();
    assert_eq!(parsers.len(), 1);
    assert!(parsers[0].get("ndjson").is_some());
    // Exactly one output, and it is Elasticsearch.
    let outputs = cfg["output"].as_object().unwrap();
    assert_eq!(outputs.keys().collect::<Vec<_>>(), ["elasticsearch"]);
    let hosts: Vec<String> = cfg["output"]["elasticsearch"]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| env_default(h.as_str().unwrap()))
        .collect();
    assert_eq!(hosts, ["http://127.0.0.1:9200"]);
    // Filebeat's own diagnostics: stderr/journal only, never shipped into cdc-events-*.
    assert_eq!(cfg["monitoring"]["enabled"], false);
    assert_eq!(cfg["logging"]["to_files"], false);
    assert_eq!(cfg["logging"]["to_stderr"], true);
    assert!(cfg.get("filebeat").unwrap().get("modules").is_none());
}
