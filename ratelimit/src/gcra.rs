//! GCRA, the generic cell rate algorithm: a token bucket kept as one instant.
//!
//! A key may spend `limit` units per `period_ms` on average, and up to
//! `burst` units at once. Units are emitted every `T = period_ms / limit`;
//! the key's state is its *theoretical arrival time* (TAT), the instant at
//! which it would have spent everything granted so far had it been paced at
//! exactly one unit per `T`. A request of `cost` at `now` is allowed when
//!
//! ```text
//! max(TAT, now) + cost * T <= now + tolerance,  where tolerance = T * burst
//! ```
//!
//! and then TAT becomes `max(TAT, now) + cost * T`. That is a token bucket of
//! `burst` tokens refilled one per `T`, without a refill timer or a stored
//! token count, as redis-cell and the `governor` crate implement it; a fresh
//! key can spend `burst` units at once.
//!
//! Times are kept in **nanoseconds** since the Unix epoch so that `T` is exact
//! for any rate that matters (`T` is `period_ms / limit` rounded *up* to a
//! whole ns, so the rate is never exceeded). A `u64` of nanoseconds lasts
//! until the year 2554; later times are clamped to that instant, and a state
//! that reaches it stops limiting. Because the state is an instant, not a
//! count, it stays meaningful when the key's configuration changes.

use crate::{read_u64_le, saturate, Decision, Error, NEVER_MS};

const NS_PER_MS: u128 = 1_000_000;

/// A GCRA limit: `limit` units per `period_ms` on average, `burst` at once.
///
/// The fields are private because `new` derives the emission interval and
/// the tolerance from them once, so that `check` divides nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gcra {
    limit: u64,
    period_ms: u64,
    burst: u64,
    emission_interval_ns: u64,
    tolerance_ns: u64,
    /// `ceil(2^64 / T)`, so that `remaining` is a multiplication rather than
    /// a division by `T` (a 64-bit division costs tens of cycles).
    interval_reciprocal: Reciprocal,
}

/// Division of 64-bit values by one fixed divisor, by multiplication.
///
/// With `m = ceil(2^64 / d)`, `floor(n * m / 2^64)` is `floor(n / d)` or one
/// more (the error `n * (m - 2^64 / d) / 2^64` is below `n / 2^64 < 1`), and
/// one multiplication tells which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reciprocal {
    divisor: u64,
    /// `ceil(2^64 / divisor)`; unused when `divisor` is 1.
    multiplier: u64,
}

impl Reciprocal {
    fn new(divisor: u64) -> Self {
        assert!(divisor > 0, "a divisor is positive");
        let multiplier = if divisor == 1 {
            0
        } else {
            // Below 2^64 for any divisor of 2 or more.
            ((1u128 << 64).div_ceil(u128::from(divisor))) as u64
        };
        Reciprocal {
            divisor,
            multiplier,
        }
    }

    #[inline]
    fn divide(self, n: u64) -> u64 {
        if self.divisor == 1 {
            return n;
        }
        let q = ((u128::from(n) * u128::from(self.multiplier)) >> 64) as u64;
        if u128::from(q) * u128::from(self.divisor) > u128::from(n) {
            q - 1
        } else {
            q
        }
    }
}

/// The state of one key: its theoretical arrival time in ns since the Unix
/// epoch. The default (0) is a key that has never been seen, with its full
/// burst available. Encodes to 8 little-endian bytes.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct GcraState {
    pub tat_ns: u64,
}

impl GcraState {
    pub const ENCODED_LEN: usize = 8;

    /// The state as `tat_ns`, a little-endian `u64`.
    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        self.tat_ns.to_le_bytes()
    }

    /// Reads a state written by [`encode`](Self::encode); `None` unless
    /// `bytes` is exactly [`ENCODED_LEN`](Self::ENCODED_LEN) long.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::ENCODED_LEN {
            return None;
        }
        Some(Self {
            tat_ns: read_u64_le(bytes, 0)?,
        })
    }
}

impl Gcra {
    /// `limit` units per `period_ms` on average and up to `burst` at once;
    /// all three must be > 0, the emission interval must be at least 1 ns and
    /// the tolerance must fit in a `u64` of ns.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroLimit`], [`Error::ZeroWindow`] or [`Error::ZeroBurst`]
    /// for a zero argument, [`Error::RateTooHigh`] when `T` would be under
    /// 1 ns, and [`Error::ToleranceTooLong`] when `T * burst` overflows.
    pub fn new(limit: u64, period_ms: u64, burst: u64) -> Result<Self, Error> {
        if limit == 0 {
            return Err(Error::ZeroLimit);
        }
        if period_ms == 0 {
            return Err(Error::ZeroWindow);
        }
        if burst == 0 {
            return Err(Error::ZeroBurst);
        }
        let period_ns = u128::from(period_ms) * NS_PER_MS;
        if period_ns < u128::from(limit) {
            return Err(Error::RateTooHigh { limit, period_ms });
        }
        let emission_interval_ns = period_ns.div_ceil(u128::from(limit));
        let too_long = Error::ToleranceTooLong {
            limit,
            period_ms,
            burst,
            max_ns: u64::MAX,
        };
        let tolerance_ns =
            u64::try_from(emission_interval_ns * u128::from(burst)).map_err(|_| too_long)?;
        // The tolerance bounds the interval, as `burst >= 1`.
        let emission_interval_ns = u64::try_from(emission_interval_ns).map_err(|_| too_long)?;
        Ok(Self {
            limit,
            period_ms,
            burst,
            emission_interval_ns,
            tolerance_ns,
            interval_reciprocal: Reciprocal::new(emission_interval_ns),
        })
    }

    /// Units per period on average.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The period `limit` applies to, in ms.
    pub fn period_ms(&self) -> u64 {
        self.period_ms
    }

    /// Units that can be spent at once by a key that has been idle.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// `T`: the time one unit takes to replenish, `period_ms / limit` in ns
    /// rounded up.
    pub fn emission_interval_ns(&self) -> u64 {
        self.emission_interval_ns
    }

    /// Checks `cost` units at `now_ms` (ms since the Unix epoch).
    ///
    /// If allowed, the TAT advances by `cost * T`; if denied, the state is
    /// unchanged. A cost of 0 only reports the state. A cost above `burst`
    /// can never pass and is denied with `retry_after_ms ==` [`NEVER_MS`].
    ///
    /// The decision's `limit` is `burst` (the most units at once),
    /// `remaining` is the whole tokens left in the bucket, `reset_after_ms`
    /// is the time until the bucket is full again and `retry_after_ms` the
    /// time until enough tokens for `cost` have accrued; the last two are
    /// rounded up to whole ms so that retrying at them succeeds.
    #[inline]
    pub fn check(&self, state: &mut GcraState, now_ms: u64, cost: u64) -> Decision {
        let now_ns = u128::from(saturate(u128::from(now_ms) * NS_PER_MS));
        let interval_ns = u128::from(self.emission_interval_ns);
        let tolerance_ns = u128::from(self.tolerance_ns);
        // An idle key's TAT lies in the past; pacing restarts from now.
        let tat_ns = u128::from(state.tat_ns).max(now_ns);

        let never = cost > self.burst;
        let new_tat_ns = tat_ns + u128::from(cost) * interval_ns;
        let allowed = !never && new_tat_ns <= now_ns + tolerance_ns;
        if allowed {
            state.tat_ns = saturate(new_tat_ns);
        }
        let tat_after_ns = if allowed { new_tat_ns } else { tat_ns };
        // Past `now + tolerance` only if the clock stepped back.
        let credit_ns = (now_ns + tolerance_ns).saturating_sub(tat_after_ns);
        let retry_after_ms = if allowed {
            0
        } else if never {
            NEVER_MS
        } else {
            ceil_ms(new_tat_ns - tolerance_ns - now_ns)
        };
        debug_assert!(!allowed || credit_ns <= tolerance_ns);
        Decision {
            allowed,
            limit: self.burst,
            remaining: match u64::try_from(credit_ns) {
                Ok(credit_ns) => self.interval_reciprocal.divide(credit_ns),
                Err(_) => saturate(credit_ns / interval_ns),
            },
            reset_after_ms: ceil_ms(tat_after_ns - now_ns),
            retry_after_ms,
        }
    }
}

fn ceil_ms(duration_ns: u128) -> u64 {
    // Durations fit in a u64 but for states at the far end of time; a u64
    // division by a constant is a multiplication, a u128 one a library call.
    match u64::try_from(duration_ns) {
        Ok(duration_ns) => duration_ns.div_ceil(NS_PER_MS as u64),
        Err(_) => saturate(duration_ns.div_ceil(NS_PER_MS)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_700_000_000_000;

    #[test]
    fn division_by_reciprocal_is_exact() {
        let divisors = [
            1u64,
            2,
            3,
            7,
            10,
            1_000_000,
            333_333_334,
            u64::MAX / 3,
            u64::MAX,
        ];
        for &d in &divisors {
            let r = Reciprocal::new(d);
            let mut n = 0x9E37_79B9_7F4A_7C15u64;
            for probe in [0, 1, d - 1, d, d.wrapping_add(1), u64::MAX - 1, u64::MAX] {
                assert_eq!(r.divide(probe), probe / d, "{probe} / {d}");
            }
            for _ in 0..10_000 {
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                assert_eq!(r.divide(n), n / d, "{n} / {d}");
                let small = n >> 20;
                assert_eq!(r.divide(small), small / d, "{small} / {d}");
            }
        }
    }

    #[test]
    fn fresh_key_spends_its_burst_then_is_paced() {
        // 10 per second, 5 at once: T = 100 ms, tolerance = 500 ms.
        let limiter = Gcra::new(10, 1_000, 5).expect("valid config");
        let mut state = GcraState::default();
        for admitted in 1..=5 {
            let decision = limiter.check(&mut state, NOW_MS, 1);
            assert!(decision.allowed);
            assert_eq!(decision.limit, 5);
            assert_eq!(decision.remaining, 5 - admitted);
            assert_eq!(decision.reset_after_ms, 100 * admitted);
        }
        let denied = limiter.check(&mut state, NOW_MS, 1);
        assert!(!denied.allowed);
        assert_eq!(denied.remaining, 0);
        assert_eq!(denied.retry_after_ms, 100);
        assert_eq!(denied.reset_after_ms, 500);

        assert!(!limiter.check(&mut state, NOW_MS + 99, 1).allowed);
        assert!(limiter.check(&mut state, NOW_MS + 100, 1).allowed);
        // Paced at exactly T from then on.
        for step in 2..20 {
            assert!(limiter.check(&mut state, NOW_MS + 100 * step, 1).allowed);
            assert!(!limiter.check(&mut state, NOW_MS + 100 * step, 1).allowed);
        }
    }

    #[test]
    fn idle_key_refills_to_burst_and_no_further() {
        let limiter = Gcra::new(10, 1_000, 5).expect("valid config");
        let mut state = GcraState::default();
        assert!(limiter.check(&mut state, NOW_MS, 5).allowed);
        let half = limiter.check(&mut state, NOW_MS + 250, 0);
        assert_eq!(half.remaining, 2);
        assert_eq!(half.reset_after_ms, 250);
        let full = limiter.check(&mut state, NOW_MS + 10_000, 0);
        assert_eq!(full.remaining, 5);
        assert_eq!(full.reset_after_ms, 0);
        assert!(limiter.check(&mut state, NOW_MS + 10_000, 5).allowed);
        assert!(!limiter.check(&mut state, NOW_MS + 10_000, 1).allowed);
    }

    #[test]
    fn cost_counts_several_tokens() {
        let limiter = Gcra::new(10, 1_000, 5).expect("valid config");
        let mut state = GcraState::default();
        assert!(limiter.check(&mut state, NOW_MS, 3).allowed);
        let denied = limiter.check(&mut state, NOW_MS, 3);
        assert!(!denied.allowed);
        assert_eq!(denied.remaining, 2);
        assert_eq!(denied.retry_after_ms, 100);
        assert_eq!(state.tat_ns, (NOW_MS + 300) * 1_000_000);
    }

    #[test]
    fn cost_above_burst_never_passes() {
        let limiter = Gcra::new(10, 1_000, 5).expect("valid config");
        let mut state = GcraState::default();
        let decision = limiter.check(&mut state, NOW_MS, 6);
        assert!(!decision.allowed);
        assert_eq!(decision.retry_after_ms, NEVER_MS);
        assert_eq!(decision.remaining, 5);
        assert_eq!(state, GcraState::default());
    }

    #[test]
    fn fractional_interval_rounds_up_and_retry_rounds_up() {
        // 3 per second: T = 333_333_334 ns.
        let limiter = Gcra::new(3, 1_000, 1).expect("valid config");
        assert_eq!(limiter.emission_interval_ns(), 333_333_334);
        let mut state = GcraState::default();
        assert!(limiter.check(&mut state, NOW_MS, 1).allowed);
        let denied = limiter.check(&mut state, NOW_MS + 333, 1);
        assert!(!denied.allowed);
        assert_eq!(denied.retry_after_ms, 1);
        assert!(limiter.check(&mut state, NOW_MS + 334, 1).allowed);
    }

    #[test]
    fn clock_stepping_back_gains_no_capacity() {
        let limiter = Gcra::new(1, 1_000, 1).expect("valid config");
        let mut state = GcraState::default();
        assert!(limiter.check(&mut state, NOW_MS, 1).allowed);
        let back = limiter.check(&mut state, NOW_MS - 5_000, 1);
        assert!(!back.allowed);
        assert_eq!(back.remaining, 0);
        // The bucket refills at NOW + 1_000, 6 s after the stepped-back time.
        assert_eq!(back.retry_after_ms, 6_000);
    }

    #[test]
    fn times_past_the_ns_horizon_do_not_overflow() {
        let limiter = Gcra::new(1, 1, 1).expect("valid config");
        let mut state = GcraState::default();
        assert!(limiter.check(&mut state, u64::MAX, 1).allowed);
        assert_eq!(state.tat_ns, u64::MAX);
        let decision = limiter.check(&mut state, u64::MAX, 0);
        assert!(decision.allowed);
    }

    #[test]
    fn new_rejects_invalid_configs() {
        assert_eq!(Gcra::new(0, 1, 1), Err(Error::ZeroLimit));
        assert_eq!(Gcra::new(1, 0, 1), Err(Error::ZeroWindow));
        assert_eq!(Gcra::new(1, 1, 0), Err(Error::ZeroBurst));
        assert_eq!(
            Gcra::new(1_000_001, 1, 1),
            Err(Error::RateTooHigh {
                limit: 1_000_001,
                period_ms: 1
            })
        );
        assert!(Gcra::new(1_000_000, 1, 1).is_ok());
        assert!(matches!(
            Gcra::new(1, u64::MAX, 1),
            Err(Error::ToleranceTooLong { .. })
        ));
        assert!(matches!(
            Gcra::new(1, 1_000, u64::MAX),
            Err(Error::ToleranceTooLong { .. })
        ));
    }

    #[test]
    fn encode_decode_round_trip() {
        let state = GcraState {
            tat_ns: 1_700_000_000_123_456_789,
        };
        assert_eq!(GcraState::decode(&state.encode()), Some(state));
        assert_eq!(GcraState::decode(&[0u8; 7]), None);
    }
}
