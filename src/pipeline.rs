//! What happens to one Kafka message, independent of Kafka: decode → event log → count.
//!
//! Kept apart from the consume loop so the benchmark can feed it from memory and tests can drive
//! it without a broker. The [`Sink`] (event log, offsets awaiting commit, watermarks) is shared
//! with the rebalance callback, which must flush and commit a revoked partition's offsets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::event::{ChangeEvent, EventKind, tso_physical_ms};
use crate::eventlog::{EventLog, KafkaPosition};
use crate::metrics::{EventCounters, Metrics};
use crate::protocol::{DecodeError, Decoder};

/// State the consume loop and the rebalance callback share.
pub struct Sink {
    pub event_log: EventLog,
    /// Next offset to commit per partition: set only after the message's events are logged and
    /// counted (at-least-once).
    pub pending: HashMap<i32, i64>,
    /// `pending` changed since the last commit.
    pub dirty: bool,
    /// Highest watermark TSO seen per partition.
    pub watermarks: HashMap<i32, u64>,
    /// Offsets whose lines were handed to the OS and await the `fdatasync` running off the loop;
    /// committed when it succeeds. A revoke drops its partitions from here (it commits them
    /// itself), so a late sync never commits a partition this member no longer owns.
    pub syncing: HashMap<i32, i64>,
}

impl Sink {
    pub fn new(event_log: EventLog) -> Self {
        Sink {
            event_log,
            pending: HashMap::new(),
            dirty: false,
            watermarks: HashMap::new(),
            syncing: HashMap::new(),
        }
    }

    /// The minimum watermark across partitions (TiCDC broadcasts watermarks to every partition;
    /// the global resolved ts is the minimum, as in TiCDC's own consumer).
    pub fn min_watermark(&self) -> Option<u64> {
        self.watermarks.values().copied().min()
    }
}

/// Lock the sink; a poisoned lock (a panic elsewhere while holding it) still holds valid data.
pub fn lock(sink: &Mutex<Sink>) -> MutexGuard<'_, Sink> {
    sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The result of processing one message.
#[derive(Debug)]
pub enum Outcome {
    /// Decoded; `events` events (of any kind) were handled.
    Processed { events: usize },
    /// Not decodable: counted by reason, nothing logged; the caller logs and skips it.
    Undecodable(DecodeError),
}

/// Decoder, counters and the shared sink.
pub struct Pipeline {
    decoder: Decoder,
    counters: EventCounters,
    metrics: Arc<Metrics>,
    sink: Arc<Mutex<Sink>>,
}

impl Pipeline {
    pub fn new(decoder: Decoder, metrics: Arc<Metrics>, sink: Arc<Mutex<Sink>>) -> Self {
        Pipeline {
            decoder,
            counters: EventCounters::new(&metrics),
            metrics,
            sink,
        }
    }

    /// Process one message. An `Err` is an event-log I/O failure: nothing of this message was
    /// counted and its offset is not pending, so the caller may retry the same message.
    pub fn process(
        &mut self,
        pos: &KafkaPosition<'_>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        now_ms: i64,
    ) -> std::io::Result<Outcome> {
        let events = match self.decoder.decode(key, value) {
            Ok(events) => events,
            Err(err) => {
                self.metrics.decode_error(err.reason);
                // Skipped, not retried: its offset may be committed like any other.
                mark_done(&mut lock(&self.sink), pos);
                return Ok(Outcome::Undecodable(err));
            }
        };
        let Pipeline {
            counters,
            metrics,
            sink,
            ..
        } = self;
        let mut sink = lock(sink);
        // Log first, count after: a failed write leaves the counters untouched, so a retry of
        // the message does not double-count.
        // All of the message's lines in one go: a failure takes none of them, so a retry never
        // writes a line twice.
        sink.event_log.write_message(&events, pos, now_ms)?;
        for ev in &events {
            count(counters, metrics, ev, &mut sink, pos.partition, now_ms);
        }
        mark_done(&mut sink, pos);
        Ok(Outcome::Processed {
            events: events.len(),
        })
    }
}

/// The message at `pos` is handled: its partition's next offset may be committed.
fn mark_done(sink: &mut Sink, pos: &KafkaPosition<'_>) {
    sink.pending.insert(pos.partition, pos.offset + 1);
    sink.dirty = true;
}

fn count(
    counters: &mut EventCounters,
    metrics: &Metrics,
    ev: &ChangeEvent<'_>,
    sink: &mut Sink,
    partition: i32,
    now_ms: i64,
) {
    match ev.kind {
        EventKind::Row => {
            if let Some(op) = ev.op {
                counters.row(&ev.db, &ev.table, op);
            }
            if let Some(commit_ms) = ev.commit_time_ms() {
                observe_lag(metrics, now_ms, commit_ms);
                let secs = commit_ms as f64 / 1000.0;
                if secs > metrics.last_event_seconds.get() {
                    metrics.last_event_seconds.set(secs);
                }
            }
        }
        EventKind::Ddl => {
            let ddl_type = ev.ddl.as_ref().map_or("QUERY", |d| &d.ddl_type);
            counters.ddl(&ev.db, &ev.table, ddl_type);
            if let Some(commit_ms) = ev.commit_time_ms() {
                observe_lag(metrics, now_ms, commit_ms);
            }
        }
        EventKind::Watermark => {
            metrics.watermarks.inc();
            if let Some(ts) = ev.commit_ts {
                let slot = sink.watermarks.entry(partition).or_insert(ts);
                *slot = (*slot).max(ts);
                if let Some(min) = sink.min_watermark() {
                    metrics
                        .watermark_seconds
                        .set(tso_physical_ms(min) as f64 / 1000.0);
                }
            }
        }
        EventKind::Bootstrap => {}
    }
}

fn observe_lag(metrics: &Metrics, now_ms: i64, commit_ms: i64) {
    // Clock skew between PD and this host can make it negative: clamp at zero.
    let lag = (now_ms - commit_ms).max(0) as f64 / 1000.0;
    metrics.event_lag.observe(lag);
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
