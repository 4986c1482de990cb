//! The hot tier (DESIGN §5): chunk bytes in RocksDB, keyed by chunk id, values in blob
//! files. The [`ChunkTier`] trait is what the store reads and writes through, so tests
//! and wrappers (fault injection, metrics) can stand in for RocksDB.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use rocksdb::{WriteBatch, WriteOptions, DB};

use crate::error::Result;
use crate::id::ChunkId;
use crate::rocks::{cf, CF_CHUNKS};

/// A tier that stores chunk bytes under their ids on this node.
#[async_trait]
pub trait ChunkTier: Send + Sync + 'static {
    /// Store chunks (idempotent: same id, same bytes). Not durable until [`Self::sync`]
    /// or a synced metadata commit sharing the same log.
    async fn put_many(&self, chunks: Vec<(ChunkId, Bytes)>) -> Result<()>;
    /// The stored bytes, unverified (the caller verifies), or `None`.
    async fn get(&self, id: &ChunkId) -> Result<Option<Bytes>>;
    /// Whether a copy is present.
    async fn contains(&self, id: &ChunkId) -> Result<bool>;
    /// Remove chunks (call only after the metadata no longer points here).
    async fn delete_many(&self, ids: Vec<ChunkId>) -> Result<()>;
    /// Make all earlier writes durable.
    async fn sync(&self) -> Result<()>;
    /// Give back the space of deleted chunks (may rewrite files; called by `gc`).
    async fn reclaim(&self) -> Result<()> {
        Ok(())
    }
}

/// The RocksDB hot tier.
#[derive(Clone)]
pub struct HotTier {
    db: Arc<DB>,
}

impl HotTier {
    /// The hot tier inside an open database (see [`crate::rocks::open`]).
    pub fn new(db: Arc<DB>) -> Self {
        HotTier { db }
    }
}

#[async_trait]
impl ChunkTier for HotTier {
    async fn put_many(&self, chunks: Vec<(ChunkId, Bytes)>) -> Result<()> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let cf = cf(&db, CF_CHUNKS)?;
            let mut batch = WriteBatch::default();
            for (id, bytes) in &chunks {
                batch.put_cf(cf, id.as_bytes(), bytes);
            }
            let mut opts = WriteOptions::default();
            opts.set_sync(false);
            db.write_opt(batch, &opts)?;
            Ok(())
        })
        .await?
    }

    async fn get(&self, id: &ChunkId) -> Result<Option<Bytes>> {
        // Point reads are microseconds from the page cache; running them inline avoids
        // a thread hop on the latency-critical path.
        let cf = cf(&self.db, CF_CHUNKS)?;
        Ok(self.db.get_pinned_cf(cf, id.as_bytes())?.map(|v| Bytes::copy_from_slice(&v)))
    }

    async fn contains(&self, id: &ChunkId) -> Result<bool> {
        let cf = cf(&self.db, CF_CHUNKS)?;
        Ok(self.db.get_pinned_cf(cf, id.as_bytes())?.is_some())
    }

    async fn delete_many(&self, ids: Vec<ChunkId>) -> Result<()> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let cf = cf(&db, CF_CHUNKS)?;
            let mut batch = WriteBatch::default();
            for id in &ids {
                batch.delete_cf(cf, id.as_bytes());
            }
            db.write(batch)?;
            Ok(())
        })
        .await?
    }

    async fn sync(&self) -> Result<()> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush_wal(true)).await??;
        Ok(())
    }

    async fn reclaim(&self) -> Result<()> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let cf = cf(&db, CF_CHUNKS)?;
            // One compaction with blob GC on: deleted chunks' keys go, and live values
            // in the oldest blob files move, so those files can be deleted.
            db.set_options_cf(cf, &[("enable_blob_gc", "true")])?;
            db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
            db.set_options_cf(cf, &[("enable_blob_gc", "false")])?;
            Ok(())
        })
        .await?
    }
}
