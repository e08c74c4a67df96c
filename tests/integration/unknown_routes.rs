//! Unknown classes, and paths or methods an object does not serve, are
//! answered `404 Not found` without closing the connection.

use crate::harness::{counter_value, increment, Server};

#[test]
fn unknown_class_and_unserved_paths_are_404() {
    let server = Server::start(2);
    let mut conn = server.connect();
    assert_eq!(increment(&mut conn, "x"), 1);
    let cases = [
        ("GET", "/nope/x"),
        ("POST", "/nope/x"),
        ("GET", "/nope/x/increment"),
        ("GET", "/counter/x/bogus"),
        ("POST", "/counter/x/bogus"),
        ("DELETE", "/counter/x"),
        ("POST", "/counter/x"),
        ("GET", "/counter/x/increment"),
        ("PUT", "/counter/x/increment"),
        ("DELETE", "/ratelimit/k"),
        ("GET", "/ratelimit/k/extra"),
    ];
    for (method, path) in cases {
        let response = conn.request(method, path, &[], b"");
        assert_eq!(response.status, 404, "{method} {path}: {response}");
        assert_eq!(response.text(), "Not found", "{method} {path}: {response}");
    }
    // None of them touched the counter, and the connection is still usable.
    assert_eq!(counter_value(&mut conn, "x"), 1);
    assert_eq!(increment(&mut conn, "x"), 2);
    assert_eq!(conn.get("/healthz").text(), "ok");
}
