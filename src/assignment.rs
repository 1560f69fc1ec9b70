//! The partitions this consumer really owns, kept from librdkafka's rebalance callbacks.
//!
//! The callback's partition list means different things under the two rebalance protocols
//! (librdkafka `rd_kafka_rebalance_protocol()`: "EAGER" or "COOPERATIVE"; rdkafka 0.39
//! `Consumer::rebalance_protocol`, and its default `ConsumerContext::rebalance`, which calls
//! `rd_kafka_assign` / `rd_kafka_assign(NULL)` for eager and `rd_kafka_incremental_assign` /
//! `rd_kafka_incremental_unassign` for cooperative; cdcmon's `Context::rebalance` does the same
//! with the protocol of [`Protocol::configured`]):
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

impl Protocol {
    /// The protocol librdkafka 2.12.1 uses with this configuration, known before any rebalance
    /// so the callbacks never have to ask for it (`rd_kafka_rebalance_protocol()` can wait
    /// forever once the group has terminated, confluentinc/librdkafka#4041; `consumer.rs`,
    /// `Context::rebalance`). What librdkafka decides it from (rdkafka_cgrp.c
    /// `rd_kafka_cgrp_rebalance_protocol`): `group.protocol=consumer` (KIP-848, matched
    /// case-insensitively like every enum setting, rdkafka_conf.c) is always cooperative; the
    /// classic protocol takes the chosen assignor's, and since librdkafka refuses a
    /// `partition.assignment.strategy` mixing eager and cooperative assignors
    /// (rdkafka_assignor.c, "must have the same protocol type"), one `cooperative-sticky` entry
    /// makes it cooperative. librdkafka splits the list on commas, skips leading spaces and
    /// commas and compares names exactly; it refuses trailing spaces, unknown names and
    /// `group.protocol=consumer` together with a strategy (rdkafka_conf.c), so the looser
    /// reading here (entries trimmed both sides) only differs on configurations that never make
    /// a consumer. The default strategy is `range,roundrobin`: eager.
    pub fn configured(group_protocol: Option<&str>, strategy: Option<&str>) -> Protocol {
        if group_protocol.is_some_and(|p| p.trim().eq_ignore_ascii_case("consumer")) {
            return Protocol::Cooperative;
        }
        let cooperative = strategy
            .unwrap_or("range,roundrobin")
            .split(',')
            .any(|name| name.trim() == "cooperative-sticky");
        if cooperative {
            Protocol::Cooperative
        } else {
            Protocol::Eager
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

    pub fn contains(&self, partition: TopicPartition) -> bool {
        self.partitions.contains(&partition)
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

    #[test]
    fn the_configured_protocol_follows_librdkafkas_rules() {
        use Protocol::{Cooperative, Eager};
        // librdkafka's default strategy, and eager assignors named alone or together.
        for strategy in [
            None,
            Some("range"),
            Some("roundrobin"),
            Some("range, roundrobin"),
        ] {
            assert_eq!(Protocol::configured(None, strategy), Eager, "{strategy:?}");
        }
        for strategy in [
            "cooperative-sticky",
            " cooperative-sticky",
            ",cooperative-sticky,",
        ] {
            assert_eq!(
                Protocol::configured(None, Some(strategy)),
                Cooperative,
                "{strategy}"
            );
        }
        // KIP-848's protocol is always cooperative; `group.protocol` is matched
        // case-insensitively.
        assert_eq!(Protocol::configured(Some("consumer"), None), Cooperative);
        assert_eq!(Protocol::configured(Some("CONSUMER"), None), Cooperative);
        assert_eq!(Protocol::configured(Some("classic"), None), Eager);
        // A name librdkafka does not know (it refuses to create such a consumer) is not taken
        // for the cooperative one.
        assert_eq!(
            Protocol::configured(None, Some("cooperative-sticky-x")),
            Eager
        );
    }

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
