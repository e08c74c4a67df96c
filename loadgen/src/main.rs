//! The `loadgen` binary: parse, check, run, report.
//!
//! Exit codes: 0 when the run completed and got responses; 1 when it could
//! not run or no response came back at all; 2 for flags that cannot run
//! (including a target that is not this machine without `--allow-remote`).
//! A `ws` run fails (1) when no client could join its room.

use std::process::ExitCode;

use clap::Parser;

use loadgen::cli::{Cli, Command};
use loadgen::{report, rpc, run, ws};

/// Exit code for flags that cannot run, as clap uses for its own errors.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Http(args) => http(&args),
        Command::Rpc(args) => rpc(&args),
        Command::Ws(args) => ws(&args),
    }
}

fn ws(args: &loadgen::ws::WsArgs) -> ExitCode {
    let plan = match args.plan() {
        Ok(plan) => plan,
        Err(err) => {
            eprintln!("loadgen: error: {err}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    for warning in &plan.warnings {
        eprintln!("loadgen: warning: {warning}");
    }
    let stats = match ws::run_ws(&plan) {
        Ok(stats) => stats,
        Err(message) => {
            eprintln!("loadgen: error: {message}");
            return ExitCode::FAILURE;
        }
    };
    if plan.json {
        println!("{}", ws::report::json(&plan, &stats));
    } else {
        print!("{}", ws::report::text(&plan, &stats));
    }
    if stats.joined_total == 0 {
        eprintln!("loadgen: error: no client could join at {}", plan.url);
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn http(args: &loadgen::cli::HttpArgs) -> ExitCode {
    let plan = match args.plan() {
        Ok(plan) => plan,
        Err(err) => {
            eprintln!("loadgen: error: {err}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    for warning in &plan.warnings {
        eprintln!("loadgen: warning: {warning}");
    }
    let stats = match run::run_http(&plan) {
        Ok(stats) => stats,
        Err(message) => {
            eprintln!("loadgen: error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let info = run::http_info(&plan);
    finish(&info, &stats, plan.json)
}

fn rpc(args: &loadgen::cli::RpcArgs) -> ExitCode {
    let plan = match args.plan() {
        Ok(plan) => plan,
        Err(err) => {
            eprintln!("loadgen: error: {err}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match rpc::run_rpc(&plan) {
        Ok((info, stats)) => finish(&info, &stats, plan.json),
        Err(message) => {
            eprintln!("loadgen: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the report; a run that got no response at all failed.
fn finish(info: &report::RunInfo, stats: &loadgen::stats::Stats, json: bool) -> ExitCode {
    if json {
        println!("{}", report::json(info, stats));
    } else {
        print!("{}", report::text(info, stats));
    }
    if stats.responses_total == 0 {
        eprintln!("loadgen: error: no response came back from {}", info.target);
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
