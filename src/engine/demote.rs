//! The demote worker: this node's hot copies idle past their class's `hot_idle_secs`,
//! then, while hot bytes are above the high watermark, the least recently read ones
//! down to the low watermark, go to warm packs grouped by blob. Every move is write →
//! verify → fenced commit → delete of the hot bytes.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, Semaphore, SemaphorePermit};

use super::lease::LeaseGuard;
use super::packing::{self, PackWriter};
use super::{Engine, PassReport, PlanStep};
use crate::error::{ErrorKind, Result};
use crate::id::ChunkId;
use crate::meta::{HotCopy, HotCursor, HotOrder, PlacementChange};
use crate::model::{Health, Location, Tier};
use crate::pack::BuiltPack;

/// What the packing stage hands the committing stage.
enum Step {
    /// Chunks with a healthy shared copy: only their hot copies go.
    Drop(Vec<ChunkId>),
    /// A built pack to upload, replacing the hot copies of its chunks.
    Pack(BuiltPack),
}

/// Hot copies looked up per index page.
const PAGE: usize = 1024;
/// Chunks read from hot and packed per step.
const BATCH: usize = 256;

/// What a demotion pass would take, and what it leaves.
#[derive(Debug, Default)]
pub(super) struct Selection {
    /// Copies idle past their class's limit.
    pub idle: Vec<HotCopy>,
    /// Least recently read copies taken to get under the high watermark.
    pub watermark: Vec<HotCopy>,
    /// Candidates kept by a pin to hot or the minimum residency.
    pub kept: u64,
    /// Kept candidates, touched (when the pass runs) so later scans skip them.
    pub touch: Vec<(ChunkId, u64)>,
}

impl Selection {
    /// The plan of one phase.
    pub fn step(copies: &[HotCopy], pack_bytes: u64) -> PlanStep {
        let bytes: u64 = copies.iter().map(|c| c.length).sum();
        PlanStep {
            chunks: copies.len() as u64,
            bytes,
            objects_written: if copies.is_empty() {
                0
            } else {
                bytes.div_ceil(pack_bytes.max(1)).max(1)
            },
        }
    }
}

impl Engine {
    /// The copies a demotion pass would move now (the pass and `plan` share this).
    pub(super) async fn select_demote(&self, now: u64) -> Result<Selection> {
        let meta = self.store.meta();
        let node = self.store.node_id().to_string();
        let mut sel = Selection::default();
        let mut taken: HashSet<ChunkId> = HashSet::new();
        for class in self.classes() {
            let pol = self.policy(&class);
            let before = now.saturating_sub(pol.hot_idle_ms);
            let mut after: Option<HotCursor> = None;
            loop {
                let page = meta
                    .hot_copies(&node, &HotOrder::Class(class.clone()), before, after, PAGE)
                    .await?;
                let Some(last) = page.last() else { break };
                after = Some(last.cursor());
                let full = page.len() == PAGE;
                for c in self.filter_kept(page, now, &mut sel).await? {
                    if taken.insert(c.chunk) {
                        sel.idle.push(c);
                    }
                }
                if !full {
                    break;
                }
            }
        }
        let p = &self.store.settings().policy;
        if p.hot_max_bytes == 0 {
            return Ok(sel);
        }
        let (high, low) =
            watermark_bytes(p.hot_max_bytes, p.hot_high_watermark, p.hot_low_watermark);
        let idle_bytes: u64 = sel.idle.iter().map(|c| c.length).sum();
        let mut hot = meta.hot_bytes(&node).await?.saturating_sub(idle_bytes);
        if hot <= high {
            return Ok(sel);
        }
        let mut after: Option<HotCursor> = None;
        'scan: loop {
            let page = meta
                .hot_copies(&node, &HotOrder::LeastRecentlyRead, u64::MAX, after, PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.cursor());
            let full = page.len() == PAGE;
            let page: Vec<HotCopy> = page
                .into_iter()
                .filter(|c| !taken.contains(&c.chunk))
                .collect();
            for c in self.filter_kept(page, now, &mut sel).await? {
                if hot <= low {
                    break 'scan;
                }
                hot = hot.saturating_sub(c.length);
                taken.insert(c.chunk);
                sel.watermark.push(c);
            }
            if !full || hot <= low {
                break;
            }
        }
        Ok(sel)
    }

    /// The copies of `page` a pass may demote: not pinned to hot, past their class's
    /// minimum residency. The others are counted (and listed for touching) in `sel`.
    async fn filter_kept(
        &self,
        page: Vec<HotCopy>,
        now: u64,
        sel: &mut Selection,
    ) -> Result<Vec<HotCopy>> {
        let ids: Vec<ChunkId> = page.iter().map(|c| c.chunk).collect();
        let pinned: HashSet<ChunkId> = self
            .store
            .meta()
            .pins(&ids)
            .await?
            .into_iter()
            .filter(|(_, p)| p.floor() == Some(Tier::Hot))
            .map(|(c, _)| c)
            .collect();
        let mut out = Vec::with_capacity(page.len());
        for c in page {
            let young =
                now.saturating_sub(c.placed_ms) < self.policy(&c.class).hot_min_residency_ms;
            if young || pinned.contains(&c.chunk) {
                sel.kept += 1;
                sel.touch.push((c.chunk, now));
            } else {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// One demotion pass (see the module docs).
    pub(super) async fn demote_pass(&self, report: &mut PassReport) -> Result<()> {
        let meta = self.store.meta().clone();
        let node = self.store.node_id().to_string();
        let name = format!("demote:{node}");
        let Some(lease) = LeaseGuard::acquire(&meta, &name, &node, self.lease_ms()).await? else {
            tracing::debug!(lease = %name, "demotion of this node runs elsewhere");
            return Ok(());
        };
        let res = self.demote_under(&lease, report).await;
        let released = lease.release().await;
        res.and(released)
    }

    async fn demote_under(&self, lease: &LeaseGuard, report: &mut PassReport) -> Result<()> {
        let now = self.store.clock_ms();
        let sel = self.select_demote(now).await?;
        report.kept += sel.kept;
        if !sel.touch.is_empty() {
            self.store
                .meta()
                .touch_hot(self.store.node_id(), &sel.touch)
                .await?;
        }
        let mut copies: Vec<HotCopy> = sel.idle.into_iter().chain(sel.watermark).collect();
        // Chunks of one blob (and class) go into the same packs.
        copies.sort_by(|a, b| (&a.class, &a.blob).cmp(&(&b.class, &b.blob)));
        let mut start = 0;
        while start < copies.len() {
            let class = copies[start].class.clone();
            let end = copies[start..]
                .iter()
                .position(|c| c.class != class)
                .map_or(copies.len(), |n| start + n);
            let res = self
                .demote_class(lease, &class, &copies[start..end], report)
                .await;
            match res {
                Err(e) if e.kind() == ErrorKind::Fenced => return Err(e),
                Err(e) => report.errors.push(format!("class {class:?}: {e}")),
                Ok(()) => {}
            }
            start = end;
        }
        Ok(())
    }

    /// Demote copies of one class: those with a healthy shared copy lose their hot copy;
    /// the others are read, verified and packed into warm.
    ///
    /// Three stages run at once, joined by one-slot channels: reading and verifying a
    /// batch from hot, building packs of the batch before it, and uploading and
    /// committing the pack before that. Run one after another they left the disk idle
    /// while packs were built and the CPU idle while they were written (110 MiB/s).
    /// The order write → verify → commit → delete holds per pack: only the last stage
    /// commits or deletes. When a stage fails the channels close and the others stop
    /// after their current step.
    async fn demote_class(
        &self,
        lease: &LeaseGuard,
        class: &str,
        copies: &[HotCopy],
        report: &mut PassReport,
    ) -> Result<()> {
        let meta = self.store.meta();
        let node = self.store.node_id();
        let warm = &self.store.pack_tiers().warm;
        let lengths: HashMap<ChunkId, u64> = copies.iter().map(|c| (c.chunk, c.length)).collect();
        let (read_tx, read_rx) = mpsc::channel::<(Vec<ChunkId>, Vec<(ChunkId, Bytes)>)>(1);
        let (step_tx, step_rx) = mpsc::channel::<Step>(1);
        let mut read_errors = Vec::new();
        let gate = Semaphore::new(1);
        let reader = async {
            let read_tx = read_tx;
            for batch in copies.chunks(BATCH) {
                let ids: Vec<ChunkId> = batch.iter().map(|c| c.chunk).collect();
                let mut locs = meta.locations_many(&ids).await?;
                let mut drop_only = Vec::new();
                let mut to_read = Vec::new();
                for id in &ids {
                    let l = locs.remove(id).unwrap_or_default();
                    if !l.iter().any(|x| x.is_hot_on(node)) {
                        continue; // the index was ahead of this read; nothing to move
                    }
                    if l.iter()
                        .any(|x| x.tier != Tier::Hot && x.health == Health::Ok)
                    {
                        drop_only.push(*id);
                    } else {
                        to_read.push(*id);
                    }
                }
                let turn = self.yield_to_foreground(&gate).await;
                let chunks = self.read_hot(&to_read, &mut read_errors).await;
                turn.end().await;
                if read_tx.send((drop_only, chunks)).await.is_err() {
                    break; // a later stage stopped
                }
            }
            Ok::<(), crate::error::Error>(())
        };
        // Each stage owns its channel ends, so that a stage that stops (an error, or a
        // later stage gone) drops them and the stages beside it stop too instead of
        // waiting on a full or empty channel forever.
        let packer = async {
            let step_tx = step_tx;
            let mut read_rx = read_rx;
            let mut writer = PackWriter::new(warm, class);
            while let Some((drop_only, chunks)) = read_rx.recv().await {
                if !drop_only.is_empty() && step_tx.send(Step::Drop(drop_only)).await.is_err() {
                    return Ok(());
                }
                let turn = self.yield_to_foreground(&gate).await;
                let built = writer.add_verified(chunks).await?;
                turn.end().await;
                for built in built {
                    if step_tx.send(Step::Pack(built)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            let turn = self.yield_to_foreground(&gate).await;
            let last = writer.finish().await?;
            turn.end().await;
            if let Some(built) = last {
                let _ = step_tx.send(Step::Pack(built)).await;
            }
            Ok::<(), crate::error::Error>(())
        };
        let committer = async {
            let mut step_rx = step_rx;
            while let Some(step) = step_rx.recv().await {
                let turn = self.yield_to_foreground(&gate).await;
                match step {
                    Step::Drop(ids) => {
                        let change = PlacementChange {
                            node: self.store.node_id().to_string(),
                            remove: ids.iter().map(|c| hot_loc(c, node)).collect(),
                            ..PlacementChange::default()
                        };
                        self.commit_removing_hot(lease, &change, &lengths, report)
                            .await?;
                    }
                    Step::Pack(built) => {
                        self.commit_warm_pack(lease, class, built, &lengths, report)
                            .await?;
                    }
                }
                turn.end().await;
            }
            Ok::<(), crate::error::Error>(())
        };
        let (read, packed, committed) = tokio::join!(reader, packer, committer);
        report.errors.append(&mut read_errors);
        committed.and(packed).and(read)
    }

    /// While this process serves puts or reads, the stages' heavy steps take turns (one
    /// at a time, as before the stages ran at once), and each turn is followed by a
    /// pause as long as the turn, so demotion takes at most half of one core's time:
    /// measured on two cores, all three at once halved a concurrent put and tripled
    /// `get_range` p99; one at a time without pauses still cost puts a quarter. Idle,
    /// they overlap and do not pause.
    async fn yield_to_foreground<'a>(&self, gate: &'a Semaphore) -> Turn<'a> {
        let permit = if self.store.foreground_busy() {
            gate.acquire().await.ok()
        } else {
            None
        };
        Turn {
            permit,
            started: Instant::now(),
        }
    }

    /// Read and verify hot copies; a missing or damaged one is reported and left (the
    /// read path and `verify` deal with it).
    async fn read_hot(&self, ids: &[ChunkId], errors: &mut Vec<String>) -> Vec<(ChunkId, Bytes)> {
        // Eight reads in flight keep the disk busy; one while puts or reads run here.
        let readers = if self.store.foreground_busy() { 1 } else { 8 };
        let reads = self.store.hot_tier().get_many(ids, readers).await;
        let mut got = Vec::with_capacity(ids.len());
        for (id, r) in ids.iter().zip(reads) {
            match r {
                Ok(Some(b)) => got.push((*id, b)),
                Ok(None) => errors.push(format!(
                    "chunk {}: recorded in hot but not there",
                    id.short()
                )),
                Err(e) => errors.push(format!("chunk {}: {e}", id.short())),
            }
        }
        // Hashing pack-sized batches is CPU work: off the async threads.
        let checked = tokio::task::spawn_blocking(move || {
            got.into_iter()
                .partition::<Vec<_>, _>(|(id, b)| ChunkId::of(b) == *id)
        })
        .await;
        match checked {
            Ok((good, bad)) => {
                for (id, _) in bad {
                    errors.push(format!(
                        "chunk {}: hot copy does not match its id",
                        id.short()
                    ));
                }
                good
            }
            Err(e) => {
                errors.push(format!("verifying hot copies: {e}"));
                Vec::new()
            }
        }
    }

    /// Upload a warm pack, commit it with the removal of the hot copies it replaces
    /// (fenced), then delete the hot bytes of the copies actually removed.
    async fn commit_warm_pack(
        &self,
        lease: &LeaseGuard,
        class: &str,
        built: BuiltPack,
        lengths: &HashMap<ChunkId, u64>,
        report: &mut PassReport,
    ) -> Result<()> {
        let node = self.store.node_id();
        let warm = &self.store.pack_tiers().warm;
        let chunks: Vec<ChunkId> = built.entries.iter().map(|e| e.chunk).collect();
        let intents = self.store.pack_intents();
        let written = packing::upload(intents, warm, built, class, self.store.clock_ms()).await?;
        report.objects_written += 1;
        let change = PlacementChange {
            node: self.store.node_id().to_string(),
            packs: vec![written.record],
            add: written.locations,
            remove: chunks.iter().map(|c| hot_loc(c, node)).collect(),
            moves: true,
            ..PlacementChange::default()
        };
        let res = self
            .commit_removing_hot(lease, &change, lengths, report)
            .await;
        written.intent.finish().await;
        res
    }

    async fn commit_removing_hot(
        &self,
        lease: &LeaseGuard,
        change: &PlacementChange,
        lengths: &HashMap<ChunkId, u64>,
        report: &mut PassReport,
    ) -> Result<()> {
        let node = self.store.node_id();
        let fence = lease.fence();
        let removed = self
            .store
            .meta()
            .commit_placement(Some(&fence), change)
            .await?;
        let gone: Vec<ChunkId> = removed
            .iter()
            .filter(|l| l.is_hot_on(node))
            .map(|l| l.chunk)
            .collect();
        let bytes: u64 = gone
            .iter()
            .map(|c| lengths.get(c).copied().unwrap_or(0))
            .sum();
        report.chunks_moved += gone.len() as u64;
        report.bytes_moved += bytes;
        metrics::counter!("strata_bytes_moved_total", "from" => "hot", "to" => "warm")
            .increment(bytes);
        self.store.delete_removed_hot(&gone).await
    }
}

/// A stage's turn at the heavy work while foreground work is busy (no permit when idle).
struct Turn<'a> {
    permit: Option<SemaphorePermit<'a>>,
    started: Instant,
}

impl Turn<'_> {
    /// End the turn: when it was taken because foreground work was busy, keep the other
    /// stages waiting for as long again (a 50% duty cycle), then let them go.
    async fn end(self) {
        if self.permit.is_some() {
            tokio::time::sleep(self.started.elapsed()).await;
        }
    }
}

/// The identity of `node`'s hot copy of `chunk` (what a removal matches on).
fn hot_loc(chunk: &ChunkId, node: &str) -> Location {
    Location::hot(*chunk, node, 0, 0)
}

/// The high and low watermarks in bytes.
pub(super) fn watermark_bytes(max: u64, high: f64, low: f64) -> (u64, u64) {
    ((max as f64 * high) as u64, (max as f64 * low) as u64)
}
