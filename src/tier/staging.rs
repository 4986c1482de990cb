//! Chunks fetched ahead of a read (coalesced GETs), held until the per-chunk read path
//! takes them; and the set of chunks being fetched, so concurrent reads share a fetch. The chunk cache cannot serve this: its admission policy may refuse new
//! entries once it is full, which would turn one coalesced GET back into one GET per
//! chunk. Bounded in bytes; entries nobody took expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Semaphore;

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

    /// Whether bytes are held for `id`.
    pub(crate) fn contains(&self, id: &ChunkId) -> bool {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.map.contains_key(id)
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

/// Chunks some read is fetching right now, so concurrent reads of the same chunks wait
/// for that fetch instead of sending the same GETs again.
#[derive(Default)]
pub(crate) struct Inflight {
    map: Mutex<HashMap<ChunkId, Arc<Semaphore>>>,
}

/// Chunks registered by one fetch; dropping it (when the fetch ends, fails or is
/// cancelled) unregisters them and wakes the readers waiting for them.
pub(crate) struct Claim<'a> {
    owner: &'a Inflight,
    ids: Vec<ChunkId>,
    done: Arc<Semaphore>,
}

impl Inflight {
    /// Register the ids of `wanted` nobody is fetching; returns the claim on those and
    /// the fetches to wait for on the others.
    pub(crate) fn claim(&self, wanted: &[ChunkId]) -> (Claim<'_>, Vec<Arc<Semaphore>>) {
        let done = Arc::new(Semaphore::new(0));
        let mut ids = Vec::new();
        let mut waits: Vec<Arc<Semaphore>> = Vec::new();
        let mut g = self.map.lock().unwrap_or_else(|p| p.into_inner());
        for id in wanted {
            match g.get(id) {
                Some(other) => {
                    if !waits.iter().any(|w| Arc::ptr_eq(w, other)) {
                        waits.push(other.clone());
                    }
                }
                None => {
                    g.insert(*id, done.clone());
                    ids.push(*id);
                }
            }
        }
        (
            Claim {
                owner: self,
                ids,
                done,
            },
            waits,
        )
    }
}

impl Claim<'_> {
    /// The chunks this claim fetches.
    pub(crate) fn ids(&self) -> &[ChunkId] {
        &self.ids
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut g = self.owner.map.lock().unwrap_or_else(|p| p.into_inner());
        for id in &self.ids {
            if g.get(id).is_some_and(|s| Arc::ptr_eq(s, &self.done)) {
                g.remove(id);
            }
        }
        drop(g);
        // Closing wakes every waiter (their acquire fails, which is the signal).
        self.done.close();
    }
}

/// Wait until the fetches `waits` are over.
pub(crate) async fn wait_all(waits: Vec<Arc<Semaphore>>) {
    for w in waits {
        let _ = w.acquire().await;
    }
}

#[cfg(test)]
mod inflight_tests {
    use super::*;

    #[tokio::test]
    async fn second_claim_waits_for_the_first() {
        let f = Inflight::default();
        let (a, b) = (ChunkId::of(b"a"), ChunkId::of(b"b"));
        let (c1, w1) = f.claim(&[a]);
        assert!(w1.is_empty());
        let (c2, w2) = f.claim(&[a, b]);
        assert_eq!(c2.ids(), &[b]);
        assert_eq!(w2.len(), 1);
        drop(c1);
        tokio::time::timeout(Duration::from_secs(1), wait_all(w2))
            .await
            .unwrap();
        let (c3, w3) = f.claim(&[a]);
        assert_eq!((c3.ids().len(), w3.len()), (1, 0));
    }
}
