//! The store's write-ahead log under a deterministic, synchronous driver:
//! the test plays the shard's ring (pwrite, fdatasync) and injects faults.

use durin_storage::{wal, Layout, ShardStore, StoreOptions, WalProgress, WalWrite};

/// What the driver does to the next log write.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// Only half the record reaches the file; the linked sync is cancelled.
    ShortWrite,
    /// The sync fails with EIO.
    FailedSync,
    /// Half the record reaches the file, then the process "dies": nothing
    /// more is reported.
    CrashMidWrite,
}

fn pwrite(write: &WalWrite, len: u32) -> i32 {
    // SAFETY: the store guarantees `ptr..ptr+len` is its live log buffer
    // until the sync is reported.
    unsafe {
        libc::pwrite(
            write.fd,
            write.ptr.cast(),
            len as usize,
            write.offset as i64,
        ) as i32
    }
}

/// Makes the open group durable the way a shard's ring would. Returns
/// whether it became durable.
fn drive(store: &mut ShardStore, fault: Fault) -> Result<bool, durin_storage::Error> {
    let Some(mut write) = store.flush() else {
        return Ok(false);
    };
    let mut fault = fault;
    loop {
        let len = if matches!(fault, Fault::ShortWrite | Fault::CrashMidWrite) {
            write.len / 2
        } else {
            write.len
        };
        let written = pwrite(&write, len);
        assert_eq!(written, len as i32, "pwrite to the log");
        if fault == Fault::CrashMidWrite {
            return Ok(false);
        }
        store.on_wal_write(written)?;
        let sync_result = match fault {
            Fault::ShortWrite => -libc::ECANCELED,
            Fault::FailedSync => -libc::EIO,
            // SAFETY: fdatasync on the store's open log descriptor.
            _ => unsafe { libc::fdatasync(write.fd) },
        };
        fault = Fault::None;
        match store.on_wal_sync(sync_result)? {
            WalProgress::Durable => return Ok(true),
            WalProgress::Resubmit(rest) => write = rest,
        }
    }
}

fn open(layout: &Layout, shard: u32, shards: u32) -> ShardStore {
    wal::recover(layout).expect("recover");
    let options = StoreOptions {
        wal_segment_bytes: 4096,
        ..StoreOptions::default()
    };
    ShardStore::open(layout, shard, shards, options, Box::new(|| {})).expect("open store")
}

fn owner(i: u32) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&i.to_le_bytes());
    id
}

/// Keys are owner-prefixed, as the engine lays them out.
fn key(owner: [u8; 16], name: &str) -> Vec<u8> {
    [&owner[..], name.as_bytes()].concat()
}

fn segments(layout: &Layout) -> usize {
    std::fs::read_dir(layout.root().join(wal::WAL_DIR))
        .expect("wal dir")
        .count()
}

#[test]
fn acknowledged_writes_survive_across_segments_and_a_different_shard_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::open_or_create(dir.path(), 1).expect("layout");
    let mut store = open(&layout, 0, 1);
    let mut expected = std::collections::BTreeMap::new();
    for round in 0..300u32 {
        let key = format!("k{}", round % 37);
        let value = vec![(round % 251) as u8; 100 + (round as usize % 50)];
        let seq = store.put(
            &owner(round % 5),
            &self::key(owner(round % 5), &key),
            &value,
        );
        if round % 11 == 0 {
            store.delete(&owner(round % 5), &self::key(owner(round % 5), "k0"));
            expected.insert((round % 5, "k0".to_string()), None);
        }
        expected.insert((round % 5, key), Some(value));
        assert!(drive(&mut store, Fault::None).expect("drive"));
        assert_eq!(store.durable_seq(), seq);
        store.poll_applier().expect("applier");
    }
    // 300 records of over 100 bytes each span many 4 KiB segments; sealed
    // ones are deleted after a checkpoint.
    drop(store);
    assert!(
        segments(&layout) <= 3,
        "sealed segments are deleted, found {}",
        segments(&layout)
    );
    for shards in [1u32, 3] {
        let mut stores: Vec<ShardStore> = (0..shards).map(|s| open(&layout, s, shards)).collect();
        for ((o, key), value) in &expected {
            let id = owner(*o);
            let store = stores
                .iter_mut()
                .find(|s| s.owns(&id))
                .expect("some shard owns every object");
            assert_eq!(
                store
                    .get_vec(&id, &self::key(id, key))
                    .expect("get")
                    .as_ref(),
                value.as_ref(),
                "{o}/{key}"
            );
        }
    }
}

#[test]
fn a_short_write_is_resubmitted_before_the_group_is_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::open_or_create(dir.path(), 1).expect("layout");
    let mut store = open(&layout, 0, 1);
    let seq = store.put(&owner(1), b"a", b"whole");
    assert!(drive(&mut store, Fault::ShortWrite).expect("drive"));
    assert_eq!(store.durable_seq(), seq);
    drop(store);
    let store = open(&layout, 0, 1);
    assert_eq!(
        store.get_vec(&owner(1), b"a").expect("get"),
        Some(b"whole".to_vec())
    );
}

#[test]
fn a_failed_sync_acknowledges_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::open_or_create(dir.path(), 1).expect("layout");
    let mut store = open(&layout, 0, 1);
    store.put(&owner(1), b"a", b"1");
    assert!(drive(&mut store, Fault::FailedSync).is_err());
    assert_eq!(store.durable_seq(), 0);
}

#[test]
fn a_record_torn_by_a_crash_is_not_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::open_or_create(dir.path(), 1).expect("layout");
    let mut store = open(&layout, 0, 1);
    store.put(&owner(1), b"kept", b"yes");
    assert!(drive(&mut store, Fault::None).expect("drive"));
    store.put(&owner(1), b"torn", b"never acknowledged");
    assert!(!drive(&mut store, Fault::CrashMidWrite).expect("drive"));
    assert_eq!(store.durable_seq(), 1);
    drop(store);
    let store = open(&layout, 0, 1);
    assert_eq!(
        store.get_vec(&owner(1), b"kept").expect("get"),
        Some(b"yes".to_vec())
    );
    assert_eq!(store.get_vec(&owner(1), b"torn").expect("get"), None);
}

#[test]
fn an_unfinished_recovery_checkpoint_replays_older_runs_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::open_or_create(dir.path(), 1).expect("layout");
    let mut store = open(&layout, 0, 1);
    let k = key(owner(1), "k");
    store.put(&owner(1), &k, b"run 0");
    store.release();
    assert!(drive(&mut store, Fault::None).expect("drive"));
    drop(store);
    // A start that replays, but dies before its checkpoint finishes: the
    // run-0 segment stays, and the new run writes after it.
    let partitions =
        durin_storage::OpenPartitions::open_all(&layout, &StoreOptions::default()).expect("open");
    let recovered = wal::recover_into(&layout, &partitions).expect("replay");
    assert_eq!(recovered.next_run, 1);
    let options = StoreOptions {
        wal_segment_bytes: 4096,
        wal_run: recovered.next_run,
        ..StoreOptions::default()
    };
    let mut store =
        ShardStore::open_with(&layout, 0, 1, options, Box::new(|| {}), &partitions).expect("open");
    store.put(&owner(1), &k, b"run 1");
    store.release();
    assert!(drive(&mut store, Fault::None).expect("drive"));
    drop(store);
    drop(recovered);
    drop(partitions);
    // The next start replays run 0, then run 1: the newer value wins.
    let mut store = open(&layout, 0, 1);
    assert_eq!(
        store.get_vec(&owner(1), &k).expect("get"),
        Some(b"run 1".to_vec())
    );
    store.release();
}
