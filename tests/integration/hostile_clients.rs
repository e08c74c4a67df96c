//! Clients that try to make the server misbehave: flood it with requests
//! for replies they never read, exhaust its descriptors, send headers and
//! parameters that mean two things at once. Each test sends the attack and
//! checks the answer a well-behaved server gives, and that the server still
//! serves everyone else afterwards.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::Server;
use crate::kv_client::metric_total;
use crate::ws_client::{masked, Ending, Ws};

const MIB: u64 = 1 << 20;

fn joined(server: &Server, room: &str, name: &str) -> Ws {
    let mut ws = Ws::connect(server, &format!("/chat/{room}/websocket?name={name}"));
    assert_eq!(ws.recv_json().str_field("name"), name);
    ws
}

/// The text of the next chat message, skipping joins and leaves.
fn next_text(ws: &mut Ws) -> String {
    loop {
        let message = ws.recv_json();
        if message.get("text").is_some() {
            return message.str_field("text").to_string();
        }
    }
}

/// Pings numbered from 0, `count` of them with 125-byte payloads, as one
/// write per batch.
fn ping_flood(ws: &mut Ws, count: u32) {
    let mut batch = Vec::with_capacity(64 * 1024);
    for i in 0..count {
        let mut payload = [b'.'; 125];
        payload[..10].copy_from_slice(format!("{i:010}").as_bytes());
        batch.extend(masked(0x89, &payload));
        if batch.len() >= 60 * 1024 {
            ws.send_raw(&batch);
            batch.clear();
        }
    }
    ws.send_raw(&batch);
}

#[test]
fn a_ping_flood_without_reading_queues_one_pong_not_one_per_ping() {
    let server = Server::start(1);
    let mut flooder = joined(&server, "flood", "f");
    let rss_before = server.rss_bytes();
    // 200,000 pings: a pong each would be 25 MiB queued for a peer that
    // reads nothing.
    let pings = 200_000;
    ping_flood(&mut flooder, pings);
    // The last ping is answered once the socket drains: read every pong.
    let mut pongs = 0u32;
    let last = format!("{:010}", pings - 1);
    loop {
        match flooder.inner.read().expect("a pong") {
            tungstenite::Message::Pong(payload) => {
                pongs += 1;
                if payload.starts_with(last.as_bytes()) {
                    break;
                }
            }
            other => panic!("expected pongs, got {other:?}"),
        }
    }
    let rss_after = server.rss_bytes();
    assert!(
        pongs < pings / 2,
        "pongs to a peer that does not read are coalesced: {pongs} pongs for {pings} pings"
    );
    assert!(
        rss_after < rss_before + 16 * MIB,
        "a ping flood grew the server from {rss_before} to {rss_after} bytes"
    );
    // The socket still works.
    let mut other = joined(&server, "flood", "o");
    other.send_text("still here");
    assert_eq!(next_text(&mut flooder), "still here");
}

#[test]
fn auto_responses_to_a_peer_that_does_not_read_close_it_with_1008() {
    let response = "r".repeat(2000);
    let config = format!(
        "[server]\nwebsocket_send_queue_bytes_max = 65536\n\
         [classes.chat]\nauto_response_request = \"ping\"\nauto_response_response = \"{response}\"\n"
    );
    let server = Server::start_with_config(1, &config);
    let mut reader = joined(&server, "auto", "a");
    let mut flooder = joined(&server, "auto", "f");
    reader.recv_json();
    let rss_before = server.rss_bytes();
    // 50,000 auto-responses of 2 KB: 100 MB if they were all queued.
    let one = masked(0x81, b"ping");
    let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 1000).collect();
    for _ in 0..50 {
        if flooder.inner.get_mut().write_all(&batch).is_err() {
            break; // closed by the server already
        }
    }
    assert_eq!(flooder.ending(), Ending::Close(1008));
    let rss_after = server.rss_bytes();
    assert!(
        rss_after < rss_before + 32 * MIB,
        "auto-responses grew the server from {rss_before} to {rss_after} bytes"
    );
    let mut conn = server.connect();
    assert!(metric_total(&mut conn, "durin_websocket_slow_readers_closed_total") >= 1);
    // The room's other member is not affected.
    let mut late = joined(&server, "auto", "l");
    late.send_text("hello");
    assert_eq!(next_text(&mut reader), "hello");
}

#[test]
fn pipelined_requests_for_large_responses_are_served_as_the_peer_reads() {
    let server = Server::start(1);
    let mut conn = server.connect();
    let value = vec![b'v'; 128 * 1024];
    let put = conn.request("PUT", "/kv/big/keys/k", &[], &value);
    assert_eq!(put.status, 200, "{put}");
    let get = b"GET /kv/big/keys/k HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut stream = TcpStream::connect(server.addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeouts can be set");
    // One response first, to learn its length on the wire.
    stream.write_all(get).expect("a request is sent");
    let mut buf = vec![0u8; 1 << 20];
    let mut one = Vec::new();
    while !one.ends_with(&value[..1024]) || one.len() < value.len() {
        let n = stream.read(&mut buf).expect("the response arrives");
        assert!(n > 0, "the server closed");
        one.extend_from_slice(&buf[..n]);
    }
    let response_bytes = one.len() as u64;
    let rss_before = server.rss_bytes();
    // 4,000 pipelined GETs of a 128 KiB value: 512 MiB of responses if the
    // server answered them all before the peer read any.
    let requests = 4_000u64;
    let bytes: Vec<u8> = get
        .iter()
        .copied()
        .cycle()
        .take(get.len() * requests as usize)
        .collect();
    stream.write_all(&bytes).expect("the requests are sent");
    std::thread::sleep(Duration::from_millis(1000));
    let rss_peak = server.rss_bytes();
    assert!(
        rss_peak < rss_before + 64 * MIB,
        "unread pipelined responses grew the server from {rss_before} to {rss_peak} bytes"
    );
    // Every response arrives once the peer reads.
    let mut total = 0u64;
    while total < requests * response_bytes {
        let n = stream.read(&mut buf).expect("the responses arrive");
        assert!(n > 0, "the server closed after {total} bytes");
        total += n as u64;
    }
    assert_eq!(total, requests * response_bytes);
}

/// Sets the soft `RLIMIT_NOFILE` of process `pid`, keeping its hard limit.
fn set_soft_fd_limit(pid: u32, soft: u64) {
    // SAFETY: prlimit reads `new` and writes `old`, both locals.
    unsafe {
        let mut old: libc::rlimit = std::mem::zeroed();
        assert_eq!(
            libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old),
            0,
            "the server's descriptor limit can be read"
        );
        let new = libc::rlimit {
            rlim_cur: soft,
            rlim_max: old.rlim_max,
        };
        assert_eq!(
            libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()),
            0,
            "the server's descriptor limit can be set"
        );
    }
}

fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the server's descriptors can be listed")
        .count() as u64
}

fn lowest_free_fd(pid: u32) -> u64 {
    let taken: std::collections::HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the server's descriptors can be listed")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..)
        .find(|n| !taken.contains(n))
        .expect("some number is free")
}

fn lines_containing(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn running_out_of_descriptors_pauses_accepting_instead_of_spinning() {
    let server = Server::builder().cores(1).fd_limit(256).start();
    let pid = server.pid();
    let mut kept = server.connect();
    assert_eq!(kept.get("/healthz").status, 200);
    // The log creates its next segment ahead of need, at start; that file
    // is storage's, which the descriptors kept free per shard are for.
    let wal = server.data_dir().join("wal");
    assert!(crate::harness::eventually(Duration::from_secs(10), || {
        std::fs::read_dir(&wal).is_ok_and(|d| d.count() >= 2)
    }));
    // Something else takes the process's descriptors: its soft limit drops
    // to its lowest free descriptor. An accept armed earlier still works
    // under the old limit, so a storm of connections (queued while the
    // server is stopped) runs it out of descriptors first; every accept
    // armed after that fails for as long as the descriptors stay taken.
    set_soft_fd_limit(pid, lowest_free_fd(pid));
    signal(pid, libc::SIGSTOP);
    let storm: Vec<TcpStream> = (0..400)
        .map(|_| TcpStream::connect(server.addr()).expect("the kernel completes the handshake"))
        .collect();
    signal(pid, libc::SIGCONT);
    std::thread::sleep(Duration::from_millis(1500));
    let ticks_before = server.cpu_ticks();
    std::thread::sleep(Duration::from_secs(2));
    let ticks = server.cpu_ticks() - ticks_before;
    // SAFETY: sysconf has no preconditions.
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    assert!(
        ticks < ticks_per_s / 2,
        "the server used {ticks} ticks of CPU in 2 s ({ticks_per_s} a second) out of descriptors"
    );
    // The connections it holds are served at once.
    let started = std::time::Instant::now();
    assert_eq!(kept.get("/healthz").status, 200);
    assert!(started.elapsed() < Duration::from_millis(500));
    assert!(metric_total(&mut kept, "durin_accept_fd_exhausted_total") >= 1);
    // Descriptors come back: new connections are served again.
    drop(storm);
    set_soft_fd_limit(pid, 256);
    let mut conn = None;
    assert!(crate::harness::eventually(Duration::from_secs(5), || {
        conn = crate::harness::Conn::connect(server.addr()).ok();
        conn.as_mut()
            .and_then(|c| c.try_request("GET", "/healthz", &[], b"").ok())
            .is_some_and(|r| r.status == 200)
    }));
    // One warning when an episode starts and one when it ends, not one per
    // failed accept. (The server's own files, opened and closed meanwhile,
    // may end an episode early and let a second one start.)
    let stderr = server.stderr();
    let episodes = lines_containing(&stderr, "out of file descriptors");
    assert!(
        (1..=3).contains(&episodes),
        "{episodes} warnings:\n{stderr}"
    );
    assert_eq!(
        lines_containing(&stderr, "accepting connections again"),
        episodes,
        "every episode ends:\n{stderr}"
    );
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: kill has no memory preconditions.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
}

#[test]
fn connection_caps_above_the_descriptor_limit_are_lowered_with_one_warning() {
    let server = Server::builder().cores(2).fd_limit(512).start();
    let stderr = server.stderr();
    assert_eq!(
        lines_containing(&stderr, "connections_max_per_shard lowered from 10000 to"),
        1,
        "{stderr}"
    );
    // Far more connections than the lowered caps allow, all at once: the
    // ones past a shard's cap are answered 503 and closed, and the process
    // never holds more descriptors than its limit.
    let open: Vec<TcpStream> = (0..600)
        .map(|_| TcpStream::connect(server.addr()).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let held = open_fds(server.pid());
    assert!(held <= 512, "{held} descriptors open under a limit of 512");
    drop(open);
    let mut conn = None;
    assert!(crate::harness::eventually(Duration::from_secs(5), || {
        conn = crate::harness::Conn::connect(server.addr()).ok();
        conn.as_mut()
            .and_then(|c| c.try_request("GET", "/healthz", &[], b"").ok())
            .is_some_and(|r| r.status == 200)
    }));
    let mut conn = conn.expect("connected above");
    assert!(metric_total(&mut conn, "durin_connections_rejected_total") > 0);
}

/// Sends `request` on a new connection and returns everything the server
/// sends until it closes or goes quiet for 500 ms.
fn exchange(server: &Server, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(server.addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeouts can be set");
    stream.write_all(request).expect("the request is sent");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

const UPGRADE: &str = "GET /chat/r/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

#[test]
fn handshakes_with_duplicated_headers_are_refused() {
    let server = Server::start(2);
    assert!(exchange(&server, format!("{UPGRADE}\r\n").as_bytes())
        .starts_with("HTTP/1.1 101 Switching Protocols"));
    for extra in [
        "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n",
        "Upgrade: h2c\r\n",
        "Sec-WebSocket-Version: 8\r\n",
    ] {
        let answer = exchange(&server, format!("{UPGRADE}{extra}\r\n").as_bytes());
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request"),
            "with {extra:?}: {answer}"
        );
    }
    let old_version = UPGRADE.replace("Version: 13", "Version: 8");
    let answer = exchange(&server, format!("{old_version}\r\n").as_bytes());
    assert!(
        answer.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{answer}"
    );
    assert!(answer.contains("Sec-WebSocket-Version: 13\r\n"), "{answer}");
}

#[test]
fn unknown_methods_get_501_and_wrong_ones_405_with_allow() {
    let server = Server::start(1);
    let long = "G".repeat(5000);
    for method in ["get", "Get", "BREW", long.as_str()] {
        let answer = exchange(
            &server,
            format!("{method} /healthz HTTP/1.1\r\n\r\n").as_bytes(),
        );
        assert!(
            answer.starts_with("HTTP/1.1 501 Not Implemented"),
            "{}: {answer}",
            &method[..method.len().min(10)]
        );
    }
    for (request, allow) in [
        ("POST /healthz", "GET, HEAD"),
        ("DELETE /metrics", "GET, HEAD"),
        ("PUT /counter/c/increment", "POST"),
        ("POST /counter/c", "GET"),
        ("PATCH /kv/o/keys/k", "GET, PUT, DELETE"),
        ("POST /kv/o/list", "GET"),
        ("GET /kv/o/transaction", "POST"),
        ("PUT /ratelimit/k", "GET, POST"),
    ] {
        let answer = exchange(
            &server,
            format!("{request} HTTP/1.1\r\nContent-Length: 0\r\n\r\n").as_bytes(),
        );
        assert!(
            answer.starts_with("HTTP/1.1 405 Method Not Allowed"),
            "{request}: {answer}"
        );
        assert!(
            answer.contains(&format!("Allow: {allow}\r\n")),
            "{request}: {answer}"
        );
    }
    // HEAD is GET without the body.
    let head = exchange(&server, b"HEAD /healthz HTTP/1.1\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("Content-Length: 2\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "no body after a HEAD: {head:?}");
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let server = Server::start(1);
    let mut stream = TcpStream::connect(server.addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeouts can be set");
    stream
        .write_all(
            b"PUT /kv/o/keys/k HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        )
        .expect("the head is sent");
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).expect("the interim answer arrives");
    assert_eq!(&buf[..n], b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hello").expect("the body is sent");
    let n = stream.read(&mut buf).expect("the final answer arrives");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
    // A body the server will not take is refused at once, not awaited.
    let too_big = exchange(
        &server,
        b"PUT /kv/o/keys/k HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 99999999\r\n\r\n",
    );
    assert!(too_big.starts_with("HTTP/1.1 413"), "{too_big}");
    assert!(!too_big.contains("100 Continue"), "{too_big}");
    let unknown = exchange(
        &server,
        b"PUT /kv/o/keys/k HTTP/1.1\r\nExpect: tea\r\nContent-Length: 5\r\n\r\n",
    );
    assert!(
        unknown.starts_with("HTTP/1.1 417 Expectation Failed"),
        "{unknown}"
    );
}

#[test]
fn rpc_request_id_0_is_refused_as_malformed() {
    use durin_proto::rpc::{self, status, ObjectRef, RequestHeader};
    let server = Server::start(1);
    let mut stream = crate::rpc::raw(&server);
    let header = RequestHeader {
        request_id: 0,
        class: "counter".into(),
        object: ObjectRef::Name(b"c".to_vec()),
        method: "increment".into(),
    };
    let mut frame = Vec::new();
    rpc::encode_request(&mut frame, &header, b"");
    stream.write_all(&frame).expect("the frame is sent");
    let answer = crate::rpc::read_to_close(&mut stream);
    match rpc::decode_response(&answer, usize::MAX).expect("an error frame") {
        rpc::Decoded::Frame { header, .. } => {
            assert_eq!((header.request_id, header.status), (0, status::MALFORMED));
            assert!(
                header.message.contains("request ID 0"),
                "{}",
                header.message
            );
        }
        rpc::Decoded::Incomplete => panic!("incomplete answer {answer:?}"),
    }
    // Nothing was incremented.
    assert_eq!(server.connect().get("/counter/c").text(), "{\"value\": 0}");
}

#[test]
fn ambiguous_or_overflowing_parameters_are_refused_by_name() {
    let server = Server::start(1);
    let mut conn = server.connect();
    for (path, names) in [
        ("/kv/o/list?start=a&start_after=b", "start_after"),
        ("/kv/o/list?limit=1&limit=2", "`limit` given more than once"),
        (
            "/kv/o/list?prefix=a&prefix=b",
            "`prefix` given more than once",
        ),
    ] {
        let response = conn.get(path);
        assert_eq!(response.status, 400, "{path}: {response}");
        assert!(
            response.text().contains(names),
            "{path}: {}",
            response.text()
        );
    }
    for (body, name) in [
        ("{\"in_ms\": 9223372036854775807}", "in_ms"),
        ("{\"in_ms\": 18446744073709551615}", "in_ms"),
        ("{\"at_ms\": 8640000000000001}", "at_ms"),
    ] {
        let response = conn.request("PUT", "/kv/o/alarm", &[], body.as_bytes());
        assert_eq!(response.status, 400, "{body}: {response}");
        assert!(
            response.text().contains(name),
            "{body}: {}",
            response.text()
        );
    }
    assert_eq!(conn.get("/kv/o/alarm").text(), "{\"at_ms\":null}");
    let latest = conn.request("PUT", "/kv/o/alarm", &[], b"{\"at_ms\": 8640000000000000}");
    assert_eq!(latest.status, 200, "{latest}");
}

#[test]
fn a_peer_that_never_reads_is_dropped_after_the_idle_timeout() {
    let server = Server::start_with_config(1, "[server]\nidle_timeout_ms = 1000\n");
    let mut conn = server.connect();
    let value = vec![b'v'; 128 * 1024];
    assert_eq!(
        conn.request("PUT", "/kv/big/keys/k", &[], &value).status,
        200
    );
    // Pipelined GETs (their answers queue past the output limit), and a
    // request asking to close after a large answer: neither peer reads.
    let get = b"GET /kv/big/keys/k HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut pipelining = TcpStream::connect(server.addr()).expect("connect");
    let bytes: Vec<u8> = get.iter().copied().cycle().take(get.len() * 1000).collect();
    pipelining.write_all(&bytes).expect("the requests are sent");
    let mut closing = TcpStream::connect(server.addr()).expect("connect");
    for _ in 0..40 {
        closing.write_all(get).expect("a request is sent");
    }
    closing
        .write_all(b"GET /kv/big/keys/k HTTP/1.1\r\nConnection: close\r\n\r\n")
        .expect("the last request is sent");
    std::thread::sleep(Duration::from_millis(300));
    let open = |conn: &mut crate::harness::Conn| metric_total(conn, "durin_connections_open");
    assert_eq!(open(&mut conn), 3, "the two peers and this one");
    assert!(
        crate::harness::eventually(Duration::from_secs(10), || open(&mut conn) == 1),
        "the peers that never read are still connected"
    );
    drop((pipelining, closing));
}
