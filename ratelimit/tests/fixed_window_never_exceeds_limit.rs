//! The fixed window, persisted as bytes between calls as the server does,
//! agrees with a model that recounts every window from the admitted calls,
//! and no window ever grants more than the limit.

mod common;

use std::collections::BTreeMap;

use common::{calls, check_against_model, config, start_ms, Model};
use durin_ratelimit::{FixedWindow, FixedWindowState};
use proptest::prelude::*;

struct Recount {
    limit: u64,
    window_ms: u64,
    granted_by_window: BTreeMap<u64, u64>,
}

impl Recount {
    fn granted(&self, window_index: u64) -> u64 {
        self.granted_by_window
            .get(&window_index)
            .copied()
            .unwrap_or(0)
    }
}

impl Model for Recount {
    fn limit(&self) -> u64 {
        self.limit
    }

    fn allows(&self, now_ms: u64, cost: u64) -> bool {
        self.granted(now_ms / self.window_ms) + cost <= self.limit
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
    fn fixed_window_matches_recount(
        (limit, window_ms, start, calls) in (1u64..=20, 1u64..=1_000).prop_flat_map(
            |(limit, window_ms)| (Just(limit), Just(window_ms), start_ms(), calls(window_ms, limit))
        )
    ) {
        let limiter = FixedWindow::new(limit, window_ms).expect("valid config");
        let mut model = Recount { limit, window_ms, granted_by_window: BTreeMap::new() };
        let mut stored = FixedWindowState::default().encode();
        let mut now_ms = start;
        for (step_ms, cost) in calls {
            now_ms += step_ms;
            let mut state = FixedWindowState::decode(&stored).expect("16 bytes");
            let decision = limiter.check(&mut state, now_ms, cost);
            stored = state.encode();

            prop_assert_eq!(decision.reset_after_ms, window_ms - now_ms % window_ms);
            let window_had_grants = model.granted(now_ms / window_ms) > 0 || decision.allowed && cost > 0;
            check_against_model(&mut model, decision, now_ms, cost, window_had_grants);
            prop_assert!(model.granted_by_window.values().all(|&granted| granted <= limit));
        }
    }

    #[test]
    fn fixed_window_state_round_trips(window_index: u64, count: u64) {
        let state = FixedWindowState { window_index, count };
        prop_assert_eq!(FixedWindowState::decode(&state.encode()), Some(state));
    }
}
