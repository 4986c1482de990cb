//! Read statistics batched in memory and flushed by a background worker (DESIGN §5:
//! a read never waits on a metadata write).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use crate::error::Result;
use crate::id::ChunkId;
use crate::meta::MetaStore;
use crate::worker::Worker;

/// Beyond this many distinct pending chunks, further reads are not counted until the
/// next flush: statistics are advisory and must not grow memory without bound.
const MAX_PENDING: usize = 1 << 20;

/// Pending access statistics: chunk → (last read ms, reads).
pub struct AccessLog {
    pending: Mutex<HashMap<ChunkId, (u64, u64)>>,
    meta: Arc<dyn MetaStore>,
}

impl AccessLog {
    /// An empty log flushing into `meta`.
    pub fn new(meta: Arc<dyn MetaStore>) -> Self {
        AccessLog {
            pending: Mutex::new(HashMap::new()),
            meta,
        }
    }

    /// Count one read of `id` at `now_ms`.
    pub fn record(&self, id: ChunkId, now_ms: u64) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.len() >= MAX_PENDING && !p.contains_key(&id) {
            return;
        }
        let e = p.entry(id).or_insert((now_ms, 0));
        e.0 = e.0.max(now_ms);
        e.1 += 1;
    }

    /// Write pending statistics to the metadata store.
    pub async fn flush(&self) -> Result<()> {
        let batch: Vec<(ChunkId, u64, u64)> = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.drain().map(|(id, (at, n))| (id, at, n)).collect()
        };
        if batch.is_empty() {
            return Ok(());
        }
        self.meta.record_access(&batch).await
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
