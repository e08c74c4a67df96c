//! A failing alarm is retried with exponential backoff, six times, and
//! then given up; with `alarm_retry = false` it runs once. The kv class's
//! alarm fails while the object holds `alarm:fail`, counting its attempts
//! in `alarm:attempts`.

use std::time::{Duration, Instant};

use crate::harness::{eventually, Server};
use crate::kv_client::metric_total;

/// A counter summed over every shard.
fn metric(server: &Server, name: &str) -> u64 {
    metric_total(&mut server.connect(), name)
}

fn attempts(server: &Server, object: &str) -> u64 {
    let response = server
        .connect()
        .get(&format!("/kv/{object}/keys/alarm:attempts"));
    if response.status == 404 {
        return 0;
    }
    response.text().parse().expect("a number of attempts")
}

#[test]
fn a_failing_alarm_is_retried_six_times_with_doubling_backoff_then_dropped() {
    let server = Server::start_with_config(2, "[classes.kv]\nalarm_retry_backoff_ms = 50\n");
    let mut conn = server.connect();
    assert_eq!(
        conn.request("PUT", "/kv/flaky/keys/alarm:fail", &[], b"1")
            .status,
        200
    );
    let started = Instant::now();
    assert_eq!(
        conn.request("PUT", "/kv/flaky/alarm", &[], br#"{"in_ms": 0}"#)
            .status,
        200
    );
    let gave_up = eventually(Duration::from_secs(15), || {
        metric(&server, "durin_alarms_abandoned_total") == 1
    });
    assert!(
        gave_up,
        "the alarm was not given up; attempts so far: {}",
        attempts(&server, "flaky")
    );
    // 1 run + 6 retries, 50 + 100 + ... + 1600 ms = 3.15 s of backoff. The
    // shard schedules on a clock of whole milliseconds, so each of the six
    // waits may end up to one millisecond before this test's clock says.
    assert_eq!(attempts(&server, "flaky"), 7);
    assert!(
        started.elapsed() >= Duration::from_millis(3150 - 6),
        "retries came faster than the backoff"
    );
    assert_eq!(metric(&server, "durin_alarms_retried_total"), 6);
    assert_eq!(conn.get("/kv/flaky/alarm").text(), r#"{"at_ms":null}"#);
    assert_eq!(conn.get("/kv/flaky/keys/alarm:fired").status, 404);
}

#[test]
fn with_retries_off_a_failing_alarm_runs_once() {
    let server = Server::start_with_config(
        1,
        "[classes.kv]\nalarm_retry = false\nalarm_retry_backoff_ms = 50\n",
    );
    let mut conn = server.connect();
    conn.request("PUT", "/kv/once/keys/alarm:fail", &[], b"1");
    conn.request("PUT", "/kv/once/alarm", &[], br#"{"in_ms": 0}"#);
    assert!(eventually(Duration::from_secs(5), || metric(
        &server,
        "durin_alarms_abandoned_total"
    ) == 1));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(attempts(&server, "once"), 1);
    assert_eq!(metric(&server, "durin_alarms_retried_total"), 0);
}

#[test]
fn an_alarm_that_recovers_on_retry_fires() {
    let server = Server::start_with_config(2, "[classes.kv]\nalarm_retry_backoff_ms = 300\n");
    let mut conn = server.connect();
    conn.request("PUT", "/kv/recovers/keys/alarm:fail", &[], b"1");
    conn.request("PUT", "/kv/recovers/alarm", &[], br#"{"in_ms": 0}"#);
    assert!(eventually(Duration::from_secs(5), || attempts(
        &server, "recovers"
    ) == 1));
    assert_eq!(
        conn.request("DELETE", "/kv/recovers/keys/alarm:fail", &[], b"")
            .status,
        200
    );
    let fired = eventually(Duration::from_secs(5), || {
        server.connect().get("/kv/recovers/keys/alarm:fired").status == 200
    });
    assert!(fired, "the retried alarm never succeeded");
    assert_eq!(attempts(&server, "recovers"), 1);
    assert_eq!(conn.get("/kv/recovers/alarm").text(), r#"{"at_ms":null}"#);
}
