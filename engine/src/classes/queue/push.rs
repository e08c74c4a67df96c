//! Push delivery: a queue configured with a target delivers each message,
//! in order and one at a time, as an RPC call to an object. A failed call
//! is retried after `backoff_ms`, doubling, woken by the alarm; after
//! `max_attempts` failures the message moves to the dead letters
//! (`GET /queue/{name}/dead`) and delivery goes on with the next one.
//!
//! The attempt count and the time of the next try are stored, so a restart
//! neither forgets failures nor retries early. A call that is away when the
//! server stops is made again after the restart (at-least-once): the alarm
//! set while a call is away brings the queue back.

use serde::{Deserialize, Serialize};

use crate::object::{CallId, Context, StorageError};

const CONFIG_KEY: &[u8] = b"push";
const RETRY_KEY: &[u8] = b"push-retry";
const DEAD_COUNT_KEY: &[u8] = b"dead-count";

/// Most attempts a push target may ask for.
pub const ATTEMPTS_MAX: u32 = 100;
/// Longest delay between two attempts.
pub const BACKOFF_MS_MAX: u64 = 3_600_000;
/// How long after a call leaves the queue makes sure it wakes again, in
/// case the reply never comes: a restart loses calls that are away, and
/// this is how soon delivery resumes after one. While the queue is in
/// memory a wake-up with the call still away only sets the next one (one
/// small write per 5 s of pushing).
pub const WATCHDOG_MS: u64 = 5_000;
/// Longest class, object or method name.
pub const NAME_BYTES_MAX: usize = 256;

/// Where and how a queue pushes its messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Target {
    pub class: String,
    pub object: String,
    pub method: String,
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
}

fn default_attempts() -> u32 {
    5
}

fn default_backoff_ms() -> u64 {
    1000
}

impl Target {
    /// Why the target cannot be used, if it cannot.
    pub fn invalid(&self) -> Option<String> {
        let names = [
            ("class", &self.class),
            ("object", &self.object),
            ("method", &self.method),
        ];
        for (what, name) in names {
            if name.is_empty() || name.len() > NAME_BYTES_MAX {
                return Some(format!("{what} must be 1 to {NAME_BYTES_MAX} bytes"));
            }
        }
        if !(1..=ATTEMPTS_MAX).contains(&self.max_attempts) {
            return Some(format!("max_attempts must be 1 to {ATTEMPTS_MAX}"));
        }
        if !(1..=BACKOFF_MS_MAX).contains(&self.backoff_ms) {
            return Some(format!("backoff_ms must be 1 to {BACKOFF_MS_MAX}"));
        }
        None
    }

    /// The delay before attempt `failures + 1`.
    pub fn backoff_after_ms(&self, failures: u32) -> u64 {
        let doublings = failures.saturating_sub(1).min(20);
        self.backoff_ms
            .saturating_mul(1 << doublings)
            .min(BACKOFF_MS_MAX)
    }
}

/// The failures of the message at the head of a push queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Retry {
    pub seq: u64,
    pub failures: u32,
    pub not_before_ms: u64,
}

impl Retry {
    fn encode(&self) -> [u8; 20] {
        let mut out = [0u8; 20];
        out[..8].copy_from_slice(&self.seq.to_le_bytes());
        out[8..12].copy_from_slice(&self.failures.to_le_bytes());
        out[12..].copy_from_slice(&self.not_before_ms.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Retry> {
        if bytes.len() != 20 {
            return None;
        }
        Some(Retry {
            seq: u64::from_le_bytes(bytes[..8].try_into().ok()?),
            failures: u32::from_le_bytes(bytes[8..12].try_into().ok()?),
            not_before_ms: u64::from_le_bytes(bytes[12..].try_into().ok()?),
        })
    }
}

/// A queue's push state, in memory.
#[derive(Default)]
pub(super) struct Push {
    pub target: Option<Target>,
    pub retry: Option<Retry>,
    /// The call away now, and the message it carries.
    pub in_flight: Option<(CallId, u64)>,
    /// Dead letters stored.
    pub dead_count: u64,
}

impl Push {
    pub fn load(ctx: &mut Context<'_>) -> Result<Push, StorageError> {
        let target = ctx
            .storage()
            .get(CONFIG_KEY)?
            .and_then(|bytes| serde_json::from_slice::<Target>(&bytes).ok());
        let retry = ctx
            .storage()
            .get(RETRY_KEY)?
            .and_then(|bytes| Retry::decode(&bytes));
        let dead_count = ctx
            .storage()
            .get(DEAD_COUNT_KEY)?
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
            .map_or(0, u64::from_le_bytes);
        Ok(Push {
            target,
            retry,
            in_flight: None,
            dead_count,
        })
    }

    pub fn store_dead_count(
        &mut self,
        ctx: &mut Context<'_>,
        dead_count: u64,
    ) -> Result<(), StorageError> {
        ctx.storage()
            .put(DEAD_COUNT_KEY, &dead_count.to_le_bytes())?;
        self.dead_count = dead_count;
        Ok(())
    }

    pub fn set_target(
        &mut self,
        ctx: &mut Context<'_>,
        target: Option<Target>,
    ) -> Result<(), StorageError> {
        match &target {
            Some(t) => {
                // Serializing a struct of strings and numbers cannot fail.
                let bytes = serde_json::to_vec(t).unwrap_or_default();
                ctx.storage().put(CONFIG_KEY, &bytes)?;
            }
            None => {
                ctx.storage().delete(CONFIG_KEY)?;
            }
        }
        self.target = target;
        Ok(())
    }

    pub fn store_retry(
        &mut self,
        ctx: &mut Context<'_>,
        retry: Option<Retry>,
    ) -> Result<(), StorageError> {
        match &retry {
            Some(r) => ctx.storage().put(RETRY_KEY, &r.encode())?,
            None => {
                ctx.storage().delete(RETRY_KEY)?;
            }
        }
        self.retry = retry;
        Ok(())
    }

    /// When the next attempt may be made, for message `seq`.
    pub fn not_before_ms(&self, seq: u64) -> u64 {
        match self.retry {
            Some(r) if r.seq == seq => r.not_before_ms,
            _ => 0,
        }
    }

    /// Failures so far of message `seq`.
    pub fn failures(&self, seq: u64) -> u32 {
        match self.retry {
            Some(r) if r.seq == seq => r.failures,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let target = Target {
            class: "c".into(),
            object: "o".into(),
            method: "m".into(),
            max_attempts: 5,
            backoff_ms: 100,
        };
        assert_eq!(target.backoff_after_ms(1), 100);
        assert_eq!(target.backoff_after_ms(2), 200);
        assert_eq!(target.backoff_after_ms(3), 400);
        assert_eq!(target.backoff_after_ms(90), BACKOFF_MS_MAX);
    }

    #[test]
    fn retry_round_trips() {
        let retry = Retry {
            seq: 9,
            failures: 2,
            not_before_ms: 77,
        };
        assert_eq!(Retry::decode(&retry.encode()), Some(retry));
    }
}
