//! loadgen refuses, with exit code 2 and a message that says why, what it
//! must not or cannot run, before it opens a single connection.

use std::process::{Command, Output};

fn loadgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .expect("loadgen runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn refuses_targets_that_are_not_this_machine() {
    for url in [
        "http://192.0.2.1:8080/",
        "http://example.com/",
        "http://[2001:db8::1]/",
    ] {
        let output = loadgen(&["http", "--url", url, "-d", "1s"]);
        assert_eq!(output.status.code(), Some(2), "{url}: {}", stderr(&output));
        assert!(
            stderr(&output).contains("--allow-remote"),
            "{url}: {}",
            stderr(&output)
        );
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn refuses_bad_flags_and_impossible_ws_runs() {
    let url = "http://127.0.0.1:1/";
    for (args, says) in [
        (vec!["http", "--url", url, "-d", "10"], "needs a unit"),
        (
            vec!["http", "--url", url, "--keys", "zipf:10:0"],
            "exponent",
        ),
        (vec!["http", "--url", "https://127.0.0.1/"], "https"),
        (
            vec!["ws", "--url", "ws://192.0.2.1:8080/"],
            "--allow-remote",
        ),
        (vec!["ws", "--url", "http://127.0.0.1:1/"], "ws://"),
        (
            vec![
                "ws",
                "--url",
                "ws://127.0.0.1:1/",
                "--clients-per-room",
                "1",
            ],
            "nobody to deliver to",
        ),
    ] {
        let output = loadgen(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(says),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}
