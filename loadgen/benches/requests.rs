//! What loadgen spends per request on its own side of the wire, so that a
//! benchmark's numbers are known to be the server's and not the generator's:
//!
//! - `write/http`: stamping one HTTP request out of its template;
//! - `write/rpc`: encoding one RPC `ratelimit.check` frame (rkyv header,
//!   reused) into a send buffer;
//! - `answer/http` and `answer/rpc`: framing one response and matching it
//!   with its request (RPC: validating the rkyv header, finding the request
//!   by ID and decoding the rate-limit decision).
//!
//! A `write` iteration writes a batch of 8 requests, as a connection with
//! `--pipeline 8` does; the `answer` benchmarks time chunks of 1,024
//! responses fed in receives of up to the session's buffer, with the
//! requests written and the responses built outside the timed part. `cargo bench -p loadgen --bench
//! requests`; PERF.md ("Binary RPC beside HTTP") has the results.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use durin_proto::rpc::builtin::RateLimitDecision;
use durin_proto::rpc::{
    self, encode_response, encode_server_hello, status, Decoded, ResponseHeader, ServerHello,
    PROTOCOL_VERSION,
};
use loadgen::keys::{KeyDist, KeySampler};
use loadgen::protocol::{Http, InFlight, Protocol, Session};
use loadgen::request::{RequestSpec, RequestTemplate};
use loadgen::rpc::Rpc;
use loadgen::target::Target;

const BATCH: u64 = 8;

fn keys() -> KeySampler {
    KeySampler::new(&KeyDist::Uniform { keys: 10_000 }, 1, 0)
}

fn request(n: u64) -> InFlight {
    InFlight {
        origin_ns: n,
        written_ns: n,
    }
}

fn feed<S: Session>(session: &mut S, bytes: &[u8]) {
    session.recv_window()[..bytes.len()].copy_from_slice(bytes);
    session.on_received(bytes.len());
}

fn http() -> Http {
    let target = Target::parse("http://127.0.0.1:8080/ratelimit/{key}").expect("a valid URL");
    let template = RequestTemplate::new(&target, &RequestSpec::default()).expect("a template");
    Http { template }
}

/// An RPC protocol and a session that is through its handshake.
fn rpc() -> (Rpc, <Rpc as Protocol>::Session) {
    let mut rpc = Rpc::new(
        "ratelimit",
        "check",
        1u64.to_le_bytes().to_vec(),
        vec![None],
    );
    let mut session = rpc.session(0, BATCH as usize);
    handshake(&mut rpc, &mut session);
    (rpc, session)
}

fn handshake(rpc: &mut Rpc, session: &mut <Rpc as Protocol>::Session) {
    rpc.on_open(session, &mut Vec::new(), 0);
    let hello = ServerHello {
        accepted: true,
        version: PROTOCOL_VERSION,
        shards: 2,
        partitions: 2,
        shard_index: None,
        shard_base_port: Some(7071),
        reason: String::new(),
    };
    let mut wire = Vec::new();
    encode_server_hello(&hello, &mut wire);
    feed(session, &wire);
    assert_eq!(rpc.next_answer(session), Ok(None));
}

fn write(c: &mut Criterion) {
    let mut group = c.benchmark_group("write");
    group.throughput(Throughput::Elements(BATCH));
    let mut out = Vec::with_capacity(64 * 1024);

    let mut http = http();
    let mut session = http.session(0, BATCH as usize);
    let mut sampler = keys();
    group.bench_function("http", |b| {
        b.iter(|| {
            out.clear();
            for n in 0..BATCH {
                http.write_request(&mut session, &mut sampler, request(n), &mut out);
            }
            session.abandon_in_flight();
            black_box(out.len())
        })
    });

    let (mut rpc, mut session) = rpc();
    group.bench_function("rpc", |b| {
        b.iter(|| {
            out.clear();
            for n in 0..BATCH {
                rpc.write_request(&mut session, &mut sampler, request(n), &mut out);
            }
            session.abandon_in_flight();
            black_box(out.len())
        })
    });
    group.finish();
}

/// Requests matched per timed chunk of the `answer` benchmarks: enough
/// that reading the clock around a chunk costs nothing in comparison.
const CHUNK: usize = 1024;

/// Times `iters` chunks of `CHUNK` answers. Each chunk's requests are
/// written and its responses built untimed by `prepare`; only feeding the
/// responses to the session (as receives of up to its buffer) and taking
/// the answers off it is timed.
fn time_answers<P: Protocol>(
    iters: u64,
    protocol: &mut P,
    session: &mut P::Session,
    mut prepare: impl FnMut(&mut P, &mut P::Session) -> Vec<u8>,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let responses = prepare(protocol, session);
        let start = Instant::now();
        let mut fed = 0;
        let mut answered = 0;
        while fed < responses.len() {
            let window = session.recv_window();
            let n = window.len().min(responses.len() - fed);
            window[..n].copy_from_slice(&responses[fed..fed + n]);
            session.on_received(n);
            fed += n;
            while let Some(answer) = protocol.next_answer(session).expect("valid responses") {
                answered += u64::from(black_box(answer).status < 300);
            }
        }
        total += start.elapsed();
        assert_eq!(answered, CHUNK as u64);
    }
    total
}

fn answer(c: &mut Criterion) {
    let mut group = c.benchmark_group("answer");
    group.throughput(Throughput::Elements(CHUNK as u64));
    let mut sampler = keys();
    let mut scratch = Vec::with_capacity(CHUNK * 128);

    let mut http = http();
    let mut session = http.session(0, CHUNK);
    let body = b"{\"remaining\": 999999999, \"limit\": 1000000000, \"reset\": 60}";
    let one = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let responses = [one.as_bytes(), body].concat().repeat(CHUNK);
    group.bench_function("http", |b| {
        b.iter_custom(|iters| {
            time_answers(iters, &mut http, &mut session, |http, session| {
                scratch.clear();
                for n in 0..CHUNK as u64 {
                    http.write_request(session, &mut sampler, request(n), &mut scratch);
                }
                responses.clone()
            })
        })
    });

    let (mut rpc, _) = rpc();
    let mut session = rpc.session(0, CHUNK);
    handshake(&mut rpc, &mut session);
    let mut decision = Vec::new();
    RateLimitDecision {
        allowed: true,
        limit: 1_000_000_000,
        remaining: 999_999_999,
        reset_after_ms: 60_000,
        retry_after_ms: 0,
    }
    .encode(&mut decision);
    group.bench_function("rpc", |b| {
        b.iter_custom(|iters| {
            time_answers(iters, &mut rpc, &mut session, |rpc, session| {
                let mut responses = Vec::with_capacity(CHUNK * 96);
                for n in 0..CHUNK as u64 {
                    scratch.clear();
                    rpc.write_request(session, &mut sampler, request(n), &mut scratch);
                    let Ok(Decoded::Frame { header, .. }) = rpc::decode_request(&scratch, 1 << 20)
                    else {
                        panic!("a whole frame");
                    };
                    let response = ResponseHeader {
                        request_id: header.request_id,
                        status: status::OK,
                        message: String::new(),
                    };
                    encode_response(&mut responses, &response, &decision);
                }
                responses
            })
        })
    });
    group.finish();
}

criterion_group!(benches, write, answer);
criterion_main!(benches);
