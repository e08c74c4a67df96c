//! Runs a checked plan: one pinned worker thread per `--threads`, started
//! together, their statistics merged when the duration is up.
//!
//! Connection `g` of the run goes to thread `g % threads`, so each thread's
//! share of an open-loop schedule is itself evenly spaced. Within a thread,
//! connection `g` goes to target `g % targets` (one target, except for a
//! shard-aware RPC run, which has one per shard). While the
//! workers run, the main thread only draws the progress line (when stderr
//! is a terminal) from counters each worker publishes once per loop turn.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::cli::HttpRun;
use crate::keys::KeySampler;
use crate::protocol::{Http, Protocol};
use crate::report::{group, RunInfo};
use crate::socket;
use crate::stats::{Stats, StatusKind};
use crate::worker::{LiveCounters, TargetPlan, Worker, WorkerPlan};

/// How often the progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How often the main thread looks at the workers.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// What the summary says about an HTTP run.
pub fn http_info(run: &HttpRun) -> RunInfo {
    RunInfo {
        mode: "http",
        target: run.url.clone(),
        method: run.method.clone(),
        rpc: None,
        keys: run.keys.to_string(),
        connections: run.connections,
        threads: run.threads,
        pipeline: run.pipeline,
        rate: run.rate,
        duration_s: run.duration.as_secs_f64(),
    }
}

/// Drives `run` to its end and returns the merged statistics; an error is
/// a failure of this machine (a ring that cannot be set up), not of the
/// target.
pub fn run_http(run: &HttpRun) -> Result<Stats, String> {
    let shape = RunShape {
        connections: run.connections,
        threads: run.threads,
        cpus: run.cpus.clone(),
        pipeline: run.pipeline,
        rate: run.rate,
        duration: run.duration,
        timeout: run.timeout,
    };
    let protocol = Http {
        template: run.template.clone(),
    };
    run_workers(&shape, |index| {
        (
            protocol.clone(),
            vec![TargetPlan {
                addr: run.addr,
                keys: KeySampler::new(&run.keys, run.seed, index as u64),
            }],
        )
    })
}

/// The shape of a run, whatever its protocol.
#[derive(Debug, Clone)]
pub struct RunShape {
    pub connections: usize,
    pub threads: usize,
    /// CPU of each thread, when pinned.
    pub cpus: Option<Vec<usize>>,
    pub pipeline: usize,
    pub rate: Option<f64>,
    pub duration: Duration,
    pub timeout: Duration,
}

/// Runs `shape` with the protocol and targets `setup` gives each worker
/// (by index) and returns the merged statistics.
pub fn run_workers<P, F>(shape: &RunShape, setup: F) -> Result<Stats, String>
where
    P: Protocol + Send + 'static,
    F: Fn(usize) -> (P, Vec<TargetPlan>),
{
    let threads = shape.threads;
    let mut kind = StatusKind::Http;
    let live: Vec<Arc<LiveCounters>> = (0..threads).map(|_| Arc::default()).collect();
    let start = Arc::new(StartLine {
        // Workers and the main thread meet here once every ring is ready,
        // so that all connections start together.
        barrier: Barrier::new(threads + 1),
        abort: AtomicBool::new(false),
    });
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let mut handles = Vec::with_capacity(threads);
    for index in 0..threads {
        let (protocol, targets) = setup(index);
        kind = protocol.status_kind();
        let plan = WorkerPlan {
            protocol,
            targets,
            conns: (index..shape.connections)
                .step_by(threads)
                .map(|g| g as u64)
                .collect(),
            conns_total: shape.connections as u64,
            pipeline: shape.pipeline,
            rate: shape.rate,
            duration: shape.duration,
            timeout: shape.timeout,
        };
        let cpu = shape.cpus.as_ref().map(|cpus| cpus[index]);
        let live = Arc::clone(&live[index]);
        handles.push(spawn_worker(
            plan,
            cpu,
            index,
            live,
            Arc::clone(&start),
            ready_tx.clone(),
        )?);
    }
    drop(ready_tx);
    let mut error = None;
    for _ in 0..threads {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(message)) => error = error.or(Some(message)),
            Err(_) => error = error.or(Some("a worker died during setup".into())),
        }
    }
    start.abort.store(error.is_some(), Ordering::Relaxed);
    start.barrier.wait();
    if io::stderr().is_terminal() && error.is_none() {
        show_progress(&handles, &live, shape.duration);
    }
    let mut merged = Stats::new(kind);
    for handle in handles {
        match handle.join() {
            Ok(Ok(stats)) => merged.merge(&stats),
            Ok(Err(message)) => error = error.or(Some(message)),
            Err(_) => error = error.or(Some("a worker panicked".into())),
        }
    }
    match error {
        Some(message) => Err(message),
        None => Ok(merged),
    }
}

/// Where the workers wait for each other, and whether they may go.
struct StartLine {
    barrier: Barrier,
    /// A worker failed to set up: the others leave without running.
    abort: AtomicBool,
}

/// Starts worker `index`: it pins itself, sets up its ring, reports on
/// `ready`, waits at the start line and runs.
fn spawn_worker<P: Protocol + Send + 'static>(
    plan: WorkerPlan<P>,
    cpu: Option<usize>,
    index: usize,
    live: Arc<LiveCounters>,
    start: Arc<StartLine>,
    ready: mpsc::Sender<Result<(), String>>,
) -> Result<thread::JoinHandle<Result<Stats, String>>, String> {
    let kind = plan.protocol.status_kind();
    thread::Builder::new()
        .name(format!("loadgen-{index}"))
        .spawn(move || {
            let worker = cpu
                .map_or(Ok(()), socket::pin_current_thread)
                .and_then(|()| Worker::new(plan, live))
                .map_err(|err| format!("worker {index}: {err}"));
            // The main thread waits for this message; if it is gone, so is
            // the run.
            let _ = ready.send(worker.as_ref().map(|_| ()).map_err(Clone::clone));
            drop(ready);
            start.barrier.wait();
            let worker = worker?;
            if start.abort.load(Ordering::Relaxed) {
                return Ok(Stats::new(kind));
            }
            worker
                .run()
                .map_err(|err| format!("worker {index}: io_uring: {err}"))
        })
        .map_err(|err| format!("spawning worker {index}: {err}"))
}

/// Redraws one status line on stderr every second until the workers end.
fn show_progress<T>(
    handles: &[thread::JoinHandle<T>],
    live: &[Arc<LiveCounters>],
    duration: Duration,
) {
    let start = Instant::now();
    let mut last_draw = start;
    let mut last_responses = 0;
    let mut stderr = io::stderr();
    while !handles.iter().all(thread::JoinHandle::is_finished) {
        thread::sleep(POLL_EVERY);
        let now = Instant::now();
        if now - last_draw < PROGRESS_EVERY {
            continue;
        }
        let responses: u64 = live
            .iter()
            .map(|l| l.responses.load(Ordering::Relaxed))
            .sum();
        let errors: u64 = live.iter().map(|l| l.errors.load(Ordering::Relaxed)).sum();
        let rate = (responses - last_responses) as f64 / (now - last_draw).as_secs_f64();
        let elapsed = (now - start).min(duration);
        let _ = write!(
            stderr,
            "\r\x1b[K  {:.1}s / {:.1}s  {} req/s  {} requests  {} errors",
            elapsed.as_secs_f64(),
            duration.as_secs_f64(),
            group(rate.round() as u64),
            group(responses),
            group(errors)
        );
        let _ = stderr.flush();
        last_draw = now;
        last_responses = responses;
    }
    // Clears the line so the report starts on a clean one.
    let _ = write!(stderr, "\r\x1b[K");
    let _ = stderr.flush();
}
