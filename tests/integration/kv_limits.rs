//! `[classes.kv]` limits: a key over `key_bytes_max`, a value over
//! `value_bytes_max`, or a write that would take an object's keys plus
//! values over `storage_bytes_max` is a 413 naming the limit, and writes
//! nothing. Deleting frees room again.

use crate::harness::{Conn, Server};
use crate::kv_client::{
    assert_ok, assert_over_limit, delete, delete_all, get, list, op_delete, op_put, ops, put,
    transaction, try_put,
};

const KEY_BYTES_MAX: usize = 16;
const VALUE_BYTES_MAX: usize = 64;
const STORAGE_BYTES_MAX: u64 = 200;
const LOW_LIMITS: &str =
    "[classes.kv]\nkey_bytes_max = 16\nvalue_bytes_max = 64\nstorage_bytes_max = 200\n";

fn keys_of(conn: &mut Conn, object: &str) -> Vec<String> {
    list(conn, object, "")
        .into_iter()
        .map(|(key, _)| String::from_utf8_lossy(&key).into_owned())
        .collect()
}

#[test]
fn a_key_over_key_bytes_max_is_413_and_not_written() {
    let server = Server::start_with_config(2, LOW_LIMITS);
    let mut conn = server.connect();
    let object = "long-keys";
    let at_limit = "k".repeat(KEY_BYTES_MAX);
    let over = "k".repeat(KEY_BYTES_MAX + 1);
    let response = try_put(&mut conn, object, over.as_bytes(), b"v");
    assert_over_limit(
        &response,
        "key_bytes_max",
        KEY_BYTES_MAX as u64,
        "a 17-byte key",
    );
    assert_eq!(keys_of(&mut conn, object), Vec::<String>::new());
    // Multi-byte characters count in bytes: 6 × 3 bytes = 18.
    let response = try_put(&mut conn, object, "€€€€€€".as_bytes(), b"v");
    assert_over_limit(
        &response,
        "key_bytes_max",
        KEY_BYTES_MAX as u64,
        "six euro signs",
    );
    put(&mut conn, object, at_limit.as_bytes(), b"v");
    assert_eq!(keys_of(&mut conn, object), [at_limit]);
}

#[test]
fn a_value_over_value_bytes_max_is_413_and_not_written() {
    let server = Server::start_with_config(2, LOW_LIMITS);
    let mut conn = server.connect();
    let object = "big-values";
    let response = try_put(&mut conn, object, b"k", &[b'v'; VALUE_BYTES_MAX + 1]);
    assert_over_limit(
        &response,
        "value_bytes_max",
        VALUE_BYTES_MAX as u64,
        "65 bytes",
    );
    assert_eq!(get(&mut conn, object, b"k"), None);
    put(&mut conn, object, b"k", &[b'v'; VALUE_BYTES_MAX]);
    // Overwriting with a value over the limit leaves the old one.
    let response = try_put(&mut conn, object, b"k", &[b'w'; VALUE_BYTES_MAX + 1]);
    assert_over_limit(
        &response,
        "value_bytes_max",
        VALUE_BYTES_MAX as u64,
        "an overwrite",
    );
    assert_eq!(
        get(&mut conn, object, b"k"),
        Some(vec![b'v'; VALUE_BYTES_MAX])
    );
}

#[test]
fn a_write_over_storage_bytes_max_is_413_until_a_delete_frees_room() {
    let server = Server::start_with_config(2, LOW_LIMITS);
    let mut conn = server.connect();
    let object = "full";
    let value = [b'v'; VALUE_BYTES_MAX];
    // Three entries of 2 + 64 bytes: 198 of 200.
    for key in ["k1", "k2", "k3"] {
        put(&mut conn, object, key.as_bytes(), &value);
    }
    let response = try_put(&mut conn, object, b"k4", b"x");
    assert_over_limit(
        &response,
        "storage_bytes_max",
        STORAGE_BYTES_MAX,
        "201 bytes",
    );
    assert_eq!(get(&mut conn, object, b"k4"), None);
    // Shrinking an entry frees its bytes; growing one counts its growth.
    put(&mut conn, object, b"k1", &value[..60]);
    put(&mut conn, object, b"z", b"zzz");
    // 2 + 60 + 2 × 66 + 4 = 198: k1 may grow by 2 bytes, not by 3.
    let response = try_put(&mut conn, object, b"k1", &[b'w'; 63]);
    assert_over_limit(
        &response,
        "storage_bytes_max",
        STORAGE_BYTES_MAX,
        "k1 growing by 3",
    );
    assert_eq!(get(&mut conn, object, b"k1"), Some(value[..60].to_vec()));
    put(&mut conn, object, b"k1", &value[..62]);
    // Exactly at the limit now: not one byte more.
    let response = try_put(&mut conn, object, b"y", b"");
    assert_over_limit(
        &response,
        "storage_bytes_max",
        STORAGE_BYTES_MAX,
        "201 bytes again",
    );
    // Other objects have their own room.
    put(&mut conn, "other", b"k1", &value);
    // Deleting a key frees its bytes.
    assert!(delete(&mut conn, object, b"k2"));
    put(&mut conn, object, b"k4", &value);
    assert_eq!(keys_of(&mut conn, object), ["k1", "k3", "k4", "z"]);
    let response = try_put(&mut conn, object, b"k5", b"");
    assert_over_limit(
        &response,
        "storage_bytes_max",
        STORAGE_BYTES_MAX,
        "full again",
    );
    // Deleting everything frees all of it.
    assert_eq!(delete_all(&mut conn, object), 4);
    for key in ["k1", "k2", "k3"] {
        put(&mut conn, object, key.as_bytes(), &value);
    }
}

#[test]
fn a_transaction_over_storage_bytes_max_applies_nothing() {
    let server = Server::start_with_config(2, LOW_LIMITS);
    let mut conn = server.connect();
    let object = "full-tx";
    let value = "v".repeat(VALUE_BYTES_MAX);
    put(&mut conn, object, b"k1", value.as_bytes());
    put(&mut conn, object, b"k2", value.as_bytes());
    let before = list(&mut conn, object, "");
    // Each op fits alone; together they come to 2 × 66 + 2 × 66 = 264.
    let body = ops(&[
        op_put("k3", &value),
        op_delete("k1"),
        op_put("k4", &value),
        op_put("k5", &value),
    ]);
    let response = transaction(&mut conn, object, &body);
    assert_over_limit(
        &response,
        "storage_bytes_max",
        STORAGE_BYTES_MAX,
        "the transaction",
    );
    assert_eq!(list(&mut conn, object, ""), before, "nothing applied");
    // The refused transaction left no bytes counted: a third entry fits.
    put(&mut conn, object, b"k3", value.as_bytes());
    // A transaction that deletes before it writes fits.
    let body = ops(&[
        op_delete("k1"),
        op_delete("k2"),
        op_put("k4", &value),
        op_put("k5", &value),
    ]);
    assert_ok(&transaction(&mut conn, object, &body), "deletes first");
    assert_eq!(keys_of(&mut conn, object), ["k3", "k4", "k5"]);
}

#[test]
fn storage_accounting_survives_sigkill() {
    let mut server = Server::start_with_config(2, LOW_LIMITS);
    let mut conn = server.connect();
    let value = [b'v'; VALUE_BYTES_MAX];
    for key in ["k1", "k2", "k3"] {
        put(&mut conn, "counted", key.as_bytes(), &value);
    }
    drop(conn);
    server.kill9();
    server.restart(2);
    let mut conn = server.connect();
    let response = try_put(&mut conn, "counted", b"k4", b"x");
    assert_over_limit(
        &response,
        "storage_bytes_max",
        STORAGE_BYTES_MAX,
        "after restart",
    );
    assert!(delete(&mut conn, "counted", b"k1"));
    put(&mut conn, "counted", b"k4", &value);
}

#[test]
fn the_default_value_limit_is_128_kib() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let object = "default-limits";
    let response = try_put(&mut conn, object, b"big", &vec![b'x'; 131_073]);
    assert_over_limit(&response, "value_bytes_max", 131_072, "131073 bytes");
    assert_eq!(get(&mut conn, object, b"big"), None);
    let response = try_put(&mut conn, object, b"big", &vec![b'x'; 131_072]);
    assert_ok(&response, "131072 bytes");
    assert_eq!(
        get(&mut conn, object, b"big").map(|v| v.len()),
        Some(131_072)
    );
    // And the default key limit is 2 KiB.
    let response = try_put(&mut conn, object, "k".repeat(2049).as_bytes(), b"v");
    assert_over_limit(&response, "key_bytes_max", 2048, "a 2049-byte key");
    put(&mut conn, object, "k".repeat(2048).as_bytes(), b"v");
    assert_eq!(list(&mut conn, object, "").len(), 2);
}
