//! Scrubbing (DESIGN §7, docs/integrity.md): re-verify the copies this node can read,
//! oldest verified first, at a bounded rate, record each verdict, and repair what is
//! damaged from a healthy copy.
//!
//! - Copies are taken in steps of `[scrub] batch_copies` under claims from the metadata
//!   store (`ClaimOrder::OldestVerified`, only copies this node can read), so several
//!   nodes scrubbing the same store share the shared copies instead of each checking
//!   all of them; a claim lapses with its lease if the process dies.
//! - Each copy is checked as `verify` checks it: hot copies re-hashed, warm and
//!   instant-class cold copies fetched with ranged GETs and re-hashed, archive-class
//!   cold copies by a HEAD of their pack (size against the record). Nothing is
//!   restored just to be scrubbed.
//! - Every verdict is recorded (health and last-verified time) before repairs start, so
//!   readers stop choosing a damaged copy at once; reads verify every byte anyway, so
//!   between detection and repair a read returns correct bytes or `Corrupt`.
//! - The pass paces itself: after each step it sleeps until the bytes it has read fit
//!   `[scrub] bytes_per_sec`. The pace is this process's own I/O budget, so a local
//!   clock is the right one.

mod repair;
mod report;

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

pub use report::{DamagedRange, ScrubReport, ScrubbedCopy, UnrepairableChunk};

use super::verify::{Checked, Run, Verdict};
use super::Store;
use crate::error::Result;
use crate::id::ChunkId;
use crate::model::{ClaimOrder, ClaimRequest, Health, Location, Tier, VerifyRecord};

/// Which copies one pass checks.
#[derive(Debug, Clone, Copy)]
struct PassScope {
    /// Copies last verified at or after this time are left alone (they were checked
    /// recently, or by this pass).
    verified_before_ms: u64,
}

impl Store {
    /// Scrub now: check every copy this node can read once, oldest verified first (at
    /// `[scrub] bytes_per_sec`), record each verdict, and repair damaged copies and
    /// chunks below `[durability] min_copies`. What `strata scrub` runs. Damage is
    /// reported, not returned as an error; errors are for failures of the pass itself
    /// (metadata unreachable, the store closed).
    pub async fn scrub(&self) -> Result<ScrubReport> {
        self.check_open()?;
        let scope = PassScope {
            verified_before_ms: self.now_ms().saturating_add(1),
        };
        self.scrub_pass(scope).await
    }

    /// The periodic worker's pass: [`Store::scrub`] of the copies last verified longer
    /// than `[scrub] reverify_after_secs` ago (and those never verified).
    pub async fn scrub_due(&self) -> Result<ScrubReport> {
        self.check_open()?;
        let after_ms = self
            .inner
            .settings
            .scrub
            .reverify_after_secs
            .saturating_mul(1000);
        let scope = PassScope {
            verified_before_ms: self.now_ms().saturating_sub(after_ms),
        };
        self.scrub_pass(scope).await
    }

    async fn scrub_pass(&self, scope: PassScope) -> Result<ScrubReport> {
        let started = Instant::now();
        let mut report = ScrubReport::default();
        let mut run = Run::default();
        // Copies this pass has looked at: one that could not be checked (its tier
        // unreachable) keeps its old verification time and would be claimed again.
        let mut seen: HashSet<(ChunkId, Tier, String, String)> = HashSet::new();
        loop {
            let claimed = self.claim_for_scrub().await?;
            let (due, _): (Vec<Location>, Vec<Location>) = claimed.iter().cloned().partition(|l| {
                l.last_verified_ms
                    .is_none_or(|t| t < scope.verified_before_ms)
                    && seen.insert((l.chunk, l.tier, l.node.clone(), l.pack.clone()))
            });
            if due.is_empty() {
                self.release_scrub_claims(&claimed).await;
                break;
            }
            let step = self.scrub_step(&due, &mut run, &mut report).await;
            self.release_scrub_claims(&claimed).await;
            step?;
            self.pace(started, report.bytes_read).await;
        }
        if !report.unrepairable_chunks.is_empty() {
            self.attach_damage(&mut report.unrepairable_chunks).await?;
        }
        metrics::counter!("strata_scrub_bytes_total").increment(report.bytes_read);
        metrics::counter!("strata_scrub_copies_total").increment(report.copies_checked);
        Ok(report)
    }

    /// Claim the next copies to check: oldest verified first, only copies this node
    /// can read (another node's hot copies are its own scrubber's).
    async fn claim_for_scrub(&self) -> Result<Vec<Location>> {
        let req = ClaimRequest {
            node: self.inner.node.clone(),
            tier: None,
            own_hot_only: false,
            readable_only: true,
            order: ClaimOrder::OldestVerified,
            limit: self.inner.settings.scrub.batch_copies,
            now_ms: self.inner.meta.db_now_ms().await?,
            lease_ms: self
                .inner
                .settings
                .workers
                .lease_secs
                .saturating_mul(1000)
                .max(1000),
        };
        self.inner.meta.claim_locations(&req).await
    }

    async fn release_scrub_claims(&self, claimed: &[Location]) {
        if let Err(e) = self
            .inner
            .meta
            .release_claims(&self.inner.node, claimed)
            .await
        {
            // The claims lapse with their lease.
            tracing::warn!(error = %e, "could not release scrub claims");
        }
    }

    /// Check `due`, record the verdicts, then repair the chunks that need it.
    async fn scrub_step(
        &self,
        due: &[Location],
        run: &mut Run,
        report: &mut ScrubReport,
    ) -> Result<()> {
        let _op = self.begin().await?;
        let copies = due.iter().map(|l| (l.clone(), None)).collect();
        let results = self.check_copies(copies, run).await?;
        self.record_scrub(results, report).await?;
        self.pause_at("scrub-repair").await;
        let chunks: BTreeSet<ChunkId> = due.iter().map(|l| l.chunk).collect();
        let chunks: Vec<ChunkId> = chunks.into_iter().collect();
        self.repair_chunks(&chunks, report).await
    }

    /// Count the verdicts and record every one that was reached.
    async fn record_scrub(&self, results: Vec<Checked>, report: &mut ScrubReport) -> Result<()> {
        let now = self.now_ms();
        let mut records = Vec::with_capacity(results.len());
        for (loc, _method, verdict, hashed) in results {
            report.bytes_read += hashed;
            let (health, detail) = match verdict {
                // Not claimed (readable copies only); nothing to say about it.
                Verdict::Elsewhere => continue,
                Verdict::Unchecked(detail) => {
                    tracing::debug!(chunk = %loc.chunk.short(), tier = loc.tier.as_str(), %detail, "scrub could not check a copy");
                    report.unchecked += 1;
                    continue;
                }
                Verdict::Good => (Health::Ok, "scrub: ok".to_string()),
                Verdict::Damaged(health, detail) => {
                    match health {
                        Health::Missing => report.missing += 1,
                        _ => report.corrupt += 1,
                    }
                    tracing::warn!(chunk = %loc.chunk.short(), tier = loc.tier.as_str(), pack = %loc.pack, health = health.as_str(), %detail, "scrub found a damaged copy");
                    report.damaged.push(ScrubbedCopy {
                        chunk: loc.chunk,
                        tier: loc.tier,
                        pack: loc.pack.clone(),
                        health,
                        detail: detail.clone(),
                    });
                    self.inner.chunks.invalidate(&loc.chunk).await;
                    (health, format!("scrub: {detail}"))
                }
            };
            report.copies_checked += 1;
            records.push(VerifyRecord {
                location: loc,
                health,
                at_ms: now,
                detail,
            });
        }
        self.inner.meta.record_verification(&records).await
    }

    /// Sleep until `bytes` read since `started` fit the configured rate.
    async fn pace(&self, started: Instant, bytes: u64) {
        let rate = self.inner.settings.scrub.bytes_per_sec;
        if rate == 0 {
            return;
        }
        let due = Duration::from_secs_f64(bytes as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
}
