//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use bytes::Bytes;
use strata::{Settings, Store};

/// Deterministic pseudo-random bytes (xorshift), fast enough for 100 MiB.
pub fn random_bytes(len: usize, seed: u64) -> Bytes {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// Embedded settings in `dir`, without WAL syncs (tests do not survive power loss).
pub fn settings(dir: &Path) -> Settings {
    let mut s = Settings {
        data_dir: dir.to_path_buf(),
        ..Settings::default()
    };
    s.hot.sync = false;
    s
}

/// Open an embedded store in `dir`.
pub async fn open(dir: &Path) -> Store {
    Store::open(settings(dir)).await.expect("open store")
}

pub mod pg;

/// Embedded hot tier in `dir`, metadata in PostgreSQL at `url`.
pub fn pg_settings(dir: &Path, url: &str) -> Settings {
    let mut s = settings(dir);
    s.apply_env(|k| (k == "STRATA_META_URL").then(|| url.to_string()))
        .expect("settings");
    s.validate().expect("valid settings");
    s
}

/// Run the `strata` binary on `data_dir`, with no settings from the environment.
pub fn run_strata(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("STRATA_CONFIG")
        .env_remove("STRATA_META_URL")
        .env_remove("STRATA_DATA_DIR")
        .output()
        .expect("run strata")
}
