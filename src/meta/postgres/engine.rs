//! Placeholder: being implemented.

use async_trait::async_trait;

use crate::error::Result;
use crate::id::{BlobId, ChunkId};
use crate::meta::engine::*;
use crate::meta::placement::PackRecord;
use crate::model::{Location, Tier};

use super::PostgresMeta;

#[async_trait]
impl EngineStore for PostgresMeta {
    async fn db_now_ms(&self) -> Result<u64> {
        Err(todo_engine())
    }
    async fn acquire_lease(
        &self,
        _name: &str,
        _holder: &str,
        _ttl_ms: u64,
    ) -> Result<Option<Lease>> {
        Err(todo_engine())
    }
    async fn release_lease(&self, _lease: &Lease) -> Result<()> {
        Err(todo_engine())
    }
    async fn commit_placement(
        &self,
        _fence: Option<&Fence>,
        _change: &PlacementChange,
    ) -> Result<Vec<Location>> {
        Err(todo_engine())
    }
    async fn hot_copies(
        &self,
        _node: &str,
        _order: &HotOrder,
        _read_before_ms: u64,
        _after: Option<HotCursor>,
        _limit: usize,
    ) -> Result<Vec<HotCopy>> {
        Err(todo_engine())
    }
    async fn hot_bytes(&self, _node: &str) -> Result<u64> {
        Err(todo_engine())
    }
    async fn touch_hot(&self, _node: &str, _reads: &[(ChunkId, u64)]) -> Result<()> {
        Err(todo_engine())
    }
    async fn pins(&self, _ids: &[ChunkId]) -> Result<Vec<(ChunkId, PinCounts)>> {
        Err(todo_engine())
    }
    async fn set_pin(&self, _blob: &BlobId, _to: Option<Tier>) -> Result<bool> {
        Err(todo_engine())
    }
    async fn archive_candidates(
        &self,
        _class: &str,
        _read_before_ms: u64,
        _after: Option<&str>,
        _limit: usize,
    ) -> Result<Vec<ArchiveCandidate>> {
        Err(todo_engine())
    }
    async fn pack_locations(&self, _name: &str) -> Result<Vec<Location>> {
        Err(todo_engine())
    }
    async fn restore_requests(
        &self,
        _after: Option<&str>,
        _limit: usize,
    ) -> Result<Vec<PackRecord>> {
        Err(todo_engine())
    }
    async fn usage(&self) -> Result<StoreUsage> {
        Err(todo_engine())
    }
    async fn record_pass(&self, _pass: &PassRecord) -> Result<()> {
        Err(todo_engine())
    }
    async fn passes(&self) -> Result<Vec<PassRecord>> {
        Err(todo_engine())
    }
}

fn todo_engine() -> crate::error::Error {
    crate::error::Error::internal("engine metadata: not implemented yet")
}
