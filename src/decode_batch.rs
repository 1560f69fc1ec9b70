//! Decoding a batch of already-received messages on several threads (`--decode-threads`).
//!
//! The consume loop receives a batch (src/batch_receive.rs), decodes it here in parallel in
//! chunks of up to [`MAX_MESSAGES`] / [`MAX_BYTES`] ([`chunk_end`]; the
//! loop thread and the long-lived workers of a [`DecodePool`]; the decode returns only when
//! every worker that started on the batch is done with it), and then handles them one by one on the loop thread in receive order, exactly as a single message
//! is handled (log its lines, count, mark its offset pending). Nothing is in flight once the
//! batch is handled, so a rebalance callback (which only runs inside librdkafka's poll on the
//! loop thread) never has to wait for or drain workers.
//!
//! The one new rule is [`Revocations`]: a rebalance callback may run while a batch is being
//! gathered by polling the consumer queue (inside a poll), after some of its messages were
//! received. (The loop's batches now come from the message queue and are held across no poll;
//! the rule is still checked for each message, so it holds whatever serves a rebalance.) Those messages of a
//! partition that left this member in the meantime must be dropped, not handled: the callback
//! already committed that partition's offsets from what was handled, librdkafka re-delivers the
//! dropped ones to the partition's next owner (or to us from the committed offset after an eager
//! re-assign), and handling them would log them and mark an offset pending for a partition we no
//! longer own. Messages of every other partition must be handled (librdkafka will not deliver
//! them again: dropping them would lose them).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::pipeline::lock;
use crate::protocol::{DecodeError, Decoded, Decoder};
use crate::topics::TopicPartition;

/// Messages decoded in parallel at once at most (and gathered by `gather_ready`).
pub const MAX_MESSAGES: usize = 256;
/// Payload bytes decoded in parallel at once at most: bounds the decoded events held at once.
pub const MAX_BYTES: usize = 1024 * 1024;

/// The end of the chunk of `items` that starts at `start`: at most [`MAX_MESSAGES`] items,
/// and no more once [`MAX_BYTES`] of payload (`len`) are reached (at least one item, so a
/// message larger than that is a chunk of its own).
pub fn chunk_end<T>(items: &[T], start: usize, len: impl Fn(&T) -> usize) -> usize {
    let mut bytes = 0usize;
    let mut end = start;
    while end < items.len() && end - start < MAX_MESSAGES && (end == start || bytes < MAX_BYTES) {
        bytes += len(&items[end]);
        end += 1;
    }
    end
}
/// Smaller batches decode serially on the loop thread: spawning a worker costs more than
/// decoding a few messages, and a trickle keeps today's per-message latency.
pub const MIN_PARALLEL: usize = 2 * CLAIM;
/// Messages a thread claims at a time: small enough to balance uneven message sizes, large
/// enough that the shared counter is not contended. [`MIN_PARALLEL`] is two claims, so every
/// parallel batch has a chunk for a worker.
const CLAIM: usize = 8;

/// `--decode-threads` when not given: 1, decoding on the loop thread only. Parallel decoding
/// is proven safe (module docs, its tests) but did not beat one thread on the 2-core machine
/// shared with other work it was built on: with per-batch threads it was slower (spawn + join
/// ~90 µs per ~300 µs batch); with the long-lived [`DecodePool`] the loop no longer waits for
/// workers that have not started, but they got a CPU for only 2-12 % of the messages, and
/// cdcmon's events/s stayed within noise of one thread (docs/performance.md, "Issue 11,
/// step 3").
pub const DEFAULT_THREADS: usize = 1;

/// When each partition last left this member's assignment, as a generation number that every
/// such departure increases. A message received at generation `g` may be handled iff its
/// partition has not left since: [`may_handle`].
#[derive(Debug, Default)]
pub struct Revocations {
    generation: AtomicU64,
    left_at: Mutex<HashMap<TopicPartition, u64>>,
}

impl Revocations {
    /// The generation to record with a message as it is received.
    pub fn now(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// `partitions` leave this member (revoked, lost, or missing after a rebalance error).
    /// Called by the rebalance callbacks, before they commit and forget the partitions.
    pub fn leave(&self, partitions: impl IntoIterator<Item = TopicPartition>) {
        let mut left_at = self.lock();
        let generation = self.generation.load(Ordering::Acquire) + 1;
        for p in partitions {
            left_at.insert(p, generation);
        }
        self.generation.store(generation, Ordering::Release);
    }

    /// Whether a message of `tp` received at generation `received_at` may be handled now.
    /// `tp` is `None` for a topic no callback ever named (so none of its partitions left).
    pub fn may_handle(&self, tp: Option<TopicPartition>, received_at: u64) -> bool {
        if self.now() == received_at {
            // No partition left since the message arrived: the common case, lock-free.
            return true;
        }
        let left = tp.and_then(|tp| self.lock().get(&tp).copied());
        may_handle(received_at, left)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TopicPartition, u64>> {
        lock(&self.left_at)
    }
}

/// The rule: a message received at generation `received_at` of a partition that last left at
/// `left_at` (never: `None`) is handled iff the partition has not left since the message arrived.
/// A departure at a generation `<= received_at` happened before the message was received (it
/// came from a later assignment, e.g. an eager re-assign), so it is handled.
pub fn may_handle(received_at: u64, left_at: Option<u64>) -> bool {
    left_at.is_none_or(|left| left <= received_at)
}

/// One received message's key and value, as the decoder takes them.
pub type Payload<'m> = (Option<&'m [u8]>, Option<&'m [u8]>);

/// What [`decode`] made of one message: `None` when it needs the decoder's state (simple
/// protocol, Avro) and must be decoded on the loop thread, in order, by `Pipeline::process`.
pub type Predecoded<'m> = Option<Result<Decoded<'m>, DecodeError>>;

/// The decode threads of `--decode-threads N`: `N - 1` long-lived rayon workers, built once
/// when the consume loop starts, plus the loop thread itself, which decodes a share of every
/// batch. Replaces a `std::thread::scope` spawned per batch, whose spawn + join cost ~90 µs
/// (worst: ms) per ~300 µs batch on a loaded 2-core machine (docs/performance.md, "Issue 11,
/// step 3").
pub struct DecodePool {
    /// `None` for one thread: everything is decoded by the loop as it handles it.
    workers: Option<rayon_core::ThreadPool>,
    threads: usize,
    /// Batches decoded here, and the time the loop thread spent waiting at the end of them
    /// for workers (after it found no chunk left to claim): what the pool costs the loop.
    batches: AtomicU64,
    /// Messages of those batches decoded by a worker rather than the loop thread.
    offloaded: AtomicU64,
    waited_ns: AtomicU64,
    max_wait_ns: AtomicU64,
}

impl std::fmt::Debug for DecodePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodePool")
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

/// What the loop thread spent waiting for workers at the end of batches ([`DecodePool::waits`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolWaits {
    pub batches: u64,
    /// Messages of those batches that a worker decoded (the rest: the loop thread).
    pub offloaded: u64,
    pub total: std::time::Duration,
    pub max: std::time::Duration,
}

impl DecodePool {
    /// `threads` decode threads, the calling (loop) thread included; 0 and 1 start none.
    pub fn new(threads: usize) -> anyhow::Result<Self> {
        let builder =
            || rayon_core::ThreadPoolBuilder::new().thread_name(|i| format!("cdcmon-decode-{i}"));
        let workers = if threads > 1 {
            // The calling (loop) thread joins the pool as its thread 0 (it never runs rayon's
            // worker loop: it only works inside `decode`). Then the jobs a batch hands out sit
            // in the loop thread's own queue, and at the batch's end the loop thread runs
            // every job no worker has taken yet itself, finding no chunk left: it waits only
            // for jobs a worker actually started, never for a worker that has yet to get a
            // CPU. A thread can join one pool only, for good (rayon leaks that registry: once
            // per `cdcmon consume`); where it already has (a second consume loop on the same
            // thread, tests), the pool gets its own `threads - 1` workers and the loop thread
            // waits at the end for every job handed out, started or not.
            let pool = match builder().num_threads(threads).use_current_thread().build() {
                Ok(pool) => pool,
                Err(_) => builder().num_threads(threads - 1).build().map_err(|e| {
                    anyhow::anyhow!("cannot start {} decode threads: {e}", threads - 1)
                })?,
            };
            Some(pool)
        } else {
            None
        };
        Ok(Self {
            workers,
            threads: threads.max(1),
            batches: AtomicU64::new(0),
            offloaded: AtomicU64::new(0),
            waited_ns: AtomicU64::new(0),
            max_wait_ns: AtomicU64::new(0),
        })
    }

    /// The decode threads, the loop thread included.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Whether the calling thread is one of the pool's (it then withdraws, at the end of a
    /// batch, the jobs no worker has started).
    pub fn owns_current_thread(&self) -> bool {
        self.workers
            .as_ref()
            .is_some_and(|w| w.current_thread_index().is_some())
    }

    /// The loop thread's waits for workers so far.
    pub fn waits(&self) -> PoolWaits {
        PoolWaits {
            batches: self.batches.load(Ordering::Relaxed),
            offloaded: self.offloaded.load(Ordering::Relaxed),
            total: std::time::Duration::from_nanos(self.waited_ns.load(Ordering::Relaxed)),
            max: std::time::Duration::from_nanos(self.max_wait_ns.load(Ordering::Relaxed)),
        }
    }

    /// Decode `messages` with `decoder`'s stateless protocols on the pool's workers and the
    /// calling thread, results in the order of `messages`. Fewer than [`MIN_PARALLEL`]
    /// messages, or one thread: nothing is decoded here (all `None`), the loop decodes them as
    /// it handles them.
    ///
    /// Chunks of [`CLAIM`] messages are claimed from one shared counter, so a job that starts
    /// late finds the batch taken and returns at once. At the end the loop thread runs the
    /// jobs still in its queue itself and waits for those a worker took (see [`Self::new`]
    /// for when it waits for all of them); that wait is what [`Self::waits`] measures.
    pub fn decode<'m>(&self, decoder: &Decoder, messages: &[Payload<'m>]) -> Vec<Predecoded<'m>> {
        let mut results: Vec<Predecoded<'m>> = messages.iter().map(|_| None).collect();
        // One job per other thread, but no more than there are chunks besides the loop's first.
        let helpers = (self.threads - 1).min(messages.len().div_ceil(CLAIM).saturating_sub(1));
        let Some(workers) = self.workers.as_ref().filter(|_| helpers > 0) else {
            return results;
        };
        if messages.len() < MIN_PARALLEL {
            return results;
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let parts: Mutex<Vec<Vec<(usize, Predecoded<'m>)>>> = Mutex::new(Vec::new());
        // `true`: a worker's share (counted as offloaded), `false`: the loop thread's.
        let work = |on_worker: bool| {
            let mut out: Vec<(usize, Predecoded<'m>)> = Vec::new();
            loop {
                let start = next.fetch_add(CLAIM, Ordering::Relaxed);
                if start >= messages.len() {
                    break;
                }
                let end = (start + CLAIM).min(messages.len());
                for (i, (key, value)) in messages[start..end].iter().enumerate() {
                    out.push((start + i, decoder.decode_stateless(*key, *value)));
                }
            }
            if !out.is_empty() {
                if on_worker {
                    self.offloaded
                        .fetch_add(out.len() as u64, Ordering::Relaxed);
                }
                lock(&parts).push(out);
            }
        };
        let mut own_done = None;
        workers.in_place_scope(|scope| {
            for _ in 0..helpers {
                scope.spawn(|_| {
                    // A decoder panic (it never panics: fuzzed) loses no message and does not
                    // reach the loop: every slot this worker claimed stays `None` (its results
                    // are pushed once, at its end) and the loop decodes those messages itself.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(true)))
                        .is_err()
                    {
                        tracing::error!(
                            "a decode worker panicked; its messages are decoded on the loop thread"
                        );
                    }
                });
            }
            work(false);
            own_done = Some(std::time::Instant::now());
        });
        if let Some(done) = own_done {
            let waited = u64::try_from(done.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.batches.fetch_add(1, Ordering::Relaxed);
            self.waited_ns.fetch_add(waited, Ordering::Relaxed);
            self.max_wait_ns.fetch_max(waited, Ordering::Relaxed);
        }
        for (i, decoded) in lock(&parts).drain(..).flatten() {
            results[i] = decoded;
        }
        results
    }
}

/// [`DecodePool::decode`] on a pool of `threads` started for this call (tests).
#[cfg(test)]
fn decode<'m>(decoder: &Decoder, messages: &[Payload<'m>], threads: usize) -> Vec<Predecoded<'m>> {
    DecodePool::new(threads)
        .expect("decode pool")
        .decode(decoder, messages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Protocol;
    use crate::protocol::{Compression, ProtocolChoice};
    use crate::topics::Topics;

    /// Chunks cover the batch in order, each at most MAX_MESSAGES long, ending at the first
    /// item that brings it to MAX_BYTES, and an oversized item stands alone.
    #[test]
    fn chunks_are_bounded_by_count_and_bytes_and_cover_the_batch() {
        let chunks = |sizes: &[usize]| {
            let mut out = Vec::new();
            let mut start = 0;
            while start < sizes.len() {
                let end = chunk_end(sizes, start, |&n| n);
                assert!(end > start, "a chunk is never empty");
                out.push(end - start);
                start = end;
            }
            out
        };
        assert_eq!(chunks(&[]), Vec::<usize>::new());
        assert_eq!(chunks(&[10; 600]), vec![256, 256, 88]);
        assert_eq!(chunks(&[MAX_BYTES / 4; 9]), vec![4, 4, 1]);
        assert_eq!(chunks(&[MAX_BYTES * 3, 1, 1]), vec![1, 2]);
        assert_eq!(chunks(&[1, MAX_BYTES * 3, 1]), vec![2, 1]);
        assert_eq!(chunks(&[MAX_BYTES / 2 - 1, MAX_BYTES / 2, 5]), vec![3]);
    }

    #[test]
    fn a_held_message_is_handled_unless_its_partition_left_after_it_arrived() {
        // Never left.
        assert!(may_handle(0, None));
        assert!(may_handle(7, None));
        // Left before the message arrived (the message is from a later assignment).
        assert!(may_handle(3, Some(3)));
        assert!(may_handle(5, Some(2)));
        // Left after the message arrived: dropped, the next owner reads it again.
        assert!(!may_handle(2, Some(3)));
        assert!(!may_handle(0, Some(9)));
    }

    #[test]
    fn revocations_drop_only_held_messages_of_partitions_that_left() {
        let mut topics = Topics::new();
        let [p0, p1, p2] = [0, 1, 2].map(|p| topics.key("app_cdc", p));
        let other1 = topics.key("other", 1);
        let r = Revocations::default();

        let before = r.now();
        // A cooperative revoke of p1 while messages of p0, p1, other[1] are held.
        r.leave([p1]);
        assert!(
            r.may_handle(Some(p0), before),
            "p0 stayed ours: must be handled"
        );
        assert!(
            !r.may_handle(Some(p1), before),
            "p1 left after receipt: drop"
        );
        assert!(
            r.may_handle(Some(other1), before),
            "same partition number, other topic"
        );
        assert!(
            r.may_handle(None, before),
            "a topic no callback named never left"
        );

        // p1 re-assigned; a message received now is from the new assignment.
        let after = r.now();
        assert!(r.may_handle(Some(p1), after));

        // An eager revoke of everything, then a re-assign: messages held from before are
        // all dropped, messages received after are handled.
        r.leave([p0, p1, p2, other1]);
        for p in [p0, p1, p2, other1] {
            assert!(
                !r.may_handle(Some(p), after),
                "{p:?} received before the eager revoke"
            );
            assert!(r.may_handle(Some(p), r.now()));
        }
        // And the earlier message of p1 stays dropped.
        assert!(!r.may_handle(Some(p1), before));
    }

    fn canal(i: usize) -> Vec<u8> {
        format!(
            r#"{{"id":0,"database":"app","table":"t{i}","pkNames":["id"],"isDdl":false,"type":"INSERT","es":1700000000000,"ts":1700000000001,"sql":"","sqlType":{{"id":4}},"mysqlType":{{"id":"int"}},"data":[{{"id":"{i}"}}],"old":null,"_tidb":{{"commitTs":445000000000000{i}}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn parallel_decode_agrees_with_the_decoder_message_by_message_in_order() {
        let mut values: Vec<Vec<u8>> = (0..100).map(canal).collect();
        values[17] = b"{not json".to_vec();
        values[50] = Vec::new();
        let messages: Vec<Payload<'_>> = values.iter().map(|v| (None, Some(&v[..]))).collect();
        let mut serial = Decoder::new(ProtocolChoice::Auto, Compression::None);
        let parallel = decode(
            &Decoder::new(ProtocolChoice::Auto, Compression::None),
            &messages,
            3,
        );
        assert_eq!(parallel.len(), messages.len());
        let ok = parallel
            .iter()
            .filter(|p| matches!(p, Some(Ok(d)) if d.events.len() == 1))
            .count();
        assert_eq!(
            ok, 98,
            "every message but the two broken ones decodes to its event"
        );
        for (i, ((key, value), pre)) in messages.iter().zip(parallel).enumerate() {
            let pre = pre.unwrap_or_else(|| panic!("message {i}: canal-json is stateless"));
            let want = serial.decode(*key, *value);
            assert_eq!(format!("{pre:?}"), format!("{want:?}"), "message {i}");
        }
    }

    /// Every TiCDC fixture (key and value as Kafka carries them): `decode_stateless` gives
    /// exactly what `decode` gives, and declines only the simple protocol.
    #[test]
    fn decode_stateless_agrees_with_decode_on_every_fixture() {
        let dir = format!("{}/tests/fixtures/ticdc", env!("CARGO_MANIFEST_DIR"));
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("fixture dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        let mut checked = 0;
        for name in &names {
            let (stem, key_name) = if let Some(stem) = name.strip_suffix(".value.bin") {
                (stem, format!("{stem}.key.bin"))
            } else if let Some(stem) = name.strip_suffix(".json") {
                if stem.ends_with(".key") || stem.ends_with(".value") {
                    continue;
                }
                (stem, format!("{stem}.key.json"))
            } else {
                continue;
            };
            let value = std::fs::read(format!("{dir}/{name}")).expect("fixture value");
            let key = std::fs::read(format!("{dir}/{key_name}")).ok();
            let stateless = Decoder::new(ProtocolChoice::Auto, Compression::None)
                .decode_stateless(key.as_deref(), Some(&value));
            let simple = stem.trim_start_matches("tc-").starts_with("simple-");
            match stateless {
                None => assert!(simple, "{name}: only simple-protocol messages need state"),
                Some(got) => {
                    assert!(
                        !simple,
                        "{name}: a simple-protocol message decoded without state"
                    );
                    let want = Decoder::new(ProtocolChoice::Auto, Compression::None)
                        .decode(key.as_deref(), Some(&value));
                    assert_eq!(format!("{got:?}"), format!("{want:?}"), "{name}");
                }
            }
            checked += 1;
        }
        assert!(checked >= 40, "only {checked} fixtures found in {dir}");
    }

    /// One pool, built once as the consume loop builds it, serves batch after batch: every
    /// batch comes back complete and in order, each parallel batch is counted in the waits,
    /// and small batches stay on the loop. Both kinds of pool: the first one built on a thread
    /// takes that thread in (it withdraws unstarted jobs), a second one on the same thread
    /// cannot and has its own workers only.
    #[test]
    fn one_pool_decodes_batch_after_batch_in_order() {
        // A fresh thread: the test harness may run several tests on one thread.
        std::thread::spawn(|| {
            let first = DecodePool::new(3).expect("pool");
            assert!(
                first.owns_current_thread(),
                "the first pool takes the loop thread in"
            );
            pool_decodes_batch_after_batch_in_order(&first);
            let second = DecodePool::new(2).expect("pool");
            assert!(
                !second.owns_current_thread(),
                "a thread joins one pool only"
            );
            pool_decodes_batch_after_batch_in_order(&second);
            // The first one still works alongside.
            pool_decodes_batch_after_batch_in_order(&first);
        })
        .join()
        .expect("test thread");
    }

    fn pool_decodes_batch_after_batch_in_order(pool: &DecodePool) {
        let values: Vec<Vec<u8>> = (0..MAX_MESSAGES).map(canal).collect();
        let messages: Vec<Payload<'_>> = values.iter().map(|v| (None, Some(&v[..]))).collect();
        let decoder = Decoder::new(ProtocolChoice::Auto, Compression::None);
        let batches_before = pool.waits().batches;
        let mut serial = Decoder::new(ProtocolChoice::Auto, Compression::None);
        let want: Vec<String> = messages
            .iter()
            .map(|(k, v)| format!("{:?}", serial.decode(*k, *v)))
            .collect();
        for round in 0..200 {
            // Batch sizes from MIN_PARALLEL to MAX_MESSAGES, not multiples of the claim.
            let len = MIN_PARALLEL + (round * 37) % (MAX_MESSAGES - MIN_PARALLEL + 1);
            let got = pool.decode(&decoder, &messages[..len]);
            assert_eq!(got.len(), len);
            for (i, pre) in got.into_iter().enumerate() {
                let pre = pre.unwrap_or_else(|| panic!("round {round}, message {i}: not decoded"));
                assert_eq!(format!("{pre:?}"), want[i], "round {round}, message {i}");
            }
        }
        assert!(
            pool.decode(&decoder, &messages[..MIN_PARALLEL - 1])
                .iter()
                .all(Option::is_none)
        );
        let waits = pool.waits();
        assert_eq!(
            waits.batches - batches_before,
            200,
            "the small batch is not a parallel one"
        );
        assert!(waits.max <= waits.total);
        let single = DecodePool::new(1).expect("pool");
        assert!(
            single
                .decode(&decoder, &messages)
                .iter()
                .all(Option::is_none)
        );
        assert_eq!(single.waits().batches, 0);
    }

    #[test]
    fn small_batches_and_one_thread_decode_nothing_off_the_loop() {
        let values: Vec<Vec<u8>> = (0..100).map(canal).collect();
        let messages: Vec<Payload<'_>> = values.iter().map(|v| (None, Some(&v[..]))).collect();
        let d = Decoder::new(ProtocolChoice::Auto, Compression::None);
        assert!(decode(&d, &messages, 1).iter().all(Option::is_none));
        assert!(
            decode(&d, &messages[..MIN_PARALLEL - 1], 4)
                .iter()
                .all(Option::is_none)
        );
        assert!(
            decode(&d, &messages[..MIN_PARALLEL], 2)
                .iter()
                .all(Option::is_some)
        );
    }

    #[test]
    fn stateful_protocols_are_left_to_the_loop_thread() {
        let simple = br#"{"version":1,"type":"INSERT","database":"app","table":"t","tableID":1,"commitTs":445000000000000001,"buildTs":1700000000000,"schemaVersion":1,"data":{"id":"1"}}"#;
        let values: Vec<&[u8]> = vec![simple; 20];
        let messages: Vec<Payload<'_>> = values.iter().map(|v| (None, Some(*v))).collect();
        let fixed = Decoder::new(ProtocolChoice::Fixed(Protocol::Simple), Compression::None);
        assert!(decode(&fixed, &messages, 2).iter().all(Option::is_none));
        let auto = Decoder::new(ProtocolChoice::Auto, Compression::None);
        assert!(decode(&auto, &messages, 2).iter().all(Option::is_none));
        let avro = Decoder::new(ProtocolChoice::Fixed(Protocol::Avro), Compression::None);
        assert!(decode(&avro, &messages, 2).iter().all(Option::is_none));
    }
}
