//! The command line: one subcommand per protocol, sharing the flags that
//! shape any load (connections, duration, rate, threads, keys, output).
//!
//! ```text
//! loadgen http --url 'http://127.0.0.1:8080/ratelimit/{key}' --keys uniform:10000 \
//!     --connections 64 --duration 10s [--rate N] [--method POST] [--body ...] \
//!     [--pipeline N] [--json]
//! loadgen rpc --addr 127.0.0.1:7070 --class ratelimit --method check \
//!     --keys uniform:10000 [--payload-hex ...] [--pipeline N] [--shard-aware] ...
//! loadgen ws --url 'ws://127.0.0.1:8080/chat/{room}/websocket' --rooms R \
//!     --clients-per-room N --senders all|one|none --duration 10s [--rate N] \
//!     [--room-prefix r] [--source-ips N] [--timeout 5s] [--connect-timeout 60s] [--json]
//! ```
//!
//! `ws` is chat fan-out: `{room}` becomes each room's name and every client
//! adds `name=c<i>` to the query; every client of a room runs on one thread.
//! Once all have joined, senders send (closed loop: the next message once
//! the last reached the whole room; `--rate`: open loop over all senders)
//! and every delivery is timed; `--senders none` holds the connections idle.
//! Up to 100,000 clients, bound round-robin to 127.0.0.1..127.0.0.N
//! (`--source-ips`, by default 20,000 clients per address). See
//! [`crate::ws`].
//!
//! Parsing turns flags into an [`HttpRun`] (or an RPC run, see
//! [`crate::rpc::plan`], or a WebSocket run, see [`crate::ws::plan`]):
//! every value checked, the target resolved and confirmed to be this
//! machine, the request template built.
//! Anything wrong is a [`UsageError`], which the binary reports with exit
//! code 2 before a single connection is opened.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::duration;
use crate::keys::KeyDist;
use crate::request::{RequestSpec, RequestTemplate, REQUEST_BYTES_MAX};
use crate::socket;
use crate::target::Target;
use crate::worker::CONNS_PER_WORKER_MAX;
use crate::ws::WsArgs;

/// Most connections one run opens.
pub const CONNECTIONS_MAX: u32 = 100_000;
/// Most requests in flight per connection.
pub const PIPELINE_MAX: u32 = 1024;
/// Highest `--rate`, in requests per second.
pub const RATE_MAX: f64 = 100_000_000.0;
/// Most request bytes one connection may have in flight (`--pipeline`
/// times the request size); each of its two send buffers may hold this much.
pub const PIPELINE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Descriptors kept back for the process itself (stdio, rings, ...).
const SPARE_FDS: u64 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "durin's load generator: thread-per-core io_uring load, open or closed loop, HDR latencies",
    long_about = "durin's load generator: thread-per-core io_uring load, open or closed loop, \
                  HDR latencies.\n\nEvery run has a duration and stops by itself, and only \
                  targets this machine unless --allow-remote is given."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// HTTP/1.1 requests over kept-alive connections.
    Http(Box<HttpArgs>),
    /// durin's binary RPC: calls of one class's method, one object per key.
    Rpc(Box<RpcArgs>),
    /// WebSocket chat rooms: fan-out of timed messages, or idle clients.
    Ws(Box<WsArgs>),
}

#[derive(Debug, Args)]
pub struct HttpArgs {
    /// Target URL; each `{key}` in its path is replaced per request from
    /// --keys, e.g. 'http://127.0.0.1:8080/ratelimit/{key}'.
    #[arg(long)]
    pub url: String,
    /// Request method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Request body, sent with a Content-Length.
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Read the request body from this file.
    #[arg(long)]
    pub body_file: Option<PathBuf>,
    /// Extra request header, `Name: value`; repeatable.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// Requests in flight per connection (HTTP/1.1 pipelining).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(PIPELINE_MAX)))]
    pub pipeline: u32,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Debug, Args)]
pub struct RpcArgs {
    /// The server's RPC address, `host:port` (its shared RPC port).
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub addr: String,
    /// The class to call; each request's object is the key's name in it.
    #[arg(long, default_value = "ratelimit")]
    pub class: String,
    /// The method to call.
    #[arg(long, default_value = "check")]
    pub method: String,
    /// The request payload as hex digits [default: for ratelimit.check a
    /// cost of 1 (8 bytes, little-endian); otherwise empty].
    #[arg(long)]
    pub payload_hex: Option<String>,
    /// Requests in flight per connection, matched to responses by request
    /// ID (the server may answer them in any order).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(PIPELINE_MAX)))]
    pub pipeline: u32,
    /// Connect each connection to one shard's own port (from the server's
    /// hello) and send it only keys that shard owns, so no request crosses
    /// cores on the server.
    #[arg(long)]
    pub shard_aware: bool,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// Flags every protocol shares.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Key distribution for the URL's `{key}` (HTTP) or the object's name
    /// (RPC): uniform:K (keys `k0`..`k<K-1>`), zipf:K:S (`k0` most popular,
    /// exponent S), seq:K (`k0`..`k<K-1>` in order, each once per K
    /// requests) or hot (the one key `hot`) [default: hot].
    #[arg(long)]
    pub keys: Option<KeyDist>,
    /// Connections, spread evenly over the threads.
    #[arg(short = 'c', long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=i64::from(CONNECTIONS_MAX)))]
    pub connections: u32,
    /// How long to run, e.g. 10s, 500ms, 2m (at most 24h).
    #[arg(short = 'd', long, default_value = "10s", value_parser = duration::parse)]
    pub duration: Duration,
    /// Open loop at this many requests per second in total; latency is then
    /// measured from each request's intended send time (coordinated-omission
    /// correction). Without it, closed loop: each connection sends its next
    /// request when a response arrives.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// A request unanswered this long fails its connection (counted as a
    /// timeout); also the limit for connecting.
    #[arg(long, default_value = "5s", value_parser = duration::parse)]
    pub timeout: Duration,
    /// Worker threads, each with its own io_uring ring [default: the number
    /// of --cpus, else half the available CPUs, at least 1].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// CPUs to pin the worker threads to, e.g. `1` or `2-3,6`; thread i
    /// runs on the i-th CPU listed (round-robin when there are more threads).
    #[arg(long, value_parser = parse_cpus)]
    pub cpus: Option<CpuList>,
    /// Seed for the key draws, to repeat a run's key sequence.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print one JSON summary on stdout instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// Allow targets other than this machine (127.0.0.0/8, ::1, localhost).
    #[arg(long)]
    pub allow_remote: bool,
}

/// A parsed `--cpus` value, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

fn parse_cpus(text: &str) -> Result<CpuList, String> {
    socket::parse_cpu_list(text).map(CpuList)
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 && rate <= RATE_MAX => Ok(rate),
        _ => Err(format!(
            "`{text}` is not a rate: requests per second, above 0 and at most {RATE_MAX}"
        )),
    }
}

/// A flag combination that cannot run; exit code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for UsageError {
    fn from(message: String) -> Self {
        UsageError(message)
    }
}

/// Everything an HTTP run needs, checked.
#[derive(Debug, Clone)]
pub struct HttpRun {
    pub url: String,
    pub method: String,
    pub addr: SocketAddr,
    pub template: RequestTemplate,
    pub keys: KeyDist,
    pub connections: usize,
    pub threads: usize,
    /// CPU of each thread, when pinned.
    pub cpus: Option<Vec<usize>>,
    pub pipeline: usize,
    pub rate: Option<f64>,
    pub duration: Duration,
    pub timeout: Duration,
    pub seed: u64,
    pub json: bool,
    /// Notes for the user that do not stop the run.
    pub warnings: Vec<String>,
}

impl HttpArgs {
    /// Checks the flags and prepares the run; resolves the target.
    pub fn plan(&self) -> Result<HttpRun, UsageError> {
        let load = &self.load;
        let target = Target::parse(&self.url)?;
        if !load.allow_remote {
            target.check_loopback()?;
        }
        let addr = target.resolve()?;
        let mut warnings = Vec::new();
        if load.keys.is_some() && !target.has_key() {
            warnings.push("--keys has no effect: the URL has no {key}".to_string());
        }
        let body = match (&self.body, &self.body_file) {
            (Some(body), _) => body.clone().into_bytes(),
            (None, Some(path)) => read_body(path)?,
            (None, None) => Vec::new(),
        };
        let spec = RequestSpec {
            method: self.method.clone(),
            headers: self.headers.clone(),
            body,
        };
        let template = RequestTemplate::new(&target, &spec)?;
        let pipeline_bytes = template.fixed_bytes() * self.pipeline as usize;
        if pipeline_bytes > PIPELINE_BYTES_MAX {
            return Err(UsageError(format!(
                "--pipeline {} of {}-byte requests is {pipeline_bytes} bytes in flight per \
                 connection, more than the {PIPELINE_BYTES_MAX} allowed",
                self.pipeline,
                template.fixed_bytes()
            )));
        }
        let connections = self.load.connections as usize;
        let (threads, cpus) = plan_threads(load, connections)?;
        check_open_files(connections)?;
        Ok(HttpRun {
            url: self.url.clone(),
            method: self.method.clone(),
            addr,
            template,
            keys: load.keys.unwrap_or(KeyDist::Hot),
            connections,
            threads,
            cpus,
            pipeline: self.pipeline as usize,
            rate: load.rate,
            duration: load.duration,
            timeout: load.timeout,
            seed: load.seed.unwrap_or_else(time_seed),
            json: load.json,
            warnings,
        })
    }
}

fn read_body(path: &PathBuf) -> Result<Vec<u8>, UsageError> {
    let len = std::fs::metadata(path)
        .map_err(|err| format!("--body-file {}: {err}", path.display()))?
        .len();
    if len > REQUEST_BYTES_MAX as u64 {
        return Err(UsageError(format!(
            "--body-file {} is {len} bytes, more than the {REQUEST_BYTES_MAX} allowed",
            path.display()
        )));
    }
    std::fs::read(path).map_err(|err| UsageError(format!("--body-file {}: {err}", path.display())))
}

/// The number of threads and, when pinned, the CPU of each.
pub(crate) fn plan_threads(
    load: &LoadArgs,
    connections: usize,
) -> Result<(usize, Option<Vec<usize>>), UsageError> {
    let available = std::thread::available_parallelism().map_or(1, usize::from);
    let requested = match (load.threads, &load.cpus) {
        (Some(threads), _) => usize::from(threads),
        (None, Some(CpuList(cpus))) => cpus.len(),
        (None, None) => (available / 2).max(1),
    };
    // A thread without a connection would have nothing to do.
    let threads = requested.min(connections);
    let per_thread = connections.div_ceil(threads);
    if per_thread > CONNS_PER_WORKER_MAX {
        return Err(UsageError(format!(
            "{connections} connections need at least {} threads ({CONNS_PER_WORKER_MAX} per \
             thread); raise --threads",
            connections.div_ceil(CONNS_PER_WORKER_MAX)
        )));
    }
    let cpus = load
        .cpus
        .as_ref()
        .map(|CpuList(cpus)| (0..threads).map(|i| cpus[i % cpus.len()]).collect());
    Ok((threads, cpus))
}

pub(crate) fn check_open_files(connections: usize) -> Result<(), UsageError> {
    let limit = socket::raise_open_file_limit();
    if connections as u64 + SPARE_FDS > limit {
        return Err(UsageError(format!(
            "{connections} connections need more open files than the limit of {limit}; \
             raise it (ulimit -n) or use fewer --connections"
        )));
    }
    Ok(())
}

pub(crate) fn time_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("loadgen").chain(args.iter().copied()))
    }

    fn http(args: &[&str]) -> HttpArgs {
        match parse(args).expect("valid flags").command {
            Command::Http(http) => *http,
            _ => panic!("not http"),
        }
    }

    #[test]
    fn reads_the_issue_example() {
        let args = http(&[
            "http",
            "--url",
            "http://127.0.0.1:8080/ratelimit/{key}",
            "--keys",
            "uniform:10000",
            "--connections",
            "64",
            "--duration",
            "10s",
            "--rate",
            "5000",
            "--method",
            "POST",
            "--body",
            "x",
            "--pipeline",
            "4",
            "--json",
            "--threads",
            "2",
        ]);
        let run = args.plan().unwrap();
        assert_eq!(run.keys, KeyDist::Uniform { keys: 10_000 });
        assert_eq!(run.connections, 64);
        assert_eq!(run.duration, Duration::from_secs(10));
        assert_eq!(run.rate, Some(5000.0));
        assert_eq!(run.pipeline, 4);
        assert_eq!(run.threads, 2);
        assert!(run.json);
        assert_eq!(run.addr, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
        assert!(run.warnings.is_empty());
    }

    #[test]
    fn refuses_bad_flags_at_parse_time() {
        let url = "http://127.0.0.1:1/";
        for bad in [
            vec!["http"],
            vec!["http", "--url", url, "--duration", "10"],
            vec!["http", "--url", url, "--connections", "0"],
            vec!["http", "--url", url, "--pipeline", "0"],
            vec!["http", "--url", url, "--rate", "0"],
            vec!["http", "--url", url, "--rate", "fast"],
            vec!["http", "--url", url, "--keys", "zipf:10"],
            vec!["http", "--url", url, "--cpus", "3-1"],
            vec!["http", "--url", url, "--body", "a", "--body-file", "/x"],
            vec!["bogus"],
        ] {
            let err = parse(&bad).expect_err(&format!("{bad:?} should be refused"));
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn refuses_remote_targets_unless_allowed() {
        let err = http(&["http", "--url", "http://192.0.2.1:80/"])
            .plan()
            .unwrap_err();
        assert!(err.0.contains("--allow-remote"), "{err}");
        let allowed = http(&["http", "--url", "http://192.0.2.1:80/", "--allow-remote"]);
        assert_eq!(
            allowed.plan().unwrap().addr,
            "192.0.2.1:80".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn threads_follow_cpus_and_never_outnumber_connections() {
        let url = "http://127.0.0.1:1/";
        let run = http(&["http", "--url", url, "--cpus", "0,1", "-c", "8"])
            .plan()
            .unwrap();
        assert_eq!((run.threads, run.cpus), (2, Some(vec![0, 1])));
        let run = http(&["http", "--url", url, "--threads", "3", "--cpus", "1"])
            .plan()
            .unwrap();
        assert_eq!(run.cpus, Some(vec![1, 1, 1]));
        let run = http(&["http", "--url", url, "--threads", "8", "-c", "2"])
            .plan()
            .unwrap();
        assert_eq!(run.threads, 2);
        let err = http(&["http", "--url", url, "--threads", "1", "-c", "20000"])
            .plan()
            .unwrap_err();
        assert!(err.0.contains("--threads"), "{err}");
    }

    #[test]
    fn warns_when_keys_have_nowhere_to_go() {
        let run = http(&["http", "--url", "http://localhost:1/", "--keys", "hot"])
            .plan()
            .unwrap();
        assert_eq!(run.warnings.len(), 1);
    }

    #[test]
    fn ws_has_its_own_flags() {
        let cli = parse(&["ws", "--url", "ws://127.0.0.1:1/", "--rooms", "2"]).unwrap();
        assert!(matches!(cli.command, Command::Ws(_)));
        assert!(parse(&["ws", "--url", "ws://127.0.0.1:1/", "-c", "10"]).is_err());
        assert!(parse(&["ws", "--url", "ws://127.0.0.1:1/", "--senders", "some"]).is_err());
    }
}
