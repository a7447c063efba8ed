//! Wire formats: pure, synchronous decoders and encoders. Bytes in, frames
//! out; "need more bytes" is `Ok(None)`, never an error.

pub mod ack;
pub mod frame;
pub mod fuzz_support;
pub mod jsonl;
pub mod octet;
pub mod otlp;
pub mod relp;
pub mod syslog;
pub mod syslog_scan;
pub mod tell;
