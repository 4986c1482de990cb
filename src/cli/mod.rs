//! The `strata` command line.
//!
//! Exit status:
//!
//! - 0: success. Also when standard output's reader went away before everything was
//!   printed (`strata ls | head -1`): the work was done, and a closed pipe is a normal
//!   end of output. `verify` and `fsck` still exit 1 if they found damage.
//! - 1: an error, named on standard error (`strata: not found: ...`). Also when
//!   standard output cannot be written for another reason (a full disk).
//! - 2: a usage error, found before the store is opened: an unknown command or option,
//!   a malformed blob id, a malformed or reversed `--range`.
//! - 74 (EX_IOERR): `put` stored the blob but could not write its id (or receipt) to
//!   standard output; standard error's last line is then `strata: stored ID ...`.
//! - 75 (EX_TEMPFAIL): data is being restored from an archive class.

/// `println!` that returns an error instead of panicking; see [`output`].
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::output::line(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics; see [`output`].
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::cli::output::note(format_args!($($arg)*))
    };
}

mod commands;
mod outfile;
mod output;
mod recover;
mod serve;
mod tier;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::{Error, ErrorKind, Result};
use crate::id::BlobId;
use crate::settings::Settings;

/// Exit status of a `put` that stored the blob but could not print its id.
pub const EXIT_STORED_UNREPORTED: u8 = 74;
/// Exit status while data is being restored from an archive class.
pub const EXIT_RESTORE_PENDING: u8 = 75;

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
        /// Policy class of the blob (a `[policy.classes.NAME]` section); default policy
        /// when absent.
        #[arg(long, value_name = "NAME")]
        class: Option<String>,
    },
    /// Write a blob, or a byte range of it, to standard output or a file.
    Get {
        /// Blob id (64 hex digits).
        #[arg(value_parser = parse_id)]
        id: BlobId,
        /// Output file, or `-` for standard output (the default). A regular file is
        /// replaced atomically (its permissions kept); a device or FIFO is written to; a
        /// symbolic link is followed.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Half-open byte range `START..END` (either side may be omitted).
        #[arg(long, value_parser = RangeArg::parse)]
        range: Option<RangeArg>,
        /// Wait up to this many seconds for archived chunks to be restored (default:
        /// `tiers.restore_wait_secs`); exit status 75 if they are still being restored.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
    },
    /// Show a blob's size, chunks and bytes per tier.
    Stat {
        /// Blob id.
        #[arg(value_parser = parse_id)]
        id: BlobId,
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
        #[arg(value_parser = parse_id)]
        id: BlobId,
    },
    /// Check every copy (hot, warm, cold) of every chunk of a blob, or of the whole store
    /// with every manifest; exit 1 if anything is damaged.
    Verify {
        /// Blob id; all chunks if absent.
        #[arg(value_parser = parse_id)]
        id: Option<BlobId>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-verify every copy this node can read, oldest verified first, at
    /// `[scrub] bytes_per_sec`, and repair damaged copies from healthy ones; exit 1 if a
    /// referenced chunk is left without a healthy copy.
    Scrub {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check every invariant between metadata and stored bytes (reference counts, a
    /// healthy copy of every referenced chunk, pack indexes against recorded copies,
    /// objects without records and records without objects, live bytes); one line per
    /// problem. Exit 1 if an invariant is broken (orphans awaiting their grace period
    /// do not count).
    Fsck {
        /// Print the report as JSON (problems as a list, each with a `kind`).
        #[arg(long)]
        json: bool,
        /// Fix what can be fixed without losing data, and say what could not be.
        #[arg(long)]
        repair: bool,
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
    /// Run the tiering engine's workers (and the metrics endpoint, if
    /// `[server] metrics_listen` is set) until SIGINT or SIGTERM.
    Serve,
    /// Move blobs between tiers, pin them, and run, plan or inspect the tiering engine.
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
        #[arg(value_parser = parse_id)]
        id: BlobId,
        /// Target tier: hot, warm or cold.
        #[arg(long, value_parser = ["hot", "warm", "cold"])]
        to: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pin a blob: the workers never demote its chunks below this tier.
    Pin {
        /// Blob id.
        #[arg(value_parser = parse_id)]
        id: BlobId,
        /// The lowest tier its chunks may be moved to: hot or warm.
        #[arg(long, value_parser = ["hot", "warm"])]
        to: String,
    },
    /// Remove a blob's pin: the policy alone places its chunks again.
    Unpin {
        /// Blob id.
        #[arg(value_parser = parse_id)]
        id: BlobId,
    },
    /// Run one pass of a worker now (the code `strata serve` runs); exit status 1 if a
    /// pass failed or met errors.
    Run {
        /// Which worker: demote, archive, restore, gc, or all (in that order: restore,
        /// demote, archive, gc).
        #[arg(value_enum)]
        worker: tier::WorkerArg,
        /// Print the pass reports as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what a pass of each worker would do now, changing nothing.
    Plan {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Usage per tier, watermarks, restores, the workers' last passes, the backlog and
    /// the estimated monthly storage cost.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `strata meta` subcommands.
#[derive(Debug, Subcommand)]
pub enum MetaCommand {
    /// Apply schema migrations (they are also applied on connect).
    Migrate,
    /// Report the schema version and row counts, and compare every reference count
    /// with the manifests; exit 1 on a mismatch.
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
            note!("strata: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            note!("strata: {e}");
            ExitCode::from(exit_code(e.kind()))
        }
    }
}

/// The exit status for an error of `kind`.
pub fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::RestorePending => EXIT_RESTORE_PENDING,
        _ => 1,
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: in a log file or a pipe they are noise.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    if let Some(dir) = cli.data_dir {
        settings.data_dir = dir;
    }
    let (dir, hot) = (settings.data_dir.clone(), settings.hot.clone());
    commands::run(settings, cli.command)
        .await
        .map_err(|e| crate::rocks::name_full_disk(e, &dir, &hot))
}

/// A blob id from the command line (surrounding whitespace ignored).
fn parse_id(s: &str) -> Result<BlobId> {
    s.trim().parse()
}

/// A `--range` as given: `START..END`, `START..` or `..END`. Its syntax (and order, when
/// both ends are given) is checked while the command line is parsed; its ends against
/// the blob's size by [`RangeArg::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeArg {
    start: Option<u64>,
    end: Option<u64>,
}

impl RangeArg {
    /// Parse the syntax; a reversed range (`9..3`) is refused here.
    pub fn parse(s: &str) -> Result<RangeArg> {
        let bad = || {
            Error::invalid(format!(
                "range {s:?}: expected START..END with byte offsets"
            ))
        };
        let (a, b) = s.split_once("..").ok_or_else(bad)?;
        let end_of = |t: &str| -> Result<Option<u64>> {
            let t = t.trim();
            if t.is_empty() {
                Ok(None)
            } else {
                t.parse().map(Some).map_err(|_| bad())
            }
        };
        let (start, end) = (end_of(a)?, end_of(b)?);
        if let (Some(a), Some(b)) = (start, end) {
            if a > b {
                return Err(Error::invalid(format!(
                    "range {a}..{b} is reversed: START must not exceed END"
                )));
            }
        }
        Ok(RangeArg { start, end })
    }

    /// The byte range within a blob of `size` bytes; `InvalidInput` if it starts or
    /// ends past the end of the blob.
    pub fn resolve(&self, size: u64) -> Result<std::ops::Range<u64>> {
        let start = self.start.unwrap_or(0);
        if start > size {
            return Err(Error::invalid(format!(
                "range {self} starts past the end of the blob ({size} bytes)"
            )));
        }
        let end = self.end.unwrap_or(size);
        if end > size {
            return Err(Error::invalid(format!(
                "range {self} reaches past the end of the blob ({size} bytes)"
            )));
        }
        Ok(start..end)
    }
}

impl std::fmt::Display for RangeArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(a) = self.start {
            write!(f, "{a}")?;
        }
        f.write_str("..")?;
        if let Some(b) = self.end {
            write!(f, "{b}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse() {
        let r = |s: &str, size| RangeArg::parse(s).and_then(|r| r.resolve(size));
        assert_eq!(r("3..9", 100).unwrap(), 3..9);
        assert_eq!(r("3..", 100).unwrap(), 3..100);
        assert_eq!(r("..9", 100).unwrap(), 0..9);
        assert_eq!(r("100..", 100).unwrap(), 100..100);
        assert!(RangeArg::parse("3-9").is_err());
        assert!(RangeArg::parse("a..9").is_err());
        let e = RangeArg::parse("9..3").unwrap_err();
        assert!(e.to_string().contains("reversed"), "{e}");
        let e = r("6000000..", 5_000_000).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(
            e.to_string()
                .contains("range 6000000.. starts past the end of the blob (5000000 bytes)"),
            "{e}"
        );
        let e = r("2..99", 5).unwrap_err();
        assert!(e.to_string().contains("reaches past the end"), "{e}");
    }
}
