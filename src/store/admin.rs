//! Inspection and upkeep: `stat`, `list`, `delete` and `gc` (`verify` is in `verify.rs`).

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::Store;
use crate::error::{Error, Result};
use crate::id::{BlobId, ChunkId};
use crate::model::{BlobRecord, ChunkerParams, Health, Tier};

/// Chunks whose metadata is looked up per round trip by `stat` and `gc`.
const PAGE: usize = 1024;

/// Bytes of a blob's distinct chunks that have a healthy copy in each tier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TierBytes {
    /// In the hot tier (any node).
    pub hot: u64,
    /// In the warm tier.
    pub warm: u64,
    /// In the cold tier.
    pub cold: u64,
}

/// What `stat` reports about a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stat {
    /// Blob id.
    pub id: BlobId,
    /// Size in bytes.
    pub size: u64,
    /// Manifest entries.
    pub chunks: u64,
    /// Distinct chunks.
    pub distinct_chunks: u64,
    /// Commit time, ms since the epoch.
    pub created_ms: u64,
    /// Chunking parameters that cut it.
    pub chunker: ChunkerParams,
    /// Bytes per tier (distinct chunks; a chunk in two tiers counts in both).
    pub tiers: TierBytes,
    /// Cold packs holding this blob's chunks whose archive restore is under way.
    pub pending_restores: u64,
    /// Policy class named at put (`""`: the default policy).
    pub class: String,
    /// The tier the workers never demote it below (`strata tier pin`), if pinned.
    pub pin: Option<Tier>,
}

/// Result of [`Store::gc`]: what it removed, and what it gave back, per tier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Chunk copies deleted from this node's hot tier.
    pub chunks_removed: u64,
    /// Of those, chunks a put wrote but never committed (it failed or the process
    /// died first): bytes no metadata pointed to.
    pub orphans_removed: u64,
    /// Recorded size of the hot copies removed (orphans have no recorded size and are
    /// not counted here).
    pub hot_bytes_removed: u64,
    /// Bytes the hot tier's files shrank by (RocksDB table and blob files of chunk
    /// data), garbage of orphans and of earlier interrupted runs included: the disk
    /// space this run actually gave back.
    pub hot_bytes_reclaimed: u64,
    /// Unreferenced chunks past the grace period that keep their records because
    /// copies remain in another node's hot tier (that node's gc collects them). Their
    /// warm and cold copies are removed here.
    pub unreferenced_kept: u64,
    /// Pack objects deleted because no copy names them any more (past the grace
    /// period and their storage class's minimum storage duration).
    pub packs_deleted: u64,
    /// Bytes of the warm pack objects deleted.
    pub warm_bytes_reclaimed: u64,
    /// Bytes of the cold pack objects deleted.
    pub cold_bytes_reclaimed: u64,
    /// Sparse packs rewritten (their live chunks moved to new packs; the old objects
    /// are deleted as dead packs, in this run unless a copy in them was damaged).
    pub packs_rewritten: u64,
    /// Bytes of the new pack objects those rewrites wrote.
    pub bytes_rewritten: u64,
    /// Sparse cold packs left as they are because compacting them would cost more
    /// than the storage it saves over 90 days (`[costs]`).
    pub packs_kept_by_cost: u64,
    /// Sparse archived packs whose restore was requested so that a later run can
    /// rewrite them.
    pub restores_requested: u64,
    /// Pack objects no record names, deleted after the grace period (uploads whose
    /// commit never came, runs that died between a pack record's delete and its
    /// object's).
    pub orphan_packs_deleted: u64,
    /// Object store requests made: listings, DELETEs, and for rewrites one ranged GET
    /// per pack read plus a PUT and a HEAD per pack written.
    pub requests: u64,
    /// Per-pack failures (the run goes on past them; a later run retries).
    pub errors: Vec<String>,
}

impl Store {
    /// A blob's size, chunk counts and bytes per tier.
    pub async fn stat(&self, id: &BlobId) -> Result<Stat> {
        self.check_open()?;
        let rec = self.blob_record(id).await?;
        let sizes = self.distinct_chunks(&rec).await?;
        let ids: Vec<ChunkId> = sizes.keys().copied().collect();
        let mut tiers = TierBytes::default();
        let mut cold_packs = std::collections::BTreeSet::new();
        for page in ids.chunks(PAGE) {
            for (id, locs) in self.inner.meta.locations_many(page).await? {
                cold_packs.extend(
                    locs.iter()
                        .filter(|l| l.tier == Tier::Cold && l.health == Health::Ok)
                        .map(|l| l.pack.clone()),
                );
                let size = sizes.get(&id).copied().unwrap_or(0);
                let healthy = |t: Tier| locs.iter().any(|l| l.tier == t && l.health == Health::Ok);
                tiers.hot += if healthy(Tier::Hot) { size } else { 0 };
                tiers.warm += if healthy(Tier::Warm) { size } else { 0 };
                tiers.cold += if healthy(Tier::Cold) { size } else { 0 };
            }
        }
        Ok(Stat {
            id: rec.id,
            size: rec.size,
            chunks: rec.chunk_count,
            distinct_chunks: sizes.len() as u64,
            created_ms: rec.created_ms,
            chunker: rec.params,
            tiers,
            pending_restores: self.pending_restores(&cold_packs).await?,
            class: rec.class.clone(),
            pin: rec.pin,
        })
    }

    /// Every committed blob, in id order.
    pub async fn list(&self) -> Result<Vec<BlobRecord>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self.list_page(after, PAGE).await?;
            let done = page.len() < PAGE;
            after = page.last().map(|b| b.id);
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    /// One page of committed blobs after `after`, in id order.
    pub async fn list_page(&self, after: Option<BlobId>, limit: usize) -> Result<Vec<BlobRecord>> {
        self.check_open()?;
        self.inner.meta.list_blobs(after, limit).await
    }

    /// Delete a blob. Its chunks lose a reference; those no blob needs are reclaimed by
    /// [`Store::gc`] after the grace period. `NotFound` if it does not exist.
    pub async fn delete(&self, id: &BlobId) -> Result<()> {
        self.check_open()?;
        let outcome = self.inner.meta.delete_blob(id, self.now_ms()).await?;
        self.inner.blobs.invalidate(id).await;
        self.inner.manifests.invalidate(id).await;
        match outcome {
            Some(zeroed) => {
                tracing::debug!(blob = %id.short(), unreferenced = zeroed.len(), "deleted");
                Ok(())
            }
            None => Err(Error::not_found(format!("blob {id}"))),
        }
    }

    /// Reclaim hot copies of chunks that have had no references for longer than the
    /// grace period. Metadata is committed first; bytes are deleted after.
    ///
    /// A process can die anywhere in here without leaking: the chunks about to lose
    /// their hot locations are noted as unconfirmed (durably) before the metadata
    /// commit, so bytes whose deletion never happened are swept by the next run; and
    /// the hot tier keeps a marker from a chunk deletion until a completed reclaim, so
    /// an interrupted compaction is redone even by a run that removes nothing.
    ///
    /// Puts, reads and moves go on while it runs, its compaction included: bytes are
    /// deleted through [`Store::delete_removed_hot`]'s rule, which skips chunks a put in
    /// flight holds (docs/design.md, "Deleting hot bytes while puts run").
    pub async fn gc(&self) -> Result<GcReport> {
        let _op = self.begin().await?;
        let grace_ms = self.inner.settings.gc.grace_secs.saturating_mul(1000);
        let cutoff = self.now_ms().saturating_sub(grace_ms);
        let node = &self.inner.node;
        let mut report = GcReport::default();
        // The cursor moves past candidates that keep their records (copies only in warm
        // or cold, or in another node's hot tier): they stay queued, and the chunks
        // behind them must still be reached.
        let mut after = None;
        loop {
            let page = self.inner.meta.gc_candidates(cutoff, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(*last);
            let candidates: Vec<ChunkId> = page.iter().map(|c| c.chunk).collect();
            let locations = self.inner.meta.locations_many(&candidates).await?;
            let mut mine = HashMap::new();
            for id in &candidates {
                let locs = locations.get(id).map(Vec::as_slice).unwrap_or_default();
                if let Some(l) = locs.iter().find(|l| l.is_hot_on(node)) {
                    mine.insert(*id, l.length);
                }
                if locs.iter().any(|l| l.tier == Tier::Hot && l.node != *node) {
                    report.unreferenced_kept += 1;
                }
            }
            let noted: Vec<ChunkId> = mine.keys().copied().collect();
            self.inner.hot.note_unconfirmed(noted.clone()).await?;
            let removed = self.inner.meta.gc_remove(&candidates, node).await?;
            let done = self.delete_unrecorded_hot(&removed).await?;
            for id in &done.deleted {
                report.hot_bytes_removed += mine.get(id).copied().unwrap_or(0);
            }
            report.chunks_removed += done.deleted.len() as u64;
            // After the deletion, in the same log: a note that survives a crash means
            // the deletion may not have. Chunks a put in flight holds keep their notes:
            // the sweep of a later run decides them once the put is done.
            let held: HashSet<ChunkId> = done.held.into_iter().collect();
            self.inner
                .hot
                .confirm(noted.into_iter().filter(|c| !held.contains(c)).collect())
                .await?;
            if page.len() < PAGE {
                break;
            }
        }
        self.sweep_unconfirmed(&mut report).await?;
        report.hot_bytes_reclaimed = self.inner.hot.reclaim().await?;
        self.collect_packs(cutoff, &mut report).await?;
        Ok(report)
    }

    /// Delete hot chunks whose writes were never confirmed as recorded (DESIGN §3: a
    /// crash before the commit leaves unreferenced chunks, which GC reclaims): a noted
    /// chunk that no put in flight holds and no hot location on this node records is
    /// garbage. Chunks held by a put in flight keep their notes; the sweep stops at a
    /// page made only of those (a later run takes them up).
    async fn sweep_unconfirmed(&self, report: &mut GcReport) -> Result<()> {
        loop {
            let noted = self.inner.hot.unconfirmed(PAGE).await?;
            if noted.is_empty() {
                return Ok(());
            }
            let done = self.delete_unrecorded_hot(&noted).await?;
            report.orphans_removed += done.deleted.len() as u64;
            report.chunks_removed += done.deleted.len() as u64;
            let last_page = noted.len() < PAGE;
            let held: HashSet<ChunkId> = done.held.into_iter().collect();
            let settled: Vec<ChunkId> = noted.into_iter().filter(|c| !held.contains(c)).collect();
            let progress = !settled.is_empty();
            self.inner.hot.confirm(settled).await?;
            if last_page || !progress {
                return Ok(());
            }
        }
    }

    /// Distinct chunks of a blob with their sizes.
    async fn distinct_chunks(&self, rec: &BlobRecord) -> Result<HashMap<ChunkId, u64>> {
        let entries = self.entries(rec, 0, rec.size).await?;
        let mut out = HashMap::with_capacity(entries.len());
        for e in entries {
            out.insert(e.chunk, u64::from(e.length));
        }
        Ok(out)
    }
}
