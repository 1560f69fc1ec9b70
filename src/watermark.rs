//! Which watermark (resolved ts) cdcmon can honestly report: the minimum over every assigned
//! partition that carries data, and nothing at all while that minimum is unknown.
//!
//! TiCDC broadcasts every checkpoint to all partitions of the topic (pingcap/tiflow `release-8.5`
//! `cdc/sink/ddlsink/mq/mq_ddl_sink.go` `WriteCheckpointTs` → `SyncBroadcastMessage`), so each
//! partition's latest watermark says "everything before this TSO on this partition was sent".
//! The global resolved ts is the minimum over partitions. TiCDC's own consumer starts every
//! partition's progress at 0 and takes the minimum over all of them (tiflow `release-8.5`
//! `cmd/kafka-consumer/writer.go` `getMinWatermark`; pingcap/ticdc `release-8.5`
//! `cmd/kafka-consumer/writer.go` `globalWatermark`), so a partition that has not yet sent a
//! watermark holds the minimum at 0. Exporting 0 would read as "1970" on a dashboard, so here an
//! unknown minimum is *absent* instead ([`WatermarkTracker::min`] is `None`):
//! - a partition that delivered rows or DDL but no watermark yet makes the minimum unknown (a
//!   minimum over the others could be ahead of its unseen watermark);
//! - an assigned partition with neither data nor a watermark yet holds it back too, until the
//!   consumer has *drained* it (its position reached the broker's high watermark, from
//!   librdkafka's statistics): before that, unread messages of it (a backlog not fetched yet,
//!   or a partition whose leader is unreachable since the assignment) may lie behind the
//!   others' watermarks. A drained partition that never delivered anything holds nothing back:
//!   TiCDC writes nothing at all to partitions beyond the sink URI's `partition-num` when the
//!   topic has more (tiflow `release-8.5` `pkg/sink/kafka/options.go` `SetPartitionNum`: "Some
//!   partitions will not have messages dispatched to"), not even watermarks;
//! - a revoked partition leaves the computation at once.
//!
//! Whether a partition's protocol sends watermarks at all is known per event
//! ([`expects_watermarks`]), so "rows but never a watermark" on such a partition is counted in
//! `cdcmon_watermark_partitions_waiting` (alert `CdcWatermarkMissing`), while a protocol that
//! never sends them (classic debezium, canal-json without the TiDB extension) is not.
//!
//! With several topics (`--topic` a list or a `^regex`, src/topics.rs) every assigned
//! (topic, partition) is one entry of the minimum, but TiCDC does *not* send checkpoints to
//! every topic a pattern matches: only to the topics of the tables replicated *now* plus the
//! changefeed's default topic (tiflow `release-8.5` `d94457526fcccdb236c14d7fa53e3ca3a9f9914e`
//! `cdc/sink/ddlsink/mq/mq_ddl_sink.go` `WriteCheckpointTs` lines 154-176:
//! `SyncBroadcastMessage` to each of `eventRouter.GetActiveTopics(tables)`,
//! `cdc/sink/dmlsink/mq/dispatcher/event_router.go` `GetActiveTopics`; pingcap/ticdc `release-8.5`
//! `downstreamadapter/sink/eventrouter/event_router.go` `GetActiveTopics`). After `DROP TABLE`
//! its topic still matches `^tidb_app_.*` and still holds its last watermark, which never
//! advances again: counted in the minimum it would freeze it, and `CdcWatermarkStale` would
//! fire for a healthy stream. So a topic-partition that is *drained* (nothing unread on it) and
//! whose watermark is more than [`STALE_WATERMARK_GRACE_MS`] of commit-ts time behind the
//! newest watermark of any assigned topic-partition is left out of the minimum: nothing unread
//! can lie behind it, and a topic TiCDC still writes would have received the newer checkpoint
//! that the others did (checkpoints go to every active topic at the same time, about once a
//! second). A partition that is behind but *not* drained (unread messages, a backlog, an
//! unreachable leader) still holds the minimum back exactly as before, with one topic or many.
//!
//! The state is a `Vec` per interned topic indexed by partition number: the per-event update is
//! two indexes and two flag checks, no hashing (topic ids and partition numbers are small and
//! dense).

use crate::event::{ChangeEvent, EventKind, Protocol};
use crate::topics::TopicPartition;

#[derive(Debug, Clone, Copy, Default)]
struct PartitionProgress {
    assigned: bool,
    /// Delivered a row or DDL event since it was assigned.
    data: bool,
    /// Delivered data of a protocol that always sends watermarks.
    expects: bool,
    /// Highest watermark TSO since it was assigned.
    watermark: Option<u64>,
    /// The consumer's position is at the broker's high watermark (librdkafka statistics):
    /// nothing unread on it.
    drained: bool,
}

/// Per-partition watermark progress of the topic-partitions assigned to this consumer.
#[derive(Debug, Default)]
pub struct WatermarkTracker {
    /// Indexed by [`crate::topics::TopicId`], then by partition number.
    topics: Vec<Vec<PartitionProgress>>,
}

/// Whether the protocol of `ev` always sends watermarks on every partition, as TiCDC
/// `release-8.5` (classic tiflow and pingcap/ticdc) encodes them:
/// - open-protocol: resolved events always (`pkg/sink/codec/open` `EncodeCheckpointEvent`);
/// - simple: `WATERMARK` always (`pkg/sink/codec/simple/encoder.go` `EncodeCheckpointEvent`);
/// - canal-json: `TIDB_WATERMARK` only with `enable-tidb-extension=true`
///   (`canal_json_encoder.go` `EncodeCheckpointEvent` returns nil otherwise); the same option
///   puts `_tidb.commitTs` in every row, so a row with a commit TSO proves it is on;
/// - debezium: never in classic TiCDC (tiflow `pkg/sink/codec/debezium/encoder.go`
///   `EncodeCheckpointEvent`: "Debezium MySQL Connector does not emit such event", returns nil);
///   the new architecture (pingcap/ticdc `pkg/sink/codec/debezium/encoder.go`) sends them only
///   with `enable-tidb-extension=true`, which its rows do not reveal: not expected.
pub fn expects_watermarks(ev: &ChangeEvent<'_>) -> bool {
    match ev.protocol {
        Protocol::OpenProtocol | Protocol::Simple => true,
        Protocol::CanalJson => ev.commit_ts.is_some(),
        Protocol::Debezium => false,
        // Avro watermarks need TiCDC's test-only `avro-enable-watermark` (docs/protocols.md
        // "Avro"): normally none are sent, so an Avro partition never waits for one.
        Protocol::Avro => false,
    }
}

/// How far (in commit-ts time, ms) a drained topic-partition's watermark may trail the newest
/// watermark before it is taken for a topic TiCDC no longer writes (a dropped table's, see the
/// module doc) and left out of the minimum. TiCDC sends a checkpoint to every active topic
/// together, at every checkpoint advance (about once a second), so an
/// active topic trails by a second or two at most; 60 s leaves a wide margin for a slow
/// producer while `CdcWatermarkStale` (monitoring/) fires only after minutes.
pub const STALE_WATERMARK_GRACE_MS: u64 = 60_000;

/// [`STALE_WATERMARK_GRACE_MS`] as a TSO difference: a TSO is the physical time in ms shifted
/// left by 18 logical bits (TiCDC `oracle.ComposeTS`).
const STALE_WATERMARK_GRACE_TSO: u64 = STALE_WATERMARK_GRACE_MS << 18;

/// Partitions tracked per topic: Kafka topics have at most a few thousand; a number beyond this
/// (never seen in practice) is ignored rather than allowed to size the table.
const MAX_PARTITIONS: usize = 1 << 16;

fn index(partition: i32) -> Option<usize> {
    usize::try_from(partition)
        .ok()
        .filter(|&i| i < MAX_PARTITIONS)
}

/// The progress of `tp`, if it has a slot.
fn get(topics: &[Vec<PartitionProgress>], tp: TopicPartition) -> Option<&PartitionProgress> {
    topics.get(tp.topic.index())?.get(index(tp.partition)?)
}

impl WatermarkTracker {
    pub fn new() -> Self {
        Self::default()
    }

    fn slot(&mut self, tp: TopicPartition) -> Option<&mut PartitionProgress> {
        let i = index(tp.partition)?;
        let t = tp.topic.index();
        if t >= self.topics.len() {
            self.topics.resize(t + 1, Vec::new());
        }
        let partitions = &mut self.topics[t];
        if i >= partitions.len() {
            partitions.resize(i + 1, PartitionProgress::default());
        }
        let p = &mut partitions[i];
        // A message proves the partition is ours even without a rebalance callback (manual
        // assignment, the benchmark feeding the pipeline from memory).
        p.assigned = true;
        Some(p)
    }

    /// A row or DDL event arrived on `tp`. Returns true when this changed what the
    /// minimum or the waiting count can be (first data, or first data that expects
    /// watermarks), so the caller recomputes only then.
    #[inline]
    pub fn data(&mut self, tp: TopicPartition, expects: bool) -> bool {
        if let Some(p) = get(&self.topics, tp)
            && p.assigned
            && p.data
            && (p.expects || !expects)
        {
            return false; // the common case: nothing new
        }
        let Some(p) = self.slot(tp) else {
            return false;
        };
        p.data = true;
        p.expects |= expects;
        true
    }

    /// A watermark arrived on `tp`.
    pub fn watermark(&mut self, tp: TopicPartition, ts: u64) {
        if let Some(p) = self.slot(tp) {
            p.watermark = Some(p.watermark.map_or(ts, |w| w.max(ts)));
        }
    }

    /// From librdkafka's statistics: whether the consumer's position on an assigned
    /// `tp` has reached the broker's high watermark. Returns true when this changed
    /// what the minimum can be. Unassigned partitions are ignored (statistics may lag a
    /// revoke).
    pub fn drained(&mut self, tp: TopicPartition, drained: bool) -> bool {
        let slot =
            index(tp.partition).and_then(|i| self.topics.get_mut(tp.topic.index())?.get_mut(i));
        match slot {
            Some(p) if p.assigned && p.drained != drained => {
                p.drained = drained;
                // A partition without data or watermark may stop holding the minimum back, one
                // with a watermark may become (or stop being) stale; one with data but no
                // watermark withholds the minimum either way.
                !p.data || p.watermark.is_some()
            }
            _ => false,
        }
    }

    /// The assignment changed: keep progress of partitions still assigned, start the new ones
    /// fresh (they may have moved from another member: their past is not ours), forget the rest.
    pub fn set_assigned(&mut self, assigned: &[TopicPartition]) {
        let mut next: Vec<Vec<PartitionProgress>> = self
            .topics
            .iter()
            .map(|ps| vec![PartitionProgress::default(); ps.len()])
            .collect();
        for &tp in assigned {
            let Some(i) = index(tp.partition) else {
                continue;
            };
            let t = tp.topic.index();
            if t >= next.len() {
                next.resize(t + 1, Vec::new());
            }
            if i >= next[t].len() {
                next[t].resize(i + 1, PartitionProgress::default());
            }
            let kept = get(&self.topics, tp).copied().unwrap_or_default();
            let slot = &mut next[t][i];
            *slot = if kept.assigned {
                kept
            } else {
                PartitionProgress::default()
            };
            slot.assigned = true;
        }
        self.topics = next;
    }

    fn assigned(&self) -> impl Iterator<Item = &PartitionProgress> {
        self.topics.iter().flatten().filter(|p| p.assigned)
    }

    /// The minimum watermark over the assigned topic-partitions, leaving out drained ones that
    /// delivered nothing and drained ones whose watermark trails the newest by more than
    /// [`STALE_WATERMARK_GRACE_MS`] (topics TiCDC no longer writes, module doc); `None` while
    /// no watermark arrived or any other assigned partition has none yet.
    pub fn min(&self) -> Option<u64> {
        let newest = self.assigned().filter_map(|p| p.watermark).max()?;
        let stale_below = newest.saturating_sub(STALE_WATERMARK_GRACE_TSO);
        let mut min: Option<u64> = None;
        for p in self.assigned() {
            match p.watermark {
                Some(w) if p.drained && w < stale_below => {}
                Some(w) => min = Some(min.map_or(w, |m| m.min(w))),
                None if p.data || !p.drained => return None,
                None => {}
            }
        }
        min
    }

    /// Assigned partitions that delivered data of a protocol that always sends watermarks, but
    /// no watermark yet.
    pub fn waiting(&self) -> usize {
        self.assigned()
            .filter(|p| p.expects && p.watermark.is_none())
            .count()
    }
}

/// Whether `ev` on `partition` is a copy of a broadcast DDL that is counted and logged from
/// partition 0 only.
///
/// TiCDC sends a DDL to partition 0 alone for canal and canal-json and to *every* partition for
/// all other protocols (tiflow `release-8.5` `cdc/sink/ddlsink/mq/mq_ddl_sink.go`
/// `getDDLDispatchRule`: `PartitionZero` for canal/canal-json, else `PartitionAll` →
/// `SyncBroadcastMessage`; pingcap/ticdc `release-8.5` `downstreamadapter/sink/helper/helper.go`
/// `GetDDLDispatchRule`, used by `downstreamadapter/sink/kafka/sink.go`). Partition 0 receives
/// every DDL under both rules, and exactly one member of a consumer group owns it at a time, so
/// taking DDL from partition 0 only counts and logs each DDL once per group, with any number of
/// cdcmon processes, without state shared between them. The other copies are counted in
/// `cdcmon_ddl_broadcast_copies_total` and their offsets committed like any handled message.
#[inline]
pub fn is_ddl_broadcast_copy(ev: &ChangeEvent<'_>, partition: i32) -> bool {
    ev.kind == EventKind::Ddl && partition != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topics::Topics;

    /// Partition `p` of the first topic.
    fn tp(p: i32) -> TopicPartition {
        Topics::new().key("app_cdc", p)
    }

    fn tps(ps: &[i32]) -> Vec<TopicPartition> {
        ps.iter().map(|&p| tp(p)).collect()
    }

    #[test]
    fn no_minimum_before_any_watermark() {
        let mut t = WatermarkTracker::new();
        assert_eq!(t.min(), None);
        t.set_assigned(&tps(&[0, 1, 2]));
        assert_eq!(
            t.min(),
            None,
            "assigned partitions without watermarks are not 0"
        );
        t.data(tp(1), true);
        assert_eq!(t.min(), None);
        assert_eq!(t.waiting(), 1);
    }

    #[test]
    fn an_assigned_partition_not_read_yet_withholds_the_minimum_until_drained() {
        // Partition 1's backlog (or its unreachable leader) has delivered nothing yet: the
        // watermark of partition 0 says nothing about it.
        let mut t = WatermarkTracker::new();
        t.set_assigned(&tps(&[0, 1]));
        t.watermark(tp(0), 100);
        assert_eq!(t.min(), None);
        // Statistics: partition 1's position is at its high watermark, nothing unread, and it
        // never delivered anything (beyond TiCDC's partition-num): it holds nothing back.
        assert!(t.drained(tp(1), true));
        assert!(!t.drained(tp(1), true), "no change");
        assert_eq!(t.min(), Some(100));
        // New messages on it: held back again until they are read.
        assert!(t.drained(tp(1), false));
        assert_eq!(t.min(), None);
        // Statistics for a partition not assigned (a lagging report after a revoke): ignored.
        assert!(!t.drained(tp(7), true));
        // Once a partition has data, being drained does not excuse a missing watermark.
        t.drained(tp(1), true);
        t.data(tp(1), true);
        assert_eq!(t.min(), None);
        assert!(
            !t.drained(tp(1), false),
            "a partition with data is unaffected"
        );
        t.watermark(tp(1), 90);
        assert_eq!(t.min(), Some(90));
    }

    #[test]
    fn a_data_partition_without_watermark_withholds_the_minimum() {
        let mut t = WatermarkTracker::new();
        t.set_assigned(&tps(&[0, 1, 2]));
        t.watermark(tp(0), 100);
        // Partitions 1 and 2 have neither data nor watermark and nothing unread: they hold
        // nothing back.
        t.drained(tp(1), true);
        t.drained(tp(2), true);
        assert_eq!(t.min(), Some(100));
        // Partition 1 delivers rows: its watermark is unknown, so 100 could be ahead of it.
        assert!(t.data(tp(1), true));
        assert!(!t.data(tp(1), true), "second row: nothing new");
        assert_eq!(t.min(), None);
        assert_eq!(t.waiting(), 1);
        t.watermark(tp(1), 90);
        assert_eq!(t.min(), Some(90));
        assert_eq!(t.waiting(), 0);
        t.watermark(tp(1), 120);
        assert_eq!(t.min(), Some(100));
        // Watermarks never go back.
        t.watermark(tp(0), 50);
        assert_eq!(t.min(), Some(100));
    }

    #[test]
    fn revoke_drops_a_partition_and_reassign_starts_it_fresh() {
        let mut t = WatermarkTracker::new();
        t.set_assigned(&tps(&[0, 1]));
        t.watermark(tp(0), 100);
        t.watermark(tp(1), 10);
        assert_eq!(t.min(), Some(10));
        // Partition 1 revoked: its old watermark leaves the minimum.
        t.set_assigned(&tps(&[0]));
        assert_eq!(t.min(), Some(100));
        // Assigned again (moved back from another member): its old watermark is not reused.
        t.set_assigned(&tps(&[0, 1]));
        t.data(tp(1), true);
        assert_eq!(t.min(), None);
        // Everything revoked: nothing to report.
        t.set_assigned(&tps(&[]));
        assert_eq!(t.min(), None);
        assert_eq!(t.waiting(), 0);
    }

    #[test]
    fn protocols_without_watermarks_are_not_waiting() {
        let mut t = WatermarkTracker::new();
        t.data(tp(0), false); // classic debezium rows
        assert_eq!(t.waiting(), 0);
        assert_eq!(t.min(), None);
        assert!(
            t.data(tp(0), true),
            "first data that expects watermarks is news"
        );
        assert_eq!(t.waiting(), 1);
    }

    #[test]
    fn negative_partitions_are_ignored() {
        let mut t = WatermarkTracker::new();
        assert!(!t.data(tp(-1), true));
        t.watermark(tp(-1), 5);
        t.watermark(tp(i32::MAX), 5);
        t.set_assigned(&tps(&[-3, i32::MAX]));
        assert_eq!(t.min(), None);
    }

    #[test]
    fn the_minimum_spans_every_topic_and_partition_numbers_do_not_collide() {
        let mut topics = Topics::new();
        let users0 = topics.key("tidb_app_users", 0);
        let users1 = topics.key("tidb_app_users", 1);
        let orders0 = topics.key("tidb_app_orders", 0);
        let mut t = WatermarkTracker::new();
        t.set_assigned(&[users0, users1, orders0]);
        t.watermark(users0, 300);
        t.watermark(users1, 200);
        assert_eq!(t.min(), None, "partition 0 of orders has not been read yet");
        // Partition 0 of orders is not partition 0 of users: its own watermark counts.
        t.watermark(orders0, 100);
        assert_eq!(t.min(), Some(100));
        t.watermark(orders0, 400);
        assert_eq!(t.min(), Some(200));
        // Rows on orders p0 do not disturb users p0 (and the reverse).
        assert!(t.data(orders0, true));
        assert_eq!(t.min(), Some(200));
        // Revoking partition 0 of users keeps partition 0 of orders.
        t.set_assigned(&[users1, orders0]);
        assert_eq!(t.min(), Some(200));
        t.set_assigned(&[orders0]);
        assert_eq!(t.min(), Some(400));
    }

    /// A TSO at physical time `ms`.
    fn tso(ms: u64) -> u64 {
        ms << 18
    }

    #[test]
    fn a_drained_topic_that_stopped_receiving_watermarks_leaves_the_minimum() {
        // `tidb_app_old`'s table was dropped: TiCDC stopped sending it checkpoints while
        // `tidb_app_users` keeps advancing.
        let mut topics = Topics::new();
        let users = topics.key("tidb_app_users", 0);
        let old = topics.key("tidb_app_old", 0);
        let mut t = WatermarkTracker::new();
        t.set_assigned(&[users, old]);
        let start = 1_700_000_000_000;
        t.watermark(old, tso(start));
        t.watermark(users, tso(start));
        assert!(
            t.drained(old, true),
            "a drained partition with a watermark is news"
        );
        assert!(t.drained(users, true));
        assert_eq!(t.min(), Some(tso(start)));
        // Within the grace a drained topic still holds the minimum: it may just be the next to
        // receive the checkpoint.
        t.watermark(users, tso(start + STALE_WATERMARK_GRACE_MS));
        assert_eq!(t.min(), Some(tso(start)));
        // Past the grace it is a topic TiCDC no longer writes: the minimum moves on.
        t.watermark(users, tso(start + STALE_WATERMARK_GRACE_MS + 1));
        assert_eq!(t.min(), Some(tso(start + STALE_WATERMARK_GRACE_MS + 1)));
        // New messages on it (the table is back): it holds the minimum again until read.
        assert!(t.drained(old, false));
        assert_eq!(t.min(), Some(tso(start)));
        t.watermark(old, tso(start + STALE_WATERMARK_GRACE_MS + 1));
        assert_eq!(t.min(), Some(tso(start + STALE_WATERMARK_GRACE_MS + 1)));
    }

    #[test]
    fn a_lagging_partition_that_is_not_drained_holds_the_minimum_however_far_behind() {
        // One topic, partition 1 behind by an hour with unread messages (a backlog): exactly
        // the old behaviour, whatever the grace.
        let mut t = WatermarkTracker::new();
        t.set_assigned(&tps(&[0, 1]));
        let start = 1_700_000_000_000;
        t.watermark(tp(0), tso(start + 3_600_000));
        t.watermark(tp(1), tso(start));
        t.drained(tp(0), true);
        assert_eq!(t.min(), Some(tso(start)));
        t.drained(tp(1), false);
        assert_eq!(t.min(), Some(tso(start)));
        // A partition whose data came without a watermark still withholds it, drained or not.
        let mut t = WatermarkTracker::new();
        t.set_assigned(&tps(&[0, 1]));
        t.watermark(tp(0), tso(start + 3_600_000));
        t.data(tp(1), true);
        t.drained(tp(1), true);
        assert_eq!(t.min(), None);
    }
}
