//! A hot key spread over N sub-objects: increments land on the picked
//! sub-counters, a read sums all N (through object→object calls, or the
//! client helper), and a split rate limit never admits more than the
//! global limit in total.

use durin_client::sharding::{rendezvous_pick, ShardedCounter, ShardedRateLimit};
use durin_client::{Client, ClientOptions};

use crate::harness::Server;

fn client(server: &Server) -> Client {
    let (addr, _) = server.rpc_addr();
    Client::connect(addr, ClientOptions::default()).expect("the RPC port answers")
}

#[test]
fn a_sharded_read_sums_the_sub_counters_over_http() {
    let server = Server::start(2);
    let mut conn = server.connect();
    for caller in 0..40u32 {
        let i = rendezvous_pick(b"hot", &caller.to_le_bytes(), 4);
        let response = conn.post(&format!("/counter/hot~{i}/increment"), b"");
        assert_eq!(response.status, 200, "{response}");
    }
    let read = conn.get("/sharded/hot/counter?key=hot&shards=4");
    assert_eq!(read.status, 200, "{read}");
    let json = read.json();
    assert_eq!(json.u64_field("value"), 40);
    assert_eq!(json.u64_field("shards"), 4);
}

#[test]
fn the_client_helper_spreads_increments_and_reads_the_sum() {
    let server = Server::start(2);
    let client = client(&server);
    let counter = ShardedCounter::new("likes", 8).expect("8 is within the limit");
    for caller in 0..200u32 {
        counter
            .increment(&client, format!("conn-{caller}").as_bytes())
            .expect("the increment is answered");
    }
    assert_eq!(counter.read(&client).expect("the read is answered"), 200);
    let mut conn = server.connect();
    let read = conn.get("/sharded/likes/counter?key=likes&shards=8");
    assert_eq!(
        read.json().u64_field("value"),
        200,
        "the same sum over HTTP"
    );
    // Spread: no sub-counter took more than half.
    for i in 0..8 {
        let value = crate::harness::counter_value(&mut conn, &format!("likes~{i}"));
        assert!(value < 100, "likes~{i} took {value} of 200");
    }
}

#[test]
fn a_split_rate_limit_never_admits_more_than_the_global_limit() {
    let config = "[classes.ratelimit_shard]\nlimit = 5\nwindow_ms = 600000\n";
    let server = Server::start_with_config(2, config);
    let client = client(&server);
    // A global limit of 20 over 4 sub-limiters of 5 each.
    let limit = ShardedRateLimit::new("api", 4, "ratelimit_shard").expect("4 is fine");
    let mut allowed = 0;
    for caller in 0..200u32 {
        let decision = limit
            .check(&client, format!("caller-{caller}").as_bytes(), 1)
            .expect("the check is answered");
        allowed += u32::from(decision.allowed);
    }
    assert!(
        allowed <= 20,
        "{allowed} admitted over a global limit of 20"
    );
    assert!(
        allowed >= 15,
        "most of the limit is usable with many callers: {allowed}"
    );
}

#[test]
fn a_sharded_read_refuses_bad_input() {
    let server = Server::start(2);
    let mut conn = server.connect();
    assert_eq!(conn.get("/sharded/k/counter?key=k&shards=0").status, 400);
    assert_eq!(conn.get("/sharded/k/counter?key=k&shards=2000").status, 400);
    assert_eq!(
        conn.get("/sharded/k/counter?key=other&shards=2").status,
        400
    );
    let post = conn.post("/sharded/k/counter?key=k&shards=2", b"");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET"));
}
