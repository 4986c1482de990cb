//! Faults during scrub and gc with pack rewrites (issue 13 §6): object-store errors,
//! bit flips in transit and the metadata store going away end in `Unavailable` or in a
//! report that says what was not done, and a later run finishes the work; nothing is
//! lost. (The object store is the local directory behind a fault-injecting wrapper; the
//! metadata store "going away" is the embedded store behind one, failing every call.)

mod support;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use strata::meta::faults::FaultyMeta;
use strata::object::FaultyObjectStore;
use strata::settings::Durability;
use strata::{BlobId, ErrorKind, ManualClock, Settings, Store, Tier};
use support::random_bytes;

const T0: u64 = 1_700_000_000_000;

struct Env {
    store: Store,
    warm: Arc<FaultyObjectStore>,
    meta: Arc<FaultyMeta>,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

async fn open_env(tweak: impl FnOnce(&mut Settings)) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let (warm, _cold, mut components) = support::counted_local_tiers(
        &dir.path().join("warm"),
        &dir.path().join("cold"),
        clock.clone(),
        0,
    );
    let slot: Arc<Mutex<Option<Arc<FaultyMeta>>>> = Arc::default();
    let fill = slot.clone();
    components.wrap_meta = Some(Box::new(move |inner| {
        let f = FaultyMeta::new(inner);
        *fill.lock().expect("slot") = Some(f.clone());
        f
    }));
    let mut s = support::small_pack_settings(dir.path());
    s.tiers.promote = false;
    s.gc.grace_secs = 0;
    s.scrub.bytes_per_sec = 0;
    tweak(&mut s);
    let store = Store::open_with(s, components).await.expect("open");
    let meta = slot.lock().expect("slot").clone().expect("wrapped");
    Env {
        store,
        warm,
        meta,
        clock,
        _dir: dir,
    }
}

/// Put `n` blobs and move all their chunks to warm in one move (they share packs).
async fn blobs_in_shared_packs(env: &Env, n: u64) -> Vec<(BlobId, Bytes)> {
    let mut blobs = Vec::new();
    let mut chunks = Vec::new();
    for seed in 0..n {
        let data = random_bytes(120_000, 500 + seed);
        let id = env.store.put(data.clone()).await.expect("put").id;
        let size = data.len() as u64;
        chunks.extend(
            env.store
                .meta()
                .manifest_range(&id, 0, size)
                .await
                .expect("manifest")
                .into_iter()
                .map(|e| e.chunk),
        );
        blobs.push((id, data));
    }
    env.store
        .move_chunks(&chunks, Tier::Warm)
        .await
        .expect("move");
    blobs
}

/// Copies of the blobs' chunks marked corrupt.
async fn marked(store: &Store, blobs: &[(BlobId, Bytes)]) -> usize {
    let mut n = 0;
    for (id, data) in blobs {
        let entries = store
            .meta()
            .manifest_range(id, 0, data.len() as u64)
            .await
            .expect("manifest");
        for e in entries {
            n += store
                .meta()
                .locations(&e.chunk)
                .await
                .expect("locations")
                .iter()
                .filter(|l| l.health == strata::Health::Corrupt)
                .count();
        }
    }
    n
}

async fn all_read(store: &Store, blobs: &[(BlobId, Bytes)]) {
    for (id, data) in blobs {
        assert!(store.get(id).await.expect("get") == *data, "blob {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_with_warm_reads_failing_marks_nothing_and_loses_nothing() {
    let env = open_env(|s| s.durability.mode = Durability::Replicated).await;
    let data = random_bytes(300_000, 1);
    let id = env.store.put(data.clone()).await.expect("put").id;
    env.warm.set_fail_reads(true);
    let r = env.store.scrub().await.expect("scrub");
    assert!(r.unchecked > 0, "{r:?}");
    assert_eq!((r.corrupt, r.missing, r.unrepairable), (0, 0, 0), "{r:?}");
    env.warm.set_fail_reads(false);
    // The copies it could not check are checked by the next pass, and are fine.
    let r = env.store.scrub().await.expect("scrub");
    assert_eq!((r.corrupt, r.missing, r.unchecked), (0, 0, 0), "{r:?}");
    assert!(env.store.verify(None).await.expect("verify").is_clean());
    env.store.move_blob(&id, Tier::Warm).await.expect("to warm");
    assert!(env.store.get(&id).await.expect("get") == data);
    env.store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_with_the_metadata_store_gone_is_unavailable_then_finishes() {
    let env = open_env(|s| s.durability.mode = Durability::Replicated).await;
    let data = random_bytes(300_000, 2);
    let id = env.store.put(data.clone()).await.expect("put").id;
    env.meta.fail_all.store(true, Ordering::SeqCst);
    let err = env.store.scrub().await.expect_err("metadata unreachable");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    env.meta.fail_all.store(false, Ordering::SeqCst);
    let r = env.store.scrub().await.expect("scrub");
    assert!(r.copies_checked > 0, "{r:?}");
    assert_eq!((r.corrupt, r.missing, r.unchecked), (0, 0, 0), "{r:?}");
    assert!(env.store.get(&id).await.expect("get") == data);
    env.store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_rewrite_with_warm_writes_failing_is_unavailable_then_finishes() {
    let env = open_env(|_| {}).await;
    let blobs = blobs_in_shared_packs(&env, 8).await;
    for (id, _) in &blobs[1..7] {
        env.store.delete(id).await.expect("delete");
    }
    env.clock.advance(1);
    env.warm.set_fail_writes(true);
    // Rewrites fail (reported), then deleting a dead pack's object fails: gc stops
    // with the outage's error; the record went first, so the object is an orphan.
    match env.store.gc().await {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}"),
        Ok(r) => assert!(!r.errors.is_empty(), "{r:?}"),
    }
    env.warm.set_fail_writes(false);
    let survivors = [blobs[0].clone(), blobs[7].clone()];
    all_read(&env.store, &survivors).await;
    env.clock.advance(1);
    let r = env.store.gc().await.expect("gc");
    assert!(r.errors.is_empty(), "{r:?}");
    let again = env.store.gc().await.expect("gc");
    assert_eq!(
        (
            again.packs_rewritten,
            again.packs_deleted,
            again.orphan_packs_deleted
        ),
        (0, 0, 0),
        "{again:?}"
    );
    all_read(&env.store, &survivors).await;
    let fsck = env.store.fsck(false).await.expect("fsck");
    assert!(fsck.is_clean(), "{fsck}");
    env.store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_rewrite_reading_flipped_bits_loses_nothing_and_scrub_clears_the_marks() {
    let env = open_env(|_| {}).await;
    let blobs = blobs_in_shared_packs(&env, 8).await;
    for (id, _) in &blobs[1..7] {
        env.store.delete(id).await.expect("delete");
    }
    env.clock.advance(1);
    // Every GET's body arrives with one bit flipped: the chunk it lands in fails
    // verification and its copy is marked (it stays in the old pack, which therefore
    // stays); the chunks that verified are moved.
    env.warm.set_corrupt_reads(true);
    let r = env.store.gc().await.expect("gc");
    assert!(r.errors.is_empty(), "{r:?}");
    env.warm.set_corrupt_reads(false);
    let survivors = [blobs[0].clone(), blobs[7].clone()];
    assert!(marked(&env.store, &survivors).await >= 1);
    // The copies were fine: scrub re-reads them, finds them healthy, and the marks go.
    let s = env.store.scrub().await.expect("scrub");
    assert_eq!((s.corrupt, s.missing, s.unrepairable), (0, 0, 0), "{s:?}");
    assert_eq!(marked(&env.store, &survivors).await, 0);
    all_read(&env.store, &survivors).await;
    // The old pack, left sparse, is rewritten now and goes.
    env.clock.advance(1);
    let r = env.store.gc().await.expect("gc");
    assert!(r.packs_rewritten >= 1 && r.packs_deleted >= 1, "{r:?}");
    all_read(&env.store, &survivors).await;
    let fsck = env.store.fsck(false).await.expect("fsck");
    assert!(fsck.is_clean(), "{fsck}");
    env.store.close().await.expect("close");
}
