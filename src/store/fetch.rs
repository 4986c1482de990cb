//! Reads that fall through to warm and cold packs (DESIGN §4–5): coalesced fetches
//! ahead of a read, each chunk's copies tried in order, bad copies marked, and what was
//! read offered for promotion into hot (written later, off the read path: `promote`).

use std::collections::{BTreeSet, HashSet};

use bytes::Bytes;
use futures::StreamExt;

use super::Store;
use crate::error::{Error, ErrorKind, Result};
use crate::id::ChunkId;
use crate::model::{Health, Location, ManifestEntry, Tier, VerifyRecord};
use crate::tier::ChunkRead;

/// Which error to report when a chunk's copies failed differently: the one that tells
/// the caller most about what to do (wait, retry, give up).
pub(super) fn rank(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::RestorePending => 4,
        ErrorKind::Unavailable => 3,
        ErrorKind::Corrupt => 2,
        ErrorKind::NotFound => 1,
        _ => 0,
    }
}

pub(super) fn keep_worst(slot: &mut Option<Error>, e: Error) {
    if slot
        .as_ref()
        .is_none_or(|cur| rank(e.kind()) > rank(cur.kind()))
    {
        *slot = Some(e);
    }
}

/// Shared-tier copies worth reading, in the order reads try them: warm, then cold.
pub(super) fn shared_candidates(locs: &[Location]) -> Vec<Location> {
    let mut c: Vec<Location> = locs
        .iter()
        .filter(|l| l.tier != Tier::Hot && l.health == Health::Ok)
        .cloned()
        .collect();
    c.sort_by_key(|l| l.tier.code());
    c
}

/// A shared copy's object not found by this node becomes `Unavailable`: one node's view
/// of a bucket does not prove a copy lost for every node.
fn not_found_here(e: Error, read: &ChunkRead) -> Error {
    if e.kind() != ErrorKind::NotFound {
        return e;
    }
    Error::unavailable(format!(
        "chunk {}: its {} pack {} was not found from this node ({e}); the copy stays recorded \
         (check this node's [tiers] and [connections] settings)",
        read.chunk.short(),
        read.location.tier.as_str(),
        read.location.pack
    ))
}

impl Store {
    /// Read chunks from their warm or cold copies, trying each chunk's copies in order.
    /// Copies that fail verification are marked `corrupt`; a pack object not found is
    /// `Unavailable` and not marked (a scrubber confirms a loss); an archived pack gets
    /// its one restore request. One result per input.
    pub(super) async fn read_shared(
        &self,
        wants: &[(ChunkId, Option<u32>, Vec<Location>)],
    ) -> Vec<Result<Bytes>> {
        self.read_shared_with(wants, &mut |_, _| {}).await
    }

    /// [`Self::read_shared`], also handing each chunk to `on_read` (with its index in
    /// `wants`) the moment it has been verified, while the other chunks are still
    /// arriving.
    pub(super) async fn read_shared_with(
        &self,
        wants: &[(ChunkId, Option<u32>, Vec<Location>)],
        on_read: &mut (dyn FnMut(usize, &Bytes) + Send),
    ) -> Vec<Result<Bytes>> {
        let cands: Vec<Vec<Location>> = wants.iter().map(|w| shared_candidates(&w.2)).collect();
        let mut out: Vec<Option<Bytes>> = vec![None; wants.len()];
        let mut errs: Vec<Option<Error>> = (0..wants.len()).map(|_| None).collect();
        for round in 0.. {
            let idx: Vec<usize> = (0..wants.len())
                .filter(|&i| out[i].is_none() && cands[i].len() > round)
                .collect();
            if idx.is_empty() {
                break;
            }
            let reads: Vec<ChunkRead> = idx
                .iter()
                .map(|&i| ChunkRead {
                    chunk: wants[i].0,
                    raw_len: wants[i].1,
                    location: cands[i][round].clone(),
                })
                .collect();
            let mut got = self.inner.tiers.read_stream(&reads);
            let mut marks = Vec::new();
            let mut restores = BTreeSet::new();
            while let Some((j, res)) = got.next().await {
                let (i, read) = (idx[j], &reads[j]);
                match res {
                    Ok(bytes) => {
                        on_read(i, &bytes);
                        out[i] = Some(bytes);
                    }
                    Err(e) => {
                        // A pack object this node cannot find is not marked missing: the
                        // copy is shared, and this node may be looking in the wrong place
                        // (docs/tiers.md, "Missing pack objects"). Here it is unavailable.
                        let e = not_found_here(e, read);
                        let health = match e.kind() {
                            ErrorKind::Corrupt => Some(Health::Corrupt),
                            _ => None,
                        };
                        if let Some(health) = health {
                            tracing::debug!(chunk = %read.chunk.short(), pack = %read.location.pack, ?health, error = %e, "bad pack copy");
                            let detail = e.to_string();
                            marks.push(VerifyRecord {
                                location: read.location.clone(),
                                health,
                                at_ms: self.now_ms(),
                                detail,
                            });
                        }
                        if e.kind() == ErrorKind::RestorePending {
                            restores.insert((read.location.tier, read.location.pack.clone()));
                        }
                        keep_worst(&mut errs[i], e);
                    }
                }
            }
            // One line per failed read, not per chunk: a lost pack logged a line for
            // each of its hundreds of chunks. A read of one chunk returns its error to
            // its caller (a `get` reading chunk by chunk, 8 at a time, logged 8 lines
            // besides the error it printed), so it logs at debug level only, above.
            if let Some(first) = marks.first().filter(|_| wants.len() > 1) {
                let packs: BTreeSet<&str> =
                    marks.iter().map(|m| m.location.pack.as_str()).collect();
                let corrupt = marks.iter().filter(|m| m.health == Health::Corrupt).count();
                tracing::error!(
                    corrupt,
                    missing = marks.len() - corrupt,
                    packs = packs.len(),
                    first_pack = %first.location.pack,
                    first_error = %first.detail,
                    "bad pack copies of {} chunk(s) (STRATA_LOG=debug names each)",
                    marks.len(),
                );
            }
            // Every read records what it found, a read of one chunk included (invariant 6).
            if !marks.is_empty() {
                if let Err(e) = self.inner.meta.record_verification(&marks).await {
                    tracing::warn!(error = %e, "could not record the health of pack copies");
                }
            }
            for (tier, pack) in restores {
                if let Err(e) = self.request_restore(tier, &pack).await {
                    tracing::warn!(pack = %pack, error = %e, "restore request failed");
                }
            }
        }
        out.into_iter()
            .zip(errs)
            .zip(wants)
            .map(|((bytes, err), w)| match (bytes, err) {
                (Some(b), _) => Ok(b),
                (None, Some(e)) => Err(e),
                (None, None) => Err(Error::corrupt(format!(
                    "chunk {} has no healthy copy in any tier",
                    w.0
                ))),
            })
            .collect()
    }

    /// After a hot miss: read one chunk from warm or cold and offer it for promotion.
    /// `None` when it has no healthy shared copy.
    pub(super) async fn fetch_shared(
        &self,
        id: &ChunkId,
        locations: &[Location],
    ) -> Result<Option<Bytes>> {
        if shared_candidates(locations).is_empty() {
            return Ok(None);
        }
        let mut got = self.read_shared(&[(*id, None, locations.to_vec())]).await;
        let bytes = got
            .pop()
            .unwrap_or_else(|| Err(Error::internal("no read result")))?;
        self.offer_promotions(&[(*id, bytes.clone())]).await;
        Ok(Some(bytes))
    }

    /// Before reading `entries`: fetch those neither cached nor hot from their packs with
    /// coalesced ranged GETs, into the staging area the per-chunk path takes them from
    /// (and offered for promotion). Best effort:
    /// whatever fails here is fetched again, and reported, by the per-chunk path.
    ///
    /// Each fetched chunk is first offered to `take` as soon as it is verified; a chunk
    /// `take` accepts goes to the cache instead of the staging area (the caller has
    /// what it needs).
    pub(super) async fn prefetch(
        &self,
        entries: &[ManifestEntry],
        take: &mut (dyn FnMut(&ChunkId, &Bytes) -> bool + Send),
    ) {
        // Which chunks this node's hot tier holds: its bloom filter answers without a
        // read, but says "maybe" for every chunk deleted from hot (by `tier move`,
        // demotion, gc) until a compaction drops the key; a read that took those for
        // hot chunks fetched them one ranged GET each (issue 11, item 24). So while
        // deletions are pending, metadata (which records exactly this node's hot
        // copies) decides; otherwise the filter alone does, and a read of hot chunks
        // costs no metadata call here.
        let stale_filter = self.inner.hot.deletions_pending();
        let mut seen = HashSet::new();
        let mut need: Vec<(ChunkId, u32)> = Vec::new();
        for e in entries {
            if seen.insert(e.chunk)
                && !self.fetched_elsewhere(&e.chunk)
                && (stale_filter || !self.inner.hot.may_contain(&e.chunk).await)
            {
                need.push((e.chunk, e.length));
            }
        }
        if need.len() < 2 {
            return;
        }
        // Chunks another read is fetching are waited for, not fetched again; the claim
        // on the others lasts until they are staged (end of this function). Everything
        // below is decided after the claim: a read that finished between the checks
        // above and the claim has already cached, staged or promoted its chunks, and
        // fetching them again would send the same GETs twice.
        let ids: Vec<ChunkId> = need.iter().map(|n| n.0).collect();
        let claim = self.inner.tiers.claim_fetch(&ids).await;
        let mine: HashSet<ChunkId> = claim.ids().iter().copied().collect();
        need.retain(|n| mine.contains(&n.0) && !self.fetched_elsewhere(&n.0));
        if need.len() < 2 {
            return;
        }
        let ids: Vec<ChunkId> = need.iter().map(|n| n.0).collect();
        let Ok(mut locs) = self.inner.meta.locations_many(&ids).await else {
            return;
        };
        // Metadata read after the claim sees the hot copies a finished promotion
        // committed; a chunk with a healthy hot copy here is read from hot.
        let node = &self.inner.node;
        let mut shared = Vec::with_capacity(need.len());
        for n in need {
            let recorded = locs.get(&n.0).is_some_and(|ls| {
                ls.iter()
                    .any(|l| l.is_hot_on(node) && l.health == Health::Ok)
            });
            // A recorded copy that the filter rules out is lost; it is fetched here too.
            if !(recorded && self.inner.hot.may_contain(&n.0).await) {
                shared.push(n);
            }
        }
        need = shared;
        if need.len() < 2 {
            return;
        }
        let wants: Vec<(ChunkId, Option<u32>, Vec<Location>)> = need
            .iter()
            .map(|(id, len)| (*id, Some(*len), locs.remove(id).unwrap_or_default()))
            .collect();
        let mut taken = vec![false; wants.len()];
        let got = self
            .read_shared_with(&wants, &mut |i, bytes| taken[i] = take(&wants[i].0, bytes))
            .await;
        let mut fetched = Vec::new();
        let now = self.now_ms();
        for ((w, res), taken) in wants.iter().zip(got).zip(taken) {
            if let Ok(bytes) = res {
                if taken {
                    self.inner.access.record(w.0, now);
                    self.inner.chunks.insert(w.0, bytes.clone()).await;
                } else {
                    self.inner.tiers.stage(w.0, bytes.clone());
                }
                fetched.push((w.0, bytes));
            }
        }
        self.offer_promotions(&fetched).await;
        drop(claim);
    }

    /// Whether another read already has `id` in hand: cached, staged by a coalesced
    /// read, or read from a shared tier and queued for promotion.
    fn fetched_elsewhere(&self, id: &ChunkId) -> bool {
        self.inner.chunks.contains_key(id)
            || self.inner.tiers.is_staged(id)
            || self.inner.promotions.pending(id).is_some()
    }

    /// Write verified chunks to this node's hot tier, make them durable, record them.
    pub(super) async fn write_hot(&self, chunks: Vec<(ChunkId, Bytes)>) -> Result<u64> {
        if chunks.is_empty() {
            return Ok(0);
        }
        let now = self.now_ms();
        let locs: Vec<Location> = chunks
            .iter()
            .map(|(id, b)| Location::hot(*id, &self.inner.node, b.len() as u64, now))
            .collect();
        let bytes = chunks.iter().map(|c| c.1.len() as u64).sum();
        let ids: Vec<ChunkId> = chunks.iter().map(|c| c.0).collect();
        // Registered from before the write until after the record: no deletion of hot
        // bytes removes these in between (`writing`).
        let registration = self.inner.writing.registration();
        registration.add(&ids).await;
        self.inner.hot.put_many(chunks).await?;
        if !(self.inner.wal_shared && self.inner.settings.hot.sync) {
            self.inner.hot.sync().await?;
        }
        self.inner.meta.add_locations(&locs).await?;
        drop(registration);
        self.confirm_hot(ids).await;
        Ok(bytes)
    }
}
