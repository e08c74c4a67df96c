//! Unknown classes and paths an object does not serve are answered `404
//! Not found`, and a path it serves asked with another method `405` with
//! `Allow`, without closing the connection.

use crate::harness::{counter_value, increment, Server};

#[test]
fn unknown_paths_are_404_and_wrong_methods_405() {
    let server = Server::start(2);
    let mut conn = server.connect();
    assert_eq!(increment(&mut conn, "x"), 1);
    let cases = [
        ("GET", "/nope/x"),
        ("POST", "/nope/x"),
        ("GET", "/nope/x/increment"),
        ("GET", "/counter/x/bogus"),
        ("POST", "/counter/x/bogus"),
        ("GET", "/ratelimit/k/extra"),
    ];
    for (method, path) in cases {
        let response = conn.request(method, path, &[], b"");
        assert_eq!(response.status, 404, "{method} {path}: {response}");
        assert_eq!(response.text(), "Not found", "{method} {path}: {response}");
    }
    let wrong_methods = [
        ("DELETE", "/counter/x", "GET"),
        ("POST", "/counter/x", "GET"),
        ("GET", "/counter/x/increment", "POST"),
        ("PUT", "/counter/x/increment", "POST"),
        ("DELETE", "/ratelimit/k", "GET, POST"),
    ];
    for (method, path, allow) in wrong_methods {
        let response = conn.request(method, path, &[], b"");
        assert_eq!(response.status, 405, "{method} {path}: {response}");
        assert_eq!(response.header("allow"), Some(allow), "{method} {path}");
    }
    // None of them touched the counter, and the connection is still usable.
    assert_eq!(counter_value(&mut conn, "x"), 1);
    assert_eq!(increment(&mut conn, "x"), 2);
    assert_eq!(conn.get("/healthz").text(), "ok");
}
