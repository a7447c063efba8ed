//! Authentication.
//!
//! - [`keys`]: streaming keys. Clients send 16 raw key bytes (shown to people
//!   as 32 hex characters); the daemon keeps only SHA-256 digests in a
//!   [`keys::KeyRegistry`] built from the control store, so checking a key is
//!   one hash and one hash-map hit, and deleting a key takes effect at the
//!   next lookup.
//!
//! Users, passwords, JWTs, sessions and rate limits come with the admin API.

pub mod keys;
