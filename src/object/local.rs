//! [`LocalObjectStore`]: objects as files under a directory, with storage classes and
//! archive restores emulated in a JSON sidecar per object.
//!
//! Layout under `root`: `data/KEY` holds the object's bytes, `meta/KEY` its sidecar
//! (`{"v":1,"storage_class":"GLACIER","created_ms":…,"restore":{…}}`). The data file is
//! what makes an object exist; a missing sidecar means `STANDARD`. Both are written to a
//! temporary file (`.tmp-…`) in the target's directory, fsynced, renamed into place, and
//! the directory fsynced.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{
    check_range, validate_key, validate_prefix, ObjectMeta, ObjectStore, RestoreStatus,
    StorageClass, DAY_MS, LIST_PAGE,
};
use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};

/// An [`ObjectStore`] in a local directory: the embedded default for the warm and cold
/// tiers, and the one that tests the restore state machine (see the module docs).
///
/// Archive classes (`GLACIER`, `DEEP_ARCHIVE`) are unreadable (`RestorePending`) until a
/// [`restore`](ObjectStore::restore) was requested and `restore_delay_ms` has passed on
/// the injected clock; the restored copy then stays readable for the requested days.
#[derive(Clone)]
pub struct LocalObjectStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    clock: Arc<dyn Clock>,
    restore_delay_ms: u64,
    fsync: bool,
    /// Serialises sidecar read-modify-writes (restore, in-place copy) against the renames
    /// of put, copy and delete.
    meta_lock: Mutex<()>,
}

/// The sidecar kept beside each object.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sidecar {
    v: u32,
    storage_class: StorageClass,
    created_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restore: Option<LocalRestore>,
}

/// An emulated restore: requested at `requested_ms`, readable from `ready_ms` until
/// `expiry_ms` (all on the store's clock).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct LocalRestore {
    requested_ms: u64,
    ready_ms: u64,
    expiry_ms: u64,
}

impl Sidecar {
    fn new(storage_class: StorageClass, now: u64) -> Self {
        Sidecar {
            v: 1,
            storage_class,
            created_ms: now,
            restore: None,
        }
    }

    fn status(&self, now: u64) -> RestoreStatus {
        if !self.storage_class.needs_restore() {
            return RestoreStatus::NotArchived;
        }
        match self.restore {
            Some(r) if now >= r.expiry_ms => RestoreStatus::Archived,
            Some(r) if now < r.ready_ms => RestoreStatus::InProgress,
            Some(r) => RestoreStatus::Restored {
                expiry_ms: Some(r.expiry_ms),
            },
            None => RestoreStatus::Archived,
        }
    }
}

impl LocalObjectStore {
    /// A store under `root` (created on the first write). Restores of archived objects
    /// complete `restore_delay_ms` after they are requested, as `clock` tells time.
    pub fn new(root: PathBuf, clock: Arc<dyn Clock>, restore_delay_ms: u64) -> Self {
        LocalObjectStore {
            inner: Arc::new(Inner {
                root,
                clock,
                restore_delay_ms,
                fsync: true,
                meta_lock: Mutex::new(()),
            }),
        }
    }

    /// Skip the fsyncs (tests that do not survive power loss). Default: on. Call it
    /// before cloning the store: clones share one lock.
    pub fn with_fsync(self, fsync: bool) -> Self {
        let s = &self.inner;
        LocalObjectStore {
            inner: Arc::new(Inner {
                root: s.root.clone(),
                clock: s.clock.clone(),
                restore_delay_ms: s.restore_delay_ms,
                fsync,
                meta_lock: Mutex::new(()),
            }),
        }
    }

    /// The directory this store lives in.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Delete temporary files (`.tmp-PID-N`) whose writer is no longer running: what a
    /// process killed between writing a temporary file and renaming it left behind.
    /// Called when a store opens its tiers. The owner is told by its process id, so
    /// this assumes the directory is written from one machine (a temporary file of a
    /// live writer on another host could be taken for stale; its rename would then
    /// fail, and its operation with it, but no object is damaged). Returns how many
    /// were removed.
    pub async fn remove_stale_temps(&self) -> Result<u64> {
        self.blocking(|s| {
            let mut removed = 0;
            for sub in ["data", "meta"] {
                remove_stale_temps_in(&s.root.join(sub), &mut removed)?;
            }
            Ok(removed)
        })
        .await
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner)).await?
    }
}

#[async_trait]
impl ObjectStore for LocalObjectStore {
    fn describe(&self) -> String {
        format!("local:{}", self.inner.root.display())
    }

    async fn put(&self, key: &str, body: Bytes, class: StorageClass) -> Result<()> {
        validate_key(key)?;
        let key = key.to_string();
        self.blocking(move |s| s.put(&key, &body, class)).await
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        validate_key(key)?;
        let key = key.to_string();
        self.blocking(move |s| s.read(&key, None)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        validate_key(key)?;
        if check_range(key, &range)? {
            return Ok(Bytes::new());
        }
        let key = key.to_string();
        self.blocking(move |s| s.read(&key, Some(range))).await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        validate_key(key)?;
        let key = key.to_string();
        self.blocking(move |s| s.head(&key)).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        let key = key.to_string();
        self.blocking(move |s| s.delete(&key)).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>> {
        validate_prefix(prefix)?;
        let prefix = prefix.to_string();
        let start_after = start_after.map(str::to_string);
        self.blocking(move |s| s.list_page(&prefix, start_after.as_deref(), limit))
            .await
    }

    async fn copy(&self, from: &str, to: &str, class: StorageClass) -> Result<()> {
        validate_key(from)?;
        validate_key(to)?;
        let (from, to) = (from.to_string(), to.to_string());
        self.blocking(move |s| s.copy(&from, &to, class)).await
    }

    async fn restore(&self, key: &str, days: u32) -> Result<()> {
        validate_key(key)?;
        if days == 0 {
            return Err(Error::invalid("restore for 0 days"));
        }
        let key = key.to_string();
        self.blocking(move |s| s.restore(&key, days)).await
    }
}

impl Inner {
    fn data_path(&self, key: &str) -> PathBuf {
        self.root.join("data").join(key)
    }

    fn meta_path(&self, key: &str) -> PathBuf {
        self.root.join("meta").join(key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // The guarded state lives on disk: a panic elsewhere leaves nothing half-done here.
        self.meta_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sidecar of `key`; a missing one means `STANDARD`, created at the file's mtime.
    fn sidecar(&self, key: &str, data: &fs::Metadata) -> Result<Sidecar> {
        match fs::read(self.meta_path(key)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::corrupt(format!(
                    "object sidecar of {key} in {}",
                    self.root.display()
                ))
                .with_source(e)
            }),
            Err(e) if missing(&e) => {
                let mtime = data
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0);
                Ok(Sidecar::new(StorageClass::Standard, mtime))
            }
            Err(e) => Err(io_err(e, "read sidecar", key)),
        }
    }

    /// The data file's metadata; NotFound unless it is a regular file.
    fn stat(&self, key: &str) -> Result<fs::Metadata> {
        match fs::metadata(self.data_path(key)) {
            Ok(m) if m.is_file() => Ok(m),
            Ok(_) => Err(not_found(key)),
            Err(e) if missing(&e) => Err(not_found(key)),
            Err(e) => Err(io_err(e, "stat", key)),
        }
    }

    /// Error unless the object described by `sidecar` is readable now.
    fn check_readable(&self, key: &str, sidecar: &Sidecar) -> Result<()> {
        let now = self.clock.now_ms();
        let class = sidecar.storage_class;
        match sidecar.status(now) {
            RestoreStatus::NotArchived | RestoreStatus::Restored { .. } => Ok(()),
            RestoreStatus::InProgress => {
                let wait = sidecar
                    .restore
                    .map(|r| r.ready_ms.saturating_sub(now))
                    .unwrap_or(0);
                Err(Error::new(
                    ErrorKind::RestorePending,
                    format!("object {key} is in {class}: restore in progress, ready in {wait} ms"),
                ))
            }
            RestoreStatus::Archived => Err(Error::new(
                ErrorKind::RestorePending,
                format!("object {key} is in {class}: request a restore before reading it"),
            )),
        }
    }

    fn put(&self, key: &str, body: &[u8], class: StorageClass) -> Result<()> {
        let sidecar = Sidecar::new(class, self.clock.now_ms());
        let data_tmp = self.write_temp(&self.data_path(key), key, body)?;
        let meta_tmp = match self.write_temp(&self.meta_path(key), key, &to_json(&sidecar)?) {
            Ok(t) => t,
            Err(e) => {
                let _ = fs::remove_file(&data_tmp);
                return Err(e);
            }
        };
        let _guard = self.lock();
        self.install(&data_tmp, &self.data_path(key), key)
            .inspect_err(|_| {
                let _ = fs::remove_file(&meta_tmp);
            })?;
        self.install(&meta_tmp, &self.meta_path(key), key)
    }

    fn read(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        let mut file = match File::open(self.data_path(key)) {
            Ok(f) => f,
            Err(e) if missing(&e) => return Err(not_found(key)),
            Err(e) => return Err(io_err(e, "open", key)),
        };
        let meta = file.metadata().map_err(|e| io_err(e, "stat", key))?;
        if !meta.is_file() {
            return Err(not_found(key));
        }
        self.check_readable(key, &self.sidecar(key, &meta)?)?;
        let size = meta.len();
        let range = range.unwrap_or(0..size);
        if range.end > size {
            return Err(Error::invalid(format!(
                "range {}..{} is past the end of object {key} ({size} bytes)",
                range.start, range.end
            )));
        }
        let len = usize::try_from(range.end - range.start)
            .map_err(|_| Error::invalid(format!("range of object {key} too large")))?;
        let mut buf = vec![0u8; len];
        file.seek(SeekFrom::Start(range.start))
            .map_err(|e| io_err(e, "seek", key))?;
        file.read_exact(&mut buf)
            .map_err(|e| io_err(e, "read", key))?;
        Ok(Bytes::from(buf))
    }

    fn head(&self, key: &str) -> Result<ObjectMeta> {
        let data = self.stat(key)?;
        let sidecar = self.sidecar(key, &data)?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: data.len(),
            storage_class: sidecar.storage_class,
            restore: sidecar.status(self.clock.now_ms()),
            last_modified_ms: Some(sidecar.created_ms),
        })
    }

    fn delete(&self, key: &str) -> Result<()> {
        let _guard = self.lock();
        // Data first: an orphan sidecar is harmless (the next put replaces it), an
        // orphan data file would come back as a STANDARD object.
        for path in [self.data_path(key), self.meta_path(key)] {
            match fs::remove_file(&path) {
                Ok(()) => self.sync_parent(&path, key)?,
                Err(e) if missing(&e) || path.is_dir() => {}
                Err(e) => return Err(io_err(e, "delete", key)),
            }
        }
        Ok(())
    }

    fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>> {
        let data_root = self.root.join("data");
        // Walk only the deepest directory the prefix names in full.
        let dir_part = prefix.rfind('/').map(|i| &prefix[..i]).unwrap_or("");
        let mut out: Vec<ObjectMeta> = Vec::with_capacity(limit.min(LIST_PAGE));
        let mut after = start_after.map(str::to_string);
        while out.len() < limit {
            let want = limit - out.len();
            let mut keys = Vec::new();
            let page = KeyPage {
                prefix,
                after: after.as_deref(),
                limit: want,
            };
            page.walk(&data_root.join(dir_part), dir_part, &mut keys)?;
            let complete = keys.len() < want;
            after = keys.last().cloned();
            for key in keys {
                match self.head(&key) {
                    Ok(meta) => out.push(meta),
                    // Deleted while we listed: the next round fills its place.
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            if complete {
                break;
            }
        }
        Ok(out)
    }

    fn copy(&self, from: &str, to: &str, class: StorageClass) -> Result<()> {
        let now = self.clock.now_ms();
        if from == to {
            let _guard = self.lock();
            let data = self.stat(from)?;
            let sidecar = self.sidecar(from, &data)?;
            self.check_readable(from, &sidecar)?;
            if sidecar.storage_class == class {
                // S3 rewrites the object (metadata directive REPLACE): nothing changes.
                return Ok(());
            }
            let tmp = self.write_temp(
                &self.meta_path(to),
                to,
                &to_json(&Sidecar::new(class, now))?,
            )?;
            return self.install(&tmp, &self.meta_path(to), to);
        }
        let data = self.stat(from)?;
        self.check_readable(from, &self.sidecar(from, &data)?)?;
        let target = self.data_path(to);
        let data_tmp = self.temp_path(&target, to)?;
        if let Err(e) = fs::copy(self.data_path(from), &data_tmp) {
            let _ = fs::remove_file(&data_tmp);
            return Err(if missing(&e) {
                not_found(from)
            } else {
                io_err(e, "copy", to)
            });
        }
        if self.fsync {
            let synced = File::open(&data_tmp).and_then(|f| f.sync_all());
            if let Err(e) = synced {
                let _ = fs::remove_file(&data_tmp);
                return Err(io_err(e, "fsync", to));
            }
        }
        let meta_tmp = self.write_temp(
            &self.meta_path(to),
            to,
            &to_json(&Sidecar::new(class, now))?,
        );
        let meta_tmp = meta_tmp.inspect_err(|_| {
            let _ = fs::remove_file(&data_tmp);
        })?;
        let _guard = self.lock();
        self.install(&data_tmp, &target, to).inspect_err(|_| {
            let _ = fs::remove_file(&meta_tmp);
        })?;
        self.install(&meta_tmp, &self.meta_path(to), to)
    }

    fn restore(&self, key: &str, days: u32) -> Result<()> {
        let _guard = self.lock();
        let data = self.stat(key)?;
        let mut sidecar = self.sidecar(key, &data)?;
        if !sidecar.storage_class.needs_restore() {
            return Err(Error::invalid(format!(
                "restore of object {key}: its class {} needs no restore",
                sidecar.storage_class
            )));
        }
        let now = self.clock.now_ms();
        let keep_ms = u64::from(days) * DAY_MS;
        sidecar.restore = match (sidecar.status(now), sidecar.restore) {
            (RestoreStatus::InProgress, _) => return Ok(()),
            // A restored copy: extend it, as S3 does.
            (RestoreStatus::Restored { .. }, Some(r)) => Some(LocalRestore {
                expiry_ms: now.saturating_add(keep_ms),
                ..r
            }),
            _ => {
                let ready_ms = now.saturating_add(self.restore_delay_ms);
                Some(LocalRestore {
                    requested_ms: now,
                    ready_ms,
                    expiry_ms: ready_ms.saturating_add(keep_ms),
                })
            }
        };
        let path = self.meta_path(key);
        let tmp = self.write_temp(&path, key, &to_json(&sidecar)?)?;
        self.install(&tmp, &path, key)
    }

    /// A fresh temporary path in `target`'s directory, creating the directory.
    fn temp_path(&self, target: &Path, key: &str) -> Result<PathBuf> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = target
            .parent()
            .ok_or_else(|| Error::internal(format!("object path of {key} has no parent")))?;
        self.create_dirs(dir, key)?;
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        Ok(dir.join(format!(".tmp-{}-{n}", std::process::id())))
    }

    /// Write `bytes` to a new temporary file beside `target` and fsync it.
    fn write_temp(&self, target: &Path, key: &str, bytes: &[u8]) -> Result<PathBuf> {
        let tmp = self.temp_path(target, key)?;
        let written = File::create(&tmp).and_then(|mut f| {
            f.write_all(bytes)?;
            if self.fsync {
                f.sync_all()?;
            }
            Ok(())
        });
        match written {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(io_err(e, "write", key))
            }
        }
    }

    /// Rename `tmp` onto `target` and fsync the directory.
    fn install(&self, tmp: &Path, target: &Path, key: &str) -> Result<()> {
        if let Err(e) = fs::rename(tmp, target) {
            let _ = fs::remove_file(tmp);
            return Err(io_err(e, "rename", key));
        }
        self.sync_parent(target, key)
    }

    fn sync_parent(&self, path: &Path, key: &str) -> Result<()> {
        match path.parent() {
            Some(dir) if self.fsync => sync_dir(dir).map_err(|e| io_err(e, "fsync directory", key)),
            _ => Ok(()),
        }
    }

    /// `create_dir_all` that also fsyncs the parent of every directory it creates.
    fn create_dirs(&self, dir: &Path, key: &str) -> Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.create_dirs(parent, key)?;
        }
        match fs::create_dir(dir) {
            Ok(()) => self.sync_parent(dir, key),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
            // A file where the key needs a directory: another key is a prefix of this one.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(io_err(
                io::Error::new(io::ErrorKind::NotADirectory, e),
                "create directory",
                key,
            )),
            Err(e) => Err(io_err(e, "create directory", key)),
        }
    }
}

/// A directory entry as a page walk sorts it: `(order, name, is_dir)`, see
/// [`KeyPage::smallest_entries`].
type DirEntry = (String, String, bool);

/// One page of keys in key order, collected by a walk of the data directory that holds
/// at most `limit` entries of each directory on its path in memory: a bucket of any size
/// lists in bounded memory (each page reads the directories it passes again).
struct KeyPage<'a> {
    prefix: &'a str,
    after: Option<&'a str>,
    limit: usize,
}

impl KeyPage<'_> {
    /// Append to `out`, in key order, the keys under `dir` (whose key prefix is `rel`)
    /// that start with the prefix and sort after `after`, until `out` holds `limit`.
    /// Dot-files (temporary files) are skipped.
    fn walk(&self, dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<()> {
        // Entries are taken in rounds of the smallest ones not yet walked, so that a
        // huge directory is never held whole; an empty subdirectory yields no key, so
        // a round may not fill the page and the next one goes on after it.
        let mut cursor: Option<String> = None;
        while out.len() < self.limit {
            let need = self.limit - out.len();
            let (round, more) = self.smallest_entries(dir, rel, cursor.as_deref(), need)?;
            for (order, name, is_dir) in round {
                if is_dir {
                    let key = order.strip_suffix('/').unwrap_or(&order);
                    self.walk(&dir.join(&name), key, out)?;
                } else {
                    out.push(order.clone());
                }
                cursor = Some(order);
                if out.len() >= self.limit {
                    return Ok(());
                }
            }
            if !more {
                break;
            }
        }
        Ok(())
    }

    /// The `need` smallest entries of `dir` after `cursor` that may hold keys of the
    /// page, as `(order, name, is_dir)` sorted by `order` (a directory orders as its key
    /// with a trailing `/`, which is how the keys inside it sort against its
    /// siblings), and whether more were left out.
    fn smallest_entries(
        &self,
        dir: &Path,
        rel: &str,
        cursor: Option<&str>,
        need: usize,
    ) -> Result<(Vec<DirEntry>, bool)> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if missing(&e) => return Ok((Vec::new(), false)),
            Err(e) => return Err(Error::from(e).context_prefix(format!("list {}", dir.display()))),
        };
        let mut best: std::collections::BinaryHeap<DirEntry> = std::collections::BinaryHeap::new();
        let mut more = false;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            let key = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            let kind = entry.file_type()?;
            let (order, is_dir) = if kind.is_dir() {
                (format!("{key}/"), true)
            } else if kind.is_file() {
                (key.clone(), false)
            } else {
                continue;
            };
            if cursor.is_some_and(|c| order.as_str() <= c) || !self.may_hold(&order, is_dir) {
                continue;
            }
            best.push((order, name.to_string(), is_dir));
            if best.len() > need {
                best.pop();
                more = true;
            }
        }
        Ok((best.into_sorted_vec(), more))
    }

    /// Whether a file with key `order`, or a directory whose keys all start with
    /// `order`, can hold a key of the page.
    fn may_hold(&self, order: &str, is_dir: bool) -> bool {
        if !is_dir {
            return order.starts_with(self.prefix) && self.after.is_none_or(|a| order > a);
        }
        let prefix_fits = order.starts_with(self.prefix) || self.prefix.starts_with(order);
        // Every key inside sorts after `after` unless `after` is inside too or sorts
        // after the whole directory.
        let after_fits = self.after.is_none_or(|a| a.starts_with(order) || a < order);
        prefix_fits && after_fits
    }
}

/// Remove stale temporary files under `dir` (see
/// [`LocalObjectStore::remove_stale_temps`]), counting them in `removed`.
fn remove_stale_temps_in(dir: &Path, removed: &mut u64) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if missing(&e) => return Ok(()),
        Err(e) => return Err(Error::from(e).context_prefix(format!("list {}", dir.display()))),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_stale_temps_in(&entry.path(), removed)?;
            continue;
        }
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_owner) else {
            continue;
        };
        if pid == std::process::id() || process_runs(pid) {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => *removed += 1,
            Err(e) if missing(&e) => {}
            Err(e) => {
                return Err(
                    Error::from(e).context_prefix(format!("remove {}", entry.path().display()))
                )
            }
        }
    }
    Ok(())
}

/// The writer's process id in a temporary file's name (`.tmp-PID-N`).
fn temp_owner(name: &str) -> Option<u32> {
    let (pid, seq) = name.strip_prefix(".tmp-")?.split_once('-')?;
    seq.parse::<u64>().ok()?;
    pid.parse::<u32>()
        .ok()
        .filter(|p| *p > 0 && *p <= i32::MAX as u32)
}

/// Whether a process with this id exists on this machine.
fn process_runs(pid: u32) -> bool {
    #[cfg(unix)]
    {
        // Signal 0 checks existence and permission without sending anything; EPERM
        // means it exists but belongs to someone else. `pid` is positive (`temp_owner`),
        // so this never addresses a process group.
        // SAFETY: kill with signal 0 has no effect on the target.
        let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
        rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn to_json(sidecar: &Sidecar) -> Result<Vec<u8>> {
    serde_json::to_vec(sidecar).map_err(|e| Error::internal("encode object sidecar").with_source(e))
}

/// Whether an I/O error means "no such object" (missing, or a path component is a file).
fn missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

fn not_found(key: &str) -> Error {
    Error::not_found(format!("object {key}"))
}

fn io_err(e: io::Error, op: &str, key: &str) -> Error {
    match e.kind() {
        // One key is a prefix directory of another (`a` and `a/b`): S3 allows it, a
        // directory cannot.
        io::ErrorKind::NotADirectory
        | io::ErrorKind::IsADirectory
        | io::ErrorKind::DirectoryNotEmpty => Error::invalid(format!(
            "{op} object {key}: the key collides with another key's directory in the local store"
        ))
        .with_source(e),
        _ => Error::from(e).context_prefix(format!("{op} object {key}")),
    }
}
