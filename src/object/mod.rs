//! Object stores for the warm and cold tiers (DESIGN §5).
//!
//! [`ObjectStore`] is the small interface the tier code needs from a bucket: whole and
//! ranged reads, writes with a storage class, server-side copies that change the class,
//! and the restore dance of archive classes. Two implementations:
//!
//! * [`LocalObjectStore`]: a directory (the embedded default). Atomic writes, storage
//!   classes and restores emulated in a JSON sidecar per object, restore delay measured on
//!   the injected [`Clock`](crate::clock::Clock) so tests move time instead of sleeping.
//! * [`S3ObjectStore`]: any S3 endpoint through aws-sdk-s3.
//!
//! [`FaultyObjectStore`] wraps either to count requests and inject outages in tests;
//! [`MeteredObjectStore`] counts requests for the metrics `strata serve` exports.
//! See `docs/objects.md` for the error mapping and the on-disk format.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod faulty;
mod local;
mod metered;
mod s3;
mod s3_errors;
mod s3_timeouts;

pub use faulty::FaultyObjectStore;
pub use local::LocalObjectStore;
pub use metered::MeteredObjectStore;
pub use s3::S3ObjectStore;

/// Longest key accepted, in bytes (S3's own limit is 1024).
pub const MAX_KEY_LEN: usize = 1024;
/// Objects per page of the default [`ObjectStore::list`] (S3's own page size).
pub const LIST_PAGE: usize = 1000;
/// Longest `/`-separated key segment accepted, in bytes (a file name in the local store).
pub const MAX_SEGMENT_LEN: usize = 200;

/// The S3 storage classes strata writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum StorageClass {
    /// `STANDARD`: the warm tier.
    #[default]
    #[serde(rename = "STANDARD")]
    Standard,
    /// `GLACIER` (Glacier Flexible Retrieval): must be restored before reading.
    #[serde(rename = "GLACIER")]
    Glacier,
    /// `DEEP_ARCHIVE`: must be restored before reading; slowest and cheapest.
    #[serde(rename = "DEEP_ARCHIVE")]
    DeepArchive,
    /// `GLACIER_IR` (Glacier Instant Retrieval): archive pricing, readable directly.
    #[serde(rename = "GLACIER_IR")]
    GlacierIr,
    /// `STANDARD_IA` (Standard-Infrequent Access): cheaper storage with a 30-day
    /// minimum, readable directly.
    #[serde(rename = "STANDARD_IA")]
    StandardIa,
}

impl StorageClass {
    /// Every class, in declaration order.
    pub const ALL: [StorageClass; 5] = [
        StorageClass::Standard,
        StorageClass::Glacier,
        StorageClass::DeepArchive,
        StorageClass::GlacierIr,
        StorageClass::StandardIa,
    ];

    /// The AWS name: `STANDARD`, `GLACIER`, `DEEP_ARCHIVE`, `GLACIER_IR` or
    /// `STANDARD_IA`.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageClass::Standard => "STANDARD",
            StorageClass::Glacier => "GLACIER",
            StorageClass::DeepArchive => "DEEP_ARCHIVE",
            StorageClass::GlacierIr => "GLACIER_IR",
            StorageClass::StandardIa => "STANDARD_IA",
        }
    }

    /// True for the classes priced for data kept long and read rarely (`GLACIER`,
    /// `DEEP_ARCHIVE`, `GLACIER_IR`, `STANDARD_IA`): what the cold tier must use for
    /// the archive worker to have anything to do (`policy.warm_idle_secs`).
    pub fn is_archive(self) -> bool {
        !matches!(self, StorageClass::Standard)
    }

    /// True for the classes whose objects must be restored before they can be read
    /// (`GLACIER`, `DEEP_ARCHIVE`); false for `STANDARD`, `GLACIER_IR` and `STANDARD_IA`.
    pub fn needs_restore(self) -> bool {
        matches!(self, StorageClass::Glacier | StorageClass::DeepArchive)
    }

    /// The minimum storage duration of the class in days: an object deleted or
    /// overwritten earlier is billed as if kept this long (docs/tiers.md has the table).
    pub fn min_storage_days(self) -> u64 {
        match self {
            StorageClass::Standard => 0,
            StorageClass::StandardIa => 30,
            StorageClass::GlacierIr | StorageClass::Glacier => 90,
            StorageClass::DeepArchive => 180,
        }
    }
}

impl fmt::Display for StorageClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StorageClass {
    type Err = Error;

    /// Parses the AWS names, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self> {
        StorageClass::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown storage class {s:?} (expected STANDARD, STANDARD_IA, GLACIER_IR, GLACIER or DEEP_ARCHIVE)"
                ))
            })
    }
}

/// Where an object stands with respect to archive restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RestoreStatus {
    /// The object's class is readable directly (`STANDARD`, `GLACIER_IR`).
    NotArchived,
    /// Archived and not readable: no restore was requested, or the restored copy expired.
    Archived,
    /// A restore was requested and has not completed yet.
    InProgress,
    /// A restored copy is readable until `expiry_ms` (ms since the Unix epoch), when known.
    Restored {
        /// When the restored copy expires, if the backend says.
        expiry_ms: Option<u64>,
    },
}

impl RestoreStatus {
    /// True when the object's bytes can be read now.
    pub fn is_readable(&self) -> bool {
        matches!(
            self,
            RestoreStatus::NotArchived | RestoreStatus::Restored { .. }
        )
    }
}

/// What [`ObjectStore::head`] and [`ObjectStore::list`] report about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The key, as passed to the store (without any backend prefix).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Storage class. Classes strata does not write (e.g. `INTELLIGENT_TIERING`) show
    /// as [`StorageClass::Standard`].
    pub storage_class: StorageClass,
    /// Restore state. In [`ObjectStore::list`] results of S3 stores this is what the
    /// listing says; a server that omits restore details reports archived objects as
    /// [`RestoreStatus::Archived`]: ask [`ObjectStore::restore_status`] to be sure.
    pub restore: RestoreStatus,
    /// When the object was last written (ms since the Unix epoch), if known. The local
    /// store measures it on its injected clock.
    pub last_modified_ms: Option<u64>,
}

/// The body of a streamed read: pieces in order.
pub type ByteChunks = BoxStream<'static, Result<Bytes>>;

/// A bucket of immutable objects with storage classes, as the warm and cold tiers use it.
///
/// Keys must pass [`validate_key`]. Errors use [`ErrorKind`](crate::ErrorKind):
/// `NotFound` for a missing key, `RestorePending` for reading an archived object that is
/// not restored, `InvalidInput` for bad keys, out-of-range reads and refused credentials,
/// `Unavailable` for anything a retry may fix (throttling, 5xx, timeouts, refused
/// connections).
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// A short description for logs (`local:/path`, `s3://bucket/prefix`).
    fn describe(&self) -> String;

    /// Write `body` under `key` in `class`, replacing any object there. Atomic: readers
    /// see the old object or the new one, never a part.
    async fn put(&self, key: &str, body: Bytes, class: StorageClass) -> Result<()>;

    /// The whole object.
    async fn get(&self, key: &str) -> Result<Bytes>;

    /// Bytes `range` of the object. An empty range returns no bytes without a request
    /// (and without checking that the object exists). A range that does not lie within
    /// the object (`range.end > size`, or `start > end`) is `InvalidInput`; it is never
    /// clamped.
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes>;

    /// Bytes `range` of the object as pieces in order, so a reader can work on the first
    /// bytes while the rest arrive. Errors before the first byte are returned as
    /// [`get_range`](Self::get_range) returns them; a body cut short arrives in the
    /// stream as `Unavailable`. The default is one piece from `get_range`, which keeps
    /// wrappers (fault injection, request counting) correct without overriding this.
    async fn get_range_stream(&self, key: &str, range: Range<u64>) -> Result<ByteChunks> {
        let bytes = self.get_range(key, range).await?;
        Ok(futures::stream::once(async move { Ok(bytes) }).boxed())
    }

    /// Size, class and restore state.
    async fn head(&self, key: &str) -> Result<ObjectMeta>;

    /// Remove the object. Removing a missing key succeeds.
    async fn delete(&self, key: &str) -> Result<()>;

    /// One page of a listing: up to `limit` objects whose key starts with `prefix` (a
    /// plain string prefix, may be empty) and sorts after `start_after` (from the first
    /// key when `None`), sorted by key. A page shorter than `limit` is the last one; the
    /// next page starts after the last key of this one. Memory and requests grow with
    /// `limit`, not with the bucket.
    async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>>;

    /// Every object whose key starts with `prefix`, sorted by key, however many there
    /// are: [`list_page`](Self::list_page) until the last page. For tests and small
    /// prefixes; code that walks a whole bucket pages itself so that its memory stays
    /// bounded.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let mut out: Vec<ObjectMeta> = Vec::new();
        loop {
            let after = out.last().map(|m| m.key.clone());
            let page = self.list_page(prefix, after.as_deref(), LIST_PAGE).await?;
            let last = page.len() < LIST_PAGE;
            out.extend(page);
            if last {
                return Ok(out);
            }
        }
    }

    /// Server-side copy of `from` to `to` in `class`. `from == to` with another class
    /// changes the class in place (how warm packs go cold); the same class onto itself
    /// changes nothing. Copying an archived, unrestored object is `RestorePending`. The
    /// copy starts with no restore state.
    async fn copy(&self, from: &str, to: &str, class: StorageClass) -> Result<()>;

    /// Ask for an archived object to be made readable for `days` days. Asking again while
    /// a restore is in progress succeeds and changes nothing; asking when a restored copy
    /// exists extends it. An object in a class that needs no restore is `InvalidInput`.
    async fn restore(&self, key: &str, days: u32) -> Result<()>;

    /// The restore state alone (one `head`).
    async fn restore_status(&self, key: &str) -> Result<RestoreStatus> {
        Ok(self.head(key).await?.restore)
    }

    /// Whether reading an object in an archive class needs a restore here. True unless
    /// the store learned otherwise: an S3 server that refused a RestoreObject as
    /// unsupported and then served the object's bytes (SeaweedFS) keeps storage
    /// classes as labels only.
    fn enforces_archive(&self) -> bool {
        true
    }
}

/// Check an object key: 1 to [`MAX_KEY_LEN`] bytes of ASCII letters, digits and
/// `-_./=`, `/`-separated segments that are non-empty, at most [`MAX_SEGMENT_LEN`] bytes
/// and do not start with `.` (so no `.`/`..` segments, no hidden files, no leading or
/// trailing `/`). Anything else is `InvalidInput`.
pub fn validate_key(key: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::invalid(format!(
            "bad object key {:?}: {why}",
            short(key)
        )))
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > MAX_KEY_LEN {
        return bad("longer than 1024 bytes");
    }
    if let Some(c) = key.chars().find(|&c| !key_char(c)) {
        return bad(&format!(
            "character {c:?} not allowed (use ASCII letters, digits, -_./=)"
        ));
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return bad("empty segment (leading, trailing or doubled '/')");
        }
        if segment.starts_with('.') {
            return bad("a segment starts with '.'");
        }
        if segment.len() > MAX_SEGMENT_LEN {
            return bad("a segment is longer than 200 bytes");
        }
    }
    Ok(())
}

/// Check a listing prefix: empty, or the characters of [`validate_key`] without a
/// leading `/` and without a segment starting with `.` (a trailing `/` is fine).
pub fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    validate_key(trimmed)
        .map_err(|_| Error::invalid(format!("bad object key prefix {:?}", short(prefix))))
}

fn key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '=')
}

/// At most 80 characters of `s`, for error messages.
fn short(s: &str) -> String {
    if s.len() <= 80 {
        s.to_string()
    } else {
        let cut = (0..=80).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
        format!("{}…", &s[..cut])
    }
}

/// Check a read range: `start <= end`. Returns true when it is empty.
fn check_range(key: &str, range: &Range<u64>) -> Result<bool> {
    if range.start > range.end {
        return Err(Error::invalid(format!(
            "bad range {}..{} of object {key}: start after end",
            range.start, range.end
        )));
    }
    Ok(range.start == range.end)
}

/// Milliseconds in a day, for restore expiry.
const DAY_MS: u64 = 86_400_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn storage_class_names_round_trip() {
        for c in StorageClass::ALL {
            assert_eq!(c.as_str().parse::<StorageClass>().unwrap(), c);
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert_eq!(serde_json::from_str::<StorageClass>(&json).unwrap(), c);
        }
        assert_eq!(
            "glacier_ir".parse::<StorageClass>().unwrap(),
            StorageClass::GlacierIr
        );
        assert_eq!(
            "COLD".parse::<StorageClass>().unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert!(StorageClass::Glacier.needs_restore());
        assert!(StorageClass::DeepArchive.needs_restore());
        assert!(!StorageClass::GlacierIr.needs_restore());
        assert!(!StorageClass::Standard.needs_restore());
    }

    #[test]
    fn keys_are_validated() {
        for ok in ["a", "packs/0123abcd", "a/b/c.pack", "x=1/y-2_z.3"] {
            validate_key(ok).unwrap();
        }
        let long = "a".repeat(201);
        let too_long = ["b"; 600].join("/");
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "..",
            "a/../b",
            "./a",
            "a/.hidden",
            "a b",
            "a\\b",
            "ä",
            "a\nb",
            "a?b",
            "a+b",
            "%2e%2e",
            &long,
            &too_long,
        ] {
            let e = validate_key(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}");
        }
        validate_prefix("").unwrap();
        validate_prefix("packs/").unwrap();
        validate_prefix("pa").unwrap();
        assert!(validate_prefix("/packs").is_err());
        assert!(validate_prefix("../").is_err());
    }

    #[test]
    fn restore_status_serde() {
        let s = RestoreStatus::Restored { expiry_ms: Some(5) };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"state":"restored","expiry_ms":5}"#);
        assert_eq!(serde_json::from_str::<RestoreStatus>(&json).unwrap(), s);
        assert!(s.is_readable());
        assert!(!RestoreStatus::InProgress.is_readable());
    }
}
