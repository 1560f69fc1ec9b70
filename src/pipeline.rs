//! What happens to one Kafka message, independent of Kafka: decode → event log → count.
//!
//! Kept apart from the consume loop so the benchmark can feed it from memory and tests can drive
//! it without a broker. The [`Sink`] (event log, offsets awaiting commit, watermarks) is shared
//! with the rebalance callback, which must flush and commit a revoked partition's offsets.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::event::{ChangeEvent, EventKind};
use crate::eventlog::{EventLog, KafkaPosition};
use crate::metrics::{EventCounters, FxMap, Metrics};
use crate::protocol::{DecodeError, Decoded, Decoder};
use crate::topics::{TopicPartition, Topics};
use crate::watermark::{WatermarkTracker, expects_watermarks, is_ddl_broadcast_copy};

/// State the consume loop and the rebalance callback share.
pub struct Sink {
    pub event_log: EventLog,
    /// The topic names the keys below refer to (`--topic` may select several).
    pub topics: Topics,
    /// Next offset to commit per (topic, partition): set only after the message's events are
    /// logged and counted (at-least-once). FxHash (`metrics::FxHasher`): one insert per message,
    /// SipHash cost ~260 instructions of it.
    pub pending: FxMap<TopicPartition, i64>,
    /// `pending` changed since the last commit.
    pub dirty: bool,
    /// Watermark progress of the assigned partitions (`src/watermark.rs`).
    pub watermarks: WatermarkTracker,
    /// Offsets whose lines were handed to the OS and await the `fdatasync` running off the loop;
    /// committed when it succeeds. A revoke drops its partitions from here (it commits them
    /// itself), so a late sync never commits a partition this member no longer owns.
    pub syncing: FxMap<TopicPartition, i64>,
}

impl Sink {
    pub fn new(event_log: EventLog) -> Self {
        Sink {
            event_log,
            topics: Topics::new(),
            pending: FxMap::default(),
            dirty: false,
            watermarks: WatermarkTracker::new(),
            syncing: FxMap::default(),
        }
    }

    /// Forget the offsets of every partition not in `owned` (pending and awaiting sync) and
    /// return those partitions, sorted. After a rebalance error librdkafka has unassigned
    /// partitions without a revoke callback; committing their stale offsets later would rewind
    /// the member that owns them now (duplicates for it).
    pub fn retain_owned(&mut self, owned: &[TopicPartition]) -> Vec<TopicPartition> {
        let mut dropped: Vec<TopicPartition> = self
            .pending
            .keys()
            .chain(self.syncing.keys())
            .filter(|p| !owned.contains(p))
            .copied()
            .collect();
        dropped.sort_unstable();
        dropped.dedup();
        self.pending.retain(|p, _| owned.contains(p));
        self.syncing.retain(|p, _| owned.contains(p));
        dropped
    }

    /// `offsets` with their topic names, ready for a commit (which may happen after the lock
    /// is released).
    pub fn named(
        &self,
        offsets: impl IntoIterator<Item = (TopicPartition, i64)>,
    ) -> Vec<(Arc<str>, i32, i64)> {
        offsets
            .into_iter()
            .map(|(tp, next)| (self.topics.name(tp.topic).clone(), tp.partition, next))
            .collect()
    }

    /// Export what the watermark state says now (after a watermark, new data or a rebalance).
    pub fn publish_watermark(&self, metrics: &Metrics) {
        metrics.set_watermark(self.watermarks.min());
        metrics
            .watermark_partitions_waiting
            .set(self.watermarks.waiting() as i64);
    }
}

/// Lock the sink (or another mutex whose holders never leave its data half-changed); a
/// poisoned lock (a panic elsewhere while holding it) still holds valid data.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The result of processing one message.
#[derive(Debug)]
pub enum Outcome {
    /// Decoded; `events` events (of any kind) were handled.
    Processed { events: usize },
    /// Not decodable: counted by reason, nothing logged; the caller logs and skips it.
    Undecodable(DecodeError),
    /// Avro schema `id` is not cached: nothing counted, offset NOT pending. The caller fetches
    /// it from the registry and processes the same message again ([`Pipeline::give_up`] if the
    /// registry says it does not exist).
    SchemaMissing(u32),
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
        // Decoded in place and handled by reference: the events are never moved
        // (`docs/performance.md`, "building the canal-json event in place").
        let mut decoded = Decoded::default();
        let result = self.decoder.decode_into(key, value, &mut decoded);
        self.handle_ref(pos, key, result.map(|()| &decoded), now_ms)
    }

    /// The decoder, for decoding on other threads ([`Decoder::decode_stateless`]) what
    /// [`Pipeline::handle`] then handles on this one.
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// Everything [`Pipeline::process`] does after decoding: log the message's lines, count its
    /// events, mark its offset pending. `decoded` is what `self.decoder` made (or would make) of
    /// this message. The same `Err` contract as `process`: nothing counted, nothing pending.
    pub fn handle(
        &mut self,
        pos: &KafkaPosition<'_>,
        key: Option<&[u8]>,
        decoded: Result<Decoded<'_>, DecodeError>,
        now_ms: i64,
    ) -> std::io::Result<Outcome> {
        match decoded {
            Ok(decoded) => self.handle_ref(pos, key, Ok(&decoded), now_ms),
            Err(err) => self.handle_ref(pos, key, Err(err), now_ms),
        }
    }

    /// [`Pipeline::handle`] of a message decoded into a buffer the caller keeps.
    fn handle_ref(
        &mut self,
        pos: &KafkaPosition<'_>,
        key: Option<&[u8]>,
        decoded: Result<&Decoded<'_>, DecodeError>,
        now_ms: i64,
    ) -> std::io::Result<Outcome> {
        // An open-protocol batch may decode partly: its good events are handled, each bad one
        // is counted below (issue 10 point 5).
        let (events, bad_events) = match decoded {
            Ok(decoded) => (&decoded.events, &decoded.errors),
            // Avro schema not cached: nothing logged or counted and the offset stays unmarked;
            // the caller fetches the schema and processes the same message again.
            Err(err) if err.reason == crate::protocol::DecodeErrorReason::SchemaUnavailable => {
                match self.decoder.avro().and_then(|a| a.missing_schema()) {
                    Some(id) => return Ok(Outcome::SchemaMissing(id)),
                    None => return Ok(self.give_up(pos, err)),
                }
            }
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
        // the message does not double-count. All of the message's lines go in one go: a failure
        // takes none of them, so a retry never writes a line twice. A broadcast DDL copy is
        // logged from partition 0 only (`is_ddl_broadcast_copy`), as it is counted.
        let tp = sink.topics.key(pos.topic, pos.partition);
        sink.event_log.write_message(
            events
                .iter()
                .filter(|ev| !is_ddl_broadcast_copy(ev, pos.partition)),
            pos,
            now_ms,
        )?;
        for ev in events {
            count(counters, metrics, ev, &mut sink, tp, now_ms);
            if let Some(ck) = &ev.checksum {
                crate::checksum::observe(metrics, ev, ck, pos, key);
            }
        }
        for err in bad_events {
            metrics.decode_error(err.reason);
        }
        if let Some(first) = bad_events.first() {
            tracing::warn!(
                partition = pos.partition,
                offset = pos.offset,
                bad_events = bad_events.len(),
                good_events = events.len(),
                error = %first,
                "events of a batch could not be decoded; the others are kept"
            );
        }
        // The key found above: one topic lookup per message.
        sink.pending.insert(tp, pos.offset + 1);
        sink.dirty = true;
        Ok(Outcome::Processed {
            events: events.len(),
        })
    }
}

impl Pipeline {
    /// The Avro decoder's schema store, when a schema registry is configured.
    pub fn schema_store(&self) -> Option<std::sync::Arc<crate::protocol::avro::SchemaStore>> {
        self.decoder.avro().map(|a| a.store().clone())
    }

    /// Count `err` and skip the message at `pos` (a schema the registry says does not exist).
    pub fn give_up(&mut self, pos: &KafkaPosition<'_>, err: DecodeError) -> Outcome {
        self.metrics.decode_error(err.reason);
        mark_done(&mut lock(&self.sink), pos);
        Outcome::Undecodable(err)
    }
}

/// The message at `pos` is handled: its topic-partition's next offset may be committed.
fn mark_done(sink: &mut Sink, pos: &KafkaPosition<'_>) {
    let tp = sink.topics.key(pos.topic, pos.partition);
    sink.pending.insert(tp, pos.offset + 1);
    sink.dirty = true;
}

fn count(
    counters: &mut EventCounters,
    metrics: &Metrics,
    ev: &ChangeEvent<'_>,
    sink: &mut Sink,
    tp: TopicPartition,
    now_ms: i64,
) {
    match ev.kind {
        EventKind::Row | EventKind::Ddl => {
            if sink.watermarks.data(tp, expects_watermarks(ev)) {
                sink.publish_watermark(metrics);
            }
        }
        EventKind::Watermark | EventKind::Bootstrap => {}
    }
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
        // Partition 0 *of each topic*: TiCDC sends a DDL to one topic, its table's (the default
        // topic for schema-level DDL), so that topic's partition 0 holds the one counted copy
        // (tiflow `release-8.5` `mq_ddl_sink.go` `WriteDDLEvent` → `GetTopicForDDL`).
        EventKind::Ddl if is_ddl_broadcast_copy(ev, tp.partition) => {
            // Handled (its offset is committed), counted once from partition 0.
            metrics.ddl_broadcast_copies.inc();
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
                sink.watermarks.watermark(tp, ts);
                sink.publish_watermark(metrics);
            }
        }
        EventKind::Bootstrap => {}
    }
}

fn observe_lag(metrics: &Metrics, now_ms: i64, commit_ms: i64) {
    // Clock skew between PD and this host can make it negative: clamp at zero.
    let lag_ms = now_ms.saturating_sub(commit_ms).max(0);
    metrics.event_lag.observe_ms(lag_ms as u64);
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventlog::LogOptions;

    #[test]
    fn retain_owned_forgets_offsets_of_partitions_no_longer_owned() {
        let log = EventLog::open("-", LogOptions::default()).expect("stdout event log");
        let mut sink = Sink::new(log);
        let [a0, a1, a2, a3] = [0, 1, 2, 3].map(|p| sink.topics.key("app_cdc", p));
        let b1 = sink.topics.key("other_topic", 1);
        sink.pending.extend([(a0, 10), (a1, 20), (a2, 30), (b1, 5)]);
        sink.syncing.extend([(a1, 19), (a3, 40)]);

        let dropped = sink.retain_owned(&[a0, a2, b1]);

        assert_eq!(dropped, vec![a1, a3]);
        assert_eq!(
            sink.pending,
            FxMap::from_iter([(a0, 10), (a2, 30), (b1, 5)])
        );
        assert!(sink.syncing.is_empty(), "left: {:?}", sink.syncing);
        // Partition 1 of the other topic is not partition 1 of app_cdc.
        assert_eq!(sink.retain_owned(&[a0, a2, a1]), vec![b1]);
        // Losing everything (an eager rebalance error) leaves nothing to commit.
        assert_eq!(sink.retain_owned(&[]), vec![a0, a2]);
        assert!(sink.pending.is_empty());
    }

    #[test]
    fn offsets_of_the_same_partition_in_two_topics_are_kept_apart() {
        let log = EventLog::open("-", LogOptions::default()).expect("stdout event log");
        let mut sink = Sink::new(log);
        for (topic, offset) in [("tidb_app_users", 99), ("tidb_app_orders", 2)] {
            mark_done(
                &mut sink,
                &KafkaPosition {
                    topic,
                    partition: 0,
                    offset,
                },
            );
        }
        let mut named = sink.named(sink.pending.clone());
        named.sort();
        assert_eq!(
            named,
            vec![
                (Arc::from("tidb_app_orders"), 0, 3),
                (Arc::from("tidb_app_users"), 0, 100)
            ]
        );
    }
}
