//! Checks per second of the thread-safe keyed limiters as threads are
//! added: durin's `SyncKeyedLimiter` beside governor's keyed limiter, the
//! same quota and keys as the `throughput` group of `benches/keyed.rs`
//! (GCRA at 1 per second with bursts of 1,000,000, so every check is
//! admitted; keys drawn at random from 1,000,000 populated ones, each
//! thread its own sequence).
//!
//! Each round runs every thread count for a fixed time, alternating the
//! limiters; the median round is reported, with the median of the rounds'
//! ratios to the first count of the same round. Pin the process to as many
//! CPUs as the largest count (with `taskset`): the threads are not pinned
//! one by one.
//!
//! `cargo run --release -p durin-ratelimit --example thread_scaling -- [THREADS...] [--ms N] [--rounds N]`
//!
//! Prints one tab-separated line per limiter and thread count: limiter,
//! threads, median checks per second, median ratio, the rounds' figures.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use durin_ratelimit::{CoarseClock, Gcra, SyncKeyedLimiter};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

const KEYS: u64 = 1_000_000;
const DRAWS: usize = 1 << 16;
const CLOCK_REFRESH_EVERY: usize = 256;
/// Checks between two looks at the stop flag.
const BATCH: usize = 1_024;

fn main() {
    let mut threads = Vec::new();
    let mut run_ms = 2_000u64;
    let mut rounds = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ms" => run_ms = number(args.next()),
            "--rounds" => rounds = number(args.next()) as usize,
            count => threads.push(number(Some(count.to_string())) as usize),
        }
    }
    if threads.is_empty() {
        threads = vec![1, 2];
    }
    let run = Duration::from_millis(run_ms);
    let durin: SyncKeyedLimiter<u64, Gcra> = SyncKeyedLimiter::new(
        Gcra::new(1, 1_000, 1_000_000).expect("valid quota"),
        2 * KEYS as usize,
    )
    .expect("valid cap");
    let quota = Quota::per_second(NonZeroU32::MIN).allow_burst(NonZeroU32::new(1_000_000).unwrap());
    let governor: DefaultKeyedRateLimiter<u64> = RateLimiter::keyed(quota);
    let start_ms = CoarseClock::new().now_ms();
    for key in 0..KEYS {
        let _ = durin.check(&key, start_ms, 1);
        let _ = governor.check_key(&key);
    }
    let max_threads = threads.iter().copied().max().unwrap_or(1);
    let keys: Vec<Vec<u64>> = (0..max_threads as u64).map(draws).collect();

    // Rounds outside, thread counts inside: a slow spell of a shared
    // machine then falls on every count of a round alike, and each round
    // gives a ratio of its own.
    let mut durin_rounds = vec![Vec::new(); threads.len()];
    let mut governor_rounds = vec![Vec::new(); threads.len()];
    for _ in 0..rounds {
        for (slot, &count) in threads.iter().enumerate() {
            durin_rounds[slot].push(measure(count, run, &keys, |keys| {
                let mut clock = CoarseClock::new();
                let mut index = 0usize;
                let durin = &durin;
                move || {
                    for _ in 0..BATCH {
                        index = index.wrapping_add(1);
                        if index & (CLOCK_REFRESH_EVERY - 1) == 0 {
                            clock.refresh();
                        }
                        black_box(durin.check(&keys[index % DRAWS], clock.now_ms(), 1).allowed);
                    }
                }
            }));
            governor_rounds[slot].push(measure(count, run, &keys, |keys| {
                let mut index = 0usize;
                let governor = &governor;
                move || {
                    for _ in 0..BATCH {
                        index = index.wrapping_add(1);
                        black_box(governor.check_key(&keys[index % DRAWS]).is_ok());
                    }
                }
            }));
        }
    }
    for (name, per_count) in [
        ("durin_sync_keyed", &durin_rounds),
        ("governor_keyed", &governor_rounds),
    ] {
        for (slot, &count) in threads.iter().enumerate() {
            report(name, count, &per_count[slot], &per_count[0]);
        }
    }
}

/// Runs `count` threads, each calling its worker (one batch per call) for
/// `run`; returns checks per second over all threads.
fn measure<'a, M, W>(count: usize, run: Duration, keys: &'a [Vec<u64>], make: M) -> f64
where
    M: Fn(&'a [u64]) -> W + Sync,
    W: FnMut(),
{
    let stop = AtomicBool::new(false);
    let batches = AtomicU64::new(0);
    let barrier = Barrier::new(count + 1);
    let elapsed = std::thread::scope(|scope| {
        for keys in keys.iter().take(count) {
            let (stop, batches, barrier, make) = (&stop, &batches, &barrier, &make);
            scope.spawn(move || {
                let mut work = make(keys);
                let mut done = 0u64;
                barrier.wait();
                while !stop.load(Ordering::Relaxed) {
                    work();
                    done += 1;
                }
                batches.fetch_add(done, Ordering::Relaxed);
            });
        }
        barrier.wait();
        let start = Instant::now();
        std::thread::sleep(run);
        stop.store(true, Ordering::Relaxed);
        start.elapsed()
    });
    (batches.into_inner() * BATCH as u64) as f64 / elapsed.as_secs_f64()
}

/// Prints the median round, the rounds, and the median of the rounds'
/// ratios to the same round of the first thread count.
fn report(name: &str, threads: usize, rounds: &[f64], first: &[f64]) {
    let figures: Vec<String> = rounds.iter().map(|r| format!("{:.2}", r / 1e6)).collect();
    let mut ratios: Vec<f64> = rounds.iter().zip(first).map(|(r, f)| r / f).collect();
    let mut sorted = rounds.to_vec();
    sorted.sort_by(f64::total_cmp);
    ratios.sort_by(f64::total_cmp);
    println!(
        "{name}\t{threads}\t{:.2} M/s\t×{:.2} (median ratio of rounds)\t{}",
        sorted[sorted.len() / 2] / 1e6,
        ratios[ratios.len() / 2],
        figures.join(" ")
    );
}

/// `DRAWS` keys in `0..KEYS` from a seeded xorshift, one sequence per thread.
fn draws(thread: u64) -> Vec<u64> {
    let mut state = (0x2545_F491_4F6C_DD1D + thread) | 1;
    (0..DRAWS)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % KEYS
        })
        .collect()
}

fn number(arg: Option<String>) -> u64 {
    arg.and_then(|a| a.parse().ok())
        .expect("thread counts and option values are numbers")
}
