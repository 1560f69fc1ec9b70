//! Which Kafka topics `cdcmon consume` reads (`--topic`), and the compact keys its bookkeeping
//! uses for them.
//!
//! TiCDC's Avro protocol writes one table per topic (docs/protocols.md "Avro"), so a changefeed's
//! stream can span a whole `tidb_{schema}_{table}` family. `--topic` therefore takes a
//! comma-separated list, and an entry starting with `^` is a regular expression matched by
//! librdkafka against every topic in the cluster. That is librdkafka's own subscription
//! convention (confluentinc/librdkafka v2.12.1, the version rdkafka-sys 4.10.0 bundles,
//! `src/rdkafka.h` `rd_kafka_subscribe`: "any topic name in the topics list that is prefixed
//! with "^" will be regex-matched to the full list of topics in the cluster"; new matching
//! topics are picked up every `topic.metadata.refresh.interval.ms`). librdkafka compiles the
//! pattern with the C library's POSIX `regcomp(REG_EXTENDED | REG_NOSUB)` (`src/rdregex.c`
//! `rd_regex_comp`; the bundled build defines `HAVE_REGEX 1` on glibc) and matches it with
//! `regexec`, unanchored at the end: `^tidb_app_` matches every topic starting with `tidb_app_`.
//! cdcmon validates (and, for `--dead-letter-topic`, matches) each pattern with the very same
//! calls ([`PosixRegex`]), not with Rust's `regex` crate: the two dialects disagree (`\d` is a
//! digit for the crate but the letter `d` for glibc; `(?i)` is accepted by the crate and refused
//! by glibc; back-references `\1` and `{,2}` are the reverse), so a check with another engine
//! would pass patterns librdkafka refuses or matches differently.
//!
//! That holds for the classic group protocol only. With `group.protocol=consumer` (KIP-848)
//! librdkafka does not match patterns itself: it joins them into one regex sent to the broker
//! (`src/rdkafka_cgrp.c` `rd_kafka_cgrp_subscription_set` →
//! `rd_kafka_topic_partition_list_combine_regexes`, `src/rdkafka_partition.c`), which evaluates
//! it with its own engine (RE2/J) and rules. cdcmon cannot validate that dialect at startup, so
//! it refuses `^` entries together with `--kafka-option group.protocol=consumer`
//! ([`check_group_protocol`]) rather than subscribe with a pattern that may mean something else.
//!
//! Every offset, watermark and assignment entry is keyed by [`TopicPartition`]: the same
//! partition number in two topics is two partitions. Topic names are interned once into a
//! [`Topics`] table, so the per-message key is a small index found from the message's borrowed
//! topic name (last hit cached, a hash lookup beyond a handful of topics): no allocation per
//! message.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{CString, c_char};
use std::sync::Arc;

/// A `--topic` value that cannot be used, naming the bad entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopicsError {
    #[error("--topic is empty: give a topic name, a comma-separated list, or a ^regex")]
    Empty,
    #[error("--topic {list:?} has an empty entry (two commas, or a comma at an end)")]
    EmptyEntry { list: String },
    #[error("--topic names {entry:?} twice (librdkafka rejects duplicate subscriptions)")]
    Duplicate { entry: String },
    #[error("--topic regex \"{pattern}\" is invalid: {reason}")]
    BadRegex { pattern: String, reason: String },
    #[error(
        "--topic regex \"{pattern}\" uses \"{syntax}\", Perl syntax that librdkafka's POSIX regcomp \
         does not have ({reason})"
    )]
    PerlSyntax {
        pattern: String,
        syntax: String,
        reason: &'static str,
    },
    #[error(
        "--dead-letter-topic {dead_letter:?} is also consumed (--topic entry \"{entry}\"): cdcmon \
         would read its own dead letters back forever"
    )]
    DeadLetterConsumed { dead_letter: String, entry: String },
    #[error(
        "--topic regex \"{pattern}\" cannot be used with group.protocol=consumer: the broker then \
         matches the pattern with its own regex engine, which cdcmon cannot check; list the \
         topics or use the classic group protocol"
    )]
    RegexWithConsumerProtocol { pattern: String },
}

/// Split a `--topic` value into its subscription entries (names and `^` patterns), trimmed, in
/// order. Each pattern is compiled once here so a typo fails at startup with its own line
/// instead of a bare "invalid argument" from `rd_kafka_subscribe`.
pub fn parse(value: &str) -> Result<Vec<String>, TopicsError> {
    if value.trim().is_empty() {
        return Err(TopicsError::Empty);
    }
    let mut entries: Vec<String> = Vec::new();
    for raw in value.split(',') {
        let entry = raw.trim();
        if entry.is_empty() {
            return Err(TopicsError::EmptyEntry {
                list: value.to_owned(),
            });
        }
        if entry.starts_with('^') {
            // Compiled exactly as librdkafka will (module doc): what passes here passes
            // rd_kafka_subscribe, whose own refusal (INVALID_ARG) would not name the pattern.
            if let Some((syntax, reason)) = perl_syntax(entry) {
                return Err(TopicsError::PerlSyntax {
                    pattern: entry.to_owned(),
                    syntax: syntax.to_owned(),
                    reason,
                });
            }
            PosixRegex::new(entry).map_err(|reason| TopicsError::BadRegex {
                pattern: entry.to_owned(),
                reason,
            })?;
        }
        if entries.iter().any(|e| e == entry) {
            return Err(TopicsError::Duplicate {
                entry: entry.to_owned(),
            });
        }
        entries.push(entry.to_owned());
    }
    Ok(entries)
}

/// clap's value parser for `--topic`: the value as given, once [`parse`] accepts it.
pub fn validate(value: &str) -> Result<String, String> {
    parse(value)
        .map(|_| value.to_owned())
        .map_err(|e| e.to_string())
}

/// Perl/RE2 syntax in an ERE that glibc's `regcomp` either refuses with an unhelpful message or,
/// worse, accepts with another meaning: `\d` compiles to the literal letter `d`, so
/// `^tidb_\d+` would silently subscribe to nothing (or to `tidb_dd`). glibc gives GNU meanings
/// to `\w \W \s \S \b \B \< \> \` \'` (word, space, boundaries: the same as Perl's), which are
/// therefore accepted; any other backslash-letter is a Perl class or escape
/// (`\d \D \p \P \h \v \A \z \n \t`, …) that glibc reads as the bare letter. `(?` (inline flags,
/// non-capturing and look-around groups) is refused by glibc too, but with "Invalid preceding
/// regular expression"; naming the construct is clearer. Inside a bracket expression a
/// backslash is an ordinary character in POSIX, so `[\d]` is not looked at.
/// Returns the offending text and why.
fn perl_syntax(pattern: &str) -> Option<(&str, &'static str)> {
    let bytes = pattern.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                let next = *bytes.get(i + 1)?;
                if next.is_ascii_alphabetic() && !b"wWsSbB".contains(&next) {
                    return Some((
                        &pattern[i..i + 2],
                        "a backslash before this letter is read as the letter itself; use a \
                         bracket expression such as [0-9] or [[:digit:]]",
                    ));
                }
                i += 2;
            }
            b'(' if bytes.get(i + 1) == Some(&b'?') => {
                return Some((
                    &pattern[i..i + 2],
                    "inline flags, non-capturing and look-around groups do not exist in POSIX \
                     extended regexes",
                ));
            }
            b'[' => i = bracket_end(bytes, i),
            _ => i += 1,
        }
    }
    None
}

/// The index after the bracket expression opening at `open` (POSIX: a `]` right after `[` or
/// `[^` is a member, `[:class:]`, `[=x=]` and `[.x.]` may contain `]`), or the end of the text
/// when unterminated (regcomp reports that one).
fn bracket_end(bytes: &[u8], open: usize) -> usize {
    let mut i = open + 1;
    if bytes.get(i) == Some(&b'^') {
        i += 1;
    }
    if bytes.get(i) == Some(&b']') {
        i += 1;
    }
    while i < bytes.len() {
        match bytes[i] {
            b']' => return i + 1,
            b'[' if matches!(bytes.get(i + 1), Some(b':' | b'=' | b'.')) => {
                let delim = bytes[i + 1];
                let mut j = i + 2;
                while j + 1 < bytes.len() && !(bytes[j] == delim && bytes[j + 1] == b']') {
                    j += 1;
                }
                i = j + 2;
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// A POSIX extended regular expression compiled by the C library exactly as librdkafka compiles
/// a `^` subscription entry (confluentinc/librdkafka v2.12.1 `src/rdregex.c` `rd_regex_comp`:
/// `regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB)`, `regerror` for the message;
/// `rd_regex_exec`: `regexec(&re, str, 0, NULL, 0) != REG_NOMATCH`).
pub struct PosixRegex {
    // Boxed: the C library owns buffers hanging off it; it never moves once compiled.
    re: Box<libc::regex_t>,
}

impl PosixRegex {
    /// Compile `pattern`; the error is `regerror`'s text.
    pub fn new(pattern: &str) -> Result<Self, String> {
        let c_pattern =
            CString::new(pattern).map_err(|_| "the pattern contains a NUL byte".to_owned())?;
        // SAFETY: regex_t is a plain C struct for which all-zero is a valid "not compiled"
        // state; regcomp initialises it.
        let mut re: Box<libc::regex_t> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: both pointers are valid for the call; c_pattern is NUL-terminated.
        let rc = unsafe {
            libc::regcomp(
                &mut *re,
                c_pattern.as_ptr(),
                libc::REG_EXTENDED | libc::REG_NOSUB,
            )
        };
        if rc != 0 {
            let mut buf = [0 as c_char; 256];
            // SAFETY: regerror writes at most buf.len() bytes including the NUL; after a failed
            // regcomp the C library has released what it allocated (POSIX: regfree is only for
            // compiled expressions), as librdkafka assumes too.
            unsafe { libc::regerror(rc, &*re, buf.as_mut_ptr(), buf.len()) };
            // SAFETY: regerror NUL-terminates within buf.
            let text = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
            return Err(text.to_string_lossy().into_owned());
        }
        Ok(Self { re })
    }

    /// Whether the pattern matches somewhere in `text` (a topic name); a name with a NUL byte
    /// (impossible in Kafka) matches nothing.
    pub fn is_match(&self, text: &str) -> bool {
        let Ok(c_text) = CString::new(text) else {
            return false;
        };
        // SAFETY: self.re is compiled; no match offsets are requested (nmatch 0, REG_NOSUB).
        unsafe { libc::regexec(&*self.re, c_text.as_ptr(), 0, std::ptr::null_mut(), 0) == 0 }
    }
}

impl Drop for PosixRegex {
    fn drop(&mut self) {
        // SAFETY: compiled by regcomp in `new` and freed exactly once.
        unsafe { libc::regfree(&mut *self.re) };
    }
}

/// The subscription entry (a name equal to `topic`, or a `^` pattern matching it) that would
/// make cdcmon consume `topic`, if any.
pub fn consumed_by<'a>(entries: &'a [String], topic: &str) -> Option<&'a str> {
    entries
        .iter()
        .find(|entry| {
            if entry.starts_with('^') {
                PosixRegex::new(entry).is_ok_and(|re| re.is_match(topic))
            } else {
                entry.as_str() == topic
            }
        })
        .map(String::as_str)
}

/// Refuse a `--dead-letter-topic` that the subscription itself would consume: every message
/// cdcmon cannot decode would come back to it, be copied again, and so on forever.
pub fn check_dead_letter(entries: &[String], dead_letter: &str) -> Result<(), TopicsError> {
    match consumed_by(entries, dead_letter) {
        Some(entry) => Err(TopicsError::DeadLetterConsumed {
            dead_letter: dead_letter.to_owned(),
            entry: entry.to_owned(),
        }),
        None => Ok(()),
    }
}

/// Refuse `^` entries when the KIP-848 consumer protocol is chosen (module doc). librdkafka
/// property values are case-insensitive for enums; the last setting wins, as in librdkafka.
pub fn check_group_protocol<'a>(
    entries: &[String],
    kafka_options: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), TopicsError> {
    let protocol = kafka_options
        .into_iter()
        .filter(|(k, _)| *k == "group.protocol")
        .last()
        .map(|(_, v)| v);
    if !protocol.is_some_and(|v| v.trim().eq_ignore_ascii_case("consumer")) {
        return Ok(());
    }
    match entries.iter().find(|e| e.starts_with('^')) {
        Some(pattern) => Err(TopicsError::RegexWithConsumerProtocol {
            pattern: pattern.clone(),
        }),
        None => Ok(()),
    }
}

/// Index of an interned topic name in [`Topics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicId(u32);

impl TopicId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One partition of one topic: the key of every piece of per-partition bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: TopicId,
    pub partition: i32,
}

/// Up to this many topics a linear scan of short strings beats hashing; beyond it (one topic
/// per table of a large changefeed: hundreds) names are found through a hash map.
const LINEAR_SCAN_MAX: usize = 8;

/// The topic names seen so far (from rebalance callbacks and messages), each stored once.
/// Consecutive messages mostly come from the same topic (librdkafka hands out a fetched batch
/// of one partition at a time), so the last hit is tried first: the common case, and the whole
/// single-topic case, is one comparison.
#[derive(Debug, Default)]
pub struct Topics {
    names: Vec<Arc<str>>,
    /// Filled once there are more than [`LINEAR_SCAN_MAX`] names.
    by_name: HashMap<Arc<str>, TopicId>,
    /// Index of the last name found by [`Topics::get`].
    last: Cell<usize>,
}

impl Topics {
    pub fn new() -> Self {
        Self::default()
    }

    /// The id of `name`, if it was interned.
    #[inline]
    pub fn get(&self, name: &str) -> Option<TopicId> {
        let last = self.last.get();
        if self.names.get(last).is_some_and(|n| &**n == name) {
            return Some(TopicId(last as u32));
        }
        let found = if self.names.len() > LINEAR_SCAN_MAX {
            self.by_name.get(name).copied()
        } else {
            self.names
                .iter()
                .position(|n| &**n == name)
                .map(|i| TopicId(i as u32))
        };
        if let Some(id) = found {
            self.last.set(id.index());
        }
        found
    }

    /// The id of `name`, interning it the first time (the only allocation, once per topic).
    #[inline]
    pub fn intern(&mut self, name: &str) -> TopicId {
        if let Some(id) = self.get(name) {
            return id;
        }
        let id = TopicId(self.names.len() as u32);
        self.names.push(Arc::from(name));
        if self.names.len() > LINEAR_SCAN_MAX {
            if self.by_name.is_empty() {
                for (i, n) in self.names.iter().enumerate() {
                    self.by_name.insert(n.clone(), TopicId(i as u32));
                }
            } else {
                self.by_name.insert(self.names[id.index()].clone(), id);
            }
        }
        id
    }

    /// The key of `partition` of topic `name`.
    #[inline]
    pub fn key(&mut self, name: &str, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: self.intern(name),
            partition,
        }
    }

    /// The name of an interned topic.
    pub fn name(&self, id: TopicId) -> &Arc<str> {
        &self.names[id.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_topic_is_one_entry() {
        assert_eq!(parse("app_cdc").unwrap(), ["app_cdc"]);
        assert_eq!(validate("app_cdc").unwrap(), "app_cdc");
    }

    #[test]
    fn a_list_is_split_on_commas_and_trimmed() {
        assert_eq!(
            parse("tidb_app_users, tidb_app_orders ,^tidb_shop_.*").unwrap(),
            ["tidb_app_users", "tidb_app_orders", "^tidb_shop_.*"]
        );
    }

    #[test]
    fn a_caret_entry_is_a_regex_and_must_compile() {
        assert_eq!(parse("^tidb_app_.*").unwrap(), ["^tidb_app_.*"]);
        let err = parse("app_cdc,^tidb_(app").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("--topic regex \"^tidb_(app\" is invalid: "),
            "{text}"
        );
        assert!(!text.contains('\n'), "one line: {text}");
        // glibc's regerror text for REG_EPAREN.
        assert!(text.contains("Unmatched ( or \\("), "{text}");
        // A name without ^ is not a regex: the same characters are just a (strange) name.
        assert_eq!(parse("tidb_(app").unwrap(), ["tidb_(app"]);
    }

    #[test]
    fn empty_entries_and_duplicates_are_refused_with_their_reason() {
        assert_eq!(parse(" ").unwrap_err(), TopicsError::Empty);
        assert_eq!(
            parse("a,,b").unwrap_err().to_string(),
            "--topic \"a,,b\" has an empty entry (two commas, or a comma at an end)"
        );
        assert!(matches!(
            parse("a,").unwrap_err(),
            TopicsError::EmptyEntry { .. }
        ));
        assert_eq!(
            parse("a, b ,a").unwrap_err(),
            TopicsError::Duplicate { entry: "a".into() }
        );
    }

    #[test]
    fn interning_gives_each_name_one_id() {
        let mut t = Topics::new();
        let a = t.key("tidb_app_users", 0);
        let b = t.key("tidb_app_orders", 0);
        assert_ne!(a, b, "partition 0 of two topics are two keys");
        assert_eq!(t.key("tidb_app_users", 0), a);
        assert_eq!(&**t.name(b.topic), "tidb_app_orders");
        assert_eq!(t.get("other"), None);
    }

    // The dialect tests below assert glibc's verdicts (Debian and NixOS builds link glibc, as
    // does librdkafka's regcomp in the same binary); another libc would give other answers to
    // both cdcmon and librdkafka alike.

    /// What librdkafka's `rd_regex_match(pattern, topic)` answers (compile + exec).
    fn librdkafka_matches(pattern: &str, topic: &str) -> bool {
        PosixRegex::new(pattern).unwrap().is_match(topic)
    }

    #[test]
    fn patterns_are_compiled_and_matched_as_librdkafka_does() {
        // Unanchored at the end, as the module doc says.
        assert!(librdkafka_matches("^tidb_app_", "tidb_app_users"));
        assert!(!librdkafka_matches("^tidb_app_", "other_tidb_app_users"));
        assert!(librdkafka_matches(
            "^tidb_app_(users|orders)$",
            "tidb_app_orders"
        ));
        assert!(!librdkafka_matches(
            "^tidb_app_(users|orders)$",
            "tidb_app_ordersx"
        ));
        // POSIX syntax the regex crate refuses is accepted (and means what glibc says):
        // a back-reference and a bound without a minimum.
        assert_eq!(parse("^t(a)\\1").unwrap(), ["^t(a)\\1"]);
        assert!(librdkafka_matches("^t(a)\\1", "taa"));
        assert!(!librdkafka_matches("^t(a)\\1", "tab"));
        assert!(librdkafka_matches("^a{,2}x", "aax"));
        assert!(!librdkafka_matches("^a{,2}x", "aaax"));
        // …but a bound with a comma cannot be written in --topic: the comma separates entries,
        // and the first half is refused with glibc's reason.
        assert_eq!(
            parse("^a{,2}x").unwrap_err(),
            TopicsError::BadRegex {
                pattern: "^a{".into(),
                reason: "Unmatched \\{".into()
            }
        );
        assert_eq!(parse("^a{2}x").unwrap(), ["^a{2}x"]);
        // GNU word/space classes mean in glibc what they mean in Perl: accepted.
        assert!(parse("^tidb\\w+").is_ok());
        assert!(librdkafka_matches("^a\\wb", "a_b"));
        assert!(!librdkafka_matches("^a\\wb", "a-b"));
        // Inside brackets a backslash is an ordinary member in POSIX: not Perl syntax.
        assert!(parse("^tidb_[\\d]").is_ok());
        assert!(parse("^x[]\\d]").is_ok(), "] first in brackets is a member");
        assert!(parse("^x[[:digit:]]").is_ok());
    }

    #[test]
    fn perl_only_syntax_is_refused_naming_the_construct() {
        // glibc compiles `\d` as the letter d: the subscription would silently miss every
        // tidb_1… topic. Proven here with the engine itself, then refused by parse.
        assert!(librdkafka_matches("^tidb_\\d+", "tidb_dd"));
        assert!(!librdkafka_matches("^tidb_\\d+", "tidb_12"));
        let text = parse("^tidb_\\d+").unwrap_err().to_string();
        assert!(
            text.starts_with("--topic regex \"^tidb_\\d+\" uses \"\\d\", Perl syntax"),
            "{text}"
        );
        for perl in ["^a\\D", "^a\\p{L}", "^a\\P{L}", "^a\\z", "^a\\t"] {
            assert!(
                matches!(parse(perl), Err(TopicsError::PerlSyntax { .. })),
                "{perl}"
            );
        }
        // Inline flags: glibc refuses them itself, cdcmon says why before it gets there.
        assert!(PosixRegex::new("^(?i)tidb").is_err());
        let err = parse("app_cdc,^(?i)tidb").unwrap_err();
        assert_eq!(
            err,
            TopicsError::PerlSyntax {
                pattern: "^(?i)tidb".into(),
                syntax: "(?".into(),
                reason: "inline flags, non-capturing and look-around groups do not exist in \
                         POSIX extended regexes",
            }
        );
        // An escaped backslash before a letter is a literal backslash, then the letter: fine.
        assert!(parse("^a\\\\d").is_ok());
    }

    #[test]
    fn a_dead_letter_topic_that_is_consumed_is_refused() {
        let entries = parse("app_cdc,^tidb_app_.*").unwrap();
        assert!(check_dead_letter(&entries, "cdcmon_dead_letters").is_ok());
        assert_eq!(
            check_dead_letter(&entries, "app_cdc").unwrap_err(),
            TopicsError::DeadLetterConsumed {
                dead_letter: "app_cdc".into(),
                entry: "app_cdc".into()
            }
        );
        let text = check_dead_letter(&entries, "tidb_app_dead")
            .unwrap_err()
            .to_string();
        assert_eq!(
            text,
            "--dead-letter-topic \"tidb_app_dead\" is also consumed (--topic entry \
             \"^tidb_app_.*\"): cdcmon would read its own dead letters back forever"
        );
        // Matched with librdkafka's engine: `\w` is glibc's word class.
        let entries = parse("^dl\\w").unwrap();
        assert!(check_dead_letter(&entries, "dl_x").is_err());
        assert!(check_dead_letter(&entries, "dl-x").is_ok());
    }

    #[test]
    fn patterns_are_refused_with_the_consumer_group_protocol() {
        let patterns = parse("app_cdc,^tidb_app_.*").unwrap();
        let names = parse("app_cdc,tidb_app_users").unwrap();
        assert!(check_group_protocol(&patterns, [("group.protocol", "classic")]).is_ok());
        assert!(check_group_protocol(&patterns, []).is_ok());
        assert!(check_group_protocol(&names, [("group.protocol", "consumer")]).is_ok());
        assert_eq!(
            check_group_protocol(
                &patterns,
                [
                    ("group.protocol", "classic"),
                    ("group.protocol", "CONSUMER")
                ]
            )
            .unwrap_err(),
            TopicsError::RegexWithConsumerProtocol {
                pattern: "^tidb_app_.*".into()
            }
        );
        // The last setting wins.
        assert!(
            check_group_protocol(
                &patterns,
                [
                    ("group.protocol", "consumer"),
                    ("group.protocol", "classic")
                ]
            )
            .is_ok()
        );
    }

    #[test]
    fn many_topics_are_found_through_the_map_and_the_cache_never_lies() {
        let mut t = Topics::new();
        let names: Vec<String> = (0..300).map(|i| format!("tidb_app_t{i}")).collect();
        let ids: Vec<TopicId> = names.iter().map(|n| t.intern(n)).collect();
        for (i, (n, id)) in names.iter().zip(&ids).enumerate() {
            assert_eq!(id.index(), i);
            assert_eq!(t.get(n), Some(*id));
            // Twice: the second is the cached hit.
            assert_eq!(t.get(n), Some(*id));
            assert_eq!(&**t.name(*id), n.as_str());
        }
        // Alternate, so the cache misses each time; unknown names after a hit.
        for i in 0..300 {
            assert_eq!(t.get(&names[299 - i]), Some(ids[299 - i]));
            assert_eq!(t.get(&names[i]), Some(ids[i]));
            assert_eq!(t.get("tidb_app_unknown"), None);
        }
        // Crossing the threshold keeps ids stable (map built from the names so far).
        let mut small = Topics::new();
        let first: Vec<TopicId> = (0..LINEAR_SCAN_MAX + 2)
            .map(|i| small.intern(&format!("t{i}")))
            .collect();
        for (i, id) in first.iter().enumerate() {
            assert_eq!(small.get(&format!("t{i}")), Some(*id));
        }
    }
}
