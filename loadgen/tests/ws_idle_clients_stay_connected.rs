//! `loadgen ws --senders none` connects every client, holds them idle for
//! the duration and closes them cleanly, from several source addresses.

mod common;

use std::sync::atomic::Ordering;

use common::chat_server::ChatServer;
use common::{loadgen_json, number};

#[test]
fn idle_clients_join_wait_and_close() {
    let server = ChatServer::start();
    let url = server.url();
    let json = loadgen_json(&[
        "ws",
        "--url",
        &url,
        "--rooms",
        "4",
        "--clients-per-room",
        "5",
        "--senders",
        "none",
        "--duration",
        "500ms",
        "--source-ips",
        "2",
    ]);
    assert!(json.contains("\"senders\":\"none\""), "{json}");
    assert!(json.contains("\"source_ips\":2"), "{json}");
    assert!(json.contains("\"errors\":0"), "{json}");
    assert_eq!(number(&json, "joined"), 20.0, "{json}");
    assert_eq!(number(&json, "messages"), 0.0, "{json}");
    assert_eq!(number(&json, "deliveries"), 0.0, "{json}");
    assert!(number(&json, "elapsed_s") >= 0.5, "{json}");
    let counts = &server.counts;
    assert_eq!(counts.joined.load(Ordering::Relaxed), 20);
    assert_eq!(counts.closes.load(Ordering::Relaxed), 20);
}
