//! Read statistics batched in memory and flushed by a background worker (DESIGN §5:
//! a read never waits on a metadata write).
//!
//! Each flush writes two things: the chunks' read counts and last reads
//! (`record_access`), and this node's reads of its hot copies (`touch_hot`, the hot
//! index the demotion worker scans). A write that fails keeps its batch, merged with
//! the reads that arrive meanwhile, and is retried at the next tick; each kept batch is
//! bounded, and what does not fit is dropped and counted.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::Result;
use crate::id::ChunkId;
use crate::meta::MetaStore;
use crate::worker::Worker;

/// Beyond this many distinct pending chunks (per kind), further reads are not counted
/// until a flush succeeds: statistics are advisory and must not grow memory without
/// bound.
const MAX_PENDING: usize = 1 << 20;

#[derive(Default)]
struct Pending {
    /// chunk → (last read ms, reads), for `record_access`.
    access: HashMap<ChunkId, (u64, u64)>,
    /// chunk → last read ms, for `touch_hot`.
    touch: HashMap<ChunkId, u64>,
}

/// Pending access statistics and the worker that flushes them.
pub struct AccessLog {
    pending: Mutex<Pending>,
    meta: Arc<dyn MetaStore>,
    node: String,
    /// Distinct chunks kept pending at most, per kind ([`MAX_PENDING`]).
    bound: usize,
    dropped: AtomicU64,
}

impl AccessLog {
    /// An empty log flushing into `meta`, on behalf of `node` (whose hot copies'
    /// reads it records).
    pub fn new(meta: Arc<dyn MetaStore>, node: String) -> Self {
        AccessLog {
            pending: Mutex::new(Pending::default()),
            meta,
            node,
            bound: MAX_PENDING,
            dropped: AtomicU64::new(0),
        }
    }

    /// A log keeping at most `bound` distinct chunks pending (tests of the bound).
    #[cfg(test)]
    fn with_bound(meta: Arc<dyn MetaStore>, node: String, bound: usize) -> Self {
        AccessLog {
            bound,
            ..Self::new(meta, node)
        }
    }

    /// Count one read of `id` at `now_ms`.
    pub fn record(&self, id: ChunkId, now_ms: u64) {
        let mut p = self.lock();
        let mut dropped = 0;
        if p.access.len() < self.bound || p.access.contains_key(&id) {
            let e = p.access.entry(id).or_insert((now_ms, 0));
            e.0 = e.0.max(now_ms);
            e.1 += 1;
        } else {
            dropped += 1;
        }
        if p.touch.len() < self.bound || p.touch.contains_key(&id) {
            let t = p.touch.entry(id).or_insert(now_ms);
            *t = (*t).max(now_ms);
        } else {
            dropped += 1;
        }
        drop(p);
        self.count_dropped(dropped);
    }

    /// Write pending statistics to the metadata store. A part whose write fails is
    /// kept for the next flush (merged with newer reads, bounded) and its error
    /// returned.
    pub async fn flush(&self) -> Result<()> {
        let (access, touch) = {
            let mut p = self.lock();
            (std::mem::take(&mut p.access), std::mem::take(&mut p.touch))
        };
        let mut first_err = None;
        if !access.is_empty() {
            let batch: Vec<(ChunkId, u64, u64)> =
                access.iter().map(|(id, (at, n))| (*id, *at, *n)).collect();
            if let Err(e) = self.meta.record_access(&batch).await {
                self.keep_access(access);
                first_err = Some(e);
            }
        }
        if !touch.is_empty() {
            let reads: Vec<(ChunkId, u64)> = touch.iter().map(|(id, at)| (*id, *at)).collect();
            if let Err(e) = self.meta.touch_hot(&self.node, &reads).await {
                self.keep_touch(touch);
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Reads dropped because the pending batches were full, since the store opened.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Distinct chunks waiting for their read counts to be written.
    pub fn pending(&self) -> usize {
        self.lock().access.len()
    }

    /// Merge a batch whose write failed back into the pending reads.
    fn keep_access(&self, failed: HashMap<ChunkId, (u64, u64)>) {
        let mut p = self.lock();
        let mut dropped = 0;
        for (id, (at, n)) in failed {
            if let Some(e) = p.access.get_mut(&id) {
                e.0 = e.0.max(at);
                e.1 += n;
            } else if p.access.len() < self.bound {
                p.access.insert(id, (at, n));
            } else {
                dropped += 1;
            }
        }
        drop(p);
        self.count_dropped(dropped);
    }

    /// [`Self::keep_access`] for the hot-copy reads.
    fn keep_touch(&self, failed: HashMap<ChunkId, u64>) {
        let mut p = self.lock();
        let mut dropped = 0;
        for (id, at) in failed {
            if let Some(t) = p.touch.get_mut(&id) {
                *t = (*t).max(at);
            } else if p.touch.len() < self.bound {
                p.touch.insert(id, at);
            } else {
                dropped += 1;
            }
        }
        drop(p);
        self.count_dropped(dropped);
    }

    fn count_dropped(&self, n: u64) {
        if n > 0 {
            self.dropped.fetch_add(n, Ordering::Relaxed);
            metrics::counter!("strata_access_drops_total").increment(n);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Worker for AccessLog {
    fn name(&self) -> &str {
        "access-flush"
    }

    fn tick(&self) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> {
        Box::pin(self.flush())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::embedded::EmbeddedMeta;
    use crate::meta::faults::FaultyMeta;
    use crate::settings::HotSettings;

    fn faulty(dir: &std::path::Path) -> Arc<FaultyMeta> {
        let db = crate::rocks::open(dir, &HotSettings::default()).unwrap();
        FaultyMeta::new(Arc::new(EmbeddedMeta::new(db, false).unwrap()))
    }

    #[tokio::test]
    async fn a_failed_batch_is_kept_merged_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let meta = faulty(dir.path());
        let log = AccessLog::with_bound(meta.clone(), "n".into(), 3);
        let ids: Vec<ChunkId> = (0..5u8).map(|i| ChunkId::of(&[i])).collect();
        log.record(ids[0], 10);
        log.record(ids[1], 10);
        meta.fail_all
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(log.flush().await.is_err());
        assert_eq!(log.pending(), 2, "the failed batch is kept");
        // New reads merge into it; past the bound they are dropped and counted.
        log.record(ids[0], 20);
        log.record(ids[2], 20);
        log.record(ids[3], 20);
        assert_eq!(log.pending(), 3);
        assert_eq!(log.dropped(), 2, "one access and one hot read of ids[3]");
        {
            let p = log.lock();
            assert_eq!(p.access[&ids[0]], (20, 2));
            assert_eq!(p.touch[&ids[0]], 20);
        }
        // Failing again keeps it again, nothing more lost.
        assert!(log.flush().await.is_err());
        assert_eq!((log.pending(), log.dropped()), (3, 2));
    }
}
