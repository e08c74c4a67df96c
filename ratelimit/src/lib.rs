//! Rate-limit algorithms shared by durin's `ratelimit` object class and by
//! applications that embed durin.
//!
//! A rate limiter answers one question per request: may this key spend `cost`
//! units now? Each algorithm here is split into two values:
//!
//! - a **config** ([`FixedWindow`], [`SlidingWindow`], [`Gcra`]), built once
//!   and validated by its `new`, and
//! - a **state** per key ([`FixedWindowState`], [`SlidingWindowState`],
//!   [`GcraState`]): a small `Copy` value of fixed size that encodes to a few
//!   little-endian bytes, so the server can persist it as one record.
//!
//! `check(&config, &mut state, now_ms, cost)` is pure arithmetic: it reads no
//! clock, allocates nothing and performs no I/O. The caller passes the time
//! (milliseconds since the Unix epoch), which keeps the decisions
//! deterministic in tests and lets a hot loop read the clock once per batch
//! through [`CoarseClock`]. Because the server and an embedding application
//! call the same functions on the same bytes, they always agree.
//!
//! Every [`Decision`] carries what HTTP rate-limit headers need: whether the
//! request was allowed, the limit, what remains, when the limit fully resets
//! and, after a denial, when a request of the same cost could pass.
//!
//! # Example
//!
//! ```
//! use durin_ratelimit::{FixedWindow, FixedWindowState};
//!
//! // 100 requests per minute, as durin's seed `ratelimit` class does.
//! let limiter = FixedWindow::new(100, 60_000)?;
//! let mut state = FixedWindowState::default();
//! let now_ms = 1_700_000_000_000;
//!
//! for _ in 0..100 {
//!     assert!(limiter.check(&mut state, now_ms, 1).allowed);
//! }
//! let denied = limiter.check(&mut state, now_ms, 1);
//! assert!(!denied.allowed);
//! assert_eq!(denied.remaining, 0);
//! assert_eq!(denied.retry_after_ms, denied.reset_after_ms);
//!
//! // The state is 16 bytes the server stores as they are.
//! let bytes = state.encode();
//! assert_eq!(FixedWindowState::decode(&bytes), Some(state));
//!
//! // The next window admits again.
//! let later = now_ms + denied.retry_after_ms;
//! assert!(limiter.check(&mut state, later, 1).allowed);
//! # Ok::<(), durin_ratelimit::Error>(())
//! ```
//!
//! # Many keys
//!
//! [`KeyedLimiter`] keeps a state per key in a table with a hard cap on the
//! keys it tracks; [`SyncKeyedLimiter`] shares one among threads. The
//! [`keyed`] module explains their memory and what they guarantee at the cap.
//!
//! ```
//! use durin_ratelimit::{CoarseClock, KeyedLimiter, SlidingWindow};
//!
//! // About 100 requests per minute per user, at most 1,000,000 users tracked.
//! let mut limiter = KeyedLimiter::new(SlidingWindow::new(100, 60_000)?, 1_000_000)?;
//! let mut clock = CoarseClock::new();
//! clock.refresh(); // once per batch of checks, not once per check
//! let user_id: u64 = 42;
//! let decision = limiter.check(&user_id, clock.now_ms(), 1);
//! assert!(decision.allowed);
//! assert_eq!(decision.remaining, 99);
//! assert!(limiter.check(&user_id, clock.now_ms(), 99).allowed);
//! assert!(!limiter.check(&user_id, clock.now_ms(), 1).allowed);
//! # Ok::<(), durin_ratelimit::Error>(())
//! ```
//!
//! # Clocks that step backwards
//!
//! Wall clocks can be stepped back (NTP, an operator). Each algorithm treats a
//! `now_ms` earlier than the time its state already reflects as that earlier
//! time: a key never gets fresh capacity because the clock went back, and the
//! durations in the decision are still measured from the `now_ms` passed in.

mod algorithm;
mod clock;
mod error;
mod fixed_window;
mod gcra;
pub mod keyed;
mod sliding_window;

pub use algorithm::Algorithm;
pub use clock::{Clock, CoarseClock, SystemClock};
pub use error::Error;
pub use fixed_window::{FixedWindow, FixedWindowState};
pub use gcra::{Gcra, GcraState};
pub use keyed::{KeyedLimiter, KeyedStats, SyncKeyedLimiter};
pub use sliding_window::{SlidingWindow, SlidingWindowState};

/// The value of [`Decision::retry_after_ms`] when the request can never be
/// allowed, because its cost exceeds what the limiter can ever admit at once.
pub const NEVER_MS: u64 = u64::MAX;

/// The answer to one check.
///
/// The fields map onto the usual response headers: `limit` and `remaining`
/// onto `RateLimit-Limit` and `RateLimit-Remaining`, `reset_after_ms` onto
/// `RateLimit-Reset`, and `retry_after_ms` onto `Retry-After` for a denial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a rate-limit decision that is not acted on limits nothing"]
pub struct Decision {
    /// Whether the request was admitted (and its cost recorded in the state).
    pub allowed: bool,
    /// The most units the key can be granted at one instant: the window's
    /// limit for the window algorithms, the burst for GCRA.
    pub limit: u64,
    /// The largest cost a further check at the same instant would be allowed,
    /// after this decision took effect.
    pub remaining: u64,
    /// Time until the limit has fully reset. For the fixed window, this is the
    /// time until the current window ends.
    pub reset_after_ms: u64,
    /// 0 when allowed; otherwise the time until a request of the same cost
    /// could be allowed if nothing else is admitted meanwhile, or
    /// [`NEVER_MS`] when its cost exceeds `limit`.
    pub retry_after_ms: u64,
}

/// Converts a `u128` duration or count back to `u64`, saturating; the
/// algorithms widen to `u128` so that no product of two `u64`s can overflow.
fn saturate(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// Reads a little-endian `u64` at `offset`; the caller has checked the length.
fn read_u64_le(bytes: &[u8], offset: usize) -> Option<u64> {
    let chunk = bytes.get(offset..offset + 8)?;
    let array: [u8; 8] = chunk.try_into().ok()?;
    Some(u64::from_le_bytes(array))
}
