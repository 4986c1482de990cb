//! Placement metadata (DESIGN §5, §6): adding and removing chunk copies outside a put,
//! and the per-pack records of the warm and cold tiers, including the restore state that
//! every process shares.
//!
//! Invariants every implementation keeps (checked by `tests/common/placement_conformance.rs`):
//! - [`PlacementStore::add_locations`] is an idempotent upsert, only for chunks that have
//!   a record (`NotFound` otherwise, and nothing is written).
//! - [`PlacementStore::remove_locations`] never removes the last healthy copy of a chunk
//!   whose reference count is above zero. The check and the removal are one atomic step,
//!   so two processes removing different copies of one chunk at once cannot both win.
//! - [`PlacementStore::set_pack_restore`] is a compare-and-set: of several processes that
//!   want to request a restore of one pack, exactly one sees `true` and sends it.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{Location, Tier};
use crate::object::StorageClass;

/// Where a pack stands with respect to archive restores, as recorded in metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestoreState {
    /// No restore recorded (the pack is readable directly, or nobody asked yet).
    None,
    /// A restore request was sent; until the recorded expiry nobody sends another.
    Requested,
    /// A restored copy was read successfully; readable until the recorded expiry.
    Restored,
}

impl RestoreState {
    /// The text stored in metadata (`None` has no text: SQL `NULL`).
    pub fn as_db(self) -> Option<&'static str> {
        match self {
            RestoreState::None => None,
            RestoreState::Requested => Some("requested"),
            RestoreState::Restored => Some("restored"),
        }
    }

    /// Inverse of [`RestoreState::as_db`].
    pub fn from_db(s: Option<&str>) -> Result<Self> {
        match s {
            None => Ok(RestoreState::None),
            Some("requested") => Ok(RestoreState::Requested),
            Some("restored") => Ok(RestoreState::Restored),
            Some(other) => Err(Error::internal(format!(
                "unknown pack restore state {other:?}"
            ))),
        }
    }
}

/// The restore state of a pack together with its expiry; compared as a whole by
/// [`PlacementStore::set_pack_restore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PackRestore {
    /// The state.
    pub state: RestoreState,
    /// For `Requested`: when another request may be sent. For `Restored`: when the
    /// restored copy expires. Milliseconds since the epoch.
    pub expiry_ms: Option<u64>,
}

impl PackRestore {
    /// No restore recorded.
    pub const NONE: PackRestore = PackRestore {
        state: RestoreState::None,
        expiry_ms: None,
    };

    /// Whether a restore is known to be under way at `now_ms`.
    pub fn pending_at(&self, now_ms: u64) -> bool {
        self.state == RestoreState::Requested && self.expiry_ms.is_some_and(|e| e > now_ms)
    }
}

/// One pack object of the warm or cold tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackRecord {
    /// The pack's name: the object key below the tier's object-store prefix, derived
    /// from its tier and [`PackId`](crate::pack::PackId) by [`crate::tier::pack_name`].
    pub id: String,
    /// `Warm` or `Cold`.
    pub tier: Tier,
    /// Storage class the object was written in.
    pub storage_class: StorageClass,
    /// Object size in bytes.
    pub size: u64,
    /// Stored bytes of the chunks the pack was written with (pack GC keeps it current).
    pub live_bytes: u64,
    /// When it was written, ms since the epoch.
    pub created_ms: u64,
    /// Restore state shared by every process.
    pub restore: PackRestore,
    /// Policy class of the chunks it was written for (`""`: the default policy); the
    /// archive worker applies that class's `warm_idle_secs`.
    #[serde(default)]
    pub class: String,
    /// Nothing deletes or rewrites the object before this time: the minimum storage
    /// duration of its storage class (docs/tiers.md), ms since the epoch.
    #[serde(default)]
    pub min_keep_until_ms: Option<u64>,
}

/// Placement operations of a metadata store (a supertrait of
/// [`MetaStore`](super::MetaStore)); see the module invariants.
#[async_trait]
pub trait PlacementStore: Send + Sync + 'static {
    /// Record copies of chunks that already have a record (insert, or update offset,
    /// length, health and last-verified time of an existing copy). `NotFound`, with
    /// nothing written, if a chunk has no record.
    async fn add_locations(&self, locations: &[Location]) -> Result<()>;

    /// Remove copies (matched by identity: chunk, tier, node, pack), except those whose
    /// removal would leave a chunk with references and no other healthy copy that
    /// `reader` (the node asking) can read: a shared (warm or cold) copy or `reader`'s
    /// own hot copy; other nodes' hot tiers are their local caches and do not count.
    /// Returns the copies actually removed, as they were; only their bytes may be
    /// deleted, and only after this returns. Copies that do not exist are ignored.
    async fn remove_locations(&self, locations: &[Location], reader: &str)
        -> Result<Vec<Location>>;

    /// Insert or replace a pack record.
    async fn put_pack(&self, pack: &PackRecord) -> Result<()>;

    /// A pack record, if any.
    async fn pack(&self, id: &str) -> Result<Option<PackRecord>>;

    /// Set a pack's restore state to `new` if it is exactly `expected` now; returns
    /// whether it was set. `false` also when the pack has no record.
    async fn set_pack_restore(
        &self,
        id: &str,
        expected: &PackRestore,
        new: &PackRestore,
    ) -> Result<bool>;
}

/// Which of `to_remove` may go: for each chunk, removals are refused while they would
/// leave no healthy copy readable by `reader` and the chunk is referenced. Readable
/// means shared (warm or cold) or in `reader`'s own hot tier: another node's hot copy
/// is that node's local cache, which `reader` cannot read and which that node may drop
/// at any time. `current` holds every copy of the chunks involved;
/// `referenced(chunk)` says whether its reference count is above zero. Shared by the
/// implementations, which call it with the chunks locked.
pub fn allowed_removals(
    to_remove: &[Location],
    current: &[Location],
    reader: &str,
    referenced: impl Fn(&crate::id::ChunkId) -> bool,
) -> Vec<Location> {
    use std::collections::HashMap;
    let existing: Vec<&Location> = current
        .iter()
        .filter(|c| to_remove.iter().any(|r| r.same_copy(c)))
        .collect();
    let mut healthy_left: HashMap<crate::id::ChunkId, usize> = HashMap::new();
    for c in current {
        let removed = existing.iter().any(|r| r.same_copy(c));
        let readable = c.tier != Tier::Hot || c.node == reader;
        if c.health == crate::model::Health::Ok && readable && !removed {
            *healthy_left.entry(c.chunk).or_default() += 1;
        }
    }
    let mut out: Vec<Location> = Vec::new();
    let mut refused_chunks: HashMap<crate::id::ChunkId, bool> = HashMap::new();
    for l in existing {
        let refuse = *refused_chunks.entry(l.chunk).or_insert_with(|| {
            referenced(&l.chunk) && healthy_left.get(&l.chunk).copied().unwrap_or(0) == 0
        });
        if refuse {
            // Refuse every removal of this chunk asked for here, not an arbitrary subset.
            continue;
        }
        if !out.iter().any(|o| o.same_copy(l)) {
            out.push(l.clone());
        }
    }
    out
}

/// For a move ([`PlacementChange::moves`](super::PlacementChange::moves)): the copies
/// of `add` still to be made, given `current`, every copy now recorded of the chunks
/// `to_remove` names. A chunk's new copies are kept while at least one of its copies
/// being moved away still exists; when all of them are gone another worker moved (or
/// rewrote) them first, and adding ours would leave the chunk two copies where the
/// policy wants one. Chunks `to_remove` does not name keep their adds.
pub fn moving_adds(
    add: &[Location],
    to_remove: &[Location],
    current: &[Location],
) -> Vec<Location> {
    use std::collections::HashSet;
    let moving: HashSet<crate::id::ChunkId> = to_remove.iter().map(|r| r.chunk).collect();
    let still_there: HashSet<crate::id::ChunkId> = to_remove
        .iter()
        .filter(|r| current.iter().any(|c| r.same_copy(c)))
        .map(|r| r.chunk)
        .collect();
    add.iter()
        .filter(|a| !moving.contains(&a.chunk) || still_there.contains(&a.chunk))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ChunkId;
    use crate::model::Health;

    fn loc(c: ChunkId, tier: Tier, node: &str, pack: &str, health: Health) -> Location {
        Location {
            chunk: c,
            tier,
            node: node.into(),
            pack: pack.into(),
            offset: 0,
            length: 1,
            health,
            last_verified_ms: None,
        }
    }

    #[test]
    fn refuses_last_healthy_copy_of_referenced_chunk() {
        let c = ChunkId::of(b"c");
        let hot = loc(c, Tier::Hot, "n", "", Health::Ok);
        let warm = loc(c, Tier::Warm, "", "warm/p", Health::Ok);
        let bad = loc(c, Tier::Cold, "", "cold/p", Health::Corrupt);
        let all = vec![hot.clone(), warm.clone(), bad.clone()];
        assert_eq!(
            allowed_removals(std::slice::from_ref(&hot), &all, "n", |_| true),
            vec![hot.clone()]
        );
        assert!(allowed_removals(&[hot.clone(), warm.clone()], &all, "n", |_| true).is_empty());
        assert_eq!(
            allowed_removals(&[hot.clone(), warm.clone()], &all, "n", |_| false).len(),
            2
        );
        assert_eq!(
            allowed_removals(std::slice::from_ref(&bad), &all, "n", |_| true),
            vec![bad]
        );
        let missing = loc(c, Tier::Warm, "", "warm/none", Health::Ok);
        assert!(allowed_removals(&[missing], &all, "n", |_| true).is_empty());
    }

    #[test]
    fn other_nodes_hot_copies_do_not_keep_a_chunk_readable() {
        let c = ChunkId::of(b"c");
        let mine = loc(c, Tier::Hot, "a", "", Health::Ok);
        let theirs = loc(c, Tier::Hot, "b", "", Health::Ok);
        let warm = loc(c, Tier::Warm, "", "warm/p", Health::Ok);
        let all = vec![mine.clone(), theirs.clone(), warm.clone()];
        // Node a drops the warm copy: its own hot copy still serves it.
        assert_eq!(
            allowed_removals(std::slice::from_ref(&warm), &all, "a", |_| true),
            vec![warm.clone()]
        );
        // Node c asks the same: only b's local cache would be left, so it is refused.
        assert!(allowed_removals(std::slice::from_ref(&warm), &all, "c", |_| true).is_empty());
        // Node a drops its hot copy and the warm one together: b's cache does not count.
        assert!(allowed_removals(&[mine.clone(), warm.clone()], &all, "a", |_| true).is_empty());
        // An unreferenced chunk may lose every copy.
        assert_eq!(
            allowed_removals(&[mine, warm], &all, "a", |_| false).len(),
            2
        );
    }

    #[test]
    fn restore_state_db_round_trip() {
        for s in [
            RestoreState::None,
            RestoreState::Requested,
            RestoreState::Restored,
        ] {
            assert_eq!(RestoreState::from_db(s.as_db()).unwrap(), s);
        }
        assert!(RestoreState::from_db(Some("x")).is_err());
    }
}
