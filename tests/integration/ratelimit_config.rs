//! `[classes.ratelimit]` in the config file sets the limit and the window.

use crate::harness::Server;
use crate::ratelimit_window::{allowed, first_hit_with_room, hit, rejected};
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn configured_limit_applies_to_every_key() {
    let config = "[classes.ratelimit]\nlimit = 3\nwindow_ms = 60000\n";
    let server = Server::start_with_config(2, config);
    let mut conn = server.connect();
    for prefix in ["first", "second"] {
        let (key, first) = first_hit_with_room(&mut conn, prefix, 60, 5);
        assert_eq!((first.0, first.1), (2, 3), "first request on {key}");
        let (remaining, limit, _) = allowed(&hit(&mut conn, "GET", &key), 60);
        assert_eq!((remaining, limit), (1, 3), "second request on {key}");
        let (remaining, limit, _) = allowed(&hit(&mut conn, "POST", &key), 60);
        assert_eq!((remaining, limit), (0, 3), "third request on {key}");
        rejected(&hit(&mut conn, "GET", &key), 60);
        rejected(&hit(&mut conn, "POST", &key), 60);
    }
}

#[test]
fn configured_window_ends_and_a_new_one_begins() {
    let config = "[classes.ratelimit]\nlimit = 1\nwindow_ms = 1000\n";
    let server = Server::start_with_config(2, config);
    let mut conn = server.connect();

    // Two back-to-back requests can straddle the end of a window that is
    // aligned to the clock; try a few fresh keys until one does not.
    let mut rejection = None;
    for attempt in 0..5 {
        let key = format!("short-{attempt}");
        let (remaining, limit, reset) = allowed(&hit(&mut conn, "POST", &key), 1);
        assert_eq!(
            (remaining, limit, reset),
            (0, 1, 1),
            "first request on {key}"
        );
        let second = hit(&mut conn, "POST", &key);
        if second.status == 429 {
            rejection = Some((key, rejected(&second, 1)));
            break;
        }
        allowed(&second, 1);
    }
    let (key, retry_after) =
        rejection.expect("the second request in a 1 s window with limit 1 is rejected");
    assert_eq!(
        retry_after, 1,
        "a 1000 ms window leaves at most 1 s to wait"
    );

    // After retryAfter seconds the window is over.
    let rejected_at = Instant::now();
    thread::sleep(Duration::from_millis(retry_after * 1000 + 100));
    let (remaining, limit, reset) = allowed(&hit(&mut conn, "GET", &key), 1);
    assert_eq!(
        (remaining, limit, reset),
        (0, 1, 1),
        "first request in the next window, {:?} after the 429",
        rejected_at.elapsed()
    );
}
