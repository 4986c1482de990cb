//! The PostgreSQL metadata store (DESIGN §6, docs/metadata.md): several strata
//! processes can share one database.
//!
//! - Connections come from a deadpool pool (`NoTls`) with bounded connect, wait and
//!   recycle timeouts; broken connections are dropped when handed back, so the pool
//!   recovers by itself when the server comes back after a restart.
//! - Migrations embedded in the binary are applied on [`PostgresMeta::connect`].
//! - Every write is one transaction that locks rows in one global order (blob row, then
//!   chunk rows by id, then location rows by identity) and is retried a few times on a
//!   serialization failure or deadlock. Bulk writes send one statement per batch of up
//!   to [`BATCH`] rows through `UNNEST` of array parameters.
//! - Parameters are always bound, never formatted into SQL. Messages name the server by
//!   a password-free description.

mod claims;
mod engine;
mod engine_scans;
mod errors;
mod fsck;
mod identity;
mod migrate;
mod placement;
mod reads;
mod rows;
mod writes;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Client, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use self::errors::{db_error, is_retryable, pool_error};
use super::MetaStore;
use crate::error::{Error, Result};
use crate::id::{BlobId, ChunkId};
use crate::model::{
    BlobCommit, BlobRecord, ChunkRecord, ClaimRequest, CommitOutcome, GcCandidate, Location,
    ManifestEntry, MetaStats, RefcountMismatch, VerifyRecord,
};
use crate::settings::PostgresConnection;

#[doc(hidden)]
pub use engine_scans::scan_statements;

/// Rows per bulk statement (one round trip each).
pub const BATCH: usize = 10_000;

/// How many times a transaction runs before a serialization failure or deadlock is
/// reported (as `Unavailable`).
const ATTEMPTS: u32 = 5;

/// The highest schema version this binary knows (and migrates to).
pub fn schema_version() -> u32 {
    migrate::MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Metadata in a PostgreSQL database. Cheap to clone (clones share the pool).
#[derive(Clone)]
pub struct PostgresMeta {
    pool: Pool,
    /// `postgres://user@host:port/db`: never contains the password.
    target: String,
}

impl std::fmt::Debug for PostgresMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresMeta")
            .field("target", &self.target)
            .finish()
    }
}

impl PostgresMeta {
    /// Open a connection pool to `conn.url` and bring the schema up to date.
    ///
    /// Fails with `Unavailable` if no connection can be made within
    /// `conn.connect_timeout_secs` (at least one second), with `InvalidInput` for a
    /// malformed URL, bad credentials, a missing database or a schema newer than this
    /// binary knows. Messages never contain the password.
    pub async fn connect(conn: &PostgresConnection) -> Result<PostgresMeta> {
        let mut cfg: tokio_postgres::Config = conn.url.parse().map_err(|_| {
            // The parser's message may quote part of the URL, so it is not passed on.
            Error::invalid(
                "the PostgreSQL connection URL is malformed (expected \
                 postgres://user:password@host:port/database; the URL is not shown because \
                 it may contain a password)",
            )
        })?;
        if conn.pool_size == 0 {
            return Err(Error::invalid("postgres pool_size must be at least 1"));
        }
        let timeout = Duration::from_secs(conn.connect_timeout_secs.max(1));
        cfg.connect_timeout(timeout);
        cfg.keepalives(true);
        cfg.keepalives_idle(Duration::from_secs(30));
        if cfg.get_application_name().is_none() {
            cfg.application_name("strata");
        }
        // Every strata statement is a key lookup or a range scan on an index. Right after
        // `gc` empties a table its statistics say "empty", and the cached generic plan of
        // a batched lookup (`id = ANY($1)`) turns into a sequential scan that compares
        // every row with every array element: a commit of 13,000 chunks spent 1.6 s in
        // two such queries (a semi-join on `unnest` was worse: a nested loop over
        // sequential scans). Sequential scans are only picked now when there is no index.
        let options = session_options(cfg.get_options());
        cfg.options(&options);
        let target = describe(&cfg);
        let manager = Manager::from_config(
            cfg,
            NoTls,
            // `Fast` hands out an idle connection after checking the client has not seen
            // its connection close; a connection that failed (server restarted, socket
            // error) is closed by tokio-postgres and so dropped here, not reused.
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(conn.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(|e| Error::internal(format!("postgres {target}: cannot build pool: {e}")))?;
        let meta = PostgresMeta { pool, target };
        meta.migrate().await?;
        Ok(meta)
    }

    /// Apply any pending migrations (idempotent; safe with concurrent processes) and
    /// return the schema version now in force. [`connect`](Self::connect) already does
    /// this; `strata meta migrate` calls it explicitly.
    pub async fn migrate(&self) -> Result<u32> {
        let mut client = self.client().await?;
        migrate::migrate(&mut client, &self.target, now_ms()).await
    }

    /// The server this store talks to, as `postgres://user@host:port/database` (no
    /// password), for messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Close the pool: idle connections are dropped and later calls fail with `Closed`.
    pub fn close(&self) {
        self.pool.close();
    }

    async fn client(&self) -> Result<Client> {
        self.pool
            .get()
            .await
            .map_err(|e| pool_error(e, &self.target))
    }

    fn err(&self, what: &'static str) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
        move |e| db_error(e, &self.target, what)
    }

    /// Run `attempt` until it succeeds, fails for another reason than a serialization
    /// failure or deadlock, or has run [`ATTEMPTS`] times.
    async fn retrying<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut tries = 1;
        loop {
            match attempt().await {
                Err(e) if tries < ATTEMPTS && is_retryable(&e) => {
                    tracing::debug!(target: "strata::meta", "postgres {}: {what} retried: {e}", self.target);
                    tokio::time::sleep(backoff(tries)).await;
                    tries += 1;
                }
                other => return other,
            }
        }
    }
}

/// Growing, slightly jittered pause between attempts: about 5, 10, 20, 40 ms.
fn backoff(tries: u32) -> Duration {
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_micros()) % 5_000);
    Duration::from_micros((5_000u64 << tries.min(6)) / 2 + jitter)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `postgres://user@host:port/db` from a parsed configuration: built from its parts so
/// that no password (in the authority or in a `password=` parameter) can leak.
fn describe(cfg: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let hosts: Vec<String> = cfg
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            };
            match cfg.get_ports().get(i).or_else(|| cfg.get_ports().first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    let user = cfg.get_user().unwrap_or("");
    let db = cfg.get_dbname().unwrap_or(user);
    format!("postgres://{user}@{}/{db}", hosts.join(","))
}

#[async_trait]
impl MetaStore for PostgresMeta {
    async fn readable_chunks(&self, ids: &[ChunkId], node: &str) -> Result<HashSet<ChunkId>> {
        self.readable_chunks_impl(ids, node).await
    }

    async fn commit_blob(&self, commit: &BlobCommit) -> Result<CommitOutcome> {
        self.commit_blob_impl(commit).await
    }

    async fn blob(&self, id: &BlobId) -> Result<Option<BlobRecord>> {
        self.blob_impl(id).await
    }

    async fn manifest_range(
        &self,
        id: &BlobId,
        start: u64,
        end: u64,
    ) -> Result<Vec<ManifestEntry>> {
        self.manifest_range_impl(id, start, end).await
    }

    async fn list_blobs(&self, after: Option<BlobId>, limit: usize) -> Result<Vec<BlobRecord>> {
        self.list_blobs_impl(after, limit).await
    }

    async fn delete_blob(&self, id: &BlobId, now_ms: u64) -> Result<Option<Vec<ChunkId>>> {
        self.delete_blob_impl(id, now_ms).await
    }

    async fn chunk(&self, id: &ChunkId) -> Result<Option<ChunkRecord>> {
        self.chunk_impl(id).await
    }

    async fn list_chunks(&self, after: Option<ChunkId>, limit: usize) -> Result<Vec<ChunkRecord>> {
        self.list_chunks_impl(after, limit).await
    }

    async fn locations(&self, id: &ChunkId) -> Result<Vec<Location>> {
        let mut all = self.locations_many_impl(std::slice::from_ref(id)).await?;
        Ok(all.remove(id).unwrap_or_default())
    }

    async fn locations_many(&self, ids: &[ChunkId]) -> Result<HashMap<ChunkId, Vec<Location>>> {
        self.locations_many_impl(ids).await
    }

    async fn record_verification(&self, results: &[VerifyRecord]) -> Result<()> {
        self.record_verification_impl(results).await
    }

    async fn record_access(&self, batch: &[(ChunkId, u64, u64)]) -> Result<()> {
        self.record_access_impl(batch).await
    }

    async fn gc_candidates(
        &self,
        zero_before_ms: u64,
        after: Option<GcCandidate>,
        limit: usize,
    ) -> Result<Vec<GcCandidate>> {
        self.gc_candidates_impl(zero_before_ms, after, limit).await
    }

    async fn gc_remove(&self, ids: &[ChunkId], node: &str) -> Result<Vec<ChunkId>> {
        self.gc_remove_impl(ids, node).await
    }

    async fn claim_locations(&self, req: &ClaimRequest) -> Result<Vec<Location>> {
        self.claim_locations_impl(req).await
    }

    async fn release_claims(&self, node: &str, locations: &[Location]) -> Result<()> {
        self.release_claims_impl(node, locations).await
    }

    async fn refcount_mismatches(&self) -> Result<Vec<RefcountMismatch>> {
        self.refcount_mismatches_impl().await
    }

    async fn repair_refcount(&self, mismatch: &RefcountMismatch, now_ms: u64) -> Result<bool> {
        self.retrying("repair reference count", || {
            self.repair_refcount_once(mismatch, now_ms)
        })
        .await
    }

    async fn stats(&self) -> Result<MetaStats> {
        self.stats_impl().await
    }

    async fn store_id(&self, proposed: &str) -> Result<super::StoreId> {
        self.retrying("store id", || self.store_id_once(proposed))
            .await
    }

    async fn has_packs(&self, tier: crate::model::Tier) -> Result<bool> {
        self.has_packs_impl(tier).await
    }
}

/// The server options of strata's sessions: those the URL gives, then ours.
fn session_options(given: Option<&str>) -> String {
    match given {
        Some(given) if !given.trim().is_empty() => format!("{given} -c enable_seqscan=off"),
        _ => "-c enable_seqscan=off".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_options_keep_the_urls_and_turn_off_seqscan() {
        let cfg: tokio_postgres::Config = "postgres://u@h/db?options=-c%20search_path%3Dx"
            .parse()
            .unwrap();
        let o = session_options(cfg.get_options());
        assert_eq!(o, "-c search_path=x -c enable_seqscan=off");
        assert_eq!(session_options(None), "-c enable_seqscan=off");
    }

    #[test]
    fn description_has_no_password() {
        for url in [
            "postgres://alice:s3cret@db.example:6543/meta",
            "postgresql://alice:s3cret@db.example/meta?password=s3cret",
            "host=db.example port=6543 user=alice password=s3cret dbname=meta",
        ] {
            let cfg: tokio_postgres::Config = url.parse().unwrap();
            let d = describe(&cfg);
            assert!(!d.contains("s3cret"), "{d}");
            assert!(d.starts_with("postgres://alice@db.example"), "{d}");
            assert!(d.ends_with("/meta"), "{d}");
        }
    }

    #[test]
    fn backoff_grows_and_stays_small() {
        assert!(backoff(1) < backoff(4));
        assert!(backoff(10) < Duration::from_millis(200));
    }
}
