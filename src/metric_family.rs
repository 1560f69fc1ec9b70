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
//! only picks a bucket), each built with those labels as constant labels, and is registered
//! once as one collector with the family's descriptor (the one a vector of the same name and
//! labels has: a duplicate name is refused when the family is made). `collect` takes the
//! handles under the family's lock and reads them after releasing it, so a scrape never holds
//! up the message path's lookups; the registry's `gather` sorts the series by label values, so
//! the exposition is the one a `MetricVec` gives for the same series (tested below against
//! `IntCounterVec` and `IntGaugeVec`).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
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

/// Buckets by a hash of the values; within a bucket the values are compared in full.
type Buckets<M> = HashMap<u64, Vec<(Box<[Box<str>]>, M)>>;

/// Series of one metric name, one per distinct list of label values. Clones share the series.
#[derive(Clone)]
pub struct LabelledFamily<M: LabelledMetric> {
    opts: Opts,
    label_names: &'static [&'static str],
    /// Never exported: what a lookup with the wrong number of values counts into.
    unexported: M,
    series: Arc<Mutex<Buckets<M>>>,
}

/// What the registry holds for a family: its descriptor and its series.
struct FamilyCollector<M: LabelledMetric> {
    desc: Desc,
    series: Arc<Mutex<Buckets<M>>>,
}

impl<M: LabelledMetric> Collector for FamilyCollector<M> {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // Handles (Arc clones) taken under the lock, read after it.
        let handles: Vec<M> = lock(&self.series)
            .values()
            .flatten()
            .map(|(_, metric)| metric.clone())
            .collect();
        let mut family: Option<MetricFamily> = None;
        for metric in &handles {
            for mut one in metric.collect() {
                match &mut family {
                    None => family = Some(one),
                    Some(all) => all.mut_metric().extend(one.take_metric()),
                }
            }
        }
        family.into_iter().collect()
    }
}

/// Whether a series' stored label values are `values`.
fn same(have: &[Box<str>], values: &[&str]) -> bool {
    have.iter().map(|v| &**v).eq(values.iter().copied())
}

fn lock<M>(series: &Mutex<Buckets<M>>) -> std::sync::MutexGuard<'_, Buckets<M>> {
    series
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<M: LabelledMetric> LabelledFamily<M> {
    /// A family of `opts`' name and help with one label per `label_names`, registered in
    /// `registry` (refused, as a vector would be, for bad names or a name already there).
    pub fn new(
        registry: &Registry,
        opts: Opts,
        label_names: &'static [&'static str],
    ) -> prometheus::Result<Self> {
        let desc = Desc::new(
            opts.name.clone(),
            opts.help.clone(),
            label_names.iter().map(|name| (*name).to_owned()).collect(),
            HashMap::new(),
        )?;
        // A series with every label (values are never checked): what `with_label_values`
        // builds can then not fail either.
        let unexported = M::with_opts(
            opts.clone().const_labels(
                label_names
                    .iter()
                    .map(|name| ((*name).to_owned(), String::new()))
                    .collect(),
            ),
        )?;
        let series = Arc::new(Mutex::new(HashMap::new()));
        registry.register(Box::new(FamilyCollector {
            desc,
            series: series.clone(),
        }))?;
        Ok(LabelledFamily {
            opts,
            label_names,
            unexported,
            series,
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

    /// The series of `values` (one per label name, in order), created the first time.
    pub fn with_label_values(&self, values: &[&str]) -> M {
        if values.len() != self.label_names.len() {
            // Every call site passes a fixed-size list: a programming error, logged, counted
            // nowhere visible rather than under wrong labels.
            tracing::error!(metric = %self.opts.name, ?values, "wrong number of label values");
            return self.unexported.clone();
        }
        let bucket = Self::bucket(values);
        let mut series = lock(&self.series);
        let entries = series.entry(bucket).or_default();
        if let Some((_, metric)) = entries.iter().find(|(have, _)| same(have, values)) {
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
                // Cannot happen: `new` built a series with the same names.
                tracing::error!(metric = %self.opts.name, error = %err, "cannot build a series; it is not exported");
                return self.unexported.clone();
            }
        };
        entries.push((
            values.iter().map(|v| Box::<str>::from(*v)).collect(),
            metric.clone(),
        ));
        metric
    }

    /// Remove the series of `values` from the exposition; `false` if there was none.
    pub fn remove_label_values(&self, values: &[&str]) -> bool {
        let bucket = Self::bucket(values);
        let mut series = lock(&self.series);
        let Some(entries) = series.get_mut(&bucket) else {
            return false;
        };
        let Some(at) = entries.iter().position(|(have, _)| same(have, values)) else {
            return false;
        };
        entries.swap_remove(at);
        if entries.is_empty() {
            series.remove(&bucket);
        }
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
            ("", "", 4),
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
    fn a_duplicate_name_is_refused_and_a_removed_series_comes_back_from_zero() {
        let registry = Registry::new();
        let family: LabelledFamily<IntGauge> =
            LabelledFamily::new(&registry, Opts::new("lag", "help"), &["topic", "partition"])
                .expect("family");
        assert!(
            LabelledFamily::<IntGauge>::new(&registry, Opts::new("lag", "other help"), &["topic"])
                .is_err(),
            "a second family of the same name is refused when it is made, as a vector is"
        );
        family.with_label_values(&["t", "0"]).set(42);
        assert!(family.remove_label_values(&["t", "0"]));
        assert_eq!(text(&registry), "");
        assert_eq!(family.with_label_values(&["t", "0"]).get(), 0);
        assert!(text(&registry).contains(r#"lag{partition="0",topic="t"} 0"#));
        // A wrong number of values is counted nowhere visible, never under wrong labels.
        family.with_label_values(&["t"]).set(7);
        assert!(!text(&registry).contains(" 7"));
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
