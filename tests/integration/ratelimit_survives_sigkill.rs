//! A rate limiter's count lives in storage: SIGKILL and a restart within the
//! window do not give a key its requests back.

use crate::harness::Server;
use crate::ratelimit_window::{allowed, first_hit_with_room, hit, rejected};

#[test]
fn count_survives_sigkill_and_restart() {
    const WINDOW_S: u64 = 600;
    let config = "[classes.ratelimit]\nlimit = 5\nwindow_ms = 600000\n";
    let mut server = Server::start_with_config(2, config);
    let mut conn = server.connect();
    let (key, first) = first_hit_with_room(&mut conn, "durable", WINDOW_S, 60);
    assert_eq!((first.0, first.1), (4, 5));
    assert_eq!(allowed(&hit(&mut conn, "POST", &key), WINDOW_S).0, 3);
    assert_eq!(allowed(&hit(&mut conn, "GET", &key), WINDOW_S).0, 2);
    // Other keys on other shards are counted too.
    for index in 0..8 {
        assert_eq!(
            allowed(&hit(&mut conn, "POST", &format!("side-{index}")), WINDOW_S).0,
            4
        );
    }
    drop(conn);

    server.kill9();
    server.restart(2);
    let mut conn = server.connect();
    assert_eq!(
        allowed(&hit(&mut conn, "POST", &key), WINDOW_S).0,
        1,
        "remaining after 4 requests, 3 of them before a SIGKILL"
    );
    for index in 0..8 {
        let side = format!("side-{index}");
        assert_eq!(
            allowed(&hit(&mut conn, "GET", &side), WINDOW_S).0,
            3,
            "key {side}"
        );
    }
    drop(conn);

    server.kill9();
    server.restart(2);
    let mut conn = server.connect();
    assert_eq!(allowed(&hit(&mut conn, "GET", &key), WINDOW_S).0, 0);
    rejected(&hit(&mut conn, "POST", &key), WINDOW_S);

    server.kill9();
    server.restart(2);
    let mut conn = server.connect();
    rejected(&hit(&mut conn, "GET", &key), WINDOW_S);
}
