//! A small parser for the Prometheus text exposition format, enough to read counters from
//! cdcmon's `/metrics`: `name{label="value",...} value [timestamp]` lines; `#` lines skipped.
//! Label values may contain `\\`, `\"` and `\n` escapes (exposition format spec).

use std::collections::BTreeMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// Parse a whole exposition. A malformed line is an error naming its line number, so a broken
/// `/metrics` fails the smoke test instead of reading as "no samples".
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_line(line).map_err(|e| format!("line {}: {e}: {line:?}", i + 1))?);
    }
    Ok(out)
}

fn parse_line(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("empty metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, tail) = parse_labels(after)?;
        labels = parsed;
        rest = tail;
    }
    let value_text = rest
        .split_whitespace()
        .next()
        .ok_or("no value after the labels")?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v
            .parse::<f64>()
            .map_err(|e| format!("bad value {v:?}: {e}"))?,
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parse `a="x",b="y"}` (after the `{`); returns the labels and the text after `}`.
fn parse_labels(mut s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start();
        if let Some(tail) = s.strip_prefix('}') {
            return Ok((labels, tail));
        }
        let eq = s.find('=').ok_or("label without '='")?;
        let key = s[..eq].trim().to_owned();
        s = s[eq + 1..].trim_start();
        s = s.strip_prefix('"').ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated escape".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        labels.insert(key, value);
        s = s[end + 1..].trim_start();
        if let Some(tail) = s.strip_prefix(',') {
            s = tail;
        }
    }
}

/// Sum of every sample of `name` whose labels include all of `matchers`.
pub fn sum(samples: &[Sample], name: &str, matchers: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && matchers.iter().all(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.value)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters_gauges_and_histograms() {
        let text = "# HELP cdc_events_total Row events.\n\
# TYPE cdc_events_total counter\n\
cdc_events_total{db=\"app\",op=\"insert\",table=\"users\"} 3\n\
cdc_events_total{db=\"app\",op=\"delete\",table=\"orders\"} 1e0\n\
cdcmon_build_info{version=\"0.1.0\"} 1\n\
cdc_event_lag_seconds_bucket{le=\"+Inf\"} 7\n\
cdc_event_lag_seconds_sum 0.25 1700000000000\n\
up NaN\n";
        let samples = parse(text).unwrap();
        assert_eq!(samples.len(), 6);
        assert_eq!(samples[0].name, "cdc_events_total");
        assert_eq!(samples[0].label("table"), Some("users"));
        assert_eq!(sum(&samples, "cdc_events_total", &[("db", "app")]), 4.0);
        assert_eq!(
            sum(
                &samples,
                "cdc_events_total",
                &[("table", "users"), ("op", "insert")]
            ),
            3.0
        );
        assert_eq!(sum(&samples, "cdc_events_total", &[("table", "nope")]), 0.0);
        assert_eq!(samples[3].label("le"), Some("+Inf"));
        assert_eq!(samples[4].value, 0.25);
        assert!(samples[5].value.is_nan());
    }

    #[test]
    fn label_values_unescape_and_may_hold_separators() {
        let s = parse(r#"m{a="x,y}z",b="q\"uo\\te\nnl" , } 2"#).unwrap();
        assert_eq!(s[0].label("a"), Some("x,y}z"));
        assert_eq!(s[0].label("b"), Some("q\"uo\\te\nnl"));
        assert_eq!(s[0].value, 2.0);
    }

    #[test]
    fn malformed_lines_are_errors_with_line_numbers() {
        let err = parse("ok 1\nbroken{a=\"x\" 1\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        assert!(parse("novalue\n").is_err());
        assert!(parse("m abc\n").is_err());
    }
}
