//! Prometheus metrics. Names and labels of the `cdc_*` families are fixed by DESIGN.md.
//!
//! The hot path never builds label strings per event: [`EventCounters`] caches the counter handles
//! per (db, table) and is owned by the single consume loop, so lookups need no lock and no
//! allocation once a table has been seen.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::core::{Collector, Desc};
use prometheus::proto;
use prometheus::{
    Encoder, Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::metric_family::LabelledFamily;

use crate::event::RowOp;
use crate::protocol::DecodeErrorReason;

/// Buckets of `cdc_event_lag_seconds`: TiCDC's normal commit-to-Kafka latency is sub-second to a
/// few seconds; the tail up to 10 minutes tells a stuck changefeed apart.
pub const LAG_BUCKETS: [f64; 13] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// [`LAG_BUCKETS`] in whole milliseconds. A lag is a whole number of milliseconds, and
/// `ms as f64 / 1000.0` is at most a bucket's bound exactly when `ms` is at most its
/// millisecond bound (division rounds monotonically and every bound is `k / 1000.0` for these
/// `k`), so the integer comparison picks prometheus' bucket (`tests::lag_histogram_*`).
const LAG_BUCKETS_MS: [u64; 13] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000,
];

/// `cdc_event_lag_seconds`, observed once per row and DDL event. prometheus' `Histogram` paid
/// ~115 instructions per observation (a linear search over float bounds, a hot/cold shard
/// switch with four atomic updates); this one finds the bucket with integer comparisons and
/// updates two atomics: the bucket's own count and the sum. A scrape reads every bucket once
/// and derives the cumulative counts and `_count` from those same reads, so buckets and
/// `_count` always agree (`_count` = the `+Inf` bucket, cumulative counts never decrease) and
/// hold every observation made before the scrape. `_sum` is read separately: a scrape racing an
/// observation may include its lag in the sum but not yet in the counts, or the reverse (one
/// observation's difference; prometheus' `Histogram` keeps them together with a hot/cold swap,
/// which is most of what it cost).
#[derive(Clone)]
pub struct LagHistogram(Arc<LagHistogramCore>);

struct LagHistogramCore {
    desc: Desc,
    /// Observations per bucket, not cumulative: `LAG_BUCKETS_MS[i]` at `i`, `+Inf` last.
    counts: [AtomicU64; 14],
    /// Sum of the observations in seconds, as `f64` bits.
    sum: AtomicU64,
}

impl LagHistogram {
    fn new(name: &str, help: &str) -> anyhow::Result<Self> {
        Ok(LagHistogram(Arc::new(LagHistogramCore {
            desc: Desc::new(name.into(), help.into(), Vec::new(), HashMap::new())?,
            counts: Default::default(),
            sum: AtomicU64::new(0f64.to_bits()),
        })))
    }

    /// One event whose commit was `lag_ms` milliseconds before it was consumed.
    pub fn observe_ms(&self, lag_ms: u64) {
        let bucket = LAG_BUCKETS_MS.iter().filter(|&&b| lag_ms > b).count();
        self.0.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let secs = lag_ms as f64 / 1000.0;
        // One writer (the consume loop): the update loop runs once.
        let _ = self
            .0
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + secs).to_bits())
            });
    }

    /// Observations so far.
    pub fn sample_count(&self) -> u64 {
        self.0
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

impl Collector for LagHistogram {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.0.desc]
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(LAG_BUCKETS.len());
        for (count, bound) in self.0.counts.iter().zip(LAG_BUCKETS) {
            cumulative += count.load(Ordering::Relaxed);
            let mut b = proto::Bucket::default();
            b.set_cumulative_count(cumulative);
            b.set_upper_bound(bound);
            buckets.push(b);
        }
        let mut h = proto::Histogram::default();
        h.set_sample_count(cumulative + self.0.counts[LAG_BUCKETS.len()].load(Ordering::Relaxed));
        h.set_sample_sum(f64::from_bits(self.0.sum.load(Ordering::Relaxed)));
        h.set_bucket(buckets);
        let mut m = proto::Metric::default();
        m.set_histogram(h);
        let mut family = proto::MetricFamily::default();
        family.set_name(self.0.desc.fq_name.clone());
        family.set_help(self.0.desc.help.clone());
        family.set_field_type(proto::MetricType::HISTOGRAM);
        family.set_metric(vec![m]);
        vec![family]
    }
}

/// Every metric cdcmon exports, registered in one private registry.
pub struct Metrics {
    registry: Registry,
    /// Families with more than one label are `LabelledFamily`s: prometheus' own vectors merge
    /// series whose label values concatenate alike (`crate::metric_family`).
    pub events: LabelledFamily<IntCounter>,
    pub ddl_events: LabelledFamily<IntCounter>,
    pub event_lag: LagHistogram,
    /// `cdc_watermark_timestamp_seconds`: a vector without labels, so the series exists only
    /// while a minimum watermark is known (`with_label_values(&[])`) and disappears (`reset`)
    /// when it is not. Never 0 for "none received": that reads as 1970 (docs/monitoring.md).
    pub watermark_seconds: GaugeVec,
    pub watermark_partitions_waiting: IntGauge,
    pub ddl_broadcast_copies: IntCounter,
    pub decode_errors: IntCounterVec,
    pub consumer_lag: LabelledFamily<IntGauge>,
    pub messages: IntCounter,
    pub watermarks: IntCounter,
    pub ready: IntGauge,
    pub assigned_partitions: IntGauge,
    pub commits: IntCounterVec,
    pub event_log_errors: IntCounter,
    pub dead_letter: IntCounterVec,
    pub last_event_seconds: Gauge,
    /// Row checksums (simple, Avro): see `crate::checksum`.
    pub checksum_verified: LabelledFamily<IntCounter>,
    pub checksum_mismatch: LabelledFamily<IntCounter>,
    pub checksum_corrupted: LabelledFamily<IntCounter>,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: T,
) -> anyhow::Result<T> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

impl Metrics {
    pub fn new() -> anyhow::Result<Self> {
        let registry = Registry::new();
        let r = &registry;
        let metrics = Metrics {
            events: LabelledFamily::new(
                r,
                Opts::new(
                    "cdc_events_total",
                    "Row change events by table and operation.",
                ),
                &["db", "table", "op"],
            )?,
            ddl_events: LabelledFamily::new(
                r,
                Opts::new("cdc_ddl_events_total", "DDL events by table and DDL type."),
                &["db", "table", "type"],
            )?,
            event_lag: register(
                r,
                LagHistogram::new(
                    "cdc_event_lag_seconds",
                    "Consume time minus commit time (commitTs >> 18 ms) of row and DDL events.",
                )?,
            )?,
            watermark_seconds: register(
                r,
                GaugeVec::new(
                    Opts::new(
                        "cdc_watermark_timestamp_seconds",
                        "Minimum TiCDC watermark (resolved ts) over the assigned partitions (but \
                         drained ones that delivered nothing), unix seconds; absent until every \
                         one of them sent a watermark.",
                    ),
                    &[],
                )?,
            )?,
            watermark_partitions_waiting: register(
                r,
                IntGauge::new(
                    "cdcmon_watermark_partitions_waiting",
                    "Assigned partitions that delivered events of a protocol that sends \
                     watermarks, but no watermark yet.",
                )?,
            )?,
            ddl_broadcast_copies: register(
                r,
                IntCounter::new(
                    "cdcmon_ddl_broadcast_copies_total",
                    "Copies of broadcast DDL on partitions other than 0: skipped, counted once \
                     from partition 0.",
                )?,
            )?,
            decode_errors: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "cdc_decode_errors_total",
                        "Kafka messages that could not be decoded, by reason.",
                    ),
                    &["reason"],
                )?,
            )?,
            consumer_lag: LabelledFamily::new(
                r,
                Opts::new(
                    "cdc_kafka_consumer_lag_messages",
                    "Partition high watermark minus the consumer position.",
                ),
                // `topic` added to DESIGN.md's `partition`: with --topic a list or a ^regex,
                // partition 0 of two topics are two series.
                &["topic", "partition"],
            )?,
            messages: register(
                r,
                IntCounter::new("cdcmon_kafka_messages_total", "Kafka messages consumed.")?,
            )?,
            watermarks: register(
                r,
                IntCounter::new("cdcmon_watermarks_total", "Watermark events received.")?,
            )?,
            ready: register(
                r,
                IntGauge::new(
                    "cdcmon_ready",
                    "1 when partitions are assigned and a broker is up, else 0.",
                )?,
            )?,
            assigned_partitions: register(
                r,
                IntGauge::new(
                    "cdcmon_kafka_assigned_partitions",
                    "Partitions currently assigned to this consumer.",
                )?,
            )?,
            commits: register(
                r,
                IntCounterVec::new(
                    Opts::new("cdcmon_kafka_commits_total", "Offset commits by result."),
                    &["result"],
                )?,
            )?,
            event_log_errors: register(
                r,
                IntCounter::new(
                    "cdcmon_event_log_errors_total",
                    "Failed writes or flushes of the event log (retried; offsets wait).",
                )?,
            )?,
            dead_letter: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "cdcmon_dead_letter_messages_total",
                        "Undecodable messages copied to the dead-letter topic, by result.",
                    ),
                    &["result"],
                )?,
            )?,
            last_event_seconds: register(
                r,
                Gauge::new(
                    "cdc_last_event_timestamp_seconds",
                    "Commit time of the newest row event, unix seconds.",
                )?,
            )?,
            checksum_verified: LabelledFamily::new(
                r,
                Opts::new(
                    "cdc_checksum_verified_total",
                    "Row events whose TiDB row checksum was recomputed and matched.",
                ),
                &["db", "table"],
            )?,
            checksum_mismatch: LabelledFamily::new(
                r,
                Opts::new(
                    "cdc_checksum_mismatch_total",
                    "Row events whose recomputed TiDB row checksum differs from the one TiCDC sent.",
                ),
                &["db", "table"],
            )?,
            checksum_corrupted: LabelledFamily::new(
                r,
                Opts::new(
                    "cdc_checksum_corrupted_total",
                    "Row events TiCDC itself flagged as corrupted (its upstream checksum check failed).",
                ),
                &["db", "table"],
            )?,
            registry,
        };
        let build_info = IntGaugeVec::new(
            Opts::new("cdcmon_build_info", "Build information; always 1."),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        metrics.registry.register(Box::new(build_info))?;
        #[cfg(target_os = "linux")]
        metrics.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        // Pre-create every error reason and result label so dashboards and `increase()` see a
        // zero before the first failure instead of a missing series.
        for reason in DecodeErrorReason::ALL {
            metrics.decode_errors.with_label_values(&[reason.as_str()]);
        }
        for result in ["ok", "error"] {
            metrics.commits.with_label_values(&[result]);
            metrics.dead_letter.with_label_values(&[result]);
        }
        Ok(metrics)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        // TextEncoder only fails on I/O errors of the writer, and a Vec does not fail.
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %err, "cannot encode metrics");
        }
        out
    }

    /// Export the minimum watermark (TSO), or remove the series when none is known.
    pub fn set_watermark(&self, min_tso: Option<u64>) {
        match min_tso {
            Some(ts) => self
                .watermark_seconds
                .with_label_values::<&str>(&[])
                .set(crate::event::tso_physical_ms(ts) as f64 / 1000.0),
            None => self.watermark_seconds.reset(),
        }
    }

    pub fn decode_error(&self, reason: DecodeErrorReason) {
        self.decode_errors
            .with_label_values(&[reason.as_str()])
            .inc();
    }
}

/// FxHash (rustc's hasher): a multiply-rotate per word. The per-event lookups hash short
/// schema/table names, where SipHash showed up at ~2.5 % of the consume loop's profile. The keys
/// are database identifiers from the change stream, not attacker-chosen request data, so
/// HashDoS resistance buys nothing here. Also the hasher of the pipeline's pending-offset maps
/// (`src/pipeline.rs`): their keys are (topic index, partition) pairs.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl FxHasher {
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        // The last 1..=7 bytes as one zero-padded word.
        let rest = chunks.remainder();
        if !rest.is_empty() {
            self.add(crate::words::tail_word(rest));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` with [`FxHasher`].
pub type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Counter handles for one table. The three row-op series are created together on the table's
/// first *row* event, so a table that only ever saw DDL has no `cdc_events_total` series (no
/// series for what never happened: periodic DDL-only tables would grow cardinality without
/// bound), while a table with rows has all three from then on: the first update or delete after
/// an insert then starts from a scraped 0, which `increase()` (the dashboard's pie) needs to
/// count it. DDL types are created on first use.
struct TableCounters {
    db: Box<str>,
    table: Box<str>,
    /// The next table whose names hash alike (index into `EventCounters::tables`).
    next_same_hash: Option<usize>,
    ops: Option<[IntCounter; 3]>,
    ddl: FxMap<Box<str>, IntCounter>,
}

/// Per-table cache of counter handles, owned by the consume loop.
pub struct EventCounters {
    events: LabelledFamily<IntCounter>,
    ddl_events: LabelledFamily<IntCounter>,
    /// Hash of (db, table) → the first table in `tables` with that hash; tables whose names
    /// hash alike are chained through `next_same_hash`. The names are hashed where they lie (no
    /// joined key built per event) and a hit compares them once, so a lookup costs the same at
    /// 3 or 300 tables and is exact whatever collides (`tests::counts_stay_exact_*`).
    index: FxMap<u64, usize>,
    tables: Vec<TableCounters>,
}

/// The index's hash of a table: both names, with a byte no UTF-8 text contains between them.
fn table_hash(db: &str, table: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(db.as_bytes());
    h.write_u8(0xff);
    h.write(table.as_bytes());
    h.finish()
}

impl EventCounters {
    pub fn new(metrics: &Metrics) -> Self {
        EventCounters {
            events: metrics.events.clone(),
            ddl_events: metrics.ddl_events.clone(),
            index: FxMap::default(),
            tables: Vec::new(),
        }
    }

    fn table_index(&mut self, db: &str, table: &str) -> usize {
        self.table_index_hashed(table_hash(db, table), db, table)
    }

    /// `table_index` with the hash given, so tests can make tables collide.
    fn table_index_hashed(&mut self, hash: u64, db: &str, table: &str) -> usize {
        let first = self.index.get(&hash).copied();
        let mut at = first;
        while let Some(i) = at {
            let t = &self.tables[i];
            if *t.table == *table && *t.db == *db {
                return i;
            }
            at = t.next_same_hash;
        }
        let i = self.tables.len();
        self.tables.push(TableCounters {
            db: db.into(),
            table: table.into(),
            next_same_hash: first,
            ops: None,
            ddl: FxMap::default(),
        });
        self.index.insert(hash, i);
        i
    }

    pub fn row(&mut self, db: &str, table: &str, op: RowOp) {
        let idx = match op {
            RowOp::Insert => 0,
            RowOp::Update => 1,
            RowOp::Delete => 2,
        };
        let i = self.table_index(db, table);
        // Disjoint fields: the handles are in `tables`, the family only read on a first row.
        let events = &self.events;
        let ops = self.tables[i].ops.get_or_insert_with(|| {
            RowOp::ALL.map(|op| events.with_label_values(&[db, table, op.as_str()]))
        });
        ops[idx].inc();
    }

    pub fn ddl(&mut self, db: &str, table: &str, ddl_type: &str) {
        let i = self.table_index(db, table);
        let t = &mut self.tables[i];
        if let Some(counter) = t.ddl.get(ddl_type) {
            counter.inc();
            return;
        }
        let counter = self.ddl_events.with_label_values(&[db, table, ddl_type]);
        counter.inc();
        t.ddl.insert(ddl_type.into(), counter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &Metrics) -> String {
        String::from_utf8(m.render()).unwrap()
    }

    #[test]
    fn fixed_metric_names_are_exported() {
        let m = Metrics::new().unwrap();
        let mut c = EventCounters::new(&m);
        c.row("app", "users", RowOp::Insert);
        c.ddl("app", "users", "CREATE");
        m.consumer_lag.with_label_values(&["app_cdc", "0"]).set(3);
        let t = text(&m);
        for name in [
            "cdc_events_total{db=\"app\",op=\"insert\",table=\"users\"} 1",
            "cdc_ddl_events_total{db=\"app\",table=\"users\",type=\"CREATE\"} 1",
            "cdc_event_lag_seconds_bucket",
            "cdcmon_watermark_partitions_waiting 0",
            "cdcmon_ddl_broadcast_copies_total 0",
            "cdc_decode_errors_total{reason=\"invalid_json\"} 0",
            "cdc_kafka_consumer_lag_messages{partition=\"0\",topic=\"app_cdc\"} 3",
            "cdcmon_build_info{version=\"",
            "process_resident_memory_bytes",
        ] {
            assert!(t.contains(name), "missing {name} in\n{t}");
        }
    }

    #[test]
    fn ddl_only_table_has_no_row_series_and_a_rows_table_gets_all_ops() {
        let m = Metrics::new().unwrap();
        let mut c = EventCounters::new(&m);
        c.ddl("app", "smoke_ddl", "CREATE");
        c.row("app", "users", RowOp::Update);
        let t = text(&m);
        assert!(!t.contains("table=\"smoke_ddl\"} 0"), "{t}");
        assert!(
            !t.lines()
                .any(|l| l.starts_with("cdc_events_total") && l.contains("smoke_ddl")),
            "a DDL-only table must have no cdc_events_total series:\n{t}"
        );
        assert!(t.contains("cdc_events_total{db=\"app\",op=\"update\",table=\"users\"} 1"));
        // The other ops of a table with rows start at a scraped 0 (for increase()).
        assert!(t.contains("cdc_events_total{db=\"app\",op=\"insert\",table=\"users\"} 0"));
        assert!(t.contains("cdc_events_total{db=\"app\",op=\"delete\",table=\"users\"} 0"));
    }

    #[test]
    fn watermark_series_is_absent_until_known_and_removed_when_unknown() {
        let m = Metrics::new().unwrap();
        assert!(
            !text(&m).contains("cdc_watermark_timestamp_seconds "),
            "{}",
            text(&m)
        );
        // 447984124732375041 >> 18 = 1708923815660 ms (simple fixture's watermark).
        m.set_watermark(Some(447_984_124_732_375_041));
        assert!(
            text(&m).contains("cdc_watermark_timestamp_seconds 1708923815.66"),
            "{}",
            text(&m)
        );
        m.set_watermark(None);
        assert!(!text(&m).contains("cdc_watermark_timestamp_seconds "));
    }

    #[test]
    fn cached_handles_count_like_label_lookups() {
        let m = Metrics::new().unwrap();
        let mut c = EventCounters::new(&m);
        for _ in 0..3 {
            c.row("app", "orders", RowOp::Delete);
        }
        c.row("app", "orders", RowOp::Update);
        c.row("other", "orders", RowOp::Update);
        c.ddl("app", "orders", "ALTER");
        c.ddl("app", "orders", "ALTER");
        let get = |db: &str, t: &str, op: &str| m.events.with_label_values(&[db, t, op]).get();
        assert_eq!(get("app", "orders", "delete"), 3);
        assert_eq!(get("app", "orders", "update"), 1);
        assert_eq!(get("app", "orders", "insert"), 0);
        assert_eq!(get("other", "orders", "update"), 1);
        assert_eq!(
            m.ddl_events
                .with_label_values(&["app", "orders", "ALTER"])
                .get(),
            2
        );
    }

    /// Tables and topics whose label values concatenate alike are separate series in the
    /// exposition (prometheus' vectors merged them: `crate::metric_family`).
    #[test]
    fn labels_that_concatenate_alike_are_separate_series() {
        let m = Metrics::new().unwrap();
        let mut c = EventCounters::new(&m);
        c.row("ap", "pusers", RowOp::Delete);
        for _ in 0..3 {
            c.row("app", "users", RowOp::Delete);
        }
        c.ddl("ap", "pusersALTER", "TABLE");
        c.ddl("ap", "pusers", "ALTERTABLE");
        m.consumer_lag.with_label_values(&["cdc1", "2"]).set(5);
        m.consumer_lag.with_label_values(&["cdc", "12"]).set(7);
        let text = String::from_utf8(m.render()).unwrap();
        for line in [
            r#"cdc_events_total{db="ap",op="delete",table="pusers"} 1"#,
            r#"cdc_events_total{db="app",op="delete",table="users"} 3"#,
            r#"cdc_ddl_events_total{db="ap",table="pusersALTER",type="TABLE"} 1"#,
            r#"cdc_ddl_events_total{db="ap",table="pusers",type="ALTERTABLE"} 1"#,
            r#"cdc_kafka_consumer_lag_messages{partition="2",topic="cdc1"} 5"#,
            r#"cdc_kafka_consumer_lag_messages{partition="12",topic="cdc"} 7"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }

    /// 40 tables in rotation (more than any small cache holds), in two databases, with names
    /// that are prefixes of each other and that concatenate alike: every count lands on its own
    /// series, exactly.
    #[test]
    fn counts_stay_exact_with_40_tables_in_rotation() {
        let m = Metrics::new().unwrap();
        let mut c = EventCounters::new(&m);
        let names: Vec<(String, String)> = (0..40)
            .map(|i| match i % 4 {
                0 => ("app".to_string(), format!("t{i}")),
                1 => ("app".to_string(), format!("t{i}_long_table_name_{i}")),
                2 => ("ap".to_string(), format!("pt{i}")),
                _ => (format!("db{i}"), "t".repeat(i % 9)),
            })
            .collect();
        let mut expected = std::collections::HashMap::new();
        let mut rng = 0x853c_49e6_748f_ea9bu64;
        for round in 0..2_000u64 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // Mostly in rotation, sometimes a random table.
            let (db, table) = &names[if rng % 4 == 0 {
                (rng >> 8) as usize % 40
            } else {
                (round % 40) as usize
            }];
            let op = RowOp::ALL[(rng >> 20) as usize % 3];
            c.row(db, table, op);
            *expected
                .entry((db.clone(), table.clone(), op))
                .or_insert(0u64) += 1;
            if round % 7 == 0 {
                c.ddl(db, table, "ALTER");
            }
        }
        assert_eq!(c.tables.len(), 40);
        for (db, table) in &names {
            for op in RowOp::ALL {
                let want = expected.get(&(db.clone(), table.clone(), op)).copied();
                let got = m.events.with_label_values(&[db, table, op.as_str()]).get();
                assert_eq!(got, want.unwrap_or(0), "{db}.{table} {}", op.as_str());
            }
        }
        let ddl_total: u64 = names
            .iter()
            .map(|(db, t)| m.ddl_events.with_label_values(&[db, t, "ALTER"]).get())
            .sum();
        assert_eq!(ddl_total, 2_000u64.div_ceil(7));
    }

    /// Tables whose hashes collide stay apart: the names decide, the chain finds each.
    #[test]
    fn colliding_hashes_keep_tables_apart() {
        let m = Metrics::new().unwrap();
        let mut c = EventCounters::new(&m);
        let tables = [("app", "a"), ("app", "b"), ("ap", "pa"), ("app", "a ")];
        let first: Vec<usize> = tables
            .iter()
            .map(|(db, t)| c.table_index_hashed(7, db, t))
            .collect();
        assert_eq!(first, [0, 1, 2, 3]);
        for _ in 0..3 {
            for (i, (db, t)) in tables.iter().enumerate().rev() {
                assert_eq!(c.table_index_hashed(7, db, t), i);
            }
        }
        assert_eq!(c.table_index_hashed(8, "app", "a"), 4);
        assert_eq!(c.tables.len(), 5);
    }

    /// `FxHasher::write` reads a name's last bytes as 4 + 2 + 1: the same word as the
    /// zero-padded copy it replaced, for every tail length.
    #[test]
    fn fx_hash_of_bytes_is_the_zero_padded_words() {
        let bytes: Vec<u8> = (1..=40u8).map(|b| b.wrapping_mul(37)).collect();
        for len in 0..=bytes.len() {
            let s = &bytes[..len];
            let mut reference = FxHasher::default();
            for c in s.chunks(8) {
                let mut w = [0u8; 8];
                w[..c.len()].copy_from_slice(c);
                reference.add(u64::from_le_bytes(w));
            }
            let mut h = FxHasher::default();
            h.write(s);
            assert_eq!(h.finish(), reference.finish(), "{len}");
        }
    }

    /// The lag histogram's exposition equals prometheus' `Histogram` (the one it replaced) fed
    /// the same lags: bucket edges (each bound, ±1 ms), 0, huge lags, and 5,000 random ones;
    /// the sum within float rounding of the order of additions.
    #[test]
    fn lag_histogram_exposes_what_prometheus_histogram_did() {
        let ours = LagHistogram::new("lag", "h").unwrap();
        let theirs = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new("lag", "h").buckets(LAG_BUCKETS.to_vec()),
        )
        .unwrap();
        let mut lags = vec![0u64, 1, 49, u64::from(u32::MAX), 1 << 50];
        for b in LAG_BUCKETS_MS {
            lags.extend([b - 1, b, b + 1]);
        }
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..5_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            lags.push(rng % 700_000);
        }
        for (n, &ms) in lags.iter().enumerate() {
            ours.observe_ms(ms);
            theirs.observe(ms as f64 / 1000.0);
            if n % 997 == 0 || n == lags.len() - 1 {
                let (a, b) = (&ours.collect()[0], &theirs.collect()[0]);
                assert_eq!(a.name(), b.name());
                assert_eq!(a.get_field_type(), b.get_field_type());
                let (a, b) = (
                    a.get_metric()[0].get_histogram(),
                    b.get_metric()[0].get_histogram(),
                );
                assert_eq!(a.get_sample_count(), b.get_sample_count(), "after {n}");
                assert_eq!(a.get_sample_count(), ours.sample_count());
                let (sa, sb) = (a.get_sample_sum(), b.get_sample_sum());
                assert!((sa - sb).abs() <= sb.abs() * 1e-12, "{sa} {sb}");
                let bounds = |h: &proto::Histogram| -> Vec<(u64, f64)> {
                    h.get_bucket()
                        .iter()
                        .map(|b| (b.cumulative_count(), b.upper_bound()))
                        .collect()
                };
                assert_eq!(bounds(a), bounds(b), "after {n} ({ms} ms)");
            }
        }
        // Registered: the text exposition has the family as a histogram.
        let m = Metrics::new().unwrap();
        m.event_lag.observe_ms(120);
        let t = text(&m);
        for line in [
            "# TYPE cdc_event_lag_seconds histogram",
            "cdc_event_lag_seconds_bucket{le=\"0.1\"} 0",
            "cdc_event_lag_seconds_bucket{le=\"0.25\"} 1",
            "cdc_event_lag_seconds_bucket{le=\"+Inf\"} 1",
            "cdc_event_lag_seconds_sum 0.12",
            "cdc_event_lag_seconds_count 1",
        ] {
            assert!(t.lines().any(|l| l == line), "missing {line} in\n{t}");
        }
    }
}
