//! Reading chunks from packs: ranged GETs coalesced per pack, every chunk decoded and
//! verified against its id before it is returned.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::stream::{self, StreamExt};

use super::{pack_name, parse_pack_name, Tiers};
use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::model::{Location, Tier};
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

/// One chunk's stored bytes to decode and verify.
struct Decode {
    index: usize,
    stored: Bytes,
    chunk: ChunkId,
    raw_len: Option<u32>,
    pack: String,
}

impl Decode {
    fn run(self) -> (usize, Result<Bytes>) {
        let res = decode_stored(self.stored, &self.chunk, self.raw_len)
            .map_err(|e| e.context_prefix(format!("pack {}", self.pack)));
        (self.index, res)
    }
}

/// Below this many stored bytes, chunks are decoded on the calling task.
const PARALLEL_DECODE_BYTES: usize = 1 << 20;

/// Decode and verify chunks, spread over the cores when there is enough to do: hashing
/// is most of a warm read's CPU time, and a single thread would add several ms per 16 MiB.
async fn decode_all(decodes: Vec<Decode>) -> Vec<(usize, Result<Bytes>)> {
    let total: usize = decodes.iter().map(|d| d.stored.len()).sum();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if total < PARALLEL_DECODE_BYTES || threads < 2 || decodes.len() < 2 {
        return decodes.into_iter().map(Decode::run).collect();
    }
    let per = total.div_ceil(threads);
    let mut groups: Vec<Vec<Decode>> = vec![Vec::new()];
    let mut filled = 0;
    for d in decodes {
        if filled >= per {
            groups.push(Vec::new());
            filled = 0;
        }
        filled += d.stored.len();
        if let Some(g) = groups.last_mut() {
            g.push(d);
        }
    }
    let tasks: Vec<(
        Vec<usize>,
        tokio::task::JoinHandle<Vec<(usize, Result<Bytes>)>>,
    )> = groups
        .into_iter()
        .map(|g| {
            let indices = g.iter().map(|d| d.index).collect();
            (
                indices,
                tokio::task::spawn_blocking(move || g.into_iter().map(Decode::run).collect()),
            )
        })
        .collect();
    let mut out = Vec::new();
    for (indices, task) in tasks {
        match task.await {
            Ok(done) => out.extend(done),
            Err(e) => {
                let msg = format!("chunk decoding failed: {e}");
                out.extend(
                    indices
                        .into_iter()
                        .map(|i| (i, Err(Error::internal(msg.clone())))),
                );
            }
        }
    }
    out
}

/// One ranged GET: the pack, the byte range, and the read indices it serves.
struct Job {
    tier: Tier,
    pack: String,
    range: std::ops::Range<u64>,
    members: Vec<usize>,
}

impl Tiers {
    /// Read every chunk of `reads` (one result per input, in order). Reads of one pack
    /// are merged into as few ranged GETs as the coalescing settings allow; GETs run a
    /// few at a time. A failed GET fails the chunks it served with its error kind
    /// (`NotFound`, `RestorePending`, `Unavailable`, ...); a chunk whose bytes do not
    /// verify is `Corrupt`.
    pub async fn read(&self, reads: &[ChunkRead]) -> Vec<Result<Bytes>> {
        let mut results: Vec<Result<Bytes>> = (0..reads.len())
            .map(|_| Err(Error::internal("chunk read not attempted")))
            .collect();
        let mut groups: BTreeMap<(Tier, String), Vec<usize>> = BTreeMap::new();
        for (i, r) in reads.iter().enumerate() {
            let l = &r.location;
            match parse_pack_name(&l.pack) {
                Ok((tier, _)) if tier == l.tier && u32::try_from(l.length).is_ok() => {
                    groups.entry((tier, l.pack.clone())).or_default().push(i);
                }
                Ok(_) => {
                    results[i] = Err(Error::corrupt(format!(
                        "location of chunk {} in pack {} is inconsistent",
                        r.chunk.short(),
                        l.pack
                    )))
                }
                Err(e) => results[i] = Err(e),
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
        let fetched: Vec<(Job, Result<Bytes>)> = stream::iter(jobs)
            .map(|job| async move {
                let got = match (self.get(job.tier), parse_pack_name(&job.pack)) {
                    (Ok(t), Ok((tier, id))) => {
                        t.store()
                            .get_range(&pack_name(tier, &id), job.range.clone())
                            .await
                    }
                    (Err(e), _) | (_, Err(e)) => Err(e),
                };
                (job, got)
            })
            .buffer_unordered(GETS_IN_FLIGHT)
            .collect()
            .await;
        let mut decodes = Vec::new();
        for (job, got) in fetched {
            for &i in &job.members {
                let r = &reads[i];
                match &got {
                    Err(e) => results[i] = Err(copy_err(e, &job.pack)),
                    Ok(bytes) => {
                        let start = (r.location.offset - job.range.start) as usize;
                        let end = start + r.location.length as usize;
                        if end > bytes.len() {
                            results[i] =
                                Err(Error::corrupt(format!("pack {}: short read", job.pack)));
                        } else {
                            decodes.push(Decode {
                                index: i,
                                stored: bytes.slice(start..end),
                                chunk: r.chunk,
                                raw_len: r.raw_len,
                                pack: job.pack.clone(),
                            });
                        }
                    }
                }
            }
        }
        for (i, res) in decode_all(decodes).await {
            results[i] = res;
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::PackBuilder;

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
