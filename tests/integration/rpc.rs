//! Binary RPC through the client crate: every built-in method, shard-aware
//! and plain connections, pipelined calls answered out of order, IDs, and
//! each kind of bad input.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use durin_client::{Call, Client, ClientError, ClientOptions};
use durin_proto::rpc::{self, builtin, status, ObjectRef, RequestHeader};
use durin_proto::ObjectId;

use crate::harness::Server;

fn client(server: &Server, shard_aware: bool) -> Client {
    let (addr, _) = server.rpc_addr();
    Client::connect(
        addr,
        ClientOptions {
            shard_aware,
            ..ClientOptions::default()
        },
    )
    .expect("rpc connect")
}

fn name(n: &str) -> ObjectRef {
    ObjectRef::Name(n.as_bytes().to_vec())
}

#[test]
fn counter_methods_agree_with_http_on_aware_and_plain_connections() {
    let server = Server::start(3);
    for shard_aware in [true, false] {
        let client = client(&server, shard_aware);
        assert_eq!(client.is_shard_aware(), shard_aware);
        for i in 0..20 {
            let counter = format!("c{i}-{shard_aware}");
            for expected in 1..=3 {
                assert_eq!(
                    client.counter_increment(&counter).expect("increment"),
                    expected
                );
            }
            assert_eq!(client.counter_get(&counter).expect("get"), 3);
            let http = server.connect().get(&format!("/counter/{counter}")).text();
            assert_eq!(http, "{\"value\": 3}");
        }
    }
}

#[test]
fn ratelimit_check_admits_the_limit_then_denies() {
    let server = Server::start_with_config(2, "[classes.ratelimit]\nlimit = 5\n");
    let client = client(&server, true);
    for remaining in (0..5).rev() {
        let decision = client.ratelimit_check("k", 1).expect("check");
        assert!(decision.allowed);
        assert_eq!((decision.limit, decision.remaining), (5, remaining));
    }
    let denied = client.ratelimit_check("k", 1).expect("check");
    assert!(!denied.allowed);
    assert!(denied.retry_after_ms > 0);
    // A cost counts as several requests.
    let other = client.ratelimit_check("other", 4).expect("check");
    assert_eq!(other.remaining, 1);
}

#[test]
fn kv_methods_round_trip() {
    let server = Server::start(2);
    let client = client(&server, false);
    assert_eq!(client.kv_get(&name("o"), b"a").expect("get"), None);
    client
        .kv_put(&name("o"), b"a", b"\x00\xffvalue")
        .expect("put");
    assert_eq!(
        client.kv_get(&name("o"), b"a").expect("get"),
        Some(b"\x00\xffvalue".to_vec())
    );
    assert_eq!(server.connect().get("/kv/o/keys/a").body, b"\x00\xffvalue");
    assert!(client.kv_delete(&name("o"), b"a").expect("delete"));
    assert!(!client.kv_delete(&name("o"), b"a").expect("delete"));
}

#[test]
fn pipelined_calls_across_shards_come_back_matched() {
    let server = Server::start(4);
    let client = client(&server, false);
    let objects: Vec<ObjectRef> = (0..64).map(|i| name(&format!("p{i}"))).collect();
    let calls: Vec<Call<'_>> = objects
        .iter()
        .map(|object| Call {
            class: "counter",
            object,
            method: builtin::COUNTER_INCREMENT,
            payload: b"",
        })
        .collect();
    for round in 1..=3u64 {
        for result in client.call_many(&calls) {
            let value = builtin::decode_counter_value(&result.expect("call")).expect("a value");
            assert_eq!(value, round);
        }
    }
}

#[test]
fn a_unique_id_is_an_object_of_its_own() {
    let server = Server::start(2);
    let client = client(&server, true);
    let id = ObjectRef::Id(ObjectId::new_unique().0);
    let reply = client
        .call("counter", &id, builtin::COUNTER_INCREMENT, b"")
        .expect("call");
    assert_eq!(builtin::decode_counter_value(&reply), Some(1));
    let hex = match &id {
        ObjectRef::Id(bytes) => ObjectId(*bytes).to_hex(),
        ObjectRef::Name(_) => unreachable!(),
    };
    assert_eq!(
        server.connect().get(&format!("/counter/id:{hex}")).text(),
        "{\"value\": 1}"
    );
}

#[test]
fn unknown_classes_and_methods_are_errors_and_the_connection_stays() {
    let server = Server::start(2);
    let client = client(&server, false);
    match client.call("nope", &name("x"), "get", b"") {
        Err(ClientError::Server { status: s, .. }) => assert_eq!(s, status::UNKNOWN_CLASS),
        other => panic!("unknown class gave {other:?}"),
    }
    match client.call("counter", &name("x"), "explode", b"") {
        Err(ClientError::Server { status: s, .. }) => assert_eq!(s, status::UNKNOWN_METHOD),
        other => panic!("unknown method gave {other:?}"),
    }
    match client.call("counter", &name("x"), "get", b"junk") {
        Err(ClientError::Server { status: s, .. }) => assert_eq!(s, status::BAD_ARGUMENT),
        other => panic!("bad payload gave {other:?}"),
    }
    assert_eq!(client.counter_increment("x").expect("still usable"), 1);
}

/// A raw connection past the handshake.
pub fn raw(server: &Server) -> TcpStream {
    let (addr, _) = server.rpc_addr();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream
        .write_all(&rpc::encode_client_hello(rpc::PROTOCOL_VERSION))
        .expect("hello");
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 256];
        let n = stream.read(&mut chunk).expect("read hello");
        assert!(n > 0, "closed during the handshake");
        buf.extend_from_slice(&chunk[..n]);
        if let Some((hello, _)) = rpc::decode_server_hello(&buf).expect("a hello") {
            assert!(hello.accepted);
            return stream;
        }
    }
}

/// Reads until the server closes; returns what it sent.
pub fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    stream
        .read_to_end(&mut out)
        .expect("the server closes the connection");
    out
}

#[test]
fn an_oversized_frame_gets_an_error_frame_then_close() {
    let server = Server::start(1);
    let mut stream = raw(&server);
    let frame_len: u32 = 2 << 20;
    stream.write_all(&frame_len.to_le_bytes()).expect("write");
    let answer = read_to_close(&mut stream);
    match rpc::decode_response(&answer, usize::MAX).expect("an error frame") {
        rpc::Decoded::Frame { header, .. } => assert_eq!(header.status, status::FRAME_TOO_LARGE),
        rpc::Decoded::Incomplete => panic!("incomplete answer {answer:?}"),
    }
}

#[test]
fn a_malformed_frame_is_answered_with_why_then_closed() {
    let server = Server::start(1);
    let mut stream = raw(&server);
    // header_len says more than the frame holds.
    let mut frame = Vec::new();
    frame.extend_from_slice(&8u32.to_le_bytes());
    frame.extend_from_slice(&1000u32.to_le_bytes());
    frame.extend_from_slice(&[0u8; 4]);
    stream.write_all(&frame).expect("write");
    let answer = read_to_close(&mut stream);
    match rpc::decode_response(&answer, usize::MAX).expect("an error frame") {
        rpc::Decoded::Frame { header, .. } => {
            assert_eq!((header.request_id, header.status), (0, status::MALFORMED));
            assert!(header.message.contains("header_len"), "{}", header.message);
        }
        rpc::Decoded::Incomplete => panic!("incomplete answer {answer:?}"),
    }
    // Nothing else was disturbed.
    assert_eq!(
        client(&server, false)
            .counter_increment("after")
            .expect("call"),
        1
    );
}

#[test]
fn an_unsupported_version_is_refused_with_a_reason() {
    let server = Server::start(1);
    let (addr, _) = server.rpc_addr();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream
        .write_all(&rpc::encode_client_hello(99))
        .expect("hello");
    let answer = read_to_close(&mut stream);
    let (hello, _) = rpc::decode_server_hello(&answer)
        .expect("valid")
        .expect("complete");
    assert!(!hello.accepted);
    assert!(hello.reason.contains("99"), "{}", hello.reason);
}

#[test]
fn a_silent_client_is_closed_after_the_handshake_timeout() {
    let server = Server::start_with_config(1, "[server]\nheader_timeout_ms = 300\n");
    let (addr, _) = server.rpc_addr();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let started = std::time::Instant::now();
    assert!(read_to_close(&mut stream).is_empty());
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[test]
fn a_truncated_frame_is_closed_after_the_timeout_and_requests_before_it_are_answered() {
    let server = Server::start_with_config(1, "[server]\nheader_timeout_ms = 300\n");
    let mut stream = raw(&server);
    let header = RequestHeader {
        request_id: 7,
        class: "counter".into(),
        object: name("t"),
        method: builtin::COUNTER_INCREMENT.into(),
    };
    let mut frames = Vec::new();
    rpc::encode_request(&mut frames, &header, b"");
    let whole = frames.len();
    rpc::encode_request(
        &mut frames,
        &RequestHeader {
            request_id: 8,
            ..header
        },
        b"",
    );
    stream.write_all(&frames[..whole + 5]).expect("write");
    let answer = read_to_close(&mut stream);
    match rpc::decode_response(&answer, usize::MAX).expect("a response") {
        rpc::Decoded::Frame { header, .. } => {
            assert_eq!((header.request_id, header.status), (7, status::OK))
        }
        rpc::Decoded::Incomplete => panic!("no response to the whole frame"),
    }
}
