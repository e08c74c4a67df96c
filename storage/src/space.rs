//! Free space on the data directory's filesystem.
//!
//! A start replays the shards' log into the partitions (fjall's journal
//! and, later, its tables) before the segments can be deleted, so it needs
//! room for about as many bytes as the log holds, and then room for new
//! writes. On a full disk it would fail part way, with whatever error the
//! first short write produced (fjall logs its own errors on the way); the
//! check here says plainly that the disk is full before anything is opened.
//!
//! ```no_run
//! # let layout = durin_storage::Layout::open_or_create("data".as_ref(), 1)?;
//! durin_storage::space::check_room_to_start(&layout, 32 << 20)?;
//! # Ok::<(), durin_storage::Error>(())
//! ```

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::{wal, Error, Layout};

/// Bytes the filesystem holding `path` has free for an unprivileged
/// writer (`f_bavail`: what is left after the blocks reserved for root).
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("a path with a NUL byte"))?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is a
    // NUL-terminated string that lives across the call.
    let stat = unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c_path.as_ptr(), &mut stat) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        stat
    };
    // The fields are 32 bits wide on some targets.
    #[allow(clippy::useless_conversion)]
    let (blocks, block_bytes) = (u64::from(stat.f_bavail), u64::from(stat.f_frsize));
    Ok(blocks.saturating_mul(block_bytes))
}

/// Bytes the log segments left in the data directory occupy on disk (their
/// allocated blocks: a segment is created sparse, so its length says
/// nothing about how much of it was written).
pub fn log_bytes(layout: &Layout) -> Result<u64, Error> {
    let dir = layout.root().join(wal::WAL_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => return Err(Error::Io { path: dir, source }),
    };
    let mut total: u64 = 0;
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        let metadata = entry.metadata().map_err(|source| Error::Io {
            path: entry.path(),
            source,
        })?;
        // st_blocks counts 512-byte units whatever the block size.
        total = total.saturating_add(metadata.blocks().saturating_mul(512));
    }
    Ok(total)
}

/// Refuses a start, with [`Error::DiskFull`], when the filesystem of the
/// data directory has less free than the log to replay plus
/// `free_bytes_min`. `free_bytes_min = 0` turns the check off.
pub fn check_room_to_start(layout: &Layout, free_bytes_min: u64) -> Result<(), Error> {
    if free_bytes_min == 0 {
        return Ok(());
    }
    let root = layout.root();
    let free = free_bytes(root).map_err(|source| Error::Io {
        path: root.to_path_buf(),
        source,
    })?;
    let needed = log_bytes(layout)?.saturating_add(free_bytes_min);
    if free < needed {
        return Err(Error::DiskFull {
            path: root.to_path_buf(),
            free_bytes: free,
            needed_bytes: needed,
        });
    }
    Ok(())
}

/// `1.5 MiB`-style text for an error a person reads.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_is_refused_when_free_space_is_below_the_minimum() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let layout = Layout::open_or_create(dir.path(), 1).expect("a layout");
        let free = free_bytes(dir.path()).expect("statvfs works on a temp dir");
        let refused = check_room_to_start(&layout, free.saturating_add(1 << 30));
        assert!(matches!(refused, Err(Error::DiskFull { .. })));
        assert!(refused.as_ref().is_err_and(Error::is_disk_full));
        let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("the disk is full"), "{message}");
        assert!(check_room_to_start(&layout, 0).is_ok());
    }

    #[test]
    fn enospc_below_fjall_counts_as_a_full_disk() {
        let io = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let fjall = fjall::Error::Storage(lsm_tree_io(io));
        assert!(Error::Fjall(fjall).is_disk_full());
        let other = std::io::Error::from_raw_os_error(libc::EIO);
        assert!(!Error::Fjall(fjall::Error::Io(other)).is_disk_full());
    }

    fn lsm_tree_io(e: std::io::Error) -> fjall::LsmError {
        fjall::LsmError::from(e)
    }

    #[test]
    fn sizes_read_as_a_person_writes_them() {
        assert_eq!(human_bytes(0), "0 bytes");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(64 << 20), "64.0 MiB");
    }
}
