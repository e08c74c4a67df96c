//! The built-in rate limiter with its default fixed window: 100 requests per
//! 60 s per key, counted down in `remaining`, then 429 with `Retry-After`.

use crate::harness::json::Value;
use crate::harness::{Conn, Response, Server};
use std::thread;
use std::time::Duration;

pub const DEFAULT_LIMIT: u64 = 100;
pub const DEFAULT_WINDOW_S: u64 = 60;

/// One request to `/ratelimit/{key}`.
pub fn hit(conn: &mut Conn, method: &str, key: &str) -> Response {
    conn.request(method, &format!("/ratelimit/{key}"), &[], b"")
}

/// Checks an allowed answer's shape and returns `(remaining, limit, reset)`.
pub fn allowed(response: &Response, window_s: u64) -> (u64, u64, u64) {
    assert_eq!(
        response.status, 200,
        "expected an allowed request: {response}"
    );
    response.assert_json_content_type();
    let body = response.json();
    body.assert_keys(&["remaining", "limit", "reset"]);
    let reset = body.u64_field("reset");
    assert!(
        (1..=window_s).contains(&reset),
        "reset must be whole seconds in 1..={window_s}: {response}"
    );
    (body.u64_field("remaining"), body.u64_field("limit"), reset)
}

/// Checks a rejected answer's shape and returns `retryAfter`, which must
/// equal the `Retry-After` header.
pub fn rejected(response: &Response, window_s: u64) -> u64 {
    assert_eq!(
        response.status, 429,
        "expected a rejected request: {response}"
    );
    response.assert_json_content_type();
    let body: Value = response.json();
    body.assert_keys(&["error", "retryAfter"]);
    assert_eq!(body.str_field("error"), "Rate limit exceeded", "{response}");
    let retry_after = body.u64_field("retryAfter");
    assert!(
        (1..=window_s).contains(&retry_after),
        "retryAfter must be whole seconds in 1..={window_s}: {response}"
    );
    let header = response
        .header("retry-after")
        .unwrap_or_else(|| panic!("a 429 needs a Retry-After header: {response}"));
    assert_eq!(
        header.trim().parse::<u64>().ok(),
        Some(retry_after),
        "Retry-After header must equal retryAfter: {response}"
    );
    retry_after
}

/// Makes the first request on a fresh key derived from `prefix`, making
/// sure at least `room_s` seconds are left in its window; windows aligned to
/// the clock could otherwise end in the middle of a test. Returns the key
/// and the first answer's `(remaining, limit, reset)`.
pub fn first_hit_with_room(
    conn: &mut Conn,
    prefix: &str,
    window_s: u64,
    room_s: u64,
) -> (String, (u64, u64, u64)) {
    for attempt in 0..3 {
        let key = format!("{prefix}-{attempt}");
        let first = allowed(&hit(conn, "POST", &key), window_s);
        if first.2 >= room_s {
            return (key, first);
        }
        thread::sleep(Duration::from_millis(first.2 * 1000 + 200));
    }
    panic!("no window with {room_s} s of room after 3 tries");
}

#[test]
fn hundred_allowed_counting_down_then_429_with_retry_after() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let (key, first) = first_hit_with_room(&mut conn, "countdown", DEFAULT_WINDOW_S, 10);
    assert_eq!(first.0, DEFAULT_LIMIT - 1, "first request's remaining");
    assert_eq!(first.1, DEFAULT_LIMIT, "limit");

    let mut last_reset = first.2;
    for count in 2..=DEFAULT_LIMIT {
        // GET and POST both count.
        let method = if count % 2 == 0 { "GET" } else { "POST" };
        let (remaining, limit, reset) = allowed(&hit(&mut conn, method, &key), DEFAULT_WINDOW_S);
        assert_eq!(
            remaining,
            DEFAULT_LIMIT - count,
            "remaining after {count} requests ({method})"
        );
        assert_eq!(limit, DEFAULT_LIMIT);
        assert!(
            reset <= last_reset,
            "reset went up from {last_reset} to {reset} within one window"
        );
        last_reset = reset;
    }

    for method in ["GET", "POST", "GET"] {
        let retry_after = rejected(&hit(&mut conn, method, &key), DEFAULT_WINDOW_S);
        assert!(
            retry_after <= last_reset,
            "retryAfter {retry_after} is later than the window end the last reset ({last_reset}) named"
        );
    }
}

#[test]
fn keys_are_counted_independently() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let (key, _) = first_hit_with_room(&mut conn, "busy", DEFAULT_WINDOW_S, 10);
    for _ in 1..DEFAULT_LIMIT {
        allowed(&hit(&mut conn, "POST", &key), DEFAULT_WINDOW_S);
    }
    rejected(&hit(&mut conn, "POST", &key), DEFAULT_WINDOW_S);

    // Other keys, on whatever shard they land, start from a full window,
    // and each one's count is its own.
    let mut other_conn = server.connect();
    for index in 0..10 {
        let other = format!("quiet-{index}");
        let (remaining, limit, _) = allowed(&hit(&mut other_conn, "GET", &other), DEFAULT_WINDOW_S);
        assert_eq!(
            (remaining, limit),
            (DEFAULT_LIMIT - 1, DEFAULT_LIMIT),
            "key {other}"
        );
    }
    let (remaining, _, _) = allowed(&hit(&mut conn, "GET", "quiet-3"), DEFAULT_WINDOW_S);
    assert_eq!(
        remaining,
        DEFAULT_LIMIT - 2,
        "the second request on key quiet-3"
    );
    rejected(&hit(&mut conn, "GET", &key), DEFAULT_WINDOW_S);
}
