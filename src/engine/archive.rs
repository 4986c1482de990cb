//! The archive worker: warm packs whose live chunks were all idle past their class's
//! `warm_idle_secs` go to the cold tier's archive storage class. A pack whose chunks are
//! all live is copied whole (a server-side copy when both tiers are one object store);
//! otherwise its live chunks are repacked. Packs too small to be archived alone
//! (`archive_min_object_bytes`) are gathered into one repacked cold pack, or left.
//! The old warm object is not deleted here: pack GC reclaims it (docs/tiers.md).

use std::collections::HashMap;
use std::sync::Arc;

use super::lease::LeaseGuard;
use super::packing::{self, PackWriter};
use super::{Engine, PassReport, PlanStep};
use crate::error::{Error, ErrorKind, Result};
use crate::id::ChunkId;
use crate::meta::{PackRecord, PackRestore, PlacementChange};
use crate::model::{Health, Location, Tier};
use crate::pack::PackId;
use crate::tier::{archived_name, parse_pack_name};

/// Candidate packs looked up per page.
const PAGE: usize = 256;
/// Chunks read per repack step.
const BATCH: usize = 256;
const DAY_MS: u64 = 86_400_000;

/// How a candidate pack goes cold.
#[derive(Debug, Clone)]
pub(super) enum Action {
    /// Every chunk it was written with is live: copy the object.
    Copy,
    /// Repack its live copies (some chunks are dead, or it is too small alone).
    Repack,
}

/// One warm pack chosen for archiving.
#[derive(Debug, Clone)]
pub(super) struct Chosen {
    /// Its record.
    pub pack: PackRecord,
    /// Its live copies.
    pub live: Vec<Location>,
    /// What to do with it.
    pub action: Action,
}

/// What an archive pass would do for one class.
#[derive(Debug, Default)]
pub(super) struct ClassSelection {
    /// Packs copied whole.
    pub copies: Vec<Chosen>,
    /// Packs whose live chunks are repacked together (empty if too small to write).
    pub repack: Vec<Chosen>,
    /// Packs left: pinned, or too small even together.
    pub kept: u64,
}

impl ClassSelection {
    /// The plan of this selection.
    pub fn step(&self) -> PlanStep {
        let copied: u64 = self.copies.iter().map(|c| c.pack.size).sum();
        let repacked: u64 = self
            .repack
            .iter()
            .flat_map(|c| &c.live)
            .map(|l| l.length)
            .sum();
        PlanStep {
            chunks: self
                .copies
                .iter()
                .chain(&self.repack)
                .map(|c| c.live.len() as u64)
                .sum(),
            bytes: copied + repacked,
            objects_written: self.copies.len() as u64 + u64::from(!self.repack.is_empty()),
        }
    }
}

impl Engine {
    /// The packs of `class` an archive pass would send cold now.
    pub(super) async fn select_archive(&self, class: &str, now: u64) -> Result<ClassSelection> {
        let mut sel = ClassSelection::default();
        let pol = self.policy(class);
        let Some(idle) = pol.warm_idle_ms else {
            return Ok(sel);
        };
        let meta = self.store.meta();
        let before = now.saturating_sub(idle);
        let mut after: Option<String> = None;
        let mut small = Vec::new();
        loop {
            let page = meta
                .archive_candidates(class, before, after.as_deref(), PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.pack.id.clone());
            let full = page.len() == PAGE;
            for cand in page {
                let Some(chosen) = self.choose(cand.pack, pol.archive_min_object_bytes).await?
                else {
                    sel.kept += 1;
                    continue;
                };
                match chosen.action {
                    Action::Copy => sel.copies.push(chosen),
                    Action::Repack => small.push(chosen),
                }
            }
            if !full {
                break;
            }
        }
        let gathered: u64 = small.iter().flat_map(|c| &c.live).map(|l| l.length).sum();
        if gathered >= pol.archive_min_object_bytes && gathered > 0 {
            sel.repack = small;
        } else {
            sel.kept += small.len() as u64;
        }
        Ok(sel)
    }

    /// How `pack` would go cold; `None` when it stays (pinned chunks, nothing live).
    async fn choose(&self, pack: PackRecord, min_bytes: u64) -> Result<Option<Chosen>> {
        let meta = self.store.meta();
        let locs = meta.pack_locations(&pack.id).await?;
        let ids: Vec<ChunkId> = locs.iter().map(|l| l.chunk).collect();
        if meta
            .pins(&ids)
            .await?
            .iter()
            .any(|(_, p)| p.floor().is_some())
        {
            return Ok(None);
        }
        let records = futures::future::try_join_all(ids.iter().map(|id| meta.chunk(id))).await?;
        let referenced: HashMap<ChunkId, bool> = records
            .into_iter()
            .flatten()
            .map(|r| (r.id, r.refcount > 0))
            .collect();
        let live: Vec<Location> = locs
            .into_iter()
            .filter(|l| l.health == Health::Ok && referenced.get(&l.chunk) == Some(&true))
            .collect();
        if live.is_empty() {
            return Ok(None);
        }
        let live_bytes: u64 = live.iter().map(|l| l.length).sum();
        let whole = live_bytes == pack.live_bytes && live.len() == ids.len();
        let action = if whole && pack.size >= min_bytes {
            Action::Copy
        } else {
            Action::Repack
        };
        Ok(Some(Chosen { pack, live, action }))
    }

    /// One archive pass over every class that archives.
    pub(super) async fn archive_pass(&self, report: &mut PassReport) -> Result<()> {
        let now = self.store.clock_ms();
        for class in self.classes() {
            let sel = self.select_archive(&class, now).await?;
            report.kept += sel.kept;
            for chosen in &sel.copies {
                if let Err(e) = self.archive_copy(chosen, report).await {
                    report.errors.push(format!("pack {}: {e}", chosen.pack.id));
                }
            }
            if !sel.repack.is_empty() {
                if let Err(e) = self.archive_repack(&class, &sel.repack, report).await {
                    report
                        .errors
                        .push(format!("repacking class {class:?}: {e}"));
                }
            }
        }
        Ok(())
    }

    /// Copy a whole live pack into the cold tier's class and move its copies there.
    async fn archive_copy(&self, chosen: &Chosen, report: &mut PassReport) -> Result<()> {
        let meta = self.store.meta().clone();
        let node = self.store.node_id();
        let Some(lease) = LeaseGuard::acquire(
            &meta,
            &format!("pack:{}", chosen.pack.id),
            node,
            self.lease_ms(),
        )
        .await?
        else {
            return Ok(()); // another node is on it
        };
        let res = self.copy_under(&lease, chosen, report).await;
        let released = lease.release().await;
        res.and(released)
    }

    async fn copy_under(
        &self,
        lease: &LeaseGuard,
        chosen: &Chosen,
        report: &mut PassReport,
    ) -> Result<()> {
        let tiers = self.store.pack_tiers();
        let (warm, cold) = (&tiers.warm, &tiers.cold);
        let (_, id) = parse_pack_name(&chosen.pack.id)?;
        let to = archived_name(&chosen.pack.id)?;
        let class = cold.class();
        // The cold object is written under its write intent, held until the commit.
        let intent = self.store.pack_intents().begin_write(&to).await?;
        if same_store(warm.store(), cold.store()) {
            warm.store().copy(&chosen.pack.id, &to, class).await?;
        } else {
            // Different stores: through this process, checked against the pack's id.
            let bytes = warm.store().get(&chosen.pack.id).await?;
            let check = bytes.clone();
            let actual = tokio::task::spawn_blocking(move || PackId::of(&check)).await?;
            if actual != id {
                return Err(Error::corrupt(format!(
                    "pack {}: its bytes hash to {}",
                    chosen.pack.id,
                    actual.short()
                )));
            }
            cold.store().put(&to, bytes, class).await?;
        }
        let head = cold.store().head(&to).await?;
        if head.size != chosen.pack.size {
            return Err(Error::corrupt(format!(
                "pack {to}: {} bytes after the copy, expected {}",
                head.size, chosen.pack.size
            )));
        }
        let now = self.store.clock_ms();
        let record = cold_record(&to, &chosen.pack, class, head.size, now);
        let add: Vec<Location> = chosen
            .live
            .iter()
            .map(|l| Location {
                tier: Tier::Cold,
                pack: to.clone(),
                last_verified_ms: Some(now),
                ..l.clone()
            })
            .collect();
        let change = PlacementChange {
            node: self.store.node_id().to_string(),
            packs: vec![record],
            add,
            remove: chosen.live.clone(),
            moves: true,
            ..PlacementChange::default()
        };
        let removed = self
            .store
            .meta()
            .commit_placement(Some(&lease.fence()), &change)
            .await;
        intent.finish().await;
        let removed = removed?;
        report.objects_written += 1;
        count_moved(&removed, report);
        Ok(())
    }

    /// Repack the live chunks of several warm packs into cold packs, each pack's copies
    /// moving under that pack's lease.
    async fn archive_repack(
        &self,
        class: &str,
        packs: &[Chosen],
        report: &mut PassReport,
    ) -> Result<()> {
        let meta = self.store.meta().clone();
        let node = self.store.node_id();
        let mut leases: HashMap<String, LeaseGuard> = HashMap::new();
        let mut source: HashMap<ChunkId, Location> = HashMap::new();
        for c in packs {
            if let Some(l) =
                LeaseGuard::acquire(&meta, &format!("pack:{}", c.pack.id), node, self.lease_ms())
                    .await?
            {
                leases.insert(c.pack.id.clone(), l);
                for l in &c.live {
                    // A chunk in several packs moves out of the first one only.
                    source.entry(l.chunk).or_insert_with(|| l.clone());
                }
            }
        }
        let res = self.repack_under(class, &leases, source, report).await;
        for (_, l) in leases {
            let _ = l.release().await;
        }
        res
    }

    async fn repack_under(
        &self,
        class: &str,
        leases: &HashMap<String, LeaseGuard>,
        source: HashMap<ChunkId, Location>,
        report: &mut PassReport,
    ) -> Result<()> {
        let cold = &self.store.pack_tiers().cold;
        let mut writer = PackWriter::new(cold, class);
        let mut wanted: Vec<&Location> = source.values().collect();
        wanted.sort_by(|a, b| (&a.pack, a.offset).cmp(&(&b.pack, b.offset)));
        for batch in wanted.chunks(BATCH) {
            let wants: Vec<(ChunkId, Option<u32>, Vec<Location>)> = batch
                .iter()
                .map(|l| (l.chunk, None, vec![(*l).clone()]))
                .collect();
            let mut got = Vec::with_capacity(wants.len());
            for (w, r) in wants.iter().zip(self.store.read_copies(&wants).await) {
                match r {
                    Ok(b) => got.push((w.0, b)),
                    Err(e) => report.errors.push(format!("chunk {}: {e}", w.0.short())),
                }
            }
            for built in writer.add(got).await? {
                self.commit_cold_pack(leases, &source, &writer, built, report)
                    .await?;
            }
        }
        if let Some(built) = writer.finish().await? {
            self.commit_cold_pack(leases, &source, &writer, built, report)
                .await?;
        }
        Ok(())
    }

    /// Upload one repacked cold pack and move each source pack's copies into it under
    /// that pack's lease; a fenced source keeps its warm copies.
    async fn commit_cold_pack(
        &self,
        leases: &HashMap<String, LeaseGuard>,
        source: &HashMap<ChunkId, Location>,
        writer: &PackWriter,
        built: crate::pack::BuiltPack,
        report: &mut PassReport,
    ) -> Result<()> {
        let cold = &self.store.pack_tiers().cold;
        let now = self.store.clock_ms();
        let intents = self.store.pack_intents();
        let mut written = packing::upload(intents, cold, built, writer.class(), now).await?;
        written.record.min_keep_until_ms = Some(now + cold.class().min_storage_days() * DAY_MS);
        report.objects_written += 1;
        let mut by_pack: HashMap<String, (Vec<Location>, Vec<Location>)> = HashMap::new();
        for l in written.locations {
            if let Some(old) = source.get(&l.chunk) {
                let e = by_pack.entry(old.pack.clone()).or_default();
                e.0.push(l);
                e.1.push(old.clone());
            }
        }
        let mut record = Some(written.record);
        for (pack, (add, remove)) in by_pack {
            let Some(lease) = leases.get(&pack) else {
                continue;
            };
            let change = PlacementChange {
                node: self.store.node_id().to_string(),
                packs: record.iter().cloned().collect(),
                add,
                remove,
                moves: true,
                ..PlacementChange::default()
            };
            match self
                .store
                .meta()
                .commit_placement(Some(&lease.fence()), &change)
                .await
            {
                Ok(removed) => {
                    record = None;
                    count_moved(&removed, report);
                }
                Err(e) if e.kind() == ErrorKind::Fenced => {
                    report.errors.push(format!("pack {pack}: {e}"));
                }
                Err(e) => {
                    written.intent.finish().await;
                    return Err(e);
                }
            }
        }
        written.intent.finish().await;
        Ok(())
    }
}

/// The record of a cold copy of `warm`, named `name`.
fn cold_record(
    name: &str,
    warm: &PackRecord,
    class: crate::object::StorageClass,
    size: u64,
    now: u64,
) -> PackRecord {
    PackRecord {
        id: name.to_string(),
        tier: Tier::Cold,
        storage_class: class,
        size,
        live_bytes: warm.live_bytes,
        created_ms: now,
        restore: PackRestore::NONE,
        class: warm.class.clone(),
        min_keep_until_ms: Some(now + class.min_storage_days() * DAY_MS),
    }
}

fn count_moved(removed: &[Location], report: &mut PassReport) {
    let bytes: u64 = removed.iter().map(|l| l.length).sum();
    report.chunks_moved += removed.len() as u64;
    report.bytes_moved += bytes;
    metrics::counter!("strata_bytes_moved_total", "from" => "warm", "to" => "cold")
        .increment(bytes);
}

/// Whether two tiers' object stores are one store (a server-side copy works between
/// their keys): the same handle, or the same location.
fn same_store(
    a: &Arc<dyn crate::object::ObjectStore>,
    b: &Arc<dyn crate::object::ObjectStore>,
) -> bool {
    Arc::ptr_eq(a, b) || a.describe() == b.describe()
}
