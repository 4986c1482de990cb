//! [`PlacementStore`] for [`PostgresMeta`]: copies added and removed outside a put, and
//! the `packs` table (schema version 1 already has it).
//!
//! Both location transactions lock the chunk rows first, in id order (the global lock
//! order of docs/metadata.md), so a removal's "is another healthy copy left?" check and
//! its delete are atomic with respect to every other removal or addition of copies of
//! the same chunks. The restore compare-and-set is one `UPDATE ... WHERE` on the current
//! state: the row lock makes exactly one of several concurrent callers see one row.

use async_trait::async_trait;
use deadpool_postgres::Transaction;

use super::rows::{
    col, col_chunk_id, col_opt_u64, col_u64, i64_of, location_from_row, opt_i64_of, LocationKeys,
    LOCATION_COLUMNS,
};
use super::{PostgresMeta, BATCH};
use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::meta::placement::{
    allowed_removals, PackRecord, PackRestore, PlacementStore, RestoreState,
};
use crate::model::{Location, Tier};

/// Lock chunk rows `$1` in id order and return their ids and reference counts.
const LOCK_CHUNKS_SQL: &str =
    "SELECT id, refcount FROM chunks WHERE id = ANY($1::bytea[]) ORDER BY id FOR UPDATE";

impl PostgresMeta {
    /// Lock the distinct chunks of `locations`; returns `(id, refcount)` of those with a
    /// record, in id order.
    pub(super) async fn lock_chunk_rows(
        &self,
        txn: &Transaction<'_>,
        locations: &[Location],
    ) -> Result<Vec<(ChunkId, u64)>> {
        let mut ids: Vec<&[u8]> = locations
            .iter()
            .map(|l| l.chunk.as_bytes().as_slice())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let st = txn
            .prepare_cached(LOCK_CHUNKS_SQL)
            .await
            .map_err(self.err("prepare"))?;
        let mut out = Vec::with_capacity(ids.len());
        for batch in ids.chunks(BATCH) {
            for row in txn
                .query(&st, &[&batch])
                .await
                .map_err(self.err("lock chunks"))?
            {
                out.push((col_chunk_id(&row, 0)?, col_u64(&row, 1, "refcount")?));
            }
        }
        Ok(out)
    }

    async fn add_once(&self, locations: &[Location]) -> Result<()> {
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(self.err("begin"))?;
        self.add_in(&txn, locations).await?;
        txn.commit().await.map_err(self.err("commit"))
    }

    /// `add_locations` inside `txn`: locks the chunk rows, then upserts the copies (the
    /// trigger on `locations` keeps the hot index and counters in step).
    pub(super) async fn add_in(&self, txn: &Transaction<'_>, locations: &[Location]) -> Result<()> {
        if locations.is_empty() {
            return Ok(());
        }
        let present = self.lock_chunk_rows(txn, locations).await?;
        if let Some(l) = locations
            .iter()
            .find(|l| present.binary_search_by_key(&l.chunk, |p| p.0).is_err())
        {
            return Err(Error::not_found(format!(
                "chunk {} has no record; cannot add a {} copy",
                l.chunk,
                l.tier.as_str()
            )));
        }
        let keys = LocationKeys::of(locations.iter());
        let chosen = || keys.source.iter().map(|&i| &locations[i]);
        let offsets: Vec<i64> = chosen()
            .map(|l| i64_of(l.offset, "location offset"))
            .collect::<Result<_>>()?;
        let lengths: Vec<i64> = chosen()
            .map(|l| i64_of(l.length, "location length"))
            .collect::<Result<_>>()?;
        let health: Vec<&str> = chosen().map(|l| l.health.as_str()).collect();
        let verified: Vec<Option<i64>> = chosen()
            .map(|l| opt_i64_of(l.last_verified_ms, "last_verified_ms"))
            .collect::<Result<_>>()?;
        let st = txn
            .prepare_cached(
                "INSERT INTO locations (chunk, tier, node, pack, \"offset\", length, health, last_verified_ms) \
                 SELECT * FROM UNNEST($1::bytea[], $2::text[], $3::text[], $4::text[], \
                                      $5::int8[], $6::int8[], $7::text[], $8::int8[]) \
                   AS t(chunk, tier, node, pack, off, len, health, verified) \
                 ORDER BY 1, 2, 3, 4 \
                 ON CONFLICT (chunk, tier, node, pack) DO UPDATE \
                 SET \"offset\" = EXCLUDED.\"offset\", length = EXCLUDED.length, \
                     health = EXCLUDED.health, last_verified_ms = EXCLUDED.last_verified_ms",
            )
            .await
            .map_err(self.err("prepare"))?;
        for start in (0..keys.len()).step_by(BATCH) {
            let r = start..(start + BATCH).min(keys.len());
            txn.execute(
                &st,
                &[
                    &&keys.chunk[r.clone()],
                    &&keys.tier[r.clone()],
                    &&keys.node[r.clone()],
                    &&keys.pack[r.clone()],
                    &&offsets[r.clone()],
                    &&lengths[r.clone()],
                    &&health[r.clone()],
                    &&verified[r],
                ],
            )
            .await
            .map_err(self.err("add copies"))?;
        }
        Ok(())
    }

    async fn remove_once(&self, locations: &[Location], reader: &str) -> Result<Vec<Location>> {
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(self.err("begin"))?;
        let removed = self.remove_in(&txn, locations, reader).await?;
        txn.commit().await.map_err(self.err("commit"))?;
        Ok(removed)
    }

    /// `remove_locations` inside `txn` (same rule, same locks); returns the copies
    /// removed.
    /// Every copy of `chunks` (which the caller has locked), locked for update.
    pub(super) async fn copies_in(
        &self,
        txn: &Transaction<'_>,
        chunks: &[ChunkId],
    ) -> Result<Vec<Location>> {
        let ids: Vec<&[u8]> = chunks.iter().map(|c| c.as_bytes().as_slice()).collect();
        let sql = format!(
            "SELECT {LOCATION_COLUMNS} FROM locations WHERE chunk = ANY($1::bytea[]) \
             ORDER BY chunk, tier, node, pack FOR UPDATE"
        );
        let st = txn
            .prepare_cached(&sql)
            .await
            .map_err(self.err("prepare"))?;
        let mut current = Vec::new();
        for batch in ids.chunks(BATCH) {
            for row in txn
                .query(&st, &[&batch])
                .await
                .map_err(self.err("read copies"))?
            {
                current.push(location_from_row(&row)?);
            }
        }
        Ok(current)
    }

    pub(super) async fn remove_in(
        &self,
        txn: &Transaction<'_>,
        locations: &[Location],
        reader: &str,
    ) -> Result<Vec<Location>> {
        if locations.is_empty() {
            return Ok(Vec::new());
        }
        let present = self.lock_chunk_rows(txn, locations).await?;
        let ids: Vec<ChunkId> = present.iter().map(|(c, _)| *c).collect();
        let current = self.copies_in(txn, &ids).await?;
        let referenced = |c: &ChunkId| {
            present
                .binary_search_by_key(c, |p| p.0)
                .is_ok_and(|i| present[i].1 > 0)
        };
        let removed = allowed_removals(locations, &current, reader, referenced);
        if !removed.is_empty() {
            let keys = LocationKeys::of(removed.iter());
            let st = txn
                .prepare_cached(
                    "DELETE FROM locations l \
                     USING UNNEST($1::bytea[], $2::text[], $3::text[], $4::text[]) AS k(chunk, tier, node, pack) \
                     WHERE l.chunk = k.chunk AND l.tier = k.tier AND l.node = k.node AND l.pack = k.pack",
                )
                .await
                .map_err(self.err("prepare"))?;
            for start in (0..keys.len()).step_by(BATCH) {
                let r = start..(start + BATCH).min(keys.len());
                txn.execute(
                    &st,
                    &[
                        &&keys.chunk[r.clone()],
                        &&keys.tier[r.clone()],
                        &&keys.node[r.clone()],
                        &&keys.pack[r],
                    ],
                )
                .await
                .map_err(self.err("remove copies"))?;
            }
        }
        Ok(removed)
    }

    /// `put_pack` inside `txn`. A new record counts the copies and live bytes already
    /// recorded in the pack (an index lookup); afterwards the triggers on `locations`
    /// keep both exact, so the record's own `live_bytes` is not written.
    pub(super) async fn put_pack_in(&self, txn: &Transaction<'_>, pack: &PackRecord) -> Result<()> {
        let st = txn
            .prepare_cached(
                "INSERT INTO packs (id, tier, storage_class, size, live_bytes, created_ms, \
                                    restore_state, restore_expiry_ms, class, min_keep_until_ms, \
                                    chunks) \
                 SELECT $1, $2, $3, $4, COALESCE(s.bytes, 0), $5, $6, $7, $8, $9, s.n \
                 FROM (SELECT count(*) AS n, sum(length) AS bytes FROM locations \
                       WHERE pack = $1 AND pack <> '') s \
                 ON CONFLICT (id) DO UPDATE SET tier = EXCLUDED.tier, \
                     storage_class = EXCLUDED.storage_class, size = EXCLUDED.size, \
                     created_ms = EXCLUDED.created_ms, \
                     restore_state = EXCLUDED.restore_state, \
                     restore_expiry_ms = EXCLUDED.restore_expiry_ms, class = EXCLUDED.class, \
                     min_keep_until_ms = EXCLUDED.min_keep_until_ms",
            )
            .await
            .map_err(self.err("prepare"))?;
        txn.execute(
            &st,
            &[
                &pack.id,
                &pack.tier.as_str(),
                &pack.storage_class.as_str(),
                &i64_of(pack.size, "pack size")?,
                &i64_of(pack.created_ms, "pack created_ms")?,
                &pack.restore.state.as_db(),
                &opt_i64_of(pack.restore.expiry_ms, "restore expiry")?,
                &pack.class,
                &opt_i64_of(pack.min_keep_until_ms, "pack min_keep_until_ms")?,
            ],
        )
        .await
        .map_err(self.err("record pack"))?;
        Ok(())
    }
}

/// Column list matching [`pack_from_row`].
pub(super) const PACK_COLUMNS: &str = "id, tier, storage_class, size, live_bytes, created_ms, \
     restore_state, restore_expiry_ms, class, min_keep_until_ms";

/// A row of [`PACK_COLUMNS`].
pub(super) fn pack_from_row(row: &tokio_postgres::Row) -> Result<PackRecord> {
    let tier: &str = col(row, 1)?;
    let class: &str = col(row, 2)?;
    let state: Option<&str> = col(row, 6)?;
    Ok(PackRecord {
        id: col(row, 0)?,
        tier: Tier::parse(tier)?,
        storage_class: class.parse()?,
        size: col_u64(row, 3, "pack size")?,
        live_bytes: col_u64(row, 4, "pack live bytes")?,
        created_ms: col_u64(row, 5, "pack created_ms")?,
        restore: PackRestore {
            state: RestoreState::from_db(state)?,
            expiry_ms: col_opt_u64(row, 7, "restore_expiry_ms")?,
        },
        class: col(row, 8)?,
        min_keep_until_ms: col_opt_u64(row, 9, "min_keep_until_ms")?,
    })
}

#[async_trait]
impl PlacementStore for PostgresMeta {
    async fn add_locations(&self, locations: &[Location]) -> Result<()> {
        if locations.is_empty() {
            return Ok(());
        }
        self.retrying("add copies", || self.add_once(locations))
            .await
    }

    async fn remove_locations(
        &self,
        locations: &[Location],
        reader: &str,
    ) -> Result<Vec<Location>> {
        if locations.is_empty() {
            return Ok(Vec::new());
        }
        self.retrying("remove copies", || self.remove_once(locations, reader))
            .await
    }

    async fn put_pack(&self, pack: &PackRecord) -> Result<()> {
        self.retrying("record pack", || async {
            let mut client = self.client().await?;
            let txn = client.transaction().await.map_err(self.err("begin"))?;
            self.put_pack_in(&txn, pack).await?;
            txn.commit().await.map_err(self.err("commit"))
        })
        .await
    }

    async fn pack(&self, id: &str) -> Result<Option<PackRecord>> {
        let client = self.client().await?;
        let sql = format!("SELECT {PACK_COLUMNS} FROM packs WHERE id = $1");
        let st = client
            .prepare_cached(&sql)
            .await
            .map_err(self.err("prepare"))?;
        let row = client
            .query_opt(&st, &[&id])
            .await
            .map_err(self.err("read pack"))?;
        row.as_ref().map(pack_from_row).transpose()
    }

    async fn set_pack_restore(
        &self,
        id: &str,
        expected: &PackRestore,
        new: &PackRestore,
    ) -> Result<bool> {
        let client = self.client().await?;
        let st = client
            .prepare_cached(
                "UPDATE packs SET restore_state = $4, restore_expiry_ms = $5 \
                 WHERE id = $1 AND restore_state IS NOT DISTINCT FROM $2 \
                   AND restore_expiry_ms IS NOT DISTINCT FROM $3",
            )
            .await
            .map_err(self.err("prepare"))?;
        let n = client
            .execute(
                &st,
                &[
                    &id,
                    &expected.state.as_db(),
                    &opt_i64_of(expected.expiry_ms, "restore expiry")?,
                    &new.state.as_db(),
                    &opt_i64_of(new.expiry_ms, "restore expiry")?,
                ],
            )
            .await
            .map_err(self.err("set pack restore state"))?;
        Ok(n == 1)
    }
}
