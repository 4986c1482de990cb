//! Store identity (docs/tiers.md, "Store identity"): the metadata records a random store
//! id, and every object store of the warm and cold tiers holds the same id in its
//! [`IDENTITY_KEY`] object. A node checks both when it opens, so one whose
//! `[connections]` point at another bucket, prefix or server is refused before it reads
//! (or writes) anything there.

use bytes::Bytes;

use crate::error::{Error, ErrorKind, Result};
use crate::meta::{MetaStore, StoreId};
use crate::model::Tier;
use crate::object::{ObjectStore, StorageClass};
use crate::tier::{PackTier, Tiers};

/// Key of the identity object, below the object store's prefix (beside `warm/` and
/// `cold/`, never a pack name).
pub const IDENTITY_KEY: &str = "strata-store-id";

/// Check (and on first use write) the identity object of each object store of `tiers`
/// against the store id in `meta`.
///
/// An object store without the object is adopted (the object written) when the
/// metadata has just recorded its id (a new store, or the first open after an upgrade)
/// or records no pack of the tiers using it (a tier newly configured, or a crash before
/// the first open finished); otherwise it is not the store's bucket and the open is
/// refused. A store that cannot be asked now (an outage) is logged and passed: the
/// check runs again at the next open, and reads there never mark copies missing.
pub(super) async fn check(meta: &dyn MetaStore, tiers: &Tiers, node: &str) -> Result<()> {
    let id = meta.store_id(&new_store_id(node)).await?;
    // Warm and cold often share one bucket and prefix: one object for both.
    let mut groups: Vec<(String, Vec<&PackTier>)> = Vec::new();
    for t in [&tiers.warm, &tiers.cold] {
        let at = t.store().describe();
        match groups.iter_mut().find(|g| g.0 == at) {
            Some(g) => g.1.push(t),
            None => groups.push((at, vec![t])),
        }
    }
    for (at, group) in groups {
        let names: Vec<Tier> = group.iter().map(|t| t.tier()).collect();
        check_one(meta, &id, group[0].store().as_ref(), &at, &names).await?;
    }
    Ok(())
}

async fn check_one(
    meta: &dyn MetaStore,
    id: &StoreId,
    store: &dyn ObjectStore,
    at: &str,
    tiers: &[Tier],
) -> Result<()> {
    let sections = tiers
        .iter()
        .map(|t| format!("[tiers.{}]", t.as_str()))
        .collect::<Vec<_>>()
        .join(" and ");
    match store.get(IDENTITY_KEY).await {
        Ok(bytes) => {
            let found = String::from_utf8_lossy(&bytes).trim().to_string();
            if found == id.id {
                return Ok(());
            }
            Err(Error::invalid(format!(
                "{at} belongs to another strata store: its {IDENTITY_KEY} object says {found:?}, \
                 this store's metadata says {:?}. Check the bucket, prefix and endpoint of \
                 the connection {sections} use.",
                id.id
            )))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let mut has_packs = false;
            for t in tiers {
                has_packs |= meta.has_packs(*t).await?;
            }
            if has_packs && !id.created {
                return Err(Error::invalid(format!(
                    "{at} is not this store's bucket or prefix: it holds no {IDENTITY_KEY} \
                     object, while this store's metadata records packs of {sections} there. \
                     Check the bucket, prefix and endpoint of the connection {sections} use."
                )));
            }
            // Nodes adopting at once write the same bytes (the metadata decided the id).
            let body = Bytes::from(format!("{}\n", id.id));
            match store.put(IDENTITY_KEY, body, StorageClass::Standard).await {
                Ok(()) => {
                    tracing::info!(store = %at, id = %id.id, "wrote the store identity object");
                }
                Err(e) => {
                    tracing::warn!(store = %at, error = %e, "could not write the store identity object; the next open tries again");
                }
            }
            Ok(())
        }
        Err(e) => {
            tracing::warn!(store = %at, error = %e, "could not check the store identity object; the next open checks again");
            Ok(())
        }
    }
}

/// A fresh store id: `store-` and 32 hex digits, unique per data directory and moment.
fn new_store_id(node: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(node.as_bytes());
    h.update(&std::process::id().to_le_bytes());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.update(&nanos.to_le_bytes());
    format!("store-{}", &h.finalize().to_hex()[..32])
}
