//! Content-defined chunking (DESIGN §3): FastCDC 2020 cut points, BLAKE3 chunk ids.
//!
//! [`cut`] chunks a whole buffer; [`StreamChunker`] chunks a stream fed in pieces and
//! produces exactly the same cut points: a cut found before the end of the buffered
//! data is final (FastCDC decides a cut only from the bytes between the chunk start
//! and the cut), so only the last, possibly truncated chunk is held back until more
//! data or the end of the stream arrives.

use bytes::{Bytes, BytesMut};

use crate::id::ChunkId;
use crate::model::ChunkerParams;

/// One chunk cut from a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Offset inside the blob.
    pub offset: u64,
    /// The bytes (a zero-copy slice of the input).
    pub data: Bytes,
    /// BLAKE3 of `data`.
    pub id: ChunkId,
}

/// Cut points of `data` as `(offset, length)` pairs covering it exactly.
pub fn cut_points(data: &[u8], params: &ChunkerParams) -> Vec<(usize, usize)> {
    if data.is_empty() {
        return Vec::new();
    }
    fastcdc::v2020::FastCDC::new(data, params.min, params.avg, params.max)
        .map(|c| (c.offset, c.length))
        .collect()
}

/// Cut `data` into chunks and hash each one.
pub fn cut(data: &Bytes, params: &ChunkerParams, base_offset: u64) -> Vec<Chunk> {
    cut_points(data, params)
        .into_iter()
        .map(|(off, len)| {
            let slice = data.slice(off..off + len);
            Chunk {
                offset: base_offset + off as u64,
                id: ChunkId::of(&slice),
                data: slice,
            }
        })
        .collect()
}

/// Chunks a stream fed piece by piece, with the same cut points as [`cut`] on the
/// whole stream. Memory: the unconsumed buffer, at most one read batch plus `max`.
#[derive(Debug)]
pub struct StreamChunker {
    params: ChunkerParams,
    buf: BytesMut,
    offset: u64,
}

impl StreamChunker {
    /// A chunker for a stream starting at offset 0.
    pub fn new(params: ChunkerParams) -> Self {
        StreamChunker {
            params,
            buf: BytesMut::new(),
            offset: 0,
        }
    }

    /// Bytes buffered but not yet emitted.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Append input.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The buffer to read into directly (avoids a copy); see [`Self::push`].
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Emit every chunk whose end is certain. With `eof`, emit everything. Chunks are
    /// not hashed here so the caller can hash them in parallel.
    pub fn drain(&mut self, eof: bool) -> Vec<(u64, Bytes)> {
        let points = cut_points(&self.buf, &self.params);
        let keep_last = !eof && !points.is_empty();
        let take = if keep_last {
            points.len() - 1
        } else {
            points.len()
        };
        let mut out = Vec::with_capacity(take);
        if take == 0 {
            return out;
        }
        let consumed = points[take - 1].0 + points[take - 1].1;
        let frozen = self.buf.split_to(consumed).freeze();
        for &(off, len) in &points[..take] {
            out.push((self.offset + off as u64, frozen.slice(off..off + len)));
        }
        self.offset += consumed as u64;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn small() -> ChunkerParams {
        ChunkerParams {
            min: 256,
            avg: 1024,
            max: 4096,
        }
    }

    #[test]
    fn chunks_cover_input_within_bounds() {
        let p = ChunkerParams::default();
        let data = Bytes::from(random_bytes(3 << 20, 7));
        let chunks = cut(&data, &p, 0);
        let mut off = 0;
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(c.offset, off);
            assert!(c.data.len() <= p.max as usize);
            if i + 1 < chunks.len() {
                assert!(c.data.len() >= p.min as usize);
            }
            assert_eq!(c.id, ChunkId::of(&c.data));
            off += c.data.len() as u64;
        }
        assert_eq!(off, data.len() as u64);
        assert!(
            chunks.len() > 20,
            "3 MiB at 64 KiB average gave {} chunks",
            chunks.len()
        );
    }

    #[test]
    fn empty_input_has_no_chunks() {
        assert!(cut(&Bytes::new(), &ChunkerParams::default(), 0).is_empty());
        let mut s = StreamChunker::new(small());
        assert!(s.drain(true).is_empty());
    }

    #[test]
    fn small_insert_changes_only_nearby_chunks() {
        let p = ChunkerParams::default();
        let original = random_bytes(8 << 20, 3);
        let mut edited = original.clone();
        let at = 4 << 20;
        edited.splice(at..at, *b"a few inserted bytes");
        let a: std::collections::HashSet<_> = cut(&Bytes::from(original), &p, 0)
            .into_iter()
            .map(|c| c.id)
            .collect();
        let b = cut(&Bytes::from(edited), &p, 0);
        let changed = b.iter().filter(|c| !a.contains(&c.id)).count();
        assert!(
            (1..=3).contains(&changed),
            "{changed} of {} chunks changed",
            b.len()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn stream_matches_whole(len in 0usize..60_000, seed in any::<u64>(), pieces in proptest::collection::vec(1usize..9000, 1..20)) {
            let data = random_bytes(len, seed);
            let whole: Vec<(u64, Bytes)> = cut(&Bytes::from(data.clone()), &small(), 0)
                .into_iter().map(|c| (c.offset, c.data)).collect();
            let mut s = StreamChunker::new(small());
            let mut got = Vec::new();
            let mut pos = 0;
            let mut i = 0;
            while pos < data.len() {
                let n = pieces[i % pieces.len()].min(data.len() - pos);
                s.push(&data[pos..pos + n]);
                pos += n;
                i += 1;
                got.extend(s.drain(false));
            }
            got.extend(s.drain(true));
            prop_assert_eq!(got, whole);
        }
    }
}
