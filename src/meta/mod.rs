//! Metadata stores (DESIGN §6): the [`MetaStore`] trait and its implementations.
//!
//! Invariants every implementation keeps (checked by `tests/meta_conformance`):
//! - `commit_blob` is atomic: the blob record, its manifest, the reference-count
//!   increments and the new locations become visible together or not at all.
//! - A chunk's reference count equals the number of manifest entries referencing it.
//! - A commit only succeeds if every chunk it references has a healthy copy readable by
//!   the committing node (existing or among `new_locations`).
//! - `delete_blob` drops the manifest and decrements the counts in one step; chunks that
//!   reach zero get `zero_since_ms` and are reclaimed only by `gc_remove`, which checks
//!   again that they are still at zero.
//! - Claimed rows are never handed to two nodes while the lease lasts.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;

use crate::error::Result;
use crate::id::{BlobId, ChunkId};
use crate::model::{
    BlobCommit, BlobRecord, ChunkRecord, ClaimRequest, CommitOutcome, GcCandidate, Location,
    ManifestEntry, MetaStats, RefcountMismatch, Tier, VerifyRecord,
};

pub mod codec;
pub mod embedded;
pub mod engine;
pub mod faults;
pub mod placement;
pub mod postgres;

pub use engine::{
    ArchiveCandidate, EngineStore, Fence, HotCopy, HotCursor, HotOrder, Lease, PassRecord,
    PinCounts, PlacementChange, StoreUsage, TierUsage,
};
pub use placement::{PackRecord, PackRestore, PlacementStore, RestoreState};

/// A node id no store has (ids are `node-<hex>`): [`MetaStore::readable_chunks`] with it
/// gives the chunks with a healthy copy in a shared tier (warm or cold), which every
/// node can read.
pub const SHARED_ONLY: &str = "";

/// Where blobs, manifests, chunk records and locations are recorded.
#[async_trait]
pub trait MetaStore: PlacementStore + EngineStore + Send + Sync + 'static {
    /// Which of `ids` already have a healthy copy readable by `node` (so a put need not
    /// write them). Zero-referenced chunks count: committing revives them.
    async fn readable_chunks(&self, ids: &[ChunkId], node: &str) -> Result<HashSet<ChunkId>>;

    /// Commit a blob atomically (see the module invariants).
    async fn commit_blob(&self, commit: &BlobCommit) -> Result<CommitOutcome>;

    /// The blob's record, if committed.
    async fn blob(&self, id: &BlobId) -> Result<Option<BlobRecord>>;

    /// Manifest entries overlapping `start .. end`, in offset order. Implementations
    /// search by `(blob, offset)`; the cost grows with the range, not the blob.
    async fn manifest_range(&self, id: &BlobId, start: u64, end: u64)
        -> Result<Vec<ManifestEntry>>;

    /// Committed blobs in id order, starting after `after`, at most `limit`.
    async fn list_blobs(&self, after: Option<BlobId>, limit: usize) -> Result<Vec<BlobRecord>>;

    /// Remove a blob and decrement its chunks' reference counts in one step. Returns
    /// `None` if the blob did not exist, else the chunks whose count reached zero.
    async fn delete_blob(&self, id: &BlobId, now_ms: u64) -> Result<Option<Vec<ChunkId>>>;

    /// A chunk's record.
    async fn chunk(&self, id: &ChunkId) -> Result<Option<ChunkRecord>>;

    /// Chunk records in id order after `after`, at most `limit` (for verify and fsck).
    async fn list_chunks(&self, after: Option<ChunkId>, limit: usize) -> Result<Vec<ChunkRecord>>;

    /// All copies of a chunk.
    async fn locations(&self, id: &ChunkId) -> Result<Vec<Location>>;

    /// All copies of many chunks (one round trip where the backend allows).
    async fn locations_many(&self, ids: &[ChunkId]) -> Result<HashMap<ChunkId, Vec<Location>>> {
        let mut out = HashMap::with_capacity(ids.len());
        for id in ids {
            out.insert(*id, self.locations(id).await?);
        }
        Ok(out)
    }

    /// Record verification results: set each copy's health and last-verified time and
    /// append to the verification log.
    async fn record_verification(&self, results: &[VerifyRecord]) -> Result<()>;

    /// Fold a batch of reads into the access statistics: `(chunk, last read ms, reads)`.
    async fn record_access(&self, batch: &[(ChunkId, u64, u64)]) -> Result<()>;

    /// Up to `limit` chunks at reference count zero since at or before `zero_before_ms`,
    /// in queue order, starting after `after` (from the head when `None`). Paging with
    /// a cursor lets a collector get past candidates it cannot remove (copies left
    /// only in warm or cold, or in another node's hot tier), which stay queued.
    async fn gc_candidates(
        &self,
        zero_before_ms: u64,
        after: Option<GcCandidate>,
        limit: usize,
    ) -> Result<Vec<GcCandidate>>;

    /// For each chunk still at zero references, remove its hot copy on `node` and its
    /// shared (warm, cold) copies (and the chunk record once no copies remain: other
    /// nodes' hot copies are theirs to collect). Returns the chunks whose hot copy on
    /// `node` was removed: only those may have their bytes deleted, and only after this
    /// returns. Shared copies removed lower their packs' copy counts, and pack GC
    /// deletes a pack no copy names ([`EngineStore::dead_packs`]).
    async fn gc_remove(&self, ids: &[ChunkId], node: &str) -> Result<Vec<ChunkId>>;

    /// Claim up to `limit` locations for background work (see [`ClaimRequest`]).
    async fn claim_locations(&self, req: &ClaimRequest) -> Result<Vec<Location>>;

    /// Release claims taken by `node` on these locations before their lease ends.
    async fn release_claims(&self, node: &str, locations: &[Location]) -> Result<()>;

    /// Reference counts that disagree with the manifests (empty when consistent), from
    /// one consistent view of the metadata. Memory grows with the mismatches found,
    /// not with the number of chunks.
    async fn refcount_mismatches(&self) -> Result<Vec<RefcountMismatch>>;

    /// Set the reference count of `mismatch.chunk` to `mismatch.actual` if it is still
    /// `mismatch.stored` (a compare-and-set), keeping its GC state consistent: a count
    /// set to zero starts the grace period at `now_ms`, a count above zero leaves the GC
    /// queue. Returns whether it was set; `false` also when the chunk has no record.
    ///
    /// Safe against concurrent puts and deletes when `mismatch` came from
    /// [`refcount_mismatches`](Self::refcount_mismatches): they change a count and its
    /// manifest entries together, so an unchanged count means an unchanged difference.
    async fn repair_refcount(&self, mismatch: &RefcountMismatch, now_ms: u64) -> Result<bool>;

    /// Row counts and schema version.
    async fn stats(&self) -> Result<MetaStats>;

    /// The store's id: the one recorded when its metadata was created, or `proposed`,
    /// recorded now, when there is none (a new store, or one from before store ids).
    /// Concurrent callers all get the id recorded first (docs/tiers.md, "Store
    /// identity").
    async fn store_id(&self, proposed: &str) -> Result<StoreId>;

    /// Whether any pack of `tier` is recorded.
    async fn has_packs(&self, tier: Tier) -> Result<bool>;
}

/// A store's id as [`MetaStore::store_id`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreId {
    /// The id (`store-` and 32 hex digits for ids strata makes).
    pub id: String,
    /// True when this call recorded it: the metadata had none.
    pub created: bool,
}

/// What `strata meta check` reports: row counts, schema version, and every reference
/// count that disagrees with the manifests (DESIGN §7: a chunk's count is the number of
/// manifest entries referencing it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MetaCheck {
    /// Schema version and row counts.
    #[serde(flatten)]
    pub stats: MetaStats,
    /// Chunks whose stored reference count differs from their manifest entries.
    pub refcount_mismatches: Vec<RefcountMismatch>,
}

impl MetaCheck {
    /// Count rows and compare every reference count with the manifests.
    pub async fn run(meta: &dyn MetaStore) -> Result<MetaCheck> {
        Ok(MetaCheck {
            stats: meta.stats().await?,
            refcount_mismatches: meta.refcount_mismatches().await?,
        })
    }

    /// True when every reference count matches.
    pub fn is_consistent(&self) -> bool {
        self.refcount_mismatches.is_empty()
    }

    /// One line per problem found (empty when consistent).
    pub fn problems(&self) -> String {
        self.refcount_mismatches
            .iter()
            .map(|m| {
                format!(
                    "reference count of chunk {} is {}, but {} manifest entries reference it\n",
                    m.chunk, m.stored, m.actual
                )
            })
            .collect()
    }

    /// The process exit status: 0 when consistent, 1 otherwise.
    pub fn exit_code(&self) -> std::process::ExitCode {
        std::process::ExitCode::from(u8::from(!self.is_consistent()))
    }
}

/// Check the shape of a commit before any backend sees it: contiguous entries from 0 to
/// the blob size, the count matching, lengths non-zero.
pub fn validate_commit(commit: &BlobCommit) -> Result<()> {
    use crate::error::Error;
    let mut expected = 0u64;
    for e in &commit.entries {
        if e.offset != expected || e.length == 0 {
            return Err(Error::internal(format!(
                "manifest of {} is not contiguous at offset {}",
                commit.blob.id, e.offset
            )));
        }
        expected = e.end();
    }
    if expected != commit.blob.size || commit.entries.len() as u64 != commit.blob.chunk_count {
        return Err(Error::internal(format!(
            "manifest of {} covers {expected} bytes in {} entries, blob says {} in {}",
            commit.blob.id,
            commit.entries.len(),
            commit.blob.size,
            commit.blob.chunk_count
        )));
    }
    Ok(())
}
