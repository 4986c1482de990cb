//! [`FaultyObjectStore`]: a wrapper that counts requests and injects failures, for tests
//! of the tier code (outages, request budgets, corrupt reads).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectMeta, ObjectStore, RestoreStatus, StorageClass};
use crate::error::{Error, Result};

/// The operations [`FaultyObjectStore`] counts.
const OPERATIONS: [&str; 9] = [
    "put",
    "get",
    "get_range",
    "head",
    "delete",
    "list",
    "copy",
    "restore",
    "restore_status",
];

/// Wraps any [`ObjectStore`]: counts every call per operation (failed ones too) and, when
/// switched on, fails calls with `ErrorKind::Unavailable`, delays them, flips a bit in
/// the bytes reads return, or cuts those bytes short (a body that ends early).
///
/// ```
/// # async fn demo(inner: std::sync::Arc<dyn strata::object::ObjectStore>) {
/// use strata::object::{FaultyObjectStore, ObjectStore};
/// let faulty = std::sync::Arc::new(FaultyObjectStore::new(inner));
/// faulty.set_fail_all(true);
/// assert!(faulty.get("packs/x").await.is_err());
/// assert_eq!(faulty.count("get"), 1);
/// # }
/// ```
pub struct FaultyObjectStore {
    inner: Arc<dyn ObjectStore>,
    fail_all: AtomicBool,
    fail_reads: AtomicBool,
    fail_writes: AtomicBool,
    fail_next: AtomicU64,
    corrupt_reads: AtomicBool,
    /// Bytes cut off the end of every non-empty read body (0: none).
    truncate_by: AtomicU64,
    delay_ms: AtomicU64,
    counts: [AtomicU64; OPERATIONS.len()],
}

impl FaultyObjectStore {
    /// The names of the counted operations: the [`ObjectStore`] method names, except
    /// that `list` counts pages ([`ObjectStore::list_page`] calls).
    pub const OPERATIONS: [&'static str; 9] = OPERATIONS;

    /// A wrapper around `inner` with every switch off.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        FaultyObjectStore {
            inner,
            fail_all: AtomicBool::new(false),
            fail_reads: AtomicBool::new(false),
            fail_writes: AtomicBool::new(false),
            fail_next: AtomicU64::new(0),
            corrupt_reads: AtomicBool::new(false),
            truncate_by: AtomicU64::new(0),
            delay_ms: AtomicU64::new(0),
            counts: Default::default(),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// Make every call fail with `Unavailable` (an outage).
    pub fn set_fail_all(&self, on: bool) {
        self.fail_all.store(on, Ordering::SeqCst);
    }

    /// Make reads (`get`, `get_range`, `head`, `list`, `restore_status`) fail.
    pub fn set_fail_reads(&self, on: bool) {
        self.fail_reads.store(on, Ordering::SeqCst);
    }

    /// Make writes (`put`, `delete`, `copy`, `restore`) fail.
    pub fn set_fail_writes(&self, on: bool) {
        self.fail_writes.store(on, Ordering::SeqCst);
    }

    /// Make the next `n` calls, whatever they are, fail (a transient outage).
    pub fn fail_next(&self, n: u64) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// Flip one bit in the middle of every non-empty `get`/`get_range` result.
    pub fn set_corrupt_reads(&self, on: bool) {
        self.corrupt_reads.store(on, Ordering::SeqCst);
    }

    /// With `Some(n)`, every non-empty `get`/`get_range` body arrives with its last `n`
    /// bytes (at least one, at most all) missing and no error, as from a connection
    /// closed early; the object itself is untouched. `None` switches it off. Applied
    /// after [`Self::set_corrupt_reads`].
    pub fn set_truncate_reads(&self, cut: Option<u64>) {
        let by = cut.map_or(0, |n| n.max(1));
        self.truncate_by.store(by, Ordering::SeqCst);
    }

    /// Sleep this long before every call (0: no delay).
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Calls so far of `op` (one of [`Self::OPERATIONS`]; 0 for anything else).
    pub fn count(&self, op: &str) -> u64 {
        OPERATIONS
            .iter()
            .position(|o| *o == op)
            .map(|i| self.counts[i].load(Ordering::SeqCst))
            .unwrap_or(0)
    }

    /// Calls so far per operation (every operation present, zeros included).
    pub fn counts(&self) -> HashMap<&'static str, u64> {
        OPERATIONS
            .iter()
            .zip(&self.counts)
            .map(|(op, n)| (*op, n.load(Ordering::SeqCst)))
            .collect()
    }

    /// Calls so far, all operations together.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|n| n.load(Ordering::SeqCst)).sum()
    }

    /// Set every count back to 0.
    pub fn reset_counts(&self) {
        for n in &self.counts {
            n.store(0, Ordering::SeqCst);
        }
    }

    /// Count the call, wait the delay, and fail it if a switch says so.
    async fn enter(&self, op: usize, write: bool) -> Result<()> {
        self.counts[op].fetch_add(1, Ordering::SeqCst);
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let next = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let switched = if write {
            &self.fail_writes
        } else {
            &self.fail_reads
        };
        if next || self.fail_all.load(Ordering::SeqCst) || switched.load(Ordering::SeqCst) {
            return Err(Error::unavailable(format!(
                "injected failure: {} on {}",
                OPERATIONS[op],
                self.inner.describe()
            )));
        }
        Ok(())
    }

    fn maybe_corrupt(&self, bytes: Bytes) -> Bytes {
        if bytes.is_empty() || !self.corrupt_reads.load(Ordering::SeqCst) {
            return bytes;
        }
        let mut v = bytes.to_vec();
        let mid = v.len() / 2;
        v[mid] ^= 0x01;
        Bytes::from(v)
    }

    /// What a read returns: its bytes as the switches leave them.
    fn deliver(&self, bytes: Bytes) -> Bytes {
        let bytes = self.maybe_corrupt(bytes);
        let by = self.truncate_by.load(Ordering::SeqCst);
        if by == 0 || bytes.is_empty() {
            return bytes;
        }
        let keep = bytes
            .len()
            .saturating_sub(usize::try_from(by).unwrap_or(usize::MAX));
        bytes.slice(..keep)
    }
}

#[async_trait]
impl ObjectStore for FaultyObjectStore {
    fn describe(&self) -> String {
        format!("faulty({})", self.inner.describe())
    }

    fn enforces_archive(&self) -> bool {
        self.inner.enforces_archive()
    }

    async fn put(&self, key: &str, body: Bytes, class: StorageClass) -> Result<()> {
        self.enter(0, true).await?;
        self.inner.put(key, body, class).await
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        self.enter(1, false).await?;
        Ok(self.deliver(self.inner.get(key).await?))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.enter(2, false).await?;
        Ok(self.deliver(self.inner.get_range(key, range).await?))
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.enter(3, false).await?;
        self.inner.head(key).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.enter(4, true).await?;
        self.inner.delete(key).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>> {
        self.enter(5, false).await?;
        self.inner.list_page(prefix, start_after, limit).await
    }

    async fn copy(&self, from: &str, to: &str, class: StorageClass) -> Result<()> {
        self.enter(6, true).await?;
        self.inner.copy(from, to, class).await
    }

    async fn restore(&self, key: &str, days: u32) -> Result<()> {
        self.enter(7, true).await?;
        self.inner.restore(key, days).await
    }

    async fn restore_status(&self, key: &str) -> Result<RestoreStatus> {
        self.enter(8, false).await?;
        self.inner.restore_status(key).await
    }
}
