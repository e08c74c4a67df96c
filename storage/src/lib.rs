//! Per-shard object storage for durin.
//!
//! Every shard owns a [`ShardStore`]: the fjall databases of the storage
//! partitions assigned to it, an in-memory overlay of writes not yet in
//! fjall, its own write-ahead log ([`wal`]), and an applier thread that
//! moves durable writes into fjall off the shard's loop.
//!
//! The flow of one write:
//!
//! 1. An object calls [`ShardStore::put`]. The value lands in the overlay at
//!    once, so the object (and anyone else on the shard) reads it back
//!    immediately, and the key joins the *open group*. The call returns the
//!    group's sequence number.
//! 2. At the end of its loop turn the shard calls [`ShardStore::flush`]. If
//!    no group is being synced, the open group becomes one log record, and
//!    the store returns a [`WalWrite`] that the shard submits to its
//!    io_uring ring as a write linked with an `fdatasync`. The shard keeps
//!    serving (and filling the next group) meanwhile.
//! 3. The shard reports the write's and the sync's completions
//!    ([`ShardStore::on_wal_write`], [`ShardStore::on_wal_sync`]). Once the
//!    sync succeeds, [`ShardStore::durable_seq`] moves: output held behind
//!    the output gate for that sequence number may leave.
//! 4. The durable group goes to the applier, which inserts it into fjall;
//!    [`ShardStore::poll_applier`] then drops it from the overlay.
//!
//! The store does no I/O on the shard's thread after opening: it says what
//! to write and is told what happened, so the same logic runs under any
//! driver.

mod applier;
mod error;
mod layout;
pub mod space;
mod store;
pub mod wal;

pub use error::Error;
pub use layout::Layout;
pub use store::{
    OpenPartitions, OwnerId, Savepoint, Seq, ShardStore, StoreMemory, StoreOptions, StoreStats,
    Value, Waker, WalProgress, WalWrite, MEMTABLE_BYTES_MAX, MEMTABLE_BYTES_MIN,
    WAL_GROUPS_IN_FLIGHT_MAX,
};
