//! Pack GC (docs/tiers.md, "Pack GC"): the warm and cold side of `gc`.
//!
//! 1. Sparse packs are rewritten: a pack whose live bytes fell below
//!    `[gc] pack_min_live_fraction` of its size has its live chunks read (verified),
//!    packed into a new pack, uploaded and verified, and committed in one step that
//!    adds the new copies and removes the old ones. A cold pack is compacted only past
//!    its minimum storage duration and when the storage saved over 90 days exceeds the
//!    retrieval and request cost (`[costs]`); an archived one is read only once a
//!    restore completes (the read requests it, a later run rewrites it).
//! 2. Dead packs (no copy names them) are deleted: the record first, in one atomic step
//!    with the check, the object after.
//! 3. Orphans are deleted: objects under the tiers' pack prefixes that no record names,
//!    last written before the grace period (an upload whose commit never came, a pack
//!    whose record was deleted by a run that died before deleting the object). Younger
//!    ones may belong to a put in flight and are left.

use bytes::Bytes;
use futures::StreamExt;

use super::admin::GcReport;
use super::Store;
use crate::error::{ErrorKind, Result};
use crate::id::ChunkId;
use crate::meta::{PackRecord, PlacementChange};
use crate::model::{Health, Location, Tier};
use crate::object::StorageClass;
use crate::tier::parse_pack_name;

/// Packs listed per metadata round trip.
const PAGE: usize = 256;
/// Objects per page of a bucket listing (S3's maximum).
const LIST_PAGE: usize = 1000;
/// Bytes in a GB, as prices count them.
const GB: f64 = 1e9;
/// The horizon over which compacting a cold pack must pay for itself, in months.
const PAYBACK_MONTHS: f64 = 3.0;
/// Dead packs deleted at once.
const DEAD_DELETES_IN_FLIGHT: usize = 8;
/// Groups of sparse packs rewritten at once (each holds up to a pack of live chunks
/// in memory, twice: read and built).
const REWRITE_GROUPS_IN_FLIGHT: usize = 2;

impl Store {
    /// Steps 1 to 3 of the module docs, for packs created before `cutoff`.
    pub(super) async fn collect_packs(&self, cutoff: u64, report: &mut GcReport) -> Result<()> {
        self.rewrite_sparse_packs(cutoff, report).await?;
        self.collect_dead_packs(cutoff, report).await?;
        self.sweep_orphan_packs(cutoff, report).await
    }

    async fn rewrite_sparse_packs(&self, cutoff: u64, report: &mut GcReport) -> Result<()> {
        let fraction = self.inner.settings.gc.pack_min_live_fraction;
        if fraction <= 0.0 {
            return Ok(());
        }
        let now = self.now_ms();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .inner
                .meta
                .sparse_packs(fraction, cutoff, now, after.as_deref(), PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            // Warm packs of one policy class are rewritten together into fuller packs
            // (fewer objects, one commit per group); cold ones one at a time, each
            // after its own cost check and restore.
            let mut groups: Vec<Vec<PackRecord>> = Vec::new();
            let mut group: Vec<PackRecord> = Vec::new();
            let mut live = 0u64;
            let target = self.inner.tiers.warm.pack_bytes() as u64;
            for p in page.iter().cloned() {
                if p.tier == Tier::Cold {
                    if self.compaction_pays(&p) {
                        groups.push(vec![p]);
                    } else {
                        report.packs_kept_by_cost += 1;
                    }
                    continue;
                }
                // A group's live bytes stay within one new pack: a group past it would
                // leave a small remainder pack behind each full one.
                if group
                    .first()
                    .is_some_and(|g| g.class != p.class || live + p.live_bytes > target)
                {
                    groups.push(std::mem::take(&mut group));
                    live = 0;
                }
                live += p.live_bytes;
                group.push(p);
            }
            if !group.is_empty() {
                groups.push(group);
            }
            // Groups are independent (each has its own packs, upload and commit): two at
            // a time overlap one group's reads and hashing with the other's write and
            // fsync, which a single group leaves idle in turn.
            // (The futures are made up front: a `map` closure here makes the future of
            // the whole gc pass fail the workers' `Send` bound.)
            let runs: Vec<_> = groups.iter().map(|g| self.rewrite_group(g)).collect();
            let mut runs = futures::stream::iter(runs).buffer_unordered(REWRITE_GROUPS_IN_FLIGHT);
            let mut closed = None;
            while let Some(part) = runs.next().await {
                match part {
                    Ok(part) => report.add_rewrites(part),
                    Err(e) => closed = Some(e),
                }
            }
            if let Some(e) = closed {
                return Err(e);
            }
            if page.len() < PAGE {
                break;
            }
        }
        Ok(())
    }

    /// Rewrite `group` and report how it went (the rewrite fields of a [`GcReport`]);
    /// only `Closed` stops the run.
    async fn rewrite_group(&self, group: &[PackRecord]) -> Result<GcReport> {
        let mut report = GcReport::default();
        match self.rewrite_packs(group, &mut report).await {
            Ok(()) => {}
            // The read asked for the restore; a later run rewrites it.
            Err(e) if e.kind() == ErrorKind::RestorePending => {
                report.restores_requested += group.len() as u64;
            }
            Err(e) if e.kind() == ErrorKind::Closed => return Err(e),
            Err(e) => {
                let names: Vec<&str> = group.iter().map(|p| p.id.as_str()).collect();
                tracing::warn!(packs = ?names, error = %e, "pack rewrite failed");
                report
                    .errors
                    .push(format!("rewriting packs {}: {e}", names.join(", ")));
            }
        }
        Ok(report)
    }

    /// Whether compacting cold pack `p` saves more over [`PAYBACK_MONTHS`] than reading
    /// it back and writing its live bytes again costs.
    fn compaction_pays(&self, p: &PackRecord) -> bool {
        let costs = &self.inner.settings.costs;
        let class = p.storage_class.as_str();
        let storage = costs.storage_gb_month.get(class).copied().unwrap_or(0.0);
        let retrieval = costs.retrieval_gb.get(class).copied().unwrap_or(0.0);
        let dead_gb = p.size.saturating_sub(p.live_bytes) as f64 / GB;
        let saved = dead_gb * storage * PAYBACK_MONTHS;
        // Restore (archive classes), GET, PUT, HEAD, DELETE.
        let requests = if p.storage_class.needs_restore() {
            5.0
        } else {
            4.0
        };
        let cost = p.size as f64 / GB * retrieval + requests * costs.requests_per_1000 / 1000.0;
        saved > cost
    }

    /// Move the live copies of the packs of `group` (one tier, one policy class) into
    /// new packs of their tier (write → verify → commit → the old copies' removal in
    /// the same commit). Copies that fail verification are marked and left in their old
    /// pack, which then stays until scrub has repaired them elsewhere.
    async fn rewrite_packs(&self, group: &[PackRecord], report: &mut GcReport) -> Result<()> {
        let Some(p) = group.first() else {
            return Ok(());
        };
        let _op = self.begin().await?;
        let mut wants: Vec<(ChunkId, Option<u32>, Vec<Location>)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for g in group {
            let copies = self.inner.meta.pack_locations(&g.id).await?;
            for l in copies.into_iter().filter(|l| l.health == Health::Ok) {
                // A chunk in two of the packs is written once; both old copies go.
                if seen.insert(l.chunk) {
                    wants.push((l.chunk, None, vec![l]));
                } else if let Some(w) = wants.iter_mut().find(|w| w.0 == l.chunk) {
                    w.2.push(l);
                }
            }
        }
        if wants.is_empty() {
            return Ok(());
        }
        // One (ranged) GET per old pack.
        report.requests += group.len() as u64;
        let mut chunks: Vec<(ChunkId, Bytes)> = Vec::with_capacity(wants.len());
        let mut moved: Vec<Location> = Vec::with_capacity(wants.len());
        for ((id, _, locs), got) in wants.iter().zip(self.read_shared(&wants).await) {
            match got {
                Ok(bytes) => {
                    chunks.push((*id, bytes));
                    moved.extend(locs.iter().cloned());
                }
                Err(e) if e.kind() == ErrorKind::RestorePending => return Err(e),
                Err(e) if e.kind() == ErrorKind::Corrupt => {}
                Err(e) => return Err(e),
            }
        }
        let tier = self.inner.tiers.get(p.tier)?;
        let built = tier.build_verified(chunks).await?;
        let mut packs = Vec::new();
        let mut add = Vec::new();
        let mut intents = Vec::new();
        for b in built {
            let mut written = tier.upload(&self.inner.intents, b, self.now_ms()).await?;
            report.requests += 2;
            report.bytes_rewritten += written.record.size;
            written.record.class = p.class.clone();
            packs.push(written.record);
            add.extend(written.locations);
            intents.push(written.intent);
        }
        // Uploaded, not yet committed: a failure from here leaves the new objects as
        // orphans for the sweep, and the old copies where they were.
        self.pause_at("pack-rewrite-commit").await;
        let change = PlacementChange {
            packs,
            add,
            remove: moved,
            node: self.inner.node.clone(),
            moves: true,
            ..Default::default()
        };
        let res = self.inner.meta.commit_placement(None, &change).await;
        crate::engine::intent::finish_all(intents).await;
        res?;
        report.packs_rewritten += group.len() as u64;
        Ok(())
    }

    /// Delete the pack objects no copy names any more, created before `cutoff` (the
    /// grace period: a writer may record a pack just before its copies) and past their
    /// class's minimum storage duration. The record goes first, in one atomic step with
    /// the check that the pack is still dead; the object after. A crash between leaves
    /// an object no record names (an orphan, which the sweep below deletes), never a
    /// record, or a copy, naming a deleted object.
    async fn collect_dead_packs(&self, cutoff: u64, report: &mut GcReport) -> Result<()> {
        let now = self.now_ms();
        let meta = &self.inner.meta;
        let mut after: Option<String> = None;
        loop {
            let page = meta.dead_packs(cutoff, now, after.as_deref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            // Each delete is a few small metadata writes and one object request:
            // several at once share the metadata store's syncs and the round trips.
            let runs: Vec<_> = page
                .iter()
                .map(|p| self.delete_dead_pack(p, cutoff, now))
                .collect();
            let mut runs = futures::stream::iter(runs).buffer_unordered(DEAD_DELETES_IN_FLIGHT);
            let mut failed = None;
            while let Some(res) = runs.next().await {
                match res {
                    Ok(DeadPack::Deleted(p)) => {
                        report.requests += 1;
                        report.packs_deleted += 1;
                        match p.tier {
                            Tier::Cold => report.cold_bytes_reclaimed += p.size,
                            _ => report.warm_bytes_reclaimed += p.size,
                        }
                    }
                    Ok(DeadPack::Skipped) => {}
                    Ok(DeadPack::IntentLost(p)) => report
                        .errors
                        .push(format!("pack {}: delete intent lost", p.id)),
                    Err(e) => failed = Some(e),
                }
            }
            drop(runs);
            if let Some(e) = failed {
                return Err(e);
            }
            if page.len() < PAGE {
                break;
            }
        }
        Ok(())
    }

    /// Delete dead pack `p`: its record (if it is still dead), then its object, under
    /// the pack's delete intent.
    async fn delete_dead_pack<'p>(
        &self,
        p: &'p PackRecord,
        cutoff: u64,
        now: u64,
    ) -> Result<DeadPack<'p>> {
        // The delete intent first: a writer re-creating this name from now on backs
        // off, and one already writing it is seen here.
        let Some(intent) = self.inner.intents.begin_delete(&p.id).await? else {
            return Ok(DeadPack::Skipped); // being written (or deleted by another process)
        };
        if !self.inner.meta.delete_dead_pack(&p.id, cutoff, now).await? {
            intent.finish().await;
            return Ok(DeadPack::Skipped); // a copy was recorded in it meanwhile
        }
        self.pause_at("pack-delete").await;
        if !intent.held().await? {
            // Lost while paused: a writer may own the name now. The object is left for
            // the orphan sweep, which looks again.
            return Ok(DeadPack::IntentLost(p));
        }
        let deleted = self.inner.tiers.get(p.tier)?.store().delete(&p.id).await;
        intent.finish().await;
        deleted?;
        Ok(DeadPack::Deleted(p))
    }

    /// Delete pack objects no record names that were last written before `cutoff`.
    /// An object of an archive class is kept until its minimum storage duration has
    /// passed since it was written (deleting earlier is billed as if kept).
    async fn sweep_orphan_packs(&self, cutoff: u64, report: &mut GcReport) -> Result<()> {
        let now = self.now_ms();
        let mut seen = std::collections::HashSet::new();
        for tier in [Tier::Warm, Tier::Cold] {
            let pack_tier = self.inner.tiers.get(tier)?;
            let store = pack_tier.store();
            // Warm and cold may share one bucket: list each store once per prefix.
            if !seen.insert((store.describe(), tier)) {
                continue;
            }
            let prefix = format!("{}/", tier.as_str());
            let mut start_after: Option<String> = None;
            loop {
                let objects = store
                    .list_page(&prefix, start_after.as_deref(), LIST_PAGE)
                    .await?;
                report.requests += 1;
                let full = objects.len() >= LIST_PAGE;
                start_after = objects.last().map(|o| o.key.clone());
                self.sweep_page(store, tier, objects, cutoff, now, report)
                    .await?;
                if !full || start_after.is_none() {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The orphans of one page of a listing (see [`Self::sweep_orphan_packs`]).
    async fn sweep_page(
        &self,
        store: &std::sync::Arc<dyn crate::object::ObjectStore>,
        tier: Tier,
        objects: Vec<crate::object::ObjectMeta>,
        cutoff: u64,
        now: u64,
        report: &mut GcReport,
    ) -> Result<()> {
        for o in objects {
            // Only names a pack could have: anything else is not ours to delete.
            if parse_pack_name(&o.key).is_err() {
                continue;
            }
            let Some(written) = o.last_modified_ms else {
                continue;
            };
            let min_keep = written.saturating_add(
                o.storage_class
                    .min_storage_days()
                    .saturating_mul(86_400_000),
            );
            if written > cutoff || (o.storage_class != StorageClass::Standard && min_keep > now) {
                continue;
            }
            // A record, or a copy naming it without one (fsck's `unrecorded_pack`),
            // keeps it.
            if self.inner.meta.pack(&o.key).await?.is_some()
                || !self.inner.meta.pack_locations(&o.key).await?.is_empty()
            {
                continue;
            }
            // Pack keys come from their content: a writer may be putting the same pack
            // again. Its write intent (taken before its PUT) keeps the object; one that
            // starts after the delete intent below backs off until it is released.
            let Some(intent) = self.inner.intents.begin_delete(&o.key).await? else {
                continue;
            };
            // Checked again under the intent: a writer that finished in between has
            // committed its record.
            if self.inner.meta.pack(&o.key).await?.is_some() {
                intent.finish().await;
                continue;
            }
            // A writer whose intent lapsed (a paused process) may still have PUT since
            // the listing: a fresh HEAD keeps an object written within the grace period.
            match store.head(&o.key).await {
                Ok(now_meta) if now_meta.last_modified_ms.is_some_and(|t| t <= cutoff) => {}
                Ok(_) => {
                    intent.finish().await;
                    continue;
                }
                Err(e) => {
                    intent.finish().await;
                    if e.kind() == ErrorKind::NotFound {
                        continue;
                    }
                    return Err(e);
                }
            }
            report.requests += 1;
            self.pause_at("orphan-delete").await;
            if !intent.held().await? {
                report
                    .errors
                    .push(format!("orphan {}: delete intent lost", o.key));
                continue;
            }
            let deleted = store.delete(&o.key).await;
            intent.finish().await;
            deleted?;
            report.requests += 1;
            report.orphan_packs_deleted += 1;
            match tier {
                Tier::Cold => report.cold_bytes_reclaimed += o.size,
                _ => report.warm_bytes_reclaimed += o.size,
            }
        }
        Ok(())
    }
}

impl GcReport {
    /// Add what one group's rewrite reported.
    fn add_rewrites(&mut self, part: GcReport) {
        self.packs_rewritten += part.packs_rewritten;
        self.bytes_rewritten += part.bytes_rewritten;
        self.restores_requested += part.restores_requested;
        self.requests += part.requests;
        self.errors.extend(part.errors);
    }
}

/// What became of one dead pack.
enum DeadPack<'p> {
    Deleted(&'p PackRecord),
    /// Being written, deleted by another process, or alive again.
    Skipped,
    IntentLost(&'p PackRecord),
}
