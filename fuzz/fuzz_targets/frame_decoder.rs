//! Raw TCP framing: bytes fed in random-sized pieces through the frame
//! decoder, and every complete frame's batch through the Tell decoder.
//! The body is `sluice::codec::fuzz_support::frame_decoder_input`, so that
//! `tests/it/fuzz_corpus.rs` replays this corpus on stable Rust.
//!
//! Run: `cargo +nightly fuzz run frame_decoder fuzz/corpus/frame_decoder`
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::codec::fuzz_support::frame_decoder_input(data));
