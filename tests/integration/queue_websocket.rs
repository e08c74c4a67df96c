//! A WebSocket consumer: messages are pushed as they arrive, never more
//! than `max_in_flight` unacknowledged, and acks go over the socket.

use std::time::Duration;

use crate::harness::json::Value;
use crate::harness::Server;
use crate::queue_client::{append, append_batch, messages_of, pull};
use crate::ws_client::Ws;

fn seqs(json: &Value) -> Vec<u64> {
    messages_of(json).iter().map(|m| m.seq).collect()
}

#[test]
fn a_socket_consumer_gets_pushes_within_its_in_flight_bound() {
    let server = Server::start(2);
    let mut conn = server.connect();
    append_batch(&mut conn, "wsq", &["1", "2", "3"]);
    let mut ws = Ws::connect(&server, "/queue/wsq/consume?max_in_flight=2");
    // The upgrade's event hands out the first two; the rest waits.
    let mut got = seqs(&ws.recv_json());
    if got.len() < 2 {
        got.extend(seqs(&ws.recv_json()));
    }
    assert_eq!(got, [1, 2]);
    ws.expect_silence(Duration::from_millis(300));
    ws.send_text(r#"{"ack": [1]}"#);
    let mut acked = false;
    let mut next = Vec::new();
    while !acked || next.is_empty() {
        let json = ws.recv_json();
        if json.get("acked").is_some() {
            assert_eq!(json.u64_field("acked"), 1);
            acked = true;
        } else {
            next.extend(seqs(&json));
        }
    }
    assert_eq!(next, [3]);
    append(&mut conn, "wsq", "4");
    ws.expect_silence(Duration::from_millis(300));
    ws.send_text(r#"{"through": 3}"#);
    let mut pushed = Vec::new();
    while pushed.is_empty() {
        let json = ws.recv_json();
        if json.get("acked").is_none() {
            pushed.extend(seqs(&json));
        }
    }
    assert_eq!(pushed, [4]);
}

#[test]
fn a_closed_consumer_releases_its_messages_at_once() {
    let server = Server::start(2);
    let mut conn = server.connect();
    append(&mut conn, "rel", "x");
    let mut ws = Ws::connect(&server, "/queue/rel/consume?visibility_ms=60000");
    assert_eq!(seqs(&ws.recv_json()), [1]);
    assert!(
        pull(&mut conn, "rel", "").is_empty(),
        "leased to the socket"
    );
    ws.close(1000);
    std::thread::sleep(Duration::from_millis(300));
    let again = pull(&mut conn, "rel", "");
    assert_eq!(again.iter().map(|m| m.seq).collect::<Vec<_>>(), [1]);
}

#[test]
fn a_malformed_socket_ack_is_answered_with_an_error() {
    let server = Server::start(2);
    let mut ws = Ws::connect(&server, "/queue/bad/consume");
    ws.send_text("not json");
    let json = ws.recv_json();
    assert!(json.get("error").is_some(), "{json}");
}

#[test]
fn a_consumers_leases_survive_the_queue_hibernating() {
    use crate::harness::eventually;
    use crate::kv_client::metric_total;
    let server = Server::start_with_config(2, "[classes.queue]\nhibernation_timeout_ms = 100\n");
    let mut conn = server.connect();
    append_batch(&mut conn, "hib", &["1", "2"]);
    let mut ws = Ws::connect(
        &server,
        "/queue/hib/consume?max_in_flight=1&visibility_ms=60000",
    );
    assert_eq!(seqs(&ws.recv_json()), [1]);
    let hibernated = eventually(Duration::from_secs(10), || {
        metric_total(&mut conn, "durin_objects_hibernated_total") >= 1
    });
    assert!(hibernated, "the queue hibernated");
    // Woken by a pull: the socket's lease on 1 came back from its
    // attachment, so ordered delivery hands nothing out.
    assert!(pull(&mut conn, "hib", "").is_empty());
    ws.send_text(r#"{"ack": [1]}"#);
    let mut next = Vec::new();
    while next.is_empty() {
        let json = ws.recv_json();
        if json.get("acked").is_none() {
            next.extend(seqs(&json));
        }
    }
    assert_eq!(next, [2]);
}

#[test]
fn a_socket_lease_that_ends_is_pushed_again() {
    let server = Server::start(2);
    let mut conn = server.connect();
    append(&mut conn, "again", "x");
    let mut ws = Ws::connect(&server, "/queue/again/consume?visibility_ms=300");
    assert_eq!(seqs(&ws.recv_json()), [1]);
    // Not acknowledged: the queue's alarm ends the lease and pushes it again.
    assert_eq!(seqs(&ws.recv_json()), [1]);
}
