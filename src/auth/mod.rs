//! Authentication.
//!
//! - [`client_ip`]: the client's address, behind trusted proxies.
//! - [`keys`]: streaming keys. Clients send 16 raw key bytes (shown to people
//!   as 32 hex characters); the daemon keeps only SHA-256 digests in a
//!   [`keys::KeyRegistry`] built from the control store, so checking a key is
//!   one hash and one hash-map hit, and deleting a key takes effect at the
//!   next lookup.
//! - [`role`]: viewer < editor < admin, per workspace membership.
//! - [`password`]: argon2id hashing off the executor, a bounded number at once.
//! - [`jwt`]: `tell_<jwt>` HS256 tokens.
//! - [`session`]: live sessions in memory and the per-request token check.
//! - [`ratelimit`]: per-IP and per-token limits (governor) with bounded memory.

pub mod client_ip;
#[doc(hidden)]
pub mod fuzz_support;
pub mod jwt;
pub mod keys;
pub mod password;
pub mod ratelimit;
/// Roles are stored with memberships, so the store owns the type.
pub mod role {
    pub use crate::store::control::role::Role;
}
pub mod session;
