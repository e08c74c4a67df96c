//! Many connections, landing on any core, hitting shared objects owned by
//! every core: each increment is applied exactly once, atomically.

use crate::harness::{counter_value, increment, Server};
use crate::ratelimit_window::{allowed, hit};
use std::thread;

const THREADS: usize = 8;
const SHARED_COUNTERS: usize = 20;
const INCREMENTS_PER_THREAD: usize = 250;
const DISTINCT_KEYS_PER_THREAD: usize = 50;

/// A small deterministic generator, so a failure can be replayed.
fn next_random(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

#[test]
fn shared_counters_count_every_increment_exactly_once() {
    let server = Server::start(4);
    // Every thread returns the (counter, value) pairs it saw.
    let seen: Vec<Vec<(usize, u64)>> = thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|worker| {
                let mut conn = server.connect();
                scope.spawn(move || {
                    let mut state = worker as u64 + 1;
                    let mut last_seen = [0u64; SHARED_COUNTERS];
                    let mut seen = Vec::with_capacity(INCREMENTS_PER_THREAD);
                    for _ in 0..INCREMENTS_PER_THREAD {
                        let counter = next_random(&mut state) as usize % SHARED_COUNTERS;
                        let value = increment(&mut conn, &format!("shared-{counter}"));
                        assert!(
                            value > last_seen[counter],
                            "thread {worker}: shared-{counter} went from {} to {value}",
                            last_seen[counter]
                        );
                        last_seen[counter] = value;
                        seen.push((counter, value));
                    }
                    seen
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("worker panicked"))
            .collect()
    });

    let mut values: Vec<Vec<u64>> = vec![Vec::new(); SHARED_COUNTERS];
    for (counter, value) in seen.into_iter().flatten() {
        values[counter].push(value);
    }
    let mut conn = server.connect();
    for (counter, mut values) in values.into_iter().enumerate() {
        let sent = values.len() as u64;
        assert_eq!(
            counter_value(&mut conn, &format!("shared-{counter}")),
            sent,
            "shared-{counter}"
        );
        // Every increment got its own value: exactly 1..=sent, no duplicates.
        values.sort_unstable();
        let expected: Vec<u64> = (1..=sent).collect();
        assert_eq!(values, expected, "values returned for shared-{counter}");
    }
}

#[test]
fn many_distinct_objects_from_many_connections() {
    let server = Server::start(3);
    thread::scope(|scope| {
        for worker in 0..THREADS {
            let mut conn = server.connect();
            scope.spawn(move || {
                for index in 0..DISTINCT_KEYS_PER_THREAD {
                    let name = format!("distinct-{worker}-{index}");
                    assert_eq!(increment(&mut conn, &name), 1, "counter {name}");
                    let (remaining, _, _) = allowed(&hit(&mut conn, "POST", &name), 60);
                    assert_eq!(remaining, 99, "rate limiter key {name}");
                }
            });
        }
    });
    let mut conn = server.connect();
    for worker in 0..THREADS {
        for index in 0..DISTINCT_KEYS_PER_THREAD {
            assert_eq!(
                counter_value(&mut conn, &format!("distinct-{worker}-{index}")),
                1
            );
        }
    }
}
