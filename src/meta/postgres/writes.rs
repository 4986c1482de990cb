//! Transactions that change reference counts and copies: commit, delete, GC, and the
//! verification and access bookkeeping.
//!
//! Lock order (docs/metadata.md): the blob row, then chunk rows in id order, then
//! location rows in identity order. Every transaction here takes the locks it needs in
//! that order (explicitly, with `SELECT ... ORDER BY ... FOR UPDATE`, or through an
//! `INSERT ... SELECT ... ORDER BY` that visits rows in order), so concurrent writers
//! wait for each other instead of deadlocking. The rare deadlock that remains possible
//! (e.g. against a hand-written statement) is retried with the whole transaction.

use std::collections::BTreeMap;

use deadpool_postgres::Transaction;

use super::reads::READABLE_SQL;
use super::rows::{
    blob_from_row, col, col_chunk_id, col_u64, i32_of, i64_of, opt_i64_of, pin_of, pin_weights,
    LocationKeys, BLOB_COLUMNS,
};
use super::{PostgresMeta, BATCH};
use crate::error::{Error, Result};
use crate::id::{BlobId, ChunkId};
use crate::meta::validate_commit;
use crate::model::{BlobCommit, CommitOutcome, VerifyRecord};

/// Lock chunk rows `$1` (sorted) in id order.
const LOCK_CHUNKS_SQL: &str =
    "SELECT id FROM chunks WHERE id = ANY($1::bytea[]) ORDER BY id FOR UPDATE";

/// Lock location rows with identities `$1..$4` in identity order.
const LOCK_LOCATIONS_SQL: &str = "SELECT 1 FROM locations l \
     JOIN UNNEST($1::bytea[], $2::text[], $3::text[], $4::text[]) AS k(chunk, tier, node, pack) \
       ON l.chunk = k.chunk AND l.tier = k.tier AND l.node = k.node AND l.pack = k.pack \
     ORDER BY l.chunk, l.tier, l.node, l.pack FOR UPDATE OF l";

/// What a commit sends, computed once (outside the retry loop).
struct CommitPlan<'a> {
    blob_id: &'a [u8],
    size: i64,
    chunk_count: i64,
    params: [i32; 3],
    created_ms: i64,
    class: &'a str,
    pin: Option<&'static str>,
    /// Pin count increments of every distinct chunk: `(hot, warm)`.
    pin_weights: (i64, i64),
    /// New hot copies `(node, chunk)`, indexed under the blob and its class.
    hot_nodes: Vec<&'a str>,
    hot_chunks: Vec<&'a [u8]>,
    /// Distinct chunks in id order, with their size and number of entries naming them.
    chunk_ids: Vec<&'a [u8]>,
    chunk_sizes: Vec<i64>,
    chunk_refs: Vec<i64>,
    /// The manifest, in offset order.
    offsets: Vec<i64>,
    lengths: Vec<i64>,
    entry_chunks: Vec<&'a [u8]>,
    /// New copies, in lock order, one per identity.
    loc_keys: LocationKeys<'a>,
    loc_offsets: Vec<i64>,
    loc_lengths: Vec<i64>,
    loc_health: Vec<&'static str>,
    loc_verified: Vec<Option<i64>>,
}

impl<'a> CommitPlan<'a> {
    fn new(c: &'a BlobCommit) -> Result<Self> {
        validate_commit(c)?;
        let mut per_chunk: BTreeMap<&'a ChunkId, (u32, i64)> = BTreeMap::new();
        for e in &c.entries {
            per_chunk.entry(&e.chunk).or_insert((e.length, 0)).1 += 1;
        }
        for l in &c.new_locations {
            if !per_chunk.contains_key(&&l.chunk) {
                return Err(Error::internal(format!(
                    "commit of blob {} brings a copy of chunk {} that its manifest does not use",
                    c.blob.id, l.chunk
                )));
            }
        }
        let loc_keys = LocationKeys::of(c.new_locations.iter());
        let chosen = || loc_keys.source.iter().map(|&i| &c.new_locations[i]);
        let loc_offsets = chosen()
            .map(|l| i64_of(l.offset, "location offset"))
            .collect::<Result<_>>()?;
        let loc_lengths = chosen()
            .map(|l| i64_of(l.length, "location length"))
            .collect::<Result<_>>()?;
        let loc_health = chosen().map(|l| l.health.as_str()).collect();
        let loc_verified = chosen()
            .map(|l| opt_i64_of(l.last_verified_ms, "last_verified_ms"))
            .collect::<Result<_>>()?;
        let p = c.blob.params;
        let (hot_nodes, hot_chunks) = loc_keys
            .source
            .iter()
            .map(|&i| &c.new_locations[i])
            .filter(|l| l.tier == crate::model::Tier::Hot)
            .map(|l| (l.node.as_str(), l.chunk.as_bytes().as_slice()))
            .unzip();
        Ok(CommitPlan {
            class: c.blob.class.as_str(),
            pin: pin_of(c.blob.pin)?,
            pin_weights: pin_weights(c.blob.pin),
            hot_nodes,
            hot_chunks,
            blob_id: c.blob.id.as_bytes().as_slice(),
            size: i64_of(c.blob.size, "blob size")?,
            chunk_count: i64_of(c.blob.chunk_count, "chunk count")?,
            params: [
                i32_of(p.min, "chunker min")?,
                i32_of(p.avg, "chunker avg")?,
                i32_of(p.max, "chunker max")?,
            ],
            created_ms: i64_of(c.blob.created_ms, "created_ms")?,
            chunk_ids: per_chunk.keys().map(|&k| k.as_bytes().as_slice()).collect(),
            chunk_sizes: per_chunk.values().map(|(len, _)| i64::from(*len)).collect(),
            chunk_refs: per_chunk.values().map(|(_, n)| *n).collect(),
            offsets: c
                .entries
                .iter()
                .map(|e| i64_of(e.offset, "offset"))
                .collect::<Result<_>>()?,
            lengths: c.entries.iter().map(|e| i64::from(e.length)).collect(),
            entry_chunks: c
                .entries
                .iter()
                .map(|e| e.chunk.as_bytes().as_slice())
                .collect(),
            loc_keys,
            loc_offsets,
            loc_lengths,
            loc_health,
            loc_verified,
        })
    }
}

/// The verification log rows of one `record_verification` call, as `UNNEST` arrays.
struct VerifyLog<'a> {
    chunk: Vec<&'a [u8]>,
    tier: Vec<&'static str>,
    node: Vec<&'a str>,
    pack: Vec<&'a str>,
    health: Vec<&'static str>,
    at: Vec<i64>,
    detail: Vec<&'a str>,
}

/// Outcome of one attempt at a commit: `None` asks for another attempt at once (the
/// blob that made it `AlreadyExists` was deleted before it could be read).
type Attempt = Option<CommitOutcome>;

impl PostgresMeta {
    pub(super) async fn commit_blob_impl(&self, commit: &BlobCommit) -> Result<CommitOutcome> {
        let plan = CommitPlan::new(commit)?;
        for _ in 0..super::ATTEMPTS {
            let attempt = self
                .retrying("commit", || self.commit_once(commit, &plan))
                .await?;
            if let Some(outcome) = attempt {
                return Ok(outcome);
            }
        }
        Err(Error::unavailable(format!(
            "postgres {}: commit of blob {} kept racing with its deletion",
            self.target, commit.blob.id
        )))
    }

    async fn commit_once(&self, commit: &BlobCommit, p: &CommitPlan<'_>) -> Result<Attempt> {
        let mut client = self.client().await?;
        let txn = client
            .transaction()
            .await
            .map_err(self.err("begin commit"))?;

        // 1. The blob row first: a concurrent commit of the same id waits here, and the
        //    loser sees a conflict and changes nothing.
        let st = txn
            .prepare_cached(
                "INSERT INTO blobs (id, size, chunk_count, chunker_min, chunker_avg, chunker_max, \
                                    created_ms, class, pin) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
            )
            .await
            .map_err(self.err("prepare"))?;
        let [min, avg, max] = &p.params;
        let inserted = txn
            .execute(
                &st,
                &[
                    &p.blob_id,
                    &p.size,
                    &p.chunk_count,
                    min,
                    avg,
                    max,
                    &p.created_ms,
                    &p.class,
                    &p.pin,
                ],
            )
            .await
            .map_err(self.err("insert blob"))?;
        if inserted == 0 {
            let sql = format!("SELECT {BLOB_COLUMNS} FROM blobs WHERE id = $1");
            let row = txn
                .query_opt(&sql, &[&p.blob_id])
                .await
                .map_err(self.err("read blob"))?;
            return Ok(match row {
                Some(row) => Some(CommitOutcome::AlreadyExists(blob_from_row(&row)?)),
                None => None,
            });
        }

        // 2. Chunk rows, in id order: insert or add the references (reviving chunks at
        //    zero). This locks every chunk the manifest uses until the end, so GC cannot
        //    remove a copy between the check below and the commit.
        let st = txn
            .prepare_cached(
                "INSERT INTO chunks (id, size, refcount, zero_since_ms, last_access_ms, access_count, \
                                     pin_hot, pin_warm) \
                 SELECT t.id, t.size, t.n, NULL, NULL, 0, $4, $5 \
                 FROM UNNEST($1::bytea[], $2::int8[], $3::int8[]) AS t(id, size, n) ORDER BY t.id \
                 ON CONFLICT (id) DO UPDATE \
                 SET refcount = chunks.refcount + EXCLUDED.refcount, zero_since_ms = NULL, \
                     pin_hot = chunks.pin_hot + EXCLUDED.pin_hot, \
                     pin_warm = chunks.pin_warm + EXCLUDED.pin_warm",
            )
            .await
            .map_err(self.err("prepare"))?;
        for start in (0..p.chunk_ids.len()).step_by(BATCH) {
            let r = start..(start + BATCH).min(p.chunk_ids.len());
            txn.execute(
                &st,
                &[
                    &&p.chunk_ids[r.clone()],
                    &&p.chunk_sizes[r.clone()],
                    &&p.chunk_refs[r],
                    &p.pin_weights.0,
                    &p.pin_weights.1,
                ],
            )
            .await
            .map_err(self.err("add chunk references"))?;
        }

        // 3. The copies this put wrote.
        if p.loc_keys.len() > 0 {
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
            let k = &p.loc_keys;
            for start in (0..k.len()).step_by(BATCH) {
                let r = start..(start + BATCH).min(k.len());
                txn.execute(
                    &st,
                    &[
                        &&k.chunk[r.clone()],
                        &&k.tier[r.clone()],
                        &&k.node[r.clone()],
                        &&k.pack[r.clone()],
                        &&p.loc_offsets[r.clone()],
                        &&p.loc_lengths[r.clone()],
                        &&p.loc_health[r.clone()],
                        &&p.loc_verified[r],
                    ],
                )
                .await
                .map_err(self.err("record new copies"))?;
            }
        }

        // 4. Every chunk must now have a healthy copy this node can read.
        let st = txn
            .prepare_cached(READABLE_SQL)
            .await
            .map_err(self.err("prepare"))?;
        let mut missing = Vec::new();
        for batch in p.chunk_ids.chunks(BATCH) {
            let rows = txn
                .query(&st, &[&batch, &commit.node])
                .await
                .map_err(self.err("check readable copies"))?;
            let mut readable = Vec::with_capacity(rows.len());
            for row in &rows {
                readable.push(col_chunk_id(row, 0)?);
            }
            readable.sort_unstable();
            for id in batch {
                let id = ChunkId::from_slice(id)?;
                if readable.binary_search(&id).is_err() {
                    missing.push(id);
                }
            }
        }
        if !missing.is_empty() {
            txn.rollback().await.map_err(self.err("roll back commit"))?;
            return Ok(Some(CommitOutcome::MissingChunks(missing)));
        }

        // 5. Index the new hot copies under this blob and its class (the copies'
        //    rows were made by the trigger on `locations`, with the chunks still locked).
        if !p.hot_chunks.is_empty() {
            let st = txn
                .prepare_cached(
                    "UPDATE hot_copies h SET class = $1, blob = $2 \
                     FROM UNNEST($3::text[], $4::bytea[]) AS t(node, chunk) \
                     WHERE h.node = t.node AND h.chunk = t.chunk",
                )
                .await
                .map_err(self.err("prepare"))?;
            for start in (0..p.hot_chunks.len()).step_by(BATCH) {
                let r = start..(start + BATCH).min(p.hot_chunks.len());
                txn.execute(
                    &st,
                    &[
                        &p.class,
                        &p.blob_id,
                        &&p.hot_nodes[r.clone()],
                        &&p.hot_chunks[r],
                    ],
                )
                .await
                .map_err(self.err("index new hot copies"))?;
            }
        }

        // 6. The manifest.
        let st = txn
            .prepare_cached(
                "INSERT INTO manifest_entries (blob, \"offset\", length, chunk) \
                 SELECT $1, t.off, t.len, t.chunk \
                 FROM UNNEST($2::int8[], $3::int8[], $4::bytea[]) AS t(off, len, chunk)",
            )
            .await
            .map_err(self.err("prepare"))?;
        for start in (0..p.offsets.len()).step_by(BATCH) {
            let r = start..(start + BATCH).min(p.offsets.len());
            txn.execute(
                &st,
                &[
                    &p.blob_id,
                    &&p.offsets[r.clone()],
                    &&p.lengths[r.clone()],
                    &&p.entry_chunks[r],
                ],
            )
            .await
            .map_err(self.err("insert manifest"))?;
        }

        txn.commit().await.map_err(self.err("commit"))?;
        Ok(Some(CommitOutcome::Committed))
    }

    pub(super) async fn delete_blob_impl(
        &self,
        id: &BlobId,
        now_ms: u64,
    ) -> Result<Option<Vec<ChunkId>>> {
        let now = i64_of(now_ms, "time")?;
        self.retrying("delete", || self.delete_once(id, now)).await
    }

    async fn delete_once(&self, id: &BlobId, now: i64) -> Result<Option<Vec<ChunkId>>> {
        let key = id.as_bytes().as_slice();
        let mut client = self.client().await?;
        let txn = client
            .transaction()
            .await
            .map_err(self.err("begin delete"))?;
        // The blob row first (same order as commit); a concurrent delete waits here.
        let Some(pin) = lock_blob_pin(self, &txn, id).await? else {
            return Ok(None);
        };
        let (pin_hot, pin_warm) = pin_weights(pin);
        // Drop the manifest, counting entries per chunk on the server.
        let st = txn
            .prepare_cached(
                "WITH d AS (DELETE FROM manifest_entries WHERE blob = $1 RETURNING chunk) \
                 SELECT chunk, count(*) FROM d GROUP BY chunk ORDER BY chunk",
            )
            .await
            .map_err(self.err("prepare"))?;
        let rows = txn
            .query(&st, &[&key])
            .await
            .map_err(self.err("delete manifest"))?;
        let mut ids: Vec<&[u8]> = Vec::with_capacity(rows.len());
        let mut counts: Vec<i64> = Vec::with_capacity(rows.len());
        for row in &rows {
            ids.push(col(row, 0)?);
            counts.push(col(row, 1)?);
        }
        lock_chunks(self, &txn, &ids).await?;
        let st = txn
            .prepare_cached(
                "UPDATE chunks c SET refcount = c.refcount - t.n, \
                     zero_since_ms = CASE WHEN c.refcount - t.n = 0 THEN $3 ELSE c.zero_since_ms END, \
                     pin_hot = c.pin_hot - $4, pin_warm = c.pin_warm - $5 \
                 FROM UNNEST($1::bytea[], $2::int8[]) AS t(id, n) \
                 WHERE c.id = t.id \
                 RETURNING c.id, c.refcount",
            )
            .await
            .map_err(self.err("prepare"))?;
        let mut zeroed = Vec::new();
        for start in (0..ids.len()).step_by(BATCH) {
            let r = start..(start + BATCH).min(ids.len());
            let rows = txn
                .query(
                    &st,
                    &[&&ids[r.clone()], &&counts[r], &now, &pin_hot, &pin_warm],
                )
                .await
                .map_err(self.err("drop chunk references"))?;
            for row in &rows {
                if col_u64(row, 1, "refcount")? == 0 {
                    zeroed.push(col_chunk_id(row, 0)?);
                }
            }
        }
        let st = txn
            .prepare_cached("DELETE FROM blobs WHERE id = $1")
            .await
            .map_err(self.err("prepare"))?;
        txn.execute(&st, &[&key])
            .await
            .map_err(self.err("delete blob"))?;
        txn.commit().await.map_err(self.err("commit"))?;
        zeroed.sort_unstable();
        Ok(Some(zeroed))
    }

    pub(super) async fn gc_remove_impl(&self, ids: &[ChunkId], node: &str) -> Result<Vec<ChunkId>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut sorted: Vec<&[u8]> = ids.iter().map(|i| i.as_bytes().as_slice()).collect();
        sorted.sort_unstable();
        sorted.dedup();
        self.retrying("gc", || self.gc_once(&sorted, node)).await
    }

    async fn gc_once(&self, ids: &[&[u8]], node: &str) -> Result<Vec<ChunkId>> {
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(self.err("begin gc"))?;
        // Lock the chunks still at zero, in id order; a commit reviving one either
        // finished before (so it is not at zero any more) or waits for us (and then
        // finds the copy gone and reports MissingChunks).
        let lock = txn
            .prepare_cached(
                "SELECT id FROM chunks WHERE id = ANY($1::bytea[]) AND refcount = 0 \
                 ORDER BY id FOR UPDATE",
            )
            .await
            .map_err(self.err("prepare"))?;
        let mut zero: Vec<&[u8]> = Vec::new();
        for batch in ids.chunks(BATCH) {
            let rows = txn
                .query(&lock, &[&batch])
                .await
                .map_err(self.err("lock gc chunks"))?;
            for row in &rows {
                let id: &[u8] = col(row, 0)?;
                if let Ok(pos) = batch.binary_search(&id) {
                    zero.push(batch[pos]);
                }
            }
        }
        if zero.is_empty() {
            return Ok(Vec::new());
        }
        let lock = txn
            .prepare_cached(
                "SELECT 1 FROM locations WHERE chunk = ANY($1::bytea[]) \
                 AND (tier <> 'hot' OR node = $2) ORDER BY chunk, tier, node, pack FOR UPDATE",
            )
            .await
            .map_err(self.err("prepare"))?;
        let remove = txn
            .prepare_cached(
                "DELETE FROM locations WHERE chunk = ANY($1::bytea[]) \
                 AND (tier <> 'hot' OR node = $2) RETURNING chunk, tier",
            )
            .await
            .map_err(self.err("prepare"))?;
        let forget = txn
            .prepare_cached(
                "DELETE FROM chunks c WHERE c.id = ANY($1::bytea[]) AND c.refcount = 0 \
                 AND NOT EXISTS (SELECT 1 FROM locations l WHERE l.chunk = c.id)",
            )
            .await
            .map_err(self.err("prepare"))?;
        let mut removed = Vec::new();
        for batch in zero.chunks(BATCH) {
            txn.query(&lock, &[&batch, &node])
                .await
                .map_err(self.err("lock copies"))?;
            let rows = txn
                .query(&remove, &[&batch, &node])
                .await
                .map_err(self.err("remove copies"))?;
            for row in &rows {
                let tier: &str = col(row, 1)?;
                if tier == "hot" {
                    removed.push(col_chunk_id(row, 0)?);
                }
            }
            txn.execute(&forget, &[&batch])
                .await
                .map_err(self.err("remove chunk records"))?;
        }
        txn.commit().await.map_err(self.err("commit"))?;
        removed.sort_unstable();
        Ok(removed)
    }

    pub(super) async fn record_verification_impl(&self, results: &[VerifyRecord]) -> Result<()> {
        if results.is_empty() {
            return Ok(());
        }
        // The latest result per copy updates it; all go to the log.
        let keys = LocationKeys::of(results.iter().map(|r| &r.location));
        let health: Vec<&str> = keys
            .source
            .iter()
            .map(|&i| results[i].health.as_str())
            .collect();
        let at: Vec<i64> = keys
            .source
            .iter()
            .map(|&i| i64_of(results[i].at_ms, "verification time"))
            .collect::<Result<_>>()?;
        let log = VerifyLog {
            chunk: results
                .iter()
                .map(|r| r.location.chunk.as_bytes().as_slice())
                .collect(),
            tier: results.iter().map(|r| r.location.tier.as_str()).collect(),
            node: results.iter().map(|r| r.location.node.as_str()).collect(),
            pack: results.iter().map(|r| r.location.pack.as_str()).collect(),
            health: results.iter().map(|r| r.health.as_str()).collect(),
            at: results
                .iter()
                .map(|r| i64_of(r.at_ms, "verification time"))
                .collect::<Result<_>>()?,
            detail: results.iter().map(|r| r.detail.as_str()).collect(),
        };
        self.retrying("record verification", || {
            self.verify_once(&keys, &health, &at, &log)
        })
        .await
    }

    async fn verify_once(
        &self,
        keys: &LocationKeys<'_>,
        health: &[&str],
        at: &[i64],
        log: &VerifyLog<'_>,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(self.err("begin"))?;
        lock_locations(self, &txn, keys).await?;
        let update = txn
            .prepare_cached(
                "UPDATE locations l SET health = t.health, last_verified_ms = t.at \
                 FROM UNNEST($1::bytea[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[]) \
                   AS t(chunk, tier, node, pack, health, at) \
                 WHERE l.chunk = t.chunk AND l.tier = t.tier AND l.node = t.node AND l.pack = t.pack",
            )
            .await
            .map_err(self.err("prepare"))?;
        for start in (0..keys.len()).step_by(BATCH) {
            let r = start..(start + BATCH).min(keys.len());
            txn.execute(
                &update,
                &[
                    &&keys.chunk[r.clone()],
                    &&keys.tier[r.clone()],
                    &&keys.node[r.clone()],
                    &&keys.pack[r.clone()],
                    &&health[r.clone()],
                    &&at[r],
                ],
            )
            .await
            .map_err(self.err("update copy health"))?;
        }
        let append = txn
            .prepare_cached(
                "INSERT INTO verification_log (chunk, tier, node, pack, health, at_ms, detail) \
                 SELECT * FROM UNNEST($1::bytea[], $2::text[], $3::text[], $4::text[], \
                                      $5::text[], $6::int8[], $7::text[])",
            )
            .await
            .map_err(self.err("prepare"))?;
        for start in (0..log.chunk.len()).step_by(BATCH) {
            let r = start..(start + BATCH).min(log.chunk.len());
            txn.execute(
                &append,
                &[
                    &&log.chunk[r.clone()],
                    &&log.tier[r.clone()],
                    &&log.node[r.clone()],
                    &&log.pack[r.clone()],
                    &&log.health[r.clone()],
                    &&log.at[r.clone()],
                    &&log.detail[r],
                ],
            )
            .await
            .map_err(self.err("append verification log"))?;
        }
        txn.commit().await.map_err(self.err("commit"))
    }

    pub(super) async fn record_access_impl(&self, batch: &[(ChunkId, u64, u64)]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        // Fold duplicates: latest read time, summed counts; id order is the lock order.
        let mut folded: BTreeMap<ChunkId, (u64, u64)> = BTreeMap::new();
        for (id, last, n) in batch {
            let e = folded.entry(*id).or_insert((0, 0));
            e.0 = e.0.max(*last);
            e.1 = e.1.saturating_add(*n);
        }
        let ids: Vec<&[u8]> = folded.keys().map(|k| k.as_bytes().as_slice()).collect();
        let last: Vec<i64> = folded
            .values()
            .map(|(l, _)| i64_of(*l, "access time"))
            .collect::<Result<_>>()?;
        let reads: Vec<i64> = folded
            .values()
            .map(|(_, n)| i64::try_from(*n).unwrap_or(i64::MAX))
            .collect();
        self.retrying("record access", || self.access_once(&ids, &last, &reads))
            .await
    }

    async fn access_once(&self, ids: &[&[u8]], last: &[i64], reads: &[i64]) -> Result<()> {
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(self.err("begin"))?;
        lock_chunks(self, &txn, ids).await?;
        let st = txn
            .prepare_cached(
                "UPDATE chunks c SET last_access_ms = GREATEST(c.last_access_ms, t.last), \
                     access_count = c.access_count + t.n \
                 FROM UNNEST($1::bytea[], $2::int8[], $3::int8[]) AS t(id, last, n) \
                 WHERE c.id = t.id",
            )
            .await
            .map_err(self.err("prepare"))?;
        for start in (0..ids.len()).step_by(BATCH) {
            let r = start..(start + BATCH).min(ids.len());
            txn.execute(&st, &[&&ids[r.clone()], &&last[r.clone()], &&reads[r]])
                .await
                .map_err(self.err("record access"))?;
        }
        // The packs holding copies of these chunks (found through the locations' primary
        // key) were read then too: the archive worker's idle test. Pack rows come after
        // chunk rows in the lock order, and are locked in id order.
        let lock = txn
            .prepare_cached(
                "SELECT p.id FROM packs p WHERE p.id IN \
                   (SELECT l.pack FROM locations l WHERE l.chunk = ANY($1::bytea[]) AND l.pack <> '') \
                 ORDER BY p.id FOR UPDATE OF p",
            )
            .await
            .map_err(self.err("prepare"))?;
        let st = txn
            .prepare_cached(
                "UPDATE packs p SET last_read_ms = GREATEST(p.last_read_ms, s.last) \
                 FROM (SELECT l.pack, max(t.last) AS last \
                       FROM UNNEST($1::bytea[], $2::int8[]) AS t(id, last) \
                       JOIN locations l ON l.chunk = t.id AND l.pack <> '' \
                       GROUP BY l.pack) s \
                 WHERE p.id = s.pack",
            )
            .await
            .map_err(self.err("prepare"))?;
        for start in (0..ids.len()).step_by(BATCH) {
            let r = start..(start + BATCH).min(ids.len());
            txn.query(&lock, &[&&ids[r.clone()]])
                .await
                .map_err(self.err("lock packs"))?;
            txn.execute(&st, &[&&ids[r.clone()], &&last[r]])
                .await
                .map_err(self.err("record pack reads"))?;
        }
        txn.commit().await.map_err(self.err("commit"))
    }
}

/// Lock the chunk rows `ids` (sorted) in id order, batch by batch.
pub(super) async fn lock_chunks(
    meta: &PostgresMeta,
    txn: &Transaction<'_>,
    ids: &[&[u8]],
) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let st = txn
        .prepare_cached(LOCK_CHUNKS_SQL)
        .await
        .map_err(meta.err("prepare"))?;
    for batch in ids.chunks(BATCH) {
        txn.query(&st, &[&batch])
            .await
            .map_err(meta.err("lock chunks"))?;
    }
    Ok(())
}

/// Lock the location rows `keys` (in lock order) in identity order, batch by batch.
pub(super) async fn lock_locations(
    meta: &PostgresMeta,
    txn: &Transaction<'_>,
    keys: &LocationKeys<'_>,
) -> Result<()> {
    if keys.len() == 0 {
        return Ok(());
    }
    let st = txn
        .prepare_cached(LOCK_LOCATIONS_SQL)
        .await
        .map_err(meta.err("prepare"))?;
    for start in (0..keys.len()).step_by(BATCH) {
        let r = start..(start + BATCH).min(keys.len());
        txn.query(
            &st,
            &[
                &&keys.chunk[r.clone()],
                &&keys.tier[r.clone()],
                &&keys.node[r.clone()],
                &&keys.pack[r],
            ],
        )
        .await
        .map_err(meta.err("lock copies"))?;
    }
    Ok(())
}

/// Lock the row of blob `id` (`FOR UPDATE`: the first lock every writer of a blob
/// takes, so they queue here in one order) and read its pin; `None` when there is no
/// such blob.
pub(super) async fn lock_blob_pin(
    meta: &PostgresMeta,
    txn: &Transaction<'_>,
    id: &BlobId,
) -> Result<Option<Option<crate::model::Tier>>> {
    let st = txn
        .prepare_cached("SELECT pin FROM blobs WHERE id = $1 FOR UPDATE")
        .await
        .map_err(meta.err("prepare"))?;
    let Some(row) = txn
        .query_opt(&st, &[&id.as_bytes().as_slice()])
        .await
        .map_err(meta.err("lock blob"))?
    else {
        return Ok(None);
    };
    let pin: Option<&str> = col(&row, 0)?;
    Ok(Some(pin.map(crate::model::Tier::parse).transpose()?))
}
