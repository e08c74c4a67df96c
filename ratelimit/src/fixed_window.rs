//! Fixed window: at most `limit` units in each aligned window of `window_ms`.
//!
//! Time is cut into windows `[k * window_ms, (k + 1) * window_ms)`, and each
//! key counts the units it was granted in the current window. It is the
//! cheapest algorithm and the one durin's seed `ratelimit` class used; its
//! weakness is the edge: a client can spend `limit` at the end of one window
//! and `limit` again at the start of the next.

use crate::{read_u64_le, saturate, Decision, Error, NEVER_MS};

/// A fixed-window limit: `limit` units per aligned window of `window_ms`.
///
/// Build it with [`FixedWindow::new`]. A value built by hand with
/// `window_ms == 0` is not a valid limiter; `check` then denies everything
/// rather than panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedWindow {
    pub limit: u64,
    pub window_ms: u64,
}

/// The state of one key: which window it last counted in and how many units
/// that window granted. Encodes to 16 little-endian bytes.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct FixedWindowState {
    /// `floor(now_ms / window_ms)` of the window `count` belongs to.
    pub window_index: u64,
    /// Units granted in that window.
    pub count: u64,
}

impl FixedWindowState {
    pub const ENCODED_LEN: usize = 16;

    /// The state as `window_index` then `count`, each a little-endian `u64`.
    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut bytes = [0u8; Self::ENCODED_LEN];
        bytes[..8].copy_from_slice(&self.window_index.to_le_bytes());
        bytes[8..].copy_from_slice(&self.count.to_le_bytes());
        bytes
    }

    /// Reads a state written by [`encode`](Self::encode); `None` unless
    /// `bytes` is exactly [`ENCODED_LEN`](Self::ENCODED_LEN) long.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::ENCODED_LEN {
            return None;
        }
        Some(Self {
            window_index: read_u64_le(bytes, 0)?,
            count: read_u64_le(bytes, 8)?,
        })
    }
}

impl FixedWindow {
    /// A limit of `limit` units per window of `window_ms`; both must be > 0.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroLimit`] or [`Error::ZeroWindow`] when the limit or the window is 0.
    pub fn new(limit: u64, window_ms: u64) -> Result<Self, Error> {
        if limit == 0 {
            return Err(Error::ZeroLimit);
        }
        if window_ms == 0 {
            return Err(Error::ZeroWindow);
        }
        Ok(Self { limit, window_ms })
    }

    /// Checks `cost` units at `now_ms` (ms since the Unix epoch).
    ///
    /// If allowed, the state is updated (`count += cost`). If denied, the
    /// state is left unchanged except for rolling to the current window. A
    /// cost of 0 is always allowed and only reports the state. A cost above
    /// `limit` can never pass: it is denied with `retry_after_ms ==`
    /// [`NEVER_MS`].
    ///
    /// If `now_ms` falls before the window in `state` (the clock stepped
    /// back), the check is made in the state's window, so the key gains no
    /// capacity; `reset_after_ms` is still measured from `now_ms`.
    #[inline]
    pub fn check(&self, state: &mut FixedWindowState, now_ms: u64, cost: u64) -> Decision {
        if self.window_ms == 0 {
            return self.deny_forever();
        }
        let current_index = now_ms / self.window_ms;
        if current_index > state.window_index {
            *state = FixedWindowState {
                window_index: current_index,
                count: 0,
            };
        }
        let window_end_ms = (u128::from(state.window_index) + 1) * u128::from(self.window_ms);
        let reset_after_ms = saturate(window_end_ms - u128::from(now_ms));

        let allowed = cost <= self.limit.saturating_sub(state.count);
        if allowed {
            state.count += cost;
        }
        let remaining = self.limit.saturating_sub(state.count);
        let retry_after_ms = if allowed {
            0
        } else if cost > self.limit {
            NEVER_MS
        } else {
            // The next window starts empty and `cost <= limit`.
            reset_after_ms
        };
        debug_assert!(!allowed || state.count <= self.limit);
        Decision {
            allowed,
            limit: self.limit,
            remaining,
            reset_after_ms,
            retry_after_ms,
        }
    }

    /// The answer of a hand-built config that `new` would have rejected:
    /// failing closed is safer than admitting traffic without a limit.
    fn deny_forever(&self) -> Decision {
        Decision {
            allowed: false,
            limit: self.limit,
            remaining: 0,
            reset_after_ms: NEVER_MS,
            retry_after_ms: NEVER_MS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE_MS: u64 = 60_000;

    fn seed_limiter() -> FixedWindow {
        FixedWindow::new(100, MINUTE_MS).expect("100 per minute is a valid config")
    }

    #[test]
    fn seed_admits_100_then_denies() {
        let limiter = seed_limiter();
        let mut state = FixedWindowState::default();
        let now_ms = 10 * MINUTE_MS + 5_000;
        for admitted in 1..=100 {
            let decision = limiter.check(&mut state, now_ms, 1);
            assert!(decision.allowed);
            assert_eq!(decision.remaining, 100 - admitted);
            assert_eq!(decision.retry_after_ms, 0);
        }
        let denied = limiter.check(&mut state, now_ms + 1_000, 1);
        assert!(!denied.allowed);
        assert_eq!(denied.remaining, 0);
        assert_eq!(denied.reset_after_ms, MINUTE_MS - 6_000);
        assert_eq!(denied.retry_after_ms, MINUTE_MS - 6_000);
        assert_eq!(state.count, 100);
    }

    #[test]
    fn window_rolls_over_at_its_boundary() {
        let limiter = seed_limiter();
        let mut state = FixedWindowState::default();
        let last_ms_of_window = 2 * MINUTE_MS - 1;
        for _ in 0..100 {
            assert!(limiter.check(&mut state, last_ms_of_window, 1).allowed);
        }
        let denied = limiter.check(&mut state, last_ms_of_window, 1);
        assert!(!denied.allowed);
        assert_eq!(denied.reset_after_ms, 1);

        let next = limiter.check(&mut state, 2 * MINUTE_MS, 1);
        assert!(next.allowed);
        assert_eq!(next.remaining, 99);
        assert_eq!(next.reset_after_ms, MINUTE_MS);
        assert_eq!(
            state,
            FixedWindowState {
                window_index: 2,
                count: 1
            }
        );
    }

    #[test]
    fn denial_rolls_state_but_does_not_count() {
        let limiter = FixedWindow::new(3, 1_000).expect("valid config");
        let mut state = FixedWindowState {
            window_index: 4,
            count: 3,
        };
        let decision = limiter.check(&mut state, 7_500, 5);
        assert!(!decision.allowed);
        assert_eq!(decision.retry_after_ms, NEVER_MS);
        assert_eq!(
            state,
            FixedWindowState {
                window_index: 7,
                count: 0
            }
        );
    }

    #[test]
    fn cost_counts_units_and_remaining_is_what_still_fits() {
        let limiter = FixedWindow::new(10, 1_000).expect("valid config");
        let mut state = FixedWindowState::default();
        assert_eq!(limiter.check(&mut state, 0, 7).remaining, 3);
        let denied = limiter.check(&mut state, 250, 4);
        assert!(!denied.allowed);
        assert_eq!(denied.remaining, 3);
        assert_eq!(denied.retry_after_ms, 750);
        assert!(limiter.check(&mut state, 250, 3).allowed);
    }

    #[test]
    fn zero_cost_only_reports() {
        let limiter = FixedWindow::new(2, 1_000).expect("valid config");
        let mut state = FixedWindowState::default();
        let decision = limiter.check(&mut state, 1_200, 0);
        assert!(decision.allowed);
        assert_eq!(decision.remaining, 2);
        assert_eq!(decision.reset_after_ms, 800);
        assert_eq!(state.count, 0);
    }

    #[test]
    fn clock_stepping_back_gains_no_capacity() {
        let limiter = FixedWindow::new(1, 1_000).expect("valid config");
        let mut state = FixedWindowState::default();
        assert!(limiter.check(&mut state, 5_100, 1).allowed);
        let back = limiter.check(&mut state, 4_900, 1);
        assert!(!back.allowed);
        assert_eq!(back.reset_after_ms, 1_100);
        assert_eq!(back.retry_after_ms, 1_100);
        assert_eq!(state.window_index, 5);
    }

    #[test]
    fn largest_time_does_not_overflow() {
        let limiter = FixedWindow::new(u64::MAX, 7).expect("valid config");
        let mut state = FixedWindowState::default();
        let decision = limiter.check(&mut state, u64::MAX, u64::MAX);
        assert!(decision.allowed);
        assert_eq!(decision.remaining, 0);
        assert!(decision.reset_after_ms >= 1);
    }

    #[test]
    fn hand_built_zero_window_denies_without_panic() {
        let limiter = FixedWindow {
            limit: 5,
            window_ms: 0,
        };
        let decision = limiter.check(&mut FixedWindowState::default(), 1, 1);
        assert!(!decision.allowed);
        assert_eq!(decision.retry_after_ms, NEVER_MS);
    }

    #[test]
    fn new_rejects_zero_limit_and_window() {
        assert_eq!(FixedWindow::new(0, 1), Err(Error::ZeroLimit));
        assert_eq!(FixedWindow::new(1, 0), Err(Error::ZeroWindow));
    }

    #[test]
    fn encode_decode_round_trip() {
        let state = FixedWindowState {
            window_index: 0x0102_0304_0506_0708,
            count: u64::MAX - 1,
        };
        let bytes = state.encode();
        assert_eq!(bytes[0], 0x08);
        assert_eq!(FixedWindowState::decode(&bytes), Some(state));
        assert_eq!(FixedWindowState::decode(&bytes[..15]), None);
        assert_eq!(FixedWindowState::decode(&[0u8; 17]), None);
    }
}
