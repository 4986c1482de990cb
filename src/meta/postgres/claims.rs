//! Claiming locations for background work (docs/metadata.md, "Claims").
//!
//! One `UPDATE ... FROM (SELECT ... ORDER BY ... LIMIT n FOR UPDATE SKIP LOCKED)`
//! statement picks unclaimed (or lapsed, or already ours) rows, skipping rows another
//! claimer has locked at that instant, and stamps them with the claiming node and the
//! lease end. A row being claimed by another transaction is skipped, not waited for;
//! a row claimed by a transaction that has just committed is re-checked by PostgreSQL
//! against the condition (READ COMMITTED re-evaluation of locked rows), finds a live
//! lease and is left out. So a row is never handed to two nodes while its lease lasts.

use super::rows::{col_opt_u64, i64_of, limit_of, location_from_row, LocationKeys};
use super::writes::lock_locations;
use super::PostgresMeta;
use crate::error::Result;
use crate::model::{ClaimOrder, ClaimRequest, Location};

/// Claim by oldest verification (never-verified first): scrubbing. Served by the index
/// `locations_last_verified`.
const CLAIM_OLDEST_VERIFIED: &str = "UPDATE locations l SET claimed_by = $1, claim_until_ms = $2 \
     FROM (SELECT c.chunk, c.tier, c.node, c.pack, NULL::int8 AS rank_ms FROM locations c \
           WHERE (c.claim_until_ms IS NULL OR c.claim_until_ms <= $3 OR c.claimed_by = $1) \
             AND ($4::text IS NULL OR c.tier = $4::text) \
             AND (NOT $5::bool OR (c.tier = 'hot' AND c.node = $1)) \
             AND (NOT $7::bool OR c.tier <> 'hot' OR c.node = $1) \
           ORDER BY c.last_verified_ms ASC NULLS FIRST, c.chunk \
           LIMIT $6 \
           FOR UPDATE OF c SKIP LOCKED) s \
     WHERE l.chunk = s.chunk AND l.tier = s.tier AND l.node = s.node AND l.pack = s.pack \
     RETURNING l.chunk, l.tier, l.node, l.pack, l.\"offset\", l.length, l.health, \
               l.last_verified_ms, s.rank_ms";

/// Claim by least recent read of the chunk (never-read first): demotion.
const CLAIM_LEAST_RECENTLY_ACCESSED: &str =
    "UPDATE locations l SET claimed_by = $1, claim_until_ms = $2 \
     FROM (SELECT c.chunk, c.tier, c.node, c.pack, k.last_access_ms AS rank_ms \
           FROM locations c JOIN chunks k ON k.id = c.chunk \
           WHERE (c.claim_until_ms IS NULL OR c.claim_until_ms <= $3 OR c.claimed_by = $1) \
             AND ($4::text IS NULL OR c.tier = $4::text) \
             AND (NOT $5::bool OR (c.tier = 'hot' AND c.node = $1)) \
             AND (NOT $7::bool OR c.tier <> 'hot' OR c.node = $1) \
           ORDER BY k.last_access_ms ASC NULLS FIRST, c.chunk \
           LIMIT $6 \
           FOR UPDATE OF c SKIP LOCKED) s \
     WHERE l.chunk = s.chunk AND l.tier = s.tier AND l.node = s.node AND l.pack = s.pack \
     RETURNING l.chunk, l.tier, l.node, l.pack, l.\"offset\", l.length, l.health, \
               l.last_verified_ms, s.rank_ms";

impl PostgresMeta {
    pub(super) async fn claim_locations_impl(&self, req: &ClaimRequest) -> Result<Vec<Location>> {
        if req.limit == 0 {
            return Ok(Vec::new());
        }
        let now = i64_of(req.now_ms, "claim time")?;
        let until = i64_of(req.now_ms.saturating_add(req.lease_ms), "lease end")?;
        let tier: Option<&str> = req.tier.map(|t| t.as_str());
        let sql = match req.order {
            ClaimOrder::OldestVerified => CLAIM_OLDEST_VERIFIED,
            ClaimOrder::LeastRecentlyAccessed => CLAIM_LEAST_RECENTLY_ACCESSED,
        };
        let client = self.client().await?;
        let st = client
            .prepare_cached(sql)
            .await
            .map_err(self.err("prepare"))?;
        // A single statement: its own transaction, nothing to retry (SKIP LOCKED never
        // waits, so it cannot deadlock).
        let rows = client
            .query(
                &st,
                &[
                    &req.node,
                    &until,
                    &now,
                    &tier,
                    &req.own_hot_only,
                    &limit_of(req.limit),
                    &req.readable_only,
                ],
            )
            .await
            .map_err(self.err("claim locations"))?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let rank = match req.order {
                ClaimOrder::OldestVerified => None,
                ClaimOrder::LeastRecentlyAccessed => col_opt_u64(row, 8, "last_access_ms")?,
            };
            claimed.push((rank, location_from_row(row)?));
        }
        // RETURNING does not keep the sub-select's order: restore it.
        claimed.sort_by(|(ra, a), (rb, b)| match req.order {
            ClaimOrder::OldestVerified => {
                (a.last_verified_ms, a.chunk).cmp(&(b.last_verified_ms, b.chunk))
            }
            ClaimOrder::LeastRecentlyAccessed => (ra, a.chunk).cmp(&(rb, b.chunk)),
        });
        Ok(claimed.into_iter().map(|(_, l)| l).collect())
    }

    pub(super) async fn release_claims_impl(
        &self,
        node: &str,
        locations: &[Location],
    ) -> Result<()> {
        if locations.is_empty() {
            return Ok(());
        }
        let keys = LocationKeys::of(locations.iter());
        self.retrying("release claims", || self.release_once(node, &keys))
            .await
    }

    async fn release_once(&self, node: &str, keys: &LocationKeys<'_>) -> Result<()> {
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(self.err("begin"))?;
        lock_locations(self, &txn, keys).await?;
        let st = txn
            .prepare_cached(
                "UPDATE locations l SET claimed_by = NULL, claim_until_ms = NULL \
                 FROM UNNEST($1::bytea[], $2::text[], $3::text[], $4::text[]) AS k(chunk, tier, node, pack) \
                 WHERE l.chunk = k.chunk AND l.tier = k.tier AND l.node = k.node AND l.pack = k.pack \
                   AND l.claimed_by = $5",
            )
            .await
            .map_err(self.err("prepare"))?;
        for start in (0..keys.len()).step_by(super::BATCH) {
            let r = start..(start + super::BATCH).min(keys.len());
            txn.execute(
                &st,
                &[
                    &&keys.chunk[r.clone()],
                    &&keys.tier[r.clone()],
                    &&keys.node[r.clone()],
                    &&keys.pack[r],
                    &node,
                ],
            )
            .await
            .map_err(self.err("release claims"))?;
        }
        txn.commit().await.map_err(self.err("commit"))
    }
}
