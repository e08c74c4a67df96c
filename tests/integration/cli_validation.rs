//! Bad flags and bad config files stop `durin serve` before it serves:
//! exit code 2 and a message on stderr that names the problem.

use crate::harness::{run_cli, CliOutput};
use std::path::Path;

/// Runs `durin serve` with valid defaults plus `extra` flags.
fn serve(data_dir: &Path, extra: &[&str]) -> CliOutput {
    let data_dir = data_dir.to_str().expect("temp paths are UTF-8");
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir,
        "--no-pin",
    ];
    args.extend_from_slice(extra);
    run_cli(&args)
}

/// Asserts exit code 2 and a stderr that mentions one of `mentions`
/// (case-insensitively).
fn assert_usage_error(output: &CliOutput, what: &str, mentions: &[&str]) {
    assert_eq!(output.code, Some(2), "{what}: exit code; {output:?}");
    let stderr = output.stderr.to_lowercase();
    assert!(
        mentions
            .iter()
            .any(|word| stderr.contains(&word.to_lowercase())),
        "{what}: stderr should mention one of {mentions:?}; got {:?}",
        output.stderr
    );
    assert!(
        !output.stdout.contains("durin listening on"),
        "{what}: the server started anyway; {output:?}"
    );
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("durin-cli-")
        .tempdir()
        .expect("a temp dir can be created")
}

#[test]
fn zero_cores_is_rejected() {
    let dir = temp_dir();
    let output = serve(&dir.path().join("data"), &["--cores", "0"]);
    assert_usage_error(&output, "--cores 0", &["cores"]);
}

#[test]
fn reversed_cpu_range_is_rejected() {
    let dir = temp_dir();
    let output = serve(&dir.path().join("data"), &["--cpus", "5-2"]);
    assert_usage_error(&output, "--cpus 5-2", &["5-2", "cpus"]);
}

#[test]
fn non_numeric_cpu_list_is_rejected() {
    let dir = temp_dir();
    let output = serve(&dir.path().join("data"), &["--cpus", "abc"]);
    assert_usage_error(&output, "--cpus abc", &["abc", "cpus"]);
}

#[test]
fn unparseable_listen_address_is_rejected() {
    let dir = temp_dir();
    let data_dir = dir.path().join("data");
    let data_dir = data_dir.to_str().expect("temp paths are UTF-8");
    let output = run_cli(&[
        "serve",
        "--listen",
        "notanaddr",
        "--data-dir",
        data_dir,
        "--no-pin",
    ]);
    assert_usage_error(&output, "--listen notanaddr", &["notanaddr", "listen"]);
}

#[test]
fn missing_config_file_is_rejected() {
    let dir = temp_dir();
    let missing = dir.path().join("nonexistent.toml");
    let missing = missing.to_str().expect("temp paths are UTF-8");
    let output = serve(&dir.path().join("data"), &["--config", missing]);
    assert_usage_error(&output, "--config of a missing file", &[missing]);
}

#[test]
fn config_with_invalid_toml_is_rejected() {
    let dir = temp_dir();
    let config = dir.path().join("broken.toml");
    std::fs::write(&config, "[server\nbody_bytes_max = = 3\n").expect("write the config");
    let config = config.to_str().expect("temp paths are UTF-8");
    let output = serve(&dir.path().join("data"), &["--config", config]);
    assert_usage_error(&output, "a config file that is not TOML", &[config, "toml"]);
}

#[test]
fn config_with_unknown_key_is_rejected() {
    let dir = temp_dir();
    let config = dir.path().join("unknown.toml");
    std::fs::write(&config, "[server]\nbogus_knob = 3\n").expect("write the config");
    let config = config.to_str().expect("temp paths are UTF-8");
    let output = serve(&dir.path().join("data"), &["--config", config]);
    assert_usage_error(
        &output,
        "a config file with an unknown key",
        &["bogus_knob"],
    );
}

#[test]
fn config_with_unknown_class_setting_is_rejected() {
    let dir = temp_dir();
    let config = dir.path().join("unknown-class-key.toml");
    std::fs::write(&config, "[classes.ratelimit]\nlimit = 3\nwindow_sz = 10\n")
        .expect("write the config");
    let config = config.to_str().expect("temp paths are UTF-8");
    let output = serve(&dir.path().join("data"), &["--config", config]);
    assert_usage_error(
        &output,
        "a class setting with an unknown key",
        &["window_sz"],
    );
}

#[test]
fn config_with_wrong_value_type_is_rejected() {
    let dir = temp_dir();
    let config = dir.path().join("wrong-type.toml");
    std::fs::write(&config, "[classes.ratelimit]\nlimit = \"many\"\n").expect("write the config");
    let config = config.to_str().expect("temp paths are UTF-8");
    let output = serve(&dir.path().join("data"), &["--config", config]);
    assert_usage_error(&output, "a limit that is a string", &["limit"]);
}

#[test]
fn unknown_flag_is_rejected() {
    let dir = temp_dir();
    let output = serve(&dir.path().join("data"), &["--frobnicate"]);
    assert_usage_error(&output, "an unknown flag", &["frobnicate"]);
}

#[test]
fn help_exits_zero() {
    let output = run_cli(&["--help"]);
    assert_eq!(output.code, Some(0), "durin --help: {output:?}");
    assert!(
        output.stdout.contains("serve"),
        "durin --help should list serve: {output:?}"
    );

    let output = run_cli(&["serve", "--help"]);
    assert_eq!(output.code, Some(0), "durin serve --help: {output:?}");
    for flag in [
        "--listen",
        "--data-dir",
        "--cores",
        "--cpus",
        "--no-pin",
        "--config",
    ] {
        assert!(
            output.stdout.contains(flag),
            "durin serve --help should mention {flag}: {output:?}"
        );
    }
}
