//! sluice: a streaming ingest daemon.
//!
//! ```text
//!  net (accept, deadlines) ─► source ─► codec (bytes → frames → records) ─► auth (key → workspace)
//!        │                                                      │
//!        └── charges bytes received to the budget (backpressure) ──► pipeline (bounded crossbeam channel)
//!                                                               │
//!                                 store::writer thread: group commit into redb (fsync)
//!                                                               │
//!                                    acks complete ◄────────────┘
//! ```
//!
//! - [`codec`]: wire formats (Tell frames, acked frames, ack replies, syslog
//!   framing, scan and parse).
//! - [`record`]: the stored record encoding shared by sources and readers.
//! - [`net`]: the connection toolkit every listener uses: accept with permits
//!   and per-address caps, the budget charged for bytes received, deadlines,
//!   the one read loop, the one `serve_http`, streamed response bodies.
//! - [`source`]: listeners; they own sockets and hand batches to the pipeline.
//! - [`pipeline`]: the bounded channel and the byte budget for data in flight.
//! - [`store`]: redb files, the writer thread, keys, readers, online backup.
//! - [`auth`]: streaming keys, passwords, JWTs, sessions, rate limits.
//! - [`control`]: the one owner of control.redb and the key and session
//!   registries that mirror it.
//! - [`admin`]: the admin HTTP API (hyper): setup, login, keys, users, workspaces, audit, metrics.
//! - [`export`]: events as an NDJSON or CSV stream (API export and offline export).
//! - [`client`]: a Rust client for the acked raw TCP protocol.
//! - [`server`]: wires it all together: `run(config, listeners, shutdown)`.

pub mod admin;
pub mod auth;
pub mod cli;
pub mod client;
pub mod codec;
pub mod config;
pub mod control;
pub mod export;
pub mod forward;
pub mod metrics;
pub mod net;
pub mod pipeline;
pub mod record;
pub mod server;
pub mod source;
pub mod store;
