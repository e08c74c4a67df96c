//! Concurrent clients increment and read a few counters while the server
//! is killed with SIGKILL and restarted under them; every counter's
//! recorded history must be linearizable. An increment whose answer never
//! came may count or not, but an answered one must never be lost, and no
//! read may see a value that goes back in time or that no increment made.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::Server;
use crate::linearizability::{check, Counter, CounterOp, Operation};

const COUNTERS: usize = 3;
const CLIENTS: usize = 6;
const KILLS: usize = 3;

/// Sends one request on `stream` and reads the counter value of its answer;
/// `None` if the connection failed before a whole answer came.
fn exchange(stream: &mut TcpStream, op: CounterOp, name: &str) -> Option<u64> {
    let request = match op {
        CounterOp::Increment => format!(
            "POST /counter/{name}/increment HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
        ),
        CounterOp::Read => format!("GET /counter/{name} HTTP/1.1\r\nHost: t\r\n\r\n"),
    };
    stream.write_all(request.as_bytes()).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        let Some(head_end) = text.find("\r\n\r\n") else {
            continue;
        };
        let head = &text[..head_end];
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .expect("responses carry Content-Length");
        if buf.len() < head_end + 4 + length {
            continue;
        }
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let body = &text[head_end + 4..head_end + 4 + length];
        let digits: String = body.chars().filter(char::is_ascii_digit).collect();
        return Some(digits.parse().expect("{\"value\": N}"));
    }
}

#[test]
fn counter_histories_stay_linearizable_across_sigkill() {
    let mut server = Server::start(2);
    let addr: SocketAddr = server.addr();
    let start = Instant::now();
    let now = || start.elapsed().as_micros() as u64;
    let stop = AtomicBool::new(false);
    let histories: Vec<Mutex<Vec<Operation<CounterOp, u64>>>> =
        (0..COUNTERS).map(|_| Mutex::new(Vec::new())).collect();

    thread::scope(|scope| {
        for client in 0..CLIENTS {
            let (stop, histories) = (&stop, &histories);
            scope.spawn(move || {
                let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ client as u64;
                let mut stream: Option<TcpStream> = None;
                while !stop.load(Ordering::Relaxed) {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let counter = (rng % COUNTERS as u64) as usize;
                    let op = if rng.is_multiple_of(3) {
                        CounterOp::Read
                    } else {
                        CounterOp::Increment
                    };
                    let conn = match stream.as_mut() {
                        Some(s) => s,
                        None => match TcpStream::connect(addr) {
                            // Nothing was sent: no operation to record.
                            Err(_) => {
                                thread::sleep(Duration::from_millis(5));
                                continue;
                            }
                            Ok(s) => {
                                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                                stream.insert(s)
                            }
                        },
                    };
                    let call = now();
                    let answer = exchange(conn, op, &format!("lin{counter}"));
                    let answered = answer.map(|value| (now(), value));
                    if answered.is_none() {
                        stream = None;
                    }
                    histories[counter].lock().unwrap().push(Operation {
                        call,
                        answer: answered,
                        input: op,
                    });
                }
            });
        }
        for _ in 0..KILLS {
            thread::sleep(Duration::from_millis(700));
            server.restart_on_same_port(2);
        }
        thread::sleep(Duration::from_millis(700));
        stop.store(true, Ordering::Relaxed);
    });

    for (counter, history) in histories.iter().enumerate() {
        let history = history.lock().unwrap();
        let answered = history.iter().filter(|op| op.answer.is_some()).count();
        let unanswered = history.len() - answered;
        assert!(answered > 100, "counter {counter}: only {answered} answers");
        assert!(
            unanswered <= CLIENTS * KILLS,
            "counter {counter}: {unanswered} operations without an answer"
        );
        if let Err(why) = check(Counter(0), &history, 5_000_000) {
            panic!("counter {counter} ({answered} answered, {unanswered} unanswered): {why}");
        }
    }
}
