//! Promotion off the read path (docs/tiers.md, "Promotion"): a read of a warm or cold
//! chunk counts the read and, on the `promote_after_reads`-th read within
//! `promote_window_secs`, offers the verified bytes to a bounded queue and returns. A
//! worker on the runner drains the queue within the `promote_max_bytes_per_sec` budget
//! and writes the chunks to hot (write → sync → record, as every hot write). A full
//! queue or an exhausted budget drops the promotion and counts it: the chunk stays in
//! warm or cold, and a later read offers it again.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use moka::future::Cache;
use serde::Serialize;

use super::{Inner, Store};
use crate::clock::Clock;
use crate::error::Result;
use crate::id::ChunkId;
use crate::settings::Settings;
use crate::worker::Worker;

/// How often the worker drains the queue.
pub(super) const TICK: Duration = Duration::from_millis(20);
/// Bytes the queue holds at most; offers beyond it are dropped.
const QUEUE_MAX_BYTES: usize = 16 << 20;
/// Largest write to hot of one promotion step.
const BATCH_BYTES: usize = 8 << 20;
/// Chunks whose reads are counted at most (for `promote_after_reads` above 1).
const MAX_COUNTED: u64 = 1 << 20;

/// Promotion counters since the store was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PromotionStats {
    /// Chunks queued for promotion.
    pub queued: u64,
    /// Chunks written to hot and recorded.
    pub promoted: u64,
    /// Offers dropped because the queue was full.
    pub dropped_full: u64,
    /// Queued chunks skipped because the byte budget was spent.
    pub skipped_rate: u64,
    /// Chunks whose hot write or record failed.
    pub failed: u64,
}

impl PromotionStats {
    /// Promotions dropped for any reason (`strata_promotion_drops_total`).
    pub fn drops(&self) -> u64 {
        self.dropped_full + self.skipped_rate + self.failed
    }
}

#[derive(Default)]
struct Queue {
    items: VecDeque<(ChunkId, Bytes)>,
    bytes: usize,
    /// Chunks queued or being written, with their verified bytes: a chunk is offered
    /// once until it is in hot, and reads take it from here meanwhile.
    pending: HashMap<ChunkId, Bytes>,
}

/// A token bucket of bytes on the store's clock; bursts up to one second's budget.
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    promoted: AtomicU64,
    dropped_full: AtomicU64,
    skipped_rate: AtomicU64,
    failed: AtomicU64,
}

/// The promotion queue, its read counts and its worker.
pub(super) struct Promotions {
    enabled: bool,
    after_reads: u32,
    /// Reads of not-yet-promoted chunks within the window (`after_reads` > 1 only).
    reads: Option<Cache<ChunkId, Arc<AtomicU32>>>,
    max_bytes_per_sec: u64,
    bucket: Mutex<Bucket>,
    queue: Mutex<Queue>,
    /// Held for a whole drain, so that `run_promotions` returns only once the batches
    /// the worker took (and is writing) are in hot, not while they are in flight.
    draining: tokio::sync::Mutex<()>,
    clock: Arc<dyn Clock>,
    counters: Counters,
    store: OnceLock<Weak<Inner>>,
}

impl Promotions {
    pub(super) fn new(settings: &Settings, clock: Arc<dyn Clock>) -> Self {
        let policy = &settings.policy;
        let after_reads = policy.promote_after_reads;
        let reads = (after_reads > 1).then(|| {
            Cache::builder()
                .max_capacity(MAX_COUNTED)
                .time_to_live(Duration::from_secs(policy.promote_window_secs.max(1)))
                .build()
        });
        let rate = policy.promote_max_bytes_per_sec;
        Promotions {
            enabled: settings.tiers.promote && after_reads > 0,
            after_reads,
            reads,
            max_bytes_per_sec: rate,
            bucket: Mutex::new(Bucket {
                tokens: rate as f64,
                at_ms: clock.now_ms(),
            }),
            queue: Mutex::default(),
            draining: tokio::sync::Mutex::new(()),
            clock,
            counters: Counters::default(),
            store: OnceLock::new(),
        }
    }

    /// Whether reads promote at all (`[tiers] promote` and `promote_after_reads`).
    pub(super) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Give the worker its store (held weakly: the store owns the worker).
    pub(super) fn attach(&self, inner: Weak<Inner>) {
        let _ = self.store.set(inner);
    }

    /// Count a read of a warm or cold chunk and, when it is the promoting read, queue
    /// its verified bytes. Never waits on a write.
    pub(super) async fn offer(&self, id: ChunkId, bytes: &Bytes) {
        if !self.enabled {
            return;
        }
        if let Some(reads) = &self.reads {
            let n = reads
                .get_with(id, async { Arc::new(AtomicU32::new(0)) })
                .await;
            if n.fetch_add(1, Ordering::SeqCst) + 1 < self.after_reads {
                return;
            }
            reads.invalidate(&id).await;
        }
        let mut q = self.lock_queue();
        if q.pending.contains_key(&id) {
            return;
        }
        if q.bytes + bytes.len() > QUEUE_MAX_BYTES {
            drop(q);
            self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("strata_promotion_drops_total", "reason" => "queue_full")
                .increment(1);
            return;
        }
        q.bytes += bytes.len();
        q.pending.insert(id, bytes.clone());
        q.items.push_back((id, bytes.clone()));
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
    }

    /// The verified bytes of a chunk queued or being written: a read between the
    /// promoting read and the hot write takes them here instead of fetching again.
    pub(super) fn pending(&self, id: &ChunkId) -> Option<Bytes> {
        if !self.enabled {
            return None;
        }
        self.lock_queue().pending.get(id).cloned()
    }

    /// The counters so far.
    pub(super) fn stats(&self) -> PromotionStats {
        let c = &self.counters;
        PromotionStats {
            queued: c.queued.load(Ordering::Relaxed),
            promoted: c.promoted.load(Ordering::Relaxed),
            dropped_full: c.dropped_full.load(Ordering::Relaxed),
            skipped_rate: c.skipped_rate.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }

    /// Drain the queue into hot through `store`: batches of at most [`BATCH_BYTES`],
    /// each chunk within the byte budget or skipped.
    pub(super) async fn drain(&self, store: &Store) {
        let _draining = self.draining.lock().await;
        loop {
            let (batch, taken) = self.next_batch();
            if taken == 0 {
                return;
            }
            let ids: Vec<ChunkId> = batch.iter().map(|c| c.0).collect();
            let n = batch.len() as u64;
            match store.write_hot(batch).await {
                Ok(bytes) => {
                    self.counters.promoted.fetch_add(n, Ordering::Relaxed);
                    metrics::counter!("strata_promoted_bytes_total").increment(bytes);
                }
                Err(e) => {
                    tracing::warn!(error = %e, chunks = n, "promotion into hot failed");
                    self.counters.failed.fetch_add(n, Ordering::Relaxed);
                    metrics::counter!("strata_promotion_drops_total", "reason" => "failed")
                        .increment(n);
                }
            }
            let mut q = self.lock_queue();
            for id in ids {
                q.pending.remove(&id);
            }
        }
    }

    /// Take up to [`BATCH_BYTES`] from the queue; chunks over the budget are skipped
    /// (and leave the pending set). Returns the batch and how many items were taken.
    fn next_batch(&self) -> (Vec<(ChunkId, Bytes)>, usize) {
        let mut q = self.lock_queue();
        let mut batch = Vec::new();
        let (mut bytes, mut taken) = (0, 0);
        while let Some(front) = q.items.front() {
            if !batch.is_empty() && bytes + front.1.len() > BATCH_BYTES {
                break;
            }
            let Some((id, b)) = q.items.pop_front() else {
                break;
            };
            taken += 1;
            q.bytes -= b.len();
            if self.take_budget(b.len()) {
                bytes += b.len();
                batch.push((id, b));
            } else {
                q.pending.remove(&id);
                self.counters.skipped_rate.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("strata_promotion_drops_total", "reason" => "rate_limit")
                    .increment(1);
            }
        }
        (batch, taken)
    }

    /// Spend `len` bytes of the budget if it has them (a full bucket lets any one chunk
    /// through, so chunks larger than a second's budget are not starved).
    fn take_budget(&self, len: usize) -> bool {
        if self.max_bytes_per_sec == 0 {
            return true;
        }
        let rate = self.max_bytes_per_sec as f64;
        let now = self.clock.now_ms();
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_sub(b.at_ms) as f64 / 1000.0;
        b.tokens = (b.tokens + elapsed * rate).min(rate);
        b.at_ms = now;
        if b.tokens >= len as f64 || b.tokens >= rate {
            b.tokens -= len as f64;
            true
        } else {
            false
        }
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Worker for Promotions {
    fn name(&self) -> &str {
        "promote"
    }

    /// Drain the queue. The final tick at close drains it too: at most
    /// [`QUEUE_MAX_BYTES`] of writes, then the store's hot tier is synced.
    fn tick(&self) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> {
        Box::pin(async move {
            let Some(inner) = self.store.get().and_then(Weak::upgrade) else {
                return Ok(());
            };
            self.drain(&Store { inner }).await;
            Ok(())
        })
    }
}

impl Store {
    /// Offer chunks just read (and verified) from warm or cold for promotion.
    pub(super) async fn offer_promotions(&self, chunks: &[(ChunkId, Bytes)]) {
        for (id, bytes) in chunks {
            self.inner.promotions.offer(*id, bytes).await;
        }
    }

    /// Promotion counters since the store was opened.
    pub fn promotion_stats(&self) -> PromotionStats {
        self.inner.promotions.stats()
    }

    /// Write the chunks queued for promotion now, instead of at the worker's next tick
    /// (tests, and tools that want the hot tier settled).
    pub async fn run_promotions(&self) -> Result<()> {
        self.check_open()?;
        self.inner.promotions.drain(self).await;
        Ok(())
    }
}
