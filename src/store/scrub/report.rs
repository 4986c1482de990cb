//! What [`Store::scrub`](crate::Store::scrub) reports, and its text form (`strata scrub`).

use std::fmt;
use std::ops::Range;

use serde::Serialize;

use crate::id::{BlobId, ChunkId};
use crate::model::{Health, Tier};

/// One damaged copy a scrub found, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScrubbedCopy {
    /// The chunk.
    pub chunk: ChunkId,
    /// Its tier.
    pub tier: Tier,
    /// Pack object of a warm or cold copy (empty for hot).
    pub pack: String,
    /// `corrupt` or `missing`.
    pub health: Health,
    /// What the check saw.
    pub detail: String,
}

/// A byte range of a blob that a chunk without any healthy copy damages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DamagedRange {
    /// The blob.
    pub blob: BlobId,
    /// The bytes of the blob the chunk held.
    pub range: Range<u64>,
}

/// A referenced chunk the scrub could not give a healthy copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnrepairableChunk {
    /// The chunk.
    pub chunk: ChunkId,
    /// Why: no healthy copy anywhere, or the copy that is left cannot be written from.
    pub detail: String,
    /// Every blob and byte range that reads this chunk.
    pub damages: Vec<DamagedRange>,
}

/// What one scrub pass did (`strata scrub --json` prints this).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScrubReport {
    /// Copies whose check reached a verdict (healthy, corrupt or missing).
    pub copies_checked: u64,
    /// Bytes read and re-hashed (uncompressed chunk bytes).
    pub bytes_read: u64,
    /// Copies found corrupt (bytes that do not hash to the chunk id, a short pack).
    pub corrupt: u64,
    /// Copies found missing (a pack object or hot value that is gone).
    pub missing: u64,
    /// Damaged copies replaced by a healthy copy, or dropped because a healthy copy in
    /// the same tier already existed.
    pub repaired: u64,
    /// Copies added so that a chunk has `[durability] min_copies` healthy copies.
    pub copies_added: u64,
    /// Chunks with damaged copies whose only healthy copy is archived: a restore was
    /// requested, and a later pass repairs them.
    pub restore_pending: u64,
    /// Referenced chunks left without a healthy copy.
    pub unrepairable: u64,
    /// Copies that could not be checked now (a tier unreachable); they are checked by a
    /// later pass.
    pub unchecked: u64,
    /// The damaged copies found.
    pub damaged: Vec<ScrubbedCopy>,
    /// The chunks left without a healthy copy, with what they damage.
    pub unrepairable_chunks: Vec<UnrepairableChunk>,
    /// Errors met while repairing (the pass goes on past them).
    pub errors: Vec<String>,
}

impl ScrubReport {
    /// True when no referenced chunk is left without a healthy copy.
    pub fn is_ok(&self) -> bool {
        self.unrepairable == 0
    }

    /// The process exit status: 0 when nothing unrepairable remains, 1 otherwise.
    pub fn exit_code(&self) -> std::process::ExitCode {
        std::process::ExitCode::from(u8::from(!self.is_ok()))
    }
}

impl fmt::Display for ScrubReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.damaged {
            let at = if c.pack.is_empty() {
                String::new()
            } else {
                format!(" in pack {}", c.pack)
            };
            writeln!(
                f,
                "{} copy of chunk {} in {}{at}: {}",
                c.health.as_str(),
                c.chunk,
                c.tier.as_str(),
                c.detail
            )?;
        }
        for u in &self.unrepairable_chunks {
            writeln!(f, "unrepairable chunk {}: {}", u.chunk, u.detail)?;
            for d in &u.damages {
                writeln!(
                    f,
                    "  damages blob {} bytes {}..{}",
                    d.blob, d.range.start, d.range.end
                )?;
            }
        }
        for e in &self.errors {
            writeln!(f, "error: {e}")?;
        }
        writeln!(
            f,
            "checked {} copies ({} bytes read): {} corrupt, {} missing, {} repaired, {} copies added, {} awaiting restore, {} unrepairable, {} unchecked",
            self.copies_checked,
            self.bytes_read,
            self.corrupt,
            self.missing,
            self.repaired,
            self.copies_added,
            self.restore_pending,
            self.unrepairable,
            self.unchecked
        )
    }
}
