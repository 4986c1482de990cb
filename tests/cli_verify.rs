//! `strata verify` and `strata meta check` against damage done behind the store's back:
//! bytes flipped in warm packs, hot blob files and manifest SSTs; pack and blob files
//! removed; a reference count bumped by hand.

mod support;

use support::run_strata as strata;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use strata::{ChunkId, Tier};
use support::random_bytes;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Put `len` pseudo-random bytes from `seed`; the blob id.
fn put(tmp: &Path, data_dir: &Path, len: usize, seed: u64) -> String {
    let file = tmp.join(format!("input-{seed}"));
    std::fs::write(&file, random_bytes(len, seed)).unwrap();
    let out = strata(data_dir, &["put", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).lines().last().unwrap().to_string()
}

/// `strata verify [ARGS] --json`: exit code and report.
fn verify_json(data_dir: &Path, args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = strata(data_dir, &all);
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} {}", text(&out.stdout), text(&out.stderr)));
    (out.status.code(), v)
}

/// Files directly in `dir` whose names end with `suffix`, sorted.
fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    out.sort();
    out
}

fn flip(path: &Path, at: u64) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0x5a]).unwrap();
    f.sync_all().unwrap();
}

/// The chunk whose copy in `tier` covers byte `at` of its pack (opens the store).
async fn chunk_at(data_dir: &Path, id: &str, tier: Tier, at: u64) -> ChunkId {
    let store = support::open(data_dir).await;
    let rec = store.head(&id.parse().unwrap()).await.unwrap();
    let entries = store
        .meta()
        .manifest_range(&rec.id, 0, rec.size)
        .await
        .unwrap();
    let ids: Vec<ChunkId> = entries.iter().map(|e| e.chunk).collect();
    let locs = store.meta().locations_many(&ids).await.unwrap();
    let found = locs
        .values()
        .flatten()
        .find(|l| l.tier == tier && l.offset <= at && at < l.offset + l.length)
        .map(|l| l.chunk)
        .expect("a copy covers the byte");
    store.close().await.unwrap();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_and_removed_warm_packs_fail_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let len = 1_500_000;
    let id = put(tmp.path(), &data_dir, len, 31);
    let moved = strata(&data_dir, &["tier", "move", &id, "--to", "warm"]);
    assert!(moved.status.success(), "{}", text(&moved.stderr));

    // Clean: every warm copy is read and re-hashed, and nothing is promoted into hot.
    let (code, v) = verify_json(&data_dir, &[]);
    assert_eq!(code, Some(0), "{v}");
    let chunks = v["chunks_checked"].as_u64().unwrap();
    assert!(chunks > 5, "{v}");
    assert_eq!(v["warm"]["copies_hashed"], chunks, "{v}");
    assert_eq!(v["warm"]["bytes_hashed"], len as u64, "{v}");
    assert_eq!(v["bytes_checked"], len as u64, "{v}");
    assert_eq!(v["hot"]["copies_hashed"], 0, "{v}");
    let stat = strata(&data_dir, &["stat", &id, "--json"]);
    let st: Value = serde_json::from_slice(&stat.stdout).unwrap();
    assert_eq!(st["tiers"]["hot"], 0, "verify promoted chunks: {st}");

    let packs = files_ending(&data_dir.join("tiers/warm/data/warm"), "");
    assert_eq!(packs.len(), 1, "{packs:?}");
    let victim = chunk_at(&data_dir, &id, Tier::Warm, 1000).await;
    flip(&packs[0], 1000);
    for args in [vec!["verify"], vec!["verify", id.as_str()]] {
        let out = strata(&data_dir, &args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stdout)
        );
        let shown = text(&out.stdout);
        let line = shown
            .lines()
            .find(|l| l.starts_with(&format!("corrupt copy of chunk {victim} in warm")))
            .unwrap_or_else(|| panic!("{args:?}: {shown}"));
        assert!(line.contains(&id), "{line}");
        assert!(shown.contains(&format!("lost chunk {victim}")), "{shown}");
    }
    let (_, v) = verify_json(&data_dir, &[]);
    assert_eq!(v["corrupt"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["warm"]["copies_hashed"], chunks - 1, "{v}");
    let get = strata(&data_dir, &["get", &id]);
    assert_eq!(get.status.code(), Some(1));

    std::fs::remove_file(&packs[0]).unwrap();
    for args in [vec!["verify"], vec!["verify", id.as_str()]] {
        let (code, v) = verify_json(&data_dir, &args[1..]);
        assert_eq!(code, Some(1), "{v}");
        let missing = v["missing"].as_array().unwrap();
        assert_eq!(missing.len() as u64, chunks, "{v}");
        assert!(missing
            .iter()
            .all(|c| c["tier"] == "warm" && c["blobs"][0] == id.as_str()));
        // The failed `get` above promoted to hot every chunk it could verify, so only
        // the chunk whose one copy was corrupt has no healthy copy left anywhere.
        let lost = v["lost"].as_array().unwrap();
        assert!(
            lost.iter()
                .any(|c| c.to_string().contains(&victim.to_string())),
            "{v}"
        );
        // Nothing of the removed pack was hashed (the promoted hot copies were).
        assert_eq!(v["warm"]["copies_hashed"], 0, "{v}");
    }
    let out = strata(&data_dir, &["verify", &id]);
    assert!(text(&out.stdout).contains(&format!("missing copy of chunk {victim} in warm")));
}

#[tokio::test]
async fn archived_cold_packs_are_checked_by_existence_and_size() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let id = put(tmp.path(), &data_dir, 700_000, 32);
    let moved = strata(&data_dir, &["tier", "move", &id, "--to", "cold"]);
    assert!(moved.status.success(), "{}", text(&moved.stderr));

    let out = strata(&data_dir, &["verify", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("copies checked by existence and size only"),
        "{}",
        text(&out.stdout)
    );
    let (_, v) = verify_json(&data_dir, &[]);
    let chunks = v["chunks_checked"].as_u64().unwrap();
    assert_eq!(v["cold"]["copies_sized"], chunks, "{v}");
    assert_eq!(v["cold"]["objects_checked"], 1, "{v}");
    assert_eq!(v["bytes_checked"], 0, "nothing was hashed: {v}");

    let packs = files_ending(&data_dir.join("tiers/cold/data/cold"), "");
    assert_eq!(packs.len(), 1, "{packs:?}");
    std::fs::remove_file(&packs[0]).unwrap();
    for args in [vec!["verify"], vec!["verify", id.as_str()]] {
        let out = strata(&data_dir, &args);
        assert_eq!(out.status.code(), Some(1));
        let shown = text(&out.stdout);
        let missing: Vec<&str> = shown
            .lines()
            .filter(|l| l.starts_with("missing copy of chunk"))
            .collect();
        assert_eq!(missing.len() as u64, chunks, "{shown}");
        for l in missing {
            assert!(l.contains(" in cold (pack cold/"), "{l}");
            assert!(l.contains("checked by existence and size"), "{l}");
            assert!(l.contains(&id), "{l}");
        }
    }
}

#[test]
fn damaged_hot_blob_files_are_all_reported_and_verify_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    // Puts past 8 MiB flush the chunks' memtable: one blob file (or more) per put.
    let ids: Vec<String> = (0..4)
        .map(|i| put(tmp.path(), &data_dir, 12 << 20, 40 + i))
        .collect();
    let (code, clean) = verify_json(&data_dir, &[]);
    assert_eq!(code, Some(0), "{clean}");
    let chunks = clean["chunks_checked"].as_u64().unwrap();
    assert_eq!(clean["hot"]["bytes_hashed"], 4 * (12 << 20) as u64);

    let blob_files = files_ending(&data_dir, ".blob");
    assert!(blob_files.len() >= 2, "{blob_files:?}");
    let size = std::fs::metadata(&blob_files[0]).unwrap().len();
    flip(&blob_files[0], size / 2);
    std::fs::remove_file(&blob_files[1]).unwrap();

    let (code, v) = verify_json(&data_dir, &[]);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["chunks_checked"], chunks, "verify stopped early: {v}");
    let corrupt = v["corrupt"].as_array().unwrap();
    let missing = v["missing"].as_array().unwrap();
    assert!(!corrupt.is_empty(), "{v}");
    // The removed file held many chunks: every one of them is named.
    assert!(missing.len() > 10, "{v}");
    let mut damaged_blobs = BTreeSet::new();
    for c in corrupt.iter().chain(missing) {
        assert_eq!(c["tier"], "hot", "{c}");
        let blobs = c["blobs"].as_array().unwrap();
        assert!(!blobs.is_empty(), "{c}");
        for b in blobs {
            assert!(ids.iter().any(|id| b == id.as_str()), "{b}");
            damaged_blobs.insert(b.as_str().unwrap().to_string());
        }
    }
    // RocksDB refuses the corrupt record before handing out any bytes.
    assert_eq!(
        v["hot"]["copies_hashed"].as_u64().unwrap(),
        chunks - missing.len() as u64 - corrupt.len() as u64,
        "{v}"
    );
    // The text names each damaged chunk once per damaged copy.
    let out = strata(&data_dir, &["verify"]);
    let shown = text(&out.stdout);
    for c in corrupt {
        let chunk = c["chunk"].as_str().unwrap();
        assert!(
            shown.contains(&format!("corrupt copy of chunk {chunk} in hot")),
            "{shown}"
        );
    }
    for c in missing {
        let chunk = c["chunk"].as_str().unwrap();
        assert!(
            shown.contains(&format!("missing copy of chunk {chunk} in hot")),
            "{shown}"
        );
    }
    // Each blob's own verify agrees.
    for id in &ids {
        let out = strata(&data_dir, &["verify", id]);
        let expected = if damaged_blobs.contains(id) { 1 } else { 0 };
        assert_eq!(
            out.status.code(),
            Some(expected),
            "{id}: {}",
            text(&out.stdout)
        );
    }
}

#[test]
fn damaged_manifest_sst_is_reported_as_damaged_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let ids: Vec<String> = (0..3)
        .map(|i| put(tmp.path(), &data_dir, 6 << 20, 50 + i))
        .collect();
    // Flush the manifest column family into SST files and find them.
    let ssts: Vec<PathBuf> = {
        let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), &data_dir).unwrap();
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &data_dir, cfs).unwrap();
        let cf = db.cf_handle(strata::rocks::CF_MANIFEST).unwrap();
        db.flush_cf(cf).unwrap();
        // One file, so no compaction reads the damaged block later.
        db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        db.live_files()
            .unwrap()
            .into_iter()
            .filter(|f| f.column_family_name == strata::rocks::CF_MANIFEST)
            .map(|f| data_dir.join(f.name.trim_start_matches('/')))
            .collect()
    };
    assert!(!ssts.is_empty());
    // Bytes early in the file lie in its first data block.
    for sst in &ssts {
        for at in 60..70 {
            flip(sst, at);
        }
    }

    let (code, v) = verify_json(&data_dir, &[]);
    assert_eq!(code, Some(1), "{v}");
    let damaged: BTreeSet<String> = v["damaged_blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["blob"].as_str().unwrap().to_string())
        .collect();
    assert!(!damaged.is_empty(), "{v}");
    assert_eq!(v["blobs_checked"], 3);
    let shown = text(&strata(&data_dir, &["verify"]).stdout);
    // Verify names exactly the blobs that can no longer be read.
    for id in &ids {
        let unreadable = !strata(&data_dir, &["get", id]).status.success();
        assert_eq!(damaged.contains(id), unreadable, "{id}: {v}");
        assert_eq!(
            shown.contains(&format!("damaged blob {id}")),
            unreadable,
            "{shown}"
        );
        let one = strata(&data_dir, &["verify", id]);
        assert_eq!(
            one.status.code(),
            Some(i32::from(unreadable)),
            "{}",
            text(&one.stdout)
        );
    }
}

#[test]
fn meta_check_finds_a_reference_count_bumped_by_hand() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    put(tmp.path(), &data_dir, 300_000, 60);
    let check = strata(&data_dir, &["meta", "check"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stderr));
    let v: Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(v["blobs"], 1);
    assert_eq!(v["refcount_mismatches"].as_array().unwrap().len(), 0);

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
    let check = strata(&data_dir, &["meta", "check"]);
    assert_eq!(check.status.code(), Some(1), "{}", text(&check.stderr));
    let v: Value = serde_json::from_slice(&check.stdout).unwrap();
    let m = &v["refcount_mismatches"][0];
    assert_eq!(m["chunk"], victim.to_string());
    assert_eq!(m["stored"], 2);
    assert_eq!(m["actual"], 1);
    let err = text(&check.stderr);
    assert!(
        err.contains(&format!("reference count of chunk {victim} is 2")),
        "{err}"
    );
}
