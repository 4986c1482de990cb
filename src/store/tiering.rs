//! Moves between tiers (DESIGN §4–5) and the `replicated` durability of puts. Reads
//! through packs are in `fetch`, archive restores in `restore`; the object-store side is
//! in `crate::tier`.
//!
//! Every move follows one order: write the new copy → verify it → commit its location
//! → remove the old copy's location (refused by the metadata store if it were the last
//! healthy one) → delete the old bytes. Pack objects are never deleted here: a pack copy
//! is dropped by removing its location, and the pack GC reclaims objects whose chunks
//! are all gone (docs/tiers.md).

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use serde::Serialize;

use super::Store;
use crate::engine::intent::PackWrite;
use crate::error::{Error, Result};
use crate::id::{BlobId, ChunkId};
use crate::model::{Health, Location, Tier};
use crate::pack::PackBuilder;
use crate::settings::Durability;

use super::fetch::{keep_worst, shared_candidates};

/// Chunks a move looks up and reads at a time.
const MOVE_BATCH: usize = 512;

/// What a move did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MoveReport {
    /// Distinct chunks asked for.
    pub chunks: u64,
    /// Copies written to the target tier.
    pub written: u64,
    /// Uncompressed bytes of those copies.
    pub bytes_written: u64,
    /// Pack objects uploaded (warm and cold targets).
    pub packs_written: u64,
    /// Old copies removed after the new ones were committed.
    pub copies_removed: u64,
    /// Old copies kept because removing them would have left no healthy copy.
    pub copies_kept: u64,
}

/// What [`Store::delete_unrecorded_hot`] did.
#[derive(Debug, Default)]
pub(super) struct HotDeletion {
    /// Chunks whose bytes were deleted.
    pub(super) deleted: Vec<ChunkId>,
    /// Chunks skipped because a put or promotion in flight holds them.
    pub(super) held: Vec<ChunkId>,
}

/// Chunks being packed for one move: the builder and the chunks in it, in order.
struct Packing {
    builder: PackBuilder,
    members: Vec<(ChunkId, u64)>,
}

impl Store {
    /// Move every chunk of a blob to `to` (see the module docs for the order of steps).
    /// Chunks are packed in manifest order, so what moves together shares packs. A chunk
    /// that cannot be read now (an archived pack: its restore is requested) is left where
    /// it is and the move fails with that error after moving the others; running it
    /// again continues where it stopped.
    pub async fn move_blob(&self, id: &BlobId, to: Tier) -> Result<MoveReport> {
        let _op = self.begin().await?;
        let rec = self.blob_record(id).await?;
        let mut seen = HashSet::new();
        let chunks: Vec<(ChunkId, u32)> = self
            .entries(&rec, 0, rec.size)
            .await?
            .into_iter()
            .filter(|e| seen.insert(e.chunk))
            .map(|e| (e.chunk, e.length))
            .collect();
        self.move_sized(chunks, to).await
    }

    /// [`Store::move_blob`] for a set of chunks. `NotFound` if one has no record.
    pub async fn move_chunks(&self, ids: &[ChunkId], to: Tier) -> Result<MoveReport> {
        let _op = self.begin().await?;
        let mut seen = HashSet::new();
        let mut chunks = Vec::new();
        for id in ids.iter().filter(|id| seen.insert(**id)) {
            let rec = self
                .inner
                .meta
                .chunk(id)
                .await?
                .ok_or_else(|| Error::not_found(format!("chunk {id}")))?;
            chunks.push((*id, rec.size));
        }
        self.move_sized(chunks, to).await
    }

    async fn move_sized(&self, chunks: Vec<(ChunkId, u32)>, to: Tier) -> Result<MoveReport> {
        let mut report = MoveReport {
            chunks: chunks.len() as u64,
            ..MoveReport::default()
        };
        let mut failed: Option<Error> = None;
        let mut packing = match to {
            Tier::Hot => None,
            _ => Some(Packing {
                builder: self.inner.tiers.get(to)?.builder(),
                members: Vec::new(),
            }),
        };
        for batch in chunks.chunks(MOVE_BATCH) {
            self.check_open()?;
            let ids: Vec<ChunkId> = batch.iter().map(|c| c.0).collect();
            let mut locs = self.inner.meta.locations_many(&ids).await?;
            let node = self.inner.node.clone();
            let mut in_place = Vec::new();
            let mut from_shared = Vec::new();
            let mut bytes: HashMap<ChunkId, Bytes> = HashMap::new();
            for &(id, len) in batch {
                let l = locs.remove(&id).unwrap_or_default();
                let ok = |t: Tier| {
                    l.iter()
                        .any(|x| x.tier == t && x.health == Health::Ok && x.readable_by(&node))
                };
                if ok(to) {
                    in_place.push(id);
                    continue;
                }
                if to != Tier::Hot && ok(Tier::Hot) {
                    match self.inner.hot.get(&id).await? {
                        Some(b) if ChunkId::of(&b) == id => {
                            bytes.insert(id, b);
                            continue;
                        }
                        _ => {} // the metadata is stale; the read path records it
                    }
                }
                if shared_candidates(&l).is_empty() {
                    // Nothing here or in a shared tier to read: say why, as a read would.
                    keep_worst(&mut failed, unreadable_here(&id, &l, &node));
                    continue;
                }
                from_shared.push((id, Some(len), l));
            }
            for (w, res) in from_shared.iter().zip(self.read_shared(&from_shared).await) {
                match res {
                    Ok(b) => {
                        bytes.insert(w.0, b);
                    }
                    Err(e) => keep_worst(
                        &mut failed,
                        e.context_prefix(format!("moving chunk {}", w.0.short())),
                    ),
                }
            }
            match packing.as_mut() {
                None => {
                    let fetched: Vec<(ChunkId, Bytes)> = batch
                        .iter()
                        .filter_map(|(id, _)| bytes.remove(id).map(|b| (*id, b)))
                        .collect();
                    let ids: Vec<ChunkId> = fetched.iter().map(|c| c.0).collect();
                    report.written += ids.len() as u64;
                    report.bytes_written += self.write_hot(fetched).await?;
                    in_place.extend(ids);
                }
                Some(p) => {
                    for (id, _) in batch {
                        if let Some(b) = bytes.remove(id) {
                            p.builder.add(*id, &b)?;
                            p.members.push((*id, b.len() as u64));
                            if p.builder.is_full() {
                                self.flush_pack(to, p, &mut report).await?;
                            }
                        }
                    }
                }
            }
            self.drop_old_copies(&in_place, to, &mut report).await?;
        }
        if let Some(p) = packing.as_mut() {
            if !p.builder.is_empty() {
                self.flush_pack(to, p, &mut report).await?;
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Upload the pack being built, commit it, then drop the old copies of its chunks.
    async fn flush_pack(&self, to: Tier, p: &mut Packing, report: &mut MoveReport) -> Result<()> {
        let tier = self.inner.tiers.get(to)?;
        let builder = std::mem::replace(&mut p.builder, tier.builder());
        let members = std::mem::take(&mut p.members);
        let written = tier
            .upload(&self.inner.intents, builder.finish()?, self.now_ms())
            .await?;
        // The pack and its copies in one commit: pack GC never sees the pack without
        // the copies that keep it.
        let change = crate::meta::PlacementChange {
            packs: vec![written.record],
            add: written.locations,
            node: self.inner.node.clone(),
            ..Default::default()
        };
        let res = self.inner.meta.commit_placement(None, &change).await;
        written.intent.finish().await;
        res?;
        report.packs_written += 1;
        report.written += members.len() as u64;
        report.bytes_written += members.iter().map(|m| m.1).sum::<u64>();
        let ids: Vec<ChunkId> = members.iter().map(|m| m.0).collect();
        self.drop_old_copies(&ids, to, report).await
    }

    /// Remove the copies of `chunks` outside `to` that this node owns (its hot copies
    /// and shared copies; other nodes' hot copies are theirs to move), then delete the
    /// hot bytes whose location is gone.
    async fn drop_old_copies(
        &self,
        chunks: &[ChunkId],
        to: Tier,
        report: &mut MoveReport,
    ) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        // `replicated` durability promises a copy every node can read: a move to this
        // node's hot tier adds a hot copy and keeps the shared one.
        if to == Tier::Hot && self.inner.settings.durability.mode == Durability::Replicated {
            return Ok(());
        }
        let node = &self.inner.node;
        let victims: Vec<Location> = self
            .inner
            .meta
            .locations_many(chunks)
            .await?
            .into_values()
            .flatten()
            .filter(|l| l.tier != to && (l.tier != Tier::Hot || l.node == *node))
            .collect();
        let removed = self.inner.meta.remove_locations(&victims, node).await?;
        report.copies_removed += removed.len() as u64;
        report.copies_kept += (victims.len() - removed.len()) as u64;
        let hot: Vec<ChunkId> = removed
            .iter()
            .filter(|l| l.is_hot_on(node))
            .map(|l| l.chunk)
            .collect();
        self.delete_removed_hot(&hot).await
    }

    /// Delete the hot bytes of chunks whose hot location on this node a commit has just
    /// removed (a move, a demotion), keeping those a put or promotion re-recorded since.
    /// The one place moves delete hot bytes.
    pub(crate) async fn delete_removed_hot(&self, chunks: &[ChunkId]) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        self.delete_unrecorded_hot(chunks).await.map(|_| ())
    }

    /// [`Self::delete_removed_hot`], returning what it deleted and what it skipped
    /// because a writer holds it (a caller that noted the chunks as unconfirmed keeps
    /// those notes, so a later sweep decides once the writer is done).
    pub(super) async fn delete_unrecorded_hot(&self, chunks: &[ChunkId]) -> Result<HotDeletion> {
        let mut out = HotDeletion::default();
        if chunks.is_empty() {
            return Ok(out);
        }
        self.pause_at("hot-delete").await;
        let node = &self.inner.node;
        {
            // Registration waits for this gate, so a writer is either registered now
            // (skipped here) or registers after the bytes are gone and writes them
            // again; one that released before the gate has committed, which the
            // re-read below sees.
            let _gate = self.inner.writing.gate().await;
            let (held, free): (Vec<ChunkId>, Vec<ChunkId>) =
                chunks.iter().partition(|c| self.inner.writing.is_held(c));
            out.held = held;
            let now = self.inner.meta.locations_many(&free).await?;
            out.deleted = free
                .into_iter()
                .filter(|c| {
                    !now.get(c)
                        .is_some_and(|ls| ls.iter().any(|l| l.is_hot_on(node)))
                })
                .collect();
            self.inner.hot.delete_many(out.deleted.clone()).await?;
        }
        for id in &out.deleted {
            self.inner.chunks.invalidate(id).await;
        }
        Ok(out)
    }

    /// For `replicated` durability: pack the chunks a put wrote to hot into the warm tier
    /// and return their warm locations, to commit with the blob, and the packs' write
    /// intents, to hold until that commit has landed. Nothing for `local`.
    pub(super) async fn replicate(
        &self,
        written: &[Location],
    ) -> Result<(Vec<Location>, Vec<PackWrite>)> {
        if self.inner.settings.durability.mode != Durability::Replicated {
            return Ok((Vec::new(), Vec::new()));
        }
        let warm = &self.inner.tiers.warm;
        let mut builder = warm.builder();
        let mut out = Vec::new();
        let mut intents = Vec::new();
        for l in written.iter().filter(|l| l.tier == Tier::Hot) {
            let bytes = self.inner.hot.get(&l.chunk).await?.ok_or_else(|| {
                Error::internal(format!(
                    "chunk {} left the hot tier before it was replicated",
                    l.chunk
                ))
            })?;
            builder.add(l.chunk, &bytes)?;
            if builder.is_full() {
                let full = std::mem::replace(&mut builder, warm.builder());
                let (locs, intent) = self.upload_replica(full).await?;
                out.extend(locs);
                intents.push(intent);
            }
        }
        if !builder.is_empty() {
            let (locs, intent) = self.upload_replica(builder).await?;
            out.extend(locs);
            intents.push(intent);
        }
        Ok((out, intents))
    }

    async fn upload_replica(&self, builder: PackBuilder) -> Result<(Vec<Location>, PackWrite)> {
        let written = self
            .inner
            .tiers
            .warm
            .upload(&self.inner.intents, builder.finish()?, self.now_ms())
            .await?;
        self.inner.meta.put_pack(&written.record).await?;
        Ok((written.locations, written.intent))
    }
}

/// Why a chunk with no healthy copy on this node or in a shared tier cannot be moved
/// from here: held only in other nodes' hot tiers (`Unavailable`, as a read says: the
/// bytes are fine, just not here), or by no copy at all (`Corrupt`).
fn unreadable_here(id: &ChunkId, locations: &[Location], node: &str) -> Error {
    let elsewhere: Vec<&str> = locations
        .iter()
        .filter(|l| l.tier == Tier::Hot && l.node != node && l.health == Health::Ok)
        .map(|l| l.node.as_str())
        .collect();
    if elsewhere.is_empty() {
        Error::corrupt(format!(
            "moving chunk {}: it has no healthy copy in any tier",
            id.short()
        ))
    } else {
        Error::unavailable(format!(
            "moving chunk {}: it is only in the hot tier of node(s) {}, not readable from \
             {node}; run the move on that node",
            id.short(),
            elsewhere.join(", ")
        ))
    }
}
