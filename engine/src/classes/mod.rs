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
