//! Receiving messages from librdkafka a batch at a time.
//!
//! rdkafka 0.39 hands the application one message per `recv()`: each costs a queue pop with two
//! clock reads and a mutex-guarded poll-interval average inside librdkafka
//! (`rd_kafka_q_pop_serve0` → `rd_kafka_app_poll_start` / `rd_kafka_app_polled`), an
//! `Instant::now`, a waker registration and removal (two more mutexes) and an `Arc` per message,
//! plus a turn of the loop's `select!` (docs/performance.md, "Issue 11, step 6c").
//! `rd_kafka_consume_batch_queue` does that bookkeeping once per batch. It cannot be used on the
//! consumer queue rdkafka polls: that queue also carries the rebalance events, and served by the
//! batch call (`RD_KAFKA_Q_CB_RETURN`) a rebalance without a C `rebalance_cb` (rdkafka uses the
//! event API instead) is answered by librdkafka with a forced unassign (librdkafka 2.12.1
//! `rdkafka.c` `rd_kafka_poll_cb`, `RD_KAFKA_OP_REBALANCE`), bypassing `Context::rebalance`
//! and its commit of the revoked partitions.
//!
//! So the messages get a queue of their own. [`MessageQueue::forward`] forwards each assigned
//! partition's fetch queue to it, from the rebalance callback, BEFORE the assign call starts the
//! partition's fetcher: librdkafka then keeps that forwarding (it is marked as the
//! application's, `RD_KAFKA_Q_F_FWD_APP`, and `rd_kafka_toppar_op_fetch_start` does not
//! replace it), so all of a partition's messages arrive in this one queue, in offset order.
//! The mark also means librdkafka never forwards the partition anywhere else: a fetch stop
//! clears the forwarding, and only our next forward restores it. Every Assign forwards again,
//! and so does every commit tick ([`MessageQueue::reforward`]), for the one case where a stop
//! runs after the Assign callback's forward (a rejoin after a metadata change).
//!
//! Consumer errors: the batch call moves a partition's position past an error as if it were a
//! message, which a later pause/resume would fetch from; the loop seeks such a partition back
//! (`consumer::errors_to_rewind`).
//! Everything else (rebalances, commit results, errors, statistics) stays on the consumer queue,
//! which the loop keeps polling through rdkafka between batches, so every event is still served
//! by rdkafka's own code on the loop's thread. A partition whose queue could not be forwarded
//! keeps delivering through the consumer queue, which the loop handles as before.
//!
//! Revoked partitions: the unassign bumps the partition's op version before the revoke callback
//! returns, and the batch call drops ops of an outdated version
//! (`rd_kafka_q_serve_rkmessages` → `rd_kafka_op_version_outdated`), as the single-message poll
//! does. A batch is received and handled without polling the consumer queue in between, so no
//! revoke can be served while a batch is held.
//!
//! Memory: a batch holds at most what librdkafka had queued (`queued.max.messages.kbytes` plus
//! one fetch), and while it is held the fetcher may queue that much again.

use std::ffi::{CStr, CString, c_void};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use rdkafka::bindings as rd;
use rdkafka::topic_partition_list::TopicPartitionList;
use tokio::sync::Notify;

use crate::pipeline::lock;

/// At most this many messages per batch: ~0.3 ms of work at today's speed, so the loop still
/// looks at shutdown, commit ticks and rebalances often.
pub const MAX_BATCH: usize = 256;

/// A librdkafka queue that the assigned partitions' messages are forwarded to.
pub struct MessageQueue {
    /// The consumer's client handle, which outlives this queue (`MessageQueue::new`'s contract).
    rk: NonNull<rd::rd_kafka_t>,
    queue: NonNull<rd::rd_kafka_queue_t>,
    /// Woken by librdkafka (from its broker thread) when the queue goes from empty to non-empty.
    ready: Arc<Notify>,
    /// The partitions forwarded here, for [`MessageQueue::reforward`].
    forwarded: Mutex<Vec<(CString, i32)>>,
    /// Held across a batch call, so there is one receiver at a time (a partition's messages are
    /// in order only for a single receiver) whoever holds a `&MessageQueue`. Uncontended: the
    /// loop is the only caller, and it also makes every seek, pause and rebalance happen between
    /// batch calls, which the batch API needs (librdkafka CHANGELOG.md, v2.0.0 "Known Issues:
    /// Poor Consumer batch API messaging guarantees", fixed for concurrent use in v2.1.0).
    receiving: Mutex<()>,
}

// SAFETY: librdkafka queues are thread-safe (every operation takes the queue's lock); the
// handle is only destroyed in `Drop`, and the wake-up callback's opaque pointer is an `Arc`
// kept alive until the callback is removed there.
unsafe impl Send for MessageQueue {}
unsafe impl Sync for MessageQueue {}

impl MessageQueue {
    /// A new queue of the client `rk`. The queue must be dropped before `rk` is destroyed (the
    /// consumer loop drops it before the consumer).
    ///
    /// # Safety
    /// `rk` is a live consumer handle that outlives the returned queue.
    pub unsafe fn new(rk: *mut rd::rd_kafka_t) -> anyhow::Result<Self> {
        let rk = NonNull::new(rk).ok_or_else(|| anyhow::anyhow!("no librdkafka client"))?;
        // SAFETY: `rk` is live (caller's contract).
        let raw = unsafe { rd::rd_kafka_queue_new(rk.as_ptr()) };
        let queue = NonNull::new(raw)
            .ok_or_else(|| anyhow::anyhow!("librdkafka could not create a message queue"))?;
        let ready = Arc::new(Notify::new());
        // SAFETY: the opaque pointer stays valid while the callback is installed: `self.ready`
        // holds the `Arc`, and `Drop` removes the callback (under the queue's lock, so no call
        // is in flight afterwards) before the `Arc` goes.
        unsafe {
            rd::rd_kafka_queue_cb_event_enable(
                queue.as_ptr(),
                Some(wake),
                Arc::as_ptr(&ready) as *mut c_void,
            );
        }
        Ok(MessageQueue {
            rk,
            queue,
            ready,
            forwarded: Mutex::new(Vec::new()),
            receiving: Mutex::new(()),
        })
    }

    /// Forward the fetch queues of `partitions` to this queue and remember them for
    /// [`MessageQueue::reforward`]. Call it before the assign call that starts their fetchers.
    /// Returns the partitions that could not be forwarded (their messages then arrive on the
    /// consumer queue).
    pub fn forward(&self, partitions: &TopicPartitionList) -> Vec<String> {
        let mut failed = Vec::new();
        let mut forwarded = lock(&self.forwarded);
        for elem in partitions.elements() {
            let Ok(topic) = CString::new(elem.topic()) else {
                failed.push(format!("{}[{}]", elem.topic(), elem.partition()));
                continue;
            };
            if self.forward_one(&topic, elem.partition()) {
                if !forwarded
                    .iter()
                    .any(|(t, p)| *p == elem.partition() && *t == topic)
                {
                    forwarded.push((topic, elem.partition()));
                }
            } else {
                failed.push(format!("{}[{}]", elem.topic(), elem.partition()));
            }
        }
        failed
    }

    /// Forget `partitions` (revoked): [`MessageQueue::reforward`] no longer touches them.
    pub fn forget(&self, partitions: &TopicPartitionList) {
        let mut forwarded = lock(&self.forwarded);
        for elem in partitions.elements() {
            forwarded.retain(|(t, p)| {
                !(*p == elem.partition() && t.as_bytes() == elem.topic().as_bytes())
            });
        }
    }

    /// Forward every remembered partition again. A fetch stop clears a partition's forwarding
    /// (librdkafka 2.12.1 `rdkafka_partition.c` `rd_kafka_toppar_fetch_stop`) but leaves it
    /// marked as the application's, so the next fetch start does not forward it anywhere
    /// (`rd_kafka_toppar_op_fetch_start`). Normally that stop has run before the Assign callback
    /// forwards the partition again; but a rejoin triggered by a metadata change (partitions
    /// added, a `^` pattern matching a new topic) does not wait for the stops, and a stop that
    /// runs after our forward undoes it: the partition's messages then stay in its own fetch
    /// queue (found by session 13's audit, reproduced on the mock cluster). Forwarding again is
    /// idempotent and moves what that queue holds into this one, in order
    /// (`rd_kafka_q_fwd_set0`), so the loop calls this at every commit tick: such a partition
    /// is delayed by at most one tick, never split across two queues. Returns how many could
    /// not be forwarded.
    pub fn reforward(&self) -> usize {
        let forwarded = lock(&self.forwarded);
        forwarded
            .iter()
            .filter(|(topic, partition)| !self.forward_one(topic, *partition))
            .count()
    }

    /// Forward one partition's fetch queue here; `false` if librdkafka has no queue for it.
    fn forward_one(&self, topic: &CString, partition: i32) -> bool {
        // SAFETY: `rk` is live while this queue is; the partition queue handle is destroyed
        // right after use (the forwarding stays: it belongs to the partition's fetch queue).
        unsafe {
            let partition_queue =
                rd::rd_kafka_queue_get_partition(self.rk.as_ptr(), topic.as_ptr(), partition);
            if partition_queue.is_null() {
                return false;
            }
            rd::rd_kafka_queue_forward(partition_queue, self.queue.as_ptr());
            rd::rd_kafka_queue_destroy(partition_queue);
        }
        true
    }

    /// Move up to [`MAX_BATCH`] of the queued messages into `batch` (emptied first), without
    /// waiting. Returns how many.
    pub fn receive<'q>(&'q self, batch: &mut Batch<'q>) -> usize {
        batch.clear();
        let _receiving = lock(&self.receiving);
        batch.slots.resize(MAX_BATCH, std::ptr::null_mut());
        // SAFETY: the queue is live; `slots` has room for MAX_BATCH pointers; librdkafka writes
        // `n` message pointers, each of which we now own and destroy in `Batch::clear`.
        let n = unsafe {
            rd::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                0,
                batch.slots.as_mut_ptr(),
                MAX_BATCH,
            )
        };
        let n = usize::try_from(n).unwrap_or(0).min(MAX_BATCH);
        batch.slots.truncate(n);
        n
    }

    /// How many ops the queue holds (messages, and librdkafka's own such as version barriers).
    pub fn queued_ops(&self) -> usize {
        // SAFETY: the queue is live.
        unsafe { rd::rd_kafka_queue_length(self.queue.as_ptr()) }
    }

    /// Resolves once the queue has gone from empty to non-empty since the last wait (or right
    /// away if it did while nobody waited). May resolve for messages already received: callers
    /// receive again and wait again when they got none.
    pub async fn ready(&self) {
        self.ready.notified().await;
    }
}

impl Drop for MessageQueue {
    fn drop(&mut self) {
        // SAFETY: removing the callback takes the queue's lock, so no wake-up is running or
        // starts afterwards; then the handle is destroyed, purging what it still holds (their
        // partitions' next owner reads them: nothing of theirs was logged or committed).
        unsafe {
            rd::rd_kafka_queue_cb_event_enable(self.queue.as_ptr(), None, std::ptr::null_mut());
            rd::rd_kafka_queue_destroy(self.queue.as_ptr());
        }
    }
}

/// librdkafka's wake-up callback: the queue became non-empty.
unsafe extern "C" fn wake(_rk: *mut rd::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is the `Arc<Notify>` of a live `MessageQueue` (see `MessageQueue::new`).
    let ready = unsafe { &*(opaque as *const Notify) };
    ready.notify_one();
}

/// Messages received by one [`MessageQueue::receive`], owned until the next receive or drop.
pub struct Batch<'q> {
    slots: Vec<*mut rd::rd_kafka_message_t>,
    _queue: std::marker::PhantomData<&'q MessageQueue>,
}

// SAFETY: the messages are owned by the batch alone; librdkafka allows reading a message and
// destroying it (`rd_kafka_message_destroy`, which drops its op's references under their own
// locks) from any thread, and `&Batch` only reads.
unsafe impl Send for Batch<'_> {}
unsafe impl Sync for Batch<'_> {}

impl Default for Batch<'_> {
    fn default() -> Self {
        Batch {
            slots: Vec::with_capacity(MAX_BATCH),
            _queue: std::marker::PhantomData,
        }
    }
}

impl Batch<'_> {
    /// The messages in the order librdkafka returned them (per partition, offset order); a
    /// consumer error librdkafka delivered in a message's place is an `Err`.
    pub fn messages(&self) -> impl Iterator<Item = Result<Received<'_>, ReceiveError>> + '_ {
        // The topic's name is converted once per run of messages of one topic, not per message:
        // `rd_kafka_topic_name`, `strlen` and the UTF-8 check cost ~200 instructions a message
        // (callgrind of the consume loop, docs/performance.md "Issue 11, session 15"). A topic
        // handle stays alive, and its address unique, while a message of the batch holds it:
        // each consumed message holds a reference to its topic (librdkafka 2.12.1
        // `rd_kafka_message_setup`: `rkmessage->rkt = rd_kafka_topic_keep(...)`).
        let mut last_topic: (*mut rd::rd_kafka_topic_t, &str) = (std::ptr::null_mut(), NO_TOPIC);
        self.slots.iter().map(move |&ptr| {
            // SAFETY: every pointer in `slots` is a message returned by the batch call and not
            // yet destroyed; the borrow of `self` keeps it alive.
            let msg = unsafe { &*ptr };
            if msg.err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                if msg.rkt != last_topic.0 {
                    last_topic = (msg.rkt, topic_str(msg));
                }
                // SAFETY: a live message, without error, so it has its topic.
                Ok(unsafe { Received::from_raw(msg, last_topic.1) })
            } else {
                Err(ReceiveError::from_raw(msg))
            }
        })
    }

    /// Destroy the held messages (their memory goes back to librdkafka's accounting).
    pub fn clear(&mut self) {
        for ptr in self.slots.drain(..) {
            // SAFETY: returned by the batch call, destroyed exactly once (drained).
            unsafe { rd::rd_kafka_message_destroy(ptr) };
        }
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.clear();
    }
}

/// One received message (or a consumer error librdkafka delivered in its place), as the loop
/// handles it, whichever queue it came from.
#[derive(Clone, Copy)]
pub struct Received<'m> {
    pub topic: &'m str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'m [u8]>,
    pub payload: Option<&'m [u8]>,
}

/// A consumer error delivered in the batch instead of a message (librdkafka's
/// `RD_KAFKA_OP_CONSUMER_ERR`, e.g. an offset out of range on a partition).
#[derive(Debug)]
pub struct ReceiveError {
    pub topic: String,
    pub partition: i32,
    /// For a fetch error, the partition's next offset to fetch (librdkafka 2.12.1
    /// `rdkafka_fetcher.c`); negative when the error is not about an offset.
    pub offset: i64,
    pub code: rdkafka::error::RDKafkaErrorCode,
    /// librdkafka's text for it (`rd_kafka_message_errstr`).
    pub reason: String,
}

impl ReceiveError {
    fn from_raw(msg: &rd::rd_kafka_message_t) -> Self {
        let topic =
            topic_name(msg).map_or_else(String::new, |name| name.to_string_lossy().into_owned());
        // SAFETY: for an error message librdkafka returns its error string (or NULL).
        let reason = unsafe { rd::rd_kafka_message_errstr(msg) };
        let reason = if reason.is_null() {
            String::new()
        } else {
            // SAFETY: a NUL-terminated string that lives as long as the message.
            unsafe { CStr::from_ptr(reason) }
                .to_string_lossy()
                .into_owned()
        };
        ReceiveError {
            topic,
            partition: msg.partition,
            offset: msg.offset,
            code: msg.err.into(),
            reason,
        }
    }
}

impl std::fmt::Display for ReceiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}[{}] at offset {}: {} ({})",
            self.topic, self.partition, self.offset, self.code, self.reason
        )
    }
}

impl Received<'_> {
    /// Where the message sits, as the event log and the commit bookkeeping name it.
    pub fn position(&self) -> crate::eventlog::KafkaPosition<'_> {
        crate::eventlog::KafkaPosition {
            topic: self.topic,
            partition: self.partition,
            offset: self.offset,
        }
    }

    /// `topic` is `topic_str(msg)`, looked up by the caller.
    ///
    /// # Safety
    /// `msg` is a live message; the result borrows from it.
    unsafe fn from_raw<'m>(msg: &'m rd::rd_kafka_message_t, topic: &'m str) -> Received<'m> {
        Received {
            topic,
            partition: msg.partition,
            offset: msg.offset,
            // SAFETY: `key`/`payload` point to `key_len`/`len` bytes owned by the message.
            key: unsafe { bytes(msg.key, msg.key_len) },
            payload: unsafe { bytes(msg.payload, msg.len) },
        }
    }
}

/// What a message's topic is called when it has no name, or one that is not UTF-8.
const NO_TOPIC: &str = "<non-UTF-8 topic name>";

/// The name of `msg`'s topic as text. Kafka topic names are ASCII (`[a-zA-Z0-9._-]`), so for a
/// real topic this never falls back to [`NO_TOPIC`].
fn topic_str(msg: &rd::rd_kafka_message_t) -> &str {
    topic_name(msg)
        .and_then(|name| name.to_str().ok())
        .unwrap_or(NO_TOPIC)
}

/// The name of `msg`'s topic; `None` when it has none (an error may come without one).
fn topic_name(msg: &rd::rd_kafka_message_t) -> Option<&CStr> {
    if msg.rkt.is_null() {
        return None;
    }
    // SAFETY: a live message's non-null `rkt` is its topic, which it holds a reference to; the
    // name is a NUL-terminated C string owned by the topic, which outlives the borrow of `msg`.
    Some(unsafe { CStr::from_ptr(rd::rd_kafka_topic_name(msg.rkt)) })
}

/// `len` bytes at `ptr`, `None` for a null pointer.
///
/// # Safety
/// A non-null `ptr` points to `len` readable bytes that live as long as `'a`.
unsafe fn bytes<'a>(ptr: *mut c_void, len: usize) -> Option<&'a [u8]> {
    if ptr.is_null() {
        None
    } else {
        // SAFETY: caller's contract.
        Some(unsafe { std::slice::from_raw_parts(ptr as *const u8, len) })
    }
}
