//! The ceiling server: the least an io_uring HTTP/1.1 server can do.
//!
//! It answers every request with the same small `200 ok` and does nothing
//! else, so its throughput is the upper bound of this machine's event loop.
//! The end-to-end benchmarks run it beside durin: durin's numbers read as a
//! fraction of this one.
//!
//! ```text
//! $ ceiling --listen 127.0.0.1:0 --cores 2
//! ceiling listening on http://127.0.0.1:40123
//! $ wrk -t2 -c64 -d10s http://127.0.0.1:40123/
//! ```
//!
//! One pinned thread per core, each with its own `SO_REUSEPORT` listener and
//! its own ring (see `worker`); threads share nothing.

mod conn;
mod http;
mod socket;
mod worker;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;

use clap::{CommandFactory, Parser};

#[derive(Debug, Parser)]
#[command(
    name = "ceiling",
    about = "A minimal io_uring HTTP/1.1 server: the loop's upper bound"
)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Worker threads, one per core [default: the CPUs listed in --cpus, or
    /// the available parallelism].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    cores: Option<u16>,
    /// CPUs to pin to, e.g. `0,2-5`; thread i runs on the i-th CPU listed.
    #[arg(long, value_parser = parse_cpu_list, conflicts_with = "no_pin")]
    cpus: Option<CpuList>,
    /// Do not pin threads to CPUs.
    #[arg(long)]
    no_pin: bool,
}

/// A parsed `--cpus` value, in the order given.
#[derive(Debug, Clone)]
struct CpuList(Vec<usize>);

fn parse_cpu_list(text: &str) -> Result<CpuList, String> {
    let mut cpus = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let (first, last) = match part.split_once('-') {
            Some((first, last)) => (parse_cpu(first)?, parse_cpu(last)?),
            None => (parse_cpu(part)?, parse_cpu(part)?),
        };
        if first > last {
            return Err(format!("range `{part}` runs backwards"));
        }
        cpus.extend(first..=last);
    }
    Ok(CpuList(cpus))
}

fn parse_cpu(text: &str) -> Result<usize, String> {
    let cpu: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a CPU number"))?;
    // CPU_SET cannot name CPUs past the fixed size of cpu_set_t.
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(format!(
            "CPU {cpu} is beyond the {} supported",
            libc::CPU_SETSIZE
        ));
    }
    Ok(cpu)
}

/// The CPU each worker is pinned to, `None` for unpinned.
fn plan_cpus(args: &Args) -> Result<Vec<Option<usize>>, String> {
    if let Some(CpuList(cpus)) = &args.cpus {
        let cores = args.cores.map_or(cpus.len(), usize::from);
        if cores > cpus.len() {
            let message = format!(
                "--cores {cores} needs as many CPUs, but --cpus lists {}",
                cpus.len()
            );
            Args::command()
                .error(clap::error::ErrorKind::ArgumentConflict, message)
                .exit();
        }
        return Ok(cpus[..cores].iter().copied().map(Some).collect());
    }
    let cores = match args.cores {
        Some(cores) => usize::from(cores),
        None => thread::available_parallelism().map_or(1, usize::from),
    };
    if args.no_pin {
        return Ok(vec![None; cores]);
    }
    let allowed = socket::allowed_cpus().map_err(|err| err.to_string())?;
    if allowed.is_empty() {
        return Err("sched_getaffinity returned no CPUs".into());
    }
    // More threads than CPUs share them round-robin.
    Ok((0..cores)
        .map(|i| Some(allowed[i % allowed.len()]))
        .collect())
}

/// Opens one listener per worker on the same port; with port 0 the first
/// listener's port is reused for the rest.
fn open_listeners(addr: SocketAddr, count: usize) -> io::Result<(Vec<OwnedFd>, SocketAddr)> {
    let first = socket::listen(addr)?;
    let bound = socket::local_addr(&first)?;
    let mut listeners = vec![first];
    for _ in 1..count {
        listeners.push(socket::listen(SocketAddr::new(addr.ip(), bound.port()))?);
    }
    Ok((listeners, bound))
}

/// Lets a benchmark hold more sockets than the default soft limit of 1024.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit to fill in and then pass back.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            // Failing leaves the old limit, which only caps connections.
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let cpus = plan_cpus(args)?;
    raise_open_file_limit();
    let (listeners, bound) =
        open_listeners(args.listen, cpus.len()).map_err(|err| err.to_string())?;

    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let mut handles = Vec::with_capacity(cpus.len());
    for (index, (listener, cpu)) in listeners.into_iter().zip(cpus).enumerate() {
        let ready_tx = ready_tx.clone();
        let handle = thread::Builder::new()
            .name(format!("ceiling-{index}"))
            .spawn(move || serve(index, listener, cpu, ready_tx))
            .map_err(|err| format!("spawning worker {index}: {err}"))?;
        handles.push(handle);
    }
    drop(ready_tx);
    for _ in 0..handles.len() {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return Err(message),
            Err(_) => return Err("a worker exited during startup".into()),
        }
    }

    let shown = socket::display_addr(args.listen, bound);
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "ceiling listening on http://{shown}")
        .and_then(|()| stdout.flush())
        .map_err(|err| format!("writing to stdout: {err}"))?;
    drop(stdout);

    for handle in handles {
        // A worker only returns when its ring fails; it has said why.
        if handle.join().is_err() {
            return Err("a worker panicked".into());
        }
    }
    Err("every worker stopped".into())
}

/// A worker thread: pin, set up the ring, report ready, serve forever.
fn serve(
    index: usize,
    listener: OwnedFd,
    cpu: Option<usize>,
    ready: mpsc::Sender<Result<(), String>>,
) {
    let started = cpu
        .map_or(Ok(()), socket::pin_current_thread)
        .and_then(|()| worker::Worker::new(listener));
    let worker = match started {
        Ok(worker) => worker,
        Err(err) => {
            // The main thread may already be gone; nothing else to tell.
            let _ = ready.send(Err(format!("worker {index}: {err}")));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    drop(ready);
    if let Err(err) = worker.run() {
        eprintln!("ceiling: worker {index}: {err}");
        std::process::exit(1);
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ceiling: {message}");
            ExitCode::FAILURE
        }
    }
}
