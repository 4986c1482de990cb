//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use bytes::Bytes;
use strata::{Settings, Store};

/// Deterministic pseudo-random bytes (xorshift), fast enough for 100 MiB.
pub fn random_bytes(len: usize, seed: u64) -> Bytes {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// Embedded settings in `dir`, without WAL syncs (tests do not survive power loss).
pub fn settings(dir: &Path) -> Settings {
    let mut s = Settings {
        data_dir: dir.to_path_buf(),
        ..Settings::default()
    };
    s.hot.sync = false;
    s
}

/// Open an embedded store in `dir`.
pub async fn open(dir: &Path) -> Store {
    Store::open(settings(dir)).await.expect("open store")
}

pub mod pg;

/// Embedded hot tier in `dir`, metadata in PostgreSQL at `url`.
pub fn pg_settings(dir: &Path, url: &str) -> Settings {
    let mut s = settings(dir);
    s.apply_env(|k| (k == "STRATA_META_URL").then(|| url.to_string()))
        .expect("settings");
    s.validate().expect("valid settings");
    s
}

/// Run the `strata` binary on `data_dir`, with no settings from the environment.
pub fn run_strata(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("STRATA_CONFIG")
        .env_remove("STRATA_META_URL")
        .env_remove("STRATA_DATA_DIR")
        .output()
        .expect("run strata")
}

/// Local warm and cold tiers in `warm_dir` and `cold_dir` (the same directory makes
/// archiving a server-side copy) on `clock`, the cold one with `restore_delay_ms`,
/// each wrapped to count requests; and the components that open a store on them.
pub fn counted_local_tiers(
    warm_dir: &Path,
    cold_dir: &Path,
    clock: std::sync::Arc<strata::ManualClock>,
    restore_delay_ms: u64,
) -> (
    std::sync::Arc<strata::object::FaultyObjectStore>,
    std::sync::Arc<strata::object::FaultyObjectStore>,
    strata::store::Components,
) {
    use std::sync::Arc;
    use strata::object::{FaultyObjectStore, LocalObjectStore, ObjectStore};
    let warm_local =
        LocalObjectStore::new(warm_dir.to_path_buf(), clock.clone(), 0).with_fsync(false);
    let cold_local = LocalObjectStore::new(cold_dir.to_path_buf(), clock.clone(), restore_delay_ms)
        .with_fsync(false);
    let warm = Arc::new(FaultyObjectStore::new(Arc::new(warm_local)));
    let cold = Arc::new(FaultyObjectStore::new(Arc::new(cold_local)));
    let components = strata::store::Components {
        clock: Some(clock),
        warm: Some(warm.clone() as Arc<dyn ObjectStore>),
        cold: Some(cold.clone() as Arc<dyn ObjectStore>),
        ..strata::store::Components::default()
    };
    (warm, cold, components)
}

/// Embedded settings in `dir/db` with small chunks (16 KiB average) and 256 KiB warm
/// and cold packs, so a few hundred KiB make several packs; no chunk cache, so every
/// read goes to the tiers; restores polled as often as allowed.
pub fn small_pack_settings(dir: &Path) -> Settings {
    let mut s = Settings {
        data_dir: dir.join("db"),
        ..Settings::default()
    };
    s.hot.sync = false;
    s.chunking = strata::ChunkerParams {
        min: 4096,
        avg: 16384,
        max: 65536,
    };
    s.cache.bytes = 0;
    s.tiers.warm.pack_bytes = 256 * 1024;
    s.tiers.cold.pack_bytes = 256 * 1024;
    s.tiers.restore_poll_ms = strata::tier::settings::MIN_RESTORE_POLL_MS;
    s
}

/// Put `n` blobs of random bytes (seeds `seed..seed + n`) and move all their chunks to
/// warm in one move, so that they share packs.
pub async fn blobs_in_shared_packs(
    store: &Store,
    n: u64,
    seed: u64,
) -> Vec<(strata::BlobId, Bytes)> {
    let mut blobs = Vec::new();
    let mut chunks = Vec::new();
    for i in 0..n {
        let data = random_bytes(120_000, seed + i);
        let id = store.put(data.clone()).await.expect("put").id;
        chunks.extend(
            store
                .meta()
                .manifest_range(&id, 0, data.len() as u64)
                .await
                .expect("manifest")
                .into_iter()
                .map(|e| e.chunk),
        );
        blobs.push((id, data));
    }
    store
        .move_chunks(&chunks, strata::Tier::Warm)
        .await
        .expect("move");
    blobs
}

/// Every blob reads back byte-identical.
pub async fn all_read(store: &Store, blobs: &[(strata::BlobId, Bytes)]) {
    for (id, data) in blobs {
        assert!(store.get(id).await.expect("get") == *data, "blob {id}");
    }
}

/// A further `gc` finds no pack to rewrite or delete: the run before it finished.
pub async fn assert_gc_settled(store: &Store) {
    let again = store.gc().await.expect("gc");
    assert_eq!(
        (
            again.packs_rewritten,
            again.packs_deleted,
            again.orphan_packs_deleted
        ),
        (0, 0, 0),
        "{again:?}"
    );
}
