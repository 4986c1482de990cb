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
