//! loadgen against the real `ceiling` server: closed and open loop each run
//! for about a second and must come back with responses, no errors, and the
//! JSON fields scripts rely on.

mod common;

use common::{loadgen_json, number};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The `ceiling` binary.
fn ceiling_binary() -> PathBuf {
    common::workspace_binary("bench", "ceiling")
}

/// A running ceiling server, killed when dropped.
struct Ceiling {
    child: Child,
    url: String,
}

impl Ceiling {
    fn start() -> Ceiling {
        let mut child = Command::new(ceiling_binary())
            .args(["--listen", "127.0.0.1:0", "--cores", "1", "--no-pin"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("the ceiling server starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the ceiling server prints its address");
        let url = line
            .trim()
            .strip_prefix("ceiling listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_string();
        Ceiling { child, url }
    }
}

impl Drop for Ceiling {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn closed_loop_gets_answers_and_no_errors() {
    let ceiling = Ceiling::start();
    let url = format!("{}/ratelimit/{{key}}", ceiling.url);
    let json = loadgen_json(&[
        "http",
        "--url",
        &url,
        "--keys",
        "zipf:1000:1.1",
        "-c",
        "8",
        "-d",
        "1s",
        "--threads",
        "1",
        "--pipeline",
        "2",
    ]);
    assert!(number(&json, "requests") > 0.0, "{json}");
    assert!(number(&json, "requests_per_sec") > 0.0, "{json}");
    assert_eq!(number(&json, "errors"), 0.0, "{json}");
    for field in ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"] {
        assert!(number(&json, field) > 0.0, "{field} in {json}");
    }
    assert!(number(&json, "p50_us") <= number(&json, "p999_us"));
    assert!(json.contains("\"status\":{\"200\":"), "{json}");
}

#[test]
fn open_loop_holds_the_rate() {
    let ceiling = Ceiling::start();
    let json = loadgen_json(&[
        "http",
        "--url",
        &ceiling.url,
        "-c",
        "4",
        "-d",
        "1s",
        "--rate",
        "2000",
        "--method",
        "POST",
        "--body",
        "hello",
    ]);
    // 2,000 req/s for one second: at most 2,001 fall due (one at time 0).
    // The server keeps up with ease; the margin below is for a shared
    // machine that stalls loadgen near the end of the run.
    let requests = number(&json, "requests");
    assert!((1700.0..=2001.0).contains(&requests), "{json}");
    assert_eq!(number(&json, "errors"), 0.0, "{json}");
    assert!(number(&json, "unsent") < 50.0, "{json}");
    assert!(json.contains("\"loop\":\"open\""), "{json}");
}
