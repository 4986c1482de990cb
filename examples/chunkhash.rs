//! The "chunk + hash" baseline of `scripts/realdata.sh`: the work a `put` cannot avoid,
//! on one thread, over bytes already in memory. For each file: read it whole (not
//! timed), then time a plain loop of FastCDC 2020 cut points with a BLAKE3 hash of every
//! chunk, plus the BLAKE3 hash of the whole file, which is the blob id `strata put`
//! prints.
//!
//! The chunking parameters are strata's: the defaults, or `[chunking]` of the settings
//! file in `STRATA_CONFIG` (the file `strata` itself reads), so the baseline cuts the same
//! chunks as the `put` it stands beside.
//!
//! ```sh
//! cargo run --release --example chunkhash -- [--repeat N] FILE...
//! ```
//!
//! Prints one line per file and repetition, tab-separated: seconds of the timed loop,
//! bytes, chunks, blob id, file name.

use std::hint::black_box;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use strata::{ChunkerParams, Settings};

/// The timed part: no allocation, no I/O, nothing a `put` would not also do.
fn chunk_and_hash(data: &[u8], p: &ChunkerParams) -> (blake3::Hash, usize) {
    let blob = blake3::hash(data);
    let mut chunks = 0;
    for c in fastcdc::v2020::FastCDC::new(data, p.min, p.avg, p.max) {
        black_box(blake3::hash(&data[c.offset..c.offset + c.length]));
        chunks += 1;
    }
    (blob, chunks)
}

fn usage() -> ExitCode {
    eprintln!("usage: chunkhash [--repeat N] FILE...");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut repeat = 1usize;
    let mut files = Vec::new();
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        if a == "--repeat" {
            match args.next().and_then(|n| n.to_str()?.parse().ok()) {
                Some(n) if n > 0 => repeat = n,
                _ => return usage(),
            }
        } else if a.to_str().is_some_and(|s| s.starts_with('-')) {
            return usage();
        } else {
            files.push(PathBuf::from(a));
        }
    }
    if files.is_empty() {
        return usage();
    }

    let config = std::env::var_os("STRATA_CONFIG")
        .filter(|c| !c.is_empty())
        .map(PathBuf::from);
    let params = match Settings::load(config.as_deref()) {
        Ok(s) => s.chunking,
        Err(e) => {
            eprintln!("chunkhash: {e}");
            return ExitCode::FAILURE;
        }
    };

    for file in &files {
        // One file in memory at a time: three 1.3 GB inputs need not fit together.
        let data = match std::fs::read(file) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("chunkhash: {}: {e}", file.display());
                return ExitCode::FAILURE;
            }
        };
        for _ in 0..repeat {
            let t = Instant::now();
            let (blob, chunks) = black_box(chunk_and_hash(black_box(&data), &params));
            let secs = t.elapsed().as_secs_f64();
            println!(
                "{secs:.6}\t{}\t{chunks}\t{blob}\t{}",
                data.len(),
                file.display()
            );
        }
    }
    ExitCode::SUCCESS
}
