//! Helpers for the `queue` tests: append, pull, ack over HTTP.

#![allow(dead_code)]

use crate::harness::json::Value;
use crate::harness::Conn;

/// A message as a pull or a socket hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub seq: u64,
    pub body: String,
}

/// Appends one message; returns its sequence number.
pub fn append(conn: &mut Conn, queue: &str, body: &str) -> u64 {
    let response = conn.post(&format!("/queue/{queue}/messages"), body.as_bytes());
    assert_eq!(response.status, 200, "append to {queue}: {response}");
    let json = response.json();
    assert_eq!(json.u64_field("count"), 1);
    json.u64_field("first_seq")
}

/// Appends a JSON batch; returns the first sequence number.
pub fn append_batch(conn: &mut Conn, queue: &str, bodies: &[&str]) -> u64 {
    let quoted: Vec<String> = bodies.iter().map(|b| format!("{b:?}")).collect();
    let body = format!("{{\"messages\": [{}]}}", quoted.join(","));
    let response = conn.request(
        "POST",
        &format!("/queue/{queue}/messages"),
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(response.status, 200, "batch append to {queue}: {response}");
    let json = response.json();
    assert_eq!(json.u64_field("count"), bodies.len() as u64);
    json.u64_field("first_seq")
}

/// The messages of a `{"messages": [...]}` answer.
pub fn messages_of(json: &Value) -> Vec<Msg> {
    match json.get("messages") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|m| Msg {
                seq: m.u64_field("seq"),
                body: m.str_field("body").to_string(),
            })
            .collect(),
        _ => panic!("expected a messages array in {json}"),
    }
}

/// Pulls with the query `query` (e.g. `max=5&visibility_ms=200`).
pub fn pull(conn: &mut Conn, queue: &str, query: &str) -> Vec<Msg> {
    let response = conn.post(&format!("/queue/{queue}/pull?{query}"), b"");
    assert_eq!(response.status, 200, "pull from {queue}: {response}");
    messages_of(&response.json())
}

/// Acknowledges `seqs`; returns how many were stored.
pub fn ack(conn: &mut Conn, queue: &str, seqs: &[u64]) -> u64 {
    let list: Vec<String> = seqs.iter().map(u64::to_string).collect();
    let body = format!("{{\"seqs\": [{}]}}", list.join(","));
    let response = conn.post(&format!("/queue/{queue}/ack"), body.as_bytes());
    assert_eq!(response.status, 200, "ack on {queue}: {response}");
    response.json().u64_field("acked")
}

/// `GET /queue/{queue}`.
pub fn stats(conn: &mut Conn, queue: &str) -> Value {
    let response = conn.get(&format!("/queue/{queue}"));
    assert_eq!(response.status, 200, "stats of {queue}: {response}");
    response.json()
}
