//! The demo's Kafka: librdkafka's in-process mock cluster (one broker), owned by the demo's
//! producer (`test.mock.num.brokers=1`, which also hands us the raw cluster handle for the two
//! settings rdkafka's `MockCluster` does not wrap), plus an optional TCP relay that pins its
//! address.
//!
//! The mock broker always listens on 127.0.0.1 at a port the kernel picks
//! (librdkafka `src/rdkafka_mock.c`, `rd_kafka_mock_broker_new`: `INADDR_LOOPBACK`, port 0), and
//! nothing configures that. `--kafka-listen HOST:PORT` therefore binds HOST:PORT itself, relays
//! every connection to the broker, and makes the broker advertise HOST:PORT in its metadata
//! (`rd_kafka_mock_broker_set_host_port`, which changes only the advertised listener), so
//! clients that bootstrap from the pinned address stay on it.
//!
//! Traps (docs/demo.md, /work/shared/docs/KAFKA-TESTING.md): the mock keeps at most 5 MiB or
//! 100,000 message sets per partition and silently drops older data, so the demo compresses
//! (lz4) and never lets the producer run far ahead of the consumer; its group join waits 3 s by
//! default, which the demo sets to 0.

use std::ffi::CString;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The broker id of the mock's only broker (mock broker ids start at 1).
const BROKER_ID: i32 = 1;

/// Delivery accounting of the demo's producer.
#[derive(Default)]
pub struct Deliveries {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

pub struct ProduceContext {
    deliveries: Arc<Deliveries>,
}

impl ClientContext for ProduceContext {}

impl ProducerContext for ProduceContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.deliveries.ok.fetch_add(1, Ordering::Relaxed),
            Err((err, _)) => {
                tracing::warn!(error = %err, "demo message not delivered to the mock broker");
                self.deliveries.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// The mock cluster, its producer and the optional relay.
pub struct Broker {
    producer: ThreadedProducer<ProduceContext>,
    pub deliveries: Arc<Deliveries>,
    /// What clients (the demo's consumer, kcat, ...) bootstrap from.
    pub bootstrap: String,
    relay: Option<tokio::task::JoinHandle<()>>,
}

impl Broker {
    /// Start the cluster with `topic` of `partitions`; with `listen`, pin its address there.
    pub async fn start(
        topic: &str,
        partitions: i32,
        listen: Option<SocketAddr>,
    ) -> anyhow::Result<Broker> {
        let deliveries = Arc::new(Deliveries::default());
        let producer: ThreadedProducer<ProduceContext> = ClientConfig::new()
            .set("test.mock.num.brokers", "1")
            .set("client.id", "cdcmon-demo-producer")
            // Keeps each partition's backlog far below the mock's 5 MiB retention.
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .set("queue.buffering.max.messages", "200000")
            .create_with_context(ProduceContext {
                deliveries: deliveries.clone(),
            })
            .context("cannot start librdkafka's mock Kafka cluster")?;
        let cluster = producer
            .client()
            .mock_cluster()
            .context("the producer has no mock cluster")?;
        cluster
            .create_topic(topic, partitions, 1)
            .with_context(|| format!("cannot create topic {topic} in the mock cluster"))?;
        let mock_addr = cluster.bootstrap_servers();
        drop(cluster);
        // SAFETY: the handle belongs to `producer`, which outlives every use below (the calls
        // only take the cluster's lock / post an op to its thread).
        let raw = unsafe {
            rdkafka::bindings::rd_kafka_handle_mock_cluster(producer.client().native_ptr())
        };
        anyhow::ensure!(!raw.is_null(), "the producer has no mock cluster");
        // The mock delays a new group's first rebalance by 3 s; nothing here waits for members.
        unsafe { rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(raw, 0) };

        let (bootstrap, relay) = match listen {
            None => (mock_addr.clone(), None),
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on --kafka-listen {addr}"))?;
                let target: SocketAddr = mock_addr
                    .split(',')
                    .next()
                    .unwrap_or_default()
                    .parse()
                    .with_context(|| format!("unexpected mock broker address {mock_addr:?}"))?;
                // 0.0.0.0 is not an address a client can connect to: advertise loopback then.
                let host = if addr.ip().is_unspecified() {
                    "127.0.0.1".to_owned()
                } else {
                    addr.ip().to_string()
                };
                let port = listener.local_addr().map_or(addr.port(), |a| a.port());
                let c_host = CString::new(host.clone()).context("--kafka-listen host")?;
                // SAFETY: as above; librdkafka copies the host string.
                unsafe {
                    rdkafka::bindings::rd_kafka_mock_broker_set_host_port(
                        raw,
                        BROKER_ID,
                        c_host.as_ptr(),
                        i32::from(port),
                    )
                };
                tracing::info!(listen = %addr, broker = %target, "mock Kafka broker pinned");
                (
                    format!("{host}:{port}"),
                    Some(tokio::spawn(relay(listener, target))),
                )
            }
        };
        Ok(Broker {
            producer,
            deliveries,
            bootstrap,
            relay,
        })
    }

    /// Enqueue one message; waits while librdkafka's queue is full.
    pub async fn send(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        value: &[u8],
    ) -> anyhow::Result<()> {
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(topic).partition(partition).payload(value);
        if let Some(k) = key {
            record = record.key(k);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    back,
                )) => {
                    record = back;
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                Err((err, _)) => return Err(err).context("cannot produce to the mock broker"),
            }
        }
    }

    /// Wait until every enqueued message is acknowledged (or `timeout`).
    pub fn flush(&self, timeout: std::time::Duration) -> anyhow::Result<()> {
        self.producer
            .flush(timeout)
            .context("the mock broker did not acknowledge every demo message")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(r) = self.relay.take() {
            r.abort();
        }
    }
}

/// Relay every connection on `listener` to `target` until aborted.
async fn relay(listener: TcpListener, target: SocketAddr) {
    let mut connections = JoinSet::new();
    loop {
        let (mut inbound, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(err) => {
                tracing::warn!(error = %err, "--kafka-listen accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        connections.spawn(async move {
            match TcpStream::connect(target).await {
                Ok(mut outbound) => {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
                Err(err) => {
                    tracing::warn!(error = %err, %peer, "cannot reach the mock broker")
                }
            }
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
}
