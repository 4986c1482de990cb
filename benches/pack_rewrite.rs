//! gc's rewrite of sparse packs against the local warm directory (issue 13 §7).
//! Target: bytes rewritten per second of the `gc` run ≥ 50% of the disk's sequential
//! write throughput.
//!
//! Every round builds a store (embedded metadata, default settings, warm tier the local
//! directory `DATA_DIR/tiers/warm`, 32 MiB packs): 512 blobs of 1 MiB of random bytes
//! are put and moved to warm in one move, so each pack holds chunks of many blobs; a
//! first `gc` (not timed) settles the hot tier's compaction; then 60% of the blobs
//! are deleted, spread evenly, which leaves every pack about 40% live, below
//! `[gc] pack_min_live_fraction` (0.5). A `gc` with pack rewrites off collects the
//! deleted chunks (its time is printed too); then the store is opened again with the
//! default fraction, and the timed `gc` (grace period 0) rewrites every pack and
//! deletes the old ones; its throughput is
//! `GcReport::bytes_rewritten` over its wall time. The baseline, in the same round and
//! alternately before and after, each after an untimed write and delete of a file
//! of the same size, a `sync` and half a second of quiet: writing the live bytes to a new file in the same
//! directory, 4 MiB per `write`, then `fsync` (what `dd bs=4M conv=fsync` does).
//!
//! `cargo bench --bench pack_rewrite`

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata::{ChunkId, Store, Tier};

/// Make the next measurement start from the same state as the other: write `len`
/// bytes to a file in `dir` and delete it (not timed), write every dirty page back
/// (`sync`), and let the disk go quiet for half a second. Without the first step,
/// whichever measurement ran first wrote into page-cache pages this VM had not handed
/// to the guest before, which are several times slower to write (docs/performance.md,
/// "Ingest"), and took 3-6 times longer than when it ran second; without the rest it
/// paid for the writeback of the setup's writes.
fn settle(dir: &Path, data: &[u8]) {
    common::sequential_write(dir, data);
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    std::thread::sleep(Duration::from_millis(500));
}

/// CPU seconds this process has used (user + system), from `/proc/self/stat`: with the
/// wall time it tells whether the `gc` waits on the disk or on the two cores.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces);
    // utime and stime are the 14th and 15th fields, in clock ticks (100 per second).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    f.iter().sum::<f64>() / 100.0
}

/// What one round measured.
struct Round {
    /// Seconds of the `gc` that rewrote the packs.
    took: f64,
    bytes_rewritten: u64,
    packs_rewritten: u64,
    /// Pack objects in the warm directory after the `gc`.
    packs_after: u64,
    /// Seconds of the baseline's write and fsync.
    base: f64,
    /// Bytes the baseline wrote: the live bytes of the kept blobs.
    live: u64,
    /// Seconds of the earlier `gc` that collected the deleted chunks.
    collect: f64,
    /// CPU seconds (both cores) the timed `gc` used.
    cpu: f64,
}

/// One round of setup, baseline and `gc`.
fn round(rt: &tokio::runtime::Runtime, r: u64, blobs: u64, blob_len: usize) -> Round {
    let tmp = common::tempdir();
    let mut s = common::settings(tmp.path(), 0);
    s.gc.grace_secs = 0;
    s.tiers.promote = false;
    if common::quick() {
        // Small inputs under `cargo test`: small packs, so there are several.
        s.tiers.warm.pack_bytes = 1 << 20;
    }
    let warm_dir = tmp.path().join("tiers").join("warm");
    // The setup's store rewrites no pack, so that its gc of the deleted chunks can be
    // timed apart from the pack rewrite; the measured store is the same directory
    // opened again with the default fraction.
    let measured = s.clone();
    s.gc.pack_min_live_fraction = 0.0;
    rt.block_on(async {
        let store = Store::open(s).await.expect("open");
        let mut ids = Vec::new();
        let mut chunks: Vec<ChunkId> = Vec::new();
        for i in 0..blobs {
            let data = Bytes::from(common::random_bytes(blob_len, r * 10_000 + i));
            let id = store.put(data).await.expect("put").id;
            let size = store.head(&id).await.expect("head").size;
            let entries = store
                .meta()
                .manifest_range(&id, 0, size)
                .await
                .expect("manifest");
            chunks.extend(entries.into_iter().map(|e| e.chunk));
            ids.push(id);
        }
        // One move for all blobs, so that the packs mix them.
        store.move_chunks(&chunks, Tier::Warm).await.expect("move");
        store.gc().await.expect("settle gc");
        // Keep two of every five blobs: every pack is left about 40% live.
        let mut live = 0u64;
        for (i, id) in ids.iter().enumerate() {
            if i % 5 == 0 || i % 5 == 2 {
                live += blob_len as u64;
            } else {
                store.delete(id).await.expect("delete");
            }
        }
        let t = Instant::now();
        let collected = store.gc().await.expect("gc of the deleted chunks");
        let collect = t.elapsed().as_secs_f64();
        assert_eq!(collected.packs_rewritten, 0, "{collected:?}");
        store.close().await.expect("close");
        drop(store);
        let store = Store::open(measured).await.expect("open again");
        let baseline_data = common::random_bytes(live as usize, r);
        let before = r.is_multiple_of(2);
        let mut base = 0.0;
        if before {
            settle(&warm_dir, &baseline_data);
            base = common::sequential_write(&warm_dir, &baseline_data).as_secs_f64();
        }
        settle(&warm_dir, &baseline_data);
        let (t, c) = (Instant::now(), cpu_secs());
        let report = store.gc().await.expect("gc");
        let took = t.elapsed().as_secs_f64();
        let cpu = cpu_secs() - c;
        if !before {
            settle(&warm_dir, &baseline_data);
            base = common::sequential_write(&warm_dir, &baseline_data).as_secs_f64();
        }
        assert!(report.errors.is_empty(), "{report:?}");
        assert!(report.packs_rewritten > 0, "{report:?}");
        let packs_after = std::fs::read_dir(warm_dir.join("data").join("warm"))
            .map(|d| d.count() as u64)
            .unwrap_or(0);
        store.close().await.expect("close");
        Round {
            took,
            bytes_rewritten: report.bytes_rewritten,
            packs_rewritten: report.packs_rewritten,
            packs_after,
            base,
            live,
            collect,
            cpu,
        }
    })
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let blobs = common::size(512, 16) as u64;
    let blob_len = common::size(1 << 20, 256 << 10);
    let rounds = if common::quick() { 1 } else { 5 };
    let mib = |b: u64, s: f64| b as f64 / s / (1 << 20) as f64;
    let (mut gc, mut disk, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let x = round(&rt, r, blobs, blob_len);
        let (g, d) = (mib(x.bytes_rewritten, x.took), mib(x.live, x.base));
        eprintln!(
            "round {r}: gc rewrote {} packs into {} objects, {} MiB in {:.3} s ({g:.0} MiB/s, {:.2} CPU s); \
             sequential write of {} MiB + fsync {:.3} s ({d:.0} MiB/s); ratio {:.2}; \
             (the gc of the deleted chunks before it: {:.3} s)",
            x.packs_rewritten,
            x.packs_after,
            x.bytes_rewritten >> 20,
            x.took,
            x.cpu,
            x.live >> 20,
            x.base,
            g / d,
            x.collect
        );
        gc.push(g);
        disk.push(d);
        ratios.push(g / d);
    }
    let (gm, glo, ghi) = common::median(gc);
    let (dm, dlo, dhi) = common::median(disk);
    let (rm, rlo, rhi) = common::median(ratios);
    println!(
        "pack rewrite: gc {gm:.0} MiB/s [{glo:.0}, {ghi:.0}], disk sequential write + fsync {dm:.0} MiB/s \
         [{dlo:.0}, {dhi:.0}]; ratio per round median {rm:.2} [{rlo:.2}, {rhi:.2}] over {rounds} rounds"
    );
}
