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
//! pattern with POSIX `regcomp(REG_EXTENDED)` where libc has it (`src/rdregex.c`), unanchored
//! at the end: `^tidb_app_` matches every topic starting with `tidb_app_`.
//!
//! Every offset, watermark and assignment entry is keyed by [`TopicPartition`]: the same
//! partition number in two topics is two partitions. Topic names are interned once into a
//! [`Topics`] table, so the per-message key is a small index found by comparing the message's
//! borrowed topic name against the few known names: no allocation per message.

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
    #[error("--topic regex {pattern:?} is invalid: {reason}")]
    BadRegex { pattern: String, reason: String },
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
            // The regex crate's syntax covers the POSIX ERE librdkafka uses for the patterns
            // a topic family needs (classes, `.*`, alternation, anchors); a pattern only one of
            // them accepts is still refused by rd_kafka_subscribe (INVALID_ARG), reported by
            // the consumer with the whole list.
            regex::Regex::new(entry).map_err(|err| TopicsError::BadRegex {
                pattern: entry.to_owned(),
                // The crate's message spans lines (pattern, caret, reason): keep one line.
                reason: one_line(&err.to_string()),
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

fn one_line(text: &str) -> String {
    let last = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or(text);
    last.strip_prefix("error: ").unwrap_or(last).to_owned()
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

/// The topic names seen so far (from rebalance callbacks and messages), each stored once.
/// Topics are few (one per table of a changefeed at most): a linear scan of short strings
/// beats hashing, and the common single-topic case is one comparison.
#[derive(Debug, Default)]
pub struct Topics {
    names: Vec<Arc<str>>,
}

impl Topics {
    pub fn new() -> Self {
        Self::default()
    }

    /// The id of `name`, if it was interned.
    #[inline]
    pub fn get(&self, name: &str) -> Option<TopicId> {
        self.names
            .iter()
            .position(|n| &**n == name)
            .map(|i| TopicId(i as u32))
    }

    /// The id of `name`, interning it the first time (the only allocation, once per topic).
    #[inline]
    pub fn intern(&mut self, name: &str) -> TopicId {
        if let Some(id) = self.get(name) {
            return id;
        }
        self.names.push(Arc::from(name));
        TopicId((self.names.len() - 1) as u32)
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
        assert!(text.contains("unclosed group"), "{text}");
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
}
