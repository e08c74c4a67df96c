//! The server announces its RPC ports, then readiness, each with one
//! stdout line, and `GET /healthz` answers `ok`.

use crate::harness::Server;

#[test]
fn the_rpc_line_and_the_ready_line_are_the_only_stdout_lines() {
    let server = Server::start(2);
    assert_eq!(
        server.stdout_before_ready().len(),
        1,
        "stdout lines before the ready line: {:?}",
        server.stdout_before_ready()
    );
    let (rpc, base) = server.rpc_addr();
    assert!(rpc.ip().is_loopback() && rpc.port() != 0, "rpc on {rpc}");
    assert_ne!(base, 0);
    let addr = server.addr();
    assert!(addr.ip().is_loopback(), "listening on {addr}");
    assert_ne!(
        addr.port(),
        0,
        "the ready line must name the port chosen for :0"
    );
    assert_eq!(
        server.ready_line(),
        format!("durin listening on http://{addr}")
    );

    let mut conn = server.connect();
    for _ in 0..3 {
        assert_eq!(conn.get("/healthz").status, 200);
    }
    let late = server.stdout_after_ready();
    assert!(
        late.is_empty(),
        "stdout lines after the ready line: {late:?}"
    );
}

#[test]
fn healthz_answers_ok_on_every_core_count() {
    for cores in [1, 3] {
        let server = Server::start(cores);
        let mut conn = server.connect();
        let response = conn.get("/healthz");
        assert_eq!(response.status, 200, "--cores {cores}: {response}");
        assert_eq!(response.text(), "ok", "--cores {cores}: {response}");
    }
}
