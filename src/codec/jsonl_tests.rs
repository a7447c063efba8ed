use serde_json::{Value, json};

use super::*;
use crate::export::event_json;
use crate::record::records;
use crate::store::reader::StoredEvent;

const NOW: u64 = 1_700_000_000_000;

/// Decodes `body` and returns each record as `sluice export` shows it.
fn decode(stream: Stream, body: &str, partial: bool) -> Result<(Decoded, Vec<Value>), BodyError> {
    let mut out = BlockBuilder::default();
    let decoded = JsonlDecoder::new(stream, 100).decode(body.as_bytes(), NOW, partial, &mut out)?;
    let (block, count) = out.finish();
    assert_eq!(count, decoded.stored);
    let shown = records(&block)
        .map(|r| {
            let ev = StoredEvent {
                seq: 1,
                workspace: 1,
                listener: "http",
                chunk_peer: "p",
                origin: None,
                record: r.unwrap(),
            };
            event_json(&ev)
        })
        .collect();
    Ok((decoded, shown))
}

fn ok(stream: Stream, body: &str) -> Vec<Value> {
    decode(stream, body, false).unwrap().1
}

#[test]
fn a_browser_sdk_event_keeps_every_member() {
    let line = r#"{"type":"track","event":"Button Clicked","service":"shop","device_id":"0123456789abcdef0123456789abcdef","session_id":"a0a1a2a3-b0b1-c0c1-d0d1-e0e1e2e3e4e5","user_id":"u1","timestamp":1699999999000,"button":"signup","n":1.50,"nested":{"a":[1,2]}}"#;
    let e = &ok(Stream::Events, line)[0];
    assert_eq!(e["kind"], "event");
    assert_eq!(e["event_type"], "track");
    assert_eq!(e["event_name"], "Button Clicked");
    assert_eq!(e["service"], "shop");
    assert_eq!(e["device_id"], "01234567-89ab-cdef-0123-456789abcdef");
    assert_eq!(e["session_id"], "a0a1a2a3-b0b1-c0c1-d0d1-e0e1e2e3e4e5");
    assert_eq!(e["timestamp"], 1_699_999_999_000u64);
    assert_eq!(e["received_at"], NOW);
    assert_eq!(e["payload"], json!({"user_id":"u1","button":"signup","n":1.50,"nested":{"a":[1,2]}}));
}

#[test]
fn payload_bytes_are_copied_as_sent() {
    let mut out = BlockBuilder::default();
    let line = br#"{"event":"x","big":12345678901234567890123,"f":1.0e+2,"s":"a\u00e9\n"}"#;
    JsonlDecoder::new(Stream::Events, 10).decode(line, NOW, false, &mut out).unwrap();
    let (block, _) = out.finish();
    let record = records(&block).next().unwrap().unwrap();
    let payload = record.get(tag::PAYLOAD).unwrap();
    assert_eq!(payload, br#"{"big":12345678901234567890123,"f":1.0e+2,"s":"a\u00e9\n"}"#);
}

#[test]
fn nested_properties_are_flattened_and_escaped_keys_survive() {
    let line = r#"{"event":"E","properties":{"plan":"team","seats":5},"we\"ird\\key":true,"properties2":1}"#;
    let e = &ok(Stream::Events, line)[0];
    assert_eq!(e["payload"], json!({"plan":"team","seats":5,"we\"ird\\key":true,"properties2":1}));
    // `properties` that is not an object is kept as it is.
    let e = &ok(Stream::Events, r#"{"event":"E","properties":"x"}"#)[0];
    assert_eq!(e["payload"], json!({"properties":"x"}));
}

#[test]
fn event_defaults_and_uninterpretable_fields_are_kept() {
    let line = r#"{"event":"E","device_id":"not-a-uuid","timestamp":"yesterday","service":7,"type":"pageview"}"#;
    let e = &ok(Stream::Events, line)[0];
    assert_eq!(e["timestamp"], NOW, "the receive time stands in");
    assert!(e.get("device_id").is_none() && e.get("service").is_none());
    assert_eq!(e["event_type"], "unknown");
    assert_eq!(e["payload"], json!({"device_id":"not-a-uuid","timestamp":"yesterday","service":7,"type":"pageview"}));
    let e = &ok(Stream::Events, r#"{"event_name":"Bare"}"#)[0];
    assert_eq!(e["event_type"], "track");
    assert_eq!(e["event_name"], "Bare");
    assert!(e.get("payload").is_none(), "no members left: no payload");
}

#[test]
fn timestamps_as_milliseconds_or_rfc3339() {
    let cases = [
        (r#"{"timestamp":1700000000123}"#, 1_700_000_000_123u64),
        (r#"{"timestamp":1700000000123.9}"#, 1_700_000_000_123),
        (r#"{"timestamp":"2023-11-14T22:13:20.123Z"}"#, 1_700_000_000_123),
        (r#"{"timestamp":"2023-11-14T23:13:20.123+01:00"}"#, 1_700_000_000_123),
        (r#"{"timestamp":-5}"#, NOW),
    ];
    for (line, want) in cases {
        assert_eq!(ok(Stream::Events, line)[0]["timestamp"], want, "{line}");
    }
}

#[test]
fn a_browser_sdk_log_line() {
    let line = r#"{"level":"warning","message":"card declined","source":"browser","service":"shop","session_id":"00112233445566778899aabbccddeeff","timestamp":1700000000000,"data":{"code":51}}"#;
    let e = &ok(Stream::Logs, line)[0];
    assert_eq!(e["kind"], "log");
    assert_eq!(e["level"], "warning");
    assert_eq!(e["log_type"], "log");
    assert_eq!(e["source"], "browser");
    assert_eq!(e["service"], "shop");
    assert_eq!(e["session_id"], "00112233-4455-6677-8899-aabbccddeeff");
    assert_eq!(e["payload"], json!({"message":"card declined","code":51}));
}

#[test]
fn log_levels_by_name_or_number() {
    for (level, want) in
        [(r#""WARN""#, "warning"), ("3", "error"), (r#""trace""#, "trace"), (r#""emerg""#, "emergency")]
    {
        let e = &ok(Stream::Logs, &format!(r#"{{"level":{level},"message":"m"}}"#))[0];
        assert_eq!(e["level"], want, "{level}");
    }
    let e = &ok(Stream::Logs, r#"{"level":"loud","message":"m"}"#)[0];
    assert_eq!(e["level"], "info", "unknown level: the default, and kept");
    assert_eq!(e["payload"]["level"], "loud");
    let e = &ok(Stream::Logs, r#"{"message":"m","device_id":"00112233445566778899aabbccddeeff"}"#)[0];
    assert_eq!(e["payload"]["device_id"], "00112233445566778899aabbccddeeff", "logs have no device field");
}

#[test]
fn lines_blank_lines_crlf_and_bom() {
    let body = "\u{feff}{\"event\":\"a\"}\r\n\n   \n{\"event\":\"b\"}\r\n{\"event\":\"c\"}";
    let names: Vec<_> = ok(Stream::Events, body).iter().map(|e| e["event_name"].clone()).collect();
    assert_eq!(names, vec!["a", "b", "c"]);
    assert!(ok(Stream::Events, "").is_empty());
    assert!(ok(Stream::Events, " \n\n").is_empty());
}

#[test]
fn an_array_body() {
    let body = "  [\n {\"event\":\"a\"},\n {\"event\":\"b\",\"properties\":{\"x\":1}}\n]\n";
    let got = ok(Stream::Events, body);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1]["payload"], json!({"x":1}));
    assert!(ok(Stream::Events, "[]").is_empty());
}

#[test]
fn the_first_bad_line_fails_the_body_and_is_named() {
    let body = "{\"event\":\"a\"}\n\n{\"event\":\"b\",}\n{\"event\":\"c\"";
    let err = decode(Stream::Events, body, false).unwrap_err();
    match &err {
        BodyError::Item { at: Position::Line(3), problem: ItemProblem::InvalidJson { column, .. } } => {
            assert_eq!(*column, 14)
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().starts_with("line 3: invalid JSON at column 14"), "{err}");
    let err = decode(Stream::Events, "{}\n42\n", false).unwrap_err();
    assert!(matches!(err, BodyError::Item { at: Position::Line(2), problem: ItemProblem::NotAnObject { .. } }));
    let err = decode(Stream::Events, "{} {}\n", false).unwrap_err();
    assert!(matches!(err, BodyError::Item { at: Position::Line(1), .. }), "trailing characters");
}

#[test]
fn partial_acceptance_lists_every_item() {
    let body = "{\"event\":\"a\"}\nnope\n{\"event\":\"c\"}\n[1]\n";
    let (decoded, shown) = decode(Stream::Events, body, true).unwrap();
    assert_eq!((decoded.stored, decoded.rejected), (2, 2));
    assert_eq!(shown.len(), 2);
    let errors: Vec<_> = decoded.outcomes.iter().map(|o| (o.at, o.error.as_ref().map(ItemProblem::code))).collect();
    assert_eq!(
        errors,
        vec![
            (Position::Line(1), None),
            (Position::Line(2), Some("invalid_json")),
            (Position::Line(3), None),
            (Position::Line(4), Some("not_an_object")),
        ]
    );
    let (decoded, _) = decode(Stream::Events, "[{\"event\":\"a\"}, 3, {}]", true).unwrap();
    assert_eq!(decoded.outcomes[1], ItemOutcome { at: Position::Item(2), error: decoded.outcomes[1].error.clone() });
    assert_eq!((decoded.stored, decoded.rejected), (2, 1));
}

#[test]
fn a_broken_array_names_its_position() {
    let err = decode(Stream::Events, "[{\"event\":\"a\"},\n{\"event\":}]", true).unwrap_err();
    assert!(matches!(err, BodyError::Array { line: 2, .. }), "{err:?}");
    let err = decode(Stream::Events, "[{}, 2]", false).unwrap_err();
    assert!(matches!(err, BodyError::Item { at: Position::Item(2), .. }), "{err:?}");
}

#[test]
fn the_item_limit_holds_for_lines_and_arrays() {
    let mut out = BlockBuilder::default();
    let mut d = JsonlDecoder::new(Stream::Events, 2);
    assert_eq!(d.decode(b"{}\n{}\n", NOW, false, &mut out).unwrap().stored, 2);
    let err = d.decode(b"{}\n\n{}\n{}\n", NOW, true, &mut out).unwrap_err();
    assert_eq!(err, BodyError::TooManyItems { limit: 2 });
    // Past the limit nothing more is parsed, not even a broken tail.
    let err = d.decode(b"[{},{},{},", NOW, false, &mut out).unwrap_err();
    assert_eq!(err, BodyError::TooManyItems { limit: 2 });
}

#[test]
fn uuids_hyphenated_or_plain() {
    let want = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
    assert_eq!(parse_uuid("0123456789abcdef0123456789ABCDEF"), Some(want));
    assert_eq!(parse_uuid("01234567-89ab-cdef-0123-456789abcdef"), Some(want));
    for bad in [
        "",
        "0123456789abcdef0123456789abcde",
        "01234567-89ab-cdef-0123-456789abcdeg",
        "0123456789ab-cdef-0123-456789abcdef",
    ] {
        assert_eq!(parse_uuid(bad), None, "{bad}");
    }
}

#[test]
fn nesting_past_the_depth_limit_is_refused_so_payloads_parse_back() {
    let deep = |n: usize| format!("{{\"event\":\"d\",\"x\":{}{}}}", "[".repeat(n), "]".repeat(n));
    let e = &ok(Stream::Events, &deep(MAX_DEPTH - 1))[0];
    assert!(e["payload"]["x"].is_array(), "the payload parses back as JSON");
    let err = decode(Stream::Events, &deep(MAX_DEPTH), false).unwrap_err();
    assert!(matches!(err, BodyError::Item { problem: ItemProblem::InvalidJson { column: 117, .. }, .. }), "{err:?}");
    // Brackets inside strings do not count.
    let quoted = format!("{{\"event\":\"{}\"}}", "[{".repeat(MAX_DEPTH));
    assert_eq!(ok(Stream::Events, &quoted).len(), 1);
}

#[test]
fn invalid_utf8_is_an_invalid_line() {
    let mut out = BlockBuilder::default();
    let body = b"{\"event\":\"a\"}\n{\"event\":\"\xff\"}\n";
    let err = JsonlDecoder::new(Stream::Events, 10).decode(body, NOW, false, &mut out).unwrap_err();
    assert!(
        matches!(err, BodyError::Item { at: Position::Line(2), problem: ItemProblem::InvalidJson { column: 11, .. } }),
        "{err:?}"
    );
}
