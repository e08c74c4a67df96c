//! What durin's server and its clients must agree on, with nothing else:
//! object IDs ([`id`]), how an ID maps to a partition and a shard
//! ([`partition_of`], [`shard_of`]), and the binary RPC protocol ([`rpc`]).
//!
//! A shard-aware client computes an object's ID and owning shard exactly as
//! the server does, so it can send each request straight to the owner.

pub mod id;
pub mod rpc;

pub use id::{IdError, ObjectId};

/// The storage partition of `id` in a data directory of `partitions`
/// partitions. Part of the on-disk format: never change it.
pub fn partition_of(id: &ObjectId, partitions: u32) -> u32 {
    assert!(
        partitions > 0,
        "a data directory has at least one partition"
    );
    let high = u64::from_le_bytes(
        id.0[..8]
            .try_into()
            .expect("16-byte id has 8 leading bytes"),
    );
    (high % u64::from(partitions)) as u32
}

/// The shard serving `partition` when `shards` shards run.
pub fn shard_of_partition(partition: u32, shards: u32) -> u32 {
    assert!(shards > 0, "a server has at least one shard");
    partition % shards
}

/// The shard that owns `id`.
pub fn shard_of(id: &ObjectId, partitions: u32, shards: u32) -> u32 {
    shard_of_partition(partition_of(id, partitions), shards)
}
