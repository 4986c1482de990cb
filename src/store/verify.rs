//! `verify` (DESIGN §7): check every copy of every referenced chunk, and for the whole
//! store every blob record and manifest too.
//!
//! - Hot copies on this node are read from RocksDB and re-hashed. A read that RocksDB
//!   fails (a blob file's CRC, a vanished blob file) damages that copy only; the run
//!   goes on.
//! - Warm copies, and cold copies in classes readable without a restore (`GLACIER_IR`),
//!   are read with the coalesced ranged GETs of ordinary reads and re-hashed. Nothing
//!   is promoted into hot.
//! - Cold copies in archive classes (`GLACIER`, `DEEP_ARCHIVE`) cannot be read without
//!   a restore: their pack object is checked by existence and size (one HEAD per pack).
//! - Every result is recorded (`record_verification`); damaged copies are listed with
//!   the blobs that reference their chunk.

mod hot;
mod report;

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::StreamExt;

pub use report::{CheckMethod, DamagedBlob, DamagedCopy, LostChunk, TierCheck, VerifyReport};

use super::Store;
use crate::error::{ErrorKind, Result};
use crate::id::{BlobId, ChunkId};
use crate::model::{BlobRecord, Health, Location, ManifestEntry, Tier, VerifyRecord};
use crate::tier::{parse_pack_name, ChunkRead};

/// Chunks whose copies are looked up per metadata round trip.
const PAGE: usize = 1024;
/// Bytes of blob whose manifest entries are read per query.
const MANIFEST_WINDOW: u64 = 1 << 30;

/// One checked copy: the copy, how it was checked, the verdict, and the bytes hashed.
pub(super) type Checked = (Location, CheckMethod, Verdict, u64);

/// What became of one copy.
#[derive(Debug, Clone)]
pub(super) enum Verdict {
    /// Its bytes (or its pack object's existence and size) check out.
    Good,
    /// Damaged: `Corrupt` or `Missing`, with what was seen.
    Damaged(Health, String),
    /// Could not be checked now (the object store is unreachable, …).
    Unchecked(String),
    /// A hot copy of another node.
    Elsewhere,
}

/// What one HEAD of a pack object found; asked once per pack per run.
#[derive(Debug, Clone)]
struct PackCheck {
    method: CheckMethod,
    /// The object's size, or what its absence or unreachability means for its copies.
    found: std::result::Result<u64, Verdict>,
    /// Set when the object's size differs from the pack's record.
    size_mismatch: Option<String>,
}

/// The state of one verify (or scrub) run: its report, and each pack's HEAD.
#[derive(Default)]
pub(super) struct Run {
    pub(super) report: VerifyReport,
    packs: HashMap<String, PackCheck>,
}

impl Store {
    /// Check every copy of every chunk of `blob` (or of every referenced chunk in the
    /// store) and record each result in metadata; for the whole store, also read every
    /// blob's manifest. Damaged copies and manifests are reported, never returned as an
    /// error: the run goes on past them. Errors are for failures of the run itself (the
    /// metadata store unreachable, the blob unknown).
    pub async fn verify(&self, blob: Option<&BlobId>) -> Result<VerifyReport> {
        self.check_open()?;
        let mut run = Run::default();
        match blob {
            Some(id) => {
                let rec = self.blob_record(id).await?;
                let mut sizes = BTreeMap::new();
                self.check_manifest(&rec, &mut run.report, &mut |e| {
                    sizes.insert(e.chunk, e.length);
                })
                .await?;
                let chunks: Vec<(ChunkId, u32)> = sizes.into_iter().collect();
                for page in chunks.chunks(PAGE) {
                    self.verify_chunks(page, &mut run).await?;
                }
                run.report.attach_blobs(|_| vec![*id]);
            }
            None => {
                let mut after = None;
                loop {
                    let page = self.inner.meta.list_chunks(after, PAGE).await?;
                    let Some(last) = page.last() else { break };
                    after = Some(last.id);
                    let chunks: Vec<(ChunkId, u32)> = page
                        .iter()
                        .filter(|c| c.refcount > 0)
                        .map(|c| (c.id, c.size))
                        .collect();
                    self.verify_chunks(&chunks, &mut run).await?;
                    if page.len() < PAGE {
                        break;
                    }
                }
                // Every manifest is read whole; only the damaged chunks' blobs are kept.
                let damaged: HashSet<ChunkId> = run.report.damaged_chunks().collect();
                let mut blobs_of: HashMap<ChunkId, Vec<BlobId>> = HashMap::new();
                let mut after = None;
                loop {
                    let page = self.inner.meta.list_blobs(after, PAGE).await?;
                    let Some(last) = page.last() else { break };
                    after = Some(last.id);
                    for rec in &page {
                        self.check_manifest(rec, &mut run.report, &mut |e| {
                            if damaged.contains(&e.chunk) {
                                let blobs = blobs_of.entry(e.chunk).or_default();
                                if !blobs.contains(&rec.id) {
                                    blobs.push(rec.id);
                                }
                            }
                        })
                        .await?;
                    }
                    if page.len() < PAGE {
                        break;
                    }
                }
                run.report
                    .attach_blobs(|c| blobs_of.get(c).cloned().unwrap_or_default());
            }
        }
        Ok(run.report)
    }

    /// Read `rec`'s whole manifest (a window at a time, bypassing the cache), handing
    /// each entry to `on_entry`, and check that it covers the blob contiguously with
    /// as many entries as the record says. A manifest that cannot be read (RocksDB
    /// corruption, undecodable entries) or does not fit is a damaged blob.
    async fn check_manifest(
        &self,
        rec: &BlobRecord,
        report: &mut VerifyReport,
        on_entry: &mut (dyn FnMut(&ManifestEntry) + Send),
    ) -> Result<()> {
        report.blobs_checked += 1;
        let (mut expected, mut count) = (0u64, 0u64);
        let damage = loop {
            if expected >= rec.size {
                break None;
            }
            let end = expected.saturating_add(MANIFEST_WINDOW).min(rec.size);
            let entries = match self.inner.meta.manifest_range(&rec.id, expected, end).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::Corrupt => {
                    break Some(format!("manifest unreadable at offset {expected}: {e}"));
                }
                Err(e) => return Err(e),
            };
            if entries.is_empty() {
                break Some(format!(
                    "manifest ends at offset {expected} of {} bytes",
                    rec.size
                ));
            }
            let gap = entries.iter().find_map(|e| {
                if e.offset != expected || e.length == 0 {
                    return Some(format!("manifest is not contiguous at offset {expected}"));
                }
                on_entry(e);
                expected = e.end();
                count += 1;
                None
            });
            if gap.is_some() {
                break gap;
            }
        };
        report.manifest_entries_checked += count;
        let damage = damage.or_else(|| {
            (count != rec.chunk_count).then(|| {
                format!(
                    "manifest has {count} entries, the blob record says {}",
                    rec.chunk_count
                )
            })
        });
        if let Some(detail) = damage {
            report.damaged_blobs.push(DamagedBlob {
                blob: rec.id,
                detail,
            });
        }
        Ok(())
    }

    /// Check every copy of `chunks` (id, length) and record the results.
    async fn verify_chunks(&self, chunks: &[(ChunkId, u32)], run: &mut Run) -> Result<()> {
        let ids: Vec<ChunkId> = chunks.iter().map(|c| c.0).collect();
        let mut locations = self.inner.meta.locations_many(&ids).await?;
        let copies: Vec<(Location, Option<u32>)> = chunks
            .iter()
            .flat_map(|&(id, size)| {
                locations
                    .remove(&id)
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |l| (l, Some(size)))
            })
            .collect();
        let results = self.check_copies(copies, run).await?;
        self.tally(&ids, results, &mut run.report).await
    }

    /// Check `copies` (each with its chunk's uncompressed length, when known): this
    /// node's hot copies re-hashed, other nodes' hot copies left alone, pack copies by
    /// one HEAD per pack and then a ranged GET and re-hash where the class allows.
    pub(super) async fn check_copies(
        &self,
        copies: Vec<(Location, Option<u32>)>,
        run: &mut Run,
    ) -> Result<Vec<Checked>> {
        let node = self.inner.node.clone();
        let mut results: Vec<Checked> = Vec::new();
        let mut hot = Vec::new();
        let mut reads = Vec::new();
        for (loc, raw_len) in copies {
            if loc.tier == Tier::Hot {
                if loc.node == node {
                    hot.push(loc);
                } else {
                    results.push((loc, CheckMethod::Hash, Verdict::Elsewhere, 0));
                }
                continue;
            }
            let pack = self.check_pack(&loc.pack, run).await?;
            let end = loc.offset.saturating_add(loc.length);
            let verdict = match (&pack.found, pack.method) {
                (Err(v), _) => v.clone(),
                (Ok(object), _) if end > *object => Verdict::Damaged(
                    Health::Corrupt,
                    format!("pack object is {object} bytes, the copy ends at byte {end}"),
                ),
                (Ok(_), CheckMethod::ExistenceAndSize) => match &pack.size_mismatch {
                    Some(m) => Verdict::Damaged(Health::Corrupt, m.clone()),
                    None => Verdict::Good,
                },
                (Ok(_), CheckMethod::Hash) => {
                    reads.push(ChunkRead {
                        chunk: loc.chunk,
                        raw_len,
                        location: loc,
                    });
                    continue;
                }
            };
            results.push((loc, pack.method, verdict, 0));
        }
        results.extend(self.check_hot(hot).await?);
        results.extend(self.check_reads(&reads).await);
        Ok(results)
    }

    /// One HEAD per pack object per run: does it exist, with the recorded size, and
    /// can its bytes be read without a restore?
    async fn check_pack(&self, name: &str, run: &mut Run) -> Result<PackCheck> {
        if let Some(c) = run.packs.get(name) {
            return Ok(c.clone());
        }
        let check = match parse_pack_name(name) {
            Err(e) => PackCheck {
                method: CheckMethod::Hash,
                found: Err(Verdict::Damaged(Health::Corrupt, e.to_string())),
                size_mismatch: None,
            },
            Ok((tier, _)) => {
                let record = self.inner.meta.pack(name).await?;
                let pack_tier = self.inner.tiers.get(tier)?;
                run.report.tier_mut(tier).objects_checked += 1;
                let method_for = |archived: bool| {
                    if archived {
                        CheckMethod::ExistenceAndSize
                    } else {
                        CheckMethod::Hash
                    }
                };
                match pack_tier.store().head(name).await {
                    Ok(head) => PackCheck {
                        method: method_for(head.storage_class.needs_restore()),
                        found: Ok(head.size),
                        size_mismatch: record.as_ref().filter(|r| r.size != head.size).map(|r| {
                            format!(
                                "pack object is {} bytes, its record says {}",
                                head.size, r.size
                            )
                        }),
                    },
                    Err(e) => {
                        // Gone objects are judged by the class they were written in.
                        let class = record
                            .as_ref()
                            .map_or(pack_tier.class(), |r| r.storage_class);
                        let found = if e.kind() == ErrorKind::NotFound {
                            Verdict::Damaged(
                                Health::Missing,
                                format!(
                                    "pack object not found in {}",
                                    pack_tier.store().describe()
                                ),
                            )
                        } else {
                            Verdict::Unchecked(e.to_string())
                        };
                        PackCheck {
                            method: method_for(class.needs_restore()),
                            found: Err(found),
                            size_mismatch: None,
                        }
                    }
                }
            }
        };
        run.packs.insert(name.to_string(), check.clone());
        Ok(check)
    }

    /// Read warm and instant-class cold copies with coalesced ranged GETs and re-hash
    /// them (decoding verifies each chunk against its id). Nothing is promoted.
    async fn check_reads(&self, reads: &[ChunkRead]) -> Vec<Checked> {
        let mut out = Vec::with_capacity(reads.len());
        let mut got = self.inner.tiers.read_stream(reads);
        while let Some((i, res)) = got.next().await {
            let (verdict, hashed) = match res {
                Ok(bytes) => (Verdict::Good, bytes.len() as u64),
                Err(e) => match e.kind() {
                    ErrorKind::Corrupt => (Verdict::Damaged(Health::Corrupt, e.to_string()), 0),
                    ErrorKind::NotFound => (Verdict::Damaged(Health::Missing, e.to_string()), 0),
                    _ => (Verdict::Unchecked(e.to_string()), 0),
                },
            };
            out.push((
                reads[i].location.clone(),
                CheckMethod::Hash,
                verdict,
                hashed,
            ));
        }
        out
    }

    /// Count the results, list damaged copies and chunks left without a healthy copy,
    /// and record every checked copy's health.
    async fn tally(
        &self,
        ids: &[ChunkId],
        results: Vec<Checked>,
        report: &mut VerifyReport,
    ) -> Result<()> {
        let now = self.now_ms();
        let mut healthy: HashSet<ChunkId> = HashSet::new();
        let mut records = Vec::new();
        for (loc, method, verdict, hashed) in results {
            let tier = report.tier_mut(loc.tier);
            tier.bytes_hashed += hashed;
            if hashed > 0 {
                tier.copies_hashed += 1;
            }
            let sized = method == CheckMethod::ExistenceAndSize;
            let (health, detail) = match verdict {
                Verdict::Elsewhere => {
                    tier.copies_on_other_nodes += 1;
                    if loc.health == Health::Ok {
                        healthy.insert(loc.chunk);
                    }
                    continue;
                }
                Verdict::Unchecked(detail) => {
                    if loc.health == Health::Ok {
                        healthy.insert(loc.chunk);
                    }
                    report.unchecked.push(damaged(&loc, method, detail));
                    continue;
                }
                Verdict::Good => {
                    if sized {
                        tier.copies_sized += 1;
                    }
                    healthy.insert(loc.chunk);
                    let how = if sized {
                        "existence and size"
                    } else {
                        "re-hashed"
                    };
                    (Health::Ok, format!("verify: {how}"))
                }
                Verdict::Damaged(health, detail) => {
                    if sized && health == Health::Corrupt {
                        tier.copies_sized += 1;
                    }
                    let copy = damaged(&loc, method, detail.clone());
                    if health == Health::Corrupt {
                        report.corrupt.push(copy);
                    } else {
                        report.missing.push(copy);
                    }
                    self.inner.chunks.invalidate(&loc.chunk).await;
                    (health, format!("verify: {detail}"))
                }
            };
            report.copies_checked += 1;
            records.push(VerifyRecord {
                location: loc,
                health,
                at_ms: now,
                detail,
            });
        }
        report.chunks_checked += ids.len() as u64;
        report.bytes_checked =
            report.hot.bytes_hashed + report.warm.bytes_hashed + report.cold.bytes_hashed;
        for id in ids {
            if !healthy.contains(id) {
                report.lost.push(LostChunk {
                    chunk: *id,
                    blobs: Vec::new(),
                });
            }
        }
        self.inner.meta.record_verification(&records).await
    }
}

fn damaged(loc: &Location, method: CheckMethod, detail: String) -> DamagedCopy {
    DamagedCopy {
        chunk: loc.chunk,
        tier: loc.tier,
        node: loc.node.clone(),
        pack: loc.pack.clone(),
        method,
        detail,
        blobs: Vec::new(),
    }
}
