//! [`S3ObjectStore`]: the [`ObjectStore`] on any S3 endpoint, through aws-sdk-s3.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, GlacierJobParameters, MetadataDirective,
    OptionalObjectAttributes, RestoreRequest, Tier,
};
use aws_sdk_s3::Client;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::s3_errors::{
    date_ms, error_code, map_sdk_error, parse_restore_header, restore_unsupported, Op,
};
use super::s3_timeouts::{client_timeouts, Timeouts};
use super::{
    check_range, validate_key, validate_prefix, ByteChunks, ObjectMeta, ObjectStore, RestoreStatus,
    StorageClass, LIST_PAGE,
};
use crate::error::{Error, ErrorKind, Result};
use crate::settings::S3Connection;

/// Default size of one part of a multipart upload; bodies larger than this are uploaded
/// in parts (a 32 MiB pack in two).
pub const DEFAULT_PART_SIZE: usize = 16 * 1024 * 1024;
/// Smallest part S3 accepts (except the last).
const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// Parts of one upload in flight at once.
const PART_CONCURRENCY: usize = 4;
/// An [`ObjectStore`] on an S3 bucket. Every key is stored as `prefix + key`.
///
/// Retries (throttling, 5xx, timeouts, refused connections) use the SDK's standard
/// exponential backoff with `max_attempts` from the settings; what is still failing after
/// them is `ErrorKind::Unavailable`.
#[derive(Clone, Debug)]
pub struct S3ObjectStore {
    client: Client,
    bucket: String,
    prefix: String,
    part_size: usize,
    timeouts: Timeouts,
    /// Set once the server refused a RestoreObject as unsupported and then served the
    /// archived object's bytes: it stores archive classes without enforcing them
    /// (SeaweedFS), so archived objects count as readable.
    archive_unenforced: Arc<AtomicBool>,
}

impl S3ObjectStore {
    /// Connect as `conn` says: explicit endpoint when set, path-style addressing when
    /// asked, the region, credentials from the default AWS chain (environment, profile,
    /// web identity, container or instance role), `max_attempts` attempts per request,
    /// and the timeouts of [`client_config`](Self::client_config). Sends no request.
    pub async fn connect(conn: &S3Connection) -> Result<Self> {
        let config = Self::client_config(conn).await?;
        let store = Self::from_client(Client::from_conf(config), &conn.bucket, &conn.prefix)?;
        Ok(store.with_small_request_timeout(Duration::from_secs(conn.timeout_secs)))
    }

    /// The SDK client configuration [`connect`](Self::connect) uses; tests use it to make
    /// a client of their own (e.g. to create buckets) or to swap the credentials.
    ///
    /// Timeouts: `connect_timeout_secs` for a connection, `read_timeout_secs` for the
    /// response to each attempt and for a body that makes no progress (the SDK's
    /// stalled-stream protection, both directions). No whole-attempt timeout: a large
    /// GET or PUT that keeps moving is never cut. Small requests get `timeout_secs` in
    /// all (see [`with_small_request_timeout`](Self::with_small_request_timeout)).
    pub async fn client_config(conn: &S3Connection) -> Result<aws_sdk_s3::Config> {
        let (timeouts, stalled) = client_timeouts(conn)?;
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .http_client(https_client())
            .region(Region::new(conn.region.clone()))
            .retry_config(RetryConfig::standard().with_max_attempts(conn.max_attempts))
            .timeout_config(timeouts)
            .stalled_stream_protection(stalled)
            .load()
            .await;
        let mut builder = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(conn.path_style);
        if let Some(endpoint) = conn.endpoint.as_deref().filter(|e| !e.is_empty()) {
            builder = builder.endpoint_url(endpoint);
        }
        Ok(builder.build())
    }

    /// A store on `bucket` through an existing client; keys get `prefix` in front.
    pub fn from_client(client: Client, bucket: &str, prefix: &str) -> Result<Self> {
        if bucket.is_empty() {
            return Err(Error::invalid("s3 connection: empty bucket name"));
        }
        validate_prefix(prefix).map_err(|e| e.context_prefix("s3 connection prefix"))?;
        let timeouts = Timeouts::of_client(&client);
        Ok(S3ObjectStore {
            client,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            part_size: DEFAULT_PART_SIZE,
            timeouts,
            archive_unenforced: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Give requests without a large body (HEAD, DELETE, LIST pages, RESTORE, the
    /// create / complete / abort steps of a multipart upload) `total` in all, retries
    /// included. Default: the client's read timeout.
    pub fn with_small_request_timeout(mut self, total: Duration) -> Self {
        self.timeouts.small = total;
        self
    }

    /// Use parts of `bytes` (at least 5 MiB) for bodies larger than that.
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(MIN_PART_SIZE);
        self
    }

    /// The SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn full_key(&self, key: &str) -> Result<String> {
        validate_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    /// `bucket/full-key`, for messages.
    fn what(&self, full: &str) -> String {
        format!("{}/{full}", self.bucket)
    }

    async fn put_single(&self, full: &str, body: Bytes, class: StorageClass) -> Result<()> {
        let len = body.len();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(full)
            .storage_class(class.as_str().into())
            .body(ByteStream::from(body))
            .customize()
            .config_override(self.timeouts.upload(len))
            .send()
            .await
            .map_err(|e| map_sdk_error(Op::Put, &self.what(full), e))?;
        Ok(())
    }

    async fn put_multipart(&self, full: &str, body: Bytes, class: StorageClass) -> Result<()> {
        let what = self.what(full);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .storage_class(class.as_str().into())
            .customize()
            .config_override(self.timeouts.small())
            .send()
            .await
            .map_err(|e| map_sdk_error(Op::Multipart, &what, e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| Error::internal(format!("s3 multipart upload {what}: no upload id")))?
            .to_string();
        let result = match self.upload_parts(full, &upload_id, &body).await {
            Ok(parts) => {
                let count = parts.len();
                let sent = self
                    .client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(full)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .customize()
                    .config_override(self.timeouts.small())
                    .send()
                    .await;
                match sent {
                    Ok(_) => Ok(()),
                    // Some servers (moto) answer 200 with a body the SDK cannot parse
                    // (`CompleteMultipartUploadResponse`): trust it only when the object
                    // is there, multipart-made from this many parts, with the right size.
                    Err(e)
                        if e.raw_response().map(|r| r.status().as_u16()) == Some(200)
                            && self.is_multipart_object(full, count, body.len()).await =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(map_sdk_error(Op::Multipart, &what, e)),
                }
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            let aborted = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(&upload_id)
                .customize()
                .config_override(self.timeouts.small())
                .send()
                .await;
            if let Err(e) = aborted {
                tracing::warn!(object = %what, error = %map_sdk_error(Op::Multipart, &what, e),
                    "could not abort a failed multipart upload; a bucket lifecycle rule should clean it up");
            }
        }
        result
    }

    /// Whether `full` exists, has `size` bytes and an ETag of a `parts`-part upload.
    async fn is_multipart_object(&self, full: &str, parts: usize, size: usize) -> bool {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(full)
            .customize()
            .config_override(self.timeouts.small())
            .send()
            .await
        {
            Ok(h) => {
                let suffix = format!("-{parts}");
                h.content_length() == i64::try_from(size).ok()
                    && h.e_tag()
                        .is_some_and(|t| t.trim_matches('"').ends_with(&suffix))
            }
            Err(_) => false,
        }
    }

    async fn upload_parts(
        &self,
        full: &str,
        upload_id: &str,
        body: &Bytes,
    ) -> Result<Vec<CompletedPart>> {
        let what = self.what(full);
        let size = self.part_size;
        let count = body.len().div_ceil(size);
        futures::stream::iter(0..count)
            .map(|i| {
                let part = body.slice(i * size..body.len().min((i + 1) * size));
                let timeouts = self.timeouts.upload(part.len());
                let number = i32::try_from(i + 1).unwrap_or(i32::MAX);
                let what = &what;
                async move {
                    let out = self
                        .client
                        .upload_part()
                        .bucket(&self.bucket)
                        .key(full)
                        .upload_id(upload_id)
                        .part_number(number)
                        .body(ByteStream::from(part))
                        .customize()
                        .config_override(timeouts)
                        .send()
                        .await
                        .map_err(|e| map_sdk_error(Op::Multipart, what, e))?;
                    Ok::<_, Error>(
                        CompletedPart::builder()
                            .part_number(number)
                            .set_e_tag(out.e_tag().map(str::to_string))
                            .build(),
                    )
                }
            })
            .buffered(PART_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn get_object(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        let (out, what) = self.send_get(key, range.as_ref()).await?;
        collect_get(out, key, &what, range).await
    }

    /// Send a GET (ranged when `range` is given); the response and `bucket/full-key`.
    async fn send_get(
        &self,
        key: &str,
        range: Option<&Range<u64>>,
    ) -> Result<(GetObjectOutput, String)> {
        let full = self.full_key(key)?;
        let what = self.what(&full);
        let mut request = self.client.get_object().bucket(&self.bucket).key(&full);
        if let Some(r) = range {
            request = request.range(format!("bytes={}-{}", r.start, r.end - 1));
        }
        let out = request
            .send()
            .await
            .map_err(|e| map_sdk_error(Op::Get, &what, e))?;
        Ok((out, what))
    }
}

/// Read a GET's whole body and cut it to `range`, judging servers that clamp a range
/// running past the end (S3) or ignore the range (sending the whole object).
async fn collect_get(
    out: GetObjectOutput,
    key: &str,
    what: &str,
    range: Option<Range<u64>>,
) -> Result<Bytes> {
    let partial = out.content_range().is_some();
    let body = out.body.collect().await.map_err(|e| {
        Error::unavailable(format!("s3 get {what}: reading the body failed")).with_source(e)
    })?;
    let body = body.into_bytes();
    let Some(r) = range else { return Ok(body) };
    let want = r.end - r.start;
    if partial {
        // S3 clamps a range that runs past the end: strata does not.
        if body.len() as u64 != want {
            return Err(Error::invalid(format!(
                "range {}..{} is past the end of object {key} (got {} bytes)",
                r.start,
                r.end,
                body.len()
            )));
        }
        return Ok(body);
    }
    // The server ignored the range and sent the whole object.
    if r.end > body.len() as u64 {
        return Err(Error::invalid(format!(
            "range {}..{} is past the end of object {key} ({} bytes)",
            r.start,
            r.end,
            body.len()
        )));
    }
    Ok(body.slice(r.start as usize..r.end as usize))
}

/// strata's class for an S3 class name; classes strata does not write count as STANDARD.
fn class_of(name: Option<&str>) -> StorageClass {
    name.and_then(|n| n.parse().ok())
        .unwrap_or(StorageClass::Standard)
}

#[async_trait]
impl ObjectStore for S3ObjectStore {
    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn enforces_archive(&self) -> bool {
        !self.archive_unenforced.load(Ordering::Relaxed)
    }

    async fn put(&self, key: &str, body: Bytes, class: StorageClass) -> Result<()> {
        let full = self.full_key(key)?;
        if body.len() > self.part_size {
            self.put_multipart(&full, body, class).await
        } else {
            self.put_single(&full, body, class).await
        }
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        self.get_object(key, None).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        validate_key(key)?;
        if check_range(key, &range)? {
            return Ok(Bytes::new());
        }
        self.get_object(key, Some(range)).await
    }

    async fn get_range_stream(&self, key: &str, range: Range<u64>) -> Result<ByteChunks> {
        validate_key(key)?;
        let want = range.end.saturating_sub(range.start);
        if check_range(key, &range)? {
            return Ok(futures::stream::empty().boxed());
        }
        let (out, what) = self.send_get(key, Some(&range)).await?;
        let length = out.content_length().and_then(|n| u64::try_from(n).ok());
        if out.content_range().is_none() || length != Some(want) {
            // The server ignored the range or clamped it: judge this response whole.
            let bytes = collect_get(out, key, &what, Some(range)).await?;
            return Ok(futures::stream::once(async move { Ok(bytes) }).boxed());
        }
        // State: the body (None once it failed or ended) and the bytes received so far.
        let pieces = futures::stream::unfold((Some(out.body), 0u64), move |(body, got)| {
            let what = what.clone();
            async move {
                let mut body = body?;
                match body.next().await {
                    Some(Ok(piece)) => {
                        let got = got + piece.len() as u64;
                        Some((Ok(piece), (Some(body), got)))
                    }
                    Some(Err(e)) => {
                        let err =
                            Error::unavailable(format!("s3 get {what}: reading the body failed"));
                        Some((Err(err.with_source(e)), (None, got)))
                    }
                    None if got != want => {
                        let msg = format!("s3 get {what}: body had {got} of {want} bytes");
                        Some((Err(Error::unavailable(msg)), (None, got)))
                    }
                    None => None,
                }
            }
        });
        Ok(pieces.boxed())
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let full = self.full_key(key)?;
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&full)
            .customize()
            .config_override(self.timeouts.small())
            .send()
            .await
            .map_err(|e| map_sdk_error(Op::Head, &self.what(&full), e))?;
        let storage_class = class_of(out.storage_class().map(|c| c.as_str()));
        let restore = if !storage_class.needs_restore() {
            RestoreStatus::NotArchived
        } else if self.archive_unenforced.load(Ordering::Relaxed) {
            RestoreStatus::Restored { expiry_ms: None }
        } else {
            parse_restore_header(out.restore())
        };
        Ok(ObjectMeta {
            key: key.to_string(),
            size: out
                .content_length()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            storage_class,
            restore,
            last_modified_ms: date_ms(out.last_modified()),
        })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let full = self.full_key(key)?;
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full)
            .customize()
            .config_override(self.timeouts.small())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some("NoSuchKey") => Ok(()),
            Err(e) => Err(map_sdk_error(Op::Delete, &self.what(&full), e)),
        }
    }

    async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>> {
        validate_prefix(prefix)?;
        let full_prefix = format!("{}{prefix}", self.prefix);
        let what = self.what(&full_prefix);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        // StartAfter is only sent with the first request: the continuation token
        // carries the position after that.
        let mut start_after = start_after.map(|k| format!("{}{k}", self.prefix));
        while out.len() < limit {
            let want = (limit - out.len()).min(LIST_PAGE);
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full_prefix)
                .set_start_after(start_after.take())
                .max_keys(i32::try_from(want).unwrap_or(i32::MAX))
                .optional_object_attributes(OptionalObjectAttributes::RestoreStatus)
                .set_continuation_token(token.take())
                .customize()
                .config_override(self.timeouts.small())
                .send()
                .await
                .map_err(|e| map_sdk_error(Op::List, &what, e))?;
            for object in page.contents() {
                let Some(key) = object.key().and_then(|k| k.strip_prefix(&self.prefix)) else {
                    continue;
                };
                out.push(listed_meta(key, object));
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => break,
            }
        }
        // S3 returns keys in UTF-8 binary order already; sorting guards servers that
        // do not, and a server that sent more than asked is cut back to the page.
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out.truncate(limit);
        Ok(out)
    }

    async fn copy(&self, from: &str, to: &str, class: StorageClass) -> Result<()> {
        let full_from = self.full_key(from)?;
        let full_to = self.full_key(to)?;
        // Keys are URL-safe by validation, so the copy source needs no encoding.
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(&full_to)
            .copy_source(format!("{}/{full_from}", self.bucket))
            .storage_class(class.as_str().into())
            // REPLACE: some servers refuse an in-place class change with COPY; strata
            // keeps no user metadata on objects.
            .metadata_directive(MetadataDirective::Replace)
            // The server copies before it answers: allow for an object as large as a pack.
            .customize()
            .config_override(self.timeouts.upload(self.part_size))
            .send()
            .await
            .map_err(|e| {
                map_sdk_error(
                    Op::Copy,
                    &format!("{} to {full_to}", self.what(&full_from)),
                    e,
                )
            })?;
        Ok(())
    }

    async fn restore(&self, key: &str, days: u32) -> Result<()> {
        let full = self.full_key(key)?;
        let days = i32::try_from(days)
            .ok()
            .filter(|d| *d > 0)
            .ok_or_else(|| Error::invalid(format!("restore of object {key} for {days} days")))?;
        let job = GlacierJobParameters::builder()
            .tier(Tier::Standard)
            .build()
            .map_err(|e| Error::internal("build restore request").with_source(e))?;
        let request = RestoreRequest::builder()
            .days(days)
            .glacier_job_parameters(job)
            .build();
        let sent = self
            .client
            .restore_object()
            .bucket(&self.bucket)
            .key(&full)
            .restore_request(request)
            .customize()
            .config_override(self.timeouts.small())
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some("RestoreAlreadyInProgress") => Ok(()),
            // No archive semantics on this server: if it serves the object's bytes as it
            // is, there is nothing to restore (docs/objects.md).
            Err(e) if restore_unsupported(&e) && self.get_range(key, 0..1).await.is_ok() => {
                if !self.archive_unenforced.swap(true, Ordering::Relaxed) {
                    tracing::info!(store = %self.describe(),
                        "the server does not implement archive restores and serves archived objects directly; reading them without restores");
                }
                Ok(())
            }
            Err(e) => {
                let err = map_sdk_error(Op::Restore, &self.what(&full), e);
                if err.kind() == ErrorKind::InvalidInput
                    && err.context().contains("InvalidObjectState")
                {
                    Err(err.context_prefix("the object's class needs no restore"))
                } else {
                    Err(err)
                }
            }
        }
    }
}

/// The HTTPS client every S3 connection uses (also for the credential providers that
/// call out: SSO, STS, instance metadata): rustls with the ring provider, trusting the
/// platform's root certificates.
fn https_client() -> aws_sdk_s3::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// What a ListObjectsV2 entry says about an object (`key` without the store's prefix).
fn listed_meta(key: &str, object: &aws_sdk_s3::types::Object) -> ObjectMeta {
    let storage_class = class_of(object.storage_class().map(|c| c.as_str()));
    let restore = match (storage_class.needs_restore(), object.restore_status()) {
        (false, _) => RestoreStatus::NotArchived,
        (true, Some(s)) if s.is_restore_in_progress() == Some(true) => RestoreStatus::InProgress,
        (true, Some(s)) if s.restore_expiry_date().is_some() => RestoreStatus::Restored {
            expiry_ms: date_ms(s.restore_expiry_date()),
        },
        (true, _) => RestoreStatus::Archived,
    };
    ObjectMeta {
        key: key.to_string(),
        size: object
            .size()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0),
        storage_class,
        restore,
        last_modified_ms: date_ms(object.last_modified()),
    }
}
