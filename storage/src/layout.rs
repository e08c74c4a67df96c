//! The data directory's partition layout.
//!
//! A data directory is split into a fixed number of storage partitions when
//! it is created. An object's partition is a pure function of its ID and that
//! number, so a restart with a different core count still finds every
//! object's state: shards simply take a different share of the partitions.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::Error;

const LAYOUT_FILE: &str = "LAYOUT";
const LAYOUT_MAGIC: &str = "durin-layout 1";
/// More partitions than this would mean thousands of open databases.
pub const PARTITIONS_MAX: u32 = 1024;

/// How a data directory is split into partitions.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    partitions: u32,
}

impl Layout {
    /// Opens the layout of `root`, creating the directory with `partitions`
    /// partitions if it has none yet. An existing layout wins over
    /// `partitions`.
    pub fn open_or_create(root: &Path, partitions: u32) -> Result<Layout, Error> {
        assert!(
            partitions >= 1,
            "a data directory needs at least one partition"
        );
        let io = |source| Error::Io {
            path: root.to_path_buf(),
            source,
        };
        fs::create_dir_all(root).map_err(io)?;
        let path = root.join(LAYOUT_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => Self::parse(root, &path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Self::create(root, partitions.min(PARTITIONS_MAX))
            }
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    fn parse(root: &Path, path: &Path, text: &str) -> Result<Layout, Error> {
        let bad = |reason: &str| Error::Layout {
            path: path.to_path_buf(),
            reason: reason.into(),
        };
        let mut lines = text.lines();
        if lines.next() != Some(LAYOUT_MAGIC) {
            return Err(bad(
                "unknown format (expected a durin layout file, version 1)",
            ));
        }
        let partitions = lines
            .next()
            .and_then(|l| l.strip_prefix("partitions "))
            .and_then(|n| n.trim().parse::<u32>().ok())
            .ok_or_else(|| bad("missing or invalid `partitions` line"))?;
        if partitions == 0 || partitions > PARTITIONS_MAX {
            return Err(bad("partition count out of range"));
        }
        Ok(Layout {
            root: root.to_path_buf(),
            partitions,
        })
    }

    /// Writes the layout atomically: a temporary file, synced, renamed over
    /// the final name, then the directory synced, so a crash leaves either no
    /// layout or a whole one.
    fn create(root: &Path, partitions: u32) -> Result<Layout, Error> {
        let path = root.join(LAYOUT_FILE);
        let tmp = root.join("LAYOUT.tmp");
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| Error::Io { path: p, source }
        };
        let mut file = fs::File::create(&tmp).map_err(io(&tmp))?;
        write!(file, "{LAYOUT_MAGIC}\npartitions {partitions}\n").map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
        fs::File::open(root)
            .and_then(|d| d.sync_all())
            .map_err(io(root))?;
        Ok(Layout {
            root: root.to_path_buf(),
            partitions,
        })
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The number of partitions.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The partition that stores `owner`'s data: a pure function of the ID.
    pub fn partition_of(&self, owner: &[u8; 16]) -> u32 {
        durin_proto::partition_of(&durin_proto::ObjectId(*owner), self.partitions)
    }

    /// The shard that owns `partition` when `shards` shards run.
    pub fn shard_of_partition(partition: u32, shards: u32) -> u32 {
        durin_proto::shard_of_partition(partition, shards)
    }

    /// The shard that owns `owner` when `shards` shards run.
    pub fn shard_of(&self, owner: &[u8; 16], shards: u32) -> u32 {
        Self::shard_of_partition(self.partition_of(owner), shards)
    }

    pub(crate) fn partition_dir(&self, partition: u32) -> PathBuf {
        self.root.join(format!("partition-{partition:04}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_layout_wins_over_the_requested_count() {
        let dir = std::env::temp_dir().join(format!("durin-layout-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let first = Layout::open_or_create(&dir, 3).expect("create");
        assert_eq!(first.partitions(), 3);
        let again = Layout::open_or_create(&dir, 8).expect("reopen");
        assert_eq!(again.partitions(), 3);
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn partition_is_a_pure_function_of_the_id() {
        let layout = Layout {
            root: PathBuf::new(),
            partitions: 7,
        };
        let id = [42u8; 16];
        assert_eq!(layout.partition_of(&id), layout.partition_of(&id));
        assert!(layout.partition_of(&id) < 7);
    }
}
