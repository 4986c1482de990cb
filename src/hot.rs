//! The hot tier (DESIGN §5): chunk bytes in RocksDB, keyed by chunk id, values in blob
//! files. The [`ChunkTier`] trait is what the store reads and writes through, so tests
//! and wrappers (fault injection, metrics) can stand in for RocksDB.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};

use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::rocks::{cf, CF_CHUNKS, CF_SYSTEM, CF_UNCONFIRMED};

pub mod faults;
mod reclaim;

/// Key in the `system` column family, present while deleted chunks may have left
/// garbage in blob files that no completed [`ChunkTier::reclaim`] has given back.
const RECLAIM_PENDING: &[u8] = b"hot_reclaim_pending";

/// Upper bound of a write batch's bytes per record besides the value: tag, column
/// family id, two varint lengths and the 32-byte key (and the batch header).
const BATCH_RECORD_OVERHEAD: usize = 64;

/// One chunk's stored bytes (blocking: call from a blocking thread).
fn read_chunk(db: &DB, id: &ChunkId) -> Result<Option<Bytes>> {
    Ok(db
        .get_pinned_cf(cf(db, CF_CHUNKS)?, id.as_bytes())?
        .map(|v| Bytes::copy_from_slice(&v)))
}

/// A tier that stores chunk bytes under their ids on this node.
#[async_trait]
pub trait ChunkTier: Send + Sync + 'static {
    /// Store chunks (idempotent: same id, same bytes). Not durable until [`Self::sync`]
    /// or a synced metadata commit sharing the same log.
    async fn put_many(&self, chunks: Vec<(ChunkId, Bytes)>) -> Result<()>;
    /// The stored bytes, unverified (the caller verifies), or `None`.
    async fn get(&self, id: &ChunkId) -> Result<Option<Bytes>>;
    /// [`Self::get`], with whether the bytes hash to `id`. Tiers that read from disk do
    /// both off the async workers, so that a stream of reads (a `get` of a large blob)
    /// spreads its reads, decompression and hashing over the cores.
    async fn get_verified(&self, id: &ChunkId) -> Result<Option<(Bytes, bool)>> {
        Ok(self.get(id).await?.map(|b| {
            let ok = ChunkId::of(&b) == *id;
            (b, ok)
        }))
    }
    /// [`Self::get`] of many chunks, in the order of `ids`, for bulk readers (the
    /// demote worker). Tiers that read from disk keep up to `readers` reads in flight.
    async fn get_many(&self, ids: &[ChunkId], readers: usize) -> Vec<Result<Option<Bytes>>> {
        let _ = readers;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.get(id).await);
        }
        out
    }
    /// Whether a copy is present.
    async fn contains(&self, id: &ChunkId) -> Result<bool>;
    /// Whether a copy may be present, without loading it: `false` is certain, `true` is
    /// wrong for about 1% of absent chunks (the caller then reads through the normal
    /// per-chunk path). For deciding what to fetch ahead from other tiers.
    async fn may_contain(&self, id: &ChunkId) -> bool {
        self.contains(id).await.unwrap_or(true)
    }
    /// Whether chunks were deleted since the last reclaim compaction. Until that
    /// compaction drops their keys, [`Self::may_contain`] says "maybe" for every one of
    /// them, so a read must not take "maybe" for "hot". `true` is always safe.
    fn deletions_pending(&self) -> bool {
        true
    }
    /// Remove chunks (call only after the metadata no longer points here).
    async fn delete_many(&self, ids: Vec<ChunkId>) -> Result<()>;
    /// Store chunks of a bulk write, bypassing the write-ahead log when the tier can:
    /// the bytes are then written once (not once to the log and again at flush). Not
    /// durable until [`Self::sync_unlogged`] or [`Self::sync`].
    async fn put_many_unlogged(&self, chunks: Vec<(ChunkId, Bytes)>) -> Result<()> {
        self.put_many(chunks).await
    }
    /// Make earlier [`Self::put_many_unlogged`] writes durable (on their own: a synced
    /// log does not cover them).
    async fn sync_unlogged(&self) -> Result<()> {
        Ok(())
    }
    /// Make all earlier writes durable, unlogged ones included.
    async fn sync(&self) -> Result<()>;
    /// Give back the space of deleted chunks (may rewrite files; called by `gc`) if
    /// any deletion since the last completed reclaim left some; returns how many bytes
    /// the tier's files shrank by.
    async fn reclaim(&self) -> Result<u64> {
        Ok(0)
    }
    /// Up to `limit` chunks written since their write was last confirmed with
    /// [`Self::confirm`]: every write is noted as unconfirmed, durably no later than
    /// its bytes, so chunks of a put that failed or crashed before its metadata commit
    /// can be found and deleted (DESIGN §3). A tier that keeps no such note returns
    /// nothing.
    async fn unconfirmed(&self, _limit: usize) -> Result<Vec<ChunkId>> {
        Ok(Vec::new())
    }
    /// Note `ids` as unconfirmed again, durably, before their recorded copies are
    /// removed from metadata: if the process dies after that commit and before the
    /// bytes are deleted, the next sweep finds the note and deletes them.
    async fn note_unconfirmed(&self, _ids: Vec<ChunkId>) -> Result<()> {
        Ok(())
    }
    /// Drop the unconfirmed notes of `ids` (their locations are recorded, or they were
    /// swept).
    async fn confirm(&self, _ids: Vec<ChunkId>) -> Result<()> {
        Ok(())
    }
}

/// The RocksDB hot tier.
#[derive(Clone)]
pub struct HotTier {
    db: Arc<DB>,
    /// Set after an unlogged write, cleared by the flush that makes it durable.
    unlogged: Arc<AtomicBool>,
    /// Held from clearing `unlogged` to the end of the flush, so a caller that finds the
    /// flag clear knows the flush covering its writes has finished.
    flushing: Arc<tokio::sync::Mutex<()>>,
    /// Chunks were deleted since the last reclaim compaction (the persisted reclaim
    /// marker, mirrored here so a read asks without a RocksDB call).
    deleted: Arc<AtomicBool>,
    /// Chunk deletions so far, held while one writes the persisted marker and while a
    /// reclaim decides to clear it.
    deletions: Arc<std::sync::Mutex<u64>>,
}

impl HotTier {
    /// The hot tier inside an open database (see [`crate::rocks::open`]).
    pub fn new(db: Arc<DB>) -> Self {
        // Read once at open; unknown counts as pending, the safe answer.
        let pending = crate::rocks::cf(&db, CF_SYSTEM)
            .and_then(|sys| Ok(db.get_pinned_cf(sys, RECLAIM_PENDING)?.is_some()))
            .unwrap_or(true);
        HotTier {
            db,
            unlogged: Arc::default(),
            flushing: Arc::default(),
            deleted: Arc::new(AtomicBool::new(pending)),
            deletions: Arc::default(),
        }
    }

    /// Delete the keys `ids` from column family `name` in one batch. Deleting chunks
    /// also sets the reclaim marker, in the same batch: the garbage and the note that
    /// it exists become durable together, so a `gc` killed before its compaction
    /// finished leaves the next one something to do.
    async fn delete_keys(&self, name: &'static str, ids: Vec<ChunkId>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        if name == CF_CHUNKS {
            self.deleted.store(true, Ordering::SeqCst);
        }
        let db = self.db.clone();
        let deletions = self.deletions.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let cf = cf(&db, name)?;
            let mut batch = WriteBatch::default();
            for id in &ids {
                batch.delete_cf(cf, id.as_bytes());
            }
            if name != CF_CHUNKS {
                db.write(batch)?;
                return Ok(());
            }
            batch.put_cf(crate::rocks::cf(&db, CF_SYSTEM)?, RECLAIM_PENDING, []);
            let mut n = deletions.lock().unwrap_or_else(|e| e.into_inner());
            *n += 1;
            db.write(batch)?;
            Ok(())
        })
        .await?
    }

    /// One write batch of chunks, through the WAL (not synced) or past it.
    async fn write(&self, chunks: Vec<(ChunkId, Bytes)>, logged: bool) -> Result<()> {
        let db = self.db.clone();
        let unlogged = self.unlogged.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let notes = cf(&db, CF_UNCONFIRMED)?;
            let cf = cf(&db, CF_CHUNKS)?;
            // Sized up front: a growing batch copies its whole buffer at every doubling.
            let bytes: usize = chunks
                .iter()
                .map(|(_, b)| b.len() + BATCH_RECORD_OVERHEAD)
                .sum();
            let note_bytes = (chunks.len() + 1) * BATCH_RECORD_OVERHEAD;
            // The unconfirmed notes go through the log ahead of the bytes: an unlogged
            // write becomes durable at a flush of the chunks' memtable, which does not
            // flush the notes' memtable, so the log is what keeps a note at least as
            // durable as its chunk. A logged write carries its notes in the same batch.
            let mut batch =
                WriteBatch::with_capacity_bytes(note_bytes + if logged { bytes } else { 0 });
            for (id, _) in &chunks {
                batch.put_cf(notes, id.as_bytes(), []);
            }
            if !logged {
                db.write(batch)?;
                batch = WriteBatch::with_capacity_bytes(bytes + BATCH_RECORD_OVERHEAD);
            }
            for (id, bytes) in &chunks {
                batch.put_cf(cf, id.as_bytes(), bytes);
            }
            let mut opts = WriteOptions::default();
            opts.set_sync(false);
            opts.disable_wal(!logged);
            db.write_opt(batch, &opts)?;
            if !logged {
                // After the write: a flush that clears the flag started after these
                // bytes were in the memtable.
                unlogged.store(true, Ordering::SeqCst);
            }
            Ok(())
        })
        .await?
    }
}

#[async_trait]
impl ChunkTier for HotTier {
    async fn put_many(&self, chunks: Vec<(ChunkId, Bytes)>) -> Result<()> {
        self.write(chunks, true).await
    }

    async fn put_many_unlogged(&self, chunks: Vec<(ChunkId, Bytes)>) -> Result<()> {
        self.write(chunks, false).await
    }

    async fn sync_unlogged(&self) -> Result<()> {
        let _flushing = self.flushing.lock().await;
        if !self.unlogged.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let db = self.db.clone();
        let flushed = tokio::task::spawn_blocking(move || -> Result<()> {
            // Writes the memtable to blob and table files and syncs them.
            db.flush_cf(cf(&db, CF_CHUNKS)?)?;
            Ok(())
        })
        .await
        .map_err(crate::error::Error::from)
        .and_then(|r| r);
        if flushed.is_err() {
            self.unlogged.store(true, Ordering::SeqCst);
        }
        flushed
    }

    async fn get(&self, id: &ChunkId) -> Result<Option<Bytes>> {
        let (db, id) = (self.db.clone(), *id);
        // A read may go to the disk (blob files are written with O_DIRECT) and
        // decompresses: never on an async worker.
        tokio::task::spawn_blocking(move || read_chunk(&db, &id)).await?
    }

    async fn get_verified(&self, id: &ChunkId) -> Result<Option<(Bytes, bool)>> {
        let (db, id) = (self.db.clone(), *id);
        tokio::task::spawn_blocking(move || {
            Ok(read_chunk(&db, &id)?.map(|b| {
                let ok = ChunkId::of(&b) == id;
                (b, ok)
            }))
        })
        .await?
    }

    async fn get_many(&self, ids: &[ChunkId], readers: usize) -> Vec<Result<Option<Bytes>>> {
        // Blob files are written with O_DIRECT (`hot.direct_writes`), so bulk reads go
        // to the disk: several blocking readers keep its queue busy (one reader at a
        // time read 290 MB/s here), and none of them holds up an async worker.
        if ids.is_empty() {
            return Vec::new();
        }
        let per = ids.len().div_ceil(readers.max(1));
        let parts = ids.chunks(per).map(|part| {
            let (db, part) = (self.db.clone(), part.to_vec());
            tokio::task::spawn_blocking(move || -> Vec<Result<Option<Bytes>>> {
                part.iter().map(|id| read_chunk(&db, id)).collect()
            })
        });
        let mut out = Vec::with_capacity(ids.len());
        for (part, got) in ids.chunks(per).zip(futures::future::join_all(parts).await) {
            match got {
                Ok(results) => out.extend(results),
                Err(e) => out.extend(
                    part.iter()
                        .map(|_| Err(Error::internal(format!("hot read task failed: {e}")))),
                ),
            }
        }
        out
    }

    async fn contains(&self, id: &ChunkId) -> Result<bool> {
        let cf = cf(&self.db, CF_CHUNKS)?;
        // The bloom filter answers "absent" without a read; only a "maybe" costs a get
        // (which, for a value in a blob file, reads the value).
        if !self.db.key_may_exist_cf(cf, id.as_bytes()) {
            return Ok(false);
        }
        Ok(self.db.get_pinned_cf(cf, id.as_bytes())?.is_some())
    }

    async fn may_contain(&self, id: &ChunkId) -> bool {
        // The memtables and the SST files' bloom filters, no data or blob reads: a key
        // in an SST file is "maybe" without loading its value.
        match cf(&self.db, CF_CHUNKS) {
            Ok(cf) => self.db.key_may_exist_cf(cf, id.as_bytes()),
            Err(_) => true,
        }
    }

    async fn delete_many(&self, ids: Vec<ChunkId>) -> Result<()> {
        self.delete_keys(CF_CHUNKS, ids).await
    }

    async fn sync(&self) -> Result<()> {
        self.sync_unlogged().await?;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush_wal(true)).await??;
        Ok(())
    }

    async fn unconfirmed(&self, limit: usize) -> Result<Vec<ChunkId>> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<ChunkId>> {
            let notes = cf(&db, CF_UNCONFIRMED)?;
            let mut out = Vec::new();
            for item in db.iterator_cf(notes, IteratorMode::Start).take(limit) {
                let (k, _) = item?;
                out.push(ChunkId::from_slice(&k)?);
            }
            Ok(out)
        })
        .await?
    }

    async fn confirm(&self, ids: Vec<ChunkId>) -> Result<()> {
        self.delete_keys(CF_UNCONFIRMED, ids).await
    }

    async fn note_unconfirmed(&self, ids: Vec<ChunkId>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let notes = cf(&db, CF_UNCONFIRMED)?;
            let mut batch = WriteBatch::default();
            for id in &ids {
                batch.put_cf(notes, id.as_bytes(), []);
            }
            // Synced: the metadata commit that follows may be in another database
            // (PostgreSQL) and durable on its own.
            let mut opts = WriteOptions::default();
            opts.set_sync(true);
            db.write_opt(batch, &opts)?;
            Ok(())
        })
        .await?
    }

    fn deletions_pending(&self) -> bool {
        self.deleted.load(Ordering::SeqCst)
    }

    async fn reclaim(&self) -> Result<u64> {
        let db = self.db.clone();
        let deletions = self.deletions.clone();
        let before = *deletions.lock().unwrap_or_else(|e| e.into_inner());
        let reclaimed =
            tokio::task::spawn_blocking(move || reclaim::run(&db, &deletions)).await??;
        // The compaction dropped the deleted keys (and the persisted marker with them),
        // unless chunks were deleted while it ran.
        if *self.deletions.lock().unwrap_or_else(|e| e.into_inner()) == before {
            self.deleted.store(false, Ordering::SeqCst);
        }
        Ok(reclaimed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::HotSettings;

    fn chunk(n: u8) -> (ChunkId, Bytes) {
        let bytes = Bytes::from(vec![n; 2000]);
        (ChunkId::of(&bytes), bytes)
    }

    #[tokio::test]
    async fn writes_stay_unconfirmed_until_confirmed_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let settings = HotSettings::default();
        let (a, b, c) = (chunk(1), chunk(2), chunk(3));
        {
            let hot = HotTier::new(crate::rocks::open(dir.path(), &settings).unwrap());
            assert!(hot.unconfirmed(10).await.unwrap().is_empty());
            hot.put_many(vec![a.clone()]).await.unwrap();
            hot.put_many_unlogged(vec![b.clone(), c.clone()])
                .await
                .unwrap();
            let mut noted = hot.unconfirmed(10).await.unwrap();
            noted.sort();
            let mut want = vec![a.0, b.0, c.0];
            want.sort();
            assert_eq!(noted, want);
            assert_eq!(hot.unconfirmed(2).await.unwrap().len(), 2);
            hot.confirm(vec![a.0]).await.unwrap();
            hot.sync().await.unwrap();
            // Deleting bytes does not drop a note: the sweep drops it after looking.
            hot.delete_many(vec![c.0]).await.unwrap();
        }
        // Reopened (the database was closed without a flush of the notes' memtable):
        // the notes came back from the log.
        let hot = HotTier::new(crate::rocks::open(dir.path(), &settings).unwrap());
        let mut noted = hot.unconfirmed(10).await.unwrap();
        noted.sort();
        let mut want = vec![b.0, c.0];
        want.sort();
        assert_eq!(noted, want);
        assert_eq!(hot.get(&b.0).await.unwrap(), Some(b.1));
        hot.confirm(vec![b.0, c.0]).await.unwrap();
        assert!(hot.unconfirmed(10).await.unwrap().is_empty());
    }
}
