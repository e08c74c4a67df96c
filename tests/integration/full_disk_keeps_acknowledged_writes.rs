//! A full disk stops the server without losing or corrupting anything it
//! acknowledged, a start on the full disk fails plainly (one line that says
//! the disk is full, exit status 75), and once there is room again every
//! acknowledged write is there, also after a start that ran out of space
//! part way (with the start-up check turned off).
//!
//! The data directory lives on a 64 MiB tmpfs the test mounts itself, so it
//! needs root (or CAP_SYS_ADMIN); where `mount` is refused the test prints
//! why and passes without checking anything.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::{run_cli, Server};
use crate::kv_client::{get, try_put};

/// The filesystem the server fills, as in the report that found the bug.
const DISK_BYTES: u64 = 64 << 20;
/// The size it is enlarged to before the last start.
const ENLARGED_BYTES: u64 = 256 << 20;
const VALUE_BYTES: usize = 100_000;
/// More PUTs than the disk can hold (64 MiB / 100 KB is ~670, and the log
/// and fjall each keep a copy).
const PUTS_MAX: usize = 2_000;
const OBJECTS: usize = 8;
/// Exit statuses the server documents.
const EXIT_SHARD_STOPPED: i32 = 70;
const EXIT_DISK_FULL: i32 = 75;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Mount {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Mount {
    /// Mounts a tmpfs of `bytes`, or says why it cannot.
    fn tmpfs(bytes: u64) -> Result<Mount, String> {
        let dir = tempfile::Builder::new()
            .prefix("durin-full-disk-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let path = dir.path().to_path_buf();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(&path)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(Mount { _dir: dir, path })
    }

    /// Grows the tmpfs in place; its files stay.
    fn resize(&self, bytes: u64) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={bytes}")])
            .arg(&self.path)
            .status()
            .expect("mount runs");
        assert!(status.success(), "remounting the tmpfs larger: {status}");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Lazy, so a server still being killed cannot keep it mounted.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// 100 KB that differ per key and do not compress, so the disk fills at
/// the rate of the values' size.
fn value_of(index: usize) -> Vec<u8> {
    let mut state = (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..VALUE_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn object_of(index: usize) -> String {
    format!("full-disk-{}", index % OBJECTS)
}

fn key_of(index: usize) -> Vec<u8> {
    format!("key-{index:05}").into_bytes()
}

/// PUTs until one is not acknowledged; returns the acknowledged indexes.
fn fill(server: &Server) -> Vec<usize> {
    let mut conn = server.connect();
    let mut acknowledged = Vec::new();
    for index in 0..PUTS_MAX {
        let path = crate::kv_client::key_path(&object_of(index), &key_of(index));
        match conn.try_request("PUT", &path, &[], &value_of(index)) {
            Ok(response) if response.status == 200 => acknowledged.push(index),
            // The server stopped (the connection closed) or refused.
            Ok(_) | Err(_) => break,
        }
    }
    acknowledged
}

fn serve_args(data_dir: &Path) -> Vec<String> {
    [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--rpc-listen",
        "127.0.0.1:0",
        "--cores",
        "2",
        "--no-pin",
        "--data-dir",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([data_dir.display().to_string()])
    .collect()
}

#[test]
fn a_full_disk_stops_the_server_and_loses_no_acknowledged_write() {
    let mount = match Mount::tmpfs(DISK_BYTES) {
        Ok(mount) => mount,
        Err(why) => {
            eprintln!("skipped: this test needs to mount a tmpfs: {why}");
            return;
        }
    };
    let data_dir = mount.path.join("data");
    let mut server = Server::builder().cores(2).data_dir(&data_dir).start();

    let acknowledged = fill(&server);
    assert!(
        !acknowledged.is_empty() && acknowledged.len() < PUTS_MAX,
        "the disk should take some PUTs and then be full ({} acknowledged)",
        acknowledged.len()
    );
    eprintln!(
        "{} PUTs acknowledged before the disk was full",
        acknowledged.len()
    );
    let status = server.wait_for_exit(Duration::from_secs(30));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(EXIT_SHARD_STOPPED),
        "a shard whose log cannot be written stops the server\n{}",
        server.stderr()
    );
    eprintln!("the server stopped with: {}", server.stderr().trim());
    assert!(
        server.stderr().contains("the disk is full"),
        "the server says why it stopped: {}",
        server.stderr()
    );

    let args = serve_args(&data_dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let full_start = run_cli(&args);
    assert_eq!(
        full_start.code,
        Some(EXIT_DISK_FULL),
        "a start on a full disk fails with its own status: {full_start:?}"
    );
    eprintln!(
        "the start on the full disk said: {}",
        full_start.stderr.trim()
    );
    let lines: Vec<&str> = full_start.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {full_start:?}");
    assert!(
        lines[0].contains("the disk is full"),
        "it says the disk is full: {full_start:?}"
    );

    // Without the start-up check, the start runs out of space part way
    // (replaying the log into fjall): the same status, and its last line
    // says why. What it left half-written must not stop the next start.
    // (The config file lives off the full disk.)
    let unchecked = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("a temp file");
    std::fs::write(unchecked.path(), "[server]\ndisk_free_bytes_min = 0\n")
        .expect("the config file can be written");
    let mut args = serve_args(&data_dir);
    args.extend([
        "--config".to_string(),
        unchecked.path().display().to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let part_way = run_cli(&args);
    eprintln!("the unchecked start said: {}", part_way.stderr.trim());
    assert_eq!(
        part_way.code,
        Some(EXIT_DISK_FULL),
        "a start that runs out of space part way: {part_way:?}"
    );
    assert!(
        part_way
            .stderr
            .lines()
            .last()
            .is_some_and(|line| line.contains("the disk is full")),
        "its last line says the disk is full: {part_way:?}"
    );

    mount.resize(ENLARGED_BYTES);
    server.restart(2);
    let mut conn = server.connect();
    for &index in &acknowledged {
        let stored = get(&mut conn, &object_of(index), &key_of(index));
        assert!(
            stored.as_deref() == Some(&value_of(index)[..]),
            "acknowledged PUT {index} of {} is there after the restart",
            acknowledged.len()
        );
    }
    // And the store takes writes again.
    let response = try_put(&mut conn, &object_of(0), b"after", b"room again");
    assert_eq!(response.status, 200, "{response}");
    drop(conn);
    drop(server);
    drop(mount);
}
