//! `[server] connections_max_per_shard` caps open connections: one beyond
//! the cap gets 503 and is closed, while the open ones keep being served,
//! and a freed slot can be used again.

use crate::harness::{eventually, increment, Conn, Server};
use std::time::Duration;

const CAP: usize = 4;

#[test]
fn connection_beyond_the_cap_gets_503_and_the_others_keep_working() {
    // One shard, so the cap is the server's whole capacity.
    let mut server =
        Server::start_with_config(1, &format!("[server]\nconnections_max_per_shard = {CAP}\n"));
    let mut open: Vec<Conn> = (0..CAP).map(|_| server.connect()).collect();
    for (index, conn) in open.iter_mut().enumerate() {
        assert_eq!(
            increment(conn, "capped"),
            index as u64 + 1,
            "connection {index} under the cap"
        );
    }

    for attempt in 0..2 {
        let mut extra = server.connect();
        // The server may answer at accept time or after reading a request;
        // a write to an already-closed connection is fine here.
        let _ = extra.try_send_raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        let response = extra.read_response().unwrap_or_else(|error| {
            panic!(
                "connection {} beyond the cap of {CAP}: expected 503: {error}",
                attempt + 1
            )
        });
        assert_eq!(
            response.status, 503,
            "connection beyond the cap: {response}"
        );
        extra.expect_closed("after the 503 for a connection beyond the cap");
    }

    let mut expected = CAP as u64;
    for (index, conn) in open.iter_mut().enumerate() {
        expected += 1;
        assert_eq!(
            increment(conn, "capped"),
            expected,
            "connection {index} after the 503s"
        );
    }

    // Closing one frees its slot (once the server has seen the close).
    drop(open.pop());
    let served_again = eventually(Duration::from_secs(3), || {
        let Ok(mut conn) = Conn::connect(server.addr()) else {
            return false;
        };
        conn.set_timeout(Duration::from_secs(2));
        matches!(conn.try_request("GET", "/healthz", &[], b""), Ok(response) if response.status == 200)
    });
    assert!(
        served_again,
        "a new connection was not served after one of {CAP} closed"
    );
    for conn in open.iter_mut() {
        assert_eq!(conn.get("/healthz").status, 200);
    }
    server.assert_alive();
}
