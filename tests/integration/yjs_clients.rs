//! Real clients nobody here wrote: npm `yjs` + `y-websocket` (the 3.x
//! `WebsocketProvider`, over `ws`, BroadcastChannel off) against the `doc`
//! class. 8 clients edit one `Y.Text` and converge, with each other and
//! with the HTTP snapshot; awareness shows all 8 and drops a client whose
//! connection dies within 2 s; a lone idle client stays connected for
//! 45 s; the server is SIGKILLed while clients edit and restarted on the
//! same port, and every edit one client saw from another survives. The
//! same script runs against the reference server (y-websocket 1.5.x's
//! `bin/server.js`, yjs 13) to prove the test itself.
//!
//! The Node side is `tests/yjs/clients.mjs`; `tests/yjs/setup.sh` installs
//! its packages from `package-lock.json` (CI runs it first).

use crate::browser_chat::{collect_head, forward_lines, wait_with_deadline, KillOnDrop};
use crate::harness::Server;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CORES: usize = 2;
/// The script's longest run (the lone client's 45 s, plus the phases
/// alongside it) with room to spare on a loaded machine.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(150);
const SETUP_TIMEOUT: Duration = Duration::from_secs(300);

fn yjs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/yjs")
}

fn setup() {
    let output = Command::new("bash")
        .arg(yjs_dir().join("setup.sh"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running tests/yjs/setup.sh failed: {e}"));
    assert!(
        output.status.success(),
        "tests/yjs/setup.sh failed within {SETUP_TIMEOUT:?}; the test needs Node.js 20 and npm.\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `clients.mjs` with `args`; answers its RESTART lines with
/// `restart`; panics with its stderr unless it exits 0.
fn run_clients(args: &[String], mut restart: impl FnMut()) -> String {
    let child = Command::new("node")
        .arg(yjs_dir().join("clients.mjs"))
        .args(args)
        .current_dir(yjs_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning node tests/yjs/clients.mjs failed: {e}"));
    let mut child = KillOnDrop(child);
    let mut stdin = child.0.stdin.take().expect("stdin is piped");
    let lines = forward_lines(child.0.stdout.take().expect("stdout is piped"));
    let stderr = collect_head(child.0.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line == "RESTART" => {
                restart();
                writeln!(stdin, "RESTARTED").expect("clients.mjs reads its stdin");
                stdin.flush().expect("clients.mjs reads its stdin");
            }
            Ok(line) => panic!("clients.mjs printed an unexpected line: {line:?}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => break,
        }
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let status = wait_with_deadline(&mut child.0, left);
    let stderr = stderr.join().expect("the stderr reader does not panic");
    // Shown with --nocapture: what each phase measured.
    eprintln!("{stderr}");
    assert!(
        status.is_some_and(|s| s.success()),
        "clients.mjs failed ({status:?})\n--- clients.mjs stderr ---\n{stderr}"
    );
    stderr
}

fn durin_args(server: &Server, phases: &str) -> Vec<String> {
    vec![
        "--ws".into(),
        format!("ws://{}/doc", server.addr()),
        "--http".into(),
        format!("http://{}/doc", server.addr()),
        "--phases".into(),
        phases.into(),
    ]
}

#[test]
fn yjs_clients_converge_see_each_other_and_a_lone_client_stays_connected() {
    setup();
    let server = Server::start(CORES);
    let log = run_clients(&durin_args(&server, "converge,awareness,lone"), || {
        panic!("no restart in this run")
    });
    assert!(log.contains("PASS"), "{log}");
}

#[test]
fn yjs_clients_lose_no_acknowledged_edit_when_the_server_is_killed() {
    setup();
    let mut server = Server::start(CORES);
    let args = durin_args(&server, "restart");
    let mut restarts = 0;
    let log = run_clients(&args, || {
        server.restart_on_same_port(CORES);
        restarts += 1;
    });
    assert_eq!(restarts, 1, "{log}");
    assert!(
        log.contains("acknowledged edits survived the kill"),
        "{log}"
    );
}

/// The same script against y-websocket 1.5.x's own server: if this fails,
/// the test is wrong, not durin.
#[test]
fn the_reference_server_passes_the_same_client_test() {
    setup();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let server = Command::new("node")
        .arg(yjs_dir().join("node_modules/y-websocket-reference/bin/server.js"))
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node starts the reference server");
    let _server = KillOnDrop(server);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the reference server did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let args: Vec<String> = vec![
        "--ws".into(),
        format!("ws://127.0.0.1:{port}"),
        "--phases".into(),
        "converge,awareness,lone".into(),
    ];
    let log = run_clients(&args, || panic!("no restart in this run"));
    assert!(log.contains("PASS"), "{log}");
}
