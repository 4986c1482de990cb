//! What [`Store::verify`](crate::Store::verify) reports, and its text form (the CLI's
//! `strata verify` output).

use std::fmt;

use serde::Serialize;

use crate::id::{BlobId, ChunkId};
use crate::model::Tier;

/// How a copy was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckMethod {
    /// Its bytes were read and re-hashed.
    Hash,
    /// Its pack object was checked for existence and size only (archive classes, whose
    /// bytes cannot be read without a restore).
    ExistenceAndSize,
}

impl CheckMethod {
    fn describe(self) -> &'static str {
        match self {
            CheckMethod::Hash => "re-hashed",
            CheckMethod::ExistenceAndSize => "checked by existence and size",
        }
    }
}

/// What verify did in one tier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TierCheck {
    /// Copies whose bytes were read and re-hashed.
    pub copies_hashed: u64,
    /// Bytes re-hashed (uncompressed chunk bytes).
    pub bytes_hashed: u64,
    /// Copies checked only by their pack object's existence and size (archive classes).
    pub copies_sized: u64,
    /// Pack objects looked up (one HEAD each).
    pub objects_checked: u64,
    /// Hot copies recorded on other nodes: only their node can read them.
    pub copies_on_other_nodes: u64,
}

/// One stored copy found damaged (or one that could not be checked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DamagedCopy {
    /// The chunk.
    pub chunk: ChunkId,
    /// The copy's tier.
    pub tier: Tier,
    /// For a hot copy, its node.
    pub node: String,
    /// For a warm or cold copy, its pack.
    pub pack: String,
    /// How the copy was checked.
    pub method: CheckMethod,
    /// What was found.
    pub detail: String,
    /// Blobs that reference the chunk (among the blobs verified).
    pub blobs: Vec<BlobId>,
}

/// A referenced chunk left without any healthy copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostChunk {
    /// The chunk.
    pub chunk: ChunkId,
    /// Blobs that reference it (among the blobs verified).
    pub blobs: Vec<BlobId>,
}

/// A blob whose record or manifest could not be read or does not describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DamagedBlob {
    /// The blob.
    pub blob: BlobId,
    /// What went wrong.
    pub detail: String,
}

/// Result of [`Store::verify`](crate::Store::verify).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Blobs whose record and whole manifest were read.
    pub blobs_checked: u64,
    /// Manifest entries read.
    pub manifest_entries_checked: u64,
    /// Distinct referenced chunks checked.
    pub chunks_checked: u64,
    /// Copies checked (re-hashed, or by existence and size), damaged ones included.
    pub copies_checked: u64,
    /// Bytes actually re-hashed, over all tiers.
    pub bytes_checked: u64,
    /// What was done in the hot tier (this node's copies).
    pub hot: TierCheck,
    /// What was done in the warm tier.
    pub warm: TierCheck,
    /// What was done in the cold tier.
    pub cold: TierCheck,
    /// Copies whose bytes do not match their chunk id (or whose pack has the wrong size).
    pub corrupt: Vec<DamagedCopy>,
    /// Copies that are not there (or cannot be read at all).
    pub missing: Vec<DamagedCopy>,
    /// Copies that could not be checked now (unreachable object store, …): neither
    /// good nor damaged as far as this run knows.
    pub unchecked: Vec<DamagedCopy>,
    /// Referenced chunks with no healthy copy left: their blobs cannot be read until
    /// the data is put again.
    pub lost: Vec<LostChunk>,
    /// Blobs whose manifest could not be read or does not cover the blob.
    pub damaged_blobs: Vec<DamagedBlob>,
}

impl VerifyReport {
    /// True when every copy checked is good, every manifest read, and nothing was left
    /// unchecked.
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty()
            && self.missing.is_empty()
            && self.unchecked.is_empty()
            && self.lost.is_empty()
            && self.damaged_blobs.is_empty()
    }

    /// The tally of `tier`.
    pub fn tier(&self, tier: Tier) -> &TierCheck {
        match tier {
            Tier::Hot => &self.hot,
            Tier::Warm => &self.warm,
            Tier::Cold => &self.cold,
        }
    }

    pub(super) fn tier_mut(&mut self, tier: Tier) -> &mut TierCheck {
        match tier {
            Tier::Hot => &mut self.hot,
            Tier::Warm => &mut self.warm,
            Tier::Cold => &mut self.cold,
        }
    }

    /// Every damaged or unchecked copy and lost chunk, for attaching blob lists.
    pub(super) fn damaged_chunks(&self) -> impl Iterator<Item = ChunkId> + '_ {
        self.corrupt
            .iter()
            .chain(&self.missing)
            .chain(&self.unchecked)
            .map(|c| c.chunk)
            .chain(self.lost.iter().map(|l| l.chunk))
    }

    /// Set the blob lists of every damaged copy and lost chunk.
    pub(super) fn attach_blobs(&mut self, blobs_of: impl Fn(&ChunkId) -> Vec<BlobId>) {
        for c in self
            .corrupt
            .iter_mut()
            .chain(&mut self.missing)
            .chain(&mut self.unchecked)
        {
            c.blobs = blobs_of(&c.chunk);
        }
        for l in &mut self.lost {
            l.blobs = blobs_of(&l.chunk);
        }
    }
}

fn blob_list(blobs: &[BlobId]) -> String {
    if blobs.is_empty() {
        return "no blob among those verified".into();
    }
    let ids: Vec<String> = blobs.iter().map(ToString::to_string).collect();
    format!("blob {}", ids.join(", "))
}

fn copy_line(f: &mut fmt::Formatter<'_>, what: &str, c: &DamagedCopy) -> fmt::Result {
    let place = if c.tier == Tier::Hot {
        format!("node {}", c.node)
    } else {
        format!("pack {}", c.pack)
    };
    writeln!(
        f,
        "{what} copy of chunk {} in {} ({place}; {}): {}; used by {}",
        c.chunk,
        c.tier.as_str(),
        c.method.describe(),
        c.detail,
        blob_list(&c.blobs)
    )
}

impl fmt::Display for VerifyReport {
    /// The report as `strata verify` prints it: a summary line, one line per tier, then
    /// one line per damaged copy, lost chunk and damaged blob.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "checked {} chunks ({} bytes re-hashed) in {} copies, {} blobs ({} manifest entries): \
             {} corrupt, {} missing, {} unchecked copies; {} chunks lost; {} damaged blobs",
            self.chunks_checked,
            self.bytes_checked,
            self.copies_checked,
            self.blobs_checked,
            self.manifest_entries_checked,
            self.corrupt.len(),
            self.missing.len(),
            self.unchecked.len(),
            self.lost.len(),
            self.damaged_blobs.len()
        )?;
        for tier in [Tier::Hot, Tier::Warm, Tier::Cold] {
            let t = self.tier(tier);
            write!(
                f,
                "{:<5} {} copies re-hashed ({} bytes)",
                format!("{}:", tier.as_str()),
                t.copies_hashed,
                t.bytes_hashed
            )?;
            if tier == Tier::Hot {
                writeln!(
                    f,
                    "; {} copies on other nodes not checked here",
                    t.copies_on_other_nodes
                )?;
            } else {
                writeln!(
                    f,
                    ", {} copies checked by existence and size only (archive class); {} pack objects",
                    t.copies_sized, t.objects_checked
                )?;
            }
        }
        for c in &self.corrupt {
            copy_line(f, "corrupt", c)?;
        }
        for c in &self.missing {
            copy_line(f, "missing", c)?;
        }
        for c in &self.unchecked {
            copy_line(f, "unchecked", c)?;
        }
        for l in &self.lost {
            writeln!(
                f,
                "lost chunk {} (no healthy copy left); used by {}",
                l.chunk,
                blob_list(&l.blobs)
            )?;
        }
        for b in &self.damaged_blobs {
            writeln!(f, "damaged blob {}: {}", b.blob, b.detail)?;
        }
        Ok(())
    }
}
