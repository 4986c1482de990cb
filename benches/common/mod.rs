//! Shared by the benches: data generation and store setup.
#![allow(dead_code)]

use std::path::Path;

use bytes::Bytes;
use strata::{Settings, Store};

/// True when the bench binary runs as a test (`cargo test --all-targets` passes no
/// `--bench` flag): sizes shrink so the test suite only checks that the bench works.
pub fn quick() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

/// `full` when benchmarking, `small` when run as a test.
pub fn size(full: usize, small: usize) -> usize {
    if quick() {
        small
    } else {
        full
    }
}

/// A temporary data directory, under `STRATA_BENCH_DIR` when set (for example
/// `/dev/shm`, to measure the pipeline without the disk), else the system's.
pub fn tempdir() -> tempfile::TempDir {
    match std::env::var_os("STRATA_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).expect("tempdir in STRATA_BENCH_DIR"),
        None => tempfile::tempdir().expect("tempdir"),
    }
}

/// Pseudo-random bytes (incompressible, so no chunk repeats).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Make `data` new content (so dedup cannot skip it) in one cheap pass.
pub fn refresh(data: &mut [u8], round: u64) {
    let k = round.wrapping_mul(0x2545f4914f6cdd1d).to_le_bytes();
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= k[i & 7];
    }
}

/// Embedded store settings for benches: defaults, WAL synced as in production.
pub fn settings(dir: &Path, cache_bytes: u64) -> Settings {
    let mut s = Settings {
        data_dir: dir.to_path_buf(),
        ..Settings::default()
    };
    s.cache.bytes = cache_bytes;
    s
}

/// Open a store and put `data`, returning the store and the blob id.
pub async fn store_with(dir: &Path, cache_bytes: u64, data: Bytes) -> (Store, strata::BlobId) {
    let store = Store::open(settings(dir, cache_bytes)).await.expect("open");
    let id = store.put(data).await.expect("put").id;
    (store, id)
}

/// A fresh schema on the PostgreSQL server of `STRATA_TEST_PG_URL` (set by
/// `eval "$(bash scripts/pg.sh)"`), as a URL whose connections use it; `None` (with a
/// message) when the variable is not set.
pub async fn pg_schema_url(tag: &str) -> Option<String> {
    let Ok(admin) = std::env::var("STRATA_TEST_PG_URL") else {
        eprintln!("skipping PostgreSQL benches: STRATA_TEST_PG_URL is not set (eval \"$(bash scripts/pg.sh)\")");
        return None;
    };
    let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(conn);
    let schema = format!("bench_{tag}_{}", std::process::id());
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .await
        .expect("create schema");
    let sep = if admin.contains('?') { '&' } else { '?' };
    Some(format!("{admin}{sep}options=-c%20search_path%3D{schema}"))
}

/// `VACUUM` every table of the schema `url` uses: settles the dead rows of a
/// delete and `gc`, so autovacuum does not run during the next measurement.
pub async fn pg_vacuum(url: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    let conn = tokio::spawn(conn);
    let tables: Vec<String> = client
        .query(
            "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema()",
            &[],
        )
        .await
        .expect("list tables")
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !tables.is_empty() {
        client
            .batch_execute(&format!("VACUUM {}", tables.join(", ")))
            .await
            .expect("vacuum");
    }
    drop(client);
    let _ = conn.await;
}

/// Settings with the hot tier in `dir` and metadata in PostgreSQL at `url`.
pub fn pg_settings(dir: &Path, cache_bytes: u64, url: &str) -> Settings {
    let mut s = settings(dir, cache_bytes);
    s.apply_env(|k| (k == "STRATA_META_URL").then(|| url.to_string()))
        .expect("settings");
    s.validate().expect("valid settings");
    s
}

/// `get_range` of 4 KiB at 997 spread offsets in a 16 MiB and a 1 GiB blob (32 MiB under
/// `cargo test`), both put into `store`, the small one first: the big put pushes it out
/// of the memtable, so both reads come from blob files and only the blob size differs.
pub fn bench_get_range_4k(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    store: &Store,
    seed: u64,
) {
    let mut blobs = Vec::new();
    for (name, size) in [
        ("get_range_4KiB_in_16MiB", 16usize << 20),
        ("get_range_4KiB_in_1GiB", size(1 << 30, 32 << 20)),
    ] {
        let data = Bytes::from(random_bytes(size, seed + size as u64));
        blobs.push((name, size, rt.block_on(store.put(data)).expect("put").id));
    }
    for (name, size, id) in blobs {
        let mut i = 0u64;
        let stride = (size as u64 - 4096) / 997;
        group.bench_function(name, |b| {
            b.to_async(rt).iter(|| {
                i = (i + 1) % 997;
                let start = i * stride;
                async move {
                    store
                        .get_range(&id, start..start + 4096)
                        .await
                        .expect("range")
                }
            })
        });
    }
}

/// Sequential write of `data` to a new file in `dir`, 4 MiB per `write`, fsynced at the
/// end (what `dd bs=4M conv=fsync` does): the disk baseline of the benches. The file is
/// removed afterwards, outside the timing.
pub fn sequential_write(dir: &Path, data: &[u8]) -> std::time::Duration {
    use std::io::Write;
    let path = dir.join("baseline.bin");
    let t = std::time::Instant::now();
    let mut f = std::fs::File::create(&path).expect("create");
    for block in data.chunks(4 << 20) {
        f.write_all(block).expect("write");
    }
    f.sync_all().expect("fsync");
    let took = t.elapsed();
    drop(f);
    std::fs::remove_file(&path).expect("remove");
    took
}

/// Median, minimum and maximum of `v` (not empty).
pub fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}
