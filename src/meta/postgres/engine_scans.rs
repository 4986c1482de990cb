//! The tiering engine's scans and reports on PostgreSQL: the hot index, archive
//! candidates, restore requests, usage and worker passes. Every scan is an index range
//! scan whose cost grows with the rows it returns (docs/metadata.md, "Tiering engine").

use std::collections::BTreeMap;

use super::placement::{pack_from_row, PACK_COLUMNS};
use super::rows::{
    col, col_blob_id, col_chunk_id, col_u64, i64_of, limit_of, location_from_row, LOCATION_COLUMNS,
};
use super::{PostgresMeta, BATCH};
use crate::error::Result;
use crate::id::ChunkId;
use crate::meta::engine::*;
use crate::meta::placement::PackRecord;
use crate::model::Location;

/// Least recently read first over every class: the index `hot_copies_lru`.
const HOT_LRU_SQL: &str = "SELECT chunk, length, placed_ms, last_read_ms, class, blob \
     FROM hot_copies WHERE node = $1 AND last_read_ms <= $2 \
       AND (last_read_ms, chunk) > ($3, $4) \
     ORDER BY last_read_ms, chunk LIMIT $5";

/// Least recently read first within one class: the index `hot_copies_class_lru`.
const HOT_CLASS_SQL: &str = "SELECT chunk, length, placed_ms, last_read_ms, class, blob \
     FROM hot_copies WHERE node = $1 AND class = $6 AND last_read_ms <= $2 \
       AND (last_read_ms, chunk) > ($3, $4) \
     ORDER BY last_read_ms, chunk LIMIT $5";

/// Idle warm packs of one class: a range scan of `packs_archive` on the idle time, then
/// the (few) rows found sorted by name for the cursor.
const ARCHIVE_SQL: &str = "SELECT id, tier, storage_class, size, live_bytes, created_ms, \
       restore_state, restore_expiry_ms, class, min_keep_until_ms, \
       GREATEST(created_ms, COALESCE(last_read_ms, 0)) \
     FROM packs WHERE tier = 'warm' AND class = $1 \
       AND GREATEST(created_ms, COALESCE(last_read_ms, 0)) <= $2 AND id COLLATE \"C\" > $3 \
     ORDER BY id COLLATE \"C\" LIMIT $4";

/// The engine's scans as `(name, SQL)`, for tests that check their plans with `EXPLAIN`
/// against a populated database (parameters as in the methods above).
#[doc(hidden)]
pub fn scan_statements() -> Vec<(&'static str, &'static str)> {
    vec![
        ("hot_copies least recently read", HOT_LRU_SQL),
        ("hot_copies of a class", HOT_CLASS_SQL),
        ("archive_candidates", ARCHIVE_SQL),
    ]
}

impl PostgresMeta {
    pub(super) async fn hot_copies_impl(
        &self,
        node: &str,
        order: &HotOrder,
        read_before_ms: u64,
        after: Option<HotCursor>,
        limit: usize,
    ) -> Result<Vec<HotCopy>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let before = i64::try_from(read_before_ms).unwrap_or(i64::MAX);
        // No cursor: a position before every copy (times are never negative).
        let (after_ms, after_chunk): (i64, &[u8]) = match &after {
            Some(c) => (
                i64::try_from(c.last_read_ms).unwrap_or(i64::MAX),
                c.chunk.as_bytes().as_slice(),
            ),
            None => (-1, &[]),
        };
        let client = self.client().await?;
        let rows = match order {
            HotOrder::LeastRecentlyRead => {
                let st = client
                    .prepare_cached(HOT_LRU_SQL)
                    .await
                    .map_err(self.err("prepare"))?;
                client
                    .query(
                        &st,
                        &[&node, &before, &after_ms, &after_chunk, &limit_of(limit)],
                    )
                    .await
            }
            HotOrder::Class(class) => {
                let st = client
                    .prepare_cached(HOT_CLASS_SQL)
                    .await
                    .map_err(self.err("prepare"))?;
                client
                    .query(
                        &st,
                        &[
                            &node,
                            &before,
                            &after_ms,
                            &after_chunk,
                            &limit_of(limit),
                            class,
                        ],
                    )
                    .await
            }
        }
        .map_err(self.err("scan hot copies"))?;
        rows.iter()
            .map(|r| {
                let blob = match col::<Option<&[u8]>>(r, 5)? {
                    Some(_) => Some(col_blob_id(r, 5)?),
                    None => None,
                };
                Ok(HotCopy {
                    chunk: col_chunk_id(r, 0)?,
                    length: col_u64(r, 1, "hot copy length")?,
                    placed_ms: col_u64(r, 2, "placed_ms")?,
                    last_read_ms: col_u64(r, 3, "last_read_ms")?,
                    class: col(r, 4)?,
                    blob,
                })
            })
            .collect()
    }

    pub(super) async fn hot_bytes_impl(&self, node: &str) -> Result<u64> {
        let client = self.client().await?;
        let st = client
            .prepare_cached("SELECT bytes FROM node_hot_bytes WHERE node = $1")
            .await
            .map_err(self.err("prepare"))?;
        match client
            .query_opt(&st, &[&node])
            .await
            .map_err(self.err("read hot bytes"))?
        {
            Some(row) => col_u64(&row, 0, "hot bytes"),
            None => Ok(0),
        }
    }

    pub(super) async fn touch_hot_impl(&self, node: &str, reads: &[(ChunkId, u64)]) -> Result<()> {
        if reads.is_empty() {
            return Ok(());
        }
        // Latest read per chunk, in chunk order (the order the rows are locked in).
        let mut folded: BTreeMap<ChunkId, u64> = BTreeMap::new();
        for (c, ms) in reads {
            let e = folded.entry(*c).or_insert(0);
            *e = (*e).max(*ms);
        }
        let chunks: Vec<&[u8]> = folded.keys().map(|c| c.as_bytes().as_slice()).collect();
        let times: Vec<i64> = folded
            .values()
            .map(|ms| i64_of(*ms, "read time"))
            .collect::<Result<_>>()?;
        self.retrying("touch hot copies", || async {
            let mut client = self.client().await?;
            let txn = client.transaction().await.map_err(self.err("begin"))?;
            let lock = txn
                .prepare_cached(
                    "SELECT 1 FROM hot_copies WHERE node = $1 AND chunk = ANY($2::bytea[]) \
                     ORDER BY chunk FOR UPDATE",
                )
                .await
                .map_err(self.err("prepare"))?;
            let st = txn
                .prepare_cached(
                    "UPDATE hot_copies h SET last_read_ms = GREATEST(h.last_read_ms, t.ms) \
                     FROM UNNEST($2::bytea[], $3::int8[]) AS t(chunk, ms) \
                     WHERE h.node = $1 AND h.chunk = t.chunk AND h.last_read_ms < t.ms",
                )
                .await
                .map_err(self.err("prepare"))?;
            for start in (0..chunks.len()).step_by(BATCH) {
                let r = start..(start + BATCH).min(chunks.len());
                txn.query(&lock, &[&node, &&chunks[r.clone()]])
                    .await
                    .map_err(self.err("lock hot copies"))?;
                txn.execute(&st, &[&node, &&chunks[r.clone()], &&times[r]])
                    .await
                    .map_err(self.err("touch hot copies"))?;
            }
            txn.commit().await.map_err(self.err("commit"))
        })
        .await
    }

    pub(super) async fn archive_candidates_impl(
        &self,
        class: &str,
        read_before_ms: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ArchiveCandidate>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let before = i64::try_from(read_before_ms).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let st = client
            .prepare_cached(ARCHIVE_SQL)
            .await
            .map_err(self.err("prepare"))?;
        let rows = client
            .query(
                &st,
                &[&class, &before, &after.unwrap_or(""), &limit_of(limit)],
            )
            .await
            .map_err(self.err("list archive candidates"))?;
        rows.iter()
            .map(|r| {
                Ok(ArchiveCandidate {
                    pack: pack_from_row(r)?,
                    last_read_ms: col_u64(r, 10, "pack last read")?,
                })
            })
            .collect()
    }

    pub(super) async fn pack_locations_impl(&self, name: &str) -> Result<Vec<Location>> {
        if name.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        // `pack <> ''` lets the planner use the partial index `locations_pack`.
        let sql = format!(
            "SELECT {LOCATION_COLUMNS} FROM locations WHERE pack = $1 AND pack <> '' \
             ORDER BY \"offset\", chunk, tier, node"
        );
        let st = client
            .prepare_cached(&sql)
            .await
            .map_err(self.err("prepare"))?;
        let rows = client
            .query(&st, &[&name])
            .await
            .map_err(self.err("read pack copies"))?;
        rows.iter().map(location_from_row).collect()
    }

    /// See [`EngineStore::dead_packs`]: the copy count kept by the location triggers
    /// says which packs no copy names.
    pub(super) async fn dead_packs_impl(
        &self,
        created_before_ms: u64,
        now_ms: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PackRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (before, now) = (i64_of(created_before_ms, "cutoff")?, i64_of(now_ms, "now")?);
        let client = self.client().await?;
        let sql = format!(
            "SELECT {PACK_COLUMNS} FROM packs WHERE {DEAD_PACK} \
             AND id COLLATE \"C\" > $3 ORDER BY id COLLATE \"C\" LIMIT $4"
        );
        let st = client
            .prepare_cached(&sql)
            .await
            .map_err(self.err("prepare"))?;
        let rows = client
            .query(
                &st,
                &[&before, &now, &after.unwrap_or(""), &limit_of(limit)],
            )
            .await
            .map_err(self.err("list dead packs"))?;
        rows.iter().map(pack_from_row).collect()
    }

    /// See [`EngineStore::sparse_packs`]: the live bytes and copy count kept by the
    /// location triggers. Packs are few (hundreds of chunks each): a scan of their
    /// table is cheap beside the rewrite it leads to.
    pub(super) async fn sparse_packs_impl(
        &self,
        max_live_fraction: f64,
        created_before_ms: u64,
        now_ms: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PackRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (before, now) = (i64_of(created_before_ms, "cutoff")?, i64_of(now_ms, "now")?);
        let client = self.client().await?;
        let sql = format!(
            "SELECT {PACK_COLUMNS} FROM packs WHERE chunks > 0 \
             AND live_bytes::float8 < size::float8 * $1 AND created_ms <= $2 \
             AND (min_keep_until_ms IS NULL OR min_keep_until_ms <= $3) \
             AND id COLLATE \"C\" > $4 ORDER BY id COLLATE \"C\" LIMIT $5"
        );
        let st = client
            .prepare_cached(&sql)
            .await
            .map_err(self.err("prepare"))?;
        let rows = client
            .query(
                &st,
                &[
                    &max_live_fraction,
                    &before,
                    &now,
                    &after.unwrap_or(""),
                    &limit_of(limit),
                ],
            )
            .await
            .map_err(self.err("list sparse packs"))?;
        rows.iter().map(pack_from_row).collect()
    }

    /// See [`EngineStore::delete_dead_pack`]. The row lock of the DELETE orders it with
    /// the location triggers, which update the pack's copy count in the transaction
    /// that adds a copy: a copy committed first keeps the pack.
    pub(super) async fn delete_dead_pack_impl(
        &self,
        name: &str,
        created_before_ms: u64,
        now_ms: u64,
    ) -> Result<bool> {
        let (before, now) = (i64_of(created_before_ms, "cutoff")?, i64_of(now_ms, "now")?);
        let client = self.client().await?;
        let sql = format!("DELETE FROM packs WHERE id = $3 AND {DEAD_PACK}");
        let st = client
            .prepare_cached(&sql)
            .await
            .map_err(self.err("prepare"))?;
        let n = client
            .execute(&st, &[&before, &now, &name])
            .await
            .map_err(self.err("delete dead pack"))?;
        Ok(n == 1)
    }

    pub(super) async fn restore_requests_impl(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PackRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let sql = format!(
            "SELECT {PACK_COLUMNS} FROM packs WHERE restore_state = 'requested' \
             AND id COLLATE \"C\" > $1 ORDER BY id COLLATE \"C\" LIMIT $2"
        );
        let st = client
            .prepare_cached(&sql)
            .await
            .map_err(self.err("prepare"))?;
        let rows = client
            .query(&st, &[&after.unwrap_or(""), &limit_of(limit)])
            .await
            .map_err(self.err("list restore requests"))?;
        rows.iter().map(pack_from_row).collect()
    }

    pub(super) async fn usage_impl(&self) -> Result<StoreUsage> {
        let client = self.client().await?;
        // One snapshot: the counters and the pack records, never the locations.
        let rows = client
            .query(
                "SELECT 'node', node, bytes, copies, 0::int8 FROM node_hot_bytes \
                   WHERE copies <> 0 OR bytes <> 0 \
                 UNION ALL \
                 SELECT 'tier', tier, COALESCE(sum(size), 0)::int8, \
                        COALESCE(sum(chunks), 0)::int8, count(*) \
                   FROM packs GROUP BY tier",
                &[],
            )
            .await
            .map_err(self.err("read usage"))?;
        let mut usage = StoreUsage::default();
        for r in &rows {
            let kind: &str = col(r, 0)?;
            let name: String = col(r, 1)?;
            let u = TierUsage {
                bytes: col_u64(r, 2, "bytes")?,
                chunks: col_u64(r, 3, "copies")?,
                objects: col_u64(r, 4, "objects")?,
            };
            match (kind, name.as_str()) {
                ("node", _) => {
                    usage.hot.bytes += u.bytes;
                    usage.hot.chunks += u.chunks;
                    usage.hot_by_node.push((name, u));
                }
                (_, "warm") => usage.warm = u,
                (_, "cold") => usage.cold = u,
                _ => {}
            }
        }
        usage.hot_by_node.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(usage)
    }

    pub(super) async fn record_pass_impl(&self, pass: &PassRecord) -> Result<()> {
        let client = self.client().await?;
        let st = client
            .prepare_cached(
                "INSERT INTO worker_passes (node, worker, started_ms, duration_ms, error, \
                                            chunks, bytes) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (node, worker) DO UPDATE SET started_ms = EXCLUDED.started_ms, \
                     duration_ms = EXCLUDED.duration_ms, error = EXCLUDED.error, \
                     chunks = EXCLUDED.chunks, bytes = EXCLUDED.bytes",
            )
            .await
            .map_err(self.err("prepare"))?;
        client
            .execute(
                &st,
                &[
                    &pass.node,
                    &pass.worker,
                    &i64_of(pass.started_ms, "pass start")?,
                    &i64_of(pass.duration_ms, "pass duration")?,
                    &pass.error,
                    &i64_of(pass.chunks, "pass chunks")?,
                    &i64_of(pass.bytes, "pass bytes")?,
                ],
            )
            .await
            .map_err(self.err("record pass"))?;
        Ok(())
    }

    pub(super) async fn passes_impl(&self) -> Result<Vec<PassRecord>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT node, worker, started_ms, duration_ms, error, chunks, bytes \
                 FROM worker_passes ORDER BY node COLLATE \"C\", worker COLLATE \"C\"",
                &[],
            )
            .await
            .map_err(self.err("read passes"))?;
        rows.iter()
            .map(|r| {
                Ok(PassRecord {
                    node: col(r, 0)?,
                    worker: col(r, 1)?,
                    started_ms: col_u64(r, 2, "pass start")?,
                    duration_ms: col_u64(r, 3, "pass duration")?,
                    error: col(r, 4)?,
                    chunks: col_u64(r, 5, "pass chunks")?,
                    bytes: col_u64(r, 6, "pass bytes")?,
                })
            })
            .collect()
    }
}

/// A pack no copy names, older than $1 (ms) and past its minimum storage duration at $2.
const DEAD_PACK: &str = "chunks = 0 AND created_ms <= $1 \
     AND (min_keep_until_ms IS NULL OR min_keep_until_ms <= $2)";
