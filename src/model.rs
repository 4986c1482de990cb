//! The data model shared by every backend (DESIGN §1, §6): blob records, manifest
//! entries, chunk records and locations.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{BlobId, ChunkId};

/// Where a copy of a chunk lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// RocksDB on the local disk of one node.
    Hot,
    /// Object storage, standard class.
    Warm,
    /// Object storage, archive class.
    Cold,
}

impl Tier {
    /// Lower-case name, as stored in metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Hot => "hot",
            Tier::Warm => "warm",
            Tier::Cold => "cold",
        }
    }

    /// One byte used in embedded keys.
    pub fn code(self) -> u8 {
        match self {
            Tier::Hot => 0,
            Tier::Warm => 1,
            Tier::Cold => 2,
        }
    }

    /// Inverse of [`Tier::as_str`].
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "hot" => Ok(Tier::Hot),
            "warm" => Ok(Tier::Warm),
            "cold" => Ok(Tier::Cold),
            other => Err(Error::invalid(format!(
                "unknown tier {other:?} (hot, warm or cold)"
            ))),
        }
    }
}

/// Health of one stored copy, as last observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Last read (or write) verified the bytes.
    Ok,
    /// The bytes did not hash to the chunk id.
    Corrupt,
    /// The copy was expected but not found.
    Missing,
}

impl Health {
    /// Lower-case name, as stored in metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Corrupt => "corrupt",
            Health::Missing => "missing",
        }
    }

    /// Inverse of [`Health::as_str`].
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "ok" => Ok(Health::Ok),
            "corrupt" => Ok(Health::Corrupt),
            "missing" => Ok(Health::Missing),
            other => Err(Error::internal(format!("unknown health {other:?}"))),
        }
    }
}

/// FastCDC parameters that cut a blob; stored with every manifest so that changing the
/// defaults never affects old blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// Minimum chunk size in bytes.
    pub min: u32,
    /// Target average chunk size in bytes.
    pub avg: u32,
    /// Maximum chunk size in bytes.
    pub max: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams {
            min: 16 * 1024,
            avg: 64 * 1024,
            max: 256 * 1024,
        }
    }
}

impl ChunkerParams {
    /// Check the bounds FastCDC 2020 accepts.
    pub fn validate(&self) -> Result<()> {
        let ok = (64..=1 << 20).contains(&self.min)
            && (256..=1 << 22).contains(&self.avg)
            && (1024..=1 << 24).contains(&self.max)
            && self.min <= self.avg
            && self.avg <= self.max;
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "bad chunking parameters min={} avg={} max={}: need min ≤ avg ≤ max with min in 64..=1MiB, avg in 256..=4MiB, max in 1KiB..=16MiB",
                self.min, self.avg, self.max
            )))
        }
    }
}

/// One committed blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRecord {
    /// BLAKE3 of the whole content.
    pub id: BlobId,
    /// Length in bytes.
    pub size: u64,
    /// Number of manifest entries.
    pub chunk_count: u64,
    /// Parameters that cut it.
    pub params: ChunkerParams,
    /// Commit time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Policy class named at put (`[policy.classes.NAME]`); `""` for the default policy.
    #[serde(default)]
    pub class: String,
    /// The tier the workers never demote this blob's chunks below (`strata tier pin`).
    #[serde(default)]
    pub pin: Option<Tier>,
}

/// One entry of a manifest: the chunk covering `offset .. offset + length` of the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Offset of the chunk inside the blob.
    pub offset: u64,
    /// Chunk length in bytes.
    pub length: u32,
    /// Chunk id.
    pub chunk: ChunkId,
}

impl ManifestEntry {
    /// One past the last byte this entry covers.
    pub fn end(&self) -> u64 {
        self.offset + u64::from(self.length)
    }
}

/// Bookkeeping of one distinct chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRecord {
    /// Chunk id.
    pub id: ChunkId,
    /// Length in bytes.
    pub size: u32,
    /// Number of manifest entries (over all blobs) that reference it.
    pub refcount: u64,
    /// When the reference count last reached zero, if it is zero.
    pub zero_since_ms: Option<u64>,
    /// Last read, milliseconds since the epoch (flushed in batches, so a little stale).
    pub last_access_ms: Option<u64>,
    /// Number of reads recorded.
    pub access_count: u64,
}

/// One stored copy of a chunk. Its identity is `(chunk, tier, node, pack)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// The chunk this is a copy of.
    pub chunk: ChunkId,
    /// Tier holding the copy.
    pub tier: Tier,
    /// Node owning a hot copy; empty for shared tiers.
    pub node: String,
    /// Pack object id for warm and cold copies; empty for hot copies (keyed by chunk id).
    pub pack: String,
    /// Offset inside the pack (0 for hot).
    pub offset: u64,
    /// Stored length (may differ from the chunk size when compressed).
    pub length: u64,
    /// Last observed health.
    pub health: Health,
    /// Last verification time, milliseconds since the epoch.
    pub last_verified_ms: Option<u64>,
}

impl Location {
    /// A freshly written, verified hot copy on `node`.
    pub fn hot(chunk: ChunkId, node: &str, length: u64, now_ms: u64) -> Self {
        Location {
            chunk,
            tier: Tier::Hot,
            node: node.to_string(),
            pack: String::new(),
            offset: 0,
            length,
            health: Health::Ok,
            last_verified_ms: Some(now_ms),
        }
    }

    /// Whether this is a copy in `node`'s own hot tier.
    pub fn is_hot_on(&self, node: &str) -> bool {
        self.tier == Tier::Hot && self.node == node
    }

    /// Whether `node` can read this copy: shared tiers anywhere, hot copies only locally.
    pub fn readable_by(&self, node: &str) -> bool {
        self.tier != Tier::Hot || self.node == node
    }

    /// Whether this is the same copy as `other` (same identity, any state).
    pub fn same_copy(&self, other: &Location) -> bool {
        self.chunk == other.chunk
            && self.tier == other.tier
            && self.node == other.node
            && self.pack == other.pack
    }
}

/// What a put asks the metadata store to commit atomically.
#[derive(Debug, Clone)]
pub struct BlobCommit {
    /// The blob record.
    pub blob: BlobRecord,
    /// The manifest, ordered by offset, contiguous from 0 to `blob.size`.
    pub entries: Vec<ManifestEntry>,
    /// Copies this put wrote (chunks that were not already readable by `node`).
    pub new_locations: Vec<Location>,
    /// The node committing (whose hot copies count as readable).
    pub node: String,
}

/// Result of [`crate::meta::MetaStore::commit_blob`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The blob is now visible.
    Committed,
    /// The blob was already committed (by this or another writer); nothing changed.
    AlreadyExists(BlobRecord),
    /// Nothing was committed: these chunks were thought present but no readable healthy
    /// copy remains (garbage collection took them). Write them and commit again.
    MissingChunks(Vec<ChunkId>),
}

/// Result of a verification of one copy, recorded in metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyRecord {
    /// The copy checked.
    pub location: Location,
    /// What was found.
    pub health: Health,
    /// When, milliseconds since the epoch.
    pub at_ms: u64,
    /// Free text detail.
    pub detail: String,
}

/// A reference count that disagrees with the manifests (reported by fsck).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefcountMismatch {
    /// The chunk.
    pub chunk: ChunkId,
    /// Count stored in the chunk record (0 if there is none).
    pub stored: u64,
    /// Number of manifest entries referencing it.
    pub actual: u64,
}

/// Row counts, for `strata meta check` and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MetaStats {
    /// Schema version of the store.
    pub schema_version: u32,
    /// Committed blobs.
    pub blobs: u64,
    /// Manifest entries over all blobs.
    pub manifest_entries: u64,
    /// Distinct chunk records.
    pub chunks: u64,
    /// Chunk copies.
    pub locations: u64,
}

/// A chunk in the GC queue (reference count zero since `zero_since_ms`). The queue is
/// ordered by `(zero_since_ms, chunk)`, which is also this type's order: pass the last
/// candidate of a page back to get the next page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GcCandidate {
    /// When its reference count last reached zero.
    pub zero_since_ms: u64,
    /// The chunk.
    pub chunk: ChunkId,
}

/// How a claim picks locations (background work, DESIGN §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOrder {
    /// Oldest `last_verified` first (never-verified first of all): scrubbing.
    OldestVerified,
    /// Least recently accessed chunk first: demotion.
    LeastRecentlyAccessed,
}

/// A request to claim locations for background work.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// Claiming node; no other node gets these rows until the lease ends or is released.
    pub node: String,
    /// Only locations in this tier.
    pub tier: Option<Tier>,
    /// Only hot locations owned by the claiming node (hot copies are node-local).
    pub own_hot_only: bool,
    /// Only copies the claiming node can read: shared (warm, cold) copies and its own
    /// hot copies, never another node's hot copies (scrubbing checks what it can read).
    pub readable_only: bool,
    /// Which rows first.
    pub order: ClaimOrder,
    /// At most this many rows.
    pub limit: usize,
    /// Current time, from the injected clock.
    pub now_ms: u64,
    /// The claim lapses at `now_ms + lease_ms` if not released.
    pub lease_ms: u64,
}
