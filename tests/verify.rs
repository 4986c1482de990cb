//! `Store::verify` through the library: an unreachable object store leaves copies
//! unchecked (not damaged, not recorded), instant-class cold copies are re-hashed, and
//! warm reads are coalesced per pack.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use strata::object::{FaultyObjectStore, LocalObjectStore, ObjectStore, StorageClass};
use strata::store::Components;
use strata::{ChunkerParams, Health, ManualClock, Settings, Store, Tier};
use support::random_bytes;

struct Env {
    store: Store,
    warm: Arc<FaultyObjectStore>,
    _dir: tempfile::TempDir,
}

/// Small chunks and packs, so a few hundred KiB make several packs of each tier.
async fn open_env(tweak: impl FnOnce(&mut Settings)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let local = |name: &str| {
        Arc::new(LocalObjectStore::new(dir.path().join(name), clock.clone(), 0).with_fsync(false))
    };
    let warm = Arc::new(FaultyObjectStore::new(local("warm")));
    let mut s = Settings {
        data_dir: dir.path().join("db"),
        ..Settings::default()
    };
    s.hot.sync = false;
    s.chunking = ChunkerParams {
        min: 4096,
        avg: 16384,
        max: 65536,
    };
    s.tiers.warm.pack_bytes = 256 * 1024;
    s.tiers.cold.pack_bytes = 256 * 1024;
    tweak(&mut s);
    let components = Components {
        clock: Some(clock.clone()),
        warm: Some(warm.clone() as Arc<dyn ObjectStore>),
        cold: Some(local("cold") as Arc<dyn ObjectStore>),
        ..Components::default()
    };
    let store = Store::open_with(s, components).await.unwrap();
    Env {
        store,
        warm,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_warm_tier_leaves_copies_unchecked_not_missing() {
    let env = open_env(|_| {}).await;
    let data: Bytes = random_bytes(900_000, 71);
    let id = env.store.put(data.clone()).await.unwrap().id;
    env.store.move_blob(&id, Tier::Warm).await.unwrap();

    env.warm.reset_counts();
    let clean = env.store.verify(None).await.unwrap();
    assert!(clean.is_clean(), "{clean}");
    let chunks = clean.chunks_checked;
    let packs = clean.warm.objects_checked;
    assert!(packs >= 3, "{clean}");
    assert_eq!(clean.warm.copies_hashed, chunks);
    assert_eq!(clean.bytes_checked, data.len() as u64);
    // One HEAD per pack, and ranged GETs coalesced per pack, not one per chunk.
    assert_eq!(env.warm.count("head"), packs);
    let gets = env.warm.count("get_range");
    assert!(
        gets <= 2 * packs && gets < chunks,
        "{gets} GETs for {chunks} chunks"
    );
    assert_eq!(
        env.store.stat(&id).await.unwrap().tiers.hot,
        0,
        "nothing promoted"
    );

    env.warm.set_fail_all(true);
    let report = env.store.verify(Some(&id)).await.unwrap();
    assert!(!report.is_clean());
    assert_eq!(report.unchecked.len() as u64, chunks, "{report}");
    assert!(report.corrupt.is_empty() && report.missing.is_empty() && report.lost.is_empty());
    assert!(report.unchecked.iter().all(|c| c.blobs == vec![id]));
    assert_eq!(report.bytes_checked, 0);
    let entries = env.store.meta().manifest_range(&id, 0, 1).await.unwrap();
    let locs = env.store.meta().locations(&entries[0].chunk).await.unwrap();
    assert!(locs.iter().all(|l| l.health == Health::Ok), "{locs:?}");

    env.warm.set_fail_all(false);
    assert!(env.store.verify(Some(&id)).await.unwrap().is_clean());
    assert_eq!(env.store.get(&id).await.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_class_cold_copies_are_re_hashed() {
    let env = open_env(|s| s.tiers.cold.storage_class = Some(StorageClass::GlacierIr)).await;
    let data: Bytes = random_bytes(400_000, 72);
    let id = env.store.put(data.clone()).await.unwrap().id;
    env.store.move_blob(&id, Tier::Cold).await.unwrap();
    let report = env.store.verify(Some(&id)).await.unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.cold.copies_hashed, report.chunks_checked);
    assert_eq!(report.cold.copies_sized, 0);
    assert_eq!(report.cold.bytes_hashed, data.len() as u64);
}
