//! The smoke report: one line per check for people, one JSON document for machines.

use std::io::Write;

use serde::Serialize;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Failed,
    /// Skipped on request (`--skip`) or because a check it depends on was skipped.
    Skipped,
    /// Not reached: an earlier check failed.
    NotRun,
}

impl Status {
    fn tag(self) -> &'static str {
        match self {
            Status::Ok => "[ok]",
            Status::Failed => "[FAIL]",
            Status::Skipped => "[skip]",
            Status::NotRun => "[not run]",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub index: usize,
    pub total: usize,
    pub group: String,
    pub name: String,
    pub status: Status,
    /// The result line (ok), the reason (failed, skipped).
    pub message: String,
    pub elapsed_ms: u64,
}

impl CheckResult {
    /// `[ok] 3/23 changefeed app-cdc normal, checkpoint lag 1.2 s`
    pub fn line(&self) -> String {
        let body = match self.status {
            Status::Ok => self.message.clone(),
            _ => format!("{}: {}", self.name, self.message),
        };
        format!("{} {}/{} {body}", self.status.tag(), self.index, self.total)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    /// Primary key of the marked rows (`cdc.key` = `id=<marker>`), if the pipeline ran.
    pub marker: Option<u64>,
    pub skipped_groups: Vec<String>,
    pub checks: Vec<CheckResult>,
    pub elapsed_ms: u64,
}

impl Report {
    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// The closing line(s): verdict, and a loud reminder of what was not verified.
    pub fn summary(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let skipped = self.count(Status::Skipped);
        if self.ok {
            lines.push(format!(
                "smoke passed: {} ok, {skipped} skipped, {:.1} s",
                self.count(Status::Ok),
                self.elapsed_ms as f64 / 1000.0
            ));
        } else if let Some(failed) = self.checks.iter().find(|c| c.status == Status::Failed) {
            lines.push(format!(
                "smoke FAILED at {}/{} ({}); {} check(s) not run",
                failed.index,
                failed.total,
                failed.name,
                self.count(Status::NotRun)
            ));
        }
        if skipped > 0 {
            lines.push(format!(
                "WARNING: {skipped} check(s) skipped ({}): those hops were NOT verified",
                if self.skipped_groups.is_empty() {
                    "dependencies".to_owned()
                } else {
                    format!("--skip {}", self.skipped_groups.join(","))
                }
            ));
        }
        lines
    }

    pub fn write_json(&self, mut out: impl Write) -> std::io::Result<()> {
        serde_json::to_writer_pretty(&mut out, self)?;
        out.write_all(b"\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(index: usize, status: Status, message: &str) -> CheckResult {
        CheckResult {
            index,
            total: 3,
            group: "ticdc".into(),
            name: "changefeed normal".into(),
            status,
            message: message.into(),
            elapsed_ms: 5,
        }
    }

    #[test]
    fn lines_read_like_the_issue_says() {
        assert_eq!(
            result(
                2,
                Status::Ok,
                "changefeed app-cdc normal, checkpoint lag 1.2 s"
            )
            .line(),
            "[ok] 2/3 changefeed app-cdc normal, checkpoint lag 1.2 s"
        );
        assert_eq!(
            result(2, Status::Failed, "changefeed app-cdc is failed: x (y)").line(),
            "[FAIL] 2/3 changefeed normal: changefeed app-cdc is failed: x (y)"
        );
    }

    #[test]
    fn summary_is_loud_about_skips_and_json_has_the_fields() {
        let report = Report {
            ok: true,
            marker: Some(7),
            skipped_groups: vec!["grafana".into()],
            checks: vec![
                result(1, Status::Ok, "a"),
                result(2, Status::Skipped, "--skip grafana"),
                result(3, Status::Ok, "c"),
            ],
            elapsed_ms: 1500,
        };
        let s = report.summary();
        assert_eq!(s[0], "smoke passed: 2 ok, 1 skipped, 1.5 s");
        assert!(s[1].contains("NOT verified") && s[1].contains("--skip grafana"));
        let mut buf = Vec::new();
        report.write_json(&mut buf).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["ok"], true);
        assert_eq!(v["marker"], 7);
        assert_eq!(v["checks"][1]["status"], "skipped");
        assert_eq!(v["checks"][0]["total"], 3);
    }
}
