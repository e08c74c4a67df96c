//! Sliding window: a fixed window smoothed by the one before it.
//!
//! Like the fixed window, each key counts the units granted in the current
//! aligned window `[k * window_ms, (k + 1) * window_ms)`, and it also keeps
//! the previous window's count. At `elapsed` ms into the current window, the
//! window of `window_ms` that ends now still covers `window_ms - elapsed` ms of
//! the previous one, so the estimate is
//!
//! ```text
//! previous * (window_ms - elapsed) / window_ms + current
//! ```
//!
//! and a request of `cost` passes when the estimate plus `cost` stays within
//! `limit`. This is the approximation Cloudflare describes for its rate
//! limiting: it assumes the previous window's units were spread evenly, takes
//! three integers of state, and removes the fixed window's burst of twice the
//! limit at each boundary in the common case. The comparison is done exactly,
//! in integers scaled by `window_ms`, so no float rounding can let a request
//! through.
//!
//! What it guarantees exactly: no aligned window grants more than `limit`
//! (hence no span of `window_ms` grants more than twice `limit`), and at the
//! moment of each grant the estimate is within `limit`.

use crate::{read_u64_le, saturate, Decision, Error, NEVER_MS};

/// A sliding-window limit: about `limit` units per `window_ms`, estimated
/// from the current and previous aligned windows.
///
/// Build it with [`SlidingWindow::new`]. A value built by hand with
/// `window_ms == 0` is not a valid limiter; `check` then denies everything
/// rather than panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlidingWindow {
    pub limit: u64,
    pub window_ms: u64,
}

/// The state of one key. Encodes to 24 little-endian bytes.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct SlidingWindowState {
    /// `floor(now_ms / window_ms)` of the window `current_count` belongs to.
    pub window_index: u64,
    /// Units granted in window `window_index`.
    pub current_count: u64,
    /// Units granted in window `window_index - 1`.
    pub previous_count: u64,
}

impl SlidingWindowState {
    pub const ENCODED_LEN: usize = 24;

    /// The state as `window_index`, `current_count`, `previous_count`, each a
    /// little-endian `u64`.
    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut bytes = [0u8; Self::ENCODED_LEN];
        bytes[..8].copy_from_slice(&self.window_index.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.current_count.to_le_bytes());
        bytes[16..].copy_from_slice(&self.previous_count.to_le_bytes());
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
            current_count: read_u64_le(bytes, 8)?,
            previous_count: read_u64_le(bytes, 16)?,
        })
    }
}

impl SlidingWindow {
    /// A limit of about `limit` units per `window_ms`; both must be > 0.
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
    /// If allowed, `current_count += cost`. If denied, the state is left
    /// unchanged except for rolling to the current window. A cost of 0 is
    /// always allowed and only reports the state; a cost above `limit` is
    /// denied with `retry_after_ms ==` [`NEVER_MS`].
    ///
    /// `reset_after_ms` is the time until every granted unit has aged out of
    /// the estimate: up to two windows when the current window granted some.
    ///
    /// If `now_ms` falls before the window in `state` (the clock stepped
    /// back), the check is made at the start of the state's window, so the
    /// key gains no capacity; durations are still measured from `now_ms`.
    #[inline]
    pub fn check(&self, state: &mut SlidingWindowState, now_ms: u64, cost: u64) -> Decision {
        if self.window_ms == 0 {
            return Decision {
                allowed: false,
                limit: self.limit,
                remaining: 0,
                reset_after_ms: NEVER_MS,
                retry_after_ms: NEVER_MS,
            };
        }
        roll(state, now_ms / self.window_ms);

        let window_ms = u128::from(self.window_ms);
        let window_start_ms = u128::from(state.window_index) * window_ms;
        let now = u128::from(now_ms);
        // `behind_ms` is non-zero only when the clock stepped back.
        let (elapsed_ms, behind_ms) = if now >= window_start_ms {
            (now - window_start_ms, 0)
        } else {
            (0, window_start_ms - now)
        };
        let previous_weighted = u128::from(state.previous_count) * (window_ms - elapsed_ms);

        let remaining_before = self.remaining(state, previous_weighted);
        let allowed = cost <= remaining_before;
        if allowed {
            state.current_count += cost;
        }
        let remaining = if allowed {
            remaining_before - cost
        } else {
            remaining_before
        };
        let retry_after_ms = if allowed {
            0
        } else {
            self.retry_after(state, elapsed_ms, cost)
                .map_or(NEVER_MS, |wait_ms| saturate(wait_ms + behind_ms))
        };
        let reset_after_ms = if state.current_count > 0 {
            2 * window_ms - elapsed_ms + behind_ms
        } else if state.previous_count > 0 {
            window_ms - elapsed_ms + behind_ms
        } else {
            0
        };
        Decision {
            allowed,
            limit: self.limit,
            remaining,
            reset_after_ms: saturate(reset_after_ms),
            retry_after_ms,
        }
    }

    /// The largest cost that fits now: the greatest `c` with
    /// `previous_weighted + (current + c) * window_ms <= limit * window_ms`.
    fn remaining(&self, state: &SlidingWindowState, previous_weighted: u128) -> u64 {
        let capacity = u128::from(self.limit) * u128::from(self.window_ms);
        let room = capacity.saturating_sub(previous_weighted);
        // A u128 division is a library call; the room nearly always fits a u64.
        let whole_units = match u64::try_from(room) {
            Ok(room) => u128::from(room / self.window_ms),
            Err(_) => room / u128::from(self.window_ms),
        };
        saturate(whole_units).saturating_sub(state.current_count)
    }

    /// The time from `elapsed_ms` into the state's window until a denied
    /// `cost` would fit, or `None` if it never can.
    fn retry_after(&self, state: &SlidingWindowState, elapsed_ms: u128, cost: u64) -> Option<u128> {
        if cost > self.limit {
            return None;
        }
        let window_ms = u128::from(self.window_ms);
        let limit = u128::from(self.limit);
        let current = u128::from(state.current_count);
        let previous = u128::from(state.previous_count);
        let cost = u128::from(cost);
        if current + cost <= limit && previous > 0 {
            // It fits later in this window, once enough of the previous
            // window has slid out: the least `e` with
            // `previous * (window_ms - e) <= (limit - current - cost) * window_ms`.
            let slack = (limit - current - cost) * window_ms;
            let fits_at_ms = window_ms - (slack / previous).min(window_ms);
            return Some(fits_at_ms.saturating_sub(elapsed_ms));
        }
        // It fits in the next window, where this window's count becomes the
        // previous one (`current > 0`, as `current + cost > limit >= cost`).
        let slack = (limit - cost) * window_ms;
        let fits_at_ms = window_ms - (slack / current.max(1)).min(window_ms);
        Some(window_ms - elapsed_ms + fits_at_ms)
    }
}

/// Moves `state` forward to window `current_index`; a state from a later
/// window (the clock stepped back) is kept as it is.
fn roll(state: &mut SlidingWindowState, current_index: u64) {
    if current_index <= state.window_index {
        return;
    }
    let previous_count = if current_index - state.window_index == 1 {
        state.current_count
    } else {
        0
    };
    *state = SlidingWindowState {
        window_index: current_index,
        current_count: 0,
        previous_count,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(limit: u64, window_ms: u64) -> SlidingWindow {
        SlidingWindow::new(limit, window_ms).expect("valid config")
    }

    #[test]
    fn first_window_behaves_like_a_fixed_window() {
        let limiter = limiter(100, 60_000);
        let mut state = SlidingWindowState::default();
        for admitted in 1..=100 {
            let decision = limiter.check(&mut state, 1_000, 1);
            assert!(decision.allowed);
            assert_eq!(decision.remaining, 100 - admitted);
        }
        let denied = limiter.check(&mut state, 1_000, 1);
        assert!(!denied.allowed);
        assert_eq!(denied.remaining, 0);
        // Next window: 100 previous units weigh 100 * (60_000 - e) / 60_000,
        // which leaves room for one more unit once e >= 600.
        assert_eq!(denied.retry_after_ms, 59_000 + 600);
        assert_eq!(denied.reset_after_ms, 2 * 60_000 - 1_000);
    }

    #[test]
    fn previous_window_is_weighted_by_its_overlap() {
        let limiter = limiter(10, 1_000);
        let mut state = SlidingWindowState::default();
        assert!(limiter.check(&mut state, 500, 10).allowed);
        // 250 ms into the next window, 75% of the previous window overlaps:
        // 10 * 0.75 = 7.5, so 2 whole units fit.
        let decision = limiter.check(&mut state, 1_250, 0);
        assert_eq!(decision.remaining, 2);
        assert!(limiter.check(&mut state, 1_250, 2).allowed);
        let denied = limiter.check(&mut state, 1_250, 1);
        assert!(!denied.allowed);
        // 10 * (1_000 - e) / 1_000 + 2 + 1 <= 10 once e >= 300.
        assert_eq!(denied.retry_after_ms, 50);
        assert!(limiter.check(&mut state, 1_300, 1).allowed);
        assert_eq!(
            state,
            SlidingWindowState {
                window_index: 1,
                current_count: 3,
                previous_count: 10
            }
        );
    }

    #[test]
    fn idle_for_two_windows_forgets_everything() {
        let limiter = limiter(5, 100);
        let mut state = SlidingWindowState::default();
        assert!(limiter.check(&mut state, 10, 5).allowed);
        let decision = limiter.check(&mut state, 250, 0);
        assert_eq!(decision.remaining, 5);
        assert_eq!(decision.reset_after_ms, 0);
        assert_eq!(state.previous_count, 0);
    }

    #[test]
    fn reset_counts_until_the_last_unit_ages_out() {
        let limiter = limiter(5, 100);
        let mut state = SlidingWindowState::default();
        let decision = limiter.check(&mut state, 130, 1);
        assert_eq!(decision.reset_after_ms, 170);
        assert_eq!(limiter.check(&mut state, 210, 0).reset_after_ms, 90);
        assert_eq!(limiter.check(&mut state, 300, 0).remaining, 5);
    }

    #[test]
    fn cost_above_limit_never_passes() {
        let limiter = limiter(5, 100);
        let decision = limiter.check(&mut SlidingWindowState::default(), 0, 6);
        assert!(!decision.allowed);
        assert_eq!(decision.retry_after_ms, NEVER_MS);
    }

    #[test]
    fn clock_stepping_back_gains_no_capacity() {
        let limiter = limiter(2, 1_000);
        let mut state = SlidingWindowState::default();
        assert!(limiter.check(&mut state, 5_000, 2).allowed);
        let back = limiter.check(&mut state, 3_000, 1);
        assert!(!back.allowed);
        assert_eq!(state.window_index, 5);
        // From 5_000: the next window, at e >= 500, fits one more unit.
        assert_eq!(back.retry_after_ms, 2_000 + 1_000 + 500);
    }

    #[test]
    fn largest_values_do_not_overflow() {
        let limiter = limiter(u64::MAX, u64::MAX);
        let mut state = SlidingWindowState {
            window_index: 0,
            current_count: u64::MAX,
            previous_count: u64::MAX,
        };
        let decision = limiter.check(&mut state, u64::MAX - 1, u64::MAX);
        assert!(!decision.allowed);
        assert!(decision.retry_after_ms > 0);
    }

    #[test]
    fn encode_decode_round_trip() {
        let state = SlidingWindowState {
            window_index: 9,
            current_count: 8,
            previous_count: u64::MAX,
        };
        let bytes = state.encode();
        assert_eq!(SlidingWindowState::decode(&bytes), Some(state));
        assert_eq!(SlidingWindowState::decode(&bytes[1..]), None);
    }

    #[test]
    fn new_rejects_zero_limit_and_window() {
        assert_eq!(SlidingWindow::new(0, 1), Err(Error::ZeroLimit));
        assert_eq!(SlidingWindow::new(1, 0), Err(Error::ZeroWindow));
    }
}
