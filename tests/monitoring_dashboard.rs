//! The Grafana side of the monitoring content: every dashboard panel uses a provisioned datasource,
//! every PromQL expression (dashboards and alert rules) is valid (promtool) and names only metrics
//! that cdcmon or TiCDC/TiDB/TiKV/PD export (monitoring/known-external-metrics.txt), and every
//! Elasticsearch field a panel shows is one cdcmon's event log writes
//! (golden lines monitoring/testdata/event-line-*.ndjson).
//!
//! promtool is looked up on PATH; without it the PromQL-validity test fails, unless
//! `CDCMON_SKIP_PROMTOOL=1` is set.

mod common;

use common::files::{promtool, read_json, read_yaml, root};

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

// ------------------------------------------------------------------------------------------------
// Known metric names

/// Every metric family cdcmon exports (DESIGN.md + issue 4 table; src/metrics.rs registers them),
/// with its type. Histograms expand to `_bucket`/`_sum`/`_count`.
const CDCMON_METRICS: &[(&str, &str)] = &[
    ("cdc_events_total", "counter"),
    ("cdc_ddl_events_total", "counter"),
    ("cdc_event_lag_seconds", "histogram"),
    ("cdc_watermark_timestamp_seconds", "gauge"),
    ("cdc_decode_errors_total", "counter"),
    ("cdc_kafka_consumer_lag_messages", "gauge"),
    ("cdc_last_event_timestamp_seconds", "gauge"),
    ("cdcmon_build_info", "gauge"),
    ("cdcmon_kafka_messages_total", "counter"),
    ("cdcmon_watermarks_total", "counter"),
    ("cdcmon_ready", "gauge"),
    ("cdcmon_kafka_assigned_partitions", "gauge"),
    ("cdcmon_kafka_commits_total", "counter"),
    ("cdcmon_event_log_errors_total", "counter"),
    ("cdcmon_dead_letter_messages_total", "counter"),
    ("cdcmon_watermark_partitions_waiting", "gauge"),
    ("cdcmon_ddl_broadcast_copies_total", "counter"),
    // Row checksums (src/checksum.rs, issue 12).
    ("cdc_checksum_verified_total", "counter"),
    ("cdc_checksum_mismatch_total", "counter"),
    ("cdc_checksum_corrupted_total", "counter"),
    // prometheus crate 0.14, feature "process" (src/process_collector.rs).
    ("process_cpu_seconds_total", "counter"),
    ("process_open_fds", "gauge"),
    ("process_max_fds", "gauge"),
    ("process_virtual_memory_bytes", "gauge"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_start_time_seconds", "gauge"),
    ("process_threads", "gauge"),
];

fn cdcmon_series_names() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (name, kind) in CDCMON_METRICS {
        if *kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                out.insert(format!("{name}{suffix}"));
            }
        } else {
            out.insert(name.to_string());
        }
    }
    out
}

/// name -> (component, source) from monitoring/known-external-metrics.txt.
fn external_metrics() -> BTreeMap<String, (String, String)> {
    let path = root().join("monitoring/known-external-metrics.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = BTreeMap::new();
    for (no, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let name = parts.next().unwrap().to_string();
        let component = parts.next().unwrap_or_default().to_string();
        let source: Vec<&str> = parts.collect();
        assert!(
            ["prometheus", "ticdc", "tidb", "tikv", "pd"].contains(&component.as_str()),
            "known-external-metrics.txt:{}: unknown component {component:?}",
            no + 1
        );
        assert!(
            source.len() >= 3,
            "known-external-metrics.txt:{}: {name} needs a source (repository, file, variable)",
            no + 1
        );
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name {name:?}"
        );
        assert!(
            !cdcmon_series_names().contains(&name),
            "{name} is a cdcmon metric, not an external one"
        );
        assert!(
            out.insert(name.clone(), (component, source.join(" ")))
                .is_none(),
            "{name} listed twice"
        );
    }
    out
}

// ------------------------------------------------------------------------------------------------
// A small PromQL scanner: which identifiers in an expression are metric names.

const NOT_METRICS: &[&str] = &[
    // aggregation operators
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio", // binary set operators and modifiers
    "and",
    "or",
    "unless",
    "atan2",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right", // literals
    "inf",
    "nan",
];

/// Label lists follow these keywords in parentheses.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn metric_names(expr: &str) -> BTreeSet<String> {
    // 1. Blank out string literals, label matchers {...} and ranges/subqueries [...].
    let mut cleaned = String::with_capacity(expr.len());
    let mut chars = expr.chars().peekable();
    let mut depth_brace = 0usize;
    let mut depth_bracket = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                let quote = c;
                while let Some(d) = chars.next() {
                    if d == '\\' && quote != '`' {
                        chars.next();
                    } else if d == quote {
                        break;
                    }
                }
                cleaned.push(' ');
            }
            '#' => {
                // comment to end of line
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
                cleaned.push(' ');
            }
            '{' => depth_brace += 1,
            '}' => depth_brace = depth_brace.saturating_sub(1),
            '[' => depth_bracket += 1,
            ']' => depth_bracket = depth_bracket.saturating_sub(1),
            _ if depth_brace > 0 || depth_bracket > 0 => {}
            _ => cleaned.push(c),
        }
    }
    // 2. Scan identifiers.
    let bytes: Vec<char> = cleaned.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let next_non_space = |mut j: usize| {
        while j < bytes.len() && bytes[j].is_whitespace() {
            j += 1;
        }
        j
    };
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_digit() || (c == '.' && i + 1 < bytes.len() && bytes[i + 1].is_ascii_digit())
        {
            // numbers and durations (5m, 1e3, 0x1f, 1h30m)
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '.') {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '_' || bytes[i] == ':')
            {
                i += 1;
            }
            let ident: String = bytes[start..i].iter().collect();
            let lower = ident.to_ascii_lowercase();
            let j = next_non_space(i);
            if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                if j < bytes.len() && bytes[j] == '(' {
                    // skip the label list
                    let mut k = j;
                    while k < bytes.len() && bytes[k] != ')' {
                        k += 1;
                    }
                    i = k + 1;
                }
                continue;
            }
            if NOT_METRICS.contains(&lower.as_str()) {
                continue;
            }
            if j < bytes.len() && bytes[j] == '(' {
                continue; // function call
            }
            names.insert(ident);
            continue;
        }
        i += 1;
    }
    names
}

#[test]
fn promql_scanner_finds_metric_names() {
    let cases: &[(&str, &[&str])] = &[
        (
            "sum by (op) (increase(cdc_events_total[1h]))",
            &["cdc_events_total"],
        ),
        (
            "histogram_quantile(0.99, sum by (le) (rate(cdc_event_lag_seconds_bucket{job=\"x\"}[5m]))) > 30",
            &["cdc_event_lag_seconds_bucket"],
        ),
        (
            "up{job=\"cdcmon\"} == 0 or absent(up{job=\"cdcmon\"})",
            &["up"],
        ),
        ("changes(a_b[4m]) == 0 and a_b offset 4m", &["a_b"]),
        (
            "sum(x) by (le, op) / on (instance) group_left (version) y_info * 1e3",
            &["x", "y_info"],
        ),
        (
            "absent(foo) and on () (max(up{job=\"ticdc\"}) == 1)",
            &["foo", "up"],
        ),
        ("time() - some_gauge", &["some_gauge"]),
        (
            "rate(no_such_metric[$__rate_interval])",
            &["no_such_metric"],
        ),
    ];
    for (expr, want) in cases {
        let got = metric_names(expr);
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "{expr}");
    }
}

// ------------------------------------------------------------------------------------------------
// Dashboard and rules loading

fn dashboards() -> Vec<(PathBuf, Value)> {
    let dir = root().join("monitoring/grafana/dashboards");
    let mut out: Vec<(PathBuf, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let v = read_json(&p);
            (p, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty(), "no dashboards");
    out
}

/// All panels, including those nested in rows.
fn panels(dashboard: &Value) -> Vec<Value> {
    fn walk(list: &Value, out: &mut Vec<Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p.clone());
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// uid -> type of every provisioned datasource.
fn provisioned_datasources() -> BTreeMap<String, String> {
    let doc =
        read_yaml(&root().join("monitoring/grafana/provisioning/datasources/datasources.yml"));
    assert_eq!(doc["apiVersion"], 1);
    doc["datasources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["uid"]
                    .as_str()
                    .expect("every datasource has a fixed uid")
                    .to_string(),
                d["type"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// (what, uid, type) of the panel and every target.
fn datasource_refs(panel: &Value) -> Vec<(String, Value)> {
    let title = panel["title"].as_str().unwrap_or("?").to_string();
    let mut refs = Vec::new();
    if !panel["datasource"].is_null() {
        refs.push((format!("panel {title:?}"), panel["datasource"].clone()));
    }
    for t in panel["targets"].as_array().into_iter().flatten() {
        refs.push((
            format!("panel {title:?} target {}", t["refId"]),
            t["datasource"].clone(),
        ));
    }
    refs
}

/// Grafana's interval variables, replaced by durations for promtool.
fn substitute_grafana_vars(expr: &str) -> String {
    let out = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$__range_s", "3600")
        .replace("$__range", "1h");
    assert!(
        !out.contains('$'),
        "unsupported Grafana variable left in {expr:?}"
    );
    out
}

/// (where, PromQL) of every Prometheus target in every dashboard.
fn dashboard_promql() -> Vec<(String, String)> {
    let ds = provisioned_datasources();
    let mut out = Vec::new();
    for (path, d) in dashboards() {
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                let uid = t["datasource"]["uid"].as_str().unwrap_or_default();
                if ds.get(uid).map(String::as_str) == Some("prometheus") {
                    let expr = t["expr"].as_str().expect("prometheus target without expr");
                    out.push((
                        format!(
                            "{} / {:?} / {}",
                            path.file_name().unwrap().to_string_lossy(),
                            p["title"].as_str().unwrap_or("?"),
                            t["refId"]
                        ),
                        expr.to_string(),
                    ));
                }
            }
        }
    }
    out
}

fn rule_promql() -> Vec<(String, String)> {
    let dir = root().join("monitoring/prometheus/rules");
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let doc = read_yaml(&path);
        for g in doc["groups"].as_array().unwrap() {
            for r in g["rules"].as_array().unwrap() {
                let name = r["alert"].as_str().or(r["record"].as_str()).unwrap();
                out.push((
                    format!("{} / {name}", path.file_name().unwrap().to_string_lossy()),
                    r["expr"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    out
}

fn flatten_paths(prefix: &str, v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(p.clone());
                flatten_paths(&p, child, out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

/// Every field path (objects and leaves) some golden event-log line has.
fn event_log_fields() -> BTreeSet<String> {
    let dir = root().join("monitoring/testdata");
    let mut out = BTreeSet::new();
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("event-line-") && name.ends_with(".ndjson") {
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines() {
                let v: Value = serde_json::from_str(line).unwrap();
                flatten_paths("", &v, &mut out);
                n += 1;
            }
        }
    }
    assert!(n >= 3, "expected golden event lines in monitoring/testdata");
    out
}

// ------------------------------------------------------------------------------------------------
// Tests

#[test]
fn datasources_have_fixed_uids() {
    let ds = provisioned_datasources();
    assert_eq!(ds.get("prometheus").map(String::as_str), Some("prometheus"));
    assert_eq!(
        ds.get("elasticsearch").map(String::as_str),
        Some("elasticsearch")
    );
    let doc =
        read_yaml(&root().join("monitoring/grafana/provisioning/datasources/datasources.yml"));
    let es = doc["datasources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["uid"] == "elasticsearch")
        .unwrap();
    assert_eq!(es["jsonData"]["index"], "cdc-events-*");
    assert_eq!(es["jsonData"]["timeField"], "@timestamp");
}

#[test]
fn dashboard_provider_loads_the_dashboards_directory() {
    let doc = read_yaml(&root().join("monitoring/grafana/provisioning/dashboards/dashboards.yml"));
    let providers = doc["providers"].as_array().unwrap();
    assert_eq!(providers.len(), 1);
    assert_eq!(providers[0]["type"], "file");
    assert_eq!(providers[0]["options"]["path"], "/etc/grafana/dashboards");
}

#[test]
fn every_panel_uses_a_provisioned_datasource() {
    let ds = provisioned_datasources();
    for (path, d) in dashboards() {
        let mut ids = BTreeSet::new();
        for p in panels(&d) {
            assert!(
                ids.insert(p["id"].as_u64().expect("panel id")),
                "{}: duplicate panel id {}",
                path.display(),
                p["id"]
            );
            if p["type"] == "row" {
                continue;
            }
            let refs = datasource_refs(&p);
            assert!(
                refs.len() >= 2,
                "{}: panel {} needs a datasource and targets",
                path.display(),
                p["title"]
            );
            for (what, r) in refs {
                let uid = r["uid"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{what}: datasource must be {{type, uid}}, got {r}"));
                let ty = ds
                    .get(uid)
                    .unwrap_or_else(|| panic!("{what}: datasource uid {uid:?} is not provisioned"));
                assert_eq!(
                    r["type"].as_str(),
                    Some(ty.as_str()),
                    "{what}: type mismatch"
                );
            }
        }
    }
}

#[test]
fn every_promql_expression_is_valid() {
    let Some(promtool) = promtool() else { return };
    let exprs = dashboard_promql();
    assert!(exprs.len() >= 10, "too few PromQL targets: {exprs:?}");
    // promtool parses recording rules, so write each expression as one.
    let mut rules = Vec::new();
    for (i, (_, expr)) in exprs.iter().enumerate() {
        rules.push(serde_json::json!({
            "record": format!("dashboard:expr_{i}"),
            "expr": substitute_grafana_vars(expr),
        }));
    }
    let doc = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard.rules.yml");
    // JSON is YAML.
    std::fs::write(&file, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool rejects a dashboard expression:\n{text}\n{exprs:#?}"
    );
    assert!(
        text.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{text}"
    );
}

#[test]
fn promql_names_only_exported_metrics() {
    let cdcmon = cdcmon_series_names();
    let external = external_metrics();
    let mut used_external = BTreeSet::new();
    let all: Vec<(String, String)> = dashboard_promql()
        .into_iter()
        .chain(rule_promql())
        .collect();
    assert!(all.len() > 15);
    for (place, expr) in &all {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{place}: no metric in {expr:?}");
        for name in names {
            if external.contains_key(&name) {
                used_external.insert(name);
            } else {
                assert!(
                    cdcmon.contains(&name),
                    "{place}: {name:?} is neither a cdcmon metric nor in \
                     monitoring/known-external-metrics.txt ({expr})"
                );
            }
        }
    }
    // The TiCDC checkpoint lag must come from TiCDC's real metric.
    assert!(used_external.contains("ticdc_owner_checkpoint_ts_lag"));
}

#[test]
fn dashboard_has_the_required_panels() {
    let (_, d) = dashboards()
        .into_iter()
        .find(|(p, _)| p.ends_with("tidb-cdc.json"))
        .expect("tidb-cdc.json");
    assert_eq!(d["title"], "TiDB CDC");
    assert_eq!(d["uid"], "tidb-cdc");
    let ps = panels(&d);
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let targets =
        |p: &Value| -> Vec<Value> { p["targets"].as_array().cloned().unwrap_or_default() };

    // The pie: last 1 h by operation, instant query, piechart panel.
    let pie = ps
        .iter()
        .find(|p| p["type"] == "piechart")
        .expect("a piechart panel");
    let t = targets(pie);
    assert_eq!(t.len(), 1);
    assert_eq!(
        norm(t[0]["expr"].as_str().unwrap()),
        "sum by (op) (increase(cdc_events_total[1h]))"
    );
    assert_eq!(t[0]["instant"], true, "the pie must be an instant query");
    assert_ne!(t[0]["range"], true, "the pie must not be a range query");

    let all_exprs: Vec<String> = ps
        .iter()
        .flat_map(targets)
        .filter_map(|t| t["expr"].as_str().map(norm))
        .collect();
    let has = |needle: &str| all_exprs.iter().any(|e| e.contains(needle));
    assert!(
        has("sum by (db, table, op) (rate(cdc_events_total["),
        "events/s by table and op"
    );
    assert!(
        has("histogram_quantile(0.5, sum by (le) (rate(cdc_event_lag_seconds_bucket["),
        "lag p50"
    );
    assert!(
        has("histogram_quantile(0.99, sum by (le) (rate(cdc_event_lag_seconds_bucket["),
        "lag p99"
    );
    assert!(
        has("time() - cdc_watermark_timestamp_seconds"),
        "watermark age"
    );
    assert!(has("cdc_decode_errors_total"), "decode errors");
    assert!(has("cdc_kafka_consumer_lag_messages"), "consumer-group lag");
    assert!(has("ticdc_owner_checkpoint_ts_lag"), "TiCDC checkpoint lag");

    // Raw events from Elasticsearch.
    let raw = ps
        .iter()
        .find(|p| {
            p["datasource"]["uid"] == "elasticsearch"
                && targets(p)
                    .iter()
                    .any(|t| t["metrics"][0]["type"] == "raw_data")
        })
        .expect("a raw-data Elasticsearch panel");
    assert!(["table", "logs"].contains(&raw["type"].as_str().unwrap()));
}

/// Field names an Elasticsearch panel shows or queries.
fn es_fields_of(panel: &Value) -> BTreeSet<String> {
    let mut fields = BTreeSet::new();
    for t in panel["targets"].as_array().into_iter().flatten() {
        if let Some(f) = t["timeField"].as_str() {
            fields.insert(f.to_string());
        }
        // Lucene `field:value` terms of the query.
        let q = t["query"].as_str().unwrap_or_default();
        for token in q.split(|c: char| c.is_whitespace() || c == '(' || c == ')') {
            if let Some((field, _)) = token.split_once(':') {
                if !field.is_empty() {
                    fields.insert(field.to_string());
                }
            }
        }
        for agg in t["bucketAggs"].as_array().into_iter().flatten() {
            if let Some(f) = agg["field"].as_str() {
                fields.insert(f.to_string());
            }
        }
        for m in t["metrics"].as_array().into_iter().flatten() {
            if let Some(f) = m["field"].as_str() {
                fields.insert(f.to_string());
            }
        }
    }
    for tr in panel["transformations"].as_array().into_iter().flatten() {
        let o = &tr["options"];
        for n in o["include"]["names"].as_array().into_iter().flatten() {
            fields.insert(n.as_str().unwrap().to_string());
        }
        for key in ["indexByName", "renameByName", "excludeByName"] {
            for (k, _) in o[key].as_object().into_iter().flatten() {
                fields.insert(k.clone());
            }
        }
    }
    fields
}

#[test]
fn elasticsearch_panels_show_only_event_log_fields() {
    let written = event_log_fields();
    let mut checked = 0;
    for (path, d) in dashboards() {
        for p in panels(&d) {
            if p["datasource"]["uid"] != "elasticsearch" {
                continue;
            }
            let fields = es_fields_of(&p);
            assert!(
                fields.len() >= 5,
                "{}: panel {} shows too few fields: {fields:?}",
                path.display(),
                p["title"]
            );
            for f in &fields {
                assert!(
                    written.contains(f),
                    "{}: panel {} uses field {f:?}, which cdcmon's event log does not write \
                     (known: {written:?})",
                    path.display(),
                    p["title"]
                );
                checked += 1;
            }
            // time, db, table, op, keys
            for f in ["@timestamp", "cdc.db", "cdc.table", "cdc.op", "cdc.key"] {
                assert!(fields.contains(f), "panel {} must show {f}", p["title"]);
            }
        }
    }
    assert!(checked > 0, "no Elasticsearch panel found");
}

/// Issue 10 point 2: a watermark that never arrived is shown as such, not as a 55-year age. The
/// gauge is absent until a watermark arrives (src/watermark.rs), so an *instant* stat query on it
/// returns nothing and the panel prints its no-value text (a range query would keep showing the
/// last value from earlier in the range).
#[test]
fn watermark_stat_says_no_watermark_received() {
    let (_, d) = dashboards()
        .into_iter()
        .find(|(p, _)| p.ends_with("tidb-cdc.json"))
        .expect("tidb-cdc.json");
    let stat = panels(&d)
        .into_iter()
        .find(|p| {
            p["type"] == "stat"
                && p["targets"].as_array().is_some_and(|t| {
                    t.iter().any(|t| {
                        t["expr"].as_str() == Some("time() - cdc_watermark_timestamp_seconds")
                    })
                })
        })
        .expect("a stat panel on the watermark age");
    assert_eq!(
        stat["fieldConfig"]["defaults"]["noValue"],
        "no watermark received"
    );
    for t in stat["targets"].as_array().unwrap() {
        assert_eq!(t["instant"], true, "{t}");
        assert_ne!(t["range"], true, "{t}");
    }
    assert_eq!(stat["options"]["reduceOptions"]["calcs"][0], "last");
}
