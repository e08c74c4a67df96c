//! fjall's own durable commit throughput: the baseline beside durin's
//! durable PUTs in PERF.md.
//!
//! `--writers N` threads each commit batches of `--batch B` puts with
//! `PersistMode::SyncData` (one `fdatasync` per batch) for `--duration`,
//! into one fjall database in `--dir`. Prints puts per second and the
//! latency percentiles of one commit, as one line of JSON.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use fjall::{KeyspaceCreateOptions, PersistMode};
use hdrhistogram::Histogram;

#[derive(Parser)]
#[command(about = "Measures fjall's synced batch-commit throughput")]
struct Args {
    /// Database directory (created; use a disk, not a tmpfs).
    #[arg(long)]
    dir: PathBuf,
    /// Concurrent writer threads.
    #[arg(long, default_value_t = 64)]
    writers: usize,
    /// Puts per committed batch.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 16)]
    value_bytes: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let db = fjall::Database::builder(&args.dir)
        .worker_threads(2)
        .open()?;
    let keyspace = db.keyspace("bench", KeyspaceCreateOptions::default)?;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles: Vec<_> = (0..args.writers)
        .map(|writer| {
            let (db, keyspace, stop) = (db.clone(), keyspace.clone(), Arc::clone(&stop));
            let (batch_len, value) = (args.batch, vec![7u8; args.value_bytes]);
            std::thread::spawn(move || -> Result<(u64, Histogram<u64>), fjall::Error> {
                let mut histogram =
                    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
                let mut puts = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let begun = Instant::now();
                    let mut batch = db.batch().durability(Some(PersistMode::SyncData));
                    for _ in 0..batch_len {
                        let key = format!("w{writer:03}-{puts:012}");
                        batch.insert(&keyspace, key.as_bytes(), value.as_slice());
                        puts += 1;
                    }
                    batch.commit()?;
                    let _ = histogram.record(begun.elapsed().as_micros().max(1) as u64);
                }
                Ok((puts, histogram))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(args.seconds));
    stop.store(true, Ordering::Relaxed);
    let mut total = 0u64;
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    for handle in handles {
        let (puts, h) = handle.join().map_err(|_| "a writer panicked")??;
        total += puts;
        histogram.add(h)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{{\"writers\": {}, \"batch\": {}, \"puts_per_sec\": {:.0}, \"commit_p50_us\": {}, \"commit_p99_us\": {}}}",
        args.writers,
        args.batch,
        total as f64 / elapsed,
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.99)
    );
    Ok(())
}
