//! Stateful: a random sequence of acked and Tell frames (written in pieces),
//! ack reads, hang-ups mid-frame and disk failures against the real raw TCP
//! listener, pipeline, writer thread and events.redb, checked against a
//! model of what must be acknowledged and stored. The body is
//! `sluice::source::fuzz_support::acked_session_input`, so that
//! `tests/it/fuzz_corpus.rs` replays this corpus on stable Rust.
//!
//! Run: `cargo +nightly fuzz run acked_session fuzz/corpus/acked_session -- -max_len=160`
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::source::fuzz_support::acked_session_input(data));
