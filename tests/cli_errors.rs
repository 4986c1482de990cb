//! Errors of the `strata` binary a user can fix, run as a user would meet them: no
//! permission on the data directory or the input file, an empty setting, a full disk,
//! settings out of range.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn command(bin: &Path) -> Command {
    let mut c = Command::new(bin);
    c.env_remove("STRATA_CONFIG")
        .env_remove("STRATA_META_URL")
        .env_remove("STRATA_DATA_DIR")
        .env_remove("STRATA_LOG");
    c
}

fn strata(args: &[&str]) -> Output {
    command(Path::new(env!("CARGO_BIN_EXE_strata")))
        .args(args)
        .output()
        .expect("run strata")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Whether this process ignores file permissions (root, or CAP_DAC_OVERRIDE): it can
/// create a file in a directory of mode 555.
fn bypasses_permissions(scratch: &Path) -> bool {
    let dir = scratch.join("perm-check");
    std::fs::create_dir(&dir).expect("mkdir");
    chmod(&dir, 0o555);
    let bypass = std::fs::write(dir.join("f"), b"").is_ok();
    chmod(&dir, 0o755);
    bypass
}

/// Runs the binary as a user that file permissions apply to. As root that is
/// `nobody` (uid 65534) through `setpriv`, with a copy of the binary where that user
/// can execute it; otherwise this user.
struct Unprivileged {
    bin: PathBuf,
    setpriv: bool,
}

impl Unprivileged {
    /// `None` (after saying why) when the test cannot run here; under CI a failure.
    fn new(scratch: &Path) -> Option<Self> {
        if !bypasses_permissions(scratch) {
            return Some(Unprivileged {
                bin: PathBuf::from(env!("CARGO_BIN_EXE_strata")),
                setpriv: false,
            });
        }
        let works = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "true"])
            .status()
            .is_ok_and(|s| s.success());
        if !works {
            let why = "running as root and `setpriv --reuid=65534` does not work here";
            assert!(!ci(), "{why}");
            eprintln!("skipped: {why}");
            return None;
        }
        // The build directory may sit under /root (mode 700): copy the binary out.
        let bin = scratch.join("strata");
        std::fs::copy(env!("CARGO_BIN_EXE_strata"), &bin).expect("copy binary");
        chmod(&bin, 0o755);
        Some(Unprivileged { bin, setpriv: true })
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut c = if self.setpriv {
            let mut c = command(Path::new("setpriv"));
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(&self.bin);
            c
        } else {
            command(&self.bin)
        };
        c.args(args).env("HOME", "/").output().expect("run strata")
    }
}

/// A scratch directory every user can enter (a tempdir is mode 700).
fn scratch() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    chmod(tmp.path(), 0o755);
    tmp
}

#[test]
fn a_data_directory_this_user_cannot_write_is_invalid_input_naming_it() {
    let tmp = scratch();
    let Some(user) = Unprivileged::new(tmp.path()) else {
        return;
    };
    // An existing directory of another owner (or read-only), and one this user would
    // have to create inside it.
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    chmod(&data, 0o555);
    for dir in [data.clone(), data.join("sub")] {
        let out = user.run(&["--data-dir", dir.to_str().expect("utf-8"), "ls"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("strata: invalid input: cannot"), "{err}");
        assert!(
            err.contains(&format!("data directory {}", dir.display())),
            "{err}"
        );
        assert!(err.contains("permission denied"), "{err}");
        assert!(!err.contains("O_DIRECT"), "a bogus O_DIRECT warning: {err}");
        assert!(!err.contains("internal"), "{err}");
    }
    chmod(&data, 0o755);
}

#[test]
fn an_input_file_this_user_cannot_read_is_invalid_input_naming_it() {
    let tmp = scratch();
    let Some(user) = Unprivileged::new(tmp.path()) else {
        return;
    };
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    chmod(&data, 0o777);
    let secret = tmp.path().join("secret.bin");
    std::fs::write(&secret, b"not for everyone").expect("write");
    chmod(&secret, 0o000);
    let out = user.run(&[
        "--data-dir",
        data.to_str().expect("utf-8"),
        "put",
        secret.to_str().expect("utf-8"),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "strata: invalid input: cannot open {}: permission denied",
            secret.display()
        )),
        "{err}"
    );
}

#[test]
fn an_empty_data_dir_variable_is_invalid_input() {
    let tmp = scratch();
    let out = command(Path::new(env!("CARGO_BIN_EXE_strata")))
        .current_dir(tmp.path())
        .env("STRATA_DATA_DIR", "")
        .arg("ls")
        .output()
        .expect("run strata");
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert_ne!(out.status.code(), Some(101), "{err}");
    assert!(
        err.contains("strata: invalid input: STRATA_DATA_DIR is empty"),
        "{err}"
    );
    // Nothing was created in the working directory.
    assert_eq!(std::fs::read_dir(tmp.path()).expect("ls").count(), 0);
}

fn config(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("strata.toml");
    std::fs::write(&path, toml).expect("write config");
    path
}

#[test]
fn a_chunking_section_with_only_max_works_and_a_misspelled_key_is_named() {
    let tmp = scratch();
    let data = tmp.path().join("data");
    let input = tmp.path().join("in.bin");
    std::fs::write(&input, vec![7u8; 100_000]).expect("write");
    let cfg = config(tmp.path(), "[chunking]\nmax = 524288\n");
    let out = strata(&[
        "--config",
        cfg.to_str().expect("utf-8"),
        "--data-dir",
        data.to_str().expect("utf-8"),
        "put",
        input.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    let cfg = config(tmp.path(), "[chunking]\nminn = 4096\n");
    let out = strata(&["--config", cfg.to_str().expect("utf-8"), "ls"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("strata: invalid input: settings file"),
        "{err}"
    );
    assert!(err.contains("unknown field `minn`"), "{err}");
}

#[test]
fn a_busy_restore_poll_is_refused() {
    let tmp = scratch();
    let cfg = config(tmp.path(), "[tiers]\nrestore_poll_ms = 0\n");
    let out = strata(&[
        "--config",
        cfg.to_str().expect("utf-8"),
        "--data-dir",
        tmp.path().join("data").to_str().expect("utf-8"),
        "ls",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("strata: invalid input: tiers.restore_poll_ms = 0: expected at least 100"),
        "{err}"
    );
}

/// A small tmpfs mounted for the test's life, if this process may mount.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, bytes: u64) -> Option<Tmpfs> {
        std::fs::create_dir(at).expect("mkdir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(at)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            // Mounting needs root (CAP_SYS_ADMIN); a full disk cannot be made otherwise.
            eprintln!("skipped: cannot mount a tmpfs here to fill a disk");
            return None;
        }
        Some(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_named_not_internal() {
    let tmp = scratch();
    let Some(small) = Tmpfs::mount(&tmp.path().join("small"), 16 << 20) else {
        return;
    };
    let input = tmp.path().join("in.bin");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let bytes: Vec<u8> = (0..48 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&input, &bytes).expect("write input");

    // A put into a store on the full filesystem.
    let data = small.0.join("data");
    let out = strata(&[
        "--data-dir",
        data.to_str().expect("utf-8"),
        "put",
        input.to_str().expect("utf-8"),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("strata: unavailable:"), "{err}");
    assert!(err.contains("disk full"), "{err}");
    assert!(
        err.contains(&format!("data directory {}", data.display())),
        "{err}"
    );
    assert!(!err.contains("internal"), "{err}");

    // The store stays usable, and a write of this process's own (an output file) that
    // meets the full disk says so too.
    let elsewhere = tmp.path().join("data");
    let put = strata(&[
        "--data-dir",
        elsewhere.to_str().expect("utf-8"),
        "put",
        input.to_str().expect("utf-8"),
    ]);
    assert!(put.status.success(), "{}", stderr(&put));
    let id = String::from_utf8_lossy(&put.stdout).trim().to_string();
    let target = small.0.join("out.bin");
    let out = strata(&[
        "--data-dir",
        elsewhere.to_str().expect("utf-8"),
        "get",
        &id,
        "-o",
        target.to_str().expect("utf-8"),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("strata: unavailable:"), "{err}");
    assert!(err.contains("disk full: no space left on device"), "{err}");
}
