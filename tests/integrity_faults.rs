//! Faults during scrub and gc with pack rewrites (issue 13 §6): object-store errors,
//! bit flips in transit, bodies cut short, timeouts and the metadata store going away
//! end in `Unavailable` or in a report that says what was not done, and a later run
//! finishes the work; nothing is lost. (The object store is the local directory behind a
//! fault-injecting wrapper; the metadata store "going away" is the embedded store behind
//! one, failing every call. Timeouts are real ones of the S3 client: moto behind a proxy
//! that holds back responses, skipped without `STRATA_TEST_MOTO_ENDPOINT` except under
//! `CI=true`. A PostgreSQL restart is in `tests/integrity_pg_restart.rs`.)

mod object_support;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use strata::meta::faults::FaultyMeta;
use strata::object::FaultyObjectStore;
use strata::settings::Durability;
use strata::{BlobId, ErrorKind, ManualClock, Settings, Store, Tier};
use support::{all_read, assert_gc_settled, blobs_in_shared_packs, random_bytes};

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
    let blobs = blobs_in_shared_packs(&env.store, 8, 500).await;
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
    assert_gc_settled(&env.store).await;
    all_read(&env.store, &survivors).await;
    let fsck = env.store.fsck(false).await.expect("fsck");
    assert!(fsck.is_clean(), "{fsck}");
    env.store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_rewrite_reading_flipped_bits_loses_nothing_and_scrub_clears_the_marks() {
    let env = open_env(|_| {}).await;
    let blobs = blobs_in_shared_packs(&env.store, 8, 500).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_reading_truncated_bodies_marks_nothing_then_checks_everything() {
    let env = open_env(|_| {}).await;
    // Warm copies only: every check is a ranged GET.
    let blobs = blobs_in_shared_packs(&env.store, 4, 500).await;
    // Every GET's body arrives one byte short, without an error: the chunks whose bytes
    // all came verify; the last chunk of each GET did not arrive whole. The objects
    // are intact (their HEAD says so), so those copies are unchecked, not corrupt.
    env.warm.set_truncate_reads(Some(1));
    let r = env.store.scrub().await.expect("scrub");
    assert!(r.unchecked > 0, "{r:?}");
    assert_eq!(
        (r.corrupt, r.missing, r.unrepairable, r.repaired),
        (0, 0, 0, 0),
        "{r:?}"
    );
    assert_eq!(marked(&env.store, &blobs).await, 0);
    env.warm.set_truncate_reads(None);
    // The copies left unchecked are checked by the next pass, and are fine.
    let r = env.store.scrub().await.expect("scrub");
    assert!(r.copies_checked > 0, "{r:?}");
    assert_eq!((r.corrupt, r.missing, r.unchecked), (0, 0, 0), "{r:?}");
    all_read(&env.store, &blobs).await;
    let fsck = env.store.fsck(false).await.expect("fsck");
    assert!(fsck.is_clean(), "{fsck}");
    env.store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_truncated_bodies_return_unavailable_never_wrong_bytes() {
    let env = open_env(|_| {}).await;
    let blobs = blobs_in_shared_packs(&env.store, 2, 500).await;
    env.warm.set_truncate_reads(Some(1));
    for (id, _) in &blobs {
        let err = env.store.get(id).await.expect_err("a chunk arrives short");
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    }
    assert_eq!(marked(&env.store, &blobs).await, 0);
    env.warm.set_truncate_reads(None);
    all_read(&env.store, &blobs).await;
    env.store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_rewrite_reading_truncated_bodies_marks_nothing_then_finishes() {
    let env = open_env(|_| {}).await;
    let blobs = blobs_in_shared_packs(&env.store, 8, 500).await;
    for (id, _) in &blobs[1..7] {
        env.store.delete(id).await.expect("delete");
    }
    env.clock.advance(1);
    // The rewrite's reads come back short: a pack whose live chunks could not all be
    // read is not rewritten (reported), and no copy is marked for a cut transfer.
    env.warm.set_truncate_reads(Some(1));
    match env.store.gc().await {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}"),
        Ok(r) => assert!(!r.errors.is_empty(), "{r:?}"),
    }
    env.warm.set_truncate_reads(None);
    let survivors = [blobs[0].clone(), blobs[7].clone()];
    assert_eq!(marked(&env.store, &survivors).await, 0);
    all_read(&env.store, &survivors).await;
    env.clock.advance(1);
    let r = env.store.gc().await.expect("gc");
    assert!(r.errors.is_empty() && r.packs_rewritten >= 1, "{r:?}");
    assert_gc_settled(&env.store).await;
    all_read(&env.store, &survivors).await;
    let fsck = env.store.fsck(false).await.expect("fsck");
    assert!(fsck.is_clean(), "{fsck}");
    env.store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_reading_truncated_bodies_is_unavailable_not_a_corrupt_pack() {
    let env = open_env(|_| {}).await;
    let blobs = blobs_in_shared_packs(&env.store, 2, 500).await;
    env.warm.set_truncate_reads(Some(1));
    // The pack indexes arrive short: fsck cannot check them, which is not damage.
    let err = env
        .store
        .fsck(true)
        .await
        .expect_err("indexes unreadable now");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    env.warm.set_truncate_reads(None);
    assert_eq!(marked(&env.store, &blobs).await, 0);
    let fsck = env.store.fsck(false).await.expect("fsck");
    assert!(fsck.is_clean(), "{fsck}");
    all_read(&env.store, &blobs).await;
    env.store.close().await.expect("close");
}

/// A TCP proxy in front of an S3 server that can hold back every byte the server sends
/// (`stalled`); requests still reach the server and take effect. What a client sees
/// when a server hangs, or a response is lost after a write landed.
struct StallingProxy {
    endpoint: String,
    stalled: Arc<AtomicBool>,
}

async fn stalling_proxy(upstream: &str) -> StallingProxy {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target = upstream
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let stalled = Arc::new(AtomicBool::new(false));
    let flag = stalled.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (target, stalled) = (target.clone(), flag.clone());
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                let up = async move {
                    let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
                    let _ = to_server.shutdown().await;
                };
                let down = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = from_server.read(&mut buf).await {
                        while stalled.load(Ordering::SeqCst) {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                        if to_client.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = to_client.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    StallingProxy {
        endpoint: format!("http://{addr}"),
        stalled,
    }
}

/// A store with embedded metadata and both tiers in a fresh moto bucket reached through
/// a [`StallingProxy`], with one-second S3 timeouts and two attempts per request; `None`
/// to skip.
async fn open_moto_env(
    tweak: impl FnOnce(&mut Settings),
) -> Option<(Store, StallingProxy, tempfile::TempDir)> {
    let endpoint = object_support::endpoint("STRATA_TEST_MOTO_ENDPOINT")?;
    let bucket = object_support::unique_bucket();
    let config = strata::object::S3ObjectStore::client_config(&object_support::connection(
        &endpoint, &bucket,
    ))
    .await
    .expect("client config");
    aws_sdk_s3::Client::from_conf(config)
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket {bucket} at {endpoint}: {e:?}"));
    let proxy = stalling_proxy(&endpoint).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = support::small_pack_settings(dir.path());
    let mut conn = object_support::connection(&proxy.endpoint, &bucket);
    conn.timeout_secs = 1;
    conn.read_timeout_secs = 1;
    conn.connect_timeout_secs = 1;
    conn.max_attempts = 2;
    s.connections
        .insert("s3".into(), strata::settings::Connection::S3(conn));
    for t in [&mut s.tiers.warm, &mut s.tiers.cold] {
        t.use_ = "s3".into();
    }
    s.tiers.promote = false;
    s.gc.grace_secs = 0;
    s.scrub.bytes_per_sec = 0;
    tweak(&mut s);
    let store = Store::open(s).await.expect("open");
    Some((store, proxy, dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_with_s3_timing_out_leaves_copies_unchecked_then_checks_them() {
    let Some((store, proxy, _dir)) = open_moto_env(|_| {}).await else {
        return;
    };
    let blobs = blobs_in_shared_packs(&store, 3, 700).await;
    // Every response is held past the client's timeouts: the HEADs of the packs time
    // out (retried once), so no copy gets a verdict, and none is marked.
    proxy.stalled.store(true, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let r = store.scrub().await.expect("scrub");
    let took = started.elapsed();
    proxy.stalled.store(false, Ordering::SeqCst);
    eprintln!("scrub with responses held: {took:?}, {r:?}");
    assert!(r.unchecked > 0, "{r:?}");
    assert_eq!(
        (r.copies_checked, r.corrupt, r.missing, r.unrepairable),
        (0, 0, 0, 0),
        "{r:?}"
    );
    // The timeouts cut the requests, not something slower (a hung pass).
    assert!(took < std::time::Duration::from_secs(60), "{took:?}");
    assert_eq!(marked(&store, &blobs).await, 0);
    let r = store.scrub().await.expect("scrub");
    assert!(r.copies_checked > 0, "{r:?}");
    assert_eq!((r.corrupt, r.missing, r.unchecked), (0, 0, 0), "{r:?}");
    all_read(&store, &blobs).await;
    let fsck = store.fsck(false).await.expect("fsck");
    assert!(fsck.is_clean(), "{fsck}");
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_rewrite_with_s3_timing_out_is_unavailable_then_finishes() {
    let Some((store, proxy, _dir)) = open_moto_env(|_| {}).await else {
        return;
    };
    let blobs = blobs_in_shared_packs(&store, 8, 800).await;
    for (id, _) in &blobs[1..7] {
        store.delete(id).await.expect("delete");
    }
    let survivors = [blobs[0].clone(), blobs[7].clone()];
    // Packs count as created before the cutoff only once a millisecond has passed.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    // The rewrites' GETs time out (reported), then deleting a dead pack's object times
    // out (its DELETE reaches the server; the response does not): gc stops with the
    // timeout's `Unavailable`.
    proxy.stalled.store(true, Ordering::SeqCst);
    let res = store.gc().await;
    proxy.stalled.store(false, Ordering::SeqCst);
    eprintln!("gc with responses held: {res:?}");
    match res {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}"),
        Ok(r) => assert!(!r.errors.is_empty(), "{r:?}"),
    }
    assert_eq!(marked(&store, &survivors).await, 0);
    all_read(&store, &survivors).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let r = store.gc().await.expect("gc");
    assert!(r.errors.is_empty() && r.packs_rewritten >= 1, "{r:?}");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_gc_settled(&store).await;
    all_read(&store, &survivors).await;
    let fsck = store.fsck(false).await.expect("fsck");
    assert!(fsck.is_clean(), "{fsck}");
    store.close().await.expect("close");
}
