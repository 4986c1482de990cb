//! What the tiering engine (`src/engine/`) needs from a metadata store (DESIGN §8b,
//! docs/tiers.md "The tiering engine"): leases on the database's clock with fencing
//! tokens, an index of each node's hot copies by last read, a hot-bytes counter per
//! node, pins, and one fenced, atomic commit for every move.
//!
//! Invariants every implementation keeps (checked by `tests/common/engine_conformance.rs`,
//! run against the embedded store and PostgreSQL):
//! - Lease times come from the store's own clock (PostgreSQL `now()`; the embedded store's
//!   injected clock, which is the only clock of its single process), never the caller's.
//! - A lease is held by at most one holder at a time. Every grant to a new holder, and
//!   every grant after the lease lapsed, takes a new fencing token, strictly greater than
//!   every token granted before for any lease. Renewing a live lease keeps its token.
//! - [`EngineStore::commit_placement`] with a fence commits only if that lease is still
//!   held by that holder with that token and has not lapsed, checked in the same atomic
//!   step as the writes; otherwise it writes nothing and fails with
//!   [`ErrorKind::Fenced`](crate::ErrorKind::Fenced).
//! - The hot index and the per-node hot-bytes counter change in the same atomic step as
//!   the hot locations they describe (`commit_blob`, `add_locations`,
//!   `remove_locations`, `gc_remove`, `commit_placement`).
//! - The hot index is ordered: [`EngineStore::hot_copies`] is a range scan costing
//!   O(rows returned).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::id::{BlobId, ChunkId};
use crate::meta::placement::PackRecord;
use crate::model::{Location, Tier};

/// A lease on a named piece of shared work (`demote:<node>`, `pack:<name>`,
/// `restore:<pack>`, `gc`), granted by [`EngineStore::acquire_lease`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// What the lease is on.
    pub name: String,
    /// Who holds it (a node id).
    pub holder: String,
    /// The fencing token: strictly increasing over every grant of every lease.
    pub token: u64,
    /// When it lapses, on the store's clock (ms since the epoch).
    pub until_ms: u64,
}

impl Lease {
    /// The fence a commit made under this lease carries.
    pub fn fence(&self) -> Fence {
        Fence {
            name: self.name.clone(),
            holder: self.holder.clone(),
            token: self.token,
        }
    }
}

/// Proof that a commit is made under a lease (see the module invariants).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fence {
    /// The lease's name.
    pub name: String,
    /// Its holder.
    pub holder: String,
    /// The token of the grant the work was done under.
    pub token: u64,
}

/// One hot copy of a chunk on a node, as the hot index records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotCopy {
    /// The chunk.
    pub chunk: ChunkId,
    /// Stored length of the copy (what it costs the node's hot tier).
    pub length: u64,
    /// When it was written or promoted on this node (ms since the epoch).
    pub placed_ms: u64,
    /// When it was last read on this node; `placed_ms` until its first read.
    pub last_read_ms: u64,
    /// Policy class of the blob whose put or read placed it (`""`: the default policy).
    pub class: String,
    /// The blob whose put or read placed it, when known (demotion packs chunks by blob).
    pub blob: Option<BlobId>,
}

/// Which order [`EngineStore::hot_copies`] scans a node's hot copies in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HotOrder {
    /// Least recently read first, over every class (watermark demotion).
    LeastRecentlyRead,
    /// Least recently read first, only copies of this class (`""` = default): TTL
    /// demotion scans each class up to its own idle limit.
    Class(String),
}

/// A position in a [`EngineStore::hot_copies`] scan: the last copy of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HotCursor {
    /// Its last read.
    pub last_read_ms: u64,
    /// Its chunk.
    pub chunk: ChunkId,
}

impl HotCopy {
    /// The cursor that continues a scan after this copy.
    pub fn cursor(&self) -> HotCursor {
        HotCursor {
            last_read_ms: self.last_read_ms,
            chunk: self.chunk,
        }
    }
}

/// Per-chunk pin state: the lowest tier any referencing blob is pinned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PinCounts {
    /// Blobs referencing the chunk pinned to hot.
    pub hot: u64,
    /// Blobs referencing the chunk pinned to warm (or hot: a hot pin also keeps the
    /// chunk out of the cold tier).
    pub warm: u64,
}

impl PinCounts {
    /// The tier the workers may not demote the chunk below, if any.
    pub fn floor(&self) -> Option<Tier> {
        if self.hot > 0 {
            Some(Tier::Hot)
        } else if self.warm > 0 {
            Some(Tier::Warm)
        } else {
            None
        }
    }
}

/// One atomic, optionally fenced change of placement: record new packs, add copies,
/// remove copies (removals refused as [`crate::meta::PlacementStore::remove_locations`]
/// refuses them: never the last healthy copy of a referenced chunk).
#[derive(Debug, Clone, Default)]
pub struct PlacementChange {
    /// Pack records to insert or replace (before the locations naming them).
    pub packs: Vec<PackRecord>,
    /// Copies to add (idempotent upsert; chunks must have records).
    pub add: Vec<Location>,
    /// For hot copies among `add`: the policy class and blob to index them under.
    pub hot_class: String,
    /// See `hot_class`.
    pub hot_blob: Option<BlobId>,
    /// Copies to remove (refused for a referenced chunk that would be left with no
    /// healthy copy `node` can read: see
    /// [`PlacementStore::remove_locations`](super::PlacementStore::remove_locations)).
    pub remove: Vec<Location>,
    /// The node making the change. Empty: only shared (warm, cold) copies count as
    /// readable, the strictest rule.
    pub node: String,
    /// Hot copies among `add` whose last-read time is set to this (a promotion is a
    /// read); `None` keeps an existing copy's index entry or uses the copy's
    /// `last_verified_ms` for a new one.
    pub read_ms: Option<u64>,
    /// A move: a chunk's copies in `add` are made only while one of its copies in
    /// `remove` still exists at commit. Two workers moving the same copy (gc rewriting a
    /// sparse pack while the archive worker sends that pack to cold) then leave one new
    /// copy, not two; the loser's new pack is named by fewer copies (possibly none, a
    /// dead pack gc deletes). `false`: every add is made.
    pub moves: bool,
}

/// Bytes, chunks and objects in one tier, for `strata tier status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierUsage {
    /// Stored bytes of the copies (hot) or the pack objects (warm, cold).
    pub bytes: u64,
    /// Copies.
    pub chunks: u64,
    /// Pack objects (0 for hot).
    pub objects: u64,
}

/// A warm pack the archive worker may send to cold: all its live chunks idle past its
/// class's `warm_idle_secs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveCandidate {
    /// The pack.
    pub pack: PackRecord,
    /// The latest read of any of its chunks, or its creation when none was read.
    pub last_read_ms: u64,
}

/// Tiering-engine operations of a metadata store (a supertrait of
/// [`MetaStore`](super::MetaStore)); see the module invariants.
#[async_trait]
pub trait EngineStore: Send + Sync + 'static {
    /// The store's clock now (ms since the epoch): what lease times are measured on.
    async fn db_now_ms(&self) -> Result<u64>;

    /// Grant `name` to `holder` for `ttl_ms` from the store's clock if it is free,
    /// lapsed, or already held by `holder` (a renewal, keeping the token while the
    /// lease is live). `None` when another holder has it.
    async fn acquire_lease(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<Option<Lease>>;

    /// Give a lease up before it lapses (nothing happens if it was taken over).
    async fn release_lease(&self, lease: &Lease) -> Result<()>;

    /// The leases whose name starts with `prefix` and that are live now on the store's
    /// clock (pack write and delete intents: docs/integrity.md, "Pack intents").
    async fn live_leases(&self, prefix: &str) -> Result<Vec<Lease>>;

    /// Apply `change` atomically if `fence` (when given) is still valid; `Fenced` and
    /// nothing written otherwise. Returns the copies actually removed.
    async fn commit_placement(
        &self,
        fence: Option<&Fence>,
        change: &PlacementChange,
    ) -> Result<Vec<Location>>;

    /// Up to `limit` of `node`'s hot copies in `order`, after `after`, whose last read
    /// is at or before `read_before_ms`.
    async fn hot_copies(
        &self,
        node: &str,
        order: &HotOrder,
        read_before_ms: u64,
        after: Option<HotCursor>,
        limit: usize,
    ) -> Result<Vec<HotCopy>>;

    /// Stored bytes of `node`'s hot copies: a counter, O(1).
    async fn hot_bytes(&self, node: &str) -> Result<u64>;

    /// Set the last-read time of `node`'s hot copies of these chunks (`(chunk, ms)`,
    /// keeping a later time already recorded). Chunks with no hot copy on `node` are
    /// ignored.
    async fn touch_hot(&self, node: &str, reads: &[(ChunkId, u64)]) -> Result<()>;

    /// Pin counts of these chunks (chunks never pinned are left out).
    async fn pins(&self, ids: &[ChunkId]) -> Result<Vec<(ChunkId, PinCounts)>>;

    /// Pin a blob to `to` (`Some(Hot)` or `Some(Warm)`) or unpin it (`None`), updating
    /// the pin counts of its distinct chunks in the same atomic step. Returns false if
    /// the blob does not exist. Pinning a pinned blob again replaces its pin.
    async fn set_pin(&self, blob: &BlobId, to: Option<Tier>) -> Result<bool>;

    /// Warm packs whose chunks were all last read at or before `read_before_ms` (and
    /// were created then or earlier), oldest first, after pack name `after`, at most
    /// `limit`; only packs of `class` (`""` = default).
    async fn archive_candidates(
        &self,
        class: &str,
        read_before_ms: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ArchiveCandidate>>;

    /// Every copy recorded in pack `name`, by offset; an index lookup, not a scan of all
    /// locations.
    async fn pack_locations(&self, name: &str) -> Result<Vec<Location>>;

    /// Packs pack GC may delete: no copy names them, created at or before
    /// `created_before_ms` (the grace period: a writer records a pack and its copies in
    /// one commit, or records the pack first and its copies right after), and past their
    /// `min_keep_until_ms` at `now_ms`. By name after `after`, at most `limit`.
    async fn dead_packs(
        &self,
        created_before_ms: u64,
        now_ms: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PackRecord>>;

    /// Packs pack GC rewrites: some copy still names them, but their live bytes are
    /// below `max_live_fraction` of their size; created at or before `created_before_ms`
    /// and past their `min_keep_until_ms` at `now_ms`. By name after `after`, at most
    /// `limit`.
    async fn sparse_packs(
        &self,
        max_live_fraction: f64,
        created_before_ms: u64,
        now_ms: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PackRecord>>;

    /// Delete pack record `name` if it is still dead by [`Self::dead_packs`]'s rule, in
    /// one atomic step; returns whether it was deleted. Its object may be deleted only
    /// after this returns `true`.
    async fn delete_dead_pack(
        &self,
        name: &str,
        created_before_ms: u64,
        now_ms: u64,
    ) -> Result<bool>;

    /// Every pack record by name after `after`, at most `limit`: a page of the pack
    /// table, for checks that walk it all (`fsck`) in bounded memory.
    async fn list_packs(&self, after: Option<&str>, limit: usize) -> Result<Vec<PackRecord>>;

    /// Set pack `name`'s `live_bytes` to the sum of the lengths of the copies recorded
    /// in it, counted and written in one atomic step. Returns the new value, or `None`
    /// when the pack has no record.
    async fn recount_pack_live_bytes(&self, name: &str) -> Result<Option<u64>>;

    /// Packs whose restore state is `Requested`, by pack name after `after`, at most
    /// `limit`.
    async fn restore_requests(&self, after: Option<&str>, limit: usize) -> Result<Vec<PackRecord>>;

    /// Usage of each tier (hot: all nodes together) and of each node's hot tier.
    async fn usage(&self) -> Result<StoreUsage>;

    /// Record a worker's pass, replacing the last one recorded for `(node, worker)`.
    async fn record_pass(&self, pass: &PassRecord) -> Result<()>;

    /// The last pass of every `(node, worker)` recorded, by node then worker.
    async fn passes(&self) -> Result<Vec<PassRecord>>;
}

/// The last pass of one worker on one node, kept in metadata so `strata tier status`
/// shows it from any process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassRecord {
    /// The node that ran it.
    pub node: String,
    /// `demote`, `archive`, `restore` or `gc`.
    pub worker: String,
    /// When it started, ms since the epoch.
    pub started_ms: u64,
    /// How long it took, ms.
    pub duration_ms: u64,
    /// The error that ended it, if it failed.
    pub error: Option<String>,
    /// Chunk copies it moved (or removed, for gc).
    pub chunks: u64,
    /// Bytes it moved (or reclaimed, for gc).
    pub bytes: u64,
}

/// What [`EngineStore::usage`] reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreUsage {
    /// Hot copies over every node.
    pub hot: TierUsage,
    /// Warm packs.
    pub warm: TierUsage,
    /// Cold packs.
    pub cold: TierUsage,
    /// Hot bytes and copies per node, by node id.
    pub hot_by_node: Vec<(String, TierUsage)>,
}
