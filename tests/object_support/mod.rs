//! Backends for the object-store conformance suite: a local directory with a manual
//! clock, moto's server and SeaweedFS (addresses from `STRATA_TEST_MOTO_ENDPOINT` and
//! `STRATA_TEST_SEAWEED_ENDPOINT`, set by `eval "$(bash scripts/s3.sh)"`).
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use strata::object::{LocalObjectStore, ObjectStore, S3ObjectStore};
use strata::settings::S3Connection;
use strata::ManualClock;

/// Restore delay of the local backend, in ms of its manual clock.
pub const LOCAL_RESTORE_DELAY_MS: u64 = 3_600_000;

/// One store under test and what it can do.
pub struct Backend {
    /// `local`, `moto` or `seaweed`.
    pub name: &'static str,
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Whether reading an unrestored GLACIER / DEEP_ARCHIVE object fails (moto, local);
    /// SeaweedFS accepts the classes but serves the bytes anyway.
    pub enforces_archive: bool,
    /// The local backend's clock, to walk through "restore in progress" and expiry.
    pub clock: Option<Arc<ManualClock>>,
    /// Kept alive for the local backend.
    _dir: Option<tempfile::TempDir>,
    /// For S3 backends: the client and bucket, to remove the bucket afterwards.
    s3: Option<(aws_sdk_s3::Client, String)>,
}

impl Backend {
    /// Best-effort removal of what the test left behind.
    pub async fn cleanup(self) {
        if let Some((client, bucket)) = self.s3 {
            if let Ok(objects) = self.store.list("").await {
                for o in objects {
                    let _ = self.store.delete(&o.key).await;
                }
            }
            let _ = client.delete_bucket().bucket(&bucket).send().await;
        }
    }
}

/// A local store in a fresh temporary directory, on a manual clock.
pub fn local() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(1_700_000_000_000);
    let store = LocalObjectStore::new(
        dir.path().join("objects"),
        clock.clone(),
        LOCAL_RESTORE_DELAY_MS,
    );
    Backend {
        name: "local",
        store: Arc::new(store),
        enforces_archive: true,
        clock: Some(clock),
        _dir: Some(dir),
        s3: None,
    }
}

/// Which S3 server.
#[derive(Clone, Copy, Debug)]
pub enum Server {
    Moto,
    Seaweed,
}

impl Server {
    pub fn env_var(self) -> &'static str {
        match self {
            Server::Moto => "STRATA_TEST_MOTO_ENDPOINT",
            Server::Seaweed => "STRATA_TEST_SEAWEED_ENDPOINT",
        }
    }
}

/// The endpoint in `var`; `None` (after saying so) when unset, a panic under `CI=true`.
pub fn endpoint(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            let hint = "start the servers with: eval \"$(bash scripts/s3.sh)\"";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{var} is not set and CI=true; {hint}");
            }
            eprintln!("skipping: {var} not set ({hint})");
            None
        }
    }
}

/// A bucket name no other test uses.
pub fn unique_bucket() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000_000)
        .unwrap_or(0);
    format!(
        "strata-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Connection settings for `endpoint` and `bucket`, as strata's settings would say.
pub fn connection(endpoint: &str, bucket: &str) -> S3Connection {
    S3Connection {
        endpoint: Some(endpoint.to_string()),
        bucket: bucket.to_string(),
        region: "us-east-1".into(),
        path_style: true,
        prefix: "strata-test/".into(),
        timeout_secs: 30,
        connect_timeout_secs: 5,
        read_timeout_secs: 30,
        max_attempts: 3,
    }
}

/// A store on a new bucket of `server`, or `None` when its endpoint is not set.
pub async fn s3(server: Server) -> Option<Backend> {
    let endpoint = endpoint(server.env_var())?;
    let bucket = unique_bucket();
    let conn = connection(&endpoint, &bucket);
    let config = S3ObjectStore::client_config(&conn)
        .await
        .expect("client config");
    let client = aws_sdk_s3::Client::from_conf(config);
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket {bucket} at {endpoint}: {e:?}"));
    let store = S3ObjectStore::connect(&conn).await.expect("connect");
    let (name, enforces_archive) = match server {
        Server::Moto => ("moto", true),
        Server::Seaweed => ("seaweed", false),
    };
    Some(Backend {
        name,
        store: Arc::new(store),
        enforces_archive,
        clock: None,
        _dir: None,
        s3: Some((client, bucket)),
    })
}

/// Deterministic pseudo-random bytes (xorshift).
pub fn random_bytes(len: usize, seed: u64) -> Bytes {
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
