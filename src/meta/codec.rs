//! Byte layouts of the embedded metadata's keys and values. Fixed-width, big-endian
//! keys so RocksDB's byte order is the logical order (offset order inside a manifest,
//! time order in queues). `u64::MAX` stands for "none" in optional times.

use crate::error::{Error, Result};
use crate::id::{BlobId, ChunkId};
use crate::model::{BlobRecord, ChunkRecord, ChunkerParams, Health, Location, ManifestEntry, Tier};

const NONE: u64 = u64::MAX;

fn opt(v: Option<u64>) -> u64 {
    v.unwrap_or(NONE)
}

fn unopt(v: u64) -> Option<u64> {
    (v != NONE).then_some(v)
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        if self.0.len() < N {
            return Err(Error::corrupt("embedded metadata record is truncated"));
        }
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().map_err(|_| Error::internal("slice length"))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take::<1>()?[0])
    }
}

/// Manifest key: blob id ‖ offset.
pub fn manifest_key(blob: &BlobId, offset: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(blob.as_bytes());
    k[32..].copy_from_slice(&offset.to_be_bytes());
    k
}

/// Manifest value: length ‖ chunk id.
pub fn manifest_value(e: &ManifestEntry) -> [u8; 36] {
    let mut v = [0u8; 36];
    v[..4].copy_from_slice(&e.length.to_be_bytes());
    v[4..].copy_from_slice(e.chunk.as_bytes());
    v
}

/// Decode a manifest key/value pair.
pub fn decode_manifest(key: &[u8], value: &[u8]) -> Result<ManifestEntry> {
    if key.len() != 40 || value.len() != 36 {
        return Err(Error::corrupt("embedded manifest entry has a bad length"));
    }
    let mut k = Reader(&key[32..]);
    let mut v = Reader(value);
    let offset = k.u64()?;
    let length = v.u32()?;
    let chunk = ChunkId::from_slice(&value[4..])?;
    Ok(ManifestEntry {
        offset,
        length,
        chunk,
    })
}

/// Blob record value. Version 2 appends the pin and the policy class to version 1.
pub fn blob_value(b: &BlobRecord) -> Vec<u8> {
    let mut v = Vec::with_capacity(40 + b.class.len());
    v.push(2u8);
    v.extend_from_slice(&b.size.to_be_bytes());
    v.extend_from_slice(&b.chunk_count.to_be_bytes());
    v.extend_from_slice(&b.params.min.to_be_bytes());
    v.extend_from_slice(&b.params.avg.to_be_bytes());
    v.extend_from_slice(&b.params.max.to_be_bytes());
    v.extend_from_slice(&b.created_ms.to_be_bytes());
    v.push(b.pin.map_or(NO_TIER, Tier::code));
    v.extend_from_slice(b.class.as_bytes());
    v
}

/// The pin byte of a blob that is not pinned.
const NO_TIER: u8 = 0xff;

/// Decode a blob record.
pub fn decode_blob(key: &[u8], value: &[u8]) -> Result<BlobRecord> {
    let id = BlobId::from_slice(key)?;
    let mut r = Reader(value);
    let version = r.u8()?;
    if version != 1 && version != 2 {
        return Err(Error::corrupt(format!(
            "blob record {id} has an unknown version"
        )));
    }
    let mut rec = BlobRecord {
        id,
        size: r.u64()?,
        chunk_count: r.u64()?,
        params: ChunkerParams {
            min: r.u32()?,
            avg: r.u32()?,
            max: r.u32()?,
        },
        created_ms: r.u64()?,
        class: String::new(),
        pin: None,
    };
    if version == 2 {
        rec.pin =
            match r.u8()? {
                NO_TIER => None,
                code => Some(tier_of(code).ok_or_else(|| {
                    Error::corrupt(format!("blob record {id} has an unknown pin"))
                })?),
            };
        rec.class = String::from_utf8(r.0.to_vec())
            .map_err(|_| Error::corrupt(format!("blob record {id} has a bad class")))?;
    }
    Ok(rec)
}

/// Inverse of [`Tier::code`].
pub fn tier_of(code: u8) -> Option<Tier> {
    match code {
        0 => Some(Tier::Hot),
        1 => Some(Tier::Warm),
        2 => Some(Tier::Cold),
        _ => None,
    }
}

/// Chunk record value.
pub fn chunk_value(c: &ChunkRecord) -> Vec<u8> {
    let mut v = Vec::with_capacity(36);
    v.extend_from_slice(&c.size.to_be_bytes());
    v.extend_from_slice(&c.refcount.to_be_bytes());
    v.extend_from_slice(&opt(c.zero_since_ms).to_be_bytes());
    v.extend_from_slice(&opt(c.last_access_ms).to_be_bytes());
    v.extend_from_slice(&c.access_count.to_be_bytes());
    v
}

/// Decode a chunk record.
pub fn decode_chunk(key: &[u8], value: &[u8]) -> Result<ChunkRecord> {
    let id = ChunkId::from_slice(key)?;
    let mut r = Reader(value);
    Ok(ChunkRecord {
        id,
        size: r.u32()?,
        refcount: r.u64()?,
        zero_since_ms: unopt(r.u64()?),
        last_access_ms: unopt(r.u64()?),
        access_count: r.u64()?,
    })
}

/// Location key: chunk ‖ tier ‖ node length ‖ node ‖ pack.
pub fn location_key(chunk: &ChunkId, tier: Tier, node: &str, pack: &str) -> Result<Vec<u8>> {
    let node_len = u8::try_from(node.len())
        .map_err(|_| Error::invalid("node ids are limited to 255 bytes"))?;
    let mut k = Vec::with_capacity(34 + node.len() + pack.len());
    k.extend_from_slice(chunk.as_bytes());
    k.push(tier.code());
    k.push(node_len);
    k.extend_from_slice(node.as_bytes());
    k.extend_from_slice(pack.as_bytes());
    Ok(k)
}

/// Key of an existing location.
pub fn key_of(l: &Location) -> Result<Vec<u8>> {
    location_key(&l.chunk, l.tier, &l.node, &l.pack)
}

/// Location value: offset ‖ length ‖ health ‖ last verified.
pub fn location_value(l: &Location) -> Vec<u8> {
    let mut v = Vec::with_capacity(25);
    v.extend_from_slice(&l.offset.to_be_bytes());
    v.extend_from_slice(&l.length.to_be_bytes());
    v.push(match l.health {
        Health::Ok => 0,
        Health::Corrupt => 1,
        Health::Missing => 2,
    });
    v.extend_from_slice(&opt(l.last_verified_ms).to_be_bytes());
    v
}

/// Decode a location.
pub fn decode_location(key: &[u8], value: &[u8]) -> Result<Location> {
    let bad = || Error::corrupt("embedded location record is malformed");
    if key.len() < 34 {
        return Err(bad());
    }
    let chunk = ChunkId::from_slice(&key[..32])?;
    let tier = match key[32] {
        0 => Tier::Hot,
        1 => Tier::Warm,
        2 => Tier::Cold,
        _ => return Err(bad()),
    };
    let node_len = key[33] as usize;
    let rest = &key[34..];
    if rest.len() < node_len {
        return Err(bad());
    }
    let node = String::from_utf8(rest[..node_len].to_vec()).map_err(|_| bad())?;
    let pack = String::from_utf8(rest[node_len..].to_vec()).map_err(|_| bad())?;
    let mut r = Reader(value);
    let offset = r.u64()?;
    let length = r.u64()?;
    let health = match r.u8()? {
        0 => Health::Ok,
        1 => Health::Corrupt,
        2 => Health::Missing,
        _ => return Err(bad()),
    };
    Ok(Location {
        chunk,
        tier,
        node,
        pack,
        offset,
        length,
        health,
        last_verified_ms: unopt(r.u64()?),
    })
}

/// GC queue key: zero-since ‖ chunk id.
pub fn gc_key(zero_since_ms: u64, chunk: &ChunkId) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&zero_since_ms.to_be_bytes());
    k[8..].copy_from_slice(chunk.as_bytes());
    k
}

/// Decode a GC queue key.
pub fn decode_gc_key(key: &[u8]) -> Result<(u64, ChunkId)> {
    if key.len() != 40 {
        return Err(Error::corrupt("embedded gc queue key is malformed"));
    }
    Ok((Reader(&key[..8]).u64()?, ChunkId::from_slice(&key[8..])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let c = ChunkId::of(b"c");
        let l = Location {
            chunk: c,
            tier: Tier::Warm,
            node: "n1".into(),
            pack: "p9".into(),
            offset: 7,
            length: 9,
            health: Health::Corrupt,
            last_verified_ms: None,
        };
        assert_eq!(
            decode_location(&key_of(&l).unwrap(), &location_value(&l)).unwrap(),
            l
        );
        let r = ChunkRecord {
            id: c,
            size: 5,
            refcount: 2,
            zero_since_ms: Some(3),
            last_access_ms: None,
            access_count: 4,
        };
        assert_eq!(decode_chunk(c.as_bytes(), &chunk_value(&r)).unwrap(), r);
        let e = ManifestEntry {
            offset: 1 << 40,
            length: 77,
            chunk: c,
        };
        assert_eq!(
            decode_manifest(
                &manifest_key(&BlobId::of(b"b"), e.offset),
                &manifest_value(&e)
            )
            .unwrap(),
            e
        );
        assert_eq!(decode_gc_key(&gc_key(5, &c)).unwrap(), (5, c));
    }

    fn blob(class: &str, pin: Option<Tier>) -> BlobRecord {
        BlobRecord {
            id: BlobId::of(b"b"),
            size: 1 << 33,
            chunk_count: 3,
            params: ChunkerParams::default(),
            created_ms: 17,
            class: class.into(),
            pin,
        }
    }

    #[test]
    fn blob_records_round_trip_with_class_and_pin() {
        for b in [
            blob("", None),
            blob("archive", Some(Tier::Hot)),
            blob("x", Some(Tier::Warm)),
            blob("", Some(Tier::Cold)),
        ] {
            assert_eq!(decode_blob(b.id.as_bytes(), &blob_value(&b)).unwrap(), b);
        }
    }

    /// Records written before classes and pins (version 1) still decode, as the default
    /// class, unpinned.
    #[test]
    fn version_1_blob_records_decode() {
        let b = blob("", None);
        let mut v1 = vec![1u8];
        v1.extend_from_slice(&b.size.to_be_bytes());
        v1.extend_from_slice(&b.chunk_count.to_be_bytes());
        v1.extend_from_slice(&b.params.min.to_be_bytes());
        v1.extend_from_slice(&b.params.avg.to_be_bytes());
        v1.extend_from_slice(&b.params.max.to_be_bytes());
        v1.extend_from_slice(&b.created_ms.to_be_bytes());
        assert_eq!(decode_blob(b.id.as_bytes(), &v1).unwrap(), b);
        let mut bad = blob_value(&b);
        bad[0] = 3;
        assert_eq!(
            decode_blob(b.id.as_bytes(), &bad).unwrap_err().kind(),
            crate::ErrorKind::Corrupt
        );
        let mut bad_pin = blob_value(&b);
        bad_pin[37] = 9;
        assert!(decode_blob(b.id.as_bytes(), &bad_pin).is_err());
    }

    #[test]
    fn truncated_values_are_corrupt_not_panics() {
        assert_eq!(
            decode_chunk(&[0; 32], &[1, 2]).unwrap_err().kind(),
            crate::ErrorKind::Corrupt
        );
        assert!(decode_location(&[0; 10], &[]).is_err());
    }
}
