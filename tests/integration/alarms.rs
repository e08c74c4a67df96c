//! `kv` alarms: one per object, replaced by the next set, gone once deleted
//! or fired. A firing writes `alarm:fired` with the time it ran, never
//! before the time it was set for. Alarms are stored with the object: they
//! survive SIGKILL and a restart with another core count, and one that
//! came due while the server was down fires soon after it starts.

use crate::harness::{Conn, Server};
use crate::kv_client::{
    alarm, assert_error, delete_alarm, fired_at, get, list, metric_total, now_ms, put, set_alarm,
    wait_fired,
};
use std::thread;
use std::time::{Duration, Instant};

/// How long a test waits for an alarm it expects; far beyond any delay the
/// server should have, so that only a lost alarm fails.
const FIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// How soon after start an alarm that came due while the server was down
/// must have fired (the shard scans its alarm index at start).
const OVERDUE_FIRE_TIMEOUT: Duration = Duration::from_secs(3);

const FIRED_TOTAL: &str = "durin_alarms_fired_total";

/// Sleeps until this machine's clock reads `at_ms`.
fn sleep_until(at_ms: u64) {
    let now = now_ms();
    if at_ms > now {
        thread::sleep(Duration::from_millis(at_ms - now));
    }
}

/// Waits for the object's alarm set for `at_ms` to fire, and checks it ran
/// no earlier than that and cleared itself.
fn expect_fires(conn: &mut Conn, object: &str, at_ms: u64) -> u64 {
    let fired = wait_fired(conn, object, FIRE_TIMEOUT).unwrap_or_else(|| {
        panic!(
            "the alarm of {object} set for {at_ms} had not fired {FIRE_TIMEOUT:?} later (now {})",
            now_ms()
        )
    });
    assert!(
        fired >= at_ms,
        "the alarm of {object} fired at {fired}, {} ms before its time {at_ms}",
        at_ms - fired
    );
    assert_eq!(
        alarm(conn, object),
        None,
        "a fired alarm of {object} reads null"
    );
    fired
}

#[test]
fn an_alarm_fires_writes_alarm_fired_and_reads_null_after() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let object = "fires";
    assert_eq!(alarm(&mut conn, object), None, "no alarm at first");
    assert_eq!(metric_total(&mut conn, FIRED_TOTAL), 0);
    let before = now_ms();
    let at = set_alarm(&mut conn, object, "{\"in_ms\": 500}");
    let after = now_ms();
    assert!(
        at + 50 >= before + 500 && at <= after + 500,
        "in_ms 500 set between {before} and {after} gave at_ms {at}"
    );
    assert_eq!(alarm(&mut conn, object), Some(at));
    assert_eq!(fired_at(&mut conn, object), None, "not fired at once");
    let fired = expect_fires(&mut conn, object, at);
    assert_eq!(metric_total(&mut conn, FIRED_TOTAL), 1);
    assert_eq!(metric_total(&mut conn, "durin_alarms_retried_total"), 0);
    assert_eq!(metric_total(&mut conn, "durin_alarms_abandoned_total"), 0);
    assert_eq!(
        list(&mut conn, object, "")
            .into_iter()
            .map(|(key, _)| key)
            .collect::<Vec<_>>(),
        [b"alarm:fired".to_vec()],
        "the firing wrote one key"
    );

    // Set again after firing: fires again, and records the new time.
    let again = set_alarm(&mut conn, object, "{\"in_ms\": 200}");
    let fired_again = wait_fired_after(&mut conn, object, fired);
    assert!(
        fired_again >= again,
        "second firing at {fired_again}, set for {again}"
    );
    assert_eq!(alarm(&mut conn, object), None);
    assert_eq!(metric_total(&mut conn, FIRED_TOTAL), 2);
}

/// Waits until `alarm:fired` holds a time later than `previous`.
fn wait_fired_after(conn: &mut Conn, object: &str, previous: u64) -> u64 {
    let mut latest = None;
    crate::harness::eventually(FIRE_TIMEOUT, || {
        latest = fired_at(conn, object).filter(|&fired| fired > previous);
        latest.is_some()
    });
    latest.unwrap_or_else(|| panic!("{object} did not fire again within {FIRE_TIMEOUT:?}"))
}

#[test]
fn setting_an_alarm_again_replaces_it() {
    let server = Server::start(2);
    let mut conn = server.connect();
    // Replaced by a later time: only the later one fires.
    let early = set_alarm(&mut conn, "later", "{\"in_ms\": 300}");
    let late = set_alarm(&mut conn, "later", "{\"in_ms\": 1500}");
    assert!(late > early);
    assert_eq!(alarm(&mut conn, "later"), Some(late));
    // Replaced by an earlier time: the earlier one fires, not the first.
    let far = set_alarm(&mut conn, "earlier", "{\"in_ms\": 5000}");
    let near = set_alarm(
        &mut conn,
        "earlier",
        &format!("{{\"at_ms\": {}}}", early + 100),
    );
    assert_eq!(near, early + 100, "at_ms is taken as given");
    assert!(near < far);

    sleep_until(early + 600);
    // Checked before `late` unless this machine stalls for 900 ms; then a
    // firing is only wrong if it came before `late`.
    if let Some(fired) = fired_at(&mut conn, "later") {
        assert!(
            fired >= late,
            "the replaced alarm at {early} fired (at {fired}); the alarm is set for {late}"
        );
    }
    let fired = expect_fires(&mut conn, "earlier", near);
    assert!(fired < far, "fired at {fired}: the replaced time {far}");
    let fired = expect_fires(&mut conn, "later", late);
    assert!(fired >= late);
    assert_eq!(
        metric_total(&mut conn, FIRED_TOTAL),
        2,
        "one firing per object: replaced alarms do not run"
    );
}

#[test]
fn a_deleted_alarm_does_not_fire() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let at = set_alarm(&mut conn, "deleted", "{\"in_ms\": 300}");
    delete_alarm(&mut conn, "deleted");
    assert_eq!(alarm(&mut conn, "deleted"), None);
    delete_alarm(&mut conn, "deleted");
    delete_alarm(&mut conn, "never-set");
    // A witness alarm set for the same time shows the moment has passed.
    let witness = set_alarm(&mut conn, "witness", &format!("{{\"at_ms\": {at}}}"));
    expect_fires(&mut conn, "witness", witness);
    sleep_until(at + 500);
    assert_eq!(
        fired_at(&mut conn, "deleted"),
        None,
        "the deleted alarm fired"
    );
    assert_eq!(alarm(&mut conn, "deleted"), None);
    assert_eq!(
        metric_total(&mut conn, FIRED_TOTAL),
        1,
        "only the witness fired"
    );
}

#[test]
fn an_alarm_in_the_past_fires_promptly() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let past = now_ms() - 10_000;
    let set_at = Instant::now();
    let at = set_alarm(&mut conn, "past", &format!("{{\"at_ms\": {past}}}"));
    assert_eq!(at, past);
    let epoch = set_alarm(&mut conn, "epoch", "{\"at_ms\": 1}");
    assert_eq!(epoch, 1);
    let zero = set_alarm(&mut conn, "zero-delay", "{\"in_ms\": 0}");
    for (object, at) in [("past", past), ("epoch", 1), ("zero-delay", zero)] {
        let fired = wait_fired(&mut conn, object, Duration::from_secs(2))
            .unwrap_or_else(|| panic!("{object}: an alarm at {at} had not fired within 2 s"));
        assert!(fired >= at);
        assert_eq!(alarm(&mut conn, object), None);
    }
    assert!(
        set_at.elapsed() < Duration::from_secs(2),
        "took {:?}",
        set_at.elapsed()
    );
}

#[test]
fn an_alarm_survives_sigkill() {
    let mut server = Server::start(2);
    let mut conn = server.connect();
    let at = set_alarm(&mut conn, "survivor", "{\"in_ms\": 2500}");
    drop(conn);
    server.kill9();
    assert!(now_ms() < at, "killed before the alarm was due");
    server.restart(2);
    let mut conn = server.connect();
    // Unless the restart took nearly all of the 2.5 s, the alarm is still
    // waiting.
    if now_ms() + 200 < at {
        assert_eq!(
            alarm(&mut conn, "survivor"),
            Some(at),
            "still set after restart"
        );
    }
    expect_fires(&mut conn, "survivor", at);
    assert_eq!(metric_total(&mut conn, FIRED_TOTAL), 1);
}

#[test]
fn an_alarm_due_while_the_server_was_down_fires_soon_after_start() {
    let mut server = Server::start(2);
    let mut conn = server.connect();
    let at = set_alarm(&mut conn, "overdue", "{\"in_ms\": 500}");
    drop(conn);
    server.kill9();
    assert!(now_ms() < at, "killed before the alarm was due");
    thread::sleep(Duration::from_secs(1));
    let restart_ms = now_ms();
    server.restart(2);
    let started = Instant::now();
    let mut conn = server.connect();
    let fired = wait_fired(&mut conn, "overdue", OVERDUE_FIRE_TIMEOUT).unwrap_or_else(|| {
        panic!("an alarm due at {at}, while the server was down, had not fired {OVERDUE_FIRE_TIMEOUT:?} after the restart")
    });
    assert!(
        fired >= restart_ms,
        "fired at {fired}, before the restart at {restart_ms}"
    );
    assert!(started.elapsed() < OVERDUE_FIRE_TIMEOUT);
    assert_eq!(alarm(&mut conn, "overdue"), None);
    assert_eq!(metric_total(&mut conn, FIRED_TOTAL), 1);
}

#[test]
fn alarms_fire_after_a_restart_with_another_core_count() {
    const OBJECTS: usize = 20;
    const KEYS: usize = 3;
    let mut server = Server::start(3);
    let mut conn = server.connect();
    let objects: Vec<String> = (0..OBJECTS).map(|index| format!("moved-{index}")).collect();
    for object in &objects {
        for key in 0..KEYS {
            let value = format!("{object} value {key}");
            put(
                &mut conn,
                object,
                format!("key-{key}").as_bytes(),
                value.as_bytes(),
            );
        }
    }
    // One time for all, set after the keys, with room to kill before it.
    let at = now_ms() + 2000;
    for object in &objects {
        assert_eq!(
            set_alarm(&mut conn, object, &format!("{{\"at_ms\": {at}}}")),
            at
        );
    }
    drop(conn);
    server.kill9();
    assert!(now_ms() < at, "killed before the alarms were due");

    server.restart(1);
    let mut conn = server.connect();
    for object in &objects {
        expect_fires(&mut conn, object, at);
    }
    assert_eq!(
        metric_total(&mut conn, FIRED_TOTAL),
        OBJECTS as u64,
        "each alarm fired once, on the one remaining shard"
    );
    for object in &objects {
        for key in 0..KEYS {
            let value = format!("{object} value {key}");
            assert_eq!(
                get(&mut conn, object, format!("key-{key}").as_bytes()),
                Some(value.into_bytes()),
                "{object} key-{key} with --cores 1"
            );
        }
        assert_eq!(
            list(&mut conn, object, "").len(),
            KEYS + 1,
            "{object}: its keys and alarm:fired"
        );
    }

    // And back to more shards: the keys and the fired times stay, and no
    // alarm fires again.
    let fired: Vec<Option<u64>> = objects
        .iter()
        .map(|object| fired_at(&mut conn, object))
        .collect();
    drop(conn);
    server.kill9();
    server.restart(2);
    let mut conn = server.connect();
    for (object, fired) in objects.iter().zip(&fired) {
        assert_eq!(
            fired_at(&mut conn, object),
            *fired,
            "{object} with --cores 2"
        );
        assert_eq!(alarm(&mut conn, object), None, "{object} with --cores 2");
        assert_eq!(
            list(&mut conn, object, "").len(),
            KEYS + 1,
            "{object} with --cores 2"
        );
    }
}

#[test]
fn bad_alarm_requests_are_400() {
    let server = Server::start(2);
    let mut conn = server.connect();
    for body in [
        "",
        "not json",
        "{}",
        "{\"at_ms\": 1, \"in_ms\": 1}",
        "{\"in_ms\": -1}",
        "{\"in_ms\": 1.5}",
        "{\"in_ms\": \"300\"}",
        "{\"at\": 5}",
        "{\"in_ms\": 300, \"extra\": true}",
    ] {
        let response = conn.request("PUT", "/kv/bad-alarm/alarm", &[], body.as_bytes());
        assert_error(&response, 400, &format!("alarm body {body:?}"));
    }
    assert_eq!(alarm(&mut conn, "bad-alarm"), None, "no alarm was set");
    put(&mut conn, "bad-alarm", b"still", b"works");
}
