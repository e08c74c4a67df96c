//! Requests that break the limits or the grammar get their status code and
//! a closed connection, and disturb no other connection.
//!
//! Each test keeps a bystander: a keep-alive connection opened and used
//! before the bad request, and checked again after it.

use crate::harness::{counter_value, Bystander, Conn, Server};

const HEAD_BYTES_MAX: usize = 16 * 1024;
const BODY_BYTES_MAX: usize = 1024 * 1024;

/// Sends `bytes` on a fresh connection, expects one response with `status`,
/// then expects the server to close the connection.
fn expect_status_then_close(server: &Server, bytes: &[u8], status: u16, what: &str) {
    let mut conn = server.connect();
    conn.send_raw(bytes);
    let response = conn
        .read_response()
        .unwrap_or_else(|error| panic!("{what}: expected {status}: {error}"));
    assert_eq!(response.status, status, "{what}: {response}");
    conn.expect_closed(&format!("after the {status} for {what}"));
}

#[test]
fn oversized_head_is_431_then_close() {
    let mut server = Server::start(2);
    let mut bystander = Bystander::open(&server, "bystander-431");
    let big_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(HEAD_BYTES_MAX + 1024)
    );
    expect_status_then_close(&server, big_header.as_bytes(), 431, "a 17 KiB header");
    bystander.check("after a 17 KiB header");

    let long_line = format!(
        "GET /counter/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "n".repeat(HEAD_BYTES_MAX + 1024)
    );
    expect_status_then_close(&server, long_line.as_bytes(), 431, "a 17 KiB request line");
    bystander.check("after a 17 KiB request line");

    let many_headers: String = (0..2000)
        .map(|index| format!("X-H{index}: v\r\n"))
        .collect();
    let many = format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n");
    assert!(many.len() > HEAD_BYTES_MAX);
    expect_status_then_close(&server, many.as_bytes(), 431, "2000 small headers");
    bystander.check("after 2000 small headers");
    server.assert_alive();
}

#[test]
fn head_just_under_the_limit_is_served() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let padding = "a".repeat(HEAD_BYTES_MAX - 1024);
    let response = conn.request("GET", "/healthz", &[("X-Padding", &padding)], b"");
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "ok"),
        "{response}"
    );
    // Still a keep-alive connection.
    assert_eq!(conn.get("/healthz").status, 200);
}

#[test]
fn oversized_body_is_413_then_close_and_not_applied() {
    let mut server = Server::start(2);
    let mut bystander = Bystander::open(&server, "bystander-413");
    // Only the head is sent: the server must decide from Content-Length.
    let head = format!(
        "POST /counter/big/increment HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        BODY_BYTES_MAX + 1
    );
    expect_status_then_close(&server, head.as_bytes(), 413, "a body of 1 MiB + 1");
    bystander.check("after a 413");
    let mut conn = server.connect();
    assert_eq!(
        counter_value(&mut conn, "big"),
        0,
        "the rejected increment was not applied"
    );
    server.assert_alive();
}

#[test]
fn body_of_exactly_the_limit_is_served() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let body = vec![b'x'; BODY_BYTES_MAX];
    let response = conn.post("/counter/full/increment", &body);
    assert_eq!(response.status, 200, "a body of exactly 1 MiB: {response}");
    assert_eq!(counter_value(&mut conn, "full"), 1);
}

#[test]
fn configured_body_limit_applies() {
    let mut server = Server::start_with_config(2, "[server]\nbody_bytes_max = 1000\n");
    let mut bystander = Bystander::open(&server, "bystander-body-config");
    let mut conn = server.connect();
    let response = conn.post("/counter/small/increment", &[b'x'; 1000]);
    assert_eq!(
        response.status, 200,
        "a body of exactly body_bytes_max: {response}"
    );
    let head = "POST /counter/small/increment HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n";
    expect_status_then_close(
        &server,
        head.as_bytes(),
        413,
        "a body of body_bytes_max + 1",
    );
    bystander.check("after a 413");
    assert_eq!(counter_value(&mut conn, "small"), 1);
    server.assert_alive();
}

#[test]
fn garbage_is_400_then_close() {
    let mut server = Server::start(2);
    let mut bystander = Bystander::open(&server, "bystander-400");
    let cases: [(&str, &[u8]); 5] = [
        (
            "TLS-like binary bytes",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x00\xff garbage\r\n\r\n",
        ),
        ("a header line without a colon", b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n"),
        ("a request line without a version", b"GET /healthz\r\nHost: x\r\n\r\n"),
        ("a non-numeric Content-Length", b"POST /counter/g/increment HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"),
        (
            "two different Content-Lengths",
            b"POST /counter/g/increment HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
        ),
    ];
    for (what, bytes) in cases {
        expect_status_then_close(&server, bytes, 400, what);
        bystander.check(&format!("after {what}"));
    }
    let mut conn = server.connect();
    assert_eq!(
        counter_value(&mut conn, "g"),
        0,
        "no malformed request was applied"
    );
    server.assert_alive();
}

#[test]
fn garbage_after_a_good_request_on_the_same_connection() {
    let mut server = Server::start(2);
    let mut bystander = Bystander::open(&server, "bystander-400-late");
    let mut conn = server.connect();
    assert_eq!(conn.get("/healthz").status, 200);
    conn.send_raw(b"\x00\x01\x02\x03 nonsense\r\n\r\n");
    let response = conn
        .read_response()
        .unwrap_or_else(|error| panic!("expected 400: {error}"));
    assert_eq!(response.status, 400, "{response}");
    conn.expect_closed("after the 400");
    bystander.check("after garbage on a used connection");
    server.assert_alive();
}

#[test]
fn chunked_request_is_411_then_close() {
    let mut server = Server::start(2);
    let mut bystander = Bystander::open(&server, "bystander-411");
    let request =
        b"POST /counter/chunky/increment HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    expect_status_then_close(&server, request, 411, "a chunked body");
    bystander.check("after a 411");
    let mut conn: Conn = server.connect();
    assert_eq!(
        counter_value(&mut conn, "chunky"),
        0,
        "the chunked increment was not applied"
    );
    server.assert_alive();
}

#[test]
fn client_closing_mid_request_disturbs_nobody() {
    let mut server = Server::start(2);
    let mut bystander = Bystander::open(&server, "bystander-half");
    for partial in [
        &b"GET /heal"[..],
        b"POST /counter/half/increment HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
    ] {
        let mut conn = server.connect();
        conn.send_raw(partial);
        drop(conn);
    }
    bystander.check("after two clients hung up mid-request");
    let mut conn = server.connect();
    assert_eq!(
        counter_value(&mut conn, "half"),
        0,
        "a request with half a body was not applied"
    );
    server.assert_alive();
}
