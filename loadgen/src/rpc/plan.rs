//! `loadgen rpc`'s flags, checked into an [`RpcRun`], and the run itself:
//! for a shard-aware run, the layout is asked of the server first and the
//! keys are split by shard before any load starts.

use std::net::SocketAddr;
use std::sync::Arc;

use durin_proto::rpc::builtin;

use super::session::{ExpectedShard, Rpc};
use super::shards::{self, ShardKeys, SHARD_AWARE_KEYS_MAX};
use crate::cli::{
    check_open_files, plan_threads, time_seed, RpcArgs, UsageError, PIPELINE_BYTES_MAX,
};
use crate::keys::{KeyDist, KeySampler};
use crate::report::{RpcInfo, RunInfo};
use crate::run::{run_workers, RunShape};
use crate::stats::Stats;
use crate::target::Target;
use crate::worker::TargetPlan;

/// Longest class or method name accepted; durin's are a few bytes.
pub const NAME_BYTES_MAX: usize = 256;
/// Largest request payload; durin refuses frames over 1 MiB by default.
pub const PAYLOAD_BYTES_MAX: usize = 512 * 1024;

/// Everything an RPC run needs, checked.
#[derive(Debug, Clone)]
pub struct RpcRun {
    /// The address as given, for the report.
    pub addr_text: String,
    pub addr: SocketAddr,
    pub class: String,
    pub method: String,
    pub payload: Vec<u8>,
    pub keys: KeyDist,
    pub shard_aware: bool,
    pub shape: RunShape,
    pub seed: u64,
    pub json: bool,
}

impl RpcArgs {
    /// Checks the flags and prepares the run; resolves the address.
    pub fn plan(&self) -> Result<RpcRun, UsageError> {
        let load = &self.load;
        let target = Target::parse_addr(&self.addr)?;
        if !load.allow_remote {
            target.check_loopback()?;
        }
        let addr = target.resolve()?;
        for (flag, name) in [("--class", &self.class), ("--method", &self.method)] {
            if name.is_empty() || name.len() > NAME_BYTES_MAX {
                return Err(UsageError(format!(
                    "{flag} must be 1 to {NAME_BYTES_MAX} bytes"
                )));
            }
        }
        let payload = match &self.payload_hex {
            Some(hex) => parse_hex(hex)?,
            None => default_payload(&self.class, &self.method),
        };
        if payload.len() > PAYLOAD_BYTES_MAX {
            return Err(UsageError(format!(
                "--payload-hex is {} bytes, more than the {PAYLOAD_BYTES_MAX} allowed",
                payload.len()
            )));
        }
        let pipeline_bytes =
            payload.len().saturating_add(NAME_BYTES_MAX * 3) * self.pipeline as usize;
        if pipeline_bytes > PIPELINE_BYTES_MAX {
            return Err(UsageError(format!(
                "--pipeline {} of {}-byte payloads is more than the {PIPELINE_BYTES_MAX} bytes \
                 allowed in flight per connection",
                self.pipeline,
                payload.len()
            )));
        }
        let keys = load.keys.unwrap_or(KeyDist::Hot);
        if self.shard_aware {
            check_shard_aware_keys(&keys)?;
        }
        let connections = load.connections as usize;
        let (threads, cpus) = plan_threads(load, connections)?;
        check_open_files(connections)?;
        Ok(RpcRun {
            addr_text: self.addr.clone(),
            addr,
            class: self.class.clone(),
            method: self.method.clone(),
            payload,
            keys,
            shard_aware: self.shard_aware,
            shape: RunShape {
                connections,
                threads,
                cpus,
                pipeline: self.pipeline as usize,
                rate: load.rate,
                duration: load.duration,
                timeout: load.timeout,
            },
            seed: load.seed.unwrap_or_else(time_seed),
            json: load.json,
        })
    }
}

fn check_shard_aware_keys(keys: &KeyDist) -> Result<(), UsageError> {
    match *keys {
        KeyDist::Uniform { keys } | KeyDist::Zipf { keys, .. } | KeyDist::Seq { keys }
            if keys > SHARD_AWARE_KEYS_MAX =>
        {
            Err(UsageError(format!(
                "--shard-aware splits the keys by shard up front, which takes at most \
                 {SHARD_AWARE_KEYS_MAX} keys, not {keys}"
            )))
        }
        _ => Ok(()),
    }
}

/// The payload when none is given: `ratelimit.check` takes a cost of 1.
fn default_payload(class: &str, method: &str) -> Vec<u8> {
    let mut payload = Vec::new();
    if class == builtin::RATELIMIT_CLASS && method == builtin::RATELIMIT_CHECK {
        builtin::encode_ratelimit_cost(1, &mut payload);
    }
    payload
}

/// Hex digits, two per byte, either case; empty is an empty payload.
fn parse_hex(text: &str) -> Result<Vec<u8>, UsageError> {
    let bad = || {
        UsageError(format!(
            "--payload-hex `{text}` is not hex digits, two per byte"
        ))
    };
    let pairs = text.as_bytes().chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return Err(bad());
    }
    pairs
        .map(|pair| {
            let digit = |b: u8| (b as char).to_digit(16).ok_or_else(bad);
            Ok((digit(pair[0])? << 4 | digit(pair[1])?) as u8)
        })
        .collect()
}

/// Where the connections go: one target per shard that owns keys (shard
/// aware), or the one address given.
struct Routing {
    targets: Vec<(SocketAddr, ShardKeys)>,
    expected: Vec<Option<ExpectedShard>>,
    shards: usize,
}

fn route(run: &RpcRun) -> Result<Routing, String> {
    if !run.shard_aware {
        let keys = ShardKeys::None;
        return Ok(Routing {
            targets: vec![(run.addr, keys)],
            expected: vec![None],
            shards: 1,
        });
    }
    let hello = shards::discover(run.addr, run.shape.timeout)?;
    let Some(base_port) = hello.shard_base_port else {
        return Err(format!(
            "--shard-aware: the server at {} advertises no per-shard ports",
            run.addr
        ));
    };
    let split = shards::keys_by_shard(&run.class, &run.keys, hello.partitions, hello.shards);
    let mut routing = Routing {
        targets: Vec::new(),
        expected: Vec::new(),
        shards: 0,
    };
    for (shard, keys) in split.into_iter().enumerate() {
        if keys.is_empty() {
            continue;
        }
        let port = u16::try_from(usize::from(base_port) + shard)
            .map_err(|_| format!("--shard-aware: shard {shard}'s port is past 65535"))?;
        let mut addr = run.addr;
        addr.set_port(port);
        routing.targets.push((addr, keys));
        routing.expected.push(Some(ExpectedShard {
            shard: shard as u32,
            shards: hello.shards,
            partitions: hello.partitions,
        }));
    }
    routing.shards = routing.targets.len();
    if routing.shards < hello.shards as usize {
        eprintln!(
            "loadgen: warning: only {} of the server's {} shards own any of the keys; \
             the others get no connections",
            routing.shards, hello.shards
        );
    }
    if run.shape.connections < routing.shards {
        eprintln!(
            "loadgen: warning: {} connections cannot reach all {} shards",
            run.shape.connections, routing.shards
        );
    }
    Ok(routing)
}

/// What the summary says about an RPC run.
fn info(run: &RpcRun, shards: usize) -> RunInfo {
    RunInfo {
        mode: "rpc",
        target: run.addr_text.clone(),
        method: run.method.clone(),
        rpc: Some(RpcInfo {
            class: run.class.clone(),
            shard_aware: run.shard_aware,
            shards,
        }),
        keys: run.keys.to_string(),
        connections: run.shape.connections,
        threads: run.shape.threads,
        pipeline: run.shape.pipeline,
        rate: run.shape.rate,
        duration_s: run.shape.duration.as_secs_f64(),
    }
}

/// Drives `run` to its end; an error is a failure of this machine or of
/// the layout discovery, not of the load.
pub fn run_rpc(run: &RpcRun) -> Result<(RunInfo, Stats), String> {
    let routing = route(run)?;
    let protocol = Rpc::new(
        &run.class,
        &run.method,
        run.payload.clone(),
        routing.expected.clone(),
    );
    let targets = routing.targets.len() as u64;
    let stats = run_workers(&run.shape, |index| {
        let plans = routing
            .targets
            .iter()
            .enumerate()
            .map(|(t, (addr, keys))| {
                // Each worker walks its own sequence for each target.
                let stream = index as u64 * targets + t as u64;
                let keys = match keys {
                    ShardKeys::Subset(subset) => {
                        KeySampler::within(&run.keys, Arc::clone(subset), run.seed, stream)
                    }
                    ShardKeys::Hot | ShardKeys::None => {
                        KeySampler::new(&run.keys, run.seed, stream)
                    }
                };
                TargetPlan { addr: *addr, keys }
            })
            .collect();
        (protocol.clone(), plans)
    })?;
    Ok((info(run, routing.shards), stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn plan(args: &[&str]) -> Result<RpcRun, UsageError> {
        let cli = Cli::try_parse_from(std::iter::once("loadgen").chain(args.iter().copied()))
            .expect("flags parse");
        match cli.command {
            Command::Rpc(rpc) => rpc.plan(),
            _ => panic!("not rpc"),
        }
    }

    #[test]
    fn reads_the_issue_example() {
        let run = plan(&[
            "rpc",
            "--addr",
            "127.0.0.1:7070",
            "--class",
            "ratelimit",
            "--method",
            "check",
            "--keys",
            "uniform:10000",
            "--connections",
            "64",
            "--duration",
            "10s",
            "--pipeline",
            "8",
            "--shard-aware",
            "--threads",
            "1",
        ])
        .unwrap();
        assert_eq!(run.addr, "127.0.0.1:7070".parse::<SocketAddr>().unwrap());
        assert_eq!(run.payload, 1u64.to_le_bytes());
        assert_eq!(run.keys, KeyDist::Uniform { keys: 10_000 });
        assert_eq!((run.shape.pipeline, run.shape.threads), (8, 1));
        assert!(run.shard_aware);
    }

    #[test]
    fn payloads_default_by_method_and_parse_from_hex() {
        let run = plan(&["rpc", "--class", "counter", "--method", "get"]).unwrap();
        assert!(run.payload.is_empty());
        let run = plan(&["rpc", "--payload-hex", "0A0b"]).unwrap();
        assert_eq!(run.payload, [10, 11]);
        let run = plan(&["rpc", "--payload-hex", ""]).unwrap();
        assert!(run.payload.is_empty());
        for bad in ["abc", "zz", "0x01"] {
            let err = plan(&["rpc", "--payload-hex", bad]).unwrap_err();
            assert!(err.0.contains("--payload-hex"), "{bad}: {err}");
        }
    }

    #[test]
    fn refuses_what_cannot_run() {
        for (args, says) in [
            (vec!["rpc", "--addr", "192.0.2.1:7070"], "--allow-remote"),
            (vec!["rpc", "--addr", "127.0.0.1"], "port"),
            (vec!["rpc", "--class", ""], "--class"),
            (
                vec!["rpc", "--shard-aware", "--keys", "uniform:20000000"],
                "--shard-aware",
            ),
        ] {
            let err = plan(&args).unwrap_err();
            assert!(err.0.contains(says), "{args:?}: {err}");
        }
        assert!(plan(&["rpc", "--keys", "uniform:20000000"]).is_ok());
    }
}
