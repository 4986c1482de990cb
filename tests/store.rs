//! Integration tests of the library API on the real embedded store (RocksDB).

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use proptest::prelude::*;
use strata::hot::faults::FaultyHot;
use strata::meta::faults::FaultyMeta;
use strata::store::{Components, GcReport};
use strata::{BlobId, ChunkId, ErrorKind, ManualClock, Store};
use support::{open, random_bytes, settings};

#[tokio::test]
async fn round_trips_at_chunk_size_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let p = store.settings().chunking;
    let sizes = [
        0usize,
        1,
        p.min as usize - 1,
        p.min as usize,
        p.avg as usize,
        p.max as usize,
        p.max as usize + 1,
        3 * p.max as usize + 17,
    ];
    for (i, size) in sizes.into_iter().enumerate() {
        let data = random_bytes(size, i as u64);
        let r = store.put(data.clone()).await.unwrap();
        assert_eq!(r.id, BlobId::of(&data), "size {size}");
        assert_eq!(r.size, size as u64);
        assert_eq!(store.get(&r.id).await.unwrap(), data, "size {size}");
        let stat = store.stat(&r.id).await.unwrap();
        assert_eq!(stat.size, size as u64);
        assert_eq!(stat.chunks, r.chunks);
        if size == 0 {
            assert_eq!(r.chunks, 0);
            assert_eq!(
                r.id.to_string(),
                "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
            );
        }
        // Cut points are content-defined, so a blob of `max` bytes may still have several
        // chunks; what holds is that no chunk exceeds `max` and only the last is below `min`.
        let entries = store.meta().manifest_range(&r.id, 0, r.size).await.unwrap();
        assert_eq!(entries.len() as u64, r.chunks);
        for (k, e) in entries.iter().enumerate() {
            assert!(
                e.length <= p.max,
                "size {size}: chunk of {} bytes",
                e.length
            );
            assert!(
                e.length >= p.min || k + 1 == entries.len(),
                "size {size}: short chunk inside"
            );
        }
        if size > p.max as usize {
            assert!(
                r.chunks >= 2,
                "size {size}: more than max bytes needs a second chunk"
            );
        }
    }
    store.close().await.unwrap();
}

#[tokio::test]
async fn round_trip_100_mib_and_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let data = random_bytes(100 << 20, 42);
    let r = store.put(data.clone()).await.unwrap();
    assert_eq!(r.id, BlobId::of(&data));
    assert!(r.chunks > 1000, "{} chunks", r.chunks);
    assert_eq!(r.new_bytes, data.len() as u64);
    assert!(store.get(&r.id).await.unwrap() == data);
    let pieces: Vec<Bytes> = store
        .get_stream(&r.id, 5..(data.len() as u64 - 5))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let joined: Vec<u8> = pieces.concat();
    assert!(joined[..] == data[5..data.len() - 5]);
    // put_stream of the same content from a reader gives the same id and stores nothing.
    let again = store
        .put_stream(std::io::Cursor::new(data.clone()))
        .await
        .unwrap();
    assert_eq!(again.id, r.id);
    assert!(again.existed);
    assert_eq!(again.new_bytes, 0);
    store.close().await.unwrap();
}

/// `put_blocks` takes blocks of any size (tiny, odd, larger than the pipeline's
/// blocks) and gives the same blob, manifest and id as `put` of the whole; a stream
/// that fails halfway commits nothing.
#[tokio::test]
async fn put_blocks_of_any_size_and_a_failing_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let data = random_bytes(5 << 20, 77);
    let sizes = [1usize, 3, 4096, 65_537, 300_000, 3 << 20];
    let mut blocks = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < data.len() {
        let n = sizes[i % sizes.len()].min(data.len() - pos);
        blocks.push(Ok::<Bytes, std::io::Error>(data.slice(pos..pos + n)));
        pos += n;
        i += 1;
    }
    let r = store
        .put_blocks(futures::stream::iter(blocks))
        .await
        .unwrap();
    assert_eq!(r.id, BlobId::of(&data));
    assert_eq!(r.size, data.len() as u64);
    assert!(store.get(&r.id).await.unwrap() == data);
    let whole = store.put(data.clone()).await.unwrap();
    assert!(
        whole.existed,
        "the same content put whole was not recognised"
    );
    assert_eq!(whole.chunks, r.chunks, "block sizes changed the cut points");

    let other = random_bytes(3 << 20, 78);
    let failing = futures::stream::iter(vec![
        Ok(other.slice(..1 << 20)),
        Err(std::io::Error::other("connection reset")),
        Ok(other.slice(1 << 20..)),
    ]);
    let err = store.put_blocks(failing).await.unwrap_err();
    assert!(err.to_string().contains("connection reset"), "{err}");
    assert!(!store.contains(&BlobId::of(&other)).await.unwrap());
    assert!(!store
        .contains(&BlobId::of(&other.slice(..1 << 20)))
        .await
        .unwrap());
    store.close().await.unwrap();
}

#[tokio::test]
async fn out_of_range_and_unknown_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let data = random_bytes(300_000, 1);
    let id = store.put(data.clone()).await.unwrap().id;
    let n = data.len() as u64;
    assert_eq!(
        store.get_range(&id, 0..n + 1).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        store.get_range(&id, n + 1..n + 2).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = 10..5;
    assert_eq!(
        store.get_range(&id, reversed).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert!(store.get_stream(&id, 0..n + 1).await.is_err());
    assert_eq!(store.get_range(&id, n..n).await.unwrap().len(), 0);
    assert_eq!(
        store.get_range(&id, n - 1..n).await.unwrap(),
        data.slice(data.len() - 1..)
    );
    let missing = BlobId::of(b"never stored");
    assert_eq!(
        store.get(&missing).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        store.stat(&missing).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        store.delete(&missing).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(!store.contains(&missing).await.unwrap());
    assert!(store.contains(&id).await.unwrap());
    store.close().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn get_range_equals_slice(len in 0usize..700_000, seed in any::<u64>(), cuts in proptest::collection::vec((any::<u64>(), any::<u64>()), 1..12)) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let mut s = settings(dir.path());
            s.chunking = strata::ChunkerParams { min: 2048, avg: 8192, max: 32768 };
            let store = Store::open(s).await.unwrap();
            let data = random_bytes(len, seed);
            let id = store.put(data.clone()).await.unwrap().id;
            let n = len as u64;
            let mut ranges: Vec<(u64, u64)> = cuts.iter().map(|&(a, b)| {
                let (a, b) = (a % (n + 1), b % (n + 1));
                (a.min(b), a.max(b))
            }).collect();
            ranges.push((n, n));
            ranges.push((0, n));
            for (a, b) in ranges {
                let got = store.get_range(&id, a..b).await.unwrap();
                prop_assert_eq!(&got[..], &data[a as usize..b as usize]);
                let streamed: Vec<Bytes> = store.get_stream(&id, a..b).await.unwrap().try_collect().await.unwrap();
                prop_assert_eq!(streamed.concat(), data[a as usize..b as usize].to_vec());
            }
            store.close().await.unwrap();
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn dedup_same_blob_and_small_edit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let data = random_bytes(20 << 20, 9);
    let first = store.put(data.clone()).await.unwrap();
    assert_eq!(first.new_bytes, data.len() as u64);
    let second = store.put(data.clone()).await.unwrap();
    assert_eq!(
        (second.new_chunks, second.new_bytes, second.reused_bytes),
        (0, 0, data.len() as u64)
    );
    let before = store.meta().stats().await.unwrap();

    let mut edited = data.to_vec();
    edited.splice(10 << 20..10 << 20, *b"0123456789");
    let third = store.put(Bytes::from(edited.clone())).await.unwrap();
    assert!(
        third.new_chunks >= 1 && third.new_chunks <= 3,
        "{} new chunks",
        third.new_chunks
    );
    assert!(third.new_bytes < 3 * 256 * 1024);
    assert_eq!(third.reused_bytes + third.new_bytes, edited.len() as u64);
    let after = store.meta().stats().await.unwrap();
    assert_eq!(after.chunks - before.chunks, third.new_chunks);
    assert_eq!(store.get(&third.id).await.unwrap(), Bytes::from(edited));

    // A blob repeating one chunk stores it once.
    // (The block is larger than the largest chunk, so chunk boundaries fall at the same
    // place of every copy once the chunker has resynchronised.)
    let block = random_bytes(1 << 20, 5);
    let repeated: Vec<u8> = std::iter::repeat_n(&block[..], 8)
        .flatten()
        .copied()
        .collect();
    let r = store.put(Bytes::from(repeated.clone())).await.unwrap();
    assert!(r.new_bytes < repeated.len() as u64 / 2, "{r:?}");
    assert_eq!(store.get(&r.id).await.unwrap(), Bytes::from(repeated));
    assert!(store.meta().refcount_mismatches().await.unwrap().is_empty());
    store.close().await.unwrap();
}

/// Flip one byte of a stored chunk directly in RocksDB, behind the store's back.
fn corrupt_chunk(dir: &std::path::Path, chunk: &ChunkId) {
    let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir).unwrap();
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), dir, cfs).unwrap();
    let cf = db.cf_handle(strata::rocks::CF_CHUNKS).unwrap();
    let mut value = db
        .get_cf(cf, chunk.as_bytes())
        .unwrap()
        .expect("chunk is stored");
    let middle = value.len() / 2;
    value[middle] ^= 0x40;
    db.put_cf(cf, chunk.as_bytes(), value).unwrap();
}

#[tokio::test]
async fn flipped_byte_is_corrupt_never_wrong_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let data = random_bytes(1 << 20, 77);
    let id = store.put(data.clone()).await.unwrap().id;
    let entries = store
        .meta()
        .manifest_range(&id, 0, data.len() as u64)
        .await
        .unwrap();
    let victim = entries[entries.len() / 2];
    store.close().await.unwrap();
    drop(store);

    corrupt_chunk(dir.path(), &victim.chunk);

    let store = open(dir.path()).await;
    let err = store.get(&id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    let err = store
        .get_range(&id, victim.offset..victim.offset + 10)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    // Ranges that avoid the bad chunk still read.
    let first = entries[0];
    assert_eq!(
        store.get_range(&id, 0..first.end()).await.unwrap(),
        data.slice(0..first.end() as usize)
    );

    let report = store.verify(Some(&id)).await.unwrap();
    let corrupt: Vec<ChunkId> = report.corrupt.iter().map(|c| c.chunk).collect();
    assert_eq!(corrupt, vec![victim.chunk]);
    assert_eq!(report.corrupt[0].blobs, vec![id]);
    assert!(!report.is_clean());
    let all = store.verify(None).await.unwrap();
    let corrupt: Vec<ChunkId> = all.corrupt.iter().map(|c| c.chunk).collect();
    assert_eq!(corrupt, vec![victim.chunk]);
    assert_eq!(all.corrupt[0].blobs, vec![id]);
    let locs = store.meta().locations(&victim.chunk).await.unwrap();
    assert_eq!(locs[0].health, strata::Health::Corrupt);
    // The corrupt copy is not offered for dedup: putting the content again rewrites the
    // chunk and repairs the blob.
    let again = store.put(data.clone()).await.unwrap();
    assert!(again.existed);
    assert_eq!(store.get(&id).await.unwrap(), data);
    assert!(store.verify(Some(&id)).await.unwrap().is_clean());
    store.close().await.unwrap();
}

/// A store whose metadata goes through a fault-injection wrapper, and the wrapper.
async fn open_faulty(dir: &std::path::Path) -> (Store, Arc<FaultyMeta>) {
    let slot: Arc<std::sync::Mutex<Option<Arc<FaultyMeta>>>> = Default::default();
    let fill = slot.clone();
    let components = Components {
        wrap_meta: Some(Box::new(move |inner| {
            let f = FaultyMeta::new(inner);
            *fill.lock().unwrap() = Some(f.clone());
            f
        })),
        ..Components::default()
    };
    let store = Store::open_with(settings(dir), components).await.unwrap();
    let faulty = slot.lock().unwrap().clone().expect("the wrapper was used");
    (store, faulty)
}

/// A put whose hot-tier write or dedup query fails halfway returns that failure (not the
/// "pipeline stopped" of a stage it stopped), commits nothing, and leaves the store
/// working: the same put then succeeds and reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_failing_halfway_in_its_writer_reports_the_cause_and_commits_nothing() {
    for (stage, message) in [
        ("hot write", "injected fault in a hot-tier write"),
        ("dedup query", "injected fault in readable_chunks"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let db = strata::rocks::open(&dir.path().join("hot"), &s.hot).unwrap();
        let hot = FaultyHot::new(Arc::new(strata::hot::HotTier::new(db)));
        let slot: Arc<std::sync::Mutex<Option<Arc<FaultyMeta>>>> = Default::default();
        let fill = slot.clone();
        let components = Components {
            hot: Some(hot.clone()),
            wrap_meta: Some(Box::new(move |inner| {
                let f = FaultyMeta::new(inner);
                *fill.lock().unwrap() = Some(f.clone());
                f
            })),
            ..Components::default()
        };
        let store = Store::open_with(s, components).await.unwrap();
        let meta = slot.lock().unwrap().clone().unwrap();
        // 24 MiB is 24 batches: the fault hits well inside the stream.
        let data = random_bytes(24 << 20, 91);
        let armed = match stage {
            "hot write" => &hot.writes,
            _ => &meta.readable,
        };
        armed.arm(5);
        let err = store.put(data.clone()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{stage}: {err}");
        assert!(err.to_string().contains(message), "{stage}: {err}");
        let id = BlobId::of(&data);
        assert!(!store.contains(&id).await.unwrap(), "{stage}");
        assert!(store.list().await.unwrap().is_empty(), "{stage}");

        armed.disarm();
        let r = store.put(data.clone()).await.unwrap();
        assert!(!r.existed);
        assert_eq!(r.id, id);
        assert!(store.get(&id).await.unwrap() == data, "{stage}");
        store.close().await.unwrap();
    }
}

#[tokio::test]
async fn crash_between_chunk_writes_and_commit_leaves_nothing_visible() {
    let dir = tempfile::tempdir().unwrap();
    let (store, faulty) = open_faulty(dir.path()).await;
    faulty.fail_commit.store(true, Ordering::SeqCst);
    let data = random_bytes(3 << 20, 11);
    let err = store.put(data.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    let id = BlobId::of(&data);
    assert!(!store.contains(&id).await.unwrap());
    assert_eq!(
        store.get(&id).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(store.list().await.unwrap().is_empty());
    let stats = store.meta().stats().await.unwrap();
    assert_eq!((stats.blobs, stats.chunks, stats.locations), (0, 0, 0));
    // "Crash": drop the store without closing, then reopen the same data directory.
    drop(store);
    drop(faulty);
    let store = open(dir.path()).await;
    assert!(store.list().await.unwrap().is_empty());
    let r = store.put(data.clone()).await.unwrap();
    assert_eq!(r.id, id);
    assert_eq!(
        r.new_bytes,
        data.len() as u64,
        "orphan chunks are not trusted: no metadata vouches for them"
    );
    assert_eq!(store.get(&id).await.unwrap(), data);
    assert!(store.verify(None).await.unwrap().is_clean());
    store.close().await.unwrap();
}

/// Keys in the hot tier's chunk column family, read behind the store's back.
fn hot_chunk_count(dir: &std::path::Path) -> usize {
    let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir).unwrap();
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), dir, cfs).unwrap();
    let cf = db.cf_handle(strata::rocks::CF_CHUNKS).unwrap();
    db.iterator_cf(cf, rocksdb::IteratorMode::Start).count()
}

/// DESIGN §3: a put that dies before its commit leaves unreferenced chunks, which GC
/// reclaims; committed chunks stay.
#[tokio::test]
async fn gc_sweeps_chunks_of_puts_that_never_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (store, faulty) = open_faulty(dir.path()).await;
    let kept = random_bytes(1 << 20, 12);
    let kept_id = store.put(kept.clone()).await.unwrap().id;
    let kept_chunks = store.stat(&kept_id).await.unwrap().distinct_chunks as usize;
    faulty.fail_commit.store(true, Ordering::SeqCst);
    // Past the logged prefix of a put, so unlogged writes are covered too.
    let lost = random_bytes(12 << 20, 13);
    store.put(lost.clone()).await.unwrap_err();
    // "Crash": drop without closing, then look at the hot tier behind the store's back.
    drop(store);
    drop(faulty);
    let orphans = hot_chunk_count(dir.path()) - kept_chunks;
    assert!(orphans > 100, "the failed put left its chunks: {orphans}");

    let store = open(dir.path()).await;
    let report = store.gc().await.unwrap();
    assert_eq!(report.orphans_removed as usize, orphans, "{report:?}");
    assert_eq!(report.chunks_removed, report.orphans_removed);
    assert_eq!(store.get(&kept_id).await.unwrap(), kept);
    assert!(store.verify(None).await.unwrap().is_clean());
    // Committed puts leave no notes behind: a second sweep finds nothing.
    let more = store.put(random_bytes(300_000, 14)).await.unwrap().id;
    let more_chunks = store.stat(&more).await.unwrap().distinct_chunks as usize;
    // (Its only requests are the orphan sweep's listings of warm and cold.)
    let again = store.gc().await.unwrap();
    assert_eq!(again.requests, 2, "{again:?}");
    assert_eq!(
        GcReport {
            requests: 0,
            ..again
        },
        GcReport::default()
    );
    store.close().await.unwrap();
    drop(store);
    assert_eq!(hot_chunk_count(dir.path()), kept_chunks + more_chunks);
}

#[tokio::test]
async fn delete_then_gc_after_grace_keeps_shared_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let components = Components {
        clock: Some(clock.clone()),
        ..Components::default()
    };
    let store = Store::open_with(settings(dir.path()), components)
        .await
        .unwrap();
    let shared = random_bytes(2 << 20, 1);
    let mut a = shared.to_vec();
    a.extend_from_slice(&random_bytes(1 << 20, 2));
    let mut b = shared.to_vec();
    b.extend_from_slice(&random_bytes(1 << 20, 3));
    let ra = store.put(Bytes::from(a.clone())).await.unwrap();
    let rb = store.put(Bytes::from(b.clone())).await.unwrap();
    store.delete(&ra.id).await.unwrap();
    assert_eq!(
        store.get(&ra.id).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        store.delete(&ra.id).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // Within the grace period nothing is reclaimed.
    assert_eq!(store.gc().await.unwrap().chunks_removed, 0);
    clock.advance(store.settings().gc.grace_secs * 1000 + 1);
    let removed = store.gc().await.unwrap().chunks_removed;
    assert!(removed >= 1 && removed <= ra.chunks, "removed {removed}");
    // The blob sharing chunks still reads, and every count matches the manifests.
    assert_eq!(store.get(&rb.id).await.unwrap(), Bytes::from(b));
    assert!(store.meta().refcount_mismatches().await.unwrap().is_empty());
    assert!(store.verify(None).await.unwrap().is_clean());
    // Putting the deleted blob again works (its chunks are rewritten).
    let again = store.put(Bytes::from(a.clone())).await.unwrap();
    assert!(!again.existed && again.new_chunks >= removed);
    assert_eq!(store.get(&ra.id).await.unwrap(), Bytes::from(a));
    store.close().await.unwrap();
}

#[tokio::test]
async fn concurrent_puts_of_overlapping_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let base = random_bytes(4 << 20, 100);
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let store = store.clone();
        let mut data = base.to_vec();
        if i % 2 == 1 {
            data.extend_from_slice(&random_bytes(300_000, i));
        }
        tasks.push(tokio::spawn(async move {
            let data = Bytes::from(data);
            let r = store.put(data.clone()).await.unwrap();
            (r.id, data)
        }));
    }
    let mut reads = Vec::new();
    for t in tasks {
        let (id, data) = t.await.unwrap();
        // Reads are spawned too: `get` and `get_range` futures must be `Send + 'static`.
        let store = store.clone();
        reads.push(tokio::spawn(async move {
            assert_eq!(store.get(&id).await.unwrap(), data);
            assert_eq!(
                store.get_range(&id, 1000..2000).await.unwrap(),
                data.slice(1000..2000)
            );
        }));
    }
    for r in reads {
        r.await.unwrap();
    }
    assert_eq!(store.list().await.unwrap().len(), 5);
    assert!(store.meta().refcount_mismatches().await.unwrap().is_empty());
    store.close().await.unwrap();
}

#[tokio::test]
async fn data_survives_reopen_and_closed_store_refuses_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let data = random_bytes(500_000, 3);
    let id = store.put(data.clone()).await.unwrap().id;
    store.close().await.unwrap();
    assert_eq!(store.get(&id).await.unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(
        store.put(data.clone()).await.unwrap_err().kind(),
        ErrorKind::Closed
    );
    store.close().await.unwrap();
    drop(store);
    let store = open(dir.path()).await;
    assert_eq!(store.get(&id).await.unwrap(), data);
    // Reads are counted: after close flushes, the chunk records show accesses.
    store.close().await.unwrap();
    drop(store);
    let store = open(dir.path()).await;
    let entries = store.meta().manifest_range(&id, 0, 1).await.unwrap();
    let chunk = store
        .meta()
        .chunk(&entries[0].chunk)
        .await
        .unwrap()
        .unwrap();
    assert!(
        chunk.access_count >= 1 && chunk.last_access_ms.is_some(),
        "{chunk:?}"
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_second_process_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let err = Store::open(settings(dir.path()))
        .await
        .err()
        .expect("second open must fail");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    store.close().await.unwrap();
}

/// The child half of `committed_large_put_survives_abort`: put, print the id, then die
/// without closing (no destructors, no RocksDB shutdown flush).
#[tokio::test]
async fn crash_child_put_then_abort() {
    let Ok(dir) = std::env::var("STRATA_CRASH_CHILD_DIR") else {
        return;
    };
    let mut s = settings(std::path::Path::new(&dir));
    s.hot.sync = true; // as in production
    let store = Store::open(s).await.unwrap();
    // Larger than the logged prefix of a put: most chunks are written without the WAL.
    let data = random_bytes(40 << 20, 31);
    let r = store.put(data).await.unwrap();
    println!("PUT-ID {}", r.id);
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    std::process::abort();
}

/// A put that returned survives the process dying right after: its chunks, including
/// the ones written past the write-ahead log, were flushed before the commit.
#[tokio::test]
async fn committed_large_put_survives_abort() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_put_then_abort",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("STRATA_CRASH_CHILD_DIR", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "the child must die by abort: {stdout}"
    );
    let id: BlobId = stdout
        .lines()
        .find_map(|l| l.split("PUT-ID ").nth(1))
        .unwrap_or_else(|| {
            panic!(
                "child printed no id: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .trim()
        .parse()
        .unwrap();
    let store = open(dir.path()).await;
    assert_eq!(store.get(&id).await.unwrap(), random_bytes(40 << 20, 31));
    assert!(store.verify(Some(&id)).await.unwrap().is_clean());
    store.close().await.unwrap();
}
