//! The embedded store's derived indexes, kept in the same `WriteBatch` as the locations
//! they describe (a child module of `embedded`, used under its write lock):
//!
//! - the hot index: each node's hot copies by chunk (`hot_copies`), by last read
//!   (`hot_lru`) and by policy class then last read (`hot_class`), and a bytes and copies
//!   counter per node (`hot_usage`);
//! - the pack index: each pack's copies by offset (`pack_locations`), and per pack its
//!   live copies, last read and live bytes (`pack_stats`; the live bytes make a pack
//!   record's `live_bytes` exact).
//!
//! Every insert and removal of a location goes through a [`Tx`], which reads through its
//! own pending writes, so one batch may touch one copy several times and still leave
//! the indexes and counters exact.

use std::collections::{BTreeMap, HashMap};

use rocksdb::WriteBatch;

use super::Inner;
use crate::error::{Error, Result};
use crate::id::{BlobId, ChunkId};
use crate::meta::codec::{decode_location, key_of, location_value};
use crate::meta::engine::HotCopy;
use crate::model::{Location, Tier};
use crate::rocks::{self, cf};

/// What the hot index records of one hot copy (the value of all three hot index CFs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HotEntry {
    pub length: u64,
    pub placed_ms: u64,
    pub last_read_ms: u64,
    pub class: String,
    pub blob: Option<BlobId>,
}

impl HotEntry {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(57 + self.class.len());
        v.extend_from_slice(&self.length.to_be_bytes());
        v.extend_from_slice(&self.placed_ms.to_be_bytes());
        v.extend_from_slice(&self.last_read_ms.to_be_bytes());
        match &self.blob {
            Some(b) => {
                v.push(1);
                v.extend_from_slice(b.as_bytes());
            }
            None => v.push(0),
        }
        v.extend_from_slice(self.class.as_bytes());
        v
    }

    pub fn decode(v: &[u8]) -> Result<HotEntry> {
        let bad = || Error::corrupt("embedded hot index entry is malformed");
        if v.len() < 25 {
            return Err(bad());
        }
        let (blob, rest) = match v[24] {
            0 => (None, &v[25..]),
            1 if v.len() >= 57 => (Some(BlobId::from_slice(&v[25..57])?), &v[57..]),
            _ => return Err(bad()),
        };
        Ok(HotEntry {
            length: be64(&v[0..8])?,
            placed_ms: be64(&v[8..16])?,
            last_read_ms: be64(&v[16..24])?,
            class: String::from_utf8(rest.to_vec()).map_err(|_| bad())?,
            blob,
        })
    }

    pub fn copy(&self, chunk: ChunkId) -> HotCopy {
        HotCopy {
            chunk,
            length: self.length,
            placed_ms: self.placed_ms,
            last_read_ms: self.last_read_ms,
            class: self.class.clone(),
            blob: self.blob,
        }
    }
}

/// A big-endian u64 from exactly 8 bytes.
pub(super) fn be64(b: &[u8]) -> Result<u64> {
    b.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| Error::corrupt("embedded metadata number is malformed"))
}

/// `node ‖ 0`: every hot index key of a node starts with it (node ids hold no 0 byte).
pub(super) fn node_prefix(node: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(node.len() + 1);
    k.extend_from_slice(node.as_bytes());
    k.push(0);
    k
}

pub(super) fn hot_copy_key(node: &str, chunk: &ChunkId) -> Vec<u8> {
    let mut k = node_prefix(node);
    k.extend_from_slice(chunk.as_bytes());
    k
}

pub(super) fn hot_lru_key(node: &str, last_read_ms: u64, chunk: &ChunkId) -> Vec<u8> {
    let mut k = node_prefix(node);
    k.extend_from_slice(&last_read_ms.to_be_bytes());
    k.extend_from_slice(chunk.as_bytes());
    k
}

/// `node ‖ 0 ‖ class length ‖ class`: the length keeps one class's keys apart from a
/// longer class's.
pub(super) fn hot_class_prefix(node: &str, class: &str) -> Result<Vec<u8>> {
    let len = u16::try_from(class.len())
        .map_err(|_| Error::invalid("policy class names are limited to 65535 bytes"))?;
    let mut k = node_prefix(node);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(class.as_bytes());
    Ok(k)
}

pub(super) fn hot_class_key(
    node: &str,
    class: &str,
    last_read_ms: u64,
    chunk: &ChunkId,
) -> Result<Vec<u8>> {
    let mut k = hot_class_prefix(node, class)?;
    k.extend_from_slice(&last_read_ms.to_be_bytes());
    k.extend_from_slice(chunk.as_bytes());
    Ok(k)
}

/// `pack ‖ 0`: every index key of a pack starts with it.
pub(super) fn pack_prefix(pack: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(pack.len() + 1);
    k.extend_from_slice(pack.as_bytes());
    k.push(0);
    k
}

fn pack_location_key(pack: &str, offset: u64, location_key: &[u8]) -> Vec<u8> {
    let mut k = pack_prefix(pack);
    k.extend_from_slice(&offset.to_be_bytes());
    k.extend_from_slice(location_key);
    k
}

/// The location key inside a pack index key of `pack`.
pub(super) fn location_key_in(pack: &str, key: &[u8]) -> Result<Vec<u8>> {
    let start = pack.len() + 1 + 8;
    if key.len() <= start {
        return Err(Error::corrupt("embedded pack index key is malformed"));
    }
    Ok(key[start..].to_vec())
}

/// What the pack index counts of one pack.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct PackStats {
    /// Copies recorded in it.
    pub copies: u64,
    /// Latest read of any of its chunks.
    pub last_read: Option<u64>,
    /// Stored bytes of those copies; `None` in a counter from before schema version 3,
    /// until opening recounts it.
    pub live_bytes: Option<u64>,
}

impl PackStats {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut v = self.copies.to_be_bytes().to_vec();
        v.extend_from_slice(&self.last_read.unwrap_or(u64::MAX).to_be_bytes());
        v.extend_from_slice(&self.live_bytes.unwrap_or(0).to_be_bytes());
        v
    }
}

/// The counters of a pack (`u64::MAX` as last read: never read).
pub(super) fn pack_stats(inner: &Inner, pack: &str) -> Result<PackStats> {
    let stats = cf(&inner.db, rocks::CF_PACK_STATS)?;
    match inner.db.get_pinned_cf(stats, pack.as_bytes())? {
        // No counters: no copy, never read.
        None => Ok(PackStats {
            live_bytes: Some(0),
            ..PackStats::default()
        }),
        Some(v) if v.len() == 16 || v.len() == 24 => {
            let read = be64(&v[8..16])?;
            Ok(PackStats {
                copies: be64(&v[..8])?,
                last_read: (read != u64::MAX).then_some(read),
                live_bytes: if v.len() == 24 {
                    Some(be64(&v[16..])?)
                } else {
                    None
                },
            })
        }
        Some(_) => Err(Error::corrupt(format!(
            "embedded pack counters of {pack:?} are malformed"
        ))),
    }
}

/// Bytes and copies of a node's hot tier.
pub(super) fn hot_usage(inner: &Inner, node: &str) -> Result<(u64, u64)> {
    let usage = cf(&inner.db, rocks::CF_HOT_USAGE)?;
    match inner.db.get_pinned_cf(usage, node.as_bytes())? {
        None => Ok((0, 0)),
        Some(v) => decode_usage(&v),
    }
}

pub(super) fn decode_usage(v: &[u8]) -> Result<(u64, u64)> {
    if v.len() != 16 {
        return Err(Error::corrupt("embedded hot usage counter is malformed"));
    }
    Ok((be64(&v[..8])?, be64(&v[8..])?))
}

/// How a hot copy that [`Tx::put_location`] inserts is indexed.
pub(super) struct HotInit {
    /// Policy class of a new copy.
    pub class: String,
    /// Blob of a new copy.
    pub blob: Option<BlobId>,
    /// Placement time of a new copy (also its last read unless `read_ms`).
    pub placed_ms: u64,
    /// Last read to set, on a new or an existing copy.
    pub read_ms: Option<u64>,
}

/// Location writes with their index and counter updates, in one batch.
pub(super) struct Tx<'a> {
    inner: &'a Inner,
    pub batch: WriteBatch,
    locs: HashMap<Vec<u8>, Option<Location>>,
    hot: HashMap<(String, ChunkId), Option<HotEntry>>,
    hot_delta: BTreeMap<String, (i128, i128)>,
    /// Per pack: change in live copies and in live (stored) bytes.
    pack_delta: BTreeMap<String, (i128, i128)>,
    pack_reads: BTreeMap<String, u64>,
}

impl<'a> Tx<'a> {
    pub fn new(inner: &'a Inner) -> Self {
        Tx {
            inner,
            batch: WriteBatch::default(),
            locs: HashMap::new(),
            hot: HashMap::new(),
            hot_delta: BTreeMap::new(),
            pack_delta: BTreeMap::new(),
            pack_reads: BTreeMap::new(),
        }
    }

    fn location(&self, key: &[u8]) -> Result<Option<Location>> {
        if let Some(l) = self.locs.get(key) {
            return Ok(l.clone());
        }
        let locs = cf(&self.inner.db, rocks::CF_LOCATIONS)?;
        self.inner
            .db
            .get_pinned_cf(locs, key)?
            .map(|v| decode_location(key, &v))
            .transpose()
    }

    /// Every copy of `chunk`, this batch's pending writes included.
    pub fn locations_of(&self, chunk: &ChunkId) -> Result<Vec<Location>> {
        let mut out: Vec<Location> = self
            .inner
            .locations(chunk)?
            .into_iter()
            .filter(|l| !key_of(l).is_ok_and(|k| self.locs.contains_key(&k)))
            .collect();
        out.extend(
            self.locs
                .values()
                .flatten()
                .filter(|l| l.chunk == *chunk)
                .cloned(),
        );
        Ok(out)
    }

    pub fn hot_entry(&self, node: &str, chunk: &ChunkId) -> Result<Option<HotEntry>> {
        if let Some(e) = self.hot.get(&(node.to_string(), *chunk)) {
            return Ok(e.clone());
        }
        let copies = cf(&self.inner.db, rocks::CF_HOT_COPIES)?;
        self.inner
            .db
            .get_pinned_cf(copies, hot_copy_key(node, chunk))?
            .map(|v| HotEntry::decode(&v))
            .transpose()
    }

    /// Replace the index entries of `node`'s copy of `chunk` (`old` as recorded now).
    fn set_hot(
        &mut self,
        node: &str,
        chunk: &ChunkId,
        old: Option<&HotEntry>,
        new: Option<HotEntry>,
    ) -> Result<()> {
        let db = &self.inner.db;
        let (copies, lru, class) = (
            cf(db, rocks::CF_HOT_COPIES)?,
            cf(db, rocks::CF_HOT_LRU)?,
            cf(db, rocks::CF_HOT_CLASS)?,
        );
        if let Some(o) = old {
            self.batch
                .delete_cf(lru, hot_lru_key(node, o.last_read_ms, chunk));
            self.batch
                .delete_cf(class, hot_class_key(node, &o.class, o.last_read_ms, chunk)?);
        }
        match &new {
            Some(n) => {
                let v = n.encode();
                self.batch.put_cf(copies, hot_copy_key(node, chunk), &v);
                self.batch
                    .put_cf(lru, hot_lru_key(node, n.last_read_ms, chunk), &v);
                self.batch.put_cf(
                    class,
                    hot_class_key(node, &n.class, n.last_read_ms, chunk)?,
                    &v,
                );
            }
            None => self.batch.delete_cf(copies, hot_copy_key(node, chunk)),
        }
        let d = self.hot_delta.entry(node.to_string()).or_default();
        d.0 += i128::from(new.as_ref().map_or(0, |n| n.length))
            - i128::from(old.map_or(0, |o| o.length));
        d.1 += i128::from(new.is_some()) - i128::from(old.is_some());
        self.hot.insert((node.to_string(), *chunk), new);
        Ok(())
    }

    /// Insert or update a copy (an upsert never counts a copy twice).
    pub fn put_location(&mut self, l: &Location, hot: &HotInit) -> Result<()> {
        let key = key_of(l)?;
        let old = self.location(&key)?;
        let locs = cf(&self.inner.db, rocks::CF_LOCATIONS)?;
        self.batch.put_cf(locs, &key, location_value(l));
        self.locs.insert(key.clone(), Some(l.clone()));
        if l.tier == Tier::Hot {
            let entry = self.hot_entry(&l.node, &l.chunk)?;
            let new = match &entry {
                Some(e) => HotEntry {
                    length: l.length,
                    last_read_ms: hot.read_ms.unwrap_or(e.last_read_ms),
                    ..e.clone()
                },
                None => HotEntry {
                    length: l.length,
                    placed_ms: hot.placed_ms,
                    last_read_ms: hot.read_ms.unwrap_or(hot.placed_ms),
                    class: hot.class.clone(),
                    blob: hot.blob,
                },
            };
            return self.set_hot(&l.node, &l.chunk, entry.as_ref(), Some(new));
        }
        let index = cf(&self.inner.db, rocks::CF_PACK_LOCATIONS)?;
        match &old {
            Some(o) => self
                .batch
                .delete_cf(index, pack_location_key(&o.pack, o.offset, &key)),
            None => {
                let d = self.pack_delta.entry(l.pack.clone()).or_default();
                d.0 += 1;
                d.1 += i128::from(l.length);
            }
        }
        self.batch
            .put_cf(index, pack_location_key(&l.pack, l.offset, &key), []);
        Ok(())
    }

    /// Remove a copy; returns it as it was, or `None` if there is none.
    pub fn delete_location(&mut self, l: &Location) -> Result<Option<Location>> {
        let key = key_of(l)?;
        let Some(old) = self.location(&key)? else {
            return Ok(None);
        };
        let locs = cf(&self.inner.db, rocks::CF_LOCATIONS)?;
        self.batch.delete_cf(locs, &key);
        self.locs.insert(key.clone(), None);
        if old.tier == Tier::Hot {
            if let Some(e) = self.hot_entry(&old.node, &old.chunk)? {
                self.set_hot(&old.node, &old.chunk, Some(&e), None)?;
            }
        } else {
            let index = cf(&self.inner.db, rocks::CF_PACK_LOCATIONS)?;
            self.batch
                .delete_cf(index, pack_location_key(&old.pack, old.offset, &key));
            let d = self.pack_delta.entry(old.pack.clone()).or_default();
            d.0 -= 1;
            d.1 -= i128::from(old.length);
        }
        Ok(Some(old))
    }

    /// Raise the last read of `node`'s hot copy of `chunk` to `ms` (no copy: nothing).
    pub fn touch_hot(&mut self, node: &str, chunk: &ChunkId, ms: u64) -> Result<()> {
        if let Some(e) = self.hot_entry(node, chunk)? {
            if ms > e.last_read_ms {
                let new = HotEntry {
                    last_read_ms: ms,
                    ..e.clone()
                };
                self.set_hot(node, chunk, Some(&e), Some(new))?;
            }
        }
        Ok(())
    }

    /// Raise a pack's last read to `ms`.
    pub fn read_pack(&mut self, pack: &str, ms: u64) {
        let slot = self.pack_reads.entry(pack.to_string()).or_insert(ms);
        *slot = (*slot).max(ms);
    }

    /// The batch with the counters folded in.
    pub fn finish(mut self) -> Result<WriteBatch> {
        let inner = self.inner;
        let usage = cf(&inner.db, rocks::CF_HOT_USAGE)?;
        for (node, (bytes, copies)) in std::mem::take(&mut self.hot_delta) {
            if (bytes, copies) == (0, 0) {
                continue;
            }
            let (b, c) = hot_usage(inner, &node)?;
            let b = clamp(i128::from(b) + bytes);
            let c = clamp(i128::from(c) + copies);
            if (b, c) == (0, 0) {
                self.batch.delete_cf(usage, node.as_bytes());
            } else {
                let mut v = b.to_be_bytes().to_vec();
                v.extend_from_slice(&c.to_be_bytes());
                self.batch.put_cf(usage, node.as_bytes(), v);
            }
        }
        let stats = cf(&inner.db, rocks::CF_PACK_STATS)?;
        let mut packs: Vec<String> = self.pack_delta.keys().cloned().collect();
        packs.extend(self.pack_reads.keys().cloned());
        packs.sort();
        packs.dedup();
        for pack in packs {
            let (copies, bytes) = self.pack_delta.get(&pack).copied().unwrap_or((0, 0));
            let read = self.pack_reads.get(&pack).copied();
            let old = pack_stats(inner, &pack)?;
            let new = PackStats {
                copies: clamp(i128::from(old.copies) + copies),
                last_read: match (old.last_read, read) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                },
                live_bytes: Some(clamp(i128::from(old.live_bytes.unwrap_or(0)) + bytes)),
            };
            if new.copies == 0 && new.last_read.is_none() {
                self.batch.delete_cf(stats, pack.as_bytes());
            } else {
                self.batch.put_cf(stats, pack.as_bytes(), new.encode());
            }
        }
        Ok(self.batch)
    }

    /// Write the batch (synced as the store is configured).
    pub fn commit(self) -> Result<()> {
        let inner = self.inner;
        let batch = self.finish()?;
        inner.write(batch)
    }
}

/// A counter after a change, never below zero (a database from before the indexes
/// may remove copies they never counted).
fn clamp(v: i128) -> u64 {
    u64::try_from(v.max(0)).unwrap_or(u64::MAX)
}

/// Build the indexes of a database written before them: every hot copy gets an entry
/// (default class, no blob, last read = its chunk's last access or its verification),
/// every warm and cold copy a pack index entry. Idempotent: entries already present are
/// left, so an interrupted run can simply run again.
pub(super) fn backfill(inner: &Inner) -> Result<u64> {
    let db = &inner.db;
    let locs = cf(db, rocks::CF_LOCATIONS)?;
    let index = cf(db, rocks::CF_PACK_LOCATIONS)?;
    let mut tx = Tx::new(inner);
    let mut n = 0u64;
    for item in db.iterator_cf(locs, rocksdb::IteratorMode::Start) {
        let (k, v) = item?;
        let l = decode_location(&k, &v)?;
        if l.tier == Tier::Hot {
            if tx.hot_entry(&l.node, &l.chunk)?.is_none() {
                let placed = l.last_verified_ms.unwrap_or(0);
                let read = inner
                    .chunk(&l.chunk)?
                    .and_then(|c| c.last_access_ms)
                    .map_or(placed, |a| a.max(placed));
                let entry = HotEntry {
                    length: l.length,
                    placed_ms: placed,
                    last_read_ms: read,
                    class: String::new(),
                    blob: None,
                };
                tx.set_hot(&l.node, &l.chunk, None, Some(entry))?;
                n += 1;
            }
        } else {
            let pk = pack_location_key(&l.pack, l.offset, &k);
            if db.get_pinned_cf(index, &pk)?.is_none() {
                tx.batch.put_cf(index, pk, []);
                let d = tx.pack_delta.entry(l.pack.clone()).or_default();
                d.0 += 1;
                d.1 += i128::from(l.length);
                n += 1;
            }
        }
        if tx.batch.len() > 50_000 {
            tx.commit()?;
            tx = Tx::new(inner);
        }
    }
    tx.commit()?;
    Ok(n)
}

/// Recount every pack's live copies and live bytes from the locations (schema version
/// 3 added the bytes), keeping each pack's last read. Packs are few (a pack holds
/// hundreds of chunks), so the counts fit in memory; the locations are streamed.
pub(super) fn recount_packs(inner: &Inner) -> Result<u64> {
    let db = &inner.db;
    let locs = cf(db, rocks::CF_LOCATIONS)?;
    let stats = cf(db, rocks::CF_PACK_STATS)?;
    let mut counts: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for item in db.iterator_cf(locs, rocksdb::IteratorMode::Start) {
        let (k, v) = item?;
        let l = decode_location(&k, &v)?;
        if l.tier != Tier::Hot {
            let c = counts.entry(l.pack).or_default();
            c.0 += 1;
            c.1 += l.length;
        }
    }
    let mut batch = WriteBatch::default();
    for item in db.iterator_cf(stats, rocksdb::IteratorMode::Start) {
        let (k, _) = item?;
        let pack = String::from_utf8_lossy(&k).into_owned();
        counts.entry(pack).or_insert((0, 0));
    }
    let n = counts.len() as u64;
    for (pack, (copies, bytes)) in counts {
        let old = pack_stats(inner, &pack)?;
        let new = PackStats {
            copies,
            last_read: old.last_read,
            live_bytes: Some(bytes),
        };
        if new.copies == 0 && new.last_read.is_none() {
            batch.delete_cf(stats, pack.as_bytes());
        } else {
            batch.put_cf(stats, pack.as_bytes(), new.encode());
        }
    }
    inner.write(batch)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use rocksdb::IteratorMode;

    use super::super::{EmbeddedMeta, SCHEMA_KEY, SCHEMA_VERSION};
    use crate::id::{BlobId, ChunkId};
    use crate::meta::MetaStore;
    use crate::model::*;
    use crate::rocks::{self, cf};
    use crate::settings::HotSettings;

    /// A database from before the engine indexes (schema version 1: locations but no
    /// index entries) gets them built when it is opened, once.
    #[tokio::test]
    async fn opening_a_version_1_database_builds_the_indexes() {
        use crate::meta::{EngineStore, HotOrder, PlacementStore};
        let dir = tempfile::tempdir().unwrap();
        let db = rocks::open(dir.path(), &HotSettings::default()).unwrap();
        let meta = EmbeddedMeta::new(db.clone(), false).unwrap();
        let c = ChunkId::of(b"c");
        let mut blob = BlobRecord {
            id: BlobId::of(b"b"),
            size: 10,
            chunk_count: 1,
            params: ChunkerParams::default(),
            created_ms: 5,
            class: String::new(),
            pin: None,
        };
        let commit = BlobCommit {
            blob: blob.clone(),
            entries: vec![ManifestEntry {
                offset: 0,
                length: 10,
                chunk: c,
            }],
            new_locations: vec![Location::hot(c, "n", 10, 5)],
            node: "n".into(),
        };
        assert_eq!(
            meta.commit_blob(&commit).await.unwrap(),
            CommitOutcome::Committed
        );
        let mut w = Location::hot(c, "", 10, 5);
        w.tier = Tier::Warm;
        w.pack = "warm/p".into();
        meta.add_locations(std::slice::from_ref(&w)).await.unwrap();
        drop(meta);
        // Back to version 1: no index entries, no counters.
        for name in [
            rocks::CF_HOT_COPIES,
            rocks::CF_HOT_LRU,
            rocks::CF_HOT_CLASS,
            rocks::CF_HOT_USAGE,
            rocks::CF_PACK_LOCATIONS,
            rocks::CF_PACK_STATS,
        ] {
            let handle = cf(&db, name).unwrap();
            let keys: Vec<_> = db
                .iterator_cf(handle, IteratorMode::Start)
                .map(|i| i.unwrap().0)
                .collect();
            assert!(!keys.is_empty(), "{name} was empty before the downgrade");
            for k in keys {
                db.delete_cf(handle, k).unwrap();
            }
        }
        db.put_cf(
            cf(&db, rocks::CF_SYSTEM).unwrap(),
            SCHEMA_KEY,
            1u32.to_be_bytes(),
        )
        .unwrap();
        let meta = EmbeddedMeta::new(db.clone(), false).unwrap();
        assert_eq!(meta.hot_bytes("n").await.unwrap(), 10);
        let hot = meta
            .hot_copies("n", &HotOrder::LeastRecentlyRead, u64::MAX, None, 10)
            .await
            .unwrap();
        assert_eq!(hot.len(), 1);
        assert_eq!((hot[0].chunk, hot[0].placed_ms), (c, 5));
        assert_eq!(meta.pack_locations("warm/p").await.unwrap(), vec![w]);
        assert_eq!(meta.usage().await.unwrap().warm.chunks, 0, "no pack record");
        assert_eq!(meta.stats().await.unwrap().schema_version, SCHEMA_VERSION);
        drop(meta);
        // Opening again changes nothing (no second count).
        let meta = EmbeddedMeta::new(db, false).unwrap();
        assert_eq!(meta.hot_bytes("n").await.unwrap(), 10);
        blob.pin = None;
        assert_eq!(meta.blob(&blob.id).await.unwrap(), Some(blob));
    }
}
