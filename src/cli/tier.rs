//! `strata tier pin | unpin | run | plan | status`: the tiering engine from the command
//! line, through the same [`Engine`] calls `strata serve` makes.

use std::process::ExitCode;

use clap::ValueEnum;

use super::commands::print_json;
use super::TierCommand;
use crate::engine::{Engine, PassReport, Plan, PlanStep, TierStatus, WorkerKind};
use crate::error::{Error, Result};
use crate::model::Tier;
use crate::store::Store;

/// The worker `strata tier run` runs; anything else is a usage error (exit 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkerArg {
    /// Hot → warm.
    Demote,
    /// Warm → cold.
    Archive,
    /// Requested restores.
    Restore,
    /// Garbage collection.
    Gc,
    /// Re-verification and repair of copies due (`[scrub] reverify_after_secs`).
    Scrub,
    /// Every tiering worker, in the order restore, demote, archive, gc.
    All,
}

impl WorkerArg {
    fn kinds(self) -> Vec<WorkerKind> {
        match self {
            WorkerArg::Demote => vec![WorkerKind::Demote],
            WorkerArg::Archive => vec![WorkerKind::Archive],
            WorkerArg::Restore => vec![WorkerKind::Restore],
            WorkerArg::Gc => vec![WorkerKind::Gc],
            WorkerArg::Scrub => vec![WorkerKind::Scrub],
            WorkerArg::All => WorkerKind::ALL.to_vec(),
        }
    }
}

pub(super) async fn run(store: &Store, command: TierCommand) -> Result<ExitCode> {
    let engine = Engine::new(store.clone());
    match command {
        TierCommand::Move { .. } => Err(Error::internal("tier move is handled by commands")),
        TierCommand::Pin { id, to } => {
            let to = Tier::parse(&to)?;
            store.pin(&id, Some(to)).await?;
            say!("pinned {id} to {}", to.as_str())?;
            Ok(ExitCode::SUCCESS)
        }
        TierCommand::Unpin { id } => {
            store.pin(&id, None).await?;
            say!("unpinned {id}")?;
            Ok(ExitCode::SUCCESS)
        }
        TierCommand::Run { worker, json } => run_passes(&engine, worker, json).await,
        TierCommand::Plan { json } => {
            let plan = engine.plan().await?;
            if json {
                print_json(&plan)?;
            } else {
                print_plan(&plan)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        TierCommand::Status { json } => {
            let status = engine.status().await?;
            if json {
                print_json(&status)?;
            } else {
                print_status(&status)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Run the passes one after the other; a pass that fails does not stop the next (the
/// workers are independent), but makes the exit status 1.
async fn run_passes(engine: &Engine, worker: WorkerArg, json: bool) -> Result<ExitCode> {
    let mut reports = Vec::new();
    let mut ok = true;
    for kind in worker.kinds() {
        let report = match engine.run_pass(kind).await {
            Ok(r) => r,
            Err(e) => PassReport {
                worker: kind.as_str().to_string(),
                errors: vec![e.to_string()],
                ..PassReport::default()
            },
        };
        ok &= report.errors.is_empty();
        if !json {
            print_pass(&report)?;
        }
        reports.push(report);
    }
    if json {
        print_json(&reports)?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_pass(r: &PassReport) -> Result<()> {
    say!(
        "{:<8} {:>8} ms  {} chunks, {} moved, {} objects written, {} restores, {} kept{}",
        r.worker,
        r.duration_ms,
        r.chunks_moved,
        bytes(r.bytes_moved),
        r.objects_written,
        r.restores,
        r.kept,
        match r.errors.len() {
            0 => String::new(),
            n => format!(", {n} error(s)"),
        }
    )?;
    for e in &r.errors {
        note!("strata: {}: {e}", r.worker);
    }
    Ok(())
}

fn print_plan(plan: &Plan) -> Result<()> {
    say!(
        "{:<18} {:>10} {:>12} {:>8}",
        "MOVE",
        "CHUNKS",
        "BYTES",
        "OBJECTS"
    )?;
    plan_rows(plan)
}

fn plan_rows(plan: &Plan) -> Result<()> {
    let rows: [(&str, &PlanStep); 4] = [
        ("demote (idle)", &plan.demote_idle),
        ("demote (capacity)", &plan.demote_watermark),
        ("archive", &plan.archive),
        ("restore", &plan.restore),
    ];
    for (what, s) in rows {
        say!(
            "{:<18} {:>10} {:>12} {:>8}",
            what,
            s.chunks,
            bytes(s.bytes),
            s.objects_written
        )?;
    }
    Ok(())
}

fn print_status(s: &TierStatus) -> Result<()> {
    say!("node: {}", s.node)?;
    say!("")?;
    say!(
        "{:<14} {:>12} {:>10} {:>8} {:>12}",
        "TIER",
        "BYTES",
        "CHUNKS",
        "OBJECTS",
        "USD/MONTH"
    )?;
    let cost = |tier: &str| {
        s.monthly_cost
            .iter()
            .find(|c| c.tier == tier)
            .map_or("-".to_string(), |c| format!("{:.2}", c.usd_per_month))
    };
    let u = &s.usage;
    for (tier, t) in [("hot", &u.hot), ("warm", &u.warm), ("cold", &u.cold)] {
        say!(
            "{:<14} {:>12} {:>10} {:>8} {:>12}",
            tier,
            bytes(t.bytes),
            t.chunks,
            t.objects,
            cost(tier)
        )?;
    }
    for (node, t) in &u.hot_by_node {
        say!(
            "{:<14} {:>12} {:>10}",
            format!("  hot@{node}"),
            bytes(t.bytes),
            t.chunks
        )?;
    }
    let w = &s.watermarks;
    say!("")?;
    if w.hot_max_bytes == 0 {
        say!(
            "watermarks: {} hot, no capacity limit ({})",
            bytes(w.hot_bytes),
            w.state
        )?;
    } else {
        say!(
            "watermarks: {} hot of {} (high {}, low {}): {}",
            bytes(w.hot_bytes),
            bytes(w.hot_max_bytes),
            bytes(w.high_bytes),
            bytes(w.low_bytes),
            w.state
        )?;
    }
    match s.oldest_restore_ms {
        Some(ms) => say!(
            "restores:   {} pending, oldest requested at {}",
            s.pending_restores,
            when(ms)
        )?,
        None => say!("restores:   {} pending", s.pending_restores)?,
    }
    say!("")?;
    say!(
        "{:<20} {:<8} {:<22} {:>9} {:>10} {:>12}  OUTCOME",
        "NODE",
        "WORKER",
        "LAST PASS (UTC)",
        "MS",
        "CHUNKS",
        "BYTES"
    )?;
    for p in &s.workers {
        say!(
            "{:<20} {:<8} {:<22} {:>9} {:>10} {:>12}  {}",
            p.node,
            p.worker,
            when(p.started_ms),
            p.duration_ms,
            p.chunks,
            bytes(p.bytes),
            p.error.as_deref().unwrap_or("ok")
        )?;
    }
    say!("")?;
    say!("backlog (eligible now):")?;
    print_plan(&s.backlog)
}

/// Bytes for people: `1.5 GiB`, `312 B`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A time in ms since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
fn when(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(bytes(312), "312 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(when(0), "1970-01-01 00:00:00");
        assert_eq!(when(1_709_210_096_000), "2024-02-29 12:34:56");
    }
}
