//! Spreading one hot logical key over N objects.
//!
//! One object runs one event at a time on one core, so a single very hot
//! key (a global counter, one API key's rate limit) is capped by what one
//! core does for one object. Splitting it over N sub-objects, named
//! `{key}~{i}` for i in 0..N, spreads the writes over the shards those
//! names hash to. Callers pick a sub-object with rendezvous (highest
//! random weight) hashing of their own identity, so they need no
//! coordination, each caller keeps hitting the same sub-object (its
//! writes stay ordered), and changing N moves only about 1/N of the
//! callers.
//!
//! ```no_run
//! use durin_client::sharding::{ShardedCounter, ShardedRateLimit};
//! # fn main() -> Result<(), durin_client::ClientError> {
//! # let client = durin_client::Client::connect("127.0.0.1:7070".parse().unwrap(), Default::default())?;
//! let hits = ShardedCounter::new("hits", 4)?;
//! hits.increment(&client, b"connection-17")?;   // one of hits~0..hits~3
//! let total = hits.read(&client)?;                // the sum of all four
//!
//! // A global limit of 1000/window split over 4 sub-limiters of the
//! // `ratelimit_shard` class, configured with `limit = 250`.
//! let limit = ShardedRateLimit::new("api-key:42", 4, "ratelimit_shard")?;
//! let decision = limit.check(&client, b"connection-17", 1)?;
//! # let _ = (total, decision);
//! # Ok(())
//! # }
//! ```
//!
//! The trade-off of a split rate limit: each sub-limiter admits at most
//! `limit / N`, so the sum never passes the global limit, but a caller
//! pinned to one sub-limiter is refused once its share is spent even while
//! the others have room. With many callers spread evenly the whole limit
//! is usable; with few, up to `(N - 1) / N` of it may go unused.

use durin_proto::rpc::builtin::{self, RateLimitDecision};
use durin_proto::rpc::ObjectRef;

use crate::{Call, Client, ClientError};

/// Most sub-objects one key may be split into: a read of the sum makes
/// one call per sub-object.
pub const SUB_OBJECTS_MAX: u32 = 1024;

/// The name of sub-object `index` of `key`.
pub fn sub_object_name(key: &str, index: u32) -> String {
    format!("{key}~{index}")
}

/// 64-bit FNV-1a: stable across platforms and releases, so every caller
/// computes the same pick.
fn fnv1a(bytes: &[u8], mut hash: u64) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// A finalizer that spreads FNV's weak low bits (splitmix64's).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The sub-object (0..shards) that `caller` uses for `key`, by rendezvous
/// hashing: the index with the highest weight hash(key, caller, index).
pub fn rendezvous_pick(key: &[u8], caller: &[u8], shards: u32) -> u32 {
    assert!(shards >= 1);
    let base = fnv1a(caller, fnv1a(key, 0xcbf2_9ce4_8422_2325) ^ 0xff);
    (0..shards)
        .max_by_key(|i| mix(fnv1a(&i.to_le_bytes(), base)))
        .unwrap_or(0)
}

fn check_shards(shards: u32) -> Result<(), ClientError> {
    if (1..=SUB_OBJECTS_MAX).contains(&shards) {
        return Ok(());
    }
    Err(ClientError::SubObjects {
        shards,
        max: SUB_OBJECTS_MAX,
    })
}

/// A counter split over `shards` counters of the built-in `counter` class.
#[derive(Debug, Clone)]
pub struct ShardedCounter {
    key: String,
    names: Vec<ObjectRef>,
}

impl ShardedCounter {
    /// Fails if `shards` is 0 or over [`SUB_OBJECTS_MAX`].
    pub fn new(key: &str, shards: u32) -> Result<ShardedCounter, ClientError> {
        check_shards(shards)?;
        let names = (0..shards)
            .map(|i| ObjectRef::Name(sub_object_name(key, i).into_bytes()))
            .collect();
        Ok(ShardedCounter {
            key: key.to_string(),
            names,
        })
    }

    /// The sub-object `caller` increments.
    pub fn pick(&self, caller: &[u8]) -> &ObjectRef {
        let index = rendezvous_pick(self.key.as_bytes(), caller, self.names.len() as u32);
        &self.names[index as usize]
    }

    /// Adds one to the caller's sub-counter; returns that sub-counter's
    /// value (not the sum: reading the sum costs a call per sub-object).
    pub fn increment(&self, client: &Client, caller: &[u8]) -> Result<u64, ClientError> {
        let object = self.pick(caller);
        let reply = client.call(
            builtin::COUNTER_CLASS,
            object,
            builtin::COUNTER_INCREMENT,
            b"",
        )?;
        builtin::decode_counter_value(&reply).ok_or(ClientError::BadPayload("counter.increment"))
    }

    /// The sum of every sub-counter, read with one pipelined batch of calls.
    /// Increments racing the read may or may not be counted.
    pub fn read(&self, client: &Client) -> Result<u64, ClientError> {
        let calls: Vec<Call> = self
            .names
            .iter()
            .map(|object| Call {
                class: builtin::COUNTER_CLASS,
                object,
                method: builtin::COUNTER_GET,
                payload: b"",
            })
            .collect();
        let mut sum = 0u64;
        for reply in client.call_many(&calls) {
            let value = builtin::decode_counter_value(&reply?)
                .ok_or(ClientError::BadPayload("counter.get"))?;
            sum = sum.wrapping_add(value);
        }
        Ok(sum)
    }
}

/// A rate limit split over `shards` limiters of a rate-limit class whose
/// configured limit is the global limit divided by `shards`.
#[derive(Debug, Clone)]
pub struct ShardedRateLimit {
    key: String,
    shards: u32,
    class: String,
}

impl ShardedRateLimit {
    pub fn new(key: &str, shards: u32, class: &str) -> Result<ShardedRateLimit, ClientError> {
        check_shards(shards)?;
        Ok(ShardedRateLimit {
            key: key.to_string(),
            shards,
            class: class.to_string(),
        })
    }

    /// Takes `cost` from the caller's sub-limiter.
    pub fn check(
        &self,
        client: &Client,
        caller: &[u8],
        cost: u64,
    ) -> Result<RateLimitDecision, ClientError> {
        let index = rendezvous_pick(self.key.as_bytes(), caller, self.shards);
        let object = ObjectRef::Name(sub_object_name(&self.key, index).into_bytes());
        let mut payload = Vec::with_capacity(8);
        builtin::encode_ratelimit_cost(cost, &mut payload);
        let reply = client.call(&self.class, &object, builtin::RATELIMIT_CHECK, &payload)?;
        RateLimitDecision::decode(&reply).ok_or(ClientError::BadPayload("ratelimit.check"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pick_is_stable_and_in_range() {
        for shards in 1..20 {
            let pick = rendezvous_pick(b"hits", b"caller-1", shards);
            assert!(pick < shards);
            assert_eq!(pick, rendezvous_pick(b"hits", b"caller-1", shards));
        }
    }

    #[test]
    fn callers_spread_evenly_over_the_sub_objects() {
        let shards = 8;
        let mut counts = [0u32; 8];
        for caller in 0..8000u32 {
            counts[rendezvous_pick(b"hot", &caller.to_le_bytes(), shards) as usize] += 1;
        }
        for count in counts {
            assert!((800..1200).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn growing_the_split_moves_only_the_callers_of_the_new_sub_object() {
        let mut moved = 0;
        for caller in 0..4000u32 {
            let before = rendezvous_pick(b"hot", &caller.to_le_bytes(), 4);
            let after = rendezvous_pick(b"hot", &caller.to_le_bytes(), 5);
            if before != after {
                assert_eq!(after, 4, "a caller only ever moves to the new one");
                moved += 1;
            }
        }
        // About a fifth move.
        assert!((600..1000).contains(&moved), "{moved} moved");
    }

    #[test]
    fn the_number_of_sub_objects_is_bounded() {
        assert!(ShardedCounter::new("k", 0).is_err());
        assert!(ShardedCounter::new("k", SUB_OBJECTS_MAX + 1).is_err());
        assert!(ShardedCounter::new("k", 4).is_ok());
    }
}
