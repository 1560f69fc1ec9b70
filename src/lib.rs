//! cdcmon: a TiCDC change-data-capture monitor.
//!
//! `cdcmon consume` reads TiCDC messages from Kafka, decodes every TiCDC protocol into one
//! [`event::ChangeEvent`], counts them in Prometheus metrics and writes one ndjson line per row or
//! DDL event. The other subcommands set up and verify the stack around it.
//! Module map: `docs/architecture.md`.

pub mod assignment;
pub mod basic_auth;
pub mod batch_receive;
pub mod checksum;
pub mod cli;
pub mod consumer;
pub mod db;
pub mod decode_batch;
pub mod decode_cmd;
pub mod defaults;
pub mod demo;
pub mod event;
pub mod eventlog;
pub mod http;
pub mod metric_family;
pub mod metrics;
pub mod pipeline;
pub mod protocol;
pub mod schema_registry;
pub mod secret_file;
pub mod shutdown;
pub mod smoke;
pub mod ticdc_api;
pub mod topics;
pub mod watermark;
mod words;
