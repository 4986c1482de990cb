//! Puts while a scrub runs (issue 13 §7). Target: with a scrub of the hot tier at the
//! default rate (`[scrub] bytes_per_sec` = 50 MiB/s) running in the same process, put
//! throughput stays at ≥ 80% of idle; the scrub itself reaches ≥ 90% of its rate.
//!
//! One store (embedded metadata, default settings, WAL synced) holds 512 MiB of random
//! bytes in the hot tier. Rounds alternate: *idle*, four puts of 128 MiB of new random
//! bytes back to back with nothing else running; *scrub*, the same four puts started
//! right after a `Store::scrub` pass was spawned, which then runs to its end (it reads
//! the 512 MiB only: a put records its copies as verified when it writes them). After
//! every round the round's blobs are deleted and collected, so every round starts from
//! the same store, and the machine's dirty pages are written back (`sync`) before the
//! next timed puts. The ratio is taken
//! per pair of rounds (the machine's speed drifts over minutes).
//!
//! `cargo bench --bench scrub`

mod common;

use std::time::Instant;

use bytes::Bytes;
use strata::{BlobId, Store};

/// `count` blobs of `len` new random bytes, made before anything is timed or spawned.
fn inputs(len: usize, count: u64, seed: u64) -> Vec<Bytes> {
    (0..count)
        .map(|i| Bytes::from(common::random_bytes(len, seed * 100 + i)))
        .collect()
}

/// Put `inputs` back to back; returns the seconds taken and the blob ids.
async fn puts(store: &Store, inputs: Vec<Bytes>) -> (f64, Vec<BlobId>) {
    let t = Instant::now();
    let mut ids = Vec::with_capacity(inputs.len());
    for data in inputs {
        ids.push(store.put(data).await.expect("put").id);
    }
    (t.elapsed().as_secs_f64(), ids)
}

/// Write back every dirty page of the machine and let the disk go quiet: otherwise the
/// timed puts pay for the writeback of the previous round's puts and `gc`.
fn settle() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    std::thread::sleep(std::time::Duration::from_millis(500));
}

/// Delete the round's blobs and collect their chunks (outside the timing).
async fn reset(store: &Store, ids: Vec<BlobId>) {
    for id in &ids {
        store.delete(id).await.expect("delete");
    }
    store.gc().await.expect("gc");
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let quick = common::quick();
    let fill = common::size(512 << 20, 4 << 20);
    let len = common::size(128 << 20, 1 << 20);
    let count = 4u64;
    let rounds = if quick { 1 } else { 5 };
    let tmp = common::tempdir();
    let mut s = common::settings(tmp.path(), 0);
    // The bench deletes each round's blobs and collects them at once.
    s.gc.grace_secs = 0;
    let rate = s.scrub.bytes_per_sec;
    let store = rt.block_on(Store::open(s)).expect("open");
    rt.block_on(async {
        // The 512 MiB the scrub reads, in 64 MiB blobs.
        for i in 0..(fill / (64 << 20)).max(1) {
            let part = fill.min(64 << 20);
            let data = Bytes::from(common::random_bytes(part, 7 + i as u64));
            store.put(data).await.expect("fill");
        }
    });
    eprintln!("scrub: filled {} MiB", fill >> 20);
    let (mut idle, mut busy, mut ratios, mut scrub_rates) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut seed = 1u64;
    for round in 0..rounds {
        seed += 1;
        let data = inputs(len, count, seed);
        settle();
        let i = rt.block_on(async {
            let (took, ids) = puts(&store, data).await;
            reset(&store, ids).await;
            took
        });
        seed += 1;
        let data = inputs(len, count, seed);
        settle();
        let (b, scrub_rate, scrub_took, scrubbed) = rt.block_on(async {
            let scrubber = store.clone();
            let scrub = tokio::spawn(async move {
                let t = Instant::now();
                let r = scrubber.scrub().await.expect("scrub");
                (t.elapsed().as_secs_f64(), r)
            });
            let (took, ids) = puts(&store, data).await;
            let (scrub_took, report) = scrub.await.expect("join");
            assert_eq!(report.corrupt + report.missing, 0, "{report:?}");
            reset(&store, ids).await;
            (
                took,
                report.bytes_read as f64 / scrub_took / rate as f64,
                scrub_took,
                report.bytes_read,
            )
        });
        let mib = (len as u64 * count) as f64 / (1 << 20) as f64;
        eprintln!(
            "round {round}: put {mib:.0} MiB idle {i:.3} s ({:.0} MiB/s), during scrub {b:.3} s ({:.0} MiB/s), \
             ratio {:.2}; scrub read {} MiB in {scrub_took:.2} s ({:.1}% of the configured rate)",
            mib / i,
            mib / b,
            i / b,
            scrubbed >> 20,
            scrub_rate * 100.0
        );
        idle.push(i);
        busy.push(b);
        ratios.push(i / b);
        scrub_rates.push(scrub_rate);
    }
    rt.block_on(store.close()).expect("close");
    let mib = (len as u64 * count) as f64 / (1 << 20) as f64;
    let (im, ilo, ihi) = common::median(idle);
    let (bm, blo, bhi) = common::median(busy);
    let (rm, rlo, rhi) = common::median(ratios);
    let (sm, slo, shi) = common::median(scrub_rates);
    println!(
        "scrub vs put: {count} puts of {} MiB; idle median {im:.3} s [{ilo:.3}, {ihi:.3}] ({:.0} MiB/s), \
         during scrub median {bm:.3} s [{blo:.3}, {bhi:.3}] ({:.0} MiB/s); throughput during scrub / idle, \
         per pair: median {:.0}% [{:.0}%, {:.0}%] over {rounds} pairs; scrub at {:.1}% [{:.1}%, {:.1}%] \
         of its configured {} MiB/s",
        len >> 20,
        mib / im,
        mib / bm,
        rm * 100.0,
        rlo * 100.0,
        rhi * 100.0,
        sm * 100.0,
        slo * 100.0,
        shi * 100.0,
        rate >> 20
    );
}
