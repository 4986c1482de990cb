//! Tests of the `strata` binary, run as a user would.

mod support;

use support::run_strata as strata;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use support::random_bytes;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// What `b3sum` prints for `file`; under CI a missing b3sum is a failure.
fn b3sum(file: &Path) -> Option<String> {
    match Command::new("b3sum").arg("--no-names").arg(file).output() {
        Ok(o) if o.status.success() => Some(stdout(&o).trim().to_string()),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("b3sum is not installed (scripts/test.sh installs it)")
        }
        _ => {
            eprintln!("b3sum not installed; comparing with the blake3 crate instead");
            None
        }
    }
}

#[test]
fn put_prints_b3sum_and_get_reproduces_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let file = tmp.path().join("input.bin");
    let data = random_bytes(3_000_123, 8);
    std::fs::write(&file, &data).unwrap();

    let put = strata(&data_dir, &["put", file.to_str().unwrap()]);
    assert!(put.status.success(), "{}", stderr(&put));
    let id = stdout(&put).lines().last().unwrap().to_string();
    let expected = b3sum(&file).unwrap_or_else(|| blake3::hash(&data).to_hex().to_string());
    assert_eq!(id, expected);
    assert!(!stderr(&put).contains("already stored"), "{}", stderr(&put));
    // A second put of the same bytes says the blob was already there.
    let again = strata(&data_dir, &["put", file.to_str().unwrap()]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again).lines().last(), Some(id.as_str()));
    assert!(
        stderr(&again).contains("already stored"),
        "{}",
        stderr(&again)
    );

    let out = tmp.path().join("out.bin");
    let get = strata(&data_dir, &["get", &id, "-o", out.to_str().unwrap()]);
    assert!(get.status.success(), "{}", stderr(&get));
    assert!(std::fs::read(&out).unwrap() == data[..]);

    let get = strata(&data_dir, &["get", &id]);
    assert!(get.status.success());
    assert!(get.stdout == data[..]);

    let get = strata(&data_dir, &["get", &id, "--range", "1000..70000"]);
    assert!(get.status.success(), "{}", stderr(&get));
    assert!(get.stdout[..] == data[1000..70000]);
    let get = strata(&data_dir, &["get", &id, "--range", "2999000.."]);
    assert!(get.stdout[..] == data[2_999_000..]);

    let stat = strata(&data_dir, &["stat", &id, "--json"]);
    assert!(stat.status.success());
    let v: serde_json::Value = serde_json::from_slice(&stat.stdout).unwrap();
    assert_eq!(v["id"], id);
    assert_eq!(v["size"], 3_000_123);
    assert!(v["chunks"].as_u64().unwrap() >= 1);
    assert_eq!(v["tiers"]["hot"], 3_000_123);

    let json = strata(&data_dir, &["put", "--json", file.to_str().unwrap()]);
    let receipt: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(receipt["id"], id);
    assert_eq!(receipt["new_bytes"], 0);

    let ls = strata(&data_dir, &["ls"]);
    assert!(stdout(&ls).contains(&id));
    let verify = strata(&data_dir, &["verify", &id]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    let verify = strata(&data_dir, &["verify"]);
    assert!(verify.status.success());

    let rm = strata(&data_dir, &["rm", &id]);
    assert!(rm.status.success());
    let get = strata(&data_dir, &["get", &id]);
    assert_eq!(get.status.code(), Some(1));
    assert!(stderr(&get).contains("not found"), "{}", stderr(&get));
}

#[test]
fn put_from_stdin_and_empty_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let data = random_bytes(200_000, 4);
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["put", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&data).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), blake3::hash(&data).to_hex().as_str());

    let empty = tmp.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let put = strata(&data_dir, &["put", empty.to_str().unwrap()]);
    assert!(put.status.success());
    let id = stdout(&put).trim().to_string();
    assert_eq!(Some(id.clone()), b3sum(&empty).or(Some(id.clone())));
    assert_eq!(
        id,
        "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    );
    let get = strata(&data_dir, &["get", &id]);
    assert!(get.status.success() && get.stdout.is_empty());
}

#[test]
fn errors_have_clear_messages_and_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");

    let bad = strata(&data_dir, &["get", "not-a-hash"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("malformed blob id"),
        "{}",
        stderr(&bad)
    );

    let missing_file = strata(
        &data_dir,
        &["put", tmp.path().join("nope").to_str().unwrap()],
    );
    assert_eq!(missing_file.status.code(), Some(1));
    assert!(
        stderr(&missing_file).contains("cannot open"),
        "{}",
        stderr(&missing_file)
    );

    let absent = "0".repeat(64);
    let missing_blob = strata(&data_dir, &["get", &absent]);
    assert_eq!(missing_blob.status.code(), Some(1));
    assert!(
        stderr(&missing_blob).contains("not found"),
        "{}",
        stderr(&missing_blob)
    );
    let out = tmp.path().join("never");
    let missing_blob = strata(&data_dir, &["get", &absent, "-o", out.to_str().unwrap()]);
    assert_eq!(missing_blob.status.code(), Some(1));
    assert!(!out.exists(), "no output file on failure");

    let stat = strata(&data_dir, &["stat", &absent]);
    assert_eq!(stat.status.code(), Some(1));
    let rm = strata(&data_dir, &["rm", &absent]);
    assert_eq!(rm.status.code(), Some(1));

    let file = tmp.path().join("f");
    std::fs::write(&file, b"hello").unwrap();
    let id = stdout(&strata(&data_dir, &["put", file.to_str().unwrap()]))
        .trim()
        .to_string();
    let range = strata(&data_dir, &["get", &id, "--range", "2..99"]);
    assert_eq!(range.status.code(), Some(1));
    assert!(
        stderr(&range).contains("past the end"),
        "{}",
        stderr(&range)
    );
    let range = strata(&data_dir, &["get", &id, "--range", "x"]);
    assert_eq!(range.status.code(), Some(2));

    let usage = strata(&data_dir, &["frobnicate"]);
    assert_eq!(usage.status.code(), Some(2));
    let usage = strata(&data_dir, &["get"]);
    assert_eq!(usage.status.code(), Some(2));

    let dir_put = strata(&data_dir, &["put", tmp.path().to_str().unwrap()]);
    assert_eq!(dir_put.status.code(), Some(1));
}

#[test]
fn verify_exits_1_on_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let file = tmp.path().join("f");
    let data = random_bytes(400_000, 12);
    std::fs::write(&file, &data).unwrap();
    let id = stdout(&strata(&data_dir, &["put", file.to_str().unwrap()]))
        .trim()
        .to_string();

    {
        let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), &data_dir).unwrap();
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &data_dir, cfs).unwrap();
        let cf = db.cf_handle(strata::rocks::CF_CHUNKS).unwrap();
        let (key, mut value) = db
            .iterator_cf(cf, rocksdb::IteratorMode::Start)
            .next()
            .unwrap()
            .unwrap();
        value[0] ^= 1;
        db.put_cf(cf, key, value).unwrap();
    }
    let verify = strata(&data_dir, &["verify", &id]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(stdout(&verify).contains("1 corrupt"), "{}", stdout(&verify));
    let verify = strata(&data_dir, &["verify", "--json"]);
    assert_eq!(verify.status.code(), Some(1));
    let get = strata(&data_dir, &["get", &id]);
    assert_eq!(get.status.code(), Some(1));
    assert!(stderr(&get).contains("corrupt"), "{}", stderr(&get));
}

/// Argument errors the command line can see without the store exit 2, like every
/// other usage error, and are found before the store is opened (or created).
#[test]
fn malformed_ids_and_ranges_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("never-created");
    let id = "0".repeat(64);
    let cases: [&[&str]; 9] = [
        &["get", "not-a-hash"],
        &["get", &id, "--range", "a..b"],
        &["get", &id, "--range", "9..3"],
        &["get", &id, "--range", "12"],
        &["stat", "abc"],
        &["rm", "abc"],
        &["verify", "abc"],
        &["tier", "move", "abc", "--to", "warm"],
        &["stat", &"g".repeat(64)],
    ];
    for args in cases {
        let out = strata(&data_dir, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    let reversed = strata(&data_dir, &["get", &id, "--range", "9..3"]);
    assert!(
        stderr(&reversed).contains("reversed"),
        "{}",
        stderr(&reversed)
    );
    let bad = strata(&data_dir, &["get", "not-a-hash"]);
    assert!(
        stderr(&bad).contains("malformed blob id"),
        "{}",
        stderr(&bad)
    );
    assert!(!data_dir.exists(), "the store was opened for a usage error");
}

/// A range that starts past the end of the blob says so (it used to be called
/// "reversed": `6000000..` became `6000000..5000000`).
#[test]
fn range_starting_past_the_end_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let file = tmp.path().join("f");
    std::fs::write(&file, random_bytes(5_000_000, 21)).unwrap();
    let put = strata(&data_dir, &["put", file.to_str().unwrap()]);
    assert!(put.status.success(), "{}", stderr(&put));
    let id = stdout(&put).trim().to_string();
    let get = strata(&data_dir, &["get", &id, "--range", "6000000.."]);
    assert_eq!(get.status.code(), Some(1), "{}", stderr(&get));
    let err = stderr(&get);
    assert!(
        err.contains("range 6000000.. starts past the end of the blob (5000000 bytes)"),
        "{err}"
    );
    assert!(!err.contains("reversed"), "{err}");
    let get = strata(&data_dir, &["get", &id, "--range", "5000000.."]);
    assert!(
        get.status.success() && get.stdout.is_empty(),
        "{}",
        stderr(&get)
    );
}

/// A wait too long for the clock (`--wait` of u64::MAX seconds, or the largest
/// `restore_wait_secs` TOML can hold) returns at once for a hot blob instead of
/// panicking on the overflow of `Instant + Duration`.
#[test]
fn huge_waits_do_not_overflow() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let file = tmp.path().join("f");
    let data = random_bytes(100_000, 22);
    std::fs::write(&file, &data).unwrap();
    let put = strata(&data_dir, &["put", file.to_str().unwrap()]);
    let id = stdout(&put).trim().to_string();
    let get = strata(&data_dir, &["get", &id, "--wait", "18446744073709551615"]);
    assert!(get.status.success(), "{}", stderr(&get));
    assert!(get.stdout == data[..]);

    let config = tmp.path().join("strata.toml");
    std::fs::write(
        &config,
        "[tiers]\nrestore_wait_secs = 9223372036854775807\n",
    )
    .unwrap();
    let get = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["get", &id])
        .env_remove("STRATA_META_URL")
        .env_remove("STRATA_DATA_DIR")
        .output()
        .unwrap();
    assert!(get.status.success(), "{}", stderr(&get));
    assert!(get.stdout == data[..]);
}

/// Log lines written to a pipe or a file carry no terminal colour codes.
#[test]
fn logs_have_no_colour_codes_off_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let file = tmp.path().join("f");
    std::fs::write(&file, random_bytes(300_000, 23)).unwrap();
    let put = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["put", file.to_str().unwrap()])
        .env("STRATA_LOG", "debug")
        .env_remove("STRATA_CONFIG")
        .env_remove("STRATA_META_URL")
        .env_remove("STRATA_DATA_DIR")
        .output()
        .unwrap();
    assert!(put.status.success(), "{}", stderr(&put));
    let err = stderr(&put);
    assert!(
        err.contains("DEBUG") || err.contains("INFO"),
        "no log lines: {err}"
    );
    assert!(!err.contains('\x1b'), "{err:?}");
}

fn strata_with(config: &Path, data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("STRATA_META_URL")
        .env_remove("STRATA_DATA_DIR")
        .env_remove("STRATA_LOG")
        .output()
        .expect("run strata")
}

/// `get --wait` returns once the restore has completed, not when the wait (or the
/// 30 s pause between checks) is over: a 1 s restore, a 60 s wait.
#[test]
fn get_wait_returns_when_the_restore_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let config = tmp.path().join("strata.toml");
    std::fs::write(
        &config,
        "[tiers]\nrestore_poll_ms = 30000\n[tiers.cold]\nrestore_delay_ms = 1000\n",
    )
    .unwrap();
    let file = tmp.path().join("f");
    let data = random_bytes(400_000, 24);
    std::fs::write(&file, &data).unwrap();
    let put = strata_with(&config, &data_dir, &["put", file.to_str().unwrap()]);
    assert!(put.status.success(), "{}", stderr(&put));
    let id = stdout(&put).trim().to_string();
    let mv = strata_with(&config, &data_dir, &["tier", "move", &id, "--to", "cold"]);
    assert!(mv.status.success(), "{}", stderr(&mv));

    let t = std::time::Instant::now();
    let get = strata_with(&config, &data_dir, &["get", &id, "--wait", "60"]);
    let elapsed = t.elapsed();
    assert!(get.status.success(), "{}", stderr(&get));
    assert!(get.stdout == data[..]);
    assert!(elapsed.as_secs() < 25, "the wait took {elapsed:?}");
}

/// A read that fails for many chunks (a zeroed warm pack) logs at most one ERROR line for
/// the read, with a count, not one line per chunk: both when the read fetches the
/// chunks ahead in one batch (the hot tier's filter knows they are not there) and when
/// it reads them one by one (deleted hot copies still "may exist" to the filter until a
/// compaction drops their tombstones).
#[test]
fn a_lost_pack_logs_one_error_line_per_read() {
    for compacted in [true, false] {
        lost_pack_errors(compacted);
    }
}

fn lost_pack_errors(compacted: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let config = tmp.path().join("strata.toml");
    std::fs::write(&config, "[gc]\ngrace_secs = 0\n").unwrap();
    let run = |args: &[&str]| strata_with(&config, &data_dir, args);
    let file = tmp.path().join("f");
    std::fs::write(&file, random_bytes(4_000_000, 25)).unwrap();
    let id = stdout(&run(&["put", file.to_str().unwrap()]))
        .trim()
        .to_string();
    let mv = run(&["tier", "move", &id, "--to", "warm"]);
    assert!(mv.status.success(), "{}", stderr(&mv));
    if compacted {
        // A gc that removes something compacts the hot tier.
        let other = tmp.path().join("g");
        std::fs::write(&other, random_bytes(100_000, 26)).unwrap();
        let other = stdout(&run(&["put", other.to_str().unwrap()]))
            .trim()
            .to_string();
        assert!(run(&["rm", &other]).status.success());
        let gc = run(&["gc"]);
        assert!(gc.status.success(), "{}", stderr(&gc));
    }
    let stat = run(&["stat", &id, "--json"]);
    let stat: serde_json::Value = serde_json::from_slice(&stat.stdout).unwrap();
    let chunks = stat["chunks"].as_u64().unwrap();
    assert!(chunks >= 30, "{chunks} chunks");
    assert_eq!(stat["tiers"]["hot"], 0);

    let mut removed = 0;
    let mut dirs = vec![data_dir.join("tiers").join("warm")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.file_name() != Some(std::ffi::OsStr::new(strata::store::IDENTITY_KEY)) {
                // Every pack is zeroed, so each chunk's only copy fails verification.
                // (A deleted pack is `Unavailable` and marks nothing: docs/tiers.md,
                // "Missing pack objects". The store identity object stays, or the
                // store would rightly refuse to open on a bucket that is not its own.)
                let len = std::fs::metadata(&p).unwrap().len() as usize;
                std::fs::write(&p, vec![0u8; len]).unwrap();
                removed += 1;
            }
        }
    }
    assert!(removed > 0);
    let get = run(&["get", &id]);
    assert_eq!(get.status.code(), Some(1), "{}", stderr(&get));
    let errors = stderr(&get).lines().filter(|l| l.contains("ERROR")).count();
    assert!(
        errors <= 1,
        "compacted {compacted}: {errors} ERROR lines for {chunks} chunks:\n{}",
        stderr(&get)
    );
    if compacted {
        assert!(
            stderr(&get).contains(&format!("bad pack copies of {chunks} chunk(s)")),
            "{}",
            stderr(&get)
        );
    }
}
