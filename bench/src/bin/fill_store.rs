//! Fills a durin data directory with many keys quickly, through durin's own
//! storage layer and key layout, for the recovery-time measurement in
//! PERF.md: `fill_store --data-dir D --keys 10000000 --objects 100000
//! --shards 2`, then time `durin serve --data-dir D` to its first answer.
//!
//! Keys go into `kv` objects named `o<N>`, as `PUT /kv/o<N>/keys/k<M>`
//! would store them (the objects' size records are not written, so their
//! first write recounts nothing; the data is what recovery has to open).
//! The process exits without a final checkpoint, as a crash would: the
//! open log segment is replayed at the next start.

use std::path::PathBuf;

use clap::Parser;
use durin::{keys, ObjectId};
use durin_storage::{wal, Layout, ShardStore, StoreOptions, WalProgress};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long, default_value_t = 10_000_000)]
    keys: u64,
    #[arg(long, default_value_t = 100_000)]
    objects: u64,
    /// Shards (and partitions of a new directory).
    #[arg(long, default_value_t = 2)]
    shards: u32,
    /// Writes per group.
    #[arg(long, default_value_t = 10_000)]
    group: usize,
}

/// Makes the open group durable the way the shard's ring would.
fn drive(store: &mut ShardStore) -> Result<(), durin_storage::Error> {
    while let Some(mut write) = store.flush() {
        loop {
            // SAFETY: the store keeps the buffer alive until the sync is reported.
            let n = unsafe {
                libc::pwrite(
                    write.fd,
                    write.ptr.cast(),
                    write.len as usize,
                    write.offset as i64,
                )
            };
            store.on_wal_write(write.seq, n as i32)?;
            // SAFETY: fdatasync on the store's own log descriptor.
            let synced = unsafe { libc::fdatasync(write.fd) };
            match store.on_wal_sync(write.seq, if synced == 0 { 0 } else { -libc::EIO })? {
                WalProgress::Durable => break,
                WalProgress::Resubmit(rest) => write = rest,
                WalProgress::AwaitingEarlier => unreachable!("one group at a time"),
            }
        }
        store.poll_applier()?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let layout = Layout::open_or_create(&args.data_dir, args.shards)?;
    wal::recover(&layout)?;
    let mut stores: Vec<ShardStore> = (0..args.shards)
        .map(|s| {
            ShardStore::open(
                &layout,
                s,
                args.shards,
                StoreOptions::default(),
                Box::new(|| {}),
            )
        })
        .collect::<Result<_, _>>()?;
    let started = std::time::Instant::now();
    let value = [b'v'; 32];
    let mut key = Vec::new();
    let mut pending = vec![0usize; stores.len()];
    for n in 0..args.keys {
        let object = n % args.objects;
        let id = ObjectId::from_name("kv", format!("o{object}").as_bytes());
        let shard = layout.shard_of(&id.0, args.shards) as usize;
        keys::data_key(&mut key, &id, format!("k{n}").as_bytes());
        stores[shard].put(&id.0, &key, &value);
        stores[shard].release();
        pending[shard] += 1;
        if pending[shard] >= args.group {
            drive(&mut stores[shard])?;
            pending[shard] = 0;
        }
        if n % 1_000_000 == 0 && n > 0 {
            eprintln!("{n} keys in {:.1} s", started.elapsed().as_secs_f64());
        }
    }
    for store in &mut stores {
        drive(store)?;
    }
    eprintln!(
        "{} keys in {:.1} s",
        args.keys,
        started.elapsed().as_secs_f64()
    );
    // Wait for the appliers, then leave without a checkpoint.
    for store in &mut stores {
        while !store.is_settled() {
            store.poll_applier()?;
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    std::process::exit(0);
}
