//! `ratelimit`: a rate limiter per key, one object per key.
//!
//! `GET` or `POST /ratelimit/{key}`: under the limit, 200 with
//! `{"remaining": R, "limit": L, "reset": S}`; over it, 429 with
//! `{"error": "Rate limit exceeded", "retryAfter": S}` and `Retry-After: S`.
//! The state lives in the object's storage, so it survives restarts. The
//! algorithms are `durin-ratelimit`'s, the same code an embedding
//! application calls, chosen per class in `[classes.ratelimit]`:
//!
//! ```toml
//! [classes.ratelimit]
//! algorithm = "gcra"     # "fixed_window" (the default), "sliding_window" or "gcra"
//! limit = 100            # units per window (for gcra: per period, on average)
//! window_ms = 60000      # the window, or gcra's period
//! burst = 20             # gcra only: units at once (default: limit)
//! ```
//!
//! Each algorithm stores its state under a key of its own, because the
//! encodings differ: a change of algorithm starts every key afresh instead of
//! misreading the old bytes. For GCRA, `limit` in a response is the burst and
//! `reset` the time until the bucket is full again.

use durin_ratelimit::{
    Decision, FixedWindow, FixedWindowState, Gcra, GcraState, SlidingWindow, SlidingWindowState,
};

use crate::config::{reject_unknown, take_u64, ConfigError};
use crate::object::{
    Context, DurableObject, ObjectClass, Request, Response, RpcError, StorageError,
};
use crate::ObjectId;
use durin_proto::rpc::builtin;

const FIXED_WINDOW_KEY: &[u8] = b"fixed-window";
const SLIDING_WINDOW_KEY: &[u8] = b"sliding-window";
const GCRA_KEY: &[u8] = b"gcra";

/// The `algorithm` values the config accepts.
const ALGORITHMS: &str = "\"fixed_window\", \"sliding_window\" or \"gcra\"";

/// The algorithm a class runs, with its validated parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Algorithm {
    FixedWindow(FixedWindow),
    SlidingWindow(SlidingWindow),
    Gcra(Gcra),
}

/// One key's limiter: the class's algorithm and the key's state of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Limiter {
    FixedWindow(FixedWindow, FixedWindowState),
    SlidingWindow(SlidingWindow, SlidingWindowState),
    Gcra(Gcra, GcraState),
}

impl Algorithm {
    fn storage_key(&self) -> &'static [u8] {
        match self {
            Algorithm::FixedWindow(_) => FIXED_WINDOW_KEY,
            Algorithm::SlidingWindow(_) => SLIDING_WINDOW_KEY,
            Algorithm::Gcra(_) => GCRA_KEY,
        }
    }

    /// The limiter of a key whose stored state is `bytes`; bytes of another
    /// length (or none) count as a key never seen.
    fn limiter(&self, bytes: Option<&[u8]>) -> Limiter {
        match *self {
            Algorithm::FixedWindow(a) => Limiter::FixedWindow(
                a,
                bytes.and_then(FixedWindowState::decode).unwrap_or_default(),
            ),
            Algorithm::SlidingWindow(a) => Limiter::SlidingWindow(
                a,
                bytes
                    .and_then(SlidingWindowState::decode)
                    .unwrap_or_default(),
            ),
            Algorithm::Gcra(a) => {
                Limiter::Gcra(a, bytes.and_then(GcraState::decode).unwrap_or_default())
            }
        }
    }
}

impl Limiter {
    fn check(&mut self, now_ms: u64, cost: u64) -> Decision {
        match self {
            Limiter::FixedWindow(a, s) => a.check(s, now_ms, cost),
            Limiter::SlidingWindow(a, s) => a.check(s, now_ms, cost),
            Limiter::Gcra(a, s) => a.check(s, now_ms, cost),
        }
    }

    /// Writes the state's encoding under its algorithm's key.
    fn store(&self, ctx: &mut Context<'_>) -> Result<(), StorageError> {
        match self {
            Limiter::FixedWindow(_, s) => ctx.storage().put(FIXED_WINDOW_KEY, &s.encode()),
            Limiter::SlidingWindow(_, s) => ctx.storage().put(SLIDING_WINDOW_KEY, &s.encode()),
            Limiter::Gcra(_, s) => ctx.storage().put(GCRA_KEY, &s.encode()),
        }
    }
}

/// The rate limiter class, with its per-class algorithm and parameters.
pub struct RateLimitClass {
    algorithm: Algorithm,
}

impl RateLimitClass {
    /// Builds the class from `[classes.ratelimit]`: `algorithm` (default
    /// `"fixed_window"`), `limit` (default 100), `window_ms` (default 60000)
    /// and, for `"gcra"` only, `burst` (default: `limit`).
    pub fn from_config(table: &mut toml::Table) -> Result<RateLimitClass, ConfigError> {
        let name = take_algorithm(table)?;
        let limit = take_u64(table, "ratelimit", "limit", 100)?;
        let window_ms = take_u64(table, "ratelimit", "window_ms", 60_000)?;
        let burst = if table.contains_key("burst") {
            if name != "gcra" {
                return Err(ConfigError(format!(
                    "classes.ratelimit.burst applies only to algorithm = \"gcra\", not \"{name}\""
                )));
            }
            Some(take_u64(table, "ratelimit", "burst", limit)?)
        } else {
            None
        };
        reject_unknown(table, "ratelimit")?;
        let invalid = |e: durin_ratelimit::Error| ConfigError(format!("classes.ratelimit: {e}"));
        let algorithm = match name {
            "sliding_window" => {
                Algorithm::SlidingWindow(SlidingWindow::new(limit, window_ms).map_err(invalid)?)
            }
            "gcra" => Algorithm::Gcra(
                Gcra::new(limit, window_ms, burst.unwrap_or(limit)).map_err(invalid)?,
            ),
            _ => Algorithm::FixedWindow(FixedWindow::new(limit, window_ms).map_err(invalid)?),
        };
        Ok(RateLimitClass { algorithm })
    }
}

/// Takes `algorithm` out of the table: one of [`ALGORITHMS`], by default
/// `"fixed_window"`.
fn take_algorithm(table: &mut toml::Table) -> Result<&'static str, ConfigError> {
    let Some(value) = table.remove("algorithm") else {
        return Ok("fixed_window");
    };
    match value.as_str() {
        Some("fixed_window") => Ok("fixed_window"),
        Some("sliding_window") => Ok("sliding_window"),
        Some("gcra") => Ok("gcra"),
        _ => Err(ConfigError(format!(
            "classes.ratelimit.algorithm must be {ALGORITHMS}, not {value}"
        ))),
    }
}

impl ObjectClass for RateLimitClass {
    fn create(&self, _id: &ObjectId, ctx: &mut Context<'_>) -> Box<dyn DurableObject> {
        let algorithm = self.algorithm;
        let limiter = ctx
            .storage()
            .get_with(algorithm.storage_key(), |bytes| algorithm.limiter(bytes))
            .expect("reading a limiter's state from the shard's own store");
        Box::new(RateLimiter { limiter })
    }
}

struct RateLimiter {
    limiter: Limiter,
}

/// Whole seconds in `ms`, rounded up.
fn ceil_seconds(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

impl DurableObject for RateLimiter {
    /// RPC: `check`, with the cost as 8 little-endian bytes (or nothing for
    /// a cost of 1); the answer is the decision
    /// ([`builtin::RateLimitDecision`]).
    fn rpc(
        &mut self,
        method: &str,
        payload: &[u8],
        out: &mut Vec<u8>,
        ctx: &mut Context<'_>,
    ) -> Result<(), RpcError> {
        if method != builtin::RATELIMIT_CHECK {
            return Err(RpcError::UnknownMethod);
        }
        let cost = builtin::decode_ratelimit_cost(payload).ok_or_else(|| {
            RpcError::BadArgument("check takes a cost of 8 little-endian bytes, or nothing".into())
        })?;
        let before = self.limiter;
        let decision = self.limiter.check(ctx.now_ms(), cost);
        if self.limiter != before && decision.allowed {
            if let Err(e) = self.limiter.store(ctx) {
                self.limiter = before;
                return Err(RpcError::Storage(e));
            }
        }
        let answer = builtin::RateLimitDecision {
            allowed: decision.allowed,
            limit: decision.limit,
            remaining: decision.remaining,
            reset_after_ms: decision.reset_after_ms,
            retry_after_ms: decision.retry_after_ms,
        };
        answer.encode(out);
        Ok(())
    }

    fn fetch(&mut self, req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
        if !req.path.is_empty() {
            res.text(404, "Not found");
            return;
        }
        if !matches!(req.method, "GET" | "POST") {
            res.method_not_allowed("GET, POST");
            return;
        }
        let before = self.limiter;
        let decision = self.limiter.check(ctx.now_ms(), 1);
        // A denial changes nothing that matters (at most the window it is
        // counted in), so only a grant is written.
        if self.limiter != before && decision.allowed {
            if let Err(e) = self.limiter.store(ctx) {
                // Only a class configured with tiny storage limits gets
                // here; a grant that cannot be stored is not made.
                self.limiter = before;
                res.text(507, &e.to_string());
                return;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn class(toml: &str) -> Result<RateLimitClass, ConfigError> {
        let mut table: toml::Table = toml::from_str(toml).expect("test TOML parses");
        RateLimitClass::from_config(&mut table)
    }

    fn error(toml: &str) -> String {
        match class(toml) {
            Ok(class) => panic!("{toml:?} was accepted as {:?}", class.algorithm),
            Err(e) => e.0,
        }
    }

    #[test]
    fn fixed_window_is_the_default() {
        let class = class("").expect("valid");
        let expected = FixedWindow::new(100, 60_000).expect("valid");
        assert_eq!(class.algorithm, Algorithm::FixedWindow(expected));
        assert_eq!(class.algorithm.storage_key(), b"fixed-window");
    }

    #[test]
    fn each_algorithm_is_built_from_its_settings() {
        let sliding =
            class("algorithm = \"sliding_window\"\nlimit = 5\nwindow_ms = 1000\n").expect("valid");
        let expected = SlidingWindow::new(5, 1_000).expect("valid");
        assert_eq!(sliding.algorithm, Algorithm::SlidingWindow(expected));

        let gcra =
            class("algorithm = \"gcra\"\nlimit = 5\nwindow_ms = 1000\nburst = 2\n").expect("valid");
        assert_eq!(
            gcra.algorithm,
            Algorithm::Gcra(Gcra::new(5, 1_000, 2).expect("valid"))
        );
        let gcra = class("algorithm = \"gcra\"\nlimit = 5\n").expect("valid");
        assert_eq!(
            gcra.algorithm,
            Algorithm::Gcra(Gcra::new(5, 60_000, 5).expect("valid")),
            "burst defaults to the limit"
        );
    }

    #[test]
    fn unknown_algorithm_names_the_key() {
        let message = error("algorithm = \"leaky_bucket\"\n");
        assert!(message.contains("classes.ratelimit.algorithm"), "{message}");
        assert!(message.contains("leaky_bucket"), "{message}");
        let message = error("algorithm = 3\n");
        assert!(message.contains("classes.ratelimit.algorithm"), "{message}");
    }

    #[test]
    fn burst_is_only_for_gcra() {
        let message = error("burst = 3\n");
        assert!(message.contains("classes.ratelimit.burst"), "{message}");
        let message = error("algorithm = \"sliding_window\"\nburst = 3\n");
        assert!(message.contains("burst"), "{message}");
        let message = error("algorithm = \"gcra\"\nburst = 0\n");
        assert!(message.contains("burst"), "{message}");
    }

    #[test]
    fn invalid_parameters_are_refused() {
        // Finer than 1 ns per unit.
        let message = error("algorithm = \"gcra\"\nlimit = 2000000000\nwindow_ms = 1\n");
        assert!(message.contains("classes.ratelimit"), "{message}");
        let message = error("bogus = 1\n");
        assert!(message.contains("bogus"), "{message}");
    }

    #[test]
    fn states_decode_only_their_own_encoding() {
        let gcra = Gcra::new(1, 1_000, 1).expect("valid");
        let fixed = FixedWindow::new(1, 1_000).expect("valid");
        let stored = FixedWindowState {
            window_index: 3,
            count: 1,
        };
        let bytes = stored.encode();
        assert_eq!(
            Algorithm::Gcra(gcra).limiter(Some(&bytes)),
            Limiter::Gcra(gcra, GcraState::default())
        );
        assert_eq!(
            Algorithm::FixedWindow(fixed).limiter(Some(&bytes)),
            Limiter::FixedWindow(fixed, stored)
        );
        assert_eq!(
            Algorithm::FixedWindow(fixed).limiter(None),
            Limiter::FixedWindow(fixed, FixedWindowState::default())
        );
    }
}
