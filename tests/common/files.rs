//! File and tool helpers shared by the tests of the repository's config files
//! (`monitoring/`, `nix/`).
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", path.display()))
}

pub fn read_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_norway::from_str(&text)
        .unwrap_or_else(|e| panic!("{}: invalid YAML: {e}", path.display()))
}

/// `Some(path)` of promtool, `None` when skipping is requested; panics when it is missing.
pub fn promtool() -> Option<PathBuf> {
    if std::env::var("CDCMON_SKIP_PROMTOOL").as_deref() == Ok("1") {
        eprintln!("CDCMON_SKIP_PROMTOOL=1: skipping the promtool check");
        return None;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("promtool");
        if candidate.is_file() {
            return Some(candidate);
        }
    }
    panic!(
        "promtool not found on PATH. Install it (Debian/Ubuntu: `apt-get install prometheus`, \
         Nix: `prometheus` package) or set CDCMON_SKIP_PROMTOOL=1 to skip the promtool checks."
    );
}

/// Beats read `a.b.c: x` and `a: {b: {c: x}}` alike; normalise YAML to the nested form.
pub fn expand_dotted(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, child) in map {
                let child = expand_dotted(child);
                let mut parts: Vec<&str> = k.split('.').collect();
                let last = parts.pop().unwrap();
                let mut cur = &mut out;
                for p in parts {
                    cur = cur
                        .entry(p.to_string())
                        .or_insert_with(|| Value::Object(Map::new()))
                        .as_object_mut()
                        .unwrap_or_else(|| panic!("config key {k} clashes with a scalar"));
                }
                match (cur.get_mut(last), child) {
                    (Some(Value::Object(existing)), Value::Object(new)) => {
                        for (nk, nv) in new {
                            existing.insert(nk, nv);
                        }
                    }
                    (_, child) => {
                        cur.insert(last.to_string(), child);
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(expand_dotted).collect()),
        other => other,
    }
}

/// Resolve Filebeat's `${NAME:default}` to its default.
pub fn env_default(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("unclosed ${") + start;
        let inner = &rest[start + 2..end];
        let (_, default) = inner
            .split_once(':')
            .unwrap_or_else(|| panic!("${{{inner}}} has no default"));
        out.push_str(default);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Every `${NAME:default}` string inside a JSON value resolved to its default.
pub fn env_defaults(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(env_default(&s)),
        Value::Array(a) => Value::Array(a.into_iter().map(env_defaults).collect()),
        Value::Object(m) => {
            Value::Object(m.into_iter().map(|(k, v)| (k, env_defaults(v))).collect())
        }
        other => other,
    }
}

/// Unix milliseconds → `YYYY-MM-DDTHH:MM:SS.mmmZ` (days-from-civil inverse, proleptic Gregorian).
pub fn rfc3339_ms(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let ms_of_day = unix_ms.rem_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000
    )
}
