//! The tiering engine's workers (issue 12) on the embedded store with local warm and
//! cold tiers and a manual clock: TTL and watermark demotion, archiving, restores,
//! policy classes and pins, and fencing. Object stores are wrapped to count requests.

mod support;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use strata::engine::{Engine, WorkerKind};
use strata::meta::PlacementChange;
use strata::model::Location;
use strata::object::{FaultyObjectStore, ObjectStore, StorageClass};
use strata::settings::PolicyClass;
use strata::store::{Components, PutOptions};
use strata::{BlobId, ChunkId, Clock as _, ErrorKind, ManualClock, Settings, Store, Tier};
use support::random_bytes;

const T0: u64 = 1_700_000_000_000;
const SEC: u64 = 1000;
const HOUR: u64 = 3_600_000;
const DAY: u64 = 86_400_000;
/// Restore delay of the local cold tier, in ms of the manual clock.
const RESTORE_DELAY_MS: u64 = HOUR;

struct Env {
    store: Store,
    engine: Engine,
    warm: Arc<FaultyObjectStore>,
    cold: Arc<FaultyObjectStore>,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

/// Small chunks and packs; no chunk cache, so reads go to the tiers; no minimum
/// residency unless a test sets one.
fn settings(dir: &Path) -> Settings {
    let mut s = support::small_pack_settings(dir);
    s.tiers.promote = false;
    s.policy.hot_idle_secs = 3600;
    s.policy.hot_min_residency_secs = 0;
    s
}

/// Both tiers in one directory (so archiving copies objects server-side), the cold
/// one with a restore delay on the manual clock.
async fn open_env(tweak: impl FnOnce(&mut Settings)) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let objects = dir.path().join("objects");
    let (warm, cold, components) =
        support::counted_local_tiers(&objects, &objects, clock.clone(), RESTORE_DELAY_MS);
    let mut s = settings(dir.path());
    tweak(&mut s);
    let store = Store::open_with(s, components).await.expect("open store");
    warm.reset_counts();
    cold.reset_counts();
    Env {
        engine: Engine::new(store.clone()),
        store,
        warm,
        cold,
        clock,
        _dir: dir,
    }
}

async fn chunk_ids(store: &Store, id: &BlobId) -> Vec<ChunkId> {
    let size = store.head(id).await.expect("head").size;
    let mut ids: Vec<ChunkId> = store
        .meta()
        .manifest_range(id, 0, size)
        .await
        .expect("manifest")
        .into_iter()
        .map(|e| e.chunk)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Every copy of the blob's chunks.
async fn copies(store: &Store, id: &BlobId) -> Vec<Location> {
    let mut out = Vec::new();
    for c in chunk_ids(store, id).await {
        out.extend(store.meta().locations(&c).await.expect("locations"));
    }
    out
}

/// Bytes of the blob's copies in `tier`.
async fn tier_bytes(store: &Store, id: &BlobId, tier: Tier) -> u64 {
    copies(store, id)
        .await
        .iter()
        .filter(|l| l.tier == tier)
        .map(|l| l.length)
        .sum()
}

/// Distinct packs of `tier` holding the blob's chunks.
async fn packs_of(store: &Store, id: &BlobId, tier: Tier) -> Vec<String> {
    let mut packs: Vec<String> = copies(store, id)
        .await
        .into_iter()
        .filter(|l| l.tier == tier)
        .map(|l| l.pack)
        .collect();
    packs.sort();
    packs.dedup();
    packs
}

/// Read the blob and record the read in the hot index at the clock's time, as the
/// access flush does for reads on this node.
async fn read(env: &Env, id: &BlobId) -> Bytes {
    let bytes = env.store.get(id).await.expect("get");
    let now = env.clock.now_ms();
    let reads: Vec<(ChunkId, u64)> = chunk_ids(&env.store, id)
        .await
        .into_iter()
        .map(|c| (c, now))
        .collect();
    env.store
        .meta()
        .touch_hot(env.store.node_id(), &reads)
        .await
        .expect("touch");
    bytes
}

async fn hot_bytes(env: &Env) -> u64 {
    env.store
        .meta()
        .hot_bytes(env.store.node_id())
        .await
        .expect("hot bytes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_demotes_idle_copies_and_keeps_recently_read_ones() {
    let env = open_env(|_| {}).await;
    let a = random_bytes(300_000, 1);
    let b = random_bytes(200_000, 2);
    let ia = env.store.put(a.clone()).await.expect("put a").id;
    let ib = env.store.put(b.clone()).await.expect("put b").id;
    let b_hot = tier_bytes(&env.store, &ib, Tier::Hot).await;

    env.clock.advance(3000 * SEC);
    read(&env, &ib).await;
    env.clock.advance(1000 * SEC); // a idle 4000 s > 3600 s; b read 1000 s ago

    let plan = env.engine.plan().await.expect("plan");
    assert_eq!(
        plan.demote_idle.chunks,
        chunk_ids(&env.store, &ia).await.len() as u64
    );

    let r = env.engine.run_pass(WorkerKind::Demote).await.expect("pass");
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(
        r.chunks_moved,
        chunk_ids(&env.store, &ia).await.len() as u64,
        "{r:?}"
    );
    assert!(r.objects_written >= 2, "300 kB in 256 KiB packs: {r:?}");
    assert_eq!(env.warm.count("put"), r.objects_written);
    assert_eq!(tier_bytes(&env.store, &ia, Tier::Hot).await, 0);
    assert_eq!(
        tier_bytes(&env.store, &ib, Tier::Hot).await,
        b_hot,
        "read recently"
    );
    assert_eq!(hot_bytes(&env).await, b_hot);
    for p in packs_of(&env.store, &ia, Tier::Warm).await {
        let rec = env
            .store
            .meta()
            .pack(&p)
            .await
            .expect("pack")
            .expect("record");
        assert_eq!(rec.class, "");
    }
    assert!(env.store.get(&ia).await.expect("get a from warm") == a);

    // Later b idles too: one more pass empties hot.
    env.clock.advance(HOUR);
    let r = env.engine.run_pass(WorkerKind::Demote).await.expect("pass");
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(hot_bytes(&env).await, 0);
    assert!(env.store.get(&ib).await.expect("get b") == b);
    let passes = env.store.meta().passes().await.expect("passes");
    assert!(
        passes
            .iter()
            .any(|p| p.worker == "demote" && p.error.is_none()),
        "{passes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermarks_demote_least_recently_read_first_respecting_residency() {
    let env = open_env(|s| {
        s.policy.hot_idle_secs = 30 * 86_400;
        s.policy.hot_min_residency_secs = 1800;
        s.policy.hot_max_bytes = 600_000;
    })
    .await;
    let data: Vec<Bytes> = (0..4).map(|i| random_bytes(150_000, 10 + i)).collect();
    let mut ids = Vec::new();
    for d in &data[..3] {
        ids.push(env.store.put(d.clone()).await.expect("put").id);
    }
    env.clock.advance(HOUR);
    // d is placed now: the least recently read, but too young to move.
    ids.push(env.store.put(data[3].clone()).await.expect("put d").id);
    for i in [2, 1, 0] {
        env.clock.advance(10 * SEC);
        read(&env, &ids[i]).await; // LRU after d: c, then b, then a
    }
    let total = hot_bytes(&env).await;
    let before: Vec<u64> =
        futures::future::join_all(ids.iter().map(|i| tier_bytes(&env.store, i, Tier::Hot))).await;
    assert_eq!(before.iter().sum::<u64>(), total);
    assert_eq!(total, 600_000, "hot copies are stored raw");
    let low = total * 3 / 4;
    let status = env.engine.status().await.expect("status");
    assert_eq!(status.watermarks.state, "above_high", "{status:?}");

    let r = env.engine.run_pass(WorkerKind::Demote).await.expect("pass");
    assert!(r.errors.is_empty(), "{r:?}");
    let after: Vec<u64> =
        futures::future::join_all(ids.iter().map(|i| tier_bytes(&env.store, i, Tier::Hot))).await;
    assert!(
        hot_bytes(&env).await <= low,
        "{} > {low}",
        hot_bytes(&env).await
    );
    assert_eq!(after[3], before[3], "d is within its minimum residency");
    assert!(
        r.kept >= chunk_ids(&env.store, &ids[3]).await.len() as u64,
        "{r:?}"
    );
    assert_eq!(after[2], 0, "c was the least recently read after d");
    assert_eq!(after[0], before[0], "a was read last and stays");
    for (i, d) in ids.iter().zip(&data) {
        assert!(env.store.get(i).await.expect("get") == *d);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_copies_whole_packs_and_repacks_those_with_dead_chunks() {
    let env = open_env(|s| {
        s.policy.warm_idle_secs = Some(86_400);
        s.policy.archive_min_object_bytes = 16 * 1024;
    })
    .await;
    let a = random_bytes(600_000, 21);
    let ia = env.store.put(a.clone()).await.expect("put a").id;
    let ib = env
        .store
        .put(random_bytes(60_000, 22))
        .await
        .expect("put b")
        .id;
    let ic = env
        .store
        .put(random_bytes(60_000, 23))
        .await
        .expect("put c")
        .id;
    env.store
        .move_blob(&ia, Tier::Warm)
        .await
        .expect("a to warm");
    let mut bc = chunk_ids(&env.store, &ib).await;
    bc.extend(chunk_ids(&env.store, &ic).await);
    env.store
        .move_chunks(&bc, Tier::Warm)
        .await
        .expect("b, c to warm");
    let bc_pack = packs_of(&env.store, &ib, Tier::Warm).await;
    assert_eq!(
        bc_pack,
        packs_of(&env.store, &ic, Tier::Warm).await,
        "one pack"
    );
    env.store.delete(&ic).await.expect("delete c");
    let warm_a = packs_of(&env.store, &ia, Tier::Warm).await;

    env.clock.advance(2 * DAY);
    let plan = env.engine.plan().await.expect("plan");
    assert_eq!(
        plan.archive.objects_written,
        warm_a.len() as u64 + 1,
        "{plan:?}"
    );
    let r = env
        .engine
        .run_pass(WorkerKind::Archive)
        .await
        .expect("pass");
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(r.objects_written, warm_a.len() as u64 + 1, "{r:?}");
    assert_eq!(
        env.warm.count("copy"),
        warm_a.len() as u64,
        "server-side copies"
    );

    // Whole packs: the same pack under its cold name, in the archive class.
    let cold_a = packs_of(&env.store, &ia, Tier::Cold).await;
    let renamed: Vec<String> = warm_a
        .iter()
        .map(|p| p.replacen("warm/", "cold/", 1))
        .collect();
    assert_eq!(cold_a, renamed);
    assert!(packs_of(&env.store, &ia, Tier::Warm).await.is_empty());
    let now = env.clock.now_ms();
    for p in &cold_a {
        let rec = env
            .store
            .meta()
            .pack(p)
            .await
            .expect("pack")
            .expect("record");
        assert_eq!(rec.storage_class, StorageClass::Glacier);
        assert_eq!(rec.min_keep_until_ms, Some(now + 90 * DAY));
        let head = env.cold.head(p).await.expect("head");
        assert_eq!(head.storage_class, StorageClass::Glacier);
    }
    // The pack with a dead chunk: b's live chunks repacked into a new cold pack.
    let cold_b = packs_of(&env.store, &ib, Tier::Cold).await;
    assert_eq!(cold_b.len(), 1);
    assert_ne!(
        cold_b[0],
        bc_pack[0].replacen("warm/", "cold/", 1),
        "repacked, not copied"
    );
    assert!(packs_of(&env.store, &ib, Tier::Warm).await.is_empty());
    let live = env
        .store
        .meta()
        .pack_locations(&cold_b[0])
        .await
        .expect("pack locations");
    assert_eq!(
        live.len(),
        chunk_ids(&env.store, &ib).await.len(),
        "only b's chunks"
    );
    let rec = env
        .store
        .meta()
        .pack(&cold_b[0])
        .await
        .expect("pack")
        .expect("record");
    assert_eq!(rec.min_keep_until_ms, Some(now + 90 * DAY));
    // The old warm objects are left for pack GC.
    assert!(env.warm.head(&warm_a[0]).await.is_ok());

    // Archived data still reads back after a restore.
    let err = env.store.get(&ia).await.expect_err("archived");
    assert_eq!(err.kind(), ErrorKind::RestorePending);
    env.clock.advance(RESTORE_DELAY_MS + 1);
    let r = env
        .engine
        .run_pass(WorkerKind::Restore)
        .await
        .expect("restore pass");
    assert!(r.errors.is_empty(), "{r:?}");
    assert!(env.store.get(&ia).await.expect("get a") == a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_objects_are_not_archived_alone() {
    let env = open_env(|s| {
        s.policy.warm_idle_secs = Some(86_400);
        s.policy.archive_min_object_bytes = 200_000;
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = env
            .store
            .put(random_bytes(50_000, 30 + i))
            .await
            .expect("put")
            .id;
        env.store.move_blob(&id, Tier::Warm).await.expect("to warm");
        ids.push(id);
        if i == 0 {
            env.clock.advance(2 * DAY);
            let r = env
                .engine
                .run_pass(WorkerKind::Archive)
                .await
                .expect("pass");
            assert_eq!((r.objects_written, r.kept), (0, 1), "{r:?}");
            assert!(packs_of(&env.store, &id, Tier::Cold).await.is_empty());
        }
    }
    env.clock.advance(2 * DAY);
    let r = env
        .engine
        .run_pass(WorkerKind::Archive)
        .await
        .expect("pass");
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(
        r.objects_written, 1,
        "five small packs gathered into one: {r:?}"
    );
    assert_eq!(env.warm.count("copy"), 0);
    let mut cold = Vec::new();
    for id in &ids {
        assert!(packs_of(&env.store, id, Tier::Warm).await.is_empty());
        cold.extend(packs_of(&env.store, id, Tier::Cold).await);
    }
    cold.dedup();
    assert_eq!(cold.len(), 1, "{cold:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_worker_copies_restored_packs_up_and_one_request_per_pack() {
    let env = open_env(|_| {}).await;
    let a = random_bytes(400_000, 41);
    let ia = env.store.put(a.clone()).await.expect("put").id;
    env.store.move_blob(&ia, Tier::Cold).await.expect("to cold");
    let packs = packs_of(&env.store, &ia, Tier::Cold).await;
    assert!(packs.len() >= 2);

    // A second node sharing the metadata and the tiers asks at the same time.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let mut s2 = settings(dir2.path());
    s2.policy = env.store.settings().policy.clone();
    let other = Store::open_with(
        s2,
        Components {
            meta: Some(env.store.meta().clone()),
            clock: Some(env.clock.clone()),
            warm: Some(env.warm.clone() as Arc<dyn ObjectStore>),
            cold: Some(env.cold.clone() as Arc<dyn ObjectStore>),
            ..Components::default()
        },
    )
    .await
    .expect("open second node");
    assert_ne!(other.node_id(), env.store.node_id());
    env.cold.reset_counts();
    let (r1, r2) = tokio::join!(env.store.get(&ia), other.get(&ia));
    for r in [r1, r2] {
        assert_eq!(r.expect_err("archived").kind(), ErrorKind::RestorePending);
    }
    assert_eq!(
        env.cold.count("restore"),
        packs.len() as u64,
        "one request per pack"
    );

    // Not restored yet: the pass polls and leaves it.
    let r = env
        .engine
        .run_pass(WorkerKind::Restore)
        .await
        .expect("pass");
    assert_eq!((r.restores, r.chunks_moved), (0, 0), "{r:?}");
    assert_eq!(
        env.engine.status().await.expect("status").pending_restores,
        packs.len() as u64
    );

    env.clock.advance(RESTORE_DELAY_MS + 1);
    // The worker polls each pack on its own schedule; a fresh engine checks at once.
    let engine = Engine::new(env.store.clone());
    let r = engine.run_pass(WorkerKind::Restore).await.expect("pass");
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(r.restores, packs.len() as u64, "{r:?}");
    assert_eq!(
        r.chunks_moved,
        chunk_ids(&env.store, &ia).await.len() as u64
    );
    assert_eq!(
        env.cold.count("restore"),
        packs.len() as u64,
        "no new request"
    );
    assert!(!packs_of(&env.store, &ia, Tier::Warm).await.is_empty());
    assert_eq!(
        packs_of(&env.store, &ia, Tier::Cold).await,
        packs,
        "cold copies stay"
    );
    assert_eq!(engine.status().await.expect("status").pending_restores, 0);
    assert!(env.store.get(&ia).await.expect("get") == a);
    assert!(other.get(&ia).await.expect("get on the other node") == a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classes_and_pins() {
    let env = open_env(|s| {
        s.policy.hot_idle_secs = 30 * 86_400;
        s.policy.classes.insert(
            "fast".into(),
            PolicyClass {
                hot_idle_secs: Some(60),
                ..PolicyClass::default()
            },
        );
    })
    .await;
    let fast = PutOptions {
        class: "fast".into(),
    };
    let err = env
        .store
        .put_with(
            random_bytes(1000, 1),
            &PutOptions {
                class: "nope".into(),
            },
        )
        .await
        .expect_err("unknown class");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("nope"), "{err}");
    assert_eq!(hot_bytes(&env).await, 0, "nothing written");

    let ia = env
        .store
        .put_with(random_bytes(100_000, 51), &fast)
        .await
        .expect("put")
        .id;
    let ib = env
        .store
        .put(random_bytes(100_000, 52))
        .await
        .expect("put")
        .id;
    assert_eq!(env.store.head(&ia).await.expect("head").class, "fast");
    env.clock.advance(120 * SEC);
    let r = env.engine.run_pass(WorkerKind::Demote).await.expect("pass");
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(
        tier_bytes(&env.store, &ia, Tier::Hot).await,
        0,
        "short-idle class moved"
    );
    assert!(
        tier_bytes(&env.store, &ib, Tier::Hot).await > 0,
        "default class stays"
    );
    for p in packs_of(&env.store, &ia, Tier::Warm).await {
        let rec = env
            .store
            .meta()
            .pack(&p)
            .await
            .expect("pack")
            .expect("record");
        assert_eq!(rec.class, "fast");
    }

    let err = env
        .store
        .pin(&BlobId::of(b"none"), Some(Tier::Hot))
        .await
        .expect_err("unknown");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = env
        .store
        .pin(&ib, Some(Tier::Cold))
        .await
        .expect_err("cold pin");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    env.store.pin(&ib, Some(Tier::Hot)).await.expect("pin");
    assert_eq!(
        env.store.head(&ib).await.expect("head").pin,
        Some(Tier::Hot)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_blob_survives_a_watermark_pass() {
    let env = open_env(|s| {
        s.policy.hot_idle_secs = 30 * 86_400;
        s.policy.hot_max_bytes = 1;
    })
    .await;
    let ia = env
        .store
        .put(random_bytes(100_000, 61))
        .await
        .expect("put")
        .id;
    let ib = env
        .store
        .put(random_bytes(100_000, 62))
        .await
        .expect("put")
        .id;
    let ic = env
        .store
        .put(random_bytes(100_000, 63))
        .await
        .expect("put")
        .id;
    env.store.pin(&ib, Some(Tier::Hot)).await.expect("pin");
    let b_hot = tier_bytes(&env.store, &ib, Tier::Hot).await;
    let r = env.engine.run_pass(WorkerKind::Demote).await.expect("pass");
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(tier_bytes(&env.store, &ia, Tier::Hot).await, 0);
    assert_eq!(tier_bytes(&env.store, &ic, Tier::Hot).await, 0);
    assert_eq!(
        tier_bytes(&env.store, &ib, Tier::Hot).await,
        b_hot,
        "pinned"
    );
    assert_eq!(hot_bytes(&env).await, b_hot);
    assert!(r.kept > 0, "{r:?}");
    env.store.pin(&ib, None).await.expect("unpin");
    env.engine.run_pass(WorkerKind::Demote).await.expect("pass");
    assert_eq!(hot_bytes(&env).await, 0, "unpinned, it goes too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_after_the_lease_was_taken_over_is_refused() {
    let env = open_env(|s| s.workers.lease_secs = 60).await;
    let data = random_bytes(100_000, 71);
    let id = env.store.put(data.clone()).await.expect("put").id;
    let meta = env.store.meta().clone();
    let node = env.store.node_id().to_string();
    let lease = meta
        .acquire_lease(&format!("demote:{node}"), &node, 60 * SEC)
        .await
        .expect("acquire")
        .expect("free");
    // Another holder has it: a pass on this node does nothing.
    let taken = meta
        .acquire_lease(&format!("demote:{node}"), "someone-else", 60 * SEC)
        .await
        .expect("acquire");
    assert!(taken.is_none());
    env.clock.advance(2 * HOUR);
    let hot = tier_bytes(&env.store, &id, Tier::Hot).await;

    // The first holder paused past its lease; another node took over.
    let other = meta
        .acquire_lease(&format!("demote:{node}"), "node-other", 60 * SEC)
        .await
        .expect("acquire")
        .expect("lapsed");
    assert!(other.token > lease.token);
    let removals: Vec<Location> = chunk_ids(&env.store, &id)
        .await
        .into_iter()
        .map(|c| Location::hot(c, &node, 0, 0))
        .collect();
    let late = PlacementChange {
        remove: removals,
        ..PlacementChange::default()
    };
    let err = meta
        .commit_placement(Some(&lease.fence()), &late)
        .await
        .expect_err("fenced");
    assert_eq!(err.kind(), ErrorKind::Fenced);
    assert_eq!(
        tier_bytes(&env.store, &id, Tier::Hot).await,
        hot,
        "nothing removed"
    );
    assert!(env.store.get(&id).await.expect("get") == data);

    // While the other node holds it, this node's pass moves nothing.
    let r = env.engine.run_pass(WorkerKind::Demote).await.expect("pass");
    assert_eq!(r.chunks_moved, 0, "{r:?}");
    assert_eq!(tier_bytes(&env.store, &id, Tier::Hot).await, hot);
    meta.release_lease(&other).await.expect("release");
    let r = env.engine.run_pass(WorkerKind::Demote).await.expect("pass");
    assert!(r.chunks_moved > 0, "{r:?}");
    assert!(env.store.get(&id).await.expect("get") == data);
}

/// The started workers run their passes on the runner's interval (real time; the
/// policy's clock is the manual one): a demotion happens with nobody calling
/// `run_pass`, and the worker set alone keeps the workers alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_workers_run_passes_by_themselves() {
    let env = open_env(|s| {
        s.workers.demote_interval_secs = 1;
        s.workers.archive_interval_secs = 0;
        s.workers.restore_interval_secs = 0;
        s.workers.gc_interval_secs = 0;
    })
    .await;
    let data = random_bytes(300_000, 9);
    let id = env.store.put(data.clone()).await.expect("put").id;
    env.clock.advance(2 * HOUR);
    let mut set = strata::worker::WorkerSet::new();
    env.engine.start(&mut set);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while tier_bytes(&env.store, &id, Tier::Hot).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no demotion pass ran in 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    set.close().await.expect("close workers");
    let passes = env.store.meta().passes().await.expect("passes");
    assert!(
        passes.iter().any(|p| p.worker == "demote" && p.chunks > 0),
        "{passes:?}"
    );
    assert!(env.store.get(&id).await.expect("get from warm") == data);
}

/// A pack upload that fails in the middle of a demotion pass ends the pass with an
/// error (the stages before it stop), moves nothing it did not commit, and a later
/// pass finishes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upload_ends_the_pass_without_hanging_or_losing_bytes() {
    let env = open_env(|_| {}).await;
    // 4 MB in 256 KiB packs: many packs, so the stages are all busy when one fails.
    let data = random_bytes(4_000_000, 21);
    let id = env.store.put(data.clone()).await.expect("put").id;
    env.clock.advance(2 * HOUR);
    env.warm.set_fail_writes(true);
    let pass = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        env.engine.run_pass(WorkerKind::Demote),
    )
    .await
    .expect("the pass hung after an upload failed");
    let moved = match pass {
        Ok(r) => {
            assert!(!r.errors.is_empty(), "an upload failed: {r:?}");
            r.chunks_moved
        }
        Err(_) => 0,
    };
    assert_eq!(moved, 0, "nothing was uploaded");
    assert!(env.store.get(&id).await.expect("get") == data);
    env.warm.set_fail_writes(false);
    let r = env.engine.run_pass(WorkerKind::Demote).await.expect("pass");
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(tier_bytes(&env.store, &id, Tier::Hot).await, 0);
    assert!(env.store.get(&id).await.expect("get from warm") == data);
}
