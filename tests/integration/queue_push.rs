//! Push delivery: a queue with a target calls an object per message, in
//! order, retries a failing call with backoff, and dead-letters a message
//! after `max_attempts` failures.

use std::time::{Duration, Instant};

use crate::harness::json::Value;
use crate::harness::{counter_value, Server};
use crate::queue_client::{append, stats};

#[test]
fn each_message_becomes_a_call_and_failures_end_in_the_dead_letters() {
    let server = Server::start(2);
    let mut conn = server.connect();
    // `counter.increment` takes an empty payload: an empty message
    // succeeds, any other is refused, which makes failures easy to cause.
    let target = br#"{"class": "counter", "object": "pushed", "method": "increment", "max_attempts": 3, "backoff_ms": 50}"#;
    let set = conn.request("PUT", "/queue/pq/push", &[], target);
    assert_eq!(set.status, 200, "{set}");
    append(&mut conn, "pq", "");
    append(&mut conn, "pq", "poison");
    append(&mut conn, "pq", "");
    let started = Instant::now();
    while stats(&mut conn, "pq").u64_field("count") > 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "push stalled");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(counter_value(&mut conn, "pushed"), 2);
    let dead = conn.get("/queue/pq/dead");
    assert_eq!(dead.status, 200, "{dead}");
    let json = dead.json();
    let Some(Value::Array(items)) = json.get("messages") else {
        panic!("expected messages in {json}");
    };
    assert_eq!(items.len(), 1, "{json}");
    assert_eq!(items[0].u64_field("seq"), 2);
    assert_eq!(items[0].str_field("body"), "poison");
    assert_eq!(items[0].u64_field("attempts"), 3);
    let pull = conn.post("/queue/pq/pull", b"");
    assert_eq!(pull.status, 409, "a push queue is not pulled: {pull}");
}

#[test]
fn a_bad_push_target_is_refused() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let missing = conn.request("PUT", "/queue/bad/push", &[], br#"{"class": "counter"}"#);
    assert_eq!(missing.status, 400, "{missing}");
    let zero = br#"{"class": "c", "object": "o", "method": "m", "max_attempts": 0}"#;
    let zero = conn.request("PUT", "/queue/bad/push", &[], zero);
    assert_eq!(zero.status, 400, "{zero}");
    let none = conn.get("/queue/bad/push");
    assert_eq!(none.status, 404, "{none}");
}

#[test]
fn push_delivery_resumes_after_sigkill() {
    let mut server = Server::start(2);
    let mut conn = server.connect();
    let target = br#"{"class": "counter", "object": "resumed", "method": "increment"}"#;
    assert_eq!(
        conn.request("PUT", "/queue/rq/push", &[], target).status,
        200
    );
    let json = [("Content-Type", "application/json")];
    let batch = format!("{{\"messages\": [{}]}}", vec!["\"\""; 50].join(","));
    let appended = conn.request("POST", "/queue/rq/messages", &json, batch.as_bytes());
    assert_eq!(appended.status, 200, "{appended}");
    server.kill9();
    server.restart(2);
    let mut conn = server.connect();
    // Nothing but the queue's alarm brings it back after the restart.
    let drained = crate::harness::eventually(Duration::from_secs(20), || {
        counter_value(&mut conn, "resumed") >= 50
    });
    assert!(
        drained,
        "delivery resumed: {}",
        counter_value(&mut conn, "resumed")
    );
    assert_eq!(stats(&mut conn, "rq").u64_field("count"), 0);
}

#[test]
fn full_dead_letters_pause_the_push_until_they_are_cleared() {
    let server = Server::start_with_config(2, "[classes.queue]\ndead_letters_max = 1\n");
    let mut conn = server.connect();
    let target = br#"{"class": "counter", "object": "paused", "method": "increment", "max_attempts": 1, "backoff_ms": 10}"#;
    assert_eq!(
        conn.request("PUT", "/queue/dl/push", &[], target).status,
        200
    );
    append(&mut conn, "dl", "poison 1");
    append(&mut conn, "dl", "poison 2");
    append(&mut conn, "dl", "");
    let paused = crate::harness::eventually(Duration::from_secs(10), || {
        let s = stats(&mut conn, "dl");
        s.u64_field("dead") == 1 && s.u64_field("count") == 2
    });
    assert!(paused, "{}", stats(&mut conn, "dl"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        stats(&mut conn, "dl").u64_field("count"),
        2,
        "nothing dropped"
    );
    assert_eq!(
        counter_value(&mut conn, "paused"),
        0,
        "order kept: the head waits"
    );
    let cleared = conn.request("DELETE", "/queue/dl/dead", &[], b"");
    assert_eq!(cleared.status, 200, "{cleared}");
    assert_eq!(cleared.json().u64_field("deleted"), 1);
    let resumed = crate::harness::eventually(Duration::from_secs(10), || {
        stats(&mut conn, "dl").u64_field("count") == 0
    });
    assert!(resumed, "{}", stats(&mut conn, "dl"));
    assert_eq!(counter_value(&mut conn, "paused"), 1);
    assert_eq!(stats(&mut conn, "dl").u64_field("dead"), 1);
}
