//! Object names in paths are percent-decoded and at most 512 bytes once
//! decoded; a longer name is answered 400.

use crate::harness::{counter_value, increment, Server};
use crate::ratelimit_window::{allowed, hit};

pub const NAME_BYTES_MAX: usize = 512;

#[test]
fn encoded_slash_names_one_object_distinct_from_its_parts() {
    let server = Server::start(2);
    let mut conn = server.connect();
    assert_eq!(increment(&mut conn, "a%2Fb"), 1);
    assert_eq!(increment(&mut conn, "a%2fb"), 2, "%2f and %2F decode alike");
    assert_eq!(increment(&mut conn, "a"), 1, "\"a\" is not \"a/b\"");
    assert_eq!(counter_value(&mut conn, "b"), 0, "\"b\" is not \"a/b\"");
    assert_eq!(counter_value(&mut conn, "a%2Fb"), 2);
    assert_eq!(counter_value(&mut conn, "a"), 1);
}

#[test]
fn encoded_and_plain_spellings_name_the_same_object() {
    let server = Server::start(2);
    let mut conn = server.connect();
    assert_eq!(increment(&mut conn, "abc"), 1);
    assert_eq!(increment(&mut conn, "%61%62%63"), 2);
    assert_eq!(increment(&mut conn, "a%62c"), 3);
    assert_eq!(counter_value(&mut conn, "abc"), 3);
    assert_eq!(increment(&mut conn, "a%20b"), 1, "a space, encoded");
    assert_eq!(counter_value(&mut conn, "a%20b"), 1);
    assert_eq!(
        counter_value(&mut conn, "a+b"),
        0,
        "'+' is not a space in a path"
    );
}

#[test]
fn names_up_to_512_decoded_bytes_are_accepted() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let plain = "n".repeat(NAME_BYTES_MAX);
    assert_eq!(increment(&mut conn, &plain), 1);
    // 1536 characters on the wire, 512 bytes decoded: the same object.
    let encoded = "%6E".repeat(NAME_BYTES_MAX);
    assert_eq!(increment(&mut conn, &encoded), 2);
    // Two-byte UTF-8 characters, 512 bytes in all.
    let accented = "%C3%A9".repeat(NAME_BYTES_MAX / 2);
    assert_eq!(increment(&mut conn, &accented), 1);
    let (remaining, _, _) = allowed(&hit(&mut conn, "GET", &plain), 60);
    assert_eq!(remaining, 99, "a 512-byte rate limiter key");
}

#[test]
fn names_over_512_decoded_bytes_are_rejected_with_400() {
    let server = Server::start(2);
    let too_long = [
        ("plain", "n".repeat(NAME_BYTES_MAX + 1)),
        ("percent-encoded", "%6E".repeat(NAME_BYTES_MAX + 1)),
        (
            "multi-byte",
            format!("{}x", "%C3%A9".repeat(NAME_BYTES_MAX / 2)),
        ),
    ];
    for (what, name) in &too_long {
        for (method, path) in [
            ("POST", format!("/counter/{name}/increment")),
            ("GET", format!("/counter/{name}")),
            ("GET", format!("/ratelimit/{name}")),
            ("POST", format!("/ratelimit/{name}")),
        ] {
            // A fresh connection each time: whether a 400 closes the
            // connection is not part of this contract.
            let mut conn = server.connect();
            let response = conn.request(method, &path, &[], b"");
            let prefix = &path[..path.len().min(24)];
            assert_eq!(
                response.status, 400,
                "{what} 513-byte name, {method} {prefix}...: {response}"
            );
        }
    }
    // The rejected increments changed nothing.
    let mut conn = server.connect();
    let longest_accepted = "n".repeat(NAME_BYTES_MAX);
    assert_eq!(counter_value(&mut conn, &longest_accepted), 0);
}
