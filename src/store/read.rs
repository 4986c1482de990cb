//! Reads (DESIGN §4): find the chunks covering a range by `(blob, offset)` search, fetch
//! them through the cache (concurrent readers of one chunk share one fetch), verify
//! every byte against its id, and slice.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};

use super::assemble::{slice_of, Assembly};
use super::{Store, MANIFEST_CACHE_MAX_ENTRIES};
use crate::error::{Error, ErrorKind, Result};
use crate::id::{BlobId, ChunkId};
use crate::model::{BlobRecord, Health, Location, ManifestEntry, Tier, VerifyRecord};

/// Chunks fetched concurrently by one read.
const READ_AHEAD: usize = 8;
/// Bytes of manifest looked up at a time by a stream.
const STREAM_WINDOW: u64 = 64 << 20;

impl Store {
    /// The whole blob.
    pub async fn get(&self, id: &BlobId) -> Result<Bytes> {
        self.check_open()?;
        let _fg = self.inner.foreground.begin();
        let rec = self.blob_record(id).await?;
        self.read_range(&rec, 0..rec.size).await
    }

    /// The bytes `range` (half-open) of the blob. `InvalidInput` if the range is reversed
    /// or reaches past the end; an empty range inside the blob gives empty bytes.
    pub async fn get_range(&self, id: &BlobId, range: Range<u64>) -> Result<Bytes> {
        self.check_open()?;
        let _fg = self.inner.foreground.begin();
        let rec = self.blob_record(id).await?;
        check_range(&rec, &range)?;
        self.read_range(&rec, range).await
    }

    /// The bytes `range` of the blob as a stream of pieces, with bounded memory
    /// (a window of manifest and a few chunks in flight). Errors on the blob or range
    /// are returned up front; errors on chunks arrive in the stream.
    pub async fn get_stream(
        &self,
        id: &BlobId,
        range: Range<u64>,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        self.check_open()?;
        let rec = self.blob_record(id).await?;
        check_range(&rec, &range)?;
        // A stream longer than one window passes through the chunk cache without
        // filling it: a one-pass read of a large blob would otherwise hold up to
        // `cache.bytes` of it (and evict everything else) for no later reader. Chunks
        // that repeat within a window still go through the cache, so each is fetched
        // once.
        let fill_cache = range.end - range.start <= STREAM_WINDOW;
        let this = self.clone();
        let windows = stream::try_unfold(range.start, move |pos| {
            let this = this.clone();
            let rec = rec.clone();
            let end = range.end;
            async move {
                if pos >= end {
                    return Ok(None);
                }
                let stop = end.min(pos.saturating_add(STREAM_WINDOW));
                let entries = this.entries(&rec, pos, stop).await?;
                this.prefetch(&entries, &mut |_, _| false).await;
                let mut seen = HashMap::with_capacity(entries.len());
                for e in &entries {
                    *seen.entry(e.chunk).or_insert(0u32) += 1;
                }
                let pieces: Vec<Result<(ManifestEntry, Range<usize>, bool)>> = entries
                    .into_iter()
                    .map(|e| {
                        let cache = fill_cache || seen.get(&e.chunk).is_some_and(|&n| n > 1);
                        Ok((e, slice_of(&e, pos, stop), cache))
                    })
                    .collect();
                Ok::<_, Error>(Some((stream::iter(pieces), stop)))
            }
        });
        let this = self.clone();
        let id = *id;
        // The stream is foreground work for as long as it lives.
        let fg = self.inner.foreground.begin();
        let out = windows
            .try_flatten()
            .map(move |piece| {
                let _ = &fg;
                let this = this.clone();
                async move {
                    let (e, sub, cache) = piece?;
                    let bytes = if cache {
                        this.chunk_bytes(&id, &e).await?
                    } else {
                        this.chunk_bytes_uncached(&id, &e).await?
                    };
                    Ok(bytes.slice(sub))
                }
            })
            .buffered(READ_AHEAD);
        Ok(out.boxed())
    }

    async fn read_range(&self, rec: &BlobRecord, range: Range<u64>) -> Result<Bytes> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let entries = self.entries(rec, range.start, range.end).await?;
        let (id, start, end) = (rec.id, range.start, range.end);
        // One chunk: nothing to fetch ahead or to assemble.
        if let [e] = entries[..] {
            return Ok(self
                .chunk_bytes(&id, &e)
                .await?
                .slice(slice_of(&e, start, end)));
        }
        // Chunks fetched from packs are copied into the output as they are verified;
        // the rest (cached, hot, or failed ahead) follow in order.
        let mut out = Assembly::new(entries.clone(), start, end);
        self.prefetch(&entries, &mut |chunk, bytes| out.offer(chunk, bytes))
            .await;
        // Owned futures (no borrows across awaits), so `get` stays `Send` and can be
        // spawned.
        let mut rest = stream::iter(out.remaining().into_iter().map(|(e, early)| {
            let this = self.clone();
            async move {
                match early {
                    Some(piece) => Ok::<_, Error>(piece),
                    None => Ok(this
                        .chunk_bytes(&id, &e)
                        .await?
                        .slice(slice_of(&e, start, end))),
                }
            }
        }))
        .buffered(READ_AHEAD);
        while let Some(piece) = rest.try_next().await? {
            out.push(&piece);
        }
        Ok(out.finish())
    }

    /// Manifest entries overlapping `start .. end`, from the manifest cache for small
    /// blobs, else one ranged metadata lookup.
    pub(crate) async fn entries(
        &self,
        rec: &BlobRecord,
        start: u64,
        end: u64,
    ) -> Result<Vec<ManifestEntry>> {
        if rec.chunk_count > MANIFEST_CACHE_MAX_ENTRIES {
            return self.inner.meta.manifest_range(&rec.id, start, end).await;
        }
        let meta = self.inner.meta.clone();
        let (id, size) = (rec.id, rec.size);
        let all = self
            .inner
            .manifests
            .try_get_with(rec.id, async move {
                meta.manifest_range(&id, 0, size).await.map(Arc::new)
            })
            .await
            .map_err(|e: Arc<Error>| Error::new(e.kind(), e.to_string()))?;
        let first = all.partition_point(|e| e.end() <= start);
        Ok(all[first..]
            .iter()
            .take_while(|e| e.offset < end)
            .copied()
            .collect())
    }

    /// A chunk's verified bytes: cache, else hot tier. Concurrent callers share a fetch.
    pub(super) async fn chunk_bytes(&self, blob: &BlobId, e: &ManifestEntry) -> Result<Bytes> {
        self.inner.access.record(e.chunk, self.now_ms());
        let this = self.clone();
        let (chunk, blob) = (e.chunk, *blob);
        // Set only by the fetch that fills the cache: a caller that waited on another
        // caller's fetch counts as a hit.
        let missed = Arc::new(AtomicBool::new(false));
        let miss = missed.clone();
        let got = self
            .inner
            .chunks
            .try_get_with(e.chunk, async move {
                miss.store(true, Ordering::Relaxed);
                this.fetch_verified(&chunk).await
            })
            .await;
        count_cache(!missed.load(Ordering::Relaxed));
        got.map_err(|err: Arc<Error>| {
            Error::new(
                err.kind(),
                format!(
                    "{} (chunk {} of blob {})",
                    err.context(),
                    chunk.short(),
                    blob.short()
                ),
            )
        })
    }

    /// [`Self::chunk_bytes`] for a chunk no later read is expected to want: taken from
    /// the cache when there, else read from the tiers without entering the cache.
    async fn chunk_bytes_uncached(&self, blob: &BlobId, e: &ManifestEntry) -> Result<Bytes> {
        self.inner.access.record(e.chunk, self.now_ms());
        if let Some(bytes) = self.inner.chunks.get(&e.chunk).await {
            count_cache(true);
            return Ok(bytes);
        }
        count_cache(false);
        self.fetch_verified(&e.chunk).await.map_err(|err| {
            Error::new(
                err.kind(),
                format!(
                    "{} (chunk {} of blob {})",
                    err.context(),
                    e.chunk.short(),
                    blob.short()
                ),
            )
        })
    }

    /// Read a chunk from the tiers, verifying it; marks bad copies in metadata.
    pub(super) async fn fetch_verified(&self, id: &ChunkId) -> Result<Bytes> {
        if let Some(bytes) = self.inner.tiers.take_staged(id) {
            return Ok(bytes); // fetched (and verified) by a coalesced read just before
        }
        if let Some(bytes) = self.inner.promotions.pending(id) {
            return Ok(bytes); // read (and verified) from warm or cold, on its way to hot
        }
        let now = self.now_ms();
        let corrupt_here = match self.inner.hot.get_verified(id).await {
            Ok(Some((bytes, true))) => return Ok(bytes),
            Ok(Some((_, false))) => {
                self.mark(id, Health::Corrupt, now, "hot copy does not match its hash")
                    .await;
                true
            }
            Ok(None) => false,
            // The tier's own checksums caught the damage (RocksDB: a blob or block
            // checksum mismatch): the same verdict as a hash mismatch, so the copy is no
            // longer trusted for dedup and the next put of this content rewrites it.
            Err(e) if e.kind() == ErrorKind::Corrupt => {
                self.mark(
                    id,
                    Health::Corrupt,
                    now,
                    &format!("hot copy unreadable: {e}"),
                )
                .await;
                true
            }
            Err(e) => return Err(e),
        };
        let locations = self.inner.meta.locations(id).await?;
        let node = &self.inner.node;
        if !corrupt_here && locations.iter().any(|l| l.is_hot_on(node)) {
            self.mark(id, Health::Missing, now, "hot copy not found")
                .await;
        }
        if let Some(bytes) = self.fetch_shared(id, &locations).await? {
            return Ok(bytes);
        }
        let elsewhere: Vec<&str> = locations
            .iter()
            .filter(|l| l.tier == Tier::Hot && l.node != *node && l.health == Health::Ok)
            .map(|l| l.node.as_str())
            .collect();
        if corrupt_here {
            Err(Error::corrupt(format!(
                "chunk {id}: the local copy does not match its hash"
            )))
        } else if !elsewhere.is_empty() {
            Err(Error::unavailable(format!(
                "chunk {id} is only in the hot tier of node(s) {}; it is not readable from {node}",
                elsewhere.join(", ")
            )))
        } else {
            Err(no_healthy_copy(id, &locations))
        }
    }

    /// Record the health of this node's hot copy. Failing to record must not hide the
    /// read error from the caller, so errors here are only logged.
    async fn mark(&self, id: &ChunkId, health: Health, now: u64, detail: &str) {
        let location = Location::hot(*id, &self.inner.node, 0, now);
        let rec = VerifyRecord {
            location,
            health,
            at_ms: now,
            detail: detail.to_string(),
        };
        if let Err(e) = self.inner.meta.record_verification(&[rec]).await {
            tracing::warn!(chunk = %id.short(), error = %e, "could not record chunk health");
        }
        tracing::error!(chunk = %id.short(), ?health, detail, "bad chunk copy");
    }
}

/// The error for a chunk none of whose recorded copies could be read: a copy found
/// corrupt (now or by an earlier read or verify) is named as such, so damage is not
/// reported as a loss.
fn no_healthy_copy(id: &ChunkId, locations: &[Location]) -> Error {
    let place = |l: &Location| match l.tier {
        Tier::Hot => format!("the hot tier of node {}", l.node),
        _ => format!("pack {}", l.pack),
    };
    let with = |h: Health| -> Vec<String> {
        locations
            .iter()
            .filter(|l| l.health == h)
            .map(place)
            .collect()
    };
    let (corrupt, missing) = (with(Health::Corrupt), with(Health::Missing));
    if corrupt.is_empty() {
        return Error::corrupt(format!("chunk {id} is missing from every tier"));
    }
    if missing.is_empty() {
        return Error::corrupt(format!(
            "chunk {id}: every copy is corrupt (corrupt in {})",
            corrupt.join(", ")
        ));
    }
    Error::corrupt(format!(
        "chunk {id} has no healthy copy: corrupt in {}; missing from {}",
        corrupt.join(", "),
        missing.join(", ")
    ))
}

fn check_range(rec: &BlobRecord, range: &Range<u64>) -> Result<()> {
    // First, so that a start past the end is named as such and not as a reversed range.
    if range.start > rec.size {
        return Err(Error::invalid(format!(
            "range {}..{} starts past the end of blob {} ({} bytes)",
            range.start, range.end, rec.id, rec.size
        )));
    }
    if range.start > range.end {
        return Err(Error::invalid(format!(
            "range {}..{} is reversed",
            range.start, range.end
        )));
    }
    if range.end > rec.size {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "range {}..{} reaches past the end of blob {} ({} bytes)",
                range.start, range.end, rec.id, rec.size
            ),
        ));
    }
    Ok(())
}

/// Count a chunk-cache lookup (`strata_cache_hits_total` / `strata_cache_misses_total`).
fn count_cache(hit: bool) {
    if hit {
        metrics::counter!("strata_cache_hits_total").increment(1);
    } else {
        metrics::counter!("strata_cache_misses_total").increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChunkerParams;

    #[test]
    #[allow(clippy::reversed_empty_ranges)]
    fn a_start_past_the_end_is_named_as_such() {
        let rec = BlobRecord {
            id: BlobId::of(b"x"),
            size: 5_000_000,
            chunk_count: 1,
            params: ChunkerParams::default(),
            created_ms: 0,
            class: String::new(),
            pin: None,
        };
        let e = check_range(&rec, &(6_000_000..5_000_000)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("starts past the end"), "{e}");
        let e = check_range(&rec, &(9..3)).unwrap_err();
        assert!(e.to_string().contains("reversed"), "{e}");
        let e = check_range(&rec, &(3..5_000_001)).unwrap_err();
        assert!(e.to_string().contains("reaches past the end"), "{e}");
        assert!(check_range(&rec, &(5_000_000..5_000_000)).is_ok());
    }
}
