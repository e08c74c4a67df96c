//! Calls to the `kv` class shared by the kv and alarm tests. Each checks the
//! status and the shape of the answer, so that a test reads as what it does
//! and a wrong answer fails with the whole response in the message.
//!
//! ```ignore
//! put(&mut conn, "o", b"k", b"v");
//! assert_eq!(get(&mut conn, "o", b"k").as_deref(), Some(&b"v"[..]));
//! assert_eq!(list_keys(&mut conn, "o", "prefix=k"), ["k"]);
//! ```

#![allow(dead_code)]

use crate::harness::json::Value;
use crate::harness::{Conn, Response};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The key an alarm writes when it fires.
pub const FIRED_KEY: &[u8] = b"alarm:fired";

/// Percent-encodes every byte but the unreserved ones (RFC 3986), so any
/// key is one path segment or one query value.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &byte in bytes {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

pub fn key_path(object: &str, key: &[u8]) -> String {
    format!("/kv/{object}/keys/{}", encode(key))
}

/// Text as a JSON string literal, quotes included.
pub fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut group = [0u8; 3];
        group[..chunk.len()].copy_from_slice(chunk);
        let bits = u32::from_be_bytes([0, group[0], group[1], group[2]]);
        for index in 0..4 {
            if index <= chunk.len() {
                let sextet = (bits >> (18 - 6 * index)) & 0x3f;
                out.push(BASE64_ALPHABET[sextet as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 with padding; panics on anything else.
pub fn base64_decode(text: &str) -> Vec<u8> {
    assert!(
        text.len().is_multiple_of(4),
        "base64 {text:?} is not padded to a multiple of 4"
    );
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(4) {
        let padding = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        assert!(padding <= 2, "base64 {text:?} has too much padding");
        let mut bits = 0u32;
        for &c in chunk {
            let sextet = match c {
                b'=' => 0,
                _ => BASE64_ALPHABET
                    .iter()
                    .position(|&a| a == c)
                    .unwrap_or_else(|| panic!("{:?} is not base64 in {text:?}", c as char))
                    as u32,
            };
            bits = bits << 6 | sextet;
        }
        out.extend_from_slice(&bits.to_be_bytes()[1..4 - padding]);
    }
    out
}

/// Asserts a 200 with exactly `{"ok": true}`.
pub fn assert_ok(response: &Response, context: &str) {
    assert_eq!(response.status, 200, "{context}: {response}");
    response.assert_json_content_type();
    let body = response.json();
    body.assert_keys(&["ok"]);
    assert_eq!(
        body.get("ok"),
        Some(&Value::Bool(true)),
        "{context}: {response}"
    );
}

/// Asserts a JSON error answer with `status`, and returns its body.
pub fn assert_error(response: &Response, status: u16, context: &str) -> Value {
    assert_eq!(response.status, status, "{context}: {response}");
    response.assert_json_content_type();
    let body = response.json();
    assert!(
        !body.str_field("error").is_empty(),
        "{context}: the error says nothing: {response}"
    );
    body
}

/// Asserts a 413 naming the limit `limit` and its maximum `max`.
pub fn assert_over_limit(response: &Response, limit: &str, max: u64, context: &str) {
    let body = assert_error(response, 413, context);
    body.assert_keys(&["error", "limit", "max"]);
    assert_eq!(body.str_field("limit"), limit, "{context}: {response}");
    assert_eq!(body.u64_field("max"), max, "{context}: {response}");
}

pub fn try_put(conn: &mut Conn, object: &str, key: &[u8], value: &[u8]) -> Response {
    conn.request("PUT", &key_path(object, key), &[], value)
}

/// `PUT` that must succeed.
pub fn put(conn: &mut Conn, object: &str, key: &[u8], value: &[u8]) {
    let response = try_put(conn, object, key, value);
    assert_ok(
        &response,
        &format!("PUT of key {:?} in {object}", String::from_utf8_lossy(key)),
    );
}

/// `GET` of a key: its bytes, or `None` on a 404.
pub fn get(conn: &mut Conn, object: &str, key: &[u8]) -> Option<Vec<u8>> {
    let response = conn.get(&key_path(object, key));
    let context = format!("GET of key {:?} in {object}", String::from_utf8_lossy(key));
    match response.status {
        200 => {
            assert_eq!(
                response.header("content-type"),
                Some("application/octet-stream"),
                "{context}: {response}"
            );
            Some(response.body)
        }
        404 => None,
        _ => panic!("{context}: expected 200 or 404, got {response}"),
    }
}

/// `DELETE` of a key: whether it existed.
pub fn delete(conn: &mut Conn, object: &str, key: &[u8]) -> bool {
    let response = conn.request("DELETE", &key_path(object, key), &[], b"");
    let context = format!(
        "DELETE of key {:?} in {object}",
        String::from_utf8_lossy(key)
    );
    assert_eq!(response.status, 200, "{context}: {response}");
    response.assert_json_content_type();
    let body = response.json();
    body.assert_keys(&["deleted"]);
    match body.get("deleted") {
        Some(Value::Bool(deleted)) => *deleted,
        _ => panic!("{context}: `deleted` is not a boolean: {response}"),
    }
}

/// `DELETE /kv/{object}`: how many keys it deleted.
pub fn delete_all(conn: &mut Conn, object: &str) -> u64 {
    let response = conn.request("DELETE", &format!("/kv/{object}"), &[], b"");
    assert_eq!(response.status, 200, "DELETE of {object}: {response}");
    response.assert_json_content_type();
    let body = response.json();
    body.assert_keys(&["deleted"]);
    body.u64_field("deleted")
}

pub fn try_list(conn: &mut Conn, object: &str, query: &str) -> Response {
    conn.get(&format!("/kv/{object}/list?{query}"))
}

/// `GET /kv/{object}/list?{query}`, with base64 fields decoded.
pub fn list(conn: &mut Conn, object: &str, query: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let response = try_list(conn, object, query);
    let context = format!("list of {object} with {query:?}");
    assert_eq!(response.status, 200, "{context}: {response}");
    response.assert_json_content_type();
    let body = response.json();
    body.assert_keys(&["entries"]);
    let Some(Value::Array(entries)) = body.get("entries") else {
        panic!("{context}: `entries` is not an array: {response}");
    };
    entries
        .iter()
        .map(|entry| {
            let key = bytes_field(entry, "key", &context);
            let value = bytes_field(entry, "value", &context);
            assert_eq!(
                entry.keys().len(),
                2,
                "{context}: an entry has other members: {entry}"
            );
            (key, value)
        })
        .collect()
}

/// The member `name` (text) or `name_base64` (anything else) of an entry:
/// exactly one of them, and base64 only for bytes that are not UTF-8.
fn bytes_field(entry: &Value, name: &str, context: &str) -> Vec<u8> {
    let base64_name = format!("{name}_base64");
    match (entry.get(name), entry.get(&base64_name)) {
        (Some(Value::String(text)), None) => text.clone().into_bytes(),
        (None, Some(Value::String(encoded))) => {
            let bytes = base64_decode(encoded);
            assert!(
                std::str::from_utf8(&bytes).is_err(),
                "{context}: UTF-8 {name} sent as base64: {entry}"
            );
            bytes
        }
        _ => panic!("{context}: expected one string {name} or {base64_name} in {entry}"),
    }
}

/// The keys of a list, as text.
pub fn list_keys(conn: &mut Conn, object: &str, query: &str) -> Vec<String> {
    list(conn, object, query)
        .into_iter()
        .map(|(key, _)| String::from_utf8(key).expect("these tests list UTF-8 keys"))
        .collect()
}

pub fn transaction(conn: &mut Conn, object: &str, body: &str) -> Response {
    conn.post(&format!("/kv/{object}/transaction"), body.as_bytes())
}

/// A transaction's `{"ops": [...]}` from ops already written as JSON.
pub fn ops(ops: &[String]) -> String {
    format!("{{\"ops\": [{}]}}", ops.join(", "))
}

pub fn op_put(key: &str, value: &str) -> String {
    format!(
        "{{\"op\": \"put\", \"key\": {}, \"value\": {}}}",
        json_string(key),
        json_string(value)
    )
}

pub fn op_delete(key: &str) -> String {
    format!("{{\"op\": \"delete\", \"key\": {}}}", json_string(key))
}

/// A check that `key` holds `value`, or is absent for `None`.
pub fn op_check(key: &str, value: Option<&str>) -> String {
    let value = value.map_or("null".to_string(), json_string);
    format!(
        "{{\"op\": \"check\", \"key\": {}, \"value\": {value}}}",
        json_string(key)
    )
}

/// `PUT /kv/{object}/alarm` with `body`: checks the answer and returns its
/// `at_ms`.
pub fn set_alarm(conn: &mut Conn, object: &str, body: &str) -> u64 {
    let response = conn.request("PUT", &format!("/kv/{object}/alarm"), &[], body.as_bytes());
    let context = format!("PUT alarm {body} of {object}");
    assert_eq!(response.status, 200, "{context}: {response}");
    response.assert_json_content_type();
    let json = response.json();
    json.assert_keys(&["at_ms", "ok"]);
    assert_eq!(
        json.get("ok"),
        Some(&Value::Bool(true)),
        "{context}: {response}"
    );
    json.u64_field("at_ms")
}

/// `GET /kv/{object}/alarm`.
pub fn alarm(conn: &mut Conn, object: &str) -> Option<u64> {
    let response = conn.get(&format!("/kv/{object}/alarm"));
    let context = format!("GET alarm of {object}");
    assert_eq!(response.status, 200, "{context}: {response}");
    response.assert_json_content_type();
    let body = response.json();
    body.assert_keys(&["at_ms"]);
    match body.get("at_ms") {
        Some(Value::Null) => None,
        _ => Some(body.u64_field("at_ms")),
    }
}

pub fn delete_alarm(conn: &mut Conn, object: &str) {
    let response = conn.request("DELETE", &format!("/kv/{object}/alarm"), &[], b"");
    assert_ok(&response, &format!("DELETE alarm of {object}"));
}

/// The time `alarm:fired` records, if the object's alarm has fired.
pub fn fired_at(conn: &mut Conn, object: &str) -> Option<u64> {
    let value = get(conn, object, FIRED_KEY)?;
    let text = String::from_utf8(value).expect("alarm:fired is text");
    Some(text.parse().unwrap_or_else(|_| {
        panic!("alarm:fired of {object} is {text:?}, not a decimal time in ms")
    }))
}

/// Polls until the object's alarm has fired, for at most `timeout`.
pub fn wait_fired(conn: &mut Conn, object: &str, timeout: Duration) -> Option<u64> {
    let mut fired = None;
    crate::harness::eventually(timeout, || {
        fired = fired_at(conn, object);
        fired.is_some()
    });
    fired
}

/// The sum over shards of the counter `name` at `GET /metrics` (or its
/// one value, for a counter of the whole process).
pub fn metric_total(conn: &mut Conn, name: &str) -> u64 {
    let response = conn.get("/metrics");
    assert_eq!(response.status, 200, "GET /metrics: {response}");
    let text = response.text();
    let (labelled, plain) = (format!("{name}{{"), format!("{name} "));
    let values: Vec<u64> = text
        .lines()
        .filter(|line| line.starts_with(&labelled) || line.starts_with(&plain))
        .map(|line| {
            let value = line.rsplit(' ').next().unwrap_or("");
            value
                .parse()
                .unwrap_or_else(|_| panic!("metric line {line:?} does not end in a count"))
        })
        .collect();
    assert!(!values.is_empty(), "no {name} in /metrics:\n{text}");
    values.iter().sum()
}

/// This machine's wall clock in ms since the Unix epoch, as the server
/// reads it.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as u64
}
