//! Objects whose only activity is open WebSockets leave memory; their
//! sockets stay open, and the next message brings the object back.

use std::time::Duration;

use crate::harness::{eventually, Server};
use crate::kv_client::metric_total;
use crate::ws_client::Ws;

const CONFIG: &str = "[classes.chat]\nhibernation_timeout_ms = 100\nauto_response_request = \"ping\"\nauto_response_response = \"pong\"\n";

#[test]
fn a_quiet_room_hibernates_and_wakes_with_its_sockets() {
    let server = Server::start_with_config(1, CONFIG);
    let mut conn = server.connect();
    let mut alice = Ws::connect(&server, "/chat/quiet/websocket?name=alice");
    alice.recv_json();
    let mut bob = Ws::connect(&server, "/chat/quiet/websocket?name=bob");
    bob.recv_json();
    alice.recv_json();

    let hibernated = eventually(Duration::from_secs(10), || {
        metric_total(&mut conn, "durin_objects_hibernated_total") == 1
    });
    assert!(hibernated, "the room hibernated");
    assert_eq!(metric_total(&mut conn, "durin_objects_live"), 0);
    assert_eq!(metric_total(&mut conn, "durin_websockets_open"), 2);
    let created = metric_total(&mut conn, "durin_objects_created_total");

    // The auto-response is answered without waking the room.
    alice.send_text("ping");
    assert_eq!(alice.recv_text(), "pong");
    assert_eq!(metric_total(&mut conn, "durin_objects_live"), 0);
    assert_eq!(
        metric_total(&mut conn, "durin_websocket_auto_responses_total"),
        1
    );
    bob.expect_silence(Duration::from_millis(200));

    // A message wakes it: rebuilt, it still knows both sockets and names.
    alice.send_text("wake up");
    let message = bob.recv_json();
    assert_eq!(message.str_field("sender"), "alice");
    assert_eq!(message.str_field("text"), "wake up");
    assert_eq!(
        metric_total(&mut conn, "durin_objects_created_total"),
        created + 1
    );
    bob.close(1000);
    assert_eq!(alice.recv_json().str_field("type"), "leave");
}

#[test]
fn a_class_without_hibernation_stays_in_memory() {
    let config = "[classes.chat]\nhibernation_timeout_ms = 50\nwebsocket_hibernation = false\nidle_timeout_ms = 50\n";
    let server = Server::start_with_config(1, config);
    let mut conn = server.connect();
    let mut alice = Ws::connect(&server, "/chat/awake/websocket?name=alice");
    alice.recv_json();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(metric_total(&mut conn, "durin_objects_hibernated_total"), 0);
    assert_eq!(metric_total(&mut conn, "durin_objects_live"), 1);
}
