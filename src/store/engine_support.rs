//! What the tiering engine (`crate::engine`) uses of a store: pins, the hot tier, the
//! pack tiers and verified reads of shared copies. The engine decides what moves; the
//! store owns the bytes.

use std::sync::Arc;

use bytes::Bytes;

use super::Store;
use crate::error::{Error, Result};
use crate::hot::ChunkTier;
use crate::id::{BlobId, ChunkId};
use crate::model::{Location, Tier};
use crate::tier::Tiers;

impl Store {
    /// Pin a blob so the workers never demote its chunks below `to` (`Some(Hot)` or
    /// `Some(Warm)`), or unpin it (`None`). `NotFound` for an unknown blob,
    /// `InvalidInput` for a pin to cold (the lowest tier needs no pin).
    pub async fn pin(&self, id: &BlobId, to: Option<Tier>) -> Result<()> {
        self.check_open()?;
        if to == Some(Tier::Cold) {
            return Err(Error::invalid(
                "a blob can be pinned to hot or warm, not cold",
            ));
        }
        if !self.inner.meta.set_pin(id, to).await? {
            return Err(Error::not_found(format!("blob {id}")));
        }
        // The cached record carries the pin.
        self.inner.blobs.invalidate(id).await;
        Ok(())
    }

    /// `Closed` once the store is closed.
    pub(crate) fn check_usable(&self) -> Result<()> {
        self.check_open()
    }

    /// The clock this store runs on, in ms since the epoch.
    pub(crate) fn clock_ms(&self) -> u64 {
        self.now_ms()
    }

    /// This node's hot tier.
    pub(crate) fn hot_tier(&self) -> &Arc<dyn ChunkTier> {
        &self.inner.hot
    }

    /// The warm and cold tiers.
    pub(crate) fn pack_tiers(&self) -> &Tiers {
        &self.inner.tiers
    }

    /// Read chunks from the given warm or cold copies (each `(chunk, raw length,
    /// copies to try)`), verified; one result per input. An archived copy gets its one
    /// restore request, as a read's would.
    pub(crate) async fn read_copies(
        &self,
        wants: &[(ChunkId, Option<u32>, Vec<Location>)],
    ) -> Vec<Result<Bytes>> {
        self.read_shared(wants).await
    }
}
