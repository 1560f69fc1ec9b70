//! Kafka hops: topic metadata, end offsets before the change, and the marked events read back
//! from exactly those offsets with a `BaseConsumer` that never joins a group (`assign`, no
//! subscription, no commits), decoded with cdcmon's own decoder.
//!
//! rdkafka's consumer is blocking here, so everything runs on `spawn_blocking`. Every
//! `TopicPartitionList` is dropped before its consumer (a live list makes `rd_kafka_destroy`
//! hang, docs KAFKA-TESTING.md).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{Expectation, RowCounts, describe_counts};
use crate::event::{ChangeEvent, EventKind};
use crate::protocol::{Compression, Decoder, ProtocolChoice};

fn consumer(brokers: &str) -> anyhow::Result<BaseConsumer> {
    // librdkafka refuses `assign` without a `group.id` ("Local: Unknown group"), but with
    // `assign` (no `subscribe`) and no commits the consumer never joins that group on the
    // broker: nothing is stored, and cdcmon's own group is not disturbed. A unique id per run
    // keeps it that way even if a broker tracked it.
    let group = format!(
        "cdcmon-smoke-{}-{}",
        std::process::id(),
        crate::ticdc_api::now_ms()
    );
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .with_context(|| format!("cannot create a Kafka consumer for {brokers}"))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("Kafka task failed to run")?
}

/// Partition ids of `topic`, from one metadata request.
fn partitions(c: &BaseConsumer, topic: &str, timeout: Duration) -> anyhow::Result<Vec<i32>> {
    let md = c
        .fetch_metadata(Some(topic), timeout)
        .with_context(|| format!("cannot fetch metadata of topic {topic}"))?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        bail!("topic {topic} is not in the metadata answer");
    };
    if let Some(err) = t.error() {
        bail!("topic {topic}: {err:?}");
    }
    if t.partitions().is_empty() {
        bail!("topic {topic} has no partitions");
    }
    Ok(t.partitions().iter().map(|p| p.id()).collect())
}

/// The topic exists and has partitions with leaders (one metadata request per attempt).
pub async fn topic_metadata(
    brokers: &str,
    topic: &str,
    deadline: Duration,
) -> anyhow::Result<String> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    super::retry("kafka metadata", deadline, || {
        let (brokers, topic) = (brokers.clone(), topic.clone());
        blocking(move || {
            let c = consumer(&brokers)?;
            let ids = partitions(&c, &topic, Duration::from_secs(5))?;
            Ok(format!(
                "Kafka {brokers}: topic {topic} has {} partition(s)",
                ids.len()
            ))
        })
    })
    .await
}

/// `(partition, high watermark)` of every partition: where the marked events will start.
pub async fn end_offsets(brokers: &str, topic: &str) -> anyhow::Result<Vec<(i32, i64)>> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    blocking(move || {
        let c = consumer(&brokers)?;
        let timeout = Duration::from_secs(5);
        partitions(&c, &topic, timeout)?
            .into_iter()
            .map(|p| {
                let (_, high) = c
                    .fetch_watermarks(&topic, p, timeout)
                    .with_context(|| format!("cannot read the end offset of {topic}/{p}"))?;
                Ok((p, high))
            })
            .collect()
    })
    .await
}

/// What came back from the topic.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Matching row events by `(table, op)`.
    pub rows: RowCounts,
    /// DDL events for the smoke's DDL table.
    pub ddl: usize,
    /// Messages read since the start offsets.
    pub messages: usize,
    pub decode_errors: usize,
    pub first_decode_error: Option<String>,
}

impl Seen {
    fn has_all_rows(&self, e: &Expectation) -> bool {
        e.rows
            .iter()
            .all(|(k, n)| self.rows.get(k).copied().unwrap_or(0.0) >= *n)
    }
}

/// Does this event belong to the marked change? Row events of `app.users`/`app.orders` whose
/// key column `id` is the marker (canal-json writes it as a JSON string, others as a number).
fn record(ev: &ChangeEvent<'_>, e: &Expectation, id: &str, seen: &mut Seen) {
    match ev.kind {
        EventKind::Row if ev.db == "app" => {
            let is_marked = ev
                .keys
                .iter()
                .chain(ev.values.iter())
                .any(|c| c.name == "id" && c.value.get().trim_matches('"') == id);
            if let (true, Some(op)) = (is_marked, ev.op) {
                let key = (ev.table.to_string(), op.as_str().to_owned());
                if e.rows.contains_key(&key) {
                    *seen.rows.entry(key).or_insert(0.0) += 1.0;
                }
            }
        }
        EventKind::Ddl if ev.table == e.ddl_table.as_str() => seen.ddl += 1,
        _ => {}
    }
}

/// Read from `offsets` until every expected row event was seen (at least once: delivery is
/// at-least-once) or `deadline` passes. DDL is counted but not required: TiCDC's debezium
/// encoder on classic TiCDC emits no DDL.
pub async fn wait_for_events(
    brokers: &str,
    topic: &str,
    offsets: &[(i32, i64)],
    protocol: ProtocolChoice,
    compression: Compression,
    e: &Expectation,
    deadline: Duration,
) -> anyhow::Result<Seen> {
    let avro = crate::schema_registry::AvroArgs::default();
    let decode = (protocol, compression, &avro);
    wait_for_events_with(brokers, topic, offsets, decode, e, deadline).await
}

/// [`wait_for_events`] with the Avro schema-registry flags (`--protocol avro`).
pub async fn wait_for_events_with(
    brokers: &str,
    topic: &str,
    offsets: &[(i32, i64)],
    (protocol, compression, avro): (
        ProtocolChoice,
        Compression,
        &crate::schema_registry::AvroArgs,
    ),
    e: &Expectation,
    deadline: Duration,
) -> anyhow::Result<Seen> {
    let (brokers, topic, offsets, e) = (
        brokers.to_owned(),
        topic.to_owned(),
        offsets.to_vec(),
        e.clone(),
    );
    let avro = avro.clone();
    blocking(move || {
        let c = consumer(&brokers)?;
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &offsets {
            tpl.add_partition_offset(&topic, *p, Offset::Offset(*o))
                .with_context(|| format!("cannot assign {topic}/{p}@{o}"))?;
        }
        c.assign(&tpl).context("cannot assign the partitions")?;
        drop(tpl);
        let mut decoder = avro.apply(Decoder::new(protocol, compression))?;
        let registry = avro.registry()?;
        let id = e.id.to_string();
        let mut seen = Seen::default();
        let start = Instant::now();
        let mut rows_done_at: Option<Instant> = None;
        loop {
            if let Some(result) = c.poll(Duration::from_millis(200)) {
                let msg = result.context("Kafka consumer error")?;
                seen.messages += 1;
                // Avro: a missing schema is fetched from the registry, then decoded again.
                match crate::schema_registry::decode_fetching(
                    &mut decoder,
                    registry.as_deref(),
                    msg.key(),
                    msg.payload(),
                ) {
                    Ok(decoded) => {
                        for ev in &decoded.events {
                            record(ev, &e, &id, &mut seen);
                        }
                        for err in &decoded.errors {
                            seen.decode_errors += 1;
                            seen.first_decode_error.get_or_insert_with(|| {
                                format!("partition {} offset {}: {err}", msg.partition(), msg.offset())
                            });
                        }
                    }
                    Err(err) => {
                        seen.decode_errors += 1;
                        seen.first_decode_error.get_or_insert_with(|| {
                            format!("partition {} offset {}: {err}", msg.partition(), msg.offset())
                        });
                    }
                }
            }
            if seen.has_all_rows(&e) {
                // The DROP TABLE follows the deletes; give it a moment, then stop.
                let done = *rows_done_at.get_or_insert_with(Instant::now);
                if seen.ddl >= 2 || done.elapsed() > Duration::from_secs(3) {
                    return Ok(seen);
                }
            }
            if start.elapsed() >= deadline {
                let mut missing = e.rows.clone();
                for (k, n) in &seen.rows {
                    if let Some(m) = missing.get_mut(k) {
                        *m -= n;
                    }
                }
                missing.retain(|_, n| *n > 0.0);
                bail!(
                    "after {:.0} s, {} message(s) read from {topic} since the start offsets, still missing row events for id={}: {}; decode errors: {}{}",
                    deadline.as_secs_f64(),
                    seen.messages,
                    e.id,
                    describe_counts(&missing),
                    seen.decode_errors,
                    seen.first_decode_error
                        .as_deref()
                        .map(|s| format!(" (first: {s})"))
                        .unwrap_or_default()
                );
            }
        }
    })
    .await
}

/// One-line summary of [`Seen`].
pub fn describe_seen(topic: &str, seen: &Seen) -> String {
    let dup: f64 = seen
        .rows
        .values()
        .map(|n| n - 1.0)
        .filter(|d| *d > 0.0)
        .sum();
    let mut s = format!(
        "Kafka {topic}: every row event of the marked rows decoded ({}), {} DDL event(s) of the DDL table, {} message(s) read",
        describe_counts(&seen.rows),
        seen.ddl,
        seen.messages
    );
    if dup > 0.0 {
        s.push_str(&format!(", {dup} duplicate(s) (at-least-once)"));
    }
    if seen.decode_errors > 0 {
        s.push_str(&format!(", {} undecodable message(s)", seen.decode_errors));
    }
    s
}

/// `(partition, offset)` pairs as `0@17, 1@3`.
pub fn describe_offsets(offsets: &[(i32, i64)]) -> String {
    let m: BTreeMap<i32, i64> = offsets.iter().copied().collect();
    m.iter()
        .map(|(p, o)| format!("{p}@{o}"))
        .collect::<Vec<_>>()
        .join(", ")
}
