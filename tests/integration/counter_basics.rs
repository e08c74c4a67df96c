//! The built-in counter: `POST /counter/{name}/increment` returns the new
//! value, `GET /counter/{name}` the current one (0 for a new counter).

use crate::harness::{counter_value, counter_value_of, increment, Server};

#[test]
fn new_counter_reads_zero_and_increments_count_up() {
    let server = Server::start(2);
    let mut conn = server.connect();
    assert_eq!(counter_value(&mut conn, "fresh"), 0);
    // Reading does not create or change anything.
    assert_eq!(counter_value(&mut conn, "fresh"), 0);
    for expected in 1..=5 {
        assert_eq!(increment(&mut conn, "fresh"), expected);
    }
    assert_eq!(counter_value(&mut conn, "fresh"), 5);
}

#[test]
fn counters_are_independent_across_names_and_connections() {
    let server = Server::start(2);
    let mut first = server.connect();
    let mut second = server.connect();
    for index in 0..10u64 {
        let name = format!("c{index}");
        for _ in 0..=index {
            increment(&mut first, &name);
        }
    }
    for index in 0..10u64 {
        assert_eq!(counter_value(&mut second, &format!("c{index}")), index + 1);
    }
    assert_eq!(increment(&mut second, "c0"), 2);
    assert_eq!(counter_value(&mut first, "c0"), 2);
}

#[test]
fn increment_ignores_a_request_body() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let response = conn.post("/counter/bodied/increment", b"{\"by\": 10}");
    assert_eq!(counter_value_of(&response, "increment with a body"), 1);
    assert_eq!(counter_value(&mut conn, "bodied"), 1);
}
