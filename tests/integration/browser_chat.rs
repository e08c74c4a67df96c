//! The browser client (`/_client/durin.js`) and the chat demo
//! (`/_client/chat.html`) work in a real browser: two pages chat through one
//! `chat` object, the server is SIGKILLed and restarted on the same port
//! under them, and both pages reconnect by themselves and chat again.
//!
//! The browser side lives in `tests/browser`: `setup.sh` installs Debian's
//! chromium and the pinned playwright-core, and `chat.mjs` drives headless
//! Chromium. It prints `RESTART` on stdout when it wants the server
//! restarted and waits for `RESTARTED` on stdin; its exit code is the
//! verdict, its stderr the explanation.

use crate::harness::Server;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A fresh machine downloads and installs chromium: minutes, not seconds.
const SETUP_TIMEOUT: Duration = Duration::from_secs(600);

/// `chat.mjs` gives up after 55 s by itself; this is the backstop.
const CHAT_TIMEOUT: Duration = Duration::from_secs(90);

/// Only this much of the script's stderr is kept for the failure message.
const SCRIPT_STDERR_BYTES_MAX: u64 = 64 * 1024;

const CORES: usize = 2;

pub(crate) fn browser_dir() -> PathBuf {
    // The integration tests belong to the `durin` package in engine/.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/browser")
}

/// Kills the child if the test panics before it exits.
pub(crate) struct KillOnDrop(pub(crate) Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `tests/browser/setup.sh`, or panics with its output and what to do.
pub(crate) fn setup() {
    let dir = tempfile::tempdir().expect("a temp dir can be created");
    let log_path = dir.path().join("setup.log");
    let log = File::create(&log_path).expect("the setup log can be created");
    let child = Command::new("bash")
        .arg(browser_dir().join("setup.sh"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("the log file handle can be cloned"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|error| panic!("running tests/browser/setup.sh failed: {error}"));
    let mut child = KillOnDrop(child);
    let status = wait_with_deadline(&mut child.0, SETUP_TIMEOUT);
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.is_some_and(|status| status.success()),
        "tests/browser/setup.sh did not succeed ({status:?}) within {SETUP_TIMEOUT:?}. \
         This test needs /usr/bin/chromium (apt-get install chromium), Node.js 20 or \
         later and `npm ci` in tests/browser.\n--- setup output ---\n{output}"
    );
}

pub(crate) fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait works") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Sends every stdout line of the script to the returned channel.
pub(crate) fn forward_lines(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    receiver
}

/// Keeps the first [`SCRIPT_STDERR_BYTES_MAX`] bytes of a pipe and drains
/// the rest, so the script never blocks on a full pipe.
pub(crate) fn collect_head(pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut head = Vec::new();
        let mut pipe = pipe;
        let _ = (&mut pipe)
            .take(SCRIPT_STDERR_BYTES_MAX)
            .read_to_end(&mut head);
        let _ = io::copy(&mut pipe, &mut io::sink());
        String::from_utf8_lossy(&head).into_owned()
    })
}

/// Answers the script's `RESTART` lines until its stdout closes; returns
/// how many restarts it asked for.
fn serve_restarts(
    server: &mut Server,
    lines: &mpsc::Receiver<String>,
    stdin: &mut ChildStdin,
    deadline: Instant,
) -> usize {
    let mut restarts = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line == "RESTART" => {
                server.restart_on_same_port(CORES);
                restarts += 1;
                writeln!(stdin, "RESTARTED").expect("chat.mjs reads its stdin");
                stdin.flush().expect("chat.mjs reads its stdin");
            }
            Ok(line) => panic!("chat.mjs printed an unexpected line on stdout: {line:?}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => return restarts,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("chat.mjs was still running after {CHAT_TIMEOUT:?}")
            }
        }
    }
}

#[test]
fn chat_pages_reconnect_after_the_server_restarts_on_the_same_port() {
    setup();
    let mut server = Server::start(CORES);
    let child = Command::new("node")
        .arg(browser_dir().join("chat.mjs"))
        .arg("--url")
        .arg(format!("http://{}", server.addr()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("spawning node tests/browser/chat.mjs failed: {error}"));
    let mut child = KillOnDrop(child);
    let mut stdin = child.0.stdin.take().expect("stdin is piped");
    let lines = forward_lines(child.0.stdout.take().expect("stdout is piped"));
    let stderr = collect_head(child.0.stderr.take().expect("stderr is piped"));

    let deadline = Instant::now() + CHAT_TIMEOUT;
    let restarts = serve_restarts(&mut server, &lines, &mut stdin, deadline);
    let left = deadline.saturating_duration_since(Instant::now());
    let status = wait_with_deadline(&mut child.0, left);
    if status.is_none() {
        let _ = child.0.kill();
    }
    let stderr = stderr.join().expect("the stderr reader does not panic");
    assert!(
        status.is_some_and(|status| status.success()),
        "chat.mjs failed ({status:?}) after {restarts} restart(s)\n--- chat.mjs stderr ---\n{stderr}"
    );
    assert_eq!(restarts, 1, "chat.mjs asks for exactly one restart");
    server.assert_alive();
}
