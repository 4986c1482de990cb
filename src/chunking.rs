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

/// Chunks a stream fed block by block, with the same cut points as [`cut`] on the
/// whole stream.
///
/// Chunks that lie inside one block are zero-copy slices of it. Only the chunk that
/// straddles two blocks is copied: the unfinished last chunk of a block (the *tail*) is
/// kept, and the next block's first `max - tail` bytes are appended to find where it
/// ends. Memory: the tail, at most `max` bytes, plus the blocks the caller still holds.
#[derive(Debug)]
pub struct StreamChunker {
    params: ChunkerParams,
    /// Bytes of the chunk that may continue in the next block.
    tail: BytesMut,
    /// Stream offset of `tail[0]` (and of everything not yet emitted).
    offset: u64,
}

impl StreamChunker {
    /// A chunker for a stream starting at offset 0.
    pub fn new(params: ChunkerParams) -> Self {
        StreamChunker {
            params,
            tail: BytesMut::new(),
            offset: 0,
        }
    }

    /// Bytes held back because their chunk may continue in the next block.
    pub fn buffered(&self) -> usize {
        self.tail.len()
    }

    /// Cut the next block of the stream, appending every chunk whose end is certain to
    /// `out` as `(offset, bytes)`. Chunks are not hashed here, so the caller can hash
    /// them where it likes.
    pub fn push(&mut self, block: Bytes, out: &mut Vec<(u64, Bytes)>) {
        let max = self.params.max as usize;
        let mut rest = block;
        while !self.tail.is_empty() {
            // The chunk starting at the tail ends within `max` bytes of its start.
            let held = self.tail.len();
            let take = max.saturating_sub(held).min(rest.len());
            self.tail.extend_from_slice(&rest[..take]);
            let first = cut_points(&self.tail, &self.params)
                .first()
                .map_or(self.tail.len(), |p| p.1);
            if first == self.tail.len() && first < max {
                // No cut yet and the block is used up: wait for more input.
                return;
            }
            // A cut before the end of the data (or at `max`) is final: FastCDC decides
            // it from the bytes between the chunk start and the cut alone.
            out.push((self.offset, self.tail.split_to(first).freeze()));
            self.offset += first as u64;
            if first >= held {
                self.tail.clear();
                let _ = rest.split_to(first - held);
                break;
            }
            // The cut fell inside the held bytes: FastCDC tests positions in pairs, so
            // a chunk cut short by the end of the data can end one byte earlier once
            // more data follows. The rest of the held bytes start the next chunk; the
            // bytes appended from `rest` are dropped and appended again.
            self.tail.truncate(held - first);
        }
        let points = cut_points(&rest, &self.params);
        if let Some((&(last_off, last_len), done)) = points.split_last() {
            for &(off, len) in done {
                out.push((self.offset + off as u64, rest.slice(off..off + len)));
            }
            self.offset += last_off as u64;
            self.tail
                .extend_from_slice(&rest[last_off..last_off + last_len]);
        }
    }

    /// End of the stream: emit the held-back last chunk, if any.
    pub fn finish(&mut self, out: &mut Vec<(u64, Bytes)>) {
        if !self.tail.is_empty() {
            let len = self.tail.len() as u64;
            out.push((self.offset, self.tail.split().freeze()));
            self.offset += len;
        }
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
        let mut out = Vec::new();
        s.push(Bytes::new(), &mut out);
        s.finish(&mut out);
        assert!(out.is_empty());
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

    /// Every way of splitting a buffer in two gives the chunks of the whole. (A cut can
    /// move one byte earlier when data follows the end of a block: this found it.)
    #[test]
    fn every_split_point_gives_the_same_chunks() {
        let p = ChunkerParams {
            min: 64,
            avg: 256,
            max: 1024,
        };
        for seed in 1..4 {
            let data = Bytes::from(random_bytes(6000, seed));
            let whole: Vec<(u64, Bytes)> = cut(&data, &p, 0)
                .into_iter()
                .map(|c| (c.offset, c.data))
                .collect();
            for at in 0..=data.len() {
                let mut s = StreamChunker::new(p);
                let mut got = Vec::new();
                s.push(data.slice(..at), &mut got);
                s.push(data.slice(at..), &mut got);
                s.finish(&mut got);
                assert_eq!(got, whole, "seed {seed}, split at {at}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn stream_matches_whole(len in 0usize..60_000, seed in any::<u64>(), flat in any::<bool>(), pieces in proptest::collection::vec(1usize..12_000, 1..20)) {
            // Flat data has few or no content cut points, so chunks of exactly `max` bytes.
            let data = if flat { vec![7u8; len] } else { random_bytes(len, seed) };
            let whole: Vec<(u64, Bytes)> = cut(&Bytes::from(data.clone()), &small(), 0)
                .into_iter().map(|c| (c.offset, c.data)).collect();
            let mut s = StreamChunker::new(small());
            let mut got = Vec::new();
            let mut pos = 0;
            let mut i = 0;
            while pos < data.len() {
                let n = pieces[i % pieces.len()].min(data.len() - pos);
                s.push(Bytes::copy_from_slice(&data[pos..pos + n]), &mut got);
                pos += n;
                i += 1;
                prop_assert!(s.buffered() <= small().max as usize);
            }
            s.finish(&mut got);
            prop_assert_eq!(got, whole);
        }
    }
}
