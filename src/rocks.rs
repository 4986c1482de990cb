//! The one RocksDB database of a data directory: the hot tier's chunk bytes and the
//! embedded metadata live in column families of the same database, so both share one
//! write-ahead log and a metadata commit can make earlier chunk writes durable with a
//! single sync.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, DBCompressionType, DBRecoveryMode, Options, DB,
};

use crate::error::{Error, ErrorKind, Result};
use crate::settings::HotSettings;

pub mod wal;

pub use wal::WalDamage;

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

/// The hot index, by copy: node ‖ 0 ‖ chunk id → hot copy entry (`meta::embedded`).
pub const CF_HOT_COPIES: &str = "hot_copies";
/// The hot index, least recently read first: node ‖ 0 ‖ last read (big endian) ‖ chunk
/// id → hot copy entry.
pub const CF_HOT_LRU: &str = "hot_lru";
/// The hot index per policy class: node ‖ 0 ‖ class length (u16) ‖ class ‖ last read ‖
/// chunk id → hot copy entry.
pub const CF_HOT_CLASS: &str = "hot_class";
/// Hot usage per node: node → bytes ‖ copies (big endian).
pub const CF_HOT_USAGE: &str = "hot_usage";
/// Engine leases: name → JSON lease.
pub const CF_LEASES: &str = "leases";
/// Warm and cold copies per pack: pack ‖ 0 ‖ offset (big endian) ‖ location key → ().
pub const CF_PACK_LOCATIONS: &str = "pack_locations";
/// Per-pack counters: pack → live copies ‖ last read (big endian).
pub const CF_PACK_STATS: &str = "pack_stats";
/// Pin counts: chunk id → hot ‖ warm (big endian).
pub const CF_PINS: &str = "pins";
/// Last worker passes: node ‖ 0 ‖ worker → JSON pass record.
pub const CF_PASSES: &str = "passes";

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
    CF_HOT_COPIES,
    CF_HOT_LRU,
    CF_HOT_CLASS,
    CF_HOT_USAGE,
    CF_LEASES,
    CF_PACK_LOCATIONS,
    CF_PACK_STATS,
    CF_PINS,
    CF_PASSES,
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
    // RocksDB's default (point-in-time recovery) silently drops a damaged log record
    // and everything logged after it, committed puts included. This mode still accepts
    // a record cut off at the end of the log (a crash mid-write: that write was never
    // acknowledged) but refuses to open on any other damage (`open_error` names the
    // file). Accepting the loss is an explicit step: skip the damaged records, keep
    // the rest.
    db_opts.set_wal_recovery_mode(if hot.accept_wal_loss {
        DBRecoveryMode::SkipAnyCorruptedRecord
    } else {
        DBRecoveryMode::TolerateCorruptedTailRecords
    });
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
    // Registered under the canonical path, so two spellings of one directory match.
    let key = dir
        .canonicalize()
        .map_err(|e| Error::from(e).context_prefix(format!("data directory {}", dir.display())))?;
    let mut open_dbs = OPEN_DBS.lock().unwrap_or_else(PoisonError::into_inner);
    open_dbs.retain(|(_, db)| db.strong_count() > 0);
    if open_dbs.iter().any(|(path, _)| *path == key) {
        return Err(Error::unavailable(format!(
            "data directory {} is in use (opened by this process)",
            dir.display()
        )));
    }
    let opened_at = std::time::SystemTime::now();
    match DB::open_cf_descriptors(&db_opts, dir, cfs) {
        Ok(db) => {
            match remove_unreferenced_blob_files(&db, dir, opened_at) {
                Ok((0, _)) => {}
                Ok((n, bytes)) => {
                    tracing::info!(dir = %dir.display(), files = n, bytes, "removed blob files of interrupted flushes and compactions")
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not look for unreferenced blob files")
                }
            }
            let db = Arc::new(db);
            open_dbs.push((key, Arc::downgrade(&db)));
            if hot.accept_wal_loss {
                tracing::warn!(dir = %dir.display(), "opened with hot.accept_wal_loss: writes in damaged write-ahead log records were dropped");
            }
            Ok(db)
        }
        Err(e) => Err(open_error(dir, e)),
    }
}

/// Where [`remove_unreferenced_blob_files`] lists the live files (a checkpoint: hard
/// links, removed again at once).
const LIVE_FILES_DIR: &str = ".strata-live-files";

/// Delete blob files that no version of the database references, left by a flush or
/// compaction that a crash interrupted before its result was recorded. RocksDB deletes
/// such table files when it opens, but keeps every blob file without a footer (to
/// spare files its direct-write feature, unused here, may be writing), and a killed
/// flush leaves exactly that: the crash test measured 156 MiB of them after ten killed
/// puts, kept for good. Which files are live is asked of RocksDB (a checkpoint lists
/// them), only when the directory holds more blob files than the database counts, and
/// a file is deleted only if it is older than this open (so never one a flush started
/// since). Returns the files and bytes removed.
fn remove_unreferenced_blob_files(
    db: &DB,
    dir: &Path,
    opened_at: std::time::SystemTime,
) -> Result<(u64, u64)> {
    let scratch = dir.join(LIVE_FILES_DIR);
    match std::fs::remove_dir_all(&scratch) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::from(e).context_prefix(format!("remove {}", scratch.display())))
        }
    }
    let blob_files = |d: &Path| -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(d)? {
            let path = entry?.path();
            if path.extension().is_some_and(|x| x == "blob") {
                out.push(path);
            }
        }
        Ok(out)
    };
    let on_disk = blob_files(dir)?;
    let live_count = db
        .property_int_value_cf(cf(db, CF_CHUNKS)?, "rocksdb.num-blob-files")?
        .unwrap_or(0);
    if on_disk.len() as u64 <= live_count {
        return Ok((0, 0));
    }
    rocksdb::checkpoint::Checkpoint::new(db)?.create_checkpoint(&scratch)?;
    let live: std::collections::HashSet<std::ffi::OsString> = blob_files(&scratch)?
        .into_iter()
        .filter_map(|p| p.file_name().map(|n| n.to_owned()))
        .collect();
    std::fs::remove_dir_all(&scratch)?;
    let (mut files, mut bytes) = (0, 0);
    for path in on_disk {
        let Some(name) = path.file_name() else {
            continue;
        };
        let meta = std::fs::metadata(&path)?;
        if live.contains(name) || meta.modified()? >= opened_at {
            continue;
        }
        std::fs::remove_file(&path)?;
        files += 1;
        bytes += meta.len();
    }
    Ok((files, bytes))
}

/// Data directories this process has open. RocksDB's lock is an `fcntl` lock, which
/// does not conflict within one process (RocksDB keeps its own list for that, and
/// reports a second open as an I/O error like any other); this list answers "is it
/// open here?" without asking RocksDB. An entry lives as long as its database.
static OPEN_DBS: Mutex<Vec<(PathBuf, Weak<DB>)>> = Mutex::new(Vec::new());

/// The error for a failed open, classified by what the failure is rather than by
/// RocksDB's message: another process holding the directory's lock (asked of the
/// operating system), a damaged write-ahead log (found by reading the logs), any other
/// damaged file (RocksDB's `Corruption` status), or RocksDB's error as it is.
fn open_error(dir: &Path, e: rocksdb::Error) -> Error {
    if let Some(pid) = lock_holder(&dir.join("LOCK")) {
        return Error::unavailable(format!(
            "data directory {} is in use by another strata process (pid {pid})",
            dir.display()
        ));
    }
    if e.kind() != rocksdb::ErrorKind::Corruption {
        return Error::from(e).context_prefix(format!("opening {}", dir.display()));
    }
    match wal::find_damage(dir) {
        Ok(Some(d)) => Error::corrupt(wal_damage_message(&d)).with_source(e),
        Ok(None) => Error::corrupt(format!(
            "a database file in data directory {} is damaged",
            dir.display()
        ))
        .with_source(e),
        Err(io) => Error::corrupt(format!(
            "a database file in data directory {} is damaged (its write-ahead logs could not be read: {io})",
            dir.display()
        ))
        .with_source(e),
    }
}

/// What a damaged write-ahead log means for the user, and the way out.
pub fn wal_damage_message(d: &WalDamage) -> String {
    let lost = if d.lost_blobs.is_empty() {
        "no blob commit was found in them".to_string()
    } else {
        let ids: Vec<String> = d.lost_blobs.iter().map(|b| b.to_string()).collect();
        format!("they hold the commits of blob(s) {}", ids.join(", "))
    };
    let undecodable = if d.undecodable_records > 0 {
        format!(
            " ({} could not be decoded and may hold more)",
            d.undecodable_records
        )
    } else {
        String::new()
    };
    format!(
        "the write-ahead log {} is damaged at byte {} ({} bytes of log from there to its end); \
         {} damaged record(s): {lost}{undecodable}. Writes logged since the last memtable \
         flush are only in this log: opening it as it is would drop what the damaged \
         records hold. `strata recover --accept-wal-loss` opens the store anyway, skipping \
         the damaged records, and lists the blobs that lost data",
        d.file.display(),
        d.offset,
        d.bytes_after,
        d.damaged_records,
    )
}

/// The process holding an `fcntl` write lock on `path` (RocksDB's `LOCK` file), if
/// another one does.
fn lock_holder(path: &Path) -> Option<i32> {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // Opened read-only and closed again: closing a file drops every fcntl lock this
        // process holds on it, which is why this runs only when this process has not
        // opened the directory (`OPEN_DBS`).
        let file = std::fs::File::open(path).ok()?;
        // SAFETY: `flock` is plain data; zeroed is a valid value for every field.
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = libc::F_WRLCK as _;
        lock.l_whence = libc::SEEK_SET as _;
        // SAFETY: a valid descriptor and a valid pointer to a `flock`.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) };
        (rc == 0 && i32::from(lock.l_type) != libc::F_UNLCK).then_some(lock.l_pid)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
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
