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
/// threshold explicitly turns the adjustment off.
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const THRESHOLD: libc::c_int = 1 << 20;
        // SAFETY: mallopt only changes allocator parameters; it is called before any
        // other thread exists, and a refused value (return 0) leaves the defaults.
        let _ = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD) };
    }
}
