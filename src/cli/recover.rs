//! `strata recover --accept-wal-loss`: the explicit way past a damaged write-ahead log
//! (docs/design.md, "Write-ahead log damage").

use std::process::ExitCode;

use crate::error::{Error, Result};
use crate::rocks::{self, WalDamage};
use crate::settings::Settings;
use crate::store::Store;

pub(super) async fn run(mut settings: Settings, accept_wal_loss: bool) -> Result<ExitCode> {
    if !accept_wal_loss {
        return Err(Error::invalid(
            "recover needs --accept-wal-loss: it drops the writes in damaged log records",
        ));
    }
    let dir = settings.data_dir.clone();
    // Read before opening: the recovery deletes the damaged log once its readable
    // records are flushed.
    let damage: Option<WalDamage> = if dir.is_dir() {
        tokio::task::spawn_blocking(move || rocks::wal::find_damage(&dir)).await??
    } else {
        None
    };
    settings.hot.accept_wal_loss = damage.is_some();
    let store = Store::open(settings).await?;
    let result = report(&store, damage.as_ref()).await;
    let closed = store.close().await;
    result?;
    closed?;
    Ok(ExitCode::SUCCESS)
}

async fn report(store: &Store, damage: Option<&WalDamage>) -> Result<()> {
    let Some(d) = damage else {
        say!("no damaged write-ahead log record found: nothing to recover")?;
        return Ok(());
    };
    tracing::warn!(file = %d.file.display(), offset = d.offset, records = d.damaged_records, "recovered past a damaged write-ahead log: the writes in its damaged records are lost");
    say!(
        "recovered past {} damaged record(s) of {} (first at byte {})",
        d.damaged_records,
        d.file.display(),
        d.offset
    )?;
    for id in &d.lost_blobs {
        if !store.contains(id).await? {
            say!("lost blob {id}: its commit was in a damaged record")?;
        }
    }
    if d.undecodable_records > 0 {
        say!(
            "{} damaged record(s) could not be decoded; blobs committed in them are gone without a trace here",
            d.undecodable_records
        )?;
    }
    // A blob whose commit survived may have lost chunk writes that sat in a damaged
    // record before it.
    let mut damaged = 0u64;
    for blob in store.list().await? {
        let v = store.verify(Some(&blob.id)).await?;
        if !v.is_clean() {
            damaged += 1;
            say!(
                "damaged blob {}: {} chunk(s) missing, {} corrupt",
                blob.id,
                v.missing.len(),
                v.corrupt.len()
            )?;
        }
    }
    say!("{damaged} committed blob(s) lost data")?;
    Ok(())
}
