//! Payload formats of the built-in classes' methods, shared by the server
//! and its clients. All integers are little-endian.
//!
//! | class       | method      | request payload                   | response payload            |
//! |-------------|-------------|-----------------------------------|-----------------------------|
//! | `ratelimit` | `check`     | cost u64 (8 bytes), or empty: 1   | [`RateLimitDecision`], 33 bytes |
//! | `counter`   | `get`       | empty                             | value u64                   |
//! | `counter`   | `increment` | empty                             | value u64 after the increment |
//! | `kv`        | `get`       | key                               | found u8 \| value           |
//! | `kv`        | `put`       | key_len u32 \| key \| value       | empty                       |
//! | `kv`        | `delete`    | key                               | deleted u8                  |
//! | `sql`       | `query`     | JSON `{"sql", "params"}`          | JSON, as `POST /sql/{db}/query` |
//! | `sql`       | `batch`     | JSON `{"statements": [...]}`      | JSON, as `POST /sql/{db}/batch` |
//! | `sql`       | `info`      | empty                             | JSON, as `GET /sql/{db}`    |
//! | `sql`       | `delete_all`| empty                             | JSON, as `DELETE /sql/{db}` |
//!
//! The object a method runs on is the request's [`ObjectRef`]; a rate
//! limiter's key, say, is the name of its object.
//!
//! [`ObjectRef`]: super::ObjectRef

/// The rate limiter class.
pub const RATELIMIT_CLASS: &str = "ratelimit";
/// Rate limiter method: take `cost` from the budget if it allows.
pub const RATELIMIT_CHECK: &str = "check";
/// The counter class.
pub const COUNTER_CLASS: &str = "counter";
/// Counter method: the current value.
pub const COUNTER_GET: &str = "get";
/// Counter method: add one and return the new value.
pub const COUNTER_INCREMENT: &str = "increment";
/// The key-value class.
pub const KV_CLASS: &str = "kv";
/// Key-value method: read a key.
pub const KV_GET: &str = "get";
/// Key-value method: write a key.
pub const KV_PUT: &str = "put";
/// Key-value method: remove a key.
pub const KV_DELETE: &str = "delete";
/// The SQL class: a database per object.
pub const SQL_CLASS: &str = "sql";
/// SQL method: run one statement (or several, separated by `;`).
pub const SQL_QUERY: &str = "query";
/// SQL method: run statements as one transaction, all or nothing.
pub const SQL_BATCH: &str = "batch";
/// SQL method: the database's size and tables.
pub const SQL_INFO: &str = "info";
/// SQL method: delete the whole database.
pub const SQL_DELETE_ALL: &str = "delete_all";

/// The bytes of an encoded [`RateLimitDecision`].
pub const RATELIMIT_DECISION_BYTES: usize = 33;

/// A rate limiter's answer to `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitDecision {
    /// Whether the request fits the budget (and was charged to it).
    pub allowed: bool,
    /// The budget: requests per window, or burst size.
    pub limit: u64,
    /// What is left of the budget after this check.
    pub remaining: u64,
    /// When the budget is whole again.
    pub reset_after_ms: u64,
    /// When a refused request could succeed; 0 if allowed.
    pub retry_after_ms: u64,
}

impl RateLimitDecision {
    /// Appends the 33-byte encoding: allowed u8 | limit | remaining |
    /// reset_after_ms | retry_after_ms.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.allowed));
        for field in [
            self.limit,
            self.remaining,
            self.reset_after_ms,
            self.retry_after_ms,
        ] {
            out.extend_from_slice(&field.to_le_bytes());
        }
    }

    /// Decodes exactly 33 bytes; `None` for any other length or an
    /// `allowed` byte that is neither 0 nor 1.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != RATELIMIT_DECISION_BYTES {
            return None;
        }
        let allowed = match bytes[0] {
            0 => false,
            1 => true,
            _ => return None,
        };
        Some(RateLimitDecision {
            allowed,
            limit: u64_at(bytes, 1)?,
            remaining: u64_at(bytes, 9)?,
            reset_after_ms: u64_at(bytes, 17)?,
            retry_after_ms: u64_at(bytes, 25)?,
        })
    }
}

/// Appends a `check` request payload for `cost`.
pub fn encode_ratelimit_cost(cost: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(&cost.to_le_bytes());
}

/// The cost in a `check` request payload: 1 if empty, else exactly 8 bytes.
pub fn decode_ratelimit_cost(payload: &[u8]) -> Option<u64> {
    match payload.len() {
        0 => Some(1),
        8 => u64_at(payload, 0),
        _ => None,
    }
}

/// Appends a counter's value, the response of `get` and `increment`.
pub fn encode_counter_value(value: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// A counter's value: exactly 8 bytes.
pub fn decode_counter_value(payload: &[u8]) -> Option<u64> {
    if payload.len() != 8 {
        return None;
    }
    u64_at(payload, 0)
}

/// Appends a kv `put` request payload: key_len u32 | key | value.
///
/// Panics if the key is 4 GiB or longer, which no frame can carry.
pub fn encode_kv_put(key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    let key_len = u32::try_from(key.len()).expect("a key fits in a frame, so under 4 GiB");
    out.reserve(4 + key.len() + value.len());
    out.extend_from_slice(&key_len.to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

/// The key and value of a kv `put` payload; `None` if `key_len` runs past
/// the payload.
pub fn decode_kv_put(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let key_len: [u8; 4] = payload.get(..4)?.try_into().ok()?;
    let key_len = usize::try_from(u32::from_le_bytes(key_len)).ok()?;
    let rest = &payload[4..];
    if key_len > rest.len() {
        return None;
    }
    Some(rest.split_at(key_len))
}

/// Appends a kv `get` response: found u8, then the value if found.
pub fn encode_kv_get_response(value: Option<&[u8]>, out: &mut Vec<u8>) {
    match value {
        Some(value) => {
            out.push(1);
            out.extend_from_slice(value);
        }
        None => out.push(0),
    }
}

/// A kv `get` response: `Some(None)` if the key was absent, `Some(Some(value))`
/// if found, `None` if the payload is malformed (empty, a bad flag, or
/// bytes after an absent flag).
pub fn decode_kv_get_response(payload: &[u8]) -> Option<Option<&[u8]>> {
    match payload.split_first()? {
        (0, []) => Some(None),
        (1, value) => Some(Some(value)),
        _ => None,
    }
}

/// Appends a kv `delete` response: whether the key existed.
pub fn encode_kv_delete_response(deleted: bool, out: &mut Vec<u8>) {
    out.push(u8::from(deleted));
}

/// A kv `delete` response: exactly one byte, 0 or 1.
pub fn decode_kv_delete_response(payload: &[u8]) -> Option<bool> {
    match payload {
        [0] => Some(false),
        [1] => Some(true),
        _ => None,
    }
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_round_trip() {
        let decision = RateLimitDecision {
            allowed: true,
            limit: 100,
            remaining: 99,
            reset_after_ms: 1_000,
            retry_after_ms: 0,
        };
        let mut out = Vec::new();
        decision.encode(&mut out);
        assert_eq!(out.len(), RATELIMIT_DECISION_BYTES);
        assert_eq!(RateLimitDecision::decode(&out), Some(decision));
        assert_eq!(RateLimitDecision::decode(&out[..32]), None);
        out[0] = 2;
        assert_eq!(RateLimitDecision::decode(&out), None);
    }

    #[test]
    fn costs_and_counters_round_trip() {
        let mut out = Vec::new();
        encode_ratelimit_cost(5, &mut out);
        assert_eq!(decode_ratelimit_cost(&out), Some(5));
        assert_eq!(decode_ratelimit_cost(&[]), Some(1));
        assert_eq!(decode_ratelimit_cost(&[1, 2, 3]), None);
        out.clear();
        encode_counter_value(u64::MAX, &mut out);
        assert_eq!(decode_counter_value(&out), Some(u64::MAX));
        assert_eq!(decode_counter_value(&out[..7]), None);
    }

    #[test]
    fn kv_payloads_round_trip() {
        let mut out = Vec::new();
        encode_kv_put(b"key", b"value", &mut out);
        assert_eq!(decode_kv_put(&out), Some((&b"key"[..], &b"value"[..])));
        out.clear();
        encode_kv_put(b"", b"", &mut out);
        assert_eq!(decode_kv_put(&out), Some((&b""[..], &b""[..])));
        assert_eq!(decode_kv_put(&[9, 0, 0, 0, b'k']), None);
        assert_eq!(decode_kv_put(&[0, 0, 0]), None);
        assert_eq!(decode_kv_put(&[0xff; 4]), None);

        out.clear();
        encode_kv_get_response(Some(b"v"), &mut out);
        assert_eq!(decode_kv_get_response(&out), Some(Some(&b"v"[..])));
        out.clear();
        encode_kv_get_response(None, &mut out);
        assert_eq!(decode_kv_get_response(&out), Some(None));
        assert_eq!(decode_kv_get_response(&[]), None);
        assert_eq!(decode_kv_get_response(&[0, 1]), None);

        out.clear();
        encode_kv_delete_response(true, &mut out);
        assert_eq!(decode_kv_delete_response(&out), Some(true));
        assert_eq!(decode_kv_delete_response(&[2]), None);
    }
}
