//! Ingest throughput: `put` of 1 GiB into the embedded store next to chunking + hashing
//! alone (FastCDC cut points, BLAKE3 of every chunk and of the whole blob, one thread).
//!
//! With `STRATA_TEST_PG_URL` set it also measures `put` with PostgreSQL metadata.
//!
//! `eval "$(bash scripts/pg.sh)"; cargo bench --bench ingest`; with
//! `STRATA_BENCH_DIR=/dev/shm` the stores live in RAM, which measures the pipeline
//! without the disk's write bandwidth.

mod common;

use std::time::Duration;

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion, Throughput,
};
use strata::{ChunkerParams, Store};

fn ingest(c: &mut Criterion) {
    const SIZE_FULL: usize = 1 << 30;
    let size = common::size(SIZE_FULL, 8 << 20);
    let mut data = common::random_bytes(size, 1);
    let params = ChunkerParams::default();
    let mut group = c.benchmark_group("ingest_1GiB");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(40))
        .throughput(Throughput::Bytes(size as u64));

    group.bench_function("chunk_and_hash_only", |b| {
        b.iter(|| chunk_and_hash(&data, &params))
    });

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = common::tempdir();
    let store = rt
        .block_on(Store::open(no_grace(common::settings(
            dir.path(),
            64 << 20,
        ))))
        .expect("open");
    let mut round = 0u64;
    bench_put(
        &mut group,
        "put_embedded",
        &rt,
        &store,
        &mut data,
        &mut round,
        None,
    );
    paired(&rt, &store, &mut data, &params, &mut round);
    rt.block_on(store.close()).expect("close");

    // The same put with metadata in PostgreSQL (hot tier still local RocksDB).
    if let Some(url) = rt.block_on(common::pg_schema_url("ingest")) {
        let dir = common::tempdir();
        let store = rt
            .block_on(Store::open(no_grace(common::pg_settings(
                dir.path(),
                64 << 20,
                &url,
            ))))
            .expect("open");
        bench_put(
            &mut group,
            "put_postgres",
            &rt,
            &store,
            &mut data,
            &mut round,
            Some(&url),
        );
        rt.block_on(store.close()).expect("close");
    }
    group.finish();
}

/// `put` of `data`, made new content (no dedup) before every iteration, outside the
/// timing. `round` runs on across calls so no two measurements put the same bytes.
///
/// Also outside the timing, the previous iteration's blob is deleted and collected, so
/// every put goes into a store of the same size. Without that the store grows by 1 GiB
/// per iteration, and on this VM first-touched memory (page cache or tmpfs) is several
/// times slower to write than reused memory: the bench then measured the host. With
/// PostgreSQL the dead rows are vacuumed too (else autovacuum runs during the next put).
fn bench_put(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    rt: &tokio::runtime::Runtime,
    store: &Store,
    data: &mut [u8],
    round: &mut u64,
    pg_url: Option<&str>,
) {
    let last = std::cell::Cell::new(None);
    group.bench_function(name, |b| {
        b.iter_batched(
            || next_input(rt, store, data, round, last.take(), pg_url),
            |input| {
                let receipt = rt.block_on(store.put(input)).expect("put");
                last.set(Some(receipt.id));
                receipt
            },
            BatchSize::PerIteration,
        )
    });
    if let Some(id) = last.take() {
        rt.block_on(store.delete(&id)).expect("delete");
    }
}

/// The baseline: FastCDC cut points, BLAKE3 of every chunk and of the whole blob.
fn chunk_and_hash(data: &[u8], params: &ChunkerParams) -> (blake3::Hash, [u8; 32]) {
    let blob = blake3::hash(data);
    let mut last = [0u8; 32];
    for (off, len) in strata::chunking::cut_points(data, params) {
        last = *blake3::hash(&data[off..off + len]).as_bytes();
    }
    (blob, last)
}

/// The next put's input, prepared outside the timing: the previous blob (`last`) is
/// deleted and collected, and `data` is made new content.
fn next_input(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    data: &mut [u8],
    round: &mut u64,
    last: Option<strata::BlobId>,
    pg_url: Option<&str>,
) -> Bytes {
    if let Some(id) = last {
        rt.block_on(async {
            store.delete(&id).await.expect("delete");
            store.gc().await.expect("gc");
            if let Some(url) = pg_url {
                common::pg_vacuum(url).await;
            }
        });
    }
    *round += 1;
    common::refresh(data, *round);
    Bytes::copy_from_slice(data)
}

/// Criterion measures the baseline and `put` one after the other, a minute apart, while
/// this VM's speed drifts by tens of percent over minutes. Here the two alternate, and
/// the ratio (put throughput over chunk+hash throughput) is taken per pair.
fn paired(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    data: &mut [u8],
    params: &ChunkerParams,
    round: &mut u64,
) {
    let pairs = if common::quick() { 1 } else { 12 };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut base, mut put, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..pairs {
        let input = next_input(rt, store, data, round, last.take(), None);
        let t = std::time::Instant::now();
        std::hint::black_box(chunk_and_hash(&input, params));
        let b = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let receipt = rt.block_on(store.put(input)).expect("put");
        let p = t.elapsed().as_secs_f64();
        last = Some(receipt.id);
        base.push(b);
        put.push(p);
        ratios.push(b / p);
    }
    if let Some(id) = last {
        rt.block_on(store.delete(&id)).expect("delete");
    }
    println!(
        "ingest paired: chunk+hash median {:.0} ms, put_embedded median {:.0} ms, put at {:.0}% of chunk+hash throughput (median of {pairs} pairs, min {:.0}%, max {:.0}%)",
        median(base) * 1e3,
        median(put) * 1e3,
        median(ratios.clone()) * 100.0,
        ratios.iter().copied().fold(f64::INFINITY, f64::min) * 100.0,
        ratios.iter().copied().fold(0.0, f64::max) * 100.0,
    );
}

/// Deleted chunks are collected at once (the bench deletes each blob it measured).
fn no_grace(mut s: strata::Settings) -> strata::Settings {
    s.gc.grace_secs = 0;
    s
}

criterion_group!(benches, ingest);
criterion_main!(benches);
