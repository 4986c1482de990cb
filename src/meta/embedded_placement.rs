//! [`PlacementStore`] for [`EmbeddedMeta`]: a child module of `embedded`, so it shares
//! its write lock (every read-modify-write here holds it, which makes the checks and the
//! writes one atomic step) and its single-batch writes.
//!
//! Pack records live in the `packs` column family as JSON (`name → PackRecord`): they
//! are few and small, and JSON keeps them readable with `ldb`.

use async_trait::async_trait;
use rocksdb::WriteBatch;

use super::index::{HotInit, Tx};
use super::{lock, EmbeddedMeta, Inner};
use crate::error::{Error, Result};
use crate::meta::placement::{allowed_removals, PackRecord, PackRestore, PlacementStore};
use crate::meta::StoreId;
use crate::model::{Location, Tier};
use crate::rocks::{self, cf};

/// Key of the store id in the `system` column family.
const STORE_ID_KEY: &[u8] = b"store_id";

impl Inner {
    /// See [`MetaStore::store_id`](crate::meta::MetaStore::store_id).
    pub(super) fn store_id(&self, proposed: &str) -> Result<StoreId> {
        let _guard = lock(&self.write_lock);
        let sys = cf(&self.db, rocks::CF_SYSTEM)?;
        if let Some(v) = self.db.get_pinned_cf(sys, STORE_ID_KEY)? {
            let id = std::str::from_utf8(&v)
                .map_err(|_| Error::corrupt("embedded store id is not UTF-8"))?;
            return Ok(StoreId {
                id: id.to_string(),
                created: false,
            });
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(sys, STORE_ID_KEY, proposed.as_bytes());
        self.write(batch)?;
        Ok(StoreId {
            id: proposed.to_string(),
            created: true,
        })
    }

    /// Whether a pack of `tier` is recorded (pack names start with the tier's name).
    pub(super) fn has_packs(&self, tier: Tier) -> Result<bool> {
        let packs = cf(&self.db, rocks::CF_PACKS)?;
        let prefix = format!("{}/", tier.as_str());
        let mut it = self.db.raw_iterator_cf(packs);
        it.seek(prefix.as_bytes());
        if let Some(k) = it.key() {
            return Ok(k.starts_with(prefix.as_bytes()));
        }
        it.status()?;
        Ok(false)
    }

    pub(super) fn pack_record(&self, id: &str) -> Result<Option<PackRecord>> {
        let cf = cf(&self.db, rocks::CF_PACKS)?;
        match self.db.get_pinned_cf(cf, id.as_bytes())? {
            None => Ok(None),
            Some(v) => self.decode_pack(id.as_bytes(), &v).map(Some),
        }
    }

    /// A stored pack record, with `live_bytes` from the pack index's counter (exact:
    /// kept in the batch that adds or removes each copy) rather than the value written
    /// with the record.
    pub(super) fn decode_pack(&self, key: &[u8], value: &[u8]) -> Result<PackRecord> {
        let mut rec: PackRecord = serde_json::from_slice(value).map_err(|e| {
            Error::corrupt(format!(
                "embedded pack record {:?} is malformed",
                String::from_utf8_lossy(key)
            ))
            .with_source(e)
        })?;
        if let Some(live) = super::index::pack_stats(self, &rec.id)?.live_bytes {
            rec.live_bytes = live;
        }
        Ok(rec)
    }

    pub(super) fn put_pack_record(&self, batch: &mut WriteBatch, pack: &PackRecord) -> Result<()> {
        let value = serde_json::to_vec(pack)
            .map_err(|e| Error::internal("encoding a pack record").with_source(e))?;
        batch.put_cf(cf(&self.db, rocks::CF_PACKS)?, pack.id.as_bytes(), value);
        Ok(())
    }
}

#[async_trait]
impl PlacementStore for EmbeddedMeta {
    async fn add_locations(&self, locations: &[Location]) -> Result<()> {
        let locations = locations.to_vec();
        self.blocking(move |inner| {
            let _guard = lock(&inner.write_lock);
            let now = inner.clock.now_ms();
            let mut tx = Tx::new(inner);
            for l in &locations {
                if inner.chunk(&l.chunk)?.is_none() {
                    return Err(Error::not_found(format!(
                        "chunk {} has no record; cannot add a {} copy",
                        l.chunk,
                        l.tier.as_str()
                    )));
                }
                // A hot copy added outside a put or a promotion has no class or blob.
                let init = HotInit {
                    class: String::new(),
                    blob: None,
                    placed_ms: l.last_verified_ms.unwrap_or(now),
                    read_ms: None,
                };
                tx.put_location(l, &init)?;
            }
            tx.commit()
        })
        .await
    }

    async fn remove_locations(
        &self,
        locations: &[Location],
        reader: &str,
    ) -> Result<Vec<Location>> {
        let locations = locations.to_vec();
        let reader = reader.to_string();
        self.blocking(move |inner| {
            let _guard = lock(&inner.write_lock);
            let mut chunks: Vec<_> = locations.iter().map(|l| l.chunk).collect();
            chunks.sort_unstable();
            chunks.dedup();
            let mut current = Vec::new();
            let mut referenced = std::collections::HashSet::new();
            for c in &chunks {
                current.extend(inner.locations(c)?);
                if inner.chunk(c)?.is_some_and(|r| r.refcount > 0) {
                    referenced.insert(*c);
                }
            }
            let removed =
                allowed_removals(&locations, &current, &reader, |c| referenced.contains(c));
            let mut tx = Tx::new(inner);
            for l in &removed {
                tx.delete_location(l)?;
            }
            tx.commit()?;
            Ok(removed)
        })
        .await
    }

    async fn put_pack(&self, pack: &PackRecord) -> Result<()> {
        let pack = pack.clone();
        self.blocking(move |inner| {
            let _guard = lock(&inner.write_lock);
            let mut batch = WriteBatch::default();
            inner.put_pack_record(&mut batch, &pack)?;
            inner.write(batch)
        })
        .await
    }

    async fn pack(&self, id: &str) -> Result<Option<PackRecord>> {
        self.inner.pack_record(id)
    }

    async fn set_pack_restore(
        &self,
        id: &str,
        expected: &PackRestore,
        new: &PackRestore,
    ) -> Result<bool> {
        let (id, expected, new) = (id.to_string(), *expected, *new);
        self.blocking(move |inner| {
            let _guard = lock(&inner.write_lock);
            let Some(mut rec) = inner.pack_record(&id)? else {
                return Ok(false);
            };
            if rec.restore != expected {
                return Ok(false);
            }
            rec.restore = new;
            let mut batch = WriteBatch::default();
            inner.put_pack_record(&mut batch, &rec)?;
            inner.write(batch)?;
            Ok(true)
        })
        .await
    }
}
