//! HTTP ingest bodies (`POST /v1/events`, `/v1/logs`): JSON lines or a JSON
//! array, decoded all-or-nothing and with partial acceptance. The body is
//! `sluice::codec::fuzz_support::jsonl_body_input` (first byte: bit 0 picks
//! logs), so that `tests/it/fuzz_corpus.rs` replays this corpus on stable Rust.
//!
//! Run: `cargo +nightly fuzz run jsonl_body fuzz/corpus/jsonl_body`
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::codec::fuzz_support::jsonl_body_input(data));
