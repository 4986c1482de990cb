//! `fsck` of a large store (issue 13 §7): wall time and peak memory of `Store::fsck`
//! over a store with 100,000 and 1,000,000 chunks, embedded metadata. Target: 1,000,000
//! chunks in under 60 s, memory that does not grow with the number of chunks.
//!
//! The stores are built once through `put` (16 MiB blobs of random bytes, chunked with
//! `min = 256, avg = 1024, max = 4096`) and kept under Cargo's `CARGO_TARGET_TMPDIR`,
//! keyed by their parameters, so reruns measure fsck without rebuilding them. Each fsck
//! runs on a freshly opened store; the process's peak resident set (`VmHWM`) is reset
//! before it (`/proc/self/clear_refs`), so the peak reported is that of the open and
//! the fsck, not of the build.
//!
//! `cargo bench --bench fsck`; the same from the command line, whole process:
//! `/usr/bin/time -v target/release/strata --data-dir DIR fsck` with the directory
//! this bench prints.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata::{ChunkerParams, Settings, Store};

/// Chunking of the built stores: the smallest average FastCDC allows a quarter of,
/// so 1,000,000 chunks take about 1 GiB of data instead of 64 GiB.
const PARAMS: ChunkerParams = ChunkerParams {
    min: 256,
    avg: 1024,
    max: 4096,
};
/// Bytes per blob put while building a store.
const BLOB: usize = 16 << 20;

fn settings(dir: &Path) -> Settings {
    let mut s = common::settings(dir, 0);
    s.chunking = PARAMS;
    // Building is setup, not what is measured: the WAL need not be synced per put.
    s.hot.sync = false;
    s
}

/// A store with at least `chunks` chunks: reused from `cache` when a complete one is
/// there, else built (the marker file is written last, so an interrupted build is
/// started again rather than measured).
fn store_dir(rt: &tokio::runtime::Runtime, cache: &Path, chunks: u64) -> PathBuf {
    let dir = cache.join(format!(
        "fsck-store-{chunks}-chunks-{}-{}-{}",
        PARAMS.min, PARAMS.avg, PARAMS.max
    ));
    let marker = dir.join("complete");
    if marker.exists() {
        eprintln!("fsck: reusing {}", dir.display());
        return dir;
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("remove incomplete store");
    }
    std::fs::create_dir_all(&dir).expect("create store dir");
    let t = Instant::now();
    let (mut total, mut bytes, mut seed) = (0u64, 0u64, 0u64);
    rt.block_on(async {
        let store = Store::open(settings(&dir)).await.expect("open");
        while total < chunks {
            seed += 1;
            let data = Bytes::from(common::random_bytes(BLOB, 50_000 + seed));
            let id = store.put(data).await.expect("put").id;
            let head = store.head(&id).await.expect("head");
            total += head.chunk_count;
            bytes += head.size;
        }
        store.close().await.expect("close");
    });
    std::fs::write(&marker, format!("{total} chunks, {bytes} bytes\n")).expect("marker");
    eprintln!(
        "fsck: built {} ({total} chunks, {} MiB) in {:.1?}",
        dir.display(),
        bytes >> 20,
        t.elapsed()
    );
    dir
}

/// Reset the peak resident set of this process (Linux: writing 5 to clear_refs).
fn reset_peak_rss() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("fsck: cannot reset the peak RSS ({e}); the peak includes the build");
    }
}

/// `VmHWM` (peak resident set) of this process, in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// One fsck on a freshly opened store: (wall time of the fsck, chunks checked, peak RSS
/// in KiB of the open and the fsck).
fn one_fsck(rt: &tokio::runtime::Runtime, dir: &Path) -> (Duration, u64, u64) {
    reset_peak_rss();
    rt.block_on(async {
        let store = Store::open(settings(dir)).await.expect("open");
        let t = Instant::now();
        let report = store.fsck(false).await.expect("fsck");
        let took = t.elapsed();
        assert!(report.problems.is_empty(), "{report:?}");
        store.close().await.expect("close");
        (took, report.chunks_checked, peak_rss_kib())
    })
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let quick = common::quick();
    // Under `cargo test` a small store in a temporary directory, built every time.
    let tmp = common::tempdir();
    let cache = if quick {
        tmp.path().to_path_buf()
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
    };
    let sizes: &[u64] = if quick {
        &[5_000]
    } else {
        &[100_000, 1_000_000]
    };
    let runs = if quick { 1 } else { 5 };
    let dirs: Vec<(u64, PathBuf)> = sizes
        .iter()
        .map(|&n| (n, store_dir(&rt, &cache, n)))
        .collect();
    let mut results: Vec<Vec<(Duration, u64, u64)>> = vec![Vec::new(); dirs.len()];
    // Sizes alternate run by run, so a slow period of the machine hits both.
    for run in 0..runs {
        for (i, (n, dir)) in dirs.iter().enumerate() {
            let r = one_fsck(&rt, dir);
            eprintln!(
                "fsck run {run}, {n} chunks: {:.2?}, {} chunks checked, peak RSS {} MiB",
                r.0,
                r.1,
                r.2 / 1024
            );
            results[i].push(r);
        }
    }
    for ((n, dir), mut r) in dirs.into_iter().zip(results) {
        r.sort_by_key(|x| x.0);
        let times: Vec<f64> = r.iter().map(|x| x.0.as_secs_f64()).collect();
        let mut rss: Vec<u64> = r.iter().map(|x| x.2 / 1024).collect();
        rss.sort();
        println!(
            "fsck {n} chunks ({} checked): median {:.2} s [min {:.2}, max {:.2}] over {runs} runs; \
             peak RSS median {} MiB [{}, {}]; store {}",
            r[0].1,
            times[times.len() / 2],
            times[0],
            times[times.len() - 1],
            rss[rss.len() / 2],
            rss[0],
            rss[rss.len() - 1],
            dir.display()
        );
    }
}
