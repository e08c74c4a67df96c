//! `ratelimit`: the seed's fixed-window rate limiter, one object per key.
//!
//! `GET` or `POST /ratelimit/{key}`: under the limit, 200 with
//! `{"remaining": R, "limit": L, "reset": S}`; over it, 429 with
//! `{"error": "Rate limit exceeded", "retryAfter": S}` and `Retry-After: S`.
//! The count lives in the object's storage, so it survives restarts within
//! the window. The algorithm is `durin-ratelimit`'s, the same code an
//! embedding application calls.

use durin_ratelimit::{FixedWindow, FixedWindowState};

use crate::config::{reject_unknown, take_u64, ConfigError};
use crate::object::{Context, DurableObject, ObjectClass, Request, Response};
use crate::ObjectId;

const STATE_KEY: &[u8] = b"fixed-window";

/// The rate limiter class, with its per-class limit and window.
pub struct RateLimitClass {
    algorithm: FixedWindow,
}

impl RateLimitClass {
    /// Builds the class from `[classes.ratelimit]`: `limit` (default 100)
    /// and `window_ms` (default 60000).
    pub fn from_config(table: &mut toml::Table) -> Result<RateLimitClass, ConfigError> {
        let limit = take_u64(table, "ratelimit", "limit", 100)?;
        let window_ms = take_u64(table, "ratelimit", "window_ms", 60_000)?;
        reject_unknown(table, "ratelimit")?;
        let algorithm = FixedWindow::new(limit, window_ms)
            .map_err(|e| ConfigError(format!("classes.ratelimit: {e}")))?;
        Ok(RateLimitClass { algorithm })
    }
}

impl ObjectClass for RateLimitClass {
    fn create(&self, _id: &ObjectId, ctx: &mut Context<'_>) -> Box<dyn DurableObject> {
        let state = ctx
            .storage()
            .get_with(STATE_KEY, |v| v.and_then(FixedWindowState::decode))
            .expect("reading a limiter's state from the shard's own store")
            .unwrap_or_default();
        Box::new(RateLimiter {
            algorithm: self.algorithm,
            state,
        })
    }
}

struct RateLimiter {
    algorithm: FixedWindow,
    state: FixedWindowState,
}

/// Whole seconds in `ms`, rounded up.
fn ceil_seconds(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

impl DurableObject for RateLimiter {
    fn fetch(&mut self, req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
        if !matches!(req.method, "GET" | "POST") || !req.path.is_empty() {
            res.text(404, "Not found");
            return;
        }
        let before = self.state;
        let decision = self.algorithm.check(&mut self.state, ctx.now_ms(), 1);
        if self.state != before && decision.allowed {
            ctx.storage().put(STATE_KEY, &self.state.encode());
        }
        if decision.allowed {
            let body = res.json(200).body_mut();
            body.extend_from_slice(b"{\"remaining\": ");
            super::push_u64(body, decision.remaining);
            body.extend_from_slice(b", \"limit\": ");
            super::push_u64(body, decision.limit);
            body.extend_from_slice(b", \"reset\": ");
            super::push_u64(body, ceil_seconds(decision.reset_after_ms));
            body.push(b'}');
        } else {
            let retry_after = ceil_seconds(decision.retry_after_ms.min(decision.reset_after_ms));
            let mut digits = Vec::with_capacity(20);
            super::push_u64(&mut digits, retry_after);
            let digits = std::str::from_utf8(&digits).expect("ASCII digits");
            res.header("Retry-After", digits);
            let body = res.json(429).body_mut();
            body.extend_from_slice(b"{\"error\": \"Rate limit exceeded\", \"retryAfter\": ");
            body.extend_from_slice(digits.as_bytes());
            body.push(b'}');
        }
    }
}
