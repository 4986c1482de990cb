//! The tiering engine (issue 12, section 6), each number beside its baseline in the same
//! run, A and B alternated:
//!
//! - `demote`: a demotion pass moving a blob's hot copies into the local warm tier,
//!   against writing the same number of bytes sequentially to a file in the same
//!   directory and fsyncing it (the disk's sequential write throughput). Target: the
//!   pass at ≥ 50% of the disk.
//! - `idle_pass`: a demotion pass and an archive pass with nothing to do over a store
//!   recording 1,000,000 hot chunk copies (embedded metadata; PostgreSQL too when
//!   `STRATA_TEST_PG_URL` is set). Target: ≤ 50 ms.
//! - `under_demotion`: put throughput and `get_range` p99 while demotion passes run,
//!   against the same with the engine idle. Target: within 80% of idle.
//!
//! `eval "$(bash scripts/pg.sh)"; cargo bench --bench engine`

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use strata::engine::{Engine, WorkerKind};
use strata::model::{BlobCommit, BlobRecord, Location, ManifestEntry};
use strata::store::Components;
use strata::{BlobId, ChunkId, ChunkerParams, Clock, ManualClock, Settings, Store};

const DAY_MS: u64 = 86_400_000;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn engine_settings(dir: &std::path::Path) -> Settings {
    let mut s = common::settings(dir, 0);
    s.policy.hot_min_residency_secs = 0;
    s.tiers.promote = false;
    s
}

async fn open_at(settings: Settings, clock: Arc<ManualClock>) -> Store {
    let c: Arc<dyn Clock> = clock;
    Store::open_with(
        settings,
        Components {
            clock: Some(c),
            ..Components::default()
        },
    )
    .await
    .expect("open")
}

fn demote(c: &mut Criterion) {
    let rt = rt();
    let len = common::size(256 << 20, 4 << 20);
    let mut data = common::random_bytes(len, 7);
    let mut g = c.benchmark_group("demote");
    g.sample_size(10);
    g.throughput(criterion::Throughput::Bytes(len as u64));
    let mut round = 0u64;
    g.bench_function("disk_sequential_write", |b| {
        b.iter_custom(|iters| {
            let tmp = common::tempdir();
            (0..iters)
                .map(|_| common::sequential_write(tmp.path(), &data))
                .sum()
        })
    });
    g.bench_function("demotion_pass_hot_to_local_warm", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                common::refresh(&mut data, round);
                let tmp = common::tempdir();
                let clock = ManualClock::new(DAY_MS);
                total += rt.block_on(async {
                    let store = open_at(engine_settings(tmp.path()), clock.clone()).await;
                    store.put(Bytes::from(data.clone())).await.expect("put");
                    clock.advance(30 * DAY_MS);
                    let engine = Engine::new(store.clone());
                    let t = Instant::now();
                    let report = engine.run_pass(WorkerKind::Demote).await.expect("pass");
                    let took = t.elapsed();
                    assert!(report.bytes_moved >= len as u64, "{report:?}");
                    store.close().await.expect("close");
                    took
                });
            }
            total
        })
    });
    g.finish();
}

/// Record `n` hot chunk copies on the store's node through synthetic blob commits (the
/// bytes are not written: a pass with nothing to do reads metadata only).
async fn record_chunks(store: &Store, n: u64, now_ms: u64) {
    let per_blob = 10_000u64;
    for b in 0..n.div_ceil(per_blob) {
        let count = per_blob.min(n - b * per_blob);
        let mut entries = Vec::with_capacity(count as usize);
        let mut new_locations = Vec::with_capacity(count as usize);
        for i in 0..count {
            let chunk = ChunkId::of(&[b.to_le_bytes(), i.to_le_bytes()].concat());
            entries.push(ManifestEntry {
                offset: i * 1024,
                length: 1024,
                chunk,
            });
            new_locations.push(Location::hot(chunk, store.node_id(), 1024, now_ms));
        }
        let commit = BlobCommit {
            blob: BlobRecord {
                id: BlobId::of(&b.to_le_bytes()),
                size: count * 1024,
                chunk_count: count,
                params: ChunkerParams::default(),
                created_ms: now_ms,
                class: String::new(),
                pin: None,
            },
            entries,
            new_locations,
            node: store.node_id().to_string(),
        };
        store.meta().commit_blob(&commit).await.expect("commit");
    }
}

fn idle_pass(c: &mut Criterion) {
    let rt = rt();
    let n = common::size(1_000_000, 20_000) as u64;
    let mut g = c.benchmark_group("idle_pass");
    g.sample_size(20);
    let tmp = common::tempdir();
    let clock = ManualClock::new(DAY_MS);
    let mut backends = vec![("embedded", engine_settings(&tmp.path().join("embedded")))];
    if let Some(url) = rt.block_on(common::pg_schema_url("engine")) {
        let mut s = common::pg_settings(&tmp.path().join("pg"), 0, &url);
        s.policy.hot_min_residency_secs = 0;
        s.tiers.promote = false;
        backends.push(("postgres", s));
    }
    for (name, settings) in backends {
        let store = rt.block_on(async {
            let store = open_at(settings, clock.clone()).await;
            record_chunks(&store, n, clock.now_ms()).await;
            store
        });
        let engine = Engine::new(store.clone());
        g.bench_function(
            format!("demote_and_archive_nothing_to_do_{name}_{n}_chunks"),
            |b| {
                b.to_async(&rt).iter(|| async {
                    let d = engine.run_pass(WorkerKind::Demote).await.expect("demote");
                    let a = engine.run_pass(WorkerKind::Archive).await.expect("archive");
                    assert_eq!(d.chunks_moved + a.chunks_moved, 0);
                })
            },
        );
        rt.block_on(store.close()).expect("close");
    }
    g.finish();
}

/// Puts of `len` bytes and a batch of `get_range` latencies, while `busy` demotion
/// passes run or not. Returns (put seconds, p99 of the reads).
async fn foreground(store: &Store, read_id: &BlobId, len: usize, seed: u64) -> (f64, Duration) {
    let data = Bytes::from(common::random_bytes(len, seed));
    let t = Instant::now();
    store.put(data).await.expect("put");
    let put = t.elapsed().as_secs_f64();
    let size = store.head(read_id).await.expect("head").size;
    let mut lat = Vec::with_capacity(200);
    for i in 0..200u64 {
        let start = (i * 7_919_993) % (size - 65_536);
        let t = Instant::now();
        store
            .get_range(read_id, start..start + 65_536)
            .await
            .expect("get_range");
        lat.push(t.elapsed());
    }
    lat.sort();
    (put, lat[lat.len() * 99 / 100])
}

fn under_demotion(_c: &mut Criterion) {
    let rt = rt();
    let len = common::size(64 << 20, 2 << 20);
    let rounds = if common::quick() { 1 } else { 5 };
    let mut idle = (Vec::new(), Vec::new());
    let mut busy = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let tmp = common::tempdir();
        let clock = ManualClock::new(DAY_MS);
        rt.block_on(async {
            let store = open_at(engine_settings(tmp.path()), clock.clone()).await;
            // Data for demotion, idle by the time the pass runs; the blob the reads use
            // is written after the clock moved, so it stays hot.
            for i in 0..4 {
                let b = Bytes::from(common::random_bytes(len, 2000 + round * 10 + i));
                store.put(b).await.expect("put");
            }
            clock.advance(30 * DAY_MS);
            let read_id = store
                .put(Bytes::from(common::random_bytes(len, 1000 + round)))
                .await
                .expect("put")
                .id;
            let (p, q) = foreground(&store, &read_id, len, 3000 + round).await;
            idle.0.push(p);
            idle.1.push(q);
            let engine = Engine::new(store.clone());
            let demotion = tokio::spawn(async move {
                let t = Instant::now();
                let r = engine.run_pass(WorkerKind::Demote).await.expect("pass");
                (t.elapsed(), r)
            });
            let (p, q) = foreground(&store, &read_id, len, 4000 + round).await;
            let (took, report) = demotion.await.expect("join");
            busy.0.push(p);
            busy.1.push(q);
            eprintln!(
                "round {round}: demotion moved {} bytes in {took:?}; put {p:.3}s p99 {q:?}",
                report.bytes_moved
            );
            store.close().await.expect("close");
        });
    }
    let median_f = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let median_d = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (ip, bp) = (median_f(&mut idle.0), median_f(&mut busy.0));
    let (iq, bq) = (median_d(&mut idle.1), median_d(&mut busy.1));
    println!(
        "under_demotion: put {len} bytes idle {ip:.3}s, during demotion {bp:.3}s (throughput ratio {:.2}); \
         get_range p99 idle {iq:?}, during demotion {bq:?} (ratio {:.2}); medians of {rounds} rounds",
        ip / bp,
        iq.as_secs_f64() / bq.as_secs_f64()
    );
}

criterion_group!(benches, demote, idle_pass, under_demotion);
criterion_main!(benches);
