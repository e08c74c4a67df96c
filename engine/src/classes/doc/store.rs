//! How a document is kept in its object's storage.
//!
//! | key | value |
//! | --- | --- |
//! | `m` | [`Meta`]: the next log sequence number, the log's entries and bytes, the snapshot's bytes and chunks |
//! | `s` + chunk (u32 BE) | the snapshot: a v1 update of the garbage-collected document, in chunks of [`CHUNK_BYTES`] |
//! | `u` + seq (u64 BE) + chunk (u16 BE) | one logged update, in chunks |
//!
//! The document is the snapshot with the log applied in order. An update
//! is appended with the meta record in one transaction of the event that
//! receives it, so both commit together or not at all. Compaction writes a new snapshot, deletes the
//! old one and the whole log, and writes the meta record, in one event:
//! one transaction.

use crate::object::{ListOptions, Storage, StorageError, TransactionError};

/// A key and its value, as `list` gives them.
type Entry = (Vec<u8>, Vec<u8>);

/// Largest value the doc class writes (a class configured with a smaller
/// `value_bytes_max` cannot store documents).
pub const CHUNK_BYTES: usize = 64 * 1024;
/// Entries read per `list` while loading.
const LIST_PAGE_ENTRIES: usize = 10_000;

const META_KEY: &[u8] = b"m";
const SNAPSHOT_PREFIX: u8 = b's';
const LOG_PREFIX: u8 = b'u';
const META_VERSION: u8 = 1;
const META_BYTES: usize = 1 + 8 * 4 + 4;

/// What the object knows about its stored document without reading it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meta {
    pub next_seq: u64,
    pub log_entries: u64,
    pub log_bytes: u64,
    pub snapshot_bytes: u64,
    pub snapshot_chunks: u32,
}

impl Meta {
    /// The stored document's bytes, snapshot and log.
    pub fn doc_bytes(&self) -> u64 {
        self.snapshot_bytes + self.log_bytes
    }

    fn encode(&self) -> [u8; META_BYTES] {
        let mut out = [0u8; META_BYTES];
        out[0] = META_VERSION;
        out[1..9].copy_from_slice(&self.next_seq.to_be_bytes());
        out[9..17].copy_from_slice(&self.log_entries.to_be_bytes());
        out[17..25].copy_from_slice(&self.log_bytes.to_be_bytes());
        out[25..33].copy_from_slice(&self.snapshot_bytes.to_be_bytes());
        out[33..37].copy_from_slice(&self.snapshot_chunks.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Meta, StorageError> {
        let corrupt = StorageError::CorruptRecord { what: "doc meta" };
        if bytes.len() != META_BYTES || bytes[0] != META_VERSION {
            return Err(corrupt);
        }
        let u64_at = |i: usize| {
            u64::from_be_bytes(
                bytes[i..i + 8]
                    .try_into()
                    .expect("8 bytes by the length check"),
            )
        };
        let meta = Meta {
            next_seq: u64_at(1),
            log_entries: u64_at(9),
            log_bytes: u64_at(17),
            snapshot_bytes: u64_at(25),
            snapshot_chunks: u32::from_be_bytes(
                bytes[33..37]
                    .try_into()
                    .expect("4 bytes by the length check"),
            ),
        };
        // Check at both ends: a record read back must make sense.
        if meta.log_entries > meta.next_seq {
            return Err(corrupt);
        }
        Ok(meta)
    }
}

/// Reads the meta record (an empty document has none).
pub fn read_meta(s: &mut Storage<'_, '_>) -> Result<Meta, StorageError> {
    match s.get(META_KEY)? {
        Some(bytes) => Meta::decode(&bytes),
        None => Ok(Meta::default()),
    }
}

fn write_meta(s: &mut Storage<'_, '_>, meta: &Meta) -> Result<(), StorageError> {
    debug_assert!(meta.log_entries <= meta.next_seq);
    s.put(META_KEY, &meta.encode())
}

fn log_key(seq: u64, chunk: u16) -> [u8; 11] {
    let mut key = [0u8; 11];
    key[0] = LOG_PREFIX;
    key[1..9].copy_from_slice(&seq.to_be_bytes());
    key[9..11].copy_from_slice(&chunk.to_be_bytes());
    key
}

fn snapshot_key(chunk: u32) -> [u8; 5] {
    let mut key = [0u8; 5];
    key[0] = SNAPSHOT_PREFIX;
    key[1..5].copy_from_slice(&chunk.to_be_bytes());
    key
}

/// Appends one update to the log. The caller checked its size. All or
/// nothing: a limit failing on a later chunk leaves no earlier one behind
/// (the log would no longer match its meta record).
pub fn append(s: &mut Storage<'_, '_>, meta: &mut Meta, update: &[u8]) -> Result<(), StorageError> {
    let next = s
        .transaction(|t| append_unguarded(t, *meta, update))
        .map_err(|TransactionError::Aborted(e)| e)?;
    *meta = next;
    Ok(())
}

/// Appends inside the caller's transaction; returns the new meta record.
fn append_unguarded(
    s: &mut Storage<'_, '_>,
    meta: Meta,
    update: &[u8],
) -> Result<Meta, StorageError> {
    assert!(update.len() <= CHUNK_BYTES * usize::from(u16::MAX));
    let seq = meta.next_seq;
    for (i, chunk) in update.chunks(CHUNK_BYTES).enumerate() {
        s.put(&log_key(seq, i as u16), chunk)?;
    }
    let mut next = meta;
    next.next_seq += 1;
    next.log_entries += 1;
    next.log_bytes += update.len() as u64;
    write_meta(s, &next)?;
    Ok(next)
}

/// The stored document: its snapshot (if any) and its logged updates in
/// order.
pub struct Stored {
    pub snapshot: Option<Vec<u8>>,
    pub log: Vec<Vec<u8>>,
}

/// Reads the whole stored document.
pub fn load(s: &mut Storage<'_, '_>, meta: &Meta) -> Result<Stored, StorageError> {
    let snapshot = if meta.snapshot_chunks == 0 {
        None
    } else {
        let mut bytes = Vec::with_capacity(meta.snapshot_bytes as usize);
        for (_, value) in list_prefix(s, SNAPSHOT_PREFIX)? {
            bytes.extend_from_slice(&value);
        }
        if bytes.len() as u64 != meta.snapshot_bytes {
            return Err(StorageError::CorruptRecord {
                what: "doc snapshot",
            });
        }
        Some(bytes)
    };
    let mut log: Vec<Vec<u8>> = Vec::with_capacity(meta.log_entries as usize);
    let mut last_seq = None;
    for (key, value) in list_prefix(s, LOG_PREFIX)? {
        let seq = &key[1..9];
        if last_seq.as_deref() == Some(seq) {
            log.last_mut()
                .expect("a chunk follows its entry")
                .extend_from_slice(&value);
        } else {
            last_seq = Some(seq.to_vec());
            log.push(value);
        }
    }
    if log.len() as u64 != meta.log_entries {
        return Err(StorageError::CorruptRecord { what: "doc log" });
    }
    Ok(Stored { snapshot, log })
}

/// Every entry under a one-byte prefix, in key order.
fn list_prefix(s: &mut Storage<'_, '_>, prefix: u8) -> Result<Vec<Entry>, StorageError> {
    let prefix = [prefix];
    let mut all = Vec::new();
    loop {
        let after = all.last().map(|(k, _): &Entry| k.clone());
        let page = s.list(&ListOptions {
            prefix: Some(&prefix),
            start_after: after.as_deref(),
            limit: Some(LIST_PAGE_ENTRIES),
            ..ListOptions::default()
        })?;
        let full = page.len() == LIST_PAGE_ENTRIES;
        all.extend(page);
        if !full {
            return Ok(all);
        }
    }
}

/// Replaces the snapshot with `snapshot`, deletes the log, and logs
/// `pending` again (updates still waiting for a gap), as one transaction.
pub fn compact(
    s: &mut Storage<'_, '_>,
    meta: &mut Meta,
    snapshot: &[u8],
    pending: &[Vec<u8>],
) -> Result<(), StorageError> {
    let next = s
        .transaction(|t| compact_unguarded(t, *meta, snapshot, pending))
        .map_err(|TransactionError::Aborted(e)| e)?;
    *meta = next;
    Ok(())
}

fn compact_unguarded(
    s: &mut Storage<'_, '_>,
    meta: Meta,
    snapshot: &[u8],
    pending: &[Vec<u8>],
) -> Result<Meta, StorageError> {
    for chunk in 0..meta.snapshot_chunks {
        s.delete(&snapshot_key(chunk))?;
    }
    let doomed: Vec<Vec<u8>> = list_prefix(s, LOG_PREFIX)?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for key in &doomed {
        s.delete(key)?;
    }
    let chunks = snapshot.chunks(CHUNK_BYTES);
    let snapshot_chunks = chunks.len() as u32;
    for (i, chunk) in chunks.enumerate() {
        s.put(&snapshot_key(i as u32), chunk)?;
    }
    let mut next = Meta {
        next_seq: meta.next_seq,
        log_entries: 0,
        log_bytes: 0,
        snapshot_bytes: snapshot.len() as u64,
        snapshot_chunks,
    };
    write_meta(s, &next)?;
    for update in pending {
        next = append_unguarded(s, next, update)?;
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_a_bad_record_is_refused() {
        let meta = Meta {
            next_seq: 9,
            log_entries: 3,
            log_bytes: 100,
            snapshot_bytes: 70_000,
            snapshot_chunks: 2,
        };
        assert_eq!(Meta::decode(&meta.encode()).expect("decodes"), meta);
        assert!(Meta::decode(&meta.encode()[..10]).is_err());
        let mut bad = meta.encode();
        bad[0] = 9;
        assert!(Meta::decode(&bad).is_err());
    }

    #[test]
    fn log_keys_sort_by_sequence_then_chunk() {
        assert!(log_key(1, 2) < log_key(2, 0));
        assert!(log_key(255, 0) < log_key(256, 0));
        assert!(snapshot_key(1) < snapshot_key(256));
    }
}
