//! SIGTERM stops the server cleanly: WebSockets get a close frame with 1001
//! (going away), idle connections are closed, acknowledged writes are
//! there after a restart, and the process exits 0.

use std::time::Duration;

use crate::harness::{increment, Server};
use crate::ws_client::{Ending, Ws};

#[test]
fn sigterm_closes_websockets_with_1001_and_exits_cleanly() {
    let mut server = Server::start(2);
    let mut conn = server.connect();
    for _ in 0..5 {
        increment(&mut conn, "kept");
    }
    let mut a = Ws::connect(&server, "/chat/s/websocket?name=a");
    a.recv_json();
    let mut b = Ws::connect(&server, "/chat/s/websocket?name=b");
    b.recv_json();
    a.recv_json();

    let status = server.terminate(Duration::from_secs(15));
    assert!(status.success(), "exit status {status}");
    for ws in [&mut a, &mut b] {
        assert_eq!(ws.ending(), Ending::Close(1001));
    }
    conn.expect_closed("an idle keep-alive connection is closed by the stop");

    server.restart(2);
    let mut conn = server.connect();
    assert_eq!(crate::harness::counter_value(&mut conn, "kept"), 5);
}
