//! The collaborative editor demo (`/_client/editor.html`) in headless
//! Chromium: two pages type into their CodeMirror editors on one `doc`
//! object and both show the same text, with the other's presence. The
//! screenshots are kept in `target/tmp/editor-screenshots/`.
//!
//! The browser side is `tests/browser/editor.mjs`, set up like the chat
//! test (Debian's chromium, playwright-core from package-lock.json).

use crate::browser_chat::{browser_dir, collect_head, setup, wait_with_deadline, KillOnDrop};
use crate::harness::Server;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const EDITOR_TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn two_browser_pages_edit_one_doc_and_show_the_same_text() {
    setup();
    let server = Server::start(2);
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("editor-screenshots");
    let child = Command::new("node")
        .arg(browser_dir().join("editor.mjs"))
        .arg("--url")
        .arg(format!("http://{}", server.addr()))
        .arg("--shots")
        .arg(&shots)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning node tests/browser/editor.mjs failed: {e}"));
    let mut child = KillOnDrop(child);
    let stderr = collect_head(child.0.stderr.take().expect("stderr is piped"));
    let status = wait_with_deadline(&mut child.0, EDITOR_TIMEOUT);
    if status.is_none() {
        let _ = child.0.kill();
    }
    let stderr = stderr.join().expect("the stderr reader does not panic");
    assert!(
        status.is_some_and(|s| s.success()),
        "editor.mjs failed ({status:?})\n--- editor.mjs stderr ---\n{stderr}"
    );
    for page in ["editor-alice.png", "editor-bob.png"] {
        let bytes = std::fs::metadata(shots.join(page)).map_or(0, |m| m.len());
        assert!(bytes > 1000, "the screenshot {page} was kept");
    }
}
