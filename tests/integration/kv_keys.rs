//! `kv` keys: a value put is the value got, byte for byte, until it is
//! overwritten or deleted; keys are percent-decoded from the path; each
//! object has its own keys.

use crate::harness::{Conn, Response, Server};
use crate::kv_client::{assert_ok, delete, get, key_path, list, put, try_put};

/// `PUT` with the key exactly as written in the path.
fn try_put_raw(conn: &mut Conn, object: &str, path_key: &str, value: &[u8]) -> Response {
    conn.request("PUT", &format!("/kv/{object}/keys/{path_key}"), &[], value)
}

#[test]
fn put_get_delete_round_trip() {
    let server = Server::start(2);
    let mut conn = server.connect();
    put(&mut conn, "round-trip", b"greeting", b"hello");
    assert_eq!(
        get(&mut conn, "round-trip", b"greeting").as_deref(),
        Some(&b"hello"[..])
    );
    assert!(delete(&mut conn, "round-trip", b"greeting"), "first delete");
    assert_eq!(get(&mut conn, "round-trip", b"greeting"), None);
    assert!(
        !delete(&mut conn, "round-trip", b"greeting"),
        "a second delete finds nothing"
    );
    put(&mut conn, "round-trip", b"greeting", b"back again");
    assert_eq!(
        get(&mut conn, "round-trip", b"greeting").as_deref(),
        Some(&b"back again"[..]),
        "a deleted key can be written again"
    );
}

#[test]
fn missing_keys_are_404() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let response = conn.get(&key_path("never-written", b"nothing"));
    assert_eq!(response.status, 404, "{response}");
    put(&mut conn, "written", b"a", b"1");
    for key in [&b"b"[..], b"A", b"a ", b"aa", b"alarm:fired"] {
        assert_eq!(
            get(&mut conn, "written", key),
            None,
            "key {:?} was never written",
            String::from_utf8_lossy(key)
        );
    }
    assert!(!delete(&mut conn, "never-written", b"nothing"));
}

#[test]
fn a_put_overwrites_the_value() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let values: [&[u8]; 4] = [b"first", b"a much longer second value", b"3", b""];
    for value in values {
        put(&mut conn, "overwrite", b"k", value);
        assert_eq!(
            get(&mut conn, "overwrite", b"k").as_deref(),
            Some(value),
            "after putting {:?}",
            String::from_utf8_lossy(value)
        );
    }
    let entries = list(&mut conn, "overwrite", "");
    assert_eq!(
        entries,
        [(b"k".to_vec(), Vec::new())],
        "an empty value is still a value, and overwrites leave one entry"
    );
}

#[test]
fn binary_values_round_trip() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let every_byte: Vec<u8> = (0..=255u8).collect();
    let repeated: Vec<u8> = every_byte.iter().cycle().take(5000).copied().collect();
    let values: [&[u8]; 5] = [
        &every_byte,
        &repeated,
        b"\0",
        b"\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
        &[0xff, 0xfe, 0x00, 0xc3],
    ];
    for (index, value) in values.iter().enumerate() {
        let key = format!("binary-{index}");
        put(&mut conn, "binary", key.as_bytes(), value);
        let got = get(&mut conn, "binary", key.as_bytes());
        assert!(
            got.as_deref() == Some(*value),
            "value {index} ({} bytes) came back as {:?}",
            value.len(),
            got.map(|got| got.len())
        );
    }
    // The connection is still in step after the binary bodies.
    assert_eq!(conn.get("/healthz").text(), "ok");
}

#[test]
fn percent_encoded_keys_are_decoded() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let object = "encoded-keys";
    let put_raw = |conn: &mut Conn, path_key: &str, value: &[u8]| {
        let response = try_put_raw(conn, object, path_key, value);
        assert_ok(&response, &format!("PUT of key {path_key:?}"));
    };
    put_raw(&mut conn, "a%2Fb", b"slash");
    put_raw(&mut conn, "a%20b", b"space");
    put_raw(&mut conn, "%C3%A9t%C3%A9", b"accents");
    put_raw(&mut conn, "100%25", b"percent");
    put_raw(&mut conn, "a+b", b"plus");
    put_raw(&mut conn, "%61%62%63", b"abc");

    assert_eq!(
        get(&mut conn, object, b"a/b").as_deref(),
        Some(&b"slash"[..])
    );
    assert_eq!(
        get(&mut conn, object, b"a b").as_deref(),
        Some(&b"space"[..])
    );
    assert_eq!(
        get(&mut conn, object, "été".as_bytes()).as_deref(),
        Some(&b"accents"[..])
    );
    assert_eq!(
        get(&mut conn, object, b"100%").as_deref(),
        Some(&b"percent"[..])
    );
    assert_eq!(
        get(&mut conn, object, b"a+b").as_deref(),
        Some(&b"plus"[..]),
        "'+' is not a space in a path"
    );
    assert_eq!(get(&mut conn, object, b"abc").as_deref(), Some(&b"abc"[..]));
    let response = conn.get(&format!("/kv/{object}/keys/a%2fb"));
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b"slash"[..]),
        "%2f and %2F decode alike: {response}"
    );
    // "a/b" is one key, neither "a" nor "b".
    assert_eq!(get(&mut conn, object, b"a"), None);
    assert_eq!(get(&mut conn, object, b"b"), None);

    let mut expected: Vec<(Vec<u8>, Vec<u8>)> = [
        ("a/b", "slash"),
        ("a b", "space"),
        ("été", "accents"),
        ("100%", "percent"),
        ("a+b", "plus"),
        ("abc", "abc"),
    ]
    .iter()
    .map(|(key, value)| (key.as_bytes().to_vec(), value.as_bytes().to_vec()))
    .collect();
    expected.sort();
    assert_eq!(
        list(&mut conn, object, ""),
        expected,
        "the list shows the decoded keys"
    );

    // A key of bytes that are not UTF-8 is a key like any other.
    put(&mut conn, object, &[0xff, 0x00, 0xfe], b"raw");
    assert_eq!(
        get(&mut conn, object, &[0xff, 0x00, 0xfe]).as_deref(),
        Some(&b"raw"[..])
    );
    assert!(delete(&mut conn, object, &[0xff, 0x00, 0xfe]));

    for bad in ["%", "a%2", "%G0", "%zz"] {
        let response = try_put_raw(&mut conn, object, bad, b"x");
        assert_eq!(response.status, 400, "key {bad:?}: {response}");
    }
    assert_eq!(
        list(&mut conn, object, "").len(),
        6,
        "badly encoded keys wrote nothing"
    );
}

#[test]
fn objects_are_independent() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let objects: Vec<String> = (0..16)
        .map(|index| format!("independent-{index}"))
        .collect();
    for (index, object) in objects.iter().enumerate() {
        put(
            &mut conn,
            object,
            b"shared-key",
            format!("value of {index}").as_bytes(),
        );
        put(
            &mut conn,
            object,
            format!("own-{index}").as_bytes(),
            b"mine",
        );
    }
    assert!(delete(&mut conn, &objects[0], b"shared-key"));
    put(&mut conn, &objects[1], b"shared-key", b"changed");
    assert_eq!(get(&mut conn, &objects[0], b"shared-key"), None);
    assert_eq!(
        get(&mut conn, &objects[1], b"shared-key").as_deref(),
        Some(&b"changed"[..])
    );
    for (index, object) in objects.iter().enumerate().skip(2) {
        let expected = format!("value of {index}");
        assert_eq!(
            get(&mut conn, object, b"shared-key").as_deref(),
            Some(expected.as_bytes()),
            "object {object}"
        );
        let keys: Vec<Vec<u8>> = list(&mut conn, object, "")
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(
            keys,
            [format!("own-{index}").into_bytes(), b"shared-key".to_vec()],
            "object {object} lists only its own keys"
        );
    }
    // Same key, names that differ only slightly: still different objects.
    put(&mut conn, "ab", b"k", b"of ab");
    put(&mut conn, "a", b"k", b"of a");
    assert_eq!(get(&mut conn, "ab", b"k").as_deref(), Some(&b"of ab"[..]));
    assert_eq!(get(&mut conn, "a", b"k").as_deref(), Some(&b"of a"[..]));
    let response = try_put(&mut conn, "a%2Fb", b"k", b"of a/b");
    assert_eq!(response.status, 200, "{response}");
    assert_eq!(get(&mut conn, "ab", b"k").as_deref(), Some(&b"of ab"[..]));
}
