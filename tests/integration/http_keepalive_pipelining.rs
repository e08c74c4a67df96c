//! HTTP/1.1 connection handling: keep-alive by default, pipelined requests
//! answered in order, and `Connection: close` honoured.

use crate::harness::http::encode_request;
use crate::harness::{counter_value, counter_value_of, increment, Server};

#[test]
fn connection_is_kept_alive_by_default() {
    let server = Server::start(2);
    let mut conn = server.connect();
    for round in 1..=20u64 {
        let health = conn.get("/healthz");
        assert_eq!(
            (health.status, health.text().as_str()),
            (200, "ok"),
            "round {round}"
        );
        assert!(
            !health.says_close(),
            "round {round}: the server asked to close: {health}"
        );
        let value = increment(&mut conn, "alive");
        assert_eq!(value, round);
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let mut batch = Vec::new();
    for _ in 0..3 {
        batch.extend(encode_request("POST", "/counter/piped/increment", &[], b""));
    }
    batch.extend(encode_request("GET", "/counter/piped", &[], b""));
    batch.extend(encode_request("GET", "/healthz", &[], b""));
    conn.send_raw(&batch);
    for expected in 1..=3 {
        let response = conn
            .read_response()
            .expect("a pipelined increment's response");
        assert_eq!(counter_value_of(&response, "pipelined increment"), expected);
    }
    let response = conn.read_response().expect("the pipelined GET's response");
    assert_eq!(counter_value_of(&response, "pipelined GET"), 3);
    let response = conn
        .read_response()
        .expect("the pipelined healthz response");
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "ok"),
        "{response}"
    );
    // The connection goes on as normal.
    assert_eq!(increment(&mut conn, "piped"), 4);
}

/// Objects on different shards answer at different times; the responses
/// must still come back in request order.
#[test]
fn pipelined_requests_to_objects_on_many_shards_keep_their_order() {
    let server = Server::start(4);
    let mut conn = server.connect();
    const OBJECTS: u64 = 12;
    for index in 0..OBJECTS {
        for _ in 0..=index {
            increment(&mut conn, &format!("spread-{index}"));
        }
    }
    let mut batch = Vec::new();
    for index in 0..OBJECTS {
        batch.extend(encode_request(
            "GET",
            &format!("/counter/spread-{index}"),
            &[],
            b"",
        ));
        batch.extend(encode_request("GET", "/healthz", &[], b""));
    }
    conn.send_raw(&batch);
    for index in 0..OBJECTS {
        let response = conn.read_response().expect("a pipelined response");
        assert_eq!(
            counter_value_of(&response, &format!("pipelined GET spread-{index}")),
            index + 1
        );
        let response = conn.read_response().expect("a pipelined response");
        assert_eq!(
            response.text(),
            "ok",
            "pipelined healthz after spread-{index}: {response}"
        );
    }
}

#[test]
fn pipelined_bodies_are_framed_by_content_length() {
    let server = Server::start(2);
    let mut conn = server.connect();
    // A body that looks like a request must be consumed as a body.
    let decoy = encode_request("POST", "/counter/decoy/increment", &[], b"");
    let mut batch = encode_request("POST", "/counter/framed/increment", &[], &decoy);
    batch.extend(encode_request(
        "POST",
        "/counter/framed/increment",
        &[],
        b"x",
    ));
    batch.extend(encode_request("GET", "/counter/decoy", &[], b""));
    conn.send_raw(&batch);
    let first = conn.read_response().expect("first response");
    assert_eq!(
        counter_value_of(&first, "increment with a request-shaped body"),
        1
    );
    let second = conn.read_response().expect("second response");
    assert_eq!(counter_value_of(&second, "second increment"), 2);
    let third = conn.read_response().expect("third response");
    assert_eq!(
        counter_value_of(&third, "the decoy counter"),
        0,
        "a body was parsed as a request"
    );
}

#[test]
fn request_split_across_many_writes_is_served() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let request = encode_request(
        "POST",
        "/counter/split/increment",
        &[("X-Note", "split")],
        b"0123456789",
    );
    for byte in &request {
        conn.send_raw(&[*byte]);
    }
    let response = conn
        .read_response()
        .expect("a request sent a byte at a time");
    assert_eq!(counter_value_of(&response, "split increment"), 1);
    assert_eq!(counter_value(&mut conn, "split"), 1);
}

#[test]
fn connection_close_is_answered_then_closed() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let response = conn.request("GET", "/healthz", &[("Connection", "close")], b"");
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "ok"),
        "{response}"
    );
    conn.expect_closed("after a response to Connection: close");

    // A request pipelined behind the one that asked to close is not served.
    let mut conn = server.connect();
    let mut batch = encode_request(
        "POST",
        "/counter/closing/increment",
        &[("Connection", "close")],
        b"",
    );
    batch.extend(encode_request(
        "POST",
        "/counter/closing/increment",
        &[],
        b"",
    ));
    conn.send_raw(&batch);
    let response = conn
        .read_response()
        .expect("the response to the closing request");
    assert_eq!(
        counter_value_of(&response, "increment with Connection: close"),
        1
    );
    conn.expect_closed("after a response to Connection: close with a request behind it");
    let mut conn = server.connect();
    assert_eq!(
        counter_value(&mut conn, "closing"),
        1,
        "the request after Connection: close was served"
    );
}
