//! The sliding window, persisted as bytes between calls, agrees with a model
//! that recounts the current and previous windows from the admitted calls and
//! applies the weighted estimate directly; and no aligned window ever grants
//! more than the limit.

mod common;

use std::collections::BTreeMap;

use common::{calls, check_against_model, config, start_ms, Model};
use durin_ratelimit::{SlidingWindow, SlidingWindowState};
use proptest::prelude::*;

struct Recount {
    limit: u64,
    window_ms: u64,
    granted_by_window: BTreeMap<u64, u64>,
}

impl Recount {
    fn granted(&self, window_index: Option<u64>) -> u128 {
        window_index
            .and_then(|index| self.granted_by_window.get(&index))
            .map_or(0, |&granted| u128::from(granted))
    }
}

impl Model for Recount {
    fn limit(&self) -> u64 {
        self.limit
    }

    /// `previous * (window - elapsed) / window + current + cost <= limit`,
    /// multiplied through by `window` to stay exact.
    fn allows(&self, now_ms: u64, cost: u64) -> bool {
        let index = now_ms / self.window_ms;
        let window = u128::from(self.window_ms);
        let elapsed = u128::from(now_ms % self.window_ms);
        let previous = self.granted(index.checked_sub(1));
        let current = self.granted(Some(index));
        previous * (window - elapsed) + (current + u128::from(cost)) * window
            <= u128::from(self.limit) * window
    }

    fn record(&mut self, now_ms: u64, cost: u64) {
        *self
            .granted_by_window
            .entry(now_ms / self.window_ms)
            .or_default() += cost;
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn sliding_window_matches_recount(
        (limit, window_ms, start, calls) in (1u64..=20, 1u64..=1_000).prop_flat_map(
            |(limit, window_ms)| (Just(limit), Just(window_ms), start_ms(), calls(window_ms, limit))
        )
    ) {
        let limiter = SlidingWindow::new(limit, window_ms).expect("valid config");
        let mut model = Recount { limit, window_ms, granted_by_window: BTreeMap::new() };
        let mut stored = SlidingWindowState::default().encode();
        let mut now_ms = start;
        for (step_ms, cost) in calls {
            now_ms += step_ms;
            let mut state = SlidingWindowState::decode(&stored).expect("24 bytes");
            let decision = limiter.check(&mut state, now_ms, cost);
            stored = state.encode();

            check_against_model(&mut model, decision, now_ms, cost, true);
            prop_assert!(model.granted_by_window.values().all(|&granted| granted <= limit));
        }
    }

    #[test]
    fn sliding_window_state_round_trips(window_index: u64, current_count: u64, previous_count: u64) {
        let state = SlidingWindowState { window_index, current_count, previous_count };
        prop_assert_eq!(SlidingWindowState::decode(&state.encode()), Some(state));
    }
}
