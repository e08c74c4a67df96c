//! Helpers shared by loadgen's integration tests: the workspace binaries
//! they run against, reading loadgen's JSON summary, and a chat server for
//! the WebSocket mode.

// Each test crate uses a part of these.
#![allow(dead_code)]

pub mod chat_server;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// Serializes the builds below: two tests needing the same binary build it
/// once.
static BUILD: Mutex<()> = Mutex::new(());

/// The binary `bin` of workspace package `package`, built on first use if
/// no build of it is found.
pub fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    let _building = BUILD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let debug = target.join("debug").join(bin);
    for candidate in [&debug, &target.join("release").join(bin)] {
        if candidate.is_file() {
            return candidate.clone();
        }
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", package, "--bin", bin])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building {bin} failed");
    assert!(debug.is_file(), "cargo built no {}", debug.display());
    debug
}

/// Runs loadgen with `args` and `--json`, and returns its one-line JSON
/// summary, asserting that it succeeded.
pub fn loadgen_json(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .arg("--json")
        .output()
        .expect("loadgen runs");
    let stdout = String::from_utf8(output.stdout).expect("utf-8 output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "loadgen failed: {stderr}\n{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout}");
    stdout
}

/// The number after `"field":` in a flat JSON object.
pub fn number(json: &str, field: &str) -> f64 {
    let key = format!("\"{field}\":");
    let start = json
        .find(&key)
        .unwrap_or_else(|| panic!("{field} missing from {json}"))
        + key.len();
    let digits: String = json[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{field} is not a number in {json}"))
}
