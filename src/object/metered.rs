//! An [`ObjectStore`] wrapper counting requests and failures per operation and tier
//! ([`names::OBJECT_REQUESTS`], [`names::OBJECT_REQUEST_ERRORS`]). Installed around
//! the warm and cold stores by [`Tiers::build`](crate::tier::Tiers::build); costs
//! nothing measurable when no metrics recorder is installed.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ByteChunks, ObjectMeta, ObjectStore, RestoreStatus, StorageClass};
use crate::error::Result;
use crate::metrics::names;

/// Counts the requests of the store it wraps.
pub struct MeteredObjectStore {
    inner: Arc<dyn ObjectStore>,
    tier: &'static str,
}

impl MeteredObjectStore {
    /// Count `inner`'s requests under the label `tier="<tier>"`.
    pub fn new(inner: Arc<dyn ObjectStore>, tier: &'static str) -> Self {
        MeteredObjectStore { inner, tier }
    }

    fn count<T>(&self, op: &'static str, result: Result<T>) -> Result<T> {
        metrics::counter!(names::OBJECT_REQUESTS, "op" => op, "tier" => self.tier).increment(1);
        if let Err(e) = &result {
            metrics::counter!(
                names::OBJECT_REQUEST_ERRORS,
                "op" => op,
                "tier" => self.tier,
                "kind" => e.kind().as_str().replace(' ', "_")
            )
            .increment(1);
        }
        result
    }
}

#[async_trait]
impl ObjectStore for MeteredObjectStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn put(&self, key: &str, body: Bytes, class: StorageClass) -> Result<()> {
        self.count("put", self.inner.put(key, body, class).await)
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        self.count("get", self.inner.get(key).await)
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.count("get_range", self.inner.get_range(key, range).await)
    }

    async fn get_range_stream(&self, key: &str, range: Range<u64>) -> Result<ByteChunks> {
        // Counted once the response starts; a body cut short later is the reader's
        // error, not a failed request.
        self.count("get_range", self.inner.get_range_stream(key, range).await)
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.count("head", self.inner.head(key).await)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.count("delete", self.inner.delete(key).await)
    }

    async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>> {
        let page = self.inner.list_page(prefix, start_after, limit).await;
        self.count("list", page)
    }

    async fn copy(&self, from: &str, to: &str, class: StorageClass) -> Result<()> {
        self.count("copy", self.inner.copy(from, to, class).await)
    }

    async fn restore(&self, key: &str, days: u32) -> Result<()> {
        self.count("restore", self.inner.restore(key, days).await)
    }

    async fn restore_status(&self, key: &str) -> Result<RestoreStatus> {
        self.count("restore_status", self.inner.restore_status(key).await)
    }

    fn enforces_archive(&self) -> bool {
        self.inner.enforces_archive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::metrics::Registry;
    use crate::object::LocalObjectStore;

    #[tokio::test]
    async fn counts_requests_and_errors_by_op_and_tier() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_000_000);
        let local: Arc<dyn ObjectStore> =
            Arc::new(LocalObjectStore::new(dir.path().to_path_buf(), clock, 0));
        let store = MeteredObjectStore::new(local, "cold");
        let r = Registry::new();
        // The local recorder is per thread: record on this thread only.
        let _guard = metrics::set_default_local_recorder(&r);
        store
            .put("a/b", Bytes::from_static(b"xyz"), StorageClass::Standard)
            .await
            .unwrap();
        assert_eq!(&store.get("a/b").await.unwrap()[..], b"xyz");
        assert!(store.get("a/missing").await.is_err());
        let text = r.render();
        assert!(
            text.contains("strata_object_requests_total{op=\"put\",tier=\"cold\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("strata_object_requests_total{op=\"get\",tier=\"cold\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "strata_object_request_errors_total{kind=\"not_found\",op=\"get\",tier=\"cold\"} 1\n"
            ),
            "{text}"
        );
    }
}
