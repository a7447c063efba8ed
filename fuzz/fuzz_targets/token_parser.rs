//! Admin API token checks: bytes as an `Authorization` header and as a bare
//! `tell_<jwt>` token. The body is `sluice::auth::fuzz_support::token_input`,
//! so that `tests/it/fuzz_corpus.rs` replays this corpus on stable Rust.
//!
//! Run: `cargo +nightly fuzz run token_parser fuzz/corpus/token_parser`
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::auth::fuzz_support::token_input(data));
