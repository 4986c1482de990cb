//! Repair (DESIGN §7): a damaged copy is replaced from a healthy one, and a referenced
//! chunk with fewer than `[durability] min_copies` healthy copies gets another.
//!
//! Every repair follows the order of a move: read a healthy copy (verified) → write the
//! new copy → commit its location → remove the damaged copy's location. A crash
//! between two steps leaves either the damaged copy still recorded (the next pass
//! repairs it again) or an extra healthy copy; never fewer healthy copies than before.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;

use super::{DamagedRange, ScrubReport, UnrepairableChunk};
use crate::error::{ErrorKind, Result};
use crate::id::{BlobId, ChunkId};
use crate::meta::PlacementChange;
use crate::model::{Health, Location, Tier, VerifyRecord};
use crate::settings::Durability;
use crate::store::Store;

/// Blobs whose manifests are read per metadata round trip when naming damage.
const BLOB_PAGE: usize = 256;
/// Bytes of manifest read per query when naming damage.
const MANIFEST_WINDOW: u64 = 1 << 30;

/// What one chunk needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    chunk: ChunkId,
    /// Healthy copies this node can read: the sources.
    healthy: Vec<Location>,
    /// Damaged copies this node can read.
    damaged: Vec<Location>,
    /// Tiers to write a new copy to: those of damaged copies with no healthy copy in
    /// the same tier, then tiers that bring the chunk up to `min_copies`.
    targets: BTreeSet<Tier>,
    /// How many of `targets` replace damaged copies (the rest are added copies).
    replacing: usize,
}

/// What a chunk needs, if anything, from its copies that this node can read.
fn plan(
    chunk: ChunkId,
    copies: Vec<Location>,
    min_copies: usize,
    replicated: bool,
) -> Option<Plan> {
    let (healthy, damaged): (Vec<Location>, Vec<Location>) =
        copies.into_iter().partition(|l| l.health == Health::Ok);
    let healthy_tiers: BTreeSet<Tier> = healthy.iter().map(|l| l.tier).collect();
    let mut targets: BTreeSet<Tier> = damaged
        .iter()
        .map(|l| l.tier)
        .filter(|t| !healthy_tiers.contains(t))
        .collect();
    let replacing = targets.len();
    let has = |t: &Tier, targets: &BTreeSet<Tier>| healthy_tiers.contains(t) || targets.contains(t);
    if replicated && !has(&Tier::Warm, &targets) && !has(&Tier::Cold, &targets) {
        targets.insert(Tier::Warm);
    }
    for t in [Tier::Warm, Tier::Hot, Tier::Cold] {
        if healthy.len() + targets.len() >= min_copies {
            break;
        }
        if !has(&t, &targets) {
            targets.insert(t);
        }
    }
    if damaged.is_empty() && targets.is_empty() {
        return None;
    }
    Some(Plan {
        chunk,
        healthy,
        damaged,
        targets,
        replacing,
    })
}

impl Store {
    /// Repair what `chunks` need (see the module docs); per-chunk failures are counted
    /// in `report` and the pass goes on.
    pub(super) async fn repair_chunks(
        &self,
        chunks: &[ChunkId],
        report: &mut ScrubReport,
    ) -> Result<()> {
        let node = self.inner.node.clone();
        let min = self.inner.settings.durability.min_copies as usize;
        let replicated = self.inner.settings.durability.mode == Durability::Replicated;
        let mut locations = self.inner.meta.locations_many(chunks).await?;
        let mut plans = Vec::new();
        for id in chunks {
            let all = locations.remove(id).unwrap_or_default();
            let elsewhere: Vec<String> = all
                .iter()
                .filter(|l| !l.readable_by(&node) && l.health == Health::Ok)
                .map(|l| l.node.clone())
                .collect();
            let mine = all.into_iter().filter(|l| l.readable_by(&node)).collect();
            let Some(p) = plan(*id, mine, min, replicated) else {
                continue;
            };
            // Only referenced chunks are worth a copy: gc reclaims the others.
            let Some(rec) = self.inner.meta.chunk(id).await? else {
                continue;
            };
            if rec.refcount == 0 {
                continue;
            }
            if p.healthy.is_empty() {
                if elsewhere.is_empty() {
                    report.unrepairable += 1;
                    report.unrepairable_chunks.push(UnrepairableChunk {
                        chunk: *id,
                        detail: "no healthy copy in any tier".into(),
                        damages: Vec::new(),
                    });
                } else {
                    report.errors.push(format!(
                        "chunk {}: its only healthy copies are in the hot tier of node(s) {}; \
                         a scrub there repairs it",
                        id.short(),
                        elsewhere.join(", ")
                    ));
                }
                continue;
            }
            plans.push((p, rec.size));
        }
        if plans.is_empty() {
            return Ok(());
        }
        let sources = self.read_sources(&plans, report).await;
        self.write_repairs(plans, sources, report).await
    }

    /// A verified copy of each planned chunk, from this node's hot copy or a shared
    /// one; chunks whose read failed are counted in `report` and left out.
    async fn read_sources(
        &self,
        plans: &[(Plan, u32)],
        report: &mut ScrubReport,
    ) -> HashMap<ChunkId, Bytes> {
        let mut got = HashMap::new();
        let mut shared = Vec::new();
        for (p, size) in plans {
            if p.healthy.iter().any(|l| l.tier == Tier::Hot) {
                match self.inner.hot.get(&p.chunk).await {
                    Ok(Some(b)) if ChunkId::of(&b) == p.chunk => {
                        got.insert(p.chunk, b);
                        continue;
                    }
                    // Damaged since it was checked: the shared copies may still serve.
                    _ => {}
                }
            }
            let from: Vec<Location> = p
                .healthy
                .iter()
                .filter(|l| l.tier != Tier::Hot)
                .cloned()
                .collect();
            if from.is_empty() {
                report.errors.push(format!(
                    "chunk {}: its hot copy could not be read to repair from",
                    p.chunk.short()
                ));
                continue;
            }
            shared.push((p.chunk, Some(*size), from));
        }
        for (w, res) in shared.iter().zip(self.read_shared(&shared).await) {
            match res {
                Ok(b) => {
                    got.insert(w.0, b);
                }
                // The restore was requested by the read; a later pass repairs it.
                Err(e) if e.kind() == ErrorKind::RestorePending => report.restore_pending += 1,
                Err(e) if e.kind() == ErrorKind::Corrupt => {
                    report.unrepairable += 1;
                    report.unrepairable_chunks.push(UnrepairableChunk {
                        chunk: w.0,
                        detail: format!("no copy left to repair from: {e}"),
                        damages: Vec::new(),
                    });
                }
                Err(e) => report
                    .errors
                    .push(format!("reading chunk {} to repair it: {e}", w.0.short())),
            }
        }
        got
    }

    /// Write the new copies, commit them, then remove the damaged copies' locations.
    async fn write_repairs(
        &self,
        plans: Vec<(Plan, u32)>,
        mut sources: HashMap<ChunkId, Bytes>,
        report: &mut ScrubReport,
    ) -> Result<()> {
        let mut per_tier: BTreeMap<Tier, Vec<(ChunkId, Bytes)>> = BTreeMap::new();
        let mut done = Vec::new();
        for (p, _) in plans {
            let Some(bytes) = sources.remove(&p.chunk) else {
                continue;
            };
            for t in &p.targets {
                per_tier
                    .entry(*t)
                    .or_default()
                    .push((p.chunk, bytes.clone()));
            }
            done.push(p);
        }
        let mut failed: BTreeSet<ChunkId> = BTreeSet::new();
        for (tier, chunks) in per_tier {
            let ids: Vec<ChunkId> = chunks.iter().map(|c| c.0).collect();
            let res = match tier {
                Tier::Hot => self.write_hot(chunks).await.map(|_| ()),
                _ => self.write_pack_copies(tier, chunks).await,
            };
            if let Err(e) = res {
                report.errors.push(format!(
                    "writing {} repaired copies to {}: {e}",
                    ids.len(),
                    tier.as_str()
                ));
                failed.extend(ids);
            }
        }
        // The damaged copies outside the hot tier go once their replacements are
        // committed (a hot copy was overwritten in place, and its record with it).
        let mut remove = Vec::new();
        for p in done.iter().filter(|p| !failed.contains(&p.chunk)) {
            remove.extend(p.damaged.iter().filter(|l| l.tier != Tier::Hot).cloned());
            report.repaired += p.damaged.len() as u64;
            report.copies_added += (p.targets.len() - p.replacing) as u64;
        }
        if !remove.is_empty() {
            let change = PlacementChange {
                remove,
                node: self.inner.node.clone(),
                ..Default::default()
            };
            self.inner.meta.commit_placement(None, &change).await?;
        }
        // A hot copy the write replaced is healthy again under the same key; say so
        // in the verification log too.
        let now = self.now_ms();
        let healed: Vec<VerifyRecord> = done
            .iter()
            .filter(|p| !failed.contains(&p.chunk))
            .flat_map(|p| p.damaged.iter().filter(|l| l.tier == Tier::Hot))
            .map(|l| VerifyRecord {
                location: l.clone(),
                health: Health::Ok,
                at_ms: now,
                detail: "scrub: rewritten from a healthy copy".into(),
            })
            .collect();
        self.inner.meta.record_verification(&healed).await
    }

    /// Pack `chunks` (verified bytes) into new packs of `tier` and commit each pack
    /// with its copies.
    async fn write_pack_copies(&self, tier: Tier, chunks: Vec<(ChunkId, Bytes)>) -> Result<()> {
        let pack_tier = self.inner.tiers.get(tier)?;
        let now = self.now_ms();
        for pack in pack_tier.build_verified(chunks).await? {
            let written = pack_tier.upload(&self.inner.intents, pack, now).await?;
            let change = PlacementChange {
                packs: vec![written.record],
                add: written.locations,
                node: self.inner.node.clone(),
                ..Default::default()
            };
            let res = self.inner.meta.commit_placement(None, &change).await;
            written.intent.finish().await;
            res?;
        }
        Ok(())
    }

    /// Name every blob byte range each unrepairable chunk damages, reading the
    /// manifests a window at a time (memory stays bounded by the window and the list).
    pub(super) async fn attach_damage(&self, lost: &mut [UnrepairableChunk]) -> Result<()> {
        let index: HashMap<ChunkId, usize> =
            lost.iter().enumerate().map(|(i, u)| (u.chunk, i)).collect();
        let mut after: Option<BlobId> = None;
        loop {
            let page = self.inner.meta.list_blobs(after, BLOB_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for rec in &page {
                let mut start = 0;
                while start < rec.size {
                    let end = start.saturating_add(MANIFEST_WINDOW).min(rec.size);
                    let entries = self.inner.meta.manifest_range(&rec.id, start, end).await?;
                    let Some(last) = entries.last() else { break };
                    let next = last.end();
                    for e in &entries {
                        if let Some(&i) = index.get(&e.chunk) {
                            lost[i].damages.push(DamagedRange {
                                blob: rec.id,
                                range: e.offset..e.end(),
                            });
                        }
                    }
                    if next <= start {
                        break;
                    }
                    start = next;
                }
            }
            if page.len() < BLOB_PAGE {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(tier: Tier, health: Health) -> Location {
        let mut l = Location::hot(ChunkId::of(b"c"), "n", 1, 0);
        l.tier = tier;
        if tier != Tier::Hot {
            l.node.clear();
            l.pack = format!("{}/p", tier.as_str());
        }
        l.health = health;
        l
    }

    #[test]
    fn plans_replace_damaged_tiers_and_top_up_to_min_copies() {
        let c = ChunkId::of(b"c");
        // Healthy hot, nothing to do at min 1.
        assert_eq!(plan(c, vec![loc(Tier::Hot, Health::Ok)], 1, false), None);
        // Corrupt hot with a healthy warm copy: rewrite hot from warm.
        let p = plan(
            c,
            vec![loc(Tier::Hot, Health::Corrupt), loc(Tier::Warm, Health::Ok)],
            1,
            false,
        )
        .unwrap();
        assert_eq!(p.targets, BTreeSet::from([Tier::Hot]));
        assert_eq!(p.replacing, 1);
        // A missing warm copy beside a healthy warm copy in another pack: only dropped.
        let p = plan(
            c,
            vec![
                loc(Tier::Warm, Health::Missing),
                loc(Tier::Warm, Health::Ok),
            ],
            1,
            false,
        )
        .unwrap();
        assert!(p.targets.is_empty() && p.damaged.len() == 1);
        // min_copies 2 with only a hot copy: a warm copy is added.
        let p = plan(c, vec![loc(Tier::Hot, Health::Ok)], 2, false).unwrap();
        assert_eq!(p.targets, BTreeSet::from([Tier::Warm]));
        assert_eq!(p.replacing, 0);
        // Replicated with only a hot copy: a shared copy even at min 1.
        let p = plan(c, vec![loc(Tier::Hot, Health::Ok)], 1, true).unwrap();
        assert_eq!(p.targets, BTreeSet::from([Tier::Warm]));
        // Nothing healthy: the plan has no source (the caller reports it).
        let p = plan(c, vec![loc(Tier::Hot, Health::Corrupt)], 1, false).unwrap();
        assert!(p.healthy.is_empty());
    }
}
