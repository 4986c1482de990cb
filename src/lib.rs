//! # strata
//!
//! A content-addressed, tiered blob store. Blobs are cut into content-defined chunks
//! (FastCDC), each named by its BLAKE3 hash and stored once; a blob is a manifest of
//! `(offset, length, chunk id)` entries and is named by the BLAKE3 hash of its whole
//! content (the same digits `b3sum` prints). See `docs/design.md` for the invariants.
//!
//! ```no_run
//! # async fn demo() -> strata::Result<()> {
//! use strata::{Settings, Store};
//! let store = Store::open(Settings::default()).await?;
//! let receipt = store.put(bytes::Bytes::from_static(b"hello")).await?;
//! assert_eq!(&store.get(&receipt.id).await?[..], b"hello");
//! store.close().await?;
//! # Ok(()) }
//! ```

pub mod chunking;
pub mod cli;
pub mod clock;
pub mod engine;
pub mod error;
pub mod faults;
pub mod hot;
pub mod id;
pub mod meta;
pub mod metrics;
pub mod model;
pub mod object;
pub mod pack;
pub mod rocks;
pub mod settings;
pub mod store;
pub mod tier;
pub mod worker;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, ErrorKind, Result};
pub use id::{BlobId, ChunkId};
pub use model::{BlobRecord, ChunkerParams, Health, ManifestEntry, Tier};
pub use settings::Settings;
pub use store::{FsckReport, PutReceipt, Stat, Store, VerifyReport};
