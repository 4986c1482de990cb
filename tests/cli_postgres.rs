//! The CLI round trip with `[meta] use = "pg"`; a second process on another data
//! directory sees the blob.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::{pg, random_bytes};

fn strata(config: &Path, data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("STRATA_META_URL")
        .output()
        .expect("run strata")
}

#[tokio::test]
async fn cli_round_trip_on_postgres_and_second_process_sees_it() {
    let Some(url) = pg::fresh_schema_url().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("strata.toml");
    std::fs::write(
        &config,
        format!("[connections.pg]\ntype = \"postgres\"\nurl = \"{url}\"\npool_size = 4\n[meta]\nuse = \"pg\"\n"),
    )
    .unwrap();
    let (dir1, dir2) = (tmp.path().join("one"), tmp.path().join("two"));
    let file = tmp.path().join("input");
    let data = random_bytes(1_500_000, 5);
    std::fs::write(&file, &data).unwrap();

    let put = strata(&config, &dir1, &["put", file.to_str().unwrap()]);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let id = String::from_utf8_lossy(&put.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    assert_eq!(id, blake3::hash(&data).to_hex().as_str());

    let get = strata(&config, &dir1, &["get", &id, "--range", "10..100010"]);
    assert!(get.status.success());
    assert!(get.stdout[..] == data[10..100_010]);

    let ls = strata(&config, &dir2, &["ls"]);
    assert!(
        ls.status.success(),
        "{}",
        String::from_utf8_lossy(&ls.stderr)
    );
    assert!(String::from_utf8_lossy(&ls.stdout).contains(&id));
    let stat = strata(&config, &dir2, &["stat", &id, "--json"]);
    assert!(stat.status.success());
    let v: serde_json::Value = serde_json::from_slice(&stat.stdout).unwrap();
    assert_eq!(v["size"], 1_500_000);

    let check = strata(&config, &dir2, &["meta", "check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(v["blobs"], 1);
    let migrate = strata(&config, &dir2, &["meta", "migrate"]);
    assert!(migrate.status.success());

    let rm = strata(&config, &dir2, &["rm", &id]);
    assert!(rm.status.success());
    let get = strata(&config, &dir1, &["get", &id]);
    assert_eq!(get.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&get.stderr).contains("not found"));

    // An unreachable database fails fast with a clear error and no password.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[connections.pg]\ntype = \"postgres\"\nurl = \"postgres://strata:hunter2@127.0.0.1:1/strata\"\nconnect_timeout_secs = 2\n[meta]\nuse = \"pg\"\n",
    )
    .unwrap();
    let t = std::time::Instant::now();
    let out = strata(&bad, &tmp.path().join("three"), &["ls"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unavailable"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    assert!(t.elapsed().as_secs() < 30);
}

/// A client on the schema of `url` (a URL from `pg::fresh_schema_url`).
async fn sql_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

fn pg_config(dir: &Path, url: &str) -> std::path::PathBuf {
    let config = dir.join("strata.toml");
    std::fs::write(
        &config,
        format!("[connections.pg]\ntype = \"postgres\"\nurl = \"{url}\"\nconnect_timeout_secs = 5\n[meta]\nuse = \"pg\"\n"),
    )
    .unwrap();
    config
}

#[tokio::test]
async fn meta_check_on_postgres_finds_a_reference_count_bumped_by_hand() {
    let Some(url) = pg::fresh_schema_url().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let config = pg_config(tmp.path(), &url);
    let file = tmp.path().join("input");
    std::fs::write(&file, random_bytes(400_000, 6)).unwrap();
    let data_dir = tmp.path().join("one");
    let put = strata(&config, &data_dir, &["put", file.to_str().unwrap()]);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let check = strata(&config, &data_dir, &["meta", "check"]);
    assert_eq!(check.status.code(), Some(0));

    let client = sql_client(&url).await;
    let row = client
        .query_one(
            "UPDATE chunks SET refcount = refcount + 1 \
             WHERE id = (SELECT id FROM chunks ORDER BY id LIMIT 1) RETURNING encode(id, 'hex')",
            &[],
        )
        .await
        .unwrap();
    let victim: String = row.get(0);
    let check = strata(&config, &data_dir, &["meta", "check"]);
    assert_eq!(check.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(v["refcount_mismatches"][0]["chunk"], victim.as_str());
    assert_eq!(v["refcount_mismatches"][0]["stored"], 2);
    assert_eq!(v["refcount_mismatches"][0]["actual"], 1);
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(err.contains(&format!("chunk {victim} is 2")), "{err}");
}

/// The test server trusts every connection (`-A trust`), so a wrong password is
/// accepted there: the server's refusals are exercised with a missing role (SQLSTATE
/// 28000), a missing database (3D000) and a damaged schema version table (42703).
#[tokio::test]
async fn postgres_errors_show_sqlstate_and_server_message_never_the_password() {
    let Some(url) = pg::fresh_schema_url().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("one");
    // postgres://user@host:port/db?options → swap user (with a password) or database.
    let rest = url.strip_prefix("postgres://").expect("postgres:// URL");
    let (user, after_user) = rest.split_once('@').unwrap();
    let (hostport, _) = after_user.split_once('/').unwrap();
    let user = user.split(':').next().unwrap();
    let cases = [
        (
            format!("postgres://{user}:hunter2@{hostport}/strata_no_such_database"),
            ["3D000", "strata_no_such_database\" does not exist"],
        ),
        (
            format!("postgres://strata_no_such_role:hunter2@{hostport}/postgres"),
            ["28000", "strata_no_such_role\" does not exist"],
        ),
    ];
    for (bad_url, expected) in cases {
        let dir = tmp.path().join(format!("case-{}", expected[0]));
        std::fs::create_dir_all(&dir).unwrap();
        let config = pg_config(&dir, &bad_url);
        let out = strata(&config, &data_dir, &["ls"]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        for e in expected {
            assert!(err.contains(e), "{e}: {err}");
        }
        assert!(err.contains("invalid input"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    // A version table changed by hand.
    let config = pg_config(tmp.path(), &url);
    let migrate = strata(&config, &data_dir, &["meta", "migrate"]);
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let client = sql_client(&url).await;
    client
        .batch_execute("ALTER TABLE strata_schema_version DROP COLUMN version")
        .await
        .unwrap();
    let out = strata(&config, &data_dir, &["ls"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for e in [
        "strata_schema_version is damaged",
        "SQLSTATE 42703",
        "column \"version\" does not exist",
    ] {
        assert!(err.contains(e), "{e}: {err}");
    }
}
