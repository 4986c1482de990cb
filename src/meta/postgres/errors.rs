//! Mapping PostgreSQL and pool errors to strata's [`ErrorKind`]s, and the retry rule for
//! transactions (see docs/metadata.md, "Error kinds").

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

use crate::error::{Error, ErrorKind};

/// The kind a caller should see for a PostgreSQL error.
///
/// - connection trouble (SQLSTATE class 08, I/O errors, "connection closed", connect
///   timeouts), server shutdown or start-up (57P01, 57P02, 57P03), cancellations and
///   statement timeouts (57014), lack of resources (class 53, e.g. too many
///   connections), lock timeouts (55P03), a read-only standby (25006) and
///   serialization failures or deadlocks that outlived the retries (40001, 40P01):
///   `Unavailable`, because retrying later can succeed;
/// - bad credentials or a missing database (class 28, 3D000): `InvalidInput`, because
///   only a settings change helps;
/// - everything else (constraint violations, syntax errors, type mismatches): `Internal`.
pub(crate) fn classify(e: &tokio_postgres::Error) -> ErrorKind {
    if let Some(code) = e.code() {
        let c = code.code();
        return if c.starts_with("08")
            || c.starts_with("53")
            || c.starts_with("57P")
            || c == "57014"
            || c == "55P03"
            || c == "25006"
            || is_retry_code(code)
        {
            ErrorKind::Unavailable
        } else if c.starts_with("28") || c == "3D000" {
            ErrorKind::InvalidInput
        } else {
            ErrorKind::Internal
        };
    }
    if e.is_closed() {
        return ErrorKind::Unavailable;
    }
    // Errors without a SQLSTATE: the client library's own. Their kinds are private, so
    // tell them apart by cause and by message.
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return ErrorKind::Unavailable;
        }
        source = s.source();
    }
    let msg = e.to_string();
    const TRANSIENT: [&str; 4] = [
        "error connecting to server",
        "error communicating with the server",
        "timeout waiting for server",
        "connection closed",
    ];
    if TRANSIENT.iter().any(|p| msg.starts_with(p)) {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Internal
    }
}

/// Serialization failure or deadlock: the transaction may simply be run again.
fn is_retry_code(code: &SqlState) -> bool {
    *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
}

/// Whether a strata error came from a PostgreSQL serialization failure or deadlock.
pub(crate) fn is_retryable(e: &Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<PgError>())
        .and_then(|pg| pg.0.code())
        .is_some_and(is_retry_code)
}

/// A PostgreSQL error as the source of a strata error. tokio-postgres shows a server
/// error as just "db error"; this shows its SQLSTATE and the server's message, detail
/// and hint, or, for the client's own errors, the chain of causes. None of these
/// contains the connection password: the server never echoes it, and the URL is never
/// part of them (a URL that does not parse is reported without it, see `connect`).
#[derive(Debug)]
pub(crate) struct PgError(pub(crate) tokio_postgres::Error);

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(db) = self.0.as_db_error() {
            write!(f, "SQLSTATE {}: {}", db.code().code(), db.message())?;
            if let Some(detail) = db.detail() {
                write!(f, " (detail: {detail})")?;
            }
            if let Some(hint) = db.hint() {
                write!(f, " (hint: {hint})")?;
            }
            return Ok(());
        }
        write!(f, "{}", self.0)?;
        let mut source = std::error::Error::source(&self.0);
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

impl std::error::Error for PgError {}

/// Wrap a PostgreSQL error: `what` names the operation, `target` the (password-free)
/// server description. The message ends with the server's SQLSTATE and text.
pub(crate) fn db_error(e: tokio_postgres::Error, target: &str, what: &str) -> Error {
    let kind = classify(&e);
    let hint = match kind {
        ErrorKind::Unavailable => " (database unreachable or restarting; retry later)",
        ErrorKind::InvalidInput => " (check the connection settings)",
        _ => "",
    };
    Error::new(kind, format!("postgres {target}: {what}{hint}")).with_source(PgError(e))
}

/// Wrap an error from taking a pooled connection.
pub(crate) fn pool_error(e: PoolError, target: &str) -> Error {
    match e {
        PoolError::Timeout(t) => Error::unavailable(format!(
            "postgres {target}: timed out getting a connection ({})",
            match t {
                deadpool_postgres::TimeoutType::Wait => "all pooled connections busy",
                deadpool_postgres::TimeoutType::Create => "connecting",
                deadpool_postgres::TimeoutType::Recycle => "checking an idle connection",
            }
        )),
        PoolError::Backend(e) => db_error(e, target, "connect"),
        PoolError::Closed => Error::closed(),
        PoolError::NoRuntimeSpecified => {
            Error::internal(format!("postgres {target}: connection pool has no runtime"))
        }
        PoolError::PostCreateHook(e) => {
            Error::internal(format!("postgres {target}: connection set-up failed: {e}"))
        }
    }
}

/// An integer or id read from the database that strata cannot represent.
pub(crate) fn bad_value(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::internal(format!(
        "postgres: unexpected {what} in the database: {detail}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_timeouts_are_unavailable() {
        let e = pool_error(
            PoolError::Timeout(deadpool_postgres::TimeoutType::Create),
            "x",
        );
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert_eq!(pool_error(PoolError::Closed, "x").kind(), ErrorKind::Closed);
    }
}
