//! Puts of a blob that is already committed (`CommitOutcome::AlreadyExists`): what the
//! put wrote is recorded as copies of the stored blob's chunks, or deleted; the receipt
//! describes the stored blob (docs/design.md, invariant 2).

use super::put::{PutReceipt, Written};
use super::Store;
use crate::error::Result;
use crate::id::{BlobId, ChunkId};
use crate::model::{BlobRecord, ChunkerParams};
use crate::settings::Durability;

/// A put's receipt, and the chunks it wrote to hot that no metadata records (its blob
/// existed already): deleted once the put has released its registration.
pub(super) struct Committed {
    pub(super) receipt: PutReceipt,
    pub(super) discard: Vec<ChunkId>,
}

impl Store {
    /// For a `replicated` put that wrote chunks: the blob's record if it is already
    /// committed with other chunking parameters (checked before uploading a pack).
    pub(super) async fn existing_other_cut(
        &self,
        id: &BlobId,
        params: ChunkerParams,
        w: &Written,
    ) -> Result<Option<BlobRecord>> {
        if self.inner.settings.durability.mode != Durability::Replicated || w.locations.is_empty() {
            return Ok(None);
        }
        Ok(self
            .inner
            .meta
            .blob(id)
            .await?
            .filter(|b| b.params != params))
    }

    /// The outcome of a put whose blob was already committed: the receipt describes the
    /// stored blob (its chunk count, as `stat` gives it). `stored` is this put's receipt
    /// when the copies it wrote were recorded; otherwise nothing was stored and the
    /// chunks it wrote to hot are to be deleted.
    pub(super) fn existed(
        &self,
        existing: &BlobRecord,
        stored: Option<&PutReceipt>,
        discard: Vec<ChunkId>,
    ) -> Committed {
        let (new_chunks, new_bytes) = stored.map_or((0, 0), |r| (r.new_chunks, r.new_bytes));
        Committed {
            receipt: PutReceipt {
                id: existing.id,
                size: existing.size,
                chunks: existing.chunk_count,
                new_chunks,
                new_bytes,
                reused_bytes: existing.size - new_bytes.min(existing.size),
                existed: true,
            },
            discard,
        }
    }

    /// Delete chunks a put wrote to hot and did not record (see [`Committed`]), through
    /// the one rule of hot deletions (keeping any a concurrent put or promotion holds
    /// or recorded meanwhile). A failure leaves them to `gc`'s sweep of unconfirmed
    /// writes, and so do chunks another writer holds (their notes stay).
    pub(super) async fn discard_hot(&self, ids: Vec<ChunkId>) {
        if ids.is_empty() {
            return;
        }
        let swept = async {
            let done = self.delete_unrecorded_hot(&ids).await?;
            let held: std::collections::HashSet<ChunkId> = done.held.into_iter().collect();
            let settled = ids.iter().filter(|c| !held.contains(c)).copied().collect();
            self.inner.hot.confirm(settled).await
        };
        if let Err(e) = swept.await {
            tracing::warn!(error = %e, "could not delete the chunks of a put whose blob existed; gc will");
        }
    }
}
