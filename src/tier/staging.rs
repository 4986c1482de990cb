//! Chunks fetched ahead of a read (coalesced GETs), held until the per-chunk read path
//! takes them. The chunk cache cannot serve this: its admission policy may refuse new
//! entries once it is full, which would turn one coalesced GET back into one GET per
//! chunk. Bounded in bytes; entries nobody took expire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::id::ChunkId;

/// Entries older than this are dropped (their read failed or was abandoned).
const TTL: Duration = Duration::from_secs(60);

/// Verified chunk bytes waiting for the read that fetched them.
pub(crate) struct Staging {
    limit: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<ChunkId, (Bytes, Instant)>,
    bytes: usize,
}

impl Staging {
    /// Holding at most `limit` bytes.
    pub(crate) fn new(limit: usize) -> Self {
        Staging {
            limit,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Hold `bytes` (already verified) for `id`; false when full (the read path will
    /// fetch it again).
    pub(crate) fn put(&self, id: ChunkId, bytes: Bytes) -> bool {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if g.bytes + bytes.len() > self.limit {
            let Inner { map, bytes: total } = &mut *g;
            map.retain(|_, (b, at)| {
                let keep = now.duration_since(*at) < TTL;
                if !keep {
                    *total -= b.len();
                }
                keep
            });
            if g.bytes + bytes.len() > self.limit {
                return false;
            }
        }
        g.bytes += bytes.len();
        if let Some((old, _)) = g.map.insert(id, (bytes, now)) {
            g.bytes -= old.len();
        }
        true
    }

    /// Take the bytes held for `id`.
    pub(crate) fn take(&self, id: &ChunkId) -> Option<Bytes> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (b, _) = g.map.remove(id)?;
        g.bytes -= b.len();
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_taken_once() {
        let s = Staging::new(10);
        let (a, b) = (ChunkId::of(b"a"), ChunkId::of(b"b"));
        assert!(s.put(a, Bytes::from_static(b"123456")));
        assert!(!s.put(b, Bytes::from_static(b"123456")));
        assert_eq!(s.take(&a).as_deref(), Some(&b"123456"[..]));
        assert_eq!(s.take(&a), None);
        assert!(s.put(b, Bytes::from_static(b"123456")));
    }
}
