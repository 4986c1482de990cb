//! `strata tier plan`: what a pass of each worker would do now, by the same selection
//! code the passes run, with nothing moved or touched.

use super::demote::Selection;
use super::{Engine, Plan, PlanStep};
use crate::error::Result;

impl Engine {
    pub(super) async fn make_plan(&self) -> Result<Plan> {
        let now = self.store.clock_ms();
        let tiers = self.store.pack_tiers();
        let warm_pack = self.store.settings().tiers.warm.pack_bytes as u64;
        let sel = self.select_demote(now).await?;
        let mut archive = PlanStep::default();
        if tiers.cold.class() != crate::object::StorageClass::Standard
            || self
                .classes()
                .iter()
                .any(|c| self.policy(c).warm_idle_ms.is_some())
        {
            for class in self.classes() {
                let s = self.select_archive(&class, now).await?.step();
                archive.chunks += s.chunks;
                archive.bytes += s.bytes;
                archive.objects_written += s.objects_written;
            }
        }
        let due = self.requested_restores().await?;
        let restore = PlanStep {
            chunks: 0,
            bytes: due.iter().map(|p| p.live_bytes).sum(),
            objects_written: due.len() as u64,
        };
        Ok(Plan {
            demote_idle: Selection::step(&sel.idle, warm_pack),
            demote_watermark: Selection::step(&sel.watermark, warm_pack),
            archive,
            restore,
        })
    }
}
