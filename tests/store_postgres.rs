//! The store with PostgreSQL metadata: two `Store`s with separate data directories (two
//! nodes) sharing one database, concurrent puts and put/delete races.

mod support;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use strata::meta::faults::FaultyMeta;
use strata::store::Components;
use strata::{ChunkerParams, ErrorKind, Store};
use support::{pg, pg_settings, random_bytes};

async fn two_nodes() -> Option<(Store, Store, tempfile::TempDir)> {
    let url = pg::fresh_schema_url().await?;
    let tmp = tempfile::tempdir().unwrap();
    let a = Store::open(pg_settings(&tmp.path().join("a"), &url))
        .await
        .unwrap();
    let b = Store::open(pg_settings(&tmp.path().join("b"), &url))
        .await
        .unwrap();
    assert_ne!(a.node_id(), b.node_id());
    Some((a, b, tmp))
}

#[tokio::test]
async fn round_trip_and_second_node_sees_the_blob() {
    let Some((a, b, _tmp)) = two_nodes().await else {
        return;
    };
    let data = random_bytes(5 << 20, 1);
    let r = a.put(data.clone()).await.unwrap();
    assert_eq!(a.get(&r.id).await.unwrap(), data);
    assert_eq!(
        a.get_range(&r.id, 100..200_000).await.unwrap(),
        data.slice(100..200_000)
    );
    assert!(b.contains(&r.id).await.unwrap());
    assert_eq!(b.list().await.unwrap().len(), 1);
    let stat = b.stat(&r.id).await.unwrap();
    assert_eq!(
        (stat.size, stat.chunks, stat.tiers.hot),
        (r.size, r.chunks, r.size)
    );
    // Node b has no copy of the chunks (durability "local"): a clear Unavailable.
    let err = b.get(&r.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    // Node b putting the same content stores its own copies and both can read.
    let rb = b.put(data.clone()).await.unwrap();
    assert!(rb.existed);
    assert_eq!(b.get(&r.id).await.unwrap(), data);
    assert!(a.meta().refcount_mismatches().await.unwrap().is_empty());
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test]
async fn concurrent_puts_and_put_delete_races_keep_counts_right() {
    let Some((a, b, _tmp)) = two_nodes().await else {
        return;
    };
    let shared = random_bytes(2 << 20, 7);
    let blob = |seed: u64| {
        let mut v = shared.to_vec();
        v.extend_from_slice(&random_bytes(200_000, seed));
        Bytes::from(v)
    };
    let mut tasks = Vec::new();
    for round in 0..6u64 {
        for (i, store) in [a.clone(), b.clone()].into_iter().enumerate() {
            let data = blob(round * 2 + i as u64);
            let victim = blob(1000 + i as u64);
            tasks.push(tokio::spawn(async move {
                // Each node: put its blob, put a shared victim, delete the victim again,
                // racing the other node doing the same on overlapping chunks.
                let r = store.put(data.clone()).await.unwrap();
                let v = store.put(victim.clone()).await.unwrap();
                match store.delete(&v.id).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => panic!("delete failed: {e}"),
                }
                (r.id, data)
            }));
        }
    }
    let mut kept = Vec::new();
    for t in tasks {
        kept.push(t.await.unwrap());
    }
    assert!(a.meta().refcount_mismatches().await.unwrap().is_empty());
    for (id, data) in &kept {
        // Readable from at least the node that holds its chunks; a node that put it can.
        let via_a = a.get(id).await;
        let via_b = b.get(id).await;
        assert!(
            via_a.as_ref().ok() == Some(data) || via_b.as_ref().ok() == Some(data),
            "blob {id} unreadable"
        );
    }
    let stats = a.meta().stats().await.unwrap();
    assert_eq!(stats.blobs, 12);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// Issue 3: `get_range` of 4 KiB in a large blob is one metadata round trip (the ranged
/// manifest lookup; the blob record comes from the cache), wherever the range lies.
#[tokio::test]
async fn get_range_in_a_large_blob_is_one_metadata_round_trip() {
    let Some(url) = pg::fresh_schema_url().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut s = pg_settings(tmp.path(), &url);
    // Small chunks, so the manifest (~6,000 entries) is too big for the manifest cache.
    s.chunking = ChunkerParams {
        min: 4096,
        avg: 8192,
        max: 16384,
    };
    // Access statistics go to the database from a background worker: not during the count.
    s.access.flush_interval_ms = 3_600_000;
    let slot: Arc<Mutex<Option<Arc<FaultyMeta>>>> = Default::default();
    let keep = slot.clone();
    let components = Components {
        wrap_meta: Some(Box::new(move |inner| {
            let f = FaultyMeta::new(inner);
            *keep.lock().unwrap() = Some(f.clone());
            f
        })),
        ..Components::default()
    };
    let store = Store::open_with(s, components).await.unwrap();
    let counter = slot.lock().unwrap().clone().expect("wrapped");
    let data = random_bytes(48 << 20, 21);
    let r = store.put(data.clone()).await.unwrap();
    assert!(r.chunks > 4096, "{} chunks", r.chunks);
    store.get_range(&r.id, 0..4096).await.unwrap(); // loads the blob record once
    for start in [1u64 << 20, 20 << 20, (48 << 20) - 4096, 33_333_333] {
        let before = counter.calls.load(Ordering::SeqCst);
        let got = store.get_range(&r.id, start..start + 4096).await.unwrap();
        assert_eq!(got, data.slice(start as usize..start as usize + 4096));
        let calls = counter.calls.load(Ordering::SeqCst) - before;
        assert_eq!(calls, 1, "get_range at {start} made {calls} metadata calls");
    }
    store.close().await.unwrap();
}
