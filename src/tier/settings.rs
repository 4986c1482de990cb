//! Settings of the warm and cold tiers and of write durability (DESIGN §5).
//!
//! ```toml
//! [tiers]
//! promote = true                # copy chunks read from warm/cold into hot
//! restore_poll_ms = 30000       # pause between checks while waiting for a restore (>= 100)
//! restore_wait_secs = 0         # how long `get` waits for a restore by default
//! coalesce_gap_bytes = 1048576  # ranged reads of one pack merge across gaps up to this
//! max_read_bytes = 67108864     # ... but never grow beyond this
//! [tiers.warm]
//! use = "s3"                    # "local" (default) or a [connections.NAME] of type s3
//! storage_class = "STANDARD"    # default STANDARD for warm, GLACIER for cold
//! pack_bytes = 33554432         # target size of a pack (default 32 MiB)
//! zstd_level = 3
//! [tiers.cold]
//! use = "local"
//! path = "/srv/strata-cold"     # local only; default DATA_DIR/tiers/cold
//! restore_delay_ms = 0          # local only: emulated restore time
//! [durability]
//! mode = "local"                # or "replicated": puts return once packed in warm
//! ```
//!
//! Without `[tiers.*]`, warm and cold are local directories under the data directory:
//! the embedded store needs no server.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::Tier;
use crate::object::StorageClass;
use crate::settings::Connection;

/// Default target size of a pack: 32 MiB (~32 PUTs per GiB moved).
pub const DEFAULT_PACK_BYTES: usize = 32 << 20;

/// Smallest accepted `tiers.restore_poll_ms`. Each check of a wait asks the metadata
/// and the object store (a HEAD per archived pack) about every pending restore; at 0 a
/// 4 s wait spent 2 s of CPU polling. A restore takes minutes to hours, so checking
/// ten times a second is already more often than it can help.
pub const MIN_RESTORE_POLL_MS: u64 = 100;

/// The `[tiers]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TiersSettings {
    /// The warm tier (standard storage class).
    pub warm: TierSettings,
    /// The cold tier (archive storage class).
    pub cold: TierSettings,
    /// Copy a chunk read from warm or cold into hot (recording the location), so the
    /// next read is local. Default true.
    pub promote: bool,
    /// Removed: `[policy] restore_days` says how long a restored copy stays readable.
    /// Still parsed only so that a file setting it fails with an error naming the new
    /// key instead of a bare "unknown field".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_days: Option<u32>,
    /// Milliseconds between checks while a read waits for a restore. Default 30000;
    /// at least [`MIN_RESTORE_POLL_MS`] (100).
    pub restore_poll_ms: u64,
    /// Seconds `get` waits for a restore before failing with `RestorePending` when the
    /// caller does not say. Default 0: fail at once (the restore was still requested).
    pub restore_wait_secs: u64,
    /// Chunks of one pack closer than this are fetched with one ranged GET (the gap
    /// bytes are discarded). Default 1 MiB.
    pub coalesce_gap_bytes: u64,
    /// Largest single ranged GET when coalescing. Default 64 MiB.
    pub max_read_bytes: u64,
}

impl Default for TiersSettings {
    fn default() -> Self {
        TiersSettings {
            warm: TierSettings::default(),
            cold: TierSettings::default(),
            promote: true,
            restore_days: None,
            restore_poll_ms: 30_000,
            restore_wait_secs: 0,
            coalesce_gap_bytes: 1 << 20,
            max_read_bytes: 64 << 20,
        }
    }
}

/// One `[tiers.warm]` or `[tiers.cold]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierSettings {
    /// `"local"` (default: a directory) or the name of a `[connections.NAME]` of type s3.
    #[serde(rename = "use")]
    pub use_: String,
    /// Directory of a local tier. Default `DATA_DIR/tiers/warm` or `.../cold`.
    pub path: Option<PathBuf>,
    /// Storage class of new packs. Default `STANDARD` for warm, `GLACIER` for cold.
    pub storage_class: Option<StorageClass>,
    /// Target stored bytes per pack. Default 32 MiB.
    pub pack_bytes: usize,
    /// zstd level for chunks in packs (kept only when smaller). Default 3.
    pub zstd_level: i32,
    /// Local tiers only: milliseconds an emulated archive restore takes. Default 0.
    pub restore_delay_ms: u64,
}

impl Default for TierSettings {
    fn default() -> Self {
        TierSettings {
            use_: "local".into(),
            path: None,
            storage_class: None,
            pack_bytes: DEFAULT_PACK_BYTES,
            zstd_level: crate::pack::DEFAULT_ZSTD_LEVEL,
            restore_delay_ms: 0,
        }
    }
}

impl TierSettings {
    /// The storage class of new packs in `tier`.
    pub fn class(&self, tier: Tier) -> StorageClass {
        self.storage_class.unwrap_or(match tier {
            Tier::Cold => StorageClass::Glacier,
            _ => StorageClass::Standard,
        })
    }
}

impl TiersSettings {
    /// The section of `tier` (`Hot` has none: `InvalidInput`).
    pub fn of(&self, tier: Tier) -> Result<&TierSettings> {
        match tier {
            Tier::Warm => Ok(&self.warm),
            Tier::Cold => Ok(&self.cold),
            Tier::Hot => Err(Error::invalid("the hot tier has no object store")),
        }
    }

    /// Check the sections against the named connections.
    pub fn validate(&self, connections: &BTreeMap<String, Connection>) -> Result<()> {
        for (tier, t) in [(Tier::Warm, &self.warm), (Tier::Cold, &self.cold)] {
            let name = tier.as_str();
            if t.use_ != "local" {
                match connections.get(&t.use_) {
                    Some(Connection::S3(_)) => {}
                    _ => {
                        return Err(Error::invalid(format!(
                            "tiers.{name}.use = {:?}: expected \"local\" or the name of a [connections.NAME] of type s3",
                            t.use_
                        )))
                    }
                }
                if t.path.is_some() {
                    return Err(Error::invalid(format!(
                        "tiers.{name}.path is only for use = \"local\""
                    )));
                }
            }
            if !(4096..=1 << 32).contains(&t.pack_bytes) {
                return Err(Error::invalid(format!(
                    "tiers.{name}.pack_bytes = {}: expected 4 KiB to 4 GiB",
                    t.pack_bytes
                )));
            }
        }
        if self.warm.class(Tier::Warm).needs_restore() {
            return Err(Error::invalid(format!(
                "tiers.warm.storage_class = {}: the warm tier must be readable without a restore",
                self.warm.class(Tier::Warm)
            )));
        }
        if let Some(days) = self.restore_days {
            return Err(Error::invalid(format!(
                "tiers.restore_days = {days}: this key moved to [policy] restore_days (days a restored archive copy stays readable, default 2); move it there"
            )));
        }
        if self.restore_poll_ms < MIN_RESTORE_POLL_MS {
            return Err(Error::invalid(format!(
                "tiers.restore_poll_ms = {}: expected at least {MIN_RESTORE_POLL_MS}",
                self.restore_poll_ms
            )));
        }
        Ok(())
    }
}

/// When a put is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Once in this node's hot tier (RocksDB WAL synced). The default.
    #[default]
    Local,
    /// Once also packed in the warm tier, so any process sharing the metadata and the
    /// bucket can read it even if this node's disk is lost.
    Replicated,
}

/// The `[durability]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DurabilitySettings {
    /// `"local"` (default) or `"replicated"`.
    pub mode: Durability,
    /// Healthy copies the scrubber keeps of every referenced chunk, counting shared
    /// (warm, cold) copies and this node's hot copy; it adds copies to a chunk that has
    /// fewer. Default 1: one verified copy is what a put promises. 2 keeps a second copy
    /// in another tier (a warm pack beside the hot copy) at the cost of its storage. In
    /// `replicated` mode one of them is always a shared copy.
    pub min_copies: u32,
}

impl Default for DurabilitySettings {
    fn default() -> Self {
        DurabilitySettings {
            mode: Durability::default(),
            min_copies: 1,
        }
    }
}

impl DurabilitySettings {
    /// Check the values, naming the key.
    pub fn validate(&self) -> crate::error::Result<()> {
        if !(1..=3).contains(&self.min_copies) {
            return Err(crate::error::Error::invalid(format!(
                "durability.min_copies = {}: expected 1, 2 or 3 (one per tier)",
                self.min_copies
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::Settings;
    use crate::*;

    #[test]
    fn defaults_and_documented_shape() {
        let s = Settings::from_toml("").unwrap();
        assert_eq!(s.tiers.warm.use_, "local");
        assert_eq!(s.tiers.warm.pack_bytes, 32 << 20);
        assert_eq!(s.tiers.cold.class(Tier::Cold).as_str(), "GLACIER");
        assert_eq!(s.durability.mode, super::Durability::Local);
        let s = Settings::from_toml(
            r#"
            [connections.s3]
            type = "s3"
            endpoint = "http://127.0.0.1:9000"
            bucket = "strata"
            region = "us-east-1"
            path_style = true
            prefix = "packs/"
            [tiers.warm]
            use = "s3"
            storage_class = "STANDARD"
            pack_bytes = 33554432
            [tiers.cold]
            use = "s3"
            storage_class = "GLACIER_IR"
            [durability]
            mode = "replicated"
            "#,
        )
        .unwrap();
        s.validate().unwrap();
        assert_eq!(s.tiers.cold.class(Tier::Cold).as_str(), "GLACIER_IR");
        assert_eq!(s.durability.mode, super::Durability::Replicated);
    }

    #[test]
    fn bad_tier_settings_are_invalid() {
        for text in [
            "[tiers.warm]\nuse = \"nowhere\"",
            "[tiers.warm]\nstorage_class = \"GLACIER\"",
            "[tiers.cold]\npack_bytes = 10",
            "[tiers]\nrestore_days = 0",
            "[tiers]\nrestore_poll_ms = 0",
            "[tiers]\nrestore_poll_ms = 99",
        ] {
            let s = Settings::from_toml(text).unwrap();
            assert_eq!(
                s.validate().unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{text}"
            );
        }
    }
}
