//! The cache coordinator: versioned entries, conditional writes,
//! invalidation, and subscribers that never miss a change silently.

use std::time::Duration;

use crate::harness::json::Value;
use crate::harness::{Conn, Server};
use crate::ws_client::Ws;

fn put(conn: &mut Conn, ns: &str, key: &str, query: &str, value: &str) -> crate::harness::Response {
    conn.request(
        "PUT",
        &format!("/cache/{ns}/keys/{key}?{query}"),
        &[],
        value.as_bytes(),
    )
}

fn put_ok(conn: &mut Conn, ns: &str, key: &str, value: &str) -> u64 {
    let response = put(conn, ns, key, "", value);
    assert_eq!(response.status, 200, "{response}");
    response.json().u64_field("version")
}

/// The next change a subscriber gets: (key, version, op).
fn change(ws: &mut Ws) -> (String, u64, String) {
    let json: Value = ws.recv_json();
    (
        json.str_field("key").to_string(),
        json.u64_field("version"),
        json.str_field("op").to_string(),
    )
}

#[test]
fn two_subscribers_see_every_change_in_version_order() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let mut a = Ws::connect(&server, "/cache/ns/subscribe");
    let mut b = Ws::connect(&server, "/cache/ns/subscribe");
    let v1 = put_ok(&mut conn, "ns", "x", "1");
    let v2 = put_ok(&mut conn, "ns", "y", "2");
    let deleted = conn.request("DELETE", "/cache/ns/keys/x", &[], b"");
    assert_eq!(deleted.status, 200, "{deleted}");
    let v3 = deleted.json().u64_field("version");
    let inv = conn.post(
        "/cache/ns/invalidate",
        br#"{"keys": ["y"], "prefixes": ["p/"]}"#,
    );
    assert_eq!(inv.status, 200, "{inv}");
    assert_eq!(inv.json().u64_field("invalidated"), 1);
    assert!(v1 < v2 && v2 < v3);
    let expected = [
        ("x".to_string(), v1, "put".to_string()),
        ("y".to_string(), v2, "put".to_string()),
        ("x".to_string(), v3, "delete".to_string()),
        ("y".to_string(), v3 + 1, "invalidate".to_string()),
        ("p/".to_string(), v3 + 2, "invalidate_prefix".to_string()),
    ];
    for ws in [&mut a, &mut b] {
        for want in &expected {
            assert_eq!(&change(ws), want);
        }
    }
    let metric = |conn: &mut Conn, name: &str| {
        crate::kv_client::metric_total(conn, &format!("durin_cache_{name}"))
    };
    assert_eq!(metric(&mut conn, "changes_total"), 5);
    assert_eq!(metric(&mut conn, "entries_invalidated_total"), 1);
    assert_eq!(
        metric(&mut conn, "changes_sent_total"),
        10,
        "5 changes, 2 subscribers"
    );
    assert_eq!(put(&mut conn, "ns", "x", "if_version=1", "z").status, 409);
    assert_eq!(metric(&mut conn, "version_conflicts_total"), 1);
}

#[test]
fn a_reconnecting_subscriber_gets_every_change_it_missed() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let mut sub = Ws::connect(&server, "/cache/re/subscribe");
    let v1 = put_ok(&mut conn, "re", "a", "1");
    assert_eq!(change(&mut sub).1, v1);
    // The subscriber dies without a close frame.
    drop(sub);
    let v2 = put_ok(&mut conn, "re", "b", "2");
    let v3 = put_ok(&mut conn, "re", "a", "3");
    let mut sub = Ws::connect(&server, &format!("/cache/re/subscribe?since={v1}"));
    assert_eq!(change(&mut sub), ("b".into(), v2, "put".into()));
    assert_eq!(change(&mut sub), ("a".into(), v3, "put".into()));
    let v4 = put_ok(&mut conn, "re", "c", "4");
    assert_eq!(change(&mut sub), ("c".into(), v4, "put".into()));
    sub.expect_silence(Duration::from_millis(200));
}

#[test]
fn a_subscriber_behind_the_compacted_log_gets_a_reset() {
    let server = Server::start_with_config(2, "[classes.cache]\nchanges_max = 3\n");
    let mut conn = server.connect();
    for i in 0..6 {
        put_ok(&mut conn, "cmp", &format!("k{i}"), "v");
    }
    let mut sub = Ws::connect(&server, "/cache/cmp/subscribe?since=1");
    let json = sub.recv_json();
    assert_eq!(json.str_field("op"), "reset");
    assert_eq!(json.u64_field("version"), 6);
    let mut recent = Ws::connect(&server, "/cache/cmp/subscribe?since=4");
    assert_eq!(change(&mut recent).1, 5);
    assert_eq!(change(&mut recent).1, 6);
}

#[test]
fn versions_never_go_backwards_across_restarts() {
    let mut server = Server::start(2);
    let mut conn = server.connect();
    let mut last = 0;
    for i in 0..5 {
        last = put_ok(&mut conn, "vers", &format!("k{i}"), "v");
    }
    server.kill9();
    server.restart(2);
    let mut conn = server.connect();
    let got = conn.get("/cache/vers/keys/k4");
    assert_eq!(got.status, 200, "{got}");
    assert_eq!(got.json().u64_field("version"), last);
    let next = put_ok(&mut conn, "vers", "k0", "again");
    assert!(next > last, "{next} after {last}");
    // A subscriber from before the crash catches up from its version.
    let mut sub = Ws::connect(&server, &format!("/cache/vers/subscribe?since={last}"));
    assert_eq!(change(&mut sub), ("k0".into(), next, "put".into()));
}

#[test]
fn conditional_writes_refuse_a_stale_version_with_409() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let create = put(&mut conn, "cond", "k", "if_version=0", "first");
    assert_eq!(create.status, 200, "{create}");
    let v = create.json().u64_field("version");
    let again = put(&mut conn, "cond", "k", "if_version=0", "second");
    assert_eq!(again.status, 409, "exists already: {again}");
    assert_eq!(again.json().u64_field("version"), v);
    let update = put(&mut conn, "cond", "k", &format!("if_version={v}"), "second");
    assert_eq!(update.status, 200, "{update}");
    let stale = conn.request(
        "DELETE",
        &format!("/cache/cond/keys/k?if_version={v}"),
        &[],
        b"",
    );
    assert_eq!(stale.status, 409, "{stale}");
    let got = conn.get("/cache/cond/keys/k");
    assert_eq!(got.json().str_field("value"), "second");
}

#[test]
fn an_entry_past_its_ttl_reads_as_absent() {
    let server = Server::start(2);
    let mut conn = server.connect();
    let response = put(&mut conn, "ttl", "k", "ttl_ms=200", "v");
    assert_eq!(response.status, 200, "{response}");
    assert_eq!(conn.get("/cache/ttl/keys/k").status, 200);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(conn.get("/cache/ttl/keys/k").status, 404);
}

#[test]
fn cache_limits_have_clear_answers() {
    let config = "[classes.cache]\nentry_bytes_max = 4\ninvalidate_max = 2\n";
    let server = Server::start_with_config(2, config);
    let mut conn = server.connect();
    assert_eq!(put(&mut conn, "lim", "k", "", "12345").status, 413);
    assert_eq!(put(&mut conn, "lim", "k", "ttl_ms=0", "1").status, 400);
    assert_eq!(put(&mut conn, "lim", "k", "if_version=x", "1").status, 400);
    let many = conn.post("/cache/lim/invalidate", br#"{"keys": ["a", "b", "c"]}"#);
    assert_eq!(many.status, 413, "{many}");
    let malformed = conn.post("/cache/lim/invalidate", b"{");
    assert_eq!(malformed.status, 400, "{malformed}");
    for key in ["p/1", "p/2", "p/3"] {
        put_ok(&mut conn, "lim", key, "v");
    }
    put_ok(&mut conn, "lim", "x", "v");
    let version = conn.get("/cache/lim").json().u64_field("version");
    let wide = conn.post(
        "/cache/lim/invalidate",
        br#"{"keys": ["x"], "prefixes": ["p/"]}"#,
    );
    assert_eq!(wide.status, 413, "{wide}");
    assert_eq!(conn.get("/cache/lim/keys/x").status, 200, "nothing applied");
    let after = conn.get("/cache/lim").json().u64_field("version");
    assert_eq!(after, version, "no change logged");
    let wrong = conn.post("/cache/lim/keys/k", b"");
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("GET, PUT, DELETE"));
    assert_eq!(conn.get("/cache/lim/subscribe").status, 400);
}

#[test]
fn a_namespace_with_quiet_subscribers_hibernates_and_still_pushes() {
    use crate::harness::eventually;
    use crate::kv_client::metric_total;
    let server = Server::start_with_config(2, "[classes.cache]\nhibernation_timeout_ms = 100\n");
    let mut conn = server.connect();
    let mut sub = Ws::connect(&server, "/cache/hib/subscribe");
    let hibernated = eventually(Duration::from_secs(10), || {
        metric_total(&mut conn, "durin_objects_hibernated_total") >= 1
    });
    assert!(hibernated, "the namespace hibernated");
    let v = put_ok(&mut conn, "hib", "k", "v");
    assert_eq!(change(&mut sub), ("k".into(), v, "put".into()));
}

#[test]
fn subscribers_past_the_limit_are_refused_with_429() {
    let server = Server::start_with_config(2, "[classes.cache]\nsubscribers_max = 1\n");
    let _first = Ws::connect(&server, "/cache/full/subscribe");
    let second = Ws::try_connect(&server, "/cache/full/subscribe");
    let error = second.err().expect("the second subscriber is refused");
    assert!(error.contains("429"), "{error}");
}
