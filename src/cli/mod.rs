//! The `strata` command line. Exit status: 0 success, 1 error, 2 usage error,
//! 75 (EX_TEMPFAIL) when data is being restored from an archive class.

mod commands;
mod recover;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::{Error, ErrorKind, Result};
use crate::settings::Settings;

/// strata: a content-addressed, tiered blob store.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, long_about = None)]
pub struct Cli {
    /// Settings file (TOML). Without it the embedded defaults apply.
    #[arg(long, global = true, env = "STRATA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (overrides the settings file and STRATA_DATA_DIR).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store a file (or standard input with `-`); prints the blob id last.
    Put {
        /// File to store, or `-` for standard input.
        file: PathBuf,
        /// Print the receipt as JSON instead of the id.
        #[arg(long)]
        json: bool,
    },
    /// Write a blob, or a byte range of it, to standard output or a file.
    Get {
        /// Blob id (64 hex digits).
        id: String,
        /// Output file (written atomically); standard output if absent.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Half-open byte range `START..END` (either side may be omitted).
        #[arg(long)]
        range: Option<String>,
        /// Wait up to this many seconds for archived chunks to be restored (default:
        /// `tiers.restore_wait_secs`); exit status 75 if they are still being restored.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
    },
    /// Show a blob's size, chunks and bytes per tier.
    Stat {
        /// Blob id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List blobs.
    Ls {
        /// Print one JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Delete a blob (its chunks are reclaimed by `gc` after the grace period).
    Rm {
        /// Blob id.
        id: String,
    },
    /// Re-hash every chunk of a blob, or of the whole store; exit 1 if any is bad.
    Verify {
        /// Blob id; all chunks if absent.
        id: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reclaim chunks no blob has referenced for longer than `gc.grace_secs`.
    Gc {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Open a data directory whose write-ahead log is damaged, skipping the damaged
    /// records (their writes are lost), and list the blobs that lost data.
    Recover {
        /// Accept losing the writes in damaged log records (required: without it,
        /// opening such a directory fails and names the damaged file).
        #[arg(long, required = true)]
        accept_wal_loss: bool,
    },
    /// Move blobs between the hot, warm and cold tiers.
    Tier {
        /// What to do.
        #[command(subcommand)]
        command: TierCommand,
    },
    /// Metadata store maintenance.
    Meta {
        /// What to do.
        #[command(subcommand)]
        command: MetaCommand,
    },
}

/// `strata tier` subcommands.
#[derive(Debug, Subcommand)]
pub enum TierCommand {
    /// Move every chunk of a blob to a tier (write, verify, commit, then drop the old
    /// copies). Exit status 75 if archived chunks must be restored first.
    Move {
        /// Blob id.
        id: String,
        /// Target tier: hot, warm or cold.
        #[arg(long, value_parser = ["hot", "warm", "cold"])]
        to: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `strata meta` subcommands.
#[derive(Debug, Subcommand)]
pub enum MetaCommand {
    /// Apply schema migrations (they are also applied on connect).
    Migrate,
    /// Connect and report the schema version and row counts.
    Check,
}

/// Run the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("strata: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strata: {e}");
            ExitCode::from(exit_code(e.kind()))
        }
    }
}

/// The exit status for an error of `kind`.
pub fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::RestorePending => 75,
        _ => 1,
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    if let Some(dir) = cli.data_dir {
        settings.data_dir = dir;
    }
    commands::run(settings, cli.command).await
}

/// Parse `START..END`, `START..` or `..END` against a blob of `size` bytes.
pub fn parse_range(s: &str, size: u64) -> Result<std::ops::Range<u64>> {
    let bad = || {
        Error::invalid(format!(
            "range {s:?}: expected START..END with byte offsets"
        ))
    };
    let (a, b) = s.split_once("..").ok_or_else(bad)?;
    let start = if a.is_empty() {
        0
    } else {
        a.trim().parse().map_err(|_| bad())?
    };
    let end = if b.is_empty() {
        size
    } else {
        b.trim().parse().map_err(|_| bad())?
    };
    Ok(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse() {
        assert_eq!(parse_range("3..9", 100).unwrap(), 3..9);
        assert_eq!(parse_range("3..", 100).unwrap(), 3..100);
        assert_eq!(parse_range("..9", 100).unwrap(), 0..9);
        assert!(parse_range("3-9", 100).is_err());
        assert!(parse_range("a..9", 100).is_err());
    }
}
