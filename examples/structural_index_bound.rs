//! How cheap could a simdjson-style canal-json decoder be? A lower bound, measured beside
//! cdcmon's decoder on the same bytes (issue 11, docs/performance.md "Issue 11, session 16").
//!
//! A structural-index decoder works in two stages: stage 1 finds, 64 bytes at a time, every
//! JSON operator (`{}[]:,`) outside strings and every string's opening quote (AVX2 compares,
//! odd-backslash escapes, the in-string mask by carry-less multiplication) and writes their
//! offsets to an index; stage 2 walks the index to match keys, validate and build the event.
//! This program runs stage 1 (AVX2: the AVX-512 kernel simdjson picks on newer CPUs flattens
//! more cheaply, and valgrind cannot count it) and a bare stage 2 that reads each indexed byte
//! and compares it once, the least any second stage does: no validation, no key matching, no
//! event. A real decoder of this design costs more than this; the difference between this and
//! `Decoder::decode_into` is what such a decoder would have left for all of that work.
//!
//! ```text
//! cargo run --release --example structural_index_bound -- [MESSAGES] [ROUNDS]
//! valgrind --tool=callgrind --toggle-collect='structural_index_bound::index_and_walk' \
//!     target/release/examples/structural_index_bound 2000 1   # instructions: the bound
//! valgrind --tool=callgrind --toggle-collect='structural_index_bound::cdcmon_decode' \
//!     target/release/examples/structural_index_bound 2000 1   # instructions: cdcmon today
//! ```
//! Corpus: MESSAGES (default 2,000) canal-json row messages of `cdcmon demo` (its generator and
//! its canal-json encoder, in TiCDC's member order, over the demo's `app` schema), each decoded
//! once per round, ROUNDS rounds (default 100), into a fresh `Decoded` as `Pipeline::process`
//! does (so dropping the previous message's event is not counted: the loop pays that either
//! way). Prints the corpus, its structurals per message and the wall time per message of
//! both. Instruction counts are the comparison: each function runs once per message in a
//! checking pass and once per message and round, so divide callgrind's total by
//! MESSAGES × (ROUNDS + 1). The wall times are only a sanity check on a shared machine.
//! Every message's index is checked against a byte-at-a-time scan (they agree on valid JSON,
//! which is all TiCDC writes: like simdjson's, the operator lookup also takes the control bytes
//! 0x0C and 0x1A for `,` and `:`, which a second stage refuses), and cdcmon must decode every
//! message; a mismatch or a refusal exits 1. x86-64 with AVX2, PCLMULQDQ, BMI1 and POPCNT
//! only.

use std::hint::black_box;
use std::time::Instant;

use cdcmon::demo::encode::canal_json;
use cdcmon::demo::generator::{Change, Generator, Mix};
use cdcmon::event::Protocol;
use cdcmon::protocol::{Compression, Decoded, Decoder, ProtocolChoice};

/// The demo's clock start (any fixed time: the corpus is deterministic for it and the seed).
const START_MS: u64 = 1_764_000_000_000;

#[allow(dead_code)] // tests/structural_index_bound.rs includes this file as a module
fn main() {
    if let Err(err) = run() {
        eprintln!("structural_index_bound: {err}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut count = |what: &str, default: usize| -> Result<usize, String> {
        match args.next() {
            Some(arg) => arg
                .parse()
                .map_err(|e| format!("{what} {arg:?} is not a count: {e}")),
            None => Ok(default),
        }
    };
    let messages = count("MESSAGES", 2_000)?;
    let rounds = count("ROUNDS", 100)?;
    if !index::supported() {
        return Err("needs an x86-64 CPU with AVX2, PCLMULQDQ, BMI1 and POPCNT".into());
    }
    let corpus = demo_rows(messages);
    let bytes: usize = corpus.iter().map(Vec::len).sum();

    let mut decoder = Decoder::new(
        ProtocolChoice::Fixed(Protocol::CanalJson),
        Compression::None,
    );
    let mut offsets = Vec::new();
    let mut structurals = 0usize;
    for (i, msg) in corpus.iter().enumerate() {
        index_and_walk(msg, &mut offsets);
        let expected = structurals_bytewise(msg);
        if offsets != expected {
            return Err(format!(
                "message {i}: the index has {} offsets, a byte-at-a-time scan {}",
                offsets.len(),
                expected.len()
            ));
        }
        structurals += offsets.len();
        let mut decoded = Decoded::default();
        cdcmon_decode(&mut decoder, msg, &mut decoded)
            .map_err(|e| format!("message {i}: cdcmon does not decode it: {e}"))?;
    }

    let bound_ns = time_per_message(&corpus, rounds, |msg| {
        black_box(index_and_walk(black_box(msg), &mut offsets));
    });
    let cdcmon_ns = time_per_message(&corpus, rounds, |msg| {
        let mut decoded = Decoded::default();
        let _ = black_box(cdcmon_decode(&mut decoder, black_box(msg), &mut decoded));
    });
    println!(
        "{} demo canal-json row messages, {:.0} bytes and {:.1} structurals per message; per message: index + bare walk {bound_ns:.0} ns, cdcmon decode_into {cdcmon_ns:.0} ns",
        corpus.len(),
        bytes as f64 / corpus.len().max(1) as f64,
        structurals as f64 / corpus.len().max(1) as f64,
    );
    Ok(())
}

/// `messages` canal-json row messages of the demo's stream (DDL and watermarks left out: the
/// benchmark's and production's bulk is rows).
pub fn demo_rows(messages: usize) -> Vec<Vec<u8>> {
    let mut generator = Generator::new(1, Mix::default(), START_MS);
    let mut corpus = Vec::with_capacity(messages);
    let mut now_ms = START_MS;
    while corpus.len() < messages {
        now_ms += 1;
        for change in generator.next_transaction(now_ms) {
            if let Change::Row(row) = change {
                corpus.push(canal_json::row(&row, now_ms));
            }
        }
    }
    corpus.truncate(messages);
    corpus
}

/// Stage 1 and a bare stage 2: the bound. The walk reads each indexed byte and compares it
/// once (it counts the strings), the least any second stage does; the count is returned so
/// nothing is optimised away.
#[inline(never)]
fn index_and_walk(msg: &[u8], offsets: &mut Vec<u32>) -> u64 {
    index::structurals(msg, offsets);
    let mut strings = 0u64;
    for &at in offsets.iter() {
        // SAFETY: every offset is that of a byte of `msg` (`index::structurals`: each set bit
        // is a byte of the message, the padding is never structural; the checking pass and
        // tests/structural_index_bound.rs compare the index with a byte-at-a-time scan).
        let byte = unsafe { *msg.get_unchecked(at as usize) };
        strings += u64::from(byte == b'"');
    }
    strings
}

/// cdcmon's decoder as the consume loop calls it (into an empty `Decoded`).
#[inline(never)]
pub fn cdcmon_decode<'a>(
    decoder: &mut Decoder,
    msg: &'a [u8],
    out: &mut Decoded<'a>,
) -> Result<(), cdcmon::protocol::DecodeError> {
    decoder.decode_into(None, Some(msg), out)
}

fn time_per_message<'c>(corpus: &'c [Vec<u8>], rounds: usize, mut f: impl FnMut(&'c [u8])) -> f64 {
    let started = Instant::now();
    for _ in 0..rounds {
        for msg in corpus {
            f(msg);
        }
    }
    started.elapsed().as_nanos() as f64 / (rounds * corpus.len()).max(1) as f64
}

/// The reference: the offsets of the operators outside strings and of the strings' opening
/// quotes, one byte at a time.
pub fn structurals_bytewise(msg: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    let (mut in_string, mut escaped) = (false, false);
    for (at, &b) in msg.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
            out.push(at as u32);
        } else if b"{}[]:,".contains(&b) {
            out.push(at as u32);
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
pub mod index {
    use std::arch::x86_64::*;

    pub fn supported() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("pclmulqdq")
            && is_x86_feature_detected!("bmi1")
            && is_x86_feature_detected!("popcnt")
    }

    /// Stage 1: the offsets of `msg`'s structural characters into `out` (cleared first).
    pub fn structurals(msg: &[u8], out: &mut Vec<u32>) {
        assert!(supported(), "the CPU features are checked at start");
        // SAFETY: the CPU has AVX2, PCLMULQDQ, BMI1 and POPCNT (asserted above).
        unsafe { structurals_avx2(msg, out) }
    }

    #[target_feature(enable = "avx2,pclmulqdq,bmi1,popcnt")]
    fn structurals_avx2(msg: &[u8], out: &mut Vec<u32>) {
        out.clear();
        // Room for every byte's offset plus the flattening's three spare writes per block.
        out.reserve(msg.len() + 64);
        let base = out.as_mut_ptr();
        let mut len = 0usize;
        // simdjson's operator lookup: by the low nibble, compared with the byte | 0x20 (which
        // turns `[` and `]` into `{` and `}`); bytes >= 0x80 look up 0 and never match.
        let (colon, open, comma, close) = (b':' as i8, b'{' as i8, b',' as i8, b'}' as i8);
        #[rustfmt::skip]
        let op_table = _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, colon, open, comma, close, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, colon, open, comma, close, 0, 0,
        );
        let quote = _mm256_set1_epi8(b'"' as i8);
        let backslash = _mm256_set1_epi8(b'\\' as i8);
        let x20 = _mm256_set1_epi8(0x20);
        let (mut prev_in_string, mut prev_odd) = (0u64, 0u64);
        let mut tail = [b' '; 64];
        let mut at = 0usize;
        while at < msg.len() {
            let block: &[u8] = if at + 64 <= msg.len() {
                &msg[at..at + 64]
            } else {
                // The last, partial block, padded with spaces (never structural).
                tail[..msg.len() - at].copy_from_slice(&msg[at..]);
                &tail
            };
            // SAFETY: `block` is 64 readable bytes; unaligned loads.
            let (lo, hi) = unsafe {
                (
                    _mm256_loadu_si256(block.as_ptr() as *const __m256i),
                    _mm256_loadu_si256(block.as_ptr().add(32) as *const __m256i),
                )
            };
            let quotes = mask64(_mm256_cmpeq_epi8(lo, quote), _mm256_cmpeq_epi8(hi, quote));
            let backslashes = mask64(
                _mm256_cmpeq_epi8(lo, backslash),
                _mm256_cmpeq_epi8(hi, backslash),
            );
            let real_quotes = quotes & !odd_escaped(backslashes, &mut prev_odd);
            let in_string = prefix_xor(real_quotes) ^ prev_in_string;
            prev_in_string = ((in_string as i64) >> 63) as u64;
            let ops = mask64(
                _mm256_cmpeq_epi8(_mm256_or_si256(lo, x20), _mm256_shuffle_epi8(op_table, lo)),
                _mm256_cmpeq_epi8(_mm256_or_si256(hi, x20), _mm256_shuffle_epi8(op_table, hi)),
            );
            // Operators outside strings; quotes where a string starts (in_string includes the
            // opening quote, not the closing one).
            let mut bits = (ops & !in_string) | (real_quotes & in_string);
            let count = bits.count_ones() as usize;
            // Flattening as simdjson does: four unconditional writes per step (the spare ones
            // land in the reserved room and are cut off by the length).
            let mut k = 0;
            while k < count {
                for j in 0..4 {
                    // SAFETY: every set bit is a distinct byte of `msg` (the padding spaces
                    // are never structural), so `len + count` <= msg.len() and this write,
                    // at most 3 past `len + count`, is within the msg.len() + 64 reserved.
                    unsafe { *base.add(len + k + j) = at as u32 + bits.trailing_zeros() };
                    bits &= bits.wrapping_sub(1);
                }
                k += 4;
            }
            len += count;
            at += 64;
        }
        // SAFETY: the first `len` elements were written above, within the reserved capacity.
        unsafe { out.set_len(len) };
    }

    #[target_feature(enable = "avx2")]
    fn mask64(lo: __m256i, hi: __m256i) -> u64 {
        (_mm256_movemask_epi8(lo) as u32 as u64) | ((_mm256_movemask_epi8(hi) as u32 as u64) << 32)
    }

    /// Bit i set when an odd number of set bits of `x` are at or below i: the in-string mask.
    #[target_feature(enable = "pclmulqdq")]
    fn prefix_xor(x: u64) -> u64 {
        _mm_cvtsi128_si64(_mm_clmulepi64_si128(
            _mm_set_epi64x(0, x as i64),
            _mm_set1_epi8(-1),
            0,
        )) as u64
    }

    /// The bytes escaped by an odd run of backslashes (simdjson's
    /// `find_odd_backslash_sequences`); `prev_odd` carries a run across blocks.
    #[inline(always)]
    fn odd_escaped(backslashes: u64, prev_odd: &mut u64) -> u64 {
        if backslashes == 0 && *prev_odd == 0 {
            return 0;
        }
        const EVEN: u64 = 0x5555_5555_5555_5555;
        const ODD: u64 = !EVEN;
        let starts = backslashes & !(backslashes << 1);
        let even_start_mask = EVEN ^ *prev_odd;
        let even_starts = starts & even_start_mask;
        let odd_starts = starts & !even_start_mask;
        let even_carries = backslashes.wrapping_add(even_starts);
        let (mut odd_carries, ends_odd) = backslashes.overflowing_add(odd_starts);
        odd_carries |= *prev_odd;
        *prev_odd = u64::from(ends_odd);
        let even_carry_ends = even_carries & !backslashes;
        let odd_carry_ends = odd_carries & !backslashes;
        (even_carry_ends & ODD) | (odd_carry_ends & EVEN)
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub mod index {
    pub fn supported() -> bool {
        false
    }

    pub fn structurals(_msg: &[u8], _out: &mut Vec<u32>) {
        unreachable!("run() stops first where supported() is false")
    }
}
