//! A flood of unique keys cannot grow a keyed limiter past its cap, cannot
//! free a key that has spent its limit, and is itself limited; idle keys
//! leave as new ones arrive; the sharded limiter keeps the limit of a key
//! that several threads check at once.

use std::sync::Arc;

use durin_ratelimit::{FixedWindow, Gcra, KeyedLimiter, SlidingWindow, SyncKeyedLimiter};

const NOW_MS: u64 = 1_700_000_000_000;

#[test]
fn flood_of_unique_keys_stays_under_the_cap() {
    let keys_max = 1_000;
    let algorithm = Gcra::new(10, 1_000, 10).expect("valid config");
    let mut limiter: KeyedLimiter<u64, _> = KeyedLimiter::new(algorithm, keys_max).expect("cap");
    let slot_bytes_max = limiter.stats().slot_bytes_max;
    for key in 0..100_000u64 {
        let _ = limiter.check(&key, NOW_MS, 1);
        assert!(limiter.len() <= keys_max);
    }
    let stats = limiter.stats();
    assert_eq!(stats.keys_tracked, keys_max);
    assert_eq!(stats.slot_bytes, slot_bytes_max, "grown to its final size");
    assert_eq!(stats.untracked_checks_total, 100_000 - keys_max as u64);
    // 32-byte slots, at most three quarters full.
    assert_eq!(slot_bytes_max, 32 * (keys_max * 4).div_ceil(3));
}

#[test]
fn flood_cannot_free_a_key_that_spent_its_limit() {
    let algorithm = FixedWindow::new(5, 60_000).expect("valid config");
    let mut limiter: KeyedLimiter<String, _> = KeyedLimiter::new(algorithm, 100).expect("cap");
    for _ in 0..5 {
        assert!(limiter.check("victim", NOW_MS, 1).allowed);
    }
    assert!(!limiter.check("victim", NOW_MS, 1).allowed);
    let mut flood_admitted = 0;
    for index in 0..10_000 {
        let key = format!("flood-{index}");
        flood_admitted += u64::from(limiter.check(key.as_str(), NOW_MS + 1, 1).allowed);
    }
    // 99 keys fit beside the victim, each admitted once; the other 9_901
    // share one key's allowance.
    assert_eq!(flood_admitted, 99 + 5);
    assert!(!limiter.check("victim", NOW_MS + 2, 1).allowed);
    assert!(limiter.contains("victim"));
}

#[test]
fn untracked_key_starts_from_the_overflow_state() {
    let algorithm = FixedWindow::new(2, 1_000).expect("valid config");
    let mut limiter: KeyedLimiter<u32, _> = KeyedLimiter::new(algorithm, 1).expect("cap");
    assert!(limiter.check(&1, NOW_MS, 1).allowed);
    // Key 2 is untracked and spends the overflow's allowance.
    assert!(limiter.check(&2, NOW_MS, 1).allowed);
    assert!(limiter.check(&2, NOW_MS, 1).allowed);
    assert!(!limiter.check(&2, NOW_MS, 1).allowed);
    assert!(!limiter.contains(&2));
    // Key 1 expires: the window ends. Key 2 takes its slot, but from the
    // overflow's state, which is also of the old window and so fresh now.
    let next_window_ms = (NOW_MS / 1_000 + 1) * 1_000;
    assert!(limiter.check(&2, next_window_ms, 1).allowed);
    assert!(limiter.contains(&2));
    assert!(!limiter.contains(&1));
}

#[test]
fn key_tracked_while_the_overflow_is_live_inherits_it() {
    let algorithm = Gcra::new(1, 1_000, 2).expect("valid config");
    let mut limiter: KeyedLimiter<u32, _> = KeyedLimiter::new(algorithm, 1).expect("cap");
    // Key 1 holds the only slot for 1 s.
    assert!(limiter.check(&1, NOW_MS, 1).allowed);
    // Key 2 spends the overflow's burst.
    assert!(limiter.check(&2, NOW_MS, 2).allowed);
    // At +1 s key 1 has expired; the overflow has refilled one unit only.
    assert!(limiter.check(&2, NOW_MS + 1_000, 1).allowed);
    assert!(limiter.contains(&2));
    assert!(!limiter.check(&2, NOW_MS + 1_000, 1).allowed);
}

#[test]
fn idle_keys_leave_as_new_ones_arrive() {
    let algorithm = SlidingWindow::new(10, 1_000).expect("valid config");
    let mut limiter: KeyedLimiter<u64, _> = KeyedLimiter::new(algorithm, 100_000).expect("cap");
    for key in 0..500 {
        assert!(limiter.check(&key, NOW_MS, 1).allowed);
    }
    assert_eq!(limiter.len(), 500);
    // Two windows later the first 500 have aged out; the next 500 arrivals
    // sweep them out on their way in.
    let later_ms = NOW_MS + 2_000;
    for key in 500..1_000 {
        assert!(limiter.check(&key, later_ms, 1).allowed);
    }
    assert!(limiter.len() < 600, "{} keys tracked", limiter.len());
    let tracked = limiter.len();
    assert_eq!(limiter.purge_expired(later_ms + 2_000), tracked);
    assert!(limiter.is_empty());
}

#[test]
fn check_of_cost_zero_on_an_expired_key_frees_its_slot() {
    let algorithm = Gcra::new(10, 1_000, 1).expect("valid config");
    let mut limiter: KeyedLimiter<u64, _> = KeyedLimiter::new(algorithm, 10).expect("cap");
    assert!(limiter.check(&7, NOW_MS, 1).allowed);
    assert!(limiter.contains(&7));
    assert!(limiter.check(&7, NOW_MS + 100, 0).allowed);
    assert!(!limiter.contains(&7));
    // A denied first check stores nothing.
    assert!(!limiter.check(&8, NOW_MS + 100, 2).allowed);
    assert!(limiter.is_empty());
}

#[test]
fn time_going_back_does_not_revive_a_key() {
    let algorithm = FixedWindow::new(1, 1_000).expect("valid config");
    let mut limiter: KeyedLimiter<u64, _> = KeyedLimiter::new(algorithm, 10).expect("cap");
    assert!(limiter.check(&1, NOW_MS, 1).allowed);
    assert!(limiter.check(&2, NOW_MS + 5_000, 1).allowed);
    // Key 1 has expired and is dropped (if key 2's arrival has not swept
    // it already); a step back must not grant it its old window again.
    let _ = limiter.purge_expired(NOW_MS + 5_000);
    assert!(!limiter.contains(&1));
    assert!(!limiter.check(&2, NOW_MS, 1).allowed);
    assert!(
        limiter.check(&1, NOW_MS, 1).allowed,
        "at the limiter's time, key 1's window is new"
    );
    assert!(!limiter.check(&1, NOW_MS, 1).allowed);
}

#[test]
fn invalid_caps_are_rejected() {
    let algorithm = Gcra::new(1, 1, 1).expect("valid config");
    assert_eq!(
        KeyedLimiter::<u64, _>::new(algorithm, 0).err(),
        Some(durin_ratelimit::Error::ZeroKeys)
    );
    assert!(matches!(
        KeyedLimiter::<u64, _>::new(algorithm, usize::MAX).err(),
        Some(durin_ratelimit::Error::TooManyKeys { .. })
    ));
}

#[test]
fn threads_sharing_a_key_get_its_limit_once() {
    let limit = 1_000;
    let algorithm = FixedWindow::new(limit, 60_000).expect("valid config");
    let limiter: Arc<SyncKeyedLimiter<u64, _>> =
        Arc::new(SyncKeyedLimiter::new(algorithm, 10_000).expect("cap"));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let limiter = Arc::clone(&limiter);
            std::thread::spawn(move || {
                let mut admitted = [0u64; 8];
                for round in 0..5_000u64 {
                    let key = round % 8;
                    admitted[key as usize] += u64::from(limiter.check(&key, NOW_MS, 1).allowed);
                }
                admitted
            })
        })
        .collect();
    let mut total = [0u64; 8];
    for thread in threads {
        for (sum, admitted) in total.iter_mut().zip(thread.join().expect("no panic")) {
            *sum += admitted;
        }
    }
    assert_eq!(total, [limit; 8]);
    assert_eq!(limiter.len(), 8);
}
