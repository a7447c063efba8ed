//! CORS for browser clients: off unless `cors_origins` names origins.
//!
//! An allowed `Origin` is echoed in `Access-Control-Allow-Origin` (with
//! `Vary: Origin`) on every answer, errors included, so a page can read
//! why it was refused; the rate-limit headers and `Retry-After` are
//! exposed. A preflight (`OPTIONS`) is answered 204; for an origin that is
//! not allowed it carries no CORS headers, and the browser stops there.

use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::reply::{Resp, json_response};
use crate::config::CorsOrigin;

const ALLOW_METHODS: &str = "POST, OPTIONS";
const ALLOW_HEADERS: &str = "Authorization, X-API-Key, Content-Type, Content-Encoding";
const EXPOSE_HEADERS: &str = "Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset";
/// How long a browser may cache a preflight answer, in seconds.
const MAX_AGE_SECS: u32 = 600;

#[derive(Debug, Clone, Default)]
pub struct Cors {
    origins: Vec<CorsOrigin>,
}

impl Cors {
    pub fn new(origins: &[CorsOrigin]) -> Cors {
        Cors { origins: origins.to_vec() }
    }

    /// The request's `Origin`, if it is allowed.
    pub fn allowed(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        if self.origins.is_empty() {
            return None;
        }
        let origin = headers.get(header::ORIGIN)?;
        let text = origin.to_str().ok()?;
        self.origins.iter().any(|o| o.allows(text)).then(|| origin.clone())
    }

    /// Adds the CORS headers for an allowed origin.
    pub fn apply(resp: &mut Resp, origin: Option<HeaderValue>) {
        let Some(origin) = origin else { return };
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE_HEADERS));
    }

    /// The answer to `OPTIONS`.
    pub fn preflight(origin: Option<HeaderValue>) -> Resp {
        let mut resp = json_response(StatusCode::NO_CONTENT, &serde_json::Value::Null);
        *resp.body_mut() = Default::default();
        let h = resp.headers_mut();
        h.remove(header::CONTENT_TYPE);
        h.insert(header::ALLOW, HeaderValue::from_static(ALLOW_METHODS));
        if origin.is_some() {
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOW_METHODS));
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOW_HEADERS));
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(MAX_AGE_SECS));
        }
        Cors::apply(&mut resp, origin);
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(o: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, o.parse().unwrap());
        h
    }

    #[test]
    fn off_by_default_and_only_listed_origins() {
        assert_eq!(Cors::default().allowed(&origin("http://a.test")), None);
        let cors = Cors::new(&[CorsOrigin::try_from("http://a.test".to_owned()).unwrap()]);
        assert_eq!(cors.allowed(&origin("http://a.test")).unwrap(), "http://a.test");
        assert_eq!(cors.allowed(&origin("http://b.test")), None);
        assert_eq!(cors.allowed(&HeaderMap::new()), None);
        let any = Cors::new(&[CorsOrigin::try_from("*".to_owned()).unwrap()]);
        assert!(any.allowed(&origin("http://b.test")).is_some());
    }

    #[test]
    fn preflight_answers() {
        let yes = Cors::preflight(Some(HeaderValue::from_static("http://a.test")));
        assert_eq!(yes.status(), StatusCode::NO_CONTENT);
        assert_eq!(yes.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "http://a.test");
        assert!(yes.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap().contains("X-API-Key"));
        let no = Cors::preflight(None);
        assert!(no.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert_eq!(no.headers()[header::ALLOW], ALLOW_METHODS);
    }
}
