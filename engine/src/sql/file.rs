//! An object's database file in its shard's store: pages, page deltas,
//! and the file's length.
//!
//! ```text
//! 0x00 | id | 0x02 | page no (4)          the page, zero runs left out (see `page`)
//! 0x00 | id | 0x03 | page no (4) | n (1)  the n-th small change on top of it
//! 0x00 | id | 0x00 | "sqlsize"            the file's length in bytes
//! ```
//!
//! A read goes to the store (its overlay first, then fjall); a write is a
//! store write, so it joins the event's group: SQL and KV writes of one
//! event commit together, share the shard's group `fdatasync`, and roll
//! back together (the store's savepoints). A commit logs what changed in
//! a page, not the page: an insert into a leaf changes its header, a cell
//! pointer and the new cell, tens of bytes of 4 KiB.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Bound;

use durin_storage::{Seq, ShardStore};

use super::page;
use crate::keys;
use crate::object::StorageError;
use crate::ObjectId;

/// The database page size, and the unit the store keeps.
pub const PAGE_BYTES: usize = 4096;
const SIZE_RECORD: &[u8] = b"sqlsize";

thread_local! {
    /// The encoding of the page being written, reused.
    static ENCODED: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(PAGE_BYTES + 1));
}

/// Reads the length of `id`'s database file.
pub(crate) fn read_size(store: &ShardStore, id: &ObjectId) -> Result<u64, StorageError> {
    let key = keys::record_key(id, SIZE_RECORD);
    match store.get(&id.0, &key)? {
        None => Ok(0),
        Some(v) => {
            let bytes: [u8; 8] = v[..]
                .try_into()
                .map_err(|_| StorageError::CorruptRecord { what: "sql size" })?;
            let size = u64::from_le_bytes(bytes);
            if !size.is_multiple_of(PAGE_BYTES as u64) {
                return Err(StorageError::CorruptRecord { what: "sql size" });
            }
            Ok(size)
        }
    }
}

fn write_size(store: &mut ShardStore, id: &ObjectId, size: u64) -> Seq {
    let key = keys::record_key(id, SIZE_RECORD);
    if size == 0 {
        store.delete(&id.0, &key)
    } else {
        store.put(&id.0, &key, &size.to_le_bytes())
    }
}

/// Deletes `id`'s whole database: every page and the size record.
/// Returns the last write, if there was anything to delete.
pub(crate) fn delete_database(
    store: &mut ShardStore,
    id: &ObjectId,
) -> Result<Option<Seq>, StorageError> {
    let size = read_size(store, id)?;
    if size == 0 {
        return Ok(None);
    }
    for page_no in 0..pages_of(size) {
        store.delete(&id.0, &keys::sql_page_key(id, page_no));
    }
    for key in delta_keys(store, id)? {
        store.delete(&id.0, &key);
    }
    Ok(Some(write_size(store, id, 0)))
}

/// Every delta key `id`'s database has.
fn delta_keys(store: &ShardStore, id: &ObjectId) -> Result<Vec<Vec<u8>>, StorageError> {
    let (lo, hi) = keys::sql_deltas_range(id);
    let mut found = Vec::new();
    store.scan(
        &id.0,
        (Bound::Included(&lo[..]), Bound::Excluded(&hi[..])),
        false,
        |key, _| {
            found.push(key.to_vec());
            true
        },
    )?;
    Ok(found)
}

/// How many deltas each page of `id`'s database has on top of its whole
/// version (pages without any are absent).
fn delta_counts(store: &ShardStore, id: &ObjectId) -> Result<HashMap<u32, u8>, StorageError> {
    let mut counts = HashMap::new();
    for key in delta_keys(store, id)? {
        let (page_no, n) = keys::parse_sql_delta_key(&key).ok_or(StorageError::CorruptRecord {
            what: "sql delta key",
        })?;
        let count = counts.entry(page_no).or_insert(0u8);
        *count = (*count).max(n + 1);
    }
    Ok(counts)
}

/// Pages a file of `size` bytes spans.
fn pages_of(size: u64) -> u32 {
    u32::try_from(size.div_ceil(PAGE_BYTES as u64)).expect("sizes stay below 16 TiB")
}

/// An object's database file.
pub(super) struct ObjectFile {
    pub(super) id: ObjectId,
    pub(super) size_bytes: u64,
    /// Deltas stored on top of each page's whole version (see
    /// [`write_page`]). Like `size_bytes`, it is right for as long as the
    /// connection lives: every store rollback that takes back VFS writes
    /// also closes the connection.
    deltas: HashMap<u32, u8>,
    /// What the store holds of the pages written last, newest first (at
    /// most [`IMAGES_MAX`]): the base the next delta of such a page is
    /// taken against, without reading it back from the store (a profile
    /// of 10,000 objects inserting found ~10 % of the time in those
    /// reads). Right for as long as the connection lives, as `deltas`.
    images: Vec<(u32, Box<[u8; PAGE_BYTES]>)>,
}

/// Page images an open file keeps (4 KiB each): a small object's inserts
/// dirty one or two pages per commit.
const IMAGES_MAX: usize = 2;

impl ObjectFile {
    /// `id`'s file as the store holds it now.
    pub(super) fn open(store: &ShardStore, id: ObjectId) -> Result<ObjectFile, StorageError> {
        Ok(ObjectFile {
            id,
            size_bytes: read_size(store, &id)?,
            deltas: delta_counts(store, &id)?,
            images: Vec::with_capacity(IMAGES_MAX),
        })
    }

    /// Remembers `page` as what the store now holds of page `page_no`.
    fn remember(&mut self, page_no: u32, page: &[u8]) {
        let position = self.images.iter().position(|(n, _)| *n == page_no);
        let mut image = match position {
            Some(i) => self.images.remove(i).1,
            None if self.images.len() >= IMAGES_MAX => {
                self.images.pop().expect("the list is full").1
            }
            None => Box::new([0u8; PAGE_BYTES]),
        };
        image.copy_from_slice(page);
        self.images.insert(0, (page_no, image));
        debug_assert!(self.images.len() <= IMAGES_MAX);
    }

    /// Forgets page `page_no` (truncated away).
    fn forget(&mut self, page_no: u32) {
        self.images.retain(|(n, _)| *n != page_no);
    }

    /// The stored version of page `page_no`, from memory or the store.
    fn stored(
        &self,
        store: &ShardStore,
        page_no: u32,
        out: &mut [u8; PAGE_BYTES],
    ) -> Result<(), StorageError> {
        match self.images.iter().find(|(n, _)| *n == page_no) {
            Some((_, image)) => {
                out.copy_from_slice(&image[..]);
                Ok(())
            }
            None => read_page(store, self, page_no, out),
        }
    }
}

/// Most deltas on top of a page before it is written whole again: a read
/// of a page the cache lacks costs one store read per delta.
pub const DELTA_CHAIN_MAX: u8 = 8;
/// A change bigger than this is written as a whole page.
const DELTA_BYTES_MAX: usize = PAGE_BYTES / 4;

/// Reads page `page_no` of `file` into `page` (zeros if it was never
/// written).
fn read_page(
    store: &ShardStore,
    file: &ObjectFile,
    page_no: u32,
    page: &mut [u8; PAGE_BYTES],
) -> Result<(), StorageError> {
    let corrupt = |page::CorruptPage| StorageError::CorruptRecord { what: "sql page" };
    match store.get(&file.id.0, &keys::sql_page_key(&file.id, page_no))? {
        Some(stored) => page::decode(&stored, page).map_err(corrupt)?,
        None => page.fill(0),
    }
    for n in 0..file.deltas.get(&page_no).copied().unwrap_or(0) {
        let key = keys::sql_delta_key(&file.id, page_no, n);
        let delta = store
            .get(&file.id.0, &key)?
            .ok_or(StorageError::CorruptRecord { what: "sql delta" })?;
        page::apply(&delta, page).map_err(corrupt)?;
    }
    Ok(())
}

/// Writes page `page_no`: as a delta on top of what is stored when the
/// change is small (an insert into a leaf changes its header, a cell
/// pointer and the new cell: tens of bytes of 4 KiB), else whole, which
/// drops the page's deltas. What the log carries per commit is then
/// about what changed, not a page per dirty page.
fn write_page(
    store: &mut ShardStore,
    file: &mut ObjectFile,
    page_no: u32,
    page: &[u8],
    wrote: &mut Option<Seq>,
) -> Result<Option<Seq>, StorageError> {
    let count = file.deltas.get(&page_no).copied().unwrap_or(0);
    let exists = page_no < pages_of(file.size_bytes);
    if exists && count < DELTA_CHAIN_MAX {
        let mut old = [0u8; PAGE_BYTES];
        file.stored(store, page_no, &mut old)?;
        let seq = ENCODED.with(|buf| {
            let mut buf = buf.borrow_mut();
            if !page::diff(&old, page, &mut buf, DELTA_BYTES_MAX) {
                return None;
            }
            if buf.is_empty() {
                // Unchanged: nothing to write.
                return Some(None);
            }
            let key = keys::sql_delta_key(&file.id, page_no, count);
            Some(Some(store.put(&file.id.0, &key, &buf)))
        });
        match seq {
            Some(Some(seq)) => {
                file.deltas.insert(page_no, count + 1);
                file.remember(page_no, page);
                return Ok(Some(seq));
            }
            // Unchanged: nothing written, nothing to wait for.
            Some(None) => return Ok(None),
            None => {}
        }
    }
    let seq = ENCODED.with(|buf| {
        let mut buf = buf.borrow_mut();
        page::encode(page, &mut buf);
        store.put(&file.id.0, &keys::sql_page_key(&file.id, page_no), &buf)
    });
    drop_deltas(store, file, page_no, wrote);
    file.remember(page_no, page);
    Ok(Some(seq))
}

/// Deletes the deltas of page `page_no` (its whole version is new, or gone).
fn drop_deltas(
    store: &mut ShardStore,
    file: &mut ObjectFile,
    page_no: u32,
    wrote: &mut Option<Seq>,
) {
    for n in 0..file.deltas.remove(&page_no).unwrap_or(0) {
        *wrote = Some(store.delete(&file.id.0, &keys::sql_delta_key(&file.id, page_no, n)));
    }
}

/// Reads `out.len()` bytes at `offset`; returns whether the read went
/// past the end of the file (the rest is zeros).
pub(super) fn read_object(
    store: &ShardStore,
    file: &ObjectFile,
    out: &mut [u8],
    offset: u64,
) -> Result<bool, StorageError> {
    let mut page = [0u8; PAGE_BYTES];
    let mut done = 0;
    while done < out.len() {
        let pos = offset + done as u64;
        let within = (pos % PAGE_BYTES as u64) as usize;
        let n = (PAGE_BYTES - within).min(out.len() - done);
        let dst = &mut out[done..done + n];
        if pos >= file.size_bytes {
            dst.fill(0);
        } else {
            read_page(store, file, (pos / PAGE_BYTES as u64) as u32, &mut page)?;
            dst.copy_from_slice(&page[within..within + n]);
        }
        done += n;
    }
    Ok(offset + out.len() as u64 > file.size_bytes)
}

/// Writes `data` at `offset`, growing the file if it ends past it;
/// returns the last store write it made.
pub(super) fn write_object(
    store: &mut ShardStore,
    file: &mut ObjectFile,
    data: &[u8],
    offset: u64,
) -> Result<Option<Seq>, StorageError> {
    let wrote = &mut None;
    let mut done = 0;
    let mut page = [0u8; PAGE_BYTES];
    while done < data.len() {
        let pos = offset + done as u64;
        let within = (pos % PAGE_BYTES as u64) as usize;
        let n = (PAGE_BYTES - within).min(data.len() - done);
        let page_no = (pos / PAGE_BYTES as u64) as u32;
        let seq = if n == PAGE_BYTES {
            write_page(store, file, page_no, &data[done..done + n], wrote)?
        } else {
            // A partial page (SQLite writes whole pages of the main
            // database, but the header may be written alone).
            read_page(store, file, page_no, &mut page)?;
            page[within..within + n].copy_from_slice(&data[done..done + n]);
            write_page(store, file, page_no, &page, wrote)?
        };
        if seq.is_some() {
            *wrote = seq;
        }
        done += n;
    }
    let end = offset + data.len() as u64;
    if end > file.size_bytes {
        file.size_bytes = end.next_multiple_of(PAGE_BYTES as u64);
        *wrote = Some(write_size(store, &file.id, file.size_bytes));
    }
    Ok(*wrote)
}

/// Cuts the file to `size` bytes (rounded up to whole pages); returns the
/// last store write it made.
pub(super) fn truncate_object(
    store: &mut ShardStore,
    file: &mut ObjectFile,
    size: u64,
) -> Option<Seq> {
    let wrote = &mut None;
    let size = size.next_multiple_of(PAGE_BYTES as u64);
    if size >= file.size_bytes {
        return None;
    }
    for page_no in pages_of(size)..pages_of(file.size_bytes) {
        *wrote = Some(store.delete(&file.id.0, &keys::sql_page_key(&file.id, page_no)));
        drop_deltas(store, file, page_no, wrote);
        file.forget(page_no);
    }
    file.size_bytes = size;
    *wrote = Some(write_size(store, &file.id, size));
    *wrote
}
