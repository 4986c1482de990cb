//! Passes as background workers, and what every pass does around its work: one log
//! line, a [`PassRecord`] in metadata, metrics.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use super::lease::LeaseGuard;
use super::{Engine, PassReport, WorkerKind};
use crate::error::Result;
use crate::meta::PassRecord;
use crate::worker::Worker;

/// One engine worker on the shared runner (`crate::worker`).
pub struct EngineWorker {
    engine: Engine,
    kind: WorkerKind,
}

impl EngineWorker {
    /// The worker running `kind` passes of `engine`.
    pub fn new(engine: Engine, kind: WorkerKind) -> Self {
        EngineWorker { engine, kind }
    }
}

impl Worker for EngineWorker {
    fn name(&self) -> &str {
        self.kind.as_str()
    }

    fn tick_on_close(&self) -> bool {
        false
    }

    fn tick(&self) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> {
        Box::pin(async move {
            // A closed store (shutdown's final tick) has nothing to do.
            if self.engine.store.check_usable().is_err() {
                return Ok(());
            }
            self.engine.pass(self.kind).await.map(|_| ())
        })
    }
}

impl Engine {
    /// Run a pass of `kind` with its log line, pass record and metrics.
    pub(super) async fn pass(&self, kind: WorkerKind) -> Result<PassReport> {
        let started = Instant::now();
        let mut report = PassReport {
            worker: kind.as_str().to_string(),
            started_ms: self.store.clock_ms(),
            ..PassReport::default()
        };
        let res = match kind {
            WorkerKind::Demote => self.demote_pass(&mut report).await,
            WorkerKind::Archive => self.archive_pass(&mut report).await,
            WorkerKind::Restore => self.restore_pass(&mut report).await,
            WorkerKind::Gc => self.gc_pass(&mut report).await,
            WorkerKind::Scrub => self.scrub_pass(&mut report).await,
        };
        let elapsed = started.elapsed();
        report.duration_ms = elapsed.as_millis() as u64;
        let worker = kind.as_str();
        let errors = report.errors.len() as u64 + u64::from(res.is_err());
        metrics::histogram!("strata_worker_pass_seconds", "worker" => worker)
            .record(elapsed.as_secs_f64());
        if errors > 0 {
            metrics::counter!("strata_worker_errors_total", "worker" => worker).increment(errors);
        }
        match &res {
            Ok(()) => tracing::info!(
                worker,
                duration_ms = report.duration_ms,
                chunks = report.chunks_moved,
                bytes = report.bytes_moved,
                objects = report.objects_written,
                kept = report.kept,
                errors,
                "pass done"
            ),
            Err(e) => tracing::warn!(
                worker,
                duration_ms = report.duration_ms,
                chunks = report.chunks_moved,
                bytes = report.bytes_moved,
                errors,
                error = %e,
                "pass failed"
            ),
        }
        let record = PassRecord {
            node: self.store.node_id().to_string(),
            worker: worker.to_string(),
            started_ms: report.started_ms,
            duration_ms: report.duration_ms,
            error: match &res {
                Err(e) => Some(e.to_string()),
                Ok(()) => report.errors.first().cloned(),
            },
            chunks: report.chunks_moved,
            bytes: report.bytes_moved,
        };
        if let Err(e) = self.store.meta().record_pass(&record).await {
            tracing::warn!(worker, error = %e, "could not record the pass");
        }
        res.map(|()| report)
    }

    /// Garbage collection under the `gc` lease.
    async fn gc_pass(&self, report: &mut PassReport) -> Result<()> {
        let meta = self.store.meta().clone();
        let node = self.store.node_id();
        let Some(lease) = LeaseGuard::acquire(&meta, "gc", node, self.lease_ms()).await? else {
            tracing::debug!("gc runs on another node");
            return Ok(());
        };
        let res = self.store.gc().await;
        let released = lease.release().await;
        let gc = res?;
        released?;
        report.chunks_moved = gc.chunks_removed;
        report.bytes_moved = gc.hot_bytes_removed;
        Ok(())
    }

    /// Re-verify the copies due and repair what is damaged. No lease: the copies are
    /// claimed a step at a time, so nodes scrubbing at once share the work.
    async fn scrub_pass(&self, report: &mut PassReport) -> Result<()> {
        let scrub = self.store.scrub_due().await?;
        report.chunks_moved = scrub.copies_checked;
        report.bytes_moved = scrub.bytes_read;
        report.errors.extend(scrub.errors.iter().cloned());
        report.errors.extend(
            scrub
                .unrepairable_chunks
                .iter()
                .map(|u| format!("chunk {} unrepairable: {}", u.chunk, u.detail)),
        );
        Ok(())
    }
}
