//! OTLP/HTTP request bodies (`POST /v1/logs`, `/v1/metrics`, `/v1/traces`):
//! protobuf or OTLP JSON, decoded with `opentelemetry-proto` and written as
//! records. The body is `sluice::codec::fuzz_support::otlp_body_input`
//! (first byte: the signal and the encoding), so that
//! `tests/it/fuzz_corpus.rs` replays this corpus on stable Rust.
//!
//! Run: `cargo +nightly fuzz run otlp_body fuzz/corpus/otlp_body`
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::codec::fuzz_support::otlp_body_input(data));
