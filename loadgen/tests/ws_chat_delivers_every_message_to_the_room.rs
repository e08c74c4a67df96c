//! `loadgen ws` against a chat server: every message reaches every other
//! client of its room, each delivery is timed, and the run is clean (the
//! server's pings answered, its fragmented messages read, every client
//! closed with a close handshake).

mod common;

use std::sync::atomic::Ordering;

use common::chat_server::ChatServer;
use common::{loadgen_json, number};

#[test]
fn closed_loop_fans_out_to_every_other_client() {
    let server = ChatServer::start();
    let url = server.url();
    let json = loadgen_json(&[
        "ws",
        "--url",
        &url,
        "--rooms",
        "2",
        "--clients-per-room",
        "3",
        "--senders",
        "all",
        "--duration",
        "1s",
        "--threads",
        "2",
    ]);
    for field in [
        "\"mode\":\"ws\"",
        "\"loop\":\"closed\"",
        "\"senders\":\"all\"",
        "\"clients\":6",
        "\"joined\":6",
        "\"errors\":0",
        "\"errors_by_kind\":{}",
    ] {
        assert!(json.contains(field), "{field} missing from {json}");
    }
    for field in [
        "deliveries_per_sec",
        "messages_per_sec",
        "p50_us",
        "p90_us",
        "p99_us",
        "p999_us",
        "max_us",
        "connect_s",
        "join_p99_us",
        "elapsed_s",
        "unsent",
    ] {
        number(&json, field);
    }
    let messages = number(&json, "messages");
    let deliveries = number(&json, "deliveries");
    // Each message has two recipients; at the end each of the 6 senders
    // may have one message not yet delivered to both.
    assert!(messages > 10.0, "{json}");
    assert!(deliveries <= 2.0 * messages, "{json}");
    assert!(deliveries >= 2.0 * (messages - 6.0), "{json}");
    assert!(number(&json, "completed") >= messages - 6.0, "{json}");
    assert!(number(&json, "p50_us") > 0.0, "{json}");
    // Each client saw its own join and those of the clients after it.
    assert_eq!(number(&json, "joins"), 12.0, "{json}");
    let counts = &server.counts;
    assert_eq!(counts.joined.load(Ordering::Relaxed), 6);
    assert_eq!(
        counts.pongs.load(Ordering::Relaxed),
        6,
        "every ping answered"
    );
    assert_eq!(
        counts.closes.load(Ordering::Relaxed),
        6,
        "every client said goodbye"
    );
    assert!(counts.texts.load(Ordering::Relaxed) as f64 >= messages);
}

#[test]
fn open_loop_sends_at_the_rate_from_one_sender_per_room() {
    let server = ChatServer::start();
    let url = server.url();
    let json = loadgen_json(&[
        "ws",
        "--url",
        &url,
        "--rooms",
        "2",
        "--clients-per-room",
        "3",
        "--senders",
        "one",
        "--rate",
        "200",
        "--duration",
        "1s",
    ]);
    assert!(json.contains("\"loop\":\"open\""), "{json}");
    assert!(json.contains("\"errors\":0"), "{json}");
    let messages = number(&json, "messages");
    assert!((190.0..=210.0).contains(&messages), "{json}");
    let deliveries = number(&json, "deliveries");
    assert!(deliveries <= 2.0 * messages, "{json}");
    assert!(deliveries >= 2.0 * messages - 20.0, "{json}");
}
