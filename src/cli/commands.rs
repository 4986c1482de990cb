//! The work behind each subcommand.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bytes::Bytes;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::AsyncWriteExt;

use super::{parse_range, Command, MetaCommand, TierCommand};
use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::settings::Settings;
use crate::store::{Store, BLOCK_BYTES};

/// Inputs and outputs at least this large get a progress bar (when stderr is a terminal).
const PROGRESS_MIN_BYTES: u64 = 16 << 20;

pub(super) async fn run(settings: Settings, command: Command) -> Result<ExitCode> {
    if let Command::Meta { command } = &command {
        return meta(&settings, command).await;
    }
    if let Command::Recover { accept_wal_loss } = command {
        return super::recover::run(settings, accept_wal_loss).await;
    }
    let store = Store::open(settings).await?;
    let result = dispatch(&store, command).await;
    // Close even after an error, so access statistics are flushed and the WAL synced.
    let closed = store.close().await;
    let code = result?;
    closed?;
    Ok(code)
}

async fn dispatch(store: &Store, command: Command) -> Result<ExitCode> {
    match command {
        Command::Put { file, json } => put(store, &file, json).await,
        Command::Get {
            id,
            output,
            range,
            wait,
        } => get(store, &parse_id(&id)?, output, range, wait).await,
        Command::Tier {
            command: TierCommand::Move { id, to, json },
        } => {
            let report = store
                .move_blob(&parse_id(&id)?, crate::model::Tier::parse(&to)?)
                .await?;
            if json {
                print_json(&report)?;
            } else {
                println!(
                    "moved {} chunks to {to}: {} copies written ({} bytes, {} packs), {} old copies removed",
                    report.chunks, report.written, report.bytes_written, report.packs_written, report.copies_removed
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Stat { id, json } => {
            let stat = store.stat(&parse_id(&id)?).await?;
            if json {
                print_json(&stat)?;
            } else {
                let t = &stat.tiers;
                println!("id:      {}", stat.id);
                println!("size:    {} bytes", stat.size);
                println!(
                    "chunks:  {} ({} distinct)",
                    stat.chunks, stat.distinct_chunks
                );
                println!(
                    "tiers:   hot {} B, warm {} B, cold {} B",
                    t.hot, t.warm, t.cold
                );
                if stat.pending_restores > 0 {
                    println!(
                        "restore: {} cold pack(s) being restored",
                        stat.pending_restores
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ls { json } => {
            let mut out = std::io::stdout().lock();
            for b in store.list().await? {
                if json {
                    writeln!(out, "{}", serde_json::to_string(&b).map_err(json_err)?)?;
                } else {
                    writeln!(out, "{}  {:>14}  {:>8} chunks", b.id, b.size, b.chunk_count)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Rm { id } => {
            store.delete(&parse_id(&id)?).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { id, json } => {
            let id = id.as_deref().map(parse_id).transpose()?;
            let report = store.verify(id.as_ref()).await?;
            if json {
                print_json(&report)?;
            } else {
                println!(
                    "checked {} chunks ({} bytes): {} corrupt, {} missing",
                    report.chunks_checked,
                    report.bytes_checked,
                    report.corrupt.len(),
                    report.missing.len()
                );
                for c in &report.corrupt {
                    println!("corrupt chunk {c}");
                }
                for c in &report.missing {
                    println!("missing chunk {c}");
                }
            }
            Ok(if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Gc { json } => {
            let report = store.gc().await?;
            if json {
                print_json(&report)?;
            } else {
                println!(
                    "removed {} chunks from hot ({} bytes of chunk data; {} of them left by puts that never committed); hot tier files shrank by {} bytes",
                    report.chunks_removed,
                    report.hot_bytes_removed,
                    report.orphans_removed,
                    report.hot_bytes_reclaimed
                );
                println!(
                    "{} unreferenced chunks keep their warm/cold copies (no pack GC yet): {} bytes reclaimed in warm, {} in cold",
                    report.unreferenced_kept,
                    report.warm_bytes_reclaimed,
                    report.cold_bytes_reclaimed
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Meta { .. } | Command::Recover { .. } => Err(Error::internal(
            "meta and recover commands are handled before opening",
        )),
    }
}

fn parse_id(s: &str) -> Result<BlobId> {
    s.trim().parse()
}

fn json_err(e: serde_json::Error) -> Error {
    Error::internal("json output").with_source(e)
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v).map_err(json_err)?);
    Ok(())
}

/// The blocks of `file`, read on a blocking thread straight into their own buffers:
/// no second copy through an async file's staging buffer.
fn file_blocks(
    file: std::fs::File,
    bar: ProgressBar,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + Unpin {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        let mut file = file;
        loop {
            let mut block = Vec::with_capacity(BLOCK_BYTES);
            match (&mut file).take(BLOCK_BYTES as u64).read_to_end(&mut block) {
                Ok(0) => return,
                Ok(n) => {
                    bar.inc(n as u64);
                    if tx.blocking_send(Ok(Bytes::from(block))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

fn progress(len: Option<u64>, what: &str) -> ProgressBar {
    let big = len.is_none_or(|n| n >= PROGRESS_MIN_BYTES);
    if !std::io::stderr().is_terminal() || !big {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    let template = if len.is_some() {
        "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{msg} {spinner} {bytes} {bytes_per_sec}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

async fn put(store: &Store, file: &Path, json: bool) -> Result<ExitCode> {
    let receipt = if file == Path::new("-") {
        let bar = progress(None, "put");
        let receipt = store
            .put_stream(bar.wrap_async_read(tokio::io::stdin()))
            .await;
        bar.finish_and_clear();
        receipt
    } else {
        let f = std::fs::File::open(file).map_err(|e| {
            Error::from(e).context_prefix(format!("cannot open {}", file.display()))
        })?;
        let meta = f.metadata()?;
        if meta.is_dir() {
            return Err(Error::invalid(format!("{} is a directory", file.display())));
        }
        let bar = progress(Some(meta.len()), "put");
        let receipt = store.put_blocks(file_blocks(f, bar.clone())).await;
        bar.finish_and_clear();
        receipt
    };
    let receipt = receipt?;
    if json {
        print_json(&receipt)?;
    } else {
        eprintln!(
            "stored {} bytes in {} chunks ({} new, {} bytes new, {} bytes reused)",
            receipt.size,
            receipt.chunks,
            receipt.new_chunks,
            receipt.new_bytes,
            receipt.reused_bytes
        );
        println!("{}", receipt.id);
    }
    Ok(ExitCode::SUCCESS)
}

async fn get(
    store: &Store,
    id: &BlobId,
    output: Option<PathBuf>,
    range: Option<String>,
    wait: Option<u64>,
) -> Result<ExitCode> {
    let size = store.head(id).await?.size;
    let range = match range {
        Some(r) => parse_range(&r, size)?,
        None => 0..size,
    };
    // Archived chunks are restored (all packs at once) before a byte is written.
    if range.start <= range.end && range.end <= size {
        let wait = wait.unwrap_or(store.settings().tiers.restore_wait_secs);
        store
            .wait_readable(id, range.clone(), std::time::Duration::from_secs(wait))
            .await?;
    }
    let mut stream = store.get_stream(id, range.clone()).await?;
    let bar = progress(Some(range.end - range.start), "get");
    match output {
        None => {
            let mut out = tokio::io::stdout();
            while let Some(piece) = stream.next().await {
                let piece = piece?;
                out.write_all(&piece).await?;
                bar.inc(piece.len() as u64);
            }
            out.flush().await?;
        }
        Some(path) => {
            // Write beside the target and rename, so a failed read leaves no partial file.
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let name = path
                .file_name()
                .ok_or_else(|| Error::invalid(format!("{} is not a file path", path.display())))?;
            let tmp = dir.join(format!(".{}.strata-partial", name.to_string_lossy()));
            let written = async {
                let mut f = tokio::fs::File::create(&tmp).await?;
                while let Some(piece) = stream.next().await {
                    let piece = piece?;
                    f.write_all(&piece).await?;
                    bar.inc(piece.len() as u64);
                }
                f.sync_all().await?;
                tokio::fs::rename(&tmp, &path).await?;
                Ok::<(), Error>(())
            }
            .await;
            if written.is_err() {
                let _ = tokio::fs::remove_file(&tmp).await;
            }
            written.map_err(|e| e.context_prefix(format!("writing {}", path.display())))?;
        }
    }
    bar.finish_and_clear();
    Ok(ExitCode::SUCCESS)
}

async fn meta(settings: &Settings, command: &MetaCommand) -> Result<ExitCode> {
    let Some(pg) = settings.meta_postgres() else {
        return match command {
            MetaCommand::Migrate => {
                println!(
                    "embedded metadata: the schema is created and checked when the store opens"
                );
                Ok(ExitCode::SUCCESS)
            }
            MetaCommand::Check => {
                let store = Store::open(settings.clone()).await?;
                let stats = store.meta().stats().await;
                store.close().await?;
                print_json(&stats?)?;
                Ok(ExitCode::SUCCESS)
            }
        };
    };
    let meta = crate::meta::postgres::PostgresMeta::connect(pg).await?;
    match command {
        MetaCommand::Migrate => {
            let version = meta.migrate().await?;
            println!("schema version {version}");
        }
        MetaCommand::Check => {
            use crate::meta::MetaStore;
            print_json(&meta.stats().await?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
