//! PostgreSQL metadata: committing the manifest of a 1 GiB blob (16,384 chunks of
//! 64 KiB) in one transaction, and `get_range` of 4 KiB in a 1 GiB blob with the
//! manifest looked up in PostgreSQL (cache off), next to the same read on a 16 MiB blob.
//!
//! `eval "$(bash scripts/pg.sh)"; cargo bench --bench postgres`

mod common;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use strata::meta::postgres::PostgresMeta;
use strata::meta::MetaStore;
use strata::model::{BlobCommit, Location};
use strata::settings::PostgresConnection;
use strata::{BlobId, BlobRecord, ChunkId, ChunkerParams, ManifestEntry, Store};

/// A commit of `n` fresh 64 KiB chunks, each with a new hot location.
fn manifest_commit(n: u64, round: u64) -> BlobCommit {
    let len = 64u32 << 10;
    let mut entries = Vec::with_capacity(n as usize);
    let mut new_locations = Vec::with_capacity(n as usize);
    for i in 0..n {
        let chunk = ChunkId::of(&[round.to_le_bytes(), i.to_le_bytes()].concat());
        entries.push(ManifestEntry {
            offset: i * u64::from(len),
            length: len,
            chunk,
        });
        new_locations.push(Location::hot(chunk, "bench-node", u64::from(len), 1));
    }
    let id = BlobId::of(&round.to_le_bytes());
    BlobCommit {
        blob: BlobRecord {
            id,
            size: n * u64::from(len),
            chunk_count: n,
            params: ChunkerParams::default(),
            created_ms: 1,
            class: String::new(),
            pin: None,
        },
        entries,
        new_locations,
        node: "bench-node".into(),
    }
}

fn postgres(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let Some(url) = rt.block_on(common::pg_schema_url("commit")) else {
        return;
    };
    let n = common::size(16_384, 1_024) as u64;
    let conn = PostgresConnection {
        url: url.clone(),
        pool_size: 4,
        connect_timeout_secs: 5,
    };
    let meta = rt.block_on(PostgresMeta::connect(&conn)).expect("connect");
    let mut group = c.benchmark_group("postgres");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    let mut round = 0u64;
    group.bench_function(format!("commit_manifest_{n}_chunks"), |b| {
        b.iter_batched(
            || {
                round += 1;
                manifest_commit(n, round)
            },
            |commit| rt.block_on(meta.commit_blob(&commit)).expect("commit"),
            BatchSize::PerIteration,
        )
    });

    // Both blobs in one store, the small one first: the big put pushes it out of the
    // memtable, so both reads come from RocksDB blob files and only the blob size (and
    // so the manifest size in PostgreSQL) differs. Cache off.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = rt
        .block_on(Store::open(common::pg_settings(dir.path(), 0, &url)))
        .expect("open");
    common::bench_get_range_4k(&mut group, &rt, &store, 11);
    rt.block_on(store.close()).expect("close");
    group.finish();
}

criterion_group!(benches, postgres);
criterion_main!(benches);
