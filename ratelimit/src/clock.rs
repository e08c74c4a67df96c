//! Where `now_ms` comes from.
//!
//! The algorithms take the time as an argument. [`SystemClock`] reads the
//! system clock on every call; [`CoarseClock`] reads it once per
//! [`refresh`](CoarseClock::refresh) and then answers from memory, which is
//! the way to check many requests in a hot loop without a system call (or a
//! vDSO read) per check: refresh once per event-loop turn or per batch, and
//! every check in that turn sees the same millisecond.
//!
//! ```
//! use durin_ratelimit::{CoarseClock, FixedWindow, FixedWindowState};
//!
//! let limiter = FixedWindow::new(2, 1_000)?;
//! let mut states = [FixedWindowState::default(); 3];
//! let mut clock = CoarseClock::new();
//! // One event-loop turn: one clock read for the whole batch.
//! clock.refresh();
//! for state in &mut states {
//!     assert!(limiter.check(state, clock.now_ms(), 1).allowed);
//! }
//! # Ok::<(), durin_ratelimit::Error>(())
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use crate::saturate;

/// A source of the current time in ms since the Unix epoch.
pub trait Clock {
    fn now_ms(&self) -> u64;
}

/// Reads the system clock on every call.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        system_now_ms()
    }
}

/// The time as of the last [`refresh`](Self::refresh), read from memory.
///
/// It is a plain value, not shared state: each shard or thread owns its own
/// and refreshes it on its own schedule. It follows the system clock
/// faithfully, steps back included; the algorithms already refuse to grant
/// capacity when the time they are given goes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoarseClock {
    now_ms: u64,
}

impl CoarseClock {
    /// A clock read from the system once, now.
    pub fn new() -> Self {
        Self {
            now_ms: system_now_ms(),
        }
    }

    /// A clock stopped at `now_ms` until [`set`](Self::set) or
    /// [`refresh`](Self::refresh): for tests and deterministic drivers.
    pub fn at(now_ms: u64) -> Self {
        Self { now_ms }
    }

    /// Reads the system clock (one system call at most) and returns the
    /// new time.
    pub fn refresh(&mut self) -> u64 {
        self.now_ms = system_now_ms();
        self.now_ms
    }

    /// Sets the time from a source the caller already has, such as a
    /// timestamp its event loop read anyway.
    pub fn set(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    /// The time as of the last refresh or set; no system call.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }
}

impl Default for CoarseClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for CoarseClock {
    #[inline]
    fn now_ms(&self) -> u64 {
        self.now_ms
    }
}

/// ms since the Unix epoch; 0 for a system clock set before 1970, which then
/// behaves as a clock stepped back.
fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| saturate(elapsed.as_millis()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_clock_answers_from_memory_until_refreshed() {
        let mut clock = CoarseClock::at(42);
        assert_eq!(clock.now_ms(), 42);
        assert_eq!(Clock::now_ms(&clock), 42);
        clock.set(43);
        assert_eq!(clock.now_ms(), 43);
        let refreshed = clock.refresh();
        assert_eq!(clock.now_ms(), refreshed);
        // After 2020-01-01: the system clock was read, not left at 43.
        assert!(refreshed > 1_577_836_800_000);
    }

    #[test]
    fn system_clock_is_close_to_a_fresh_coarse_clock() {
        let coarse = CoarseClock::new();
        let system = SystemClock.now_ms();
        assert!(system.abs_diff(coarse.now_ms()) < 60_000);
    }
}
