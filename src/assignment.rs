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

/// The assigned partitions of the consumed topic.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Assignment {
    partitions: BTreeSet<i32>,
}

impl Assignment {
    pub fn assign(&mut self, protocol: Protocol, partitions: &[i32]) {
        if protocol == Protocol::Eager {
            self.partitions.clear();
        }
        self.partitions.extend(partitions.iter().copied());
    }

    /// Replace the whole assignment (as read back from librdkafka).
    pub fn set(&mut self, partitions: &[i32]) {
        self.assign(Protocol::Eager, partitions);
    }

    pub fn revoke(&mut self, protocol: Protocol, partitions: &[i32]) {
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

    pub fn partitions(&self) -> Vec<i32> {
        self.partitions.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooperative_revoke_removes_only_the_listed_partitions() {
        // Member A owns 0,1,2; B joins and cooperative-sticky moves partition 2 to B: A gets an
        // incremental revoke of [2], then an incremental assign of [] (nothing new).
        let mut a = Assignment::default();
        a.assign(Protocol::Cooperative, &[0, 1, 2]);
        assert_eq!(a.len(), 3);
        a.revoke(Protocol::Cooperative, &[2]);
        assert_eq!(a.partitions(), [0, 1]);
        a.assign(Protocol::Cooperative, &[]);
        assert_eq!(
            a.partitions(),
            [0, 1],
            "an empty incremental assign adds nothing"
        );
        assert!(!a.is_empty());
        a.assign(Protocol::Cooperative, &[3]);
        assert_eq!(a.partitions(), [0, 1, 3]);
        a.revoke(Protocol::Cooperative, &[0, 1, 3]);
        assert!(a.is_empty());
    }

    #[test]
    fn eager_lists_are_the_whole_assignment() {
        let mut a = Assignment::default();
        a.assign(Protocol::Eager, &[0, 1, 2]);
        a.revoke(Protocol::Eager, &[0, 1, 2]);
        assert!(a.is_empty());
        a.assign(Protocol::Eager, &[1]);
        assert_eq!(a.partitions(), [1]);
        // A new eager assign replaces, even without the revoke in between.
        a.assign(Protocol::Eager, &[0, 2]);
        assert_eq!(a.partitions(), [0, 2]);
        a.set(&[5]);
        assert_eq!(a.partitions(), [5]);
    }
}
