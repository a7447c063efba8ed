//! Integration tests in one binary (one link instead of one per file):
//! each module drives the real `sluice` binary and real clients.

mod common;
mod nats_support;
mod syslog_support;
mod tls_support;

mod acked;
mod admin_api;
mod admin_cli;
mod admin_settings;
mod api_docs;
mod backup;
mod bench_cli;
mod cli_keys;
pub(crate) mod commit_failure;
mod crash;
mod export_tail;
mod format_compat;
mod fuzz_corpus;
mod hostile;
mod http_bench;
mod http_browser;
mod http_ingest;
mod https;
mod keyring;
mod nats_forward;
mod observability;
mod otlp;
mod otlp_bench;
mod package;
mod private_files;
mod query_api;
mod relp;
mod retention;
mod settings;
mod shipped_configs;
mod syslog_bench;
mod syslog_logger;
mod syslog_rsyslog;
mod syslog_shapes;
mod syslog_sources;
mod syslog_tls;
mod systemd;
mod tcp_tls;
mod tell_sdk;
mod top;
