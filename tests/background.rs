//! Work that left the request paths (issue 12): promotion through a bounded queue and
//! its worker, an access flush that keeps a failed batch, and gc that no longer stops
//! puts and reads (the hot-deletion rule of docs/design.md, "Deleting hot bytes while
//! puts run", forced through both of its interleavings with pause points).

mod support;

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata::hot::faults::FaultyHot;
use strata::meta::faults::FaultyMeta;
use strata::meta::MetaStore;
use strata::object::{LocalObjectStore, ObjectStore};
use strata::store::{Components, PausePoint};
use strata::{BlobId, ChunkId, ChunkerParams, ManualClock, Settings, Store, Tier};
use support::random_bytes;

const T0: u64 = 1_700_000_000_000;
/// Longest any single step here may take before the test calls it a hang (the old
/// gc fence deadlocked these interleavings).
const STEP: Duration = Duration::from_secs(60);

fn settings(dir: &Path) -> Settings {
    let mut s = Settings {
        data_dir: dir.join("db"),
        ..Settings::default()
    };
    s.hot.sync = false;
    s.chunking = ChunkerParams {
        min: 4096,
        avg: 16384,
        max: 65536,
    };
    s.cache.bytes = 0;
    s.tiers.warm.pack_bytes = 256 * 1024;
    // Flushes only when a test asks (or at close).
    s.access.flush_interval_ms = 3_600_000;
    s
}

/// One-shot gates at named points: an armed point holds the first operation reaching
/// it until released.
#[derive(Default)]
struct Gates {
    gates: Mutex<HashMap<&'static str, Arc<Gate>>>,
}

#[derive(Default)]
struct Gate {
    armed: AtomicBool,
    arrived: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl Gates {
    fn gate(&self, point: &'static str) -> Arc<Gate> {
        self.gates.lock().unwrap().entry(point).or_default().clone()
    }
    fn arm(&self, point: &'static str) {
        self.gate(point).armed.store(true, Ordering::SeqCst);
    }
    async fn arrived(&self, point: &'static str) {
        tokio::time::timeout(STEP, self.gate(point).arrived.notified())
            .await
            .unwrap_or_else(|_| panic!("nothing reached {point}"));
    }
    fn release(&self, point: &'static str) {
        self.gate(point).release.notify_one();
    }
}

impl PausePoint for Gates {
    fn at<'a>(&'a self, point: &'static str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let gate = self.gate(point);
            if gate.armed.swap(false, Ordering::SeqCst) {
                gate.arrived.notify_one();
                gate.release.notified().await;
            }
        })
    }
}

struct Env {
    store: Store,
    clock: Arc<ManualClock>,
    gates: Arc<Gates>,
    meta: Arc<FaultyMeta>,
    hot: Arc<FaultyHot>,
    _dir: tempfile::TempDir,
}

async fn open_env(tweak: impl FnOnce(&mut Settings)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut s = settings(dir.path());
    tweak(&mut s);
    let db = strata::rocks::open(&dir.path().join("hot"), &s.hot).unwrap();
    let hot = FaultyHot::new(Arc::new(strata::hot::HotTier::new(db)));
    let warm = LocalObjectStore::new(dir.path().join("warm"), clock.clone(), 0).with_fsync(false);
    let gates = Arc::new(Gates::default());
    let slot: Arc<Mutex<Option<Arc<FaultyMeta>>>> = Default::default();
    let fill = slot.clone();
    let components = Components {
        clock: Some(clock.clone()),
        hot: Some(hot.clone()),
        warm: Some(Arc::new(warm) as Arc<dyn ObjectStore>),
        pause: Some(gates.clone()),
        wrap_meta: Some(Box::new(move |inner| {
            let f = FaultyMeta::new(inner);
            *fill.lock().unwrap() = Some(f.clone());
            f
        })),
        ..Components::default()
    };
    let store = Store::open_with(s, components).await.unwrap();
    let meta = slot.lock().unwrap().clone().unwrap();
    Env {
        store,
        clock,
        gates,
        meta,
        hot,
        _dir: dir,
    }
}

async fn chunk_ids(store: &Store, id: &BlobId) -> Vec<ChunkId> {
    let mut ids: Vec<ChunkId> = store
        .meta()
        .manifest_range(id, 0, u64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|e| e.chunk)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

async fn timed<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish"))
}

// ---------------------------------------------------------------- promotion

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_read_does_not_wait_for_a_failing_promotion() {
    let env = open_env(|_| {}).await;
    let data = random_bytes(400_000, 1);
    let id = env.store.put(data.clone()).await.unwrap().id;
    env.store.move_blob(&id, Tier::Warm).await.unwrap();
    // Every hot write fails: on the read path this failed (or slowed) the read.
    env.hot.writes.arm(0);
    assert_eq!(env.store.get(&id).await.unwrap(), data);
    env.store.run_promotions().await.unwrap();
    let st = env.store.promotion_stats();
    assert!(st.queued > 0 && st.failed > 0 && st.promoted == 0, "{st:?}");
    assert_eq!(env.store.stat(&id).await.unwrap().tiers.hot, 0);
    // Once writes work again, the next read promotes.
    env.hot.writes.disarm();
    assert_eq!(env.store.get(&id).await.unwrap(), data);
    env.store.run_promotions().await.unwrap();
    let st = env.store.stat(&id).await.unwrap();
    assert_eq!(st.tiers.hot, st.tiers.warm, "{st:?}");
    assert!(env.store.verify(Some(&id)).await.unwrap().is_clean());
    env.store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_waits_for_the_nth_read() {
    let env = open_env(|s| s.policy.promote_after_reads = 3).await;
    let data = random_bytes(200_000, 2);
    let id = env.store.put(data.clone()).await.unwrap().id;
    env.store.move_blob(&id, Tier::Warm).await.unwrap();
    for read in 1..=3 {
        assert_eq!(env.store.get(&id).await.unwrap(), data);
        env.store.run_promotions().await.unwrap();
        let hot = env.store.stat(&id).await.unwrap().tiers.hot;
        if read < 3 {
            assert_eq!(hot, 0, "promoted after {read} read(s)");
            assert_eq!(env.store.promotion_stats().queued, 0);
        } else {
            assert_eq!(hot, data.len() as u64, "not promoted after {read} reads");
        }
    }
    env.store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_off_by_setting_or_zero_reads_queues_nothing() {
    for tweak in [
        (|s: &mut Settings| s.tiers.promote = false) as fn(&mut Settings),
        |s: &mut Settings| s.policy.promote_after_reads = 0,
    ] {
        let env = open_env(tweak).await;
        let data = random_bytes(100_000, 3);
        let id = env.store.put(data.clone()).await.unwrap().id;
        env.store.move_blob(&id, Tier::Warm).await.unwrap();
        assert_eq!(env.store.get(&id).await.unwrap(), data);
        env.store.run_promotions().await.unwrap();
        assert_eq!(env.store.promotion_stats().queued, 0);
        assert_eq!(env.store.stat(&id).await.unwrap().tiers.hot, 0);
        env.store.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_over_the_byte_budget_is_skipped_and_counted() {
    // 100 kB/s on the manual clock: one read of 600 kB gets about 100 kB promoted.
    let env = open_env(|s| s.policy.promote_max_bytes_per_sec = 100_000).await;
    let data = random_bytes(600_000, 4);
    let id = env.store.put(data.clone()).await.unwrap().id;
    env.store.move_blob(&id, Tier::Warm).await.unwrap();
    assert_eq!(env.store.get(&id).await.unwrap(), data);
    env.store.run_promotions().await.unwrap();
    let st = env.store.promotion_stats();
    assert!(st.promoted > 0 && st.skipped_rate > 0, "{st:?}");
    let hot = env.store.stat(&id).await.unwrap().tiers.hot;
    assert!(hot > 0 && hot <= 100_000 + 65_536, "{hot} bytes promoted");
    // Ten seconds later the budget has refilled (to one second's worth).
    env.clock.advance(10_000);
    assert_eq!(env.store.get(&id).await.unwrap(), data);
    env.store.run_promotions().await.unwrap();
    let more = env.store.stat(&id).await.unwrap().tiers.hot;
    assert!(
        more > hot && more <= hot + 100_000 + 65_536,
        "{hot} → {more}"
    );
    env.store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_drains_queued_promotions() {
    let env = open_env(|_| {}).await;
    let data = random_bytes(300_000, 5);
    let id = env.store.put(data.clone()).await.unwrap().id;
    env.store.move_blob(&id, Tier::Warm).await.unwrap();
    assert_eq!(env.store.get(&id).await.unwrap(), data);
    let meta = env.meta.clone();
    let chunks = chunk_ids(&env.store, &id).await;
    env.store.close().await.unwrap();
    // Whatever the worker had not written yet, the final tick did.
    let locs = meta.locations_many(&chunks).await.unwrap();
    assert!(
        chunks
            .iter()
            .all(|c| locs[c].iter().any(|l| l.tier == Tier::Hot)),
        "a queued promotion was lost at close"
    );
}

// ---------------------------------------------------------------- access flush

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_access_flush_keeps_its_reads_until_the_fault_clears() {
    let env = open_env(|_| {}).await;
    let data = random_bytes(50_000, 6);
    let id = env.store.put(data.clone()).await.unwrap().id;
    let chunks = chunk_ids(&env.store, &id).await;
    assert_eq!(env.store.get(&id).await.unwrap(), data);
    env.meta.fail_all.store(true, Ordering::SeqCst);
    assert!(env.store.flush_access().await.is_err());
    assert_eq!(env.store.access_backlog(), (0, chunks.len()), "batch kept");
    env.meta.fail_all.store(false, Ordering::SeqCst);
    // Reads before the retry join the kept batch.
    assert_eq!(env.store.get(&id).await.unwrap(), data);
    assert_eq!(env.store.access_backlog(), (0, chunks.len()));
    // The hot-index half of the flush may still fail (a backend without the engine
    // tables); the read counts must have arrived.
    let _ = env.store.flush_access().await;
    assert_eq!(env.store.access_backlog().1, 0);
    for c in &chunks {
        let rec = env.meta.chunk(c).await.unwrap().unwrap();
        assert_eq!(rec.access_count, 2, "both reads of {c} counted");
        assert_eq!(rec.last_access_ms, Some(T0));
    }
    env.store.close().await.unwrap();
}

// ---------------------------------------------------------------- gc beside puts

/// Put `n` blobs of `size` bytes, delete them, and move the clock past the grace: gc
/// has `n * size` bytes to remove and compact away.
async fn garbage(env: &Env, n: u64, size: usize) {
    for i in 0..n {
        let id = env
            .store
            .put(random_bytes(size, 1000 + i))
            .await
            .unwrap()
            .id;
        env.store.delete(&id).await.unwrap();
    }
    env.clock.advance(3_600_000 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_and_reads_complete_while_gc_runs() {
    let env = open_env(|_| {}).await;
    let keep = random_bytes(300_000, 7);
    let kept = env.store.put(keep.clone()).await.unwrap().id;
    garbage(&env, 16, 4 << 20).await;
    let gc_store = env.store.clone();
    let gc = tokio::spawn(async move {
        let r = gc_store.gc().await;
        (r, Instant::now())
    });
    let mut finished = Vec::new();
    let mut ids = Vec::new();
    let mut i = 0;
    while !gc.is_finished() || i < 3 {
        let data = random_bytes(100_000, 2000 + i);
        let id = timed("put", env.store.put(data.clone())).await.unwrap().id;
        finished.push(Instant::now());
        assert_eq!(timed("read", env.store.get(&kept)).await.unwrap(), keep);
        ids.push((id, data));
        i += 1;
    }
    let (report, gc_done) = gc.await.unwrap();
    let report = report.unwrap();
    assert!(report.chunks_removed > 0, "{report:?}");
    assert!(
        finished.iter().any(|t| *t < gc_done),
        "no put finished before gc did"
    );
    for (id, data) in &ids {
        assert_eq!(&env.store.get(id).await.unwrap(), data);
    }
    assert!(env.store.verify(None).await.unwrap().is_clean());
    env.store.close().await.unwrap();
}

/// gc has removed the chunk's location; before it deletes the bytes, a put of the same
/// content writes and commits the chunk: the re-read under the gate keeps the bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_keeps_bytes_a_put_committed_after_its_metadata_commit() {
    let env = open_env(|_| {}).await;
    let data = random_bytes(200_000, 8);
    let id = env.store.put(data.clone()).await.unwrap().id;
    env.store.delete(&id).await.unwrap();
    env.clock.advance(3_600_000 + 1);
    env.gates.arm("hot-delete");
    let gc_store = env.store.clone();
    let gc = tokio::spawn(async move { gc_store.gc().await });
    env.gates.arrived("hot-delete").await;
    // gc holds nothing a put waits for: the put runs to its commit.
    let again = timed("put during gc", env.store.put(data.clone()))
        .await
        .unwrap();
    assert_eq!(again.id, id);
    assert!(again.new_chunks > 0, "{again:?}");
    env.gates.release("hot-delete");
    timed("gc", gc).await.unwrap().unwrap();
    assert_eq!(env.store.get(&id).await.unwrap(), data);
    assert!(env.store.verify(None).await.unwrap().is_clean());
    env.store.close().await.unwrap();
}

/// gc has removed the chunk's location; a put of the same content has written the
/// chunk and not yet committed when gc deletes: the registry keeps the bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_skips_bytes_a_put_in_flight_has_written() {
    let env = open_env(|_| {}).await;
    let data = random_bytes(200_000, 9);
    let id = env.store.put(data.clone()).await.unwrap().id;
    env.store.delete(&id).await.unwrap();
    env.clock.advance(3_600_000 + 1);
    env.gates.arm("hot-delete");
    let gc_store = env.store.clone();
    let gc = tokio::spawn(async move { gc_store.gc().await });
    env.gates.arrived("hot-delete").await;
    env.gates.arm("put-commit");
    let put_store = env.store.clone();
    let put_data = data.clone();
    let put = tokio::spawn(async move { put_store.put(put_data).await });
    env.gates.arrived("put-commit").await;
    // The put has written its chunks and holds them; gc deletes now, and finishes
    // (its compaction included) while the put is still uncommitted.
    env.gates.release("hot-delete");
    let report = timed("gc", gc).await.unwrap().unwrap();
    assert_eq!(report.orphans_removed, 0, "{report:?}");
    env.gates.release("put-commit");
    let receipt = timed("put", put).await.unwrap().unwrap();
    assert!(receipt.new_chunks > 0, "{receipt:?}");
    assert_eq!(env.store.get(&id).await.unwrap(), data);
    assert!(env.store.verify(None).await.unwrap().is_clean());
    // A later gc leaves the committed chunks alone and has nothing to sweep.
    let report = env.store.gc().await.unwrap();
    assert_eq!(report.chunks_removed, 0, "{report:?}");
    assert_eq!(env.store.get(&id).await.unwrap(), data);
    env.store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_waits_for_a_put_in_flight() {
    let env = open_env(|_| {}).await;
    let data = random_bytes(100_000, 10);
    env.gates.arm("put-commit");
    let put_store = env.store.clone();
    let put_data = data.clone();
    let put = tokio::spawn(async move { put_store.put(put_data).await });
    env.gates.arrived("put-commit").await;
    let close_store = env.store.clone();
    let close = tokio::spawn(async move { close_store.close().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!close.is_finished(), "close returned with a put in flight");
    env.gates.release("put-commit");
    let receipt = timed("put", put).await.unwrap().unwrap();
    timed("close", close).await.unwrap().unwrap();
    assert_eq!(receipt.size, data.len() as u64);
    let err = env
        .store
        .put(Bytes::from_static(b"late"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), strata::ErrorKind::Closed);
}
