//! OTLP values as JSON text, written straight into a buffer (no
//! `serde_json::Value` per attribute): attributes become one object,
//! `AnyValue`s plain JSON values.
//!
//! | `AnyValue`     | JSON                                                 |
//! |----------------|------------------------------------------------------|
//! | string         | string                                               |
//! | bool           | `true` / `false`                                     |
//! | int            | number (exact: 64-bit)                               |
//! | double         | number; NaN and the infinities as `"NaN"`, `"Infinity"`, `"-Infinity"` |
//! | bytes          | base64 string (standard alphabet, padded)            |
//! | array          | array                                                |
//! | kvlist         | object (a repeated key: the first wins when read)    |
//! | empty          | `null`                                               |
//!
//! Nesting is bounded by the decoders (prost and serde_json both stop at
//! 100-odd levels), so the recursion here is too.

use base64::Engine;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};

/// Writes a JSON string.
pub fn string(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Writes a number; NaN and the infinities (which JSON lacks) as strings.
pub fn f64(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        let _ = serde_json::to_writer(&mut *out, &v);
    } else if v.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if v > 0.0 {
        out.extend_from_slice(b"\"Infinity\"");
    } else {
        out.extend_from_slice(b"\"-Infinity\"");
    }
}

pub fn i64(out: &mut Vec<u8>, v: i64) {
    let _ = serde_json::to_writer(&mut *out, &v);
}

pub fn u64(out: &mut Vec<u8>, v: u64) {
    let _ = serde_json::to_writer(&mut *out, &v);
}

/// Bytes as lowercase hex in a string (ids).
pub fn hex(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    out.extend_from_slice(::hex::encode(bytes).as_bytes());
    out.push(b'"');
}

/// Attributes as one JSON object.
pub fn attributes(out: &mut Vec<u8>, attrs: &[KeyValue]) {
    let mut obj = Object::open(out);
    for kv in attrs {
        obj.key(&kv.key);
        any(obj.out(), kv.value.as_ref());
    }
    obj.close();
}

/// One `AnyValue` (absent: `null`).
pub fn any(out: &mut Vec<u8>, v: Option<&AnyValue>) {
    match v.and_then(|v| v.value.as_ref()) {
        // A string-table index only means something inside a profile.
        None | Some(Value::StringValueStrindex(_)) => out.extend_from_slice(b"null"),
        Some(Value::StringValue(s)) => string(out, s),
        Some(Value::BoolValue(b)) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Some(Value::IntValue(i)) => i64(out, *i),
        Some(Value::DoubleValue(d)) => f64(out, *d),
        Some(Value::BytesValue(b)) => {
            out.push(b'"');
            out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(b).as_bytes());
            out.push(b'"');
        }
        Some(Value::ArrayValue(a)) => {
            out.push(b'[');
            for (i, v) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                any(out, Some(v));
            }
            out.push(b']');
        }
        Some(Value::KvlistValue(kv)) => attributes(out, &kv.values),
    }
}

/// The string value of `service.name`, if there is one.
pub fn service_name(attrs: &[KeyValue]) -> Option<String> {
    attrs.iter().find(|kv| kv.key == "service.name").and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        _ => None,
    })
}

/// A JSON object being written: keys are separated and escaped here.
pub struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    pub fn open(out: &'a mut Vec<u8>) -> Object<'a> {
        out.push(b'{');
        Object { out, first: true }
    }

    /// Starts member `name`; its value is written next, into [`out`](Self::out).
    pub fn key(&mut self, name: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        string(self.out, name);
        self.out.push(b':');
    }

    pub fn out(&mut self) -> &mut Vec<u8> {
        self.out
    }

    /// A member with a string value, left out when empty.
    pub fn str_nonempty(&mut self, name: &str, value: &str) {
        if !value.is_empty() {
            self.key(name);
            string(self.out, value);
        }
    }

    /// A member with an integer value, left out when zero.
    pub fn u64_nonzero(&mut self, name: &str, value: u64) {
        if value != 0 {
            self.key(name);
            u64(self.out, value);
        }
    }

    pub fn close(self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

    use super::*;

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
    }

    #[test]
    fn every_value_shape_is_json() {
        let attrs = vec![
            kv("s", Value::StringValue("a\"b\n".into())),
            kv("b", Value::BoolValue(true)),
            kv("i", Value::IntValue(i64::MIN)),
            kv("d", Value::DoubleValue(0.5)),
            kv("nan", Value::DoubleValue(f64::NAN)),
            kv("inf", Value::DoubleValue(f64::NEG_INFINITY)),
            kv("bytes", Value::BytesValue(vec![0, 1, 0xff])),
            kv("arr", Value::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(Value::IntValue(1)) }] })),
            kv("kv", Value::KvlistValue(KeyValueList { values: vec![kv("x", Value::BoolValue(false))] })),
            KeyValue { key: "none".into(), value: None, ..Default::default() },
        ];
        let mut out = Vec::new();
        attributes(&mut out, &attrs);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "s": "a\"b\n", "b": true, "i": i64::MIN, "d": 0.5, "nan": "NaN", "inf": "-Infinity",
                "bytes": "AAH/", "arr": [1], "kv": {"x": false}, "none": null,
            })
        );
        assert_eq!(service_name(&[kv("service.name", Value::StringValue("api".into()))]), Some("api".into()));
        assert_eq!(service_name(&[kv("service.name", Value::IntValue(1))]), None);
    }
}
