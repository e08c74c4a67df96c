//! Writing an RPC request and matching its response allocate nothing once a
//! connection is warm: the header is reused, the frame goes straight into
//! the send buffer, and rkyv keeps its scratch arena per thread. A counting
//! allocator pins that down (this file is its own test binary, so the
//! allocator sees only this test).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use durin_proto::rpc::builtin::RateLimitDecision;
use durin_proto::rpc::{
    self, encode_response, encode_server_hello, status, Decoded, ResponseHeader, ServerHello,
    PROTOCOL_VERSION,
};
use loadgen::keys::{KeyDist, KeySampler};
use loadgen::protocol::{InFlight, Protocol, Session};
use loadgen::rpc::Rpc;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn a_warm_connection_writes_and_matches_requests_without_allocating() {
    let mut rpc = Rpc::new(
        "ratelimit",
        "check",
        1u64.to_le_bytes().to_vec(),
        vec![None],
    );
    let mut session = rpc.session(0, 8);
    let mut keys = KeySampler::new(&KeyDist::Uniform { keys: 10_000 }, 1, 0);
    let mut send = Vec::with_capacity(64 * 1024);
    rpc.on_open(&mut session, &mut send, 0);
    let hello = ServerHello {
        accepted: true,
        version: PROTOCOL_VERSION,
        shards: 1,
        partitions: 1,
        shard_index: None,
        shard_base_port: None,
        reason: String::new(),
    };
    let mut wire = Vec::new();
    encode_server_hello(&hello, &mut wire);
    feed(&mut session, &wire);
    assert_eq!(rpc.next_answer(&mut session), Ok(None));

    let mut decision = Vec::new();
    RateLimitDecision {
        allowed: true,
        limit: 1,
        remaining: 1,
        reset_after_ms: 1,
        retry_after_ms: 0,
    }
    .encode(&mut decision);
    let mut responses = Vec::with_capacity(64 * 1024);
    let mut round = |rpc: &mut Rpc, session: &mut _| {
        send.clear();
        responses.clear();
        for n in 0..8 {
            let request = InFlight {
                origin_ns: n,
                written_ns: n,
            };
            let start = send.len();
            rpc.write_request(session, &mut keys, request, &mut send);
            let Ok(Decoded::Frame { header, .. }) = rpc::decode_request(&send[start..], 1 << 20)
            else {
                panic!("a whole frame was written");
            };
            let response = ResponseHeader {
                request_id: header.request_id,
                status: status::OK,
                message: String::new(),
            };
            encode_response(&mut responses, &response, &decision);
        }
        // Decoding the requests above is the test's own work; only what
        // follows is measured.
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        feed(session, &responses);
        let mut answered = 0;
        while let Some(answer) = rpc.next_answer(session).expect("valid responses") {
            assert!(!answer.denied);
            answered += 1;
        }
        assert_eq!(answered, 8);
        let matching = ALLOCATIONS.load(Ordering::Relaxed) - before;
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        send.clear();
        for n in 0..8 {
            let request = InFlight {
                origin_ns: n,
                written_ns: n,
            };
            rpc.write_request(session, &mut keys, request, &mut send);
        }
        let writing = ALLOCATIONS.load(Ordering::Relaxed) - before;
        session.abandon_in_flight();
        (writing, matching)
    };
    // The first rounds warm rkyv's arena and the decoder's scratch buffer.
    for _ in 0..3 {
        round(&mut rpc, &mut session);
    }
    for _ in 0..100 {
        assert_eq!(round(&mut rpc, &mut session), (0, 0));
    }
}

fn feed<S: Session>(session: &mut S, bytes: &[u8]) {
    session.recv_window()[..bytes.len()].copy_from_slice(bytes);
    session.on_received(bytes.len());
}
