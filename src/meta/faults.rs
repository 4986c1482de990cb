//! Fault injection for tests: a [`MetaStore`] wrapper that fails chosen operations with
//! `Unavailable`, as a crashed process or a lost database connection would, without the
//! wrapped store seeing the call.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use super::placement::{PackRecord, PackRestore, PlacementStore};
use super::MetaStore;
use crate::error::{Error, Result};
use crate::faults::FailAfter;
use crate::id::{BlobId, ChunkId};
use crate::model::*;

/// Wraps a metadata store; each switch makes one kind of call fail.
pub struct FaultyMeta {
    inner: Arc<dyn MetaStore>,
    /// Fail `commit_blob` (the crash window between chunk writes and the commit).
    pub fail_commit: AtomicBool,
    /// Fail `delete_blob`.
    pub fail_delete: AtomicBool,
    /// Fail every call (the database went away).
    pub fail_all: AtomicBool,
    /// `readable_chunks` calls (a put's dedup query): those it lets through are
    /// answered, the others fail.
    pub readable: FailAfter,
    /// Calls made (each is one round trip to a server-backed store).
    pub calls: AtomicU64,
}

impl FaultyMeta {
    /// Wrap `inner` with every fault off.
    pub fn new(inner: Arc<dyn MetaStore>) -> Arc<Self> {
        Arc::new(FaultyMeta {
            inner,
            fail_commit: AtomicBool::new(false),
            fail_delete: AtomicBool::new(false),
            fail_all: AtomicBool::new(false),
            readable: FailAfter::default(),
            calls: AtomicU64::new(0),
        })
    }

    fn check(&self, op: &str, switch: Option<&AtomicBool>) -> Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail_all.load(Ordering::SeqCst) || switch.is_some_and(|s| s.load(Ordering::SeqCst))
        {
            Err(Error::unavailable(format!("injected fault in {op}")))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl MetaStore for FaultyMeta {
    async fn readable_chunks(&self, ids: &[ChunkId], node: &str) -> Result<HashSet<ChunkId>> {
        self.check("readable_chunks", None)?;
        if !self.readable.pass() {
            return Err(Error::unavailable("injected fault in readable_chunks"));
        }
        self.inner.readable_chunks(ids, node).await
    }
    async fn commit_blob(&self, commit: &BlobCommit) -> Result<CommitOutcome> {
        self.check("commit_blob", Some(&self.fail_commit))?;
        self.inner.commit_blob(commit).await
    }
    async fn blob(&self, id: &BlobId) -> Result<Option<BlobRecord>> {
        self.check("blob", None)?;
        self.inner.blob(id).await
    }
    async fn manifest_range(
        &self,
        id: &BlobId,
        start: u64,
        end: u64,
    ) -> Result<Vec<ManifestEntry>> {
        self.check("manifest_range", None)?;
        self.inner.manifest_range(id, start, end).await
    }
    async fn list_blobs(&self, after: Option<BlobId>, limit: usize) -> Result<Vec<BlobRecord>> {
        self.check("list_blobs", None)?;
        self.inner.list_blobs(after, limit).await
    }
    async fn delete_blob(&self, id: &BlobId, now_ms: u64) -> Result<Option<Vec<ChunkId>>> {
        self.check("delete_blob", Some(&self.fail_delete))?;
        self.inner.delete_blob(id, now_ms).await
    }
    async fn chunk(&self, id: &ChunkId) -> Result<Option<ChunkRecord>> {
        self.check("chunk", None)?;
        self.inner.chunk(id).await
    }
    async fn list_chunks(&self, after: Option<ChunkId>, limit: usize) -> Result<Vec<ChunkRecord>> {
        self.check("list_chunks", None)?;
        self.inner.list_chunks(after, limit).await
    }
    async fn locations(&self, id: &ChunkId) -> Result<Vec<Location>> {
        self.check("locations", None)?;
        self.inner.locations(id).await
    }
    async fn locations_many(&self, ids: &[ChunkId]) -> Result<HashMap<ChunkId, Vec<Location>>> {
        self.check("locations_many", None)?;
        self.inner.locations_many(ids).await
    }
    async fn record_verification(&self, results: &[VerifyRecord]) -> Result<()> {
        self.check("record_verification", None)?;
        self.inner.record_verification(results).await
    }
    async fn record_access(&self, batch: &[(ChunkId, u64, u64)]) -> Result<()> {
        self.check("record_access", None)?;
        self.inner.record_access(batch).await
    }
    async fn gc_candidates(
        &self,
        zero_before_ms: u64,
        after: Option<GcCandidate>,
        limit: usize,
    ) -> Result<Vec<GcCandidate>> {
        self.check("gc_candidates", None)?;
        self.inner.gc_candidates(zero_before_ms, after, limit).await
    }
    async fn gc_remove(&self, ids: &[ChunkId], node: &str) -> Result<Vec<ChunkId>> {
        self.check("gc_remove", None)?;
        self.inner.gc_remove(ids, node).await
    }
    async fn claim_locations(&self, req: &ClaimRequest) -> Result<Vec<Location>> {
        self.check("claim_locations", None)?;
        self.inner.claim_locations(req).await
    }
    async fn release_claims(&self, node: &str, locations: &[Location]) -> Result<()> {
        self.check("release_claims", None)?;
        self.inner.release_claims(node, locations).await
    }
    async fn refcount_mismatches(&self) -> Result<Vec<RefcountMismatch>> {
        self.check("refcount_mismatches", None)?;
        self.inner.refcount_mismatches().await
    }
    async fn stats(&self) -> Result<MetaStats> {
        self.check("stats", None)?;
        self.inner.stats().await
    }
    async fn store_id(&self, proposed: &str) -> Result<super::StoreId> {
        self.check("store_id", None)?;
        self.inner.store_id(proposed).await
    }
    async fn has_packs(&self, tier: crate::model::Tier) -> Result<bool> {
        self.check("has_packs", None)?;
        self.inner.has_packs(tier).await
    }
}

#[async_trait]
impl PlacementStore for FaultyMeta {
    async fn add_locations(&self, locations: &[Location]) -> Result<()> {
        self.check("add_locations", None)?;
        self.inner.add_locations(locations).await
    }
    async fn remove_locations(&self, locations: &[Location]) -> Result<Vec<Location>> {
        self.check("remove_locations", None)?;
        self.inner.remove_locations(locations).await
    }
    async fn put_pack(&self, pack: &PackRecord) -> Result<()> {
        self.check("put_pack", None)?;
        self.inner.put_pack(pack).await
    }
    async fn pack(&self, id: &str) -> Result<Option<PackRecord>> {
        self.check("pack", None)?;
        self.inner.pack(id).await
    }
    async fn set_pack_restore(
        &self,
        id: &str,
        expected: &PackRestore,
        new: &PackRestore,
    ) -> Result<bool> {
        self.check("set_pack_restore", None)?;
        self.inner.set_pack_restore(id, expected, new).await
    }
}
