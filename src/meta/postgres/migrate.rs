//! Versioned schema migrations, embedded in the binary (docs/metadata.md, "Migrations").
//!
//! Version `n` is the SQL of `src/meta/migrations/000n_*.sql`. The database records the
//! versions applied in `strata_schema_version`. Applying runs in one transaction that
//! first takes a transaction-scoped advisory lock, so two processes connecting at once
//! apply each migration exactly once (the second waits, then finds nothing to do), and a
//! failed migration leaves nothing behind. A database at a version newer than this
//! binary knows is refused rather than misread.

use deadpool_postgres::Client;

use super::errors::{db_error, PgError};
use super::rows::col;
use crate::error::{Error, Result};

/// One schema migration.
pub(crate) struct Migration {
    /// Version reached after applying it (1, 2, …, without gaps).
    pub version: u32,
    /// Short description, recorded in `strata_schema_version`.
    pub name: &'static str,
    /// SQL run with the simple-query protocol (several statements allowed).
    pub sql: &'static str,
}

/// All migrations, in order.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "gc queue cursor",
        sql: include_str!("../migrations/0002_gc_queue_cursor.sql"),
    },
    Migration {
        version: 3,
        name: "store identity",
        sql: include_str!("../migrations/0003_store_identity.sql"),
    },
    Migration {
        version: 4,
        name: "tiering engine",
        sql: include_str!("../migrations/0004_tiering_engine.sql"),
    },
    Migration {
        version: 5,
        name: "pack live bytes",
        sql: include_str!("../migrations/0005_pack_live_bytes.sql"),
    },
];

/// Advisory lock key serialising migrations ("strata" + 1 in ASCII hex).
const MIGRATION_LOCK: i64 = 0x7374_7261_7461_0001;

/// Bring the schema up to date; returns the schema version now in force.
pub(crate) async fn migrate(client: &mut Client, target: &str, now_ms: u64) -> Result<u32> {
    let latest = MIGRATIONS.last().map_or(0, |m| m.version);
    let err = |what: &'static str| move |e: tokio_postgres::Error| db_error(e, target, what);
    let txn = client.transaction().await.map_err(err("begin migration"))?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(err("take the migration lock"))?;
    let row = txn
        .query_one(
            "SELECT to_regclass('strata_schema_version') IS NOT NULL",
            &[],
        )
        .await
        .map_err(err("look for strata_schema_version"))?;
    let exists: bool = col(&row, 0)?;
    if !exists {
        txn.batch_execute(
            "CREATE TABLE strata_schema_version (
                 version    int4 PRIMARY KEY,
                 name       text NOT NULL,
                 applied_ms int8 NOT NULL
             )",
        )
        .await
        .map_err(err("create strata_schema_version"))?;
    }
    // A table of that name that is not the one strata creates (a column dropped or
    // retyped by hand) fails here with a SQLSTATE of class 42 or a column of another type.
    let damaged = || {
        format!(
            "postgres {target}: the table strata_schema_version is damaged (strata creates it \
             as version int4, name text, applied_ms int8); repair it from a backup"
        )
    };
    let row = txn
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM strata_schema_version",
            &[],
        )
        .await
        .map_err(|e| {
            if e.code().is_some_and(|c| c.code().starts_with("42")) {
                Error::corrupt(damaged()).with_source(PgError(e))
            } else {
                db_error(e, target, "read the schema version")
            }
        })?;
    let current: i32 = col(&row, 0).map_err(|e| Error::corrupt(damaged()).with_source(e))?;
    let current = u32::try_from(current)
        .map_err(|_| Error::internal(format!("postgres {target}: schema version {current}")))?;
    if current > latest {
        return Err(Error::invalid(format!(
            "postgres {target}: the metadata schema is at version {current}, newer than the \
             version {latest} this strata binary supports; upgrade strata (refusing to use a \
             schema it does not know)"
        )));
    }
    let applied_ms = i64::try_from(now_ms).unwrap_or(i64::MAX);
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        txn.batch_execute(m.sql).await.map_err(|e| {
            db_error(e, target, "apply migration")
                .context_prefix(format!("schema migration {} ({})", m.version, m.name))
        })?;
        let version = i32::try_from(m.version).unwrap_or(i32::MAX);
        txn.execute(
            "INSERT INTO strata_schema_version (version, name, applied_ms) VALUES ($1, $2, $3)",
            &[&version, &m.name, &applied_ms],
        )
        .await
        .map_err(err("record the schema version"))?;
        tracing::info!(target: "strata::meta", "postgres {target}: applied schema migration {} ({})", m.version, m.name);
    }
    txn.commit().await.map_err(err("commit migration"))?;
    Ok(latest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.name);
            assert!(!m.sql.trim().is_empty());
        }
    }
}
