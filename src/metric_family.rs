//! Labelled metric families whose series are told apart by their label values themselves.
//!
//! prometheus 0.14's `MetricVec` (`IntCounterVec`, `IntGaugeVec`, ...) finds a series by an FNV
//! hash of its label values written one after the other with no separator, and never compares
//! the values (`src/vec.rs`: `hash_label_values`, `get_or_create_metric`). So `db="ap",
//! table="pusers"` and `db="app", table="users"` were ONE `cdc_events_total` series, and so were
//! `topic="cdc1", partition="2"` and `topic="cdc", partition="12"` of the lag gauge: counts of
//! one table landed on the other's labels. Found by the issue-11 line work's metrics test.
//!
//! [`LabelledFamily`] keeps one metric per distinct label-value list (compared in full, the hash
//! only picks a bucket) and registers each in the registry as a metric with those labels as
//! constant labels. The registry's own identity for them (`Desc::id`) hashes the values WITH a
//! separator (`src/desc.rs`), and its `gather` merges the collectors of one name into one
//! family sorted by label values, so the exposition is the one a `MetricVec` would give for the
//! same series (tested below against `IntCounterVec`).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use prometheus::core::Collector;
use prometheus::{IntCounter, IntGauge, Opts, Registry};

/// A metric that can be built from `Opts` carrying its labels as constant labels.
pub trait LabelledMetric: Collector + Clone + 'static {
    fn with_opts(opts: Opts) -> prometheus::Result<Self>;
}

impl LabelledMetric for IntCounter {
    fn with_opts(opts: Opts) -> prometheus::Result<Self> {
        IntCounter::with_opts(opts)
    }
}

impl LabelledMetric for IntGauge {
    fn with_opts(opts: Opts) -> prometheus::Result<Self> {
        IntGauge::with_opts(opts)
    }
}

/// Series of one metric name, one per distinct list of label values. Clones share the series.
#[derive(Clone)]
pub struct LabelledFamily<M: LabelledMetric> {
    registry: Registry,
    opts: Opts,
    label_names: &'static [&'static str],
    /// Never registered: what a series that cannot be built counts into (see
    /// `with_label_values`).
    unexported: M,
    /// Buckets by a hash of the values; within a bucket the values are compared in full.
    series: Arc<Mutex<Buckets<M>>>,
}

type Buckets<M> = HashMap<u64, Vec<(Box<[Box<str>]>, M)>>;

impl<M: LabelledMetric> LabelledFamily<M> {
    /// A family of `opts`' name and help with one label per `label_names`, whose series are
    /// registered in `registry` as they are created. Checks the name and the label names now.
    pub fn new(
        registry: &Registry,
        opts: Opts,
        label_names: &'static [&'static str],
    ) -> prometheus::Result<Self> {
        // What `with_opts` would refuse later (bad metric or label names), refused here.
        let probe = opts.clone().const_labels(
            label_names
                .iter()
                .map(|name| ((*name).to_owned(), String::new()))
                .collect(),
        );
        let unexported = M::with_opts(probe)?;
        Ok(LabelledFamily {
            registry: registry.clone(),
            opts,
            label_names,
            unexported,
            series: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    fn bucket(values: &[&str]) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for value in values {
            // `str`'s Hash ends each value with a 0xff byte: no two lists share a text.
            value.hash(&mut h);
        }
        h.finish()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets<M>> {
        self.series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The series of `values` (one per label name, in order), created and registered the
    /// first time. A series the registry refuses (it cannot be, short of a 64-bit hash
    /// collision of its identity) is logged and still returned, counting but not exported.
    /// (Building one cannot fail either: `new` checked the names, and values are not checked.)
    pub fn with_label_values(&self, values: &[&str]) -> M {
        debug_assert_eq!(values.len(), self.label_names.len(), "{:?}", self.opts.name);
        let bucket = Self::bucket(values);
        let mut series = self.lock();
        let entries = series.entry(bucket).or_default();
        if let Some((_, metric)) = entries
            .iter()
            .find(|(have, _)| have.iter().map(|v| &**v).eq(values.iter().copied()))
        {
            return metric.clone();
        }
        let labels = self
            .label_names
            .iter()
            .zip(values)
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let metric = match M::with_opts(self.opts.clone().const_labels(labels)) {
            Ok(metric) => metric,
            Err(err) => {
                tracing::error!(metric = %self.opts.name, error = %err, "cannot build a series; it is not exported");
                return self.unexported.clone();
            }
        };
        if let Err(err) = self.registry.register(Box::new(metric.clone())) {
            tracing::error!(metric = %self.opts.name, ?values, error = %err, "cannot register a series; it is not exported");
        }
        entries.push((
            values.iter().map(|v| Box::<str>::from(*v)).collect(),
            metric.clone(),
        ));
        metric
    }

    /// Remove the series of `values` from the exposition; `false` if there was none.
    pub fn remove_label_values(&self, values: &[&str]) -> bool {
        let bucket = Self::bucket(values);
        let mut series = self.lock();
        let Some(entries) = series.get_mut(&bucket) else {
            return false;
        };
        let Some(at) = entries
            .iter()
            .position(|(have, _)| have.iter().map(|v| &**v).eq(values.iter().copied()))
        else {
            return false;
        };
        let (_, metric) = entries.swap_remove(at);
        if entries.is_empty() {
            series.remove(&bucket);
        }
        let _ = self.registry.unregister(Box::new(metric));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, IntCounterVec, TextEncoder};

    fn text(registry: &Registry) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .expect("encode");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn values_that_concatenate_alike_are_distinct_series() {
        let registry = Registry::new();
        let family: LabelledFamily<IntCounter> = LabelledFamily::new(
            &registry,
            Opts::new("cdc_events_total", "help"),
            &["db", "table", "op"],
        )
        .expect("family");
        family.with_label_values(&["ap", "pusers", "delete"]).inc();
        for _ in 0..3 {
            family.with_label_values(&["app", "users", "delete"]).inc();
        }
        assert_eq!(
            family.with_label_values(&["ap", "pusers", "delete"]).get(),
            1
        );
        assert_eq!(
            family.with_label_values(&["app", "users", "delete"]).get(),
            3
        );
        let exposition = text(&registry);
        assert!(
            exposition.contains(r#"cdc_events_total{db="ap",op="delete",table="pusers"} 1"#),
            "{exposition}"
        );
        assert!(
            exposition.contains(r#"cdc_events_total{db="app",op="delete",table="users"} 3"#),
            "{exposition}"
        );

        // What prometheus' own vector does with the same two series: one, counted 4 times.
        let vec = IntCounterVec::new(Opts::new("v", "help"), &["db", "table", "op"]).expect("vec");
        vec.with_label_values(&["ap", "pusers", "delete"]).inc();
        vec.with_label_values(&["app", "users", "delete"]).inc_by(3);
        assert_eq!(vec.with_label_values(&["ap", "pusers", "delete"]).get(), 4);
    }

    #[test]
    fn the_exposition_is_the_one_a_metric_vec_gives() {
        let (ours, theirs) = (Registry::new(), Registry::new());
        let family: LabelledFamily<IntGauge> = LabelledFamily::new(
            &ours,
            Opts::new("cdc_kafka_consumer_lag_messages", "Lag \"quoted\" help."),
            &["topic", "partition"],
        )
        .expect("family");
        let vec = prometheus::IntGaugeVec::new(
            Opts::new("cdc_kafka_consumer_lag_messages", "Lag \"quoted\" help."),
            &["topic", "partition"],
        )
        .expect("vec");
        theirs.register(Box::new(vec.clone())).expect("register");
        // Created out of order, values needing escapes, one removed again.
        let series = [
            ("app_cdc", "10", 5),
            ("app_cdc", "2", 7),
            ("a\"b\\c\nd", "0", -1),
            ("other", "1", 0),
            ("gone", "3", 9),
        ];
        for (topic, partition, lag) in series {
            family.with_label_values(&[topic, partition]).set(lag);
            vec.with_label_values(&[topic, partition]).set(lag);
        }
        assert!(family.remove_label_values(&["gone", "3"]));
        assert!(!family.remove_label_values(&["gone", "3"]));
        vec.remove_label_values(&["gone", "3"]).expect("remove");
        assert_eq!(text(&ours), text(&theirs));
        assert!(!text(&ours).contains("gone"));
    }

    #[test]
    fn a_family_without_series_exports_nothing_and_bad_names_are_refused() {
        let registry = Registry::new();
        let _family: LabelledFamily<IntCounter> =
            LabelledFamily::new(&registry, Opts::new("x_total", "help"), &["db"]).expect("family");
        assert_eq!(text(&registry), "");
        assert!(
            LabelledFamily::<IntCounter>::new(&registry, Opts::new("x", "help"), &["bad-label"])
                .is_err()
        );
        assert!(
            LabelledFamily::<IntCounter>::new(&registry, Opts::new("bad name", "help"), &["db"])
                .is_err()
        );
    }
}
