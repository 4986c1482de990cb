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

/// Settings with the hot tier in `dir` and metadata in PostgreSQL at `url`.
pub fn pg_settings(dir: &Path, cache_bytes: u64, url: &str) -> Settings {
    let mut s = settings(dir, cache_bytes);
    s.apply_env(|k| (k == "STRATA_META_URL").then(|| url.to_string()))
        .expect("settings");
    s.validate().expect("valid settings");
    s
}
