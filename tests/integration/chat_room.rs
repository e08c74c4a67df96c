//! The `chat` class: the seed's ChatRoom over WebSockets, on its own routes
//! and on the seed's Worker routes.

use std::time::Duration;

use crate::harness::json::Value;
use crate::harness::Server;
use crate::kv_client::metric_total;
use crate::ws_client::Ws;

fn names(info: &Value) -> Vec<String> {
    let mut names: Vec<String> = match info.get("connectedUsers") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().expect("names are strings").to_string())
            .collect(),
        other => panic!("connectedUsers is not an array: {other:?}"),
    };
    names.sort();
    names
}

#[test]
fn members_see_joins_messages_from_others_and_leaves() {
    let server = Server::start(2);
    let mut alice = Ws::connect(&server, "/chat/lobby/websocket?name=alice");
    let join = alice.recv_json();
    assert_eq!(
        (join.str_field("type"), join.str_field("name")),
        ("join", "alice")
    );

    let mut bob = Ws::connect(&server, "/chat/lobby/websocket?name=bob");
    for ws in [&mut alice, &mut bob] {
        let join = ws.recv_json();
        assert_eq!(
            (join.str_field("type"), join.str_field("name")),
            ("join", "bob")
        );
    }

    let before_ms = crate::kv_client::now_ms();
    alice.send_text("hello \"bob\" ✓");
    let message = bob.recv_json();
    message.assert_keys(&["sender", "text", "timestamp"]);
    assert_eq!(message.str_field("sender"), "alice");
    assert_eq!(message.str_field("text"), "hello \"bob\" ✓");
    let at = message.u64_field("timestamp");
    assert!(at + 1000 >= before_ms && at <= crate::kv_client::now_ms() + 1000);
    // The sender does not get its own message back.
    alice.expect_silence(Duration::from_millis(300));

    let mut conn = server.connect();
    let info = conn.get("/chat/lobby/info").json();
    assert_eq!(info.u64_field("count"), 2);
    assert_eq!(names(&info), ["alice", "bob"]);

    bob.close(1000);
    let leave = alice.recv_json();
    assert_eq!(
        (leave.str_field("type"), leave.str_field("name")),
        ("leave", "bob")
    );
    let info = conn.get("/chat/lobby/info").json();
    assert_eq!(names(&info), ["alice"]);
}

#[test]
fn a_name_defaults_to_anonymous_and_a_plain_get_is_refused() {
    let server = Server::start(1);
    let mut ws = Ws::connect(&server, "/chat/r/websocket");
    assert_eq!(ws.recv_json().str_field("name"), "Anonymous");
    let mut conn = server.connect();
    let response = conn.get("/chat/r/websocket");
    assert_eq!(response.status, 400);
    assert_eq!(response.text(), "Expected WebSocket");
}

#[test]
fn the_seed_routes_reach_the_same_rooms() {
    let server = Server::start(2);
    let mut carol = Ws::connect(&server, "/websocket?room=garden&name=carol");
    assert_eq!(carol.recv_json().str_field("name"), "carol");
    let mut dave = Ws::connect(&server, "/chat/garden/websocket?name=dave");
    assert_eq!(dave.recv_json().str_field("name"), "dave");
    assert_eq!(carol.recv_json().str_field("name"), "dave");
    dave.send_text("via /chat");
    assert_eq!(carol.recv_json().str_field("text"), "via /chat");

    let mut conn = server.connect();
    let info = conn.get("/info?room=garden").json();
    assert_eq!(names(&info), ["carol", "dave"]);
    // Without a room: the room named `default`.
    let mut eve = Ws::connect(&server, "/websocket?name=eve");
    assert_eq!(eve.recv_json().str_field("name"), "eve");
    let info = conn.get("/chat/default/info").json();
    assert_eq!(names(&info), ["eve"]);
    assert_eq!(conn.get("/websocket?room=x").text(), "Expected WebSocket");
}

#[test]
fn routes_come_from_the_config_file() {
    let config = "[[routes]]\npath = \"/rooms\"\nclass = \"chat\"\nname_param = \"id\"\nname_default = \"hall\"\n";
    let server = Server::start_with_config(1, config);
    let mut conn = server.connect();
    let mut ws = Ws::connect(&server, "/chat/hall/websocket?name=x");
    ws.recv_json();
    // The route's object sees the request path `/rooms`, which the chat
    // class does not serve; the defaults are replaced, so `/info` is gone.
    assert_eq!(conn.get("/rooms").status, 404);
    assert_eq!(conn.get("/info?room=hall").status, 404);
}

#[test]
fn sockets_move_to_the_shard_owning_their_room() {
    let server = Server::start(4);
    let rooms: Vec<String> = (0..12).map(|i| format!("room-{i}")).collect();
    let mut pairs = Vec::new();
    for room in &rooms {
        let mut a = Ws::connect(&server, &format!("/chat/{room}/websocket?name=a"));
        a.recv_json();
        let mut b = Ws::connect(&server, &format!("/chat/{room}/websocket?name=b"));
        b.recv_json();
        a.recv_json();
        pairs.push((a, b));
    }
    for (i, (a, b)) in pairs.iter_mut().enumerate() {
        a.send_text(&format!("to {i}"));
        assert_eq!(b.recv_json().str_field("text"), format!("to {i}"));
    }
    let mut conn = server.connect();
    // 24 connections landed on random shards of 4: most had to move.
    assert!(metric_total(&mut conn, "durin_connections_handed_off_total") > 0);
    assert_eq!(metric_total(&mut conn, "durin_websockets_open"), 24);
}
