//! Hot copies: read from this node's RocksDB on blocking threads and re-hashed; a
//! read RocksDB fails damages that copy only.

use futures::StreamExt;

use super::{CheckMethod, Verdict};
use crate::error::{Error, ErrorKind, Result};
use crate::id::ChunkId;
use crate::model::{Health, Location};
use crate::store::Store;

/// Hot chunks read and hashed by one blocking task.
const HOT_BATCH: usize = 64;
/// Blocking tasks reading hot chunks at once (the machine's cores).
const HOT_TASKS: usize = 2;

impl Store {
    /// Read and re-hash this node's hot copies, a batch per blocking task.
    pub(super) async fn check_hot(
        &self,
        locs: Vec<Location>,
    ) -> Result<Vec<(Location, CheckMethod, Verdict, u64)>> {
        let batches: Vec<Vec<Location>> = locs.chunks(HOT_BATCH).map(<[_]>::to_vec).collect();
        let mut done = futures::stream::iter(batches)
            .map(|batch| {
                let hot = self.inner.hot.clone();
                tokio::task::spawn_blocking(move || {
                    let rt = tokio::runtime::Handle::current();
                    batch
                        .into_iter()
                        .map(|loc| {
                            let (verdict, hashed) =
                                hot_verdict(rt.block_on(hot.get(&loc.chunk)), &loc.chunk);
                            (loc, CheckMethod::Hash, verdict, hashed)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .buffer_unordered(HOT_TASKS);
        let mut out = Vec::new();
        while let Some(batch) = done.next().await {
            out.extend(batch?);
        }
        Ok(out)
    }
}

/// The verdict on a hot copy from what the hot tier returned, and the bytes hashed.
fn hot_verdict(got: Result<Option<bytes::Bytes>>, id: &ChunkId) -> (Verdict, u64) {
    match got {
        Ok(Some(bytes)) => {
            let n = bytes.len() as u64;
            if ChunkId::of(&bytes) == *id {
                (Verdict::Good, n)
            } else {
                let detail = "bytes do not hash to the chunk id".to_string();
                (Verdict::Damaged(Health::Corrupt, detail), n)
            }
        }
        Ok(None) => (
            Verdict::Damaged(Health::Missing, "not in this node's hot tier".into()),
            0,
        ),
        Err(e) => match hot_error_health(&e) {
            Some(health) => (Verdict::Damaged(health, e.to_string()), 0),
            None => (Verdict::Unchecked(e.to_string()), 0),
        },
    }
}

/// What a failed hot read means for the copy, by RocksDB's own status kind: corruption
/// (a blob file's or block's checksum) is a corrupt copy; an I/O error (a vanished or
/// unreadable blob file: RocksDB does not expose which) or not-found is a missing one.
/// Anything else says nothing about the copy.
fn hot_error_health(e: &Error) -> Option<Health> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<rocksdb::Error>() {
            return match r.kind() {
                rocksdb::ErrorKind::Corruption => Some(Health::Corrupt),
                rocksdb::ErrorKind::IOError | rocksdb::ErrorKind::NotFound => Some(Health::Missing),
                _ => None,
            };
        }
        source = s.source();
    }
    match e.kind() {
        ErrorKind::Corrupt => Some(Health::Corrupt),
        ErrorKind::NotFound => Some(Health::Missing),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_errors_are_judged_by_rocksdb_kind() {
        let id = ChunkId::of(b"x");
        let (v, n) = hot_verdict(Ok(Some(bytes::Bytes::from_static(b"y"))), &id);
        assert!(matches!(v, Verdict::Damaged(Health::Corrupt, _)) && n == 1);
        let (v, _) = hot_verdict(Ok(None), &id);
        assert!(matches!(v, Verdict::Damaged(Health::Missing, _)));
        let (v, n) = hot_verdict(Ok(Some(bytes::Bytes::from_static(b"x"))), &id);
        assert!(matches!(v, Verdict::Good) && n == 1);
        assert_eq!(
            hot_error_health(&Error::corrupt("rocksdb")),
            Some(Health::Corrupt)
        );
        assert_eq!(hot_error_health(&Error::unavailable("busy")), None);
        assert_eq!(hot_error_health(&Error::closed()), None);
    }
}
