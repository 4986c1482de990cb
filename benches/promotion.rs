//! A read of a warm chunk with promotion on, next to the same read with promotion off
//! (issue 12: within 1.1×). Warm is a local directory; the chunk cache is off, so every
//! read goes to the pack. Each timed read is of a chunk not read before (with promotion
//! on, a chunk read once is queued and then hot); when a blob's chunks run out it is
//! moved back to warm outside the timed part.
//!
//! `cargo bench --bench promotion`

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use strata::model::ManifestEntry;
use strata::{BlobId, ChunkerParams, Settings, Store, Tier};
use tokio::sync::Mutex;

const BLOB_BYTES: usize = 16 << 20;

/// One store with its warm blob, and the chunks not yet read since it went warm.
struct Side {
    store: Store,
    id: BlobId,
    entries: Vec<ManifestEntry>,
    next: usize,
    _dir: tempfile::TempDir,
}

impl Side {
    async fn open(promote: bool) -> Side {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Settings {
            data_dir: dir.path().to_path_buf(),
            ..Settings::default()
        };
        s.hot.sync = false;
        s.cache.bytes = 0;
        s.tiers.promote = promote;
        s.chunking = ChunkerParams {
            min: 16 * 1024,
            avg: 64 * 1024,
            max: 256 * 1024,
        };
        let store = Store::open(s).await.expect("open");
        let id = store
            .put(Bytes::from(common::random_bytes(BLOB_BYTES, 7)))
            .await
            .expect("put")
            .id;
        store.move_blob(&id, Tier::Warm).await.expect("move");
        let entries = store
            .meta()
            .manifest_range(&id, 0, BLOB_BYTES as u64)
            .await
            .expect("manifest");
        Side {
            store,
            id,
            entries,
            next: 0,
            _dir: dir,
        }
    }

    /// The next unread chunk's span; when none is left, everything goes back to warm
    /// (untimed) and the walk starts over.
    async fn next_range(&mut self) -> std::ops::Range<u64> {
        if self.next == self.entries.len() {
            self.store.run_promotions().await.expect("drain");
            self.store
                .move_blob(&self.id, Tier::Warm)
                .await
                .expect("back to warm");
            self.next = 0;
        }
        let e = self.entries[self.next];
        self.next += 1;
        e.offset..e.end()
    }

    /// One timed read of a warm chunk.
    async fn read(&mut self) -> Duration {
        let r = self.next_range().await;
        let t = Instant::now();
        let got = self
            .store
            .get_range(&self.id, r.clone())
            .await
            .expect("read");
        let d = t.elapsed();
        assert_eq!(got.len() as u64, r.end - r.start);
        d
    }
}

/// Alternate the two sides read by read and take the median of the per-pair ratios, so
/// a drift of the machine's speed (other processes share the cores) moves both.
async fn paired(on: &mut Side, off: &mut Side) {
    const PAIRS: usize = 400;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut a, mut b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..PAIRS + 20 {
        let x = on.read().await.as_secs_f64() * 1e6;
        let y = off.read().await.as_secs_f64() * 1e6;
        if i >= 20 {
            a.push(x);
            b.push(y);
            ratios.push(x / y);
        }
    }
    println!(
        "warm chunk read paired: promotion on median {:.1} µs, off median {:.1} µs, median ratio {:.3} ({PAIRS} pairs)",
        median(a),
        median(b),
        median(ratios)
    );
}

fn promotion(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let on = Arc::new(Mutex::new(rt.block_on(Side::open(true))));
    let off = Arc::new(Mutex::new(rt.block_on(Side::open(false))));
    let mut group = c.benchmark_group("warm_chunk_read");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(6));
    for (name, side) in [("promotion_on", &on), ("promotion_off", &off)] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let side = side.clone();
                async move {
                    let mut side = side.lock().await;
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += side.read().await;
                    }
                    total
                }
            })
        });
    }
    group.finish();
    rt.block_on(async {
        let (mut a, mut b) = (on.lock().await, off.lock().await);
        paired(&mut a, &mut b).await;
        a.store.close().await.expect("close");
        b.store.close().await.expect("close");
    });
}

criterion_group!(benches, promotion);
criterion_main!(benches);
