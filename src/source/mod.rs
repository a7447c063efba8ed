//! Listeners. A source owns its sockets and protocol state and nothing
//! else: it turns frames into batches of records and hands them to the
//! pipeline. Accepting, reading, deadlines and budget charging are the
//! connection toolkit's (`net`).

#[doc(hidden)]
pub mod fuzz_support;
pub mod http;
pub mod nats;
pub mod otlp;
pub mod syslog;
pub mod tcp;
