//! Archived packs (DESIGN §5): one restore request per pack shared by every reader and
//! process, and reads that wait until the restores complete.

use std::collections::{BTreeSet, HashSet};
use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::fetch::shared_candidates;
use super::Store;
use crate::error::{Error, ErrorKind, Result};
use crate::id::BlobId;
use crate::meta::placement::{PackRestore, RestoreState};
use crate::model::{Health, Tier};
use crate::object::RestoreStatus;

const DAY_MS: u64 = 86_400_000;
/// The first pause of a wait for restores. Pauses double from here up to
/// `tiers.restore_poll_ms`, so a restore that completes at once (S3 servers without
/// archive delays, a local tier with a short delay) ends the wait at once, while a
/// restore of hours costs a handful of extra status checks per pack.
const FIRST_POLL: Duration = Duration::from_millis(100);
/// Chunks looked up at a time.
const LOOKUP_BATCH: usize = 512;

impl Store {
    /// Send the one restore request of an archived pack, unless another reader (in this
    /// or another process) already did: the pack's restore state is a compare-and-set.
    pub(super) async fn request_restore(&self, tier: Tier, pack: &str) -> Result<()> {
        let t = self.inner.tiers.get(tier)?;
        let days = self.inner.settings.policy.restore_days;
        let now = self.now_ms();
        let Some(rec) = self.inner.meta.pack(pack).await? else {
            // No record (written by an older version): a repeated request is harmless.
            return t.restore(pack, days).await;
        };
        if rec.restore.pending_at(now) {
            return Ok(());
        }
        let new = PackRestore {
            state: RestoreState::Requested,
            expiry_ms: Some(now + u64::from(days) * DAY_MS),
        };
        if !self
            .inner
            .meta
            .set_pack_restore(pack, &rec.restore, &new)
            .await?
        {
            return Ok(());
        }
        if let Err(e) = t.restore(pack, days).await {
            // Let the next reader try again.
            let _ = self
                .inner
                .meta
                .set_pack_restore(pack, &new, &rec.restore)
                .await;
            return Err(e);
        }
        tracing::info!(pack, days, "requested an archive restore");
        Ok(())
    }

    /// Make sure bytes `range` of the blob can be read without waiting for an archive
    /// restore: requests the restore of every archived pack involved at once (one request
    /// per pack, shared by all processes), then checks after 0.1 s, doubling the pause
    /// up to `tiers.restore_poll_ms`, until they are readable or `wait` has passed
    /// (`RestorePending` then). A wait too long for the clock to represent
    /// (`Duration::MAX`, `--wait 18446744073709551615`) has no end.
    pub async fn wait_readable(
        &self,
        id: &BlobId,
        range: Range<u64>,
        wait: Duration,
    ) -> Result<()> {
        let deadline = deadline_after(wait);
        let poll = self.restore_poll();
        let mut pause = FIRST_POLL.min(poll);
        loop {
            let pending = self.archived_packs(id, range.clone()).await?;
            if pending == 0 {
                return Ok(());
            }
            let left = time_left(deadline);
            if left.is_zero() {
                return Err(Error::new(
                    ErrorKind::RestorePending,
                    format!(
                        "{pending} pack(s) of blob {id} are being restored from an archive storage class; \
                         retry later or wait for them (get --wait SECONDS)"
                    ),
                ));
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = pause.saturating_mul(2).min(poll);
        }
    }

    /// [`Store::get_range`] (the whole blob for `None`) after [`Store::wait_readable`].
    pub async fn get_wait(
        &self,
        id: &BlobId,
        range: Option<Range<u64>>,
        wait: Duration,
    ) -> Result<Bytes> {
        self.check_open()?;
        let size = self.blob_record(id).await?.size;
        let range = range.unwrap_or(0..size);
        if range.end > size || range.start > range.end {
            return self.get_range(id, range).await; // its error
        }
        let deadline = deadline_after(wait);
        loop {
            self.wait_readable(id, range.clone(), time_left(deadline))
                .await?;
            // The read can still meet an archived copy: a hot copy recorded but lost
            // (the read marks it missing, and the next check counts it) or a restore
            // that expired in between.
            match self.get_range(id, range.clone()).await {
                Err(e)
                    if e.kind() == ErrorKind::RestorePending && !time_left(deadline).is_zero() =>
                {
                    tracing::debug!(blob = %id.short(), error = %e, "archived copy met while reading; waiting again");
                    let left = time_left(deadline);
                    tokio::time::sleep(FIRST_POLL.min(self.restore_poll()).min(left)).await;
                }
                res => return res,
            }
        }
    }

    /// How often a wait checks on archive restores (`tiers.restore_poll_ms`).
    fn restore_poll(&self) -> Duration {
        Duration::from_millis(self.inner.settings.tiers.restore_poll_ms.max(1))
    }

    /// How many of `packs` have a restore requested and not yet expired (for `stat`).
    pub(super) async fn pending_restores(&self, packs: &BTreeSet<String>) -> Result<u64> {
        let now = self.now_ms();
        let mut n = 0;
        for p in packs {
            if self
                .inner
                .meta
                .pack(p)
                .await?
                .is_some_and(|r| r.restore.pending_at(now))
            {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Archived packs holding the only readable copies of chunks of `range`; requests
    /// their restores. Returns how many are not readable yet.
    async fn archived_packs(&self, id: &BlobId, range: Range<u64>) -> Result<usize> {
        self.check_open()?;
        let rec = self.blob_record(id).await?;
        let entries = self
            .entries(&rec, range.start, range.end.min(rec.size))
            .await?;
        let mut seen = HashSet::new();
        let mut ids = Vec::new();
        for e in entries {
            if seen.insert(e.chunk) && !self.inner.chunks.contains_key(&e.chunk) {
                ids.push(e.chunk);
            }
        }
        // Whether a chunk is in this node's hot tier comes from its recorded locations:
        // asking the hot tier would read every value stored there (a key-only lookup
        // does not exist for values in blob files), so a `get --wait` of a hot blob read
        // it twice. A hot copy recorded but lost is marked missing by the read, and the
        // next round of the wait counts it here.
        let node = &self.inner.node;
        let mut packs = BTreeSet::new();
        for page in ids.chunks(LOOKUP_BATCH) {
            for locs in self.inner.meta.locations_many(page).await?.values() {
                if locs
                    .iter()
                    .any(|l| l.is_hot_on(node) && l.health == Health::Ok)
                {
                    continue;
                }
                let c = shared_candidates(locs);
                if let Some(first) = c.first().filter(|l| l.tier == Tier::Cold) {
                    packs.insert(first.pack.clone());
                }
            }
        }
        let mut pending = 0;
        for pack in packs {
            match self.inner.tiers.cold.restore_status(&pack).await? {
                RestoreStatus::Restored { expiry_ms } => {
                    self.note_restored(&pack, expiry_ms).await?
                }
                s if s.is_readable() => {}
                _ => {
                    self.request_restore(Tier::Cold, &pack).await?;
                    if self.inner.tiers.cold.store().enforces_archive() {
                        pending += 1;
                    } else {
                        // The server refused the restore and serves the object as it
                        // is (docs/objects.md); recording that lets other processes
                        // ask again instead of waiting on a restore nobody runs.
                        self.note_restored(&pack, None).await?;
                    }
                }
            }
        }
        Ok(pending)
    }

    /// Record that a requested restore has completed, so it no longer shows as pending.
    async fn note_restored(&self, pack: &str, expiry_ms: Option<u64>) -> Result<()> {
        if let Some(rec) = self.inner.meta.pack(pack).await? {
            if rec.restore.state == RestoreState::Requested {
                let done = PackRestore {
                    state: RestoreState::Restored,
                    expiry_ms: expiry_ms.or(rec.restore.expiry_ms),
                };
                self.inner
                    .meta
                    .set_pack_restore(pack, &rec.restore, &done)
                    .await?;
            }
        }
        Ok(())
    }
}

/// When a wait of `wait` from now ends; `None` for a wait longer than `Instant` can
/// represent, which therefore never ends (adding it would overflow and panic).
fn deadline_after(wait: Duration) -> Option<Instant> {
    Instant::now().checked_add(wait)
}

/// What is left of a wait ending at `deadline` (see [`deadline_after`]).
fn time_left(deadline: Option<Instant>) -> Duration {
    deadline.map_or(Duration::MAX, |d| {
        d.saturating_duration_since(Instant::now())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_past_the_clock_saturate() {
        assert!(deadline_after(Duration::MAX).is_none());
        assert!(deadline_after(Duration::from_secs(u64::MAX)).is_none());
        assert_eq!(time_left(None), Duration::MAX);
        let soon = deadline_after(Duration::from_secs(60));
        assert!(time_left(soon) > Duration::from_secs(50));
        assert!(time_left(deadline_after(Duration::ZERO)).is_zero());
    }
}
