//! Replays the fuzz corpora (and any crash artifacts) through the fuzz
//! target bodies on stable Rust, so every seed and every past finding stays
//! a regression test without cargo-fuzz or a nightly toolchain.

use std::fs;
use std::path::{Path, PathBuf};

use sluice::codec::fuzz_support::{
    batch_decoder_input, frame_decoder_input, jsonl_body_input, otlp_body_input, relayed_body_input, relp_framer_input,
    syslog_framer_input, syslog_parse_input,
};
use sluice::codec::jsonl::{JsonlDecoder, Stream};
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
        for target in [
            "frame_decoder",
            "batch_decoder",
            "jsonl_body",
            "syslog_framer",
            "syslog_parse",
            "relp_framer",
            "relayed_body",
            "otlp_body",
        ] {
            all.extend(inputs(kind, target));
        }
    }
    all
}

#[test]
fn corpora_are_not_empty() {
    assert!(!inputs("corpus", "frame_decoder").is_empty(), "fuzz/corpus/frame_decoder is empty");
    assert!(!inputs("corpus", "batch_decoder").is_empty(), "fuzz/corpus/batch_decoder is empty");
    assert!(!inputs("corpus", "jsonl_body").is_empty(), "fuzz/corpus/jsonl_body is empty");
    assert!(!inputs("corpus", "syslog_framer").is_empty(), "fuzz/corpus/syslog_framer is empty");
    assert!(!inputs("corpus", "syslog_parse").is_empty(), "fuzz/corpus/syslog_parse is empty");
    assert!(!inputs("corpus", "relp_framer").is_empty(), "fuzz/corpus/relp_framer is empty");
    assert!(!inputs("corpus", "relayed_body").is_empty(), "fuzz/corpus/relayed_body is empty");
    assert!(!inputs("corpus", "otlp_body").is_empty(), "fuzz/corpus/otlp_body is empty");
}

#[test]
fn every_input_replays_through_both_targets_without_panicking() {
    let all = all_inputs();
    for (path, bytes) in &all {
        let replay = std::panic::catch_unwind(|| {
            frame_decoder_input(bytes);
            batch_decoder_input(bytes);
            jsonl_body_input(bytes);
            syslog_framer_input(bytes);
            syslog_parse_input(bytes);
            relp_framer_input(bytes);
            relayed_body_input(bytes);
            otlp_body_input(bytes);
        });
        assert!(replay.is_ok(), "{} panicked", path.display());
    }
}

#[test]
fn relayed_body_corpus_holds_bodies_the_central_node_accepts() {
    let accepted = inputs("corpus", "relayed_body")
        .iter()
        .filter(|(_, b)| sluice::forward::message::relayed_parts(b, "edge", 1).is_ok_and(|p| !p.is_empty()))
        .count();
    assert!(accepted >= 2, "fuzz/corpus/relayed_body lost its valid seeds");
}

#[test]
fn otlp_corpus_holds_bodies_of_every_signal_in_both_encodings_that_store_records() {
    use sluice::codec::otlp::{self, Format, Signal};
    let mut seen = Vec::new();
    for (_, bytes) in inputs("corpus", "otlp_body") {
        let Some((&control, body)) = bytes.split_first() else { continue };
        let signal = [Signal::Logs, Signal::Metrics, Signal::Traces, Signal::Logs][usize::from(control & 3)];
        let format = if control & 4 != 0 { Format::Json } else { Format::Protobuf };
        let Ok(req) = otlp::decode(signal, format, body) else { continue };
        if otlp::append(&req, 0, &mut BlockBuilder::default(), usize::MAX).is_ok_and(|a| a.stored > 0) {
            seen.push((signal, format));
        }
    }
    for signal in [Signal::Logs, Signal::Metrics, Signal::Traces] {
        for format in [Format::Protobuf, Format::Json] {
            assert!(seen.contains(&(signal, format)), "no {signal:?} {format:?} seed that stores records");
        }
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

#[test]
fn acked_session_corpus_keeps_the_model() {
    use sluice::source::fuzz_support::acked_session_input;
    let seeds = inputs("corpus", "acked_session");
    assert!(seeds.len() >= 7, "fuzz/corpus/acked_session lost its seeds");
    for (path, bytes) in seeds.iter().chain(inputs("artifacts", "acked_session").iter()) {
        let replay = std::panic::catch_unwind(|| acked_session_input(bytes));
        assert!(replay.is_ok(), "{} broke the model", path.display());
    }
}

#[test]
fn token_corpus_replays_and_its_valid_seeds_are_accepted() {
    use sluice::auth::fuzz_support::token_input;
    let seeds = inputs("corpus", "token_parser");
    assert!(!seeds.is_empty(), "fuzz/corpus/token_parser is empty");
    for (path, bytes) in seeds.iter().chain(inputs("artifacts", "token_parser").iter()) {
        let replay = std::panic::catch_unwind(|| token_input(bytes));
        assert!(replay.is_ok(), "{} panicked", path.display());
    }
    // The seeds named valid_* must pass the check, or the corpus tests nothing.
    let auth = sluice::auth::jwt::JwtKeys::new(sluice::auth::fuzz_support::FUZZ_SECRET);
    for (path, bytes) in
        seeds.iter().filter(|(p, _)| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("valid")))
    {
        let text = String::from_utf8_lossy(bytes);
        let token = text.strip_prefix("Bearer ").unwrap_or(&text);
        assert!(auth.verify(token).is_ok(), "{} does not verify", path.display());
    }
}

#[test]
fn backup_corpus_replays_and_only_the_whole_dump_reads_to_its_end() {
    use sluice::store::backup::format::{DumpReader, Item, dump_reader_input};
    let seeds = inputs("corpus", "backup_dump");
    assert!(!seeds.is_empty(), "fuzz/corpus/backup_dump is empty");
    for (path, bytes) in seeds.iter().chain(inputs("artifacts", "backup_dump").iter()) {
        let replay = std::panic::catch_unwind(|| dump_reader_input(bytes));
        assert!(replay.is_ok(), "{} panicked", path.display());
    }
    // Whether each seed reads to a verified end: the whole dump must, its
    // damaged copies must not, or the corpus tests nothing.
    for (path, bytes) in &seeds {
        let name = path.file_name().unwrap().to_string_lossy();
        let mut r = DumpReader::new(&bytes[..]).expect("a seed has the header");
        let mut ended = false;
        loop {
            match r.next_item() {
                Ok(Some(Item::End(_))) => ended = true,
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    ended = false;
                    break;
                }
            }
        }
        assert_eq!(ended, name == "dump_whole", "{name}");
    }
}

#[test]
fn jsonl_corpus_holds_valid_bodies_of_both_streams() {
    let mut seen = Vec::new();
    for (_, bytes) in inputs("corpus", "jsonl_body") {
        let Some((&control, body)) = bytes.split_first() else { continue };
        let stream = if control & 1 != 0 { Stream::Logs } else { Stream::Events };
        let mut out = BlockBuilder::default();
        if JsonlDecoder::new(stream, 64).decode(body, 0, false, &mut out).is_ok_and(|d| d.stored > 0) {
            seen.push(stream);
        }
    }
    for stream in [Stream::Events, Stream::Logs] {
        assert!(seen.contains(&stream), "no decodable {stream:?} seed");
    }
}
