//! The physical limit of a durable write on one disk: how long a 4 KiB
//! write plus `fdatasync` takes there, as durin's log does it (a positioned
//! write into a sparse, preallocated-size segment, then `fdatasync`).
//!
//! ```text
//! cargo run --release -p bench --bin sync_probe -- --dir /path/on/the/disk
//! sync_probe dir=/path count=2000 bytes=4096 p50_us=180 p90_us=220 p99_us=410 max_us=2100 syncs_per_s=5400
//! ```
//!
//! Every durable figure in PERF.md is read against this: a closed loop of
//! C connections can at best reach about C / (the server's own latency +
//! one sync) durable requests per second when each waits for one sync.
//! `bench/compare.sh` runs it on its data directory before the systems.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use hdrhistogram::Histogram;

/// The segment size durin's log creates (sparse).
const SEGMENT_BYTES: u64 = 64 << 20;

#[derive(Parser)]
#[command(about = "write + fdatasync latency of a disk, as durin's log sees it")]
struct Args {
    /// A directory on the disk to measure (a file is created and removed).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Writes (each followed by fdatasync).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    count: u64,
    /// Bytes per write.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=(1 << 20)))]
    bytes: u64,
    /// One JSON object instead of the text line.
    #[arg(long)]
    json: bool,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let path = args
        .dir
        .join(format!("sync-probe-{}.tmp", std::process::id()));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    // Removed whatever happens next; the probe leaves nothing behind.
    let _cleanup = RemoveOnDrop(path.clone());
    file.set_len(SEGMENT_BYTES)?;
    file.sync_all()?;
    let block = vec![0xa5u8; args.bytes as usize];
    let mut latency_us =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
    let started = Instant::now();
    let mut offset = 0u64;
    for _ in 0..args.count {
        if offset + args.bytes > SEGMENT_BYTES {
            offset = 0;
        }
        let t = Instant::now();
        file.write_all_at(&block, offset)?;
        file.sync_data()?;
        let us = (t.elapsed().as_micros() as u64).max(1);
        latency_us.saturating_record(us);
        offset += args.bytes;
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    let q = |p: f64| latency_us.value_at_quantile(p);
    let per_s = args.count as f64 / elapsed_s;
    if args.json {
        println!(
            "{{\"dir\": {:?}, \"count\": {}, \"bytes\": {}, \"p50_us\": {}, \"p90_us\": {}, \"p99_us\": {}, \"max_us\": {}, \"syncs_per_s\": {:.0}}}",
            args.dir.display().to_string(),
            args.count,
            args.bytes,
            q(0.5),
            q(0.9),
            q(0.99),
            latency_us.max(),
            per_s
        );
    } else {
        println!(
            "sync_probe dir={} count={} bytes={} p50_us={} p90_us={} p99_us={} max_us={} syncs_per_s={:.0}",
            args.dir.display(),
            args.count,
            args.bytes,
            q(0.5),
            q(0.9),
            q(0.99),
            latency_us.max(),
            per_s
        );
    }
    Ok(())
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
