//! Interim forwarding stubs for per-blob policy options at put and for pins, so the
//! command line builds before the engine's versions land. `put_*_with` check the class
//! and then store the blob under the default policy (the class is not recorded yet);
//! `pin` forwards to the metadata store. The engine's implementation replaces this file.

use bytes::Bytes;
use futures::Stream;
use tokio::io::AsyncRead;

use super::{PutReceipt, Store};
use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::model::Tier;

/// Options of a put.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// Policy class (`[policy.classes.NAME]`); `""` for the default policy.
    pub class: String,
}

impl Store {
    fn check_class(&self, options: &PutOptions) -> Result<()> {
        let class = &options.class;
        if class.is_empty() || self.settings().policy.classes.contains_key(class) {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "unknown policy class {class:?}: no [policy.classes.{class}] section"
        )))
    }

    /// [`Store::put`] under `options`.
    pub async fn put_with(&self, data: Bytes, options: &PutOptions) -> Result<PutReceipt> {
        self.check_class(options)?;
        self.put(data).await
    }

    /// [`Store::put_stream`] under `options`.
    pub async fn put_stream_with<R: AsyncRead + Send + Unpin + 'static>(
        &self,
        reader: R,
        options: &PutOptions,
    ) -> Result<PutReceipt> {
        self.check_class(options)?;
        self.put_stream(reader).await
    }

    /// [`Store::put_blocks`] under `options`.
    pub async fn put_blocks_with<S>(&self, blocks: S, options: &PutOptions) -> Result<PutReceipt>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        self.check_class(options)?;
        self.put_blocks(blocks).await
    }

    /// Pin a blob so the workers never demote it below `to` (`Hot` or `Warm`), or unpin
    /// it (`None`). `NotFound` if the blob does not exist.
    pub async fn pin(&self, id: &BlobId, to: Option<Tier>) -> Result<()> {
        if to == Some(Tier::Cold) {
            return Err(Error::invalid(
                "a blob can be pinned to hot or warm, not cold",
            ));
        }
        if self.meta().set_pin(id, to).await? {
            // The cached record still has the old pin.
            self.inner.blobs.invalidate(id).await;
            Ok(())
        } else {
            Err(Error::not_found(format!("blob {id}")))
        }
    }
}
