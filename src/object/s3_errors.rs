//! How aws-sdk-s3 errors become strata [`Error`]s, and the `x-amz-restore` header.
//!
//! Messages name the operation, bucket and key, the S3 error code and HTTP status; they
//! never contain credentials (the SDK's errors do not carry them either).

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};

use super::RestoreStatus;
use crate::error::{Error, ErrorKind};

/// Which S3 operation failed: some codes mean different things for different operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Put,
    Get,
    Head,
    Delete,
    List,
    Copy,
    Restore,
    Multipart,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
            Op::Head => "head",
            Op::Delete => "delete",
            Op::List => "list",
            Op::Copy => "copy",
            Op::Restore => "restore",
            Op::Multipart => "multipart upload",
        }
    }
}

/// Map an SDK error of operation `op` on `what` (`bucket/key`) to an [`Error`].
pub(crate) fn map_sdk_error<E>(op: Op, what: &str, err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let ctx = format!("s3 {} {what}", op.as_str());
    let (kind, detail) = match &err {
        SdkError::TimeoutError(_) => (ErrorKind::Unavailable, "timed out".to_string()),
        // Before the I/O arm: rustls reports a refused certificate as an I/O error, but
        // no retry fixes it.
        SdkError::DispatchFailure(_) if tls_certificate_refused(&err) => (
            ErrorKind::InvalidInput,
            "the endpoint's TLS certificate was not accepted (check the endpoint URL, and \
             that its certificate chains to a root certificate this system trusts)"
                .to_string(),
        ),
        SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout() => (
            ErrorKind::Unavailable,
            "could not reach the endpoint".to_string(),
        ),
        SdkError::DispatchFailure(d) if d.is_user() => (
            ErrorKind::InvalidInput,
            "the request could not be sent (check the endpoint)".into(),
        ),
        SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_) => {
            let text = DisplayErrorContext(&err).to_string().to_ascii_lowercase();
            if text.contains("credential") || text.contains("identity") {
                (
                    ErrorKind::InvalidInput,
                    "no usable AWS credentials (check credentials: AWS_ACCESS_KEY_ID / \
                     AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance role)"
                        .to_string(),
                )
            } else if matches!(err, SdkError::DispatchFailure(_)) {
                (
                    ErrorKind::Unavailable,
                    "the request could not be sent".to_string(),
                )
            } else {
                (
                    ErrorKind::Internal,
                    "the request could not be built".to_string(),
                )
            }
        }
        SdkError::ResponseError(r) => {
            let status = r.raw().status().as_u16();
            (
                status_kind(status),
                format!("unreadable response (HTTP {status})"),
            )
        }
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("");
            let kind = service_kind(op, code, status);
            let code = if code.is_empty() {
                "no error code"
            } else {
                code
            };
            let hint = match kind {
                ErrorKind::InvalidInput if is_auth(code, status) => {
                    ": access denied (check credentials and the bucket's permissions)"
                }
                ErrorKind::InvalidInput if status == 405 || status == 501 => {
                    ": the server does not support this operation"
                }
                _ => "",
            };
            (kind, format!("{code} (HTTP {status}){hint}"))
        }
        _ => (ErrorKind::Internal, "unexpected SDK error".to_string()),
    };
    Error::new(kind, format!("{ctx}: {detail}")).with_source(err)
}

fn is_auth(code: &str, status: u16) -> bool {
    matches!(
        code,
        "AccessDenied"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "InvalidToken"
            | "ExpiredToken"
            | "TokenRefreshRequired"
            | "AllAccessDisabled"
            | "AuthorizationHeaderMalformed"
    ) || ((status == 401 || status == 403) && !archived(code))
}

/// Codes S3 uses for "the object is archived and not restored".
fn archived(code: &str) -> bool {
    matches!(code, "InvalidObjectState" | "ObjectNotInActiveTierError")
}

fn service_kind(op: Op, code: &str, status: u16) -> ErrorKind {
    match code {
        "InvalidObjectState" if op == Op::Restore => ErrorKind::InvalidInput,
        // Reading (GET) or copying (CopyObject's own code) an archived, unrestored object.
        "InvalidObjectState" | "ObjectNotInActiveTierError" => ErrorKind::RestorePending,
        "NoSuchKey" | "NotFound" => ErrorKind::NotFound,
        // A missing bucket is a configuration problem, not a missing object.
        "NoSuchBucket" => ErrorKind::InvalidInput,
        "InvalidRange" => ErrorKind::InvalidInput,
        "SlowDown"
        | "Throttling"
        | "ThrottlingException"
        | "RequestTimeout"
        | "InternalError"
        | "ServiceUnavailable"
        | "RequestTimeTooSkewed" => ErrorKind::Unavailable,
        _ if is_auth(code, status) => ErrorKind::InvalidInput,
        _ => status_kind(status),
    }
}

fn status_kind(status: u16) -> ErrorKind {
    match status {
        404 => ErrorKind::NotFound,
        416 => ErrorKind::InvalidInput,
        408 | 429 | 500..=599 => ErrorKind::Unavailable,
        400..=499 => ErrorKind::InvalidInput,
        _ => ErrorKind::Internal,
    }
}

/// The S3 error code of `err`, if it is a service error.
pub(crate) fn error_code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    match err {
        SdkError::ServiceError(se) => se.err().code(),
        _ => None,
    }
}

/// Whether a RestoreObject failed because the server does not implement it (SeaweedFS
/// answers `MethodNotAllowed`, HTTP 405; others `NotImplemented`, 501). Such a server
/// keeps the storage class as a label and does not enforce archive reads.
pub(crate) fn restore_unsupported<E: ProvideErrorMetadata>(
    err: &SdkError<E, HttpResponse>,
) -> bool {
    match err {
        SdkError::ServiceError(se) => {
            unsupported(se.err().code().unwrap_or(""), se.raw().status().as_u16())
        }
        _ => false,
    }
}

fn unsupported(code: &str, status: u16) -> bool {
    matches!(code, "MethodNotAllowed" | "NotImplemented") || status == 405 || status == 501
}

/// Parse `x-amz-restore` for an object in an archive class: absent → `Archived`,
/// `ongoing-request="true"` → `InProgress`, `ongoing-request="false", expiry-date="…"` →
/// `Restored` (expiry in ms when the date parses).
pub(crate) fn parse_restore_header(header: Option<&str>) -> RestoreStatus {
    let Some(h) = header else {
        return RestoreStatus::Archived;
    };
    let lower = h.to_ascii_lowercase();
    if lower.contains("ongoing-request=\"true\"") {
        return RestoreStatus::InProgress;
    }
    if !lower.contains("ongoing-request=\"false\"") {
        return RestoreStatus::Archived;
    }
    let expiry_ms = quoted_value(h, "expiry-date").and_then(|d| {
        let dt = DateTime::from_str(d, DateTimeFormat::HttpDate).ok()?;
        u64::try_from(dt.to_millis().ok()?).ok()
    });
    RestoreStatus::Restored { expiry_ms }
}

/// The value of `name="value"` in a header, matching the name without case.
fn quoted_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    let start = header.to_ascii_lowercase().find(&format!("{name}=\""))? + name.len() + 2;
    let rest = &header[start..];
    Some(&rest[..rest.find('"')?])
}

/// Milliseconds since the epoch of an SDK date, if representable.
pub(crate) fn date_ms(dt: Option<&DateTime>) -> Option<u64> {
    dt.and_then(|d| d.to_millis().ok())
        .and_then(|ms| u64::try_from(ms).ok())
}

/// Whether a request failed because TLS refused the server's certificate (rustls says
/// "invalid peer certificate: …" somewhere in the error's chain of sources).
fn tls_certificate_refused<E>(err: &SdkError<E, HttpResponse>) -> bool
where
    E: std::error::Error + 'static,
{
    DisplayErrorContext(err)
        .to_string()
        .contains("invalid peer certificate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_header() {
        assert_eq!(parse_restore_header(None), RestoreStatus::Archived);
        assert_eq!(
            parse_restore_header(Some("ongoing-request=\"true\"")),
            RestoreStatus::InProgress
        );
        assert_eq!(
            parse_restore_header(Some(
                "ongoing-request=\"false\", expiry-date=\"Fri, 21 Dec 2012 00:00:00 GMT\""
            )),
            RestoreStatus::Restored {
                expiry_ms: Some(1_356_048_000_000)
            }
        );
        assert_eq!(
            parse_restore_header(Some("ongoing-request=\"false\", expiry-date=\"soon\"")),
            RestoreStatus::Restored { expiry_ms: None }
        );
    }

    #[test]
    fn codes_map_to_kinds() {
        assert_eq!(
            service_kind(Op::Get, "InvalidObjectState", 403),
            ErrorKind::RestorePending
        );
        assert_eq!(
            service_kind(Op::Restore, "InvalidObjectState", 403),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            service_kind(Op::Copy, "ObjectNotInActiveTierError", 403),
            ErrorKind::RestorePending
        );
        assert_eq!(service_kind(Op::Get, "NoSuchKey", 404), ErrorKind::NotFound);
        assert_eq!(service_kind(Op::Head, "", 404), ErrorKind::NotFound);
        assert_eq!(
            service_kind(Op::Get, "InvalidRange", 416),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            service_kind(Op::Put, "SlowDown", 503),
            ErrorKind::Unavailable
        );
        assert_eq!(service_kind(Op::Put, "", 502), ErrorKind::Unavailable);
        assert_eq!(
            service_kind(Op::Put, "AccessDenied", 403),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            service_kind(Op::Get, "SignatureDoesNotMatch", 403),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            service_kind(Op::Restore, "MethodNotAllowed", 405),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn unsupported_restore_is_told_by_code_or_status() {
        assert!(unsupported("MethodNotAllowed", 405));
        assert!(unsupported("NotImplemented", 501));
        assert!(unsupported("", 405));
        assert!(!unsupported("InvalidObjectState", 403));
        assert!(!unsupported("AccessDenied", 403));
        assert!(!unsupported("", 500));
    }
}
