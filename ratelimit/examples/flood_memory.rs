//! Resident memory under a flood of unique keys: durin's keyed limiters with
//! a cap of 1,000,000 keys beside governor's keyed limiter with its default
//! store, each checking 10,000,000 distinct `u64` keys once, at 100 per
//! minute per key with bursts of 100.
//!
//! Each limiter runs in a child process of its own, so that what one leaves
//! on the heap does not count against the next. A child prints its resident
//! memory (`VmRSS` in `/proc/self/status`) before and after the flood and at
//! its peak (`VmHWM`).
//!
//! `cargo run --release -p durin-ratelimit --example flood_memory [-- KEYS]`

use std::num::NonZeroU32;
use std::process::Command;
use std::time::Instant;

use durin_ratelimit::{CoarseClock, Gcra, KeyedLimiter, SyncKeyedLimiter};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

const KEYS_DEFAULT: u64 = 10_000_000;
const KEYS_MAX: usize = 1_000_000;
const LIMIT_PER_MINUTE: u32 = 100;
const CLOCK_REFRESH_EVERY: u64 = 1_024;
const LIMITERS: [&str; 4] = [
    "durin_keyed",
    "durin_keyed_reserved",
    "durin_sync_keyed",
    "governor_keyed",
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let keys = args
        .iter()
        .skip(1)
        .find_map(|arg| arg.parse::<u64>().ok())
        .unwrap_or(KEYS_DEFAULT);
    match args.get(1).map(String::as_str) {
        Some("durin_keyed") => flood_durin(keys, false),
        Some("durin_keyed_reserved") => flood_durin(keys, true),
        Some("durin_sync_keyed") => flood_durin_sync(keys),
        Some("governor_keyed") => flood_governor(keys),
        _ => run_children(keys),
    }
}

fn run_children(keys: u64) {
    let exe = std::env::current_exe().expect("the running example has a path");
    println!(
        "flood of {keys} unique keys, {LIMIT_PER_MINUTE}/min per key; durin's cap: {KEYS_MAX} keys"
    );
    println!(
        "{:<20} {:>12} {:>14} {:>12} {:>10} {:>8} {:>13}",
        "limiter", "rss_before", "rss_after", "rss_peak", "keys_held", "seconds", "cpu_ns/check"
    );
    for limiter in LIMITERS {
        let output = Command::new(&exe)
            .args([limiter, &keys.to_string()])
            .output()
            .expect("the example can run itself");
        assert!(output.status.success(), "{limiter} failed: {output:?}");
        print!("{}", String::from_utf8_lossy(&output.stdout));
    }
}

fn gcra() -> Gcra {
    Gcra::new(
        u64::from(LIMIT_PER_MINUTE),
        60_000,
        u64::from(LIMIT_PER_MINUTE),
    )
    .expect("valid quota")
}

/// durin's single-threaded limiter, growing its table as keys arrive or
/// (`reserved`) allocating it whole before the flood.
fn flood_durin(keys: u64, reserved: bool) {
    let before = Usage::read();
    let mut limiter: KeyedLimiter<u64, Gcra> =
        KeyedLimiter::new(gcra(), KEYS_MAX).expect("valid cap");
    if reserved {
        limiter.reserve_all();
    }
    let mut clock = CoarseClock::new();
    let start = Instant::now();
    for key in 0..keys {
        if key & (CLOCK_REFRESH_EVERY - 1) == 0 {
            clock.refresh();
        }
        std::hint::black_box(limiter.check(&key, clock.now_ms(), 1).allowed);
    }
    let elapsed = start.elapsed();
    let stats = limiter.stats();
    let name = if reserved {
        "durin_keyed_reserved"
    } else {
        "durin_keyed"
    };
    report(name, keys, before, stats.keys_tracked, elapsed);
    assert!(stats.keys_tracked <= KEYS_MAX);
}

fn flood_durin_sync(keys: u64) {
    let before = Usage::read();
    let limiter: SyncKeyedLimiter<u64, Gcra> =
        SyncKeyedLimiter::new(gcra(), KEYS_MAX).expect("valid cap");
    let mut clock = CoarseClock::new();
    let start = Instant::now();
    for key in 0..keys {
        if key & (CLOCK_REFRESH_EVERY - 1) == 0 {
            clock.refresh();
        }
        std::hint::black_box(limiter.check(&key, clock.now_ms(), 1).allowed);
    }
    let elapsed = start.elapsed();
    report("durin_sync_keyed", keys, before, limiter.len(), elapsed);
}

fn flood_governor(keys: u64) {
    let before = Usage::read();
    let rate = NonZeroU32::new(LIMIT_PER_MINUTE).expect("non-zero rate");
    let limiter: DefaultKeyedRateLimiter<u64> =
        RateLimiter::keyed(Quota::per_minute(rate).allow_burst(rate));
    let start = Instant::now();
    for key in 0..keys {
        std::hint::black_box(limiter.check_key(&key).is_ok());
    }
    let elapsed = start.elapsed();
    report("governor_keyed", keys, before, limiter.len(), elapsed);
}

/// Prints one row. The memory is the whole process's; the CPU time is
/// this process's time on a CPU during the flood, which a busy machine does
/// not inflate as it does the wall-clock time.
fn report(limiter: &str, keys: u64, before: Usage, held: usize, elapsed: std::time::Duration) {
    let after = Usage::read();
    println!(
        "{:<20} {:>8.1} MiB {:>10.1} MiB {:>8.1} MiB {:>10} {:>8.2} {:>13.1}",
        limiter,
        mib(before.rss_kib),
        mib(after.rss_kib),
        mib(after.peak_kib),
        held,
        elapsed.as_secs_f64(),
        (after.cpu_ns - before.cpu_ns) as f64 / keys as f64
    );
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Resident and peak resident memory of this process, and its time on a
/// CPU so far.
#[derive(Clone, Copy)]
struct Usage {
    rss_kib: u64,
    peak_kib: u64,
    cpu_ns: u64,
}

impl Usage {
    fn read() -> Usage {
        // The first field of schedstat is the ns this process ran.
        let cpu_ns = std::fs::read_to_string("/proc/self/schedstat")
            .ok()
            .and_then(|line| line.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
                .unwrap_or(0)
        };
        Usage {
            rss_kib: field("VmRSS:"),
            peak_kib: field("VmHWM:"),
            cpu_ns,
        }
    }
}
