//! `Store::fsck` on an embedded store with local warm and cold directories: clean on a
//! healthy store with hot, warm and cold data; then each kind of damage done behind the
//! store's back is reported with its kind, `repair` fixes what it can, and after the
//! damaged blobs are deleted and collected the store is clean again.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata::meta::PackRecord;
use strata::model::{Location, RefcountMismatch};
use strata::object::{LocalObjectStore, ObjectStore, StorageClass};
use strata::store::{FsckReport, ProblemKind, Repair};
use strata::{BlobId, Health, ManualClock, Store, Tier};
use support::{counted_local_tiers, random_bytes, small_pack_settings};

const T0: u64 = 1_700_000_000_000;
const DAY_MS: u64 = 86_400_000;

struct Env {
    store: Store,
    clock: Arc<ManualClock>,
    dir: tempfile::TempDir,
}

impl Env {
    async fn open() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(T0);
        let (_warm, _cold, components) = counted_local_tiers(
            &dir.path().join("warm"),
            &dir.path().join("cold"),
            clock.clone(),
            0,
        );
        let store = Store::open_with(small_pack_settings(dir.path()), components)
            .await
            .expect("open");
        Env { store, clock, dir }
    }

    /// The file holding pack `name` (`warm/<hex>`) in the local tier directory.
    fn pack_file(&self, name: &str) -> PathBuf {
        let tier = name.split('/').next().expect("tier");
        self.dir.path().join(tier).join("data").join(name)
    }

    async fn packs(&self, tier: Tier) -> Vec<PackRecord> {
        let all = self
            .store
            .meta()
            .list_packs(None, 1000)
            .await
            .expect("packs");
        all.into_iter().filter(|p| p.tier == tier).collect()
    }

    async fn put(&self, len: usize, seed: u64) -> BlobId {
        self.store
            .put(random_bytes(len, seed))
            .await
            .expect("put")
            .id
    }
}

fn kinds(r: &FsckReport) -> BTreeSet<ProblemKind> {
    r.problems.iter().map(|p| p.kind).collect()
}

fn exit(r: &FsckReport) -> bool {
    r.exit_code() == std::process::ExitCode::SUCCESS
}

fn stray_store(dir: &Path, clock: Arc<ManualClock>) -> LocalObjectStore {
    LocalObjectStore::new(dir.to_path_buf(), clock, 0).with_fsync(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_finds_each_damage_and_repair_fixes_what_it_can() {
    let env = Env::open().await;
    let meta = env.store.meta().clone();
    let hot = env.put(200_000, 1).await;
    let warm = env.put(700_000, 2).await;
    let cold = env.put(600_000, 3).await;
    env.store.move_blob(&warm, Tier::Warm).await.expect("warm");
    env.store.move_blob(&cold, Tier::Cold).await.expect("cold");
    let warm_packs = env.packs(Tier::Warm).await;
    let cold_packs = env.packs(Tier::Cold).await;
    assert!(
        warm_packs.len() >= 2 && !cold_packs.is_empty(),
        "{warm_packs:?}"
    );
    assert_eq!(cold_packs[0].storage_class, StorageClass::Glacier);

    let clean = env.store.fsck(false).await.expect("fsck");
    assert!(clean.problems.is_empty(), "{clean}");
    assert!(clean.is_clean() && exit(&clean));
    assert_eq!(
        clean.packs_checked as usize,
        warm_packs.len() + cold_packs.len()
    );
    assert_eq!(clean.objects_listed, clean.packs_checked);
    // Warm indexes are read; GLACIER objects are checked by HEAD only.
    assert_eq!(clean.indexes_read as usize, warm_packs.len());
    assert!(clean.chunks_checked > 20, "{clean}");

    // A fresh stray object under the warm prefix: awaiting its grace period, not a
    // failure.
    let strays = stray_store(&env.dir.path().join("warm"), env.clock.clone());
    strays
        .put("warm/stray", random_bytes(1000, 9), StorageClass::Standard)
        .await
        .expect("stray");
    let r = env.store.fsck(false).await.expect("fsck");
    assert_eq!(kinds(&r), [ProblemKind::OrphanAwaitingGrace].into());
    assert!(r.is_clean() && exit(&r), "{r}");
    env.clock.advance(3_600_001);

    // Damage: a warm pack deleted, a copy recorded where the index does not have it,
    // live bytes off, a cold (GLACIER) pack truncated, a reference count bumped.
    let gone = &warm_packs[0];
    std::fs::remove_file(env.pack_file(&gone.id)).expect("delete pack");
    let shifted_pack = &warm_packs[1];
    let mut shifted: Location =
        meta.pack_locations(&shifted_pack.id).await.expect("copies")[0].clone();
    shifted.offset += 1;
    meta.add_locations(std::slice::from_ref(&shifted))
        .await
        .expect("move copy");
    // What a writer puts in a pack record's live bytes is ignored: the metadata store
    // keeps them from the copies (a wrong counter is damaged in its own test below).
    meta.put_pack(&PackRecord {
        live_bytes: shifted_pack.live_bytes + 5,
        ..shifted_pack.clone()
    })
    .await
    .expect("live bytes");
    let copies_len: u64 = meta
        .pack_locations(&shifted_pack.id)
        .await
        .expect("copies")
        .iter()
        .map(|l| l.length)
        .sum();
    assert_eq!(
        meta.pack(&shifted_pack.id)
            .await
            .expect("pack")
            .expect("record")
            .live_bytes,
        copies_len
    );
    let cut = &cold_packs[0];
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(env.pack_file(&cut.id))
        .expect("open pack");
    file.set_len(cut.size / 2).expect("truncate");
    drop(file);
    let hot_chunk = meta.manifest_range(&hot, 0, 1).await.expect("manifest")[0].chunk;
    assert!(meta
        .repair_refcount(
            &RefcountMismatch {
                chunk: hot_chunk,
                stored: 1,
                actual: 3
            },
            T0
        )
        .await
        .expect("bump"));

    let r = env.store.fsck(false).await.expect("fsck");
    assert_eq!(
        kinds(&r),
        [
            ProblemKind::RefcountMismatch,
            ProblemKind::MissingPackObject,
            ProblemKind::PackIndexMismatch,
            ProblemKind::CorruptPack,
            ProblemKind::OrphanObject,
            ProblemKind::UnreadableChunk,
        ]
        .into(),
        "{r}"
    );
    assert!(!r.is_clean() && !exit(&r));
    let one = |kind| {
        let v: Vec<_> = r.of_kind(kind).collect();
        assert_eq!(v.len(), 1, "{kind}: {r}");
        v[0].clone()
    };
    assert_eq!(one(ProblemKind::RefcountMismatch).chunk, Some(hot_chunk));
    assert_eq!(
        one(ProblemKind::MissingPackObject).pack,
        Some(gone.id.clone())
    );
    let mismatch = one(ProblemKind::PackIndexMismatch);
    assert_eq!(
        (mismatch.chunk, mismatch.pack),
        (Some(shifted.chunk), Some(shifted_pack.id.clone()))
    );
    let corrupt = one(ProblemKind::CorruptPack);
    assert_eq!(corrupt.pack, Some(cut.id.clone()));
    assert!(corrupt.detail.contains("its record says"), "{corrupt:?}");
    assert_eq!(
        one(ProblemKind::OrphanObject).pack,
        Some("warm/stray".into())
    );
    // Every line names its kind.
    let text = r.to_string();
    for p in &r.problems {
        assert!(text.contains(&format!("{} ", p.kind)), "{text}");
    }
    let json = serde_json::to_value(&r).expect("json");
    assert!(json["problems"]
        .as_array()
        .expect("list")
        .iter()
        .all(|p| p["kind"].is_string()));

    let fixed = env.store.fsck(true).await.expect("repair");
    let repaired: BTreeSet<ProblemKind> = fixed
        .problems
        .iter()
        .filter(|p| matches!(p.repair, Some(Repair::Repaired(_))))
        .map(|p| p.kind)
        .collect();
    assert_eq!(
        repaired,
        [ProblemKind::RefcountMismatch, ProblemKind::OrphanObject,].into(),
        "{fixed}"
    );
    // Damaged copies are marked, so reads skip them and scrub replaces them.
    let marked: BTreeSet<ProblemKind> = fixed
        .problems
        .iter()
        .filter(|p| matches!(p.repair, Some(Repair::Marked(_))))
        .map(|p| p.kind)
        .collect();
    assert_eq!(
        marked,
        [
            ProblemKind::MissingPackObject,
            ProblemKind::PackIndexMismatch,
            ProblemKind::CorruptPack,
        ]
        .into(),
        "{fixed}"
    );
    let health = |pack: &str| {
        let meta = meta.clone();
        let pack = pack.to_string();
        async move {
            meta.pack_locations(&pack)
                .await
                .expect("copies")
                .into_iter()
                .map(|l| (l.chunk, l.health))
                .collect::<Vec<_>>()
        }
    };
    assert!(health(&gone.id)
        .await
        .iter()
        .all(|(_, h)| *h == Health::Missing));
    assert!(health(&shifted_pack.id)
        .await
        .iter()
        .any(|(c, h)| *c == shifted.chunk && *h == Health::Corrupt));
    assert!(fixed.problems.iter().all(|p| p.repair.is_some()), "{fixed}");
    assert!(!env.pack_file("warm/stray").exists());
    assert!(!exit(&fixed), "data was lost: not clean");

    // What is left is the lost data itself: the damaged packs and their chunks.
    let after = env.store.fsck(false).await.expect("fsck");
    assert_eq!(
        kinds(&after),
        [
            ProblemKind::MissingPackObject,
            ProblemKind::PackIndexMismatch,
            ProblemKind::CorruptPack,
            ProblemKind::UnreadableChunk,
        ]
        .into(),
        "{after}"
    );
    assert_eq!(
        meta.chunk(&hot_chunk)
            .await
            .expect("chunk")
            .expect("rec")
            .refcount,
        1
    );
    assert!(env.store.get(&hot).await.is_ok());

    // Delete the damaged blobs and collect them (past the grace period and the
    // GLACIER minimum of 90 days): the store is clean again.
    env.store.delete(&warm).await.expect("rm warm");
    env.store.delete(&cold).await.expect("rm cold");
    env.clock.advance(3_600_001);
    env.store.gc().await.expect("gc");
    env.clock.advance(181 * DAY_MS);
    env.store.gc().await.expect("gc again");
    let last = env.store.fsck(false).await.expect("fsck");
    assert!(last.problems.is_empty(), "{last}");
    assert!(exit(&last));
    env.store.close().await.expect("close");
}

/// A pack counter of the embedded store damaged behind its back (its live bytes off):
/// fsck reports `live_bytes_mismatch`, `--repair` recounts it, and fsck is then clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_live_bytes_counter_is_found_and_recounted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = support::settings(dir.path());
    s.chunking = strata::ChunkerParams {
        min: 4096,
        avg: 16384,
        max: 65536,
    };
    let store = Store::open(s.clone()).await.expect("open");
    let id = store.put(random_bytes(200_000, 31)).await.expect("put").id;
    store
        .move_blob(&id, strata::Tier::Warm)
        .await
        .expect("move");
    let first = store
        .meta()
        .manifest_range(&id, 0, 1)
        .await
        .expect("manifest")[0]
        .chunk;
    let pack = store
        .meta()
        .locations(&first)
        .await
        .expect("locations")
        .into_iter()
        .find(|l| l.tier == strata::Tier::Warm)
        .expect("warm copy")
        .pack;
    assert!(store.fsck(false).await.expect("fsck").is_clean());
    store.close().await.expect("close");
    drop(store);
    {
        let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir.path()).expect("cfs");
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), dir.path(), cfs).expect("open");
        let cf = db.cf_handle(strata::rocks::CF_PACK_STATS).expect("cf");
        let mut v = db
            .get_cf(cf, pack.as_bytes())
            .expect("get")
            .expect("counters");
        assert_eq!(v.len(), 24, "copies, last read, live bytes");
        let live = u64::from_be_bytes(v[16..24].try_into().expect("8 bytes"));
        v[16..24].copy_from_slice(&(live + 7).to_be_bytes());
        db.put_cf(cf, pack.as_bytes(), v).expect("put");
    }
    let store = Store::open(s).await.expect("reopen");
    let r = store.fsck(false).await.expect("fsck");
    assert_eq!(kinds(&r), [ProblemKind::LiveBytesMismatch].into(), "{r}");
    let fixed = store.fsck(true).await.expect("repair");
    assert!(
        fixed
            .problems
            .iter()
            .all(|p| matches!(p.repair, Some(Repair::Repaired(_)))),
        "{fixed}"
    );
    assert!(store.fsck(false).await.expect("fsck").is_clean());
    store.close().await.expect("close");
}
