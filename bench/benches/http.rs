//! HTTP/1.1 codec: what a shard pays per request on a keep-alive connection,
//! before and after the object runs.
//!
//! - `parse_request`: `GET /ratelimit/key-123` with the headers wrk and
//!   curl send, parsed with durin's limits into a header array made fresh
//!   for each request, as the shard does.
//! - `write_response`: the seed rate limiter's 200 answer (a 44-byte JSON
//!   body) appended to an output buffer that has reached its working size,
//!   so the measure includes no allocation.
//!
//! `cargo bench -p bench --bench http`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use durin_net::http::{
    parse_request, write_response, Header, Limits, Parsed, ResponseHead, HEADERS_MAX,
};

const REQUEST: &[u8] = b"GET /ratelimit/key-123 HTTP/1.1\r\n\
Host: 127.0.0.1:8080\r\n\
User-Agent: wrk/4.2.0\r\n\
Accept: */*\r\n\
Connection: keep-alive\r\n\
\r\n";

/// What `RateLimiter::fetch` writes when it admits a request.
const BODY: &[u8] = b"{\"remaining\": 99, \"limit\": 100, \"reset\": 60}";

const EMPTY: Header<'static> = Header {
    name: "",
    value: b"",
};

fn codec(c: &mut Criterion) {
    let limits = Limits::default();
    let mut headers = [EMPTY; HEADERS_MAX];
    match parse_request(REQUEST, &mut headers, &limits) {
        Ok(Parsed::Complete(request)) => {
            assert_eq!(request.path, "/ratelimit/key-123");
            assert_eq!(request.headers.len(), 4);
            assert_eq!(request.len, REQUEST.len(), "one whole request");
        }
        other => panic!("the benchmark's request is complete and valid: {other:?}"),
    }
    let mut group = c.benchmark_group("http");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_request", |b| {
        b.iter(|| {
            let mut headers = [EMPTY; HEADERS_MAX];
            match parse_request(black_box(REQUEST), &mut headers, &limits) {
                Ok(Parsed::Complete(request)) => request.len,
                _ => panic!("the benchmark's request is complete and valid"),
            }
        })
    });

    let head = ResponseHead {
        status: 200,
        content_type: Some("application/json"),
        header_lines: b"",
        keep_alive: true,
    };
    let mut out = Vec::with_capacity(4096);
    group.bench_function("write_response", |b| {
        b.iter(|| {
            out.clear();
            write_response(&mut out, black_box(&head), black_box(BODY));
            black_box(out.len())
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = codec
}
criterion_main!(benches);
