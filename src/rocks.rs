//! The one RocksDB database of a data directory: the hot tier's chunk bytes and the
//! embedded metadata live in column families of the same database, so both share one
//! write-ahead log and a metadata commit can make earlier chunk writes durable with a
//! single sync.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{BlockBasedOptions, ColumnFamilyDescriptor, DBCompressionType, Options, DB};

use crate::error::{Error, ErrorKind, Result};
use crate::settings::HotSettings;

/// Chunk bytes of the hot tier: chunk id → bytes.
pub const CF_CHUNKS: &str = "chunks";
/// Blob records: blob id → record.
pub const CF_BLOBS: &str = "blobs";
/// Manifest entries: blob id ‖ offset (big endian) → length ‖ chunk id.
pub const CF_MANIFEST: &str = "manifest";
/// Chunk records: chunk id → size, refcount, access statistics.
pub const CF_CHUNK_META: &str = "chunk_meta";
/// Chunk copies: chunk id ‖ tier ‖ node ‖ pack → location state.
pub const CF_LOCATIONS: &str = "locations";
/// Chunks at zero references: zero-since (big endian) ‖ chunk id → ().
pub const CF_GC_QUEUE: &str = "gc_queue";
/// Verification log: time (big endian) ‖ sequence → JSON record.
pub const CF_VERIFY_LOG: &str = "verify_log";
/// Node identity and schema version.
pub const CF_SYSTEM: &str = "system";
/// Warm and cold pack records: pack name → JSON record (see `meta::placement`).
pub const CF_PACKS: &str = "packs";
/// Hot-tier writes not yet confirmed as recorded in metadata: chunk id → (). What a put
/// that failed or crashed before its commit left behind; `gc` sweeps it.
pub const CF_UNCONFIRMED: &str = "unconfirmed_chunks";

/// Every column family, in creation order.
pub const ALL_CFS: &[&str] = &[
    CF_CHUNKS,
    CF_BLOBS,
    CF_MANIFEST,
    CF_CHUNK_META,
    CF_LOCATIONS,
    CF_GC_QUEUE,
    CF_VERIFY_LOG,
    CF_SYSTEM,
    CF_PACKS,
    CF_UNCONFIRMED,
];

/// Open (creating if needed) the database in `dir`.
pub fn open(dir: &Path, hot: &HotSettings) -> Result<Arc<DB>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| data_dir_error(dir, "cannot create data directory", e))?;
    let direct_io = probe_data_dir(dir)?;
    let mut db_opts = Options::default();
    db_opts.create_if_missing(true);
    db_opts.create_missing_column_families(true);
    db_opts.increase_parallelism(2);
    // Flushes and compactions have their own limits: ingest is bound by how fast
    // memtables reach blob files (`hot.flush_threads`), and a compaction must not take a
    // flush's turn. (Deprecated in favour of a shared `max_background_jobs`, from which
    // RocksDB would take a quarter for flushes, but still honoured when set.)
    #[allow(deprecated)]
    db_opts.set_max_background_flushes(hot.flush_threads as i32);
    #[allow(deprecated)]
    db_opts.set_max_background_compactions(1);
    db_opts.set_keep_log_file_num(4);
    if hot.direct_writes {
        if direct_io {
            db_opts.set_use_direct_io_for_flush_and_compaction(true);
        } else {
            tracing::warn!(dir = %dir.display(), "the filesystem refuses O_DIRECT; hot-tier files are written through the page cache");
        }
    }

    let cfs = ALL_CFS.iter().map(|name| {
        let mut o = Options::default();
        if *name == CF_CHUNKS {
            // Chunk values live in blob files: compaction moves 40-byte keys, not bytes.
            o.set_enable_blob_files(true);
            o.set_min_blob_size(1024);
            o.set_blob_file_size(256 << 20);
            o.set_blob_compression_type(compression(&hot.blob_compression));
            // Blob GC relocates live values out of old blob files during compaction:
            // during ingest that rewrote every chunk again (a quarter of `put`'s CPU), for
            // garbage that only `gc` and demotion create. So it is off here and turned
            // on for one manual compaction by `HotTier::reclaim` after `Store::gc`.
            o.set_enable_blob_gc(false);
            // A bloom filter answers "not here" without reading a data block, so reads
            // can ask whether hot holds a chunk before going to warm or cold (10 bits a
            // key: 1% false positives, ~1.3 bytes per chunk of memory).
            let mut table = BlockBasedOptions::default();
            table.set_bloom_filter(10.0, false);
            o.set_block_based_table_factory(&table);
            o.set_write_buffer_size(hot.write_buffer_bytes);
            // One memtable filling while each flush thread writes one out: fewer and
            // writes stall whenever a flush waits on the disk.
            o.set_max_write_buffer_number(hot.flush_threads as i32 + 1);
        } else {
            o.set_compression_type(DBCompressionType::Lz4);
        }
        ColumnFamilyDescriptor::new(*name, o)
    });
    let db = DB::open_cf_descriptors(&db_opts, dir, cfs).map_err(|e| {
        let err: Error = e.into();
        let msg = err.to_string();
        if msg.contains("lock") {
            Error::unavailable(format!(
                "data directory {} is in use by another strata process",
                dir.display()
            ))
        } else {
            err.context_prefix(format!("opening {}", dir.display()))
        }
    })?;
    Ok(Arc::new(db))
}

/// Check that new files can be created in `dir`, and whether with `O_DIRECT`. Some
/// filesystems refuse `O_DIRECT` (tmpfs before Linux 6.6, some network filesystems),
/// and RocksDB would only find out at its first flush, which then fails. The kernel
/// says so with `EINVAL`; any other failure (no permission, a read-only filesystem, a
/// full disk) is the directory's, and is reported here, naming it, rather than by
/// RocksDB as an I/O error with no cause a user can act on.
fn probe_data_dir(dir: &Path) -> Result<bool> {
    use std::fs::OpenOptions;
    let probe = dir.join(".direct-io-probe");
    let create = |direct: bool| {
        let mut opts = OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(target_os = "linux")]
        if direct {
            use std::os::unix::fs::OpenOptionsExt;
            opts.custom_flags(libc::O_DIRECT);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = direct;
        opts.open(&probe)
    };
    let direct = cfg!(target_os = "linux")
        && match create(true) {
            Ok(_) => true,
            // Created before the flag was refused on some kernels: removed below.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => false,
            Err(e) => return Err(data_dir_error(dir, "cannot write data directory", e)),
        };
    let created = if direct {
        Ok(())
    } else {
        create(false).map(drop)
    };
    let _ = std::fs::remove_file(&probe);
    created.map_err(|e| data_dir_error(dir, "cannot write data directory", e))?;
    Ok(direct)
}

/// An I/O error about the data directory itself. A full disk stays `Unavailable`
/// (freeing space and retrying helps); anything else (no permission, a file in the
/// way, a read-only filesystem) is for the caller to fix: `InvalidInput`.
fn data_dir_error(dir: &Path, what: &str, e: std::io::Error) -> Error {
    let err = Error::from(e).context_prefix(format!("{what} {}", dir.display()));
    match err.kind() {
        ErrorKind::Unavailable => err,
        _ => err.with_kind(ErrorKind::InvalidInput),
    }
}

fn compression(name: &str) -> DBCompressionType {
    match name {
        "zstd" => DBCompressionType::Zstd,
        "lz4" => DBCompressionType::Lz4,
        _ => DBCompressionType::None,
    }
}

/// The handle of a column family this module created.
pub fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a rocksdb::ColumnFamily> {
    db.cf_handle(name)
        .ok_or_else(|| Error::internal(format!("column family {name} is missing")))
}

/// Name a full disk behind a RocksDB I/O error of the database in `dir`. RocksDB's
/// status carries no errno, so the filesystem is asked instead: an I/O error while it
/// has less room than one round of memtable flushes writes
/// (`write_buffer_bytes × (flush_threads + 1)`), or no free inode, is taken for a full
/// disk (`Unavailable`: freeing space and retrying helps). The room is compared with a
/// round of flushes rather than with zero because a flush that failed deletes its
/// partial files: by the time the error arrives, the space it lacked is free again.
/// Any other error is returned unchanged.
pub fn name_full_disk(err: Error, dir: &Path, hot: &HotSettings) -> Error {
    if err.kind() != ErrorKind::Internal || !rocksdb_io_error(&err) {
        return err;
    }
    let Ok(fs) = rustix::fs::statvfs(dir) else {
        return err;
    };
    let free = fs.f_bavail.saturating_mul(fs.f_frsize);
    let needed = (hot.write_buffer_bytes as u64).saturating_mul(hot.flush_threads as u64 + 1);
    // Filesystems without an inode limit (btrfs) report no inodes at all.
    let no_inodes = fs.f_files > 0 && fs.f_favail == 0;
    if free >= needed && !no_inodes {
        return err;
    }
    err.with_kind(ErrorKind::Unavailable)
        .context_prefix(format!(
            "disk full: no space left on device for data directory {} ({free} bytes free)",
            dir.display()
        ))
}

/// Whether a RocksDB `IOError` is among the causes of `err`.
fn rocksdb_io_error(err: &Error) -> bool {
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        if let Some(r) = c.downcast_ref::<rocksdb::Error>() {
            return r.kind() == rocksdb::ErrorKind::IOError;
        }
        cause = c.source();
    }
    false
}
