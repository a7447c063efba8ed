//! Streaming keys: parsing, digests and the in-memory registry.
//!
//! A key is 16 random bytes, shown once as 32 lowercase hex characters. The
//! control store keeps only `SHA-256(raw 16 bytes)`; the [`KeyRegistry`] maps
//! those digests to their key id and workspace. Checking a key from the wire
//! is one SHA-256 over 16 bytes plus one hash-map hit under a read lock, and
//! the registry never holds a raw key.
//!
//! Last use is recorded without a write lock: each entry carries an atomic
//! "last used" time that a lookup bumps at most once a second, and
//! [`KeyRegistry::drain_last_used`] hands the changed times to a periodic
//! flush ([`Control::flush_key_use`](crate::control::Control::flush_key_use)).
//!
//! The registry mirrors the keys of control.redb; [`crate::control::Control`]
//! changes both together.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;

pub use crate::store::control::KeyInfo;

/// Length of a raw key in bytes.
pub const KEY_LEN: usize = 16;
/// Length of a key as hex text.
pub const HEX_KEY_LEN: usize = 2 * KEY_LEN;
/// A lookup updates a key's last-use time only when it moved by this much,
/// so a busy key does not write to a shared cache line on every frame.
pub const LAST_USED_GRANULARITY_MS: u64 = 1000;

/// Text that is not a streaming key.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyFormatError {
    #[error("a streaming key is {HEX_KEY_LEN} hex characters, got {len}")]
    WrongLength { len: usize },
    #[error("a streaming key is {HEX_KEY_LEN} hex characters (0-9, a-f), got other characters")]
    NotHex,
}

/// Parses a key written as 32 hex characters (either case).
pub fn parse_hex_key(s: &str) -> Result<[u8; KEY_LEN], KeyFormatError> {
    if s.len() != HEX_KEY_LEN {
        return Err(KeyFormatError::WrongLength { len: s.chars().count() });
    }
    let mut raw = [0u8; KEY_LEN];
    hex::decode_to_slice(s, &mut raw).map_err(|_| KeyFormatError::NotHex)?;
    Ok(raw)
}

/// The stored form of a key: SHA-256 of its 16 raw bytes (the store's).
pub use crate::store::control::digest;

#[derive(Debug)]
struct Entry {
    info: KeyInfo,
    /// Latest use seen by lookups, ms since the epoch (0: not used yet).
    last_used_ms: AtomicU64,
    /// The value last handed out by `drain_last_used`.
    drained_ms: AtomicU64,
}

impl Entry {
    fn new(info: KeyInfo) -> Entry {
        Entry { info, last_used_ms: AtomicU64::new(0), drained_ms: AtomicU64::new(0) }
    }
}

/// Digest → key id and workspace, shared by every source (`Arc<KeyRegistry>`).
#[derive(Debug, Default)]
pub struct KeyRegistry {
    map: RwLock<HashMap<[u8; 32], Entry>>,
}

impl KeyRegistry {
    pub fn new() -> KeyRegistry {
        KeyRegistry::default()
    }

    /// A registry holding these keys.
    pub fn from_digests(entries: impl IntoIterator<Item = ([u8; 32], KeyInfo)>) -> KeyRegistry {
        let map = entries.into_iter().map(|(d, info)| (d, Entry::new(info))).collect();
        KeyRegistry { map: RwLock::new(map) }
    }

    /// The key's id and workspace, or `None` for an unknown (or deleted) key.
    /// Records the use at the current time.
    pub fn lookup(&self, raw_key: &[u8; KEY_LEN]) -> Option<KeyInfo> {
        self.lookup_at(raw_key, crate::store::now_ms())
    }

    /// [`lookup`](Self::lookup) with the caller's clock (ms since the epoch).
    pub fn lookup_at(&self, raw_key: &[u8; KEY_LEN], now_ms: u64) -> Option<KeyInfo> {
        let d = digest(raw_key);
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        let entry = map.get(&d)?;
        let seen = entry.last_used_ms.load(Ordering::Relaxed);
        if now_ms >= seen.saturating_add(LAST_USED_GRANULARITY_MS) {
            entry.last_used_ms.fetch_max(now_ms, Ordering::Relaxed);
        }
        Some(entry.info)
    }

    /// Adds (or replaces) a key.
    pub fn insert(&self, digest: [u8; 32], info: KeyInfo) {
        self.write().insert(digest, Entry::new(info));
    }

    /// Removes the key with this id; true if it was present. Takes effect
    /// for every lookup that starts after this returns.
    pub fn remove_id(&self, id: u64) -> bool {
        let mut map = self.write();
        let before = map.len();
        map.retain(|_, e| e.info.id != id);
        map.len() != before
    }

    /// Replaces every key at once (e.g. after reloading the control store).
    /// Last-use times of keys that stay are kept.
    pub fn replace_all(&self, entries: impl IntoIterator<Item = ([u8; 32], KeyInfo)>) {
        let mut map = self.write();
        let mut old = std::mem::take(&mut *map);
        for (d, info) in entries {
            let entry = match old.remove(&d) {
                Some(e) if e.info == info => e,
                _ => Entry::new(info),
            };
            map.insert(d, entry);
        }
    }

    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(key id, last_used_ms)` of every key used since the previous drain,
    /// for [`ControlStore::touch_keys`](crate::store::control::ControlStore::touch_keys). If persisting them fails, they come
    /// back with the next use of each key (at most a second later in time).
    pub fn drain_last_used(&self) -> Vec<(u64, u64)> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for entry in map.values() {
            let used = entry.last_used_ms.load(Ordering::Relaxed);
            if used > entry.drained_ms.fetch_max(used, Ordering::Relaxed) {
                out.push((entry.info.id, used));
            }
        }
        out.sort_unstable();
        out
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<[u8; 32], Entry>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "00112233445566778899aabbccddeeff";

    fn info(id: u64, workspace: u32) -> KeyInfo {
        KeyInfo { id, workspace }
    }

    #[test]
    fn parses_hex_keys_in_either_case() {
        let raw = parse_hex_key(KEY).unwrap();
        assert_eq!(raw[0], 0x00);
        assert_eq!(raw[15], 0xff);
        assert_eq!(parse_hex_key(&KEY.to_uppercase()).unwrap(), raw);
        assert_eq!(parse_hex_key(""), Err(KeyFormatError::WrongLength { len: 0 }));
        assert_eq!(parse_hex_key(&KEY[..31]), Err(KeyFormatError::WrongLength { len: 31 }));
        assert_eq!(parse_hex_key(&format!("{KEY}0")), Err(KeyFormatError::WrongLength { len: 33 }));
        assert_eq!(parse_hex_key(&format!("{}g", &KEY[..31])), Err(KeyFormatError::NotHex));
        assert_eq!(parse_hex_key(&format!(" {}", &KEY[..31])), Err(KeyFormatError::NotHex));
        // 32 bytes but not 32 characters.
        let wide = "é".repeat(16);
        assert!(parse_hex_key(&wide).is_err());
    }

    #[test]
    fn digest_is_sha256_of_the_raw_bytes() {
        let raw = [0u8; 16];
        assert_eq!(hex::encode(digest(&raw)), "374708fff7719dd5979ec875d56cd2286f6d3cf7ec317a3b25632aab28ec37bb");
    }

    #[test]
    fn lookup_insert_remove() {
        let raw = parse_hex_key(KEY).unwrap();
        let other = [7u8; 16];
        let reg = KeyRegistry::from_digests([(digest(&raw), info(1, 1))]);
        assert_eq!(reg.len(), 1);
        assert_eq!(reg.lookup(&raw), Some(info(1, 1)));
        assert_eq!(reg.lookup(&other), None);
        reg.insert(digest(&other), info(2, 7));
        assert_eq!(reg.lookup(&other), Some(info(2, 7)));
        assert!(reg.remove_id(1));
        assert!(!reg.remove_id(1));
        assert_eq!(reg.lookup(&raw), None);
        assert_eq!(reg.len(), 1);
        reg.replace_all([]);
        assert!(reg.is_empty());
    }

    #[test]
    fn last_use_is_coarse_and_drained_once() {
        let a = [1u8; 16];
        let b = [2u8; 16];
        let reg = KeyRegistry::from_digests([(digest(&a), info(1, 1)), (digest(&b), info(2, 1))]);
        assert_eq!(reg.drain_last_used(), vec![]);
        reg.lookup_at(&a, 10_000);
        reg.lookup_at(&a, 10_500); // under a second later: not recorded
        assert_eq!(reg.drain_last_used(), vec![(1, 10_000)]);
        assert_eq!(reg.drain_last_used(), vec![]);
        reg.lookup_at(&a, 11_000);
        reg.lookup_at(&b, 12_000);
        assert_eq!(reg.drain_last_used(), vec![(1, 11_000), (2, 12_000)]);
        // A clock that goes back does not move last use backwards.
        reg.lookup_at(&b, 5_000);
        assert_eq!(reg.drain_last_used(), vec![]);
    }

    #[test]
    fn replace_all_keeps_last_use_of_unchanged_keys() {
        let a = [1u8; 16];
        let reg = KeyRegistry::from_digests([(digest(&a), info(1, 1))]);
        reg.lookup_at(&a, 50_000);
        reg.replace_all([(digest(&a), info(1, 1)), ([9u8; 32], info(3, 2))]);
        assert_eq!(reg.len(), 2);
        assert_eq!(reg.drain_last_used(), vec![(1, 50_000)]);
    }

    #[test]
    fn last_use_reaches_the_control_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::control::ControlStore::open(dir.path()).unwrap();
        let control = crate::control::Control::new(store).unwrap();
        let (rec, hex_key) = control.create_key("k", 4, "test").unwrap();
        let raw = parse_hex_key(&hex_key).unwrap();
        assert_eq!(control.keys().lookup(&raw), Some(info(rec.id, 4)));
        control.flush_key_use().unwrap();
        assert!(control.store().get_key(rec.id).unwrap().last_used_ms.is_some());
    }

    #[test]
    fn registry_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<KeyRegistry>();
    }
}
