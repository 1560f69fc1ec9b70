//! The partitions this consumer really owns, kept from librdkafka's rebalance callbacks.
//!
//! The callback's partition list means different things under the two rebalance protocols
//! (librdkafka `rd_kafka_rebalance_protocol()`: "EAGER" or "COOPERATIVE"; rdkafka 0.39
//! `Consumer::rebalance_protocol`, and its default `ConsumerContext::rebalance`, which calls
//! `rd_kafka_assign` / `rd_kafka_assign(NULL)` for eager and `rd_kafka_incremental_assign` /
//! `rd_kafka_incremental_unassign` for cooperative):
//! - eager (`range`, `roundrobin`): an assign hands over the *whole* new assignment, a revoke
//!   takes *everything* away;
//! - cooperative (`partition.assignment.strategy=cooperative-sticky`): an assign *adds* the
//!   listed partitions, a revoke *removes* only them; the others keep being consumed. An
//!   incremental assign may also carry an empty list (nothing new), which must not read as
//!   "nothing assigned".

use std::collections::BTreeSet;

use rdkafka::consumer::RebalanceProtocol;

use crate::topics::TopicPartition;

/// How a rebalance callback's list applies to the current assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Eager,
    Cooperative,
}

impl From<RebalanceProtocol> for Protocol {
    fn from(p: RebalanceProtocol) -> Self {
        match p {
            RebalanceProtocol::Cooperative => Protocol::Cooperative,
            // `None` (no rebalance yet) behaves like eager in rdkafka's callback.
            RebalanceProtocol::Eager | RebalanceProtocol::None => Protocol::Eager,
        }
    }
}

/// The assigned partitions of every consumed topic (`--topic` may select several), keyed by
/// (topic, partition): the lists of both protocols carry partitions of all subscribed topics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Assignment {
    partitions: BTreeSet<TopicPartition>,
}

impl Assignment {
    pub fn assign(&mut self, protocol: Protocol, partitions: &[TopicPartition]) {
        if protocol == Protocol::Eager {
            self.partitions.clear();
        }
        self.partitions.extend(partitions.iter().copied());
    }

    /// Replace the whole assignment (as read back from librdkafka).
    pub fn set(&mut self, partitions: &[TopicPartition]) {
        self.assign(Protocol::Eager, partitions);
    }

    pub fn revoke(&mut self, protocol: Protocol, partitions: &[TopicPartition]) {
        match protocol {
            Protocol::Eager => self.partitions.clear(),
            Protocol::Cooperative => {
                for p in partitions {
                    self.partitions.remove(p);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.partitions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    pub fn partitions(&self) -> Vec<TopicPartition> {
        self.partitions.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topics::Topics;

    /// Keys of `topic`'s `partitions`.
    fn tps(topics: &mut Topics, topic: &str, partitions: &[i32]) -> Vec<TopicPartition> {
        partitions.iter().map(|&p| topics.key(topic, p)).collect()
    }

    #[test]
    fn cooperative_revoke_removes_only_the_listed_partitions() {
        // Member A owns 0,1,2; B joins and cooperative-sticky moves partition 2 to B: A gets an
        // incremental revoke of [2], then an incremental assign of [] (nothing new).
        let t = &mut Topics::new();
        let mut a = Assignment::default();
        a.assign(Protocol::Cooperative, &tps(t, "app_cdc", &[0, 1, 2]));
        assert_eq!(a.len(), 3);
        a.revoke(Protocol::Cooperative, &tps(t, "app_cdc", &[2]));
        assert_eq!(a.partitions(), tps(t, "app_cdc", &[0, 1]));
        a.assign(Protocol::Cooperative, &[]);
        assert_eq!(
            a.partitions(),
            tps(t, "app_cdc", &[0, 1]),
            "an empty incremental assign adds nothing"
        );
        assert!(!a.is_empty());
        a.assign(Protocol::Cooperative, &tps(t, "app_cdc", &[3]));
        assert_eq!(a.partitions(), tps(t, "app_cdc", &[0, 1, 3]));
        a.revoke(Protocol::Cooperative, &tps(t, "app_cdc", &[0, 1, 3]));
        assert!(a.is_empty());
    }

    #[test]
    fn eager_lists_are_the_whole_assignment() {
        let t = &mut Topics::new();
        let mut a = Assignment::default();
        a.assign(Protocol::Eager, &tps(t, "app_cdc", &[0, 1, 2]));
        a.revoke(Protocol::Eager, &tps(t, "app_cdc", &[0, 1, 2]));
        assert!(a.is_empty());
        a.assign(Protocol::Eager, &tps(t, "app_cdc", &[1]));
        assert_eq!(a.partitions(), tps(t, "app_cdc", &[1]));
        // A new eager assign replaces, even without the revoke in between.
        a.assign(Protocol::Eager, &tps(t, "app_cdc", &[0, 2]));
        assert_eq!(a.partitions(), tps(t, "app_cdc", &[0, 2]));
        a.set(&tps(t, "app_cdc", &[5]));
        assert_eq!(a.partitions(), tps(t, "app_cdc", &[5]));
    }

    #[test]
    fn the_same_partition_number_of_two_topics_is_two_partitions() {
        let t = &mut Topics::new();
        let users0 = t.key("tidb_app_users", 0);
        let orders0 = t.key("tidb_app_orders", 0);
        let mut a = Assignment::default();
        a.assign(Protocol::Cooperative, &[users0, orders0]);
        assert_eq!(a.len(), 2);
        // Cooperative: revoking partition 0 of one topic keeps partition 0 of the other.
        a.revoke(Protocol::Cooperative, &[users0]);
        assert_eq!(a.partitions(), [orders0]);
        // Eager: an assign of both topics' lists replaces everything.
        a.assign(Protocol::Eager, &[users0, t.key("tidb_app_users", 1)]);
        assert_eq!(a.partitions(), [users0, t.key("tidb_app_users", 1)]);
    }
}
