//! Which streaming key a request carries, and who the client is.
//!
//! The key is looked for in this order: `Authorization: Bearer <32 hex>`,
//! `X-API-Key: <32 hex>`, then (where allowed) the `token` query parameter,
//! which is what browsers use (`fetch` with `keepalive` and `sendBeacon`
//! cannot always set headers). The first one present decides: a malformed
//! header is refused even if a good token follows.

use http::HeaderMap;
use http::header::AUTHORIZATION;

use super::reply::Refused;
use crate::auth::keys::{KEY_LEN, parse_hex_key};

/// The raw key of a request, or why there is none.
pub fn request_key(headers: &HeaderMap, query: Option<&str>, allow_query: bool) -> Result<[u8; KEY_LEN], Refused> {
    if let Some(v) = headers.get(AUTHORIZATION) {
        let text = v.to_str().unwrap_or("");
        let key = match text.split_once(' ') {
            Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key.trim(),
            _ => return Err(Refused::bad_key("invalid_key", "Authorization must be `Bearer <streaming key>`")),
        };
        return parse(key, "Authorization");
    }
    if let Some(v) = headers.get("x-api-key") {
        return parse(v.to_str().unwrap_or("").trim(), "X-API-Key");
    }
    match query_param(query, "token") {
        Some(token) if allow_query => parse(token, "token"),
        Some(_) => Err(Refused::bad_key(
            "query_token_disabled",
            "?token= is turned off on this listener; send Authorization: Bearer KEY or X-API-Key",
        )),
        None => Err(Refused::bad_key(
            "missing_key",
            "send the streaming key as Authorization: Bearer KEY, X-API-Key: KEY or ?token=KEY",
        )),
    }
}

/// OTLP's third way: `X-API-Key-ID: <key id>` with `X-API-Key-Secret: <key>`,
/// the key and the id it must have; `None` when neither header is sent.
/// Only one of the pair is refused.
pub fn key_pair(headers: &HeaderMap) -> Option<Result<([u8; KEY_LEN], u64), Refused>> {
    let id = headers.get("x-api-key-id");
    let secret = headers.get("x-api-key-secret");
    if id.is_none() && secret.is_none() {
        return None;
    }
    let (Some(id), Some(secret)) = (id, secret) else {
        return Some(Err(Refused::bad_key("invalid_key", "send X-API-Key-ID and X-API-Key-Secret together")));
    };
    let id = id.to_str().ok().and_then(|t| t.trim().parse::<u64>().ok());
    let Some(id) = id else {
        return Some(Err(Refused::bad_key("invalid_key", "X-API-Key-ID must be the key's numeric id")));
    };
    Some(parse(secret.to_str().unwrap_or("").trim(), "X-API-Key-Secret").map(|key| (key, id)))
}

fn parse(text: &str, place: &str) -> Result<[u8; KEY_LEN], Refused> {
    parse_hex_key(text).map_err(|e| Refused::bad_key("invalid_key", format!("{place}: {e}")))
}

/// The value of `name` in a query string (no percent-decoding: the
/// parameters read here are hex keys and flags).
pub fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "00112233445566778899aabbccddeeff";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn bearer_then_api_key_then_query() {
        let want = parse_hex_key(KEY).unwrap();
        let bearer = format!("Bearer {KEY}");
        assert_eq!(request_key(&headers(&[("authorization", &bearer)]), None, false), Ok(want));
        assert_eq!(request_key(&headers(&[("x-api-key", KEY)]), None, false), Ok(want));
        let q = format!("partial=true&token={KEY}");
        assert_eq!(request_key(&HeaderMap::new(), Some(&q), true), Ok(want));
        let codes = |r: Result<_, Refused>| r.unwrap_err().code;
        assert_eq!(codes(request_key(&HeaderMap::new(), Some(&q), false)), "query_token_disabled");
        assert_eq!(codes(request_key(&HeaderMap::new(), None, true)), "missing_key");
        assert_eq!(codes(request_key(&headers(&[("authorization", "Basic abc")]), Some(&q), true)), "invalid_key");
        assert_eq!(codes(request_key(&headers(&[("x-api-key", "short")]), None, true)), "invalid_key");
    }

    #[test]
    fn key_pairs_need_both_halves() {
        let want = parse_hex_key(KEY).unwrap();
        assert_eq!(key_pair(&HeaderMap::new()), None);
        let both = headers(&[("x-api-key-id", "17"), ("x-api-key-secret", KEY)]);
        assert_eq!(key_pair(&both), Some(Ok((want, 17))));
        let code = |h: HeaderMap| key_pair(&h).unwrap().unwrap_err().code;
        assert_eq!(code(headers(&[("x-api-key-secret", KEY)])), "invalid_key");
        assert_eq!(code(headers(&[("x-api-key-id", "17")])), "invalid_key");
        assert_eq!(code(headers(&[("x-api-key-id", "k17"), ("x-api-key-secret", KEY)])), "invalid_key");
        assert_eq!(code(headers(&[("x-api-key-id", "17"), ("x-api-key-secret", "nothex")])), "invalid_key");
    }
}
