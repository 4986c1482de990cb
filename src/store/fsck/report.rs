//! What [`Store::fsck`](crate::Store::fsck) reports: one [`Problem`] per broken
//! invariant, each with a [`ProblemKind`], and the text form `strata fsck` prints.

use std::fmt;

use serde::Serialize;

use crate::id::ChunkId;

/// Which invariant a problem breaks (docs/integrity.md has the list and the repairs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A referenced chunk has no healthy copy this node can read (a shared warm or
    /// cold copy, or a copy in this node's hot tier).
    UnreadableChunk,
    /// A chunk's reference count differs from the number of manifest entries naming it.
    RefcountMismatch,
    /// A pack record whose object is not in the bucket.
    MissingPackObject,
    /// A pack object that cannot be what its record says: its size differs from the
    /// record, or its footer or index is unreadable (truncated, overwritten).
    CorruptPack,
    /// A copy recorded in a pack that the pack's index does not list at that offset
    /// and length.
    PackIndexMismatch,
    /// A pack's `live_bytes` differs from the sum of the lengths of its copies.
    LiveBytesMismatch,
    /// An object under a tier's pack prefix that no pack record names, older than
    /// `gc.grace_secs`.
    OrphanObject,
    /// An object under a tier's pack prefix that no pack record names, younger than
    /// `gc.grace_secs`: a put may still be committing it. Not a failure.
    OrphanAwaitingGrace,
    /// An object that copies name but that has no pack record.
    UnrecordedPack,
}

impl ProblemKind {
    /// The snake_case name, as in the JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::UnreadableChunk => "unreadable_chunk",
            ProblemKind::RefcountMismatch => "refcount_mismatch",
            ProblemKind::MissingPackObject => "missing_pack_object",
            ProblemKind::CorruptPack => "corrupt_pack",
            ProblemKind::PackIndexMismatch => "pack_index_mismatch",
            ProblemKind::LiveBytesMismatch => "live_bytes_mismatch",
            ProblemKind::OrphanObject => "orphan_object",
            ProblemKind::OrphanAwaitingGrace => "orphan_awaiting_grace",
            ProblemKind::UnrecordedPack => "unrecorded_pack",
        }
    }

    /// Whether a problem of this kind makes the store inconsistent (everything but an
    /// orphan still inside its grace period).
    pub fn is_failure(self) -> bool {
        self != ProblemKind::OrphanAwaitingGrace
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `--repair` did about a problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum Repair {
    /// Fixed, as described.
    Repaired(String),
    /// The damage was recorded in metadata: the copies concerned are marked `missing`
    /// or `corrupt`, so reads skip them and scrub replaces them from other copies. The
    /// problem stays until then (or until gc drops the copies).
    Marked(String),
    /// Left as it is, for the reason given.
    NotRepaired(String),
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Which invariant.
    pub kind: ProblemKind,
    /// The chunk concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk: Option<ChunkId>,
    /// The pack (or object key) concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack: Option<String>,
    /// What was found.
    pub detail: String,
    /// With `--repair`: what was done about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<Repair>,
}

impl Problem {
    /// A problem about a chunk.
    pub(crate) fn chunk(kind: ProblemKind, chunk: ChunkId, detail: String) -> Problem {
        Problem {
            kind,
            chunk: Some(chunk),
            pack: None,
            detail,
            repair: None,
        }
    }

    /// A problem about a pack or object.
    pub(crate) fn pack(kind: ProblemKind, pack: &str, detail: String) -> Problem {
        Problem {
            kind,
            chunk: None,
            pack: Some(pack.to_string()),
            detail,
            repair: None,
        }
    }

    /// Whether it still breaks an invariant: a failing kind not repaired.
    pub fn is_open(&self) -> bool {
        self.kind.is_failure() && !matches!(self.repair, Some(Repair::Repaired(_)))
    }
}

impl fmt::Display for Problem {
    /// `KIND chunk ID / pack NAME: DETAIL` and what the repair did.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(c) = &self.chunk {
            write!(f, " chunk {c}")?;
        }
        if let Some(p) = &self.pack {
            write!(f, " pack {p}")?;
        }
        write!(f, ": {}", self.detail)?;
        match &self.repair {
            None => Ok(()),
            Some(Repair::Repaired(what)) => write!(f, " (repaired: {what})"),
            Some(Repair::Marked(what)) => write!(f, " (marked: {what})"),
            Some(Repair::NotRepaired(why)) => write!(f, " (not repaired: {why})"),
        }
    }
}

/// Result of [`Store::fsck`](crate::Store::fsck).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FsckReport {
    /// Whether problems were repaired where possible (`--repair`).
    pub repair: bool,
    /// Chunk records checked for a healthy copy (referenced ones).
    pub chunks_checked: u64,
    /// Pack records checked against their objects.
    pub packs_checked: u64,
    /// Objects listed under the tiers' pack prefixes.
    pub objects_listed: u64,
    /// Pack indexes read (with ranged GETs); archived packs are checked by HEAD only.
    pub indexes_read: u64,
    /// Every problem found, in the order found.
    pub problems: Vec<Problem>,
}

impl FsckReport {
    /// True when no invariant is broken: no problems but orphans awaiting their grace
    /// period, or (with `--repair`) every one repaired.
    pub fn is_clean(&self) -> bool {
        !self.problems.iter().any(Problem::is_open)
    }

    /// The problems of `kind`.
    pub fn of_kind(&self, kind: ProblemKind) -> impl Iterator<Item = &Problem> + '_ {
        self.problems.iter().filter(move |p| p.kind == kind)
    }

    /// The process exit status: 0 when clean, 1 otherwise.
    pub fn exit_code(&self) -> std::process::ExitCode {
        std::process::ExitCode::from(u8::from(!self.is_clean()))
    }
}

impl fmt::Display for FsckReport {
    /// One line per problem, then a summary line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "{p}")?;
        }
        let failing = self.problems.iter().filter(|p| p.kind.is_failure()).count();
        let open = self.problems.iter().filter(|p| p.is_open()).count();
        let waiting = self.problems.len() - failing;
        write!(
            f,
            "fsck: {} chunks, {} packs ({} indexes read), {} objects checked: {failing} problems",
            self.chunks_checked, self.packs_checked, self.indexes_read, self.objects_listed
        )?;
        if self.repair {
            write!(f, ", {} repaired, {open} not repaired", failing - open)?;
        }
        if waiting > 0 {
            write!(f, "; {waiting} orphan objects awaiting their grace period")?;
        }
        writeln!(f)
    }
}
