//! Two processes sharing PostgreSQL and a moto bucket, each running every engine worker
//! with short intervals while its own driver puts, reads and deletes blobs for a minute
//! (issue 12, section 5). Afterwards every committed blob reads back its bytes, `verify`
//! is clean, and no chunk ever got two warm or two cold copies (which is what two nodes
//! moving one copy at once would leave).
//!
//! Each node is this test binary run again as a child process (`node_child`, which does
//! nothing unless `STRATA_ENGINE_NODE` is set), so the nodes are separate processes with
//! separate data directories, as on separate machines.

mod object_support;
mod support;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use object_support::{connection, endpoint, unique_bucket};
use strata::engine::Engine;
use strata::object::{S3ObjectStore, StorageClass};
use strata::settings::{Connection, S3Connection};
use strata::worker::WorkerSet;
use strata::{BlobId, ChunkerParams, Settings, Store, Tier};
use support::{pg, random_bytes};

/// How long each node's driver runs.
const RUN: Duration = Duration::from_secs(60);

/// Settings of one node: PostgreSQL metadata, both tiers in the bucket, every worker
/// every one or two seconds, idle times of a second or a few.
fn node_settings(dir: &Path, url: &str, conn: S3Connection) -> Settings {
    let mut s = support::pg_settings(dir, url);
    s.chunking = ChunkerParams {
        min: 4096,
        avg: 16384,
        max: 65536,
    };
    s.connections.insert("s3".into(), Connection::S3(conn));
    for t in [&mut s.tiers.warm, &mut s.tiers.cold] {
        t.use_ = "s3".into();
        t.pack_bytes = 512 * 1024;
    }
    s.tiers.cold.storage_class = Some(StorageClass::GlacierIr);
    s.tiers.restore_poll_ms = 100;
    s.gc.grace_secs = 1;
    s.access.flush_interval_ms = 200;
    s.policy.hot_idle_secs = 1;
    s.policy.hot_min_residency_secs = 0;
    s.policy.warm_idle_secs = Some(3);
    s.policy.archive_min_object_bytes = 64 * 1024;
    s.workers.demote_interval_secs = 1;
    s.workers.archive_interval_secs = 2;
    s.workers.restore_interval_secs = 1;
    s.workers.gc_interval_secs = 2;
    s.workers.lease_secs = 5;
    s
}

/// One node, when run as a child: open the store, start every worker, and drive puts,
/// reads and deletes for [`RUN`], logging `put ID SEED LEN` after each committed put and
/// `del ID` after each delete to `STRATA_ENGINE_LOG`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_child() {
    let Ok(node) = std::env::var("STRATA_ENGINE_NODE") else {
        return;
    };
    let node: u64 = node.parse().expect("node number");
    let settings_file = std::env::var("STRATA_ENGINE_SETTINGS").expect("settings file");
    let log_path = std::env::var("STRATA_ENGINE_LOG").expect("log file");
    let text = std::fs::read_to_string(&settings_file).expect("read settings");
    let settings = Settings::from_toml(&text).expect("parse settings");
    let store = Store::open(settings).await.expect("open node");
    if std::env::var("STRATA_ENGINE_CHECK").is_ok() {
        check_node(&store, node, &log_path).await;
        store.close().await.expect("close store");
        return;
    }
    let engine = Engine::new(store.clone());
    let mut workers = WorkerSet::new();
    engine.start(&mut workers);
    let mut log = std::fs::File::create(&log_path).expect("create log");
    let mut live: Vec<(BlobId, u64, usize)> = Vec::new();
    let started = Instant::now();
    let mut round = 0u64;
    while started.elapsed() < RUN {
        round += 1;
        let seed = node * 1_000_000 + round;
        let len = 64 * 1024 + (seed as usize * 7919) % (768 * 1024);
        let data = random_bytes(len, seed);
        let receipt = store.put(data).await.expect("put");
        writeln!(log, "put {} {seed} {len}", receipt.id).expect("log");
        log.flush().expect("flush log");
        live.push((receipt.id, seed, len));
        // Read back an older blob (most are in warm or cold by now) and check it.
        if live.len() > 2 {
            let (id, seed, len) = live[(round as usize * 31) % (live.len() - 1)];
            let got = store
                .get_wait(&id, None, Duration::from_secs(30))
                .await
                .unwrap_or_else(|e| panic!("node {node}: get {id}: {e}"));
            assert!(
                got == random_bytes(len, seed),
                "node {node}: wrong bytes for {id}"
            );
        }
        if round.is_multiple_of(5) {
            let (id, _, _) = live.remove(0);
            store.delete(&id).await.expect("delete");
            writeln!(log, "del {id}").expect("log");
            log.flush().expect("flush log");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    workers.close().await.expect("close workers");
    store.close().await.expect("close store");
}

/// The blobs one node's log says it committed and deleted.
fn read_log(log: &str) -> (HashMap<BlobId, (u64, usize)>, HashSet<BlobId>) {
    let mut committed = HashMap::new();
    let mut deleted = HashSet::new();
    for line in std::fs::read_to_string(log).expect("read log").lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let id: BlobId = f[1].parse().expect("blob id");
        match f[0] {
            "put" => {
                committed.insert(id, (f[2].parse().unwrap(), f[3].parse().unwrap()));
            }
            "del" => {
                deleted.insert(id);
            }
            other => panic!("bad log line {other}"),
        }
    }
    (committed, deleted)
}

/// On the node that wrote them (its hot tier is its own: no other node can read the
/// copies left there), after every node stopped: every committed blob reads back its
/// bytes and every deleted one is gone.
async fn check_node(store: &Store, node: u64, log: &str) {
    let (committed, deleted) = read_log(log);
    for (id, (seed, len)) in &committed {
        if deleted.contains(id) {
            assert!(
                !store.contains(id).await.expect("contains"),
                "node {node}: deleted {id} still listed"
            );
            continue;
        }
        let got = store
            .get_wait(id, None, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("node {node}: get {id} after the run: {e}"));
        assert!(
            got == random_bytes(*len, *seed),
            "node {node}: wrong bytes for {id} after the run"
        );
    }
}

fn spawn_node(node: u64, settings: &Path, log: &Path) -> std::process::Child {
    node_command(node, settings, log)
        .spawn()
        .expect("spawn node")
}

fn node_command(node: u64, settings: &Path, log: &Path) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        "--exact",
        "node_child",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env("STRATA_ENGINE_NODE", node.to_string())
    .env("STRATA_ENGINE_SETTINGS", settings)
    .env("STRATA_ENGINE_LOG", log);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_run_every_worker_while_drivers_put_read_and_delete() {
    if std::env::var("STRATA_ENGINE_NODE").is_ok() {
        return;
    }
    let Some(endpoint) = endpoint("STRATA_TEST_MOTO_ENDPOINT") else {
        return;
    };
    let Some(url) = pg::fresh_schema_url().await else {
        return;
    };
    let bucket = unique_bucket();
    let conn = connection(&endpoint, &bucket);
    let config = S3ObjectStore::client_config(&conn).await.expect("config");
    aws_sdk_s3::Client::from_conf(config)
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    let tmp = tempfile::tempdir().unwrap();
    let mut children = Vec::new();
    let mut logs: Vec<PathBuf> = Vec::new();
    for node in 1..=2u64 {
        let dir = tmp.path().join(format!("node{node}"));
        let file = tmp.path().join(format!("node{node}.toml"));
        let text = toml::to_string(&node_settings(&dir, &url, conn.clone())).expect("toml");
        std::fs::write(&file, text).expect("write settings");
        let log = tmp.path().join(format!("node{node}.log"));
        children.push(spawn_node(node, &file, &log));
        logs.push(log);
    }
    // A node that has not stopped two minutes after its run should have is stuck (a
    // pass that never ends keeps `close()` waiting): killed, and the test fails.
    let deadline = Instant::now() + RUN + Duration::from_secs(120);
    for mut c in children {
        let status = loop {
            if let Some(status) = c.try_wait().expect("wait for node") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("a node did not stop within two minutes of the end of its run");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(status.success(), "a node failed: {status}");
    }

    let mut puts = 0;
    for (i, log) in logs.iter().enumerate() {
        puts += read_log(log.to_str().unwrap()).0.len();
        let node = i as u64 + 1;
        let file = tmp.path().join(format!("node{node}.toml"));
        let status = node_command(node, &file, log)
            .env("STRATA_ENGINE_CHECK", "1")
            .status()
            .expect("run the check on the node");
        assert!(status.success(), "node {node}: check after the run failed");
    }
    assert!(puts > 40, "only {puts} puts in a minute");

    let checker = Store::open(node_settings(
        &tmp.path().join("checker"),
        &url,
        conn.clone(),
    ))
    .await
    .expect("open checker");
    let mut tiers_seen: HashSet<Tier> = HashSet::new();
    let report = checker.verify(None).await.expect("verify");
    assert!(report.is_clean(), "verify after the run: {report:?}");
    // No chunk was moved by two nodes at once: at most one warm and one cold copy each.
    let meta = checker.meta();
    let mut after = None;
    loop {
        let page = meta.list_chunks(after, 1000).await.expect("chunks");
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        let ids: Vec<_> = page.iter().map(|c| c.id).collect();
        for (chunk, locs) in meta.locations_many(&ids).await.expect("locations") {
            for tier in [Tier::Warm, Tier::Cold] {
                let n = locs.iter().filter(|l| l.tier == tier).count();
                assert!(n <= 1, "chunk {chunk} has {n} {tier:?} copies: {locs:?}");
                if n > 0 {
                    tiers_seen.insert(tier);
                }
            }
        }
    }
    // Demotion (hot idle after 1 s) and archiving (warm idle after 3 s) both ran.
    assert!(
        tiers_seen.contains(&Tier::Warm) && tiers_seen.contains(&Tier::Cold),
        "the workers did not move chunks to both warm and cold in a minute: {tiers_seen:?}"
    );
    checker.close().await.expect("close");
}
