use std::fmt;

/// Why a rate-limit configuration was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The limit was 0, which would deny every request.
    ZeroLimit,
    /// The window or period was 0 ms long.
    ZeroWindow,
    /// The GCRA burst was 0, which would deny every request.
    ZeroBurst,
    /// `limit` requests per `period_ms` needs an emission interval shorter
    /// than the 1 ns resolution of GCRA's state.
    RateTooHigh { limit: u64, period_ms: u64 },
    /// The GCRA tolerance (`period_ms / limit * burst`) does not fit in
    /// `max_ns` nanoseconds (about 584 years).
    ToleranceTooLong {
        limit: u64,
        period_ms: u64,
        burst: u64,
        max_ns: u64,
    },
    /// A keyed limiter's cap on tracked keys was 0.
    ZeroKeys,
    /// A keyed limiter's cap on tracked keys was above `limit`.
    TooManyKeys { keys_max: usize, limit: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::ZeroLimit => write!(f, "rate limit must be at least 1"),
            Error::ZeroWindow => write!(f, "rate-limit window must be at least 1 ms"),
            Error::ZeroBurst => write!(f, "rate-limit burst must be at least 1"),
            Error::RateTooHigh { limit, period_ms } => write!(
                f,
                "rate of {limit} per {period_ms} ms is finer than 1 ns per request; \
                 lower the limit or lengthen the period"
            ),
            Error::ToleranceTooLong {
                limit,
                period_ms,
                burst,
                max_ns,
            } => write!(
                f,
                "burst of {burst} at {limit} per {period_ms} ms spans more than \
                 {max_ns} ns; lower the burst or raise the rate"
            ),
            Error::ZeroKeys => write!(f, "a keyed limiter must track at least 1 key"),
            Error::TooManyKeys { keys_max, limit } => write!(
                f,
                "a keyed limiter can track at most {limit} keys, not {keys_max}"
            ),
        }
    }
}

impl std::error::Error for Error {}
