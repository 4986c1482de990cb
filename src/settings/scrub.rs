//! `[scrub]`: how the scrubber re-verifies copies (docs/integrity.md).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The `[scrub]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrubSettings {
    /// Bytes a scrub pass reads per second, over all tiers (stored bytes: hot copies
    /// re-read, warm copies fetched). Default 50 MiB/s: on a disk doing 500 MB/s that
    /// is a tenth of its time, and re-verifies a terabyte in about six hours. 0 removes
    /// the limit (what a scrub run by hand during a quiet hour may want).
    pub bytes_per_sec: u64,
    /// A copy verified more recently than this is not re-verified by the periodic
    /// worker's pass. Default 604800 (7 days). `strata scrub` ignores it and checks
    /// every copy once.
    pub reverify_after_secs: u64,
    /// Copies claimed (and checked) per step of a pass. Default 512. Larger steps
    /// amortise the claim; smaller ones hold fewer claims when a pass is interrupted.
    pub batch_copies: usize,
}

impl Default for ScrubSettings {
    fn default() -> Self {
        ScrubSettings {
            bytes_per_sec: 50 << 20,
            reverify_after_secs: 7 * 24 * 3600,
            batch_copies: 512,
        }
    }
}

impl ScrubSettings {
    /// Check the values, naming the key.
    pub fn validate(&self) -> Result<()> {
        if !(1..=100_000).contains(&self.batch_copies) {
            return Err(Error::invalid(format!(
                "scrub.batch_copies = {}: expected 1 to 100000",
                self.batch_copies
            )));
        }
        Ok(())
    }
}
