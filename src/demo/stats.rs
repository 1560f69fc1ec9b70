//! What the demo produced (exact counts, for the final report and `--stats-file`) and the live
//! summary line, read from the consumer's own metrics.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::encode::{Kind, Message};
use super::generator::{Change, Table};
use crate::event::{Protocol, RowOp};
use crate::metrics::Metrics;
use crate::smoke::promtext;

/// Everything produced, counted the way the consumer counts it: row events per table and op,
/// DDL once per statement (TiCDC broadcasts it to every partition for all protocols but
/// canal-json; it is still one DDL), watermark messages (one watermark event each).
#[derive(Debug, Clone, Serialize)]
pub struct Produced {
    pub protocol: &'static str,
    pub partitions: i32,
    pub db: &'static str,
    /// table → op → row events.
    pub rows: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
    pub rows_total: u64,
    /// table → canal DDL type → statements.
    pub ddl: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
    pub ddl_total: u64,
    /// Kafka messages carrying DDL (statements × partitions where TiCDC broadcasts).
    pub ddl_messages: u64,
    /// Watermark messages (every partition gets each watermark).
    pub watermarks: u64,
    /// simple BOOTSTRAP messages.
    pub bootstraps: u64,
    /// Kafka messages produced, of every kind.
    pub messages: u64,
    pub bytes: u64,
    /// Messages the broker did not acknowledge.
    pub delivery_errors: u64,
    /// `cdcmon_kafka_messages_total` when the report was made.
    pub consumed_messages: u64,
    pub seconds: f64,
}

impl Produced {
    pub fn new(protocol: Protocol, partitions: i32) -> Self {
        let mut rows = BTreeMap::new();
        for t in Table::ALL {
            let ops: BTreeMap<&'static str, u64> =
                RowOp::ALL.iter().map(|op| (op.as_str(), 0)).collect();
            rows.insert(t.name(), ops);
        }
        Produced {
            protocol: protocol.as_str(),
            partitions,
            db: Table::DB,
            rows,
            rows_total: 0,
            ddl: BTreeMap::new(),
            ddl_total: 0,
            ddl_messages: 0,
            watermarks: 0,
            bootstraps: 0,
            messages: 0,
            bytes: 0,
            delivery_errors: 0,
            consumed_messages: 0,
            seconds: 0.0,
        }
    }

    pub fn count_change(&mut self, change: &Change) {
        match change {
            Change::Row(r) => {
                *self
                    .rows
                    .entry(r.table.name())
                    .or_default()
                    .entry(r.op.as_str())
                    .or_default() += 1;
                self.rows_total += 1;
            }
            Change::Ddl(d) => {
                *self
                    .ddl
                    .entry(d.table.name())
                    .or_default()
                    .entry(d.kind.canal_type())
                    .or_default() += 1;
                self.ddl_total += 1;
            }
            Change::Watermark(_) => {}
        }
    }

    pub fn count_message(&mut self, m: &Message) {
        self.messages += 1;
        self.bytes += (m.value.len() + m.key.as_ref().map_or(0, Vec::len)) as u64;
        match m.kind {
            Kind::Rows(_) => {}
            Kind::Ddl => self.ddl_messages += 1,
            Kind::Watermark => self.watermarks += 1,
            Kind::Bootstrap => self.bootstraps += 1,
        }
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(self)?;
        // Write then rename: a reader polling for the file never sees half of it.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// The live summary: rates since the previous line, from the consumer's metrics.
pub struct Summary {
    started: Instant,
    last_at: Instant,
    last: [f64; 3],
}

/// What the summary reads from `/metrics`.
struct Consumed {
    by_op: [f64; 3],
    ddl: f64,
    watermark_s: f64,
    decode_errors: f64,
    messages: f64,
}

fn read(metrics: &Metrics) -> Consumed {
    let text = String::from_utf8_lossy(&metrics.render()).into_owned();
    let samples = promtext::parse(&text).unwrap_or_default();
    let sum = |name: &str, labels: &[(&str, &str)]| promtext::sum(&samples, name, labels);
    Consumed {
        by_op: RowOp::ALL.map(|op| sum("cdc_events_total", &[("op", op.as_str())])),
        ddl: sum("cdc_ddl_events_total", &[]),
        watermark_s: sum("cdc_watermark_timestamp_seconds", &[]),
        decode_errors: sum("cdc_decode_errors_total", &[]),
        messages: sum("cdcmon_kafka_messages_total", &[]),
    }
}

impl Summary {
    pub fn new(started: Instant) -> Self {
        Summary {
            started,
            last_at: started,
            last: [0.0; 3],
        }
    }

    /// `cdcmon demo 10s | 301 events/s: insert 120.4 update 131.0 delete 49.6 | ...`
    pub fn line(&mut self, metrics: &Metrics, produced: &Produced) -> String {
        let c = read(metrics);
        let secs = self.last_at.elapsed().as_secs_f64().max(0.001);
        let rates: Vec<f64> = (0..3).map(|i| (c.by_op[i] - self.last[i]) / secs).collect();
        self.last = c.by_op;
        self.last_at = Instant::now();
        let age = if c.watermark_s > 0.0 {
            format!("{:.1}s", super::now_ms() as f64 / 1000.0 - c.watermark_s)
        } else {
            "-".to_owned()
        };
        format!(
            "cdcmon demo {:>4.0}s | {:.0} events/s: insert {:.1} update {:.1} delete {:.1} | DDL {} | watermark age {age} | decode errors {} | produced {} messages, consumed {}",
            self.started.elapsed().as_secs_f64(),
            rates.iter().sum::<f64>(),
            rates[0],
            rates[1],
            rates[2],
            c.ddl,
            c.decode_errors,
            produced.messages,
            c.messages,
        )
    }

    /// The report at the end of a run.
    pub fn final_line(&self, metrics: &Metrics, produced: &Produced, drained: bool) -> String {
        let c = read(metrics);
        let rows = produced
            .rows
            .iter()
            .map(|(t, ops)| {
                let ops: Vec<String> = ops.iter().map(|(op, n)| format!("{op} {n}")).collect();
                format!("{t}: {}", ops.join(" "))
            })
            .collect::<Vec<_>>()
            .join(", ");
        let verdict = if drained {
            "all consumed".to_owned()
        } else {
            format!(
                "NOT all consumed ({} of {} messages)",
                c.messages, produced.messages
            )
        };
        format!(
            "cdcmon demo done after {:.1}s: produced {} row events ({rows}), {} DDL, {} watermarks in {} messages ({} delivery errors); consumed {} row events, {} DDL, {} decode errors: {verdict}",
            produced.seconds,
            produced.rows_total,
            produced.ddl_total,
            produced.watermarks,
            produced.messages,
            produced.delivery_errors,
            c.by_op.iter().sum::<f64>(),
            c.ddl,
            c.decode_errors,
        )
    }
}
