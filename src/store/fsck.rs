//! `fsck` (DESIGN §7, issue 13 §5): check every invariant that ties metadata to the
//! bytes, report each broken one as a [`Problem`], and with `repair` fix what can be
//! fixed without losing data.
//!
//! Checks, in this order (each walks its data in pages, so memory stays bounded
//! whatever the size of the store):
//! 1. reference counts against the manifests ([`MetaStore::refcount_mismatches`]);
//! 2. every pack record against its object: it exists with the recorded size, its
//!    index (read with ranged GETs; archived objects by HEAD only, never restored)
//!    lists every copy recorded in it at that offset and length, and its `live_bytes`
//!    is the sum of its copies' lengths (`packs`);
//! 3. every object under the tiers' pack prefixes against the pack records: orphans
//!    past the grace period are problems, younger ones are reported but not failures
//!    (a put may be committing them) (`packs`);
//! 4. every referenced chunk has a healthy copy this node can read, not counting the
//!    copies steps 2 and 3 found damaged.
//!
//! Errors are failures of the run itself (a store unreachable): a run that cannot
//! look at everything proves nothing, so it stops rather than report a partial result.

mod packs;
mod report;

use std::collections::HashSet;

pub use report::{FsckReport, Problem, ProblemKind, Repair};

use super::Store;
use crate::error::Result;
use crate::id::ChunkId;
use crate::model::{Health, Location, Tier, VerifyRecord};

/// Records or objects read per round trip.
const PAGE: usize = 1024;

/// The state of one fsck run.
struct Run {
    report: FsckReport,
    /// Packs whose object is missing or unreadable as a whole: no copy in them counts
    /// as healthy.
    bad_packs: HashSet<String>,
    /// Single copies `(chunk, pack)` found damaged.
    bad_copies: HashSet<(ChunkId, String)>,
}

impl Run {
    fn push(&mut self, problem: Problem) {
        self.report.problems.push(problem);
    }

    fn copy_is_bad(&self, l: &Location) -> bool {
        l.tier != Tier::Hot
            && (self.bad_packs.contains(&l.pack)
                || self.bad_copies.contains(&(l.chunk, l.pack.clone())))
    }
}

impl Store {
    /// Check every invariant between metadata and the stored bytes (see the module
    /// docs) and, with `repair`, fix what can be fixed without losing data: reference
    /// counts and `live_bytes` recomputed, copies in missing or damaged packs marked
    /// `Missing` or `Corrupt` (so that scrub repairs them from another copy), orphan
    /// objects past the grace period deleted. Problems are reported, never returned
    /// as errors; errors are for failures of the run itself.
    pub async fn fsck(&self, repair: bool) -> Result<FsckReport> {
        self.check_open()?;
        let mut run = Run {
            report: FsckReport {
                repair,
                ..FsckReport::default()
            },
            bad_packs: HashSet::new(),
            bad_copies: HashSet::new(),
        };
        self.fsck_refcounts(&mut run).await?;
        for tier in [Tier::Warm, Tier::Cold] {
            self.fsck_pack_records(tier, &mut run).await?;
            self.fsck_objects(tier, &mut run).await?;
        }
        self.fsck_chunks(&mut run).await?;
        Ok(run.report)
    }

    /// Reference counts against the manifests; repaired by a compare-and-set.
    async fn fsck_refcounts(&self, run: &mut Run) -> Result<()> {
        let meta = &self.inner.meta;
        for m in meta.refcount_mismatches().await? {
            let mut p = Problem::chunk(
                ProblemKind::RefcountMismatch,
                m.chunk,
                format!(
                    "reference count is {}, but {} manifest entries reference it",
                    m.stored, m.actual
                ),
            );
            if run.report.repair {
                p.repair = Some(if meta.repair_refcount(&m, self.now_ms()).await? {
                    Repair::Repaired(format!("reference count set to {}", m.actual))
                } else if meta.chunk(&m.chunk).await?.is_none() {
                    Repair::NotRepaired(
                        "the chunk has no record (its size and copies are unknown); put the blobs that use it again".into(),
                    )
                } else {
                    Repair::NotRepaired("the count changed since the check; run fsck again".into())
                });
            }
            run.push(p);
        }
        Ok(())
    }

    /// Every referenced chunk has a healthy copy this node can read.
    async fn fsck_chunks(&self, run: &mut Run) -> Result<()> {
        let meta = &self.inner.meta;
        let node = self.inner.node.clone();
        let mut after = None;
        loop {
            let page = meta.list_chunks(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            let ids: Vec<ChunkId> = page
                .iter()
                .filter(|c| c.refcount > 0)
                .map(|c| c.id)
                .collect();
            let mut locations = meta.locations_many(&ids).await?;
            for id in &ids {
                run.report.chunks_checked += 1;
                let copies = locations.remove(id).unwrap_or_default();
                let healthy = copies
                    .iter()
                    .any(|l| l.health == Health::Ok && l.readable_by(&node) && !run.copy_is_bad(l));
                if healthy {
                    continue;
                }
                let mut p = Problem::chunk(
                    ProblemKind::UnreadableChunk,
                    *id,
                    format!(
                        "referenced, and no healthy copy this node can read ({})",
                        describe_copies(&copies, run)
                    ),
                );
                if run.report.repair {
                    p.repair = Some(Repair::NotRepaired(
                        "no healthy copy to repair from; put the blobs that use it again (strata verify lists them)".into(),
                    ));
                }
                run.push(p);
            }
            if page.len() < PAGE {
                break;
            }
        }
        Ok(())
    }

    /// Record `health` for `copies` (how `--repair` marks damaged copies, so that
    /// reads skip them and scrub replaces them).
    async fn mark_copies(&self, copies: &[Location], health: Health, why: &str) -> Result<()> {
        let now = self.now_ms();
        let records: Vec<VerifyRecord> = copies
            .iter()
            .map(|l| VerifyRecord {
                location: l.clone(),
                health,
                at_ms: now,
                detail: format!("fsck: {why}"),
            })
            .collect();
        for c in copies {
            self.inner.chunks.invalidate(&c.chunk).await;
        }
        self.inner.meta.record_verification(&records).await
    }
}

/// `2 copies: warm pack warm/… (missing), hot on node-b (ok)`, for problem details.
fn describe_copies(copies: &[Location], run: &Run) -> String {
    if copies.is_empty() {
        return "no copy recorded".into();
    }
    let each: Vec<String> = copies
        .iter()
        .map(|l| {
            let place = if l.tier == Tier::Hot {
                format!("hot on {}", l.node)
            } else {
                format!("{} pack {}", l.tier.as_str(), l.pack)
            };
            let health = if run.copy_is_bad(l) {
                "damaged, found by fsck"
            } else {
                l.health.as_str()
            };
            format!("{place} ({health})")
        })
        .collect();
    format!("{} copies: {}", copies.len(), each.join(", "))
}
