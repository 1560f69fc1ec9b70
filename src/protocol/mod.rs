//! TiCDC Kafka protocols → [`ChangeEvent`]s. Pure: no I/O, no clock.
//!
//! One file per protocol (`canal_json`, `open_protocol`, `debezium`, `simple`), plus `detect`
//! (`--protocol auto`) and `compression` (TiCDC's large-message-handle compression).
//! Specification and sources: `docs/protocols.md`.

use std::fmt;

use crate::event::{ChangeEvent, EventKind, Protocol};

pub mod avro;

/// A struct of optional JSON members that deserializes as Go's `encoding/json` does, which is
/// how TiCDC's own decoders read these messages: a repeated member overwrites the earlier one
/// (last wins), unknown members are skipped. serde's derive rejects a repeated member
/// ("duplicate field"), and pingcap/ticdc's open-protocol encoder repeats `ohk` on claim-check
/// keys (`pkg/sink/codec/open/codec.go` `encodeRowChangedEvent`), so such structs use this.
///
/// Strictness is kept where it matters: the input must be a JSON object (no array form),
/// every value, including an overwritten one, must have the declared type, and syntax errors
/// stay errors. `null` leaves an earlier value in place, as Go does for a plain field; a member
/// that is only ever `null` counts as absent (Go would read its zero value: stricter, not
/// laxer). Keys and values are borrowed from the input like the derived structs
/// (`CowStr` copies only a key with escapes). Exact-case member names: Go also matches names
/// case-insensitively, but no TiCDC encoder writes a member in another case.
macro_rules! last_wins_struct {
    (
        $(#[$meta:meta])*
        struct $name:ident<$lt:lifetime> {
            $( $(#[doc = $doc:literal])* $field:ident: $json:literal => $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        struct $name<$lt> {
            $( $(#[doc = $doc])* $field: Option<$ty>, )*
        }

        impl<'de: $lt, $lt> serde::Deserialize<'de> for $name<$lt> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V<$lt>(std::marker::PhantomData<&$lt ()>);
                impl<'de: $lt, $lt> serde::de::Visitor<'de> for V<$lt> {
                    type Value = $name<$lt>;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str(concat!("a JSON object (", stringify!($name), ")"))
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<Self::Value, A::Error> {
                        $( let mut $field: Option<$ty> = None; )*
                        while let Some(key) =
                            map.next_key::<$crate::protocol::json::CowStr<'de>>()?
                        {
                            match key.as_str() {
                                // Last wins: a later member replaces an earlier one. A
                                // `null` replaces nothing: Go leaves a plain (non-pointer)
                                // field as it was ("unmarshaling a JSON null into any other
                                // Go value has no effect", encoding/json `Unmarshal`), and
                                // every key member is one (TC `open/message.go` `messageKey`).
                                $( $json => {
                                    if let Some(v) = map.next_value::<Option<$ty>>()? {
                                        $field = Some(v);
                                    }
                                } )*
                                _ => {
                                    map.next_value::<serde::de::IgnoredAny>()?;
                                }
                            }
                        }
                        Ok($name { $($field,)* })
                    }
                }
                d.deserialize_map(V(std::marker::PhantomData))
            }
        }
    };
}

pub mod canal_json;
pub mod compression;
pub mod debezium;
pub mod detect;
pub mod open_protocol;
pub mod simple;

#[cfg(test)]
mod fixture_tests;

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
    /// Avro datum that does not decode against its registry schema.
    InvalidAvro,
    /// Avro schema id not (yet) fetched from the schema registry: the caller fetches it and
    /// decodes the same message again; never a reason to skip a message.
    SchemaUnavailable,
}

impl DecodeErrorReason {
    pub const ALL: [DecodeErrorReason; 11] = [
        DecodeErrorReason::EmptyValue,
        DecodeErrorReason::InvalidJson,
        DecodeErrorReason::UnknownProtocol,
        DecodeErrorReason::Framing,
        DecodeErrorReason::UnsupportedVersion,
        DecodeErrorReason::MissingKey,
        DecodeErrorReason::MissingField,
        DecodeErrorReason::UnknownType,
        DecodeErrorReason::Decompress,
        DecodeErrorReason::InvalidAvro,
        DecodeErrorReason::SchemaUnavailable,
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
            DecodeErrorReason::InvalidAvro => "invalid_avro",
            DecodeErrorReason::SchemaUnavailable => "schema_unavailable",
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
            format!("unknown protocol {s:?}: expected auto, canal-json, open-protocol, debezium, simple or avro")
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The decoder: one per consumer (it keeps the simple protocol's table-schema cache).
// ---------------------------------------------------------------------------------------------

/// Decodes Kafka messages of one configured protocol (or detects it per message).
///
/// Holds per-protocol state: the simple protocol announces primary keys only in BOOTSTRAP and
/// DDL messages, so the decoder remembers them per table to fill `keys` of later DML.
#[derive(Debug, Default)]
pub struct Decoder {
    choice: ProtocolChoice,
    compression: Compression,
    simple: simple::SchemaCache,
    /// Set when a schema registry is configured (`--schema-registry-url`).
    avro: Option<avro::AvroDecoder>,
}

impl Decoder {
    pub fn new(choice: ProtocolChoice, compression: Compression) -> Self {
        Decoder {
            choice,
            compression,
            simple: simple::SchemaCache::default(),
            avro: None,
        }
    }

    /// Enable Avro (fixed `--protocol avro`, or detected under `auto`) against `avro`'s store.
    pub fn with_avro(mut self, avro: avro::AvroDecoder) -> Self {
        self.avro = Some(avro);
        self
    }

    /// The Avro decoder, when a schema registry is configured.
    pub fn avro(&self) -> Option<&avro::AvroDecoder> {
        self.avro.as_ref()
    }

    pub fn choice(&self) -> ProtocolChoice {
        self.choice
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Decode one Kafka message into its events (open-protocol batches give several).
    ///
    /// `Err` when the message as a whole cannot be decoded (no value, broken open-protocol
    /// framing, unknown protocol, a single-event protocol's malformed JSON, ...). `Ok` carries
    /// the events that decoded and, for an open-protocol batch whose framing is valid, one
    /// [`DecodeError`] per event that did not (issue 10 point 5: one bad event must not drop
    /// its batch). Callers count each of `errors` and still handle `events`.
    ///
    /// Never panics. Events borrow from `key`/`value` unless the message had to be
    /// decompressed, in which case they own their data.
    pub fn decode<'a>(
        &mut self,
        key: Option<&'a [u8]>,
        value: Option<&'a [u8]>,
    ) -> Result<Decoded<'a>, DecodeError> {
        let mut out = Decoded::default();
        self.decode_into(key, value, &mut out)?;
        Ok(out)
    }

    /// [`Decoder::decode`] into `out` (cleared first; on `Err` it holds no events or errors):
    /// the consume loop's form. A canal-json event is built where it stays, in `out.events`,
    /// instead of being returned by value through every layer (~450 instructions of `memcpy`
    /// per message, `docs/performance.md` "building the canal-json event in place").
    pub fn decode_into<'a>(
        &mut self,
        key: Option<&'a [u8]>,
        value: Option<&'a [u8]>,
        out: &mut Decoded<'a>,
    ) -> Result<(), DecodeError> {
        if let Some(decoded) = self.decode_stateless_into(key, value, out) {
            return decoded;
        }
        // Avro first: its framing needs no JSON parse, and a framed key/value (0x00 + non-zero
        // schema id) can never be an open-protocol header (whose id bytes are all zero).
        if self.takes_avro(key, value) {
            return match &mut self.avro {
                Some(a) => a.decode(key, value).map(|ev| out.events.push(ev)),
                None => Err(DecodeError::new(
                    Some(Protocol::Avro),
                    DecodeErrorReason::SchemaUnavailable,
                    "--protocol avro needs --schema-registry-url",
                )),
            };
        }
        // Only the simple protocol is left: it reads and updates the table-schema cache.
        decode_unframed(
            self.choice,
            self.compression,
            key,
            value,
            Some(&mut self.simple),
            out,
        )
        .unwrap_or_else(|NeedsState| {
            Err(DecodeError::new(
                Some(Protocol::Simple),
                DecodeErrorReason::Framing,
                "simple-protocol message decoded without its schema cache",
            ))
        })
    }

    /// [`Decoder::decode`] for the messages that need none of the decoder's state
    /// (canal-json, open-protocol, debezium, and `auto` detecting one of them), from `&self`,
    /// so worker threads can share one decoder. `None`: the message needs the state (Avro's
    /// schema store, the simple protocol's schema cache) and must go through `decode` on the
    /// consume loop, in message order. Under `auto` with TiCDC compression a simple message is
    /// only recognized after decompressing, which `decode` then does once more.
    pub fn decode_stateless<'a>(
        &self,
        key: Option<&'a [u8]>,
        value: Option<&'a [u8]>,
    ) -> Option<Result<Decoded<'a>, DecodeError>> {
        let mut out = Decoded::default();
        Some(
            self.decode_stateless_into(key, value, &mut out)?
                .map(|()| out),
        )
    }

    /// [`Decoder::decode_stateless`] into `out` (cleared first, as [`Decoder::decode_into`]).
    fn decode_stateless_into<'a>(
        &self,
        key: Option<&'a [u8]>,
        value: Option<&'a [u8]>,
        out: &mut Decoded<'a>,
    ) -> Option<Result<(), DecodeError>> {
        out.events.clear();
        out.errors.clear();
        if self.takes_avro(key, value) {
            return None;
        }
        decode_unframed(self.choice, self.compression, key, value, None, out).ok()
    }

    /// Whether `decode` hands this message to the Avro decoder.
    fn takes_avro(&self, key: Option<&[u8]>, value: Option<&[u8]>) -> bool {
        self.choice == ProtocolChoice::Fixed(Protocol::Avro)
            || (self.choice == ProtocolChoice::Auto
                && self.avro.is_some()
                && avro::looks_like_avro(key, value))
    }
}

/// Every protocol but Avro, into `out` (empty on entry; on `Err` it stays so). `simple`: the
/// schema cache; without it a simple-protocol message is `Err(NeedsState)` (nothing else reads
/// it).
fn decode_unframed<'a>(
    choice: ProtocolChoice,
    compression: Compression,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    simple: Option<&mut simple::SchemaCache>,
    out: &mut Decoded<'a>,
) -> Result<Result<(), DecodeError>, NeedsState> {
    let fixed = match choice {
        ProtocolChoice::Fixed(p) => Some(p),
        // open-protocol is the only binary protocol; its key header is unmistakable.
        ProtocolChoice::Auto if detect::has_open_protocol_header(key) => {
            Some(Protocol::OpenProtocol)
        }
        ProtocolChoice::Auto => None,
    };
    if fixed == Some(Protocol::OpenProtocol) {
        return Ok(open_protocol::decode(key, value, compression).map(|d| *out = d));
    }
    if fixed == Some(Protocol::Simple) && simple.is_none() {
        return Err(NeedsState);
    }
    let value = match value {
        Some(v) if !v.is_empty() => v,
        _ => {
            return Ok(Err(DecodeError::new(
                fixed,
                DecodeErrorReason::EmptyValue,
                "message has no value",
            )));
        }
    };
    if compression == Compression::None {
        let protocol = match fixed {
            Some(p) => p,
            None => match detect::detect_json(value) {
                Ok(p) => p,
                Err(err) => return Ok(Err(err)),
            },
        };
        if protocol == Protocol::CanalJson {
            // Built in place (the hot path): see `canal_json::decode_into`. Not a `decode_json`
            // arm: that one returns events by value for the compressed path, which detaches them
            // from its temporary buffer; an in-place `decode_json` for both measured +43
            // instructions per canal-json message and +86 per open-protocol event (code layout).
            return Ok(canal_json::decode_into(value, &mut out.events));
        }
        return Ok(decode_json(protocol, key, value, simple)?.map(|ev| out.events.push(ev)));
    }
    // TiCDC compresses the whole value (and, for debezium, the key): decode from a
    // temporary buffer and detach the events from it.
    let plain = match compression.decompress(value, fixed) {
        Ok(plain) => plain,
        Err(err) => return Ok(Err(err)),
    };
    let protocol = match fixed {
        Some(p) => p,
        None => match detect::detect_json(&plain) {
            Ok(p) => p,
            Err(err) => return Ok(Err(err)),
        },
    };
    let plain_key = match (protocol, key) {
        // A key that does not decompress only loses the key columns, not the event.
        (Protocol::Debezium, Some(k)) if !k.is_empty() => {
            compression.decompress(k, Some(protocol)).ok()
        }
        _ => None,
    };
    Ok(decode_json(protocol, plain_key.as_deref(), &plain, simple)?
        .map(|event| out.events.push(event.into_owned())))
}

/// A simple-protocol message met without the schema cache (a worker thread's decode).
struct NeedsState;

fn decode_json<'b>(
    protocol: Protocol,
    key: Option<&'b [u8]>,
    value: &'b [u8],
    simple: Option<&mut simple::SchemaCache>,
) -> Result<Result<ChangeEvent<'b>, DecodeError>, NeedsState> {
    Ok(match protocol {
        Protocol::CanalJson => canal_json::decode(value),
        Protocol::Debezium => debezium::decode(key, value),
        Protocol::Simple => return simple.map(|cache| cache.decode(value)).ok_or(NeedsState),
        // Only reachable through a compressed message that `detect_json` cannot yield.
        Protocol::OpenProtocol | Protocol::Avro => Err(DecodeError::new(
            Some(protocol),
            DecodeErrorReason::Framing,
            "open-protocol and avro messages are binary-framed, not JSON",
        )),
    })
}

/// What one Kafka message decoded to: the events that decoded, in message order, and one error
/// per event that did not. Only an open-protocol batch (up to `max-batch-size` events, each a
/// key/value JSON pair inside valid framing) can have both; every other protocol carries one
/// event per message, so its failure is the message's `Err`.
#[derive(Debug, Default)]
pub struct Decoded<'a> {
    /// One event inline (every protocol but open-protocol has exactly one): no allocation per
    /// message. Derefs to `[ChangeEvent]`; `push`, `iter`, `len`, `into_iter` as a `Vec`.
    pub events: Events<'a>,
    /// Per-event failures; `detail` names the event's index in the batch.
    pub errors: Vec<DecodeError>,
}

/// The events of one message (see [`Decoded::events`]).
pub type Events<'a> = smallvec::SmallVec<[ChangeEvent<'a>; 1]>;

impl<'a> Decoded<'a> {
    /// All or nothing: the events, or the first per-event error. For callers (tests, tools)
    /// that treat any bad event as a bad message; the consume path uses both parts instead.
    pub fn into_strict(self) -> Result<Vec<ChangeEvent<'a>>, DecodeError> {
        match self.errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(self.events.into_vec()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the protocol decoders.
// ---------------------------------------------------------------------------------------------

/// Append `ChangeEvent::new(protocol, kind)` to `events` and return it for the decoder to fill.
/// Written straight into its slot: `events.push(ChangeEvent::new(..))` builds the ~290-byte
/// event on the stack and copies it (a 64-instruction `memcpy` per message, also with
/// `reserve` first and `ChangeEvent::new` inlined: `docs/performance.md`, "building the
/// canal-json event in place").
#[inline]
pub(crate) fn push_new<'e, 'a>(
    events: &'e mut Events<'a>,
    protocol: Protocol,
    kind: EventKind,
) -> &'e mut ChangeEvent<'a> {
    events.reserve(1);
    let len = events.len();
    // SAFETY: `reserve(1)` left room for an element at index `len` (capacity > len, else it
    // panics); the slot is initialized by `write` before `set_len` makes it part of `events`,
    // and nothing between them can panic. `set_len` borrows the whole `SmallVec` mutably (the
    // inline slot lives inside it), which ends the first pointer's validity under Rust's
    // aliasing rules, so the returned borrow comes from a pointer taken after it, to the element
    // that is now initialized and part of `events`.
    unsafe {
        events
            .as_mut_ptr()
            .add(len)
            .write(ChangeEvent::new(protocol, kind));
        events.set_len(len + 1);
        &mut *events.as_mut_ptr().add(len)
    }
}

/// `bytes.is_ascii()`, for a whole message: 32 bytes OR-ed per step with no early exit (a
/// message is nearly always ASCII, and non-ASCII ones only pay the full scan), which the compiler
/// turns into SSE2 `por`s. `<[u8]>::is_ascii`, which stops at the first high byte, cost ~290
/// instructions for the bench's ~550-byte canal-json message, this ~110 (`docs/performance.md`,
/// "building the canal-json event in place").
#[inline]
pub(crate) fn is_ascii(bytes: &[u8]) -> bool {
    // The bytes after the last whole chunk are in the message's last 32 (read twice).
    let Some(last) = bytes.last_chunk::<32>() else {
        return bytes.is_ascii();
    };
    let mut acc = *last;
    for chunk in bytes.chunks_exact(32) {
        for (a, b) in acc.iter_mut().zip(chunk) {
            *a |= b;
        }
    }
    acc.iter().fold(0, |a, b| a | b) < 0x80
}

/// Longest `detail` we keep: errors are logged and counted per message, never the message.
const MAX_DETAIL_CHARS: usize = 240;

/// `detail`, cut to [`MAX_DETAIL_CHARS`] on a char boundary.
pub(crate) fn bounded(detail: String) -> String {
    match detail.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((cut, _)) => {
            let mut s = detail;
            s.truncate(cut);
            s.push('…');
            s
        }
        None => detail,
    }
}

/// A short, quoted sample of an input string for error details.
pub(crate) fn sample(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}…", s.get(..cut).unwrap_or("")),
        None => format!("{s:?}"),
    }
}

pub(crate) fn err(
    protocol: Protocol,
    reason: DecodeErrorReason,
    detail: impl Into<String>,
) -> DecodeError {
    DecodeError::new(Some(protocol), reason, bounded(detail.into()))
}

/// Map a serde_json error: syntax/EOF → `invalid_json`; a well-formed document of the wrong
/// shape (missing field, wrong type) → `missing_field`.
pub(crate) fn json_err(protocol: Protocol, what: &str, e: &serde_json::Error) -> DecodeError {
    let reason = match e.classify() {
        serde_json::error::Category::Data => DecodeErrorReason::MissingField,
        _ => DecodeErrorReason::InvalidJson,
    };
    err(protocol, reason, format!("{what}: {e}"))
}

/// `serde_json::from_slice`, faster: the slice reader re-validates UTF-8 for every string it
/// borrows (~12 % of a canal-json decode in callgrind, `docs/performance.md`); validating the
/// whole message once and parsing it as `&str` skips that. Input that is not UTF-8 as a whole
/// goes through the slice reader as before, so results and errors are unchanged.
pub(crate) fn from_json<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    }
}

pub(crate) fn missing(protocol: Protocol, field: &str) -> DecodeError {
    err(
        protocol,
        DecodeErrorReason::MissingField,
        format!("required field `{field}` is missing or null"),
    )
}

pub(crate) fn unknown_value(protocol: Protocol, field: &str, value: &str) -> DecodeError {
    err(
        protocol,
        DecodeErrorReason::UnknownType,
        format!("field `{field}` has unknown value {}", sample(value)),
    )
}

/// The canal DDL event types, the bounded label set every protocol's DDL is normalized to.
pub const DDL_TYPES: [&str; 8] = [
    "CREATE", "ERASE", "TRUNCATE", "RENAME", "CINDEX", "DINDEX", "ALTER", "QUERY",
];

/// A canal/simple DDL `type` as one of [`DDL_TYPES`] (anything else is `QUERY`, TiCDC's default).
pub(crate) fn canal_ddl_type(t: &str) -> &'static str {
    DDL_TYPES.into_iter().find(|d| *d == t).unwrap_or("QUERY")
}

pub(crate) mod json {
    //! Zero-copy building blocks for serde: strings borrowed from the message when they have
    //! no escapes, column maps kept as raw JSON values in message order.

    use std::borrow::Cow;
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
    use serde_json::value::RawValue;

    use crate::event::{Column, ColumnValue, KeyColumns};

    /// A string borrowed from the input when possible (serde's own `Cow<str>` always copies).
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct CowStr<'a>(pub Cow<'a, str>);

    impl<'a> CowStr<'a> {
        pub fn as_str(&self) -> &str {
            &self.0
        }
    }

    impl AsRef<str> for CowStr<'_> {
        fn as_ref(&self) -> &str {
            &self.0
        }
    }

    impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<'a>(PhantomData<&'a ()>);
            impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
                type Value = CowStr<'a>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a string")
                }
                fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                    Ok(CowStr(Cow::Borrowed(v)))
                }
                fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                    Ok(CowStr(Cow::Owned(v.to_owned())))
                }
                fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                    Ok(CowStr(Cow::Owned(v)))
                }
            }
            d.deserialize_str(V(PhantomData))
        }
    }

    /// A JSON object `{name: value, ...}` as columns, values kept raw, in message order.
    #[derive(Debug, Clone, Default)]
    pub struct Columns<'a>(pub Vec<Column<'a>>);

    impl<'de: 'a, 'a> Deserialize<'de> for Columns<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<'a>(PhantomData<&'a ()>);
            impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
                type Value = Columns<'a>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an object of column values")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                    // Cap the pre-allocation: the size hint comes from the input.
                    let mut cols = Vec::with_capacity(map.size_hint().unwrap_or(8).min(64));
                    while let Some(name) = map.next_key::<CowStr<'a>>()? {
                        let value: &'de RawValue = map.next_value()?;
                        cols.push(Column {
                            name: name.0,
                            value: ColumnValue::from_raw(value),
                        });
                    }
                    Ok(Columns(cols))
                }
            }
            d.deserialize_map(V(PhantomData))
        }
    }

    /// A JSON object as `(name, T)` pairs in message order (open-protocol columns).
    #[derive(Debug, Clone)]
    pub struct Named<'a, T>(pub Vec<(Cow<'a, str>, T)>);

    impl<'de: 'a, 'a, T: Deserialize<'de>> Deserialize<'de> for Named<'a, T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<'a, T>(PhantomData<(&'a (), T)>);
            impl<'de: 'a, 'a, T: Deserialize<'de>> Visitor<'de> for V<'a, T> {
                type Value = Named<'a, T>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                    let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8).min(64));
                    while let Some(name) = map.next_key::<CowStr<'a>>()? {
                        let value: T = map.next_value()?;
                        out.push((name.0, value));
                    }
                    Ok(Named(out))
                }
            }
            d.deserialize_map(V(PhantomData))
        }
    }

    /// The columns of `row` whose name is in `names`, in `names` order.
    pub fn pick<'a>(row: &[Column<'a>], names: &[impl AsRef<str>]) -> KeyColumns<'a> {
        names
            .iter()
            .filter_map(|n| row.iter().find(|c| c.name == n.as_ref()).cloned())
            .collect()
    }
}

#[cfg(test)]
mod decoder_tests {
    use super::compression::compress;
    use super::*;
    use crate::event::{EventKind, RowOp};

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/ticdc/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn auto_decodes_every_protocol() {
        let mut d = Decoder::new(ProtocolChoice::Auto, Compression::None);
        let v = fixture("canal-json-delete-1.json");
        let evs = d.decode(None, Some(&v)).unwrap().events;
        assert_eq!(
            (evs[0].protocol, evs[0].op),
            (Protocol::CanalJson, Some(RowOp::Delete))
        );

        let (k, v) = (
            fixture("debezium-update-1.key.json"),
            fixture("debezium-update-1.json"),
        );
        let evs = d.decode(Some(&k), Some(&v)).unwrap().events;
        assert_eq!(
            (evs[0].protocol, evs[0].op),
            (Protocol::Debezium, Some(RowOp::Update))
        );
        assert_eq!(evs[0].keys.len(), 1);

        let v = fixture("simple-bootstrap-1.json");
        assert_eq!(
            d.decode(None, Some(&v)).unwrap().events[0].kind,
            EventKind::Bootstrap
        );

        let (k, v) = (
            fixture("open-protocol-resolved-1.key.bin"),
            fixture("open-protocol-resolved-1.value.bin"),
        );
        let evs = d.decode(Some(&k), Some(&v)).unwrap().events;
        assert_eq!(
            (evs[0].protocol, evs[0].kind),
            (Protocol::OpenProtocol, EventKind::Watermark)
        );
    }

    /// `decode_into` (the consume loop's form) starts from an empty buffer every time and
    /// leaves nothing in it on `Err`, also when the canal-json fast path built the event and
    /// then refused it (an unknown `type`), and agrees with `decode`.
    #[test]
    fn decode_into_clears_its_buffer_and_holds_nothing_after_an_error() {
        let insert = fixture("canal-json-insert-1.json");
        let upsert = String::from_utf8(insert.clone())
            .unwrap()
            .replace("\"INSERT\"", "\"UPSERT\"")
            .into_bytes();
        let (k, v) = (
            fixture("open-protocol-resolved-1.key.bin"),
            fixture("open-protocol-resolved-1.value.bin"),
        );
        let mut d = Decoder::new(ProtocolChoice::Auto, Compression::None);
        let mut out = Decoded::default();
        for _ in 0..2 {
            d.decode_into(None, Some(&insert), &mut out).unwrap();
            assert_eq!(
                format!("{:?}", out),
                format!("{:?}", d.decode(None, Some(&insert)).unwrap())
            );
            assert_eq!((out.events.len(), &*out.events[0].table), (1, "employee"));

            let e = d.decode_into(None, Some(&upsert), &mut out).unwrap_err();
            assert_eq!(e.reason, DecodeErrorReason::UnknownType, "{e}");
            assert!(out.events.is_empty() && out.errors.is_empty());

            d.decode_into(Some(&k), Some(&v), &mut out).unwrap();
            assert_eq!(out.events.len(), 1);
            assert_eq!(out.events[0].protocol, Protocol::OpenProtocol);

            let e = d
                .decode_into(None, Some(b"{\"x\":1}"), &mut out)
                .unwrap_err();
            assert_eq!(e.reason, DecodeErrorReason::UnknownProtocol);
            assert!(out.events.is_empty() && out.errors.is_empty());
        }
    }

    /// `is_ascii` agrees with the standard library's on every length up to three chunks and
    /// a high byte at every position (and in the tail after the chunks).
    #[test]
    fn is_ascii_agrees_with_std() {
        for len in 0..100 {
            let plain: Vec<u8> = (0..len).map(|i| b' ' + (i % 90) as u8).collect();
            assert!(is_ascii(&plain) && plain.is_ascii(), "{len}");
            for at in 0..len {
                for high in [0x80u8, 0xc3, 0xff] {
                    let mut v = plain.clone();
                    v[at] = high;
                    assert!(!is_ascii(&v), "len {len}, {high:#x} at {at}");
                }
            }
        }
    }

    #[test]
    fn simple_keys_survive_across_messages() {
        let mut d = Decoder::new(ProtocolChoice::Fixed(Protocol::Simple), Compression::None);
        let boot = fixture("simple-ddl-1.json");
        d.decode(None, Some(&boot)).unwrap();
        let v = fixture("simple-delete-1.json");
        let evs = d.decode(None, Some(&v)).unwrap().events;
        assert_eq!(evs[0].keys.first().map(|c| c.name.as_ref()), Some("id"));
    }

    #[test]
    fn compressed_messages_decode_to_owned_events() {
        for c in [Compression::Snappy, Compression::Lz4] {
            for choice in [
                ProtocolChoice::Auto,
                ProtocolChoice::Fixed(Protocol::CanalJson),
            ] {
                let mut d = Decoder::new(choice, c);
                let v = compress(c, &fixture("canal-json-insert-1.json")).unwrap();
                let evs = d.decode(None, Some(&v)).unwrap().events;
                assert_eq!(&*evs[0].table, "employee", "{c:?}");
                assert_eq!(evs[0].keys.len(), 1);
            }
            // Debezium: TC compresses the key too.
            let mut d = Decoder::new(ProtocolChoice::Auto, c);
            let k = compress(c, &fixture("debezium-insert-1.key.json")).unwrap();
            let v = compress(c, &fixture("debezium-insert-1.json")).unwrap();
            let evs = d.decode(Some(&k), Some(&v)).unwrap().events;
            assert_eq!(evs[0].protocol, Protocol::Debezium);
            assert_eq!(
                evs[0].keys.first().map(|c| c.value.get()),
                Some("1"),
                "{c:?}"
            );
            let mut d = Decoder::new(ProtocolChoice::Fixed(Protocol::Simple), c);
            let v = compress(c, &fixture("simple-watermark-1.json")).unwrap();
            assert_eq!(
                d.decode(None, Some(&v)).unwrap().events[0].commit_ts,
                Some(447984124732375041)
            );
            // Not compressed although configured: a decompress error.
            let v = fixture("simple-watermark-1.json");
            let e = d.decode(None, Some(&v)).unwrap_err();
            assert_eq!(e.reason, DecodeErrorReason::Decompress);
        }
    }

    #[test]
    fn empty_and_unknown_messages() {
        let mut d = Decoder::new(ProtocolChoice::Auto, Compression::None);
        let e = d.decode(None, None).unwrap_err();
        assert_eq!(
            (e.reason, e.protocol),
            (DecodeErrorReason::EmptyValue, None)
        );
        assert_eq!(
            d.decode(None, Some(b"")).unwrap_err().reason,
            DecodeErrorReason::EmptyValue
        );
        let e = d.decode(None, Some(b"{\"x\":1}")).unwrap_err();
        assert_eq!(e.reason, DecodeErrorReason::UnknownProtocol);
        assert_eq!(
            e.to_string(),
            "auto: JSON value has none of the top-level fields of canal-json, simple or debezium (unknown_protocol)"
        );
        let mut d = Decoder::new(ProtocolChoice::Fixed(Protocol::Debezium), Compression::None);
        let e = d.decode(None, None).unwrap_err();
        assert_eq!(
            (e.reason, e.protocol),
            (DecodeErrorReason::EmptyValue, Some(Protocol::Debezium))
        );
    }

    #[test]
    fn bounded_details() {
        assert_eq!(bounded("short".into()), "short");
        let long = "é".repeat(1000);
        let b = bounded(long);
        assert_eq!(b.chars().count(), MAX_DETAIL_CHARS + 1);
        assert_eq!(sample("abc"), "\"abc\"");
        assert!(sample(&"x".repeat(100)).ends_with('…'));
    }
}

/// Helpers shared by the per-protocol unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use crate::event::Column;

    /// A real TiCDC message from `tests/fixtures/ticdc/`.
    pub fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/ticdc/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Columns as `(name, raw JSON)` pairs, for exact comparisons.
    pub fn cols(c: &[Column<'_>]) -> Vec<(String, String)> {
        c.iter()
            .map(|c| (c.name.to_string(), c.value.get().to_owned()))
            .collect()
    }

    pub fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// `count` mutants of messages drawn from `corpus`: 1–3 byte edits each (replace, remove or
    /// insert a byte of `alphabet`), from a xorshift64* stream seeded with `seed`, so a failure
    /// replays. Used by the fast-path-versus-serde differential tests.
    pub fn mutants<'c>(
        corpus: &'c [Vec<u8>],
        seed: u64,
        alphabet: &'static [u8],
        count: usize,
    ) -> impl Iterator<Item = Vec<u8>> + 'c {
        let mut state = seed;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        (0..count).map(move |_| {
            let mut v = corpus[next() as usize % corpus.len()].clone();
            for _ in 0..1 + next() % 3 {
                let at = next() as usize % v.len().max(1);
                match next() % 3 {
                    0 if !v.is_empty() => v[at] = alphabet[next() as usize % alphabet.len()],
                    1 if !v.is_empty() => {
                        v.remove(at);
                    }
                    _ => v.insert(at, alphabet[next() as usize % alphabet.len()]),
                }
            }
            v
        })
    }
}
