//! Key distributions: which key each request's `{key}` becomes.
//!
//! - `uniform:K` — keys `k0` .. `k<K-1>`, each equally likely;
//! - `zipf:K:S` — the same keys, `k0` the most popular, key `k<i>` drawn with
//!   probability proportional to `(i + 1)^-S`;
//! - `seq:K` — keys `k0`, `k1`, … `k<K-1>` in order, then again from `k0`:
//!   every thread takes the next key from one counter the process shares,
//!   so K requests touch each of the K keys exactly once (to create, say,
//!   a million objects in as many requests);
//! - `hot` — every request uses the one key `hot`.
//!
//! ```
//! use loadgen::keys::{KeyDist, KeySampler};
//! let dist: KeyDist = "zipf:10000:1.1".parse().unwrap();
//! let mut sampler = KeySampler::new(&dist, 1, 0);
//! let mut path = Vec::new();
//! sampler.write_next(&mut path);
//! assert!(path.starts_with(b"k"));
//! ```
//!
//! A draw is a few nanoseconds and formatting writes a handful of digits
//! into the caller's buffer, so picking a key allocates nothing.
//!
//! A sampler can also be confined to a subset of the keys
//! ([`KeySampler::within`]): it then draws a position in the subset with the
//! distribution's shape over the subset's size. Shard-aware RPC uses this
//! to send each shard only the keys it owns.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::rng::Rng;
use crate::zipf::Zipf;

/// The most keys a distribution may span; keys are `k<index>` with the
/// index in a u64, so this only guards against typos.
pub const KEYS_MAX: u64 = 1_000_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyDist {
    Uniform { keys: u64 },
    Zipf { keys: u64, exponent: f64 },
    Seq { keys: u64 },
    Hot,
}

/// The next draw of every `seq` sampler in the process. One run per
/// process, so one counter; a relaxed add per request costs nothing next
/// to the request.
static SEQ_NEXT: AtomicU64 = AtomicU64::new(0);

impl FromStr for KeyDist {
    type Err = String;

    fn from_str(text: &str) -> Result<KeyDist, String> {
        let parts: Vec<&str> = text.split(':').collect();
        match parts.as_slice() {
            ["hot"] => Ok(KeyDist::Hot),
            ["uniform", keys] => Ok(KeyDist::Uniform {
                keys: parse_key_count(keys)?,
            }),
            ["seq", keys] => Ok(KeyDist::Seq {
                keys: parse_key_count(keys)?,
            }),
            ["zipf", keys, exponent] => {
                let keys = parse_key_count(keys)?;
                let exponent: f64 = exponent
                    .parse()
                    .map_err(|_| format!("`{exponent}` is not a zipf exponent (e.g. 1.1)"))?;
                // Validated here so that a bad exponent is a flag error.
                Zipf::new(keys, exponent)?;
                Ok(KeyDist::Zipf { keys, exponent })
            }
            _ => Err(format!(
                "`{text}` is not a key distribution: use uniform:K, zipf:K:S, seq:K or hot"
            )),
        }
    }
}

impl fmt::Display for KeyDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyDist::Uniform { keys } => write!(f, "uniform:{keys}"),
            KeyDist::Zipf { keys, exponent } => write!(f, "zipf:{keys}:{exponent}"),
            KeyDist::Seq { keys } => write!(f, "seq:{keys}"),
            KeyDist::Hot => write!(f, "hot"),
        }
    }
}

fn parse_key_count(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(keys) if (1..=KEYS_MAX).contains(&keys) => Ok(keys),
        _ => Err(format!("`{text}` is not a key count (1 to {KEYS_MAX})")),
    }
}

/// One thread's source of keys.
#[derive(Debug, Clone)]
pub struct KeySampler {
    kind: SamplerKind,
    rng: Rng,
    /// Key indices, ascending, that draws are confined to: the kind draws a
    /// position in this list.
    subset: Option<Arc<[u32]>>,
}

#[derive(Debug, Clone)]
enum SamplerKind {
    Uniform(u64),
    Zipf(Zipf),
    Seq(u64),
    Hot,
}

impl KeySampler {
    /// The sampler for thread `stream` of a run seeded `seed`.
    pub fn new(dist: &KeyDist, seed: u64, stream: u64) -> KeySampler {
        let kind = match *dist {
            KeyDist::Uniform { keys } => SamplerKind::Uniform(keys),
            KeyDist::Zipf { keys, exponent } => SamplerKind::Zipf(
                Zipf::new(keys, exponent).expect("the exponent was validated when parsed"),
            ),
            KeyDist::Seq { keys } => SamplerKind::Seq(keys),
            KeyDist::Hot => SamplerKind::Hot,
        };
        KeySampler {
            kind,
            rng: Rng::new(seed, stream),
            subset: None,
        }
    }

    /// A sampler that draws only among `subset` (key indices of `dist`,
    /// ascending): `uniform` stays uniform over the subset; `zipf:K:S`
    /// becomes `zipf:len:S` over the subset's positions, so its lowest key
    /// is its most popular. `hot` has no indices to confine.
    pub fn within(dist: &KeyDist, subset: Arc<[u32]>, seed: u64, stream: u64) -> KeySampler {
        assert!(!subset.is_empty(), "a subset to draw from has keys");
        assert!(subset.windows(2).all(|pair| pair[0] < pair[1]));
        let len = subset.len() as u64;
        let confined = match *dist {
            KeyDist::Uniform { keys } => {
                assert!(u64::from(subset[subset.len() - 1]) < keys);
                KeyDist::Uniform { keys: len }
            }
            KeyDist::Zipf { keys, exponent } => {
                assert!(u64::from(subset[subset.len() - 1]) < keys);
                KeyDist::Zipf {
                    keys: len,
                    exponent,
                }
            }
            // Positions in the subset, in order (the counter is shared, so
            // several samplers over one subset split it between them).
            KeyDist::Seq { keys } => {
                assert!(u64::from(subset[subset.len() - 1]) < keys);
                KeyDist::Seq { keys: len }
            }
            KeyDist::Hot => panic!("the hot key has no index to confine"),
        };
        KeySampler {
            subset: Some(subset),
            ..KeySampler::new(&confined, seed, stream)
        }
    }

    /// The next key's index; `None` for the hot key.
    pub fn next_index(&mut self) -> Option<u64> {
        let drawn = match &self.kind {
            SamplerKind::Uniform(keys) => self.rng.below(*keys),
            SamplerKind::Zipf(zipf) => zipf.sample(&mut self.rng) - 1,
            SamplerKind::Seq(keys) => SEQ_NEXT.fetch_add(1, Ordering::Relaxed) % keys,
            SamplerKind::Hot => return None,
        };
        Some(match &self.subset {
            None => drawn,
            Some(subset) => u64::from(subset[drawn as usize]),
        })
    }

    /// Draws the next key and appends its text to `out`.
    pub fn write_next(&mut self, out: &mut Vec<u8>) {
        let index = self.next_index();
        write_key(index, out);
    }
}

/// Appends the text of key `index` (`k<index>`), or of the hot key for
/// `None`.
pub fn write_key(index: Option<u64>, out: &mut Vec<u8>) {
    match index {
        Some(index) => {
            out.push(b'k');
            write_decimal(index, out);
        }
        None => out.extend_from_slice(b"hot"),
    }
}

/// Appends `value` in decimal without going through `fmt`.
pub fn write_decimal(mut value: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_each_distribution() {
        for text in [
            "hot",
            "uniform:10000",
            "zipf:10000:1.1",
            "zipf:5:0.5",
            "seq:1000000",
        ] {
            let dist: KeyDist = text.parse().unwrap();
            assert_eq!(dist.to_string(), text);
        }
        assert_eq!(
            "zipf:100:1".parse::<KeyDist>(),
            Ok(KeyDist::Zipf {
                keys: 100,
                exponent: 1.0
            })
        );
    }

    #[test]
    fn refuses_bad_distributions() {
        for bad in [
            "",
            "uniform",
            "uniform:0",
            "uniform:-1",
            "uniform:x",
            "uniform:10:2",
            "zipf:10",
            "zipf:10:0",
            "zipf:10:-1",
            "zipf:0:1",
            "zipf:10:nan",
            "hot:1",
            "normal:10",
            "uniform:1000000000001",
            "seq",
            "seq:0",
        ] {
            assert!(bad.parse::<KeyDist>().is_err(), "`{bad}` should be refused");
        }
    }

    #[test]
    fn formats_keys_without_allocating_per_key() {
        let mut out = Vec::with_capacity(64);
        for value in [0, 7, 10, 9999, u64::MAX] {
            out.clear();
            write_decimal(value, &mut out);
            assert_eq!(out, value.to_string().as_bytes());
        }
        let mut hot = KeySampler::new(&KeyDist::Hot, 1, 0);
        out.clear();
        hot.write_next(&mut out);
        assert_eq!(out, b"hot");
    }

    #[test]
    fn seq_keys_touch_every_key_once_before_repeating() {
        // Two samplers share the process's counter, as two threads do; the
        // other tests use no `seq` sampler, so nothing else moves it.
        let dist = KeyDist::Seq { keys: 1000 };
        let mut first = KeySampler::new(&dist, 1, 0);
        let mut second = KeySampler::new(&dist, 1, 1);
        let mut seen = vec![0u32; 1000];
        for _ in 0..500 {
            seen[first.next_index().unwrap() as usize] += 1;
            seen[second.next_index().unwrap() as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n == 1), "each key once");
    }

    #[test]
    fn uniform_keys_cover_the_range_evenly() {
        let mut sampler = KeySampler::new(&KeyDist::Uniform { keys: 4 }, 5, 0);
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            counts[sampler.next_index().unwrap() as usize] += 1;
        }
        // 10,000 expected each; the standard deviation is ~87.
        assert!(
            counts.iter().all(|&n| (9_500..10_500).contains(&n)),
            "{counts:?}"
        );
    }

    #[test]
    fn confined_samplers_draw_only_their_keys() {
        let subset: Arc<[u32]> = Arc::from(vec![1u32, 5, 9]);
        let mut uniform = KeySampler::within(&KeyDist::Uniform { keys: 10 }, subset.clone(), 2, 0);
        let mut counts = [0u32; 10];
        for _ in 0..30_000 {
            counts[uniform.next_index().unwrap() as usize] += 1;
        }
        assert_eq!(counts.iter().filter(|&&n| n > 0).count(), 3, "{counts:?}");
        assert!(
            [1, 5, 9]
                .iter()
                .all(|&k| (9_500..10_500).contains(&counts[k])),
            "{counts:?}"
        );
        let zipf = KeyDist::Zipf {
            keys: 10,
            exponent: 1.0,
        };
        let mut zipf = KeySampler::within(&zipf, subset, 2, 0);
        let mut counts = [0u32; 10];
        for _ in 0..30_000 {
            counts[zipf.next_index().unwrap() as usize] += 1;
        }
        // zipf:3:1 over the subset: its first key is the most popular.
        assert!(counts[1] > counts[5] && counts[5] > counts[9], "{counts:?}");
        let mut out = Vec::new();
        write_key(Some(9), &mut out);
        assert_eq!(out, b"k9");
    }

    #[test]
    fn zipf_keys_start_at_k0() {
        let dist = KeyDist::Zipf {
            keys: 3,
            exponent: 1.0,
        };
        let mut sampler = KeySampler::new(&dist, 5, 0);
        let mut counts = [0u32; 3];
        for _ in 0..30_000 {
            counts[sampler.next_index().unwrap() as usize] += 1;
        }
        // Probabilities 6/11, 3/11, 2/11.
        assert!(counts[0] > counts[1] && counts[1] > counts[2], "{counts:?}");
        assert!((15_800..16_900).contains(&counts[0]), "{counts:?}");
    }
}
