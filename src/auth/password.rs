//! Passwords: argon2id (m = 19456 KiB, t = 2, p = 1) in PHC strings.
//!
//! A hash takes tens of milliseconds of CPU and 19 MiB of memory, so
//! [`Hasher`] runs them on the blocking pool behind a semaphore: at most
//! `max_in_flight` at once, the rest wait their turn without holding an
//! executor thread. Login with an unknown email verifies against a dummy
//! hash made with the same parameters, so it costs the same time as a wrong
//! password and gets the same answer.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use thiserror::Error;
use tokio::sync::{OnceCell, Semaphore};

use crate::metrics::Metrics;

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted (bounds the work an attacker can ask for).
pub const MAX_PASSWORD_LEN: usize = 1024;
pub const MEMORY_KIB: u32 = 19_456;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;

#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasswordError {
    #[error("password must be at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    #[error("password must be at most {MAX_PASSWORD_LEN} bytes")]
    TooLong,
    #[error("password hashing failed: {0}")]
    Hash(String),
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Refuses passwords that are too short or too long.
pub fn check_policy(password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(PasswordError::TooShort);
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(PasswordError::TooLong);
    }
    Ok(())
}

/// Hashes a password (blocking: tens of milliseconds).
pub fn hash_blocking(password: &str) -> Result<String, PasswordError> {
    check_policy(password)?;
    let hash: PasswordHash =
        argon2().hash_password(password.as_bytes()).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string (blocking). A damaged hash never matches.
pub fn verify_blocking(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Runs hashes off the executor, a bounded number at a time (each takes
/// 19 MiB). Hashes in flight and requests that had to wait for a slot are
/// counted in [`Metrics`].
#[derive(Debug, Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    dummy: Arc<OnceCell<String>>,
    metrics: Arc<Metrics>,
}

impl Hasher {
    pub fn new(max_in_flight: usize, metrics: Arc<Metrics>) -> Hasher {
        let permits = Arc::new(Semaphore::new(max_in_flight.max(1)));
        Hasher { permits, dummy: Arc::new(OnceCell::new()), metrics }
    }

    /// Hashes a new password (policy checked first, without waiting).
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        check_policy(&password)?;
        self.run(move || hash_blocking(&password)).await?
    }

    /// Verifies against `phc`, or against a dummy hash when there is none
    /// (unknown user), so both cases take the same time; false then.
    pub async fn verify(&self, password: String, phc: Option<String>) -> bool {
        let (target, real) = match phc {
            Some(p) => (p, true),
            None => match self.dummy_hash().await {
                Ok(d) => (d, false),
                Err(_) => return false,
            },
        };
        let ok = self.run(move || verify_blocking(&password, &target)).await.unwrap_or(false);
        ok && real
    }

    /// Computes the dummy hash now (blocking), so the first login with an
    /// unknown email does not pay for it and stand out by its time.
    pub fn prime_blocking(&self) -> Result<(), PasswordError> {
        if self.dummy.get().is_none() {
            let hash = hash_blocking(&hex::encode(rand::random::<[u8; 16]>()))?;
            let _ = self.dummy.set(hash);
        }
        Ok(())
    }

    async fn dummy_hash(&self) -> Result<String, PasswordError> {
        let hasher = self.clone();
        self.dummy
            .get_or_try_init(|| async move {
                let random = hex::encode(rand::random::<[u8; 16]>());
                hasher.run(move || hash_blocking(&random)).await?
            })
            .await
            .cloned()
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, PasswordError> {
        let permit = match self.permits.try_acquire() {
            Ok(p) => Ok(p),
            Err(_) => {
                self.metrics.password_hash_waits.fetch_add(1, Ordering::Relaxed);
                self.permits.acquire().await
            }
        };
        let _permit = permit.map_err(|e| PasswordError::Hash(e.to_string()))?;
        let in_flight = &self.metrics.password_hashes_in_flight;
        in_flight.fetch_add(1, Ordering::Relaxed);
        let done = tokio::task::spawn_blocking(f).await;
        in_flight.fetch_sub(1, Ordering::Relaxed);
        done.map_err(|e| PasswordError::Hash(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_the_required_parameters() {
        let h = hash_blocking("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_blocking("correct horse", &h));
        assert!(!verify_blocking("wrong horse", &h));
        assert!(!verify_blocking("correct horse", "not a hash"));
    }

    #[test]
    fn policy_refuses_short_and_huge_passwords() {
        assert_eq!(check_policy("1234567"), Err(PasswordError::TooShort));
        assert_eq!(check_policy("12345678"), Ok(()));
        assert_eq!(check_policy(&"x".repeat(MAX_PASSWORD_LEN + 1)), Err(PasswordError::TooLong));
    }

    #[tokio::test]
    async fn unknown_users_never_verify() {
        let h = Hasher::new(1, Arc::default());
        let real = h.hash("password1".into()).await.unwrap();
        assert!(h.verify("password1".into(), Some(real)).await);
        assert!(!h.verify("password1".into(), None).await);
        assert_eq!(h.hash("short".into()).await, Err(PasswordError::TooShort));
    }
}
