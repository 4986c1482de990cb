//! Fault injection and counting for tests: a [`ChunkTier`] wrapper that fails writes
//! after a chosen number, as a full disk or a dying device would, and counts what reaches
//! the tier.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::ChunkTier;
use crate::error::{Error, Result};
use crate::faults::FailAfter;
use crate::id::ChunkId;

/// Wraps a chunk tier; writes fail once [`Self::writes`] lets no more through.
pub struct FaultyHot {
    inner: Arc<dyn ChunkTier>,
    /// Writes (`put_many` or `put_many_unlogged` calls): those it lets through reach the
    /// wrapped tier, the others fail with `Unavailable`.
    pub writes: FailAfter,
    /// Deletions (`delete_many` calls): those it lets through reach the wrapped tier,
    /// the others fail with `Unavailable`, as a process dying between `gc`'s metadata
    /// commit and its byte deletion would leave things.
    pub deletes: FailAfter,
    /// Reclaims: those it lets through reach the wrapped tier, the others fail with
    /// `Unavailable` (a `gc` killed during its compaction).
    pub reclaims: FailAfter,
    /// Calls that read a stored value: `get`, and `contains` (for values in blob files an
    /// exact presence check reads the value).
    pub value_reads: AtomicU64,
}

impl FaultyHot {
    /// Wrap `inner` with no fault armed.
    pub fn new(inner: Arc<dyn ChunkTier>) -> Arc<Self> {
        Arc::new(FaultyHot {
            inner,
            writes: FailAfter::default(),
            deletes: FailAfter::default(),
            reclaims: FailAfter::default(),
            value_reads: AtomicU64::new(0),
        })
    }

    fn check_write(&self) -> Result<()> {
        if self.writes.pass() {
            Ok(())
        } else {
            Err(Error::unavailable("injected fault in a hot-tier write"))
        }
    }

    fn count_read(&self) {
        self.value_reads.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl ChunkTier for FaultyHot {
    async fn put_many(&self, chunks: Vec<(ChunkId, Bytes)>) -> Result<()> {
        self.check_write()?;
        self.inner.put_many(chunks).await
    }
    async fn get(&self, id: &ChunkId) -> Result<Option<Bytes>> {
        self.count_read();
        self.inner.get(id).await
    }
    async fn contains(&self, id: &ChunkId) -> Result<bool> {
        self.count_read();
        self.inner.contains(id).await
    }
    async fn may_contain(&self, id: &ChunkId) -> bool {
        self.inner.may_contain(id).await
    }
    fn deletions_pending(&self) -> bool {
        self.inner.deletions_pending()
    }
    async fn delete_many(&self, ids: Vec<ChunkId>) -> Result<()> {
        if !self.deletes.pass() {
            return Err(Error::unavailable("injected fault in a hot-tier delete"));
        }
        self.inner.delete_many(ids).await
    }
    async fn put_many_unlogged(&self, chunks: Vec<(ChunkId, Bytes)>) -> Result<()> {
        self.check_write()?;
        self.inner.put_many_unlogged(chunks).await
    }
    async fn sync_unlogged(&self) -> Result<()> {
        self.inner.sync_unlogged().await
    }
    async fn sync(&self) -> Result<()> {
        self.inner.sync().await
    }
    async fn reclaim(&self) -> Result<u64> {
        if !self.reclaims.pass() {
            return Err(Error::unavailable("injected fault in a hot-tier reclaim"));
        }
        self.inner.reclaim().await
    }
    async fn note_unconfirmed(&self, ids: Vec<ChunkId>) -> Result<()> {
        self.inner.note_unconfirmed(ids).await
    }
    async fn unconfirmed(&self, limit: usize) -> Result<Vec<ChunkId>> {
        self.inner.unconfirmed(limit).await
    }
    async fn confirm(&self, ids: Vec<ChunkId>) -> Result<()> {
        self.inner.confirm(ids).await
    }
}
