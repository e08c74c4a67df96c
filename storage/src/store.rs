//! The shard's store: overlay, open group, and the link to the committer.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Deref;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::committer::{Committer, Done, Group, GroupWrite};
use crate::{Error, Layout};

/// The 16-byte ID that owns a set of keys (an object's ID).
pub type OwnerId = [u8; 16];
/// A group sequence number. Groups are numbered from 1 in commit order;
/// every write carries the number of the group it joined.
pub type Seq = u64;
/// Called by the committer thread after a group is done, to wake the shard.
pub type Waker = Box<dyn Fn() + Send>;

/// Tuning of a shard's store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// fjall background threads (flush, compaction) per partition database.
    pub worker_threads_per_partition: usize,
    /// Block cache per partition database.
    pub cache_bytes_per_partition: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            worker_threads_per_partition: 1,
            cache_bytes_per_partition: 16 << 20,
        }
    }
}

/// A value read from the store: either still in the overlay or from fjall.
pub enum Value {
    Pending(Arc<[u8]>),
    Stored(fjall::Slice),
}

impl Deref for Value {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Value::Pending(v) => v,
            Value::Stored(v) => v,
        }
    }
}

/// A write that is not durable yet. Reads see it before fjall.
struct Pending {
    seq: Seq,
    partition: u32,
    value: Option<Arc<[u8]>>,
}

/// FxHash: the overlay is keyed by object-prefixed keys chosen by objects on
/// this shard only, and SipHash's cost shows on the write path.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
    }
}

type Overlay = HashMap<Arc<[u8]>, Pending, BuildHasherDefault<FxHasher>>;

/// Counters of a shard's store, exported as metrics by the engine.
#[derive(Debug, Default, Clone, Copy)]
pub struct StoreStats {
    pub writes_total: u64,
    pub groups_committed_total: u64,
    pub group_writes_committed_total: u64,
    /// Nanoseconds the committer spent writing and syncing groups.
    pub commit_ns_total: u64,
}

/// One shard's storage. It lives on its shard's thread; only the committer
/// thread beside it touches the databases' write path.
pub struct ShardStore {
    layout: Layout,
    keyspaces: Vec<Option<fjall::Keyspace>>,
    overlay: Overlay,
    open: Vec<GroupWrite>,
    open_seq: Seq,
    in_flight: Option<Seq>,
    durable_seq: Seq,
    groups: Option<Sender<Group>>,
    done: Receiver<Done>,
    spare: Vec<Vec<GroupWrite>>,
    scratch: Vec<u8>,
    committer: Option<JoinHandle<()>>,
    stats: StoreStats,
}

impl ShardStore {
    /// Opens the partitions that shard `shard` of `shards` owns and starts
    /// its committer thread.
    pub fn open(
        layout: &Layout,
        shard: u32,
        shards: u32,
        options: StoreOptions,
        waker: Waker,
    ) -> Result<ShardStore, Error> {
        assert!(shard < shards, "shard index must be below the shard count");
        let count = layout.partitions() as usize;
        let mut databases = vec![None; count];
        let mut keyspaces = vec![None; count];
        for partition in 0..layout.partitions() {
            if Layout::shard_of_partition(partition, shards) != shard {
                continue;
            }
            let db = fjall::Database::builder(layout.partition_dir(partition))
                .worker_threads(options.worker_threads_per_partition.max(1))
                .cache_size(options.cache_bytes_per_partition)
                .manual_journal_persist(true)
                .open()?;
            let keyspace = db.keyspace("objects", fjall::KeyspaceCreateOptions::default)?;
            databases[partition as usize] = Some(db);
            keyspaces[partition as usize] = Some(keyspace);
        }
        let (group_tx, group_rx) = crossbeam_channel::bounded(1);
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let committer = Committer {
            keyspaces: keyspaces.clone(),
            databases,
            groups: group_rx,
            done: done_tx,
            waker,
        };
        let handle = std::thread::Builder::new()
            .name(format!("durin-commit-{shard}"))
            .spawn(move || committer.run())
            .map_err(|source| Error::Io {
                path: "committer thread".into(),
                source,
            })?;
        Ok(ShardStore {
            layout: layout.clone(),
            keyspaces,
            overlay: Overlay::default(),
            open: Vec::new(),
            open_seq: 1,
            in_flight: None,
            durable_seq: 0,
            groups: Some(group_tx),
            done: done_rx,
            spare: Vec::new(),
            scratch: Vec::new(),
            committer: Some(handle),
            stats: StoreStats::default(),
        })
    }

    /// The layout this store was opened with.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Whether this shard owns `owner`'s partition.
    pub fn owns(&self, owner: &OwnerId) -> bool {
        let partition = self.layout.partition_of(owner) as usize;
        matches!(self.keyspaces.get(partition), Some(Some(_)))
    }

    fn full_key(&mut self, owner: &OwnerId, key: &[u8]) {
        self.scratch.clear();
        self.scratch.extend_from_slice(owner);
        self.scratch.extend_from_slice(key);
    }

    /// Reads `key` of `owner`: the newest write, durable or not.
    pub fn get(&mut self, owner: &OwnerId, key: &[u8]) -> Result<Option<Value>, Error> {
        self.full_key(owner, key);
        if let Some(pending) = self.overlay.get(&self.scratch[..]) {
            return Ok(pending.value.clone().map(Value::Pending));
        }
        let partition = self.layout.partition_of(owner) as usize;
        let keyspace = match self.keyspaces.get(partition) {
            Some(Some(k)) => k,
            _ => panic!("object read on a shard that does not own its partition"),
        };
        Ok(keyspace.get(&self.scratch)?.map(Value::Stored))
    }

    /// Reads `key` of `owner` into a new vector.
    pub fn get_vec(&mut self, owner: &OwnerId, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.get(owner, key)?.map(|v| v.to_vec()))
    }

    /// Writes `key` of `owner`. Visible to reads at once; durable once
    /// [`durable_seq`](Self::durable_seq) reaches the returned number.
    pub fn put(&mut self, owner: &OwnerId, key: &[u8], value: &[u8]) -> Seq {
        self.write(owner, key, Some(Arc::from(value)))
    }

    /// Deletes `key` of `owner`, with the same visibility as [`put`](Self::put).
    pub fn delete(&mut self, owner: &OwnerId, key: &[u8]) -> Seq {
        self.write(owner, key, None)
    }

    fn write(&mut self, owner: &OwnerId, key: &[u8], value: Option<Arc<[u8]>>) -> Seq {
        let partition = self.layout.partition_of(owner);
        assert!(
            self.owns(owner),
            "object written on a shard that does not own its partition"
        );
        self.full_key(owner, key);
        self.stats.writes_total += 1;
        let seq = self.open_seq;
        if let Some(pending) = self.overlay.get_mut(&self.scratch[..]) {
            let already_in_open_group = pending.seq == seq;
            pending.seq = seq;
            pending.value = value;
            if already_in_open_group {
                return seq;
            }
            let key = self
                .overlay
                .get_key_value(&self.scratch[..])
                .expect("entry found above")
                .0;
            let key = Arc::clone(key);
            self.open.push(GroupWrite {
                partition,
                key,
                value: None,
            });
            return seq;
        }
        let key: Arc<[u8]> = Arc::from(&self.scratch[..]);
        self.overlay.insert(
            Arc::clone(&key),
            Pending {
                seq,
                partition,
                value,
            },
        );
        self.open.push(GroupWrite {
            partition,
            key,
            value: None,
        });
        seq
    }

    /// The highest sequence number whose writes are all durable.
    pub fn durable_seq(&self) -> Seq {
        self.durable_seq
    }

    /// The sequence number the next write will join.
    pub fn open_seq(&self) -> Seq {
        self.open_seq
    }

    /// Whether writes are waiting to be committed or being committed.
    pub fn has_pending(&self) -> bool {
        !self.open.is_empty() || self.in_flight.is_some()
    }

    /// Whether the committer has answered and [`poll_durable`](Self::poll_durable)
    /// would make progress.
    pub fn durable_ready(&self) -> bool {
        !self.done.is_empty()
    }

    /// Counters for metrics.
    pub fn stats(&self) -> StoreStats {
        self.stats
    }

    /// Hands the open group to the committer unless one is already being
    /// committed. Called once per loop turn.
    pub fn flush(&mut self) {
        if self.open.is_empty() || self.in_flight.is_some() {
            return;
        }
        let mut writes = std::mem::replace(&mut self.open, self.spare.pop().unwrap_or_default());
        for write in &mut writes {
            let pending = self
                .overlay
                .get(&write.key)
                .expect("open keys stay in the overlay");
            debug_assert_eq!(pending.partition, write.partition);
            write.value = pending.value.clone();
        }
        let seq = self.open_seq;
        self.open_seq += 1;
        self.in_flight = Some(seq);
        let sender = self
            .groups
            .as_ref()
            .expect("committer channel lives until drop");
        if sender.send(Group { seq, writes }).is_err() {
            // The committer only stops when it panicked; the next poll
            // reports it.
            self.in_flight = None;
        }
    }

    /// Takes the committer's answer if one arrived, advancing the durable
    /// sequence number. Returns whether it advanced. A failed commit is an
    /// error the shard must not survive: what reached the disk is unknown.
    pub fn poll_durable(&mut self) -> Result<bool, Error> {
        let done = match self.done.try_recv() {
            Ok(done) => done,
            Err(crossbeam_channel::TryRecvError::Empty) => {
                return match (&self.committer, self.in_flight) {
                    (Some(handle), Some(_)) if handle.is_finished() => Err(Error::CommitterGone),
                    _ => Ok(false),
                };
            }
            Err(crossbeam_channel::TryRecvError::Disconnected) => return Err(Error::CommitterGone),
        };
        self.complete(done)
    }

    fn complete(&mut self, done: Done) -> Result<bool, Error> {
        let Done {
            mut group,
            result,
            commit_ns,
        } = done;
        self.stats.commit_ns_total += commit_ns;
        if let Err(reason) = result {
            return Err(Error::CommitFailed {
                seq: group.seq,
                reason,
            });
        }
        assert_eq!(Some(group.seq), self.in_flight, "groups complete in order");
        self.in_flight = None;
        self.durable_seq = group.seq;
        self.stats.groups_committed_total += 1;
        self.stats.group_writes_committed_total += group.writes.len() as u64;
        for write in group.writes.drain(..) {
            if let Some(pending) = self.overlay.get(&write.key) {
                if pending.seq <= group.seq {
                    self.overlay.remove(&write.key);
                }
            }
        }
        self.spare.push(group.writes);
        Ok(true)
    }

    /// Blocks until every write made so far is durable. For shutdown and
    /// tests; the shard's loop never calls it.
    pub fn sync_blocking(&mut self) -> Result<(), Error> {
        let target = if self.open.is_empty() {
            self.open_seq - 1
        } else {
            self.open_seq
        };
        while self.durable_seq < target {
            self.flush();
            match self.done.recv_timeout(std::time::Duration::from_millis(10)) {
                Ok(done) => {
                    self.complete(done)?;
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(_) => return Err(Error::CommitterGone),
            }
        }
        Ok(())
    }
}

impl Drop for ShardStore {
    fn drop(&mut self) {
        self.groups = None;
        if let Some(handle) = self.committer.take() {
            let _ = handle.join();
        }
    }
}
