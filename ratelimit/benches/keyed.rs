//! durin's keyed limiters beside governor's, in one run, on the same keys
//! and the same quota: GCRA at 1 per second per key with bursts of
//! 1,000,000, so that within a run every check is admitted and every key
//! stays tracked; both sides take their steady-state path, a hit on a known
//! key.
//!
//! - `check_one_thread/*`: ns per check on one thread. The keyed limiters
//!   check keys drawn at random from a populated key space of 10,000 or
//!   1,000,000 keys; the direct ones check a single state. durin's side
//!   reads its clock once per 256 checks through `CoarseClock` (its intended
//!   use); governor reads its own clock on every check, as it always does.
//! - `throughput/*`: checks per second of the shared limiters at 1 and 2
//!   threads (or the counts listed in `DURIN_BENCH_THREADS`, such as
//!   `1,2,4,8`), each thread drawing keys from the same space of 1,000,000;
//!   durin's with its default split into shards (8 per available CPU).
//!
//! `cargo bench -p durin-ratelimit --bench keyed`; PERF.md has the results.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use durin_ratelimit::{CoarseClock, Gcra, GcraState, KeyedLimiter, SyncKeyedLimiter};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

const RATE_PER_S: u32 = 1;
const BURST: u32 = 1_000_000;
/// Keys drawn per thread, cycled through; a power of two.
const DRAWS: usize = 1 << 16;
/// Checks between two reads of durin's coarse clock; a power of two.
const CLOCK_REFRESH_EVERY: usize = 256;

fn gcra() -> Gcra {
    Gcra::new(u64::from(RATE_PER_S), 1_000, u64::from(BURST)).expect("valid quota")
}

fn quota() -> Quota {
    let rate = NonZeroU32::new(RATE_PER_S).expect("non-zero rate");
    let burst = NonZeroU32::new(BURST).expect("non-zero burst");
    Quota::per_second(rate).allow_burst(burst)
}

/// `DRAWS` keys in `0..key_count`, from a seeded xorshift.
fn draws(key_count: u64, seed: u64) -> Vec<u64> {
    let mut state = seed | 1;
    (0..DRAWS)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % key_count
        })
        .collect()
}

fn one_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("check_one_thread");
    group.throughput(Throughput::Elements(1));

    let gcra = gcra();
    group.bench_function("durin_direct", |b| {
        let mut state = GcraState::default();
        let mut clock = CoarseClock::new();
        let mut count = 0usize;
        b.iter(|| {
            count += 1;
            if count & (CLOCK_REFRESH_EVERY - 1) == 0 {
                clock.refresh();
            }
            gcra.check(black_box(&mut state), clock.now_ms(), 1)
        });
    });
    group.bench_function("governor_direct", |b| {
        let limiter: DefaultDirectRateLimiter = RateLimiter::direct(quota());
        b.iter(|| black_box(&limiter).check());
    });

    for key_count in [10_000u64, 1_000_000] {
        let keys = draws(key_count, 0x9E37_79B9_7F4A_7C15);
        let keys_max = 2 * key_count as usize;
        group.bench_with_input(
            BenchmarkId::new("durin_keyed", key_count),
            &keys,
            |b, keys| {
                let mut limiter: KeyedLimiter<u64, Gcra> =
                    KeyedLimiter::new(gcra, keys_max).expect("valid cap");
                let mut clock = CoarseClock::new();
                for key in 0..key_count {
                    let _ = limiter.check(&key, clock.now_ms(), 1);
                }
                let mut index = 0usize;
                b.iter(|| {
                    index = index.wrapping_add(1);
                    if index & (CLOCK_REFRESH_EVERY - 1) == 0 {
                        clock.refresh();
                    }
                    limiter.check(&keys[index % DRAWS], clock.now_ms(), 1)
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("durin_sync_keyed", key_count),
            &keys,
            |b, keys| {
                let limiter: SyncKeyedLimiter<u64, Gcra> =
                    SyncKeyedLimiter::new(gcra, keys_max).expect("valid cap");
                let mut clock = CoarseClock::new();
                for key in 0..key_count {
                    let _ = limiter.check(&key, clock.now_ms(), 1);
                }
                let mut index = 0usize;
                b.iter(|| {
                    index = index.wrapping_add(1);
                    if index & (CLOCK_REFRESH_EVERY - 1) == 0 {
                        clock.refresh();
                    }
                    limiter.check(&keys[index % DRAWS], clock.now_ms(), 1)
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("governor_keyed", key_count),
            &keys,
            |b, keys| {
                let limiter: DefaultKeyedRateLimiter<u64> = RateLimiter::keyed(quota());
                for key in 0..key_count {
                    let _ = limiter.check_key(&key);
                }
                let mut index = 0usize;
                b.iter(|| {
                    index = index.wrapping_add(1);
                    limiter.check_key(&keys[index % DRAWS]).is_ok()
                });
            },
        );
    }
    group.finish();
}

/// Runs `threads` threads at once, each calling its own `make(thread)`
/// worker `iters` times, and returns the longest thread's time.
fn run_threads<M, W>(threads: usize, iters: u64, make: M) -> Duration
where
    M: Fn(usize) -> W + Sync,
    W: FnMut(),
{
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let barrier = &barrier;
                let make = &make;
                scope.spawn(move || {
                    let mut work = make(thread);
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        work();
                    }
                    start.elapsed()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a bench thread does not panic"))
            .max()
            .unwrap_or_default()
    })
}

fn throughput(c: &mut Criterion) {
    let key_count = 1_000_000u64;
    let thread_counts = thread_counts();
    let keys: Vec<Vec<u64>> = (0..thread_counts.iter().max().copied().unwrap_or(1) as u64)
        .map(|thread| draws(key_count, 0x2545_F491_4F6C_DD1D + thread))
        .collect();
    let keys_max = 2 * key_count as usize;
    let durin: SyncKeyedLimiter<u64, Gcra> =
        SyncKeyedLimiter::new(gcra(), keys_max).expect("valid cap");
    let governor: DefaultKeyedRateLimiter<u64> = RateLimiter::keyed(quota());
    let start_ms = CoarseClock::new().now_ms();
    for key in 0..key_count {
        let _ = durin.check(&key, start_ms, 1);
        let _ = governor.check_key(&key);
    }

    let mut group = c.benchmark_group("throughput");
    for threads in thread_counts {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(BenchmarkId::new("durin_sync_keyed", threads), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, |thread| {
                    // Each thread keeps its own clock, read once per batch.
                    let mut clock = CoarseClock::new();
                    let mut index = 0usize;
                    let (durin, keys) = (&durin, &keys[thread]);
                    move || {
                        index = index.wrapping_add(1);
                        if index & (CLOCK_REFRESH_EVERY - 1) == 0 {
                            clock.refresh();
                        }
                        let key = &keys[index % DRAWS];
                        black_box(durin.check(key, clock.now_ms(), 1).allowed);
                    }
                })
            });
        });
        group.bench_function(BenchmarkId::new("governor_keyed", threads), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, |thread| {
                    let mut index = 0usize;
                    let (governor, keys) = (&governor, &keys[thread]);
                    move || {
                        index = index.wrapping_add(1);
                        black_box(governor.check_key(&keys[index % DRAWS]).is_ok());
                    }
                })
            });
        });
    }
    group.finish();
}

/// The thread counts of the throughput group: `DURIN_BENCH_THREADS`
/// (comma-separated), 1 and 2 by default.
fn thread_counts() -> Vec<usize> {
    match std::env::var("DURIN_BENCH_THREADS") {
        Ok(list) => list
            .split(',')
            .map(|count| {
                count
                    .trim()
                    .parse()
                    .expect("DURIN_BENCH_THREADS lists numbers")
            })
            .filter(|&count| count > 0)
            .collect(),
        Err(_) => vec![1, 2],
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = one_thread, throughput
}
criterion_main!(benches);
