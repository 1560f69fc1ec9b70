//! The Prometheus side of the monitoring content (monitoring/prometheus/):
//! `promtool check config`, `promtool check rules`, `promtool test rules`, plus structural checks
//! that every alert is unit-tested both firing and not firing.
//!
//! promtool is looked up on PATH (Debian/Ubuntu: `apt-get install prometheus`). Without it these
//! tests fail, unless `CDCMON_SKIP_PROMTOOL=1` is set.

mod common;

use common::files::{promtool, read_yaml, root};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn prom_dir() -> PathBuf {
    root().join("monitoring/prometheus")
}

fn run_promtool(promtool: &Path, args: &[&str], cwd: &Path) -> String {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed:\n{text}",
        args.join(" ")
    );
    text
}

fn files_in(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

fn rule_files() -> Vec<PathBuf> {
    let files = files_in(&prom_dir().join("rules"), ".yml");
    assert!(
        !files.is_empty(),
        "no rule files in monitoring/prometheus/rules"
    );
    files
}

fn test_files() -> Vec<PathBuf> {
    let files = files_in(&prom_dir().join("tests"), ".test.yml");
    assert!(
        !files.is_empty(),
        "no promtool tests in monitoring/prometheus/tests"
    );
    files
}

/// alert name -> (labels, annotations) of every alerting rule.
fn alerts() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for file in rule_files() {
        let doc = read_yaml(&file);
        for group in doc["groups"].as_array().expect("groups") {
            for rule in group["rules"].as_array().expect("rules") {
                if let Some(name) = rule["alert"].as_str() {
                    assert!(
                        out.insert(name.to_string(), rule.clone()).is_none(),
                        "alert {name} defined twice"
                    );
                }
            }
        }
    }
    out
}

#[test]
fn promtool_check_config_loads_the_rule_files() {
    let Some(promtool) = promtool() else { return };
    let out = run_promtool(
        &promtool,
        &["check", "config", "prometheus.yml"],
        &prom_dir(),
    );
    // The config's `rule_files` glob must find every rule file, so the rules are really loaded.
    let expected = format!("SUCCESS: {} rule files found", rule_files().len());
    assert!(
        out.contains(&expected),
        "expected `{expected}` in promtool output:\n{out}"
    );
}

#[test]
fn promtool_check_rules() {
    let Some(promtool) = promtool() else { return };
    for file in rule_files() {
        let out = run_promtool(
            &promtool,
            &["check", "rules", file.to_str().unwrap()],
            &prom_dir(),
        );
        assert!(out.contains("SUCCESS"), "{out}");
    }
}

#[test]
fn promtool_test_rules() {
    let Some(promtool) = promtool() else { return };
    let mut args = vec!["test".to_string(), "rules".to_string()];
    args.extend(
        test_files()
            .iter()
            .map(|p| p.to_string_lossy().into_owned()),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_promtool(&promtool, &args, &prom_dir());
    assert!(!out.contains("FAILED"), "{out}");
}

#[test]
fn every_alert_is_tested_firing_and_not_firing() {
    let alerts = alerts();
    let mut firing: BTreeSet<String> = BTreeSet::new();
    let mut quiet: BTreeSet<String> = BTreeSet::new();
    let mut tested_rule_files: BTreeSet<PathBuf> = BTreeSet::new();
    for file in test_files() {
        let doc = read_yaml(&file);
        for rf in doc["rule_files"].as_array().expect("rule_files") {
            let p = file.parent().unwrap().join(rf.as_str().unwrap());
            tested_rule_files.insert(p.canonicalize().unwrap());
        }
        for test in doc["tests"].as_array().expect("tests") {
            for case in test["alert_rule_test"].as_array().into_iter().flatten() {
                let name = case["alertname"].as_str().unwrap().to_string();
                assert!(
                    alerts.contains_key(&name),
                    "{}: test for unknown alert {name}",
                    file.display()
                );
                let expected = case["exp_alerts"].as_array().map_or(0, Vec::len);
                if expected > 0 {
                    firing.insert(name);
                } else {
                    quiet.insert(name);
                }
            }
        }
    }
    for name in alerts.keys() {
        assert!(firing.contains(name), "alert {name} has no firing test");
        assert!(quiet.contains(name), "alert {name} has no not-firing test");
    }
    for file in rule_files() {
        assert!(
            tested_rule_files.contains(&file.canonicalize().unwrap()),
            "rule file {} is not loaded by any promtool test",
            file.display()
        );
    }
}

#[test]
fn required_alerts_exist_with_severity_and_annotations() {
    let alerts = alerts();
    for name in [
        "CdcmonDown",
        "CdcDecodeErrors",
        "CdcEventLagHigh",
        "CdcWatermarkStale",
        "CdcConsumerLagGrowing",
        "TicdcChangefeedCheckpointLagHigh",
    ] {
        assert!(alerts.contains_key(name), "missing alert {name}");
    }
    assert!(
        alerts["CdcmonDown"]["expr"]
            .as_str()
            .unwrap()
            .contains(r#"up{job="cdcmon"}"#),
        "consumer-down must use up{{job=\"cdcmon\"}}"
    );
    for (name, rule) in &alerts {
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning"].contains(&severity),
            "{name}: severity label must be critical or warning, got {severity:?}"
        );
        for key in ["summary", "description"] {
            assert!(
                rule["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{name}: missing annotation {key}"
            );
        }
    }
}

#[test]
fn prometheus_config_scrapes_every_component() {
    let cfg = read_yaml(&prom_dir().join("prometheus.yml"));
    assert_eq!(cfg["global"]["scrape_interval"], "15s");
    assert_eq!(
        cfg["rule_files"],
        serde_json::json!(["rules/*.yml"]),
        "the Nix module and the image rely on this glob"
    );
    let mut jobs = BTreeMap::new();
    for job in cfg["scrape_configs"].as_array().unwrap() {
        let name = job["job_name"].as_str().unwrap().to_string();
        let path = job["metrics_path"]
            .as_str()
            .unwrap_or("/metrics")
            .to_string();
        let targets: Vec<String> = job["static_configs"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|sc| sc["targets"].as_array().unwrap().iter())
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        jobs.insert(name, (path, targets));
    }
    let expect = [
        ("cdcmon", "9102"),
        ("ticdc", "8300"),
        ("tidb", "10080"),
        ("pd", "2379"),
        ("tikv", "20180"),
        ("prometheus", "9090"),
    ];
    assert_eq!(jobs.len(), expect.len(), "jobs: {jobs:?}");
    for (job, port) in expect {
        let (path, targets) = jobs.get(job).unwrap_or_else(|| panic!("no job {job}"));
        assert_eq!(path, "/metrics", "{job}");
        assert_eq!(targets, &vec![format!("127.0.0.1:{port}")], "{job}");
    }
}
