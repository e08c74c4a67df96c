//! Objects are evicted after their class's idle timeout and come back from
//! storage on the next request, with their state intact.

use std::time::Duration;

use crate::harness::{eventually, increment, Server};
use crate::kv_client::metric_total;

/// A counter summed over every shard.
fn metric(server: &Server, name: &str) -> u64 {
    metric_total(&mut server.connect(), name)
}

#[test]
fn an_idle_counter_is_evicted_and_reloaded_from_storage() {
    let server = Server::start_with_config(2, "[classes.counter]\nidle_timeout_ms = 100\n");
    let mut conn = server.connect();
    for name in ["a", "b", "c", "d"] {
        increment(&mut conn, name);
        increment(&mut conn, name);
    }
    assert_eq!(metric(&server, "durin_objects_created_total"), 4);
    let evicted = eventually(Duration::from_secs(5), || {
        metric(&server, "durin_objects_evicted_total") >= 4
    });
    assert!(
        evicted,
        "idle objects were not evicted: {}",
        server.connect().get("/metrics").text()
    );
    assert_eq!(metric(&server, "durin_objects_live"), 0);
    for name in ["a", "b", "c", "d"] {
        assert_eq!(
            increment(&mut conn, name),
            3,
            "counter {name} after it came back"
        );
    }
    assert_eq!(metric(&server, "durin_objects_created_total"), 8);
}

#[test]
fn a_busy_object_is_not_evicted() {
    let server = Server::start_with_config(1, "[classes.counter]\nidle_timeout_ms = 400\n");
    let mut conn = server.connect();
    let until = std::time::Instant::now() + Duration::from_millis(1200);
    let mut expected = 0;
    while std::time::Instant::now() < until {
        expected += 1;
        assert_eq!(increment(&mut conn, "busy"), expected);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(metric(&server, "durin_objects_created_total"), 1);
}
