//! GCRA, persisted as bytes between calls, agrees with a plain token bucket
//! that stores its credit and refills it step by step in integer
//! nanoseconds; and over any span between two grants it never admits more
//! than the burst plus what the rate allows for that span.

mod common;

use common::{calls, check_against_model, config, start_ms, Model};
use durin_ratelimit::{Gcra, GcraState};
use proptest::prelude::*;

const NS_PER_MS: u64 = 1_000_000;

/// A bucket of `burst * interval` ns of credit that fills by one ns per ns
/// and pays `cost * interval` per grant.
struct TokenBucket {
    burst: u64,
    interval_ns: u64,
    credit_ns: u64,
    updated_ns: u64,
}

impl TokenBucket {
    fn capacity_ns(&self) -> u64 {
        self.burst * self.interval_ns
    }

    fn credit_at(&self, now_ms: u64) -> u64 {
        let refill_ns = now_ms * NS_PER_MS - self.updated_ns;
        (self.credit_ns + refill_ns).min(self.capacity_ns())
    }
}

impl Model for TokenBucket {
    fn limit(&self) -> u64 {
        self.burst
    }

    fn allows(&self, now_ms: u64, cost: u64) -> bool {
        cost * self.interval_ns <= self.credit_at(now_ms)
    }

    fn record(&mut self, now_ms: u64, cost: u64) {
        self.credit_ns = self.credit_at(now_ms) - cost * self.interval_ns;
        self.updated_ns = now_ms * NS_PER_MS;
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn gcra_matches_token_bucket(
        (limit, period_ms, burst, start, calls) in (1u64..=20, 1u64..=1_000, 1u64..=10).prop_flat_map(
            |(limit, period_ms, burst)| (
                Just(limit), Just(period_ms), Just(burst), start_ms(), calls(period_ms, burst)
            )
        )
    ) {
        let limiter = Gcra::new(limit, period_ms, burst).expect("valid config");
        let interval_ns = (period_ms * NS_PER_MS).div_ceil(limit);
        prop_assert_eq!(limiter.emission_interval_ns(), interval_ns);
        let mut model = TokenBucket { burst, interval_ns, credit_ns: burst * interval_ns, updated_ns: 0 };
        let mut granted: Vec<(u64, u64)> = Vec::new();
        let mut stored = GcraState::default().encode();
        let mut now_ms = start;
        for (step_ms, cost) in calls {
            now_ms += step_ms;
            let mut state = GcraState::decode(&stored).expect("8 bytes");
            let decision = limiter.check(&mut state, now_ms, cost);
            stored = state.encode();

            check_against_model(&mut model, decision, now_ms, cost, true);
            if decision.allowed {
                granted.push((now_ms, cost));
            }
        }
        for (first, &(from_ms, _)) in granted.iter().enumerate() {
            let mut spent = 0;
            for &(to_ms, cost) in &granted[first..] {
                spent += cost;
                let refilled = (to_ms - from_ms) * NS_PER_MS / interval_ns;
                prop_assert!(spent <= burst + refilled);
            }
        }
    }

    #[test]
    fn gcra_state_round_trips(tat_ns: u64) {
        let state = GcraState { tat_ns };
        prop_assert_eq!(GcraState::decode(&state.encode()), Some(state));
    }
}
