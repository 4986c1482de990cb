//! Building the packs a worker writes: zstd compression and BLAKE3 over pack-sized
//! buffers run on blocking threads, never on the async workers.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::pack::{BuiltPack, PackBuilder};
use crate::tier::{PackTier, WrittenPack};

/// Packs being filled for one tier and one policy class.
pub struct PackWriter {
    builder: Option<PackBuilder>,
    fresh: PackBuilder,
    class: String,
}

impl PackWriter {
    /// A writer of packs for `tier`, recorded with policy class `class`.
    pub fn new(tier: &PackTier, class: &str) -> Self {
        PackWriter {
            builder: Some(tier.builder()),
            fresh: tier.builder(),
            class: class.to_string(),
        }
    }

    /// The policy class its packs are recorded with.
    pub fn class(&self) -> &str {
        &self.class
    }

    /// Add chunks to verify (the builder checks each hash); returns the packs that
    /// filled up on the way, finished. Runs on a blocking thread.
    pub async fn add(&mut self, chunks: Vec<(ChunkId, Bytes)>) -> Result<Vec<BuiltPack>> {
        self.add_checked(chunks, true).await
    }

    /// [`Self::add`] of chunks the caller has just verified.
    pub async fn add_verified(&mut self, chunks: Vec<(ChunkId, Bytes)>) -> Result<Vec<BuiltPack>> {
        self.add_checked(chunks, false).await
    }

    async fn add_checked(
        &mut self,
        chunks: Vec<(ChunkId, Bytes)>,
        verify: bool,
    ) -> Result<Vec<BuiltPack>> {
        if chunks.is_empty() {
            return Ok(Vec::new());
        }
        let builder = self.take()?;
        let template = empty_like(&self.fresh);
        let (builder, full) = tokio::task::spawn_blocking(move || {
            let mut builder = builder;
            let mut full = Vec::new();
            for (id, bytes) in chunks {
                if verify {
                    builder.add(id, &bytes)?;
                } else {
                    builder.add_verified(id, &bytes)?;
                }
                if builder.is_full() {
                    let done = std::mem::replace(&mut builder, empty_like(&template));
                    full.push(done.finish()?);
                }
            }
            Ok::<_, Error>((builder, full))
        })
        .await??;
        self.builder = Some(builder);
        Ok(full)
    }

    /// Finish the pack being filled, if it holds anything. Runs on a blocking thread.
    pub async fn finish(&mut self) -> Result<Option<BuiltPack>> {
        let builder = self.take()?;
        self.builder = Some(empty_like(&self.fresh));
        if builder.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            tokio::task::spawn_blocking(move || builder.finish()).await??,
        ))
    }

    fn take(&mut self) -> Result<PackBuilder> {
        self.builder
            .take()
            .ok_or_else(|| Error::internal("pack writer used after a failed step"))
    }
}

/// Upload a finished pack to `tier` (one PUT, then a HEAD check) and record its class.
pub async fn upload(
    intents: &super::intent::PackIntents,
    tier: &PackTier,
    built: BuiltPack,
    class: &str,
    now_ms: u64,
) -> Result<WrittenPack> {
    let mut written = tier.upload(intents, built, now_ms).await?;
    written.record.class = class.to_string();
    Ok(written)
}

/// An empty builder with the same target size and compression as `b`.
fn empty_like(b: &PackBuilder) -> PackBuilder {
    b.empty_like()
}
