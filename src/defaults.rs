//! The stack's default endpoints, defined once for every subcommand's flags. The Nix side's one
//! place is `nix/ports.nix`; `tests/nix_parity.rs` checks that the two agree.

/// Kafka as clients on the stack host see it (inside the VM / compose network: 9092).
pub const BROKERS: &str = "localhost:9092";
/// Kafka as TiCDC's sink URI addresses it.
pub const SINK_BROKER: &str = "127.0.0.1:9092";
pub const TOPIC: &str = "app_cdc";
pub const GROUP: &str = "cdcmon";
pub const CHANGEFEED_ID: &str = "app-cdc";
/// `cdcmon consume`'s HTTP listener (all interfaces: Prometheus may scrape from elsewhere).
pub const LISTEN: &str = "0.0.0.0:9102";
pub const TIDB_URL: &str = "mysql://root@127.0.0.1:4000";
pub const TICDC_URL: &str = "http://127.0.0.1:8300";
pub const PROMETHEUS_URL: &str = "http://127.0.0.1:9090";
pub const ELASTICSEARCH_URL: &str = "http://127.0.0.1:9200";
/// The index pattern Filebeat's daily `cdc-events-YYYY.MM.DD` indices match.
pub const ELASTICSEARCH_INDEX: &str = "cdc-events-*";
/// The stack services' logs (issue 14): daily `stack-logs-YYYY.MM.DD` indices.
pub const LOGS_INDEX: &str = "stack-logs-*";
pub const GRAFANA_URL: &str = "http://127.0.0.1:3000";
pub const CDCMON_URL: &str = "http://127.0.0.1:9102";
