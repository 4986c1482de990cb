//! The store id (`strata_store`, migration 3) and the pack check a node's identity check
//! needs (docs/tiers.md, "Store identity").

use super::rows::col;
use super::PostgresMeta;
use crate::error::Result;
use crate::meta::StoreId;
use crate::model::Tier;

impl PostgresMeta {
    /// Record `proposed` unless an id is recorded, then read the one in force: the first
    /// of several nodes opening a new store at once decides, the others read its id.
    pub(super) async fn store_id_once(&self, proposed: &str) -> Result<StoreId> {
        let client = self.client().await?;
        let inserted = client
            .execute(
                "INSERT INTO strata_store (id, created_ms) \
                 VALUES ($1, (extract(epoch FROM now()) * 1000)::int8) \
                 ON CONFLICT (singleton) DO NOTHING",
                &[&proposed],
            )
            .await
            .map_err(self.err("record the store id"))?;
        let row = client
            .query_one("SELECT id FROM strata_store", &[])
            .await
            .map_err(self.err("read the store id"))?;
        let id: String = col(&row, 0)?;
        Ok(StoreId {
            created: inserted == 1 && id == proposed,
            id,
        })
    }

    /// Whether any pack of `tier` is recorded.
    pub(super) async fn has_packs_impl(&self, tier: Tier) -> Result<bool> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM packs WHERE tier = $1)",
                &[&tier.as_str()],
            )
            .await
            .map_err(self.err("look for packs"))?;
        col(&row, 0)
    }
}
