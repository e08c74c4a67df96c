//! The `durin` server binary.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use durin::config::Config;
use durin::server::{ServerBuilder, ServerOptions, SHARDS_MAX};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for invalid flags or configuration, as clap uses.
const EXIT_USAGE: u8 = 2;
/// Exit code when the disk of the data directory is too full to start:
/// sysexits' `EX_TEMPFAIL`, because the same start succeeds once space is
/// freed. (A shard that fails while serving exits with
/// [`durin::server::EXIT_SHARD_STOPPED`], 70.)
const EXIT_DISK_FULL: u8 = 75;

#[derive(Parser)]
#[command(
    name = "durin",
    version,
    about = "A thread-per-core engine for the Durable Objects model"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP on one shard per core.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on (every shard listens on it with SO_REUSEPORT).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Address of the shared binary RPC port (every shard listens on it).
    #[arg(long, default_value = "127.0.0.1:7070")]
    rpc_listen: SocketAddr,
    /// Shard i also takes binary RPC on this port + i (shard-aware clients
    /// connect there) [default: the RPC port + 1; with RPC port 0, a free
    /// range].
    #[arg(long)]
    rpc_shard_base_port: Option<u16>,
    /// Do not serve binary RPC.
    #[arg(long, conflicts_with_all = ["rpc_listen", "rpc_shard_base_port"])]
    no_rpc: bool,
    /// Data directory (created if missing).
    #[arg(long, default_value = "./durin-data")]
    data_dir: PathBuf,
    /// Number of shards, one thread each [default: the CPUs listed by
    /// --cpus, or every available CPU].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=SHARDS_MAX as i64))]
    cores: Option<u32>,
    /// CPUs to pin shards to, e.g. `0,2-5`: shard i runs on the i-th CPU listed.
    #[arg(long, value_parser = parse_cpu_list, conflicts_with = "no_pin")]
    cpus: Option<CpuList>,
    /// Do not pin shards to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// TOML configuration file (server limits, per-class settings).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Storage partitions of a new data directory [default: one per shard].
    /// An existing data directory keeps the count it was created with.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    partitions: Option<u32>,
}

#[derive(Clone, Debug)]
struct CpuList(Vec<usize>);

/// Parses `0,2-5` into [0, 2, 3, 4, 5].
fn parse_cpu_list(text: &str) -> Result<CpuList, String> {
    let mut cpus = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let parse = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{s}` is not a CPU number (expected e.g. 0,2-5)"))
        };
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (parse(lo)?, parse(hi)?);
                if lo > hi {
                    return Err(format!("range `{part}` runs backwards"));
                }
                cpus.extend(lo..=hi);
            }
            None => cpus.push(parse(part)?),
        }
    }
    let mut sorted = cpus.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != cpus.len() {
        return Err("a CPU is listed twice".into());
    }
    if let Some(cpu) = cpus.iter().find(|&&c| c >= libc::CPU_SETSIZE as usize) {
        return Err(format!(
            "CPU {cpu} is beyond the largest CPU number this system supports"
        ));
    }
    Ok(CpuList(cpus))
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is valid, and sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Turns the flags into server options, or says what is wrong.
fn options(args: &ServeArgs) -> Result<ServerOptions, String> {
    let allowed = allowed_cpus();
    let cpus: Option<Vec<usize>> = if args.no_pin {
        None
    } else if let Some(list) = &args.cpus {
        if let Some(cpu) = list.0.iter().find(|c| !allowed.contains(c)) {
            return Err(format!(
                "--cpus: CPU {cpu} is not available to this process (available: {allowed:?})"
            ));
        }
        Some(list.0.clone())
    } else {
        Some(allowed.clone())
    };
    let shards = match (args.cores, &cpus) {
        (Some(n), Some(list)) if n as usize > list.len() => {
            let hint = if args.cpus.is_some() {
                "listed in --cpus"
            } else {
                "available; pass --no-pin"
            };
            return Err(format!(
                "--cores {n} needs {n} CPUs but only {} are {hint}",
                list.len()
            ));
        }
        (Some(n), _) => n as usize,
        (None, Some(list)) => list.len().max(1),
        (None, None) => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let rpc_port = args.rpc_listen.port();
    let rpc_shard_base_port = match args.rpc_shard_base_port {
        Some(port) => port,
        None if rpc_port == 0 => 0,
        None => rpc_port
            .checked_add(1)
            .ok_or("--rpc-listen: no port after it for the shards")?,
    };
    if rpc_shard_base_port != 0 && usize::from(rpc_shard_base_port) + shards > 65536 {
        return Err(format!(
            "--rpc-shard-base-port {rpc_shard_base_port}: {shards} shards run past port 65535"
        ));
    }
    Ok(ServerOptions {
        listen: args.listen,
        rpc_listen: (!args.no_rpc).then_some(args.rpc_listen),
        rpc_shard_base_port,
        data_dir: args.data_dir.clone(),
        shards,
        cpus: cpus.map(|c| c.into_iter().take(shards).collect()),
        partitions: args.partitions,
    })
}

/// Logs warnings and errors to stderr; `DURIN_LOG=debug` shows more.
struct StderrLogger(log::LevelFilter);

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.0
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("durin: {}: {}", record.level(), record.args());
        }
    }
    fn flush(&self) {}
}

fn init_logging() {
    let level = match std::env::var("DURIN_LOG").as_deref() {
        Ok("debug") => log::LevelFilter::Debug,
        Ok("info") => log::LevelFilter::Info,
        Ok("error") => log::LevelFilter::Error,
        _ => log::LevelFilter::Warn,
    };
    let logger = Box::leak(Box::new(StderrLogger(level)));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

/// Turns transparent huge pages off for this process. mimalloc advises
/// huge pages on its heap; with them, the 4 KiB pages it gives back after
/// a million objects left memory stay resident inside 2 MiB pages, and
/// khugepaged collapses partly freed ranges back into huge pages while the
/// server idles, so RSS crept up with nothing running. The flag covers the
/// heap already mapped too. A kernel without the call keeps THP; that is
/// only a matter of memory, so it is logged, not fatal.
fn disable_transparent_huge_pages() {
    // SAFETY: prctl with integer arguments only.
    let result = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if result != 0 {
        log::warn!(
            "could not turn transparent huge pages off: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Has mimalloc take back, on the calling thread's heap, blocks other
/// threads freed, and return empty pages to the OS. An idle applier thread
/// runs it: fjall's flush thread freed the memtable entries it had
/// allocated, and without this they stayed resident.
fn collect_freed_memory() {
    // SAFETY: mi_collect takes no pointers and may run on any thread.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// Blocks SIGTERM and SIGINT in this thread, and so in every thread it
/// starts afterwards; [`wait_for_stop_signal`] then takes them.
fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: signal-set calls on a local set; pthread_sigmask on the
    // calling thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits for SIGTERM or SIGINT.
fn wait_for_stop_signal(set: &libc::sigset_t) -> i32 {
    let mut signal = 0;
    // SAFETY: sigwait on a set of blocked signals, writing a local int.
    while unsafe { libc::sigwait(set, &mut signal) } != 0 {}
    signal
}

fn serve(args: ServeArgs) -> ExitCode {
    let stop_signals = block_stop_signals();
    let options = match options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let config = match &args.config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        None => Config::default(),
    };
    if !config.server.transparent_huge_pages {
        disable_transparent_huge_pages();
    }
    let running = match ServerBuilder::new()
        .idle_hook(collect_freed_memory)
        .start(options, config)
    {
        Ok(r) => r,
        Err(e @ durin::server::ServerError::Config(_))
        | Err(e @ durin::server::ServerError::Options(_)) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
        Err(durin::server::ServerError::Storage(e)) if e.is_disk_full() => {
            eprintln!("error: {}", disk_full_text(&args.data_dir, &e));
            return ExitCode::from(EXIT_DISK_FULL);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    if let Some((rpc, base)) = running.rpc_addr() {
        let last = usize::from(base) + running.shards() - 1;
        let _ = writeln!(
            stdout,
            "durin rpc listening on {rpc}, shard ports {base}-{last}"
        );
    }
    let _ = writeln!(stdout, "durin listening on http://{}", running.addr());
    let _ = stdout.flush();
    let signal = wait_for_stop_signal(&stop_signals);
    log::warn!("signal {signal}: stopping (connections get shutdown_timeout_ms to finish)");
    running.stop();
    running.wait();
    ExitCode::SUCCESS
}

/// The one line a start on a full disk prints: the check's own message,
/// or, when a write failed with `ENOSPC` part way through the start, what
/// failed after a plain statement of why.
fn disk_full_text(data_dir: &std::path::Path, e: &durin_storage::Error) -> String {
    match e {
        durin_storage::Error::DiskFull { .. } => e.to_string(),
        other => format!(
            "the disk is full: the filesystem of {} ran out of space while starting ({other}); \
             free space or enlarge it, then start again",
            data_dir.display()
        ),
    }
}

fn main() -> ExitCode {
    init_logging();
    match Cli::parse().command {
        Command::Serve(args) => serve(args),
    }
}
