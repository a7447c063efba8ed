//! Tell batches: `decode_batch` then `append_items`, checking the
//! all-or-nothing contract. The body is
//! `sluice::codec::fuzz_support::batch_decoder_input`, so that
//! `tests/it/fuzz_corpus.rs` replays this corpus on stable Rust.
//!
//! Run: `cargo +nightly fuzz run batch_decoder fuzz/corpus/batch_decoder`
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::codec::fuzz_support::batch_decoder_input(data));
