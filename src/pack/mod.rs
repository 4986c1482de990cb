//! Packs: many chunks in one warm or cold object, self-describing (DESIGN §5).
//!
//! A pack is laid out as
//!
//! ```text
//! [chunk 0 stored bytes][chunk 1 stored bytes]…[index][footer]
//! ```
//!
//! * Each chunk is stored zstd-compressed only when that makes it strictly smaller,
//!   otherwise raw (a chunk whose samples do not shrink is not compressed at all). A chunk id is always the BLAKE3 hash of the *uncompressed* bytes.
//! * The index holds one fixed-width, big-endian record per chunk, in pack order:
//!   chunk id (32), offset (u64), stored length (u32), raw length (u32), flags (u8;
//!   bit 0 = zstd). See [`ENTRY_LEN`].
//! * The footer ([`FOOTER_LEN`] bytes, at the very end): magic `STRTPACK`, format
//!   version (u32), chunk count (u32), index offset (u64), index length (u64), BLAKE3
//!   of the index bytes (32).
//!
//! A reader fetches the last [`FOOTER_LEN`] bytes ([`parse_footer`]), then the index
//! with one ranged read ([`parse_index`], which verifies its checksum), then any chunk
//! with one ranged read of `offset..offset + stored_len` ([`decode_chunk`], which
//! verifies the chunk against its id). Adjacent chunks can be fetched together: see
//! [`coalesce`]. The pack id ([`PackId`]) is the BLAKE3 hash of the complete pack.
//!
//! Everything here is pure and synchronous: no I/O. The byte-by-byte format and the
//! reasons for it are in `docs/packs.md`.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::id::ChunkId;

mod coalesce;

pub use coalesce::{coalesce, Fetch};

/// The eight bytes that open the footer.
pub const MAGIC: [u8; 8] = *b"STRTPACK";

/// The only format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Size of the footer in bytes: magic 8 + version 4 + chunk count 4 + index offset 8 +
/// index length 8 + index checksum 32.
pub const FOOTER_LEN: usize = 8 + 4 + 4 + 8 + 8 + 32;

/// Size of one index record in bytes: chunk id 32 + offset 8 + stored length 4 + raw
/// length 4 + flags 1.
pub const ENTRY_LEN: usize = 32 + 8 + 4 + 4 + 1;

/// Index flag bit: the chunk is stored as one zstd frame.
pub const FLAG_ZSTD: u8 = 0x01;

/// The zstd level used when none is configured.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

// ---------------------------------------------------------------------------------------
// PackId
// ---------------------------------------------------------------------------------------

/// The BLAKE3 hash of a complete pack's bytes, naming the pack object.
///
/// Same conventions as [`ChunkId`]: displayed as 64 lower-case hex digits, parsed from
/// exactly 64 hex digits (either case; anything else is `InvalidInput`), serialized as
/// the hex string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackId([u8; 32]);

impl PackId {
    /// Length of the id in bytes.
    pub const LEN: usize = 32;

    /// Hash a complete pack's bytes to get its id.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// Wrap 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parse raw bytes of exactly 32 bytes (e.g. a database key).
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| {
            Error::invalid(format!("pack id must be 32 bytes, got {}", bytes.len()))
        })?;
        Ok(Self(arr))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        s
    }

    /// The first 12 hex digits, for logs.
    pub fn short(&self) -> String {
        let mut s = self.to_hex();
        s.truncate(12);
        s
    }
}

impl From<blake3::Hash> for PackId {
    fn from(h: blake3::Hash) -> Self {
        Self(*h.as_bytes())
    }
}

impl fmt::Display for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PackId({})", self.short())
    }
}

impl FromStr for PackId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        parse_hex(s).map(Self).ok_or_else(|| {
            let shown: String = s.chars().take(80).collect();
            let ellipsis = if s.chars().count() > 80 { "…" } else { "" };
            Error::invalid(format!(
                "malformed pack id {shown:?}{ellipsis}: expected 64 hex digits"
            ))
        })
    }
}

impl Serialize for PackId {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for PackId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn parse_hex(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        *o = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------
// Index entries and footer
// ---------------------------------------------------------------------------------------

/// One chunk's record in a pack index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PackEntry {
    /// BLAKE3 of the chunk's uncompressed bytes.
    pub chunk: ChunkId,
    /// Offset of the stored bytes from the start of the pack.
    pub offset: u64,
    /// Number of stored bytes (compressed size if `compressed`, else the raw size).
    pub stored_len: u32,
    /// Size of the chunk once decoded.
    pub raw_len: u32,
    /// Whether the stored bytes are one zstd frame.
    pub compressed: bool,
}

impl PackEntry {
    /// The byte range to fetch from the pack: `offset..offset + stored_len`.
    pub fn stored_range(&self) -> Range<u64> {
        self.offset..self.offset.saturating_add(u64::from(self.stored_len))
    }

    /// `(offset, stored_len)`, the span form [`coalesce`] takes.
    pub fn span(&self) -> (u64, u32) {
        (self.offset, self.stored_len)
    }

    /// The flags byte written to the index for this entry.
    pub fn flags(&self) -> u8 {
        if self.compressed {
            FLAG_ZSTD
        } else {
            0
        }
    }

    /// Decode this entry's stored bytes (exactly `stored_range()` of the pack) and verify
    /// them: see [`decode_chunk`].
    pub fn decode(&self, stored: &[u8]) -> Result<Bytes> {
        decode_chunk(stored, self.raw_len, self.compressed, &self.chunk)
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.chunk.as_bytes());
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.extend_from_slice(&self.stored_len.to_be_bytes());
        out.extend_from_slice(&self.raw_len.to_be_bytes());
        out.push(self.flags());
    }
}

/// The fixed-size trailer of a pack, as read by [`parse_footer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// Format version; always [`FORMAT_VERSION`] for a parsed footer.
    pub version: u32,
    /// Number of index records.
    pub chunk_count: u32,
    /// Offset of the index from the start of the pack (= total stored chunk bytes).
    pub index_offset: u64,
    /// Length of the index in bytes (= `chunk_count * ENTRY_LEN`).
    pub index_len: u64,
    /// BLAKE3 of the index bytes.
    pub index_hash: [u8; 32],
}

impl Footer {
    /// The byte range of the index inside the pack, for one ranged read.
    pub fn index_range(&self) -> Range<u64> {
        self.index_offset..self.index_offset.saturating_add(self.index_len)
    }

    /// The total pack length this footer implies: chunks + index + footer.
    pub fn pack_len(&self) -> u64 {
        self.index_offset
            .saturating_add(self.index_len)
            .saturating_add(FOOTER_LEN as u64)
    }

    /// `Corrupt` unless `actual` (the object's size, e.g. from a HEAD or the total in a
    /// `Content-Range`) is the length this footer implies. Readers that know the object
    /// size should call this before fetching the index.
    pub fn check_pack_len(&self, actual: u64) -> Result<()> {
        if actual == self.pack_len() {
            Ok(())
        } else {
            Err(Error::corrupt(format!(
                "pack is {actual} bytes but its footer describes {} bytes",
                self.pack_len()
            )))
        }
    }

    /// Encode as the [`FOOTER_LEN`] bytes written at the end of a pack.
    pub fn to_bytes(&self) -> [u8; FOOTER_LEN] {
        let mut out = [0u8; FOOTER_LEN];
        let fields: [&[u8]; 6] = [
            &MAGIC,
            &self.version.to_be_bytes(),
            &self.chunk_count.to_be_bytes(),
            &self.index_offset.to_be_bytes(),
            &self.index_len.to_be_bytes(),
            &self.index_hash,
        ];
        let mut at = 0;
        for f in fields {
            out[at..at + f.len()].copy_from_slice(f);
            at += f.len();
        }
        out
    }
}

/// Reads fixed-size big-endian fields off the front of a slice.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or_else(|| Error::corrupt("pack record is truncated"))?;
        self.0 = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        self.take().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64> {
        self.take().map(u64::from_be_bytes)
    }
}

/// Parse the footer from the last [`FOOTER_LEN`] bytes of `tail`.
///
/// `tail` may be exactly the footer or any longer suffix of the pack (a reader may fetch
/// more than the footer to get a small index in the same request). Returns `Corrupt` if
/// `tail` is shorter than the footer, the magic is wrong, the version is unknown, the
/// index length is not `chunk_count * ENTRY_LEN`, or the implied pack length overflows.
/// The index checksum is checked later, by [`parse_index`].
pub fn parse_footer(tail: &[u8]) -> Result<Footer> {
    let start = tail.len().checked_sub(FOOTER_LEN).ok_or_else(|| {
        Error::corrupt(format!(
            "pack tail is {} bytes, shorter than the {FOOTER_LEN}-byte footer",
            tail.len()
        ))
    })?;
    let mut c = Cursor(&tail[start..]);
    let magic: [u8; 8] = c.take()?;
    if magic != MAGIC {
        return Err(Error::corrupt("not a pack: bad footer magic"));
    }
    let version = c.u32()?;
    if version != FORMAT_VERSION {
        return Err(Error::corrupt(format!(
            "unknown pack format version {version} (this build reads {FORMAT_VERSION})"
        )));
    }
    let footer = Footer {
        version,
        chunk_count: c.u32()?,
        index_offset: c.u64()?,
        index_len: c.u64()?,
        index_hash: c.take()?,
    };
    check_footer_lengths(&footer)?;
    Ok(footer)
}

fn check_footer_lengths(footer: &Footer) -> Result<()> {
    let expected = u64::from(footer.chunk_count) * ENTRY_LEN as u64;
    if footer.index_len != expected {
        return Err(Error::corrupt(format!(
            "pack footer: index length {} does not match {} chunks of {ENTRY_LEN} bytes",
            footer.index_len, footer.chunk_count
        )));
    }
    footer
        .index_offset
        .checked_add(footer.index_len)
        .and_then(|end| end.checked_add(FOOTER_LEN as u64))
        .ok_or_else(|| Error::corrupt("pack footer: index offset out of range"))?;
    Ok(())
}

/// Parse and verify the index described by `footer`.
///
/// `index_bytes` must be exactly the pack's bytes in `footer.index_range()`. Returns the
/// entries in pack order. `Corrupt` if the length or the BLAKE3 checksum does not match
/// the footer, or if the records are inconsistent: unknown flag bits, a compressed entry
/// not smaller than its raw length, a raw entry whose stored and raw lengths differ,
/// chunks that are not back to back from offset 0 up to the index, or a chunk id listed
/// twice.
pub fn parse_index(footer: &Footer, index_bytes: &[u8]) -> Result<Vec<PackEntry>> {
    if footer.version != FORMAT_VERSION {
        return Err(Error::corrupt(format!(
            "unknown pack format version {}",
            footer.version
        )));
    }
    check_footer_lengths(footer)?;
    if index_bytes.len() as u64 != footer.index_len {
        return Err(Error::corrupt(format!(
            "pack index is {} bytes, footer says {}",
            index_bytes.len(),
            footer.index_len
        )));
    }
    if blake3::hash(index_bytes) != blake3::Hash::from(footer.index_hash) {
        return Err(Error::corrupt("pack index checksum mismatch"));
    }

    let mut entries = Vec::with_capacity(index_bytes.len() / ENTRY_LEN);
    let mut seen = HashSet::with_capacity(entries.capacity());
    let mut next_offset = 0u64;
    for (i, record) in index_bytes.chunks_exact(ENTRY_LEN).enumerate() {
        let mut c = Cursor(record);
        let chunk = ChunkId::from_bytes(c.take()?);
        let offset = c.u64()?;
        let stored_len = c.u32()?;
        let raw_len = c.u32()?;
        let flags = c.u8()?;
        let bad = |what: String| Error::corrupt(format!("pack index entry {i}: {what}"));
        if flags & !FLAG_ZSTD != 0 {
            return Err(bad(format!("unknown flags {flags:#04x}")));
        }
        let compressed = flags & FLAG_ZSTD != 0;
        if compressed && stored_len >= raw_len {
            return Err(bad(format!(
                "compressed to {stored_len} bytes, not smaller than its {raw_len} raw bytes"
            )));
        }
        if !compressed && stored_len != raw_len {
            return Err(bad(format!(
                "stored raw but stored length {stored_len} != raw length {raw_len}"
            )));
        }
        if offset != next_offset {
            return Err(bad(format!(
                "offset {offset}, expected {next_offset} (chunks are back to back)"
            )));
        }
        next_offset = offset
            .checked_add(u64::from(stored_len))
            .ok_or_else(|| bad("offset overflows".to_string()))?;
        if !seen.insert(chunk) {
            return Err(bad(format!("chunk {} listed twice", chunk.short())));
        }
        entries.push(PackEntry {
            chunk,
            offset,
            stored_len,
            raw_len,
            compressed,
        });
    }
    if next_offset != footer.index_offset {
        return Err(Error::corrupt(format!(
            "pack chunks end at {next_offset} but the footer puts the index at {}",
            footer.index_offset
        )));
    }
    Ok(entries)
}

/// Parse and verify the index of a complete pack held in memory.
///
/// `Corrupt` if the pack is truncated or extended (its length must be exactly what the
/// footer describes), or for anything [`parse_footer`] or [`parse_index`] rejects. Chunk
/// bytes are not checked; see [`verify_pack`].
pub fn read_index(pack: &[u8]) -> Result<Vec<PackEntry>> {
    let footer = parse_footer(pack)?;
    footer.check_pack_len(pack.len() as u64)?;
    let index = slice_range(pack, footer.index_range())?;
    parse_index(&footer, index)
}

/// Parse the index of a complete pack and decode and verify every chunk in it.
///
/// This is the "verify the copy" step before a pack's locations are committed, and the
/// check a scrubber runs. Returns the entries on success.
pub fn verify_pack(pack: &[u8]) -> Result<Vec<PackEntry>> {
    let entries = read_index(pack)?;
    for entry in &entries {
        extract_chunk(pack, entry)?;
    }
    Ok(entries)
}

/// Decode and verify one chunk of a complete pack held in memory.
///
/// `Corrupt` if the entry's range lies outside `pack`, or as [`decode_chunk`].
pub fn extract_chunk(pack: &[u8], entry: &PackEntry) -> Result<Bytes> {
    entry.decode(slice_range(pack, entry.stored_range())?)
}

fn slice_range(bytes: &[u8], range: Range<u64>) -> Result<&[u8]> {
    let out_of_range = || {
        Error::corrupt(format!(
            "range {}..{} lies outside the {}-byte pack",
            range.start,
            range.end,
            bytes.len()
        ))
    };
    let start = usize::try_from(range.start).map_err(|_| out_of_range())?;
    let end = usize::try_from(range.end).map_err(|_| out_of_range())?;
    bytes.get(start..end).ok_or_else(out_of_range)
}

// ---------------------------------------------------------------------------------------
// Decoding chunks
// ---------------------------------------------------------------------------------------

/// Decode a chunk's stored bytes and verify them against `expected`.
///
/// `stored` is exactly the pack's bytes at `offset..offset + stored_len` (what a ranged
/// read returns). If `compressed`, it must be one zstd frame declaring `raw_len` bytes of
/// content; it is decompressed into a buffer of exactly `raw_len` bytes, so a frame that
/// expands further (a zstd bomb) fails rather than allocating. Otherwise it must be
/// exactly `raw_len` bytes. Then the BLAKE3 hash of the result must equal `expected`.
/// Any failure is `Corrupt`.
pub fn decode_chunk(
    stored: &[u8],
    raw_len: u32,
    compressed: bool,
    expected: &ChunkId,
) -> Result<Bytes> {
    if compressed {
        let raw = decompress_bounded(stored, raw_len, expected)?;
        verify(&raw, expected)?;
        Ok(Bytes::from(raw))
    } else {
        check_raw_len(stored, raw_len, expected)?;
        verify(stored, expected)?;
        Ok(Bytes::copy_from_slice(stored))
    }
}

/// [`decode_chunk`] for stored bytes already in a [`Bytes`]: a raw chunk is returned
/// without copying (a slice of `stored`).
pub fn decode_chunk_owned(
    stored: Bytes,
    raw_len: u32,
    compressed: bool,
    expected: &ChunkId,
) -> Result<Bytes> {
    if compressed {
        decode_chunk(&stored, raw_len, compressed, expected)
    } else {
        check_raw_len(&stored, raw_len, expected)?;
        verify(&stored, expected)?;
        Ok(stored)
    }
}

fn check_raw_len(stored: &[u8], raw_len: u32, expected: &ChunkId) -> Result<()> {
    if stored.len() as u64 == u64::from(raw_len) {
        Ok(())
    } else {
        Err(Error::corrupt(format!(
            "chunk {}: {} stored bytes, expected {raw_len}",
            expected.short(),
            stored.len()
        )))
    }
}

fn verify(raw: &[u8], expected: &ChunkId) -> Result<()> {
    let actual = ChunkId::of(raw);
    if actual == *expected {
        Ok(())
    } else {
        Err(Error::corrupt(format!(
            "chunk {}: bytes hash to {}",
            expected.short(),
            actual.short()
        )))
    }
}

fn decompress_bounded(stored: &[u8], raw_len: u32, expected: &ChunkId) -> Result<Vec<u8>> {
    use zstd::zstd_safe;

    let bad = |what: String| Error::corrupt(format!("chunk {}: {what}", expected.short()));
    // Exactly one frame, covering all the stored bytes.
    match zstd_safe::find_frame_compressed_size(stored) {
        Ok(n) if n == stored.len() => {}
        Ok(n) => {
            return Err(bad(format!(
                "{} bytes after the zstd frame",
                stored.len().saturating_sub(n)
            )))
        }
        Err(code) => {
            return Err(bad(format!(
                "not a zstd frame ({})",
                zstd_safe::get_error_name(code)
            )))
        }
    }
    // The frame must declare the size the index records, before anything is allocated.
    match zstd_safe::get_frame_content_size(stored) {
        Ok(Some(n)) if n == u64::from(raw_len) => {}
        Ok(Some(n)) => {
            return Err(bad(format!(
                "zstd frame declares {n} bytes, index says {raw_len}"
            )))
        }
        Ok(None) => return Err(bad("zstd frame does not declare its size".to_string())),
        Err(_) => return Err(bad("unreadable zstd frame header".to_string())),
    }
    let cap = usize::try_from(raw_len)
        .map_err(|_| Error::invalid(format!("chunk of {raw_len} bytes is too large")))?;
    let mut out = Vec::with_capacity(cap);
    let mut dctx = zstd::bulk::Decompressor::new()
        .map_err(|e| Error::internal("creating a zstd decompressor").with_source(e))?;
    // `decompress_to_buffer` writes only into the spare capacity: it fails rather than
    // grow the buffer past `raw_len`.
    let n = dctx
        .decompress_to_buffer(stored, &mut out)
        .map_err(|e| bad("zstd decompression failed".to_string()).with_source(e))?;
    if n != cap || out.len() != cap {
        return Err(bad(format!(
            "decompressed to {n} bytes, expected {raw_len}"
        )));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Building packs
// ---------------------------------------------------------------------------------------

/// A finished pack: its id, its complete bytes, and its index in pack order.
#[derive(Clone)]
pub struct BuiltPack {
    /// BLAKE3 of `bytes`.
    pub id: PackId,
    /// The complete pack: chunks, index, footer.
    pub bytes: Bytes,
    /// One entry per distinct chunk, in the order they were added.
    pub entries: Vec<PackEntry>,
}

impl fmt::Debug for BuiltPack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuiltPack")
            .field("id", &self.id)
            .field("len", &self.bytes.len())
            .field("chunks", &self.entries.len())
            .finish()
    }
}

/// Accumulates chunks into a pack in memory, then [`finish`](PackBuilder::finish)es it.
///
/// Typical use: `add` chunks until [`is_full`](PackBuilder::is_full), then `finish`, upload
/// the bytes under the [`PackId`], verify, and commit the entries' locations.
pub struct PackBuilder {
    target_bytes: usize,
    level: i32,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    scratch: Vec<u8>,
    data: Vec<u8>,
    entries: Vec<PackEntry>,
    seen: HashSet<ChunkId>,
}

impl fmt::Debug for PackBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PackBuilder")
            .field("target_bytes", &self.target_bytes)
            .field("level", &self.level)
            .field("len_bytes", &self.data.len())
            .field("chunks", &self.entries.len())
            .finish()
    }
}

impl PackBuilder {
    /// An empty builder aiming at `target_bytes` of stored chunk bytes, compressing at
    /// `zstd_level` ([`DEFAULT_ZSTD_LEVEL`] is 3; 0 means zstd's default; levels outside
    /// zstd's supported range are clamped to it).
    pub fn new(target_bytes: usize, zstd_level: i32) -> Self {
        let range = zstd::compression_level_range();
        PackBuilder {
            target_bytes,
            level: zstd_level.clamp(*range.start(), *range.end()),
            compressor: None,
            scratch: Vec::new(),
            data: Vec::new(),
            entries: Vec::new(),
            seen: HashSet::new(),
        }
    }

    /// An empty builder with this one's target size and compression level.
    pub fn empty_like(&self) -> PackBuilder {
        PackBuilder::new(self.target_bytes, self.level)
    }

    /// Add a chunk whose uncompressed bytes are `raw`.
    ///
    /// `Corrupt` if `raw` does not hash to `id`. A chunk id already in this pack is
    /// verified and then skipped. `InvalidInput` if the chunk is 4 GiB or larger, or the
    /// pack already holds `u32::MAX` chunks. The chunk is stored zstd-compressed only
    /// when that is strictly smaller than `raw`.
    pub fn add(&mut self, id: ChunkId, raw: &[u8]) -> Result<()> {
        let actual = ChunkId::of(raw);
        if actual != id {
            return Err(Error::corrupt(format!(
                "chunk {}: bytes hash to {}",
                id.short(),
                actual.short()
            )));
        }
        self.add_verified(id, raw)
    }

    /// [`Self::add`] of bytes the caller has just verified against `id` (hashing them
    /// again would double the CPU cost of a bulk move).
    pub fn add_verified(&mut self, id: ChunkId, raw: &[u8]) -> Result<()> {
        let raw_len = u32::try_from(raw.len()).map_err(|_| {
            Error::invalid(format!(
                "chunk {} is {} bytes; a pack holds chunks under 4 GiB",
                id.short(),
                raw.len()
            ))
        })?;
        if self.seen.contains(&id) {
            return Ok(());
        }
        if self.entries.len() >= u32::MAX as usize {
            return Err(Error::invalid(
                "pack already holds the maximum number of chunks",
            ));
        }

        let offset = self.data.len() as u64;
        let compressed_len = self.compress(raw)?;
        let (stored_len, compressed) = match compressed_len {
            Some(n) if n < raw.len() => {
                self.data.extend_from_slice(&self.scratch[..n]);
                (n, true)
            }
            _ => {
                self.data.extend_from_slice(raw);
                (raw.len(), false)
            }
        };
        let stored_len = u32::try_from(stored_len)
            .map_err(|_| Error::internal("stored length exceeds the raw length"))?;
        self.entries.push(PackEntry {
            chunk: id,
            offset,
            stored_len,
            raw_len,
            compressed,
        });
        self.seen.insert(id);
        Ok(())
    }

    /// Compress `raw` into `self.scratch`, returning the compressed length, or `None` for
    /// an empty chunk (nothing to gain).
    fn compress(&mut self, raw: &[u8]) -> Result<Option<usize>> {
        if raw.is_empty() {
            return Ok(None);
        }
        let compressor = match &mut self.compressor {
            Some(c) => c,
            slot => slot.insert(
                zstd::bulk::Compressor::new(self.level)
                    .map_err(|e| Error::internal("creating a zstd compressor").with_source(e))?,
            ),
        };
        if raw.len() >= PROBE_MIN_CHUNK && !probe_compressible(compressor, raw, &mut self.scratch)?
        {
            return Ok(None);
        }
        self.scratch.clear();
        self.scratch
            .reserve(zstd::zstd_safe::compress_bound(raw.len()));
        let n = compressor
            .compress_to_buffer(raw, &mut self.scratch)
            .map_err(|e| Error::internal("zstd compression failed").with_source(e))?;
        Ok(Some(n))
    }

    /// Stored chunk bytes so far (excluding the index and footer still to come).
    pub fn len_bytes(&self) -> usize {
        self.data.len()
    }

    /// Whether the stored bytes have reached the target size.
    pub fn is_full(&self) -> bool {
        self.data.len() >= self.target_bytes
    }

    /// Whether no chunk has been added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of distinct chunks added.
    pub fn chunk_count(&self) -> usize {
        self.entries.len()
    }

    /// Whether chunk `id` is already in this pack.
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.seen.contains(id)
    }

    /// Append the index and footer and return the finished pack.
    ///
    /// `InvalidInput` if no chunk was added: an empty pack is a valid format (a footer
    /// alone, which readers accept) but there is never a reason to store one.
    pub fn finish(self) -> Result<BuiltPack> {
        if self.entries.is_empty() {
            return Err(Error::invalid("refusing to finish an empty pack"));
        }
        let PackBuilder {
            mut data, entries, ..
        } = self;
        let chunk_count = u32::try_from(entries.len())
            .map_err(|_| Error::internal("pack chunk count exceeds u32"))?;
        let index_offset = data.len() as u64;
        let index_len = entries.len() * ENTRY_LEN;
        data.reserve_exact(index_len + FOOTER_LEN);
        for e in &entries {
            e.write_to(&mut data);
        }
        let index_hash = *blake3::hash(&data[data.len() - index_len..]).as_bytes();
        let footer = Footer {
            version: FORMAT_VERSION,
            chunk_count,
            index_offset,
            index_len: index_len as u64,
            index_hash,
        };
        data.extend_from_slice(&footer.to_bytes());
        let id = PackId::of(&data);
        Ok(BuiltPack {
            id,
            bytes: Bytes::from(data),
            entries,
        })
    }
}

/// Chunks this large are probed before they are compressed whole.
const PROBE_MIN_CHUNK: usize = 16 * 1024;
/// Bytes of each probe sample.
const PROBE_BYTES: usize = 4096;

/// Whether any of three samples of `raw` (start, middle, end) shrinks by at least
/// 1/32 under `compressor`. Incompressible chunks (media, encrypted or already
/// compressed data) then skip a whole-chunk zstd pass that would be thrown away: on
/// random data that pass was half of a demotion's CPU time. A chunk whose samples all
/// fail to shrink is stored raw, at worst a few percent larger than zstd would make it.
fn probe_compressible(
    compressor: &mut zstd::bulk::Compressor<'static>,
    raw: &[u8],
    scratch: &mut Vec<u8>,
) -> Result<bool> {
    let mid = raw.len() / 2 - PROBE_BYTES / 2;
    for start in [0, mid, raw.len() - PROBE_BYTES] {
        let sample = &raw[start..start + PROBE_BYTES];
        scratch.clear();
        scratch.reserve(zstd::zstd_safe::compress_bound(sample.len()));
        let n = compressor
            .compress_to_buffer(sample, scratch)
            .map_err(|e| Error::internal("zstd compression failed").with_source(e))?;
        if n < sample.len() - sample.len() / 32 {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests;
