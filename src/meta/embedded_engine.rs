//! [`EngineStore`] for [`EmbeddedMeta`]: a child module of `embedded`, sharing its write
//! lock (each read-modify-write holds it, so a fence check and the writes it guards are
//! one atomic step) and its single-batch writes. The indexes live in
//! `embedded_index.rs`.
//!
//! Leases are JSON records (`name → holder, token, until`) timed on the store's
//! injected clock; tokens come from one persisted counter, so they grow over every
//! grant of every lease, across restarts.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use rocksdb::{Direction, IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};

use super::index::{self, HotEntry, HotInit, Tx};
use super::{lock, within_prefix, EmbeddedMeta, Inner};
use crate::error::{Error, Result};
use crate::id::{BlobId, ChunkId};
use crate::meta::codec::blob_value;
use crate::meta::engine::*;
use crate::meta::placement::{allowed_removals, moving_adds, PackRecord, RestoreState};
use crate::model::{Location, Tier};
use crate::rocks::{self, cf};

/// Key of the last fencing token granted, in the `system` column family.
const LEASE_TOKEN_KEY: &[u8] = b"lease_token";

/// A lease as stored.
#[derive(Serialize, Deserialize)]
struct LeaseRecord {
    holder: String,
    token: u64,
    until_ms: u64,
}

/// Pin count changes of one blob pinned to `tier`: a hot pin keeps its chunks out of
/// cold too, so it counts for warm as well.
pub(super) fn pin_weight(tier: Option<Tier>) -> (i64, i64) {
    match tier {
        Some(Tier::Hot) => (1, 1),
        Some(Tier::Warm) => (0, 1),
        _ => (0, 0),
    }
}

impl Inner {
    fn lease(&self, name: &str) -> Result<Option<LeaseRecord>> {
        let leases = cf(&self.db, rocks::CF_LEASES)?;
        match self.db.get_pinned_cf(leases, name.as_bytes())? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(|e| {
                Error::corrupt(format!("embedded lease {name:?} is malformed")).with_source(e)
            }),
        }
    }

    /// Whether `fence` matches the live lease now (call under the write lock).
    pub(super) fn check_fence(&self, fence: &Fence) -> Result<()> {
        let now = self.clock.now_ms();
        match self.lease(&fence.name)? {
            Some(l) if l.holder == fence.holder && l.token == fence.token && l.until_ms > now => {
                Ok(())
            }
            _ => Err(Error::fenced(format!(
                "lease {} (token {}) of {} is no longer held",
                fence.name, fence.token, fence.holder
            ))),
        }
    }

    /// Add `(hot, warm)` × `sign` to the pin counts of `chunks`.
    pub(super) fn add_pins(
        &self,
        batch: &mut WriteBatch,
        chunks: &BTreeSet<ChunkId>,
        weight: (i64, i64),
        sign: i64,
    ) -> Result<()> {
        if weight == (0, 0) {
            return Ok(());
        }
        let pins = cf(&self.db, rocks::CF_PINS)?;
        for c in chunks {
            let old = self.pin_counts(c)?;
            let apply = |v: u64, d: i64| u64::try_from(v as i128 + (d * sign) as i128).unwrap_or(0);
            let new = PinCounts {
                hot: apply(old.hot, weight.0),
                warm: apply(old.warm, weight.1),
            };
            if new == PinCounts::default() {
                batch.delete_cf(pins, c.as_bytes());
            } else {
                let mut v = new.hot.to_be_bytes().to_vec();
                v.extend_from_slice(&new.warm.to_be_bytes());
                batch.put_cf(pins, c.as_bytes(), v);
            }
        }
        Ok(())
    }

    fn pin_counts(&self, c: &ChunkId) -> Result<PinCounts> {
        let pins = cf(&self.db, rocks::CF_PINS)?;
        match self.db.get_pinned_cf(pins, c.as_bytes())? {
            None => Ok(PinCounts::default()),
            Some(v) if v.len() == 16 => Ok(PinCounts {
                hot: index::be64(&v[..8])?,
                warm: index::be64(&v[8..])?,
            }),
            Some(_) => Err(Error::corrupt(format!(
                "embedded pin counts of chunk {c} are malformed"
            ))),
        }
    }

    /// The distinct chunks of a blob's manifest.
    pub(super) fn blob_chunks(&self, id: &BlobId) -> Result<BTreeSet<ChunkId>> {
        Ok(self.manifest(id)?.into_iter().map(|e| e.chunk).collect())
    }

    /// Every pack record, by name, after `after`, while `keep` wants more.
    pub(super) fn scan_packs(
        &self,
        after: Option<&str>,
        mut keep: impl FnMut(PackRecord) -> Result<bool>,
    ) -> Result<()> {
        let packs = cf(&self.db, rocks::CF_PACKS)?;
        let start = after.unwrap_or("").as_bytes().to_vec();
        for item in self
            .db
            .iterator_cf(packs, IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = item?;
            if after.is_some() && *k == start[..] {
                continue;
            }
            let rec = self.decode_pack(&k, &v)?;
            if !keep(rec)? {
                break;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl EngineStore for EmbeddedMeta {
    async fn db_now_ms(&self) -> Result<u64> {
        Ok(self.inner.clock.now_ms())
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<Option<Lease>> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.blocking(move |inner| {
            let _guard = lock(&inner.write_lock);
            let now = inner.clock.now_ms();
            let until_ms = now.saturating_add(ttl_ms);
            let sys = cf(&inner.db, rocks::CF_SYSTEM)?;
            let mut batch = WriteBatch::default();
            let token = match inner.lease(&name)? {
                Some(l) if l.until_ms > now && l.holder != holder => return Ok(None),
                Some(l) if l.until_ms > now => l.token,
                _ => {
                    let last = match inner.db.get_pinned_cf(sys, LEASE_TOKEN_KEY)? {
                        Some(v) => index::be64(&v)?,
                        None => 0,
                    };
                    let token = last + 1;
                    batch.put_cf(sys, LEASE_TOKEN_KEY, token.to_be_bytes());
                    token
                }
            };
            let rec = LeaseRecord {
                holder: holder.clone(),
                token,
                until_ms,
            };
            let value = serde_json::to_vec(&rec)
                .map_err(|e| Error::internal("encoding a lease").with_source(e))?;
            batch.put_cf(cf(&inner.db, rocks::CF_LEASES)?, name.as_bytes(), value);
            inner.write(batch)?;
            Ok(Some(Lease {
                name,
                holder,
                token,
                until_ms,
            }))
        })
        .await
    }

    async fn live_leases(&self, prefix: &str) -> Result<Vec<Lease>> {
        let prefix = prefix.to_string();
        self.blocking(move |inner| {
            let now = inner.clock.now_ms();
            let handle = cf(&inner.db, rocks::CF_LEASES)?;
            let mut it = inner
                .db
                .raw_iterator_cf_opt(handle, within_prefix(prefix.as_bytes()));
            it.seek(prefix.as_bytes());
            let mut out = Vec::new();
            while it.valid() {
                let (Some(k), Some(v)) = (it.key(), it.value()) else {
                    break;
                };
                if !k.starts_with(prefix.as_bytes()) {
                    break;
                }
                let name = String::from_utf8_lossy(k).into_owned();
                let rec: LeaseRecord = serde_json::from_slice(v).map_err(|e| {
                    Error::corrupt(format!("embedded lease {name:?} is malformed")).with_source(e)
                })?;
                if rec.until_ms > now {
                    out.push(Lease {
                        name,
                        holder: rec.holder,
                        token: rec.token,
                        until_ms: rec.until_ms,
                    });
                }
                it.next();
            }
            it.status()?;
            Ok(out)
        })
        .await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<()> {
        let lease = lease.clone();
        self.blocking(move |inner| {
            let _guard = lock(&inner.write_lock);
            if inner
                .lease(&lease.name)?
                .is_some_and(|l| l.holder == lease.holder && l.token == lease.token)
            {
                let mut batch = WriteBatch::default();
                batch.delete_cf(cf(&inner.db, rocks::CF_LEASES)?, lease.name.as_bytes());
                inner.write(batch)?;
            }
            Ok(())
        })
        .await
    }

    async fn commit_placement(
        &self,
        fence: Option<&Fence>,
        change: &PlacementChange,
    ) -> Result<Vec<Location>> {
        let fence = fence.cloned();
        let change = change.clone();
        self.blocking(move |inner| {
            let _guard = lock(&inner.write_lock);
            if let Some(f) = &fence {
                inner.check_fence(f)?;
            }
            let add = if change.moves {
                let mut current = Vec::new();
                let mut moving: Vec<ChunkId> = change.remove.iter().map(|l| l.chunk).collect();
                moving.sort_unstable();
                moving.dedup();
                for c in &moving {
                    current.extend(inner.locations(c)?);
                }
                moving_adds(&change.add, &change.remove, &current)
            } else {
                change.add.clone()
            };
            for l in &add {
                if inner.chunk(&l.chunk)?.is_none() {
                    return Err(Error::not_found(format!(
                        "chunk {} has no record; cannot add a {} copy",
                        l.chunk,
                        l.tier.as_str()
                    )));
                }
            }
            let mut tx = Tx::new(inner);
            for p in &change.packs {
                inner.put_pack_record(&mut tx.batch, p)?;
            }
            let now = inner.clock.now_ms();
            for l in &add {
                let init = HotInit {
                    class: change.hot_class.clone(),
                    blob: change.hot_blob,
                    placed_ms: l.last_verified_ms.unwrap_or(now),
                    read_ms: change.read_ms,
                };
                tx.put_location(l, &init)?;
            }
            let mut chunks: Vec<ChunkId> = change.remove.iter().map(|l| l.chunk).collect();
            chunks.sort_unstable();
            chunks.dedup();
            let mut current = Vec::new();
            let mut referenced = std::collections::HashSet::new();
            for c in &chunks {
                current.extend(tx.locations_of(c)?);
                if inner.chunk(c)?.is_some_and(|r| r.refcount > 0) {
                    referenced.insert(*c);
                }
            }
            let removed = allowed_removals(&change.remove, &current, &change.node, |c| {
                referenced.contains(c)
            });
            for l in &removed {
                tx.delete_location(l)?;
            }
            tx.commit()?;
            Ok(removed)
        })
        .await
    }

    async fn hot_copies(
        &self,
        node: &str,
        order: &HotOrder,
        read_before_ms: u64,
        after: Option<HotCursor>,
        limit: usize,
    ) -> Result<Vec<HotCopy>> {
        let node = node.to_string();
        let order = order.clone();
        self.blocking(move |inner| {
            let (name, prefix) = match &order {
                HotOrder::LeastRecentlyRead => (rocks::CF_HOT_LRU, index::node_prefix(&node)),
                HotOrder::Class(c) => (rocks::CF_HOT_CLASS, index::hot_class_prefix(&node, c)?),
            };
            let handle = cf(&inner.db, name)?;
            let mut start = prefix.clone();
            if let Some(a) = &after {
                start.extend_from_slice(&a.last_read_ms.to_be_bytes());
                start.extend_from_slice(a.chunk.as_bytes());
            }
            let mut it = inner.db.raw_iterator_cf_opt(handle, within_prefix(&prefix));
            it.seek(&start);
            let mut out = Vec::new();
            while out.len() < limit && it.valid() {
                let (Some(k), Some(v)) = (it.key(), it.value()) else {
                    break;
                };
                // Class keys of a longer class share no prefix (the length differs),
                // but check the exact shape: prefix ‖ last read ‖ chunk.
                if k.len() != prefix.len() + 40 {
                    it.next();
                    continue;
                }
                if after.is_some() && k == &start[..] {
                    it.next();
                    continue;
                }
                let last_read = index::be64(&k[prefix.len()..prefix.len() + 8])?;
                if last_read > read_before_ms {
                    break;
                }
                let chunk = ChunkId::from_slice(&k[prefix.len() + 8..])?;
                out.push(HotEntry::decode(v)?.copy(chunk));
                it.next();
            }
            it.status()?;
            Ok(out)
        })
        .await
    }

    async fn hot_bytes(&self, node: &str) -> Result<u64> {
        let node = node.to_string();
        self.blocking(move |inner| Ok(index::hot_usage(inner, &node)?.0))
            .await
    }

    async fn touch_hot(&self, node: &str, reads: &[(ChunkId, u64)]) -> Result<()> {
        let node = node.to_string();
        let mut merged: BTreeMap<ChunkId, u64> = BTreeMap::new();
        for &(c, ms) in reads {
            let slot = merged.entry(c).or_insert(ms);
            *slot = (*slot).max(ms);
        }
        self.blocking(move |inner| {
            let _guard = lock(&inner.write_lock);
            let mut tx = Tx::new(inner);
            for (c, ms) in merged {
                tx.touch_hot(&node, &c, ms)?;
            }
            // Access times are advisory: no sync, as for `record_access`.
            let batch = tx.finish()?;
            inner.db.write(batch)?;
            Ok(())
        })
        .await
    }

    async fn pins(&self, ids: &[ChunkId]) -> Result<Vec<(ChunkId, PinCounts)>> {
        let ids = ids.to_vec();
        self.blocking(move |inner| {
            let mut out = Vec::new();
            let distinct: BTreeSet<ChunkId> = ids.into_iter().collect();
            for c in distinct {
                let p = inner.pin_counts(&c)?;
                if p != PinCounts::default() {
                    out.push((c, p));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn set_pin(&self, blob: &BlobId, to: Option<Tier>) -> Result<bool> {
        let blob = *blob;
        self.blocking(move |inner| {
            let _guard = lock(&inner.write_lock);
            let Some(mut rec) = inner.blob(&blob)? else {
                return Ok(false);
            };
            let chunks = inner.blob_chunks(&blob)?;
            let (old, new) = (pin_weight(rec.pin), pin_weight(to));
            let mut batch = WriteBatch::default();
            inner.add_pins(&mut batch, &chunks, (new.0 - old.0, new.1 - old.1), 1)?;
            rec.pin = to;
            batch.put_cf(
                cf(&inner.db, rocks::CF_BLOBS)?,
                blob.as_bytes(),
                blob_value(&rec),
            );
            inner.write(batch)?;
            Ok(true)
        })
        .await
    }

    async fn archive_candidates(
        &self,
        class: &str,
        read_before_ms: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ArchiveCandidate>> {
        let class = class.to_string();
        let after = after.map(str::to_string);
        self.blocking(move |inner| {
            let mut out = Vec::new();
            if limit == 0 {
                return Ok(out);
            }
            inner.scan_packs(after.as_deref(), |p| {
                if p.tier == Tier::Warm && p.class == class {
                    let read = index::pack_stats(inner, &p.id)?.last_read;
                    let last = read.map_or(p.created_ms, |r| r.max(p.created_ms));
                    if last <= read_before_ms {
                        out.push(ArchiveCandidate {
                            pack: p,
                            last_read_ms: last,
                        });
                    }
                }
                Ok(out.len() < limit)
            })?;
            Ok(out)
        })
        .await
    }

    async fn pack_locations(&self, name: &str) -> Result<Vec<Location>> {
        let name = name.to_string();
        self.blocking(move |inner| {
            let index_cf = cf(&inner.db, rocks::CF_PACK_LOCATIONS)?;
            let locs = cf(&inner.db, rocks::CF_LOCATIONS)?;
            let prefix = index::pack_prefix(&name);
            let mut out = Vec::new();
            let iter = inner.db.iterator_cf_opt(
                index_cf,
                within_prefix(&prefix),
                IteratorMode::From(&prefix, Direction::Forward),
            );
            for item in iter {
                let (k, _) = item?;
                let key = index::location_key_in(&name, &k)?;
                if let Some(v) = inner.db.get_pinned_cf(locs, &key)? {
                    out.push(crate::meta::codec::decode_location(&key, &v)?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn dead_packs(
        &self,
        created_before_ms: u64,
        now_ms: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PackRecord>> {
        let after = after.map(str::to_string);
        self.blocking(move |inner| {
            inner.dead_packs(created_before_ms, now_ms, after.as_deref(), limit)
        })
        .await
    }

    async fn sparse_packs(
        &self,
        max_live_fraction: f64,
        created_before_ms: u64,
        now_ms: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PackRecord>> {
        let after = after.map(str::to_string);
        self.blocking(move |inner| {
            inner.sparse_packs(
                max_live_fraction,
                created_before_ms,
                now_ms,
                after.as_deref(),
                limit,
            )
        })
        .await
    }

    async fn delete_dead_pack(
        &self,
        name: &str,
        created_before_ms: u64,
        now_ms: u64,
    ) -> Result<bool> {
        let name = name.to_string();
        self.blocking(move |inner| inner.delete_dead_pack(&name, created_before_ms, now_ms))
            .await
    }

    async fn list_packs(&self, after: Option<&str>, limit: usize) -> Result<Vec<PackRecord>> {
        let after = after.map(str::to_string);
        self.blocking(move |inner| inner.list_packs(after.as_deref(), limit))
            .await
    }

    async fn recount_pack_live_bytes(&self, name: &str) -> Result<Option<u64>> {
        let name = name.to_string();
        self.blocking(move |inner| inner.recount_pack_live_bytes(&name))
            .await
    }

    async fn restore_requests(&self, after: Option<&str>, limit: usize) -> Result<Vec<PackRecord>> {
        let after = after.map(str::to_string);
        self.blocking(move |inner| {
            let mut out = Vec::new();
            if limit == 0 {
                return Ok(out);
            }
            inner.scan_packs(after.as_deref(), |p| {
                if p.restore.state == RestoreState::Requested {
                    out.push(p);
                }
                Ok(out.len() < limit)
            })?;
            Ok(out)
        })
        .await
    }

    async fn usage(&self) -> Result<StoreUsage> {
        self.blocking(|inner| {
            let mut u = StoreUsage::default();
            let usage = cf(&inner.db, rocks::CF_HOT_USAGE)?;
            for item in inner.db.iterator_cf(usage, IteratorMode::Start) {
                let (k, v) = item?;
                let (bytes, chunks) = index::decode_usage(&v)?;
                let node = String::from_utf8(k.to_vec())
                    .map_err(|_| Error::corrupt("embedded hot usage key is not UTF-8"))?;
                u.hot.bytes += bytes;
                u.hot.chunks += chunks;
                u.hot_by_node.push((
                    node,
                    TierUsage {
                        bytes,
                        chunks,
                        objects: 0,
                    },
                ));
            }
            inner.scan_packs(None, |p| {
                let copies = index::pack_stats(inner, &p.id)?.copies;
                let t = match p.tier {
                    Tier::Warm => &mut u.warm,
                    Tier::Cold => &mut u.cold,
                    Tier::Hot => return Ok(true),
                };
                t.bytes += p.size;
                t.chunks += copies;
                t.objects += 1;
                Ok(true)
            })?;
            Ok(u)
        })
        .await
    }

    async fn record_pass(&self, pass: &PassRecord) -> Result<()> {
        let pass = pass.clone();
        self.blocking(move |inner| {
            let mut key = index::node_prefix(&pass.node);
            key.extend_from_slice(pass.worker.as_bytes());
            let value = serde_json::to_vec(&pass)
                .map_err(|e| Error::internal("encoding a pass record").with_source(e))?;
            let mut batch = WriteBatch::default();
            batch.put_cf(cf(&inner.db, rocks::CF_PASSES)?, key, value);
            inner.write(batch)
        })
        .await
    }

    async fn passes(&self) -> Result<Vec<PassRecord>> {
        self.blocking(|inner| {
            let passes = cf(&inner.db, rocks::CF_PASSES)?;
            let mut out = Vec::new();
            for item in inner.db.iterator_cf(passes, IteratorMode::Start) {
                let (_, v) = item?;
                out.push(serde_json::from_slice(&v).map_err(|e| {
                    Error::corrupt("embedded pass record is malformed").with_source(e)
                })?);
            }
            Ok(out)
        })
        .await
    }
}
