//! The connection toolkit: what every listener uses to face peers it does
//! not control, so the sources and the admin API meet here rather than
//! importing each other.
//!
//! - [`accept`]: the accept loop, a permit taken before `accept`, a cap per
//!   client address, tracked tasks, the backlog drained on shutdown.
//! - [`budget`]: the in-flight byte budget, charged per connection for bytes
//!   received (never for a claimed length), with the untrusted share.
//! - [`deadline`]: idle and frame deadlines that trickling cannot renew.
//! - [`conn`]: the one read loop of framed TCP listeners.
//! - [`http`]: the one hyper server (`serve_http`) and the body reader.
//! - [`body_stream`]: streamed response bodies fed by a producer, capped in number.
//! - [`activation`]: sockets passed by systemd (`LISTEN_FDS`), adopted by
//!   the listeners configured for their addresses.
//! - [`limits`]: process limits raised at start (`RLIMIT_NOFILE`).
//! - [`tls`]: a listener's certificates, and the handshake with its deadline
//!   and per-address cap.

pub mod accept;
pub mod activation;
pub mod body_stream;
pub mod budget;
pub mod conn;
pub mod deadline;
pub mod http;
pub mod limits;
pub mod tls;
