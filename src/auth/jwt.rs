//! Login tokens: HS256 JWTs sent as `tell_<jwt>` (Tell's token format).
//!
//! Claims: `sub` and `user` (user id), `email`, `role`, `workspace`,
//! `session` (the session id that must still be live), `jti`, `iat`, `nbf`,
//! `exp`, `iss` (`sluice`). A token is checked for length before anything
//! is decoded, then for signature, issuer and times (no leeway); whether its
//! session is live is the caller's next step
//! ([`crate::auth::session::Authenticator`]).

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::auth::role::Role;

/// Tokens start with this.
pub const TOKEN_PREFIX: &str = "tell_";
pub const ISSUER: &str = "sluice";
/// Longer tokens are refused before decoding (ours are ~400 bytes).
pub const MAX_TOKEN_LEN: usize = 4096;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub user: u64,
    pub email: String,
    pub role: Role,
    pub workspace: u32,
    pub session: String,
    pub jti: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub iss: String,
}

/// Why a token was refused.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    #[error("missing bearer token")]
    Missing,
    #[error("token is too long")]
    TooLong,
    #[error("token must start with `{TOKEN_PREFIX}`")]
    NoPrefix,
    #[error("token is malformed")]
    Malformed,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token session has ended")]
    SessionEnded,
    #[error("cannot sign token: {0}")]
    Sign(String),
}

/// Signing and checking keys made from one secret.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(..)")
    }
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> JwtKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss"]);
        JwtKeys { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret), validation }
    }

    /// `tell_<jwt>` for these claims.
    pub fn issue(&self, claims: &Claims) -> Result<String, TokenError> {
        let jwt = jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        Ok(format!("{TOKEN_PREFIX}{jwt}"))
    }

    /// Checks a `tell_<jwt>` token's form, signature, issuer and times.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        let jwt = token.strip_prefix(TOKEN_PREFIX).ok_or(TokenError::NoPrefix)?;
        match jsonwebtoken::decode::<Claims>(jwt, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => Err(match e.kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                _ => TokenError::Malformed,
            }),
        }
    }
}

/// The token in an `Authorization: Bearer …` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, rest) = header.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp_from_now: i64) -> Claims {
        let now = jsonwebtoken::get_current_timestamp();
        Claims {
            sub: "1".into(),
            user: 1,
            email: "a@b.c".into(),
            role: Role::Admin,
            workspace: 1,
            session: "s".into(),
            jti: "j".into(),
            iat: now,
            nbf: now,
            exp: now.saturating_add_signed(exp_from_now),
            iss: ISSUER.into(),
        }
    }

    #[test]
    fn issued_tokens_verify_and_carry_their_claims() {
        let keys = JwtKeys::new(&[7u8; 32]);
        let c = claims(60);
        let token = keys.issue(&c).unwrap();
        assert!(token.starts_with("tell_ey"), "{token}");
        assert_eq!(keys.verify(&token).unwrap(), c);
    }

    #[test]
    fn bad_tokens_are_refused_for_the_right_reason() {
        let keys = JwtKeys::new(&[7u8; 32]);
        let token = keys.issue(&claims(60)).unwrap();
        assert_eq!(JwtKeys::new(&[8u8; 32]).verify(&token), Err(TokenError::BadSignature));
        assert_eq!(keys.verify(&token[5..]), Err(TokenError::NoPrefix));
        assert_eq!(keys.verify("tell_abc.def.ghi"), Err(TokenError::Malformed));
        assert_eq!(keys.verify(&keys.issue(&claims(-10)).unwrap()), Err(TokenError::Expired));
        let mut future = claims(600);
        future.nbf += 300;
        assert_eq!(keys.verify(&keys.issue(&future).unwrap()), Err(TokenError::NotYetValid));
        let mut other = claims(60);
        other.iss = "someone".into();
        assert_eq!(keys.verify(&keys.issue(&other).unwrap()), Err(TokenError::Malformed));
        assert_eq!(keys.verify(&"x".repeat(MAX_TOKEN_LEN + 1)), Err(TokenError::TooLong));
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer("Bearer tell_x"), Some("tell_x"));
        assert_eq!(bearer("bearer  tell_x "), Some("tell_x"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
