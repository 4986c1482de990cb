//! Pack intents (docs/integrity.md, "Pack intents"): pack names come from their content,
//! so a writer may put a pack under the very name gc is deleting. Write and delete
//! intents, recorded in the metadata store, keep the two apart: a pack being written is
//! never deleted, and a pack being deleted cannot be written until gc is done.
mod support;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use strata::store::PausePoint;
use strata::{BlobId, ErrorKind, ManualClock, Store, Tier};
use support::random_bytes;

const T0: u64 = 1_700_000_000_000;

/// One gate at `pack-delete` (gc has deleted a dead pack's record and holds its delete
/// intent, before the object's DELETE): when armed, gc stops there until released.
#[derive(Default)]
struct Gate {
    armed: AtomicBool,
    arrived: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl PausePoint for Gate {
    fn at<'a>(&'a self, point: &'static str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            if point == "pack-delete" && self.armed.swap(false, Ordering::SeqCst) {
                self.arrived.notify_one();
                self.release.notified().await;
            }
        })
    }
}

async fn open(dir: &Path, clock: &Arc<ManualClock>) -> (Store, Arc<Gate>) {
    let (_warm, _cold, mut components) =
        support::counted_local_tiers(&dir.join("warm"), &dir.join("cold"), clock.clone(), 0);
    let gate = Arc::new(Gate::default());
    components.pause = Some(gate.clone());
    let mut s = support::small_pack_settings(dir);
    s.tiers.promote = false;
    s.gc.grace_secs = 0;
    let store = Store::open_with(s, components).await.expect("open store");
    (store, gate)
}

fn pack_files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir.join("warm").join("data").join("warm"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| format!("warm/{}", e.file_name().to_string_lossy()))
        .collect();
    out.sort();
    out
}

/// Put a blob, move it to warm and back to hot: its warm pack is dead (no copy names
/// it) but still recorded, and moving the blob to warm again writes the same name.
async fn dead_pack(store: &Store, dir: &Path, seed: u64) -> (BlobId, bytes::Bytes, String) {
    let data = random_bytes(150_000, seed);
    let id = store.put(data.clone()).await.expect("put").id;
    store.move_blob(&id, Tier::Warm).await.expect("to warm");
    let packs = pack_files(dir);
    assert_eq!(packs.len(), 1, "{packs:?}");
    store.move_blob(&id, Tier::Hot).await.expect("to hot");
    let name = packs[0].clone();
    assert!(
        store
            .meta()
            .pack_locations(&name)
            .await
            .expect("copies")
            .is_empty(),
        "{name} is dead"
    );
    (id, data, name)
}

/// gc has deleted a dead pack's record and is about to delete its object when a move
/// writes the same pack again: the move backs off with `Unavailable` instead of
/// committing copies into an object about to vanish; once gc is done, the move
/// succeeds and the blob reads back from warm alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_being_deleted_is_not_written_until_gc_is_done() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let (store, gate) = open(dir.path(), &clock).await;
    let (id, data, name) = dead_pack(&store, dir.path(), 1).await;
    clock.advance(1);

    gate.armed.store(true, Ordering::SeqCst);
    let arrived = gate.arrived.notified();
    let gc = tokio::spawn({
        let store = store.clone();
        async move { store.gc().await }
    });
    tokio::time::timeout(Duration::from_secs(30), arrived)
        .await
        .expect("gc reaches pack-delete");
    assert_eq!(store.meta().pack(&name).await.expect("pack"), None);

    let err = store
        .move_blob(&id, Tier::Warm)
        .await
        .expect_err("the pack is being deleted");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    // Nothing moved: the blob is still whole in hot.
    assert_eq!(store.stat(&id).await.expect("stat").tiers.warm, 0);
    assert_eq!(store.get(&id).await.expect("get"), data);

    gate.release.notify_one();
    let report = gc.await.expect("join").expect("gc");
    assert_eq!(report.packs_deleted, 1, "{report:?}");
    assert!(pack_files(dir.path()).is_empty());

    store
        .move_blob(&id, Tier::Warm)
        .await
        .expect("to warm again");
    let st = store.stat(&id).await.expect("stat");
    assert_eq!((st.tiers.hot, st.tiers.warm > 0), (0, true), "{st:?}");
    assert_eq!(pack_files(dir.path()), vec![name.clone()]);
    assert_eq!(store.get(&id).await.expect("get from warm"), data);
    let verify = store.verify(None).await.expect("verify");
    assert!(verify.is_clean(), "{verify}");
    store.close().await.expect("close");
}

/// A dead pack whose name a writer holds a write intent on is left alone by gc, however
/// old; once the intent is given up, gc deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_being_written_is_not_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let (store, _gate) = open(dir.path(), &clock).await;
    let (id, data, name) = dead_pack(&store, dir.path(), 2).await;
    clock.advance(1);

    let intent = store
        .pack_intents()
        .begin_write(&name)
        .await
        .expect("write intent");
    assert!(store.pack_intents().writing(&name).await.expect("writing"));
    let report = store.gc().await.expect("gc");
    assert_eq!(report.packs_deleted, 0, "{report:?}");
    assert_eq!(pack_files(dir.path()), vec![name.clone()]);
    assert!(store.meta().pack(&name).await.expect("pack").is_some());
    // While the writer holds it, gc cannot take the delete intent either.
    assert!(store
        .pack_intents()
        .begin_delete(&name)
        .await
        .expect("begin_delete")
        .is_none());

    intent.finish().await;
    assert!(!store.pack_intents().writing(&name).await.expect("writing"));
    let report = store.gc().await.expect("gc");
    assert_eq!(report.packs_deleted, 1, "{report:?}");
    assert!(pack_files(dir.path()).is_empty());
    assert_eq!(store.get(&id).await.expect("get"), data);
    store.close().await.expect("close");
}

/// An object no record names (an upload whose commit never came) is kept while a write
/// intent names it, even past the grace period; without one, gc deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphan_being_written_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let (store, _gate) = open(dir.path(), &clock).await;
    let (_id, _data, name) = dead_pack(&store, dir.path(), 3).await;
    // Make it an orphan: its record gone, its object left (as after a crash between
    // a gc's record delete and its object delete).
    let intent = store
        .pack_intents()
        .begin_delete(&name)
        .await
        .expect("begin_delete")
        .expect("delete intent");
    assert!(store
        .meta()
        .delete_dead_pack(&name, T0 + 1, T0 + 1)
        .await
        .expect("delete record"));
    intent.finish().await;
    assert_eq!(store.meta().pack(&name).await.expect("pack"), None);
    clock.advance(1);

    let writer = store
        .pack_intents()
        .begin_write(&name)
        .await
        .expect("write intent");
    let report = store.gc().await.expect("gc");
    assert_eq!(report.orphan_packs_deleted, 0, "{report:?}");
    assert_eq!(pack_files(dir.path()), vec![name.clone()]);

    writer.finish().await;
    let report = store.gc().await.expect("gc");
    assert_eq!(report.orphan_packs_deleted, 1, "{report:?}");
    assert!(pack_files(dir.path()).is_empty());
    store.close().await.expect("close");
}
