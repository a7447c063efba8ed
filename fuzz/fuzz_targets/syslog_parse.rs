//! One syslog message through the ingest scan (BOM, streaming key) and the
//! read-time parse. The body is
//! `sluice::codec::fuzz_support::syslog_parse_input`, so that
//! `tests/it/fuzz_corpus.rs` replays this corpus on stable Rust.
//!
//! Run: `cargo +nightly fuzz run syslog_parse fuzz/corpus/syslog_parse`
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::codec::fuzz_support::syslog_parse_input(data));
