//! Objects are evicted after their class's idle timeout and come back from
//! storage on the next request, with their state intact; the memory they
//! held goes back once they have left.

use std::time::Duration;

use crate::harness::{eventually, increment, Conn, Server};
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

#[test]
fn the_object_table_gives_its_memory_back_once_its_objects_left() {
    const OBJECTS: usize = 10_000;
    const THREADS: usize = 8;
    // Long enough that the objects are all in memory at once on a loaded
    // machine: the table then grows past what an empty one may keep.
    let server = Server::start_with_config(1, "[classes.counter]\nidle_timeout_ms = 5000\n");
    let addr = server.addr();
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            scope.spawn(move || {
                let mut conn = Conn::connect(addr).expect("the server accepts");
                for n in (thread..OBJECTS).step_by(THREADS) {
                    increment(&mut conn, &format!("touched-once-{n}"));
                }
            });
        }
    });
    let grown = metric(&server, "durin_objects_capacity");
    // An empty table keeps at most four times its floor of 1,024 slots (a
    // table just shrunk is left alone).
    let shrunk = eventually(Duration::from_secs(40), || {
        metric(&server, "durin_objects_live") == 0
            && metric(&server, "durin_objects_capacity") <= 4096
    });
    let capacity = metric(&server, "durin_objects_capacity");
    assert!(
        shrunk,
        "{OBJECTS} objects grew the table to {grown} slots; once they left it still holds {capacity}"
    );
    if grown <= 4096 {
        // Only if the load took longer than the idle timeout, so objects
        // left while others came and the table never grew.
        eprintln!("the table never grew past {grown} slots: the shrink was not exercised");
    }
    assert_eq!(increment(&mut server.connect(), "touched-once-7"), 2);
}

#[test]
fn the_server_turns_transparent_huge_pages_off_unless_configured() {
    let thp_enabled = |server: &Server| {
        let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
            .expect("the server's /proc status is readable");
        status
            .lines()
            .find_map(|line| line.strip_prefix("THP_enabled:"))
            .map(|value| value.trim().to_string())
    };
    let default = Server::start(1);
    let Some(off) = thp_enabled(&default) else {
        eprintln!("skipped: this kernel reports no THP_enabled in /proc/PID/status");
        return;
    };
    assert_eq!(off, "0", "THP is off by default");
    let allowed = Server::start_with_config(1, "[server]\ntransparent_huge_pages = true\n");
    assert_eq!(thp_enabled(&allowed).as_deref(), Some("1"));
}
