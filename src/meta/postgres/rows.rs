//! Conversions between strata's model and PostgreSQL rows and parameters.
//!
//! PostgreSQL has no unsigned integers: sizes, offsets, counts and times are `int8` and
//! converted with range checks (a value strata cannot store is `InvalidInput`; a value
//! read back that strata cannot represent is `Internal`).

use tokio_postgres::types::FromSql;
use tokio_postgres::Row;

use super::errors::bad_value;
use crate::error::{Error, Result};
use crate::id::{BlobId, ChunkId};
use crate::model::{BlobRecord, ChunkRecord, ChunkerParams, Health, Location, Tier};

/// Column list matching [`blob_from_row`].
pub(crate) const BLOB_COLUMNS: &str =
    "id, size, chunk_count, chunker_min, chunker_avg, chunker_max, created_ms, class, pin";

/// Column list matching [`chunk_from_row`].
pub(crate) const CHUNK_COLUMNS: &str =
    "id, size, refcount, zero_since_ms, last_access_ms, access_count";

/// Column list matching [`location_from_row`].
pub(crate) const LOCATION_COLUMNS: &str =
    "chunk, tier, node, pack, \"offset\", length, health, last_verified_ms";

/// A `u64` as `int8`, or `InvalidInput` if it does not fit.
pub(crate) fn i64_of(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::invalid(format!("{what} {v} is too large to store")))
}

/// A `usize` limit as `int8`, saturating.
pub(crate) fn limit_of(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// An optional `u64` as `int8`.
pub(crate) fn opt_i64_of(v: Option<u64>, what: &str) -> Result<Option<i64>> {
    v.map(|v| i64_of(v, what)).transpose()
}

/// An `int8` read back as `u64`.
pub(crate) fn u64_of(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| bad_value(what, v))
}

/// A typed column value, with a strata error instead of a panic on mismatch.
pub(crate) fn col<'a, T: FromSql<'a>>(row: &'a Row, idx: usize) -> Result<T> {
    row.try_get(idx).map_err(|e| {
        Error::internal(format!(
            "postgres: cannot read column {idx} of a result row"
        ))
        .with_source(e)
    })
}

/// An `int8` column as `u64`.
pub(crate) fn col_u64(row: &Row, idx: usize, what: &str) -> Result<u64> {
    u64_of(col::<i64>(row, idx)?, what)
}

/// A nullable `int8` column as `Option<u64>`.
pub(crate) fn col_opt_u64(row: &Row, idx: usize, what: &str) -> Result<Option<u64>> {
    col::<Option<i64>>(row, idx)?
        .map(|v| u64_of(v, what))
        .transpose()
}

/// A `bytea` column as a chunk id.
pub(crate) fn col_chunk_id(row: &Row, idx: usize) -> Result<ChunkId> {
    let bytes: &[u8] = col(row, idx)?;
    ChunkId::from_slice(bytes).map_err(|e| bad_value("chunk id", e.context()))
}

/// A `bytea` column as a blob id.
pub(crate) fn col_blob_id(row: &Row, idx: usize) -> Result<BlobId> {
    let bytes: &[u8] = col(row, idx)?;
    BlobId::from_slice(bytes).map_err(|e| bad_value("blob id", e.context()))
}

fn col_u32(row: &Row, idx: usize, what: &str) -> Result<u32> {
    let v: i32 = col(row, idx)?;
    u32::try_from(v).map_err(|_| bad_value(what, v))
}

/// A `u32` chunker parameter as `int4`.
pub(crate) fn i32_of(v: u32, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::invalid(format!("{what} {v} is too large to store")))
}

/// A row of [`BLOB_COLUMNS`].
pub(crate) fn blob_from_row(row: &Row) -> Result<BlobRecord> {
    Ok(BlobRecord {
        id: col_blob_id(row, 0)?,
        size: col_u64(row, 1, "blob size")?,
        chunk_count: col_u64(row, 2, "chunk count")?,
        params: ChunkerParams {
            min: col_u32(row, 3, "chunker min")?,
            avg: col_u32(row, 4, "chunker avg")?,
            max: col_u32(row, 5, "chunker max")?,
        },
        created_ms: col_u64(row, 6, "created_ms")?,
        class: col(row, 7)?,
        pin: col::<Option<&str>>(row, 8)?
            .map(|p| Tier::parse(p).map_err(|e| bad_value("pin", e.context())))
            .transpose()?,
    })
}

/// A blob pin as stored (`NULL`, `'hot'` or `'warm'`).
pub(crate) fn pin_of(pin: Option<Tier>) -> Result<Option<&'static str>> {
    match pin {
        None => Ok(None),
        Some(Tier::Cold) => Err(Error::invalid(
            "a blob can be pinned to hot or warm, not cold",
        )),
        Some(t) => Ok(Some(t.as_str())),
    }
}

/// Increments of a chunk's `(pin_hot, pin_warm)` for one blob pinned to `pin` (a hot pin
/// also keeps the chunk out of cold, so it counts in both).
pub(crate) fn pin_weights(pin: Option<Tier>) -> (i64, i64) {
    match pin {
        Some(Tier::Hot) => (1, 1),
        Some(Tier::Warm) => (0, 1),
        _ => (0, 0),
    }
}

/// A row of [`CHUNK_COLUMNS`].
pub(crate) fn chunk_from_row(row: &Row) -> Result<ChunkRecord> {
    let size = col_u64(row, 1, "chunk size")?;
    Ok(ChunkRecord {
        id: col_chunk_id(row, 0)?,
        size: u32::try_from(size).map_err(|_| bad_value("chunk size", size))?,
        refcount: col_u64(row, 2, "refcount")?,
        zero_since_ms: col_opt_u64(row, 3, "zero_since_ms")?,
        last_access_ms: col_opt_u64(row, 4, "last_access_ms")?,
        access_count: col_u64(row, 5, "access_count")?,
    })
}

/// A row of [`LOCATION_COLUMNS`] (starting at column 0).
pub(crate) fn location_from_row(row: &Row) -> Result<Location> {
    Ok(Location {
        chunk: col_chunk_id(row, 0)?,
        tier: Tier::parse(col(row, 1)?).map_err(|e| bad_value("tier", e.context()))?,
        node: col(row, 2)?,
        pack: col(row, 3)?,
        offset: col_u64(row, 4, "location offset")?,
        length: col_u64(row, 5, "location length")?,
        health: Health::parse(col(row, 6)?).map_err(|e| bad_value("health", e.context()))?,
        last_verified_ms: col_opt_u64(row, 7, "last_verified_ms")?,
    })
}

/// The identity columns `(chunk, tier, node, pack)` of many locations, as parallel
/// arrays for `UNNEST`, sorted and without duplicates (the lock order, see
/// docs/metadata.md).
pub(crate) struct LocationKeys<'a> {
    pub chunk: Vec<&'a [u8]>,
    pub tier: Vec<&'static str>,
    pub node: Vec<&'a str>,
    pub pack: Vec<&'a str>,
    /// For each key, the index of the last input location with that identity.
    pub source: Vec<usize>,
}

impl<'a> LocationKeys<'a> {
    /// Keys of `locs` in lock order; where several share an identity the last wins.
    pub fn of(locs: impl Iterator<Item = &'a Location>) -> Self {
        let mut idx: Vec<(usize, &'a Location)> = locs.enumerate().collect();
        // Stable sort by identity, then keep the last of each run (the latest input).
        idx.sort_by(|(_, a), (_, b)| {
            (a.chunk, a.tier.as_str(), &a.node, &a.pack).cmp(&(
                b.chunk,
                b.tier.as_str(),
                &b.node,
                &b.pack,
            ))
        });
        let mut keys = LocationKeys {
            chunk: Vec::with_capacity(idx.len()),
            tier: Vec::with_capacity(idx.len()),
            node: Vec::with_capacity(idx.len()),
            pack: Vec::with_capacity(idx.len()),
            source: Vec::with_capacity(idx.len()),
        };
        for (pos, (i, l)) in idx.iter().enumerate() {
            if let Some((_, next)) = idx.get(pos + 1) {
                if next.same_copy(l) {
                    continue;
                }
            }
            keys.chunk.push(l.chunk.as_bytes().as_slice());
            keys.tier.push(l.tier.as_str());
            keys.node.push(l.node.as_str());
            keys.pack.push(l.pack.as_str());
            keys.source.push(*i);
        }
        keys
    }

    /// Number of distinct identities.
    pub fn len(&self) -> usize {
        self.chunk.len()
    }
}
