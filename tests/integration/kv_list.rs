//! `GET /kv/{object}/list`: entries in key order within the range its
//! options give (prefix, start, start_after, end), reversed on request, at
//! most `limit` of them; bytes that are not UTF-8 come as base64; a list
//! sees the writes made just before it.

use crate::harness::{Conn, Server};
use crate::kv_client::{
    assert_error, base64_encode, delete, list, list_keys, op_put, ops, put, transaction, try_list,
};
use std::collections::BTreeMap;

const OBJECT: &str = "listed";
/// In key order.
const KEYS: [&str; 8] = ["a", "a/1", "a/2", "a/3", "ab", "b", "b/1", "c"];

/// A server whose object [`OBJECT`] holds every key of [`KEYS`], each with
/// the value `v-{key}`, written in an order that is not key order.
fn server_with_keys() -> (Server, Conn) {
    let server = Server::start(2);
    let mut conn = server.connect();
    for key in KEYS.iter().rev() {
        put(
            &mut conn,
            OBJECT,
            key.as_bytes(),
            format!("v-{key}").as_bytes(),
        );
    }
    (server, conn)
}

/// Asserts the list with `query` gives exactly `expected` keys, in order,
/// each with its value.
fn assert_lists(conn: &mut Conn, query: &str, expected: &[&str]) {
    let entries = list(conn, OBJECT, query);
    let keys: Vec<String> = entries
        .iter()
        .map(|(key, _)| String::from_utf8_lossy(key).into_owned())
        .collect();
    assert_eq!(keys, expected, "keys listed with {query:?}");
    for (key, value) in &entries {
        let mut want = b"v-".to_vec();
        want.extend_from_slice(key);
        assert_eq!(*value, want, "value of {key:?} listed with {query:?}");
    }
}

fn reversed<'a>(keys: &[&'a str]) -> Vec<&'a str> {
    keys.iter().rev().copied().collect()
}

#[test]
fn list_gives_every_entry_in_key_order() {
    let (_server, mut conn) = server_with_keys();
    assert_lists(&mut conn, "", &KEYS);
    let response = conn.get(&format!("/kv/{OBJECT}/list"));
    assert_eq!(response.status, 200, "no query string at all: {response}");
    assert_eq!(list(&mut conn, "never-written", ""), []);
    // Byte order, not any other collation.
    put(&mut conn, "order", b"B", b"v");
    put(&mut conn, "order", b"a", b"v");
    put(&mut conn, "order", b"aa", b"v");
    put(&mut conn, "order", b"a\x01", b"v");
    put(&mut conn, "order", "é".as_bytes(), b"v");
    put(&mut conn, "order", b"_", b"v");
    assert_eq!(
        list_keys(&mut conn, "order", ""),
        ["B", "_", "a", "a\u{1}", "aa", "é"]
    );
}

#[test]
fn prefix_selects_the_keys_that_start_with_it() {
    let (_server, mut conn) = server_with_keys();
    assert_lists(&mut conn, "prefix=a/", &["a/1", "a/2", "a/3"]);
    assert_lists(&mut conn, "prefix=a%2F", &["a/1", "a/2", "a/3"]);
    assert_lists(&mut conn, "prefix=a", &["a", "a/1", "a/2", "a/3", "ab"]);
    assert_lists(&mut conn, "prefix=b", &["b", "b/1"]);
    assert_lists(&mut conn, "prefix=a/3", &["a/3"]);
    assert_lists(&mut conn, "prefix=a/4", &[]);
    assert_lists(&mut conn, "prefix=z", &[]);
    assert_lists(&mut conn, "prefix=", &KEYS);
    // A prefix ending in 0xff has no simple successor.
    put(&mut conn, OBJECT, b"\xff\xff", b"v-\xff\xff");
    put(&mut conn, OBJECT, b"\xff\xffz", b"v-\xff\xffz");
    let entries = list(&mut conn, OBJECT, "prefix=%FF%FF");
    assert_eq!(
        entries,
        [
            (b"\xff\xff".to_vec(), b"v-\xff\xff".to_vec()),
            (b"\xff\xffz".to_vec(), b"v-\xff\xffz".to_vec())
        ]
    );
}

#[test]
fn start_start_after_and_end_bound_the_range() {
    let (_server, mut conn) = server_with_keys();
    assert_lists(
        &mut conn,
        "start=a/2",
        &["a/2", "a/3", "ab", "b", "b/1", "c"],
    );
    assert_lists(&mut conn, "start=a/25", &["a/3", "ab", "b", "b/1", "c"]);
    assert_lists(
        &mut conn,
        "start_after=a/2",
        &["a/3", "ab", "b", "b/1", "c"],
    );
    assert_lists(
        &mut conn,
        "start_after=a/25",
        &["a/3", "ab", "b", "b/1", "c"],
    );
    assert_lists(&mut conn, "start=c", &["c"]);
    assert_lists(&mut conn, "start_after=c", &[]);
    assert_lists(&mut conn, "start=", &KEYS);
    assert_lists(&mut conn, "end=b", &["a", "a/1", "a/2", "a/3", "ab"]);
    assert_lists(&mut conn, "end=a", &[]);
    assert_lists(&mut conn, "end=a/", &["a"]);
    assert_lists(&mut conn, "end=zzz", &KEYS);
    assert_lists(
        &mut conn,
        "start=a/1&end=b/1",
        &["a/1", "a/2", "a/3", "ab", "b"],
    );
    assert_lists(
        &mut conn,
        "start_after=a/1&end=b/1",
        &["a/2", "a/3", "ab", "b"],
    );
    assert_lists(&mut conn, "start=b&end=b", &[]);
    // An empty or inverted range lists nothing; it is not an error.
    assert_lists(&mut conn, "start=c&end=a", &[]);
    assert_lists(&mut conn, "start_after=b&end=b", &[]);
    assert_lists(&mut conn, "start_after=c&end=a&reverse=true", &[]);
}

#[test]
fn reverse_gives_the_same_range_backwards() {
    let (_server, mut conn) = server_with_keys();
    assert_lists(&mut conn, "reverse=true", &reversed(&KEYS));
    assert_lists(&mut conn, "reverse=false", &KEYS);
    assert_lists(&mut conn, "reverse=true&prefix=a/", &["a/3", "a/2", "a/1"]);
    assert_lists(
        &mut conn,
        "reverse=true&start=a/2&end=b/1",
        &["b", "ab", "a/3", "a/2"],
    );
    assert_lists(
        &mut conn,
        "reverse=true&start_after=a/2&end=b/1",
        &["b", "ab", "a/3"],
    );
    assert_lists(&mut conn, "reverse=true&limit=2", &["c", "b/1"]);
    assert_lists(&mut conn, "reverse=true&prefix=a&limit=2", &["ab", "a/3"]);
    assert_lists(&mut conn, "reverse=true&end=a/3&limit=2", &["a/2", "a/1"]);
    for bad in ["reverse=yes", "reverse=1", "reverse=TRUE", "reverse="] {
        let response = try_list(&mut conn, OBJECT, bad);
        assert_error(&response, 400, bad);
    }
}

#[test]
fn limit_caps_the_entries_and_over_the_maximum_is_400() {
    let (_server, mut conn) = server_with_keys();
    assert_lists(&mut conn, "limit=0", &[]);
    assert_lists(&mut conn, "limit=1", &["a"]);
    assert_lists(&mut conn, "limit=3", &["a", "a/1", "a/2"]);
    assert_lists(&mut conn, "limit=8", &KEYS);
    assert_lists(&mut conn, "limit=9", &KEYS);
    assert_lists(&mut conn, "limit=10000", &KEYS);
    assert_lists(&mut conn, "prefix=a/&limit=2", &["a/1", "a/2"]);
    assert_lists(&mut conn, "start=ab&limit=2", &["ab", "b"]);
    assert_lists(&mut conn, "start_after=ab&end=c&limit=5", &["b", "b/1"]);
    for bad in [
        "limit=10001",
        "limit=100000000000000000000000",
        "limit=-1",
        "limit=abc",
        "limit=",
        "limit=1.5",
        "limit=%201",
    ] {
        let response = try_list(&mut conn, OBJECT, bad);
        assert_error(&response, 400, bad);
    }
}

#[test]
fn the_default_limit_is_1000() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let object = "thousand-and-one";
    let first: Vec<String> = (0..1000)
        .map(|index| op_put(&format!("k{index:04}"), "v"))
        .collect();
    crate::kv_client::assert_ok(&transaction(&mut conn, object, &ops(&first)), "1000 puts");
    put(&mut conn, object, b"k1000", b"v");
    let keys = list_keys(&mut conn, object, "");
    assert_eq!(keys.len(), 1000, "a list without a limit");
    assert_eq!(keys.first().map(String::as_str), Some("k0000"));
    assert_eq!(keys.last().map(String::as_str), Some("k0999"));
    assert_eq!(list_keys(&mut conn, object, "limit=10000").len(), 1001);
    let backwards = list_keys(&mut conn, object, "reverse=true");
    assert_eq!(backwards.len(), 1000, "a reverse list without a limit");
    assert_eq!(backwards.first().map(String::as_str), Some("k1000"));
}

#[test]
fn prefix_and_bounds_combine() {
    let (_server, mut conn) = server_with_keys();
    assert_lists(&mut conn, "prefix=a/&start=a/2", &["a/2", "a/3"]);
    assert_lists(&mut conn, "prefix=a/&start_after=a/1&limit=1", &["a/2"]);
    assert_lists(&mut conn, "prefix=a/&end=a/3", &["a/1", "a/2"]);
    assert_lists(&mut conn, "prefix=a&end=a/2", &["a", "a/1"]);
    // A bound outside the prefix's range does not widen it.
    assert_lists(&mut conn, "prefix=b&start=a", &["b", "b/1"]);
    assert_lists(&mut conn, "prefix=b&start_after=a", &["b", "b/1"]);
    assert_lists(&mut conn, "prefix=b&end=z", &["b", "b/1"]);
    assert_lists(&mut conn, "prefix=a&start=b", &[]);
    assert_lists(&mut conn, "prefix=a&start_after=b", &[]);
    assert_lists(&mut conn, "prefix=b&end=a", &[]);
    assert_lists(&mut conn, "prefix=a/&start_after=a/3", &[]);
    assert_lists(
        &mut conn,
        "limit=2&reverse=true&end=b&prefix=a&start=a/1",
        &["ab", "a/3"],
    );
}

#[test]
fn bytes_that_are_not_utf8_come_as_base64() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let object = "binary-list";
    put(&mut conn, object, b"bin", &[0xff, 0xfe]);
    put(&mut conn, object, b"text", "é ok".as_bytes());
    put(&mut conn, object, &[0xc3, 0x28], b"value of a bad key");
    let response = try_list(&mut conn, object, "");
    let body = response.json();
    let expected = format!(
        "{{\"entries\":[{{\"key\":\"bin\",\"value_base64\":\"{}\"}},{{\"key\":\"text\",\"value\":\"é ok\"}},{{\"key_base64\":\"{}\",\"value\":\"value of a bad key\"}}]}}",
        base64_encode(&[0xff, 0xfe]),
        base64_encode(&[0xc3, 0x28]),
    );
    assert_eq!(base64_encode(&[0xff, 0xfe]), "//4=");
    let expected = crate::harness::json::parse(&expected).expect("valid JSON");
    // Members may come in any order; compare them sorted.
    let sorted = |value: &crate::harness::json::Value| -> Vec<Vec<(String, String)>> {
        let crate::harness::json::Value::Array(entries) =
            value.get("entries").expect("has entries")
        else {
            panic!("entries is not an array in {value}")
        };
        entries
            .iter()
            .map(|entry| {
                entry
                    .keys()
                    .into_iter()
                    .map(|name| (name.clone(), entry.str_field(&name).to_string()))
                    .collect()
            })
            .collect()
    };
    assert_eq!(sorted(&body), sorted(&expected), "{response}");
    // And through the helper that decodes them.
    assert_eq!(
        list(&mut conn, object, "prefix=bin"),
        [(b"bin".to_vec(), vec![0xff, 0xfe])]
    );
}

#[test]
fn unknown_or_badly_encoded_options_are_400() {
    let (_server, mut conn) = server_with_keys();
    for bad in [
        "cursor=x",
        "Prefix=a",
        "prefix=a&startAfter=a",
        "limit=1&allowConcurrency=true",
        "prefix=%ZZ",
    ] {
        let response = try_list(&mut conn, OBJECT, bad);
        assert_error(&response, 400, bad);
    }
    assert_lists(&mut conn, "", &KEYS);
}

#[test]
fn a_list_sees_the_writes_just_before_it() {
    let server = Server::start(2);
    let mut writer = server.connect();
    let mut reader = server.connect();
    // Several objects, so that both the shard a connection landed on and
    // the other one own some of them.
    let objects: Vec<String> = (0..6).map(|index| format!("fresh-{index}")).collect();
    let mut expected: BTreeMap<&str, BTreeMap<Vec<u8>, Vec<u8>>> = BTreeMap::new();
    for round in 0..10u32 {
        for object in &objects {
            let state = expected.entry(object).or_default();
            let key = format!("k{}", round % 4).into_bytes();
            if round % 3 == 2 {
                let existed = delete(&mut writer, object, &key);
                assert_eq!(existed, state.remove(&key).is_some(), "round {round}");
            } else {
                let value = format!("round {round}").into_bytes();
                put(&mut writer, object, &key, &value);
                state.insert(key, value);
            }
            let want: Vec<(Vec<u8>, Vec<u8>)> =
                state.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            assert_eq!(
                list(&mut reader, object, ""),
                want,
                "{object} round {round}, on another connection"
            );
            assert_eq!(
                list(&mut writer, object, "prefix=k"),
                want,
                "{object} round {round}, on the writing connection"
            );
        }
    }
    // Writes to many keys, each listed at once.
    for index in 0..50u32 {
        let key = format!("many-{index:02}");
        put(&mut writer, "many", key.as_bytes(), b"x");
        let keys = list_keys(&mut reader, "many", "reverse=true&limit=1");
        assert_eq!(keys, [key], "the newest and greatest key");
    }
}
