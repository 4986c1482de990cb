//! Hot-tier read latency on the embedded store: `get` of a 64 KiB blob with the cache
//! cold (disabled) and warm, and `get_range` of 4 KiB inside blobs of 16 MiB and 1 GiB
//! (the cost must not grow with blob size).
//!
//! `cargo bench --bench reads`

mod common;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};

fn reads(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("hot");

    let small = Bytes::from(common::random_bytes(64 << 10, 7));
    for (name, cache) in [
        ("get_64KiB_cache_cold", 0u64),
        ("get_64KiB_cache_warm", 256 << 20),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, id) = rt.block_on(common::store_with(dir.path(), cache, small.clone()));
        group.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| async { store.get(&id).await.expect("get") })
        });
        rt.block_on(store.close()).expect("close");
    }

    // Both blobs in one store, the small one first: the big put pushes it out of the
    // memtable, so both reads come from blob files and only the blob size differs.
    // Cache off: every read goes to RocksDB and the manifest lookup.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = rt
        .block_on(strata::Store::open(common::settings(dir.path(), 0)))
        .expect("open");
    common::bench_get_range_4k(&mut group, &rt, &store, 9);
    rt.block_on(store.close()).expect("close");
    group.finish();
}

criterion_group!(benches, reads);
criterion_main!(benches);
