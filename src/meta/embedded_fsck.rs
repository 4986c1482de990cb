//! What `fsck` needs from [`EmbeddedMeta`](super::EmbeddedMeta): reference counts
//! compared with the manifests in bounded memory, their repair, the pack table in pages
//! and a pack's `live_bytes` recounted from its copies.

use std::collections::HashMap;

use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};

use super::{index, lock, within_prefix, Inner};
use crate::error::Result;
use crate::id::ChunkId;
use crate::meta::codec::{chunk_value, decode_chunk, decode_manifest, gc_key};
use crate::meta::placement::PackRecord;
use crate::model::RefcountMismatch;
use crate::rocks::{self, cf};

/// Distinct chunks counted in memory at once while comparing reference counts: the
/// chunk id space is cut into ranges (by first byte) holding about this many each.
const CHUNKS_PER_RANGE: u64 = 1 << 18;

impl Inner {
    /// See [`MetaStore::refcount_mismatches`](crate::meta::MetaStore::refcount_mismatches).
    ///
    /// Manifests are keyed by blob, so counting the references of a chunk means a scan
    /// of all of them. To keep memory bounded the chunk ids are split into ranges by
    /// their first byte, and each range takes one manifest scan counting only its own
    /// chunks, then one scan of its chunk records. Everything is read from one
    /// snapshot, so a put or delete committed meanwhile cannot show as a mismatch.
    pub(super) fn refcount_mismatches(&self) -> Result<Vec<RefcountMismatch>> {
        let db = &self.db;
        let (man, meta) = (cf(db, rocks::CF_MANIFEST)?, cf(db, rocks::CF_CHUNK_META)?);
        let snapshot = db.snapshot();
        let entries = db
            .property_int_value_cf(man, "rocksdb.estimate-num-keys")?
            .unwrap_or(0);
        let ranges = entries.div_ceil(CHUNKS_PER_RANGE).clamp(1, 256);
        let mut out = Vec::new();
        for r in 0..ranges {
            let lo = (r * 256 / ranges) as u8;
            let hi = ((r + 1) * 256 / ranges) as u16; // exclusive, up to 256
            let in_range = |c: &ChunkId| {
                let b = c.as_bytes()[0];
                b >= lo && u16::from(b) < hi
            };
            let mut actual: HashMap<ChunkId, u64> = HashMap::new();
            let mut opts = ReadOptions::default();
            opts.set_snapshot(&snapshot);
            for item in db.iterator_cf_opt(man, opts, IteratorMode::Start) {
                let (k, v) = item?;
                let chunk = decode_manifest(&k, &v)?.chunk;
                if in_range(&chunk) {
                    *actual.entry(chunk).or_default() += 1;
                }
            }
            let mut opts = ReadOptions::default();
            opts.set_snapshot(&snapshot);
            opts.set_iterate_lower_bound(vec![lo]);
            if hi < 256 {
                opts.set_iterate_upper_bound(vec![hi as u8]);
            }
            for item in db.iterator_cf_opt(meta, opts, IteratorMode::Start) {
                let (k, v) = item?;
                let rec = decode_chunk(&k, &v)?;
                let n = actual.remove(&rec.id).unwrap_or(0);
                if n != rec.refcount {
                    out.push(RefcountMismatch {
                        chunk: rec.id,
                        stored: rec.refcount,
                        actual: n,
                    });
                }
            }
            // Referenced chunks with no record at all.
            out.extend(actual.into_iter().map(|(chunk, n)| RefcountMismatch {
                chunk,
                stored: 0,
                actual: n,
            }));
        }
        out.sort_by_key(|m| m.chunk);
        Ok(out)
    }

    /// See [`MetaStore::repair_refcount`](crate::meta::MetaStore::repair_refcount).
    pub(super) fn repair_refcount(&self, m: &RefcountMismatch, now_ms: u64) -> Result<bool> {
        let _guard = lock(&self.write_lock);
        let Some(mut rec) = self.chunk(&m.chunk)? else {
            return Ok(false);
        };
        if rec.refcount != m.stored {
            return Ok(false);
        }
        let db = &self.db;
        let (meta, gcq) = (cf(db, rocks::CF_CHUNK_META)?, cf(db, rocks::CF_GC_QUEUE)?);
        let mut batch = WriteBatch::default();
        rec.refcount = m.actual;
        match (m.actual, rec.zero_since_ms) {
            (0, None) => {
                rec.zero_since_ms = Some(now_ms);
                batch.put_cf(gcq, gc_key(now_ms, &m.chunk), []);
            }
            (0, Some(_)) => {}
            (_, Some(since)) => {
                rec.zero_since_ms = None;
                batch.delete_cf(gcq, gc_key(since, &m.chunk));
            }
            (_, None) => {}
        }
        batch.put_cf(meta, m.chunk.as_bytes(), chunk_value(&rec));
        self.write(batch)?;
        Ok(true)
    }

    /// See [`EngineStore::list_packs`](crate::meta::EngineStore::list_packs).
    pub(super) fn list_packs(&self, after: Option<&str>, limit: usize) -> Result<Vec<PackRecord>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.scan_packs(after, |p| {
            out.push(p);
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }

    /// See [`EngineStore::recount_pack_live_bytes`](crate::meta::EngineStore::recount_pack_live_bytes).
    pub(super) fn recount_pack_live_bytes(&self, name: &str) -> Result<Option<u64>> {
        // Under the write lock: no copy of the pack is added or removed while counting.
        let _guard = lock(&self.write_lock);
        let Some(mut rec) = self.pack_record(name)? else {
            return Ok(None);
        };
        let db = &self.db;
        let (index_cf, locs) = (
            cf(db, rocks::CF_PACK_LOCATIONS)?,
            cf(db, rocks::CF_LOCATIONS)?,
        );
        let prefix = index::pack_prefix(name);
        let mut live = 0u64;
        let mut copies = 0u64;
        let iter = db.iterator_cf_opt(
            index_cf,
            within_prefix(&prefix),
            IteratorMode::From(&prefix, Direction::Forward),
        );
        for item in iter {
            let (k, _) = item?;
            let key = index::location_key_in(name, &k)?;
            if let Some(v) = db.get_pinned_cf(locs, &key)? {
                let l = crate::meta::codec::decode_location(&key, &v)?;
                live = live.saturating_add(l.length);
                copies += 1;
            }
        }
        // The live bytes served with the record come from the pack counters.
        let stats = index::pack_stats(self, name)?;
        if rec.live_bytes != live || stats.live_bytes != Some(live) || stats.copies != copies {
            rec.live_bytes = live;
            let mut batch = WriteBatch::default();
            self.put_pack_record(&mut batch, &rec)?;
            let counters = index::PackStats {
                copies,
                live_bytes: Some(live),
                ..stats
            };
            batch.put_cf(
                cf(db, rocks::CF_PACK_STATS)?,
                name.as_bytes(),
                counters.encode(),
            );
            self.write(batch)?;
        }
        Ok(Some(live))
    }
}
