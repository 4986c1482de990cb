//! Timeouts of [`S3ObjectStore`](super::S3ObjectStore) (docs/objects.md): connect and
//! read timeouts on the client, a whole-operation limit for small requests, and a
//! response timeout for PUTs that grows with the body.

use std::time::Duration;

use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Builder, StalledStreamProtectionConfig};
use aws_sdk_s3::Client;

use crate::error::{Error, Result};
use crate::settings::S3Connection;

/// Whole-operation limit of small requests when the client has no read timeout either.
const DEFAULT_SMALL_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Slowest upload rate the response timeout of a PUT allows for (256 KiB/s): a 64 MiB
/// pack gets 256 s plus the read timeout. Slower links stall-check anyway: the SDK cuts
/// an upload that makes no progress for the read timeout.
const UPLOAD_FLOOR_BYTES_PER_SEC: u64 = 256 * 1024;

/// The client's timeouts and stalled-stream protection for `conn`; `InvalidInput`
/// naming the key for a zero.
pub(super) fn client_timeouts(
    conn: &S3Connection,
) -> Result<(TimeoutConfig, StalledStreamProtectionConfig)> {
    for (key, value) in [
        ("max_attempts", u64::from(conn.max_attempts)),
        ("timeout_secs", conn.timeout_secs),
        ("connect_timeout_secs", conn.connect_timeout_secs),
        ("read_timeout_secs", conn.read_timeout_secs),
    ] {
        if value == 0 {
            return Err(Error::invalid(format!(
                "s3 connection: {key} must be at least 1"
            )));
        }
    }
    let read = Duration::from_secs(conn.read_timeout_secs);
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(conn.connect_timeout_secs))
        .read_timeout(read)
        .build();
    let stalled = StalledStreamProtectionConfig::enabled()
        .grace_period(read)
        .build();
    Ok((timeouts, stalled))
}

/// Timeouts beyond the client's own (connect and read).
#[derive(Clone, Debug)]
pub(super) struct Timeouts {
    /// The client's timeouts, which per-request settings extend.
    base: TimeoutConfig,
    /// Whole-operation limit of small requests.
    pub(super) small: Duration,
}

impl Timeouts {
    /// The client's timeouts; small requests get its read timeout in all until told.
    pub(super) fn of_client(client: &Client) -> Self {
        let base = client
            .config()
            .timeout_config()
            .cloned()
            .unwrap_or_else(TimeoutConfig::disabled);
        let small = base.read_timeout().unwrap_or(DEFAULT_SMALL_REQUEST_TIMEOUT);
        Timeouts { base, small }
    }

    /// Per-request settings for a small request (HEAD, DELETE, a LIST page, RESTORE,
    /// the steps of a multipart upload around its parts).
    pub(super) fn small(&self) -> Builder {
        let t = self.base.to_builder().operation_timeout(self.small);
        Builder::new().timeout_config(t.build())
    }

    /// Per-request settings for a PUT of `len` body bytes: the response may take as
    /// long as sending the body at [`UPLOAD_FLOOR_BYTES_PER_SEC`] plus the read timeout
    /// (the SDK counts the upload in the wait for a response).
    pub(super) fn upload(&self, len: usize) -> Builder {
        let mut t = self.base.to_builder();
        if let Some(read) = self.base.read_timeout() {
            let sending = Duration::from_secs((len as u64).div_ceil(UPLOAD_FLOOR_BYTES_PER_SEC));
            t = t.read_timeout(read + sending);
        }
        Builder::new().timeout_config(t.build())
    }
}
