//! The warm and cold tiers (DESIGN §5): chunks packed into objects of an
//! [`ObjectStore`], written with one PUT per pack and read with ranged GETs that
//! coalesce neighbouring chunks of a pack.
//!
//! This module knows object stores and packs, not metadata: the store
//! (`src/store/tiering.rs`) decides what to move, commits locations and pack records,
//! and handles restores. See `docs/tiers.md`.

mod index;
mod read;
pub mod settings;
mod staging;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

pub use index::read_index;
pub use read::{decode_stored, ChunkRead};

use crate::clock::Clock;
use crate::engine::intent::{PackIntents, PackWrite};
use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::meta::placement::{PackRecord, PackRestore};
use crate::model::{Health, Location, Tier};
use crate::object::{
    LocalObjectStore, MeteredObjectStore, ObjectStore, RestoreStatus, S3ObjectStore, StorageClass,
};
use crate::pack::{BuiltPack, PackBuilder, PackId};
use crate::settings::{Connection, Settings};

/// The name of a pack of `tier`: its object key below the store's prefix and its id in
/// metadata (`warm/<64 hex>` or `cold/<64 hex>`). The one place pack keys come from.
/// The tier is part of the name because the same chunks packed the same way give the
/// same [`PackId`], and a warm and a cold object must never be confused.
pub fn pack_name(tier: Tier, id: &PackId) -> String {
    format!("{}/{}", tier.as_str(), id.to_hex())
}

/// The name a warm pack gets when it is archived whole: the same name under `cold/`, so
/// that two archive passes racing over the same warm pack (a lease taken over mid-pass)
/// write one cold object and record one copy of each chunk.
pub fn archived_name(warm: &str) -> Result<String> {
    match parse_pack_name(warm)? {
        (Tier::Warm, _) => Ok(format!("cold/{}", &warm["warm/".len()..])),
        _ => Err(Error::invalid(format!("{warm:?} is not a warm pack"))),
    }
}

/// Parse a pack name from metadata back into its tier and id. `Corrupt` for anything
/// [`pack_name`] cannot have produced, so no stored string ever becomes a key unchecked
/// (a name that parses is also the pack's object key).
pub fn parse_pack_name(name: &str) -> Result<(Tier, PackId)> {
    let bad = || Error::corrupt(format!("bad pack name {name:?} in metadata"));
    let (tier, hex) = name.split_once('/').ok_or_else(bad)?;
    let tier = match tier {
        "warm" => Tier::Warm,
        "cold" => Tier::Cold,
        _ => return Err(bad()),
    };
    let id: PackId = hex.parse().map_err(|_| bad())?;
    if pack_name(tier, &id) != name {
        return Err(bad());
    }
    Ok((tier, id))
}

/// A pack uploaded and verified, ready to be committed.
#[derive(Debug)]
pub struct WrittenPack {
    /// Its metadata record.
    pub record: PackRecord,
    /// One verified location per chunk in it.
    pub locations: Vec<Location>,
    /// The write intent taken before the upload: finish it once the commit naming the
    /// pack has landed (or failed).
    pub intent: PackWrite,
}

/// One warm or cold tier: an object store, a storage class and pack settings.
pub struct PackTier {
    tier: Tier,
    store: Arc<dyn ObjectStore>,
    class: StorageClass,
    pack_bytes: usize,
    zstd_level: i32,
}

impl PackTier {
    /// A tier writing packs of about `pack_bytes` in `class` to `store`.
    pub fn new(
        tier: Tier,
        store: Arc<dyn ObjectStore>,
        class: StorageClass,
        pack_bytes: usize,
        zstd_level: i32,
    ) -> Self {
        PackTier {
            tier,
            store,
            class,
            pack_bytes,
            zstd_level,
        }
    }

    /// The target size of its packs, in bytes.
    pub fn pack_bytes(&self) -> usize {
        self.pack_bytes
    }

    /// Which tier this is.
    pub fn tier(&self) -> Tier {
        self.tier
    }

    /// The object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The storage class new packs get.
    pub fn class(&self) -> StorageClass {
        self.class
    }

    /// An empty pack builder with this tier's target size and compression.
    pub fn builder(&self) -> PackBuilder {
        PackBuilder::new(self.pack_bytes, self.zstd_level)
    }

    /// Upload a finished pack (one PUT), verify it (one HEAD: the object exists with the
    /// expected size; the bytes were verified chunk by chunk when they were added to the
    /// builder and the pack is named by their hash), and describe what to commit.
    pub async fn upload(
        &self,
        intents: &PackIntents,
        built: BuiltPack,
        now_ms: u64,
    ) -> Result<WrittenPack> {
        let name = pack_name(self.tier, &built.id);
        let size = built.bytes.len() as u64;
        let intent = intents.begin_write(&name).await?;
        if let Err(e) = self.put_checked(&name, built.bytes, size).await {
            // Given up now, so that gc may collect what the PUT left without waiting
            // for the intent to lapse.
            intent.finish().await;
            return Err(e);
        }
        let locations = built
            .entries
            .iter()
            .map(|e| Location {
                chunk: e.chunk,
                tier: self.tier,
                node: String::new(),
                pack: name.clone(),
                offset: e.offset,
                length: u64::from(e.stored_len),
                health: Health::Ok,
                last_verified_ms: Some(now_ms),
            })
            .collect();
        let live_bytes = built.entries.iter().map(|e| u64::from(e.stored_len)).sum();
        let record = PackRecord {
            id: name,
            tier: self.tier,
            storage_class: self.class,
            size,
            live_bytes,
            created_ms: now_ms,
            restore: PackRestore::NONE,
            class: String::new(),
            // An archive class bills its minimum storage duration however early the
            // object goes: nothing deletes or rewrites it before then.
            min_keep_until_ms: match self.class.min_storage_days() {
                0 => None,
                days => Some(now_ms.saturating_add(days.saturating_mul(86_400_000))),
            },
        };
        Ok(WrittenPack {
            record,
            locations,
            intent,
        })
    }

    /// One PUT, then a HEAD: the object exists with the expected size.
    async fn put_checked(&self, name: &str, bytes: Bytes, size: u64) -> Result<()> {
        self.store.put(name, bytes, self.class).await?;
        let head = self.store.head(name).await?;
        if head.size != size {
            return Err(Error::corrupt(format!(
                "pack {name} in {}: {} bytes after upload, expected {size}",
                self.store.describe(),
                head.size
            )));
        }
        Ok(())
    }

    /// Pack `chunks` (bytes their caller has verified) into as many packs as the target
    /// size asks, off the async workers: compression and hashing are CPU work.
    pub async fn build_verified(&self, chunks: Vec<(ChunkId, Bytes)>) -> Result<Vec<BuiltPack>> {
        let template = self.builder();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let mut builder = template.empty_like();
            for (id, bytes) in &chunks {
                builder.add_verified(*id, bytes)?;
                if builder.is_full() {
                    let full = std::mem::replace(&mut builder, template.empty_like());
                    out.push(full.finish()?);
                }
            }
            if !builder.is_empty() {
                out.push(builder.finish()?);
            }
            Ok(out)
        })
        .await?
    }

    /// Ask for an archived pack to be restored for `days` days (one request).
    pub async fn restore(&self, name: &str, days: u32) -> Result<()> {
        parse_pack_name(name)?;
        self.store.restore(name, days).await
    }

    /// Whether a pack is readable now (one HEAD).
    pub async fn restore_status(&self, name: &str) -> Result<RestoreStatus> {
        parse_pack_name(name)?;
        self.store.restore_status(name).await
    }
}

/// Chunks one read fetches while concurrent reads of them wait (see
/// [`Tiers::claim_fetch`]).
pub struct FetchClaim<'a>(staging::Claim<'a>);

impl FetchClaim<'_> {
    /// The chunks this read is to fetch.
    pub fn ids(&self) -> &[ChunkId] {
        self.0.ids()
    }
}

/// The warm and cold tiers of a store, and how reads of them are coalesced.
pub struct Tiers {
    /// The warm tier.
    pub warm: PackTier,
    /// The cold tier.
    pub cold: PackTier,
    gap: u64,
    max_read: u64,
    staging: staging::Staging,
    inflight: staging::Inflight,
}

impl Tiers {
    /// The tiers `settings` describe; `warm` / `cold` replace the object stores (tests
    /// wrap them to count requests or inject outages). Local tiers live under the data
    /// directory unless a path is set; S3 tiers naming the same connection share a client.
    pub async fn build(
        settings: &Settings,
        warm: Option<Arc<dyn ObjectStore>>,
        cold: Option<Arc<dyn ObjectStore>>,
        clock: Arc<dyn Clock>,
    ) -> Result<Tiers> {
        let t = &settings.tiers;
        let (warm_store, warm) = make_tier(settings, Tier::Warm, warm, clock.clone()).await?;
        // Tiers naming the same s3 connection share one client.
        let cold = match cold {
            None if t.cold.use_ == t.warm.use_ && t.cold.use_ != "local" => Some(warm_store),
            other => other,
        };
        let (_, cold) = make_tier(settings, Tier::Cold, cold, clock).await?;
        // Room for a few prefetch windows, or the cache size if larger.
        let staged = usize::try_from(settings.cache.bytes)
            .unwrap_or(usize::MAX)
            .max(256 << 20);
        Ok(Tiers {
            warm,
            cold,
            gap: t.coalesce_gap_bytes,
            max_read: t.max_read_bytes.max(1),
            staging: staging::Staging::new(staged),
            inflight: staging::Inflight::default(),
        })
    }

    /// Hold verified chunk bytes fetched ahead of a read until the read takes them
    /// ([`Tiers::take_staged`]); false when the staging area is full.
    pub fn stage(&self, id: ChunkId, bytes: Bytes) -> bool {
        self.staging.put(id, bytes)
    }

    /// Claim the chunks of `wanted` no other read is fetching (the claim ends when
    /// dropped), after waiting for the fetches of the others to end.
    pub async fn claim_fetch(&self, wanted: &[ChunkId]) -> FetchClaim<'_> {
        let (claim, waits) = self.inflight.claim(wanted);
        staging::wait_all(waits).await;
        FetchClaim(claim)
    }

    /// Whether bytes are staged for `id`.
    pub fn is_staged(&self, id: &ChunkId) -> bool {
        self.staging.contains(id)
    }

    /// The bytes staged for `id`, removing them.
    pub fn take_staged(&self, id: &ChunkId) -> Option<Bytes> {
        self.staging.take(id)
    }

    /// The tier `tier` (`InvalidInput` for hot).
    pub fn get(&self, tier: Tier) -> Result<&PackTier> {
        match tier {
            Tier::Warm => Ok(&self.warm),
            Tier::Cold => Ok(&self.cold),
            Tier::Hot => Err(Error::invalid("the hot tier is not an object store")),
        }
    }
}

/// The object store and pack tier of `tier` as `settings` describe it, or on `given`.
async fn make_tier(
    settings: &Settings,
    tier: Tier,
    given: Option<Arc<dyn ObjectStore>>,
    clock: Arc<dyn Clock>,
) -> Result<(Arc<dyn ObjectStore>, PackTier)> {
    let cfg = settings.tiers.of(tier)?;
    let store: Arc<dyn ObjectStore> = match given {
        Some(s) => s,
        None if cfg.use_ == "local" => {
            let dir = cfg
                .path
                .clone()
                .unwrap_or_else(|| default_dir(&settings.data_dir, tier));
            let local = LocalObjectStore::new(dir, clock, cfg.restore_delay_ms)
                .with_fsync(settings.hot.sync);
            match local.remove_stale_temps().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    tier = tier.as_str(),
                    removed = n,
                    "removed temporary files of killed writers"
                ),
                Err(e) => {
                    tracing::warn!(tier = tier.as_str(), error = %e, "could not remove stale temporary files")
                }
            }
            Arc::new(local)
        }
        None => {
            let Some(Connection::S3(conn)) = settings.connections.get(&cfg.use_) else {
                return Err(Error::invalid(format!(
                    "tiers.{}.use names no s3 connection",
                    tier.as_str()
                )));
            };
            // One PUT per pack: parts larger than any pack (target + one chunk + index).
            let t = &settings.tiers;
            let part = t.warm.pack_bytes.max(t.cold.pack_bytes) + (32 << 20);
            Arc::new(S3ObjectStore::connect(conn).await?.with_part_size(part))
        }
    };
    // Counted per tier; the unwrapped store is what the cold tier may share, so that
    // its requests are counted as cold.
    let metered: Arc<dyn ObjectStore> =
        Arc::new(MeteredObjectStore::new(store.clone(), tier.as_str()));
    let pack_tier = PackTier::new(
        tier,
        metered,
        cfg.class(tier),
        cfg.pack_bytes,
        cfg.zstd_level,
    );
    Ok((store, pack_tier))
}

fn default_dir(data_dir: &Path, tier: Tier) -> std::path::PathBuf {
    data_dir.join("tiers").join(tier.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_names_round_trip_and_reject_anything_else() {
        let id = PackId::of(b"x");
        for tier in [Tier::Warm, Tier::Cold] {
            let name = pack_name(tier, &id);
            assert_eq!(parse_pack_name(&name).unwrap(), (tier, id));
            if tier == Tier::Warm {
                let cold = archived_name(&name).unwrap();
                assert_eq!(cold, pack_name(Tier::Cold, &id));
            } else {
                assert!(archived_name(&name).is_err());
            }
        }
        for bad in [
            "",
            "hot/ab",
            "warm/",
            "warm/../x",
            &format!("warm/{}", id.to_hex().to_uppercase()),
            &format!("warm/{}/x", id),
        ] {
            assert!(parse_pack_name(bad).is_err(), "{bad}");
        }
    }
}
