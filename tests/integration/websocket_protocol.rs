//! RFC 6455 on the shard: pings, fragments, the close handshake, and the
//! close code every kind of bad input gets.

use std::time::Duration;

use crate::harness::Server;
use crate::kv_client::metric_total;
use crate::ws_client::{masked, Ending, Ws};

fn joined(server: &Server, room: &str, name: &str) -> Ws {
    let mut ws = Ws::connect(server, &format!("/chat/{room}/websocket?name={name}"));
    assert_eq!(ws.recv_json().str_field("name"), name);
    ws
}

#[test]
fn a_client_close_is_answered_and_the_connection_closed() {
    let server = Server::start(1);
    let mut ws = joined(&server, "r", "a");
    ws.send_raw(&masked(0x88, &[0x0f, 0xa0, b'b', b'y', b'e']));
    assert_eq!(ws.ending(), Ending::Close(4000));
    assert!(
        ws.tcp_closed(),
        "the server closes the TCP connection after answering"
    );
}

#[test]
fn pings_are_answered_and_fragments_reassembled() {
    let server = Server::start(1);
    let mut a = joined(&server, "r", "a");
    let mut b = joined(&server, "r", "b");
    a.recv_json();
    b.send_raw(&masked(0x89, b"are you there"));
    match b.inner.read().expect("a pong") {
        tungstenite::Message::Pong(payload) => assert_eq!(&payload[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }
    // "héllo" in three fragments, a ping between two of them.
    let bytes = "héllo".as_bytes();
    let mut raw = masked(0x01, &bytes[..2]);
    raw.extend(masked(0x00, &bytes[2..4]));
    raw.extend(masked(0x89, b""));
    raw.extend(masked(0x80, &bytes[4..]));
    b.send_raw(&raw);
    assert_eq!(a.recv_json().str_field("text"), "héllo");
}

fn ending_after(server: &Server, raw: &[u8]) -> Ending {
    let mut ws = joined(server, "bad", "x");
    ws.send_raw(raw);
    ws.ending()
}

#[test]
fn bad_frames_get_their_close_codes() {
    let server = Server::start_with_config(2, "[server]\nwebsocket_message_bytes_max = 1024\n");
    let unmasked = crate::ws_client::frame(0x81, b"hi", None);
    assert_eq!(ending_after(&server, &unmasked), Ending::Close(1002));
    assert_eq!(
        ending_after(&server, &masked(0x83, b"x")),
        Ending::Close(1002)
    );
    assert_eq!(
        ending_after(&server, &masked(0x89, &[0; 126])),
        Ending::Close(1002)
    );
    assert_eq!(
        ending_after(&server, &masked(0x80, b"x")),
        Ending::Close(1002)
    );
    assert_eq!(
        ending_after(&server, &masked(0x81, &[0xc3, 0x28])),
        Ending::Close(1007)
    );
    assert_eq!(
        ending_after(&server, &masked(0x82, &[0; 1025])),
        Ending::Close(1009)
    );
    let mut fragments = masked(0x02, &[0; 600]);
    fragments.extend(masked(0x80, &[0; 600]));
    assert_eq!(ending_after(&server, &fragments), Ending::Close(1009));
    // A message exactly at the limit is fine.
    let mut a = joined(&server, "ok", "a");
    let mut b = joined(&server, "ok", "b");
    a.recv_json();
    let text = "x".repeat(1024);
    b.send_text(&text);
    assert_eq!(a.recv_json().str_field("text"), text);
    let mut conn = server.connect();
    assert_eq!(
        metric_total(&mut conn, "durin_websocket_protocol_errors_total"),
        7
    );
}

#[test]
fn a_bad_handshake_is_refused_with_its_status() {
    let server = Server::start(1);
    let mut conn = server.connect();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let request = format!(
        "GET /chat/r/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: {key}\r\n\r\n"
    );
    conn.send_raw(request.as_bytes());
    let response = conn.read_response().expect("an answer");
    assert_eq!(response.status, 426);
    assert_eq!(response.header("sec-websocket-version"), Some("13"));
    let mut conn = server.connect();
    conn.send_raw(b"GET /chat/r/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n");
    assert_eq!(conn.read_response().expect("an answer").status, 400);
}

#[test]
fn a_reader_that_falls_behind_is_closed_without_slowing_the_room() {
    let config = "[server]\nwebsocket_send_queue_bytes_max = 65536\n";
    let server = Server::start_with_config(1, config);
    let mut sender = joined(&server, "r", "sender");
    let mut stalled = joined(&server, "r", "stalled");
    sender.recv_json();
    let mut reader = joined(&server, "r", "reader");
    sender.recv_json();
    // `stalled` reads nothing from here on; `reader` keeps up: the sender
    // sends the next message once `reader` has the last one.
    let text = "y".repeat(32 * 1024);
    let messages = 640; // 20 MiB: far more than the kernel buffers between them.
    let (got, next) = std::sync::mpsc::channel();
    let reading = std::thread::spawn(move || {
        let mut received = 0;
        while received < messages {
            let message = reader.recv_json();
            if message.get("type").is_some() {
                // `stalled` leaving, once it was closed.
                assert_eq!(message.str_field("type"), "leave");
                continue;
            }
            assert_eq!(message.str_field("text").len(), 32 * 1024);
            received += 1;
            got.send(()).expect("the sender waits");
        }
    });
    for _ in 0..messages {
        sender.send_text(&text);
        next.recv_timeout(Duration::from_secs(10))
            .expect("the reader got the message");
    }
    reading.join().expect("the reader got every message");
    let mut conn = server.connect();
    assert_eq!(
        metric_total(&mut conn, "durin_websocket_slow_readers_closed_total"),
        1
    );
    stalled.set_timeout(Duration::from_secs(20));
    assert_eq!(stalled.ending(), Ending::Close(1008));
}

#[test]
fn an_idle_socket_outlives_the_keep_alive_timeout() {
    let server = Server::start_with_config(1, "[server]\nidle_timeout_ms = 100\n");
    let mut a = joined(&server, "idle", "a");
    let mut b = joined(&server, "idle", "b");
    a.recv_json();
    std::thread::sleep(Duration::from_millis(700));
    b.send_text("still here");
    assert_eq!(a.recv_json().str_field("text"), "still here");
}

/// A kernel without provided-buffer rings: each socket receives into a
/// buffer of its own, with the same behaviour.
#[test]
fn sockets_work_without_a_buffer_ring() {
    let server = Server::builder()
        .cores(2)
        .config("[server]\nwebsocket_message_bytes_max = 1024\n")
        .env("DURIN_WS_PLAIN_RECV", "1")
        .start();
    let mut a = joined(&server, "plain", "a");
    let mut b = joined(&server, "plain", "b");
    a.recv_json();
    let bytes = "fragmented".as_bytes();
    let mut raw = masked(0x01, &bytes[..4]);
    raw.extend(masked(0x80, &bytes[4..]));
    b.send_raw(&raw);
    assert_eq!(a.recv_json().str_field("text"), "fragmented");
    let text = "z".repeat(1000);
    a.send_text(&text);
    assert_eq!(b.recv_json().str_field("text"), text);
    assert_eq!(
        ending_after(&server, &masked(0x82, &[0; 1025])),
        Ending::Close(1009)
    );
    b.close(1000);
    assert_eq!(a.recv_json().str_field("type"), "leave");
}

/// Random bytes after the upgrade, and random frames with valid headers:
/// every connection ends with a close code or a close, and the server goes
/// on serving.
#[test]
fn garbage_after_the_upgrade_never_takes_a_shard_down() {
    let mut server = Server::start_with_config(2, "[server]\nwebsocket_message_bytes_max = 4096\n");
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..60 {
        let mut ws = joined(&server, &format!("g{}", round % 7), "x");
        ws.set_timeout(Duration::from_secs(5));
        let mut bytes = Vec::new();
        for _ in 0..(1 + next() % 8) {
            if next() % 3 == 0 {
                // Raw noise.
                let len = next() % 300;
                bytes.extend((0..len).map(|_| next() as u8));
            } else {
                // A frame with a random first byte and a random payload.
                let first = next() as u8;
                let len = (next() % 200) as usize;
                let payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                bytes.extend(masked(first, &payload));
            }
        }
        ws.send_raw(&bytes);
        // Whatever the bytes meant, the connection either lives on or ends
        // with a close frame or a closed socket; reading must not hang.
        ws.send_raw(&masked(0x88, &1000u16.to_be_bytes()));
        let _ = ws.ending();
        server.assert_alive();
    }
    let mut a = joined(&server, "after", "a");
    let mut b = joined(&server, "after", "b");
    a.recv_json();
    b.send_text("still serving");
    assert_eq!(a.recv_json().str_field("text"), "still serving");
}
