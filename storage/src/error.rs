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
            Error::ApplierGone => write!(f, "the applier thread stopped"),
            Error::CorruptLog { path, reason } => {
                write!(f, "damaged log segment {}: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<fjall::Error> for Error {
    fn from(e: fjall::Error) -> Self {
        Error::Fjall(e)
    }
}
