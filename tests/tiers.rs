//! Warm and cold tiers on local directories (issue 4): moves hot → warm → cold and
//! back, restores, promotion on read, damaged packs, outages during a move, request
//! counts, and the CLI. The object stores are wrapped in `FaultyObjectStore` to count
//! requests and inject outages; the clock is manual so restores complete on demand.

mod support;

use support::run_strata as strata;

use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata::hot::faults::FaultyHot;
use strata::object::{FaultyObjectStore, ObjectStore, StorageClass};
use strata::store::Components;
use strata::{BlobId, ChunkId, ChunkerParams, ErrorKind, ManualClock, Settings, Store, Tier};
use support::random_bytes;

const T0: u64 = 1_700_000_000_000;
/// Restore delay of the local cold tier, in ms of the manual clock.
const RESTORE_DELAY_MS: u64 = 3_600_000;

struct Env {
    store: Store,
    warm: Arc<FaultyObjectStore>,
    cold: Arc<FaultyObjectStore>,
    clock: Arc<ManualClock>,
    dir: tempfile::TempDir,
}

async fn open_env(tweak: impl FnOnce(&mut Settings)) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let (warm, cold, components) = support::counted_local_tiers(
        &dir.path().join("warm"),
        &dir.path().join("cold"),
        clock.clone(),
        RESTORE_DELAY_MS,
    );
    let mut s = support::small_pack_settings(dir.path());
    tweak(&mut s);
    let store = Store::open_with(s, components).await.expect("open store");
    // Opening checked (and wrote) the store identity objects: count from here.
    warm.reset_counts();
    cold.reset_counts();
    Env {
        store,
        warm,
        cold,
        clock,
        dir,
    }
}

/// Half random, half compressible, so packs hold both raw and zstd chunks.
fn content(len: usize, seed: u64) -> Bytes {
    let mut v = random_bytes(len / 2, seed).to_vec();
    v.extend(
        std::iter::repeat_n(b"strata tiers ".iter().copied(), len)
            .flatten()
            .take(len - len / 2),
    );
    Bytes::from(v)
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

/// Distinct pack names holding copies of the blob's chunks in `tier`.
async fn packs_of(store: &Store, id: &BlobId, tier: Tier) -> Vec<String> {
    let mut packs = Vec::new();
    for c in chunk_ids(store, id).await {
        for l in store.meta().locations(&c).await.expect("locations") {
            if l.tier == tier && !packs.contains(&l.pack) {
                packs.push(l.pack);
            }
        }
    }
    packs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_hot_warm_cold_and_back() {
    let env = open_env(|s| s.tiers.promote = false).await;
    let data = content(900_000, 1);
    let id = env.store.put(data.clone()).await.expect("put").id;
    let size = data.len() as u64;
    let before = hot_bytes(&env.store, &id).await;

    let r = env
        .store
        .move_blob(&id, Tier::Warm)
        .await
        .expect("move to warm");
    assert!(r.packs_written >= 2, "{r:?}");
    assert_eq!(env.warm.count("put"), r.packs_written);
    let st = env.store.stat(&id).await.expect("stat");
    assert_eq!((st.tiers.hot, st.tiers.cold), (0, 0), "{st:?}");
    assert_eq!(st.tiers.warm, before, "{st:?}");
    assert!(env.store.get(&id).await.expect("get from warm") == data);
    assert_eq!(
        env.store
            .get_range(&id, 1000..200_000)
            .await
            .expect("range"),
        data.slice(1000..200_000)
    );

    env.store
        .move_blob(&id, Tier::Cold)
        .await
        .expect("move to cold");
    let st = env.store.stat(&id).await.expect("stat");
    assert_eq!((st.tiers.hot, st.tiers.warm), (0, 0), "{st:?}");
    assert_eq!(st.tiers.cold, before);
    let cold_packs = packs_of(&env.store, &id, Tier::Cold).await;
    assert!(!cold_packs.is_empty());

    // Archived: the first read asks for one restore per pack and fails; later reads do
    // not ask again.
    for _ in 0..3 {
        let err = env.store.get(&id).await.expect_err("archived");
        assert_eq!(err.kind(), ErrorKind::RestorePending, "{err}");
    }
    let err = env
        .store
        .wait_readable(&id, 0..size, Duration::ZERO)
        .await
        .expect_err("pending");
    assert_eq!(err.kind(), ErrorKind::RestorePending);
    assert_eq!(
        env.cold.count("restore"),
        cold_packs.len() as u64,
        "one restore request per pack"
    );
    let rec = env
        .store
        .meta()
        .pack(&cold_packs[0])
        .await
        .expect("pack")
        .expect("record");
    assert_eq!(rec.storage_class, StorageClass::Glacier);
    assert_eq!(rec.restore.state, strata::meta::RestoreState::Requested);
    assert_eq!(
        env.store.stat(&id).await.expect("stat").pending_restores,
        cold_packs.len() as u64
    );

    env.clock.advance(RESTORE_DELAY_MS + 1);
    env.store
        .wait_readable(&id, 0..size, Duration::ZERO)
        .await
        .expect("restored");
    assert_eq!(env.store.stat(&id).await.expect("stat").pending_restores, 0);
    assert!(env.store.get(&id).await.expect("get after restore") == data);

    env.store
        .move_blob(&id, Tier::Hot)
        .await
        .expect("move to hot");
    let st = env.store.stat(&id).await.expect("stat");
    assert_eq!((st.tiers.warm, st.tiers.cold), (0, 0), "{st:?}");
    env.warm.reset_counts();
    env.cold.reset_counts();
    assert!(env.store.get(&id).await.expect("get from hot") == data);
    assert_eq!(env.warm.total() + env.cold.total(), 0);
    assert!(env
        .store
        .verify(Some(&id))
        .await
        .expect("verify")
        .is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_read_promotes_and_second_read_touches_no_object_store() {
    let env = open_env(|_| {}).await;
    let data = content(600_000, 2);
    let id = env.store.put(data.clone()).await.expect("put").id;
    let before = hot_bytes(&env.store, &id).await;
    env.store.move_blob(&id, Tier::Warm).await.expect("move");
    assert_eq!(env.store.stat(&id).await.expect("stat").tiers.hot, 0);
    env.warm.reset_counts();

    assert!(env.store.get(&id).await.expect("first read") == data);
    let gets = env.warm.count("get_range");
    assert!(gets >= 1);
    assert!(
        gets <= packs_of(&env.store, &id, Tier::Warm).await.len() as u64,
        "coalesced: {gets} GETs"
    );
    // The read only queued the promotion; the worker writes it (here: now).
    env.store.run_promotions().await.expect("promote");
    let st = env.store.stat(&id).await.expect("stat");
    assert_eq!((st.tiers.hot, st.tiers.warm), (before, before), "{st:?}");

    env.warm.reset_counts();
    assert!(env.store.get(&id).await.expect("second read") == data);
    assert_eq!(env.warm.total(), 0, "{:?}", env.warm.counts());
    // A single-chunk range also comes from hot now.
    assert_eq!(
        env.store.get_range(&id, 10..20).await.expect("range"),
        data.slice(10..20)
    );
    assert_eq!(env.warm.total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_share_one_fetch() {
    let env = open_env(|s| s.cache.bytes = 64 << 20).await;
    let data = content(800_000, 13);
    let id = env.store.put(data.clone()).await.expect("put").id;
    env.store.move_blob(&id, Tier::Warm).await.expect("move");
    let packs = packs_of(&env.store, &id, Tier::Warm).await.len() as u64;
    env.warm.reset_counts();
    // Concurrent on one task: `Store::get`'s future is not `Send`-general enough to
    // spawn (a higher-ranked lifetime in `read_range`).
    let reads = futures::future::join_all((0..6).map(|_| env.store.get(&id))).await;
    for r in reads {
        assert!(r.expect("read") == data);
    }
    assert!(
        env.warm.count("get_range") <= packs,
        "{:?} for {packs} packs",
        env.warm.counts()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_off_keeps_reading_warm() {
    let env = open_env(|s| s.tiers.promote = false).await;
    let data = content(300_000, 3);
    let id = env.store.put(data.clone()).await.expect("put").id;
    env.store.move_blob(&id, Tier::Warm).await.expect("move");
    assert!(env.store.get(&id).await.expect("read") == data);
    assert_eq!(env.store.stat(&id).await.expect("stat").tiers.hot, 0);
}

/// Bytes of the blob's distinct chunks in hot, as `stat` counts them.
async fn hot_bytes(store: &Store, id: &BlobId) -> u64 {
    let st = store.stat(id).await.expect("stat");
    assert!(st.tiers.hot > 0);
    st.tiers.hot
}

fn pack_path(root: &Path, pack: &str) -> PathBuf {
    root.join("data").join(pack)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_deleted_pack_never_returns_wrong_bytes() {
    let env = open_env(|s| s.tiers.promote = false).await;
    let data = content(400_000, 4);
    let id = env.store.put(data.clone()).await.expect("put").id;
    env.store.move_blob(&id, Tier::Warm).await.expect("move");
    let packs = packs_of(&env.store, &id, Tier::Warm).await;
    let path = pack_path(&env.dir.path().join("warm"), &packs[0]);
    let mut bytes = std::fs::read(&path).expect("pack file");
    for b in bytes.iter_mut().take(20_000).skip(100) {
        *b ^= 0x5a;
    }
    std::fs::write(&path, &bytes).expect("corrupt");
    let err = env.store.get(&id).await.expect_err("corrupt pack");
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    let bad: usize = {
        let mut n = 0;
        for c in chunk_ids(&env.store, &id).await {
            n += env
                .store
                .meta()
                .locations(&c)
                .await
                .expect("locations")
                .iter()
                .filter(|l| l.health == strata::Health::Corrupt)
                .count();
        }
        n
    };
    assert!(bad >= 1, "the bad copy is marked");

    let data2 = content(300_000, 5);
    let id2 = env.store.put(data2.clone()).await.expect("put").id;
    env.store.move_blob(&id2, Tier::Warm).await.expect("move");
    for p in packs_of(&env.store, &id2, Tier::Warm).await {
        std::fs::remove_file(pack_path(&env.dir.path().join("warm"), &p)).expect("delete");
    }
    // A pack object not found is unavailable from here, and not marked missing: the
    // copy is shared, and confirming its loss is a scrubber's work (docs/tiers.md).
    let err = env.store.get(&id2).await.expect_err("deleted pack");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    for c in chunk_ids(&env.store, &id2).await {
        let locs = env.store.meta().locations(&c).await.expect("locations");
        assert!(
            locs.iter().all(|l| l.health != strata::Health::Missing),
            "{locs:?}"
        );
    }
}

/// Pack GC: blobs moved to warm and then deleted leave packs no copy names; gc (no grace
/// period) deletes their objects, keeps the packs of the surviving blob, and every
/// surviving blob reads back. Within the grace period nothing is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_deletes_pack_objects_no_copy_names() {
    let env = open_env(|s| {
        s.tiers.promote = false;
        s.gc.grace_secs = 3600;
    })
    .await;
    let warm_dir = env.dir.path().join("warm");
    let mut blobs = Vec::new();
    for seed in 0..4u64 {
        let data = random_bytes(300_000, 100 + seed);
        let id = env.store.put(data.clone()).await.expect("put").id;
        env.store.move_blob(&id, Tier::Warm).await.expect("move");
        let packs = packs_of(&env.store, &id, Tier::Warm).await;
        assert!(!packs.is_empty());
        blobs.push((id, data, packs));
    }
    for (id, _, _) in &blobs[1..] {
        env.store.delete(id).await.expect("delete");
    }
    let exists = |p: &str| pack_path(&warm_dir, p).exists();
    // Within the grace period: nothing goes.
    let report = env.store.gc().await.expect("gc");
    assert_eq!(report.packs_deleted, 0, "{report:?}");
    assert!(blobs.iter().all(|(_, _, ps)| ps.iter().all(|p| exists(p))));
    env.clock.advance(3_600_001);
    let report = env.store.gc().await.expect("gc");
    let dead: Vec<&String> = blobs[1..].iter().flat_map(|b| &b.2).collect();
    assert_eq!(report.packs_deleted, dead.len() as u64, "{report:?}");
    assert!(report.warm_bytes_reclaimed > 0, "{report:?}");
    for p in dead {
        assert!(!exists(p), "pack {p} of a deleted blob is gone");
        assert_eq!(env.store.meta().pack(p).await.expect("pack"), None);
    }
    let (id, data, packs) = &blobs[0];
    assert!(
        packs.iter().all(|p| exists(p)),
        "the surviving blob's packs stay"
    );
    assert!(env.store.get(id).await.expect("get") == *data);
    // Nothing left to do: a second run deletes nothing.
    assert_eq!(env.store.gc().await.expect("gc").packs_deleted, 0);
}

/// A pack cut short (a torn upload, a damaged disk) damages the copies past its end:
/// a read of them is `Corrupt` and marks them, not `InvalidInput`; copies before the
/// cut still read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_pack_is_corrupt_and_marked() {
    let env = open_env(|s| s.tiers.promote = false).await;
    let data = content(400_000, 14);
    let id = env.store.put(data.clone()).await.expect("put").id;
    env.store.move_blob(&id, Tier::Warm).await.expect("move");
    let packs = packs_of(&env.store, &id, Tier::Warm).await;
    let path = pack_path(&env.dir.path().join("warm"), &packs[0]);
    let len = std::fs::metadata(&path).expect("pack file").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open pack");
    f.set_len(len / 2).expect("truncate");
    drop(f);
    let err = env.store.get(&id).await.expect_err("truncated pack");
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    let mut marked = 0;
    for c in chunk_ids(&env.store, &id).await {
        let locs = env.store.meta().locations(&c).await.expect("locations");
        for l in locs.iter().filter(|l| l.pack == packs[0]) {
            if l.health == strata::Health::Corrupt {
                marked += 1;
                assert!(l.offset + l.length > len / 2, "{l:?} lies before the cut");
            }
        }
    }
    assert!(marked >= 1, "the copies past the cut are marked");
    // The first chunk lies before the cut: a range of it still reads.
    let first = env
        .store
        .get_range(&id, 0..1000)
        .await
        .expect("range before the cut");
    assert_eq!(&first[..], &data[..1000]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_healthy_copy_is_used_when_one_is_corrupt() {
    // Cold in an instant class, readable without restores.
    let env = open_env(|s| {
        s.tiers.promote = false;
        s.tiers.cold.storage_class = Some(StorageClass::GlacierIr);
    })
    .await;
    let data = content(300_000, 6);
    let id = env.store.put(data.clone()).await.expect("put").id;
    env.store.move_blob(&id, Tier::Cold).await.expect("move");
    // Give every chunk a second, corrupt copy in warm: the same pack bytes (same pack
    // id) under the warm name, damaged, recorded as healthy.
    let cold_root = env.dir.path().join("cold");
    for pack in packs_of(&env.store, &id, Tier::Cold).await {
        let warm_name = pack.replacen("cold/", "warm/", 1);
        let mut bytes = std::fs::read(pack_path(&cold_root, &pack)).expect("read pack");
        for b in bytes.iter_mut() {
            *b = b.wrapping_add(1);
        }
        env.warm
            .put(&warm_name, Bytes::from(bytes), StorageClass::Standard)
            .await
            .expect("put");
        let mut copies = Vec::new();
        for c in chunk_ids(&env.store, &id).await {
            for mut l in env.store.meta().locations(&c).await.expect("locations") {
                if l.pack == pack {
                    l.tier = Tier::Warm;
                    l.pack = warm_name.clone();
                    copies.push(l);
                }
            }
        }
        env.store
            .meta()
            .add_locations(&copies)
            .await
            .expect("add warm copies");
    }
    env.warm.reset_counts();
    assert!(env.store.get(&id).await.expect("read via the cold copy") == data);
    assert!(env.warm.count("get_range") >= 1, "warm was tried first");
    let st = env.store.stat(&id).await.expect("stat");
    assert_eq!(st.tiers.warm, 0, "warm copies are marked corrupt: {st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_during_move_loses_nothing_and_move_succeeds_later() {
    let env = open_env(|_| {}).await;
    let data = content(500_000, 7);
    let id = env.store.put(data.clone()).await.expect("put").id;
    let before = hot_bytes(&env.store, &id).await;
    env.warm.set_fail_all(true);
    let err = env
        .store
        .move_blob(&id, Tier::Warm)
        .await
        .expect_err("outage");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(env.store.get(&id).await.expect("still readable") == data);
    let st = env.store.stat(&id).await.expect("stat");
    assert_eq!((st.tiers.hot, st.tiers.warm), (before, 0), "{st:?}");

    env.warm.set_fail_all(false);
    env.store
        .move_blob(&id, Tier::Warm)
        .await
        .expect("move after the outage");
    let st = env.store.stat(&id).await.expect("stat");
    assert_eq!(st.tiers.hot, 0, "{st:?}");
    assert!(env.store.get(&id).await.expect("read from warm") == data);
    assert!(env
        .store
        .meta()
        .refcount_mismatches()
        .await
        .expect("fsck")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_wait_polls_until_the_restore_completes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = support::small_pack_settings(dir.path());
    s.tiers.cold.restore_delay_ms = 300;
    let store = Store::open(s).await.expect("open");
    let data = content(300_000, 8);
    let id = store.put(data.clone()).await.expect("put").id;
    store.move_blob(&id, Tier::Cold).await.expect("move");
    let err = store
        .get_wait(&id, None, Duration::ZERO)
        .await
        .expect_err("pending");
    assert_eq!(err.kind(), ErrorKind::RestorePending);
    let got = store
        .get_wait(&id, None, Duration::from_secs(10))
        .await
        .expect("waited");
    assert!(got == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_chunks_by_id_and_puts_after_moves_dedup() {
    let env = open_env(|_| {}).await;
    let data = content(300_000, 9);
    let id = env.store.put(data.clone()).await.expect("put").id;
    let ids = chunk_ids(&env.store, &id).await;
    env.store
        .move_chunks(&ids[..2], Tier::Warm)
        .await
        .expect("move two");
    let st = env.store.stat(&id).await.expect("stat");
    assert!(st.tiers.warm > 0 && st.tiers.hot > 0, "{st:?}");
    // Putting the same bytes again reuses the warm copies (readable by this node).
    let r = env.store.put(data.clone()).await.expect("put again");
    assert!(r.existed);
    let missing = ChunkId::of(b"no such chunk");
    assert_eq!(
        env.store
            .move_chunks(&[missing], Tier::Warm)
            .await
            .expect_err("unknown")
            .kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_durability_writes_a_warm_pack_before_acknowledging() {
    let env = open_env(|s| s.durability.mode = strata::settings::Durability::Replicated).await;
    let data = content(400_000, 10);
    let id = env.store.put(data.clone()).await.expect("put").id;
    let st = env.store.stat(&id).await.expect("stat");
    assert!(st.tiers.hot > 0 && st.tiers.warm == st.tiers.hot, "{st:?}");
    assert!(env.warm.count("put") >= 1);
}

/// `replicated` promises a copy every node can read: a move to hot keeps the warm copy
/// (with `local` durability the same move drops it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_move_to_hot_keeps_the_shared_copy() {
    for (mode, keeps) in [
        (strata::settings::Durability::Replicated, true),
        (strata::settings::Durability::Local, false),
    ] {
        let env = open_env(|s| s.durability.mode = mode).await;
        let data = content(400_000, 13);
        let id = env.store.put(data.clone()).await.expect("put").id;
        env.store.move_blob(&id, Tier::Warm).await.expect("to warm");
        let st = env.store.stat(&id).await.expect("stat");
        assert!(st.tiers.hot == 0 && st.tiers.warm > 0, "{mode:?}: {st:?}");
        env.store.move_blob(&id, Tier::Hot).await.expect("to hot");
        let st = env.store.stat(&id).await.expect("stat");
        assert!(st.tiers.hot > 0, "{mode:?}: {st:?}");
        assert_eq!(st.tiers.warm > 0, keeps, "{mode:?}: {st:?}");
        assert!(env.store.get(&id).await.expect("get") == data);
    }
}

/// Requests per GiB: moving 100 MiB to warm with the default pack size, and GETs of
/// one `get` of it (printed for docs/tiers.md and docs/performance.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_counts_for_100_mib() {
    let env = open_env(|s| {
        s.chunking = ChunkerParams::default();
        s.tiers.warm.pack_bytes = strata::settings::TierSettings::default().pack_bytes;
        s.cache.bytes = 256 << 20;
    })
    .await;
    let data = random_bytes(100 << 20, 11);
    let id = env.store.put(data.clone()).await.expect("put").id;
    env.store.move_blob(&id, Tier::Warm).await.expect("move");
    let puts = env.warm.count("put");
    println!(
        "moving 100 MiB to warm: {puts} PUTs, {:?}",
        env.warm.counts()
    );
    // 32 MiB packs: 3 full ones and the rest (1 GiB would be 32 full packs).
    assert!(puts <= 4, "{puts} PUTs for 100 MiB");
    env.warm.reset_counts();
    assert!(env.store.get(&id).await.expect("get") == data);
    println!("get of 100 MiB from warm: {:?}", env.warm.counts());
    assert!(env.warm.count("get_range") <= 8, "{:?}", env.warm.counts());
}

#[test]
fn cli_tier_move_and_get_wait() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().join("data");
    let file = tmp.path().join("in.bin");
    let data = content(500_000, 12);
    std::fs::write(&file, &data).expect("write");
    let put = strata(&data_dir, &["put", file.to_str().expect("path")]);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let id = String::from_utf8_lossy(&put.stdout)
        .lines()
        .last()
        .expect("id")
        .to_string();

    for to in ["warm", "cold"] {
        let mv = strata(&data_dir, &["tier", "move", &id, "--to", to, "--json"]);
        assert!(
            mv.status.success(),
            "{}",
            String::from_utf8_lossy(&mv.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&mv.stdout).expect("json");
        assert!(report["written"].as_u64().expect("written") > 0);
    }
    let stat = strata(&data_dir, &["stat", &id, "--json"]);
    let stat: serde_json::Value = serde_json::from_slice(&stat.stdout).expect("json");
    assert_eq!(stat["tiers"]["hot"], 0);

    let out = tmp.path().join("out.bin");
    let get = strata(&data_dir, &["get", &id, "-o", out.to_str().expect("path")]);
    assert_eq!(
        get.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert!(!out.exists());
    let get = strata(
        &data_dir,
        &[
            "get",
            &id,
            "--wait",
            "10",
            "-o",
            out.to_str().expect("path"),
        ],
    );
    assert!(
        get.status.success(),
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert!(std::fs::read(&out).expect("out") == data[..]);
    let bad = strata(&data_dir, &["tier", "move", &id, "--to", "lukewarm"]);
    assert_eq!(bad.status.code(), Some(2));
}

/// The budget measured on a full GiB: at most 40 PUTs to move it to warm with
/// default settings. Slow (a GiB through put, move and get), so run on demand:
/// `cargo test --release --test tiers -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn request_counts_for_1_gib() {
    let env = open_env(|s| {
        s.chunking = ChunkerParams::default();
        s.tiers.warm.pack_bytes = strata::settings::TierSettings::default().pack_bytes;
        s.cache.bytes = 256 << 20;
        s.tiers.promote = false;
    })
    .await;
    let data = random_bytes(1 << 30, 12);
    let id = env.store.put(data.clone()).await.expect("put").id;
    env.store.move_blob(&id, Tier::Warm).await.expect("move");
    let puts = env.warm.count("put");
    println!("moving 1 GiB to warm: {puts} PUTs, {:?}", env.warm.counts());
    assert!(puts <= 40, "{puts} PUTs per GiB");
    env.warm.reset_counts();
    let mut stream = env
        .store
        .get_stream(&id, 0..data.len() as u64)
        .await
        .expect("stream");
    let mut pos = 0usize;
    while let Some(piece) = futures::StreamExt::next(&mut stream).await {
        let piece = piece.expect("piece");
        assert!(piece[..] == data[pos..pos + piece.len()]);
        pos += piece.len();
    }
    assert_eq!(pos, data.len());
    println!("streaming 1 GiB from warm: {:?}", env.warm.counts());
    // Coalesced per pack and stream window (64 MiB windows cut packs in two).
    assert!(env.warm.count("get_range") <= 64, "{:?}", env.warm.counts());
}

/// Regression: `gc` looped forever once a full page (1,024) of its candidates had copies
/// only in warm or cold. Those keep their records (no pack GC yet), so the same page came
/// back on every round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_removes_dead_chunks_that_live_only_in_warm() {
    let env = open_env(|s| {
        s.chunking = ChunkerParams {
            min: 64,
            avg: 256,
            max: 1024,
        };
        s.gc.grace_secs = 0;
    })
    .await;
    let data = random_bytes(600 << 10, 91);
    let put = env.store.put(data.clone()).await.unwrap();
    assert!(put.chunks > 1024, "{} chunks", put.chunks);
    env.store.move_blob(&put.id, Tier::Warm).await.unwrap();
    env.store.delete(&put.id).await.unwrap();
    let report = tokio::time::timeout(Duration::from_secs(60), env.store.gc())
        .await
        .expect("gc returned")
        .unwrap();
    // No hot copy was left to remove; the warm copies go, and their packs with them
    // (more than a page of the queue: every page is collected).
    assert_eq!(report.chunks_removed, 0);
    assert!(report.packs_deleted >= 1, "{report:?}");
    assert_eq!(report.unreferenced_kept, 0, "{report:?}");
    let queued = env
        .store
        .meta()
        .gc_candidates(u64::MAX, None, 10)
        .await
        .unwrap();
    assert!(queued.is_empty(), "still queued: {queued:?}");
    // A blob deleted after them is collected too.
    let later = env.store.put(random_bytes(64 << 10, 92)).await.unwrap();
    env.store.delete(&later.id).await.unwrap();
    let report = env.store.gc().await.unwrap();
    assert_eq!(report.chunks_removed, later.new_chunks);
    assert!(later.new_chunks > 0);
    assert!(env
        .store
        .meta()
        .refcount_mismatches()
        .await
        .unwrap()
        .is_empty());
    env.store.close().await.unwrap();
}

/// Before a `get --wait` reads, it checks for archived chunks; for a blob in hot that
/// check must come from metadata, not from reading every chunk (which the read then
/// reads again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_hot_blob_reads_no_chunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = support::small_pack_settings(dir.path());
    let db = strata::rocks::open(&dir.path().join("hot"), &s.hot).expect("hot db");
    // The wrapper counts the calls that read chunk values.
    let hot = FaultyHot::new(Arc::new(strata::hot::HotTier::new(db)));
    let reads = || hot.value_reads.load(std::sync::atomic::Ordering::SeqCst);
    let components = Components {
        hot: Some(hot.clone() as Arc<dyn strata::hot::ChunkTier>),
        ..Components::default()
    };
    let store = Store::open_with(s, components).await.expect("open");
    let data = content(300_000, 21);
    let id = store.put(data.clone()).await.expect("put").id;
    let chunks = store.stat(&id).await.expect("stat").distinct_chunks;
    assert!(chunks > 5);
    let before = reads();
    store
        .wait_readable(&id, 0..data.len() as u64, Duration::ZERO)
        .await
        .expect("nothing archived");
    assert_eq!(reads(), before, "the check read chunk values");
    // The read itself reads each chunk once (the chunk cache is off here).
    assert!(
        store
            .get_wait(&id, None, Duration::ZERO)
            .await
            .expect("get")
            == data
    );
    assert_eq!(reads() - before, chunks);
    store.close().await.expect("close");
}

/// The pack files in a local tier directory.
fn warm_pack_files(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(root.join("data").join("warm"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| format!("warm/{}", e.file_name().to_string_lossy()))
        .collect();
    out.sort();
    out
}

/// Sparse-pack rewrite: blobs moved to warm together share packs; once most are
/// deleted, gc (no grace period) rewrites the packs left below half live into new
/// packs, deletes the old objects, and every surviving blob reads back from warm alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_rewrites_sparse_packs_and_deletes_dead_ones() {
    let env = open_env(|s| {
        s.tiers.promote = false;
        s.gc.grace_secs = 0;
    })
    .await;
    let warm_dir = env.dir.path().join("warm");
    let mut blobs = Vec::new();
    let mut all = Vec::new();
    for seed in 0..8u64 {
        let data = random_bytes(120_000, 200 + seed);
        let id = env.store.put(data.clone()).await.expect("put").id;
        all.extend(chunk_ids(&env.store, &id).await);
        blobs.push((id, data));
    }
    // One move of all chunks: the blobs share packs.
    env.store.move_chunks(&all, Tier::Warm).await.expect("move");
    let before = warm_pack_files(&warm_dir);
    assert!(before.len() >= 3, "{before:?}");
    // Keep blobs 0 and 7 (first and last pack), delete the rest.
    for (id, _) in &blobs[1..7] {
        env.store.delete(id).await.expect("delete");
    }
    env.clock.advance(1);
    let report = env.store.gc().await.expect("gc");
    assert!(report.packs_rewritten >= 1, "{report:?}");
    assert!(report.bytes_rewritten > 0, "{report:?}");
    assert!(report.errors.is_empty(), "{report:?}");
    assert!(report.requests > report.packs_deleted, "{report:?}");
    // Every pack object left is named by a record with copies in it, at least half
    // live; every other object is gone.
    let after = warm_pack_files(&warm_dir);
    assert_eq!(
        report.packs_deleted as usize,
        before.iter().filter(|p| !after.contains(p)).count(),
        "{report:?}"
    );
    for p in &after {
        let rec = env
            .store
            .meta()
            .pack(p)
            .await
            .expect("pack")
            .expect("recorded");
        let copies = env.store.meta().pack_locations(p).await.expect("copies");
        assert!(!copies.is_empty(), "{p} has copies");
        let live: u64 = copies.iter().map(|l| l.length).sum();
        assert_eq!(rec.live_bytes, live, "{p}");
        assert!(live * 2 >= rec.size, "{p}: {live} of {} live", rec.size);
    }
    for (id, data) in [&blobs[0], &blobs[7]] {
        assert!(env.store.get(id).await.expect("get") == *data);
    }
    let verify = env.store.verify(None).await.expect("verify");
    assert!(verify.is_clean(), "{verify}");
    // Nothing left to do.
    let again = env.store.gc().await.expect("gc");
    assert_eq!(
        (again.packs_rewritten, again.packs_deleted),
        (0, 0),
        "{again:?}"
    );
}

/// Orphans: a move whose upload succeeded and whose commit failed leaves an object no
/// record names. gc keeps it through the grace period (a put may be about to commit
/// it) and deletes it after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_deletes_orphan_pack_objects_only_after_the_grace_period() {
    use std::sync::atomic::Ordering;
    use std::sync::Mutex;
    use strata::meta::faults::FaultyMeta;
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let warm_dir = dir.path().join("warm");
    let (_warm, _cold, mut components) =
        support::counted_local_tiers(&warm_dir, &dir.path().join("cold"), clock.clone(), 0);
    let slot: Arc<Mutex<Option<Arc<FaultyMeta>>>> = Arc::default();
    let fill = slot.clone();
    components.wrap_meta = Some(Box::new(move |inner| {
        let f = FaultyMeta::new(inner);
        *fill.lock().expect("slot") = Some(f.clone());
        f
    }));
    let mut s = support::small_pack_settings(dir.path());
    s.tiers.promote = false;
    s.gc.grace_secs = 3600;
    let store = Store::open_with(s, components).await.expect("open");
    let meta = slot.lock().expect("slot").clone().expect("wrapped");
    let data = random_bytes(300_000, 300);
    let id = store.put(data.clone()).await.expect("put").id;

    // `fail_commit` fails commits, `commit_placement` among them.
    meta.fail_commit.store(true, Ordering::SeqCst);
    // The pack is uploaded, then the commit fails: the move fails, nothing recorded.
    let err = store
        .move_blob(&id, Tier::Warm)
        .await
        .expect_err("commit fails");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    meta.fail_commit.store(false, Ordering::SeqCst);
    let orphans = warm_pack_files(&warm_dir);
    assert!(!orphans.is_empty(), "the upload happened");
    for p in &orphans {
        assert_eq!(store.meta().pack(p).await.expect("pack"), None);
    }

    // Within the grace period it stays.
    clock.advance(3_000_000);
    let report = store.gc().await.expect("gc");
    assert_eq!(report.orphan_packs_deleted, 0, "{report:?}");
    assert_eq!(warm_pack_files(&warm_dir), orphans);
    // Past the grace period it goes.
    clock.advance(700_000);
    let report = store.gc().await.expect("gc");
    assert_eq!(
        report.orphan_packs_deleted,
        orphans.len() as u64,
        "{report:?}"
    );
    assert!(report.warm_bytes_reclaimed > 0, "{report:?}");
    assert!(warm_pack_files(&warm_dir).is_empty());
    assert!(store.get(&id).await.expect("get") == data);

    // A retried move writes the same packs (names come from content) and records them:
    // gc past any grace period keeps recorded objects.
    store.move_blob(&id, Tier::Warm).await.expect("move");
    let mut live = packs_of(&store, &id, Tier::Warm).await;
    live.sort();
    assert!(
        orphans.iter().all(|o| live.contains(o)),
        "the same content makes the same pack names: {live:?} {orphans:?}"
    );
    clock.advance(7_200_000);
    let report = store.gc().await.expect("gc");
    assert_eq!(report.orphan_packs_deleted, 0, "{report:?}");
    assert_eq!(warm_pack_files(&warm_dir), live);
    assert!(store.get(&id).await.expect("get") == data);
    store.close().await.expect("close");
}
