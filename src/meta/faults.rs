//! Fault injection for tests: a [`MetaStore`] wrapper that fails chosen operations with
//! `Unavailable`, as a crashed process or a lost database connection would, without the
//! wrapped store seeing the call.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use super::engine::*;
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
    async fn repair_refcount(&self, mismatch: &RefcountMismatch, now_ms: u64) -> Result<bool> {
        self.check("repair_refcount", None)?;
        self.inner.repair_refcount(mismatch, now_ms).await
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
    async fn remove_locations(
        &self,
        locations: &[Location],
        reader: &str,
    ) -> Result<Vec<Location>> {
        self.check("remove_locations", None)?;
        self.inner.remove_locations(locations, reader).await
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

#[async_trait]
impl EngineStore for FaultyMeta {
    async fn db_now_ms(&self) -> Result<u64> {
        self.check("db_now_ms", None)?;
        self.inner.db_now_ms().await
    }
    async fn acquire_lease(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<Option<Lease>> {
        self.check("acquire_lease", None)?;
        self.inner.acquire_lease(name, holder, ttl_ms).await
    }
    async fn release_lease(&self, lease: &Lease) -> Result<()> {
        self.check("release_lease", None)?;
        self.inner.release_lease(lease).await
    }
    async fn live_leases(&self, prefix: &str) -> Result<Vec<Lease>> {
        self.check("live_leases", None)?;
        self.inner.live_leases(prefix).await
    }
    async fn commit_placement(
        &self,
        fence: Option<&Fence>,
        change: &PlacementChange,
    ) -> Result<Vec<Location>> {
        self.check("commit_placement", Some(&self.fail_commit))?;
        self.inner.commit_placement(fence, change).await
    }
    async fn hot_copies(
        &self,
        node: &str,
        order: &HotOrder,
        read_before_ms: u64,
        after: Option<HotCursor>,
        limit: usize,
    ) -> Result<Vec<HotCopy>> {
        self.check("hot_copies", None)?;
        self.inner
            .hot_copies(node, order, read_before_ms, after, limit)
            .await
    }
    async fn hot_bytes(&self, node: &str) -> Result<u64> {
        self.check("hot_bytes", None)?;
        self.inner.hot_bytes(node).await
    }
    async fn touch_hot(&self, node: &str, reads: &[(ChunkId, u64)]) -> Result<()> {
        self.check("touch_hot", None)?;
        self.inner.touch_hot(node, reads).await
    }
    async fn pins(&self, ids: &[ChunkId]) -> Result<Vec<(ChunkId, PinCounts)>> {
        self.check("pins", None)?;
        self.inner.pins(ids).await
    }
    async fn set_pin(&self, blob: &BlobId, to: Option<Tier>) -> Result<bool> {
        self.check("set_pin", None)?;
        self.inner.set_pin(blob, to).await
    }
    async fn archive_candidates(
        &self,
        class: &str,
        read_before_ms: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ArchiveCandidate>> {
        self.check("archive_candidates", None)?;
        self.inner
            .archive_candidates(class, read_before_ms, after, limit)
            .await
    }
    async fn pack_locations(&self, name: &str) -> Result<Vec<Location>> {
        self.check("pack_locations", None)?;
        self.inner.pack_locations(name).await
    }
    async fn dead_packs(
        &self,
        created_before_ms: u64,
        now_ms: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PackRecord>> {
        self.check("dead_packs", None)?;
        self.inner
            .dead_packs(created_before_ms, now_ms, after, limit)
            .await
    }
    async fn sparse_packs(
        &self,
        max_live_fraction: f64,
        created_before_ms: u64,
        now_ms: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PackRecord>> {
        self.check("sparse_packs", None)?;
        self.inner
            .sparse_packs(max_live_fraction, created_before_ms, now_ms, after, limit)
            .await
    }
    async fn delete_dead_pack(
        &self,
        name: &str,
        created_before_ms: u64,
        now_ms: u64,
    ) -> Result<bool> {
        self.check("delete_dead_pack", None)?;
        self.inner
            .delete_dead_pack(name, created_before_ms, now_ms)
            .await
    }
    async fn list_packs(&self, after: Option<&str>, limit: usize) -> Result<Vec<PackRecord>> {
        self.check("list_packs", None)?;
        self.inner.list_packs(after, limit).await
    }
    async fn recount_pack_live_bytes(&self, name: &str) -> Result<Option<u64>> {
        self.check("recount_pack_live_bytes", None)?;
        self.inner.recount_pack_live_bytes(name).await
    }
    async fn restore_requests(&self, after: Option<&str>, limit: usize) -> Result<Vec<PackRecord>> {
        self.check("restore_requests", None)?;
        self.inner.restore_requests(after, limit).await
    }
    async fn usage(&self) -> Result<StoreUsage> {
        self.check("usage", None)?;
        self.inner.usage().await
    }
    async fn record_pass(&self, pass: &PassRecord) -> Result<()> {
        self.check("record_pass", None)?;
        self.inner.record_pass(pass).await
    }
    async fn passes(&self) -> Result<Vec<PassRecord>> {
        self.check("passes", None)?;
        self.inner.passes().await
    }
}
