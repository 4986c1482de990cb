//! Shared by the benches: data generation and store setup.
#![allow(dead_code)]

use std::path::Path;

use bytes::Bytes;
use strata::{Settings, Store};

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
    let mut s = Settings { data_dir: dir.to_path_buf(), ..Settings::default() };
    s.cache.bytes = cache_bytes;
    s
}

/// Open a store and put `data`, returning the store and the blob id.
pub async fn store_with(dir: &Path, cache_bytes: u64, data: Bytes) -> (Store, strata::BlobId) {
    let store = Store::open(settings(dir, cache_bytes)).await.expect("open");
    let id = store.put(data).await.expect("put").id;
    (store, id)
}
