//! The cross-shard mesh: what one hop between shards costs.
//!
//! - `round_trip`: shard 0 sends a forwarded HTTP request to shard 1 and
//!   waits for the reply. Two threads, two meshes from `mesh::build`; the
//!   peer spins on `drain_into` and answers each request with a response
//!   written into a pooled buffer, as `serve_forwarded` does. The time is
//!   one request plus one reply: two queue hops, two `flush`es (each wakes
//!   a peer that is not asleep), no syscall. It needs two idle cores.
//! - `push_drain/<batch>`: one thread, both meshes: `send` of `batch`
//!   messages, one `flush`, one `drain_into` on the peer, buffers
//!   recycled; reported per message.
//! - `wake/awake` and `wake/sleeping`: `ShardWaker::wake` when the peer is
//!   running (a fence and a load) and when it announced sleep (plus the
//!   eventfd write that wakes its ring).
//!
//! `cargo bench -p bench --bench mesh`

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use durin::mesh::{self, Mesh, MeshMsg, ShardWaker};

/// The forwarded request: `GET /ratelimit/key-123` as wrk sends it.
const REQUEST: &[u8] = b"GET /ratelimit/key-123 HTTP/1.1\r\n\
Host: 127.0.0.1:8080\r\n\
User-Agent: wrk/4.2.0\r\n\
Accept: */*\r\n\
Connection: keep-alive\r\n\
\r\n";

/// The owner's answer to it.
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Content-Type: application/json\r\n\
Content-Length: 44\r\n\
\r\n\
{\"remaining\": 99, \"limit\": 100, \"reset\": 60}";

fn two_shards() -> (Vec<Arc<ShardWaker>>, Vec<Mesh>) {
    let wakers: Vec<Arc<ShardWaker>> = (0..2)
        .map(|_| Arc::new(ShardWaker::new().expect("an eventfd for each shard")))
        .collect();
    let meshes = mesh::build(&wakers);
    (wakers, meshes)
}

/// `mesh`'s next forwarded request to shard `to`, in a pooled buffer.
fn send_request(mesh: &mut Mesh, to: u32, token: u64) {
    let mut bytes = mesh.buffer();
    bytes.extend_from_slice(REQUEST);
    let from = mesh.me();
    let msg = MeshMsg::HttpRequest {
        from,
        token,
        class: 0,
        id: durin::ObjectId::from_name("ratelimit", b"key-123"),
        rest_bytes: 0,
        bytes,
    };
    mesh.send(to, msg);
}

/// The peer shard's loop: answers every forwarded request until `stop`.
fn serve(mut mesh: Mesh, stop: &AtomicBool) {
    let mut inbox = Vec::with_capacity(mesh::DRAIN_PER_TURN_MAX);
    while !stop.load(Ordering::Relaxed) {
        mesh.drain_into(&mut inbox);
        if inbox.is_empty() {
            std::hint::spin_loop();
            continue;
        }
        for msg in inbox.drain(..) {
            let MeshMsg::HttpRequest {
                from, token, bytes, ..
            } = msg
            else {
                panic!("the benchmark sends only forwarded requests");
            };
            mesh.recycle(bytes);
            let mut reply = mesh.buffer();
            reply.extend_from_slice(RESPONSE);
            mesh.send(
                from,
                MeshMsg::HttpReply {
                    token,
                    bytes: reply,
                },
            );
        }
        mesh.flush();
    }
}

/// Stops the peer even when the benchmark panics, so the scope can end.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn round_trip(c: &mut Criterion) {
    let (_wakers, mut meshes) = two_shards();
    let peer = meshes.pop().expect("two meshes");
    let mut origin = meshes.pop().expect("two meshes");
    let stop = AtomicBool::new(false);
    let mut inbox = Vec::with_capacity(mesh::DRAIN_PER_TURN_MAX);
    let mut group = c.benchmark_group("mesh");
    group.throughput(Throughput::Elements(1));
    std::thread::scope(|scope| {
        let stop = &stop;
        scope.spawn(move || serve(peer, stop));
        let _stop = StopOnDrop(stop);
        group.bench_function("round_trip", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for token in 0..iters {
                    send_request(&mut origin, 1, token);
                    origin.flush();
                    while inbox.is_empty() {
                        origin.drain_into(&mut inbox);
                        std::hint::spin_loop();
                    }
                    for msg in inbox.drain(..) {
                        let MeshMsg::HttpReply { token: got, bytes } = msg else {
                            panic!("the peer answers only with replies");
                        };
                        assert_eq!(got, token, "one request in flight at a time");
                        origin.recycle(bytes);
                    }
                }
                start.elapsed()
            })
        });
    });
    group.finish();
}

fn push_drain(c: &mut Criterion) {
    let (_wakers, mut meshes) = two_shards();
    let mut inbox = Vec::with_capacity(mesh::DRAIN_PER_TURN_MAX);
    let mut group = c.benchmark_group("mesh");
    for batch in [1u64, 64] {
        group.throughput(Throughput::Elements(batch));
        group.bench_with_input(BenchmarkId::new("push_drain", batch), &batch, |b, &n| {
            b.iter(|| {
                let (origin, rest) = meshes.split_first_mut().expect("two meshes");
                let peer = &mut rest[0];
                for token in 0..n {
                    send_request(origin, 1, token);
                }
                origin.flush();
                peer.drain_into(&mut inbox);
                assert_eq!(inbox.len() as u64, n, "every message arrives");
                for msg in inbox.drain(..) {
                    if let MeshMsg::HttpRequest { bytes, .. } = msg {
                        // Back to the sender's pool, as replies would bring
                        // them, so neither side allocates.
                        origin.recycle(bytes);
                    }
                }
            })
        });
    }
    group.finish();
}

fn wake(c: &mut Criterion) {
    let waker = ShardWaker::new().expect("an eventfd");
    let mut group = c.benchmark_group("mesh");
    group.throughput(Throughput::Elements(1));
    group.bench_function("wake/awake", |b| b.iter(|| black_box(&waker).wake()));
    group.bench_function("wake/sleeping", |b| {
        b.iter(|| {
            waker.prepare_sleep();
            black_box(&waker).wake();
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
    targets = round_trip, push_drain, wake
}
criterion_main!(benches);
