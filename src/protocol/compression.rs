//! TiCDC's `large-message-handle-compression`: when set, every value (and every debezium key)
//! is compressed, and nothing inside the message says so (TF `pkg/compression/compress.go`:
//! snappy = klauspost `snappy.Encode`, the block format; lz4 = pierrec `lz4.NewWriter`, the frame
//! format).
//!
//! Where TiCDC applies it (checked in the encoders): canal-json, simple and debezium compress
//! the whole value; debezium (TC `pkg/sink/codec/debezium/encoder.go`) also the key;
//! open-protocol compresses each event's value JSON separately *inside* the batch framing and
//! never the key (TF `pkg/sink/codec/open/open_protocol_encoder.go`).

use std::borrow::Cow;
use std::io::Read;

use super::{DecodeError, DecodeErrorReason};
use crate::event::Protocol;

/// Largest decompressed message we accept: a decompression bomb must not exhaust memory.
/// Kafka's own limit on a message is far below this (TiCDC's default `max-message-bytes` is
/// 10 MiB), and compression ratios of JSON stay well under 6:1.
pub const MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;

/// Compression applied by TiCDC to message values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Compression {
    #[default]
    None,
    Snappy,
    Lz4,
}

impl Compression {
    pub const fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
        }
    }

    /// Decompress `data` (borrowed as is for `None`), at most [`MAX_DECOMPRESSED_BYTES`].
    /// `protocol` only labels the error.
    pub fn decompress<'a>(
        self,
        data: &'a [u8],
        protocol: Option<Protocol>,
    ) -> Result<Cow<'a, [u8]>, DecodeError> {
        self.decompress_limited(data, protocol, MAX_DECOMPRESSED_BYTES)
    }

    /// [`Compression::decompress`] with an explicit size limit.
    pub fn decompress_limited<'a>(
        self,
        data: &'a [u8],
        protocol: Option<Protocol>,
        limit: usize,
    ) -> Result<Cow<'a, [u8]>, DecodeError> {
        let fail = |detail: String| {
            DecodeError::new(
                protocol,
                DecodeErrorReason::Decompress,
                super::bounded(detail),
            )
        };
        match self {
            Compression::None => Ok(Cow::Borrowed(data)),
            Compression::Snappy => {
                // The block format starts with the decompressed length: check it before
                // allocating anything.
                let len =
                    snap::raw::decompress_len(data).map_err(|e| fail(format!("snappy: {e}")))?;
                if len > limit {
                    return Err(fail(format!(
                        "snappy: decompressed size {len} exceeds the limit of {limit} bytes"
                    )));
                }
                snap::raw::Decoder::new()
                    .decompress_vec(data)
                    .map(Cow::Owned)
                    .map_err(|e| fail(format!("snappy: {e}")))
            }
            Compression::Lz4 => {
                // Frames may omit the content size, so read through a cap instead.
                let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
                let mut out = Vec::new();
                lz4_flex::frame::FrameDecoder::new(data)
                    .take(cap)
                    .read_to_end(&mut out)
                    .map_err(|e| fail(format!("lz4: {e}")))?;
                if out.len() > limit {
                    return Err(fail(format!(
                        "lz4: decompressed size exceeds the limit of {limit} bytes"
                    )));
                }
                Ok(Cow::Owned(out))
            }
        }
    }
}

/// Compress like TiCDC does (used by tests and tooling to build compressed messages).
pub fn compress(compression: Compression, data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    match compression {
        Compression::None => Ok(data.to_vec()),
        Compression::Snappy => snap::raw::Encoder::new()
            .compress_vec(data)
            .map_err(std::io::Error::other),
        Compression::Lz4 => {
            let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
            enc.write_all(data)?;
            enc.finish().map_err(std::io::Error::other)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &[u8] = br#"{"id":0,"database":"test","table":"employee","type":"INSERT"}"#;

    #[test]
    fn none_borrows() {
        let out = Compression::None.decompress(TEXT, None).unwrap();
        assert!(matches!(out, Cow::Borrowed(_)));
        assert_eq!(&*out, TEXT);
    }

    #[test]
    fn snappy_and_lz4_round_trip() {
        for c in [Compression::Snappy, Compression::Lz4] {
            let packed = compress(c, TEXT).unwrap();
            assert_ne!(packed, TEXT);
            let out = c.decompress(&packed, Some(Protocol::CanalJson)).unwrap();
            assert_eq!(&*out, TEXT, "{c:?}");
        }
    }

    #[test]
    fn lz4_is_the_frame_format() {
        // pierrec/lz4 `NewWriter` writes frames: magic 0x184D2204, little endian.
        let packed = compress(Compression::Lz4, TEXT).unwrap();
        assert_eq!(packed.get(..4), Some(&[0x04, 0x22, 0x4d, 0x18][..]));
    }

    #[test]
    fn garbage_is_a_decompress_error() {
        for c in [Compression::Snappy, Compression::Lz4] {
            let e = c
                .decompress(b"{not compressed}", Some(Protocol::Simple))
                .unwrap_err();
            assert_eq!(e.reason, DecodeErrorReason::Decompress);
            assert_eq!(e.protocol, Some(Protocol::Simple));
        }
    }

    #[test]
    fn bombs_are_refused() {
        let big = vec![b'a'; 100_000];
        for c in [Compression::Snappy, Compression::Lz4] {
            let packed = compress(c, &big).unwrap();
            assert!(packed.len() < 10_000);
            let e = c.decompress_limited(&packed, None, 50_000).unwrap_err();
            assert_eq!(e.reason, DecodeErrorReason::Decompress, "{c:?}");
            assert!(e.detail.contains("limit"), "{}", e.detail);
            assert_eq!(
                c.decompress_limited(&packed, None, 100_000).unwrap().len(),
                100_000
            );
        }
        // A snappy header that claims 2^40 bytes is rejected before any allocation.
        let lying = [0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0x00];
        let e = Compression::Snappy.decompress(&lying, None).unwrap_err();
        assert_eq!(e.reason, DecodeErrorReason::Decompress);
    }
}
