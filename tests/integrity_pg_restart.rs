//! A real PostgreSQL restart in the middle of gc (with pack rewrites) and of scrub
//! (issue 13 §6): the operation ends `Unavailable`, and once the server is back a later
//! run finishes the work; fsck is clean and every blob reads back byte-identical.
//!
//! The server comes from `STRATA_TEST_PG_URL`, and is stopped and started with `pg_ctl`
//! on `STRATA_TEST_PG_DATADIR` (both printed by `eval "$(bash scripts/pg.sh)"`); without
//! them the tests are skipped, except under `CI=true`, where that is a failure. This
//! binary holds no test that needs the server up while another stops it: its tests take
//! one lock for their whole run, and cargo runs test binaries one after another. A guard
//! starts the server again however a test ends.

mod support;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use strata::object::FaultyObjectStore;
use strata::settings::{Connection, PostgresConnection};
use strata::store::PausePoint;
use strata::{BlobId, ErrorKind, Health, ManualClock, Settings, Store};
use support::{all_read, assert_gc_settled, blobs_in_shared_packs, random_bytes};

const T0: u64 = 1_700_000_000_000;

/// Held by each test for its whole run: one stops the server, the others must not run
/// meanwhile.
static SERVER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The data directory of the test server, or `None` to skip (a failure under `CI=true`).
fn datadir() -> Option<String> {
    match std::env::var("STRATA_TEST_PG_DATADIR") {
        Ok(d) if !d.is_empty() => Some(d),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("STRATA_TEST_PG_DATADIR is not set and CI=true (see scripts/pg.sh)");
            }
            eprintln!("skipping: STRATA_TEST_PG_DATADIR not set");
            None
        }
    }
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

/// Run `pg_ctl -D datadir args...` as the postgres user (the server refuses root);
/// what it printed when it failed.
fn run_pg_ctl(datadir: &str, args: &[&str]) -> Result<(), String> {
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
    let out = cmd.output().map_err(|e| format!("run pg_ctl: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "pg_ctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// Stops and starts the server; starts it again when dropped stopped (a test that
/// failed, or panicked, while it was down): other tests share it.
struct Restart {
    datadir: String,
    stopped: bool,
}

impl Restart {
    fn stop(&mut self) {
        // Marked first: a stop that fails half-way still gets a start.
        self.stopped = true;
        if let Err(e) = run_pg_ctl(&self.datadir, &["-m", "fast", "-w", "stop"]) {
            panic!("{e}");
        }
    }

    fn start(&mut self) {
        let log = format!("{}/server.log", self.datadir);
        if let Err(e) = run_pg_ctl(&self.datadir, &["-l", &log, "-w", "start"]) {
            panic!("{e}");
        }
        self.stopped = false;
    }
}

impl Drop for Restart {
    fn drop(&mut self) {
        if self.stopped {
            // No panic here: this may run while unwinding.
            let log = format!("{}/server.log", self.datadir);
            if let Err(e) = run_pg_ctl(&self.datadir, &["-l", &log, "-w", "start"]) {
                eprintln!("could not start the test server again: {e}");
            }
        }
    }
}

/// Holds an operation once at `point` (when armed) until released.
struct Gate {
    point: &'static str,
    armed: AtomicBool,
    arrived: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl PausePoint for Gate {
    fn at<'a>(&'a self, point: &'static str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            if point == self.point && self.armed.swap(false, Ordering::SeqCst) {
                self.arrived.notify_one();
                self.release.notified().await;
            }
        })
    }
}

struct Env {
    store: Store,
    gate: Arc<Gate>,
    clock: Arc<ManualClock>,
    _warm: Arc<FaultyObjectStore>,
    _dir: tempfile::TempDir,
}

/// A store with metadata in a fresh schema at `url`, warm and cold tiers in local
/// directories, small chunks and packs, and a gate at `point`.
async fn open_env(url: &str, point: &'static str, tweak: impl FnOnce(&mut Settings)) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let (warm, _cold, mut components) = support::counted_local_tiers(
        &dir.path().join("warm"),
        &dir.path().join("cold"),
        clock.clone(),
        0,
    );
    let gate = Arc::new(Gate {
        point,
        armed: AtomicBool::new(false),
        arrived: tokio::sync::Notify::new(),
        release: tokio::sync::Notify::new(),
    });
    components.pause = Some(gate.clone());
    let mut s = support::small_pack_settings(dir.path());
    s.meta.use_ = "pg".into();
    s.connections.insert(
        "pg".into(),
        Connection::Postgres(PostgresConnection {
            url: url.to_string(),
            pool_size: 4,
            // While the server is down a call fails within this, not the default 5 s.
            connect_timeout_secs: 2,
        }),
    );
    s.tiers.promote = false;
    s.gc.grace_secs = 0;
    s.scrub.bytes_per_sec = 0;
    tweak(&mut s);
    s.validate().expect("valid settings");
    let store = Store::open_with(s, components).await.expect("open");
    Env {
        store,
        gate,
        clock,
        _warm: warm,
        _dir: dir,
    }
}

/// Healthy copies of each chunk of `blobs`, fewest first.
async fn fewest_healthy_copies(store: &Store, blobs: &[(BlobId, Bytes)]) -> usize {
    let mut fewest = usize::MAX;
    for (id, data) in blobs {
        let entries = store
            .meta()
            .manifest_range(id, 0, data.len() as u64)
            .await
            .expect("manifest");
        for e in entries {
            let healthy = store
                .meta()
                .locations(&e.chunk)
                .await
                .expect("locations")
                .iter()
                .filter(|l| l.health == Health::Ok)
                .count();
            fewest = fewest.min(healthy);
        }
    }
    fewest
}

/// Run `op` on a task, hold it at the gate, stop the server, let it go on, and return
/// what it returned; the server is started again before this returns.
async fn with_server_stopped_at_gate<T: Send + 'static>(
    env: &Env,
    datadir: String,
    op: impl Future<Output = strata::Result<T>> + Send + 'static,
) -> strata::Result<T> {
    env.gate.armed.store(true, Ordering::SeqCst);
    let arrived = env.gate.arrived.notified();
    let task = tokio::spawn(op);
    tokio::time::timeout(std::time::Duration::from_secs(60), arrived)
        .await
        .expect("the operation reached the pause point");
    let mut server = Restart {
        datadir,
        stopped: false,
    };
    server.stop();
    env.gate.release.notify_one();
    let res = tokio::time::timeout(std::time::Duration::from_secs(120), task)
        .await
        .expect("the operation ended while the server was down")
        .expect("task");
    server.start();
    res
}

/// gc held after a sparse pack's rewrite was uploaded (`point`
/// "pack-rewrite-commit") or after a dead pack's record went (`"pack-delete"`): the
/// server stops there, and gc ends `Unavailable`; after the restart a gc finishes.
async fn gc_survives_a_restart_at(point: &'static str, seed: u64) {
    let Some(url) = support::pg::fresh_schema_url().await else {
        return;
    };
    let Some(datadir) = datadir() else { return };
    let _exclusive = SERVER.lock().await;
    let env = open_env(&url, point, |_| {}).await;
    let blobs = blobs_in_shared_packs(&env.store, 8, seed).await;
    for (id, _) in &blobs[1..7] {
        env.store.delete(id).await.expect("delete");
    }
    let survivors = [blobs[0].clone(), blobs[7].clone()];
    env.clock.advance(1);

    let store = env.store.clone();
    let res = with_server_stopped_at_gate(&env, datadir, async move { store.gc().await }).await;
    match res {
        Err(e) => {
            eprintln!("gc while the server was down: {e}");
            assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        }
        Ok(r) => panic!("gc finished with the metadata store down: {r:?}"),
    }

    // The server is back: the pool reconnects and a later gc finishes the work.
    all_read(&env.store, &survivors).await;
    env.clock.advance(1);
    let r = env.store.gc().await.expect("gc after the restart");
    assert!(r.errors.is_empty(), "{r:?}");
    if point == "pack-rewrite-commit" {
        assert!(r.packs_rewritten >= 1, "{r:?}");
    }
    env.clock.advance(1);
    assert_gc_settled(&env.store).await;
    all_read(&env.store, &survivors).await;
    for (id, _) in &blobs[1..7] {
        let err = env.store.get(id).await.expect_err("deleted");
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    }
    let fsck = env.store.fsck(false).await.expect("fsck");
    assert!(fsck.is_clean(), "{fsck}");
    env.store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_rewrite_with_postgres_restarting_before_its_commit_is_unavailable_then_finishes() {
    gc_survives_a_restart_at("pack-rewrite-commit", 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_with_postgres_restarting_between_a_dead_packs_record_and_object_then_finishes() {
    gc_survives_a_restart_at("pack-delete", 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_with_postgres_restarting_before_its_repairs_is_unavailable_then_finishes() {
    let Some(url) = support::pg::fresh_schema_url().await else {
        return;
    };
    let Some(datadir) = datadir() else { return };
    let _exclusive = SERVER.lock().await;
    // Two copies wanted: every chunk has one (hot or warm), so each needs a repair.
    let env = open_env(&url, "scrub-repair", |s| s.durability.min_copies = 2).await;
    let mut blobs = blobs_in_shared_packs(&env.store, 4, 300).await;
    for seed in 0..3 {
        let data = random_bytes(150_000, 400 + seed);
        let id = env.store.put(data.clone()).await.expect("put").id;
        blobs.push((id, data));
    }
    // Delete one warm blob and one hot blob.
    let hot_victim = blobs.remove(5).0;
    let warm_victim = blobs.remove(1).0;
    for id in [warm_victim, hot_victim] {
        env.store.delete(&id).await.expect("delete");
    }
    assert_eq!(fewest_healthy_copies(&env.store, &blobs).await, 1);

    // The server stops after the verdicts were recorded, before the repairs.
    let store = env.store.clone();
    let res = with_server_stopped_at_gate(&env, datadir, async move { store.scrub().await }).await;
    match res {
        Err(e) => {
            eprintln!("scrub while the server was down: {e}");
            assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        }
        Ok(r) => panic!("scrub finished with the metadata store down: {r:?}"),
    }

    all_read(&env.store, &blobs).await;
    let r = env.store.scrub().await.expect("scrub after the restart");
    assert!(r.copies_added > 0 && r.errors.is_empty(), "{r:?}");
    assert_eq!(
        (r.corrupt, r.missing, r.unchecked, r.unrepairable),
        (0, 0, 0, 0),
        "{r:?}"
    );
    assert!(fewest_healthy_copies(&env.store, &blobs).await >= 2);
    let again = env.store.scrub().await.expect("scrub");
    assert_eq!(
        (again.copies_added, again.repaired, again.corrupt),
        (0, 0, 0),
        "{again:?}"
    );
    all_read(&env.store, &blobs).await;
    let fsck = env.store.fsck(false).await.expect("fsck");
    assert!(fsck.is_clean(), "{fsck}");
    env.store.close().await.expect("close");
}
