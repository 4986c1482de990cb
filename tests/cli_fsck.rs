//! `strata fsck [--json] [--repair]`: exit status 0 on a clean store, 1 with a problem,
//! problems as a JSON list with a `kind`, and `--repair` bringing the exit status back
//! to 0 when everything found could be fixed.

mod support;

use std::path::Path;

use serde_json::Value;
use support::{random_bytes, run_strata as strata};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `strata fsck --json [ARGS]`: exit code and report.
fn fsck_json(data_dir: &Path, args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["fsck", "--json"];
    all.extend_from_slice(args);
    let out = strata(data_dir, &all);
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} {}", text(&out.stdout), text(&out.stderr)));
    (out.status.code(), v)
}

fn kinds(v: &Value) -> Vec<String> {
    v["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| p["kind"].as_str().expect("kind").to_string())
        .collect()
}

#[test]
fn fsck_exit_status_json_and_repair() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let file = tmp.path().join("input");
    std::fs::write(&file, random_bytes(400_000, 7)).unwrap();
    let out = strata(&data_dir, &["put", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).lines().last().unwrap().to_string();
    let out = strata(&data_dir, &["tier", "move", &id, "--to", "warm"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let (code, v) = fsck_json(&data_dir, &[]);
    assert_eq!(code, Some(0), "{v}");
    assert!(kinds(&v).is_empty(), "{v}");
    assert!(v["packs_checked"].as_u64().unwrap() >= 1, "{v}");
    let out = strata(&data_dir, &["fsck"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).contains("0 problems"),
        "{}",
        text(&out.stdout)
    );

    // A reference count bumped behind the store's back.
    let victim = {
        use strata::meta::codec::{chunk_value, decode_chunk};
        let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), &data_dir).unwrap();
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &data_dir, cfs).unwrap();
        let cf = db.cf_handle(strata::rocks::CF_CHUNK_META).unwrap();
        let (k, val) = db
            .iterator_cf(cf, rocksdb::IteratorMode::Start)
            .next()
            .unwrap()
            .unwrap();
        let mut rec = decode_chunk(&k, &val).unwrap();
        rec.refcount += 1;
        db.put_cf(cf, &k, chunk_value(&rec)).unwrap();
        rec.id
    };
    let (code, v) = fsck_json(&data_dir, &[]);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(kinds(&v), ["refcount_mismatch"], "{v}");
    assert_eq!(v["problems"][0]["chunk"], victim.to_string());
    let out = strata(&data_dir, &["fsck"]);
    assert_eq!(out.status.code(), Some(1));
    let lines = text(&out.stdout);
    assert!(
        lines.contains(&format!(
            "refcount_mismatch chunk {victim}: reference count is 2"
        )),
        "{lines}"
    );

    let (code, v) = fsck_json(&data_dir, &["--repair"]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["problems"][0]["repair"]["status"], "repaired", "{v}");
    let (code, v) = fsck_json(&data_dir, &[]);
    assert_eq!(code, Some(0), "{v}");
    assert!(kinds(&v).is_empty(), "{v}");
}
