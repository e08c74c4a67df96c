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
        store.on_wal_write(write.seq, written)?;
        let sync_result = match fault {
            Fault::ShortWrite => -libc::ECANCELED,
            Fault::FailedSync => -libc::EIO,
            // SAFETY: fdatasync on the store's open log descriptor.
            _ => unsafe { libc::fdatasync(write.fd) },
        };
        fault = Fault::None;
        match store.on_wal_sync(write.seq, sync_result)? {
            WalProgress::Durable => return Ok(true),
            WalProgress::Resubmit(rest) => write = rest,
            WalProgress::AwaitingEarlier => unreachable!("one group at a time"),
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

/// Writes `len` bytes of `write` and reports it, as a ring's write
/// completion would.
fn complete_write(store: &mut ShardStore, write: &WalWrite, len: u32) {
    let written = pwrite(write, len);
    assert_eq!(written, len as i32, "pwrite to the log");
    store.on_wal_write(write.seq, written).expect("write");
}

fn complete_sync(store: &mut ShardStore, write: &WalWrite) -> WalProgress {
    // SAFETY: fdatasync on the store's open log descriptor.
    let synced = unsafe { libc::fdatasync(write.fd) };
    store.on_wal_sync(write.seq, synced).expect("sync")
}

#[test]
fn a_later_group_synced_first_waits_for_the_earlier_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::open_or_create(dir.path(), 1).expect("layout");
    let mut store = open(&layout, 0, 1);
    store.put(&owner(1), b"a", b"first");
    let first = store.flush().expect("a group starts");
    store.put(&owner(1), b"b", b"second");
    let second = store.flush().expect("a second group starts beside it");
    assert_eq!((first.seq, second.seq), (1, 2));
    store.put(&owner(1), b"c", b"third");
    assert!(store.flush().is_none(), "two groups at most by default");
    assert_eq!(store.seq_in_flight(2), 2);

    // The second group is written and synced first: nothing is durable yet.
    complete_write(&mut store, &second, second.len);
    assert!(matches!(
        complete_sync(&mut store, &second),
        WalProgress::AwaitingEarlier
    ));
    assert_eq!(store.durable_seq(), 0);
    // The first comes up short, is resubmitted, then syncs: both are
    // durable at once.
    complete_write(&mut store, &first, first.len / 2);
    let rest = match store
        .on_wal_sync(first.seq, -libc::ECANCELED)
        .expect("a cancelled sync")
    {
        WalProgress::Resubmit(rest) => rest,
        other => panic!("expected a resubmission, got {other:?}"),
    };
    assert_eq!(rest.seq, 1);
    assert_eq!(rest.offset, first.offset + u64::from(first.len / 2));
    complete_write(&mut store, &rest, rest.len);
    assert!(matches!(
        complete_sync(&mut store, &rest),
        WalProgress::Durable
    ));
    assert_eq!(store.durable_seq(), 2);
    // The third group goes out now.
    assert!(drive(&mut store, Fault::None).expect("drive"));
    assert_eq!(store.durable_seq(), 3);
    drop(store);
    let store = open(&layout, 0, 1);
    for (key, value) in [
        (b"a", b"first".as_slice()),
        (b"b", b"second"),
        (b"c", b"third"),
    ] {
        assert_eq!(
            store.get_vec(&owner(1), key).expect("get"),
            Some(value.to_vec())
        );
    }
}

#[test]
fn a_crash_with_the_earlier_group_torn_loses_only_unacknowledged_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::open_or_create(dir.path(), 1).expect("layout");
    let mut store = open(&layout, 0, 1);
    store.put(&owner(1), b"kept", b"acknowledged");
    assert!(drive(&mut store, Fault::None).expect("drive"));
    store.put(&owner(1), b"torn", b"never acknowledged");
    let torn = store.flush().expect("a group starts");
    store.put(
        &owner(1),
        b"after",
        b"written and synced, never acknowledged",
    );
    let after = store.flush().expect("a second group starts beside it");
    // The later record reaches the disk whole; the earlier one only in
    // part, and then the process dies.
    complete_write(&mut store, &after, after.len);
    assert!(matches!(
        complete_sync(&mut store, &after),
        WalProgress::AwaitingEarlier
    ));
    assert_eq!(pwrite(&torn, torn.len / 2), (torn.len / 2) as i32);
    assert_eq!(store.durable_seq(), 1);
    drop(store);
    // The log ends at the torn record: the group after it, never
    // acknowledged, is not replayed either.
    let store = open(&layout, 0, 1);
    assert_eq!(
        store.get_vec(&owner(1), b"kept").expect("get"),
        Some(b"acknowledged".to_vec())
    );
    assert_eq!(store.get_vec(&owner(1), b"torn").expect("get"), None);
    assert_eq!(store.get_vec(&owner(1), b"after").expect("get"), None);
}

/// Groups kept two in flight across many small segments, their
/// completions arriving in a shuffled order: every acknowledged write is
/// there after a restart, and a full segment waits for its groups before
/// the log moves on.
#[test]
fn pipelined_groups_cross_segments_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::open_or_create(dir.path(), 1).expect("layout");
    let mut store = open(&layout, 0, 1);
    let mut expected = std::collections::BTreeMap::new();
    let mut in_flight: Vec<WalWrite> = Vec::new();
    let mut acknowledged = 0;
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..400u32 {
        let key = format!("k{}", round % 29);
        let value = vec![(round % 251) as u8; 60 + (round as usize % 90)];
        let seq = store.put(&owner(2), &self::key(owner(2), &key), &value);
        store.release();
        expected.insert(key, (seq, value));
        if let Some(write) = store.flush() {
            in_flight.push(write);
        }
        // Complete one of the groups in flight, chosen at random.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if !in_flight.is_empty() && !x.is_multiple_of(3) {
            let write = in_flight.swap_remove(x as usize % in_flight.len());
            complete_write(&mut store, &write, write.len);
            match complete_sync(&mut store, &write) {
                WalProgress::Durable => {
                    assert!(store.durable_seq() > acknowledged);
                    acknowledged = store.durable_seq();
                }
                WalProgress::AwaitingEarlier => assert!(store.durable_seq() < write.seq),
                WalProgress::Resubmit(_) => panic!("the write was whole"),
            }
        }
        store.poll_applier().expect("applier");
    }
    while let Some(write) = in_flight.pop() {
        complete_write(&mut store, &write, write.len);
        complete_sync(&mut store, &write);
    }
    while drive(&mut store, Fault::None).expect("drive") {}
    assert_eq!(store.durable_seq(), store.open_seq() - 1);
    assert!(store.stats().groups_committed_total > 20);
    drop(store);
    assert!(segments(&layout) <= 3, "sealed segments are deleted");
    let store = open(&layout, 0, 1);
    for (key, (_, value)) in &expected {
        assert_eq!(
            store
                .get_vec(&owner(2), &self::key(owner(2), key))
                .expect("get")
                .as_ref(),
            Some(value),
            "{key}"
        );
    }
}

#[test]
fn an_idle_store_flushes_its_memtables_and_keeps_its_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::open_or_create(dir.path(), 1).expect("layout");
    wal::recover(&layout).expect("recover");
    let options = StoreOptions {
        idle_flush_ms: Some(50),
        ..StoreOptions::default()
    };
    let mut store = ShardStore::open(&layout, 0, 1, options, Box::new(|| {})).expect("open store");
    for i in 0..100u32 {
        store.put(&owner(i), &key(owner(i), "v"), &[7u8; 64]);
    }
    assert!(drive(&mut store, Fault::None).expect("drive"));
    let flushed = (0..500).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        store.poll_applier().expect("applier");
        store.is_settled() && store.memory().memtable_bytes == 0
    });
    assert!(flushed, "memtables still hold {:?}", store.memory());
    for i in 0..100u32 {
        let value = store.get_vec(&owner(i), &key(owner(i), "v")).expect("get");
        assert_eq!(value.as_deref(), Some(&[7u8; 64][..]));
    }
}
