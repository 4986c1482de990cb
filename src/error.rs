//! The one public error type: a small [`ErrorKind`] plus context and an optional source.
//!
//! Internal errors (RocksDB, PostgreSQL, I/O, parsing) convert into [`Error`] at module
//! boundaries, choosing the kind that tells a caller what to do next: retry
//! (`Unavailable`), fix the request (`InvalidInput`), give up on this copy (`Corrupt`), …

use std::fmt;

/// What went wrong, in the few categories a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The blob, chunk or object does not exist.
    NotFound,
    /// The request itself is malformed: a bad id, an out-of-range read, a bad setting.
    InvalidInput,
    /// Stored bytes do not hash to their id and no healthy copy exists.
    Corrupt,
    /// A backend could not be reached or timed out; retrying later may succeed.
    Unavailable,
    /// The data is in an archive storage class and a restore is under way.
    RestorePending,
    /// The store has been closed.
    Closed,
    /// Background work lost its lease (it was paused past it and another node took the
    /// work over); its commit was refused and nothing was written.
    Fenced,
    /// A bug or an unexpected state inside strata.
    Internal,
}

impl ErrorKind {
    /// Lower-case name used in messages and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::RestorePending => "restore pending",
            ErrorKind::Closed => "closed",
            ErrorKind::Fenced => "fenced",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// strata's error: a kind, a human-readable context, and the underlying cause if any.
pub struct Error {
    kind: ErrorKind,
    context: String,
    source: Option<Source>,
}

/// Result alias used throughout strata.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` described by `context`.
    pub fn new(kind: ErrorKind, context: impl Into<String>) -> Self {
        Error {
            kind,
            context: context.into(),
            source: None,
        }
    }

    /// Attach the underlying cause.
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(context: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, context)
    }

    /// Shorthand for [`ErrorKind::InvalidInput`].
    pub fn invalid(context: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, context)
    }

    /// Shorthand for [`ErrorKind::Corrupt`].
    pub fn corrupt(context: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, context)
    }

    /// Shorthand for [`ErrorKind::Unavailable`].
    pub fn unavailable(context: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, context)
    }

    /// Shorthand for [`ErrorKind::Internal`].
    pub fn internal(context: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, context)
    }

    /// Shorthand for [`ErrorKind::Fenced`].
    pub fn fenced(context: impl Into<String>) -> Self {
        Self::new(ErrorKind::Fenced, context)
    }

    /// Shorthand for [`ErrorKind::Closed`].
    pub fn closed() -> Self {
        Self::new(ErrorKind::Closed, "the store is closed")
    }

    /// The category of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable context, without the source chain.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// The same error under another kind, for a caller that knows better what it means
    /// (an I/O error about a path the user named is theirs to fix).
    pub(crate) fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// Prefix more context, keeping kind and source.
    pub fn context_prefix(mut self, prefix: impl fmt::Display) -> Self {
        self.context = format!("{prefix}: {}", self.context);
        self
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?}, {:?}", self.kind, self.context)?;
        if let Some(s) = &self.source {
            write!(f, ", source: {s:?}")?;
        }
        f.write_str(")")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.context)?;
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|s| s.as_ref() as _)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        // The errno first: a quota is as full as a disk for the writer, and errors built
        // from an errno by other libraries may not carry the newer kinds.
        #[cfg(unix)]
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => return Error::disk_full(e),
            Some(libc::EACCES) | Some(libc::EPERM) => {
                return Error::invalid("permission denied").with_source(e)
            }
            Some(libc::EROFS) => return Error::invalid("read-only filesystem").with_source(e),
            _ => {}
        }
        let kind = match e.kind() {
            K::NotFound => ErrorKind::NotFound,
            K::PermissionDenied => return Error::invalid("permission denied").with_source(e),
            K::ReadOnlyFilesystem => return Error::invalid("read-only filesystem").with_source(e),
            K::StorageFull | K::QuotaExceeded => return Error::disk_full(e),
            K::InvalidInput | K::InvalidData | K::UnexpectedEof => ErrorKind::InvalidInput,
            K::TimedOut
            | K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::Interrupted
            | K::WouldBlock
            | K::BrokenPipe => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        };
        Error::new(kind, "i/o").with_source(e)
    }
}

impl Error {
    /// A write that found no space: `Unavailable`, since freeing space (gc, deleting
    /// blobs, a bigger disk) and retrying can succeed.
    fn disk_full(source: impl Into<Source>) -> Self {
        Error::unavailable("disk full: no space left on device").with_source(source)
    }
}

impl From<rocksdb::Error> for Error {
    fn from(e: rocksdb::Error) -> Self {
        use rocksdb::ErrorKind as K;
        let kind = match e.kind() {
            K::Corruption => ErrorKind::Corrupt,
            K::Busy | K::TimedOut | K::TryAgain | K::Incomplete => ErrorKind::Unavailable,
            K::InvalidArgument | K::NotSupported => ErrorKind::InvalidInput,
            K::NotFound => ErrorKind::NotFound,
            _ => ErrorKind::Internal,
        };
        Error::new(kind, "rocksdb").with_source(e)
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::internal("background task failed").with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_includes_kind_context_and_source() {
        let e = Error::not_found("blob abc").with_source(std::io::Error::other("disk"));
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.to_string(), "not found: blob abc: disk");
        let e = e.context_prefix("get");
        assert_eq!(e.context(), "get: blob abc");
    }

    #[test]
    fn io_errors_map_to_kinds() {
        let e: Error = std::io::Error::from(std::io::ErrorKind::NotFound).into();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let e: Error = std::io::Error::from(std::io::ErrorKind::TimedOut).into();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
    }

    #[test]
    fn permission_and_full_disk_are_named() {
        for errno in [libc::EACCES, libc::EPERM] {
            let e: Error = std::io::Error::from_raw_os_error(errno).into();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert_eq!(e.context(), "permission denied");
        }
        let e: Error = std::io::Error::from(std::io::ErrorKind::PermissionDenied).into();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        for e in [
            std::io::Error::from_raw_os_error(libc::ENOSPC),
            std::io::Error::from_raw_os_error(libc::EDQUOT),
            std::io::Error::from(std::io::ErrorKind::StorageFull),
        ] {
            let e = Error::from(e).context_prefix("writing out");
            assert_eq!(e.kind(), ErrorKind::Unavailable);
            assert_eq!(
                e.context(),
                "writing out: disk full: no space left on device"
            );
        }
        let e: Error = std::io::Error::from_raw_os_error(libc::EROFS).into();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
}
