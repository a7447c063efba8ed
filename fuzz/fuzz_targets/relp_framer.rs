//! RELP framing (`TXNR SP COMMAND SP DATALEN [SP DATA] LF`): a stream
//! decoded whole and in random-sized pieces must give the same frames. The
//! body is `sluice::codec::fuzz_support::relp_framer_input`, so that
//! `tests/it/fuzz_corpus.rs` replays this corpus on stable Rust.
//!
//! Run: `cargo +nightly fuzz run relp_framer fuzz/corpus/relp_framer`
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::codec::fuzz_support::relp_framer_input(data));
