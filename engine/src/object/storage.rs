//! An object's storage: key-value pairs of bytes, transactions, alarms.
//!
//! Writes are visible to the object's reads at once. Whatever the object
//! sends after a write — a response, a message — waits until the write is
//! durable (the output gate), unless the write was made with
//! [`WriteOptions::allow_unconfirmed`]. An event's writes are atomic: they
//! are all committed together, and a handler that panics leaves none of
//! them behind. [`Storage::transaction`] makes the same promise for part of
//! an event, with a rollback when its closure returns an error.

use std::fmt;
use std::ops::Bound;

use crate::keys;

/// Limits on what an object may store, set per class.
#[derive(Debug, Clone, Copy)]
pub struct StorageLimits {
    pub key_bytes_max: usize,
    pub value_bytes_max: usize,
    /// Keys plus values of all the object's data.
    pub object_bytes_max: u64,
}

impl Default for StorageLimits {
    /// Cloudflare's key-value limits (2 KiB keys, 128 KiB values) and the
    /// seed's 1 GiB per object.
    fn default() -> Self {
        StorageLimits {
            key_bytes_max: 2048,
            value_bytes_max: 128 * 1024,
            object_bytes_max: 1 << 30,
        }
    }
}

/// A key and its value, as `list` returns them.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Most entries one `list` returns.
pub const LIST_ENTRIES_MAX: usize = 100_000;

/// The latest time an alarm may be set for, in ms since the Unix epoch:
/// the largest time a JavaScript `Date` holds (year 275760), so that every
/// alarm time a Durable Objects program can name is accepted and none
/// beyond it.
pub const ALARM_AT_MS_MAX: u64 = 8_640_000_000_000_000;

/// How a write is made.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// The output gate does not wait for this write. It is still durable
    /// soon after, and atomic with the event's other writes.
    pub allow_unconfirmed: bool,
    /// A hint that the value will not be read back soon. Values live in
    /// memory only until they reach fjall, so durin accepts the hint and
    /// has nothing to drop.
    pub no_cache: bool,
}

/// What `list` returns, and in which order.
#[derive(Debug, Clone, Default)]
pub struct ListOptions<'a> {
    pub prefix: Option<&'a [u8]>,
    /// First key, inclusive.
    pub start: Option<&'a [u8]>,
    /// First key, exclusive (wins over `start` if both are set).
    pub start_after: Option<&'a [u8]>,
    /// Last key, exclusive.
    pub end: Option<&'a [u8]>,
    pub reverse: bool,
    /// At most this many entries (and never more than [`LIST_ENTRIES_MAX`]).
    pub limit: Option<usize>,
}

/// A storage operation that cannot be done.
#[derive(Debug)]
#[non_exhaustive]
pub enum StorageError {
    KeyTooLarge {
        bytes: usize,
        max: usize,
    },
    ValueTooLarge {
        bytes: usize,
        max: usize,
    },
    /// The write would take the object past its stored-bytes limit.
    ObjectTooLarge {
        bytes: u64,
        max: u64,
    },
    /// The storage engine failed.
    Engine(durin_storage::Error),
    /// An engine record did not validate when read back.
    CorruptRecord {
        what: &'static str,
    },
    /// An alarm time past [`ALARM_AT_MS_MAX`].
    AlarmTooLate {
        at_ms: u64,
        max: u64,
    },
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::KeyTooLarge { bytes, max } => {
                write!(f, "key of {bytes} bytes is over the {max}-byte limit")
            }
            StorageError::ValueTooLarge { bytes, max } => {
                write!(f, "value of {bytes} bytes is over the {max}-byte limit")
            }
            StorageError::ObjectTooLarge { bytes, max } => {
                write!(
                    f,
                    "the object would store {bytes} bytes, over its {max}-byte limit"
                )
            }
            StorageError::Engine(e) => write!(f, "storage engine: {e}"),
            StorageError::CorruptRecord { what } => {
                write!(f, "the stored {what} record does not validate")
            }
            StorageError::AlarmTooLate { at_ms, max } => {
                write!(f, "an alarm at {at_ms} ms is past the latest time an alarm may have ({max} ms after the Unix epoch)")
            }
        }
    }
}

impl std::error::Error for StorageError {}

impl From<durin_storage::Error> for StorageError {
    fn from(e: durin_storage::Error) -> Self {
        StorageError::Engine(e)
    }
}

/// Why a transaction did not commit.
#[derive(Debug)]
pub enum TransactionError<E> {
    /// The closure returned this error; every write in it was rolled back.
    Aborted(E),
}

/// An object's storage handle, borrowed from its [`Context`](super::Context).
pub struct Storage<'c, 's> {
    pub(super) ctx: &'c mut super::Context<'s>,
}

/// The engine's record of an object's alarm.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
pub(crate) struct AlarmRecord {
    pub at_ms: u64,
    /// Failed runs so far of this alarm.
    pub retries: u32,
    /// The class that owns the object, to rebuild it when the alarm fires.
    pub class: String,
}

/// The engine's record of how many bytes an object stores.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, Copy, PartialEq)]
pub(crate) struct SizeRecord {
    pub bytes: u64,
}

const ALARM_RECORD: &[u8] = b"alarm";
const SIZE_RECORD: &[u8] = b"size";

/// Decodes an rkyv record, validating it; the bytes are copied to an
/// aligned buffer first since stored values carry no alignment.
pub(crate) fn decode_record<T>(bytes: &[u8], what: &'static str) -> Result<T, StorageError>
where
    T: rkyv::Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
{
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<T, rkyv::rancor::Error>(&aligned)
        .map_err(|_| StorageError::CorruptRecord { what })
}

pub(crate) fn encode_record<T>(record: &T) -> rkyv::util::AlignedVec
where
    T: for<'a> rkyv::Serialize<
        rkyv::api::high::HighSerializer<
            rkyv::util::AlignedVec,
            rkyv::ser::allocator::ArenaHandle<'a>,
            rkyv::rancor::Error,
        >,
    >,
{
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(record)
        .expect("serializing a plain record cannot fail");
    // Check at both ends: what is written must read back.
    debug_assert!(!bytes.is_empty());
    bytes
}

/// Reads `id`'s alarm record.
pub(crate) fn read_alarm(
    store: &durin_storage::ShardStore,
    id: &crate::ObjectId,
) -> Result<Option<AlarmRecord>, StorageError> {
    match store.get(&id.0, &keys::record_key(id, ALARM_RECORD))? {
        Some(bytes) => Ok(Some(decode_record::<AlarmRecord>(&bytes, "alarm")?)),
        None => Ok(None),
    }
}

/// Writes `id`'s alarm record and its index entry, replacing `previous`.
pub(crate) fn write_alarm(
    store: &mut durin_storage::ShardStore,
    id: &crate::ObjectId,
    previous: Option<&AlarmRecord>,
    record: &AlarmRecord,
) -> durin_storage::Seq {
    if let Some(previous) = previous {
        store.delete(&id.0, &keys::alarm_index_key(previous.at_ms, id));
    }
    store.put(&id.0, &keys::alarm_index_key(record.at_ms, id), b"");
    store.put(
        &id.0,
        &keys::record_key(id, ALARM_RECORD),
        &encode_record(record),
    )
}

/// Deletes `id`'s alarm record `previous` and its index entry.
pub(crate) fn clear_alarm(
    store: &mut durin_storage::ShardStore,
    id: &crate::ObjectId,
    previous: &AlarmRecord,
) -> durin_storage::Seq {
    store.delete(&id.0, &keys::alarm_index_key(previous.at_ms, id));
    store.delete(&id.0, &keys::record_key(id, ALARM_RECORD))
}

impl Storage<'_, '_> {
    fn owner(&self) -> [u8; 16] {
        self.ctx.id.0
    }

    fn check_key(&self, key: &[u8]) -> Result<(), StorageError> {
        let max = self.ctx.limits.key_bytes_max;
        if key.len() > max {
            return Err(StorageError::KeyTooLarge {
                bytes: key.len(),
                max,
            });
        }
        Ok(())
    }

    /// Reads `key`.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.get_with(key, |v| v.map(<[u8]>::to_vec))
    }

    /// Reads `key` and hands the bytes to `f` without copying them.
    pub fn get_with<R>(
        &mut self,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R, StorageError> {
        self.check_key(key)?;
        let owner = self.owner();
        keys::data_key(&mut self.ctx.key_buf, &self.ctx.id, key);
        let value = self.ctx.store.get(&owner, &self.ctx.key_buf)?;
        let len = value.as_deref().map(|v| stored_size(key, v));
        self.remember_len(key, len);
        Ok(f(value.as_deref()))
    }

    /// Reads several keys; the answer is in the same order.
    pub fn get_many(&mut self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        keys.iter().map(|k| self.get(k)).collect()
    }

    /// Writes `key`. Fails, writing nothing, past a limit.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.put_with(key, value, WriteOptions::default())
    }

    /// Writes `key` with options.
    pub fn put_with(
        &mut self,
        key: &[u8],
        value: &[u8],
        options: WriteOptions,
    ) -> Result<(), StorageError> {
        self.check_key(key)?;
        let max = self.ctx.limits.value_bytes_max;
        if value.len() > max {
            return Err(StorageError::ValueTooLarge {
                bytes: value.len(),
                max,
            });
        }
        let old = self.stored_len(key)?;
        let new = stored_size(key, value);
        self.resize(old, new)?;
        let owner = self.owner();
        keys::data_key(&mut self.ctx.key_buf, &self.ctx.id, key);
        let seq = self.ctx.store.put(&owner, &self.ctx.key_buf, value);
        self.note_write(seq, options);
        self.remember_len(key, Some(new));
        Ok(())
    }

    /// Writes several entries, all or none: a limit failing for one writes
    /// none of them.
    pub fn put_many(&mut self, entries: &[(&[u8], &[u8])]) -> Result<(), StorageError> {
        let savepoint = self.ctx.store.savepoint();
        let saved = self.snapshot();
        for (key, value) in entries {
            if let Err(e) = self.put(key, value) {
                self.ctx.store.rollback_to(savepoint);
                self.restore(saved);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Deletes `key`; returns whether it existed.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool, StorageError> {
        self.delete_with(key, WriteOptions::default())
    }

    /// Deletes `key` with options; returns whether it existed.
    pub fn delete_with(&mut self, key: &[u8], options: WriteOptions) -> Result<bool, StorageError> {
        let Some(old) = self.stored_len(key)? else {
            return Ok(false);
        };
        self.resize(Some(old), 0)?;
        let owner = self.owner();
        keys::data_key(&mut self.ctx.key_buf, &self.ctx.id, key);
        let seq = self.ctx.store.delete(&owner, &self.ctx.key_buf);
        self.note_write(seq, options);
        self.remember_len(key, None);
        Ok(true)
    }

    /// Deletes several keys; returns how many existed.
    pub fn delete_many(&mut self, keys: &[&[u8]]) -> Result<u64, StorageError> {
        let mut deleted = 0;
        for key in keys {
            deleted += u64::from(self.delete(key)?);
        }
        Ok(deleted)
    }

    /// Lists entries in key order (see [`ListOptions`]).
    pub fn list(&mut self, options: &ListOptions<'_>) -> Result<Vec<Entry>, StorageError> {
        let limit = options
            .limit
            .unwrap_or(LIST_ENTRIES_MAX)
            .min(LIST_ENTRIES_MAX);
        let mut entries = Vec::new();
        if limit == 0 {
            return Ok(entries);
        }
        let (lo, hi) = self.list_bounds(options);
        let range = (as_ref_bound(&lo), as_ref_bound(&hi));
        let owner = self.owner();
        self.ctx
            .store
            .scan(&owner, range, options.reverse, |key, value| {
                entries.push((key[keys::DATA_PREFIX_BYTES..].to_vec(), value.to_vec()));
                entries.len() < limit
            })?;
        Ok(entries)
    }

    /// The bounds of a list on full keys.
    fn list_bounds(&self, options: &ListOptions<'_>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        let full = |key: &[u8]| {
            let mut out = Vec::new();
            keys::data_key(&mut out, &self.ctx.id, key);
            out
        };
        let mut lo = match (options.start_after, options.start) {
            (Some(after), _) => Bound::Excluded(full(after)),
            (None, Some(start)) => Bound::Included(full(start)),
            (None, None) => Bound::Included(full(b"")),
        };
        let mut hi = match options.end {
            Some(end) => Bound::Excluded(full(end)),
            None => Bound::Excluded(keys::data_end(&self.ctx.id)),
        };
        if let Some(prefix) = options.prefix {
            let prefix_lo = full(prefix);
            if bound_below(&lo, &prefix_lo) {
                lo = Bound::Included(prefix_lo);
            }
            let prefix_hi = match successor(prefix) {
                Some(next) => full(&next),
                None => keys::data_end(&self.ctx.id),
            };
            if bound_above(&hi, &prefix_hi) {
                hi = Bound::Excluded(prefix_hi);
            }
        }
        (lo, hi)
    }

    /// Deletes everything the object stores, its SQL database included
    /// (its alarm stays, as in Durable Objects). Returns how many keys
    /// were deleted.
    pub fn delete_all(&mut self) -> Result<u64, StorageError> {
        self.delete_sql_database()?;
        let owner = self.owner();
        let mut lo = Vec::new();
        keys::data_prefix(&mut lo, &self.ctx.id);
        let hi = keys::data_end(&self.ctx.id);
        let mut doomed = Vec::new();
        self.ctx.store.scan(
            &owner,
            (Bound::Included(&lo[..]), Bound::Excluded(&hi[..])),
            false,
            |key, _| {
                doomed.push(key.to_vec());
                true
            },
        )?;
        let mut seq = None;
        for key in &doomed {
            seq = Some(self.ctx.store.delete(&owner, key));
        }
        if let Some(seq) = seq {
            self.note_write(seq, WriteOptions::default());
        }
        self.ctx.stored_bytes = Some(0);
        self.ctx.size_changed = true;
        self.ctx.last_len = None;
        Ok(doomed.len() as u64)
    }

    /// Closes the SQL connection (dropping the event's uncommitted SQL
    /// changes: they are being deleted) and deletes the database's pages.
    fn delete_sql_database(&mut self) -> Result<(), StorageError> {
        if let Some(db) = self.ctx.sql_db.as_deref_mut().and_then(Option::take) {
            crate::sql::close(db, self.ctx.store);
        }
        if let Some(seq) = crate::sql::file::delete_database(self.ctx.store, &self.ctx.id)? {
            self.note_write(seq, WriteOptions::default());
        }
        Ok(())
    }

    /// Runs `f` as one transaction: if it returns an error, every write it
    /// made is rolled back, and reads see the earlier values again.
    pub fn transaction<R, E>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<R, E>,
    ) -> Result<R, TransactionError<E>> {
        let savepoint = self.ctx.store.savepoint();
        let saved = self.snapshot();
        match f(self) {
            Ok(r) => Ok(r),
            Err(e) => {
                self.ctx.store.rollback_to(savepoint);
                self.restore(saved);
                Err(TransactionError::Aborted(e))
            }
        }
    }

    /// Makes what this event sends next wait until every write so far is
    /// durable, `allow_unconfirmed` ones included.
    pub fn sync(&mut self) {
        self.ctx.synced = true;
    }

    /// Sets the object's alarm to `at_ms` (ms since the Unix epoch),
    /// replacing any earlier one.
    pub fn set_alarm(&mut self, at_ms: u64) -> Result<(), StorageError> {
        if at_ms > ALARM_AT_MS_MAX {
            return Err(StorageError::AlarmTooLate {
                at_ms,
                max: ALARM_AT_MS_MAX,
            });
        }
        let previous = read_alarm(self.ctx.store, &self.ctx.id)?;
        let record = AlarmRecord {
            at_ms,
            retries: 0,
            class: self.ctx.class_name.to_string(),
        };
        let seq = write_alarm(self.ctx.store, &self.ctx.id, previous.as_ref(), &record);
        self.note_write(seq, WriteOptions::default());
        self.ctx.alarm_set = Some(at_ms);
        Ok(())
    }

    /// The object's alarm time, if one is set.
    pub fn get_alarm(&mut self) -> Result<Option<u64>, StorageError> {
        Ok(read_alarm(self.ctx.store, &self.ctx.id)?.map(|r| r.at_ms))
    }

    /// Deletes the object's alarm, if any.
    pub fn delete_alarm(&mut self) -> Result<(), StorageError> {
        if let Some(previous) = read_alarm(self.ctx.store, &self.ctx.id)? {
            let seq = clear_alarm(self.ctx.store, &self.ctx.id, &previous);
            self.note_write(seq, WriteOptions::default());
        }
        self.ctx.alarm_set = None;
        Ok(())
    }

    /// The stored length (key plus value) of `key`, if it exists.
    fn stored_len(&mut self, key: &[u8]) -> Result<Option<u64>, StorageError> {
        if let Some(last) = &self.ctx.last_len {
            if last.key == key {
                return Ok(last.len);
            }
        }
        // Reading it remembers its size.
        self.get_with(key, |v| v.map(|v| stored_size(key, v)))
    }

    /// Remembers the stored size of `key` (`None`: absent).
    fn remember_len(&mut self, key: &[u8], len: Option<u64>) {
        let last = self.ctx.last_len.get_or_insert_with(LastLen::default);
        last.key.clear();
        last.key.extend_from_slice(key);
        last.len = len;
    }

    /// Accounts a change of one entry's size from `old` to `new` bytes,
    /// refusing it past the object's limit.
    fn resize(&mut self, old: Option<u64>, new: u64) -> Result<(), StorageError> {
        let current = self.stored_bytes()?;
        let next = current - old.unwrap_or(0).min(current) + new;
        let max = self.ctx.limits.object_bytes_max;
        if next > max && next > current {
            return Err(StorageError::ObjectTooLarge { bytes: next, max });
        }
        if next != current {
            self.ctx.stored_bytes = Some(next);
            self.ctx.size_changed = true;
        }
        Ok(())
    }

    fn stored_bytes(&mut self) -> Result<u64, StorageError> {
        if let Some(bytes) = self.ctx.stored_bytes {
            return Ok(bytes);
        }
        let key = keys::record_key(&self.ctx.id, SIZE_RECORD);
        let bytes = match self.ctx.store.get(&self.ctx.id.0, &key)? {
            Some(v) => decode_record::<SizeRecord>(&v, "size")?.bytes,
            None => 0,
        };
        self.ctx.stored_bytes = Some(bytes);
        Ok(bytes)
    }

    fn note_write(&mut self, seq: durin_storage::Seq, options: WriteOptions) {
        if options.allow_unconfirmed {
            self.ctx.wrote_unconfirmed = Some(seq);
        } else {
            self.ctx.wrote = Some(seq);
        }
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            stored_bytes: self.ctx.stored_bytes,
            size_changed: self.ctx.size_changed,
            alarm_set: self.ctx.alarm_set,
            wrote: self.ctx.wrote,
            wrote_unconfirmed: self.ctx.wrote_unconfirmed,
        }
    }

    pub(crate) fn restore(&mut self, saved: Snapshot) {
        self.ctx.stored_bytes = saved.stored_bytes;
        self.ctx.size_changed = saved.size_changed;
        self.ctx.alarm_set = saved.alarm_set;
        // A rolled-back write must not hold the output gate: its group may
        // never be written at all.
        self.ctx.wrote = saved.wrote;
        self.ctx.wrote_unconfirmed = saved.wrote_unconfirmed;
        // The last key's size may be that of a write rolled back.
        self.ctx.last_len = None;
    }
}

/// What an entry counts against its object's storage limit: its key's
/// bytes and its value's.
fn stored_size(key: &[u8], value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

/// The stored size of one key (its bytes and its value's), as an object
/// last read or wrote it.
#[derive(Default)]
pub(crate) struct LastLen {
    key: Vec<u8>,
    len: Option<u64>,
}

/// What a rollback restores besides the store.
#[derive(Clone, Copy)]
pub(crate) struct Snapshot {
    stored_bytes: Option<u64>,
    size_changed: bool,
    alarm_set: Option<u64>,
    wrote: Option<durin_storage::Seq>,
    wrote_unconfirmed: Option<durin_storage::Seq>,
}

/// Persists the object's size record if this event changed it. Called by
/// the shard at the end of an event, inside the event's savepoint.
pub(crate) fn persist_size(ctx: &mut super::Context<'_>) {
    if !ctx.size_changed {
        return;
    }
    let bytes = ctx.stored_bytes.expect("a changed size is known");
    let key = keys::record_key(&ctx.id, SIZE_RECORD);
    let seq = if bytes == 0 {
        ctx.store.delete(&ctx.id.0, &key)
    } else {
        ctx.store
            .put(&ctx.id.0, &key, &encode_record(&SizeRecord { bytes }))
    };
    // The size record rides with the writes that changed it; it holds the
    // gate no longer than they do.
    if ctx.wrote.is_some() {
        ctx.wrote = Some(seq);
    } else {
        ctx.wrote_unconfirmed = Some(seq);
    }
    ctx.size_changed = false;
}

fn as_ref_bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(&v[..]),
        Bound::Excluded(v) => Bound::Excluded(&v[..]),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Whether lower bound `b` lies below `key` (so `key` is the tighter one).
fn bound_below(b: &Bound<Vec<u8>>, key: &[u8]) -> bool {
    match b {
        Bound::Included(v) | Bound::Excluded(v) => v.as_slice() < key,
        Bound::Unbounded => true,
    }
}

/// Whether upper bound `b` lies above `key`.
fn bound_above(b: &Bound<Vec<u8>>, key: &[u8]) -> bool {
    match b {
        Bound::Included(v) | Bound::Excluded(v) => v.as_slice() > key,
        Bound::Unbounded => true,
    }
}

/// The smallest byte string greater than every string starting with
/// `prefix`, or `None` if there is none (all bytes 0xff).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut next = prefix.to_vec();
    while let Some(last) = next.pop() {
        if last < 0xff {
            next.push(last + 1);
            return Some(next);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::Context;
    use crate::ObjectId;
    use durin_storage::{wal, Layout, ShardStore, StoreOptions};

    fn store(dir: &std::path::Path) -> ShardStore {
        let layout = Layout::open_or_create(dir, 1).expect("layout");
        wal::recover(&layout).expect("recover");
        ShardStore::open(&layout, 0, 1, StoreOptions::default(), Box::new(|| {})).expect("open")
    }

    fn with_ctx<R>(
        store: &mut ShardStore,
        limits: &StorageLimits,
        f: impl FnOnce(&mut Context<'_>) -> R,
    ) -> R {
        let id = ObjectId::from_name("test", b"object");
        let mut effects = crate::object::Effects::default();
        let mut ctx = Context::new(id, "test", 1_000, store, limits, None, &mut effects);
        let r = f(&mut ctx);
        store.release();
        r
    }

    #[test]
    fn many_at_once_reads_writes_and_deletes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = store(dir.path());
        with_ctx(&mut store, &StorageLimits::default(), |ctx| {
            let mut s = ctx.storage();
            s.put_many(&[(b"a", b"1"), (b"b", b"2"), (b"c", b"3")])
                .expect("put_many");
            assert_eq!(
                s.get_many(&[b"a", b"x", b"c"]).expect("get_many"),
                vec![Some(b"1".to_vec()), None, Some(b"3".to_vec())]
            );
            assert_eq!(s.delete_many(&[b"a", b"x", b"b"]).expect("delete_many"), 2);
            let listed = s.list(&ListOptions::default()).expect("list");
            assert_eq!(listed, vec![(b"c".to_vec(), b"3".to_vec())]);
        });
    }

    /// The size of the key written last is remembered, not read again; a
    /// rollback must forget it, or the next write of that key would
    /// account a size that was never stored.
    #[test]
    fn a_rolled_back_write_leaves_no_remembered_size_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = store(dir.path());
        with_ctx(&mut store, &StorageLimits::default(), |ctx| {
            let mut s = ctx.storage();
            s.put(b"a", b"0123456789").expect("put");
            s.put(b"k", b"12345").expect("put");
            s.put(b"k", b"123").expect("put again");
            assert_eq!(s.stored_bytes().expect("size"), 11 + 4);
            let rolled_back: Result<(), TransactionError<()>> = s.transaction(|t| {
                t.put(b"k", b"123456789").expect("put inside");
                t.put(b"k", b"1234567").expect("put inside again");
                Err(())
            });
            assert!(rolled_back.is_err());
            assert_eq!(s.stored_bytes().expect("size"), 11 + 4);
            // No read in between: the write accounts from what it knows.
            s.put(b"k", b"12").expect("put after");
            assert_eq!(s.stored_bytes().expect("size"), 11 + 3);
            assert_eq!(s.get(b"k").expect("get"), Some(b"12".to_vec()));
            assert!(s.delete(b"k").expect("delete"));
            assert!(!s.delete(b"k").expect("deleted already"));
            assert_eq!(s.stored_bytes().expect("size"), 11);
            s.put(b"k", b"1").expect("put");
            assert_eq!(s.delete_all().expect("delete_all"), 2);
            assert!(!s.delete(b"k").expect("gone with the rest"));
            assert_eq!(s.stored_bytes().expect("size"), 0);
        });
    }

    #[test]
    fn put_many_past_a_limit_writes_none_of_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = store(dir.path());
        let limits = StorageLimits {
            value_bytes_max: 4,
            ..StorageLimits::default()
        };
        with_ctx(&mut store, &limits, |ctx| {
            let mut s = ctx.storage();
            let result = s.put_many(&[(b"a", b"ok"), (b"b", b"too long")]);
            assert!(matches!(
                result,
                Err(StorageError::ValueTooLarge { bytes: 8, max: 4 })
            ));
            assert_eq!(s.get(b"a").expect("get"), None);
            assert_eq!(
                s.stored_bytes().expect("size"),
                0,
                "the size accounting rolled back too"
            );
        });
    }

    #[test]
    fn object_size_limit_counts_keys_and_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = store(dir.path());
        let limits = StorageLimits {
            object_bytes_max: 10,
            ..StorageLimits::default()
        };
        with_ctx(&mut store, &limits, |ctx| {
            let mut s = ctx.storage();
            s.put(b"k1", b"123").expect("5 bytes fit");
            s.put(b"k2", b"123").expect("10 bytes fit");
            assert!(matches!(
                s.put(b"k3", b"1"),
                Err(StorageError::ObjectTooLarge { bytes: 13, max: 10 })
            ));
            s.put(b"k1", b"1").expect("shrinking fits");
            s.put(b"k3", b"").expect("an empty value: 10 bytes again");
            assert!(s.delete(b"k2").expect("delete"));
            assert_eq!(s.stored_bytes().expect("size"), 5);
        });
    }

    #[test]
    fn unconfirmed_writes_do_not_hold_the_gate_until_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = store(dir.path());
        with_ctx(&mut store, &StorageLimits::default(), |ctx| {
            let options = WriteOptions {
                allow_unconfirmed: true,
                no_cache: true,
            };
            ctx.storage().put_with(b"a", b"1", options).expect("put");
            assert!(
                ctx.wrote.is_none(),
                "an unconfirmed write does not hold the gate"
            );
            assert!(ctx.wrote_unconfirmed.is_some());
            assert!(!ctx.synced);
            ctx.storage().sync();
            assert!(
                ctx.synced,
                "sync makes the gate wait for unconfirmed writes too"
            );
            ctx.storage().put(b"b", b"2").expect("put");
            assert!(ctx.wrote.is_some());
        });
    }

    #[test]
    fn a_failed_transaction_rolls_back_reads_writes_and_alarms() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = store(dir.path());
        with_ctx(&mut store, &StorageLimits::default(), |ctx| {
            ctx.storage().put(b"a", b"before").expect("put");
            let result: Result<(), TransactionError<&str>> = ctx.storage().transaction(|s| {
                s.put(b"a", b"inside").map_err(|_| "put")?;
                s.put(b"new", b"x").map_err(|_| "put")?;
                s.set_alarm(5_000).map_err(|_| "alarm")?;
                assert_eq!(
                    s.get(b"a").expect("get"),
                    Some(b"inside".to_vec()),
                    "reads its own writes"
                );
                Err("abort")
            });
            assert!(matches!(result, Err(TransactionError::Aborted("abort"))));
            let mut s = ctx.storage();
            assert_eq!(s.get(b"a").expect("get"), Some(b"before".to_vec()));
            assert_eq!(s.get(b"new").expect("get"), None);
            assert_eq!(s.get_alarm().expect("alarm"), None);
            assert!(ctx.alarm_set.is_none());
        });
    }

    #[test]
    fn list_options_and_delete_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = store(dir.path());
        with_ctx(&mut store, &StorageLimits::default(), |ctx| {
            let mut s = ctx.storage();
            for k in ["a1", "a2", "b1", "b2", "c"] {
                s.put(k.as_bytes(), b"v").expect("put");
            }
            let keys = |s: &mut Storage<'_, '_>, o: ListOptions<'_>| -> Vec<String> {
                s.list(&o)
                    .expect("list")
                    .into_iter()
                    .map(|(k, _)| String::from_utf8(k).expect("utf8"))
                    .collect()
            };
            assert_eq!(
                keys(
                    &mut s,
                    ListOptions {
                        prefix: Some(b"a"),
                        ..Default::default()
                    }
                ),
                ["a1", "a2"]
            );
            assert_eq!(
                keys(
                    &mut s,
                    ListOptions {
                        start_after: Some(b"a2"),
                        end: Some(b"c"),
                        ..Default::default()
                    }
                ),
                ["b1", "b2"]
            );
            assert_eq!(
                keys(
                    &mut s,
                    ListOptions {
                        reverse: true,
                        limit: Some(2),
                        ..Default::default()
                    }
                ),
                ["c", "b2"]
            );
            assert_eq!(s.delete_all().expect("delete_all"), 5);
            assert!(keys(&mut s, ListOptions::default()).is_empty());
        });
    }
}
