//! The tiering engine (DESIGN §8b, docs/tiers.md "The tiering engine"): policy workers
//! that place every chunk by policy, above the [`Store`](crate::Store).
//!
//! - `demote`: this node's idle hot copies, then the least recently read ones while hot
//!   bytes are above the high watermark, to warm packs (grouped by blob).
//! - `archive`: warm packs idle past their class's `warm_idle_secs` to cold.
//! - `restore`: polls requested archive restores and copies what readers asked for up.
//! - `gc`: the store's garbage collection, periodically.
//! - `scrub`: re-verification of copies verified long ago, and repair
//!   ([`crate::Store::scrub_due`]).
//!
//! Every pass is one function shared by the daemon (`strata serve`), `strata tier run`
//! and tests; `strata tier plan` runs the same selection without moving anything. Work
//! several nodes could do at once runs under leases from the metadata store (on its
//! clock), and every commit carries the lease's fencing token.

mod archive;
mod demote;
pub mod intent;
pub mod lease;
mod packing;
mod plan;
mod restore;
mod status;
mod workers;

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::settings::ClassPolicy;

pub use workers::EngineWorker;

/// The workers of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerKind {
    /// Hot → warm.
    Demote,
    /// Warm → cold.
    Archive,
    /// Requested restores of cold packs.
    Restore,
    /// Garbage collection.
    Gc,
    /// Re-verification and repair of copies (`[scrub]`).
    Scrub,
}

impl WorkerKind {
    /// The tiering workers, in the order `tier run all` runs them. Scrub is not among
    /// them: a pass reads stored bytes at `[scrub] bytes_per_sec`, and is run on its own.
    pub const ALL: [WorkerKind; 4] = [
        WorkerKind::Restore,
        WorkerKind::Demote,
        WorkerKind::Archive,
        WorkerKind::Gc,
    ];

    /// The name used in settings, logs, metrics and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerKind::Demote => "demote",
            WorkerKind::Archive => "archive",
            WorkerKind::Restore => "restore",
            WorkerKind::Gc => "gc",
            WorkerKind::Scrub => "scrub",
        }
    }

    /// Inverse of [`WorkerKind::as_str`].
    pub fn parse(s: &str) -> Result<Self> {
        WorkerKind::ALL
            .into_iter()
            .chain([WorkerKind::Scrub])
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown worker {s:?} (demote, archive, restore, gc or scrub)"
                ))
            })
    }
}

/// What one pass of one worker did (also what `strata tier run --json` prints).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassReport {
    /// Which worker.
    pub worker: String,
    /// When it started, ms since the epoch.
    pub started_ms: u64,
    /// How long it took, ms.
    pub duration_ms: u64,
    /// Chunk copies moved (demote, archive, restore) or removed (gc).
    pub chunks_moved: u64,
    /// Bytes of those copies.
    pub bytes_moved: u64,
    /// Pack objects written.
    pub objects_written: u64,
    /// Restore requests sent (restore worker) or completed restores recorded.
    pub restores: u64,
    /// Candidates left where they are because a pin or the minimum residency keeps them.
    pub kept: u64,
    /// Errors met (the pass goes on past per-item errors and reports them here).
    pub errors: Vec<String>,
}

/// How much a pass would move: chunks, bytes and objects written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanStep {
    /// Chunk copies that would move.
    pub chunks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Pack objects that would be written.
    pub objects_written: u64,
}

/// What `strata tier plan` prints: what a pass of each worker would do now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Hot → warm: idle copies (TTL).
    pub demote_idle: PlanStep,
    /// Hot → warm: least recently read copies over the high watermark.
    pub demote_watermark: PlanStep,
    /// Warm → cold.
    pub archive: PlanStep,
    /// Requested restores that a pass would poll.
    pub restore: PlanStep,
}

/// Where this node's hot bytes stand against `[policy]`'s watermarks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Watermarks {
    /// This node's hot bytes (the counter).
    pub hot_bytes: u64,
    /// `hot_max_bytes` (0: no capacity limit).
    pub hot_max_bytes: u64,
    /// Hot bytes above which demotion starts.
    pub high_bytes: u64,
    /// Hot bytes it demotes down to.
    pub low_bytes: u64,
    /// `ok`, `above_low` or `above_high` (`unlimited` without a capacity).
    pub state: String,
}

/// Estimated monthly storage cost of a tier in US dollars, from `[costs]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TierCost {
    /// `hot`, `warm` or `cold`.
    pub tier: String,
    /// Stored bytes.
    pub bytes: u64,
    /// Dollars per month.
    pub usd_per_month: f64,
}

/// What `strata tier status` prints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TierStatus {
    /// This node's id.
    pub node: String,
    /// Bytes, chunks and objects per tier and hot bytes per node.
    pub usage: crate::meta::StoreUsage,
    /// This node's watermark state.
    pub watermarks: Watermarks,
    /// Restores requested and not yet done.
    pub pending_restores: u64,
    /// When the oldest pending restore was requested (ms since the epoch).
    pub oldest_restore_ms: Option<u64>,
    /// Each worker's last pass on each node.
    pub workers: Vec<crate::meta::PassRecord>,
    /// What a pass of each worker would do now.
    pub backlog: Plan,
    /// Estimated monthly storage cost per tier.
    pub monthly_cost: Vec<TierCost>,
}

/// The engine of one store: runs passes, plans them and reports status.
#[derive(Clone)]
pub struct Engine {
    store: crate::Store,
    state: Arc<State>,
}

/// What the engine keeps in this process between passes.
#[derive(Default)]
struct State {
    /// When to check each pending restore again.
    restores: Mutex<restore::Backoff>,
}

impl Engine {
    /// The engine of `store` (cheap; holds a clone of the handle).
    pub fn new(store: crate::Store) -> Self {
        Engine {
            store,
            state: Arc::default(),
        }
    }

    /// The store it runs on.
    pub fn store(&self) -> &crate::Store {
        &self.store
    }

    /// Run one pass of `kind` now: the code the daemon runs on its interval. Per-item
    /// errors are in the report's `errors`; an error that stopped the pass is returned
    /// (and recorded as the pass's outcome).
    pub async fn run_pass(&self, kind: WorkerKind) -> Result<PassReport> {
        self.store.check_usable()?;
        self.pass(kind).await
    }

    /// What a pass of each worker would do now, changing nothing.
    pub async fn plan(&self) -> Result<Plan> {
        self.store.check_usable()?;
        self.make_plan().await
    }

    /// Usage, watermarks, restores, last passes, backlog and cost.
    pub async fn status(&self) -> Result<TierStatus> {
        self.store.check_usable()?;
        self.make_status().await
    }

    /// Start every worker whose `[workers]` interval is not 0 on `set`.
    pub fn start(&self, set: &mut crate::worker::WorkerSet) {
        let w = &self.store.settings().workers;
        for (kind, secs) in [
            (WorkerKind::Restore, w.restore_interval_secs),
            (WorkerKind::Demote, w.demote_interval_secs),
            (WorkerKind::Archive, w.archive_interval_secs),
            (WorkerKind::Gc, w.gc_interval_secs),
            (WorkerKind::Scrub, w.scrub_interval_secs),
        ] {
            if secs > 0 {
                set.start_owned(
                    Arc::new(EngineWorker::new(self.clone(), kind)),
                    std::time::Duration::from_secs(secs),
                );
            }
        }
    }

    /// The policy classes: the default (`""`) and every `[policy.classes.NAME]`.
    fn classes(&self) -> Vec<String> {
        std::iter::once(String::new())
            .chain(self.store.settings().policy.classes.keys().cloned())
            .collect()
    }

    /// The policy of `class`; a class no longer defined falls back to the default.
    fn policy(&self, class: &str) -> ClassPolicy {
        let p = &self.store.settings().policy;
        let archive = self.store.pack_tiers().cold.class() != crate::object::StorageClass::Standard;
        p.class(class, archive)
            .or_else(|| p.class("", archive))
            .unwrap_or_else(|| unreachable_default(archive))
    }

    /// `[workers] lease_secs` in ms.
    fn lease_ms(&self) -> u64 {
        self.store
            .settings()
            .workers
            .lease_secs
            .saturating_mul(1000)
            .max(1000)
    }
}

/// The default policy, which [`crate::settings::PolicySettings::class`] always has.
fn unreachable_default(archive: bool) -> ClassPolicy {
    let d = crate::settings::PolicySettings::default();
    match d.class("", archive) {
        Some(c) => c,
        None => ClassPolicy {
            name: String::new(),
            hot_idle_ms: d.hot_idle_secs * 1000,
            hot_min_residency_ms: d.hot_min_residency_secs * 1000,
            warm_idle_ms: None,
            archive_min_object_bytes: d.archive_min_object_bytes,
            promote_after_reads: d.promote_after_reads,
            promote_window_ms: d.promote_window_secs * 1000,
            restore_tier: d.restore_tier,
            restore_days: d.restore_days,
        },
    }
}
