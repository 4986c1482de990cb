//! The chunks this process is writing to its hot tier and has not yet committed (puts,
//! promotions, moves to hot), and the one rule every deletion of hot bytes follows
//! (docs/design.md, "Deleting hot bytes while puts run").
//!
//! Hot bytes are node-local and one process owns a data directory (RocksDB's lock), so
//! the only writer that can race a deletion of this node's hot bytes is in this process.
//! A writer registers a chunk before it looks the chunk up (the put's dedup query) and
//! releases it after its metadata commit; a deletion, per batch and under one short
//! gate that registration also takes, skips registered chunks, re-reads the chunks'
//! locations, and deletes only bytes no hot location on this node records.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::id::ChunkId;

/// Registered chunks (with how many writers hold each) and the deletion gate.
#[derive(Default)]
pub(super) struct WriteRegistry {
    held: Arc<Mutex<HashMap<ChunkId, u32>>>,
    /// Taken by a registration for an instant, and by a deletion for its whole
    /// check-and-delete step: a writer registering while a deletion runs waits, so its
    /// writes land after that deletion.
    gate: tokio::sync::Mutex<()>,
}

impl WriteRegistry {
    /// A registration holding nothing yet; what it holds is released when it is dropped.
    pub(super) fn registration(&self) -> Registration<'_> {
        Registration {
            registry: self,
            ids: Mutex::new(Vec::new()),
        }
    }

    /// Hold the gate for one check-and-delete step.
    pub(super) async fn gate(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.gate.lock().await
    }

    /// Whether some writer holds `id` now (meaningful under the gate).
    pub(super) fn is_held(&self, id: &ChunkId) -> bool {
        self.lock().contains_key(id)
    }

    /// Chunks registered now.
    #[cfg(test)]
    fn held_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ChunkId, u32>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Chunks one writer holds; dropped after its commit (or its failure).
pub(super) struct Registration<'a> {
    registry: &'a WriteRegistry,
    ids: Mutex<Vec<ChunkId>>,
}

impl Registration<'_> {
    /// Register `ids`, waiting while a deletion step runs. Must happen before the
    /// writer decides, from metadata, whether to write them.
    pub(super) async fn add(&self, ids: &[ChunkId]) {
        if ids.is_empty() {
            return;
        }
        let _gate = self.registry.gate.lock().await;
        let mut held = self.registry.lock();
        for id in ids {
            *held.entry(*id).or_insert(0) += 1;
        }
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(ids);
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let ids = std::mem::take(self.ids.get_mut().unwrap_or_else(|e| e.into_inner()));
        if ids.is_empty() {
            return;
        }
        let mut held = self.registry.lock();
        for id in ids {
            if let Some(n) = held.get_mut(&id) {
                *n -= 1;
                if *n == 0 {
                    held.remove(&id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn registrations_count_per_writer_and_release_on_drop() {
        let r = WriteRegistry::default();
        let id = ChunkId::of(b"x");
        let a = r.registration();
        let b = r.registration();
        a.add(&[id]).await;
        b.add(&[id]).await;
        drop(a);
        assert!(r.is_held(&id), "still held by the second writer");
        drop(b);
        assert!(!r.is_held(&id));
        assert_eq!(r.held_count(), 0);
    }

    #[tokio::test]
    async fn registering_waits_for_a_deletion_step() {
        let r = Arc::new(WriteRegistry::default());
        let id = ChunkId::of(b"y");
        let gate = r.gate().await;
        let r2 = r.clone();
        let waiter = tokio::spawn(async move {
            let reg = r2.registration();
            reg.add(&[id]).await;
            let held = r2.is_held(&id);
            drop(reg);
            held
        });
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!r.is_held(&id), "registration waits behind the gate");
        drop(gate);
        assert!(waiter.await.unwrap());
    }
}
