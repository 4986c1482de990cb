//! Settings (DESIGN §8): serde structs loaded from TOML with environment overrides.
//! Every field has a documented default, so the embedded store needs no file at all.
//!
//! ```toml
//! data_dir = "./strata-data"       # RocksDB: hot tier + embedded metadata
//! [chunking]  min = 16384  avg = 65536  max = 262144
//! [cache]     bytes = 268435456
//! [meta]      use = "embedded"      # or the name of a [connections.NAME] of type "postgres"
//! [tiers]     promote = true   restore_poll_ms = 30000
//! [policy]    hot_idle_secs = 604800   restore_days = 2   ...  (docs/tiers.md, "Policy")
//! [workers]   demote_interval_secs = 60   ...
//! [server]    metrics_listen = "127.0.0.1:9464"
//! [tiers.warm]  use = "local"   storage_class = "STANDARD"   pack_bytes = 33554432
//! [tiers.cold]  use = "local"   storage_class = "GLACIER"    pack_bytes = 33554432
//! [durability]  mode = "local"  min_copies = 1   # or mode = "replicated"
//! [scrub]       bytes_per_sec = 52428800   reverify_after_secs = 604800
//! ```
//!
//! The tier sections are documented in [`crate::tier::settings`].
//!
//! Every section defaults the keys it leaves out (`[chunking]` with only `max` keeps the
//! default `min` and `avg`), and a key no section knows (a misspelling) is refused
//! rather than ignored. [`Settings::validate`] then checks the values, naming the key.
//!
//! Environment overrides (applied after the file): `STRATA_DATA_DIR`,
//! `STRATA_CACHE_BYTES`, `STRATA_META_USE`, `STRATA_META_URL` (the URL of the
//! connection `[meta] use` names). An override set to the empty string is refused:
//! `STRATA_DATA_DIR=` is more likely a script's unset variable than a wish to store
//! data in the current directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::ChunkerParams;

mod chunking;
mod policy;
mod scrub;
use chunking::{chunking_section, validate_chunking};
pub use policy::{
    ClassPolicy, CostsSettings, PolicyClass, PolicySettings, ServerSettings, WorkersSettings,
};
pub use scrub::ScrubSettings;

/// All settings of a store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Directory of the RocksDB database holding the hot tier and embedded metadata.
    /// Default `./strata-data`.
    pub data_dir: PathBuf,
    /// Content-defined chunking parameters for new blobs: `min` (default 16 KiB), `avg`
    /// (64 KiB) and `max` (256 KiB) bytes, each defaulting on its own.
    #[serde(deserialize_with = "chunking_section")]
    pub chunking: ChunkerParams,
    /// In-memory cache.
    pub cache: CacheSettings,
    /// Which metadata store to use.
    pub meta: MetaSettings,
    /// Named connections to external services, referenced by role sections.
    pub connections: BTreeMap<String, Connection>,
    /// Hot tier (RocksDB) tuning.
    pub hot: HotSettings,
    /// Garbage collection.
    pub gc: GcSettings,
    /// Access statistics.
    pub access: AccessSettings,
    /// Warm and cold tiers (packs in object stores), promotion and restores.
    pub tiers: TiersSettings,
    /// When a put is acknowledged.
    pub durability: DurabilitySettings,
    /// When chunks move between tiers, by default and per class.
    pub policy: PolicySettings,
    /// How often each background worker runs a pass.
    pub workers: WorkersSettings,
    /// Storage prices for cost estimates.
    pub costs: CostsSettings,
    /// What `strata serve` exposes.
    pub server: ServerSettings,
    /// How the scrubber re-verifies copies.
    pub scrub: ScrubSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("./strata-data"),
            chunking: ChunkerParams::default(),
            cache: CacheSettings::default(),
            meta: MetaSettings::default(),
            connections: BTreeMap::new(),
            hot: HotSettings::default(),
            gc: GcSettings::default(),
            access: AccessSettings::default(),
            tiers: TiersSettings::default(),
            durability: DurabilitySettings::default(),
            policy: PolicySettings::default(),
            workers: WorkersSettings::default(),
            costs: CostsSettings::default(),
            server: ServerSettings::default(),
            scrub: ScrubSettings::default(),
        }
    }
}

/// Cache settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// Bytes of chunk data and manifests kept in memory. Default 256 MiB. More makes
    /// repeated reads faster; 0 disables the cache.
    pub bytes: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            bytes: 256 * 1024 * 1024,
        }
    }
}

/// Metadata store selection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetaSettings {
    /// `"embedded"` (default: RocksDB column families beside the hot tier, no server)
    /// or the name of a `[connections.NAME]` entry of type `postgres`.
    #[serde(rename = "use")]
    pub use_: String,
}

impl Default for MetaSettings {
    fn default() -> Self {
        MetaSettings {
            use_: "embedded".into(),
        }
    }
}

/// A named connection to an external service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Connection {
    /// A PostgreSQL database.
    Postgres(PostgresConnection),
    /// An S3-compatible object store.
    S3(S3Connection),
}

/// S3 connection settings. Credentials come from the default AWS chain (environment
/// variables, profile, instance metadata), never from this file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Connection {
    /// Endpoint URL, e.g. `http://127.0.0.1:9000`; AWS's own when absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Bucket name.
    pub bucket: String,
    /// Region. Default `us-east-1`.
    #[serde(default = "default_region")]
    pub region: String,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most non-AWS servers.
    #[serde(default)]
    pub path_style: bool,
    /// Prefix of every key strata writes. Default `packs/`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Seconds a request without a large body (HEAD, DELETE, a LIST page, RESTORE,
    /// the steps of a multipart upload around its parts) may take in all, retries
    /// included. Default 30. GETs and PUTs of packs have no such limit: a transfer that
    /// keeps moving is never cut (see `read_timeout_secs`).
    #[serde(default = "default_s3_timeout")]
    pub timeout_secs: u64,
    /// Seconds to wait for a TCP (and TLS) connection to the endpoint. Default 5.
    #[serde(default = "default_s3_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Seconds to wait for a response once a request has been sent (for a PUT, once its
    /// body could have been sent at 256 KiB/s), and the longest a body being sent or
    /// received may make no progress. Each attempt; a timed-out attempt is retried up
    /// to `max_attempts`. Default 10.
    #[serde(default = "default_s3_read_timeout")]
    pub read_timeout_secs: u64,
    /// Attempts per request for throttling, 5xx and timeouts. Default 4.
    #[serde(default = "default_s3_attempts")]
    pub max_attempts: u32,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn default_prefix() -> String {
    "packs/".into()
}

fn default_s3_timeout() -> u64 {
    30
}

fn default_s3_connect_timeout() -> u64 {
    5
}

fn default_s3_read_timeout() -> u64 {
    10
}

fn default_s3_attempts() -> u32 {
    4
}

/// PostgreSQL connection settings.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConnection {
    /// `postgres://user:password@host:port/db`. Never logged: use [`redact_url`].
    pub url: String,
    /// Maximum pooled connections. Default 16.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Seconds to wait for a connection before failing with `Unavailable`. Default 5.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
}

fn default_pool_size() -> usize {
    16
}

fn default_connect_timeout() -> u64 {
    5
}

impl std::fmt::Debug for PostgresConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConnection")
            .field("url", &redact_url(&self.url))
            .field("pool_size", &self.pool_size)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .finish()
    }
}

/// Hide the password of a URL (`scheme://user:***@host/...`) for messages and logs.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((creds, host)) = rest.rsplit_once('@') {
            let user = creds.split(':').next().unwrap_or("");
            return format!("{scheme}://{user}:***@{host}");
        }
    }
    url.to_string()
}

/// Hot tier tuning.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HotSettings {
    /// Compression of RocksDB blob files: `"none"`, `"lz4"` (default: cheap, helps on
    /// text) or `"zstd"` (smaller, slower ingest).
    pub blob_compression: String,
    /// Sync RocksDB's WAL before a put is acknowledged. Default true; false trades the
    /// last puts before a power loss for throughput.
    pub sync: bool,
    /// RocksDB memtable size for chunk data, bytes. Default 32 MiB. A long stream pins
    /// up to `write_buffer_bytes * (flush_threads + 1)` before data reaches blob files.
    pub write_buffer_bytes: usize,
    /// Memtable flushes that may run at once. Default 2: a flush alternates CPU work
    /// (copy, compression, checksums) with synchronous writes of 1 MiB, so one flush
    /// thread keeps the disk at queue depth 1, and on a disk slower than about 1 GiB/s
    /// ingest waits on it; two overlap each other's writes (a virtual disk here wrote
    /// 1166 MiB/s at queue depth 1 and 2193 MiB/s at 2). There is one memtable more than
    /// this, the one being filled.
    pub flush_threads: usize,
    /// Write blob and table files (memtable flushes, compactions) with `O_DIRECT`,
    /// past the page cache. Default true: each ingested byte skips a kernel copy and
    /// the page-cache bookkeeping (a quarter less system time per put), at the cost of
    /// freshly written chunks not being in the page cache until first read. Ignored,
    /// with a warning, where the filesystem refuses `O_DIRECT`.
    pub direct_writes: bool,
    /// Open even though a write-ahead log is damaged, skipping its damaged records (and
    /// losing the writes in them). Default false: a damaged log makes open fail with
    /// `Corrupt`, naming the file. Not read from settings files or the environment, so
    /// it cannot stay on by accident: `strata recover --accept-wal-loss` sets it for one
    /// run (docs/design.md, "Write-ahead log damage").
    #[serde(skip)]
    pub accept_wal_loss: bool,
}

impl Default for HotSettings {
    fn default() -> Self {
        HotSettings {
            blob_compression: "lz4".into(),
            sync: true,
            write_buffer_bytes: 32 << 20,
            flush_threads: 2,
            direct_writes: true,
            accept_wal_loss: false,
        }
    }
}

/// Garbage collection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcSettings {
    /// Seconds a chunk must sit at zero references before its bytes are reclaimed, and
    /// a pack object no record names before it is deleted as an orphan. Default 3600:
    /// longer than any put in flight.
    pub grace_secs: u64,
    /// A warm pack whose live bytes fall below this fraction of its size is rewritten:
    /// its live chunks go to a new pack and the old object is deleted. Default 0.5: at
    /// most half of a warm pack's bytes are ever dead, and each rewrite at least halves
    /// the pack. Lower rewrites less often and keeps more dead bytes; 0 never rewrites.
    /// Cold packs are compacted by the same rule only when `[costs]` says the storage
    /// saved over 90 days exceeds the retrieval and request cost of the rewrite.
    pub pack_min_live_fraction: f64,
}

impl Default for GcSettings {
    fn default() -> Self {
        GcSettings {
            grace_secs: 3600,
            pack_min_live_fraction: 0.5,
        }
    }
}

/// Access statistics.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessSettings {
    /// Milliseconds between flushes of batched read statistics. Default 5000.
    pub flush_interval_ms: u64,
}

impl Default for AccessSettings {
    fn default() -> Self {
        AccessSettings {
            flush_interval_ms: 5000,
        }
    }
}

pub use crate::tier::settings::{Durability, DurabilitySettings, TierSettings, TiersSettings};

impl Settings {
    /// Load from a TOML file (if given) and apply environment overrides.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let mut settings = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::invalid(format!("cannot read settings file {}", path.display()))
                        .with_source(e)
                })?;
                Self::from_toml(&text)
                    .map_err(|e| e.context_prefix(format!("settings file {}", path.display())))?
            }
            None => Settings::default(),
        };
        settings.apply_env(|k| std::env::var(k).ok())?;
        settings.validate()?;
        Ok(settings)
    }

    /// Parse TOML text (no environment overrides).
    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::invalid(e.to_string()))
    }

    /// Apply `STRATA_*` overrides read through `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        let get = |key: &str| match get(key) {
            Some(v) if v.is_empty() => Err(Error::invalid(format!(
                "{key} is empty: unset it or give it a value"
            ))),
            v => Ok(v),
        };
        if let Some(v) = get("STRATA_DATA_DIR")? {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("STRATA_CACHE_BYTES")? {
            self.cache.bytes = v
                .parse()
                .map_err(|_| Error::invalid(format!("STRATA_CACHE_BYTES={v:?} is not a number")))?;
        }
        if let Some(v) = get("STRATA_META_USE")? {
            self.meta.use_ = v;
        }
        if let Some(url) = get("STRATA_META_URL")? {
            if self.meta.use_ == "embedded" {
                // A URL alone selects PostgreSQL under the conventional name "pg".
                self.meta.use_ = "pg".into();
            }
            let name = self.meta.use_.clone();
            match self.connections.get_mut(&name) {
                Some(Connection::Postgres(pg)) => pg.url = url,
                Some(Connection::S3(_)) => {
                    return Err(Error::invalid(format!(
                        "STRATA_META_URL is set but meta.use = {name:?} names an s3 connection"
                    )))
                }
                None => {
                    self.connections.insert(
                        name,
                        Connection::Postgres(PostgresConnection {
                            url,
                            pool_size: default_pool_size(),
                            connect_timeout_secs: default_connect_timeout(),
                        }),
                    );
                }
            }
        }
        Ok(())
    }

    /// Check cross-field consistency.
    pub fn validate(&self) -> Result<()> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(Error::invalid("data_dir is empty"));
        }
        validate_chunking(&self.chunking)?;
        if !["none", "lz4", "zstd"].contains(&self.hot.blob_compression.as_str()) {
            return Err(Error::invalid(format!(
                "hot.blob_compression = {:?}: expected none, lz4 or zstd",
                self.hot.blob_compression
            )));
        }
        if !(1..=16).contains(&self.hot.flush_threads) {
            return Err(Error::invalid(format!(
                "hot.flush_threads = {}: expected 1 to 16",
                self.hot.flush_threads
            )));
        }
        if self.hot.write_buffer_bytes < 1 << 20 {
            return Err(Error::invalid(format!(
                "hot.write_buffer_bytes = {}: expected at least 1 MiB (1048576)",
                self.hot.write_buffer_bytes
            )));
        }
        self.tiers.validate(&self.connections)?;
        self.scrub.validate()?;
        if !(0.0..=1.0).contains(&self.gc.pack_min_live_fraction) {
            return Err(Error::invalid(format!(
                "gc.pack_min_live_fraction = {}: expected 0 to 1",
                self.gc.pack_min_live_fraction
            )));
        }
        self.durability.validate()?;
        policy::validate(
            &self.policy,
            &self.workers,
            &self.costs,
            &self.server,
            self.tiers.cold.class(crate::model::Tier::Cold),
        )?;
        if self.meta.use_ != "embedded" {
            match self.connections.get(&self.meta.use_) {
                Some(Connection::Postgres(_)) => {}
                Some(Connection::S3(_)) => {
                    return Err(Error::invalid(format!(
                        "meta.use = {:?} names an s3 connection; metadata needs postgres",
                        self.meta.use_
                    )))
                }
                None => {
                    return Err(Error::invalid(format!(
                        "meta.use = {:?} names no [connections.{}] section",
                        self.meta.use_, self.meta.use_
                    )))
                }
            }
        }
        Ok(())
    }

    /// The PostgreSQL connection the metadata uses, if not embedded.
    pub fn meta_postgres(&self) -> Option<&PostgresConnection> {
        match self.connections.get(&self.meta.use_) {
            Some(Connection::Postgres(pg)) if self.meta.use_ != "embedded" => Some(pg),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_file() {
        let s = Settings::from_toml("").unwrap();
        assert_eq!(s.data_dir, PathBuf::from("./strata-data"));
        assert_eq!(
            s.chunking,
            ChunkerParams {
                min: 16384,
                avg: 65536,
                max: 262144
            }
        );
        assert_eq!(s.cache.bytes, 268435456);
        assert_eq!(s.meta.use_, "embedded");
        s.validate().unwrap();
    }

    #[test]
    fn documented_shape_parses() {
        let s = Settings::from_toml(
            r#"
            data_dir = "/tmp/x"
            [chunking]
            min = 4096
            avg = 16384
            max = 65536
            [cache]
            bytes = 1024
            [connections.pg]
            type = "postgres"
            url = "postgres://strata:secret@127.0.0.1:5432/strata"
            pool_size = 4
            [meta]
            use = "pg"
            "#,
        )
        .unwrap();
        s.validate().unwrap();
        assert_eq!(s.chunking.avg, 16384);
        let pg = s.meta_postgres().unwrap();
        assert_eq!(pg.pool_size, 4);
        assert_eq!(pg.connect_timeout_secs, 5);
        assert!(!format!("{pg:?}").contains("secret"));
    }

    #[test]
    fn env_overrides() {
        let mut s = Settings::default();
        s.apply_env(|k| match k {
            "STRATA_DATA_DIR" => Some("/d".into()),
            "STRATA_META_URL" => Some("postgres://u:p@h/db".into()),
            _ => None,
        })
        .unwrap();
        s.validate().unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/d"));
        assert_eq!(s.meta_postgres().unwrap().url, "postgres://u:p@h/db");
    }

    #[test]
    fn bad_values_are_invalid_input() {
        assert!(Settings::from_toml("nonsense = 1").is_err());
        let mut s = Settings::default();
        s.chunking.min = 1 << 20;
        assert_eq!(
            s.validate().unwrap_err().kind(),
            crate::ErrorKind::InvalidInput
        );
        let mut s = Settings::default();
        s.meta.use_ = "nowhere".into();
        assert!(s.validate().is_err());
        for toml in [
            "[hot]\nflush_threads = 0",
            "[hot]\nflush_threads = 17",
            "[hot]\nwrite_buffer_bytes = 4096",
        ] {
            let s = Settings::from_toml(toml).unwrap();
            let err = s.validate().unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{toml}");
            assert!(err.to_string().contains("hot."), "{toml}: {err}");
        }
        let s = Settings::from_toml("[hot]\nflush_threads = 1").unwrap();
        s.validate().unwrap();
        assert_eq!(s.hot.flush_threads, 1);
    }

    #[test]
    fn redacts_password() {
        assert_eq!(
            redact_url("postgres://u:pw@h:5/d"),
            "postgres://u:***@h:5/d"
        );
        assert_eq!(redact_url("postgres://h/d"), "postgres://h/d");
    }
}
