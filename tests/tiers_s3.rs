//! Warm and cold tiers on a real S3 server (moto, which enforces archive semantics), and
//! two stores with separate data directories sharing PostgreSQL and one bucket with
//! `replicated` durability. Addresses come from `STRATA_TEST_MOTO_ENDPOINT` and
//! `STRATA_TEST_PG_URL` (`eval "$(bash scripts/s3.sh)"`, `eval "$(bash scripts/pg.sh)"`);
//! without them the tests are skipped, except under `CI=true`, where that is a failure.

mod object_support;
mod support;

use std::path::Path;

use bytes::Bytes;
use object_support::{connection, endpoint, unique_bucket};
use strata::object::S3ObjectStore;
use strata::settings::{Connection, Durability};
use strata::{ChunkerParams, ErrorKind, Settings, Store, Tier};
use support::random_bytes;

/// A fresh bucket on moto, or `None` to skip.
async fn moto_bucket() -> Option<(String, String)> {
    let endpoint = endpoint("STRATA_TEST_MOTO_ENDPOINT")?;
    let bucket = unique_bucket();
    let config = S3ObjectStore::client_config(&connection(&endpoint, &bucket))
        .await
        .expect("client config");
    aws_sdk_s3::Client::from_conf(config)
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket {bucket} at {endpoint}: {e:?}"));
    Some((endpoint, bucket))
}

/// Both tiers in the bucket, small chunks and packs.
fn s3_settings(dir: &Path, endpoint: &str, bucket: &str) -> Settings {
    let mut s = Settings {
        data_dir: dir.to_path_buf(),
        ..Settings::default()
    };
    s.hot.sync = false;
    s.chunking = ChunkerParams {
        min: 4096,
        avg: 16384,
        max: 65536,
    };
    s.cache.bytes = 0;
    s.connections
        .insert("s3".into(), Connection::S3(connection(endpoint, bucket)));
    for t in [&mut s.tiers.warm, &mut s.tiers.cold] {
        t.use_ = "s3".into();
        t.pack_bytes = 256 * 1024;
    }
    s.tiers.restore_poll_ms = strata::tier::settings::MIN_RESTORE_POLL_MS;
    s
}

fn content(len: usize, seed: u64) -> Bytes {
    let mut v = random_bytes(len / 2, seed).to_vec();
    v.extend(
        std::iter::repeat_n(b"strata on s3 ".iter().copied(), len)
            .flatten()
            .take(len - len / 2),
    );
    Bytes::from(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_round_trip_hot_warm_cold_and_back() {
    let Some((endpoint, bucket)) = moto_bucket().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = s3_settings(dir.path(), &endpoint, &bucket);
    s.tiers.promote = false;
    let store = Store::open(s).await.expect("open");
    let data = content(800_000, 1);
    let id = store.put(data.clone()).await.expect("put").id;
    let before = store.stat(&id).await.expect("stat").tiers.hot;

    let r = store.move_blob(&id, Tier::Warm).await.expect("to warm");
    assert!(r.packs_written >= 2, "{r:?}");
    let st = store.stat(&id).await.expect("stat");
    assert_eq!((st.tiers.hot, st.tiers.warm), (0, before), "{st:?}");
    assert!(store.get(&id).await.expect("warm read") == data);
    assert_eq!(
        store.get_range(&id, 5..150_000).await.expect("range"),
        data.slice(5..150_000)
    );

    store.move_blob(&id, Tier::Cold).await.expect("to cold");
    let st = store.stat(&id).await.expect("stat");
    assert_eq!((st.tiers.warm, st.tiers.cold), (0, before), "{st:?}");
    // GLACIER on moto: unreadable until restored. Checking asks for the restores and
    // reports them pending; moto then completes them at once.
    let size = data.len() as u64;
    let err = store
        .wait_readable(&id, 0..size, std::time::Duration::ZERO)
        .await
        .expect_err("archived");
    assert_eq!(err.kind(), ErrorKind::RestorePending, "{err}");
    let got = store
        .get_wait(&id, None, std::time::Duration::from_secs(20))
        .await
        .expect("restored read");
    assert!(got == data);

    store.move_blob(&id, Tier::Hot).await.expect("to hot");
    let st = store.stat(&id).await.expect("stat");
    assert_eq!((st.tiers.hot, st.tiers.cold), (before, 0), "{st:?}");
    assert!(store.get(&id).await.expect("hot read") == data);
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_cold_instant_class_reads_directly() {
    let Some((endpoint, bucket)) = moto_bucket().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = s3_settings(dir.path(), &endpoint, &bucket);
    s.tiers.cold.storage_class = Some(strata::object::StorageClass::GlacierIr);
    let store = Store::open(s).await.expect("open");
    let data = content(300_000, 2);
    let id = store.put(data.clone()).await.expect("put").id;
    store.move_blob(&id, Tier::Cold).await.expect("to cold");
    assert!(store.get(&id).await.expect("instant read") == data);
    store.close().await.expect("close");
}

/// Keys under `prefix` in the bucket (fewer than one page in these tests).
async fn keys(endpoint: &str, bucket: &str, prefix: &str) -> Vec<String> {
    let config = S3ObjectStore::client_config(&connection(endpoint, bucket))
        .await
        .expect("client config");
    let out = aws_sdk_s3::Client::from_conf(config)
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .expect("list");
    assert_ne!(out.is_truncated(), Some(true));
    let mut keys: Vec<String> = out
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    keys.sort();
    keys
}

/// Pack GC on S3: gc deletes the objects of packs no copy names from the bucket
/// (counted there), keeps the packs of the blob that survives, and keeps a dead cold
/// pack in an archive class until its minimum storage duration has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_gc_deletes_dead_packs_and_keeps_young_archive_packs() {
    let Some((endpoint, bucket)) = moto_bucket().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = s3_settings(dir.path(), &endpoint, &bucket);
    s.tiers.promote = false;
    s.gc.grace_secs = 0;
    s.tiers.cold.storage_class = Some(strata::object::StorageClass::GlacierIr);
    let store = Store::open(s).await.expect("open");
    let (warm, cold) = ("strata-test/warm/", "strata-test/cold/");
    let gone = store.put(content(600_000, 3)).await.expect("put").id;
    store.move_blob(&gone, Tier::Warm).await.expect("to warm");
    let dead_warm = keys(&endpoint, &bucket, warm).await;
    assert!(!dead_warm.is_empty());
    let archived = store.put(content(600_000, 4)).await.expect("put").id;
    store
        .move_blob(&archived, Tier::Cold)
        .await
        .expect("to cold");
    let cold_before = keys(&endpoint, &bucket, cold).await;
    assert!(!cold_before.is_empty());
    let data = content(300_000, 5);
    let kept = store.put(data.clone()).await.expect("put").id;
    store.move_blob(&kept, Tier::Warm).await.expect("to warm");
    let live_warm: Vec<String> = keys(&endpoint, &bucket, warm)
        .await
        .into_iter()
        .filter(|k| !dead_warm.contains(k))
        .collect();
    assert!(!live_warm.is_empty());

    store.delete(&gone).await.expect("delete");
    store.delete(&archived).await.expect("delete");
    let report = store.gc().await.expect("gc");
    assert_eq!(report.packs_deleted, dead_warm.len() as u64, "{report:?}");
    assert_eq!(report.cold_bytes_reclaimed, 0, "{report:?}");
    assert_eq!(keys(&endpoint, &bucket, warm).await, live_warm);
    assert_eq!(
        keys(&endpoint, &bucket, cold).await,
        cold_before,
        "GLACIER_IR keeps its 90 days"
    );
    assert!(store.get(&kept).await.expect("get") == data);
    store.close().await.expect("close");
}

/// One node of a shared deployment: its own data dir, the PostgreSQL database at `url`
/// and the bucket shared with the other nodes.
fn node_settings(
    dir: &Path,
    endpoint: &str,
    bucket: &str,
    url: &str,
    mode: Durability,
) -> Settings {
    let mut s = s3_settings(dir, endpoint, bucket);
    s.apply_env(|k| (k == "STRATA_META_URL").then(|| url.to_string()))
        .expect("settings");
    s.durability.mode = mode;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_put_on_one_node_is_readable_on_another() {
    let Some((endpoint, bucket)) = moto_bucket().await else {
        return;
    };
    let Some(url) = support::pg::fresh_schema_url().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let node = |name: &str| {
        node_settings(
            &tmp.path().join(name),
            &endpoint,
            &bucket,
            &url,
            Durability::Replicated,
        )
    };
    let a = Store::open(node("a")).await.expect("open a");
    let b = Store::open(node("b")).await.expect("open b");
    assert_ne!(a.node_id(), b.node_id());
    let data = content(700_000, 3);
    let id = a.put(data.clone()).await.expect("put on a").id;
    assert!(b.get(&id).await.expect("read on b") == data);
    assert_eq!(
        b.get_range(&id, 1..99_999).await.expect("range on b"),
        data.slice(1..99_999)
    );
    // b promoted the chunks into its own hot tier (off the read path: now).
    b.run_promotions().await.expect("promote on b");
    let st = b.stat(&id).await.expect("stat");
    assert!(st.tiers.hot > 0 && st.tiers.warm == st.tiers.hot, "{st:?}");
    assert!(a
        .meta()
        .refcount_mismatches()
        .await
        .expect("fsck")
        .is_empty());
    a.close().await.expect("close a");
    b.close().await.expect("close b");
}

/// A replicated put that dedups against chunks held only in this node's hot tier (put
/// while durability was `local`) still packs them into warm: the other node reads it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_put_replicates_chunks_it_shares_with_local_only_blobs() {
    let Some((endpoint, bucket)) = moto_bucket().await else {
        return;
    };
    let Some(url) = support::pg::fresh_schema_url().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let node = |name: &str, mode: Durability| {
        node_settings(&tmp.path().join(name), &endpoint, &bucket, &url, mode)
    };
    let old = content(400_000, 5);
    let a = Store::open(node("a", Durability::Local))
        .await
        .expect("open a");
    let local = a.put(old.clone()).await.expect("local put");
    assert_eq!(a.stat(&local.id).await.expect("stat").tiers.warm, 0);
    a.close().await.expect("close a");
    drop(a);

    let a = Store::open(node("a", Durability::Replicated))
        .await
        .expect("reopen a");
    let b = Store::open(node("b", Durability::Replicated))
        .await
        .expect("open b");
    let data = Bytes::from([old.clone(), content(300_000, 6)].concat());
    let put = a.put(data.clone()).await.expect("replicated put");
    let st = a.stat(&put.id).await.expect("stat");
    // Bytes per tier count distinct chunks: every chunk in hot is also in warm.
    assert!(
        st.tiers.hot > 0 && st.tiers.warm == st.tiers.hot,
        "every chunk in warm: {st:?}"
    );
    assert!(b.get(&put.id).await.expect("read on b") == data);
    a.close().await.expect("close a");
    b.close().await.expect("close b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_outage_during_move_then_success() {
    use std::sync::Arc;
    use strata::object::{FaultyObjectStore, ObjectStore};
    let Some((endpoint, bucket)) = moto_bucket().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let s = s3_settings(dir.path(), &endpoint, &bucket);
    let s3 = S3ObjectStore::connect(&connection(&endpoint, &bucket))
        .await
        .expect("connect");
    let warm = Arc::new(FaultyObjectStore::new(Arc::new(s3)));
    let components = strata::store::Components {
        warm: Some(warm.clone() as Arc<dyn ObjectStore>),
        ..Default::default()
    };
    let store = Store::open_with(s, components).await.expect("open");
    let data = content(600_000, 4);
    let id = store.put(data.clone()).await.expect("put").id;
    let before = store.stat(&id).await.expect("stat").tiers.hot;
    // The server is down.
    warm.set_fail_all(true);
    let err = store.move_blob(&id, Tier::Warm).await.expect_err("outage");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(store.get(&id).await.expect("still readable") == data);
    assert_eq!(store.stat(&id).await.expect("stat").tiers.hot, before);
    warm.set_fail_all(false);
    store
        .move_blob(&id, Tier::Warm)
        .await
        .expect("move once the server is back");
    let st = store.stat(&id).await.expect("stat");
    assert_eq!((st.tiers.hot, st.tiers.warm), (0, before), "{st:?}");
    assert!(store.get(&id).await.expect("warm read") == data);
    store.close().await.expect("close");
}

/// Scrub on S3: a byte flipped in a warm pack object in the bucket is found, the copy
/// marked, and repaired by repacking the chunk from its hot copy into a new object;
/// verify is clean after, and the blob reads from warm alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_scrub_repairs_a_corrupt_pack_object() {
    let Some((endpoint, bucket)) = moto_bucket().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = s3_settings(dir.path(), &endpoint, &bucket);
    s.tiers.promote = false;
    s.durability.mode = Durability::Replicated;
    let store = Store::open(s).await.expect("open");
    let data = content(400_000, 6);
    let id = store.put(data.clone()).await.expect("put").id;
    let victim = store
        .meta()
        .manifest_range(&id, 0, data.len() as u64)
        .await
        .expect("manifest")[2]
        .chunk;
    let damaged = store
        .meta()
        .locations(&victim)
        .await
        .expect("locations")
        .into_iter()
        .find(|l| l.tier == Tier::Warm)
        .expect("a warm copy");

    let config = S3ObjectStore::client_config(&connection(&endpoint, &bucket))
        .await
        .expect("client config");
    let client = aws_sdk_s3::Client::from_conf(config);
    let key = format!("strata-test/{}", damaged.pack);
    let body = client
        .get_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .expect("get")
        .body
        .collect()
        .await
        .expect("body");
    let mut bytes = body.into_bytes().to_vec();
    bytes[(damaged.offset + damaged.length / 2) as usize] ^= 0x10;
    client
        .put_object()
        .bucket(&bucket)
        .key(&key)
        .body(bytes.into())
        .send()
        .await
        .expect("put");

    let report = store.scrub().await.expect("scrub");
    assert_eq!(report.corrupt, 1, "{report:?}");
    assert_eq!(report.repaired, 1, "{report:?}");
    assert_eq!(report.unrepairable, 0, "{report:?}");
    assert_eq!(report.damaged[0].pack, damaged.pack);
    let warm: Vec<_> = store
        .meta()
        .locations(&victim)
        .await
        .expect("locations")
        .into_iter()
        .filter(|l| l.tier == Tier::Warm)
        .collect();
    assert_eq!(warm.len(), 1, "{warm:?}");
    assert_ne!(warm[0].pack, damaged.pack);
    assert_eq!(warm[0].health, strata::Health::Ok);
    let verify = store.verify(None).await.expect("verify");
    assert!(verify.is_clean(), "{verify}");
    store.move_blob(&id, Tier::Warm).await.expect("to warm");
    assert!(store.get(&id).await.expect("get") == data);
    store.close().await.expect("close");
}
