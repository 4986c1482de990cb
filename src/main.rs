//! The `strata` binary; see [`strata::cli`].

fn main() -> std::process::ExitCode {
    fixed_mmap_threshold();
    strata::cli::main()
}

/// Serve allocations of 1 MiB and more with their own mappings, returned to the kernel
/// when freed. glibc raises this threshold each time it frees such a mapping (up to
/// 32 MiB), so after the first few multi-MiB buffers of a read (ranged GETs, hot-tier
/// write batches, RocksDB memtable blocks) every buffer came from per-thread heaps that
/// are not given back: a streamed `get` of a 1 GiB warm blob peaked at 517 MB resident
/// with a fixed threshold at 177 MB (docs/performance.md, issue 11). Setting the
/// threshold explicitly turns the adjustment off. It sits just above 1 MiB because the
/// ingest pipeline's input blocks are exactly 1 MiB: at 1 MiB each of them was a fresh
/// mapping, faulted in and unmapped again, and `put` of 512 MiB took 1.7× as long
/// (docs/performance.md). A 4 GiB warm read peaks at 233 MiB with this value.
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const THRESHOLD: libc::c_int = (1 << 20) + (64 << 10);
        // SAFETY: mallopt only changes allocator parameters; it is called before any
        // other thread exists, and a refused value (return 0) leaves the defaults.
        let _ = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD) };
    }
}
