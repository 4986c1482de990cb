//! Pack GC for [`EmbeddedMeta`]: which pack records no copy names, and their removal
//! under the write lock (the check and the delete are one atomic step, as every
//! read-modify-write of the embedded store).

use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::index;
use super::{lock, within_prefix, Inner};
use crate::error::Result;
use crate::meta::placement::PackRecord;
use crate::rocks::{self, cf};

impl Inner {
    /// Whether no copy names pack `name` (one seek in the pack index).
    fn pack_is_empty(&self, name: &str) -> Result<bool> {
        let index_cf = cf(&self.db, rocks::CF_PACK_LOCATIONS)?;
        let prefix = index::pack_prefix(name);
        let mut iter = self.db.iterator_cf_opt(
            index_cf,
            within_prefix(&prefix),
            IteratorMode::From(&prefix, Direction::Forward),
        );
        Ok(iter.next().transpose()?.is_none())
    }

    /// See [`EngineStore::dead_packs`](crate::meta::EngineStore::dead_packs).
    pub(super) fn dead_packs(
        &self,
        created_before_ms: u64,
        now_ms: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PackRecord>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.scan_packs(after, |p| {
            if is_collectable(&p, created_before_ms, now_ms) && self.pack_is_empty(&p.id)? {
                out.push(p);
            }
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }

    /// See [`EngineStore::sparse_packs`](crate::meta::EngineStore::sparse_packs).
    pub(super) fn sparse_packs(
        &self,
        max_live_fraction: f64,
        created_before_ms: u64,
        now_ms: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PackRecord>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.scan_packs(after, |p| {
            let sparse = (p.live_bytes as f64) < p.size as f64 * max_live_fraction;
            if sparse
                && is_collectable(&p, created_before_ms, now_ms)
                && !self.pack_is_empty(&p.id)?
            {
                out.push(p);
            }
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }

    /// See [`EngineStore::delete_dead_pack`](crate::meta::EngineStore::delete_dead_pack).
    pub(super) fn delete_dead_pack(
        &self,
        name: &str,
        created_before_ms: u64,
        now_ms: u64,
    ) -> Result<bool> {
        let _guard = lock(&self.write_lock);
        let Some(rec) = self.pack_record(name)? else {
            return Ok(false);
        };
        if !is_collectable(&rec, created_before_ms, now_ms) || !self.pack_is_empty(name)? {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        batch.delete_cf(cf(&self.db, rocks::CF_PACKS)?, name.as_bytes());
        self.write(batch)?;
        Ok(true)
    }
}

/// Old enough (the grace period) and past the minimum storage duration of its class.
fn is_collectable(p: &PackRecord, created_before_ms: u64, now_ms: u64) -> bool {
    p.created_ms <= created_before_ms && p.min_keep_until_ms.is_none_or(|t| t <= now_ms)
}
