//! The metadata conformance suite, and PostgreSQL-specific behaviour (migrations, bulk
//! commits, several processes on one database, outages), against a real server.
//!
//! The server comes from `STRATA_TEST_PG_URL`, an admin-capable URL such as
//! `postgres://postgres@127.0.0.1:55432/postgres` (`eval "$(bash scripts/pg.sh)"` starts
//! a throwaway cluster and prints it). Without it the tests are skipped, except under
//! `CI=true`, where that is a failure. Each test works in its own schema of the database
//! `strata_test` (through `search_path` in the connection URL), so tests run in
//! parallel; the restart test takes the server to itself.

#[path = "common/meta_conformance.rs"]
mod meta_conformance;
#[path = "common/placement_conformance.rs"]
mod placement_conformance;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use meta_conformance::*;
use strata::meta::postgres::{schema_version, PostgresMeta};
use strata::meta::MetaStore;
use strata::model::{CommitOutcome, Location};
use strata::settings::PostgresConnection;
use strata::{ChunkId, ErrorKind};
use tokio::sync::{OwnedRwLockReadGuard, RwLock};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

/// Database holding one schema per test.
const TEST_DB: &str = "strata_test";

/// Held shared by every test using the server, exclusively by the restart test.
static SERVER: LazyLock<Arc<RwLock<()>>> = LazyLock::new(|| Arc::new(RwLock::new(())));
/// Creates `strata_test` and removes schemas left by earlier runs, once per process.
static SETUP: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
static NEXT_SCHEMA: AtomicU32 = AtomicU32::new(0);

/// The admin URL, or `None` to skip (a failure under `CI=true`).
fn admin_url() -> Option<String> {
    match std::env::var("STRATA_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "STRATA_TEST_PG_URL is not set and CI=true: start PostgreSQL with \
                     `eval \"$(bash scripts/pg.sh)\"` before running these tests"
                );
            }
            eprintln!("skipping: STRATA_TEST_PG_URL not set");
            None
        }
    }
}

/// `url` with `params` (already percent-encoded) added to its query string; later
/// parameters override the path (`dbname`).
fn with_params(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

async fn plain_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

async fn setup(admin: &str) {
    let client = plain_client(admin).await;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&TEST_DB])
        .await
        .expect("look for the test database")
        .is_some();
    if !exists {
        match client
            .batch_execute(&format!("CREATE DATABASE {TEST_DB}"))
            .await
        {
            Ok(()) => {}
            // Another test process created it at the same moment.
            Err(e)
                if e.code() == Some(&SqlState::DUPLICATE_DATABASE)
                    || e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {}
            Err(e) => panic!("create database {TEST_DB}: {e}"),
        }
    }
    // Drop schemas of test processes that are gone (a test that panicked may leave one).
    let db = plain_client(&with_params(admin, &format!("dbname={TEST_DB}"))).await;
    let rows = db
        .query(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'strata\\_t\\_%'",
            &[],
        )
        .await
        .expect("list test schemas");
    for row in rows {
        let name: String = row.get(0);
        let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = db
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await;
            }
        }
    }
}

/// A fresh schema in `strata_test`, dropped when the value is.
struct Schema {
    name: String,
    /// Connection URL whose sessions use only this schema.
    url: String,
    /// Admin URL of the database `strata_test`.
    db_url: String,
    _server: Box<dyn std::any::Any + Send + Sync>,
}

impl Drop for Schema {
    fn drop(&mut self) {
        let db_url = self.db_url.clone();
        let name = self.name.clone();
        // Drop may run inside a runtime (or while unwinding): use a thread of its own.
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok((client, conn)) = tokio_postgres::connect(&db_url, NoTls).await {
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .await;
                }
            });
        });
        let _ = done.join();
    }
}

/// A fresh schema, holding the server shared.
async fn schema() -> Option<Schema> {
    let admin = admin_url()?;
    let guard: OwnedRwLockReadGuard<()> = SERVER.clone().read_owned().await;
    Some(schema_under(&admin, Box::new(guard)).await)
}

async fn schema_under(admin: &str, server: Box<dyn std::any::Any + Send + Sync>) -> Schema {
    SETUP.get_or_init(|| setup(admin)).await;
    // Generated here (never from input), so it is safe to put into SQL as an identifier.
    let name = format!(
        "strata_t_{}_{}",
        std::process::id(),
        NEXT_SCHEMA.fetch_add(1, Ordering::SeqCst)
    );
    let db_url = with_params(admin, &format!("dbname={TEST_DB}"));
    plain_client(&db_url)
        .await
        .batch_execute(&format!("CREATE SCHEMA {name}"))
        .await
        .expect("create test schema");
    let url = with_params(&db_url, &format!("options=-c%20search_path%3D{name}"));
    Schema {
        name,
        url,
        db_url,
        _server: server,
    }
}

fn settings(url: &str) -> PostgresConnection {
    PostgresConnection {
        url: url.to_string(),
        pool_size: 4,
        connect_timeout_secs: 5,
    }
}

async fn connect(url: &str) -> PostgresMeta {
    PostgresMeta::connect(&settings(url))
        .await
        .expect("connect PostgresMeta")
}

/// A fresh store in a fresh schema, for the conformance suite.
async fn make() -> Option<Fixture> {
    let schema = schema().await?;
    let meta = connect(&schema.url).await;
    Some(Fixture {
        store: Arc::new(meta),
        guard: Box::new(schema),
    })
}

meta_conformance_tests!(make);
placement_conformance_tests!(make);

// ---------------------------------------------------------------------------------
// Migrations
// ---------------------------------------------------------------------------------

async fn version_rows(schema: &Schema) -> i64 {
    plain_client(&schema.db_url)
        .await
        .query_one(
            &format!("SELECT count(*) FROM {}.strata_schema_version", schema.name),
            &[],
        )
        .await
        .expect("count schema versions")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_rerun_is_a_no_op() {
    let Some(schema) = schema().await else { return };
    let meta = connect(&schema.url).await;
    let v = meta.migrate().await.expect("migrate");
    assert_eq!(v, schema_version());
    let x = commit_of("kept", &[(chunk(1), 10), (chunk(2), 20)], NODE, true);
    commit_ok(&meta, &x).await;
    assert_eq!(meta.migrate().await.expect("migrate again"), v);
    let again = connect(&schema.url).await; // connecting migrates once more
    assert_eq!(again.blob(&x.blob.id).await.unwrap(), Some(x.blob.clone()));
    assert_eq!(again.stats().await.unwrap().schema_version, v);
    assert_eq!(version_rows(&schema).await, i64::from(v));
    assert_consistent(&again).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connects_migrate_once() {
    let Some(schema) = schema().await else { return };
    let all: Vec<_> = (0..4).map(|_| settings(&schema.url)).collect();
    let metas = futures::future::join_all(all.iter().map(PostgresMeta::connect)).await;
    for m in &metas {
        assert!(m.is_ok(), "{:?}", m.as_ref().err());
    }
    assert_eq!(version_rows(&schema).await, i64::from(schema_version()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_schema_is_refused() {
    let Some(schema) = schema().await else { return };
    let meta = connect(&schema.url).await;
    let future = i32::try_from(schema_version() + 1).unwrap();
    plain_client(&schema.db_url)
        .await
        .execute(
            &format!(
                "INSERT INTO {}.strata_schema_version (version, name, applied_ms) VALUES ($1, 'from the future', 0)",
                schema.name
            ),
            &[&future],
        )
        .await
        .expect("pretend a newer strata migrated");
    let err = PostgresMeta::connect(&settings(&schema.url))
        .await
        .expect_err("must refuse");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("newer") && msg.contains(&future.to_string()),
        "{msg}"
    );
    let err = meta.migrate().await.expect_err("must refuse");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    println!("refused with: {msg}");
}

// ---------------------------------------------------------------------------------
// Bulk
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_commit_of_16000_entries() {
    let Some(schema) = schema().await else { return };
    let meta = connect(&schema.url).await;
    // 16,000 entries over 15,000 distinct chunks (1,000 used twice), 64 KiB each.
    let parts: Vec<(ChunkId, u32)> = (0..16_000u32)
        .map(|i| (chunk(i % 15_000), 65_536))
        .collect();
    let commit = commit_of("bulk", &parts, NODE, true);
    assert_eq!(commit.new_locations.len(), 15_000);

    let started = Instant::now();
    commit_ok(&meta, &commit).await;
    let commit_time = started.elapsed();
    println!("committed a 16,000-entry manifest (15,000 chunks, 15,000 copies) in {commit_time:?}");
    eprintln!("committed a 16,000-entry manifest in {commit_time:?}");

    let ids: Vec<ChunkId> = (0..15_000).map(chunk).collect();
    let started = Instant::now();
    let readable = meta.readable_chunks(&ids, NODE).await.unwrap();
    println!("readable_chunks of 15,000 ids in {:?}", started.elapsed());
    assert_eq!(readable.len(), 15_000);
    let mid = 8_000u64 * 65_536;
    let range = meta
        .manifest_range(&commit.blob.id, mid + 10, mid + 65_536 + 10)
        .await
        .unwrap();
    assert_eq!(range, commit.entries[8_000..8_002]);
    let all = meta
        .manifest_range(&commit.blob.id, 0, u64::MAX)
        .await
        .unwrap();
    assert_eq!(all, commit.entries);
    assert_eq!(meta.chunk(&chunk(10)).await.unwrap().unwrap().refcount, 2);
    assert_eq!(
        meta.chunk(&chunk(14_999)).await.unwrap().unwrap().refcount,
        1
    );
    let stats = meta.stats().await.unwrap();
    assert_eq!(
        (stats.manifest_entries, stats.chunks, stats.locations),
        (16_000, 15_000, 15_000)
    );

    let started = Instant::now();
    let zeroed = meta
        .delete_blob(&commit.blob.id, T0)
        .await
        .unwrap()
        .expect("deleted");
    println!("deleted it in {:?}", started.elapsed());
    assert_eq!(zeroed.len(), 15_000);
    let started = Instant::now();
    let removed = meta.gc_remove(&zeroed, NODE).await.unwrap();
    println!("gc_remove of 15,000 chunks in {:?}", started.elapsed());
    assert_eq!(removed.len(), 15_000);
    let stats = meta.stats().await.unwrap();
    assert_eq!(
        (
            stats.blobs,
            stats.manifest_entries,
            stats.chunks,
            stats.locations
        ),
        (0, 0, 0, 0)
    );
}

// ---------------------------------------------------------------------------------
// Two processes on one database
// ---------------------------------------------------------------------------------

/// A small deterministic generator (no seed handling needed in tests).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u32) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % u64::from(below)) as u32
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_commit_and_delete_concurrently() {
    let Some(schema) = schema().await else { return };
    let a: Arc<dyn MetaStore> = Arc::new(connect(&schema.url).await);
    let b: Arc<dyn MetaStore> = Arc::new(connect(&schema.url).await);
    let nodes = ["node-a", "node-b"];

    // Workers committing blobs over a small shared pool of chunks, deleting some.
    let mut tasks = Vec::new();
    for w in 0..6u32 {
        let meta = if w % 2 == 0 { a.clone() } else { b.clone() };
        let node = nodes[(w % 2) as usize];
        tasks.push(tokio::spawn(async move {
            let mut rng = Lcg(u64::from(w) + 1);
            for i in 0..25 {
                let parts: Vec<(ChunkId, u32)> =
                    (0..8).map(|_| (chunk(rng.next(40)), 100)).collect();
                let c = commit_of(&format!("w{w}-{i}"), &parts, node, true);
                assert_eq!(
                    meta.commit_blob(&c).await.unwrap(),
                    CommitOutcome::Committed
                );
                if rng.next(3) == 0 {
                    assert!(meta.delete_blob(&c.blob.id, T0).await.unwrap().is_some());
                }
            }
        }));
    }
    // The same blob committed by both at once: one wins, the other sees it.
    for k in 0..10 {
        let parts = [(chunk(k), 100), (chunk(k + 1), 100)];
        let ca = commit_of(&format!("same-{k}"), &parts, "node-a", true);
        let cb = commit_of(&format!("same-{k}"), &parts, "node-b", true);
        let (ra, rb) = tokio::join!(a.commit_blob(&ca), b.commit_blob(&cb));
        let outcomes = [ra.unwrap(), rb.unwrap()];
        let won = outcomes
            .iter()
            .filter(|o| **o == CommitOutcome::Committed)
            .count();
        let saw = outcomes
            .iter()
            .filter(|o| matches!(o, CommitOutcome::AlreadyExists(_)))
            .count();
        assert_eq!((won, saw), (1, 1), "{outcomes:?}");
    }
    // A delete racing a commit of the same blob: the blob exists afterwards exactly when
    // the commit says it committed.
    for k in 0..10 {
        let parts = [(chunk(k + 20), 100), (chunk(k), 100)];
        let c = commit_of(&format!("race-{k}"), &parts, "node-b", true);
        commit_ok(
            &*a,
            &commit_of(&format!("race-{k}"), &parts, "node-a", true),
        )
        .await;
        let (deleted, committed) = tokio::join!(a.delete_blob(&c.blob.id, T0), b.commit_blob(&c));
        assert!(deleted.unwrap().is_some());
        let committed = committed.unwrap();
        let exists = a.blob(&c.blob.id).await.unwrap().is_some();
        assert_eq!(
            exists,
            committed == CommitOutcome::Committed,
            "{committed:?}"
        );
    }
    for t in tasks {
        t.await.expect("worker");
    }
    assert!(a.refcount_mismatches().await.unwrap().is_empty());
    assert_consistent(&*a).await;
    assert_consistent(&*b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_never_removes_a_copy_a_commit_relies_on() {
    let Some(schema) = schema().await else { return };
    let writer: Arc<dyn MetaStore> = Arc::new(connect(&schema.url).await);
    let collector: Arc<dyn MetaStore> = Arc::new(connect(&schema.url).await);
    let parts: Vec<(ChunkId, u32)> = (0..10).map(|i| (chunk(i), 100)).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // GC on NODE, as fast as it can: every chunk at zero loses its hot copy.
    let gc = {
        let collector = collector.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut removed = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let page = collector.gc_candidates(u64::MAX, None, 100).await.unwrap();
                let ids: Vec<ChunkId> = page.iter().map(|c| c.chunk).collect();
                removed += collector.gc_remove(&ids, NODE).await.unwrap().len();
                tokio::task::yield_now().await;
            }
            removed
        })
    };
    // A writer committing and deleting a blob over the chunks, deduplicating against
    // what it believes is there, and rewriting when told chunks are missing.
    let mut missing_seen = 0;
    for i in 0..60 {
        let name = format!("g{i}");
        let dedup = commit_of(&name, &parts, NODE, false);
        match writer.commit_blob(&dedup).await.unwrap() {
            CommitOutcome::Committed => {}
            CommitOutcome::MissingChunks(ids) => {
                missing_seen += 1;
                let mut rewrite = commit_of(&name, &parts, NODE, false);
                rewrite.new_locations = ids
                    .iter()
                    .map(|id| Location::hot(*id, NODE, 100, T0))
                    .collect();
                // GC may take more chunks between the two attempts: write them all then.
                match writer.commit_blob(&rewrite).await.unwrap() {
                    CommitOutcome::Committed => {}
                    CommitOutcome::MissingChunks(_) => {
                        commit_ok(&*writer, &commit_of(&name, &parts, NODE, true)).await
                    }
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
        // A committed blob's chunks are readable (GC must leave referenced chunks alone),
        // then the blob goes and its chunks drop to zero for GC to race with the next put.
        let ids: Vec<ChunkId> = parts.iter().map(|p| p.0).collect();
        let readable = writer.readable_chunks(&ids, NODE).await.unwrap();
        assert_eq!(readable.len(), ids.len(), "a committed blob lost a copy");
        assert!(writer
            .delete_blob(&blob_id(&name), T0)
            .await
            .unwrap()
            .is_some());
    }
    stop.store(true, Ordering::SeqCst);
    let removed = gc.await.expect("gc task");
    println!("gc removed {removed} copies; the writer had to rewrite {missing_seen} times");
    assert!(writer.list_blobs(None, 10).await.unwrap().is_empty());
    assert_consistent(&*writer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_between_two_instances_never_overlap() {
    let Some(schema) = schema().await else { return };
    let a: Arc<dyn MetaStore> = Arc::new(connect(&schema.url).await);
    let b: Arc<dyn MetaStore> = Arc::new(connect(&schema.url).await);
    let parts: Vec<(ChunkId, u32)> = (0..200).map(|i| (chunk(i), 10)).collect();
    commit_ok(&*a, &commit_of("claims", &parts, NODE, true)).await;
    let mut tasks = Vec::new();
    for w in 0..6 {
        let meta = if w % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            // A fresh node name per round (a node may get its own claims back).
            for round in 0.. {
                let mut req = claim(&format!("worker-{w}-{round}"), 7, T0);
                req.lease_ms = 600_000;
                let got = meta.claim_locations(&req).await.expect("claim");
                if got.is_empty() {
                    break;
                }
                mine.extend(got.iter().map(key));
            }
            mine
        }));
    }
    let mut seen = std::collections::BTreeSet::new();
    for t in tasks {
        for k in t.await.expect("claimer") {
            assert!(seen.insert(k.clone()), "{k:?} claimed twice");
        }
    }
    assert_eq!(seen.len(), 200);
}

// ---------------------------------------------------------------------------------
// Outages
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_unavailable_without_hanging() {
    // Needs no server. Port 1 refuses at once; the second address may swallow packets,
    // so only the connect timeout ends the attempt.
    for (url, timeout) in [
        ("postgres://strata:hunter2-secret@127.0.0.1:1/strata", 2u64),
        (
            "postgres://strata:hunter2-secret@10.255.255.1:5432/strata?connect_timeout=60",
            1,
        ),
    ] {
        let conn = PostgresConnection {
            url: url.into(),
            pool_size: 2,
            connect_timeout_secs: timeout,
        };
        let started = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(30), PostgresMeta::connect(&conn))
            .await
            .expect("connect hung far past its timeout");
        let err = result.expect_err("nothing listens there");
        println!("{url}: failed after {:?} with: {err}", started.elapsed());
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
        let text = format!("{err} {err:?}");
        assert!(!text.contains("hunter2"), "password leaked: {text}");
        assert!(text.contains("strata@"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_url_is_invalid_input_without_the_password() {
    let conn = PostgresConnection {
        url: "postgres://strata:hunter2-secret@127.0.0.1:notaport/strata".into(),
        pool_size: 2,
        connect_timeout_secs: 1,
    };
    let err = PostgresMeta::connect(&conn).await.expect_err("bad port");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err:?}");
    assert!(!format!("{err} {err:?}").contains("hunter2"));
}

/// `pg_ctl` of the newest installed PostgreSQL (or the one on `PATH`).
fn pg_ctl() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/pg_ctl"))
        .filter(|p| p.exists())
        .collect();
    found.sort_by_key(|p| {
        p.components()
            .nth(4)
            .and_then(|c| c.as_os_str().to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().unwrap_or_else(|| PathBuf::from("pg_ctl"))
}

/// Run `pg_ctl -D datadir args...` as the postgres user (the server refuses root).
fn run_pg_ctl(datadir: &str, args: &[&str]) {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let mut cmd = if is_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(pg_ctl());
        c
    } else {
        Command::new(pg_ctl())
    };
    cmd.args(["-D", datadir]).args(args);
    let out = cmd.output().expect("run pg_ctl");
    assert!(
        out.status.success(),
        "pg_ctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts the server again if the test stops it and then fails.
struct Restart {
    datadir: String,
    stopped: bool,
}

impl Restart {
    fn stop(&mut self) {
        run_pg_ctl(&self.datadir, &["-m", "fast", "-w", "stop"]);
        self.stopped = true;
    }

    fn start(&mut self) {
        let log = format!("{}/server.log", self.datadir);
        run_pg_ctl(&self.datadir, &["-l", &log, "-w", "start"]);
        self.stopped = false;
    }
}

impl Drop for Restart {
    fn drop(&mut self) {
        if self.stopped {
            self.start();
        }
    }
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("{what} hung while the server was down"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_is_survived() {
    let Some(admin) = admin_url() else { return };
    let datadir = match std::env::var("STRATA_TEST_PG_DATADIR") {
        Ok(d) if !d.is_empty() => d,
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("STRATA_TEST_PG_DATADIR is not set and CI=true (see scripts/pg.sh)");
            }
            eprintln!("skipping: STRATA_TEST_PG_DATADIR not set");
            return;
        }
    };
    // The server to ourselves: no other test of this binary runs while it is down.
    let exclusive = SERVER.clone().write_owned().await;
    let schema = schema_under(&admin, Box::new(exclusive)).await;
    let mut conn = settings(&schema.url);
    conn.connect_timeout_secs = 2;
    let meta = PostgresMeta::connect(&conn).await.expect("connect");
    let before = commit_of("before", &[(chunk(1), 10), (chunk(2), 10)], NODE, true);
    commit_ok(&meta, &before).await;
    // Warm the pool with a few connections.
    futures::future::join_all((0..4).map(|_| meta.stats())).await;

    let mut server = Restart {
        datadir,
        stopped: false,
    };
    server.stop();
    let during = commit_of("during", &[(chunk(2), 10), (chunk(3), 10)], NODE, true);
    let err = within("blob", meta.blob(&before.blob.id))
        .await
        .expect_err("server is down");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    let err = within("commit", meta.commit_blob(&during))
        .await
        .expect_err("server is down");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    let err = within("stats", meta.stats())
        .await
        .expect_err("server is down");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    println!("while down: {err}");
    server.start();

    // The pool recovers at once: nothing lost, and writes work again.
    assert_eq!(
        meta.blob(&before.blob.id)
            .await
            .expect("read after restart"),
        Some(before.blob.clone())
    );
    assert_eq!(meta.blob(&during.blob.id).await.unwrap(), None);
    commit_ok(&meta, &during).await;
    for _ in 0..8 {
        meta.stats().await.expect("every pooled connection works");
    }
    assert_eq!(meta.chunk(&chunk(2)).await.unwrap().unwrap().refcount, 2);
    assert_consistent(&meta).await;
}
