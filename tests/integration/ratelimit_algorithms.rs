//! `algorithm = "sliding_window"` and `algorithm = "gcra"` in
//! `[classes.ratelimit]`: the same JSON answers and `Retry-After` as the
//! fixed window, with each algorithm's own arithmetic; an unknown algorithm
//! stops the server at start.

use crate::harness::{run_cli, Server};
use crate::ratelimit_window::{allowed, hit, rejected};
use std::thread;
use std::time::Duration;

/// A sliding window weighs the previous window's grants, so the grants of
/// the current window keep counting until the end of the next one: `reset`
/// lies beyond the window's end, and a denial waits into the next window
/// until enough of this one has slid out.
#[test]
fn sliding_window_counts_into_the_next_window() {
    let config =
        "[classes.ratelimit]\nalgorithm = \"sliding_window\"\nlimit = 3\nwindow_ms = 60000\n";
    let server = Server::start_with_config(2, config);
    let mut conn = server.connect();
    let (key, first_reset) = first_sliding_hit_with_room(&mut conn);
    let mut last_reset = first_reset;
    for count in 2..=3 {
        let (remaining, limit, reset) = allowed(&hit(&mut conn, "POST", &key), 120);
        assert_eq!((remaining, limit), (3 - count, 3), "request {count}");
        // 2 * 60 s - elapsed: always past the end of the current window.
        assert!(reset > 60, "reset {reset} s ends with the next window");
        last_reset = reset;
    }
    let retry_after = rejected(&hit(&mut conn, "GET", &key), 120);
    // The 4th unit fits once a third of the next window has passed (3
    // previous units weigh 3 * (60 - e) / 60 <= 2 once e >= 20 s): 40 s
    // before the reset the last grant named, give or take a second.
    assert!(
        (last_reset - 41..=last_reset - 39).contains(&retry_after),
        "retryAfter {retry_after} with reset {last_reset}"
    );
    rejected(&hit(&mut conn, "POST", &key), 120);

    let (remaining, limit, _) = allowed(&hit(&mut conn, "GET", "sliding-other"), 120);
    assert_eq!((remaining, limit), (2, 3), "another key has its own window");
}

/// Makes the first request on a fresh `sliding-N` key (limit 3, window
/// 60 s) with at least 5 s left in its window, so that the test's requests
/// share one window; waits for the next window when too little is left.
/// Returns the key and the first answer's `reset`.
fn first_sliding_hit_with_room(conn: &mut crate::harness::Conn) -> (String, u64) {
    for attempt in 0..3 {
        let key = format!("sliding-{attempt}");
        let (remaining, limit, reset) = allowed(&hit(conn, "POST", &key), 120);
        assert_eq!((remaining, limit), (2, 3), "first request on {key}");
        assert!(reset > 60, "reset {reset} s ends with the next window");
        // `reset - 60` seconds are left in the current window.
        if reset >= 65 {
            return (key, reset);
        }
        thread::sleep(Duration::from_millis((reset - 60) * 1000 + 200));
    }
    panic!("no window with 5 s of room after 3 tries");
}

#[test]
fn sliding_window_forgets_after_two_windows() {
    let config =
        "[classes.ratelimit]\nalgorithm = \"sliding_window\"\nlimit = 2\nwindow_ms = 500\n";
    let server = Server::start_with_config(2, config);
    let mut conn = server.connect();
    for _ in 0..2 {
        let _ = hit(&mut conn, "POST", "forgetful");
    }
    rejected(&hit(&mut conn, "POST", "forgetful"), 1);
    // Two whole windows later no grant weighs on the estimate any more.
    thread::sleep(Duration::from_millis(1_100));
    let (remaining, limit, reset) = allowed(&hit(&mut conn, "POST", "forgetful"), 1);
    assert_eq!((remaining, limit, reset), (1, 2, 1));
}

/// GCRA: a fresh key spends its burst at once; then one unit per emission
/// interval (`window_ms / limit`); `limit` in the answer is the burst and
/// `reset` the time until the bucket is full again.
#[test]
fn gcra_spends_the_burst_then_paces() {
    let config =
        "[classes.ratelimit]\nalgorithm = \"gcra\"\nlimit = 1\nwindow_ms = 60000\nburst = 3\n";
    let server = Server::start_with_config(2, config);
    let mut conn = server.connect();
    let key = "bucket";
    for count in 1..=3 {
        let (remaining, limit, reset) = allowed(&hit(&mut conn, "POST", key), 180);
        assert_eq!((remaining, limit), (3 - count, 3), "request {count}");
        // One emission interval of 60 s per unit spent, less the few ms
        // between requests, rounded up.
        let full_after = 60 * count;
        assert!(
            (full_after - 1..=full_after).contains(&reset),
            "request {count}: reset {reset}"
        );
    }
    let retry_after = rejected(&hit(&mut conn, "GET", key), 60);
    assert!(
        (59..=60).contains(&retry_after),
        "the next unit is 60 s away: {retry_after}"
    );

    let (remaining, limit, reset) = allowed(&hit(&mut conn, "GET", "bucket-other"), 180);
    assert_eq!(
        (remaining, limit, reset),
        (2, 3, 60),
        "another key has its own bucket"
    );
}

#[test]
fn gcra_refills_one_unit_per_interval() {
    let config =
        "[classes.ratelimit]\nalgorithm = \"gcra\"\nlimit = 2\nwindow_ms = 1000\nburst = 2\n";
    let server = Server::start_with_config(2, config);
    let mut conn = server.connect();
    let key = "refill";
    allowed(&hit(&mut conn, "POST", key), 1);
    allowed(&hit(&mut conn, "POST", key), 1);
    // Whatever time passed between the two, the bucket cannot have refilled
    // a unit in under 500 ms, so a third request right away is usually
    // denied; on a slow machine it may have refilled one.
    let third = hit(&mut conn, "POST", key);
    if third.status == 429 {
        assert_eq!(rejected(&third, 1), 1, "500 ms round up to 1 s");
    }
    // After a second the bucket is full again: two more at once.
    thread::sleep(Duration::from_millis(1_050));
    let (remaining, limit, _) = allowed(&hit(&mut conn, "POST", key), 1);
    assert_eq!((remaining, limit), (1, 2));
    let (remaining, _, _) = allowed(&hit(&mut conn, "POST", key), 1);
    assert_eq!(remaining, 0);
}

#[test]
fn unknown_algorithm_is_refused_at_start() {
    let dir = tempfile::Builder::new()
        .prefix("durin-cli-")
        .tempdir()
        .expect("a temp dir can be created");
    let config = dir.path().join("leaky.toml");
    std::fs::write(
        &config,
        "[classes.ratelimit]\nalgorithm = \"leaky_bucket\"\n",
    )
    .expect("write the config");
    let data_dir = dir.path().join("data");
    let output = run_cli(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.to_str().expect("temp paths are UTF-8"),
        "--no-pin",
        "--config",
        config.to_str().expect("temp paths are UTF-8"),
    ]);
    assert_eq!(output.code, Some(2), "{output:?}");
    assert!(
        output.stderr.contains("classes.ratelimit.algorithm"),
        "stderr names the key: {:?}",
        output.stderr
    );
    assert!(!output.stdout.contains("durin listening on"), "{output:?}");
}
