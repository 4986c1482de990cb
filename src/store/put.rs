//! Ingest (DESIGN §3): a bounded pipeline that overlaps reading, chunking, hashing and
//! storing, then one metadata commit.
//!
//! ```text
//!  block source ─blocks─▶ chunker thread (FastCDC + chunk BLAKE3) ──batches──▶ writer
//!        └──────blocks──▶ blob hasher thread (whole-content BLAKE3)   (dedup, hot put)
//! ```
//! Every channel is bounded, so memory stays a few blocks whatever the input size.
//! Chunks are written before the commit; a crash in between leaves only unreferenced
//! chunks, invisible to readers and harmless to later puts.

use std::collections::HashSet;
use std::future::Future;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use super::put_existing::Committed;
use super::writing::Registration;
use super::Store;
use crate::chunking::StreamChunker;
use crate::error::{Error, ErrorKind, Result};
use crate::id::{BlobId, ChunkId};
use crate::meta::SHARED_ONLY;
use crate::model::{BlobCommit, BlobRecord, ChunkerParams, CommitOutcome, Location, ManifestEntry};
use crate::settings::Durability;

/// Size of the blocks read from the input and handed to the chunker (also what the CLI
/// reads files in).
pub(crate) const BLOCK_BYTES: usize = 1 << 20;
/// Chunk bytes per batch handed to the writer (one dedup query, one hot-tier write).
const BATCH_BYTES: usize = 1 << 20;
/// Blocks or batches in flight per channel.
const CHANNEL_DEPTH: usize = 2;
/// New bytes a put writes through the hot tier's write-ahead log before it switches to
/// unlogged bulk writes (flushed before its commit).
const LOGGED_PUT_BYTES: u64 = 8 << 20;
/// Inputs from this size up are released by [`release_off_path`] (below it a thread hop
/// costs more than the free).
const RELEASE_OFF_PATH_BYTES: usize = 16 << 20;

/// What a put did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PutReceipt {
    /// The blob's id (BLAKE3 of its content).
    pub id: BlobId,
    /// Its size in bytes.
    pub size: u64,
    /// Number of chunks in its manifest.
    pub chunks: u64,
    /// Distinct chunks this put stored.
    pub new_chunks: u64,
    /// Bytes this put stored.
    pub new_bytes: u64,
    /// Bytes already present (in other blobs or earlier in this one).
    pub reused_bytes: u64,
    /// True if the blob was already committed. The receipt then describes the stored
    /// blob (`chunks` is its manifest's count, which `stat` shows), and `new_chunks` /
    /// `new_bytes` count the copies this put added to it: chunks it had no readable copy
    /// of on this node, or whose copies were marked corrupt or missing (rewritten, which
    /// repairs them).
    pub existed: bool,
}

struct Batch {
    chunks: Vec<(u64, ChunkId, Bytes)>,
}

/// Options of a put ([`Store::put_with`] and friends).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// The policy class (`[policy.classes.NAME]`) recorded with the blob; `""` = the
    /// default policy. An unknown class is `InvalidInput`, before anything is written.
    pub class: String,
}

impl Store {
    /// Store `data` as a blob. The bytes are not copied on the way to the hot tier.
    pub async fn put(&self, data: Bytes) -> Result<PutReceipt> {
        self.put_with(data, &PutOptions::default()).await
    }

    /// [`Store::put`] with options (a policy class).
    pub async fn put_with(&self, data: Bytes, options: &PutOptions) -> Result<PutReceipt> {
        self.check_open()?;
        self.check_class(&options.class)?;
        let once = |data: Bytes| futures::stream::iter([Ok::<Bytes, std::io::Error>(data)]);
        let result = match self.put_blocks_with(once(data.clone()), options).await {
            // A copy vanished between the dedup check and the commit (a scrub marked it
            // corrupt): the bytes are at hand, so try once more.
            Err(e)
                if e.kind() == ErrorKind::Unavailable
                    && e.context().starts_with("chunks vanished") =>
            {
                self.put_blocks_with(once(data.clone()), options).await
            }
            other => other,
        };
        release_off_path(data);
        result
    }

    /// Store everything `reader` yields as a blob, with bounded memory.
    pub async fn put_stream<R: AsyncRead + Send + Unpin + 'static>(
        &self,
        reader: R,
    ) -> Result<PutReceipt> {
        self.put_stream_with(reader, &PutOptions::default()).await
    }

    /// [`Store::put_stream`] with options (a policy class).
    pub async fn put_stream_with<R: AsyncRead + Send + Unpin + 'static>(
        &self,
        mut reader: R,
        options: &PutOptions,
    ) -> Result<PutReceipt> {
        self.check_open()?;
        self.check_class(&options.class)?;
        self.ingest(&options.class, |feed| async move {
            loop {
                let mut buf = BytesMut::with_capacity(BLOCK_BYTES);
                while buf.len() < BLOCK_BYTES {
                    if reader.read_buf(&mut buf).await? == 0 {
                        break;
                    }
                }
                let short = buf.len() < BLOCK_BYTES;
                if !buf.is_empty() {
                    feed.send(buf.freeze()).await?;
                }
                if short {
                    return Ok(());
                }
            }
        })
        .await
    }

    /// Store a blob given as a stream of byte blocks of any size (a network body, a
    /// file read in blocks), without copying them. Memory is bounded by the blocks in
    /// flight: a few of them, or a few MiB for blocks larger than that.
    pub async fn put_blocks<S>(&self, blocks: S) -> Result<PutReceipt>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        self.put_blocks_with(blocks, &PutOptions::default()).await
    }

    /// [`Store::put_blocks`] with options (a policy class).
    pub async fn put_blocks_with<S>(&self, blocks: S, options: &PutOptions) -> Result<PutReceipt>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        self.check_open()?;
        self.check_class(&options.class)?;
        self.ingest(&options.class, |feed| async move {
            let mut blocks = blocks;
            while let Some(mut block) = blocks.next().await.transpose()? {
                // Big blocks go on in slices so that chunking, hashing and writing
                // still overlap.
                while block.len() > BLOCK_BYTES {
                    feed.send(block.split_to(BLOCK_BYTES)).await?;
                }
                if !block.is_empty() {
                    feed.send(block).await?;
                }
            }
            Ok(())
        })
        .await
    }

    /// The ingest pipeline around `produce`, which sends the blob's blocks in order to
    /// the [`Feed`] it is given and returns at the end of the input.
    async fn ingest<F, Fut>(&self, class: &str, produce: F) -> Result<PutReceipt>
    where
        F: FnOnce(Feed) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let _op = self.begin().await?;
        let _fg = self.inner.foreground.begin();
        let params = self.inner.settings.chunking;
        let (block_tx, block_rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
        let (hash_tx, mut hash_rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
        let (batch_tx, batch_rx) = mpsc::channel::<Batch>(CHANNEL_DEPTH);

        let chunker = tokio::task::spawn_blocking(move || chunk_blocks(params, block_rx, batch_tx));
        let hasher = tokio::task::spawn_blocking(move || {
            let mut h = blake3::Hasher::new();
            let mut size = 0u64;
            while let Some(block) = hash_rx.blocking_recv() {
                size += block.len() as u64;
                h.update(&block);
            }
            (BlobId::from(h.finalize()), size)
        });
        let read = produce(Feed { block_tx, hash_tx });

        // Every chunk of the put is registered before its dedup query and stays so
        // until after the commit: no deletion of hot bytes removes what this put
        // writes, or reuses, in between (`writing`, docs/design.md).
        let registration = self.inner.writing.registration();
        let write = self.write_batches(batch_rx, &registration);
        let (read_res, write_res) = tokio::join!(read, write);
        // A failed writer stops the chunker and then the reader ("pipeline stopped"), so
        // its error is the root cause. A failed read must stop the commit: the chunker
        // saw a clean end of input and the writer a complete-looking stream.
        let written = write_res?;
        read_res.map_err(|e| e.context_prefix("reading input"))?;
        chunker.await??;
        let (id, size) = hasher.await?;
        self.pause_at("put-commit").await;
        let done = self.commit(id, size, params, class, written).await?;
        drop(registration);
        self.discard_hot(done.discard).await;
        Ok(done.receipt)
    }

    /// The writer side of the pipeline, itself three stages so that no step waits on
    /// another: the dedup query of a batch runs while the batch before it is written to
    /// hot, and the accounting between them (manifest entries, what is new) is in order.
    async fn write_batches(
        &self,
        mut batches: mpsc::Receiver<Batch>,
        registration: &Registration<'_>,
    ) -> Result<Written> {
        let (checked_tx, mut checked) = mpsc::channel::<(Batch, HashSet<ChunkId>)>(1);
        let (write_tx, mut writes) = mpsc::channel::<(Vec<(ChunkId, Bytes)>, bool)>(1);
        // A stage whose successor stopped (with an error) stops too; its error is the
        // one returned.
        let query = async move {
            while let Some(batch) = batches.recv().await {
                let mut ids: Vec<ChunkId> = batch.chunks.iter().map(|c| c.1).collect();
                ids.sort_unstable();
                ids.dedup();
                registration.add(&ids).await;
                let readable = self.readable_of(ids).await?;
                if checked_tx.send((batch, readable)).await.is_err() {
                    break;
                }
            }
            Ok::<(), Error>(())
        };
        let account = async move {
            let mut w = Written::default();
            while let Some((batch, readable)) = checked.recv().await {
                let to_write = w.account(batch, &readable, &self.inner.node, self.now_ms());
                if !to_write.is_empty() && write_tx.send((to_write, w.unlogged())).await.is_err() {
                    break;
                }
            }
            w
        };
        let write = async move {
            while let Some((chunks, unlogged)) = writes.recv().await {
                // The first bytes of a put go through the write-ahead log (a small put is
                // then made durable by the synced commit alone); past that, bulk writes
                // skip the log so each byte hits the disk once, and the commit first
                // flushes them.
                if unlogged {
                    self.inner.hot.put_many_unlogged(chunks).await?;
                } else {
                    self.inner.hot.put_many(chunks).await?;
                }
            }
            Ok::<(), Error>(())
        };
        let (queried, written, wrote) = tokio::join!(query, account, write);
        wrote?;
        queried?;
        Ok(written)
    }

    /// The chunks of a batch (`ids`, distinct) this put may reuse instead of writing: those with a healthy
    /// copy this node can read. With `replicated` durability only copies every node can
    /// read count: a chunk held just in this node's hot tier (put while durability was
    /// `local`, or moved to hot) is written again, and so packed into warm with the rest.
    async fn readable_of(&self, ids: Vec<ChunkId>) -> Result<HashSet<ChunkId>> {
        let reader = match self.inner.settings.durability.mode {
            Durability::Replicated => SHARED_ONLY,
            Durability::Local => self.inner.node.as_str(),
        };
        self.inner.meta.readable_chunks(&ids, reader).await
    }

    async fn commit(
        &self,
        id: BlobId,
        size: u64,
        params: ChunkerParams,
        class: &str,
        w: Written,
    ) -> Result<Committed> {
        if w.new_chunks > 0 && !(self.inner.wal_shared && self.inner.settings.hot.sync) {
            self.inner.hot.sync().await?;
        } else if w.unlogged() {
            self.inner.hot.sync_unlogged().await?;
        }
        let chunks = w.entries.len() as u64;
        let written: Vec<ChunkId> = w.locations.iter().map(|l| l.chunk).collect();
        // `replicated` durability packs the new chunks into warm before the commit. When
        // the blob already exists with other chunking settings, these chunks are not its
        // chunks: uploading them would only leave a pack nobody records.
        // The replicas' write intents are held until the commit below has landed.
        let (replicas, _replica_intents) = match self.existing_other_cut(&id, params, &w).await? {
            Some(existing) => return Ok(self.existed(&existing, None, written)),
            None => self.replicate(&w.locations).await?,
        };
        let commit = BlobCommit {
            blob: BlobRecord {
                id,
                size,
                chunk_count: chunks,
                params,
                created_ms: self.now_ms(),
                class: class.to_string(),
                pin: None,
            },
            entries: w.entries,
            new_locations: [w.locations, replicas].concat(),
            node: self.inner.node.clone(),
        };
        let receipt = PutReceipt {
            id,
            size,
            chunks,
            new_chunks: w.new_chunks,
            new_bytes: w.new_bytes,
            reused_bytes: size - w.new_bytes,
            existed: false,
        };
        match self.inner.meta.commit_blob(&commit).await? {
            CommitOutcome::Committed => {
                self.confirm_hot(written).await;
                tracing::debug!(blob = %id.short(), size, chunks, new = w.new_chunks, "put committed");
                Ok(Committed { receipt, discard: Vec::new() })
            }
            CommitOutcome::AlreadyExists(existing) => {
                if existing.params != params || commit.new_locations.is_empty() {
                    return Ok(self.existed(&existing, None, written));
                }
                // Same content, same cut: the chunks this put wrote are the blob's own
                // (chunks it had no readable copy of here, or whose copies were marked
                // bad). Record them as copies, which also repairs bad ones; left
                // unrecorded they would be bytes no gc ever finds.
                match self.inner.meta.add_locations(&commit.new_locations).await {
                    Ok(()) => {
                        self.confirm_hot(written).await;
                        Ok(self.existed(&existing, Some(&receipt), Vec::new()))
                    }
                    // A chunk record went away (the blob was deleted meanwhile).
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        Ok(self.existed(&existing, None, written))
                    }
                    Err(e) => Err(e),
                }
            }
            CommitOutcome::MissingChunks(missing) => Err(Error::unavailable(format!(
                "chunks vanished during the put ({} chunks, first {}); nothing was committed, retry the put",
                missing.len(),
                missing[0]
            ))),
        }
    }
}

impl Store {
    /// `InvalidInput` naming `class` unless it is `""` or a `[policy.classes.NAME]`.
    fn check_class(&self, class: &str) -> Result<()> {
        if class.is_empty() || self.inner.settings.policy.classes.contains_key(class) {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "unknown policy class {class:?}: define it as [policy.classes.{class}]"
            )))
        }
    }

    /// Drop the hot tier's unconfirmed notes of chunks whose locations are now recorded.
    /// A note left behind only makes the next `gc` look the chunk up and keep it.
    pub(super) async fn confirm_hot(&self, ids: Vec<ChunkId>) {
        if let Err(e) = self.inner.hot.confirm(ids).await {
            tracing::warn!(error = %e, "could not drop unconfirmed notes of recorded chunks");
        }
    }
}

#[derive(Default)]
pub(super) struct Written {
    seen: HashSet<ChunkId>,
    entries: Vec<ManifestEntry>,
    pub(super) locations: Vec<Location>,
    new_chunks: u64,
    new_bytes: u64,
}

impl Written {
    /// Add `batch` to the manifest and return its chunks that must be written: those
    /// neither seen earlier in this put nor `readable` already.
    fn account(
        &mut self,
        batch: Batch,
        readable: &HashSet<ChunkId>,
        node: &str,
        now_ms: u64,
    ) -> Vec<(ChunkId, Bytes)> {
        let mut to_write = Vec::new();
        for (offset, id, data) in batch.chunks {
            let len = data.len() as u64;
            self.entries.push(ManifestEntry {
                offset,
                length: len as u32,
                chunk: id,
            });
            if self.seen.insert(id) && !readable.contains(&id) {
                self.new_chunks += 1;
                self.new_bytes += len;
                self.locations.push(Location::hot(id, node, len, now_ms));
                to_write.push((id, data));
            }
        }
        to_write
    }

    /// Whether the put has passed its logged prefix. `new_bytes` only grows with a
    /// batch that writes, so once this holds some chunks were written without the WAL.
    fn unlogged(&self) -> bool {
        self.new_bytes > LOGGED_PUT_BYTES
    }
}

/// Drop `data` on a blocking thread when it is large. When it holds the last reference
/// to its buffer, freeing it unmaps the buffer's pages, which for 1 GiB took 65-75 ms
/// here: time the caller's put should not wait for.
fn release_off_path(data: Bytes) {
    if data.len() >= RELEASE_OFF_PATH_BYTES {
        tokio::task::spawn_blocking(move || drop(data));
    }
}

/// The input side of the ingest pipeline: every block goes to the whole-blob hasher and
/// to the chunker. Dropping it ends the input.
struct Feed {
    block_tx: mpsc::Sender<Bytes>,
    hash_tx: mpsc::Sender<Bytes>,
}

impl Feed {
    /// Hand on the next block of the blob (waits while the pipeline is full).
    async fn send(&self, block: Bytes) -> Result<()> {
        let stopped = |_| Error::internal("ingest pipeline stopped");
        self.hash_tx.send(block.clone()).await.map_err(stopped)?;
        self.block_tx.send(block).await.map_err(stopped)
    }
}

/// The chunker thread: cut blocks into chunks, hash them, send batches of about
/// [`BATCH_BYTES`] (small input blocks are gathered, so writes stay large).
fn chunk_blocks(
    params: ChunkerParams,
    mut blocks: mpsc::Receiver<Bytes>,
    out: mpsc::Sender<Batch>,
) -> Result<()> {
    let mut chunker = StreamChunker::new(params);
    let mut cut = Vec::new();
    let mut batch = Vec::new();
    let mut batch_bytes = 0;
    loop {
        let block = blocks.blocking_recv();
        let end = block.is_none();
        match block {
            Some(block) => chunker.push(block, &mut cut),
            None => chunker.finish(&mut cut),
        }
        for (offset, data) in cut.drain(..) {
            batch_bytes += data.len();
            batch.push((offset, ChunkId::of(&data), data));
        }
        if batch_bytes >= BATCH_BYTES || (end && !batch.is_empty()) {
            let chunks = std::mem::take(&mut batch);
            batch_bytes = 0;
            out.blocking_send(Batch { chunks })
                .map_err(|_| Error::internal("ingest writer stopped"))?;
        }
        if end {
            return Ok(());
        }
    }
}
