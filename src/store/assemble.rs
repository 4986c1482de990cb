//! The bytes of a multi-chunk read, built in order while chunks arrive in any order.
//!
//! A read that spans several chunks must return one contiguous buffer, so each chunk is
//! copied once into it. Doing that copy as each chunk is verified (rather than after the
//! last one) overlaps it with the transfer of the chunks still on the wire.

use std::collections::HashMap;
use std::ops::Range;

use bytes::{Bytes, BytesMut};

use crate::id::ChunkId;
use crate::model::ManifestEntry;

/// An output buffer for the range `start .. end` covered by `entries`.
pub(super) struct Assembly {
    entries: Vec<ManifestEntry>,
    start: u64,
    end: u64,
    out: BytesMut,
    /// Entries before this one are in `out`.
    next: usize,
    /// Bytes (already cut to the range) of entries at or after `next` that arrived
    /// before their predecessors.
    early: Vec<Option<Bytes>>,
    /// Entries of each chunk (a chunk may repeat within a blob).
    by_chunk: HashMap<ChunkId, Vec<usize>>,
}

impl Assembly {
    /// An empty assembly of `start .. end`, whose manifest entries are `entries` (in
    /// offset order, covering the range).
    pub(super) fn new(entries: Vec<ManifestEntry>, start: u64, end: u64) -> Self {
        let mut by_chunk: HashMap<ChunkId, Vec<usize>> = HashMap::with_capacity(entries.len());
        for (k, e) in entries.iter().enumerate() {
            by_chunk.entry(e.chunk).or_default().push(k);
        }
        Assembly {
            early: vec![None; entries.len()],
            out: BytesMut::with_capacity(end.saturating_sub(start) as usize),
            entries,
            start,
            end,
            next: 0,
            by_chunk,
        }
    }

    /// Take the verified bytes of `chunk` for every entry that still needs them. Returns
    /// whether the chunk belongs to this range at all.
    pub(super) fn offer(&mut self, chunk: &ChunkId, bytes: &Bytes) -> bool {
        let Some(ks) = self.by_chunk.get(chunk) else {
            return false;
        };
        for &k in ks {
            if k >= self.next && self.early[k].is_none() {
                let e = &self.entries[k];
                self.early[k] = Some(bytes.slice(slice_of(e, self.start, self.end)));
            }
        }
        self.advance();
        true
    }

    fn advance(&mut self) {
        while let Some(Some(piece)) = self.early.get_mut(self.next).map(Option::take) {
            self.out.extend_from_slice(&piece);
            self.next += 1;
        }
    }

    /// Entries not yet received, in order, with any bytes that arrived early for the
    /// ones after the first gap: what is left to fetch and append with [`Self::push`].
    pub(super) fn remaining(&mut self) -> Vec<(ManifestEntry, Option<Bytes>)> {
        (self.next..self.entries.len())
            .map(|k| (self.entries[k], self.early[k].take()))
            .collect()
    }

    /// Append the next entry's bytes, already cut to the range (see [`slice_of`]).
    pub(super) fn push(&mut self, piece: &[u8]) {
        self.out.extend_from_slice(piece);
        self.next += 1;
    }

    /// The assembled bytes.
    pub(super) fn finish(self) -> Bytes {
        debug_assert_eq!(self.next, self.entries.len());
        debug_assert_eq!(self.out.len() as u64, self.end - self.start);
        self.out.freeze()
    }
}

/// The part of chunk `e` inside `start .. end`, relative to the chunk.
pub(super) fn slice_of(e: &ManifestEntry, start: u64, end: u64) -> Range<usize> {
    let from = start.saturating_sub(e.offset) as usize;
    let to = (end.min(e.end()) - e.offset) as usize;
    from..to
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries_of(chunks: &[&[u8]]) -> Vec<ManifestEntry> {
        let mut offset = 0;
        chunks
            .iter()
            .map(|c| {
                let e = ManifestEntry {
                    offset,
                    length: c.len() as u32,
                    chunk: ChunkId::of(c),
                };
                offset += c.len() as u64;
                e
            })
            .collect()
    }

    #[test]
    fn any_arrival_order_gives_the_range() {
        // The second and fourth chunks are the same bytes.
        let chunks: [&[u8]; 5] = [b"alpha", b"bravo!", b"charlie", b"bravo!", b"delta"];
        let all: Vec<u8> = chunks.concat();
        let entries = entries_of(&chunks);
        for (start, end) in [(0, all.len()), (2, 20), (5, 11), (7, 29)] {
            for order in [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3]] {
                let (s, t) = (start as u64, end as u64);
                let inside: Vec<ManifestEntry> = entries
                    .iter()
                    .filter(|e| e.end() > s && e.offset < t)
                    .copied()
                    .collect();
                let mut a = Assembly::new(inside, s, t);
                for &k in &order {
                    let c = Bytes::from_static(chunks[k]);
                    a.offer(&ChunkId::of(&c), &c);
                }
                assert!(a.remaining().is_empty());
                assert_eq!(
                    &a.finish()[..],
                    &all[start..end],
                    "{start}..{end} {order:?}"
                );
            }
        }
    }

    #[test]
    fn gaps_are_filled_by_push() {
        let chunks: [&[u8]; 4] = [b"one", b"two", b"three", b"four"];
        let all: Vec<u8> = chunks.concat();
        let entries = entries_of(&chunks);
        let mut a = Assembly::new(entries, 1, all.len() as u64 - 1);
        let c = Bytes::from_static(chunks[2]);
        assert!(a.offer(&ChunkId::of(&c), &c));
        assert!(!a.offer(&ChunkId::of(b"other"), &Bytes::from_static(b"other")));
        let rest = a.remaining();
        assert_eq!(rest.len(), 4);
        assert!(rest[2].1.is_some());
        for (k, (e, early)) in rest.into_iter().enumerate() {
            match early {
                Some(piece) => a.push(&piece),
                None => a.push(&chunks[k][slice_of(&e, 1, all.len() as u64 - 1)]),
            }
        }
        assert_eq!(&a.finish()[..], &all[1..all.len() - 1]);
    }
}
