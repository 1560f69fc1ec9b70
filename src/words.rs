//! Machine words read from byte strings, for the hot path's word-at-a-time (SWAR) scans: the
//! event log's escape check and the counters' FxHash of table names.

/// The last 1..=7 bytes of a string (what is left after its whole 8-byte words) as one
/// little-endian word, zero past the end. Read as 4 + 2 + 1 fixed-size loads: copying them into
/// a word buffer was a `memcpy` call per name (`docs/performance.md`, step 5b).
#[inline]
pub(crate) fn tail_word(mut rest: &[u8]) -> u64 {
    debug_assert!(
        rest.len() < 8,
        "tail_word takes what is left after whole words"
    );
    let (mut w, mut shift) = (0u64, 0);
    if let Some((four, tail)) = rest.split_first_chunk::<4>() {
        w = u64::from(u32::from_le_bytes(*four));
        shift = 32;
        rest = tail;
    }
    if let Some((two, tail)) = rest.split_first_chunk::<2>() {
        w |= u64::from(u16::from_le_bytes(*two)) << shift;
        shift += 16;
        rest = tail;
    }
    if let Some(&one) = rest.first() {
        w |= u64::from(one) << shift;
    }
    w
}

#[cfg(test)]
mod tests {
    use super::tail_word;

    /// Every length 0..=7 and byte values with the high bit set: the word of the zero-padded
    /// copy.
    #[test]
    fn tail_word_is_the_zero_padded_little_endian_word() {
        let bytes = [0x01u8, 0x80, 0xff, 0x7f, 0x20, 0x00, 0xc3];
        for len in 0..=7 {
            let mut padded = [0u8; 8];
            padded[..len].copy_from_slice(&bytes[..len]);
            assert_eq!(
                tail_word(&bytes[..len]),
                u64::from_le_bytes(padded),
                "{len}"
            );
        }
    }
}
