//! Peak resident memory of `put_stream` of a 4 GiB stream (target: under 256 MiB).
//! Not a criterion bench: it streams once from a generator and prints the kernel's
//! high-water mark of resident memory (VmHWM).
//!
//! `cargo bench --bench stream_memory` (STRATA_STREAM_GIB overrides the size)

mod common;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, ReadBuf};

/// An endless-looking stream of pseudo-random bytes, generated as it is read.
struct Generator {
    left: u64,
    x: u64,
}

impl AsyncRead for Generator {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.left).min(1 << 20) as usize & !7;
        let n = if n == 0 {
            (buf.remaining() as u64).min(self.left) as usize
        } else {
            n
        };
        let mut tmp = vec![0u8; n];
        for word in tmp.chunks_mut(8) {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            let bytes = self.x.to_le_bytes();
            word.copy_from_slice(&bytes[..word.len()]);
        }
        buf.put_slice(&tmp);
        self.left -= n as u64;
        Poll::Ready(Ok(()))
    }
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_string)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // Under `cargo test` stream 64 MiB only: the test checks the bench runs.
    let default_mib = if common::quick() { 64 } else { 4096 };
    let mib: u64 = std::env::var("STRATA_STREAM_GIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(|g| g * 1024)
        .unwrap_or(default_mib);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    rt.block_on(async {
        let store = strata::Store::open(common::settings(dir.path(), 256 << 20)).await.expect("open");
        let before = vm_hwm_kib();
        let t = Instant::now();
        let r = store.put_stream(Generator { left: mib << 20, x: 0x1234567 }).await.expect("put_stream");
        let secs = t.elapsed().as_secs_f64();
        store.close().await.expect("close");
        println!(
            "put_stream {mib} MiB: {} chunks in {secs:.1} s ({:.0} MiB/s); peak RSS {} MiB (before: {} MiB)",
            r.chunks,
            (r.size as f64) / secs / (1 << 20) as f64,
            vm_hwm_kib() / 1024,
            before / 1024
        );
    });
}
