//! A shard's storage: reads, and group-committed writes through the
//! write-ahead log, on a store in a temporary directory under the target
//! folder (the real disk, not a tmpfs).
//!
//! - `get/overlay`: `ShardStore::get` of a key written this turn, still in
//!   the overlay (the read-your-writes path).
//! - `get/fjall_memtable` and `get/fjall_table`: `get` of a key the applier
//!   has already moved into fjall: still in fjall's memtable, or in a disk
//!   table after a memtable flush (served from fjall's block cache once
//!   warm). Keys are drawn at random from 10,000 of each kind.
//! - `commit/<n>`: `n` puts, then one `flush` whose `WalWrite` is written
//!   with `pwrite` and `fdatasync`ed, as the shard's ring would, then the
//!   completions reported and the applier polled. The time is per group;
//!   criterion's throughput line gives it per write.
//!
//! Values are 64 bytes; keys are object data keys (`durin::keys`) of
//! 10,000 objects of class `kv`.
//!
//! `cargo bench -p bench --bench storage`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use durin::keys;
use durin::ObjectId;
use durin_storage::{wal, Layout, OpenPartitions, ShardStore, StoreOptions, WalProgress, WalWrite};

const OBJECTS: usize = 10_000;
const VALUE: [u8; 64] = [0x5a; 64];
/// Keys drawn, cycled through; a power of two.
const DRAWS: usize = 1 << 16;
/// Writes in one group while the stores are filled.
const FILL_GROUP_WRITES: usize = 256;

/// One object's owner ID and the data key of its user key `name`.
struct Entry {
    owner: [u8; 16],
    key: Vec<u8>,
}

fn entries(object_prefix: &str) -> Vec<Entry> {
    (0..OBJECTS)
        .map(|i| {
            let id = ObjectId::from_name("kv", format!("{object_prefix}-{i}").as_bytes());
            let mut key = Vec::new();
            keys::data_key(&mut key, &id, b"value");
            Entry { owner: id.0, key }
        })
        .collect()
}

/// `DRAWS` indices in `0..OBJECTS`, from a seeded xorshift.
fn draws() -> Vec<usize> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..DRAWS)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % OBJECTS as u64) as usize
        })
        .collect()
}

fn pwrite(write: &WalWrite) -> i32 {
    // SAFETY: the store keeps `ptr..ptr + len` alive and unchanged until
    // the sync is reported.
    unsafe {
        libc::pwrite(
            write.fd,
            write.ptr.cast(),
            write.len as usize,
            write.offset as i64,
        ) as i32
    }
}

/// Makes the open group durable the way the shard's ring does (a write
/// linked with an `fdatasync`), waiting for the applier first if it is too
/// far behind for `flush` to start a group.
fn commit(store: &mut ShardStore) {
    let mut write = loop {
        if let Some(write) = store.flush() {
            break write;
        }
        assert!(store.has_pending(), "commit is called after puts");
        store.poll_applier().expect("the applier is alive");
        std::thread::yield_now();
    };
    let seq = store.open_seq() - 1;
    loop {
        let written = pwrite(&write);
        assert!(written >= 0, "pwrite to the log: {}", -written);
        store.on_wal_write(write.seq, written).expect("a log write");
        // SAFETY: fdatasync on the store's open log descriptor.
        let synced = unsafe { libc::fdatasync(write.fd) };
        match store.on_wal_sync(write.seq, synced).expect("a log sync") {
            WalProgress::Durable => break,
            WalProgress::Resubmit(rest) => write = rest,
            WalProgress::AwaitingEarlier => unreachable!("one group at a time"),
        }
    }
    assert_eq!(store.durable_seq(), seq, "the group is durable");
    store.poll_applier().expect("the applier is alive");
}

/// Waits until every write is durable and in fjall.
fn settle(store: &mut ShardStore) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !store.is_settled() {
        assert!(Instant::now() < deadline, "the applier settles in a minute");
        store.poll_applier().expect("the applier is alive");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn fill(store: &mut ShardStore, entries: &[Entry]) {
    for chunk in entries.chunks(FILL_GROUP_WRITES) {
        for entry in chunk {
            store.put(&entry.owner, &entry.key, &VALUE);
        }
        commit(store);
    }
    settle(store);
}

/// A fresh one-partition data directory, opened as the server does, with
/// its store for shard 0 of 1.
fn open_store(root: &std::path::Path) -> (OpenPartitions, ShardStore) {
    let layout = Layout::open_or_create(root, 1).expect("a data directory");
    let options = StoreOptions::default();
    let partitions = OpenPartitions::open_all(&layout, &options).expect("open partitions");
    let recovered = wal::recover_into(&layout, &partitions).expect("recover");
    recovered.checkpoint.finish().expect("checkpoint");
    let options = StoreOptions {
        wal_run: recovered.next_run,
        ..options
    };
    let store = ShardStore::open_with(&layout, 0, 1, options, Box::new(|| {}), &partitions)
        .expect("open the store");
    (partitions, store)
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("durin-storage-bench-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a temporary directory under the target folder")
}

fn bench_get(c: &mut Criterion, name: &str, store: &ShardStore, entries: &[Entry]) {
    let draws = draws();
    let mut index = 0usize;
    c.bench_function(name, |b| {
        b.iter(|| {
            index = (index + 1) & (DRAWS - 1);
            let entry = &entries[draws[index]];
            let value = store
                .get(black_box(&entry.owner), black_box(&entry.key))
                .expect("a read")
                .expect("the key was written");
            value.len()
        })
    });
}

fn reads(c: &mut Criterion) {
    let dir = temp_dir();
    let (partitions, mut store) = open_store(dir.path());
    let in_table = entries("table");
    fill(&mut store, &in_table);
    let (_, keyspace) = partitions.get(0).expect("partition 0 is open");
    keyspace
        .rotate_memtable_and_wait()
        .expect("flush the memtable to a table");
    assert!(keyspace.table_count() > 0, "the first keys are in a table");
    let in_memtable = entries("memtable");
    fill(&mut store, &in_memtable);
    let in_overlay = entries("overlay");
    for entry in &in_overlay {
        store.put(&entry.owner, &entry.key, &VALUE);
    }

    bench_get(c, "get/overlay", &store, &in_overlay);
    bench_get(c, "get/fjall_memtable", &store, &in_memtable);
    bench_get(c, "get/fjall_table", &store, &in_table);
}

fn commits(c: &mut Criterion) {
    let dir = temp_dir();
    let (_partitions, mut store) = open_store(dir.path());
    let entries = entries("commit");
    let mut next = 0usize;
    let mut group = c.benchmark_group("commit");
    // An fdatasync takes milliseconds on some disks: few, long samples.
    group.sample_size(10);
    for writes in [1u64, 16, 256] {
        group.throughput(Throughput::Elements(writes));
        group.bench_with_input(BenchmarkId::from_parameter(writes), &writes, |b, &n| {
            b.iter(|| {
                for _ in 0..n {
                    let entry = &entries[next];
                    next = (next + 1) % OBJECTS;
                    store.put(&entry.owner, &entry.key, black_box(&VALUE));
                }
                commit(&mut store);
            })
        });
    }
    group.finish();
    settle(&mut store);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = reads, commits
}
criterion_main!(benches);
