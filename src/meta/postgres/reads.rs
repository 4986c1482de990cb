//! Read-only queries: single statements, so each sees one consistent snapshot.

use std::collections::{HashMap, HashSet};

use super::rows::{
    blob_from_row, chunk_from_row, col, col_chunk_id, col_u64, i64_of, limit_of, location_from_row,
    BLOB_COLUMNS, CHUNK_COLUMNS, LOCATION_COLUMNS,
};
use super::{PostgresMeta, BATCH};
use crate::error::Result;
use crate::id::{BlobId, ChunkId};
use crate::model::{
    BlobRecord, ChunkRecord, GcCandidate, Location, ManifestEntry, MetaStats, RefcountMismatch,
    Tier,
};

/// Chunks among `$1` with a healthy copy readable by node `$2` (shared tiers anywhere,
/// hot copies only on their own node). Shared by `readable_chunks` and the check inside
/// `commit_blob`.
pub(crate) const READABLE_SQL: &str = "SELECT DISTINCT l.chunk FROM locations l \
     WHERE l.chunk = ANY($1::bytea[]) AND l.health = 'ok' AND (l.tier <> 'hot' OR l.node = $2)";

impl PostgresMeta {
    pub(super) async fn readable_chunks_impl(
        &self,
        ids: &[ChunkId],
        node: &str,
    ) -> Result<HashSet<ChunkId>> {
        let mut out = HashSet::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let client = self.client().await?;
        let st = client
            .prepare_cached(READABLE_SQL)
            .await
            .map_err(self.err("prepare"))?;
        for batch in ids.chunks(BATCH) {
            let keys: Vec<&[u8]> = batch.iter().map(|c| c.as_bytes().as_slice()).collect();
            let rows = client
                .query(&st, &[&keys, &node])
                .await
                .map_err(self.err("readable chunks"))?;
            for row in &rows {
                out.insert(col_chunk_id(row, 0)?);
            }
        }
        Ok(out)
    }

    pub(super) async fn blob_impl(&self, id: &BlobId) -> Result<Option<BlobRecord>> {
        let client = self.client().await?;
        let sql = format!("SELECT {BLOB_COLUMNS} FROM blobs WHERE id = $1");
        let st = client
            .prepare_cached(&sql)
            .await
            .map_err(self.err("prepare"))?;
        let row = client
            .query_opt(&st, &[&id.as_bytes().as_slice()])
            .await
            .map_err(self.err("read blob"))?;
        row.as_ref().map(blob_from_row).transpose()
    }

    /// One statement: the entry containing `start` is found by a backward index probe
    /// (`max(offset) ... offset <= start`), then the range scan runs from it to `end`, so
    /// the cost grows with the range, not with the blob.
    pub(super) async fn manifest_range_impl(
        &self,
        id: &BlobId,
        start: u64,
        end: u64,
    ) -> Result<Vec<ManifestEntry>> {
        if start >= end || start > i64::MAX as u64 {
            return Ok(Vec::new());
        }
        let start = i64_of(start, "range start")?;
        let end = i64::try_from(end).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let st = client
            .prepare_cached(
                "SELECT e.\"offset\", e.length, e.chunk FROM manifest_entries e \
                 WHERE e.blob = $1 \
                   AND e.\"offset\" >= COALESCE((SELECT max(s.\"offset\") FROM manifest_entries s \
                                                  WHERE s.blob = $1 AND s.\"offset\" <= $2), 0) \
                   AND e.\"offset\" < $3 \
                   AND e.\"offset\" + e.length > $2 \
                 ORDER BY e.\"offset\"",
            )
            .await
            .map_err(self.err("prepare"))?;
        let rows = client
            .query(&st, &[&id.as_bytes().as_slice(), &start, &end])
            .await
            .map_err(self.err("read manifest range"))?;
        rows.iter()
            .map(|row| {
                let length = col_u64(row, 1, "entry length")?;
                Ok(ManifestEntry {
                    offset: col_u64(row, 0, "entry offset")?,
                    length: u32::try_from(length)
                        .map_err(|_| super::errors::bad_value("entry length", length))?,
                    chunk: col_chunk_id(row, 2)?,
                })
            })
            .collect()
    }

    pub(super) async fn list_blobs_impl(
        &self,
        after: Option<BlobId>,
        limit: usize,
    ) -> Result<Vec<BlobRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        // Every id is 32 bytes, so all are greater than the empty string.
        let sql = format!("SELECT {BLOB_COLUMNS} FROM blobs WHERE id > $1 ORDER BY id LIMIT $2");
        let st = client
            .prepare_cached(&sql)
            .await
            .map_err(self.err("prepare"))?;
        let after: &[u8] = after.as_ref().map_or(&[], |a| a.as_bytes().as_slice());
        let rows = client
            .query(&st, &[&after, &limit_of(limit)])
            .await
            .map_err(self.err("list blobs"))?;
        rows.iter().map(blob_from_row).collect()
    }

    pub(super) async fn chunk_impl(&self, id: &ChunkId) -> Result<Option<ChunkRecord>> {
        let client = self.client().await?;
        let sql = format!("SELECT {CHUNK_COLUMNS} FROM chunks WHERE id = $1");
        let st = client
            .prepare_cached(&sql)
            .await
            .map_err(self.err("prepare"))?;
        let row = client
            .query_opt(&st, &[&id.as_bytes().as_slice()])
            .await
            .map_err(self.err("read chunk"))?;
        row.as_ref().map(chunk_from_row).transpose()
    }

    pub(super) async fn list_chunks_impl(
        &self,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<ChunkRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let sql = format!("SELECT {CHUNK_COLUMNS} FROM chunks WHERE id > $1 ORDER BY id LIMIT $2");
        let st = client
            .prepare_cached(&sql)
            .await
            .map_err(self.err("prepare"))?;
        let after: &[u8] = after.as_ref().map_or(&[], |a| a.as_bytes().as_slice());
        let rows = client
            .query(&st, &[&after, &limit_of(limit)])
            .await
            .map_err(self.err("list chunks"))?;
        rows.iter().map(chunk_from_row).collect()
    }

    /// Copies of every chunk in `ids` (each id present in the map, possibly with no
    /// copies), hot first, then warm, then cold.
    pub(super) async fn locations_many_impl(
        &self,
        ids: &[ChunkId],
    ) -> Result<HashMap<ChunkId, Vec<Location>>> {
        let mut out: HashMap<ChunkId, Vec<Location>> =
            ids.iter().map(|id| (*id, Vec::new())).collect();
        if ids.is_empty() {
            return Ok(out);
        }
        let client = self.client().await?;
        let sql =
            format!("SELECT {LOCATION_COLUMNS} FROM locations WHERE chunk = ANY($1::bytea[])");
        let st = client
            .prepare_cached(&sql)
            .await
            .map_err(self.err("prepare"))?;
        for batch in ids.chunks(BATCH) {
            let keys: Vec<&[u8]> = batch.iter().map(|c| c.as_bytes().as_slice()).collect();
            let rows = client
                .query(&st, &[&keys])
                .await
                .map_err(self.err("read locations"))?;
            for row in &rows {
                let loc = location_from_row(row)?;
                out.entry(loc.chunk).or_default().push(loc);
            }
        }
        for locs in out.values_mut() {
            locs.sort_by(|a, b| {
                (tier_rank(a.tier), &a.node, &a.pack).cmp(&(tier_rank(b.tier), &b.node, &b.pack))
            });
        }
        Ok(out)
    }

    pub(super) async fn gc_candidates_impl(
        &self,
        zero_before_ms: u64,
        after: Option<GcCandidate>,
        limit: usize,
    ) -> Result<Vec<GcCandidate>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let before = i64::try_from(zero_before_ms).unwrap_or(i64::MAX);
        // The head of the queue sorts after every real position.
        let (after_ms, after_id): (i64, &[u8]) = match &after {
            Some(c) => (
                i64::try_from(c.zero_since_ms).unwrap_or(i64::MAX),
                c.chunk.as_bytes().as_slice(),
            ),
            None => (i64::MIN, &[]),
        };
        let client = self.client().await?;
        // A range scan of the partial index chunks_gc_queue (refcount = 0).
        let st = client
            .prepare_cached(
                "SELECT zero_since_ms, id FROM chunks \
                 WHERE refcount = 0 AND zero_since_ms <= $1 AND (zero_since_ms, id) > ($2, $3) \
                 ORDER BY zero_since_ms, id LIMIT $4",
            )
            .await
            .map_err(self.err("prepare"))?;
        let rows = client
            .query(&st, &[&before, &after_ms, &after_id, &limit_of(limit)])
            .await
            .map_err(self.err("list gc candidates"))?;
        rows.iter()
            .map(|r| {
                let since: i64 = r.try_get(0).map_err(self.err("read gc candidate"))?;
                Ok(GcCandidate {
                    zero_since_ms: u64::try_from(since).unwrap_or(0),
                    chunk: col_chunk_id(r, 1)?,
                })
            })
            .collect()
    }

    pub(super) async fn refcount_mismatches_impl(&self) -> Result<Vec<RefcountMismatch>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT COALESCE(c.id, m.chunk), COALESCE(c.refcount, 0), COALESCE(m.n, 0) \
                 FROM chunks c \
                 FULL OUTER JOIN (SELECT chunk, count(*) AS n FROM manifest_entries GROUP BY chunk) m \
                   ON m.chunk = c.id \
                 WHERE COALESCE(c.refcount, 0) <> COALESCE(m.n, 0) \
                 ORDER BY 1",
                &[],
            )
            .await
            .map_err(self.err("compare reference counts"))?;
        rows.iter()
            .map(|r| {
                Ok(RefcountMismatch {
                    chunk: col_chunk_id(r, 0)?,
                    stored: col_u64(r, 1, "refcount")?,
                    actual: col_u64(r, 2, "manifest entry count")?,
                })
            })
            .collect()
    }

    pub(super) async fn stats_impl(&self) -> Result<MetaStats> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT (SELECT COALESCE(max(version), 0) FROM strata_schema_version), \
                        (SELECT count(*) FROM blobs), \
                        (SELECT count(*) FROM manifest_entries), \
                        (SELECT count(*) FROM chunks), \
                        (SELECT count(*) FROM locations)",
                &[],
            )
            .await
            .map_err(self.err("count rows"))?;
        let version: i32 = col(&row, 0)?;
        Ok(MetaStats {
            schema_version: u32::try_from(version)
                .map_err(|_| super::errors::bad_value("schema version", version))?,
            blobs: col_u64(&row, 1, "count")?,
            manifest_entries: col_u64(&row, 2, "count")?,
            chunks: col_u64(&row, 3, "count")?,
            locations: col_u64(&row, 4, "count")?,
        })
    }
}

/// Hot, then warm, then cold: the order reads try copies in.
fn tier_rank(t: Tier) -> u8 {
    t.code()
}
