//! A counter value the client has seen in a response is durable: SIGKILL
//! right after the response, restart on the same data, and it is there.

use crate::harness::{counter_value, increment, Server};
use std::thread;

const COUNTERS: u64 = 50;
const THREADS: u64 = 5;

/// Increments counter `i` of `prefix` `(i % 4) + 1` times, spread over
/// several connections, and returns after the last response arrived.
fn increment_all(server: &Server, prefix: &str) {
    thread::scope(|scope| {
        for worker in 0..THREADS {
            let mut conn = server.connect();
            scope.spawn(move || {
                for index in (worker..COUNTERS).step_by(THREADS as usize) {
                    for _ in 0..(index % 4) + 1 {
                        increment(&mut conn, &format!("{prefix}{index}"));
                    }
                }
            });
        }
    });
}

fn assert_all(server: &Server, prefix: &str, rounds: u64, context: &str) {
    let mut conn = server.connect();
    for index in 0..COUNTERS {
        let name = format!("{prefix}{index}");
        let expected = rounds * ((index % 4) + 1);
        assert_eq!(
            counter_value(&mut conn, &name),
            expected,
            "counter {name} {context}"
        );
    }
}

#[test]
fn acknowledged_increments_survive_sigkill() {
    let mut server = Server::start(3);
    for round in 1..=2 {
        increment_all(&server, "k");
        server.kill9();
        server.restart(3);
        assert_all(
            &server,
            "k",
            round,
            &format!("after SIGKILL number {round}"),
        );
    }
}

#[test]
fn the_last_increment_before_sigkill_survives() {
    let mut server = Server::start(2);
    for expected in 1..=5 {
        let mut conn = server.connect();
        assert_eq!(increment(&mut conn, "last"), expected);
        // Killed the moment the response is in: nothing gets to flush.
        server.kill9();
        server.restart(2);
        let mut conn = server.connect();
        assert_eq!(
            counter_value(&mut conn, "last"),
            expected,
            "after SIGKILL number {expected}"
        );
    }
}
