//! What `fsck` needs from PostgreSQL: the pack table in pages, a pack's `live_bytes`
//! recounted from its copies, and the repair of a reference count.

use super::placement::{pack_from_row, PACK_COLUMNS};
use super::rows::{col_u64, i64_of, limit_of};
use super::PostgresMeta;
use crate::error::Result;
use crate::meta::placement::PackRecord;
use crate::model::RefcountMismatch;

impl PostgresMeta {
    /// See [`EngineStore::list_packs`](crate::meta::EngineStore::list_packs).
    pub(super) async fn list_packs_impl(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PackRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        // Byte order (`COLLATE "C"`), as the embedded store and the object listings sort.
        let sql = format!(
            "SELECT {PACK_COLUMNS} FROM packs WHERE id COLLATE \"C\" > $1 \
             ORDER BY id COLLATE \"C\" LIMIT $2"
        );
        let st = client
            .prepare_cached(&sql)
            .await
            .map_err(self.err("prepare"))?;
        let rows = client
            .query(&st, &[&after.unwrap_or(""), &limit_of(limit)])
            .await
            .map_err(self.err("list packs"))?;
        rows.iter().map(pack_from_row).collect()
    }

    /// See [`EngineStore::recount_pack_live_bytes`](crate::meta::EngineStore::recount_pack_live_bytes).
    /// The pack row is locked first: every transaction that adds or removes a copy of
    /// the pack updates that row (the copy-count triggers), so the sum taken after the
    /// lock sees all of them committed or none.
    pub(super) async fn recount_pack_live_bytes_once(&self, name: &str) -> Result<Option<u64>> {
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(self.err("begin"))?;
        let found = txn
            .query_opt("SELECT 1 FROM packs WHERE id = $1 FOR UPDATE", &[&name])
            .await
            .map_err(self.err("lock pack"))?;
        if found.is_none() {
            return Ok(None);
        }
        let row = txn
            .query_one(
                "UPDATE packs SET live_bytes = \
                   (SELECT COALESCE(sum(length), 0)::int8 FROM locations \
                     WHERE pack = $1 AND pack <> '') \
                 WHERE id = $1 RETURNING live_bytes",
                &[&name],
            )
            .await
            .map_err(self.err("recount pack live bytes"))?;
        let live = col_u64(&row, 0, "pack live bytes")?;
        txn.commit().await.map_err(self.err("commit"))?;
        Ok(Some(live))
    }

    /// See [`MetaStore::repair_refcount`](crate::meta::MetaStore::repair_refcount).
    pub(super) async fn repair_refcount_once(
        &self,
        m: &RefcountMismatch,
        now_ms: u64,
    ) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE chunks SET refcount = $3::int8, \
                   zero_since_ms = CASE WHEN $3::int8 = 0 THEN COALESCE(zero_since_ms, $4::int8) END \
                 WHERE id = $1 AND refcount = $2",
                &[
                    &m.chunk.as_bytes().as_slice(),
                    &i64_of(m.stored, "reference count")?,
                    &i64_of(m.actual, "reference count")?,
                    &i64_of(now_ms, "now")?,
                ],
            )
            .await
            .map_err(self.err("repair reference count"))?;
        Ok(n == 1)
    }
}
