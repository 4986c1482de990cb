//! Puts of a blob that is already committed (embedded store): the receipt describes the
//! stored blob, chunks written by such a put are either recorded or deleted, and a put
//! that repairs a bad copy says so.

mod support;

use strata::model::{Location, VerifyRecord};
use strata::{ChunkerParams, Health, Store, Tier};
use support::{open, random_bytes, settings};

/// Chunks in the hot tier's `chunks` column family, read behind the store's back.
fn hot_chunk_count(dir: &std::path::Path) -> usize {
    let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir).unwrap();
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), dir, cfs).unwrap();
    let cf = db.cf_handle(strata::rocks::CF_CHUNKS).unwrap();
    db.iterator_cf(cf, rocksdb::IteratorMode::Start).count()
}

/// Regression (issue 11, item 20): the receipt of a put of an existing blob, made with
/// other chunking settings, said `chunks 77` while `stat` said 59, and the chunks of the
/// other cut stayed in the hot tier with no record and no note for `gc`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_blob_put_with_other_chunking_reports_the_stored_blob_and_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(3 << 20, 41);
    let store = open(dir.path()).await;
    let first = store.put(data.clone()).await.unwrap();
    let stat = store.stat(&first.id).await.unwrap();
    store.close().await.unwrap();
    drop(store);

    let mut s = settings(dir.path());
    s.chunking = ChunkerParams {
        min: 4096,
        avg: 16384,
        max: 65536,
    };
    let store = Store::open(s).await.unwrap();
    let again = store.put(data.clone()).await.unwrap();
    assert!(again.existed, "{again:?}");
    assert_eq!(again.chunks, stat.chunks, "{again:?} vs {stat:?}");
    assert_eq!(again.chunks, first.chunks);
    assert_eq!((again.new_chunks, again.new_bytes), (0, 0), "{again:?}");
    assert_eq!(again.reused_bytes, data.len() as u64);
    assert_eq!(store.get(&first.id).await.unwrap(), data);
    // Nothing for gc to find either: the other cut's chunks are gone already.
    assert_eq!(store.gc().await.unwrap().orphans_removed, 0);
    store.close().await.unwrap();
    drop(store);
    assert_eq!(hot_chunk_count(dir.path()) as u64, stat.distinct_chunks);
}

/// Regression (issue 11, item 20): a put that rewrote a chunk whose copy was marked
/// corrupt reported `new_chunks 0`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_that_repairs_a_bad_copy_counts_it_as_new() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let data = random_bytes(1 << 20, 42);
    let r = store.put(data.clone()).await.unwrap();
    let entries = store.meta().manifest_range(&r.id, 0, r.size).await.unwrap();
    let victims: Vec<_> = entries.iter().take(2).collect();
    // What a read or `verify` records on finding the copies damaged or gone.
    let marks: Vec<VerifyRecord> = victims
        .iter()
        .zip([Health::Corrupt, Health::Missing])
        .map(|(e, health)| VerifyRecord {
            location: Location::hot(e.chunk, store.node_id(), u64::from(e.length), 1),
            health,
            at_ms: 1,
            detail: "test".into(),
        })
        .collect();
    store.meta().record_verification(&marks).await.unwrap();
    let before = store.stat(&r.id).await.unwrap();
    assert!(before.tiers.hot < r.size, "{before:?}");

    let again = store.put(data.clone()).await.unwrap();
    assert!(again.existed, "{again:?}");
    assert_eq!(again.new_chunks, 2, "{again:?}");
    let repaired: u64 = victims.iter().map(|e| u64::from(e.length)).sum();
    assert_eq!(again.new_bytes, repaired, "{again:?}");
    assert_eq!(again.reused_bytes, r.size - repaired);
    let after = store.stat(&r.id).await.unwrap();
    assert_eq!(after.tiers.hot, r.size, "repaired: {after:?}");
    for e in victims {
        let locs = store.meta().locations(&e.chunk).await.unwrap();
        assert!(
            locs.iter()
                .any(|l| l.tier == Tier::Hot && l.health == Health::Ok),
            "{locs:?}"
        );
    }
    assert_eq!(store.get(&r.id).await.unwrap(), data);
    // Putting it once more finds nothing to repair.
    let third = store.put(data).await.unwrap();
    assert_eq!((third.new_chunks, third.new_bytes), (0, 0), "{third:?}");
    store.close().await.unwrap();
}
