//! The built-in classes. Each is written against the same public
//! [`ObjectClass`](crate::object::ObjectClass) trait a user's class
//! implements.

pub mod cache;
pub mod chat;
pub mod counter;
pub mod doc;
pub mod kv;
pub mod queue;
pub mod ratelimit;
pub mod sharded;
pub mod sql;

/// Answers `status` with `body` as JSON.
pub(crate) fn respond_json(
    res: &mut crate::object::Response,
    status: u16,
    body: &serde_json::Value,
) {
    res.json(status);
    // Serializing a `serde_json::Value` into a Vec cannot fail.
    let _ = serde_json::to_writer(res.body_mut(), body);
}

/// Answers `status` with `{"error": message}`.
pub(crate) fn error(res: &mut crate::object::Response, status: u16, message: &str) {
    respond_json(res, status, &serde_json::json!({ "error": message }));
}

/// Writes `{"value": N}`-style JSON number fields without going through a
/// formatter that allocates.
pub(crate) fn push_u64(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}
