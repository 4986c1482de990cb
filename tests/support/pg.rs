//! A fresh PostgreSQL schema per test, on the server of `STRATA_TEST_PG_URL`.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio_postgres::NoTls;

const TEST_DB: &str = "strata_store_test";
static NEXT: AtomicU32 = AtomicU32::new(0);

/// The admin URL, or `None` to skip (a failure under `CI=true`).
pub fn admin_url() -> Option<String> {
    match std::env::var("STRATA_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("STRATA_TEST_PG_URL is not set and CI=true: run `eval \"$(bash scripts/pg.sh)\"` first")
        }
        _ => {
            eprintln!("skipping: STRATA_TEST_PG_URL not set");
            None
        }
    }
}

fn replace_db(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let cut = base
        .rfind('/')
        .filter(|&i| i > "postgres://".len())
        .unwrap_or(base.len());
    let mut out = format!("{}/{db}", &base[..cut]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Create a new empty schema and return a URL whose connections use it.
pub async fn fresh_schema_url() -> Option<String> {
    let admin = admin_url()?;
    let (client, conn) = tokio_postgres::connect(&admin, NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&TEST_DB])
        .await
        .unwrap()
        .is_some();
    if !exists {
        // Another test binary may create it at the same moment; losing that race is fine.
        let _ = client
            .batch_execute(&format!("CREATE DATABASE {TEST_DB}"))
            .await;
    }
    let db_url = replace_db(&admin, TEST_DB);
    let (client, conn) = tokio_postgres::connect(&db_url, NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let schema = format!(
        "s{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst),
        rand::random::<u32>()
    );
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .expect("create schema");
    let sep = if db_url.contains('?') { '&' } else { '?' };
    Some(format!("{db_url}{sep}options=-c%20search_path%3D{schema}"))
}
