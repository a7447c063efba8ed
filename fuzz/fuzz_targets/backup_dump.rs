//! Backup streams (`GET /api/v1/backup`, read by `sluice backup`): the
//! record grammar, length limits, trailers and checksums of
//! `sluice::store::backup::format`. The body is
//! `sluice::store::backup::format::dump_reader_input`, so that
//! `tests/it/fuzz_corpus.rs` replays this corpus on stable Rust.
//!
//! Run: `cargo +nightly fuzz run backup_dump fuzz/corpus/backup_dump`
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::store::backup::format::dump_reader_input(data));
