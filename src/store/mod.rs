//! The [`Store`]: the library API (DESIGN §3–4) over a metadata store and a hot tier.
//!
//! Components are injected ([`Components`]) so tests can swap in a fault-injecting
//! metadata store or a manual clock; [`Store::open`] builds the defaults from
//! [`Settings`]. Shutdown is ordered: refuse new work, stop workers (flushing access
//! statistics), then sync and release the database.

mod access;
mod admin;
mod assemble;
mod engine_support;
mod fetch;
mod foreground;
mod fsck;
mod identity;
mod pack_gc;
mod promote;
mod put;
mod put_existing;
mod read;
mod restore;
mod scrub;
mod tiering;
mod verify;
mod writing;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use moka::future::Cache;

pub use admin::{GcReport, Stat, TierBytes};
pub use fsck::{FsckReport, Problem, ProblemKind, Repair};
pub use identity::IDENTITY_KEY;
pub use promote::PromotionStats;
pub(crate) use put::BLOCK_BYTES;
pub use put::{PutOptions, PutReceipt};
pub use scrub::{DamagedRange, ScrubReport, ScrubbedCopy, UnrepairableChunk};
pub use tiering::MoveReport;
pub use verify::{CheckMethod, DamagedBlob, DamagedCopy, LostChunk, TierCheck, VerifyReport};

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::hot::{ChunkTier, HotTier};
use crate::id::{BlobId, ChunkId};
use crate::meta::embedded::EmbeddedMeta;
use crate::meta::MetaStore;
use crate::model::{BlobRecord, ManifestEntry};
use crate::rocks;
use crate::settings::Settings;
use crate::worker::WorkerSet;
use access::AccessLog;
use promote::Promotions;
use writing::WriteRegistry;

/// Blobs with at most this many chunks have their whole manifest cached after a read;
/// larger ones are looked up by range each time (one metadata query).
const MANIFEST_CACHE_MAX_ENTRIES: u64 = 4096;

/// Replacements for the components [`Store::open`] would build from settings.
#[derive(Default)]
pub struct Components {
    /// Metadata store (default: from `settings.meta`).
    pub meta: Option<Arc<dyn MetaStore>>,
    /// Hot tier (default: RocksDB in `settings.data_dir`).
    pub hot: Option<Arc<dyn ChunkTier>>,
    /// Clock (default: the system clock).
    pub clock: Option<Arc<dyn Clock>>,
    /// Wraps whichever metadata store is chosen (fault injection, metrics).
    pub wrap_meta: Option<MetaWrapper>,
    /// Object store of the warm tier (default: from `settings.tiers.warm`).
    pub warm: Option<Arc<dyn crate::object::ObjectStore>>,
    /// Object store of the cold tier (default: from `settings.tiers.cold`).
    pub cold: Option<Arc<dyn crate::object::ObjectStore>>,
    /// Test hook: awaited at named points of some operations (see [`PausePoint`]).
    pub pause: Option<Arc<dyn PausePoint>>,
}

/// A test hook that can hold an operation at a named point, to force an interleaving
/// of concurrent operations. Points: `"hot-delete"` (a deletion of hot bytes, after the
/// metadata commit that removed their locations, before the deletion step),
/// `"put-commit"` (a put, after writing its chunks, before its metadata commit),
/// `"pack-rewrite-commit"` (gc rewriting a sparse pack, after uploading the new packs,
/// before the commit that moves the copies), `"pack-delete"` (gc, after deleting a dead
/// pack's record, before its object), `"orphan-delete"` (gc's orphan sweep, before
/// deleting an object) and `"scrub-repair"` (a scrub step, after recording its
/// verdicts, before repairing).
pub trait PausePoint: Send + Sync + 'static {
    /// Return when the operation at `point` may go on.
    fn at<'a>(&'a self, point: &'static str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// A function wrapping the metadata store, see [`Components::wrap_meta`].
pub type MetaWrapper = Box<dyn FnOnce(Arc<dyn MetaStore>) -> Arc<dyn MetaStore> + Send>;

/// A handle to an open store. Cheap to clone; all clones share one store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    meta: Arc<dyn MetaStore>,
    hot: Arc<dyn ChunkTier>,
    /// The warm and cold tiers (packs in object stores).
    tiers: crate::tier::Tiers,
    /// Write and delete intents on pack names (docs/integrity.md, "Pack intents").
    intents: crate::engine::intent::PackIntents,
    clock: Arc<dyn Clock>,
    node: String,
    /// True when metadata commits go through the same RocksDB WAL as chunk writes, so
    /// the synced commit also makes the chunks durable.
    wal_shared: bool,
    chunks: Cache<ChunkId, Bytes>,
    blobs: Cache<BlobId, Arc<BlobRecord>>,
    manifests: Cache<BlobId, Arc<Vec<ManifestEntry>>>,
    access: Arc<AccessLog>,
    promotions: Arc<Promotions>,
    /// Chunks being written to hot and not yet committed; every deletion of hot bytes
    /// skips them (see `writing`).
    writing: WriteRegistry,
    /// Held shared by each put, gc and move for its whole run, so that `close()` (which
    /// takes it exclusively once) waits for them. Never held exclusively by anything
    /// else: it orders nothing between operations.
    in_flight: tokio::sync::RwLock<()>,
    /// Puts and reads running now, for background passes that yield to them.
    foreground: Arc<foreground::Foreground>,
    pause: Option<Arc<dyn PausePoint>>,
    workers: tokio::sync::Mutex<WorkerSet>,
    closed: AtomicBool,
}

impl Store {
    /// Open the store described by `settings` (creating the data directory).
    pub async fn open(settings: Settings) -> Result<Store> {
        Self::open_with(settings, Components::default()).await
    }

    /// Open with some components replaced.
    pub async fn open_with(settings: Settings, components: Components) -> Result<Store> {
        settings.validate()?;
        let needs_db = components.hot.is_none()
            || (components.meta.is_none() && settings.meta_postgres().is_none());
        let db = if needs_db {
            let dir = settings.data_dir.clone();
            let hot_settings = settings.hot.clone();
            Some(tokio::task::spawn_blocking(move || rocks::open(&dir, &hot_settings)).await??)
        } else {
            None
        };
        let node = match &db {
            Some(db) => node_id(db, &settings)?,
            None => format!("node-{}", std::process::id()),
        };
        let clock = components.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let (meta, wal_shared): (Arc<dyn MetaStore>, bool) = match (components.meta, &db) {
            (Some(m), _) => (m, false),
            (None, Some(db)) if settings.meta_postgres().is_none() => (
                Arc::new(EmbeddedMeta::new_with_clock(
                    db.clone(),
                    settings.hot.sync,
                    clock.clone(),
                )?),
                true,
            ),
            (None, _) => match settings.meta_postgres() {
                Some(pg) => (
                    Arc::new(crate::meta::postgres::PostgresMeta::connect(pg).await?),
                    false,
                ),
                None => return Err(Error::internal("no metadata store configured")),
            },
        };
        let meta = match components.wrap_meta {
            Some(wrap) => wrap(meta),
            None => meta,
        };
        let hot: Arc<dyn ChunkTier> = match (components.hot, db) {
            (Some(h), _) => h,
            (None, Some(db)) => Arc::new(HotTier::new(db)),
            (None, None) => return Err(Error::internal("no hot tier configured")),
        };
        let tiers =
            crate::tier::Tiers::build(&settings, components.warm, components.cold, clock.clone())
                .await?;
        identity::check(meta.as_ref(), &tiers, &node).await?;
        let cache_bytes = settings.cache.bytes;
        // Chunk bytes get most of the budget; manifests and records are small.
        let weigh_cap = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let chunks = Cache::builder()
            .max_capacity(cache_bytes / 8 * 7)
            .weigher(move |_: &ChunkId, v: &Bytes| weigh_cap(v.len()))
            .build();
        let blobs = Cache::builder()
            .max_capacity((cache_bytes / 64).max(1024) / 64)
            .build();
        let manifests = Cache::builder()
            .max_capacity(cache_bytes / 16)
            .weigher(move |_: &BlobId, v: &Arc<Vec<ManifestEntry>>| weigh_cap(v.len() * 48))
            .build();
        let access = Arc::new(AccessLog::new(meta.clone(), node.clone()));
        let mut workers = WorkerSet::new();
        workers.start(
            access.clone(),
            Duration::from_millis(settings.access.flush_interval_ms.max(10)),
        );
        let promotions = Arc::new(Promotions::new(&settings, clock.clone()));
        let store = Store {
            inner: Arc::new(Inner {
                intents: crate::engine::intent::PackIntents::new(
                    meta.clone(),
                    &node,
                    settings.workers.lease_secs.saturating_mul(1000),
                ),
                settings,
                meta,
                hot,
                tiers,
                clock,
                node,
                wal_shared,
                chunks,
                blobs,
                manifests,
                access,
                promotions: promotions.clone(),
                writing: WriteRegistry::default(),
                in_flight: tokio::sync::RwLock::new(()),
                foreground: Arc::default(),
                pause: components.pause,
                workers: tokio::sync::Mutex::new(workers),
                closed: AtomicBool::new(false),
            }),
        };
        // Started after the access flush, so stopped before it: promotions drained at
        // close still count as reads.
        if promotions.enabled() {
            promotions.attach(Arc::downgrade(&store.inner));
            store
                .inner
                .workers
                .lock()
                .await
                .start(promotions, promote::TICK);
        }
        Ok(store)
    }

    /// The settings this store runs with.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// This node's id (owner of its hot copies in shared metadata).
    pub fn node_id(&self) -> &str {
        &self.inner.node
    }

    /// Write and delete intents on pack names, for everything that writes packs.
    pub fn pack_intents(&self) -> &crate::engine::intent::PackIntents {
        &self.inner.intents
    }

    /// The metadata store (for tools and tests).
    pub fn meta(&self) -> &Arc<dyn MetaStore> {
        &self.inner.meta
    }

    /// The blob's record (size, chunk count, chunking parameters) without its manifest.
    pub async fn head(&self, id: &BlobId) -> Result<BlobRecord> {
        self.check_open()?;
        Ok(self.blob_record(id).await?.as_ref().clone())
    }

    /// Whether the blob is committed.
    pub async fn contains(&self, id: &BlobId) -> Result<bool> {
        self.check_open()?;
        self.blob_record(id).await.map(|_| true).or_else(|e| {
            if e.kind() == crate::ErrorKind::NotFound {
                Ok(false)
            } else {
                Err(e)
            }
        })
    }

    /// Stop background work (flushing access statistics) and make everything durable.
    /// Later calls on any clone fail with `Closed`. Idempotent.
    ///
    /// The data directory stays locked until the last clone of this handle is dropped
    /// (the database closes with it): drop every clone before opening the same
    /// directory again in this process.
    pub async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // Wait for puts, gc and moves in flight to finish before tearing down; any that
        // start later see the store closed (`begin`).
        drop(self.inner.in_flight.write().await);
        self.inner.workers.lock().await.close().await?;
        self.inner.hot.sync().await
    }

    /// Write the read statistics gathered so far now, instead of at the access-flush
    /// worker's next tick. A failed write keeps them for the next flush.
    pub async fn flush_access(&self) -> Result<()> {
        self.inner.access.flush().await
    }

    /// Reads whose statistics were dropped (pending batches full while the metadata
    /// store failed), and distinct chunks whose read counts wait to be written.
    pub fn access_backlog(&self) -> (u64, usize) {
        (self.inner.access.dropped(), self.inner.access.pending())
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::SeqCst) {
            Err(Error::closed())
        } else {
            Ok(())
        }
    }

    /// Start an operation that `close()` must wait for: `Closed` once closing began.
    async fn begin(&self) -> Result<tokio::sync::RwLockReadGuard<'_, ()>> {
        let guard = self.inner.in_flight.read().await;
        self.check_open()?;
        Ok(guard)
    }

    /// Whether puts or reads run now (or ended a moment ago): background passes then
    /// run their heavy steps one at a time.
    pub fn foreground_busy(&self) -> bool {
        self.inner.foreground.busy()
    }

    /// Wait at a named test point, when a test installed the hook.
    async fn pause_at(&self, point: &'static str) {
        if let Some(p) = &self.inner.pause {
            p.at(point).await;
        }
    }

    fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    /// The blob's record, from the cache or the metadata store; `NotFound` if absent.
    async fn blob_record(&self, id: &BlobId) -> Result<Arc<BlobRecord>> {
        if let Some(rec) = self.inner.blobs.get(id).await {
            return Ok(rec);
        }
        match self.inner.meta.blob(id).await? {
            Some(rec) => {
                let rec = Arc::new(rec);
                self.inner.blobs.insert(*id, rec.clone()).await;
                Ok(rec)
            }
            None => Err(Error::not_found(format!("blob {id}"))),
        }
    }
}

/// This data directory's node id: created once, kept in the database.
fn node_id(db: &rocksdb::DB, settings: &Settings) -> Result<String> {
    let sys = rocks::cf(db, rocks::CF_SYSTEM)?;
    if let Some(v) = db.get_cf(sys, b"node_id")? {
        return String::from_utf8(v).map_err(|_| Error::corrupt("node id is not UTF-8"));
    }
    let mut h = blake3::Hasher::new();
    h.update(&std::process::id().to_le_bytes());
    h.update(format!("{:?}", std::time::SystemTime::now()).as_bytes());
    h.update(settings.data_dir.to_string_lossy().as_bytes());
    let id = format!("node-{}", &h.finalize().to_hex()[..16]);
    db.put_cf(sys, b"node_id", id.as_bytes())?;
    Ok(id)
}
