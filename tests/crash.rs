//! Processes killed at random points, and faults between the steps of `gc`: the store
//! leaks no disk space and stays consistent (docs/design.md, "Crashes and disk space").

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use strata::hot::faults::FaultyHot;
use strata::hot::HotTier;
use strata::store::Components;
use strata::{ErrorKind, Store};
use support::{random_bytes, settings};

/// The documented bound on what a data directory holds besides live chunk data once
/// `gc` has run (docs/design.md): write-ahead log, RocksDB's own LOG, MANIFEST and
/// OPTIONS files, and the metadata column families' table files.
const OVERHEAD_BYTES: u64 = 64 << 20;

/// Disk space used under `dir`, as `du` counts it (allocated blocks).
fn du(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            du(&entry.path())
        } else {
            meta.blocks() * 512
        };
    }
    total
}

/// Bytes of RocksDB blob files in `dir`.
fn blob_file_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "blob"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

/// The child half of the crash test: put 300 MB of fresh random data until killed.
#[tokio::test]
async fn crash_child_put_until_killed() {
    let Ok(dir) = std::env::var("STRATA_CRASH_PUT_DIR") else {
        return;
    };
    let seed: u64 = std::env::var("STRATA_CRASH_SEED").unwrap().parse().unwrap();
    let mut s = settings(Path::new(&dir));
    s.hot.sync = true; // as in production
    let store = Store::open(s).await.unwrap();
    println!("OPENED");
    let blocks =
        futures::stream::iter((0..300u64).map(move |i| Ok(random_bytes(1 << 20, seed * 1000 + i))));
    let r = store.put_blocks(blocks).await.unwrap();
    println!("PUT-DONE {}", r.id);
    store.close().await.unwrap();
}

/// The child half of the crash test: run `gc` until killed.
#[tokio::test]
async fn crash_child_gc_until_killed() {
    let Ok(dir) = std::env::var("STRATA_CRASH_GC_DIR") else {
        return;
    };
    let mut s = settings(Path::new(&dir));
    s.hot.sync = true;
    s.gc.grace_secs = 0;
    let store = Store::open(s).await.unwrap();
    println!("OPENED");
    let r = store.gc().await.unwrap();
    println!("GC-DONE {r:?}");
    store.close().await.unwrap();
}

/// Start the test `name` of this binary as a child process with `env`, wait until it
/// has opened the store, let it run for `ms`, and kill it (SIGKILL).
fn run_and_kill(name: &str, env: &[(&str, String)], ms: u64) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child: Child = cmd.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "child ended early");
        if line.trim_end().ends_with("OPENED") {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(ms));
    child.kill().unwrap();
    child.wait().unwrap();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    rest
}

/// The crash test: ten puts of 300 MB killed at random points, one `gc` killed
/// while it works, then a `gc` with no grace period: the directory holds no more than
/// the live data plus the documented overhead, and verify is clean.
#[test]
fn killed_puts_and_gc_leave_only_live_data_plus_a_constant() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let live = random_bytes(20 << 20, 71);
    let live_id = rt.block_on(async {
        let store = support::open(dir).await;
        let id = store.put(live.clone()).await.unwrap().id;
        store.close().await.unwrap();
        id
    });
    let dir_env = dir.display().to_string();
    for i in 0..10u64 {
        let ms = rand::random_range(100..1500);
        let rest = run_and_kill(
            "crash_child_put_until_killed",
            &[
                ("STRATA_CRASH_PUT_DIR", dir_env.clone()),
                ("STRATA_CRASH_SEED", (100 + i).to_string()),
            ],
            ms,
        );
        println!(
            "put {i} killed after {ms} ms{}",
            if rest.contains("PUT-DONE") {
                " (it had finished)"
            } else {
                ""
            }
        );
    }
    let before_gc = du(dir);
    let ms = rand::random_range(50..500);
    let rest = run_and_kill(
        "crash_child_gc_until_killed",
        &[("STRATA_CRASH_GC_DIR", dir_env.clone())],
        ms,
    );
    println!(
        "gc killed after {ms} ms{}",
        if rest.contains("GC-DONE") {
            " (it had finished)"
        } else {
            ""
        }
    );

    let live_bytes = rt.block_on(async {
        let mut s = settings(dir);
        s.gc.grace_secs = 0;
        let store = Store::open(s).await.unwrap();
        // A put that finished before its kill committed a blob: delete it, so what
        // stays is the one live blob.
        for b in store.list().await.unwrap() {
            if b.id != live_id {
                store.delete(&b.id).await.unwrap();
            }
        }
        let report = store.gc().await.unwrap();
        println!("gc: {report:?}");
        assert_eq!(store.get(&live_id).await.unwrap(), live);
        let verify = store.verify(None).await.unwrap();
        assert!(verify.is_clean(), "{verify:?}");
        store.close().await.unwrap();
        live.len() as u64
    });
    drop(rt);
    {
        let opts = rocksdb::Options::default();
        let cfs = rocksdb::DB::list_cf(&opts, dir).unwrap();
        let db = rocksdb::DB::open_cf_for_read_only(&opts, dir, cfs, false).unwrap();
        let cf = db.cf_handle(strata::rocks::CF_CHUNKS).unwrap();
        for p in [
            "rocksdb.num-blob-files",
            "rocksdb.live-blob-file-size",
            "rocksdb.live-blob-file-garbage-size",
            "rocksdb.live-sst-files-size",
        ] {
            println!("{p} = {:?}", db.property_int_value_cf(cf, p).unwrap());
        }
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.file_name(), e.metadata().unwrap().len()))
            .collect();
        files.sort();
        println!("{files:?}");
    }
    let after = du(dir);
    println!(
        "before gc {} MiB, after {} MiB, live {} MiB, blob files {} MiB",
        before_gc >> 20,
        after >> 20,
        live_bytes >> 20,
        blob_file_bytes(dir) >> 20
    );
    assert!(
        after <= live_bytes + OVERHEAD_BYTES,
        "{after} bytes on disk for {live_bytes} bytes of live data"
    );
}

/// A store whose hot tier (its own RocksDB in `dir/hot`) is wrapped for fault
/// injection, with no grace period for `gc`.
async fn open_split(dir: &Path) -> (Store, Arc<FaultyHot>) {
    let mut s = settings(dir);
    s.gc.grace_secs = 0;
    let db = strata::rocks::open(&dir.join("hot"), &s.hot).unwrap();
    let hot = FaultyHot::new(Arc::new(HotTier::new(db)));
    let components = Components {
        hot: Some(hot.clone()),
        ..Components::default()
    };
    (Store::open_with(s, components).await.unwrap(), hot)
}

/// Item 12: `gc` stopped after its metadata commit and before deleting the bytes (as a
/// kill there would) leaves notes; the next `gc` deletes the bytes and gives the space
/// back.
#[tokio::test]
async fn gc_stopped_between_its_commit_and_the_deletion_leaks_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let (store, hot) = open_split(dir).await;
        let r = store.put(random_bytes(30 << 20, 72)).await.unwrap();
        store.delete(&r.id).await.unwrap();
        hot.deletes.arm(0);
        let err = store.gc().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(blob_file_bytes(&dir.join("hot")) >= 25 << 20);
    }
    let (store, _hot) = open_split(dir).await;
    let report = store.gc().await.unwrap();
    assert!(report.orphans_removed > 100, "{report:?}");
    assert!(report.hot_bytes_reclaimed >= 25 << 20, "{report:?}");
    assert!(store.verify(None).await.unwrap().is_clean());
    store.close().await.unwrap();
    drop(store);
    assert!(blob_file_bytes(&dir.join("hot")) < 1 << 20);
}

/// Item 12: a `gc` whose reclaim did not finish (killed during the compaction) leaves
/// the garbage marked, and the next `gc` gives the space back although it removes
/// nothing itself.
#[tokio::test]
async fn gc_redoes_an_interrupted_reclaim() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (store, hot) = open_split(dir).await;
    let keep = random_bytes(3 << 20, 73);
    let kept = store.put(keep.clone()).await.unwrap().id;
    let r = store.put(random_bytes(30 << 20, 74)).await.unwrap();
    store.delete(&r.id).await.unwrap();
    hot.reclaims.arm(0);
    store.gc().await.unwrap_err();
    assert!(blob_file_bytes(&dir.join("hot")) >= 25 << 20);
    hot.reclaims.disarm();
    let report = store.gc().await.unwrap();
    assert_eq!(report.chunks_removed, 0, "{report:?}");
    assert!(report.hot_bytes_reclaimed >= 25 << 20, "{report:?}");
    assert!(blob_file_bytes(&dir.join("hot")) < 8 << 20);
    assert_eq!(store.get(&kept).await.unwrap(), keep);
    // Nothing left to do: the next run does no compaction.
    assert_eq!(store.gc().await.unwrap().hot_bytes_reclaimed, 0);
    store.close().await.unwrap();
}

/// Item 14: `gc` says what it reclaimed per tier, and counts the unreferenced chunks
/// whose warm copies stay.
#[test]
fn gc_reports_bytes_per_tier_as_json() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let file = tmp.path().join("in");
    let data = random_bytes(2 << 20, 75);
    std::fs::write(&file, &data).unwrap();
    let config = tmp.path().join("strata.toml");
    std::fs::write(&config, "[gc]\ngrace_secs = 0\n").unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(args)
            .env_remove("STRATA_META_URL")
            .env_remove("STRATA_DATA_DIR")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let id = run(&["put", file.to_str().unwrap()])
        .lines()
        .last()
        .unwrap()
        .to_string();
    let other = tmp.path().join("other");
    std::fs::write(&other, random_bytes(1 << 20, 76)).unwrap();
    let other_id = run(&["put", other.to_str().unwrap()])
        .lines()
        .last()
        .unwrap()
        .to_string();
    run(&["tier", "move", &other_id, "--to", "warm"]);
    run(&["rm", &id]);
    run(&["rm", &other_id]);
    let report: serde_json::Value = serde_json::from_str(&run(&["gc", "--json"])).unwrap();
    let n = |k: &str| {
        report[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {report}"))
    };
    assert!(n("chunks_removed") > 0, "{report}");
    assert!(n("hot_bytes_removed") >= 2 << 20, "{report}");
    assert!(n("hot_bytes_reclaimed") > 0, "{report}");
    // The moved blob's warm copies go with it, and then its pack object.
    assert_eq!(n("unreferenced_kept"), 0, "{report}");
    assert!(n("packs_deleted") >= 1, "{report}");
    assert!(n("warm_bytes_reclaimed") >= 1 << 20, "{report}");
    assert_eq!(n("cold_bytes_reclaimed"), 0);
    let text = run(&["gc"]);
    assert!(text.contains("removed 0 chunks from hot"), "{text}");
    assert!(text.contains("deleted 0 pack objects"), "{text}");
}

/// Item 13: temporary files that killed writers left under `tiers/` are removed when a
/// store opens; a live process's are not.
#[tokio::test]
async fn stale_temp_files_under_tiers_are_removed_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let mut stale = Vec::new();
    for sub in [
        "tiers/warm/data/warm",
        "tiers/warm/meta/warm",
        "tiers/cold/data/cold",
    ] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(format!(".tmp-{dead}-3"));
        std::fs::write(&p, b"partial pack").unwrap();
        stale.push(p);
    }
    // Process 1 always runs: its temporary files are not ours to remove.
    let live = dir.join("tiers/warm/data/warm/.tmp-1-0");
    std::fs::write(&live, b"in flight").unwrap();
    let store = support::open(dir).await;
    for p in &stale {
        assert!(!p.exists(), "{} was left", p.display());
    }
    assert!(live.exists());
    store.close().await.unwrap();
}
