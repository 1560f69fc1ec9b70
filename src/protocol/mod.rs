//! TiCDC Kafka protocols → [`ChangeEvent`]s. Pure: no I/O, no clock.
//!
//! One file per protocol (`canal_json`, `open_protocol`, `debezium`, `simple`), plus `detect`
//! (`--protocol auto`) and `compression` (TiCDC's large-message-handle compression).
//! Specification and sources: `docs/protocols.md`.

use std::fmt;

use crate::event::{ChangeEvent, Protocol};

pub mod canal_json;
pub mod compression;
pub mod debezium;
pub mod detect;
pub mod open_protocol;
pub mod simple;

pub use compression::Compression;

/// Why a message could not be decoded. `as_str` is the `reason` label of
/// `cdc_decode_errors_total`: keep the set small and stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecodeErrorReason {
    /// The Kafka message has no value (tombstone) or an empty one.
    EmptyValue,
    /// Not valid JSON (or not the JSON shape the protocol requires).
    InvalidJson,
    /// `--protocol auto` could not tell which protocol this is.
    UnknownProtocol,
    /// open-protocol binary framing is broken (lengths, truncation).
    Framing,
    /// open-protocol batch version other than 1.
    UnsupportedVersion,
    /// open-protocol message without its Kafka key.
    MissingKey,
    /// A field the protocol requires is absent or has the wrong type.
    MissingField,
    /// A `type`/`op`/`t` value the protocol does not define.
    UnknownType,
    /// Value could not be decompressed with the configured compression.
    Decompress,
}

impl DecodeErrorReason {
    pub const ALL: [DecodeErrorReason; 9] = [
        DecodeErrorReason::EmptyValue,
        DecodeErrorReason::InvalidJson,
        DecodeErrorReason::UnknownProtocol,
        DecodeErrorReason::Framing,
        DecodeErrorReason::UnsupportedVersion,
        DecodeErrorReason::MissingKey,
        DecodeErrorReason::MissingField,
        DecodeErrorReason::UnknownType,
        DecodeErrorReason::Decompress,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            DecodeErrorReason::EmptyValue => "empty_value",
            DecodeErrorReason::InvalidJson => "invalid_json",
            DecodeErrorReason::UnknownProtocol => "unknown_protocol",
            DecodeErrorReason::Framing => "framing",
            DecodeErrorReason::UnsupportedVersion => "unsupported_version",
            DecodeErrorReason::MissingKey => "missing_key",
            DecodeErrorReason::MissingField => "missing_field",
            DecodeErrorReason::UnknownType => "unknown_type",
            DecodeErrorReason::Decompress => "decompress",
        }
    }
}

/// A message that could not be decoded: which protocol was tried, a stable reason, and a
/// human-readable detail (never the whole message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The protocol that was being decoded, or `None` when auto-detection failed.
    pub protocol: Option<Protocol>,
    pub reason: DecodeErrorReason,
    pub detail: String,
}

impl DecodeError {
    pub fn new(
        protocol: Option<Protocol>,
        reason: DecodeErrorReason,
        detail: impl Into<String>,
    ) -> Self {
        DecodeError {
            protocol,
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocol = self.protocol.map_or("auto", Protocol::as_str);
        write!(f, "{protocol}: {} ({})", self.detail, self.reason.as_str())
    }
}

impl std::error::Error for DecodeError {}

/// Which protocol to decode: one fixed protocol or per-message detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtocolChoice {
    #[default]
    Auto,
    Fixed(Protocol),
}

impl std::str::FromStr for ProtocolChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "auto" {
            return Ok(ProtocolChoice::Auto);
        }
        Protocol::from_name(s).map(ProtocolChoice::Fixed).ok_or_else(|| {
            format!("unknown protocol {s:?}: expected auto, canal-json, open-protocol, debezium or simple")
        })
    }
}
