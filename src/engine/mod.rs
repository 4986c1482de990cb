//! The tiering engine (DESIGN §8b, docs/tiers.md "The tiering engine"): policy workers
//! that place every chunk by policy, above the [`Store`](crate::Store).
//!
//! - `demote`: this node's idle hot copies, then the least recently read ones while hot
//!   bytes are above the high watermark, to warm packs (grouped by blob).
//! - `archive`: warm packs idle past their class's `warm_idle_secs` to cold.
//! - `restore`: polls requested archive restores and copies what readers asked for up.
//! - `gc`: the store's garbage collection, periodically.
//!
//! Every pass is one function shared by the daemon (`strata serve`), `strata tier run`
//! and tests; `strata tier plan` runs the same selection without moving anything. Work
//! several nodes could do at once runs under leases from the metadata store (on its
//! clock), and every commit carries the lease's fencing token.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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
}

impl WorkerKind {
    /// Every worker, in the order `tier run all` runs them.
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
        }
    }

    /// Inverse of [`WorkerKind::as_str`].
    pub fn parse(s: &str) -> Result<Self> {
        WorkerKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown worker {s:?} (demote, archive, restore or gc)"
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
