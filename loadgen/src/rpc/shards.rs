//! Shard-aware routing: ask the server for its layout, then split the key
//! space by owning shard exactly as the server does.
//!
//! A durin server's hello says how many shards it runs, how many storage
//! partitions its data directory has, and the port of shard 0's own
//! listener (shard `i` listens on `base + i`). An object's owner is
//! `shard_of(ObjectId::from_name(class, name), partitions, shards)`, the
//! same function the server routes by, so a client that knows the layout
//! can send every request straight to its owner.
//!
//! How this changes a key distribution: each shard's connections draw only
//! among the keys that shard owns, with the distribution's shape over that
//! list (see [`KeySampler::within`](crate::keys::KeySampler::within)).
//! Connections are spread evenly over the shards, so each shard gets an
//! equal share of the requests whatever its keys' popularity.
//! `uniform:K` stays uniform over all K keys (each shard owns about K/shards
//! of them and gets 1/shards of the load). `zipf:K:S` becomes one Zipf per
//! shard over its own keys — there are as many "most popular" keys as
//! shards, and the hottest key of the whole run gets a smaller share than
//! in a plain run. `hot` has one key, so only its owner gets connections.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use durin_proto::rpc::{self, ServerHello, PROTOCOL_VERSION};
use durin_proto::{shard_of, ObjectId};

use crate::keys::{write_key, KeyDist};

/// The most keys a shard-aware run splits up front (each is hashed once,
/// and kept as a 4-byte index); a larger key space is refused.
pub const SHARD_AWARE_KEYS_MAX: u64 = 10_000_000;
/// The most shards a layout may advertise.
pub const SHARDS_MAX: u32 = 4096;

/// The keys one shard owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardKeys {
    /// None: the shard gets no connections.
    None,
    /// The one key `hot`.
    Hot,
    /// These key indices, ascending.
    Subset(Arc<[u32]>),
}

impl ShardKeys {
    pub fn is_empty(&self) -> bool {
        matches!(self, ShardKeys::None)
    }
}

/// Splits `dist`'s keys by the shard that owns their object in `class`.
pub fn keys_by_shard(class: &str, dist: &KeyDist, partitions: u32, shards: u32) -> Vec<ShardKeys> {
    assert!(partitions > 0 && shards > 0 && shards <= SHARDS_MAX);
    let owner = |index: Option<u64>, name: &mut Vec<u8>| {
        name.clear();
        write_key(index, name);
        shard_of(&ObjectId::from_name(class, name), partitions, shards) as usize
    };
    let mut name = Vec::with_capacity(24);
    let keys = match *dist {
        KeyDist::Hot => {
            let mut split = vec![ShardKeys::None; shards as usize];
            split[owner(None, &mut name)] = ShardKeys::Hot;
            return split;
        }
        KeyDist::Uniform { keys } | KeyDist::Zipf { keys, .. } | KeyDist::Seq { keys } => keys,
    };
    assert!(
        keys <= SHARD_AWARE_KEYS_MAX,
        "the key count is checked first"
    );
    let mut lists: Vec<Vec<u32>> = vec![Vec::new(); shards as usize];
    for index in 0..keys {
        let shard = owner(Some(index), &mut name);
        lists[shard].push(u32::try_from(index).expect("key counts are checked"));
    }
    lists
        .into_iter()
        .map(|list| {
            if list.is_empty() {
                ShardKeys::None
            } else {
                ShardKeys::Subset(list.into())
            }
        })
        .collect()
}

/// Connects once to `addr`, does the handshake and returns the server's
/// hello; a refusal, or a layout a client cannot route by, is an error.
pub fn discover(addr: SocketAddr, timeout: Duration) -> Result<ServerHello, String> {
    let fail = |what: &str| format!("asking {addr} for its shard layout: {what}");
    let deadline = Instant::now() + timeout;
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|err| fail(&err.to_string()))?;
    stream
        .write_all(&rpc::encode_client_hello(PROTOCOL_VERSION))
        .map_err(|err| fail(&err.to_string()))?;
    let mut buf = Vec::with_capacity(rpc::SERVER_HELLO_FIXED_BYTES);
    let mut chunk = [0u8; 1024];
    let hello = loop {
        match rpc::decode_server_hello(&buf).map_err(|err| fail(&err.to_string()))? {
            Some((hello, _)) => break hello,
            None => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(fail("no hello within --timeout"));
                }
                stream
                    .set_read_timeout(Some(left))
                    .map_err(|err| fail(&err.to_string()))?;
                match stream.read(&mut chunk) {
                    Ok(0) => return Err(fail("the server closed the connection")),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(err) => return Err(fail(&err.to_string())),
                }
            }
        }
    };
    if !hello.accepted {
        return Err(fail(&format!("the server refused: {}", hello.reason)));
    }
    if hello.shards == 0 || hello.shards > SHARDS_MAX || hello.partitions == 0 {
        return Err(fail(&format!(
            "the server advertises {} shards and {} partitions, which cannot be routed by",
            hello.shards, hello.partitions
        )));
    }
    Ok(hello)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_goes_to_the_shard_the_server_routes_it_to() {
        let dist = KeyDist::Uniform { keys: 1000 };
        let split = keys_by_shard("ratelimit", &dist, 8, 3);
        let mut seen = 0;
        for (shard, keys) in split.iter().enumerate() {
            let ShardKeys::Subset(list) = keys else {
                panic!("1000 keys leave no shard empty");
            };
            // About a third each: 8 partitions over 3 shards is 3:3:2.
            assert!(list.len() > 150, "shard {shard}: {}", list.len());
            for &index in list.iter() {
                let id = ObjectId::from_name("ratelimit", format!("k{index}").as_bytes());
                assert_eq!(shard_of(&id, 8, 3) as usize, shard);
            }
            seen += list.len();
        }
        assert_eq!(seen, 1000);
    }

    #[test]
    fn the_hot_key_has_one_owner() {
        let split = keys_by_shard("counter", &KeyDist::Hot, 4, 4);
        let owner = shard_of(&ObjectId::from_name("counter", b"hot"), 4, 4) as usize;
        for (shard, keys) in split.iter().enumerate() {
            assert_eq!(keys.is_empty(), shard != owner, "shard {shard}");
        }
        let one = keys_by_shard("counter", &KeyDist::Uniform { keys: 1 }, 4, 4);
        assert_eq!(one.iter().filter(|keys| !keys.is_empty()).count(), 1);
    }
}
