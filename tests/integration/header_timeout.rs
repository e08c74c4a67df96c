//! A client that does not finish its request head within
//! `[server] header_timeout_ms` gets 408 and a closed connection, whether it
//! sends nothing or drips bytes; other connections keep being served.

use crate::harness::http::ReadError;
use crate::harness::{Bystander, Server};
use std::thread;
use std::time::{Duration, Instant};

const HEADER_TIMEOUT_MS: u64 = 300;
/// A timer may be coarse, but must not fire well before the timeout.
const EARLIEST_MS: u128 = 200;
/// How long a drip keeps sending before the test gives up on a 408.
const DRIP_MAX: Duration = Duration::from_secs(3);

fn config() -> String {
    format!("[server]\nheader_timeout_ms = {HEADER_TIMEOUT_MS}\n")
}

/// Runs `nasty` on its own thread while the bystander makes requests every
/// 50 ms, so the bystander is busy (never idle) the whole time.
fn with_busy_bystander<T: Send>(bystander: &mut Bystander, nasty: impl FnOnce() -> T + Send) -> T {
    thread::scope(|scope| {
        let handle = scope.spawn(nasty);
        let mut round = 0;
        while !handle.is_finished() {
            round += 1;
            bystander.check(&format!("during the nasty client (round {round})"));
            thread::sleep(Duration::from_millis(50));
        }
        handle.join().expect("the nasty client's thread panicked")
    })
}

#[test]
fn silent_client_gets_408_then_close() {
    let mut server = Server::start_with_config(2, &config());
    let mut bystander = Bystander::open(&server, "bystander-408-silent");
    let mut silent = server.connect();
    let started = Instant::now();
    let (response, elapsed) = with_busy_bystander(&mut bystander, move || {
        let response = silent.read_response();
        let elapsed = started.elapsed();
        if response.is_ok() {
            silent.expect_closed("after the 408 to a silent client");
        }
        (response, elapsed)
    });
    let response = response.unwrap_or_else(|error| panic!("a silent client expected 408: {error}"));
    assert_eq!(response.status, 408, "{response}");
    assert!(
        elapsed.as_millis() >= EARLIEST_MS,
        "408 after {elapsed:?}, before the {HEADER_TIMEOUT_MS} ms header timeout"
    );
    bystander.check("after the 408");
    server.assert_alive();
}

#[test]
fn partial_head_gets_408_then_close() {
    let mut server = Server::start_with_config(2, &config());
    let mut bystander = Bystander::open(&server, "bystander-408-partial");
    let mut partial = server.connect();
    let started = Instant::now();
    let result = with_busy_bystander(&mut bystander, move || {
        partial.send_raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
        let response = partial.read_response();
        let elapsed = started.elapsed();
        if response.is_ok() {
            partial.expect_closed("after the 408 to a partial head");
        }
        (response, elapsed)
    });
    let (response, elapsed) = result;
    let response = response.unwrap_or_else(|error| panic!("a partial head expected 408: {error}"));
    assert_eq!(response.status, 408, "{response}");
    assert!(
        elapsed.as_millis() >= EARLIEST_MS,
        "408 after only {elapsed:?}"
    );
    bystander.check("after the 408");
    server.assert_alive();
}

/// Sends one byte every 50 ms; the head never completes. The timeout is for
/// the whole head, so the 408 must come while the client is still dripping.
#[test]
fn dripping_client_gets_408_before_it_finishes() {
    let mut server = Server::start_with_config(2, &config());
    let mut bystander = Bystander::open(&server, "bystander-408-drip");
    let mut drip = server.connect();
    let (response, elapsed) = with_busy_bystander(&mut bystander, move || {
        drip.set_timeout(Duration::from_millis(50));
        let head = format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: {}",
            "a".repeat(200)
        );
        let started = Instant::now();
        let mut bytes = head.bytes();
        loop {
            if started.elapsed() > DRIP_MAX {
                return (
                    Err(format!("no 408 after dripping for {DRIP_MAX:?}")),
                    started.elapsed(),
                );
            }
            if let Some(byte) = bytes.next() {
                // The server may have closed already; the read below tells.
                let _ = drip.try_send_raw(&[byte]);
            }
            match drip.read_response() {
                Ok(response) => {
                    let elapsed = started.elapsed();
                    drip.set_timeout(Duration::from_secs(5));
                    drip.expect_closed("after the 408 to a dripping client");
                    return (Ok(response), elapsed);
                }
                Err(ReadError::Timeout { .. }) => continue,
                Err(error) => return (Err(error.to_string()), started.elapsed()),
            }
        }
    });
    let response =
        response.unwrap_or_else(|error| panic!("a dripping client expected 408: {error}"));
    assert_eq!(response.status, 408, "{response}");
    assert!(
        elapsed.as_millis() >= EARLIEST_MS,
        "408 after only {elapsed:?}"
    );
    bystander.check("after the 408");
    server.assert_alive();
}

#[test]
fn requests_completed_in_time_are_served_normally() {
    let server = Server::start_with_config(2, &config());
    let mut conn = server.connect();
    // A head split over two writes, well within the timeout.
    conn.send_raw(b"GET /heal");
    thread::sleep(Duration::from_millis(50));
    conn.send_raw(b"thz HTTP/1.1\r\nHost: x\r\n\r\n");
    let response = conn.read_response().expect("a split head is served");
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "ok"),
        "{response}"
    );
    for _ in 0..5 {
        assert_eq!(conn.get("/healthz").status, 200);
    }
}
