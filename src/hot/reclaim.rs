//! Giving back the disk space of deleted chunks (`HotTier::reclaim`, called by `gc`).
//!
//! A deleted chunk's bytes stay in its blob file until two things happen: a compaction
//! drops the deleted key (which counts the value as garbage of its blob file, and drops
//! a blob file once all of it is garbage), and, for a file that still holds live
//! values, blob garbage collection relocates those values so the file can go. Blob GC
//! is off in normal operation (it rewrote freshly written chunks during ingest), so
//! this runs both steps explicitly, and only while the pending marker says deletions
//! left garbage since the last completed run.

use rocksdb::{BottommostLevelCompaction, CompactOptions, DB};

use super::RECLAIM_PENDING;
use crate::error::Result;
use crate::rocks::{cf, CF_CHUNKS, CF_SYSTEM};

/// Relocate live values when garbage is at least this fraction (1/N) of the blob files'
/// bytes after the key-dropping compaction. Relocation rewrites every live hot byte,
/// so it waits until the space it wins is worth it: the hot tier's blob files stay
/// within 8/7 of their live bytes.
const RELOCATE_AT_GARBAGE_FRACTION: u64 = 8;

/// The reclaim of the chunks column family; the bytes its files shrank by.
/// `deletions` is the hot tier's count of chunk deletions: the marker is cleared only if
/// no deletion happened while the compactions ran (deletions no longer wait for gc).
pub(super) fn run(db: &DB, deletions: &std::sync::Mutex<u64>) -> Result<u64> {
    let seen = *deletions.lock().unwrap_or_else(|e| e.into_inner());
    let sys = cf(db, CF_SYSTEM)?;
    if db.get_pinned_cf(sys, RECLAIM_PENDING)?.is_none() {
        return Ok(0);
    }
    let chunks = cf(db, CF_CHUNKS)?;
    let before = footprint(db)?;
    let mut opts = CompactOptions::default();
    // The default skips files already in the bottommost level, which is where most
    // deleted chunks' keys are: nothing would be dropped, no blob file freed.
    opts.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
    opts.set_exclusive_manual_compaction(true);
    db.compact_range_cf_opt(chunks, None::<&[u8]>, None::<&[u8]>, &opts);
    let blob_bytes = prop(db, "rocksdb.live-blob-file-size")?;
    let garbage = prop(db, "rocksdb.live-blob-file-garbage-size")?;
    if garbage > 0 && garbage.saturating_mul(RELOCATE_AT_GARBAGE_FRACTION) >= blob_bytes {
        // Age cutoff 1.0: every blob file is eligible, not only the oldest quarter
        // (RocksDB's default), since the garbage of a crashed put or a fresh delete
        // sits in the newest files.
        db.set_options_cf(
            chunks,
            &[
                ("enable_blob_garbage_collection", "true"),
                ("blob_garbage_collection_age_cutoff", "1.0"),
            ],
        )?;
        db.compact_range_cf_opt(chunks, None::<&[u8]>, None::<&[u8]>, &opts);
        db.set_options_cf(
            chunks,
            &[
                ("enable_blob_garbage_collection", "false"),
                ("blob_garbage_collection_age_cutoff", "0.25"),
            ],
        )?;
    }
    // Cleared only after the compactions returned: a process killed during them leaves
    // the marker, and the next `gc` runs them again. A deletion during them (which may
    // have missed the compaction) leaves it too; checked and cleared under the lock
    // every chunk deletion takes to set it.
    {
        let now = deletions.lock().unwrap_or_else(|e| e.into_inner());
        if *now == seen {
            db.delete_cf(sys, RECLAIM_PENDING)?;
        }
    }
    let after = footprint(db)?;
    tracing::debug!(
        before,
        after,
        garbage_left = prop(db, "rocksdb.live-blob-file-garbage-size")?,
        "hot reclaim"
    );
    Ok(before.saturating_sub(after))
}

/// Bytes of the chunks column family's live table and blob files.
fn footprint(db: &DB) -> Result<u64> {
    Ok(prop(db, "rocksdb.live-sst-files-size")? + prop(db, "rocksdb.live-blob-file-size")?)
}

fn prop(db: &DB, name: &str) -> Result<u64> {
    Ok(db
        .property_int_value_cf(cf(db, CF_CHUNKS)?, name)?
        .unwrap_or(0))
}
