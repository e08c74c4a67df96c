//! What a keyed limiter needs from an algorithm: a check, and the instant
//! from which a key's state carries no information any more.
//!
//! A state that has *expired* gives the same decisions, from then on, as a
//! key that was never seen: a fixed window that has ended, a sliding window
//! whose last granted unit has aged out of the estimate, a GCRA bucket that
//! has refilled. A keyed limiter can drop such a key and lose nothing, which
//! is what keeps its memory bounded without weakening the limit.

use crate::{
    saturate, Decision, FixedWindow, FixedWindowState, Gcra, GcraState, SlidingWindow,
    SlidingWindowState,
};

/// A rate-limit algorithm that a [`KeyedLimiter`](crate::KeyedLimiter) can
/// run for many keys.
///
/// Implemented by [`FixedWindow`], [`SlidingWindow`] and [`Gcra`].
pub trait Algorithm {
    /// The state of one key. `Default` is a key that has never been seen.
    type State: Copy + Default;

    /// Checks `cost` units at `now_ms`; see each algorithm's `check`.
    fn check(&self, state: &mut Self::State, now_ms: u64, cost: u64) -> Decision;

    /// The first instant, in ms since the Unix epoch, from which `state`
    /// gives the same decisions as [`Default::default`] for every check at
    /// that time or later; 0 for a state that already does.
    ///
    /// It must also be monotone: of two states where one has granted at
    /// least everything the other has (a larger count or a later TAT), that
    /// one does not expire earlier. The keyed limiter's guarantees rest on
    /// both properties.
    fn expires_at_ms(&self, state: &Self::State) -> u64;
}

impl Algorithm for FixedWindow {
    type State = FixedWindowState;

    #[inline]
    fn check(&self, state: &mut FixedWindowState, now_ms: u64, cost: u64) -> Decision {
        FixedWindow::check(self, state, now_ms, cost)
    }

    /// The end of the state's window, once it has granted anything: the next
    /// window starts from 0 either way.
    #[inline]
    fn expires_at_ms(&self, state: &FixedWindowState) -> u64 {
        if state.count == 0 {
            return 0;
        }
        saturate((u128::from(state.window_index) + 1) * u128::from(self.window_ms))
    }
}

impl Algorithm for SlidingWindow {
    type State = SlidingWindowState;

    #[inline]
    fn check(&self, state: &mut SlidingWindowState, now_ms: u64, cost: u64) -> Decision {
        SlidingWindow::check(self, state, now_ms, cost)
    }

    /// Units granted in the current window weigh on the estimate until the
    /// end of the next one; those of the previous window until the end of
    /// the current one.
    #[inline]
    fn expires_at_ms(&self, state: &SlidingWindowState) -> u64 {
        let windows_left = if state.current_count > 0 {
            2
        } else if state.previous_count > 0 {
            1
        } else {
            return 0;
        };
        saturate((u128::from(state.window_index) + windows_left) * u128::from(self.window_ms))
    }
}

impl Algorithm for Gcra {
    type State = GcraState;

    #[inline]
    fn check(&self, state: &mut GcraState, now_ms: u64, cost: u64) -> Decision {
        Gcra::check(self, state, now_ms, cost)
    }

    /// The TAT, rounded up to a whole ms: from then on `max(TAT, now)` is
    /// `now`, as for a key never seen.
    #[inline]
    fn expires_at_ms(&self, state: &GcraState) -> u64 {
        state.tat_ns.div_ceil(1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that from `expires_at_ms` on, `state` and a fresh state agree
    /// on every decision, and that one ms earlier they do not.
    fn expiry_is_tight<A: Algorithm>(algorithm: &A, state: A::State, costs: &[u64])
    where
        A::State: PartialEq + std::fmt::Debug,
    {
        let expires_at_ms = algorithm.expires_at_ms(&state);
        for &cost in costs {
            for now_ms in [expires_at_ms, expires_at_ms + 1, expires_at_ms + 1_000] {
                let mut old = state;
                let mut fresh = A::State::default();
                assert_eq!(
                    algorithm.check(&mut old, now_ms, cost),
                    algorithm.check(&mut fresh, now_ms, cost),
                    "cost {cost} at {now_ms}"
                );
            }
        }
        if expires_at_ms > 0 {
            let now_ms = expires_at_ms - 1;
            let differs = costs.iter().any(|&cost| {
                let mut old = state;
                algorithm.check(&mut old, now_ms, cost)
                    != algorithm.check(&mut A::State::default(), now_ms, cost)
            });
            assert!(differs, "state {state:?} should still matter at {now_ms}");
        }
    }

    #[test]
    fn fixed_window_expires_when_its_window_ends() {
        let limiter = FixedWindow::new(3, 1_000).expect("valid config");
        let mut state = FixedWindowState::default();
        assert_eq!(limiter.expires_at_ms(&state), 0);
        assert!(limiter.check(&mut state, 5_300, 2).allowed);
        assert_eq!(limiter.expires_at_ms(&state), 6_000);
        expiry_is_tight(&limiter, state, &[0, 1, 2, 3]);
    }

    #[test]
    fn sliding_window_expires_when_its_units_age_out() {
        let limiter = SlidingWindow::new(4, 1_000).expect("valid config");
        let mut state = SlidingWindowState::default();
        assert!(limiter.check(&mut state, 5_300, 3).allowed);
        assert_eq!(limiter.expires_at_ms(&state), 7_000);
        expiry_is_tight(&limiter, state, &[0, 1, 2, 4]);
        // Rolled into the next window, only the previous count is left.
        assert!(!limiter.check(&mut state, 6_000, 4).allowed);
        assert_eq!(limiter.expires_at_ms(&state), 7_000);
        expiry_is_tight(&limiter, state, &[0, 1, 2, 4]);
    }

    #[test]
    fn gcra_expires_when_its_bucket_is_full() {
        let limiter = Gcra::new(3, 1_000, 2).expect("valid config");
        let mut state = GcraState::default();
        assert!(limiter.check(&mut state, 5_000, 2).allowed);
        // Two units of 333_333_334 ns each.
        assert_eq!(limiter.expires_at_ms(&state), 5_667);
        expiry_is_tight(&limiter, state, &[0, 1, 2]);
    }

    #[test]
    fn huge_windows_saturate_instead_of_overflowing() {
        let limiter = SlidingWindow::new(1, u64::MAX).expect("valid config");
        let state = SlidingWindowState {
            window_index: 1,
            current_count: 1,
            previous_count: 0,
        };
        assert_eq!(limiter.expires_at_ms(&state), u64::MAX);
    }
}
