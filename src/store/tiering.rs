//! Warm and cold tiers in the store (DESIGN §4–5): reads that fall through to packs
//! (with promotion into hot and archive restores), moves between tiers, and the
//! `replicated` durability of puts. The object-store side is in `crate::tier`.
//!
//! Every move follows one order: write the new copy → verify it → commit its location
//! → remove the old copy's location (refused by the metadata store if it were the last
//! healthy one) → delete the old bytes. Pack objects are never deleted here: a pack copy
//! is dropped by removing its location, and the pack GC reclaims objects whose chunks
//! are all gone (docs/tiers.md).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;

use super::Store;
use crate::error::{Error, ErrorKind, Result};
use crate::id::{BlobId, ChunkId};
use crate::meta::placement::{PackRestore, RestoreState};
use crate::model::{Health, Location, ManifestEntry, Tier, VerifyRecord};
use crate::object::RestoreStatus;
use crate::pack::PackBuilder;
use crate::settings::Durability;
use crate::tier::ChunkRead;

const DAY_MS: u64 = 86_400_000;
/// Chunks a move looks up and reads at a time.
const MOVE_BATCH: usize = 512;

/// What a move did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MoveReport {
    /// Distinct chunks asked for.
    pub chunks: u64,
    /// Copies written to the target tier.
    pub written: u64,
    /// Uncompressed bytes of those copies.
    pub bytes_written: u64,
    /// Pack objects uploaded (warm and cold targets).
    pub packs_written: u64,
    /// Old copies removed after the new ones were committed.
    pub copies_removed: u64,
    /// Old copies kept because removing them would have left no healthy copy.
    pub copies_kept: u64,
}

/// Chunks being packed for one move: the builder and the chunks in it, in order.
struct Packing {
    builder: PackBuilder,
    members: Vec<(ChunkId, u64)>,
}

/// Which error to report when a chunk's copies failed differently: the one that tells
/// the caller most about what to do (wait, retry, give up).
fn rank(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::RestorePending => 4,
        ErrorKind::Unavailable => 3,
        ErrorKind::Corrupt => 2,
        ErrorKind::NotFound => 1,
        _ => 0,
    }
}

fn keep_worst(slot: &mut Option<Error>, e: Error) {
    if slot
        .as_ref()
        .is_none_or(|cur| rank(e.kind()) > rank(cur.kind()))
    {
        *slot = Some(e);
    }
}

/// Shared-tier copies worth reading, in the order reads try them: warm, then cold.
fn shared_candidates(locs: &[Location]) -> Vec<Location> {
    let mut c: Vec<Location> = locs
        .iter()
        .filter(|l| l.tier != Tier::Hot && l.health == Health::Ok)
        .cloned()
        .collect();
    c.sort_by_key(|l| l.tier.code());
    c
}

impl Store {
    /// Read chunks from their warm or cold copies, trying each chunk's copies in order.
    /// Copies that fail verification are marked `corrupt`, vanished ones `missing`; an
    /// archived pack gets its one restore request. One result per input.
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
                        let health = match e.kind() {
                            ErrorKind::Corrupt => Some(Health::Corrupt),
                            ErrorKind::NotFound => Some(Health::Missing),
                            _ => None,
                        };
                        if let Some(health) = health {
                            tracing::error!(chunk = %read.chunk.short(), pack = %read.location.pack, ?health, error = %e, "bad pack copy");
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

    /// After a hot miss: read one chunk from warm or cold and promote it. `None` when it
    /// has no healthy shared copy.
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
        self.promote(vec![(*id, bytes.clone())]).await;
        Ok(Some(bytes))
    }

    /// Before reading `entries`: fetch those neither cached nor hot from their packs with
    /// coalesced ranged GETs, into the staging area the per-chunk path takes them from
    /// (and into hot, when promotion is on). Best effort:
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
        let mut seen = HashSet::new();
        let mut need: Vec<(ChunkId, u32)> = Vec::new();
        for e in entries {
            // `may_contain` reads no chunk bytes, so hot chunks are not read twice; the
            // rare false "maybe" leaves that chunk to the per-chunk path.
            if seen.insert(e.chunk)
                && !self.inner.chunks.contains_key(&e.chunk)
                && !self.inner.hot.may_contain(&e.chunk).await
            {
                need.push((e.chunk, e.length));
            }
        }
        if need.len() < 2 {
            return;
        }
        let ids: Vec<ChunkId> = need.iter().map(|n| n.0).collect();
        // Chunks another read is fetching are waited for, not fetched again; the claim
        // on the others lasts until they are staged and promoted (end of this function).
        let claim = self.inner.tiers.claim_fetch(&ids).await;
        let mine: HashSet<ChunkId> = claim.ids().iter().copied().collect();
        need.retain(|n| mine.contains(&n.0));
        if need.is_empty() {
            return;
        }
        let ids: Vec<ChunkId> = need.iter().map(|n| n.0).collect();
        let Ok(mut locs) = self.inner.meta.locations_many(&ids).await else {
            return;
        };
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
        self.promote(fetched).await;
        drop(claim);
    }

    /// Copy chunks read from warm or cold into hot and record the copies, when the
    /// settings allow. Failures are logged: the read itself has succeeded.
    async fn promote(&self, chunks: Vec<(ChunkId, Bytes)>) {
        if !self.inner.settings.tiers.promote || chunks.is_empty() {
            return;
        }
        if let Err(e) = self.write_hot(chunks).await {
            tracing::warn!(error = %e, "promotion into hot failed");
        }
    }

    /// Write verified chunks to this node's hot tier, make them durable, record them.
    async fn write_hot(&self, chunks: Vec<(ChunkId, Bytes)>) -> Result<u64> {
        if chunks.is_empty() {
            return Ok(0);
        }
        let now = self.now_ms();
        let locs: Vec<Location> = chunks
            .iter()
            .map(|(id, b)| Location::hot(*id, &self.inner.node, b.len() as u64, now))
            .collect();
        let bytes = chunks.iter().map(|c| c.1.len() as u64).sum();
        // GC deletes bytes only while holding the fence exclusively, after its commit:
        // holding it shared keeps it from deleting what is written here before it is recorded.
        let _fence = self.inner.gc_fence.read().await;
        let ids: Vec<ChunkId> = chunks.iter().map(|c| c.0).collect();
        self.inner.hot.put_many(chunks).await?;
        if !(self.inner.wal_shared && self.inner.settings.hot.sync) {
            self.inner.hot.sync().await?;
        }
        self.inner.meta.add_locations(&locs).await?;
        self.confirm_hot(ids).await;
        Ok(bytes)
    }

    /// Send the one restore request of an archived pack, unless another reader (in this
    /// or another process) already did: the pack's restore state is a compare-and-set.
    async fn request_restore(&self, tier: Tier, pack: &str) -> Result<()> {
        let t = self.inner.tiers.get(tier)?;
        let days = self.inner.settings.tiers.restore_days;
        let now = self.now_ms();
        let Some(rec) = self.inner.meta.pack(pack).await? else {
            // No record (written by an older version): a repeated request is harmless.
            return t.restore(pack, days).await;
        };
        if rec.restore.pending_at(now) {
            return Ok(());
        }
        let new = PackRestore {
            state: RestoreState::Requested,
            expiry_ms: Some(now + u64::from(days) * DAY_MS),
        };
        if !self
            .inner
            .meta
            .set_pack_restore(pack, &rec.restore, &new)
            .await?
        {
            return Ok(());
        }
        if let Err(e) = t.restore(pack, days).await {
            // Let the next reader try again.
            let _ = self
                .inner
                .meta
                .set_pack_restore(pack, &new, &rec.restore)
                .await;
            return Err(e);
        }
        tracing::info!(pack, days, "requested an archive restore");
        Ok(())
    }

    /// Make sure bytes `range` of the blob can be read without waiting for an archive
    /// restore: requests the restore of every archived pack involved at once (one request
    /// per pack, shared by all processes), then checks every `tiers.restore_poll_ms`
    /// until they are readable or `wait` has passed (`RestorePending` then).
    pub async fn wait_readable(
        &self,
        id: &BlobId,
        range: Range<u64>,
        wait: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + wait;
        let poll = Duration::from_millis(self.inner.settings.tiers.restore_poll_ms.max(1));
        loop {
            let pending = self.archived_packs(id, range.clone()).await?;
            if pending == 0 {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::new(
                    ErrorKind::RestorePending,
                    format!(
                        "{pending} pack(s) of blob {id} are being restored from an archive storage class; \
                         retry later or wait for them (get --wait SECONDS)"
                    ),
                ));
            }
            tokio::time::sleep(poll.min(deadline - now)).await;
        }
    }

    /// [`Store::get_range`] (the whole blob for `None`) after [`Store::wait_readable`].
    pub async fn get_wait(
        &self,
        id: &BlobId,
        range: Option<Range<u64>>,
        wait: Duration,
    ) -> Result<Bytes> {
        self.check_open()?;
        let size = self.blob_record(id).await?.size;
        let range = range.unwrap_or(0..size);
        if range.end > size || range.start > range.end {
            return self.get_range(id, range).await; // its error
        }
        let deadline = Instant::now() + wait;
        loop {
            self.wait_readable(
                id,
                range.clone(),
                deadline.saturating_duration_since(Instant::now()),
            )
            .await?;
            // The read can still meet an archived copy: a hot copy recorded but lost
            // (the read marks it missing, and the next check counts it) or a restore
            // that expired in between.
            match self.get_range(id, range.clone()).await {
                Err(e) if e.kind() == ErrorKind::RestorePending && Instant::now() < deadline => {
                    tracing::debug!(blob = %id.short(), error = %e, "archived copy met while reading; waiting again");
                    let poll =
                        Duration::from_millis(self.inner.settings.tiers.restore_poll_ms.max(1));
                    tokio::time::sleep(
                        poll.min(deadline.saturating_duration_since(Instant::now())),
                    )
                    .await;
                }
                res => return res,
            }
        }
    }

    /// How many of `packs` have a restore requested and not yet expired (for `stat`).
    pub(super) async fn pending_restores(&self, packs: &BTreeSet<String>) -> Result<u64> {
        let now = self.now_ms();
        let mut n = 0;
        for p in packs {
            if self
                .inner
                .meta
                .pack(p)
                .await?
                .is_some_and(|r| r.restore.pending_at(now))
            {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Archived packs holding the only readable copies of chunks of `range`; requests
    /// their restores. Returns how many are not readable yet.
    async fn archived_packs(&self, id: &BlobId, range: Range<u64>) -> Result<usize> {
        self.check_open()?;
        let rec = self.blob_record(id).await?;
        let entries = self
            .entries(&rec, range.start, range.end.min(rec.size))
            .await?;
        let mut seen = HashSet::new();
        let mut ids = Vec::new();
        for e in entries {
            if seen.insert(e.chunk) && !self.inner.chunks.contains_key(&e.chunk) {
                ids.push(e.chunk);
            }
        }
        // Whether a chunk is in this node's hot tier comes from its recorded locations:
        // asking the hot tier would read every value stored there (a key-only lookup
        // does not exist for values in blob files), so a `get --wait` of a hot blob read
        // it twice. A hot copy recorded but lost is marked missing by the read, and the
        // next round of the wait counts it here.
        let node = &self.inner.node;
        let mut packs = BTreeSet::new();
        for page in ids.chunks(MOVE_BATCH) {
            for locs in self.inner.meta.locations_many(page).await?.values() {
                if locs
                    .iter()
                    .any(|l| l.tier == Tier::Hot && l.node == *node && l.health == Health::Ok)
                {
                    continue;
                }
                let c = shared_candidates(locs);
                if let Some(first) = c.first().filter(|l| l.tier == Tier::Cold) {
                    packs.insert(first.pack.clone());
                }
            }
        }
        let mut pending = 0;
        for pack in packs {
            match self.inner.tiers.cold.restore_status(&pack).await? {
                RestoreStatus::Restored { expiry_ms } => {
                    self.note_restored(&pack, expiry_ms).await?
                }
                s if s.is_readable() => {}
                _ => {
                    self.request_restore(Tier::Cold, &pack).await?;
                    pending += 1;
                }
            }
        }
        Ok(pending)
    }

    /// Record that a requested restore has completed, so it no longer shows as pending.
    async fn note_restored(&self, pack: &str, expiry_ms: Option<u64>) -> Result<()> {
        if let Some(rec) = self.inner.meta.pack(pack).await? {
            if rec.restore.state == RestoreState::Requested {
                let done = PackRestore {
                    state: RestoreState::Restored,
                    expiry_ms: expiry_ms.or(rec.restore.expiry_ms),
                };
                self.inner
                    .meta
                    .set_pack_restore(pack, &rec.restore, &done)
                    .await?;
            }
        }
        Ok(())
    }

    /// Move every chunk of a blob to `to` (see the module docs for the order of steps).
    /// Chunks are packed in manifest order, so what moves together shares packs. A chunk
    /// that cannot be read now (an archived pack: its restore is requested) is left where
    /// it is and the move fails with that error after moving the others; running it
    /// again continues where it stopped.
    pub async fn move_blob(&self, id: &BlobId, to: Tier) -> Result<MoveReport> {
        self.check_open()?;
        let rec = self.blob_record(id).await?;
        let mut seen = HashSet::new();
        let chunks: Vec<(ChunkId, u32)> = self
            .entries(&rec, 0, rec.size)
            .await?
            .into_iter()
            .filter(|e| seen.insert(e.chunk))
            .map(|e| (e.chunk, e.length))
            .collect();
        self.move_sized(chunks, to).await
    }

    /// [`Store::move_blob`] for a set of chunks. `NotFound` if one has no record.
    pub async fn move_chunks(&self, ids: &[ChunkId], to: Tier) -> Result<MoveReport> {
        self.check_open()?;
        let mut seen = HashSet::new();
        let mut chunks = Vec::new();
        for id in ids.iter().filter(|id| seen.insert(**id)) {
            let rec = self
                .inner
                .meta
                .chunk(id)
                .await?
                .ok_or_else(|| Error::not_found(format!("chunk {id}")))?;
            chunks.push((*id, rec.size));
        }
        self.move_sized(chunks, to).await
    }

    async fn move_sized(&self, chunks: Vec<(ChunkId, u32)>, to: Tier) -> Result<MoveReport> {
        let mut report = MoveReport {
            chunks: chunks.len() as u64,
            ..MoveReport::default()
        };
        let mut failed: Option<Error> = None;
        let mut packing = match to {
            Tier::Hot => None,
            _ => Some(Packing {
                builder: self.inner.tiers.get(to)?.builder(),
                members: Vec::new(),
            }),
        };
        for batch in chunks.chunks(MOVE_BATCH) {
            self.check_open()?;
            let ids: Vec<ChunkId> = batch.iter().map(|c| c.0).collect();
            let mut locs = self.inner.meta.locations_many(&ids).await?;
            let node = self.inner.node.clone();
            let mut in_place = Vec::new();
            let mut from_shared = Vec::new();
            let mut bytes: HashMap<ChunkId, Bytes> = HashMap::new();
            for &(id, len) in batch {
                let l = locs.remove(&id).unwrap_or_default();
                let ok = |t: Tier| {
                    l.iter()
                        .any(|x| x.tier == t && x.health == Health::Ok && x.readable_by(&node))
                };
                if ok(to) {
                    in_place.push(id);
                    continue;
                }
                if to != Tier::Hot && ok(Tier::Hot) {
                    match self.inner.hot.get(&id).await? {
                        Some(b) if ChunkId::of(&b) == id => {
                            bytes.insert(id, b);
                            continue;
                        }
                        _ => {} // the metadata is stale; the read path records it
                    }
                }
                from_shared.push((id, Some(len), l));
            }
            for (w, res) in from_shared.iter().zip(self.read_shared(&from_shared).await) {
                match res {
                    Ok(b) => {
                        bytes.insert(w.0, b);
                    }
                    Err(e) => keep_worst(
                        &mut failed,
                        e.context_prefix(format!("moving chunk {}", w.0.short())),
                    ),
                }
            }
            match packing.as_mut() {
                None => {
                    let fetched: Vec<(ChunkId, Bytes)> = batch
                        .iter()
                        .filter_map(|(id, _)| bytes.remove(id).map(|b| (*id, b)))
                        .collect();
                    let ids: Vec<ChunkId> = fetched.iter().map(|c| c.0).collect();
                    report.written += ids.len() as u64;
                    report.bytes_written += self.write_hot(fetched).await?;
                    in_place.extend(ids);
                }
                Some(p) => {
                    for (id, _) in batch {
                        if let Some(b) = bytes.remove(id) {
                            p.builder.add(*id, &b)?;
                            p.members.push((*id, b.len() as u64));
                            if p.builder.is_full() {
                                self.flush_pack(to, p, &mut report).await?;
                            }
                        }
                    }
                }
            }
            self.drop_old_copies(&in_place, to, &mut report).await?;
        }
        if let Some(p) = packing.as_mut() {
            if !p.builder.is_empty() {
                self.flush_pack(to, p, &mut report).await?;
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Upload the pack being built, commit it, then drop the old copies of its chunks.
    async fn flush_pack(&self, to: Tier, p: &mut Packing, report: &mut MoveReport) -> Result<()> {
        let tier = self.inner.tiers.get(to)?;
        let builder = std::mem::replace(&mut p.builder, tier.builder());
        let members = std::mem::take(&mut p.members);
        let written = tier.upload(builder.finish()?, self.now_ms()).await?;
        self.inner.meta.put_pack(&written.record).await?;
        self.inner.meta.add_locations(&written.locations).await?;
        report.packs_written += 1;
        report.written += members.len() as u64;
        report.bytes_written += members.iter().map(|m| m.1).sum::<u64>();
        let ids: Vec<ChunkId> = members.iter().map(|m| m.0).collect();
        self.drop_old_copies(&ids, to, report).await
    }

    /// Remove the copies of `chunks` outside `to` that this node owns (its hot copies
    /// and shared copies; other nodes' hot copies are theirs to move), then delete the
    /// hot bytes whose location is gone.
    async fn drop_old_copies(
        &self,
        chunks: &[ChunkId],
        to: Tier,
        report: &mut MoveReport,
    ) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let node = &self.inner.node;
        let victims: Vec<Location> = self
            .inner
            .meta
            .locations_many(chunks)
            .await?
            .into_values()
            .flatten()
            .filter(|l| l.tier != to && (l.tier != Tier::Hot || l.node == *node))
            .collect();
        let removed = self.inner.meta.remove_locations(&victims).await?;
        report.copies_removed += removed.len() as u64;
        report.copies_kept += (victims.len() - removed.len()) as u64;
        let hot: Vec<ChunkId> = removed
            .iter()
            .filter(|l| l.tier == Tier::Hot)
            .map(|l| l.chunk)
            .collect();
        if hot.is_empty() {
            return Ok(());
        }
        // As GC does: delete only while no put is between its chunk writes and its
        // commit, and keep bytes a put re-recorded in the meantime.
        let _fence = self.inner.gc_fence.write().await;
        let now = self.inner.meta.locations_many(&hot).await?;
        let gone: Vec<ChunkId> = hot
            .into_iter()
            .filter(|c| {
                !now.get(c)
                    .is_some_and(|ls| ls.iter().any(|l| l.tier == Tier::Hot && l.node == *node))
            })
            .collect();
        self.inner.hot.delete_many(gone).await
    }

    /// For `replicated` durability: pack the chunks a put wrote to hot into the warm tier
    /// and return their warm locations, to commit with the blob. Nothing for `local`.
    pub(super) async fn replicate(&self, written: &[Location]) -> Result<Vec<Location>> {
        if self.inner.settings.durability.mode != Durability::Replicated {
            return Ok(Vec::new());
        }
        let warm = &self.inner.tiers.warm;
        let mut builder = warm.builder();
        let mut out = Vec::new();
        for l in written.iter().filter(|l| l.tier == Tier::Hot) {
            let bytes = self.inner.hot.get(&l.chunk).await?.ok_or_else(|| {
                Error::internal(format!(
                    "chunk {} left the hot tier before it was replicated",
                    l.chunk
                ))
            })?;
            builder.add(l.chunk, &bytes)?;
            if builder.is_full() {
                let full = std::mem::replace(&mut builder, warm.builder());
                out.extend(self.upload_replica(full).await?);
            }
        }
        if !builder.is_empty() {
            out.extend(self.upload_replica(builder).await?);
        }
        Ok(out)
    }

    async fn upload_replica(&self, builder: PackBuilder) -> Result<Vec<Location>> {
        let written = self
            .inner
            .tiers
            .warm
            .upload(builder.finish()?, self.now_ms())
            .await?;
        self.inner.meta.put_pack(&written.record).await?;
        Ok(written.locations)
    }
}
