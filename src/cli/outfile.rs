//! `get -o PATH`: where the bytes of a blob go, and how they get there.
//!
//! - A path that names a character or block device, a FIFO or a socket is written to
//!   directly: opened for writing without truncation, no temporary file, no rename
//!   (`-o /dev/null` must leave `/dev/null` a device).
//! - A symbolic link is followed (resolved with `canonicalize`), and its target is
//!   written by these same rules; the link itself is never replaced. A link whose
//!   target cannot be resolved is refused.
//! - A regular file, or a path that does not exist, is written through a temporary
//!   file in the same directory, created exclusively (`O_CREAT|O_EXCL`) under a name
//!   no other writer uses: `.NAME.strata-partial.PID.RANDOM`. It is written, fsynced,
//!   given the replaced file's permission bits (and owner, where allowed), renamed over
//!   the target, and the directory is fsynced. Two writers of one path each rename a
//!   whole file of their own, so the result is one of them, never a mix. A failed read
//!   removes the temporary file; only a killed process leaves one, recognisable by its
//!   name (and by the PID of the process that wrote it).

use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};

/// The marker in the names of temporary output files.
pub(super) const PARTIAL_MARKER: &str = ".strata-partial.";
/// Bytes of the target's name kept in a temporary file's name, so that name stays
/// under the 255-byte limit of common filesystems with the marker, PID and random part.
const NAME_BYTES: usize = 200;
/// Attempts at a temporary name before giving up (each collision is another writer or
/// a stale file with the same random part: vanishingly rare).
const TEMP_ATTEMPTS: u32 = 16;

/// An output opened by [`OutFile::open`]: write with [`OutFile::write`], then
/// [`OutFile::commit`] or, after a failure, [`OutFile::abandon`].
pub(super) struct OutFile {
    file: tokio::fs::File,
    /// `Some` for a file written beside its target and renamed over it.
    replace: Option<Replace>,
    /// Whether a direct write ends with an fsync (block devices; FIFOs and character
    /// devices have nothing to sync).
    sync_direct: bool,
}

struct Replace {
    tmp: PathBuf,
    dest: PathBuf,
    dir: PathBuf,
}

impl OutFile {
    /// Open `path` for the bytes of a `get`, by the rules of this module.
    pub(super) async fn open(path: &Path) -> Result<OutFile> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || open_blocking(&path)).await?
    }

    /// Append `bytes`.
    pub(super) async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.file.write_all(bytes).await?;
        Ok(())
    }

    /// Make the written bytes durable and, for a regular file, put them in place.
    pub(super) async fn commit(mut self) -> Result<()> {
        let Some(r) = self.replace.take() else {
            self.file.flush().await?;
            if self.sync_direct {
                self.file.sync_all().await?;
            }
            return Ok(());
        };
        let done = async {
            self.file.flush().await?;
            self.file.sync_all().await?;
            tokio::fs::rename(&r.tmp, &r.dest).await?;
            Ok::<(), Error>(())
        }
        .await;
        if let Err(e) = done {
            let _ = tokio::fs::remove_file(&r.tmp).await;
            return Err(e);
        }
        // The rename is durable once the directory is.
        let dir = r.dir;
        tokio::task::spawn_blocking(move || File::open(&dir)?.sync_all()).await??;
        Ok(())
    }

    /// Remove the temporary file of an output that will not be completed.
    pub(super) async fn abandon(self) {
        if let Some(r) = self.replace {
            drop(self.file);
            let _ = tokio::fs::remove_file(&r.tmp).await;
        }
    }
}

fn open_blocking(path: &Path) -> Result<OutFile> {
    let (dest, existing) = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (path.to_path_buf(), None),
        Err(e) => return Err(e.into()),
        Ok(m) if m.file_type().is_symlink() => {
            let target = std::fs::canonicalize(path).map_err(|e| {
                Error::invalid(format!(
                    "{} is a symbolic link whose target cannot be resolved; \
                     not replacing the link",
                    path.display()
                ))
                .with_source(e)
            })?;
            let m = std::fs::metadata(&target)?;
            (target, Some(m))
        }
        Ok(m) => (path.to_path_buf(), Some(m)),
    };
    if let Some(m) = &existing {
        if m.is_dir() {
            return Err(Error::invalid(format!("{} is a directory", dest.display())));
        }
        if !m.is_file() {
            let file = OpenOptions::new().write(true).open(&dest)?;
            return Ok(OutFile {
                file: tokio::fs::File::from_std(file),
                replace: None,
                sync_direct: m.file_type().is_block_device(),
            });
        }
    }
    let name = dest
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{} is not a file path", dest.display())))?;
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let (tmp, file) = create_temp(&dir, name, existing.as_ref())?;
    Ok(OutFile {
        file: tokio::fs::File::from_std(file),
        replace: Some(Replace { tmp, dest, dir }),
        sync_direct: false,
    })
}

/// Create the temporary file for `name` in `dir` exclusively, with the permission bits
/// (and, where allowed, the owner) of the file it will replace.
fn create_temp(dir: &Path, name: &OsStr, existing: Option<&Metadata>) -> Result<(PathBuf, File)> {
    let pid = std::process::id();
    let mut attempt = 0;
    let (tmp, file) = loop {
        let tmp = dir.join(partial_name(name, pid, random_u64()));
        let mut opts = OpenOptions::new();
        // Owner-only until the replaced file's bits are copied: a mode-600 file's
        // contents are never readable by others, not even half written.
        opts.write(true)
            .create_new(true)
            .mode(if existing.is_some() { 0o600 } else { 0o666 });
        match opts.open(&tmp) {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                attempt += 1;
                if attempt >= TEMP_ATTEMPTS {
                    return Err(Error::from(e).context_prefix(format!(
                        "cannot create a temporary file in {}",
                        dir.display()
                    )));
                }
            }
            Err(e) => {
                return Err(Error::from(e).context_prefix(format!(
                    "cannot create a temporary file in {}",
                    dir.display()
                )))
            }
        }
    };
    if let Some(m) = existing {
        // Owner first: changing it clears set-id bits, and the mode is set after.
        // Only root may give a file away; elsewhere the writer owns its output.
        let _ = std::os::unix::fs::fchown(&file, Some(m.uid()), Some(m.gid()));
        // Permission bits only: set-id and sticky bits are not carried over to new
        // contents.
        let mode = std::fs::Permissions::from_mode(m.permissions().mode() & 0o777);
        if let Err(e) = file.set_permissions(mode) {
            drop(file);
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
    }
    Ok((tmp, file))
}

/// `.NAME.strata-partial.PID.RANDOM`, with `NAME` cut to [`NAME_BYTES`].
pub(super) fn partial_name(name: &OsStr, pid: u32, random: u64) -> OsString {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len().min(NAME_BYTES) + 48);
    out.push(b'.');
    out.extend_from_slice(&bytes[..bytes.len().min(NAME_BYTES)]);
    out.extend_from_slice(format!("{PARTIAL_MARKER}{pid}.{random:016x}").as_bytes());
    OsString::from_vec(out)
}

/// A random number from the standard library's randomly seeded hasher: the exclusive
/// create is what guarantees uniqueness, this only makes collisions rare.
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_names_are_recognisable_and_bounded() {
        let n = partial_name(OsStr::new("out.bin"), 4242, 0xabc);
        assert_eq!(
            n,
            OsStr::new(".out.bin.strata-partial.4242.0000000000000abc")
        );
        let long = "x".repeat(255);
        let n = partial_name(OsStr::new(&long), u32::MAX, u64::MAX);
        assert!(n.len() <= 255, "{}", n.len());
        assert_ne!(random_u64(), random_u64());
    }
}
