//! How the engine lays out keys in a partition's keyspace.
//!
//! ```text
//! 0x00 | object id (16) | 0x01 | user key      an object's data
//! 0x00 | object id (16) | 0x00 | record name   the engine's records of an object (alarm, size)
//! 0x00 | object id (16) | 0x02 | page no (4, big-endian)   a page of the object's SQL database
//! 0x00 | object id (16) | 0x03 | page no (4) | n (1)      the n-th change since that page was whole
//! 0x01 | alarm at ms (8, big-endian) | id (16)  the shard's alarm index
//! ```
//!
//! An object's data is one contiguous range, so listing and deleting it is
//! a range scan; the alarm index sorts by time, so the due alarms are a
//! prefix of it.

use crate::ObjectId;

const OBJECT: u8 = 0x00;
const ALARM_INDEX: u8 = 0x01;
const RECORD: u8 = 0x00;
const DATA: u8 = 0x01;
const SQL_PAGE: u8 = 0x02;
const SQL_DELTA: u8 = 0x03;

/// Length of an SQL page key.
pub const SQL_PAGE_KEY_BYTES: usize = 22;

/// Length of the prefix of every key of an object's data.
pub const DATA_PREFIX_BYTES: usize = 18;

/// Appends the prefix of `id`'s data keys to `out`.
pub fn data_prefix(out: &mut Vec<u8>, id: &ObjectId) {
    out.push(OBJECT);
    out.extend_from_slice(&id.0);
    out.push(DATA);
}

/// `id`'s data key for `key`.
pub fn data_key(out: &mut Vec<u8>, id: &ObjectId, key: &[u8]) {
    out.clear();
    data_prefix(out, id);
    out.extend_from_slice(key);
}

/// The first key after all of `id`'s data.
pub fn data_end(id: &ObjectId) -> Vec<u8> {
    let mut out = Vec::with_capacity(DATA_PREFIX_BYTES);
    out.push(OBJECT);
    out.extend_from_slice(&id.0);
    out.push(DATA + 1);
    out
}

/// The key of page `page_no` (from 0) of `id`'s SQL database file.
pub fn sql_page_key(id: &ObjectId, page_no: u32) -> [u8; SQL_PAGE_KEY_BYTES] {
    let mut out = [0u8; SQL_PAGE_KEY_BYTES];
    out[0] = OBJECT;
    out[1..17].copy_from_slice(&id.0);
    out[17] = SQL_PAGE;
    out[18..].copy_from_slice(&page_no.to_be_bytes());
    out
}

/// Length of an SQL page delta key.
pub const SQL_DELTA_KEY_BYTES: usize = 23;

/// The key of delta `n` (from 0) of page `page_no` of `id`'s database.
pub fn sql_delta_key(id: &ObjectId, page_no: u32, n: u8) -> [u8; SQL_DELTA_KEY_BYTES] {
    let mut out = [0u8; SQL_DELTA_KEY_BYTES];
    out[0] = OBJECT;
    out[1..17].copy_from_slice(&id.0);
    out[17] = SQL_DELTA;
    out[18..22].copy_from_slice(&page_no.to_be_bytes());
    out[22] = n;
    out
}

/// The range of all of `id`'s page deltas: from the first key, to the
/// first key after them (exclusive).
pub fn sql_deltas_range(id: &ObjectId) -> ([u8; 18], [u8; 18]) {
    let mut lo = [0u8; 18];
    lo[0] = OBJECT;
    lo[1..17].copy_from_slice(&id.0);
    lo[17] = SQL_DELTA;
    let mut hi = lo;
    hi[17] = SQL_DELTA + 1;
    (lo, hi)
}

/// Reads a delta key back: its page number and delta number.
pub fn parse_sql_delta_key(key: &[u8]) -> Option<(u32, u8)> {
    if key.len() != SQL_DELTA_KEY_BYTES || key[17] != SQL_DELTA {
        return None;
    }
    Some((u32::from_be_bytes(key[18..22].try_into().ok()?), key[22]))
}

/// The first key after all of `id`'s SQL pages.
pub fn sql_pages_end(id: &ObjectId) -> [u8; 18] {
    let mut out = [0u8; 18];
    out[0] = OBJECT;
    out[1..17].copy_from_slice(&id.0);
    out[17] = SQL_PAGE + 1;
    out
}

/// `id`'s engine record named `name`.
pub fn record_key(id: &ObjectId, name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(18 + name.len());
    out.push(OBJECT);
    out.extend_from_slice(&id.0);
    out.push(RECORD);
    out.extend_from_slice(name);
    out
}

/// The alarm index entry of `id`'s alarm at `at_ms`.
pub fn alarm_index_key(at_ms: u64, id: &ObjectId) -> [u8; 25] {
    let mut out = [0u8; 25];
    out[0] = ALARM_INDEX;
    out[1..9].copy_from_slice(&at_ms.to_be_bytes());
    out[9..].copy_from_slice(&id.0);
    out
}

/// The first index key of alarms due at `at_ms` or later.
pub fn alarm_index_from(at_ms: u64) -> [u8; 9] {
    let mut out = [0u8; 9];
    out[0] = ALARM_INDEX;
    out[1..9].copy_from_slice(&at_ms.to_be_bytes());
    out
}

/// Reads an alarm index key back.
pub fn parse_alarm_index_key(key: &[u8]) -> Option<(u64, ObjectId)> {
    if key.len() != 25 || key[0] != ALARM_INDEX {
        return None;
    }
    let at_ms = u64::from_be_bytes(key[1..9].try_into().ok()?);
    let id = ObjectId(key[9..25].try_into().ok()?);
    Some((at_ms, id))
}
