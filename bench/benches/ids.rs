//! Object IDs and routing: what every request to a named object pays before
//! it reaches a shard.
//!
//! - `from_name/<bytes>`: `ObjectId::from_name("ratelimit", name)` for
//!   names of 7 and 25 bytes: the two SipHash-2-4 passes that turn a class
//!   and a short name into an ID.
//! - `partition_of`: the storage partition of an ID already computed.
//! - `shard_of`: the owner shard of an ID already computed
//!   (`durin_proto::shard_of`, partition then shard).
//! - `route`: both, as the shard does for `GET /ratelimit/key-123`.
//!
//! `cargo bench -p bench --bench ids`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use durin_proto::{partition_of, shard_of, ObjectId};

/// The class of durin's seed rate limiter, whose route the HTTP bench parses.
const CLASS: &str = "ratelimit";
/// A data directory of 64 partitions served by 16 shards.
const PARTITIONS: u32 = 64;
const SHARDS: u32 = 16;

fn ids(c: &mut Criterion) {
    let mut group = c.benchmark_group("ids");
    group.throughput(Throughput::Elements(1));
    for name in ["key-123", "user-8f14e45fceea167a5a36"] {
        group.bench_with_input(
            BenchmarkId::new("from_name", name.len()),
            name.as_bytes(),
            |b, name| b.iter(|| ObjectId::from_name(black_box(CLASS), black_box(name))),
        );
    }

    let id = ObjectId::from_name(CLASS, b"key-123");
    group.bench_function("partition_of", |b| {
        b.iter(|| partition_of(black_box(&id), black_box(PARTITIONS)))
    });
    group.bench_function("shard_of", |b| {
        b.iter(|| shard_of(black_box(&id), black_box(PARTITIONS), black_box(SHARDS)))
    });
    group.bench_function("route", |b| {
        b.iter(|| {
            let id = ObjectId::from_name(black_box(CLASS), black_box(b"key-123"));
            shard_of(&id, black_box(PARTITIONS), black_box(SHARDS))
        })
    });
    group.finish();
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
    targets = ids
}
criterion_main!(benches);
