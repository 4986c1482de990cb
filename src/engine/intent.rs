//! Pack intents (docs/integrity.md, "Pack intents"): who is writing or deleting a pack
//! object, recorded as leases in the metadata store so that every process sees them.
//!
//! Pack names are content-addressed, so a writer may upload an object under a name gc
//! is deleting at that moment (a dead pack whose chunks came back, an orphan). Two
//! intents close that race:
//!
//! - a writer takes a *write intent* (`pack-write:<name>/<writer>`, one per write)
//!   before its PUT and holds it, renewed, until its commit has landed; then it looks
//!   for a delete intent on the name and backs off (`Unavailable`, retry later) if one
//!   is live;
//! - gc takes the *delete intent* (`pack-delete:<name>`) before it checks the pack is
//!   dead or orphaned, then looks for live write intents and leaves the pack alone if
//!   there is one; it deletes the object only while its intent is still held.
//!
//! Each side records its own intent before it reads the other's, so at least one of two
//! racing processes sees the other (the store is linearizable): never both proceed. A
//! pack whose write intent is live is `writing`; one whose record exists and whose
//! writer has finished is `sealed`. A writer that dies leaves its intent to lapse (it is
//! renewed only while the process runs); its object is then an orphan, reclaimed after
//! `gc.grace_secs` like any other. What stays open: a gc process paused for longer than
//! its lease between its last check and its DELETE request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::lease::LeaseGuard;
use crate::error::{Error, Result};
use crate::meta::MetaStore;

const WRITE: &str = "pack-write:";
const DELETE: &str = "pack-delete:";

/// Makes each write intent's name unique within the process.
static WRITES: AtomicU64 = AtomicU64::new(0);

/// Takes pack intents for one node.
#[derive(Clone)]
pub struct PackIntents {
    meta: Arc<dyn MetaStore>,
    node: String,
    ttl_ms: u64,
}

/// A write intent held until the writer's commit has landed (or failed). Dropped
/// without [`PackWrite::finish`] (a cancelled task), it stops being renewed and lapses
/// after the lease time.
pub struct PackWrite {
    guard: Option<LeaseGuard>,
}

impl std::fmt::Debug for PackWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lease = self.guard.as_ref().map(|g| g.current().name);
        f.debug_struct("PackWrite").field("lease", &lease).finish()
    }
}

/// A delete intent held while gc deletes one pack object.
pub struct PackDelete {
    guard: LeaseGuard,
    meta: Arc<dyn MetaStore>,
}

impl PackIntents {
    /// Intents of `node`, as leases of `ttl_ms` renewed while held.
    pub fn new(meta: Arc<dyn MetaStore>, node: &str, ttl_ms: u64) -> Self {
        PackIntents {
            meta,
            node: node.to_string(),
            ttl_ms: ttl_ms.max(1),
        }
    }

    /// Record that this process is about to write pack `name`. `Unavailable` when gc is
    /// deleting that name now: the caller's work is retried later, as after any
    /// unavailable store.
    pub async fn begin_write(&self, name: &str) -> Result<PackWrite> {
        let n = WRITES.fetch_add(1, Ordering::Relaxed);
        let holder = format!("{}#{}#{n}", self.node, std::process::id());
        let lease = format!("{WRITE}{name}/{holder}");
        let guard = LeaseGuard::acquire(&self.meta, &lease, &holder, self.ttl_ms)
            .await?
            .ok_or_else(|| Error::unavailable(format!("write intent {lease} is taken")))?;
        let deleting = delete_name(name);
        let live = self.meta.live_leases(&deleting).await;
        match live {
            Ok(l) if l.iter().all(|l| l.name != deleting) => Ok(PackWrite { guard: Some(guard) }),
            Ok(_) => {
                let _ = guard.release().await;
                Err(Error::unavailable(format!(
                    "pack {name} is being deleted by gc; try again"
                )))
            }
            Err(e) => {
                let _ = guard.release().await;
                Err(e)
            }
        }
    }

    /// Take the delete intent on pack `name`; `None` when a writer holds a write intent
    /// on it (or another gc the delete intent): leave the pack alone this time.
    pub async fn begin_delete(&self, name: &str) -> Result<Option<PackDelete>> {
        let holder = format!("{}#gc", self.node);
        let Some(guard) =
            LeaseGuard::acquire(&self.meta, &delete_name(name), &holder, self.ttl_ms).await?
        else {
            return Ok(None);
        };
        match self.writing(name).await {
            Ok(false) => Ok(Some(PackDelete {
                guard,
                meta: self.meta.clone(),
            })),
            Ok(true) => {
                let _ = guard.release().await;
                Ok(None)
            }
            Err(e) => {
                let _ = guard.release().await;
                Err(e)
            }
        }
    }

    /// Whether a write intent on pack `name` is live (the pack is `writing`).
    pub async fn writing(&self, name: &str) -> Result<bool> {
        let prefix = format!("{WRITE}{name}/");
        Ok(!self.meta.live_leases(&prefix).await?.is_empty())
    }
}

impl PackWrite {
    /// The commit has landed (or failed): give the intent up.
    pub async fn finish(mut self) {
        if let Some(g) = self.guard.take() {
            if let Err(e) = g.release().await {
                // It lapses on its own; nothing depends on the release.
                tracing::debug!(error = %e, "releasing a pack write intent failed");
            }
        }
    }
}

impl PackDelete {
    /// Whether the intent is still this process's: checked right before the DELETE.
    pub async fn held(&self) -> Result<bool> {
        let mine = self.guard.current();
        let live = self.meta.live_leases(&mine.name).await?;
        Ok(live
            .iter()
            .any(|l| l.name == mine.name && l.token == mine.token))
    }

    /// The object is deleted (or was left): give the intent up.
    pub async fn finish(self) {
        if let Err(e) = self.guard.release().await {
            tracing::debug!(error = %e, "releasing a pack delete intent failed");
        }
    }
}

/// Give up every intent in `writes`.
pub async fn finish_all(writes: Vec<PackWrite>) {
    for w in writes {
        w.finish().await;
    }
}

fn delete_name(name: &str) -> String {
    format!("{DELETE}{name}")
}
