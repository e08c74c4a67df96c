//! One rate-limit check with `durin-ratelimit`'s fixed window, the
//! algorithm of durin's seed `ratelimit` class.
//!
//! - `fixed_window/direct`: `FixedWindow::check` on one state, the whole
//!   decision the `ratelimit` object makes per request.
//! - `fixed_window/keyed_u64/10000` and `fixed_window/keyed_str/10000`:
//!   `KeyedLimiter::check` on keys drawn at random from 10,000 keys already
//!   tracked (integer keys, and `key-<n>` strings as an HTTP route would
//!   carry), with the default SipHash-1-3 hasher.
//!
//! The limit is high enough that every check is admitted, so each one
//! takes the steady-state path and updates its state; the time is fixed
//! (`now_ms` passed in), so no clock read is measured.
//!
//! `cargo bench -p bench --bench ratelimit`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use durin_ratelimit::{FixedWindow, FixedWindowState, KeyedLimiter};

/// Admits everything within a run: a billion per minute.
const LIMIT: u64 = 1_000_000_000;
const WINDOW_MS: u64 = 60_000;
const NOW_MS: u64 = 1_700_000_000_000;
const KEYS: usize = 10_000;
/// Keys drawn, cycled through; a power of two.
const DRAWS: usize = 1 << 16;

fn limiter() -> FixedWindow {
    FixedWindow::new(LIMIT, WINDOW_MS).expect("a non-zero limit and window")
}

/// `DRAWS` indices in `0..KEYS`, from a seeded xorshift.
fn draws() -> Vec<usize> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..DRAWS)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % KEYS as u64) as usize
        })
        .collect()
}

fn direct(c: &mut Criterion) {
    let mut group = c.benchmark_group("fixed_window");
    group.throughput(Throughput::Elements(1));
    let window = limiter();
    let mut state = FixedWindowState::default();
    group.bench_function("direct", |b| {
        b.iter(|| window.check(black_box(&mut state), black_box(NOW_MS), 1))
    });
    group.finish();
}

fn keyed(c: &mut Criterion) {
    let mut group = c.benchmark_group("fixed_window");
    group.throughput(Throughput::Elements(1));
    let draws = draws();

    let mut by_number: KeyedLimiter<u64, FixedWindow> =
        KeyedLimiter::new(limiter(), 2 * KEYS).expect("a valid cap");
    for key in 0..KEYS as u64 {
        assert!(by_number.check(&key, NOW_MS, 1).allowed);
    }
    let numbers: Vec<u64> = draws.iter().map(|&i| i as u64).collect();
    let mut index = 0usize;
    group.bench_with_input(BenchmarkId::new("keyed_u64", KEYS), &numbers, |b, keys| {
        b.iter(|| {
            index = (index + 1) & (DRAWS - 1);
            by_number.check(&keys[index], black_box(NOW_MS), 1)
        })
    });

    let mut by_name: KeyedLimiter<String, FixedWindow> =
        KeyedLimiter::new(limiter(), 2 * KEYS).expect("a valid cap");
    let names: Vec<String> = (0..KEYS).map(|i| format!("key-{i}")).collect();
    for name in &names {
        assert!(by_name.check(name.as_str(), NOW_MS, 1).allowed);
    }
    let drawn: Vec<&str> = draws.iter().map(|&i| names[i].as_str()).collect();
    group.bench_with_input(BenchmarkId::new("keyed_str", KEYS), &drawn, |b, keys| {
        b.iter(|| {
            index = (index + 1) & (DRAWS - 1);
            by_name.check(keys[index], black_box(NOW_MS), 1)
        })
    });
    assert_eq!(by_name.len(), KEYS, "every drawn key was already tracked");
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = direct, keyed
}
criterion_main!(benches);
