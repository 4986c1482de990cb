//! Reading chunks from packs: ranged GETs coalesced per pack, every chunk decoded and
//! verified against its id before it is returned.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use futures::stream::{self, BoxStream, Stream, StreamExt};

use super::{parse_pack_name, Tiers};
use crate::error::{Error, ErrorKind, Result};
use crate::id::ChunkId;
use crate::model::{Location, Tier};
use crate::object::ByteChunks;
use crate::pack::{coalesce, decode_chunk, decode_chunk_owned};

/// Ranged GETs of one read call in flight at once.
const GETS_IN_FLIGHT: usize = 4;
/// Largest chunk a pack may declare when its raw length is not known (the chunker's
/// maximum `max`), so a corrupt zstd header cannot ask for a huge buffer.
const MAX_CHUNK_BYTES: u64 = 1 << 24;

/// One chunk to read from a warm or cold copy.
#[derive(Debug, Clone)]
pub struct ChunkRead {
    /// The chunk.
    pub chunk: ChunkId,
    /// Its uncompressed length, when known (from a manifest); otherwise inferred from
    /// the stored bytes.
    pub raw_len: Option<u32>,
    /// The copy to read (a warm or cold location).
    pub location: Location,
}

/// Decode a chunk's stored bytes (exactly its span of the pack) and verify them.
///
/// With `raw_len` known, a stored length below it means zstd (packs compress a chunk only
/// when that makes it strictly smaller). Without it, the bytes are tried raw first, then
/// as a zstd frame declaring at most 16 MiB. `Corrupt` unless the result hashes to `id`.
pub fn decode_stored(stored: Bytes, id: &ChunkId, raw_len: Option<u32>) -> Result<Bytes> {
    match raw_len {
        Some(n) => {
            let compressed = (stored.len() as u64) < u64::from(n);
            decode_chunk_owned(stored, n, compressed, id)
        }
        None => {
            if ChunkId::of(&stored) == *id {
                return Ok(stored);
            }
            match zstd::zstd_safe::get_frame_content_size(&stored) {
                Ok(Some(n)) if n <= MAX_CHUNK_BYTES && n > stored.len() as u64 => {
                    decode_chunk(&stored, n as u32, true, id)
                }
                _ => Err(Error::corrupt(format!(
                    "chunk {}: stored bytes do not match its id",
                    id.short()
                ))),
            }
        }
    }
}

/// A copy of `e` (same kind and context) for each chunk a failed GET served.
fn copy_err(e: &Error, pack: &str) -> Error {
    Error::new(e.kind(), format!("pack {pack}: {}", e.context()))
}

/// The bytes of one ranged GET received so far, as the pieces they arrived in (those
/// no pending chunk needs any more are dropped).
struct Received {
    end: u64,
    pieces: VecDeque<(u64, Bytes)>,
}

impl Received {
    fn new(start: u64) -> Self {
        Received {
            end: start,
            pieces: VecDeque::new(),
        }
    }

    /// Drop the pieces that end at or before `offset`. A chunk that lies inside one
    /// piece keeps it alive through its slice; the others would stay until the end of
    /// the GET, up to `max_read_bytes` of them besides the chunks copied out.
    fn release_before(&mut self, offset: u64) {
        while self
            .pieces
            .front()
            .is_some_and(|(at, p)| at + p.len() as u64 <= offset)
        {
            self.pieces.pop_front();
        }
    }

    fn push(&mut self, piece: Bytes) {
        let at = self.end;
        self.end += piece.len() as u64;
        self.pieces.push_back((at, piece));
    }

    /// Bytes `from .. to` (within what was received): a slice of one piece when they lie
    /// in one, else a copy.
    fn slice(&self, from: u64, to: u64) -> Bytes {
        let first = self
            .pieces
            .partition_point(|(at, p)| at + p.len() as u64 <= from);
        if let Some((at, p)) = self.pieces.get(first) {
            if to <= at + p.len() as u64 {
                return p.slice((from - at) as usize..(to - at) as usize);
            }
        }
        let mut out = bytes::BytesMut::with_capacity((to - from) as usize);
        for (at, p) in self.pieces.range(first..) {
            if *at >= to {
                break;
            }
            let lo = from.max(*at) - at;
            let hi = to.min(at + p.len() as u64) - at;
            out.extend_from_slice(&p[lo as usize..hi as usize]);
        }
        out.freeze()
    }
}

/// One ranged GET: the pack, the byte range, and the read indices it serves.
struct Job {
    tier: Tier,
    pack: String,
    range: std::ops::Range<u64>,
    members: Vec<usize>,
}

impl Tiers {
    /// Read every chunk of `reads`, yielding `(index into reads, result)` as each chunk
    /// is decoded and verified, so a caller can use the first chunks while later ones
    /// are still arriving. Every index is yielded exactly once. Reads of one pack are
    /// merged into as few ranged GETs as the coalescing settings allow; GETs run a few at
    /// a time. A failed GET fails the chunks it served with its error kind (`NotFound`,
    /// `RestorePending`, `Unavailable`, ...); a chunk whose bytes do not verify is
    /// `Corrupt`.
    pub fn read_stream<'a>(
        &'a self,
        reads: &'a [ChunkRead],
    ) -> impl Stream<Item = (usize, Result<Bytes>)> + Send + 'a {
        let mut early = Vec::new();
        let mut groups: BTreeMap<(Tier, String), Vec<usize>> = BTreeMap::new();
        for (i, r) in reads.iter().enumerate() {
            let l = &r.location;
            match parse_pack_name(&l.pack) {
                Ok((tier, _)) if tier == l.tier && u32::try_from(l.length).is_ok() => {
                    groups.entry((tier, l.pack.clone())).or_default().push(i);
                }
                Ok(_) => early.push((
                    i,
                    Err(Error::corrupt(format!(
                        "location of chunk {} in pack {} is inconsistent",
                        r.chunk.short(),
                        l.pack
                    ))),
                )),
                Err(e) => early.push((i, Err(e))),
            }
        }
        let mut jobs = Vec::new();
        for ((tier, pack), members) in groups {
            let spans: Vec<(u64, u32)> = members
                .iter()
                .map(|&i| (reads[i].location.offset, reads[i].location.length as u32))
                .collect();
            for fetch in coalesce(&spans, self.gap, self.max_read) {
                let members = fetch.members.iter().map(|&m| members[m]).collect();
                jobs.push(Job {
                    tier,
                    pack: pack.clone(),
                    range: fetch.range,
                    members,
                });
            }
        }
        // Each GET's chunks are verified as their bytes arrive, so hashing overlaps the
        // transfer instead of following it.
        let fetched = stream::iter(jobs)
            .map(move |job| self.job_stream(job, reads))
            .flatten_unordered(GETS_IN_FLIGHT);
        stream::iter(early).chain(fetched)
    }

    /// One ranged GET, yielding its chunks in the order their last byte arrives.
    fn job_stream<'a>(
        &'a self,
        job: Job,
        reads: &'a [ChunkRead],
    ) -> BoxStream<'a, (usize, Result<Bytes>)> {
        let mut pending = job.members.clone();
        // Pending members, the one that completes first last.
        pending.sort_by_key(|&i| std::cmp::Reverse(end_of(&reads[i])));
        let state = JobState {
            received: Received::new(job.range.start),
            job,
            body: None,
            pending,
            ready: VecDeque::new(),
        };
        stream::unfold(state, move |mut st| async move {
            let item = st.next(self, reads).await?;
            Some((item, st))
        })
        .boxed()
    }
}

/// The size of the pack object when a ranged GET was refused as out of range
/// (`InvalidInput` from the object store) because the object is shorter than the
/// span its copies were recorded at: the pack was truncated. Decided by the
/// object's size from a HEAD, not by the error's text; `None` for any other error.
async fn truncated_at(tiers: &Tiers, tier: Tier, pack: &str, end: u64, e: &Error) -> Option<u64> {
    if e.kind() != ErrorKind::InvalidInput {
        return None;
    }
    let t = tiers.get(tier).ok()?;
    parse_pack_name(pack).ok()?;
    let meta = t.store().head(pack).await.ok()?;
    (meta.size < end).then_some(meta.size)
}

fn end_of(r: &ChunkRead) -> u64 {
    r.location.offset + r.location.length
}

/// The progress of one ranged GET.
struct JobState {
    job: Job,
    body: Option<ByteChunks>,
    received: Received,
    pending: Vec<usize>,
    ready: VecDeque<(usize, Result<Bytes>)>,
}

impl JobState {
    /// The next decoded chunk of this GET (starting it on the first call), or `None`
    /// once every member has been yielded.
    async fn next(&mut self, tiers: &Tiers, reads: &[ChunkRead]) -> Option<(usize, Result<Bytes>)> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            if self.pending.is_empty() {
                return None;
            }
            if self.body.is_none() {
                let job = &self.job;
                let body = match (tiers.get(job.tier), parse_pack_name(&job.pack)) {
                    (Ok(t), Ok(_)) => {
                        t.store()
                            .get_range_stream(&job.pack, job.range.clone())
                            .await
                    }
                    (Err(e), _) | (_, Err(e)) => Err(e),
                };
                match body {
                    Ok(b) => self.body = Some(b),
                    Err(e) => {
                        let (tier, pack, end) =
                            (self.job.tier, self.job.pack.clone(), self.job.range.end);
                        match truncated_at(tiers, tier, &pack, end, &e).await {
                            Some(size) => self.cut_at(size, reads, &e),
                            None => self.fail_pending(&e),
                        }
                        continue;
                    }
                }
            }
            let piece = match self.body.as_mut() {
                Some(body) => body.next().await,
                None => None,
            };
            match piece {
                Some(Ok(piece)) => {
                    self.received.push(piece);
                    self.decode_ready(reads);
                }
                Some(Err(e)) => self.fail_pending(&e),
                None => self.short_body(tiers, reads).await,
            }
        }
    }

    /// A truncated pack damages the copies past its end: they fail `Corrupt` (the read
    /// path marks them and scrub repairs them), not `InvalidInput`. The members before
    /// the cut are read again by a GET that stops at the last of them.
    fn cut_at(&mut self, size: u64, reads: &[ChunkRead], e: &Error) {
        let cut = Error::corrupt(format!(
            "the object is {size} bytes, shorter than the copies recorded in it (up to byte \
             {}): truncated ({e})",
            self.job.range.end
        ));
        let (past, before): (Vec<usize>, Vec<usize>) = self
            .pending
            .iter()
            .partition(|&&i| end_of(&reads[i]) > size);
        for i in past {
            self.ready
                .push_back((i, Err(copy_err(&cut, &self.job.pack))));
        }
        self.pending = before;
        if let Some(end) = self.pending.iter().map(|&i| end_of(&reads[i])).max() {
            self.job.range.end = end;
        }
    }

    /// The body ended before the bytes of the pending members arrived, without an
    /// error. That alone does not show the object is damaged: a connection closed
    /// early, a proxy or a store breaking the `get_range` contract cut the transfer,
    /// and the object may be whole. Marking its copies `Corrupt` would have scrub
    /// replace, and gc leave behind, copies that are fine. So a HEAD decides, as for
    /// a refused range (`truncated_at`): members ending past the object's end are
    /// `Corrupt` (the pack was truncated); the others are `Unavailable` (a retry
    /// reads them); a failed HEAD fails them with its own error.
    async fn short_body(&mut self, tiers: &Tiers, reads: &[ChunkRead]) {
        let (pack, got, want) = (self.job.pack.clone(), self.received.end, self.job.range.end);
        let head = match tiers.get(self.job.tier) {
            Ok(t) => t.store().head(&pack).await,
            Err(e) => Err(e),
        };
        let size = match head {
            Ok(meta) => meta.size,
            Err(e) => {
                let e = Error::new(
                    e.kind(),
                    format!(
                        "the body ended at byte {got} of {}..{want}, and a HEAD of the \
                         object failed: {}",
                        self.job.range.start,
                        e.context()
                    ),
                );
                return self.fail_pending(&e);
            }
        };
        let cut = Error::unavailable(format!(
            "the body ended at byte {got} of {}..{want}; the object is {size} bytes \
             (a transfer cut short)",
            self.job.range.start
        ));
        let truncated = Error::corrupt(format!(
            "the body ended at byte {got}; the object is {size} bytes, shorter than the \
             copies recorded in it (up to byte {want}): truncated"
        ));
        for i in self.pending.drain(..) {
            let e = if end_of(&reads[i]) > size {
                &truncated
            } else {
                &cut
            };
            self.ready.push_back((i, Err(copy_err(e, &pack))));
        }
    }

    /// Decode and verify every pending member whose bytes have all arrived.
    fn decode_ready(&mut self, reads: &[ChunkRead]) {
        let mut decoded = false;
        while let Some(&i) = self.pending.last() {
            let r = &reads[i];
            if end_of(r) > self.received.end {
                break;
            }
            self.pending.pop();
            let stored = self.received.slice(r.location.offset, end_of(r));
            let res = decode_stored(stored, &r.chunk, r.raw_len)
                .map_err(|e| e.context_prefix(format!("pack {}", self.job.pack)));
            self.ready.push_back((i, res));
            decoded = true;
        }
        if decoded {
            let needed = self.pending.iter().map(|&i| reads[i].location.offset).min();
            self.received
                .release_before(needed.unwrap_or(self.received.end));
        }
    }

    fn fail_pending(&mut self, e: &Error) {
        for i in self.pending.drain(..) {
            self.ready.push_back((i, Err(copy_err(e, &self.job.pack))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::PackBuilder;

    #[test]
    fn received_slices_across_pieces() {
        let all: Vec<u8> = (0..100u8).collect();
        let mut r = Received::new(1000);
        for piece in [&all[..10], &all[10..11], &all[11..60], &all[60..]] {
            r.push(Bytes::copy_from_slice(piece));
        }
        assert_eq!(r.end, 1100);
        for (from, to) in [
            (0, 100),
            (0, 10),
            (3, 7),
            (9, 12),
            (10, 11),
            (59, 61),
            (99, 100),
            (50, 50),
        ] {
            assert_eq!(
                &r.slice(1000 + from, 1000 + to)[..],
                &all[from as usize..to as usize],
                "{from}..{to}"
            );
        }
    }

    #[test]
    fn received_releases_pieces_nobody_needs() {
        let mut r = Received::new(0);
        for _ in 0..4 {
            r.push(Bytes::from(vec![1u8; 10]));
        }
        r.release_before(25);
        assert_eq!(r.pieces.front().map(|p| p.0), Some(20));
        assert_eq!(&r.slice(25, 35)[..], &[1u8; 10][..]);
        r.release_before(40);
        assert!(r.pieces.is_empty());
    }

    #[test]
    fn decode_with_and_without_length() {
        let raw = Bytes::from(vec![7u8; 5000]);
        let id = ChunkId::of(&raw);
        let mut b = PackBuilder::new(1 << 20, 3);
        b.add(id, &raw).unwrap();
        let built = b.finish().unwrap();
        let e = built.entries[0];
        assert!(e.compressed);
        let stored = built
            .bytes
            .slice(e.stored_range().start as usize..e.stored_range().end as usize);
        assert_eq!(decode_stored(stored.clone(), &id, Some(5000)).unwrap(), raw);
        assert_eq!(decode_stored(stored.clone(), &id, None).unwrap(), raw);
        assert_eq!(decode_stored(raw.clone(), &id, None).unwrap(), raw);
        let mut bad = stored.to_vec();
        bad[3] ^= 1;
        assert!(decode_stored(Bytes::from(bad), &id, None).is_err());
    }
}
