//! What every algorithm's property test shares: a reference model interface,
//! the random call sequences, and the checks that hold for any limiter.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use durin_ratelimit::{Decision, NEVER_MS};
use proptest::prelude::*;

/// A simple, obviously correct statement of an algorithm, against which the
/// optimised state machine is compared.
pub trait Model {
    /// The most units the key can be granted at once (`Decision::limit`).
    fn limit(&self) -> u64;
    /// Whether `cost` would be admitted at `now_ms`, given everything
    /// recorded so far; `now_ms` is never before the last recorded call.
    fn allows(&self, now_ms: u64, cost: u64) -> bool;
    /// Records an admitted call.
    fn record(&mut self, now_ms: u64, cost: u64);
}

/// The largest cost the model admits at `now_ms`, found by asking it about
/// every cost in turn rather than by any formula.
pub fn model_remaining(model: &impl Model, now_ms: u64) -> u64 {
    (0..=model.limit())
        .take_while(|&cost| model.allows(now_ms, cost))
        .last()
        .unwrap_or(0)
}

/// Feeds one call to both sides and checks the decision against the model:
/// `allowed`, `limit` and `remaining` must match it, `retry_after_ms` must be
/// the first instant it admits the same cost, and at `reset_after_ms` it must
/// have the whole limit available (the first such instant if `reset_is_tight`).
pub fn check_against_model(
    model: &mut impl Model,
    decision: Decision,
    now_ms: u64,
    cost: u64,
    reset_is_tight: bool,
) {
    assert_eq!(decision.allowed, model.allows(now_ms, cost), "allowed");
    assert_eq!(decision.limit, model.limit(), "limit");
    if decision.allowed {
        model.record(now_ms, cost);
        assert_eq!(decision.retry_after_ms, 0, "retry when allowed");
    } else if decision.retry_after_ms == NEVER_MS {
        assert!(
            cost > model.limit(),
            "only a cost above the limit never passes"
        );
    } else {
        let retry_ms = decision.retry_after_ms;
        assert!(retry_ms >= 1, "a denial waits");
        assert!(model.allows(now_ms + retry_ms, cost), "allowed at retry");
        assert!(
            !model.allows(now_ms + retry_ms - 1, cost),
            "retry is the first"
        );
    }
    assert_eq!(
        decision.remaining,
        model_remaining(model, now_ms),
        "remaining"
    );

    let reset_ms = decision.reset_after_ms;
    let limit = model.limit();
    assert_eq!(
        model_remaining(model, now_ms + reset_ms),
        limit,
        "full at reset"
    );
    if reset_is_tight && reset_ms > 0 {
        assert!(
            model_remaining(model, now_ms + reset_ms - 1) < limit,
            "reset is the first"
        );
    }
}

/// A call: how far the clock moves before it, and its cost.
pub type Call = (u64, u64);

/// Calls whose steps range from none to three periods and whose costs are
/// mostly 1 but reach past the limit.
pub fn calls(period_ms: u64, limit: u64) -> impl Strategy<Value = Vec<Call>> {
    let step_ms = prop_oneof![
        2 => Just(0u64),
        3 => 0..=period_ms / 8 + 1,
        2 => 0..=3 * period_ms,
    ];
    let cost = prop_oneof![3 => Just(1u64), 2 => 0..=limit + 1];
    prop::collection::vec((step_ms, cost), 1..80)
}

/// Start times spread over the next few centuries, within GCRA's horizon.
pub fn start_ms() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 0..10_000_000_000_000u64]
}

/// Enough cases to explore, few enough that a debug `cargo test` stays quick.
pub fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 128,
        ..ProptestConfig::default()
    }
}
