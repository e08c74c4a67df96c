//! `POST /kv/{object}/transaction`: every op applies, or none does. A check
//! that fails is a 409 naming its key; a limit broken by any op is a 413;
//! a body that is not a valid list of ops is a 400. In each refusal the
//! object is left exactly as it was.

use crate::harness::{Conn, Server};
use crate::kv_client::{
    assert_error, assert_ok, assert_over_limit, base64_encode, get, list, op_check, op_delete,
    op_put, ops, put, transaction,
};

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Writes `entries` to `object` and returns them as a list gives them.
fn seed(conn: &mut Conn, object: &str, entries: &[(&str, &str)]) -> Entries {
    for (key, value) in entries {
        put(conn, object, key.as_bytes(), value.as_bytes());
    }
    let listed = list(conn, object, "");
    assert_eq!(listed.len(), entries.len(), "seeded {object}");
    listed
}

/// Asserts `object` holds exactly `before`, after a refused transaction.
fn assert_unchanged(conn: &mut Conn, object: &str, before: &Entries, context: &str) {
    assert_eq!(
        list(conn, object, ""),
        *before,
        "{context}: the object must be as it was"
    );
    for (key, value) in before {
        assert_eq!(
            get(conn, object, key).as_ref(),
            Some(value),
            "{context}: key {:?}",
            String::from_utf8_lossy(key)
        );
    }
}

#[test]
fn every_op_applies_together() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let object = "tx-all";
    seed(
        &mut conn,
        object,
        &[("b", "old"), ("c", "x"), ("e", "keep")],
    );
    let body = ops(&[
        op_put("a", "1"),
        op_delete("b"),
        op_check("c", Some("x")),
        format!(
            "{{\"op\": \"put\", \"key\": \"d\", \"value_base64\": \"{}\"}}",
            base64_encode(&[0xff, 0xfe, 0x00])
        ),
        op_check("missing", None),
        op_delete("never-there"),
        op_put("a", "2"),
    ]);
    assert_ok(&transaction(&mut conn, object, &body), "the transaction");
    let expected: Entries = vec![
        (b"a".to_vec(), b"2".to_vec()),
        (b"c".to_vec(), b"x".to_vec()),
        (b"d".to_vec(), vec![0xff, 0xfe, 0x00]),
        (b"e".to_vec(), b"keep".to_vec()),
    ];
    assert_eq!(list(&mut conn, object, ""), expected);
    assert_eq!(get(&mut conn, object, b"b"), None);

    // A check of a binary value, given as base64.
    let body = ops(&[
        format!(
            "{{\"op\": \"check\", \"key\": \"d\", \"value_base64\": \"{}\"}}",
            base64_encode(&[0xff, 0xfe, 0x00])
        ),
        op_put("checked-binary", "yes"),
    ]);
    assert_ok(&transaction(&mut conn, object, &body), "a base64 check");
    assert_eq!(
        get(&mut conn, object, b"checked-binary").as_deref(),
        Some(&b"yes"[..])
    );
}

#[test]
fn a_failing_check_is_409_and_applies_nothing() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let object = "tx-409";
    let before = seed(&mut conn, object, &[("a", "1"), ("b", "2"), ("c", "x")]);
    let body = ops(&[
        op_put("a", "changed"),
        op_put("new", "1"),
        op_delete("b"),
        op_check("c", Some("y")),
        op_put("after", "1"),
    ]);
    let response = transaction(&mut conn, object, &body);
    let error = assert_error(&response, 409, "a check of c against a wrong value");
    error.assert_keys(&["error", "key"]);
    assert_eq!(error.str_field("key"), "c", "{response}");
    assert_unchanged(&mut conn, object, &before, "after the 409");
    assert_eq!(get(&mut conn, object, b"new"), None);
    assert_eq!(get(&mut conn, object, b"after"), None);

    // The first failing check is named, and a check is exact: a prefix, a
    // longer value, or a different case is not the value.
    for (value, what) in [("", "empty"), ("x ", "longer"), ("X", "upper case")] {
        let body = ops(&[
            op_check("a", Some("1")),
            op_put("b", "3"),
            op_check("c", Some(value)),
            op_check("a", Some("wrong too")),
        ]);
        let response = transaction(&mut conn, object, &body);
        let error = assert_error(&response, 409, what);
        assert_eq!(error.str_field("key"), "c", "{what}: {response}");
        assert_unchanged(&mut conn, object, &before, what);
    }

    // A check of a key that does not exist against a value fails too.
    let body = ops(&[op_put("a", "9"), op_check("nope", Some("1"))]);
    let response = transaction(&mut conn, object, &body);
    let error = assert_error(&response, 409, "a value check of a missing key");
    assert_eq!(error.str_field("key"), "nope", "{response}");
    assert_unchanged(&mut conn, object, &before, "a value check of a missing key");

    // The same ops with the right value apply.
    let body = ops(&[op_put("a", "changed"), op_check("c", Some("x"))]);
    assert_ok(&transaction(&mut conn, object, &body), "the right check");
    assert_eq!(
        get(&mut conn, object, b"a").as_deref(),
        Some(&b"changed"[..])
    );
}

#[test]
fn a_null_check_asserts_the_key_is_absent() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let object = "tx-null";
    // Create-if-absent: the first succeeds, the second finds the key.
    let create = ops(&[op_check("lock", None), op_put("lock", "owner-1")]);
    assert_ok(&transaction(&mut conn, object, &create), "first create");
    let again = ops(&[op_check("lock", None), op_put("lock", "owner-2")]);
    let response = transaction(&mut conn, object, &again);
    let error = assert_error(&response, 409, "second create");
    assert_eq!(error.str_field("key"), "lock", "{response}");
    assert_eq!(
        get(&mut conn, object, b"lock").as_deref(),
        Some(&b"owner-1"[..])
    );

    // An empty value is present, not absent.
    put(&mut conn, object, b"empty", b"");
    let response = transaction(&mut conn, object, &ops(&[op_check("empty", None)]));
    assert_error(&response, 409, "a null check of an empty value");
    let response = transaction(&mut conn, object, &ops(&[op_check("empty", Some(""))]));
    assert_ok(&response, "an empty-value check of an empty value");

    // After a delete the key is absent again.
    let release = ops(&[op_check("lock", Some("owner-1")), op_delete("lock")]);
    assert_ok(&transaction(&mut conn, object, &release), "release");
    assert_ok(
        &transaction(&mut conn, object, &again),
        "create after release",
    );
    assert_eq!(
        get(&mut conn, object, b"lock").as_deref(),
        Some(&b"owner-2"[..])
    );
}

#[test]
fn malformed_bodies_are_400_and_apply_nothing() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let object = "tx-400";
    let before = seed(&mut conn, object, &[("a", "1")]);
    let put_b = op_put("b", "1");
    let bad = [
        ("an empty body", String::new()),
        ("not JSON", "put b 1".to_string()),
        ("cut short", format!("{{\"ops\": [{put_b}")),
        ("trailing garbage", format!("{} x", ops(std::slice::from_ref(&put_b)))),
        ("no ops member", "{}".to_string()),
        ("ops not an array", "{\"ops\": \"put\"}".to_string()),
        ("an op not an object", "{\"ops\": [\"put\"]}".to_string()),
        ("a top-level array", format!("[{put_b}]")),
        (
            "an unknown member",
            format!("{{\"ops\": [{put_b}], \"atomic\": true}}"),
        ),
        (
            "an op without a key",
            format!("{{\"ops\": [{put_b}, {{\"op\": \"put\", \"value\": \"1\"}}]}}"),
        ),
        (
            "a put without a value",
            format!("{{\"ops\": [{put_b}, {{\"op\": \"put\", \"key\": \"c\"}}]}}"),
        ),
        (
            "a key that is a number",
            format!("{{\"ops\": [{put_b}, {{\"op\": \"put\", \"key\": 1, \"value\": \"1\"}}]}}"),
        ),
        (
            "value and value_base64 both",
            format!(
                "{{\"ops\": [{put_b}, {{\"op\": \"put\", \"key\": \"c\", \"value\": \"1\", \"value_base64\": \"MQ==\"}}]}}"
            ),
        ),
        (
            "value_base64 that is not base64",
            format!(
                "{{\"ops\": [{put_b}, {{\"op\": \"put\", \"key\": \"c\", \"value_base64\": \"!!\"}}]}}"
            ),
        ),
    ];
    for (what, body) in &bad {
        let response = transaction(&mut conn, object, body);
        assert_error(&response, 400, what);
        assert_unchanged(&mut conn, object, &before, what);
    }
}

#[test]
fn an_unknown_op_is_400_and_applies_nothing() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let object = "tx-unknown-op";
    let before = seed(&mut conn, object, &[("a", "1")]);
    for op in ["increment", "PUT", "get", ""] {
        let body = ops(&[
            op_put("b", "1"),
            op_delete("a"),
            format!("{{\"op\": \"{op}\", \"key\": \"a\", \"value\": \"1\"}}"),
        ]);
        let response = transaction(&mut conn, object, &body);
        assert_error(&response, 400, &format!("op {op:?}"));
        assert_unchanged(&mut conn, object, &before, &format!("op {op:?}"));
    }
}

#[test]
fn a_key_or_value_over_its_limit_is_413_and_applies_nothing() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let object = "tx-413";
    let before = seed(&mut conn, object, &[("a", "1"), ("b", "2")]);
    let big_value = "v".repeat(128 * 1024 + 1);
    let body = ops(&[
        op_put("a", "changed"),
        op_delete("b"),
        op_put("new", "1"),
        op_put("big", &big_value),
        op_put("after", "1"),
    ]);
    let response = transaction(&mut conn, object, &body);
    assert_over_limit(
        &response,
        "value_bytes_max",
        128 * 1024,
        "a value of 128 KiB + 1",
    );
    assert_unchanged(&mut conn, object, &before, "after a value over the limit");
    assert_eq!(get(&mut conn, object, b"new"), None);

    let long_key = "k".repeat(2049);
    let body = ops(&[op_put("new", "1"), op_put(&long_key, "1")]);
    let response = transaction(&mut conn, object, &body);
    assert_over_limit(&response, "key_bytes_max", 2048, "a key of 2049 bytes");
    assert_unchanged(&mut conn, object, &before, "after a key over the limit");

    // At the limits exactly, the same transaction applies.
    let body = ops(&[
        op_put("a", "changed"),
        op_put("big", &big_value[1..]),
        op_put(&long_key[1..], "1"),
    ]);
    assert_ok(&transaction(&mut conn, object, &body), "at the limits");
    assert_eq!(
        get(&mut conn, object, b"big").map(|value| value.len()),
        Some(128 * 1024)
    );
}

#[test]
fn more_than_1000_ops_is_413() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let object = "tx-ops";
    let before = seed(&mut conn, object, &[("a", "1")]);
    let too_many: Vec<String> = (0..1001)
        .map(|index| op_put(&format!("k{index}"), "v"))
        .collect();
    let response = transaction(&mut conn, object, &ops(&too_many));
    assert_error(&response, 413, "1001 ops");
    assert_unchanged(&mut conn, object, &before, "after 1001 ops");
    assert_ok(
        &transaction(&mut conn, object, &ops(&too_many[..1000])),
        "1000 ops",
    );
    assert_eq!(list(&mut conn, object, "limit=10000").len(), 1001);
}
