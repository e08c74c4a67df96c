//! Per-shard object storage for durin.
//!
//! Every shard owns a [`ShardStore`]: the fjall databases of the storage
//! partitions assigned to it, an in-memory overlay of writes that are not yet
//! durable, and a committer thread that makes them durable off the shard's
//! loop.
//!
//! The flow of one write:
//!
//! 1. An object calls [`ShardStore::put`]. The value lands in the overlay at
//!    once, so the object (and anyone else on the shard) reads it back
//!    immediately, and the key joins the *open group*. The call returns the
//!    group's sequence number.
//! 2. At the end of its loop turn the shard calls [`ShardStore::flush`]. If no
//!    group is being committed, the open group is handed to the committer
//!    thread, which writes it to fjall as one batch per partition and syncs
//!    the journal (`fdatasync`).
//! 3. The committer reports the group done and calls the shard's waker. The
//!    shard calls [`ShardStore::poll_durable`], which advances
//!    [`ShardStore::durable_seq`] and trims the overlay. Output held behind
//!    the output gate for any sequence number up to it may now leave.
//!
//! ```no_run
//! use durin_storage::{Layout, ShardStore, StoreOptions};
//! let layout = Layout::open_or_create("./data".as_ref(), 2)?;
//! let mut store = ShardStore::open(&layout, 0, 1, StoreOptions::default(), Box::new(|| {}))?;
//! let owner = [7u8; 16];
//! let seq = store.put(&owner, b"count", b"1".to_vec().into_boxed_slice());
//! assert_eq!(store.get_vec(&owner, b"count")?, Some(b"1".to_vec()));
//! store.flush();
//! // ... later, after the waker fired:
//! store.poll_durable()?;
//! assert!(store.durable_seq() >= seq || store.durable_seq() < seq);
//! # Ok::<(), durin_storage::Error>(())
//! ```

mod committer;
mod error;
mod layout;
mod store;

pub use error::Error;
pub use layout::Layout;
pub use store::{OwnerId, Seq, ShardStore, StoreOptions, StoreStats, Value, Waker};
