//! Scrub and repair (issue 13 §4): damage in each tier is found, marked and repaired from
//! a healthy copy; reads in between return correct bytes or `Corrupt`; chunks with no
//! healthy copy are reported with the blob ranges they damage.

mod support;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata::engine::{Engine, WorkerKind};
use strata::object::FaultyObjectStore;
use strata::settings::Durability;
use strata::store::PausePoint;
use strata::{BlobId, ChunkId, ErrorKind, Health, ManualClock, Settings, Store, Tier};
use support::random_bytes;

const T0: u64 = 1_700_000_000_000;

/// One gate at `scrub-repair`: when armed, the scrub stops there (after recording what
/// it found, before repairing) until released.
#[derive(Default)]
struct Gate {
    armed: AtomicBool,
    arrived: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl PausePoint for Gate {
    fn at<'a>(&'a self, point: &'static str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            if point == "scrub-repair" && self.armed.swap(false, Ordering::SeqCst) {
                self.arrived.notify_one();
                self.release.notified().await;
            }
        })
    }
}

struct Env {
    store: Store,
    clock: Arc<ManualClock>,
    gate: Arc<Gate>,
    _warm: Arc<FaultyObjectStore>,
    dir: tempfile::TempDir,
    tweak: fn(&mut Settings),
}

impl Env {
    async fn open(tweak: fn(&mut Settings)) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(T0);
        let (store, gate, warm) = open_store(dir.path(), &clock, tweak).await;
        Env {
            store,
            clock,
            gate,
            _warm: warm,
            dir,
            tweak,
        }
    }

    /// Close the store, run `damage` on the directory, and open it again.
    async fn damage(self, damage: impl FnOnce(&Path)) -> Env {
        let Env {
            store,
            clock,
            dir,
            tweak,
            ..
        } = self;
        store.close().await.expect("close");
        drop(store);
        damage(dir.path());
        let (store, gate, warm) = open_store(dir.path(), &clock, tweak).await;
        Env {
            store,
            clock,
            gate,
            _warm: warm,
            dir,
            tweak,
        }
    }

    fn warm_dir(&self) -> PathBuf {
        self.dir.path().join("warm")
    }
}

async fn open_store(
    dir: &Path,
    clock: &Arc<ManualClock>,
    tweak: fn(&mut Settings),
) -> (Store, Arc<Gate>, Arc<FaultyObjectStore>) {
    let (warm, _cold, mut components) =
        support::counted_local_tiers(&dir.join("warm"), &dir.join("cold"), clock.clone(), 0);
    let gate = Arc::new(Gate::default());
    components.pause = Some(gate.clone());
    let mut s = support::small_pack_settings(dir);
    s.tiers.promote = false;
    tweak(&mut s);
    let store = Store::open_with(s, components).await.expect("open store");
    (store, gate, warm)
}

fn replicated(s: &mut Settings) {
    s.durability.mode = Durability::Replicated;
}

async fn entries(store: &Store, id: &BlobId) -> Vec<strata::ManifestEntry> {
    let size = store.head(id).await.expect("head").size;
    store
        .meta()
        .manifest_range(id, 0, size)
        .await
        .expect("manifest")
}

async fn copy_in(store: &Store, chunk: &ChunkId, tier: Tier) -> Vec<strata::model::Location> {
    store
        .meta()
        .locations(chunk)
        .await
        .expect("locations")
        .into_iter()
        .filter(|l| l.tier == tier)
        .collect()
}

/// Flip one byte of a chunk's value in the hot tier, through RocksDB.
fn corrupt_hot(data_dir: &Path, chunk: &ChunkId) {
    let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), data_dir).expect("cfs");
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), data_dir, cfs).expect("open");
    let cf = db.cf_handle(strata::rocks::CF_CHUNKS).expect("chunks cf");
    let mut value = db
        .get_cf(cf, chunk.as_bytes())
        .expect("get")
        .expect("chunk is stored");
    let middle = value.len() / 2;
    value[middle] ^= 0x40;
    db.put_cf(cf, chunk.as_bytes(), value).expect("put");
}

/// The warm pack files under a local tier directory.
fn pack_files(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root.join("data").join("warm"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

fn pack_path(root: &Path, pack: &str) -> PathBuf {
    root.join("data").join(pack)
}

/// A read while a damaged copy is recorded but not yet repaired: the right bytes, or
/// `Corrupt`, never other bytes.
async fn read_is_right_or_corrupt(store: &Store, id: &BlobId, data: &Bytes) {
    match store.get(id).await {
        Ok(got) => assert!(got == *data, "a read returned wrong bytes"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_hot_copy_is_marked_then_rewritten_from_warm() {
    let env = Env::open(replicated).await;
    let data = random_bytes(400_000, 1);
    let id = env.store.put(data.clone()).await.expect("put").id;
    let victim = entries(&env.store, &id).await[3].chunk;
    assert_eq!(copy_in(&env.store, &victim, Tier::Warm).await.len(), 1);
    let env = env
        .damage(|dir| corrupt_hot(&dir.join("db"), &victim))
        .await;

    env.gate.armed.store(true, Ordering::SeqCst);
    let store = env.store.clone();
    let scrub = tokio::spawn(async move { store.scrub().await });
    tokio::time::timeout(Duration::from_secs(60), env.gate.arrived.notified())
        .await
        .expect("scrub reached its repair step");
    // Found and recorded, not yet repaired.
    let hot = copy_in(&env.store, &victim, Tier::Hot).await;
    assert_eq!(hot[0].health, Health::Corrupt, "{hot:?}");
    read_is_right_or_corrupt(&env.store, &id, &data).await;
    env.gate.release.notify_one();
    let report = scrub.await.expect("join").expect("scrub");

    assert_eq!(report.corrupt, 1, "{report:?}");
    assert_eq!(report.missing, 0, "{report:?}");
    assert_eq!(report.repaired, 1, "{report:?}");
    assert_eq!(report.unrepairable, 0, "{report:?}");
    assert_eq!(report.damaged[0].chunk, victim);
    assert_eq!(report.damaged[0].tier, Tier::Hot);
    assert!(report.copies_checked >= 2 * entries(&env.store, &id).await.len() as u64);
    assert!(report.bytes_read >= 2 * data.len() as u64, "{report:?}");
    let hot = copy_in(&env.store, &victim, Tier::Hot).await;
    assert_eq!(hot[0].health, Health::Ok, "{hot:?}");
    assert!(env.store.verify(None).await.expect("verify").is_clean());
    assert_eq!(env.store.get(&id).await.expect("get"), data);
    // A second pass finds nothing left to do.
    let again = env.store.scrub().await.expect("scrub");
    assert_eq!(
        (again.corrupt, again.missing, again.repaired),
        (0, 0, 0),
        "{again:?}"
    );
    env.store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_and_missing_warm_packs_are_repacked_from_hot() {
    let env = Env::open(replicated).await;
    let a = random_bytes(300_000, 2);
    let id_a = env.store.put(a.clone()).await.expect("put").id;
    let b = random_bytes(300_000, 3);
    let id_b = env.store.put(b.clone()).await.expect("put").id;
    let victim = entries(&env.store, &id_a).await[2].chunk;
    let damaged = copy_in(&env.store, &victim, Tier::Warm).await.remove(0);
    let gone = copy_in(
        &env.store,
        &entries(&env.store, &id_b).await[0].chunk,
        Tier::Warm,
    )
    .await
    .remove(0);
    assert_ne!(
        damaged.pack, gone.pack,
        "the two blobs were replicated in separate packs"
    );
    let warm_dir = env.warm_dir();
    let packs_before = pack_files(&warm_dir).len();
    let env = env
        .damage(|_| {
            let path = pack_path(&warm_dir, &damaged.pack);
            let mut bytes = std::fs::read(&path).expect("pack");
            bytes[(damaged.offset + damaged.length / 2) as usize] ^= 0x01;
            std::fs::write(&path, bytes).expect("write");
            std::fs::remove_file(pack_path(&warm_dir, &gone.pack)).expect("remove");
        })
        .await;
    let gone_chunks = env
        .store
        .meta()
        .pack_locations(&gone.pack)
        .await
        .expect("pack locations")
        .len() as u64;

    let report = env.store.scrub().await.expect("scrub");
    assert_eq!(report.corrupt, 1, "{report:?}");
    assert_eq!(report.missing, gone_chunks, "{report:?}");
    assert_eq!(report.repaired, 1 + gone_chunks, "{report:?}");
    assert_eq!(report.unrepairable, 0, "{report:?}");
    // The damaged copies' records are gone, replaced by copies in new packs.
    let warm = copy_in(&env.store, &victim, Tier::Warm).await;
    assert_eq!(warm.len(), 1, "{warm:?}");
    assert_ne!(warm[0].pack, damaged.pack);
    assert_eq!(warm[0].health, Health::Ok);
    assert!(env
        .store
        .meta()
        .pack_locations(&gone.pack)
        .await
        .expect("pack locations")
        .is_empty());
    // One pack file deleted, at least one written by the repair.
    assert!(pack_files(&warm_dir).len() >= packs_before);
    let verify = env.store.verify(None).await.expect("verify");
    assert!(verify.is_clean(), "{verify}");
    // Every chunk reads from its warm copy alone: move both blobs out of hot.
    env.store.move_blob(&id_a, Tier::Warm).await.expect("move");
    env.store.move_blob(&id_b, Tier::Warm).await.expect("move");
    assert_eq!(env.store.get(&id_a).await.expect("get"), a);
    assert_eq!(env.store.get(&id_b).await.expect("get"), b);
    env.store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_without_a_healthy_copy_is_reported_with_its_blob_ranges() {
    let env = Env::open(|_| {}).await;
    let data = random_bytes(300_000, 4);
    let id = env.store.put(data.clone()).await.expect("put").id;
    let other = random_bytes(100_000, 5);
    let other_id = env.store.put(other.clone()).await.expect("put").id;
    let victim = entries(&env.store, &id).await[1];
    let env = env
        .damage(|dir| corrupt_hot(&dir.join("db"), &victim.chunk))
        .await;

    let report = env.store.scrub().await.expect("scrub");
    assert_eq!(report.corrupt, 1, "{report:?}");
    assert_eq!(report.unrepairable, 1, "{report:?}");
    assert!(!report.is_ok());
    let lost = &report.unrepairable_chunks[0];
    assert_eq!(lost.chunk, victim.chunk);
    assert_eq!(lost.damages.len(), 1, "{lost:?}");
    assert_eq!(lost.damages[0].blob, id);
    assert_eq!(lost.damages[0].range, victim.offset..victim.end());
    assert!(
        report.to_string().contains("unrepairable chunk"),
        "{report}"
    );
    // Never wrong bytes; the undamaged blob still reads.
    read_is_right_or_corrupt(&env.store, &id, &data).await;
    assert_eq!(env.store.get(&other_id).await.expect("get"), other);
    env.store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_copies_two_adds_a_warm_copy_and_the_worker_rescrubs_when_due() {
    let env = Env::open(|s| s.durability.min_copies = 2).await;
    let data = random_bytes(300_000, 6);
    let id = env.store.put(data.clone()).await.expect("put").id;
    let chunks = entries(&env.store, &id).await;
    let engine = Engine::new(env.store.clone());
    // Every copy was verified when it was written: nothing is due for the worker yet.
    let pass = engine.run_pass(WorkerKind::Scrub).await.expect("pass");
    assert_eq!(pass.chunks_moved, 0, "{pass:?}");
    env.clock
        .advance(env.store.settings().scrub.reverify_after_secs * 1000 + 1);
    let pass = engine.run_pass(WorkerKind::Scrub).await.expect("pass");
    assert_eq!(pass.chunks_moved, chunks.len() as u64, "{pass:?}");
    assert!(pass.errors.is_empty(), "{pass:?}");
    for e in &chunks {
        let warm = copy_in(&env.store, &e.chunk, Tier::Warm).await;
        assert_eq!(warm.len(), 1, "chunk {} got a warm copy", e.chunk);
        assert_eq!(copy_in(&env.store, &e.chunk, Tier::Hot).await.len(), 1);
    }
    // With two copies each, nothing more is added.
    let report = env.store.scrub().await.expect("scrub");
    assert_eq!(report.copies_added, 0, "{report:?}");
    assert_eq!(report.copies_checked, 2 * chunks.len() as u64, "{report:?}");
    env.store.move_blob(&id, Tier::Warm).await.expect("move");
    assert_eq!(env.store.get(&id).await.expect("get"), data);
    env.store.close().await.expect("close");
}

#[test]
fn cli_scrub_prints_json_and_exits_1_only_when_unrepairable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let file = dir.path().join("blob");
    std::fs::write(&file, random_bytes(200_000, 7)).expect("write");
    let out = support::run_strata(&data_dir, &["put", file.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{out:?}");

    let out = support::run_strata(&data_dir, &["scrub", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    for field in [
        "copies_checked",
        "bytes_read",
        "corrupt",
        "missing",
        "repaired",
        "unrepairable",
    ] {
        assert!(json[field].is_u64(), "{field} in {json}");
    }
    assert!(json["copies_checked"].as_u64().expect("n") > 0, "{json}");
    assert_eq!(json["corrupt"], 0);

    // One damaged hot chunk, with no other copy: unrepairable, exit 1.
    let chunk = {
        let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), &data_dir).expect("cfs");
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &data_dir, cfs).expect("db");
        let cf = db.cf_handle(strata::rocks::CF_CHUNKS).expect("cf");
        let first = db
            .iterator_cf(cf, rocksdb::IteratorMode::Start)
            .next()
            .expect("a chunk")
            .expect("read");
        ChunkId::from_bytes(first.0[..32].try_into().expect("32 bytes"))
    };
    corrupt_hot(&data_dir, &chunk);
    let out = support::run_strata(&data_dir, &["scrub", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["corrupt"], 1, "{json}");
    assert_eq!(json["unrepairable"], 1, "{json}");
    let out = support::run_strata(&data_dir, &["scrub"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("unrepairable chunk"), "{text}");
    assert!(text.contains("damages blob"), "{text}");
}
