//! Replays the fuzz corpora (and any crash artifacts) through the fuzz
//! target bodies on stable Rust, so every seed and every past finding stays
//! a regression test without cargo-fuzz or a nightly toolchain.

use std::fs;
use std::path::{Path, PathBuf};

use sluice::codec::fuzz_support::{batch_decoder_input, frame_decoder_input};
use sluice::codec::tell::{Schema, append_items, decode_batch};
use sluice::record::BlockBuilder;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Every file under `fuzz/<kind>/<target>/`, if that folder exists.
fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = fs::read_dir(fuzz_dir().join(kind).join(target)) else { return Vec::new() };
    let mut files: Vec<_> = entries
        .map(|e| e.expect("readable corpus dir").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = fs::read(&p).expect("readable corpus file");
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

/// Every input of every target, corpora and artifacts alike.
fn all_inputs() -> Vec<(PathBuf, Vec<u8>)> {
    let mut all = Vec::new();
    for kind in ["corpus", "artifacts"] {
        for target in ["frame_decoder", "batch_decoder"] {
            all.extend(inputs(kind, target));
        }
    }
    all
}

#[test]
fn corpora_are_not_empty() {
    assert!(!inputs("corpus", "frame_decoder").is_empty(), "fuzz/corpus/frame_decoder is empty");
    assert!(!inputs("corpus", "batch_decoder").is_empty(), "fuzz/corpus/batch_decoder is empty");
}

#[test]
fn every_input_replays_through_both_targets_without_panicking() {
    let all = all_inputs();
    for (path, bytes) in &all {
        let replay = std::panic::catch_unwind(|| {
            frame_decoder_input(bytes);
            batch_decoder_input(bytes);
        });
        assert!(replay.is_ok(), "{} panicked", path.display());
    }
}

#[test]
fn batch_corpus_holds_valid_batches_of_every_schema() {
    let mut seen = Vec::new();
    for (_, bytes) in inputs("corpus", "batch_decoder") {
        let Ok(view) = decode_batch(&bytes) else { continue };
        let mut out = BlockBuilder::default();
        if append_items(&view, 0, &mut out).is_ok_and(|n| n > 0) {
            seen.push(view.schema);
        }
    }
    for schema in [Schema::Event, Schema::Log, Schema::Metric] {
        assert!(seen.contains(&schema), "no decodable {schema:?} seed");
    }
}
