//! Where the `strata` binary's output goes: `get -o` onto devices, FIFOs, symbolic
//! links, files with restrictive permissions and paths written by two processes at
//! once; and commands whose standard output is closed or full.

mod support;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::random_bytes;

fn cmd(data_dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
    c.arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("STRATA_CONFIG")
        .env_remove("STRATA_META_URL")
        .env_remove("STRATA_DATA_DIR")
        .env_remove("STRATA_LOG");
    c
}

fn strata(data_dir: &Path, args: &[&str]) -> Output {
    cmd(data_dir, args).output().expect("run strata")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Put `data` into a store in `data_dir`; returns the blob id.
fn put(data_dir: &Path, data: &[u8]) -> String {
    let file = data_dir.with_extension("input");
    std::fs::write(&file, data).expect("write input");
    let out = strata(data_dir, &["put", file.to_str().expect("path")]);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Neither a panic nor its exit status.
fn assert_no_panic(o: &Output) {
    assert_ne!(o.status.code(), Some(101), "{}", stderr(o));
    assert!(!stderr(o).contains("panicked"), "{}", stderr(o));
}

fn partials(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().contains(".strata-partial"))
        .collect()
}

#[test]
fn get_o_writes_through_devices_and_fifos() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().join("data");
    let data = random_bytes(300_000, 1);
    let id = put(&data_dir, &data);

    let null = strata(&data_dir, &["get", &id, "-o", "/dev/null"]);
    assert!(null.status.success(), "{}", stderr(&null));
    let m = std::fs::symlink_metadata("/dev/null").expect("stat /dev/null");
    assert!(m.file_type().is_char_device(), "/dev/null was replaced");

    // A full device is an error, and stays a device.
    let full = strata(&data_dir, &["get", &id, "-o", "/dev/full"]);
    assert_eq!(full.status.code(), Some(1), "{}", stderr(&full));
    let m = std::fs::symlink_metadata("/dev/full").expect("stat /dev/full");
    assert!(m.file_type().is_char_device(), "/dev/full was replaced");

    let fifo = tmp.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(&fifo).expect("read fifo"))
    };
    let get = strata(&data_dir, &["get", &id, "-o", fifo.to_str().expect("path")]);
    assert!(get.status.success(), "{}", stderr(&get));
    let got = reader.join().expect("reader");
    assert!(got == data[..], "the FIFO's reader got {} bytes", got.len());
    let m = std::fs::symlink_metadata(&fifo).expect("stat fifo");
    assert!(m.file_type().is_fifo(), "the FIFO was replaced");
    assert!(partials(tmp.path()).is_empty());

    // `-o -` is standard output.
    let dash = strata(&data_dir, &["get", &id, "-o", "-"]);
    assert!(dash.status.success(), "{}", stderr(&dash));
    assert!(dash.stdout == data[..]);
    assert!(!Path::new("-").exists() && !data_dir.join("-").exists());
}

#[test]
fn get_o_keeps_permissions_and_follows_symlinks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().join("data");
    let data = random_bytes(200_000, 2);
    let id = put(&data_dir, &data);

    let secret = tmp.path().join("secret.bin");
    std::fs::write(&secret, b"old").expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let get = strata(
        &data_dir,
        &["get", &id, "-o", secret.to_str().expect("path")],
    );
    assert!(get.status.success(), "{}", stderr(&get));
    assert!(std::fs::read(&secret).expect("read") == data[..]);
    let mode = std::fs::metadata(&secret)
        .expect("stat")
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o600, "mode {mode:o}");

    let target = tmp.path().join("target.bin");
    std::fs::write(&target, b"old").expect("write");
    let link = tmp.path().join("link.bin");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let get = strata(&data_dir, &["get", &id, "-o", link.to_str().expect("path")]);
    assert!(get.status.success(), "{}", stderr(&get));
    let m = std::fs::symlink_metadata(&link).expect("lstat");
    assert!(m.file_type().is_symlink(), "the link was replaced");
    assert!(std::fs::read(&target).expect("read target") == data[..]);

    // A link to nowhere is refused and left alone.
    let dangling = tmp.path().join("dangling.bin");
    std::os::unix::fs::symlink(tmp.path().join("nowhere/x"), &dangling).expect("symlink");
    let get = strata(
        &data_dir,
        &["get", &id, "-o", dangling.to_str().expect("path")],
    );
    assert_eq!(get.status.code(), Some(1), "{}", stderr(&get));
    assert!(stderr(&get).contains("symbolic link"), "{}", stderr(&get));
    assert!(std::fs::symlink_metadata(&dangling)
        .expect("lstat")
        .file_type()
        .is_symlink());
    assert!(partials(tmp.path()).is_empty());
}

/// Two processes (two data directories, different blobs) write one output path at
/// once: the file ends up exactly one blob, and whoever exits 0 wrote a whole blob.
#[test]
fn concurrent_get_o_to_one_path_never_mixes_bytes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let a = random_bytes(12 << 20, 3);
    let b = random_bytes(12 << 20, 4);
    let (id_a, id_b) = (put(&dir_a, &a), put(&dir_b, &b));
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).expect("mkdir");
    let out = out_dir.join("blob.bin");
    for round in 0..4 {
        let spawn = |dir: &Path, id: &str| {
            cmd(dir, &["get", id, "-o", out.to_str().expect("path")])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        };
        let (pa, pb) = (spawn(&dir_a, &id_a), spawn(&dir_b, &id_b));
        let (ra, rb) = (
            pa.wait_with_output().expect("wait a"),
            pb.wait_with_output().expect("wait b"),
        );
        for r in [&ra, &rb] {
            assert_no_panic(r);
        }
        assert!(
            ra.status.success() || rb.status.success(),
            "round {round}: {} / {}",
            stderr(&ra),
            stderr(&rb)
        );
        let got = std::fs::read(&out).expect("read output");
        assert!(
            got == a[..] || got == b[..],
            "round {round}: the output is neither blob ({} bytes)",
            got.len()
        );
        assert!(partials(&out_dir).is_empty(), "{:?}", partials(&out_dir));
    }
}

/// A `get -o` killed mid-write leaves its temporary file under a name that says what
/// it is and which process wrote it.
#[test]
fn killed_get_o_leaves_a_recognisable_partial() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().join("data");
    let data = random_bytes(96 << 20, 5);
    let id = put(&data_dir, &data);
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).expect("mkdir");
    let out = out_dir.join("big.bin");
    // The window between creating the temporary file and renaming it is short on a
    // fast disk: try until one kill lands inside it.
    for _ in 0..20 {
        let mut child = cmd(&data_dir, &["get", &id, "-o", out.to_str().expect("path")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let pid = child.id();
        let found = loop {
            if let Some(p) = partials(&out_dir).pop() {
                break Some(p);
            }
            if child.try_wait().expect("try_wait").is_some() {
                break None;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        };
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(&out);
        let Some(partial) = found else {
            continue;
        };
        let name = partial
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let prefix = format!(".big.bin.strata-partial.{pid}.");
        assert!(name.starts_with(&prefix), "{name}");
        let random = &name[prefix.len()..];
        assert!(
            random.len() == 16 && random.chars().all(|c| c.is_ascii_hexdigit()),
            "{name}"
        );
        return;
    }
    panic!("no kill landed while the output was being written");
}

#[test]
fn closed_or_full_stdout_never_panics() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().join("data");
    let data = random_bytes(150_000, 6);
    let file = tmp.path().join("in.bin");
    std::fs::write(&file, &data).expect("write");
    let file = file.to_str().expect("path");
    let id = put(&data_dir, &data);

    let to = |args: &[&str], stdout: Stdio| -> Output {
        cmd(&data_dir, args)
            .stdout(stdout)
            .output()
            .expect("run strata")
    };
    let closed = || {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        Stdio::from(writer)
    };
    let full = || Stdio::from(std::fs::File::create("/dev/full").expect("open /dev/full"));

    // A put that committed says so, with its id, when it cannot print the id.
    for args in [&["put", file][..], &["put", "--json", file][..]] {
        for (what, out) in [("closed", to(args, closed())), ("full", to(args, full()))] {
            assert_no_panic(&out);
            assert_eq!(out.status.code(), Some(74), "{what}: {}", stderr(&out));
            let last = stderr(&out).lines().last().unwrap_or_default().to_string();
            assert!(last.contains(&format!("stored {id}")), "{what}: {last}");
        }
    }

    // A closed pipe is a normal end of output: exit 0, nothing on stderr.
    for args in [
        &["stat", &id][..],
        &["stat", "--json", &id][..],
        &["ls"][..],
        &["verify"][..],
        &["gc"][..],
        &["meta", "check"][..],
        &["get", &id][..],
    ] {
        let out = to(args, closed());
        assert_no_panic(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).is_empty(), "{args:?}: {}", stderr(&out));
    }

    // A full output is an error.
    for args in [
        &["stat", &id][..],
        &["ls"][..],
        &["verify", &id][..],
        &["gc"][..],
        &["get", &id][..],
    ] {
        let out = to(args, full());
        assert_no_panic(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("standard output"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}
