//! The restore worker: polls the packs whose archive restore readers requested, with a
//! backoff suited to `[policy] restore_tier`, and once a pack is readable copies its
//! live chunks to warm (the cold copies stay), then records the restore as done.
//! Promotion to hot is the read path's job. The one RestoreObject per pack is sent by
//! the read path's compare-and-set (`src/store/restore.rs`), never here.

use std::collections::HashMap;

use super::lease::LeaseGuard;
use super::packing::{self, PackWriter};
use super::{Engine, PassReport};
use crate::error::Result;
use crate::id::ChunkId;
use crate::meta::{PackRecord, PackRestore, PlacementChange, RestoreState};
use crate::model::{Health, Location, Tier};
use crate::object::RestoreStatus;

/// Requested restores looked up per page.
const PAGE: usize = 256;
/// Chunks read per step.
const BATCH: usize = 256;
const MINUTE_MS: u64 = 60_000;

/// When to look at a pending restore again: per pack, in this process's memory (a
/// restarted process checks every pack once right away, which is cheap).
#[derive(Debug, Default)]
pub(super) struct Backoff {
    next: HashMap<String, (u64, u32)>,
}

impl Backoff {
    /// Whether `pack` is due for a check at `now`.
    fn due(&self, pack: &str, now: u64) -> bool {
        self.next.get(pack).is_none_or(|(at, _)| *at <= now)
    }

    /// Note a check that found the restore still running.
    fn checked(&mut self, pack: &str, now: u64, tier: &str) {
        let e = self.next.entry(pack.to_string()).or_insert((now, 0));
        let (first, cap) = pause_bounds(tier);
        let pause = first.saturating_mul(1 << e.1.min(8)).min(cap);
        *e = (now + pause, e.1 + 1);
    }

    fn done(&mut self, pack: &str) {
        self.next.remove(pack);
    }
}

/// First pause and longest pause between checks, by restore tier: Expedited restores
/// take minutes, Standard hours (3–5 h), Bulk longer (5–12 h).
fn pause_bounds(tier: &str) -> (u64, u64) {
    match tier {
        "Expedited" => (MINUTE_MS, 5 * MINUTE_MS),
        "Bulk" => (60 * MINUTE_MS, 240 * MINUTE_MS),
        _ => (15 * MINUTE_MS, 60 * MINUTE_MS),
    }
}

impl Engine {
    /// Requested restores, all of them (the pass and `status` use this).
    pub(super) async fn requested_restores(&self) -> Result<Vec<PackRecord>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .meta()
                .restore_requests(after.as_deref(), PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            let full = page.len() == PAGE;
            out.extend(page);
            if !full {
                break;
            }
        }
        Ok(out)
    }

    /// One restore pass (see the module docs).
    pub(super) async fn restore_pass(&self, report: &mut PassReport) -> Result<()> {
        let now = self.store.clock_ms();
        for pack in self.requested_restores().await? {
            let due = self.backoff().due(&pack.id, now);
            if !due {
                continue;
            }
            if let Err(e) = self.restore_one(&pack, report).await {
                report.errors.push(format!("pack {}: {e}", pack.id));
            }
        }
        Ok(())
    }

    fn backoff(&self) -> std::sync::MutexGuard<'_, Backoff> {
        self.state
            .restores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    async fn restore_one(&self, pack: &PackRecord, report: &mut PassReport) -> Result<()> {
        let meta = self.store.meta().clone();
        let node = self.store.node_id();
        let name = format!("restore:{}", pack.id);
        let Some(lease) = LeaseGuard::acquire(&meta, &name, node, self.lease_ms()).await? else {
            return Ok(());
        };
        let res = self.restore_under(&lease, pack, report).await;
        let released = lease.release().await;
        res.and(released)
    }

    async fn restore_under(
        &self,
        lease: &LeaseGuard,
        pack: &PackRecord,
        report: &mut PassReport,
    ) -> Result<()> {
        let now = self.store.clock_ms();
        let tier = self.store.pack_tiers().get(pack.tier)?;
        let status = tier.restore_status(&pack.id).await?;
        let expiry = match status {
            RestoreStatus::Restored { expiry_ms } => expiry_ms.or(pack.restore.expiry_ms),
            RestoreStatus::NotArchived => None,
            RestoreStatus::InProgress | RestoreStatus::Archived => {
                let rt = self.policy(&pack.class).restore_tier;
                self.backoff().checked(&pack.id, now, &rt);
                metrics::counter!("strata_restores_total", "state" => "pending").increment(1);
                return Ok(());
            }
        };
        self.copy_up(lease, pack, report).await?;
        let done = match status {
            RestoreStatus::NotArchived => PackRestore::NONE,
            _ => PackRestore {
                state: RestoreState::Restored,
                expiry_ms: expiry,
            },
        };
        self.store
            .meta()
            .set_pack_restore(&pack.id, &pack.restore, &done)
            .await?;
        self.backoff().done(&pack.id);
        report.restores += 1;
        metrics::counter!("strata_restores_total", "state" => "completed").increment(1);
        Ok(())
    }

    /// Copy the live chunks of a readable cold pack that have no healthy warm copy into
    /// warm packs (fenced commits; the cold copies stay).
    async fn copy_up(
        &self,
        lease: &LeaseGuard,
        pack: &PackRecord,
        report: &mut PassReport,
    ) -> Result<()> {
        let meta = self.store.meta();
        let locs = meta.pack_locations(&pack.id).await?;
        let warm = &self.store.pack_tiers().warm;
        let mut writer = PackWriter::new(warm, &pack.class);
        for batch in locs.chunks(BATCH) {
            let ids: Vec<ChunkId> = batch.iter().map(|l| l.chunk).collect();
            let all = meta.locations_many(&ids).await?;
            let wants: Vec<(ChunkId, Option<u32>, Vec<Location>)> = batch
                .iter()
                .filter(|l| l.health == Health::Ok)
                .filter(|l| {
                    !all.get(&l.chunk).is_some_and(|v| {
                        v.iter()
                            .any(|x| x.tier == Tier::Warm && x.health == Health::Ok)
                    })
                })
                .map(|l| (l.chunk, None, vec![l.clone()]))
                .collect();
            let mut got = Vec::with_capacity(wants.len());
            for (w, r) in wants.iter().zip(self.store.read_copies(&wants).await) {
                match r {
                    Ok(b) => got.push((w.0, b)),
                    Err(e) => report.errors.push(format!("chunk {}: {e}", w.0.short())),
                }
            }
            for built in writer.add(got).await? {
                self.commit_restored(lease, &writer, built, report).await?;
            }
        }
        if let Some(built) = writer.finish().await? {
            self.commit_restored(lease, &writer, built, report).await?;
        }
        Ok(())
    }

    async fn commit_restored(
        &self,
        lease: &LeaseGuard,
        writer: &PackWriter,
        built: crate::pack::BuiltPack,
        report: &mut PassReport,
    ) -> Result<()> {
        let warm = &self.store.pack_tiers().warm;
        let intents = self.store.pack_intents();
        let written =
            packing::upload(intents, warm, built, writer.class(), self.store.clock_ms()).await?;
        let bytes: u64 = written.locations.iter().map(|l| l.length).sum();
        let chunks = written.locations.len() as u64;
        let change = PlacementChange {
            node: self.store.node_id().to_string(),
            packs: vec![written.record],
            add: written.locations,
            ..PlacementChange::default()
        };
        let res = self
            .store
            .meta()
            .commit_placement(Some(&lease.fence()), &change)
            .await;
        written.intent.finish().await;
        res?;
        report.objects_written += 1;
        report.chunks_moved += chunks;
        report.bytes_moved += bytes;
        metrics::counter!("strata_bytes_moved_total", "from" => "cold", "to" => "warm")
            .increment(bytes);
        Ok(())
    }
}
