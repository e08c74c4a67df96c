//! Targets that fail in each way loadgen tells apart: refused connects,
//! requests that are never answered, connections closed mid-request, and
//! refused RPC handshakes. Each run is a fraction of a second.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::thread;

use durin_proto::rpc::{encode_server_hello, ServerHello, CLIENT_HELLO_BYTES, PROTOCOL_VERSION};

fn loadgen_json(url: &str, extra: &[&str]) -> (Output, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["http", "--url", url, "-c", "2", "--json"])
        .args(extra)
        .output()
        .expect("loadgen runs");
    let json = String::from_utf8(output.stdout.clone()).expect("utf-8");
    (output, json)
}

#[test]
fn refused_connects_are_connect_errors_and_fail_the_run() {
    // A port that was free a moment ago: connects are refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let (output, json) = loadgen_json(&format!("http://127.0.0.1:{port}/"), &["-d", "200ms"]);
    // No response at all is a failed run.
    assert_eq!(output.status.code(), Some(1), "{json}");
    assert!(json.contains("\"requests\":0"), "{json}");
    assert!(json.contains("\"errors_by_kind\":{\"connect\":"), "{json}");
}

#[test]
fn unanswered_requests_time_out() {
    // The kernel completes handshakes into the backlog; nobody ever reads.
    let listener = TcpListener::bind("127.0.0.1:0").expect("a listener");
    let url = format!("http://{}/", listener.local_addr().expect("bound"));
    let (_, json) = loadgen_json(&url, &["-d", "600ms", "--timeout", "100ms"]);
    assert!(json.contains("\"errors_by_kind\":{\"timeout\":"), "{json}");
    drop(listener);
}

#[test]
fn connections_closed_mid_request_are_eof_errors() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a listener");
    let url = format!("http://{}/", listener.local_addr().expect("bound"));
    // Reads each request, then hangs up without answering. The thread ends
    // with the test process.
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
        }
    });
    let (_, json) = loadgen_json(&url, &["-d", "300ms"]);
    assert!(json.contains("\"eof\":"), "{json}");
    assert!(json.contains("\"requests\":0"), "{json}");
}

#[test]
fn refused_rpc_handshakes_are_refused_errors() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a listener");
    let addr = listener.local_addr().expect("bound").to_string();
    // Answers every hello with a refusal and hangs up, as durin does for a
    // version it does not speak.
    thread::spawn(move || {
        let hello = ServerHello {
            accepted: false,
            version: PROTOCOL_VERSION,
            shards: 1,
            partitions: 1,
            shard_index: None,
            shard_base_port: None,
            reason: "not today".into(),
        };
        let mut wire = Vec::new();
        encode_server_hello(&hello, &mut wire);
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut client_hello = [0u8; CLIENT_HELLO_BYTES];
            if stream.read_exact(&mut client_hello).is_ok() {
                let _ = stream.write_all(&wire);
            }
        }
    });
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["rpc", "--addr", &addr, "-c", "2", "-d", "300ms", "--json"])
        .output()
        .expect("loadgen runs");
    let json = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(output.status.code(), Some(1), "{json}");
    assert!(json.contains("\"requests\":0"), "{json}");
    assert!(json.contains("\"errors_by_kind\":{\"refused\":"), "{json}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("not today"),
        "the reason is shown"
    );
}
