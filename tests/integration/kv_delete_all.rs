//! `DELETE /kv/{object}` deletes every key the object stores and says how
//! many; other objects keep theirs, and the object's alarm stays set.

use crate::harness::Server;
use crate::kv_client::{alarm, delete_all, get, list, put, set_alarm, wait_fired, FIRED_KEY};
use std::time::Duration;

#[test]
fn delete_all_empties_the_object_and_counts_its_keys() {
    let mut server = Server::start(2);
    let mut conn = server.connect();
    let keys: [&[u8]; 5] = [b"a", b"a/1", b"b", &[0xff, 0x00], b"z"];
    for key in keys {
        put(&mut conn, "doomed", key, b"value");
    }
    put(&mut conn, "doomed", b"b", b"overwritten, still one key");
    for index in 0..3 {
        let object = format!("spared-{index}");
        put(&mut conn, &object, b"a", b"kept");
        put(&mut conn, &object, b"b", b"kept");
    }
    assert_eq!(delete_all(&mut conn, "doomed"), 5);
    assert_eq!(list(&mut conn, "doomed", ""), []);
    for key in keys {
        assert_eq!(get(&mut conn, "doomed", key), None, "key {key:?}");
    }
    assert_eq!(delete_all(&mut conn, "doomed"), 0, "a second delete-all");
    assert_eq!(delete_all(&mut conn, "never-written"), 0);
    for index in 0..3 {
        let object = format!("spared-{index}");
        assert_eq!(
            list(&mut conn, &object, ""),
            [
                (b"a".to_vec(), b"kept".to_vec()),
                (b"b".to_vec(), b"kept".to_vec())
            ],
            "{object}"
        );
    }
    // The emptied object takes writes again.
    put(&mut conn, "doomed", b"a", b"reborn");
    assert_eq!(list(&mut conn, "doomed", "").len(), 1);
    assert_eq!(delete_all(&mut conn, "doomed"), 1);

    // And stays empty after a SIGKILL.
    drop(conn);
    server.kill9();
    server.restart(2);
    let mut conn = server.connect();
    assert_eq!(list(&mut conn, "doomed", ""), []);
    assert_eq!(list(&mut conn, "spared-0", "").len(), 2);
}

#[test]
fn delete_all_keeps_the_alarm() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let far = set_alarm(&mut conn, "far-alarm", "{\"in_ms\": 600000}");
    put(&mut conn, "far-alarm", b"k", b"v");
    assert_eq!(delete_all(&mut conn, "far-alarm"), 1);
    assert_eq!(alarm(&mut conn, "far-alarm"), Some(far));

    // An alarm kept through a delete-all still fires.
    let near = set_alarm(&mut conn, "near-alarm", "{\"in_ms\": 1500}");
    put(&mut conn, "near-alarm", b"k", b"v");
    assert_eq!(delete_all(&mut conn, "near-alarm"), 1);
    assert_eq!(alarm(&mut conn, "near-alarm"), Some(near));
    let fired = wait_fired(&mut conn, "near-alarm", Duration::from_secs(10));
    let fired = fired.expect("the alarm kept through delete-all fires within 10 s");
    assert!(fired >= near, "fired at {fired}, set for {near}");
    assert_eq!(
        list(&mut conn, "near-alarm", "")
            .into_iter()
            .map(|(key, _)| key)
            .collect::<Vec<_>>(),
        [FIRED_KEY.to_vec()]
    );
}
