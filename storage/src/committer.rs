//! The committer thread: makes groups durable off the shard's loop.
//!
//! A commit can take tens of milliseconds when a memtable rotates, and an
//! fsync takes a fraction of a millisecond at best. Neither may stall the
//! shard, so each shard has one committer thread. The shard hands it at most
//! one group at a time and keeps serving (and filling the next group) while
//! this one is written and synced.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use fjall::{Keyspace, PersistMode};

use crate::store::{Seq, Waker};

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

/// The committer's answer; the group comes back so the shard can trim its
/// overlay and reuse the allocation.
pub(crate) struct Done {
    pub group: Group,
    pub result: Result<(), String>,
    /// Time spent writing and syncing the group.
    pub commit_ns: u64,
}

pub(crate) struct Committer {
    pub keyspaces: Vec<Option<Keyspace>>,
    pub databases: Vec<Option<fjall::Database>>,
    pub groups: Receiver<Group>,
    pub done: Sender<Done>,
    pub waker: Waker,
}

impl Committer {
    /// Runs until the shard drops its end of the channel.
    pub fn run(self) {
        while let Ok(group) = self.groups.recv() {
            let started = std::time::Instant::now();
            let result = self.commit(&group);
            let commit_ns = started.elapsed().as_nanos() as u64;
            if self
                .done
                .send(Done {
                    group,
                    result,
                    commit_ns,
                })
                .is_err()
            {
                return;
            }
            (self.waker)();
        }
    }

    /// Writes the group as one batch per partition it touches, each synced
    /// with `fdatasync` before the next starts. A group of a shard that owns
    /// several partitions is therefore atomic per partition, which is all an
    /// object needs: an object's data lives in exactly one partition.
    fn commit(&self, group: &Group) -> Result<(), String> {
        let mut partitions: Vec<u32> = group.writes.iter().map(|w| w.partition).collect();
        partitions.sort_unstable();
        partitions.dedup();
        for partition in partitions {
            let index = partition as usize;
            let (Some(Some(db)), Some(Some(keyspace))) =
                (self.databases.get(index), self.keyspaces.get(index))
            else {
                return Err(format!("partition {partition} is not open on this shard"));
            };
            let mut batch = db.batch().durability(Some(PersistMode::SyncData));
            for write in group.writes.iter().filter(|w| w.partition == partition) {
                match &write.value {
                    Some(value) => batch.insert(keyspace, &*write.key, &**value),
                    None => batch.remove(keyspace, &*write.key),
                }
            }
            batch.commit().map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
