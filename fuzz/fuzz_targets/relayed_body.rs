//! A relayed message body as a central node takes it from NATS (stored
//! chunk values, each `len:u32be` first): decoding never panics, and what
//! it accepts decodes and cuts consistently. The body is
//! `sluice::codec::fuzz_support::relayed_body_input`, so that
//! `tests/it/fuzz_corpus.rs` replays this corpus on stable Rust.
//!
//! Run: `cargo +nightly fuzz run relayed_body fuzz/corpus/relayed_body`
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::codec::fuzz_support::relayed_body_input(data));
