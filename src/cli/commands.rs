//! The work behind each subcommand.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bytes::Bytes;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::AsyncWriteExt;

use super::outfile::OutFile;
use super::output::{stdout_closed, stdout_result};
use super::{Command, MetaCommand, RangeArg, TierCommand, EXIT_STORED_UNREPORTED};
use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::settings::Settings;
use crate::store::{PutOptions, Store, BLOCK_BYTES};

/// Inputs and outputs at least this large get a progress bar (when stderr is a terminal).
const PROGRESS_MIN_BYTES: u64 = 16 << 20;

pub(super) async fn run(settings: Settings, command: Command) -> Result<ExitCode> {
    if let Command::Meta { command } = &command {
        return meta(&settings, command).await;
    }
    if let Command::Recover { accept_wal_loss } = command {
        return super::recover::run(settings, accept_wal_loss).await;
    }
    if let Command::Serve = command {
        return super::serve::run(settings).await;
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
        Command::Put { file, json, class } => {
            let options = PutOptions {
                class: class.unwrap_or_default(),
            };
            put(store, &file, json, &options).await
        }
        Command::Get {
            id,
            output,
            range,
            wait,
        } => get(store, &id, output, range, wait).await,
        Command::Tier {
            command: TierCommand::Move { id, to, json },
        } => {
            let report = store
                .move_blob(&id, crate::model::Tier::parse(&to)?)
                .await?;
            if json {
                print_json(&report)?;
            } else {
                say!(
                    "moved {} chunks to {to}: {} copies written ({} bytes, {} packs), {} old copies removed",
                    report.chunks, report.written, report.bytes_written, report.packs_written, report.copies_removed
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Tier { command } => super::tier::run(store, command).await,
        Command::Stat { id, json } => {
            let stat = store.stat(&id).await?;
            if json {
                print_json(&stat)?;
            } else {
                let t = &stat.tiers;
                say!("id:      {}", stat.id)?;
                say!("size:    {} bytes", stat.size)?;
                say!(
                    "chunks:  {} ({} distinct)",
                    stat.chunks,
                    stat.distinct_chunks
                )?;
                say!(
                    "tiers:   hot {} B, warm {} B, cold {} B",
                    t.hot,
                    t.warm,
                    t.cold
                )?;
                say!(
                    "class:   {}",
                    if stat.class.is_empty() {
                        "(default)"
                    } else {
                        &stat.class
                    }
                )?;
                say!("pin:     {}", stat.pin.map_or("none", |t| t.as_str()))?;
                if stat.pending_restores > 0 {
                    say!(
                        "restore: {} cold pack(s) being restored",
                        stat.pending_restores
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ls { json } => {
            for b in store.list().await? {
                if json {
                    say!("{}", serde_json::to_string(&b).map_err(json_err)?)?;
                } else {
                    say!("{}  {:>14}  {:>8} chunks", b.id, b.size, b.chunk_count)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Rm { id } => {
            store.delete(&id).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { id, json } => {
            let report = store.verify(id.as_ref()).await?;
            if json {
                print_json(&report)?;
            } else {
                say!("{}", report.to_string().trim_end())?;
            }
            Ok(if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Scrub { json } => {
            let report = store.scrub().await?;
            if json {
                print_json(&report)?;
            } else {
                say!("{}", report.to_string().trim_end())?;
            }
            Ok(report.exit_code())
        }
        Command::Fsck { json, repair } => {
            let report = store.fsck(repair).await?;
            if json {
                print_json(&report)?;
            } else {
                say!("{}", report.to_string().trim_end())?;
            }
            Ok(report.exit_code())
        }
        Command::Gc { json } => {
            let report = store.gc().await?;
            if json {
                print_json(&report)?;
            } else {
                say!(
                    "removed {} chunks from hot ({} bytes of chunk data; {} of them left by puts that never committed); hot tier files shrank by {} bytes",
                    report.chunks_removed,
                    report.hot_bytes_removed,
                    report.orphans_removed,
                    report.hot_bytes_reclaimed
                )?;
                say!(
                    "deleted {} pack objects no copy names: {} bytes reclaimed in warm, {} in cold; {} unreferenced chunks keep copies in other nodes' hot tiers",
                    report.packs_deleted,
                    report.warm_bytes_reclaimed,
                    report.cold_bytes_reclaimed,
                    report.unreferenced_kept
                )?;
                say!(
                    "rewrote {} sparse packs ({} bytes written), deleted {} orphan pack objects, kept {} sparse cold packs whose compaction would not pay, requested {} restores; {} object store requests",
                    report.packs_rewritten,
                    report.bytes_rewritten,
                    report.orphan_packs_deleted,
                    report.packs_kept_by_cost,
                    report.restores_requested,
                    report.requests
                )?;
                for e in &report.errors {
                    say!("error: {e}")?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Meta { .. } | Command::Recover { .. } | Command::Serve => Err(Error::internal(
            "meta, recover and serve are handled before opening",
        )),
    }
}

fn json_err(e: serde_json::Error) -> Error {
    Error::internal("json output").with_source(e)
}

pub(super) fn print_json(v: &impl serde::Serialize) -> Result<()> {
    say!("{}", serde_json::to_string_pretty(v).map_err(json_err)?)
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

async fn put(store: &Store, file: &Path, json: bool, options: &PutOptions) -> Result<ExitCode> {
    let receipt = if file == Path::new("-") {
        let bar = progress(None, "put");
        let receipt = store
            .put_stream_with(bar.wrap_async_read(tokio::io::stdin()), options)
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
        let receipt = store
            .put_blocks_with(file_blocks(f, bar.clone()), options)
            .await;
        bar.finish_and_clear();
        receipt
    };
    let receipt = receipt?;
    let printed = if json {
        print_json(&receipt)
    } else {
        note!(
            "{} {} bytes in {} chunks ({} new, {} bytes new, {} bytes reused)",
            if receipt.existed {
                "already stored:"
            } else {
                "stored"
            },
            receipt.size,
            receipt.chunks,
            receipt.new_chunks,
            receipt.new_bytes,
            receipt.reused_bytes
        );
        say!("{}", receipt.id)
    };
    // The blob is committed: a script must learn its id even when standard output
    // failed, so it goes to standard error with a status of its own.
    let why = match printed {
        Ok(()) if !stdout_closed() => return Ok(ExitCode::SUCCESS),
        Ok(()) => "standard output was closed".to_string(),
        Err(e) => e.to_string(),
    };
    note!(
        "strata: stored {} but could not write its id to standard output ({why})",
        receipt.id
    );
    Ok(ExitCode::from(EXIT_STORED_UNREPORTED))
}

async fn get(
    store: &Store,
    id: &BlobId,
    output: Option<PathBuf>,
    range: Option<RangeArg>,
    wait: Option<u64>,
) -> Result<ExitCode> {
    let size = store.head(id).await?.size;
    let range = match range {
        Some(r) => r.resolve(size)?,
        None => 0..size,
    };
    // Archived chunks are restored (all packs at once) before a byte is written.
    let wait = wait.unwrap_or(store.settings().tiers.restore_wait_secs);
    store
        .wait_readable(id, range.clone(), std::time::Duration::from_secs(wait))
        .await?;
    let mut stream = store.get_stream(id, range.clone()).await?;
    let bar = progress(Some(range.end - range.start), "get");
    match output.filter(|p| p.as_os_str() != "-") {
        None => {
            let mut out = tokio::io::stdout();
            while let Some(piece) = stream.next().await {
                let piece = piece?;
                stdout_result(out.write_all(&piece).await)?;
                if stdout_closed() {
                    break; // the reader has all it wants
                }
                bar.inc(piece.len() as u64);
            }
            stdout_result(out.flush().await)?;
        }
        Some(path) => {
            let written = async {
                let mut out = OutFile::open(&path).await?;
                while let Some(piece) = stream.next().await {
                    let piece = match piece {
                        Ok(p) => p,
                        Err(e) => {
                            out.abandon().await;
                            return Err(e);
                        }
                    };
                    if let Err(e) = out.write(&piece).await {
                        out.abandon().await;
                        return Err(e);
                    }
                    bar.inc(piece.len() as u64);
                }
                out.commit().await
            }
            .await;
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
                say!("embedded metadata: the schema is created and checked when the store opens")?;
                Ok(ExitCode::SUCCESS)
            }
            MetaCommand::Check => {
                let store = Store::open(settings.clone()).await?;
                let check = crate::meta::MetaCheck::run(store.meta().as_ref()).await;
                store.close().await?;
                let check = check?;
                print_json(&check)?;
                let problems = check.problems();
                if !problems.is_empty() {
                    note!("{}", problems.trim_end());
                }
                Ok(check.exit_code())
            }
        };
    };
    let meta = crate::meta::postgres::PostgresMeta::connect(pg).await?;
    match command {
        MetaCommand::Migrate => {
            let version = meta.migrate().await?;
            say!("schema version {version}")?;
        }
        MetaCommand::Check => {
            let check = crate::meta::MetaCheck::run(&meta).await?;
            print_json(&check)?;
            let problems = check.problems();
            if !problems.is_empty() {
                note!("{}", problems.trim_end());
            }
            return Ok(check.exit_code());
        }
    }
    Ok(ExitCode::SUCCESS)
}
