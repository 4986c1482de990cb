//! Damage to the files of the embedded store (RocksDB): a flipped byte in a blob file, a
//! table file or the write-ahead log is found, named and reported as what it is.

mod support;

use support::run_strata as strata;

use std::path::{Path, PathBuf};

use strata::{ErrorKind, Store};
use support::{open, random_bytes, settings};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Files in `dir` whose name ends with `ext`, largest first.
fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(ext))
        .map(|p| (std::fs::metadata(&p).unwrap().len(), p))
        .collect();
    out.sort_by_key(|b| std::cmp::Reverse(b.0));
    out.into_iter().map(|(_, p)| p).collect()
}

fn flip(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Item 6: a hot chunk RocksDB reports as corrupt (blob CRC mismatch) is marked corrupt
/// like a hash mismatch, so `stat` stops counting it and a second put of the same
/// content rewrites it.
#[tokio::test]
async fn a_chunk_rocksdb_finds_corrupt_is_marked_and_a_second_put_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    // Past the logged prefix of a put: the chunks are flushed into blob files before
    // the commit.
    let data = random_bytes(24 << 20, 61);
    let id = {
        let store = open(dir.path()).await;
        let id = store.put(data.clone()).await.unwrap().id;
        store.close().await.unwrap();
        id
    };
    let blob = files_with(dir.path(), ".blob").remove(0);
    let len = std::fs::metadata(&blob).unwrap().len() as usize;
    flip(&blob, len / 2);

    let store = open(dir.path()).await;
    let err = store.get(&id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    let stat = store.stat(&id).await.unwrap();
    assert!(
        stat.tiers.hot < data.len() as u64,
        "the damaged chunk must no longer count as a healthy hot copy: {stat:?}"
    );
    let again = store.put(data.clone()).await.unwrap();
    assert!(again.existed);
    assert_eq!(store.get(&id).await.unwrap(), data);
    assert_eq!(store.stat(&id).await.unwrap().tiers.hot, data.len() as u64);
    assert!(store.verify(Some(&id)).await.unwrap().is_clean());
    store.close().await.unwrap();
}

/// Item 8: a damaged table file is `Corrupt` naming the data directory, not "in use".
#[tokio::test]
async fn a_damaged_table_file_is_corrupt_not_in_use() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path()).await;
        store.put(random_bytes(100_000, 62)).await.unwrap();
        store.close().await.unwrap();
    }
    // Reopening flushes what the log recovered into table files.
    open(dir.path()).await.close().await.unwrap();
    let sst = {
        let opts = rocksdb::Options::default();
        let cfs = rocksdb::DB::list_cf(&opts, dir.path()).unwrap();
        let db = rocksdb::DB::open_cf_for_read_only(&opts, dir.path(), cfs, false).unwrap();
        let file = db
            .live_files()
            .unwrap()
            .into_iter()
            .find(|f| f.column_family_name == strata::rocks::CF_BLOBS)
            .expect("the blobs column family has a table file");
        dir.path().join(file.name.trim_start_matches('/'))
    };
    let mut bytes = std::fs::read(&sst).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n / 4..n * 3 / 4] {
        *b ^= 0xff;
    }
    std::fs::write(&sst, bytes).unwrap();

    let err = Store::open(settings(dir.path()))
        .await
        .err()
        .expect("open fails");
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    let msg = err.to_string();
    assert!(!msg.contains("in use"), "{msg}");
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    let out = strata(dir.path(), &["ls"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("corrupt"),
        "{}",
        text(&out.stderr)
    );
}

/// Item 8: a directory held by another process is "in use", named with its holder.
#[tokio::test]
async fn a_directory_open_in_another_process_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let out = strata(dir.path(), &["ls"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("unavailable") && err.contains("in use by another strata process"),
        "{err}"
    );
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    store.close().await.unwrap();
}

/// Puts two small blobs with the command line (each process replays and flushes the
/// log of the one before, so the live log holds only the second put) and returns the
/// data directory, both contents and both ids.
fn two_puts(tmp: &Path) -> (PathBuf, Vec<u8>, String, Vec<u8>, String) {
    let data_dir = tmp.join("data");
    let mut out = Vec::new();
    for seed in [63, 64] {
        let data = random_bytes(300_000, seed).to_vec();
        let file = tmp.join(format!("in-{seed}"));
        std::fs::write(&file, &data).unwrap();
        let put = strata(&data_dir, &["put", file.to_str().unwrap()]);
        assert!(put.status.success(), "{}", text(&put.stderr));
        let id = text(&put.stdout).lines().last().unwrap().to_string();
        out.push((data, id));
    }
    let (b, a) = (out.pop().unwrap(), out.pop().unwrap());
    (data_dir, a.0, a.1, b.0, b.1)
}

/// The log file holding `needle`; flips the byte `skip` bytes after the needle's start.
fn damage_log_at(data_dir: &Path, needle: &[u8], skip: usize) -> PathBuf {
    for log in files_with(data_dir, ".log") {
        let bytes = std::fs::read(&log).unwrap();
        if let Some(at) = find(&bytes, needle) {
            flip(&log, at + skip);
            return log;
        }
    }
    panic!("no log file holds the bytes");
}

/// Item 7: a damaged chunk write in the log makes open fail, naming the file; the
/// explicit recovery opens and names the blob that lost data.
#[test]
fn a_damaged_log_record_refuses_to_open_until_the_loss_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let (data_dir, a, a_id, b, b_id) = two_puts(tmp.path());
    let log = damage_log_at(&data_dir, &b[150_000..150_064], 0);

    let out = strata(&data_dir, &["ls"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let name = log.file_name().unwrap().to_string_lossy().into_owned();
    assert!(err.contains("corrupt") && err.contains(&name), "{err}");
    assert!(err.contains("--accept-wal-loss"), "{err}");
    assert!(!err.contains("in use"), "{err}");
    // Still refused: nothing was dropped by the failed open.
    assert_eq!(strata(&data_dir, &["ls"]).status.code(), Some(1));

    let rec = strata(&data_dir, &["recover", "--accept-wal-loss"]);
    assert!(rec.status.success(), "{}", text(&rec.stderr));
    let report = text(&rec.stdout);
    assert!(report.contains(&name), "{report}");
    assert!(
        report.contains(&format!("damaged blob {b_id}")),
        "the blob whose chunk write was lost is named: {report}"
    );
    assert!(!report.contains(&a_id), "{report}");

    // Opens normally now; the first blob is whole, the second fails loudly.
    let out_a = tmp.path().join("a.out");
    let get = strata(&data_dir, &["get", &a_id, "-o", out_a.to_str().unwrap()]);
    assert!(get.status.success(), "{}", text(&get.stderr));
    assert_eq!(std::fs::read(&out_a).unwrap(), a);
    let get_b = strata(&data_dir, &["get", &b_id]);
    assert_eq!(get_b.status.code(), Some(1));
}

/// Item 7: when the damaged record holds a blob's commit, the recovery names that blob
/// as lost (it no longer exists).
#[test]
fn a_damaged_commit_in_the_log_is_named_as_a_lost_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let (data_dir, _, a_id, _, b_id) = two_puts(tmp.path());
    let mut record: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&b_id[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    // The blob record in the commit batch: its key, the value's length (38) and
    // version (2). The flip lands in the recorded size, so the damaged record still
    // parses and names the blob.
    record.extend_from_slice(&[38, 2]);
    damage_log_at(&data_dir, &record, 40);

    let out = strata(&data_dir, &["ls"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&b_id),
        "the refusal names the blob at stake: {err}"
    );

    let rec = strata(&data_dir, &["recover", "--accept-wal-loss"]);
    assert!(rec.status.success(), "{}", text(&rec.stderr));
    let report = text(&rec.stdout);
    assert!(report.contains(&format!("lost blob {b_id}")), "{report}");
    let ls = strata(&data_dir, &["ls"]);
    assert!(ls.status.success(), "{}", text(&ls.stderr));
    assert!(text(&ls.stdout).contains(&a_id));
    assert!(!text(&ls.stdout).contains(&b_id));
}
