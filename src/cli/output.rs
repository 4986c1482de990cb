//! Standard output and standard error for the commands: writes that never panic.
//!
//! `println!` panics when standard output is closed or full, so a command whose reader
//! went away (`strata stat ID | true`) or whose output is a full disk died with exit
//! status 101 after its work was done. Every command prints through [`line`] instead:
//!
//! - A closed reader (`EPIPE`; Rust ignores `SIGPIPE`, so the write fails instead of
//!   killing the process) is a normal end of output, as `head` expects: the rest of the
//!   output is dropped, the command finishes its work, and its exit status is what it
//!   would have been. [`stdout_closed`] tells a command that must know (a `put` whose
//!   id was not delivered).
//! - Any other write error (`ENOSPC` on `/dev/full`, `EIO`) is an error of the command.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

/// Set once a write to standard output met a closed reader.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether standard output's reader has gone away (a write failed with `EPIPE`).
pub(super) fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Write `args` and a newline to standard output, flushed, so a failure shows here and
/// not at exit. Dropped silently once the reader has gone away.
pub(super) fn line(args: fmt::Arguments<'_>) -> Result<()> {
    if stdout_closed() {
        return Ok(());
    }
    let mut out = io::stdout().lock();
    let res = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    stdout_result(res)
}

/// Classify the result of a write to standard output: `Ok` for success and for a
/// reader that went away (remembered for [`stdout_closed`]), an error otherwise.
pub(super) fn stdout_result(res: io::Result<()>) -> Result<()> {
    match res {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => Err(Error::from(e).context_prefix("cannot write to standard output")),
    }
}

/// Write `args` and a newline to standard error. A diagnostic that cannot be shown is
/// dropped: failing the command (or panicking, as `eprintln!` does) for it would be worse.
pub(super) fn note(args: fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}
