//! A keyed limiter with a small cap, fed any sequence of keys, costs and
//! clock steps (backwards included): it never tracks more keys than its cap;
//! for every key, the calls it admitted, replayed through the algorithm from
//! a fresh state, are all admitted again (so no window ever grants a key
//! more than its limit, nor a bucket more than its burst plus its rate);
//! and until the table first fills with live keys, every decision is exactly
//! the algorithm's on that key's own history.

use std::collections::BTreeMap;
use std::fmt::Debug;

use durin_ratelimit::keyed::RandomSipHash;
use durin_ratelimit::{
    Algorithm, FixedWindow, Gcra, KeyedLimiter, SlidingWindow, SyncKeyedLimiter,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// A call: which key, how far the clock moves first (maybe backwards), and
/// the cost.
type Call = (u8, i64, u64);

fn calls(period_ms: u64, limit: u64, keys: u8) -> impl Strategy<Value = Vec<Call>> {
    let period = period_ms as i64;
    let step_ms = prop_oneof![
        3 => Just(0i64),
        3 => 0..=period / 8 + 1,
        2 => 0..=3 * period,
        1 => -2 * period..0,
    ];
    let cost = prop_oneof![4 => Just(1u64), 1 => 0..=limit + 1];
    prop::collection::vec((0..keys, step_ms, cost), 1..200)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// Runs `calls` through a keyed limiter (and, in step, a sharded one with a
/// single shard, which must agree with it) and checks the guarantee.
fn run<A>(algorithm: A, keys_max: usize, calls: &[Call]) -> Result<(), TestCaseError>
where
    A: Algorithm + Clone,
    A::State: PartialEq + Debug,
{
    // One hasher for both, so that their tables are laid out alike.
    let hasher = RandomSipHash::new();
    let mut limiter: KeyedLimiter<u8, A> =
        KeyedLimiter::with_hasher(algorithm.clone(), keys_max, hasher.clone()).expect("valid cap");
    let shared: SyncKeyedLimiter<u8, A> =
        SyncKeyedLimiter::with_shards(algorithm.clone(), keys_max, 1, hasher).expect("valid cap");
    // Each key's state as the algorithm alone would have it, while exact.
    let mut own: BTreeMap<u8, A::State> = BTreeMap::new();
    // Each key's admitted calls, at the limiter's time.
    let mut admitted: BTreeMap<u8, Vec<(u64, u64)>> = BTreeMap::new();
    let mut clock_ms: u64 = 1_000_000;
    let mut limiter_ms = 0;
    for &(key, step_ms, cost) in calls {
        clock_ms = clock_ms.saturating_add_signed(step_ms);
        // The limiter's own time never goes back.
        limiter_ms = limiter_ms.max(clock_ms);
        let exact = limiter.stats().untracked_checks_total == 0;
        let decision = limiter.check(&key, clock_ms, cost);
        prop_assert_eq!(shared.check(&key, clock_ms, cost), decision);

        let stats = limiter.stats();
        prop_assert!(stats.keys_tracked <= keys_max);
        prop_assert!(stats.slot_bytes <= stats.slot_bytes_max);
        prop_assert_eq!(shared.len(), stats.keys_tracked);
        let expected = algorithm.check(own.entry(key).or_default(), limiter_ms, cost);
        if exact && stats.untracked_checks_total == 0 {
            prop_assert_eq!(decision, expected, "key {} at {}", key, limiter_ms);
        }
        if decision.allowed && cost > 0 {
            admitted.entry(key).or_default().push((limiter_ms, cost));
        }
    }
    for (key, calls) in &admitted {
        let mut state = A::State::default();
        for &(now_ms, cost) in calls {
            let replayed = algorithm.check(&mut state, now_ms, cost);
            prop_assert!(
                replayed.allowed,
                "key {} was admitted {} at {} beyond what the algorithm allows",
                key,
                cost,
                now_ms
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fixed_window_keyed(
        (limit, window_ms, keys_max, calls) in (1u64..=10, 1u64..=1_000, 1usize..=6, 1u8..=10)
            .prop_flat_map(|(limit, window_ms, keys_max, keys)| (
                Just(limit), Just(window_ms), Just(keys_max), calls(window_ms, limit, keys)
            ))
    ) {
        let algorithm = FixedWindow::new(limit, window_ms).expect("valid config");
        run(algorithm, keys_max, &calls)?;
    }

    #[test]
    fn sliding_window_keyed(
        (limit, window_ms, keys_max, calls) in (1u64..=10, 1u64..=1_000, 1usize..=6, 1u8..=10)
            .prop_flat_map(|(limit, window_ms, keys_max, keys)| (
                Just(limit), Just(window_ms), Just(keys_max), calls(window_ms, limit, keys)
            ))
    ) {
        let algorithm = SlidingWindow::new(limit, window_ms).expect("valid config");
        run(algorithm, keys_max, &calls)?;
    }

    #[test]
    fn gcra_keyed(
        (limit, period_ms, burst, keys_max, calls) in (1u64..=10, 1u64..=1_000, 1u64..=6, 1usize..=6, 1u8..=10)
            .prop_flat_map(|(limit, period_ms, burst, keys_max, keys)| (
                Just(limit), Just(period_ms), Just(burst), Just(keys_max), calls(period_ms, burst, keys)
            ))
    ) {
        let algorithm = Gcra::new(limit, period_ms, burst).expect("valid config");
        run(algorithm, keys_max, &calls)?;
    }
}

/// The fixed window in the plainest terms: under a cap of 2 and a steady
/// stream of 50 keys, no key is ever granted more than the limit in one
/// window, counted directly.
#[test]
fn no_window_grants_a_key_more_than_its_limit_under_pressure() {
    let limit = 3;
    let window_ms = 100;
    let algorithm = FixedWindow::new(limit, window_ms).expect("valid config");
    let mut limiter: KeyedLimiter<u32, _> = KeyedLimiter::new(algorithm, 2).expect("valid cap");
    let mut granted: BTreeMap<(u32, u64), u64> = BTreeMap::new();
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for step in 0..20_000u64 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let key = (seed % 50) as u32;
        let now_ms = step / 7;
        if limiter.check(&key, now_ms, 1).allowed {
            let count = granted.entry((key, now_ms / window_ms)).or_default();
            *count += 1;
            assert!(
                *count <= limit,
                "key {key} in window {}",
                now_ms / window_ms
            );
        }
        assert!(limiter.len() <= 2);
    }
    let stats = limiter.stats();
    assert!(stats.untracked_checks_total > 0, "the cap was reached");
    assert!(stats.expired_evictions_total > 0, "keys expired and left");
}
