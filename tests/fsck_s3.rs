//! `Store::fsck` with metadata in PostgreSQL and both tiers in a moto bucket (GLACIER
//! cold packs, checked by HEAD only). Addresses come from `STRATA_TEST_MOTO_ENDPOINT`
//! and `STRATA_TEST_PG_URL`; without them the test is skipped, except under `CI=true`.

mod object_support;
mod support;

use std::collections::BTreeSet;
use std::path::Path;

use object_support::{connection, endpoint, unique_bucket};
use strata::object::{ObjectStore, S3ObjectStore, StorageClass};
use strata::settings::Connection;
use strata::store::{ProblemKind, Repair};
use strata::{ChunkerParams, Health, Settings, Store, Tier};
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

/// PostgreSQL metadata, both tiers in the bucket, small chunks and packs.
fn settings(dir: &Path, endpoint: &str, bucket: &str, url: &str) -> Settings {
    let mut s = support::pg_settings(dir, url);
    s.chunking = ChunkerParams {
        min: 4096,
        avg: 16384,
        max: 65536,
    };
    s.connections
        .insert("s3".into(), Connection::S3(connection(endpoint, bucket)));
    for t in [&mut s.tiers.warm, &mut s.tiers.cold] {
        t.use_ = "s3".into();
        t.pack_bytes = 256 * 1024;
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_on_postgres_and_moto() {
    let Some((endpoint, bucket)) = moto_bucket().await else {
        return;
    };
    let Some(url) = support::pg::fresh_schema_url().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(settings(tmp.path(), &endpoint, &bucket, &url))
        .await
        .expect("open");
    let meta = store.meta().clone();
    let hot = store.put(random_bytes(150_000, 1)).await.expect("put").id;
    let warm = store.put(random_bytes(600_000, 2)).await.expect("put").id;
    let cold = store.put(random_bytes(400_000, 3)).await.expect("put").id;
    store.move_blob(&warm, Tier::Warm).await.expect("warm");
    store.move_blob(&cold, Tier::Cold).await.expect("cold");
    let packs = meta.list_packs(None, 1000).await.expect("packs");
    let warm_packs: Vec<_> = packs.iter().filter(|p| p.tier == Tier::Warm).collect();
    assert!(warm_packs.len() >= 2, "{packs:?}");
    assert!(packs
        .iter()
        .any(|p| p.storage_class == StorageClass::Glacier));

    let clean = store.fsck(false).await.expect("fsck");
    assert!(clean.problems.is_empty(), "{clean}");
    assert_eq!(clean.packs_checked as usize, packs.len());
    assert_eq!(clean.objects_listed as usize, packs.len());
    assert_eq!(clean.indexes_read as usize, warm_packs.len());

    // A stray object just written: awaiting its grace period, still clean. A warm pack
    // object deleted: its record and chunks are problems.
    let bucket_store = S3ObjectStore::connect(&connection(&endpoint, &bucket))
        .await
        .expect("connect");
    bucket_store
        .put("warm/stray", random_bytes(100, 4), StorageClass::Standard)
        .await
        .expect("stray");
    let r = store.fsck(false).await.expect("fsck");
    let kinds: BTreeSet<_> = r.problems.iter().map(|p| p.kind).collect();
    assert_eq!(kinds, [ProblemKind::OrphanAwaitingGrace].into(), "{r}");
    assert!(r.is_clean());

    let gone = &warm_packs[0].id;
    bucket_store.delete(gone).await.expect("delete pack");
    let r = store.fsck(true).await.expect("fsck --repair");
    let kinds: BTreeSet<_> = r.problems.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [
            ProblemKind::MissingPackObject,
            ProblemKind::OrphanAwaitingGrace,
            ProblemKind::UnreadableChunk,
        ]
        .into(),
        "{r}"
    );
    assert!(!r.is_clean());
    let missing = r
        .of_kind(ProblemKind::MissingPackObject)
        .next()
        .expect("missing");
    assert_eq!(missing.pack.as_deref(), Some(gone.as_str()));
    assert!(matches!(missing.repair, Some(Repair::Marked(_))), "{r}");
    assert!(meta
        .pack_locations(gone)
        .await
        .expect("copies")
        .iter()
        .all(|l| l.health == Health::Missing));
    // The stray object is within its grace period: kept.
    assert!(bucket_store.head("warm/stray").await.is_ok());
    assert!(store.get(&hot).await.is_ok());
    store.close().await.expect("close");
}
