//! The queue's contract over HTTP: dense ordered sequence numbers, leases
//! that end and hand a message out again, ordered delivery that never
//! passes a leased message, long-polls, and a clear answer at each limit.

use std::time::{Duration, Instant};

use crate::harness::Server;
use crate::queue_client::{ack, append, append_batch, messages_of, pull, stats, Msg};

#[test]
fn appends_get_dense_sequence_numbers_and_pull_in_order() {
    let server = Server::start(2);
    let mut conn = server.connect();
    assert_eq!(append(&mut conn, "q", "a"), 1);
    assert_eq!(append_batch(&mut conn, "q", &["b", "c", "d"]), 2);
    assert_eq!(append(&mut conn, "q", "e"), 5);
    let got = pull(&mut conn, "q", "max=10");
    let bodies: Vec<&str> = got.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["a", "b", "c", "d", "e"]);
    assert_eq!(
        got.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(ack(&mut conn, "q", &[1, 2, 3, 4, 5]), 5);
    assert_eq!(stats(&mut conn, "q").u64_field("count"), 0);
    assert!(pull(&mut conn, "q", "max=10").is_empty());
}

#[test]
fn a_lease_that_ends_hands_the_message_out_again() {
    let server = Server::start(2);
    let mut conn = server.connect();
    append(&mut conn, "lease", "one");
    let first = pull(&mut conn, "lease", "visibility_ms=300");
    assert_eq!(
        first,
        [Msg {
            seq: 1,
            body: "one".into()
        }]
    );
    assert!(
        pull(&mut conn, "lease", "").is_empty(),
        "leased, so not handed out"
    );
    std::thread::sleep(Duration::from_millis(400));
    let again = pull(&mut conn, "lease", "visibility_ms=60000");
    assert_eq!(again, first, "the lease ended, so the message comes back");
    assert_eq!(ack(&mut conn, "lease", &[1]), 1);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        pull(&mut conn, "lease", "").is_empty(),
        "acknowledged is gone"
    );
}

#[test]
fn ordered_pull_waits_behind_a_leased_message_and_unordered_skips_it() {
    let server = Server::start(2);
    let mut conn = server.connect();
    append_batch(&mut conn, "ord", &["1", "2", "3"]);
    let first = pull(&mut conn, "ord", "max=1");
    assert_eq!(first[0].seq, 1);
    assert!(
        pull(&mut conn, "ord", "max=5").is_empty(),
        "2 must not pass 1"
    );
    let skipped = pull(&mut conn, "ord", "max=5&unordered=true");
    assert_eq!(skipped.iter().map(|m| m.seq).collect::<Vec<_>>(), [2, 3]);
    ack(&mut conn, "ord", &[1, 2, 3]);
}

#[test]
fn acking_through_a_sequence_number_acks_everything_up_to_it() {
    let server = Server::start(2);
    let mut conn = server.connect();
    append_batch(&mut conn, "thr", &["1", "2", "3", "4"]);
    let response = conn.post("/queue/thr/ack", br#"{"through": 3}"#);
    assert_eq!(response.status, 200, "{response}");
    assert_eq!(response.json().u64_field("acked"), 3);
    let rest = pull(&mut conn, "thr", "");
    assert_eq!(rest.iter().map(|m| m.seq).collect::<Vec<_>>(), [4]);
}

#[test]
fn a_long_poll_is_answered_by_the_next_append() {
    let server = Server::start(2);
    let mut waiter = server.connect();
    let path = "/queue/lp/pull?wait_ms=10000";
    waiter.send_raw(&crate::harness::http::encode_request(
        "POST",
        path,
        &[],
        b"",
    ));
    std::thread::sleep(Duration::from_millis(200));
    let mut producer = server.connect();
    let started = Instant::now();
    append(&mut producer, "lp", "hello");
    let response = waiter.read_response().expect("the long-poll is answered");
    assert_eq!(response.status, 200, "{response}");
    let got = messages_of(&response.json());
    assert_eq!(
        got,
        [Msg {
            seq: 1,
            body: "hello".into()
        }]
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_long_poll_with_nothing_to_hand_out_ends_empty_at_its_deadline() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let started = Instant::now();
    let got = pull(&mut conn, "empty", "wait_ms=300");
    let waited = started.elapsed();
    assert!(got.is_empty());
    assert!(waited >= Duration::from_millis(300), "waited {waited:?}");
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
}

#[test]
fn limits_have_clear_answers() {
    let server = Server::start_with_config(
        2,
        "[classes.queue]\nmessage_bytes_max = 8\nbatch_messages_max = 3\nqueue_messages_max = 4\n",
    );
    let mut conn = server.connect();
    let too_big = conn.post("/queue/lim/messages", b"123456789");
    assert_eq!(too_big.status, 413, "{too_big}");
    let json = [("Content-Type", "application/json")];
    let batch = conn.request(
        "POST",
        "/queue/lim/messages",
        &json,
        br#"{"messages": ["1","2","3","4"]}"#,
    );
    assert_eq!(batch.status, 413, "{batch}");
    let malformed = conn.request(
        "POST",
        "/queue/lim/messages",
        &json,
        br#"{"messages": [1]}"#,
    );
    assert_eq!(malformed.status, 400, "{malformed}");
    let empty = conn.request("POST", "/queue/lim/messages", &json, br#"{"messages": []}"#);
    assert_eq!(empty.status, 400, "{empty}");
    append_batch(&mut conn, "lim", &["1", "2", "3"]);
    append(&mut conn, "lim", "4");
    let full = conn.post("/queue/lim/messages", b"5");
    assert_eq!(full.status, 507, "{full}");
    assert!(full.text().contains("queue full"), "{full}");
    assert_eq!(
        stats(&mut conn, "lim").u64_field("count"),
        4,
        "nothing dropped"
    );
    ack(&mut conn, "lim", &[1]);
    append(&mut conn, "lim", "5");
    let bad_max = conn.post("/queue/lim/pull?max=0", b"");
    assert_eq!(bad_max.status, 400, "{bad_max}");
    let unknown = conn.post("/queue/lim/pull?maximum=3", b"");
    assert_eq!(unknown.status, 400, "{unknown}");
    let bad_ack = conn.post("/queue/lim/ack", br#"{"seqs": [1], "through": 2}"#);
    assert_eq!(bad_ack.status, 400, "{bad_ack}");
    let wrong_method = conn.get("/queue/lim/messages");
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.header("allow"), Some("POST"));
    let not_ws = conn.get("/queue/lim/consume");
    assert_eq!(not_ws.status, 400, "{not_ws}");
}

#[test]
fn too_many_long_polls_are_refused_with_429() {
    let server = Server::start_with_config(2, "[classes.queue]\nwaiters_max = 1\n");
    let mut waiter = server.connect();
    let path = "/queue/w/pull?wait_ms=2000";
    waiter.send_raw(&crate::harness::http::encode_request(
        "POST",
        path,
        &[],
        b"",
    ));
    std::thread::sleep(Duration::from_millis(200));
    let mut second = server.connect();
    let refused = second.post(path, b"");
    assert_eq!(refused.status, 429, "{refused}");
    let first = waiter.read_response().expect("the first long-poll ends");
    assert_eq!(first.status, 200);
}

#[test]
fn acking_through_an_already_acknowledged_number_acks_nothing() {
    let server = Server::start(2);
    let mut conn = server.connect();
    append_batch(&mut conn, "low", &["1", "2", "3"]);
    let got = pull(&mut conn, "low", "max=2");
    ack(&mut conn, "low", &[got[0].seq, got[1].seq]);
    // The queue's floor is now 3: acking through 1 is below it.
    let _ = pull(&mut conn, "low", "max=1&unordered=true");
    let response = conn.post("/queue/low/ack", br#"{"through": 1}"#);
    assert_eq!(response.status, 200, "{response}");
    assert_eq!(response.json().u64_field("acked"), 0);
    assert_eq!(stats(&mut conn, "low").u64_field("count"), 1);
}

#[test]
fn too_many_leased_messages_are_refused_with_429() {
    let server = Server::start_with_config(2, "[classes.queue]\nin_flight_max = 2\n");
    let mut conn = server.connect();
    append_batch(&mut conn, "fl", &["1", "2", "3"]);
    assert_eq!(
        pull(&mut conn, "fl", "max=5").len(),
        2,
        "capped by in_flight_max"
    );
    let refused = conn.post("/queue/fl/pull?unordered=true", b"");
    assert_eq!(refused.status, 429, "{refused}");
}

#[test]
fn a_queue_holding_pull_leases_stays_in_memory_past_its_idle_timeout() {
    let server = Server::start_with_config(1, "[classes.queue]\nidle_timeout_ms = 100\n");
    let mut conn = server.connect();
    let evicted = |conn: &mut crate::harness::Conn| {
        crate::kv_client::metric_total(conn, "durin_objects_evicted_total")
    };
    append_batch(&mut conn, "held", &["one", "two"]);
    let first = pull(&mut conn, "held", "max=1&visibility_ms=2500");
    assert_eq!(first.len(), 1);
    // Many idle timeouts pass: a queue that left memory would forget the
    // lease and hand message 1 out again.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(evicted(&mut conn), 0, "evicted while it held a lease");
    assert!(
        pull(&mut conn, "held", "max=5").is_empty(),
        "message 1 is leased, and message 2 may not pass it"
    );
    // Once the lease ends (and the queue is idle again) it may leave.
    let deadline = Instant::now() + Duration::from_secs(10);
    while evicted(&mut conn) == 0 {
        assert!(
            Instant::now() < deadline,
            "never evicted after the lease ended"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let again = pull(&mut conn, "held", "max=5");
    assert_eq!(again.len(), 2, "both messages after the lease ended");
    assert_eq!(again[0], first[0]);
}

#[test]
fn metrics_count_appends_deliveries_expired_leases_and_acks() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let metric = |conn: &mut crate::harness::Conn, name: &str| {
        crate::kv_client::metric_total(conn, &format!("durin_queue_{name}"))
    };
    append_batch(&mut conn, "m", &["a", "b", "c"]);
    assert_eq!(metric(&mut conn, "messages_appended_total"), 3);
    assert_eq!(pull(&mut conn, "m", "max=2&visibility_ms=200").len(), 2);
    assert_eq!(metric(&mut conn, "messages_delivered_total"), 2);
    std::thread::sleep(Duration::from_millis(300));
    let again = pull(&mut conn, "m", "max=3");
    assert_eq!(again.len(), 3);
    assert_eq!(metric(&mut conn, "leases_expired_total"), 2);
    assert_eq!(metric(&mut conn, "messages_delivered_total"), 5);
    assert_eq!(ack(&mut conn, "m", &[1, 2, 3]), 3);
    assert_eq!(metric(&mut conn, "messages_acked_total"), 3);
}
