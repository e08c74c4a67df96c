//! The applier thread: moves durable groups into fjall, off the loop.
//!
//! A group is durable once its log record is synced; fjall only has to
//! catch up. Inserting into fjall can take tens of milliseconds when a
//! memtable rotates, so each shard has an applier thread that does it, and
//! the overlay answers reads until it has. The applier also does the slow
//! file-system work of the log: it creates the next segment ahead of time,
//! and when the shard seals a segment it syncs fjall (a checkpoint) and
//! deletes the segment.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use fjall::{Keyspace, PersistMode};

use crate::store::{Seq, Waker};
use crate::Error;

/// Most queued groups applied in one batch.
const APPLY_BATCH_GROUPS_MAX: usize = 64;

/// One write of a group, already deduplicated: the last value written to
/// the key while the group was open, or `None` for a delete.
pub(crate) struct GroupWrite {
    pub partition: u32,
    pub key: Arc<[u8]>,
    pub value: Option<Arc<[u8]>>,
}

/// The writes of one loop turn (or several, while the previous group synced).
pub(crate) struct Group {
    pub seq: Seq,
    pub writes: Vec<GroupWrite>,
}

/// What the shard asks of its applier.
pub(crate) enum Task {
    /// Insert a durable group into fjall.
    Apply(Group),
    /// Every group of this segment has been sent: checkpoint, then delete it.
    Seal(PathBuf),
    /// Create this segment for later use.
    CreateSegment(PathBuf),
}

/// What the applier answers.
pub(crate) enum Answer {
    /// The group is in fjall; the overlay may let go of it.
    Applied { group: Group, apply_ns: u64 },
    /// A segment asked for is ready.
    Segment(File),
    /// A segment asked for ahead of need could not be created (out of
    /// descriptors, say). Not fatal yet: the store asks again when it
    /// needs the segment, and stops only if that fails too.
    SegmentFailed(Error),
    /// Something failed; the store cannot go on.
    Failed(Error),
}

pub(crate) struct Applier {
    pub keyspaces: Vec<Option<Keyspace>>,
    pub databases: Vec<Option<fjall::Database>>,
    pub tasks: Receiver<Task>,
    pub answers: Sender<Answer>,
    pub waker: Waker,
    pub segment_bytes: u64,
    /// How long without a group to apply before the memtables are flushed.
    pub idle_flush: Option<std::time::Duration>,
    /// Run after a further idle period (see `StoreOptions::idle_hook`).
    pub idle_hook: Option<fn()>,
}

/// Where the applier stands between groups.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Idle {
    /// Nothing to do when idle: wait for work without a timeout.
    Settled,
    /// Groups were applied: flush the memtables after an idle period.
    Applied,
    /// The memtables were flushed: run the idle hook after another one.
    Flushed,
}

impl Applier {
    /// Runs until the shard drops its end of the channel.
    pub fn run(self) {
        let mut next = None;
        let mut idle = Idle::Settled;
        loop {
            let task = match next.take() {
                Some(task) => task,
                None => match self.next_task(idle) {
                    Ok(Some(task)) => task,
                    Ok(None) => {
                        idle = match self.on_idle(idle) {
                            Ok(idle) => idle,
                            Err(e) => {
                                if self.answers.send(Answer::Failed(e)).is_err() {
                                    return;
                                }
                                (self.waker)();
                                Idle::Settled
                            }
                        };
                        continue;
                    }
                    Err(()) => return,
                },
            };
            if matches!(task, Task::Apply(_)) {
                idle = Idle::Applied;
            }
            let answers = match task {
                Task::Apply(group) => {
                    // Groups that queued up meanwhile go into the same
                    // batches: fewer, larger fjall commits when behind.
                    let mut groups = vec![group];
                    while groups.len() < APPLY_BATCH_GROUPS_MAX {
                        match self.tasks.try_recv() {
                            Ok(Task::Apply(group)) => groups.push(group),
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    let started = std::time::Instant::now();
                    match self.apply(&groups) {
                        Ok(()) => {
                            let apply_ns =
                                started.elapsed().as_nanos() as u64 / groups.len() as u64;
                            groups
                                .into_iter()
                                .map(|group| Answer::Applied { group, apply_ns })
                                .collect()
                        }
                        Err(e) => vec![Answer::Failed(e)],
                    }
                }
                Task::Seal(path) => match self.checkpoint(path) {
                    Ok(()) => continue,
                    Err(e) => vec![Answer::Failed(e)],
                },
                Task::CreateSegment(path) => {
                    match crate::wal::create_segment(&path, self.segment_bytes) {
                        Ok(file) => vec![Answer::Segment(file)],
                        Err(e) => {
                            // A file created before the failure would make
                            // the next attempt's `create_new` fail.
                            let _ = std::fs::remove_file(&path);
                            vec![Answer::SegmentFailed(e)]
                        }
                    }
                }
            };
            for answer in answers {
                if self.answers.send(answer).is_err() {
                    return;
                }
            }
            (self.waker)();
        }
    }

    /// The next task; `Ok(None)` once the applier has been idle for
    /// `idle_flush` with something to do about it; `Err` once the shard is
    /// gone.
    fn next_task(&self, idle: Idle) -> Result<Option<Task>, ()> {
        match self.idle_flush {
            Some(wait) if idle != Idle::Settled => match self.tasks.recv_timeout(wait) {
                Ok(task) => Ok(Some(task)),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => Ok(None),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(()),
            },
            _ => self.tasks.recv().map(Some).map_err(|_| ()),
        }
    }

    /// What an idle period leads to: first a flush, then the hook.
    fn on_idle(&self, idle: Idle) -> Result<Idle, Error> {
        match idle {
            Idle::Applied => {
                self.flush_memtables()?;
                Ok(Idle::Flushed)
            }
            Idle::Flushed | Idle::Settled => {
                if let Some(hook) = self.idle_hook {
                    hook();
                }
                Ok(Idle::Settled)
            }
        }
    }

    /// Seals every memtable that holds writes and has fjall flush it to a
    /// table in the background, as it does with a full one: the memory
    /// goes once the table is written. The log is unaffected (a segment
    /// is deleted only after a checkpoint).
    fn flush_memtables(&self) -> Result<(), Error> {
        for keyspace in self.keyspaces.iter().flatten() {
            // `rotate_memtable` is what fjall runs when a memtable is full;
            // it is public but hidden from fjall's docs (fjall 3.1 has no
            // other way to flush early).
            keyspace.rotate_memtable()?;
        }
        Ok(())
    }

    /// Inserts the groups, in order, as one batch per partition they
    /// touch. The batches are not synced: the log already holds them.
    fn apply(&self, groups: &[Group]) -> Result<(), Error> {
        let mut partitions: Vec<u32> = groups
            .iter()
            .flat_map(|g| g.writes.iter().map(|w| w.partition))
            .collect();
        partitions.sort_unstable();
        partitions.dedup();
        for partition in partitions {
            let index = partition as usize;
            let (Some(Some(db)), Some(Some(keyspace))) =
                (self.databases.get(index), self.keyspaces.get(index))
            else {
                return Err(Error::CommitFailed {
                    seq: groups[0].seq,
                    reason: format!("partition {partition} is not open on this shard"),
                });
            };
            let mut batch = db.batch();
            for write in groups
                .iter()
                .flat_map(|g| &g.writes)
                .filter(|w| w.partition == partition)
            {
                match &write.value {
                    Some(value) => batch.insert(keyspace, &*write.key, &**value),
                    None => batch.remove(keyspace, &*write.key),
                }
            }
            batch.commit()?;
        }
        Ok(())
    }

    /// Makes everything applied so far durable in fjall, then deletes the
    /// sealed segment, whose groups were all applied before this task.
    fn checkpoint(&self, sealed: PathBuf) -> Result<(), Error> {
        for db in self.databases.iter().flatten() {
            db.persist(PersistMode::SyncAll)?;
        }
        std::fs::remove_file(&sealed).map_err(|source| Error::Io {
            path: sealed,
            source,
        })
    }
}
