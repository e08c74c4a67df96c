//! The data directory outlives the core count: a restart with fewer or more
//! shards still finds every object's state, and keeps writing it.

use crate::harness::{counter_value, increment, Server};
use std::thread;

const COUNTERS: u64 = 60;
const THREADS: u64 = 6;

/// Counter `i` ends at `i + 1` plus `extra`: 60 distinct values.
fn expected(index: u64, extra: u64) -> u64 {
    index + 1 + extra
}

fn assert_all(server: &Server, extra: u64) {
    let mut conn = server.connect();
    for index in 0..COUNTERS {
        let name = format!("shard-move-{index}");
        assert_eq!(
            counter_value(&mut conn, &name),
            expected(index, extra),
            "counter {name} with --cores {}",
            server.cores()
        );
    }
}

#[test]
fn counters_survive_restarts_with_other_core_counts() {
    let mut server = Server::start(3);
    thread::scope(|scope| {
        for worker in 0..THREADS {
            let mut conn = server.connect();
            scope.spawn(move || {
                for index in (worker..COUNTERS).step_by(THREADS as usize) {
                    for _ in 0..expected(index, 0) {
                        increment(&mut conn, &format!("shard-move-{index}"));
                    }
                }
            });
        }
    });
    assert_all(&server, 0);

    for cores in [1, 4] {
        server.kill9();
        server.restart(cores);
        assert_all(&server, 0);
    }

    // Writes made under the new core count land where the next one finds them.
    let mut conn = server.connect();
    for index in 0..COUNTERS {
        let name = format!("shard-move-{index}");
        assert_eq!(
            increment(&mut conn, &name),
            expected(index, 1),
            "counter {name} with --cores 4"
        );
    }
    drop(conn);
    for cores in [2, 3] {
        server.kill9();
        server.restart(cores);
        assert_all(&server, 1);
    }
}
