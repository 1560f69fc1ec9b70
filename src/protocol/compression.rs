//! TiCDC's `large-message-handle-compression`: when set, every value (and every debezium key)
//! is compressed, and nothing inside the message says so (TF `pkg/compression/compress.go`:
//! snappy = klauspost `snappy.Encode`, the block format; lz4 = pierrec `lz4.NewWriter`, the frame
//! format).

/// Compression applied by TiCDC to message values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Compression {
    #[default]
    None,
    Snappy,
    Lz4,
}
