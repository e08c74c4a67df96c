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
const LAYOUT_MAGIC: [u8; 8] = *b"durinlay";
const LAYOUT_VERSION: u32 = 1;

/// The layout file's contents, rkyv-encoded and validated when read.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
struct LayoutRecord {
    magic: [u8; 8],
    version: u32,
    partitions: u32,
}
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
        match fs::read(&path) {
            Ok(bytes) => Self::parse(root, &path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Self::create(root, partitions.min(PARTITIONS_MAX))
            }
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    fn parse(root: &Path, path: &Path, bytes: &[u8]) -> Result<Layout, Error> {
        let bad = |reason: &str| Error::Layout {
            path: path.to_path_buf(),
            reason: reason.into(),
        };
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        let record = rkyv::from_bytes::<LayoutRecord, rkyv::rancor::Error>(&aligned)
            .map_err(|_| bad("not a durin layout record (it does not validate)"))?;
        if record.magic != LAYOUT_MAGIC {
            return Err(bad("not a durin layout file"));
        }
        if record.version != LAYOUT_VERSION {
            return Err(bad("a layout version this durin does not know"));
        }
        if record.partitions == 0 || record.partitions > PARTITIONS_MAX {
            return Err(bad("partition count out of range"));
        }
        Ok(Layout {
            root: root.to_path_buf(),
            partitions: record.partitions,
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
        let record = LayoutRecord {
            magic: LAYOUT_MAGIC,
            version: LAYOUT_VERSION,
            partitions,
        };
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&record)
            .expect("serializing a plain record cannot fail");
        // Check at both ends: what is written must read back.
        debug_assert!(Self::parse(root, &tmp, &bytes).is_ok());
        file.write_all(&bytes).map_err(io(&tmp))?;
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
    fn a_damaged_layout_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("durin-layout-bad-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        Layout::open_or_create(&dir, 3).expect("create");
        fs::write(dir.join(LAYOUT_FILE), b"partitions 3").expect("overwrite");
        assert!(matches!(
            Layout::open_or_create(&dir, 3),
            Err(Error::Layout { .. })
        ));
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
