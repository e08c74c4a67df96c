//! The shard's write-ahead log: what makes a group durable.
//!
//! Each shard appends one record per group to its own log and syncs it with
//! `fdatasync`. The shard's io_uring ring does the write and the sync (the
//! store only says what to write where), so no thread hand-off sits between
//! a write and its acknowledgement. fjall receives the same writes
//! afterwards, off the loop, and is only made durable at checkpoints; a
//! segment of the log is deleted once fjall holds everything in it durably.
//!
//! At start, before any shard runs, every log segment left in the data
//! directory is replayed into the partitions in order, fjall is synced, and
//! the segments are deleted ([`recover`]). Replaying a suffix of blind
//! writes in order always ends in the same state, so a replay that is
//! interrupted and repeated is harmless.
//!
//! Record layout (little-endian):
//!
//! ```text
//! len u32 | crc32 u32 | seq u64 | count u32 | count × entry
//! entry: partition u32 | key_len u32 | value_len u32 (u32::MAX: delete) | key | value
//! ```
//!
//! `len` counts the bytes after the crc field; the crc covers them. A zero
//! length (the unwritten, zero-filled tail of a segment), a record running
//! past the end of the file, or a crc mismatch (a torn write, which was
//! never acknowledged) ends the log.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::applier::GroupWrite;
use crate::{Error, Layout};

/// Default size a segment is created with (sparse); once a group ends past
/// it the shard moves to the next segment.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;
const HEADER_BYTES: usize = 8;
const DELETE_MARK: u32 = u32::MAX;
/// The folder of the log segments inside the data directory.
pub const WAL_DIR: &str = "wal";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The path of segment `segment` of shard `shard` in run `run` (each
/// start of the server is a new run). Names sort by run, shard, segment:
/// the order a replay needs.
pub fn segment_path(root: &Path, run: u64, shard: u32, segment: u64) -> PathBuf {
    root.join(WAL_DIR)
        .join(format!("run-{run:016}-shard-{shard:04}-{segment:016}.log"))
}

/// The run a segment's name belongs to.
fn run_of(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix("run-")?.get(..16)?.parse().ok()
}

/// Creates a segment of `bytes` zeros (sparse) and makes its directory
/// entry durable.
pub fn create_segment(path: &Path, bytes: u64) -> Result<File, Error> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err(path))?;
    file.set_len(bytes).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))?;
    let dir = path.parent().expect("segments live in the wal folder");
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(file)
}

/// Appends the record of group `seq` to `buf`.
pub(crate) fn encode_group(buf: &mut Vec<u8>, seq: u64, writes: &[GroupWrite]) {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; HEADER_BYTES]);
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&(writes.len() as u32).to_le_bytes());
    for w in writes {
        buf.extend_from_slice(&w.partition.to_le_bytes());
        buf.extend_from_slice(&(w.key.len() as u32).to_le_bytes());
        match &w.value {
            Some(v) => {
                assert!(v.len() < DELETE_MARK as usize, "a value fits a u32 length");
                buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
            }
            None => buf.extend_from_slice(&DELETE_MARK.to_le_bytes()),
        }
        buf.extend_from_slice(&w.key);
        if let Some(v) = &w.value {
            buf.extend_from_slice(v);
        }
    }
    let body_len = buf.len() - start - HEADER_BYTES;
    let len = u32::try_from(body_len).expect("a group record is under 4 GiB");
    let crc = crc32fast::hash(&buf[start + HEADER_BYTES..]);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A write as tests build it: partition, key, and value (`None`: delete).
#[doc(hidden)]
pub type TestWrite = (u32, Vec<u8>, Option<Vec<u8>>);

/// [`encode_group`] for tests and fuzzing outside the crate: appends the
/// record of group `seq` holding `writes`.
#[doc(hidden)]
pub fn encode_group_for_tests(buf: &mut Vec<u8>, seq: u64, writes: &[TestWrite]) {
    let writes: Vec<GroupWrite> = writes
        .iter()
        .map(|(partition, key, value)| GroupWrite {
            partition: *partition,
            key: key.as_slice().into(),
            value: value.as_deref().map(Into::into),
        })
        .collect();
    encode_group(buf, seq, &writes);
}

/// One write read back from the log.
pub struct Replayed<'a> {
    pub seq: u64,
    pub partition: u32,
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

/// A log record whose checksum matched but whose contents do not parse:
/// not a torn write (which the checksum catches) but damage, or a bug.
/// Replay stops there rather than guess.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt {
    /// Where the record starts in its segment.
    pub offset: usize,
    /// What does not parse.
    pub what: &'static str,
}

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "log record at byte {} has a valid checksum but {}",
            self.offset, self.what
        )
    }
}

/// Calls `apply` for every write of every intact record of `bytes`, in
/// order, and returns the number of records. A record is checked whole
/// before any of its writes is applied, so a corrupt one applies nothing.
pub fn replay_segment(bytes: &[u8], mut apply: impl FnMut(Replayed<'_>)) -> Result<u64, Corrupt> {
    let mut at = 0usize;
    let mut records = 0;
    while let Some(header) = bytes.get(at..at + HEADER_BYTES) {
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        let Some(body) = bytes.get(at + HEADER_BYTES..at + HEADER_BYTES + len) else {
            break;
        };
        if len < 12 || crc32fast::hash(body) != crc {
            break;
        }
        let corrupt = |what| Corrupt { offset: at, what };
        decode_body(body, &mut |_| {}).map_err(corrupt)?;
        decode_body(body, &mut apply).map_err(corrupt)?;
        records += 1;
        at += HEADER_BYTES + len;
    }
    Ok(records)
}

/// Walks the entries of a record body, calling `apply` for each.
fn decode_body(body: &[u8], apply: &mut impl FnMut(Replayed<'_>)) -> Result<(), &'static str> {
    let u32_at = |at: usize| {
        body.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    let seq = u64::from_le_bytes(body[..8].try_into().expect("the caller checked 12 bytes"));
    let count = u32_at(8).ok_or("its entry count is cut off")?;
    let mut at = 12;
    for _ in 0..count {
        let (Some(partition), Some(key_len), Some(value_len)) =
            (u32_at(at), u32_at(at + 4), u32_at(at + 8))
        else {
            return Err("an entry header runs past the record");
        };
        at += 12;
        let key = body
            .get(at..at + key_len as usize)
            .ok_or("a key runs past the record")?;
        at += key_len as usize;
        let value = if value_len == DELETE_MARK {
            None
        } else {
            let v = body
                .get(at..at + value_len as usize)
                .ok_or("a value runs past the record")?;
            at += value_len as usize;
            Some(v)
        };
        apply(Replayed {
            seq,
            partition,
            key,
            value,
        });
    }
    if at != body.len() {
        return Err("bytes follow its last entry");
    }
    Ok(())
}

/// What a replay found, and what is left to do.
pub struct Recovered {
    /// Log records replayed.
    pub records: u64,
    /// The run number the starting server's shards write their logs under.
    pub next_run: u64,
    /// The sync of the replayed writes into fjall and the deletion of the
    /// replayed segments, left for [`Checkpoint::finish`].
    pub checkpoint: Checkpoint,
}

/// Makes replayed writes durable in fjall, then deletes their segments.
/// Until it finishes, the segments stay, and a crash replays them again
/// (before the newer runs' segments, which sort after them).
pub struct Checkpoint {
    databases: Vec<fjall::Database>,
    segments: Vec<PathBuf>,
    dir: PathBuf,
}

impl Checkpoint {
    pub fn finish(self) -> Result<(), Error> {
        for db in &self.databases {
            db.persist(fjall::PersistMode::SyncAll)?;
        }
        for path in &self.segments {
            fs::remove_file(path).map_err(io_err(path))?;
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))?;
        Ok(())
    }
}

/// Replays every segment left in the data directory into its partitions,
/// syncs them, and deletes the segments; returns the records replayed.
/// For tools and tests: the server uses [`recover_into`] and finishes the
/// checkpoint in the background.
pub fn recover(layout: &Layout) -> Result<u64, Error> {
    let partitions =
        crate::OpenPartitions::open(layout, &crate::StoreOptions::default(), |_| false)?;
    let recovered = recover_into(layout, &partitions)?;
    recovered.checkpoint.finish()?;
    Ok(recovered.records)
}

/// Replays every segment left in the data directory, in order, into the
/// partitions (those the caller has not opened are opened for it). The
/// replayed writes are in fjall but not yet synced: see [`Checkpoint`].
pub fn recover_into(layout: &Layout, open: &crate::OpenPartitions) -> Result<Recovered, Error> {
    let dir = layout.root().join(WAL_DIR);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let mut segments: Vec<PathBuf> = fs::read_dir(&dir)
        .map_err(io_err(&dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    // Names sort by run, shard, then segment: each shard's log in order,
    // older runs first. Different shards of one run never wrote the same
    // object.
    segments.sort();
    let next_run = segments
        .iter()
        .filter_map(|p| run_of(p))
        .max()
        .map_or(0, |r| r + 1);
    let mut partitions: Vec<Option<(fjall::Database, fjall::Keyspace)>> = (0..layout.partitions())
        .map(|p| open.get(p).cloned())
        .collect();
    let mut records = 0;
    let mut batch: Vec<ReplayedWrite> = Vec::new();
    for path in &segments {
        let bytes = fs::read(path).map_err(io_err(path))?;
        let mut failure = None;
        records += replay_segment(&bytes, |w| {
            if failure.is_some() {
                return;
            }
            batch.push((w.partition, w.key.to_vec(), w.value.map(<[u8]>::to_vec)));
            if batch.len() >= REPLAY_BATCH_WRITES {
                failure = apply_replayed(layout, &mut partitions, &mut batch).err();
            }
        })
        .map_err(|corrupt| Error::CorruptLog {
            path: path.clone(),
            reason: corrupt.to_string(),
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
    }
    apply_replayed(layout, &mut partitions, &mut batch)?;
    let databases = partitions.into_iter().flatten().map(|(db, _)| db).collect();
    Ok(Recovered {
        records,
        next_run,
        checkpoint: Checkpoint {
            databases,
            segments,
            dir,
        },
    })
}

/// A write read back from the log: partition, key, value (`None`: delete).
type ReplayedWrite = (u32, Vec<u8>, Option<Vec<u8>>);
/// The partitions opened during recovery, by number.
type Partitions = [Option<(fjall::Database, fjall::Keyspace)>];

/// Writes replayed in one fjall batch per partition.
const REPLAY_BATCH_WRITES: usize = 16 * 1024;

/// Applies replayed writes, in order, as one batch per partition.
fn apply_replayed(
    layout: &Layout,
    partitions: &mut Partitions,
    writes: &mut Vec<ReplayedWrite>,
) -> Result<(), Error> {
    let mut touched: Vec<u32> = writes.iter().map(|w| w.0).collect();
    touched.sort_unstable();
    touched.dedup();
    for partition in touched {
        let (db, ks) = partition_handle(layout, partitions, partition)?;
        let mut batch = db.batch();
        for (_, key, value) in writes.iter().filter(|w| w.0 == partition) {
            match value {
                Some(v) => batch.insert(ks, key.as_slice(), v.as_slice()),
                None => batch.remove(ks, key.as_slice()),
            }
        }
        batch.commit()?;
    }
    writes.clear();
    Ok(())
}

fn partition_handle<'a>(
    layout: &Layout,
    partitions: &'a mut Partitions,
    partition: u32,
) -> Result<&'a (fjall::Database, fjall::Keyspace), Error> {
    let slot = partitions
        .get_mut(partition as usize)
        .ok_or_else(|| Error::Layout {
            path: layout.root().to_path_buf(),
            reason: format!("the write-ahead log names partition {partition}, beyond the layout"),
        })?;
    if slot.is_none() {
        let db = crate::store::open_partition(layout, partition, 1, 8 << 20)?;
        let ks = db.keyspace(
            crate::store::KEYSPACE,
            fjall::KeyspaceCreateOptions::default,
        )?;
        *slot = Some((db, ks));
    }
    Ok(slot.as_ref().expect("filled above"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn write(partition: u32, key: &[u8], value: Option<&[u8]>) -> GroupWrite {
        GroupWrite {
            partition,
            key: Arc::from(key),
            value: value.map(Arc::from),
        }
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_ends_the_log() {
        let mut buf = Vec::new();
        encode_group(
            &mut buf,
            1,
            &[write(0, b"a", Some(b"1")), write(3, b"b", None)],
        );
        encode_group(&mut buf, 2, &[write(1, b"c", Some(b""))]);
        let full = buf.len();
        encode_group(&mut buf, 3, &[write(1, b"d", Some(b"torn"))]);
        buf.truncate(buf.len() - 2);
        buf.extend_from_slice(&[0u8; 64]);
        let mut seen = Vec::new();
        let records = replay_segment(&buf, |w| {
            seen.push((
                w.seq,
                w.partition,
                w.key.to_vec(),
                w.value.map(<[u8]>::to_vec),
            ));
        })
        .expect("nothing corrupt");
        assert_eq!(records, 2);
        assert_eq!(
            seen,
            vec![
                (1, 0, b"a".to_vec(), Some(b"1".to_vec())),
                (1, 3, b"b".to_vec(), None),
                (2, 1, b"c".to_vec(), Some(Vec::new())),
            ]
        );
        assert!(full < buf.len());
    }

    #[test]
    fn a_flipped_bit_ends_the_log() {
        let mut buf = Vec::new();
        encode_group(&mut buf, 1, &[write(0, b"a", Some(b"1"))]);
        let last = buf.len() - 1;
        buf[last] ^= 1;
        assert_eq!(
            replay_segment(&buf, |_| panic!("nothing intact to apply")),
            Ok(0)
        );
    }

    /// Appends a record with a valid checksum around `body`.
    fn sealed(buf: &mut Vec<u8>, body: &[u8]) {
        buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
        buf.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        buf.extend_from_slice(body);
    }

    #[test]
    fn a_checksummed_record_that_does_not_parse_is_corrupt_and_applies_nothing() {
        let mut good = Vec::new();
        encode_group(&mut good, 1, &[write(0, b"a", Some(b"1"))]);
        // Two entries announced, one present: the first must not be applied.
        let mut body = Vec::new();
        body.extend_from_slice(&2u64.to_le_bytes());
        body.extend_from_slice(&2u32.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(b"bv");
        let mut buf = good.clone();
        sealed(&mut buf, &body);
        let mut applied = Vec::new();
        let result = replay_segment(&buf, |w| applied.push(w.key.to_vec()));
        assert_eq!(
            result,
            Err(Corrupt {
                offset: good.len(),
                what: "an entry header runs past the record"
            })
        );
        assert_eq!(applied, vec![b"a".to_vec()], "only the intact record");
        // Trailing bytes after the last entry.
        let mut body = Vec::new();
        body.extend_from_slice(&3u64.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.push(7);
        let mut buf = Vec::new();
        sealed(&mut buf, &body);
        assert!(replay_segment(&buf, |_| {}).is_err());
    }
}
