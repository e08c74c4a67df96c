//! The cache coordinator's stored state: versioned entries and the log of
//! recent changes that a reconnecting subscriber catches up from.
//!
//! | key | value |
//! | --- | --- |
//! | `meta` | version, compacted_through: two u64 LE |
//! | `e/` + key | version u64 LE, expires_at_ms u64 LE (0: never), the value |
//! | `c/` + version (u64 BE) | the change: JSON `{"key", "version", "op"}` |
//!
//! Every change takes the next version of the namespace, stored in the same
//! event as the change, so versions never go backwards, restarts included.
//! The change log keeps the newest `changes_max` changes; a subscriber
//! whose last version is older than that gets a reset instead.

use serde_json::json;

use crate::object::{ListOptions, Storage, StorageError};

const META_KEY: &[u8] = b"meta";
pub(super) const ENTRY_PREFIX: &[u8] = b"e/";
const CHANGE_PREFIX: &[u8] = b"c/";
/// Changes deleted per compaction step: compaction runs with every change,
/// so it keeps up with any write rate while bounding one event's work.
const COMPACT_STEP_MAX: usize = 64;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Meta {
    /// The version of the latest change (0: none yet).
    pub version: u64,
    /// Changes up to this version are no longer in the log.
    pub compacted_through: u64,
}

impl Meta {
    fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.version.to_le_bytes());
        out[8..].copy_from_slice(&self.compacted_through.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Meta> {
        if bytes.len() != 16 {
            return None;
        }
        let meta = Meta {
            version: u64::from_le_bytes(bytes[..8].try_into().ok()?),
            compacted_through: u64::from_le_bytes(bytes[8..].try_into().ok()?),
        };
        (meta.compacted_through <= meta.version).then_some(meta)
    }
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub version: u64,
    pub expires_at_ms: Option<u64>,
    pub value: Vec<u8>,
}

impl Entry {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.value.len());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.expires_at_ms.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&self.value);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Entry> {
        let version = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let expires = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
        Some(Entry {
            version,
            expires_at_ms: (expires != 0).then_some(expires),
            value: bytes.get(16..)?.to_vec(),
        })
    }

    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }
}

fn entry_key(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENTRY_PREFIX.len() + key.len());
    out.extend_from_slice(ENTRY_PREFIX);
    out.extend_from_slice(key);
    out
}

fn change_key(version: u64) -> [u8; 10] {
    let mut out = [0u8; 10];
    out[..2].copy_from_slice(CHANGE_PREFIX);
    out[2..].copy_from_slice(&version.to_be_bytes());
    out
}

pub(super) fn load_meta(storage: &mut Storage<'_, '_>) -> Result<Meta, StorageError> {
    match storage.get(META_KEY)? {
        None => Ok(Meta::default()),
        Some(bytes) => {
            Meta::decode(&bytes).ok_or(StorageError::CorruptRecord { what: "cache meta" })
        }
    }
}

pub(super) fn get(
    storage: &mut Storage<'_, '_>,
    key: &[u8],
) -> Result<Option<Entry>, StorageError> {
    let bytes = storage.get(&entry_key(key))?;
    bytes
        .map(|b| {
            Entry::decode(&b).ok_or(StorageError::CorruptRecord {
                what: "cache entry",
            })
        })
        .transpose()
}

pub(super) fn put(
    storage: &mut Storage<'_, '_>,
    key: &[u8],
    entry: &Entry,
) -> Result<(), StorageError> {
    storage.put(&entry_key(key), &entry.encode())
}

pub(super) fn delete(storage: &mut Storage<'_, '_>, key: &[u8]) -> Result<bool, StorageError> {
    storage.delete(&entry_key(key))
}

/// Keys stored under `prefix`, at most `limit`.
pub(super) fn keys_with_prefix(
    storage: &mut Storage<'_, '_>,
    prefix: &[u8],
    limit: usize,
) -> Result<Vec<Vec<u8>>, StorageError> {
    let full = entry_key(prefix);
    let entries = storage.list(&ListOptions {
        prefix: Some(&full),
        limit: Some(limit),
        ..ListOptions::default()
    })?;
    Ok(entries
        .into_iter()
        .map(|(k, _)| k[ENTRY_PREFIX.len()..].to_vec())
        .collect())
}

/// The JSON a subscriber receives for a change.
pub(super) fn change_json(key: &[u8], version: u64, op: &str) -> String {
    json!({ "key": String::from_utf8_lossy(key), "version": version, "op": op }).to_string()
}

/// Records a change under the next version; returns the version and the
/// change's JSON. Old changes past `changes_max` are compacted.
pub(super) fn record(
    storage: &mut Storage<'_, '_>,
    meta: &mut Meta,
    key: &[u8],
    op: &str,
    changes_max: u64,
) -> Result<(u64, String), StorageError> {
    let version = meta.version + 1;
    let text = change_json(key, version, op);
    storage.put(&change_key(version), text.as_bytes())?;
    meta.version = version;
    let mut steps = 0;
    while meta.version - meta.compacted_through > changes_max && steps < COMPACT_STEP_MAX {
        meta.compacted_through += 1;
        storage.delete(&change_key(meta.compacted_through))?;
        steps += 1;
    }
    storage.put(META_KEY, &meta.encode())?;
    assert!(meta.compacted_through <= meta.version);
    Ok((version, text))
}

/// The logged changes after version `since`, at most `limit`.
pub(super) fn changes_since(
    storage: &mut Storage<'_, '_>,
    since: u64,
    limit: usize,
) -> Result<Vec<String>, StorageError> {
    let start = change_key(since.saturating_add(1));
    let entries = storage.list(&ListOptions {
        prefix: Some(CHANGE_PREFIX),
        start: Some(&start),
        limit: Some(limit),
        ..ListOptions::default()
    })?;
    Ok(entries
        .into_iter()
        .map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_meta_round_trip() {
        let entry = Entry {
            version: 4,
            expires_at_ms: Some(99),
            value: b"v".to_vec(),
        };
        assert_eq!(Entry::decode(&entry.encode()), Some(entry));
        let meta = Meta {
            version: 10,
            compacted_through: 3,
        };
        assert_eq!(Meta::decode(&meta.encode()), Some(meta));
        let backwards = Meta {
            version: 1,
            compacted_through: 3,
        };
        assert_eq!(Meta::decode(&backwards.encode()), None);
    }
}
