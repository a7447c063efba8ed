//! Syslog over TCP framing (RFC 6587, octet-counted and newline-framed):
//! bytes fed in random-sized pieces through the framer, every frame through
//! the ingest scan and the parse. The body is
//! `sluice::codec::fuzz_support::syslog_framer_input`, so that
//! `tests/it/fuzz_corpus.rs` replays this corpus on stable Rust.
//!
//! Run: `cargo +nightly fuzz run syslog_framer fuzz/corpus/syslog_framer`
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::codec::fuzz_support::syslog_framer_input(data));
