//! Runs a checked WebSocket plan: one pinned worker thread per
//! `--threads`, room `r` on thread `r % threads`, started together, their
//! statistics merged at the end. While they run, the main thread only
//! draws the progress line (when stderr is a terminal).

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::Duration;

use super::plan::WsRun;
use super::stats::WsStats;
use super::worker::{LiveCounters, Shared, Worker};
use crate::report::group;
use crate::socket;

/// How often the progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How often the main thread looks at the workers.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// Drives `run` to its end and returns the merged statistics; an error is
/// a failure of this machine (a ring that cannot be set up), not of the
/// target.
pub fn run_ws(run: &WsRun) -> Result<WsStats, String> {
    let threads = run.threads;
    let run = Arc::new(run.clone());
    let shared = Arc::new(Shared::new(threads));
    let live: Vec<Arc<LiveCounters>> = (0..threads).map(|_| Arc::default()).collect();
    // Workers and the main thread meet here once every ring is ready.
    let barrier = Arc::new(Barrier::new(threads + 1));
    let abort = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let mut handles = Vec::with_capacity(threads);
    for index in 0..threads {
        let rooms: Vec<usize> = (index..run.rooms).step_by(threads).collect();
        let cpu = run.cpus.as_ref().map(|cpus| cpus[index]);
        let (run, shared, live) = (
            Arc::clone(&run),
            Arc::clone(&shared),
            Arc::clone(&live[index]),
        );
        let (barrier, abort, ready) = (Arc::clone(&barrier), Arc::clone(&abort), ready_tx.clone());
        let handle = thread::Builder::new()
            .name(format!("loadgen-ws-{index}"))
            .spawn(move || {
                let worker = cpu
                    .map_or(Ok(()), socket::pin_current_thread)
                    .and_then(|()| Worker::new(run, &rooms, shared, live, index))
                    .map_err(|err| format!("worker {index}: {err}"));
                // The main thread waits for this message; if it is gone, so
                // is the run.
                let _ = ready.send(worker.as_ref().map(|_| ()).map_err(Clone::clone));
                drop(ready);
                barrier.wait();
                let worker = worker?;
                if abort.load(Ordering::Relaxed) {
                    return Ok(WsStats::new());
                }
                worker
                    .run()
                    .map_err(|err| format!("worker {index}: io_uring: {err}"))
            })
            .map_err(|err| format!("spawning worker {index}: {err}"))?;
        handles.push(handle);
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
    abort.store(error.is_some(), Ordering::Relaxed);
    barrier.wait();
    if io::stderr().is_terminal() && error.is_none() {
        show_progress(&handles, &live, &shared, &run);
    }
    let mut merged = WsStats::new();
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

/// Redraws one status line on stderr every second until the workers end:
/// clients joined while connecting, then rates.
fn show_progress<T>(
    handles: &[thread::JoinHandle<T>],
    live: &[Arc<LiveCounters>],
    shared: &Shared,
    run: &WsRun,
) {
    let sum = |field: fn(&LiveCounters) -> u64| live.iter().map(|l| field(l)).sum::<u64>();
    let mut last_draw_ns = 0;
    let (mut last_messages, mut last_deliveries) = (0, 0);
    let duration_ns = u64::try_from(run.duration.as_nanos()).unwrap_or(u64::MAX);
    let mut stderr = io::stderr();
    while !handles.iter().all(thread::JoinHandle::is_finished) {
        thread::sleep(POLL_EVERY);
        let now_ns = shared.now_ns();
        let since_ns = now_ns - last_draw_ns;
        if since_ns < PROGRESS_EVERY.as_nanos() as u64 {
            continue;
        }
        let errors = sum(|l| l.errors.load(Ordering::Relaxed));
        let line = match shared.measure_start() {
            None => format!(
                "connecting  {} / {} clients joined  {} errors",
                group(sum(|l| l.joined.load(Ordering::Relaxed))),
                group(run.clients() as u64),
                group(errors)
            ),
            Some(start_ns) if now_ns - start_ns > duration_ns => "closing".to_string(),
            Some(start_ns) => {
                let messages = sum(|l| l.messages.load(Ordering::Relaxed));
                let deliveries = sum(|l| l.deliveries.load(Ordering::Relaxed));
                let secs = since_ns as f64 / 1e9;
                let line = format!(
                    "{:.1}s / {:.1}s  {} msg/s  {} deliveries/s  {} errors",
                    (now_ns - start_ns) as f64 / 1e9,
                    run.duration.as_secs_f64(),
                    group(((messages - last_messages) as f64 / secs).round() as u64),
                    group(((deliveries - last_deliveries) as f64 / secs).round() as u64),
                    group(errors)
                );
                (last_messages, last_deliveries) = (messages, deliveries);
                line
            }
        };
        let _ = write!(stderr, "\r\x1b[K  {line}");
        let _ = stderr.flush();
        last_draw_ns = now_ns;
    }
    // Clears the line so the report starts on a clean one.
    let _ = write!(stderr, "\r\x1b[K");
    let _ = stderr.flush();
}
