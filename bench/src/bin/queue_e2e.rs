//! End-to-end throughput of the `queue` class: producers append over HTTP
//! while consumers pull and acknowledge, and the report gives durable
//! appends/s and acknowledged deliveries/s over the same window.
//!
//! ```text
//! durin serve --cores 2 &
//! cargo run --release -p bench --bin queue_e2e -- --queues 1 --producers 8 --consumers 1
//! ```
//!
//! Each consumer owns the queues `q{c}`, `q{c + C}`, … (ordered delivery
//! hands one queue's messages to one consumer at a time anyway); it pulls up
//! to `--pull-max` with a short long-poll and acknowledges with
//! `{"through": last}`. Blocking std sockets, one connection per thread.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Queues, named `{prefix}{i}`.
    #[arg(long, default_value_t = 1)]
    queues: usize,
    #[arg(long, default_value = "q")]
    prefix: String,
    #[arg(long, default_value_t = 8)]
    producers: usize,
    /// 0: append only (the durable append rate alone).
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Messages per append (1: a raw body; more: a JSON batch).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    #[arg(long, default_value_t = 100)]
    body_bytes: usize,
    #[arg(long, default_value_t = 1000)]
    pull_max: usize,
    /// Seconds to measure.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: &str) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Conn {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// Sends `{head} HTTP/1.1` with `headers` (whole lines) and `body`;
    /// returns the status and body.
    fn request(
        &mut self,
        head: &str,
        headers: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let request = format!(
            "{head} HTTP/1.1\r\nHost: bench\r\n{headers}Content-Length: {}\r\n\r\n",
            body.len()
        );
        self.writer.write_all(request.as_bytes())?;
        self.writer.write_all(body)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok((status, body))
    }
}

/// The sequence numbers in a pull's answer.
fn seqs(body: &[u8]) -> Vec<u64> {
    let text = String::from_utf8_lossy(body);
    text.match_indices("\"seq\":")
        .filter_map(|(i, m)| {
            let rest = &text[i + m.len()..];
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            rest[..end].parse().ok()
        })
        .collect()
}

fn produce(args: &Args, index: usize, stop: &AtomicBool, appended: &AtomicU64) {
    let Ok(mut conn) = Conn::open(&args.addr) else {
        return;
    };
    let message = "x".repeat(args.body_bytes);
    let (headers, body) = if args.batch == 1 {
        ("", message.into_bytes())
    } else {
        let quoted = vec![format!("\"{message}\""); args.batch].join(",");
        let body = format!("{{\"messages\": [{quoted}]}}").into_bytes();
        ("Content-Type: application/json\r\n", body)
    };
    let mut queue = index % args.queues;
    while !stop.load(Ordering::Relaxed) {
        let head = format!("POST /queue/{}{queue}/messages", args.prefix);
        match conn.request(&head, headers, &body) {
            Ok((200, _)) => {
                appended.fetch_add(args.batch as u64, Ordering::Relaxed);
            }
            // Full: the consumers are behind; let them catch up.
            Ok((507, _)) => thread::sleep(Duration::from_millis(5)),
            Ok((status, body)) => {
                eprintln!("append: {status} {}", String::from_utf8_lossy(&body));
                return;
            }
            Err(e) => {
                eprintln!("append: {e}");
                return;
            }
        }
        queue = (queue + args.producers) % args.queues;
    }
}

fn consume(args: &Args, index: usize, stop: &AtomicBool, delivered: &AtomicU64) {
    let Ok(mut conn) = Conn::open(&args.addr) else {
        return;
    };
    let queues: Vec<usize> = (index..args.queues).step_by(args.consumers).collect();
    let wait_ms = if queues.len() == 1 { 50 } else { 0 };
    while !stop.load(Ordering::Relaxed) {
        for queue in &queues {
            let head = format!(
                "POST /queue/{}{queue}/pull?max={}&wait_ms={wait_ms}&visibility_ms=60000",
                args.prefix, args.pull_max
            );
            let Ok((200, body)) = conn.request(&head, "", b"") else {
                return;
            };
            let got = seqs(&body);
            let Some(last) = got.iter().max() else {
                continue;
            };
            let ack = format!("{{\"through\": {last}}}");
            let path = format!("POST /queue/{}{queue}/ack", args.prefix);
            let Ok((200, _)) = conn.request(&path, "", ack.as_bytes()) else {
                return;
            };
            delivered.fetch_add(got.len() as u64, Ordering::Relaxed);
        }
    }
}

fn main() {
    let args = Arc::new(Args::parse());
    let stop = Arc::new(AtomicBool::new(false));
    let appended = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for i in 0..args.producers {
        let (args, stop, appended) = (args.clone(), stop.clone(), appended.clone());
        threads.push(thread::spawn(move || produce(&args, i, &stop, &appended)));
    }
    for i in 0..args.consumers.min(args.queues) {
        let (args, stop, delivered) = (args.clone(), stop.clone(), delivered.clone());
        threads.push(thread::spawn(move || consume(&args, i, &stop, &delivered)));
    }
    // A second of warm-up, then the measured window.
    thread::sleep(Duration::from_secs(1));
    let (a0, d0) = (
        appended.load(Ordering::Relaxed),
        delivered.load(Ordering::Relaxed),
    );
    let started = Instant::now();
    thread::sleep(Duration::from_secs(args.seconds));
    let (a1, d1) = (
        appended.load(Ordering::Relaxed),
        delivered.load(Ordering::Relaxed),
    );
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    println!(
        "queues {} producers {} consumers {} batch {}: appends {:.0}/s, deliveries {:.0}/s",
        args.queues,
        args.producers,
        args.consumers.min(args.queues),
        args.batch,
        (a1 - a0) as f64 / secs,
        (d1 - d0) as f64 / secs
    );
}
