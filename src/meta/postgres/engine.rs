//! [`EngineStore`] for [`PostgresMeta`] (docs/metadata.md, "Tiering engine"): leases on
//! the database clock, fenced placement commits and pins. The scans and reports are in
//! `engine_scans.rs`.
//!
//! - A lease is granted by one `INSERT ... ON CONFLICT DO UPDATE ... WHERE` statement
//!   whose times are all `clock_timestamp()`: of two nodes racing for a free lease, the
//!   second waits on the first's row and then re-checks the `WHERE` against it, so only
//!   one wins. Tokens come from one sequence, so they grow over every lease.
//! - `commit_placement` first locks the lease row `FOR SHARE` if it is still held with
//!   that token and unexpired: a takeover (which updates the row) waits until the commit
//!   is over, so the check holds for the whole transaction.
//! - The hot index and counters follow the location writes through the triggers of
//!   migration 4; `commit_placement` only adds the class, blob and read time.

use async_trait::async_trait;

use super::rows::{col_chunk_id, col_u64, i64_of, pin_of, pin_weights};
use super::{PostgresMeta, BATCH};
use crate::error::{Error, Result};
use crate::id::{BlobId, ChunkId};
use crate::meta::engine::*;
use crate::meta::placement::{moving_adds, PackRecord};
use crate::model::{Location, Tier};

/// Milliseconds since the epoch of a `timestamptz` expression, in SQL.
macro_rules! epoch_ms {
    ($e:literal) => {
        concat!("(extract(epoch FROM ", $e, ") * 1000)::int8")
    };
}

const ACQUIRE_SQL: &str = concat!(
    "INSERT INTO leases AS l (name, holder, token, until) \
     VALUES ($1, $2, nextval('lease_tokens'), clock_timestamp() + $3::int8 * interval '1 millisecond') \
     ON CONFLICT (name) DO UPDATE SET \
         holder = EXCLUDED.holder, \
         token = CASE WHEN l.holder = EXCLUDED.holder AND l.until > clock_timestamp() \
                      THEN l.token ELSE EXCLUDED.token END, \
         until = EXCLUDED.until \
     WHERE l.holder = EXCLUDED.holder OR l.until <= clock_timestamp() \
     RETURNING l.token, ",
    epoch_ms!("l.until")
);

impl PostgresMeta {
    async fn commit_placement_once(
        &self,
        fence: Option<&Fence>,
        change: &PlacementChange,
    ) -> Result<Vec<Location>> {
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(self.err("begin"))?;
        if let Some(f) = fence {
            let token = i64_of(f.token, "fencing token")?;
            let st = txn
                .prepare_cached(
                    "SELECT 1 FROM leases WHERE name = $1 AND holder = $2 AND token = $3 \
                     AND until > clock_timestamp() FOR SHARE",
                )
                .await
                .map_err(self.err("prepare"))?;
            let held = txn
                .query_opt(&st, &[&f.name, &f.holder, &token])
                .await
                .map_err(self.err("check lease"))?;
            if held.is_none() {
                txn.rollback().await.map_err(self.err("roll back"))?;
                return Err(Error::fenced(format!(
                    "lease {:?} is no longer held by {:?} with token {}: placement change refused",
                    f.name, f.holder, f.token
                )));
            }
        }
        // Lock order: chunk rows (of every copy added or removed), then pack rows, then
        // locations, then the counters (through the triggers).
        let all: Vec<Location> = change.add.iter().chain(&change.remove).cloned().collect();
        self.lock_chunk_rows(&txn, &all).await?;
        let mut packs: Vec<&PackRecord> = change.packs.iter().collect();
        packs.sort_by(|a, b| a.id.cmp(&b.id));
        for p in packs {
            self.put_pack_in(&txn, p).await?;
        }
        let moved;
        let add = if change.moves {
            let mut ids: Vec<ChunkId> = change.remove.iter().map(|l| l.chunk).collect();
            ids.sort_unstable();
            ids.dedup();
            let current = self.copies_in(&txn, &ids).await?;
            moved = moving_adds(&change.add, &change.remove, &current);
            &moved
        } else {
            &change.add
        };
        self.add_in(&txn, add).await?;
        let removed = self.remove_in(&txn, &change.remove, &change.node).await?;

        let mut hot: Vec<(&str, &[u8])> = add
            .iter()
            .filter(|l| l.tier == Tier::Hot)
            .map(|l| (l.node.as_str(), l.chunk.as_bytes().as_slice()))
            .collect();
        hot.sort_unstable();
        hot.dedup();
        if !hot.is_empty() {
            let (nodes, chunks): (Vec<&str>, Vec<&[u8]>) = hot.into_iter().unzip();
            let blob: Option<&[u8]> = change.hot_blob.as_ref().map(|b| b.as_bytes().as_slice());
            let read = change.read_ms.map(|r| i64_of(r, "read time")).transpose()?;
            let st = txn
                .prepare_cached(
                    "UPDATE hot_copies h SET class = $1, blob = $2, \
                         last_read_ms = COALESCE($3, h.last_read_ms) \
                     FROM UNNEST($4::text[], $5::bytea[]) AS t(node, chunk) \
                     WHERE h.node = t.node AND h.chunk = t.chunk",
                )
                .await
                .map_err(self.err("prepare"))?;
            for start in (0..chunks.len()).step_by(BATCH) {
                let r = start..(start + BATCH).min(chunks.len());
                txn.execute(
                    &st,
                    &[
                        &change.hot_class,
                        &blob,
                        &read,
                        &&nodes[r.clone()],
                        &&chunks[r],
                    ],
                )
                .await
                .map_err(self.err("index hot copies"))?;
            }
        }
        txn.commit().await.map_err(self.err("commit"))?;
        Ok(removed)
    }

    async fn set_pin_once(&self, blob: &BlobId, to: Option<Tier>) -> Result<bool> {
        let key = blob.as_bytes().as_slice();
        let new = pin_of(to)?;
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(self.err("begin"))?;
        let Some(old) = super::writes::lock_blob_pin(self, &txn, blob).await? else {
            return Ok(false);
        };
        let (oh, ow) = pin_weights(old);
        let (nh, nw) = pin_weights(to);
        let (dh, dw) = (nh - oh, nw - ow);
        if (dh, dw) != (0, 0) {
            // Every distinct chunk of the blob once, locked in id order after the blob.
            let st = txn
                .prepare_cached(
                    "SELECT id FROM chunks WHERE id IN \
                       (SELECT chunk FROM manifest_entries WHERE blob = $1) \
                     ORDER BY id FOR UPDATE",
                )
                .await
                .map_err(self.err("prepare"))?;
            txn.query(&st, &[&key])
                .await
                .map_err(self.err("lock chunks"))?;
            let st = txn
                .prepare_cached(
                    "UPDATE chunks SET pin_hot = pin_hot + $2, pin_warm = pin_warm + $3 \
                     WHERE id IN (SELECT chunk FROM manifest_entries WHERE blob = $1)",
                )
                .await
                .map_err(self.err("prepare"))?;
            txn.execute(&st, &[&key, &dh, &dw])
                .await
                .map_err(self.err("update pin counts"))?;
        }
        let st = txn
            .prepare_cached("UPDATE blobs SET pin = $2 WHERE id = $1")
            .await
            .map_err(self.err("prepare"))?;
        txn.execute(&st, &[&key, &new])
            .await
            .map_err(self.err("set pin"))?;
        txn.commit().await.map_err(self.err("commit"))?;
        Ok(true)
    }

    async fn pins_impl(&self, ids: &[ChunkId]) -> Result<Vec<(ChunkId, PinCounts)>> {
        let mut out = Vec::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let client = self.client().await?;
        let st = client
            .prepare_cached(
                "SELECT id, pin_hot, pin_warm FROM chunks WHERE id = ANY($1::bytea[]) \
                 AND (pin_hot > 0 OR pin_warm > 0) ORDER BY id",
            )
            .await
            .map_err(self.err("prepare"))?;
        for batch in ids.chunks(BATCH) {
            let keys: Vec<&[u8]> = batch.iter().map(|c| c.as_bytes().as_slice()).collect();
            for row in client
                .query(&st, &[&keys])
                .await
                .map_err(self.err("read pins"))?
            {
                out.push((
                    col_chunk_id(&row, 0)?,
                    PinCounts {
                        hot: col_u64(&row, 1, "pin_hot")?,
                        warm: col_u64(&row, 2, "pin_warm")?,
                    },
                ));
            }
        }
        out.sort_by_key(|(c, _)| *c);
        out.dedup_by_key(|(c, _)| *c);
        Ok(out)
    }
}

#[async_trait]
impl EngineStore for PostgresMeta {
    async fn db_now_ms(&self) -> Result<u64> {
        let client = self.client().await?;
        let row = client
            .query_one(concat!("SELECT ", epoch_ms!("clock_timestamp()")), &[])
            .await
            .map_err(self.err("read the database clock"))?;
        col_u64(&row, 0, "database clock")
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<Option<Lease>> {
        let ttl = i64_of(ttl_ms, "lease ttl")?;
        // One statement, its own transaction: nothing to retry, it cannot deadlock.
        let client = self.client().await?;
        let st = client
            .prepare_cached(ACQUIRE_SQL)
            .await
            .map_err(self.err("prepare"))?;
        let row = client
            .query_opt(&st, &[&name, &holder, &ttl])
            .await
            .map_err(self.err("acquire lease"))?;
        row.map(|row| {
            Ok(Lease {
                name: name.to_string(),
                holder: holder.to_string(),
                token: col_u64(&row, 0, "fencing token")?,
                until_ms: col_u64(&row, 1, "lease end")?,
            })
        })
        .transpose()
    }

    async fn live_leases(&self, prefix: &str) -> Result<Vec<Lease>> {
        let client = self.client().await?;
        let st = client
            .prepare_cached(concat!(
                "SELECT name, holder, token, ",
                epoch_ms!("until"),
                " FROM leases WHERE starts_with(name, $1) AND until > clock_timestamp() \
                 ORDER BY name"
            ))
            .await
            .map_err(self.err("prepare"))?;
        let rows = client
            .query(&st, &[&prefix])
            .await
            .map_err(self.err("list leases"))?;
        rows.iter()
            .map(|row| {
                Ok(Lease {
                    name: row.get(0),
                    holder: row.get(1),
                    token: col_u64(row, 2, "fencing token")?,
                    until_ms: col_u64(row, 3, "lease end")?,
                })
            })
            .collect()
    }

    async fn release_lease(&self, lease: &Lease) -> Result<()> {
        let token = i64_of(lease.token, "fencing token")?;
        let client = self.client().await?;
        let st = client
            .prepare_cached("DELETE FROM leases WHERE name = $1 AND holder = $2 AND token = $3")
            .await
            .map_err(self.err("prepare"))?;
        client
            .execute(&st, &[&lease.name, &lease.holder, &token])
            .await
            .map_err(self.err("release lease"))?;
        Ok(())
    }

    async fn commit_placement(
        &self,
        fence: Option<&Fence>,
        change: &PlacementChange,
    ) -> Result<Vec<Location>> {
        self.retrying("commit placement", || {
            self.commit_placement_once(fence, change)
        })
        .await
    }

    async fn hot_copies(
        &self,
        node: &str,
        order: &HotOrder,
        read_before_ms: u64,
        after: Option<HotCursor>,
        limit: usize,
    ) -> Result<Vec<HotCopy>> {
        self.hot_copies_impl(node, order, read_before_ms, after, limit)
            .await
    }

    async fn hot_bytes(&self, node: &str) -> Result<u64> {
        self.hot_bytes_impl(node).await
    }

    async fn touch_hot(&self, node: &str, reads: &[(ChunkId, u64)]) -> Result<()> {
        self.touch_hot_impl(node, reads).await
    }

    async fn pins(&self, ids: &[ChunkId]) -> Result<Vec<(ChunkId, PinCounts)>> {
        self.pins_impl(ids).await
    }

    async fn set_pin(&self, blob: &BlobId, to: Option<Tier>) -> Result<bool> {
        pin_of(to)?;
        self.retrying("set pin", || self.set_pin_once(blob, to))
            .await
    }

    async fn archive_candidates(
        &self,
        class: &str,
        read_before_ms: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ArchiveCandidate>> {
        self.archive_candidates_impl(class, read_before_ms, after, limit)
            .await
    }

    async fn pack_locations(&self, name: &str) -> Result<Vec<Location>> {
        self.pack_locations_impl(name).await
    }

    async fn dead_packs(
        &self,
        created_before_ms: u64,
        now_ms: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PackRecord>> {
        self.dead_packs_impl(created_before_ms, now_ms, after, limit)
            .await
    }

    async fn sparse_packs(
        &self,
        max_live_fraction: f64,
        created_before_ms: u64,
        now_ms: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PackRecord>> {
        self.sparse_packs_impl(max_live_fraction, created_before_ms, now_ms, after, limit)
            .await
    }

    async fn delete_dead_pack(
        &self,
        name: &str,
        created_before_ms: u64,
        now_ms: u64,
    ) -> Result<bool> {
        self.retrying("delete dead pack", || {
            self.delete_dead_pack_impl(name, created_before_ms, now_ms)
        })
        .await
    }

    async fn list_packs(&self, after: Option<&str>, limit: usize) -> Result<Vec<PackRecord>> {
        self.list_packs_impl(after, limit).await
    }

    async fn recount_pack_live_bytes(&self, name: &str) -> Result<Option<u64>> {
        self.retrying("recount pack live bytes", || {
            self.recount_pack_live_bytes_once(name)
        })
        .await
    }

    async fn restore_requests(&self, after: Option<&str>, limit: usize) -> Result<Vec<PackRecord>> {
        self.restore_requests_impl(after, limit).await
    }

    async fn usage(&self) -> Result<StoreUsage> {
        self.usage_impl().await
    }

    async fn record_pass(&self, pass: &PassRecord) -> Result<()> {
        self.record_pass_impl(pass).await
    }

    async fn passes(&self) -> Result<Vec<PassRecord>> {
        self.passes_impl().await
    }
}
