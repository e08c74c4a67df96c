//! The shard's store: overlay, open group, the log, and the applier.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::ops::Bound;
use std::ops::Deref;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::applier::{Answer, Applier, Group, GroupWrite, Task};
use crate::{wal, Error, Layout};

/// The keyspace holding objects' data in every partition.
pub(crate) const KEYSPACE: &str = "objects";
/// Durable groups handed to the applier and not yet applied. Past it the
/// shard makes no new group durable until the applier catches up, which
/// bounds the overlay.
pub const APPLY_BACKLOG_MAX: usize = 64;

/// Opens one partition's database.
pub(crate) fn open_partition(
    layout: &Layout,
    partition: u32,
    worker_threads: usize,
    cache_bytes: u64,
) -> Result<fjall::Database, Error> {
    // The journal is synced only at checkpoints: the shard's own log makes
    // groups durable. fjall's journals are bounded tightly, because at
    // start fjall replays every journal whose memtable was not flushed:
    // with the default 512 MiB, opening ten million keys took 18 s here.
    //
    // Journal values are not compressed. A journal write that ENOSPC cut
    // short leaves an entry whose header is on disk and whose value is the
    // zeros of the journal's preallocated (sparse) tail; fjall drops such
    // a torn tail at the next open either way, but an LZ4 value made of
    // zeros first logs "LZ4 decompression failed: 0 is not a valid match
    // offset" at error level, which read as corruption when a full disk
    // was the whole story. Values stay LZ4-compressed in fjall's tables.
    Ok(fjall::Database::builder(layout.partition_dir(partition))
        .worker_threads(worker_threads.max(1))
        .cache_size(cache_bytes)
        .manual_journal_persist(true)
        .max_journaling_size(JOURNAL_BYTES_MAX)
        .journal_compression(fjall::CompressionType::None)
        .open()?)
}

/// Open partition databases, by number.
pub struct OpenPartitions {
    slots: Vec<Option<(fjall::Database, fjall::Keyspace)>>,
}

impl OpenPartitions {
    /// Opens the partitions for which `wanted` says yes.
    pub fn open(
        layout: &Layout,
        options: &StoreOptions,
        wanted: impl Fn(u32) -> bool,
    ) -> Result<Self, Error> {
        let mut slots = Vec::with_capacity(layout.partitions() as usize);
        for partition in 0..layout.partitions() {
            if !wanted(partition) {
                slots.push(None);
                continue;
            }
            let db = open_partition(
                layout,
                partition,
                options.worker_threads_per_partition,
                options.cache_bytes_per_partition,
            )?;
            let keyspace = open_keyspace(&db, options.memtable_bytes_per_partition)?;
            slots.push(Some((db, keyspace)));
        }
        Ok(OpenPartitions { slots })
    }

    /// Opens every partition.
    pub fn open_all(layout: &Layout, options: &StoreOptions) -> Result<Self, Error> {
        Self::open(layout, options, |_| true)
    }

    /// Partition `partition`'s database and keyspace, if open.
    pub fn get(&self, partition: u32) -> Option<&(fjall::Database, fjall::Keyspace)> {
        self.slots.get(partition as usize)?.as_ref()
    }
}

/// fjall's journals per partition (its minimum).
const JOURNAL_BYTES_MAX: u64 = 64 << 20;
/// The largest memtable a partition may be given: small enough that
/// several fit in the journal bound above, so memtables flush before
/// journals pile up.
pub const MEMTABLE_BYTES_MAX: u64 = JOURNAL_BYTES_MAX / 2;
/// The smallest memtable: below it, flushes would write tiny tables.
pub const MEMTABLE_BYTES_MIN: u64 = 1 << 20;

/// Opens the objects keyspace of a partition, with memtables of
/// `memtable_bytes` (as fjall counts them: keys, values and a fixed
/// overhead per entry; the memory they take is up to about twice that).
pub(crate) fn open_keyspace(
    db: &fjall::Database,
    memtable_bytes: u64,
) -> Result<fjall::Keyspace, Error> {
    let memtable_bytes = memtable_bytes.clamp(MEMTABLE_BYTES_MIN, MEMTABLE_BYTES_MAX);
    Ok(db.keyspace(KEYSPACE, || {
        fjall::KeyspaceCreateOptions::default().max_memtable_size(memtable_bytes)
    })?)
}

/// A log write for the shard's ring: write `len` bytes at `ptr` to `fd` at
/// `offset`, then `fdatasync` the file (linked, so the sync runs only after
/// the write succeeded in full). `seq` names the group, to be given back
/// with the completions.
#[derive(Debug, Clone, Copy)]
pub struct WalWrite {
    pub seq: Seq,
    pub fd: RawFd,
    pub ptr: *const u8,
    pub len: u32,
    pub offset: u64,
}

/// What the end of a log sync means.
#[derive(Debug)]
pub enum WalProgress {
    /// The group is durable; [`ShardStore::durable_seq`] moved.
    Durable,
    /// The group is synced, but an earlier one is not yet: durability is
    /// acknowledged in order, so nothing moved.
    AwaitingEarlier,
    /// A short write broke the link: submit the rest, and sync again.
    Resubmit(WalWrite),
}

/// One write's way back.
struct Undo {
    key: Arc<[u8]>,
    previous: Option<Pending>,
    open_len: usize,
}

/// A point to roll writes back to (see [`ShardStore::savepoint`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Savepoint(usize);

/// A group whose record is being written and synced.
struct InFlight {
    group: Group,
    /// The record, stable in memory until its sync completes.
    record: Vec<u8>,
    /// Where the record starts in the current segment.
    offset: u64,
    /// Bytes of the record the kernel has written so far.
    written: usize,
    /// Whether its sync has completed (it is durable once every earlier
    /// group is too).
    synced: bool,
}

/// The 16-byte ID that owns a set of keys (an object's ID).
pub type OwnerId = [u8; 16];
/// A group sequence number. Groups are numbered from 1 in commit order;
/// every write carries the number of the group it joined.
pub type Seq = u64;
/// Called by the applier thread after it answered, to wake the shard.
pub type Waker = Box<dyn Fn() + Send>;

/// Tuning of a shard's store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// fjall background threads (flush, compaction) per partition database.
    pub worker_threads_per_partition: usize,
    /// Block cache per partition database.
    pub cache_bytes_per_partition: u64,
    /// Memtable size per partition (see [`open_keyspace`]); a full one is
    /// flushed to a table.
    pub memtable_bytes_per_partition: u64,
    /// After this long without a write the applier flushes the shard's
    /// memtables to tables, so that an idle shard does not keep its last
    /// writes in memory twice (memtable and, once read, block cache).
    /// `None`: only full memtables are flushed.
    pub idle_flush_ms: Option<u64>,
    /// Called on the applier thread once it has stayed idle for another
    /// `idle_flush_ms` after an idle flush. The memtables' entries were
    /// allocated on the applier thread and freed on fjall's flush thread;
    /// an allocator with per-thread heaps (mimalloc) takes such frees back
    /// only when the owning thread allocates or collects, which an idle
    /// applier never does. The engine passes `mi_collect`.
    pub idle_hook: Option<fn()>,
    /// Size of a log segment; the shard moves to a new one past it.
    pub wal_segment_bytes: u64,
    /// The run this store's log segments belong to (see
    /// [`wal::Recovered::next_run`]).
    pub wal_run: u64,
    /// Groups written and synced at once. With more than one, the next
    /// group's write and sync start while the previous sync is still
    /// running (a log device serves concurrent syncs faster than one after
    /// the other); durability is still acknowledged in order.
    pub wal_groups_in_flight: usize,
}

/// The most groups a store keeps in flight.
pub const WAL_GROUPS_IN_FLIGHT_MAX: usize = 8;

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            worker_threads_per_partition: 1,
            cache_bytes_per_partition: 16 << 20,
            memtable_bytes_per_partition: 16 << 20,
            idle_flush_ms: Some(30_000),
            idle_hook: None,
            wal_segment_bytes: wal::SEGMENT_BYTES_DEFAULT,
            wal_run: 0,
            wal_groups_in_flight: 2,
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

/// A write that is not in fjall yet. Reads see it before fjall.
#[derive(Clone)]
struct Pending {
    seq: Seq,
    partition: u32,
    value: Option<Arc<[u8]>>,
}

/// Ordered, so that scans can merge it with fjall's ranges.
type Overlay = BTreeMap<Arc<[u8]>, Pending>;

/// Counters of a shard's store, exported as metrics by the engine.
#[derive(Debug, Default, Clone, Copy)]
pub struct StoreStats {
    pub writes_total: u64,
    pub groups_committed_total: u64,
    pub group_writes_committed_total: u64,
    /// Nanoseconds the applier spent inserting durable groups into fjall.
    pub apply_ns_total: u64,
    /// Bytes of group records written to the log (what write
    /// amplification is measured in).
    pub log_bytes_total: u64,
}

/// Memory fjall holds for a shard (see [`ShardStore::memory`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct StoreMemory {
    pub memtable_bytes: u64,
    pub cache_bytes: u64,
}

/// One shard's storage. It lives on its shard's thread; only the applier
/// thread beside it touches the databases' write path.
pub struct ShardStore {
    layout: Layout,
    keyspaces: Vec<Option<fjall::Keyspace>>,
    /// The databases of the partitions this shard owns, for their memory
    /// figures (the applier holds its own handles for writing).
    databases: Vec<fjall::Database>,
    overlay: Overlay,
    open: Vec<GroupWrite>,
    open_seq: Seq,
    /// Oldest first, consecutive sequence numbers.
    in_flight: VecDeque<InFlight>,
    in_flight_max: usize,
    /// Record buffers of completed groups, for the next ones.
    spare_records: Vec<Vec<u8>>,
    durable_seq: Seq,
    wal_file: File,
    wal_path: PathBuf,
    /// Where the next record goes in the current segment.
    wal_offset: u64,
    wal_segment: u64,
    /// The next segment, once the applier has created it.
    next_segment: Option<File>,
    /// Why the applier could not create the next segment ahead of need,
    /// if it could not; it is asked again when the segment is needed.
    next_segment_failed: Option<Error>,
    apply_backlog: usize,
    tasks: Option<Sender<Task>>,
    answers: Receiver<Answer>,
    spare: Vec<Vec<GroupWrite>>,
    /// How to take back the writes since the oldest open savepoint: the
    /// overlay entry each write replaced, and the length of the open group
    /// before it.
    undo: Vec<Undo>,
    shard: u32,
    run: u64,
    segment_bytes: u64,
    applier: Option<JoinHandle<()>>,
    stats: StoreStats,
}

impl ShardStore {
    /// Opens the partitions that shard `shard` of `shards` owns, starts a
    /// fresh log, and starts its applier thread. The log of earlier runs
    /// must have been replayed by [`wal::recover`] first.
    pub fn open(
        layout: &Layout,
        shard: u32,
        shards: u32,
        options: StoreOptions,
        waker: Waker,
    ) -> Result<ShardStore, Error> {
        let partitions = OpenPartitions::open(layout, &options, |p| {
            Layout::shard_of_partition(p, shards) == shard
        })?;
        Self::open_with(layout, shard, shards, options, waker, &partitions)
    }

    /// [`open`](Self::open), with partitions that are already open (the
    /// server opens every partition once, for recovery and then the
    /// shards: opening a database replays fjall's own journals, which is
    /// the slow part of a start).
    pub fn open_with(
        layout: &Layout,
        shard: u32,
        shards: u32,
        options: StoreOptions,
        waker: Waker,
        partitions: &OpenPartitions,
    ) -> Result<ShardStore, Error> {
        assert!(shard < shards, "shard index must be below the shard count");
        let count = layout.partitions() as usize;
        let mut databases = vec![None; count];
        let mut keyspaces = vec![None; count];
        for partition in 0..layout.partitions() {
            if Layout::shard_of_partition(partition, shards) != shard {
                continue;
            }
            let (db, keyspace) = partitions.get(partition).ok_or_else(|| Error::Layout {
                path: layout.root().to_path_buf(),
                reason: format!("partition {partition} was not opened"),
            })?;
            databases[partition as usize] = Some(db.clone());
            keyspaces[partition as usize] = Some(keyspace.clone());
        }
        let in_flight_max = options.wal_groups_in_flight;
        assert!(
            (1..=WAL_GROUPS_IN_FLIGHT_MAX).contains(&in_flight_max),
            "between 1 and {WAL_GROUPS_IN_FLIGHT_MAX} groups in flight"
        );
        let wal_path = wal::segment_path(layout.root(), options.wal_run, shard, 0);
        let wal_file = wal::create_segment(&wal_path, options.wal_segment_bytes)?;
        let (task_tx, task_rx) = crossbeam_channel::unbounded();
        let (answer_tx, answer_rx) = crossbeam_channel::unbounded();
        let owned_databases = databases.iter().flatten().cloned().collect();
        let applier = Applier {
            keyspaces: keyspaces.clone(),
            databases,
            tasks: task_rx,
            answers: answer_tx,
            waker,
            segment_bytes: options.wal_segment_bytes,
            idle_flush: options.idle_flush_ms.map(std::time::Duration::from_millis),
            idle_hook: options.idle_hook,
        };
        let handle = std::thread::Builder::new()
            .name(format!("durin-apply-{shard}"))
            .spawn(move || applier.run())
            .map_err(|source| Error::Io {
                path: "applier thread".into(),
                source,
            })?;
        let store = ShardStore {
            layout: layout.clone(),
            keyspaces,
            databases: owned_databases,
            overlay: Overlay::default(),
            open: Vec::new(),
            open_seq: 1,
            in_flight: VecDeque::with_capacity(in_flight_max),
            in_flight_max,
            spare_records: Vec::new(),
            durable_seq: 0,
            wal_file,
            wal_path,
            wal_offset: 0,
            wal_segment: 0,
            next_segment: None,
            next_segment_failed: None,
            apply_backlog: 0,
            tasks: Some(task_tx),
            answers: answer_rx,
            spare: Vec::new(),
            undo: Vec::new(),
            shard,
            run: options.wal_run,
            segment_bytes: options.wal_segment_bytes,
            applier: Some(handle),
            stats: StoreStats::default(),
        };
        store.send(Task::CreateSegment(wal::segment_path(
            layout.root(),
            options.wal_run,
            shard,
            1,
        )));
        Ok(store)
    }

    fn send(&self, task: Task) {
        let tasks = self
            .tasks
            .as_ref()
            .expect("the applier channel lives until drop");
        // A send fails only if the applier died; the next poll reports it.
        let _ = tasks.send(task);
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

    fn keyspace_of(&self, partition: u32) -> &fjall::Keyspace {
        match self.keyspaces.get(partition as usize) {
            Some(Some(k)) => k,
            _ => panic!("storage used on a shard that does not own partition {partition}"),
        }
    }

    /// Reads `key`, stored in `owner`'s partition: the newest write, durable
    /// or not.
    pub fn get(&self, owner: &OwnerId, key: &[u8]) -> Result<Option<Value>, Error> {
        if let Some(pending) = self.overlay.get(key) {
            return Ok(pending.value.clone().map(Value::Pending));
        }
        let keyspace = self.keyspace_of(self.layout.partition_of(owner));
        Ok(keyspace.get(key)?.map(Value::Stored))
    }

    /// Reads `key` into a new vector.
    pub fn get_vec(&self, owner: &OwnerId, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.get(owner, key)?.map(|v| v.to_vec()))
    }

    /// Calls `f` with every live key and value of the partition of `owner`
    /// in `range`, in key order (reversed if `reverse`), newest writes
    /// included, until `f` returns false.
    pub fn scan(
        &self,
        owner: &OwnerId,
        range: (Bound<&[u8]>, Bound<&[u8]>),
        reverse: bool,
        f: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), Error> {
        self.scan_partition(self.layout.partition_of(owner), range, reverse, f)
    }

    /// The partitions this shard owns.
    pub fn owned_partitions(&self) -> impl Iterator<Item = u32> + '_ {
        self.keyspaces
            .iter()
            .enumerate()
            .filter(|(_, k)| k.is_some())
            .map(|(p, _)| p as u32)
    }

    /// [`scan`](Self::scan) over partition `partition`.
    pub fn scan_partition(
        &self,
        partition: u32,
        range: (Bound<&[u8]>, Bound<&[u8]>),
        reverse: bool,
        mut f: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), Error> {
        let keyspace = self.keyspace_of(partition);
        if range_is_empty(range) {
            return Ok(());
        }
        let mut stored: Box<dyn Iterator<Item = fjall::Guard>> = if reverse {
            Box::new(keyspace.range::<&[u8], _>(range).rev())
        } else {
            Box::new(keyspace.range::<&[u8], _>(range))
        };
        let overlay_range = self
            .overlay
            .range::<[u8], _>(range)
            .filter(|(_, p)| p.partition == partition);
        let mut pending: Box<dyn Iterator<Item = (&Arc<[u8]>, &Pending)>> = if reverse {
            Box::new(overlay_range.rev())
        } else {
            Box::new(overlay_range)
        };
        let mut next_stored = stored.next().map(fjall::Guard::into_inner).transpose()?;
        let mut next_pending = pending.next();
        loop {
            // Merge the two ordered streams; at equal keys the overlay is
            // newer and wins, and its deletes hide the stored value.
            let take_pending = match (&next_stored, &next_pending) {
                (None, None) => return Ok(()),
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((sk, _)), Some((pk, _))) => {
                    let ordering = pk[..].cmp(&sk[..]);
                    if ordering == std::cmp::Ordering::Equal {
                        next_stored = stored.next().map(fjall::Guard::into_inner).transpose()?;
                    }
                    if reverse {
                        ordering.is_ge()
                    } else {
                        ordering.is_le()
                    }
                }
            };
            if take_pending {
                let (key, p) = next_pending.take().expect("chosen above");
                next_pending = pending.next();
                if let Some(value) = &p.value {
                    if !f(key, value) {
                        return Ok(());
                    }
                }
            } else {
                let (key, value) = next_stored.take().expect("chosen above");
                next_stored = stored.next().map(fjall::Guard::into_inner).transpose()?;
                if !f(&key, &value) {
                    return Ok(());
                }
            }
        }
    }

    /// Writes `key` in `owner`'s partition. Visible to reads at once;
    /// durable once [`durable_seq`](Self::durable_seq) reaches the returned
    /// number.
    pub fn put(&mut self, owner: &OwnerId, key: &[u8], value: &[u8]) -> Seq {
        self.write(owner, key, Some(Arc::from(value)))
    }

    /// Deletes `key` in `owner`'s partition, with the same visibility as
    /// [`put`](Self::put).
    pub fn delete(&mut self, owner: &OwnerId, key: &[u8]) -> Seq {
        self.write(owner, key, None)
    }

    fn write(&mut self, owner: &OwnerId, key: &[u8], value: Option<Arc<[u8]>>) -> Seq {
        let partition = self.layout.partition_of(owner);
        assert!(
            self.owns(owner),
            "storage written on a shard that does not own the partition"
        );
        self.stats.writes_total += 1;
        let seq = self.open_seq;
        let open_len = self.open.len();
        if let Some((key, pending)) = self.overlay.get_key_value(key) {
            let key = Arc::clone(key);
            let already_in_open_group = pending.seq == seq;
            let pending = self.overlay.get_mut(&key[..]).expect("found above");
            let previous = std::mem::replace(
                pending,
                Pending {
                    seq,
                    partition,
                    value,
                },
            );
            if !already_in_open_group {
                self.open.push(GroupWrite {
                    partition,
                    key: Arc::clone(&key),
                    value: None,
                });
            }
            self.undo.push(Undo {
                key,
                previous: Some(previous),
                open_len,
            });
            return seq;
        }
        let key: Arc<[u8]> = Arc::from(key);
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
            key: Arc::clone(&key),
            value: None,
        });
        self.undo.push(Undo {
            key,
            previous: None,
            open_len,
        });
        seq
    }

    /// Marks a point that [`rollback_to`](Self::rollback_to) can return
    /// to. Writes made after it can be taken back until
    /// [`release`](Self::release) forgets the way back. The shard takes one
    /// around every event, so an event's writes are all-or-nothing.
    pub fn savepoint(&self) -> Savepoint {
        Savepoint(self.undo.len())
    }

    /// Takes back every write made since `savepoint`, as if it never
    /// happened: reads see the earlier values again and the open group
    /// forgets the keys it gained.
    pub fn rollback_to(&mut self, savepoint: Savepoint) {
        assert!(
            savepoint.0 <= self.undo.len(),
            "a savepoint rolls back only writes made after it"
        );
        while self.undo.len() > savepoint.0 {
            let undo = self.undo.pop().expect("length checked above");
            match undo.previous {
                Some(previous) => {
                    *self
                        .overlay
                        .get_mut(&undo.key[..])
                        .expect("undone keys are in the overlay") = previous;
                }
                None => {
                    self.overlay.remove(&undo.key[..]);
                }
            }
            self.open.truncate(undo.open_len);
        }
    }

    /// Forgets how to roll back: the writes since the oldest savepoint stay.
    pub fn release(&mut self) {
        self.undo.clear();
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
        !self.open.is_empty() || !self.in_flight.is_empty()
    }

    /// Whether every write so far is durable and in fjall.
    pub fn is_settled(&self) -> bool {
        self.open.is_empty() && self.in_flight.is_empty() && self.apply_backlog == 0
    }

    /// Whether the applier has answered and [`poll_applier`](Self::poll_applier)
    /// would make progress.
    pub fn applier_ready(&self) -> bool {
        !self.answers.is_empty()
    }

    /// Counters for metrics.
    pub fn stats(&self) -> StoreStats {
        self.stats
    }

    /// What fjall holds in memory for this shard's partitions: memtables
    /// (active and sealed, not yet flushed) and the block caches.
    pub fn memory(&self) -> StoreMemory {
        self.databases
            .iter()
            .fold(StoreMemory::default(), |sum, db| StoreMemory {
                memtable_bytes: sum.memtable_bytes + db.write_buffer_size(),
                cache_bytes: sum.cache_bytes + db.cache_size(),
            })
    }

    /// Starts making the open group durable, unless as many groups as
    /// allowed are in flight, the segment is full (it moves on once the
    /// groups in it are durable), or the applier is too far behind. Called
    /// once per loop turn; the shard submits the returned write (linked
    /// with a sync) to its ring and reports the completions, with the
    /// write's `seq`, to [`on_wal_write`](Self::on_wal_write) and
    /// [`on_wal_sync`](Self::on_wal_sync).
    pub fn flush(&mut self) -> Option<WalWrite> {
        if self.open.is_empty()
            || self.in_flight.len() >= self.in_flight_max
            || self.wal_offset >= self.segment_bytes
            || self.apply_backlog >= APPLY_BACKLOG_MAX
        {
            return None;
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
        let mut record = self.spare_records.pop().unwrap_or_default();
        record.clear();
        wal::encode_group(&mut record, seq, &writes);
        self.stats.log_bytes_total += record.len() as u64;
        let offset = self.wal_offset;
        self.wal_offset += record.len() as u64;
        self.in_flight.push_back(InFlight {
            group: Group { seq, writes },
            record,
            offset,
            written: 0,
            synced: false,
        });
        Some(self.pending_write(self.in_flight.len() - 1))
    }

    /// The in-flight group `seq`: its position in the queue.
    fn position(&self, seq: Seq) -> usize {
        let oldest = self
            .in_flight
            .front()
            .expect("a log completion arrives only while a group is in flight")
            .group
            .seq;
        let position = seq
            .checked_sub(oldest)
            .expect("completions name groups in flight") as usize;
        assert!(
            position < self.in_flight.len(),
            "completions name groups in flight"
        );
        position
    }

    /// The in-flight group whose sequence number ends in the 32 bits
    /// `low` (what fits a ring token): groups in flight are consecutive and
    /// far fewer than 2^32.
    pub fn seq_in_flight(&self, low: u32) -> Seq {
        let oldest = self.durable_seq + 1;
        oldest + u64::from(low.wrapping_sub(oldest as u32))
    }

    /// What is left to write of the in-flight group at `position`.
    fn pending_write(&self, position: usize) -> WalWrite {
        let group = &self.in_flight[position];
        let rest = &group.record[group.written..];
        WalWrite {
            seq: group.group.seq,
            fd: self.wal_file.as_raw_fd(),
            ptr: rest.as_ptr(),
            len: u32::try_from(rest.len()).expect("a group record is under 4 GiB"),
            offset: group.offset + group.written as u64,
        }
    }

    /// The log write of group `seq` finished with `result` (bytes written,
    /// or -errno).
    pub fn on_wal_write(&mut self, seq: Seq, result: i32) -> Result<(), Error> {
        if result < 0 && result != -libc::ECANCELED {
            return Err(self.failed(seq, result, "write"));
        }
        let position = self.position(seq);
        self.in_flight[position].written += result.max(0) as usize;
        Ok(())
    }

    /// The log sync of group `seq` finished with `result` (0, or -errno).
    pub fn on_wal_sync(&mut self, seq: Seq, result: i32) -> Result<WalProgress, Error> {
        let position = self.position(seq);
        let group = &mut self.in_flight[position];
        if group.written < group.record.len() {
            // The write came up short and the linked sync was cancelled.
            return Ok(WalProgress::Resubmit(self.pending_write(position)));
        }
        if result < 0 {
            return Err(self.failed(seq, result, "fdatasync"));
        }
        group.synced = true;
        if position > 0 {
            return Ok(WalProgress::AwaitingEarlier);
        }
        while self.in_flight.front().is_some_and(|group| group.synced) {
            let done = self.in_flight.pop_front().expect("checked above");
            assert_eq!(
                done.group.seq,
                self.durable_seq + 1,
                "groups become durable in order"
            );
            self.durable_seq = done.group.seq;
            self.stats.groups_committed_total += 1;
            self.stats.group_writes_committed_total += done.group.writes.len() as u64;
            self.apply_backlog += 1;
            self.send(Task::Apply(done.group));
            self.spare_records.push(done.record);
        }
        if self.in_flight.is_empty() && self.wal_offset >= self.segment_bytes {
            self.rotate()?;
        }
        Ok(WalProgress::Durable)
    }

    fn failed(&self, seq: Seq, result: i32, what: &'static str) -> Error {
        Error::Log {
            seq,
            what,
            path: self.wal_path.clone(),
            source: std::io::Error::from_raw_os_error(-result),
        }
    }

    /// Moves to the next segment; the applier checkpoints fjall and deletes
    /// the sealed one.
    fn rotate(&mut self) -> Result<(), Error> {
        let next = match self.next_segment.take() {
            Some(file) => file,
            // The applier creates the next segment as soon as the previous
            // one opens: reaching here means it is slower than filling
            // 64 MiB, so waiting for it is the backpressure we want.
            None => self.await_next_segment()?,
        };
        let sealed = std::mem::replace(
            &mut self.wal_path,
            wal::segment_path(
                self.layout.root(),
                self.run,
                self.shard,
                self.wal_segment + 1,
            ),
        );
        self.wal_segment += 1;
        self.wal_file = next;
        self.wal_offset = 0;
        self.send(Task::Seal(sealed));
        self.send(Task::CreateSegment(wal::segment_path(
            self.layout.root(),
            self.run,
            self.shard,
            self.wal_segment + 1,
        )));
        Ok(())
    }

    /// Waits for the applier's next segment; asks for it once more if its
    /// creation ahead of need failed, and fails if that fails too.
    fn await_next_segment(&mut self) -> Result<File, Error> {
        let mut retried = false;
        loop {
            if let Some(file) = self.next_segment.take() {
                return Ok(file);
            }
            if let Some(e) = self.next_segment_failed.take() {
                if retried {
                    return Err(e);
                }
                log::warn!("log segment creation failed ({e}); trying again");
                retried = true;
                self.send(Task::CreateSegment(wal::segment_path(
                    self.layout.root(),
                    self.run,
                    self.shard,
                    self.wal_segment + 1,
                )));
            }
            let answer = self.answers.recv().map_err(|_| Error::ApplierGone)?;
            self.take_answer(answer)?;
        }
    }

    /// Takes the applier's answers: trims the overlay of applied groups.
    /// A failure of the applier is an error the shard must not survive.
    pub fn poll_applier(&mut self) -> Result<(), Error> {
        loop {
            match self.answers.try_recv() {
                Ok(answer) => self.take_answer(answer)?,
                Err(crossbeam_channel::TryRecvError::Empty) => return Ok(()),
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    return Err(Error::ApplierGone)
                }
            }
        }
    }

    fn take_answer(&mut self, answer: Answer) -> Result<(), Error> {
        match answer {
            Answer::Applied {
                mut group,
                apply_ns,
            } => {
                self.apply_backlog -= 1;
                self.stats.apply_ns_total += apply_ns;
                for write in group.writes.drain(..) {
                    if self
                        .overlay
                        .get(&write.key)
                        .is_some_and(|p| p.seq <= group.seq)
                    {
                        self.overlay.remove(&write.key);
                    }
                }
                self.spare.push(group.writes);
                Ok(())
            }
            Answer::SegmentFailed(e) => {
                log::warn!("creating the next log segment ahead of need failed: {e}");
                self.next_segment_failed = Some(e);
                Ok(())
            }
            Answer::Segment(file) => {
                self.next_segment = Some(file);
                Ok(())
            }
            Answer::Failed(e) => Err(e),
        }
    }
}

impl Drop for ShardStore {
    fn drop(&mut self) {
        self.tasks = None;
        if let Some(handle) = self.applier.take() {
            let _ = handle.join();
        }
    }
}

/// Whether no key lies within `range` (an inverted or empty range, which
/// ordered maps refuse to iterate).
fn range_is_empty((lo, hi): (Bound<&[u8]>, Bound<&[u8]>)) -> bool {
    match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b))
        | (Bound::Excluded(a), Bound::Excluded(b)) => a >= b,
        _ => false,
    }
}
