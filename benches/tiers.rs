//! Read latency of the warm tier and of the cold tier in an instant class (GLACIER_IR) on
//! an S3 server, next to a raw aws-sdk ranged GET of the same bytes from the same server,
//! in one run (issue 4: strata stays within 1.2× of the raw request).
//!
//! Each pair reads the same bytes: one chunk (`get_range` of the chunk's span of the blob
//! versus a ranged GET of its span of the pack), and a whole 16 MiB blob (`get` versus
//! one ranged GET of the pack's chunk bytes). The chunk cache is off and promotion is off,
//! so every strata read goes to the object store.
//!
//! `eval "$(bash scripts/s3.sh)"; cargo bench --bench tiers` (needs
//! `STRATA_TEST_MOTO_ENDPOINT`; prints a note and does nothing without it).

use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use strata::object::{S3ObjectStore, StorageClass};
use strata::settings::{Connection, S3Connection};
use strata::{Settings, Store, Tier};

const BLOB_BYTES: usize = 16 << 20;

fn random_bytes(len: usize, seed: u64) -> Bytes {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// What the raw requests read: the object key and the byte ranges.
struct Target {
    key: String,
    chunk_in_blob: std::ops::Range<u64>,
    chunk_in_pack: std::ops::Range<u64>,
    blob_in_pack: std::ops::Range<u64>,
}

async fn target(store: &Store, id: &strata::BlobId, tier: Tier, prefix: &str) -> Target {
    let entries = store
        .meta()
        .manifest_range(id, 0, BLOB_BYTES as u64)
        .await
        .expect("manifest");
    let mut span: Option<std::ops::Range<u64>> = None;
    let mut first = None;
    let mut key = String::new();
    for e in &entries {
        let locs = store.meta().locations(&e.chunk).await.expect("locations");
        let l = locs.iter().find(|l| l.tier == tier).expect("copy in tier");
        key = format!("{prefix}{}", l.pack);
        let r = l.offset..l.offset + l.length;
        first.get_or_insert((e.offset..e.end(), r.clone()));
        span = Some(match span {
            None => r,
            Some(s) => s.start.min(r.start)..s.end.max(r.end),
        });
    }
    let (chunk_in_blob, chunk_in_pack) = first.expect("a chunk");
    Target {
        key,
        chunk_in_blob,
        chunk_in_pack,
        blob_in_pack: span.expect("span"),
    }
}

async fn raw_get(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    r: &std::ops::Range<u64>,
) -> Bytes {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .range(format!("bytes={}-{}", r.start, r.end - 1))
        .send()
        .await
        .expect("raw get");
    out.body.collect().await.expect("body").into_bytes()
}

/// Criterion measures strata and the raw request one after the other, several seconds
/// apart, so a drift in the server's speed (moto shares the two cores) moves one and not
/// the other. Here the two alternate request by request, and the ratio is taken per pair.
async fn paired(
    store: &Store,
    id: &strata::BlobId,
    client: &aws_sdk_s3::Client,
    bucket: &str,
    t: &Target,
    name: &str,
) {
    const PAIRS: usize = 60;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (what, blob_range, pack_range) in [
        (
            "one chunk",
            t.chunk_in_blob.clone(),
            t.chunk_in_pack.clone(),
        ),
        ("16 MiB blob", 0..BLOB_BYTES as u64, t.blob_in_pack.clone()),
    ] {
        let (mut ours, mut raw, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..PAIRS + 5 {
            let a = std::time::Instant::now();
            let got = store
                .get_range(id, blob_range.clone())
                .await
                .expect("range");
            let a = a.elapsed().as_secs_f64() * 1e3;
            let b = std::time::Instant::now();
            let want = raw_get(client, bucket, &t.key, &pack_range).await;
            let b = b.elapsed().as_secs_f64() * 1e3;
            assert_eq!(got.len() as u64, blob_range.end - blob_range.start);
            assert!(want.len() >= got.len());
            if i >= 5 {
                // the first pairs warm up connections
                ours.push(a);
                raw.push(b);
                ratios.push(a / b);
            }
        }
        println!(
            "{name} paired, {what}: strata median {:.2} ms, raw median {:.2} ms, median ratio {:.2} ({PAIRS} pairs)",
            median(ours),
            median(raw),
            median(ratios)
        );
    }
}

fn tiers(c: &mut Criterion) {
    let Ok(endpoint) = std::env::var("STRATA_TEST_MOTO_ENDPOINT") else {
        eprintln!(
            "tiers bench: STRATA_TEST_MOTO_ENDPOINT not set; start servers with scripts/s3.sh"
        );
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let bucket = format!("strata-bench-{}", std::process::id());
    let conn = S3Connection {
        endpoint: Some(endpoint),
        bucket: bucket.clone(),
        region: "us-east-1".into(),
        path_style: true,
        prefix: "bench/".into(),
        timeout_secs: 30,
        connect_timeout_secs: 5,
        read_timeout_secs: 30,
        max_attempts: 3,
    };
    let client = rt.block_on(async {
        let client = aws_sdk_s3::Client::from_conf(
            S3ObjectStore::client_config(&conn).await.expect("config"),
        );
        client
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("create bucket");
        client
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Settings {
        data_dir: dir.path().to_path_buf(),
        ..Settings::default()
    };
    s.hot.sync = false;
    s.cache.bytes = 0;
    s.tiers.promote = false;
    s.connections
        .insert("s3".into(), Connection::S3(conn.clone()));
    s.tiers.warm.use_ = "s3".into();
    s.tiers.cold.use_ = "s3".into();
    s.tiers.cold.storage_class = Some(StorageClass::GlacierIr);
    let store = rt.block_on(Store::open(s)).expect("open");
    let data = random_bytes(BLOB_BYTES, 5);
    let id = rt.block_on(store.put(data.clone())).expect("put").id;

    for (tier, name) in [(Tier::Warm, "warm"), (Tier::Cold, "cold_glacier_ir")] {
        rt.block_on(store.move_blob(&id, tier)).expect("move");
        let t = rt.block_on(target(&store, &id, tier, &conn.prefix));
        let mut group = c.benchmark_group(name);
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(8));
        group.bench_function("strata_get_range_one_chunk", |b| {
            b.to_async(&rt).iter(|| async {
                store
                    .get_range(&id, t.chunk_in_blob.clone())
                    .await
                    .expect("range")
            })
        });
        group.bench_function("raw_sdk_ranged_get_one_chunk", |b| {
            b.to_async(&rt)
                .iter(|| raw_get(&client, &bucket, &t.key, &t.chunk_in_pack))
        });
        group.bench_function("strata_get_16MiB", |b| {
            b.to_async(&rt)
                .iter(|| async { store.get(&id).await.expect("get") })
        });
        group.bench_function("raw_sdk_ranged_get_16MiB", |b| {
            b.to_async(&rt)
                .iter(|| raw_get(&client, &bucket, &t.key, &t.blob_in_pack))
        });
        group.finish();
        rt.block_on(paired(&store, &id, &client, &bucket, &t, name));
    }
    rt.block_on(store.close()).expect("close");
}

criterion_group!(benches, tiers);
criterion_main!(benches);
