use std::fmt;
use std::path::PathBuf;

/// Errors of the storage layer.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error on the data directory.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The data directory's layout file could not be understood.
    Layout { path: PathBuf, reason: String },
    /// fjall reported an error.
    Fjall(fjall::Error),
    /// Writing or syncing a group's log record failed. The store cannot
    /// know what reached the disk, so nothing of the group may be
    /// acknowledged.
    CommitFailed { seq: u64, reason: String },
    /// The log write or sync of a group failed with an I/O error (`what`:
    /// the operation). As with [`Error::CommitFailed`], nothing of the
    /// group may be acknowledged.
    Log {
        seq: u64,
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The filesystem holding the data directory has too little free space
    /// to start: replaying the log into the partitions needs room.
    DiskFull {
        path: PathBuf,
        free_bytes: u64,
        needed_bytes: u64,
    },
    /// The applier thread is gone.
    ApplierGone,
    /// A log segment holds a record whose checksum is valid but whose
    /// contents do not parse: the log is damaged, and the server does not
    /// start on it rather than guess what it held.
    CorruptLog { path: PathBuf, reason: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Layout { path, reason } => {
                write!(f, "layout file {}: {reason}", path.display())
            }
            Error::Fjall(e) => write!(f, "storage engine: {e}"),
            Error::CommitFailed { seq, reason } => {
                write!(f, "commit of group {seq} failed: {reason}")
            }
            Error::Log {
                seq,
                what,
                path,
                source,
            } => write!(
                f,
                "commit of group {seq} failed: {what} of {}: {source}",
                path.display()
            ),
            Error::DiskFull {
                path,
                free_bytes,
                needed_bytes,
            } => write!(
                f,
                "the disk is full: the filesystem of {} has {} free, and starting needs at least {} \
                 (to replay the log and leave room for new writes); free space or enlarge it, then start again",
                path.display(),
                crate::space::human_bytes(*free_bytes),
                crate::space::human_bytes(*needed_bytes),
            ),
            Error::ApplierGone => write!(f, "the applier thread stopped"),
            Error::CorruptLog { path, reason } => {
                write!(f, "damaged log segment {}: {reason}", path.display())
            }
        }
    }
}

impl Error {
    /// Whether the error means the disk is full: the start-up check found
    /// too little space, or an I/O error anywhere below (the log, fjall's
    /// journal or tables) was `ENOSPC` or `EDQUOT`.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::DiskFull { .. } => true,
            Error::Io { source, .. } | Error::Log { source, .. } => is_no_space(source),
            Error::Fjall(e) => chain_has_no_space(e),
            Error::Layout { .. }
            | Error::CommitFailed { .. }
            | Error::ApplierGone
            | Error::CorruptLog { .. } => false,
        }
    }
}

fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
}

/// Walks an error's sources (fjall wraps lsm-tree, which wraps
/// `std::io::Error`) looking for a full disk.
fn chain_has_no_space(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    // Error chains are a few levels deep; the bound guards a cycle.
    for _ in 0..SOURCE_DEPTH_MAX {
        let Some(e) = next else { return false };
        if e.downcast_ref::<std::io::Error>().is_some_and(is_no_space) {
            return true;
        }
        next = e.source();
    }
    false
}

/// How many sources [`Error::is_disk_full`] follows.
const SOURCE_DEPTH_MAX: usize = 8;

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } | Error::Log { source, .. } => Some(source),
            Error::Fjall(e) => Some(e),
            _ => None,
        }
    }
}

impl From<fjall::Error> for Error {
    fn from(e: fjall::Error) -> Self {
        Error::Fjall(e)
    }
}
