//! `loadgen rpc` against the real durin server: a plain run over the shared
//! RPC port and a shard-aware run over the shards' own ports each run for
//! about a second and must come back with answers and no errors.

mod common;

use common::{loadgen_json, number};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

/// The `durin` binary.
fn durin_binary() -> PathBuf {
    common::workspace_binary("durin", "durin")
}

/// A directory of its own under the system's temporary directory, removed
/// when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        let path =
            std::env::temp_dir().join(format!("loadgen-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("a temporary directory");
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running durin with two shards, killed when dropped.
struct Durin {
    child: Child,
    rpc_addr: String,
    _dir: TempDir,
}

impl Durin {
    fn start(name: &str) -> Durin {
        let dir = TempDir::new(name);
        let config = dir.path().join("durin.toml");
        // Every check is granted, so every one writes its counter.
        std::fs::write(&config, "[classes.ratelimit]\nlimit = 1000000000\n")
            .expect("the config is written");
        let mut child = Command::new(durin_binary())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--rpc-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--cores", "2", "--no-pin", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .spawn()
            .expect("durin starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("durin prints its RPC address");
        // `durin rpc listening on 127.0.0.1:PORT, shard ports B-E`
        let rpc_addr = line
            .trim()
            .strip_prefix("durin rpc listening on ")
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_string();
        Durin {
            child,
            rpc_addr,
            _dir: dir,
        }
    }
}

impl Drop for Durin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `loadgen rpc` and returns its JSON summary, asserting that it
/// succeeded.
fn loadgen_rpc(durin: &Durin, extra: &[&str]) -> String {
    let mut args = vec![
        "rpc",
        "--addr",
        &durin.rpc_addr,
        "--class",
        "ratelimit",
        "--method",
        "check",
    ];
    args.extend([
        "--keys",
        "uniform:1000",
        "-c",
        "8",
        "-d",
        "1s",
        "--threads",
        "1",
    ]);
    args.extend(extra);
    loadgen_json(&args)
}

fn assert_clean(json: &str) {
    assert!(number(json, "requests") > 0.0, "{json}");
    assert_eq!(number(json, "errors"), 0.0, "{json}");
    assert_eq!(number(json, "denied"), 0.0, "{json}");
    assert!(json.contains("\"status\":{\"0\":"), "{json}");
    assert!(number(json, "p50_us") > 0.0, "{json}");
}

#[test]
fn plain_rpc_gets_answers_and_no_errors() {
    let durin = Durin::start("rpc-plain");
    let json = loadgen_rpc(&durin, &["--pipeline", "4"]);
    assert_clean(&json);
    assert!(json.contains("\"shard_aware\":false"), "{json}");
}

#[test]
fn shard_aware_rpc_reaches_every_shard_without_errors() {
    let durin = Durin::start("rpc-shard-aware");
    let json = loadgen_rpc(&durin, &["--shard-aware", "--pipeline", "4"]);
    assert_clean(&json);
    assert!(json.contains("\"shard_aware\":true"), "{json}");
    assert_eq!(number(&json, "shards"), 2.0, "{json}");
    // Closed loop with one request per connection as well.
    let json = loadgen_rpc(&durin, &["--shard-aware"]);
    assert_clean(&json);
}
