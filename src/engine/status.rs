//! `strata tier status`: usage per tier, this node's watermarks, pending restores, the
//! last passes, the backlog (the plan) and the estimated monthly cost from `[costs]`.

use super::demote::watermark_bytes;
use super::{Engine, TierCost, TierStatus, Watermarks};
use crate::error::Result;

const GB: f64 = 1e9;
const DAY_MS: u64 = 86_400_000;

impl Engine {
    pub(super) async fn make_status(&self) -> Result<TierStatus> {
        let meta = self.store.meta();
        let node = self.store.node_id().to_string();
        let usage = meta.usage().await?;
        let hot_bytes = meta.hot_bytes(&node).await?;
        let p = &self.store.settings().policy;
        let watermarks = if p.hot_max_bytes == 0 {
            Watermarks {
                hot_bytes,
                state: "unlimited".into(),
                ..Watermarks::default()
            }
        } else {
            let (high, low) =
                watermark_bytes(p.hot_max_bytes, p.hot_high_watermark, p.hot_low_watermark);
            let state = if hot_bytes > high {
                "above_high"
            } else if hot_bytes > low {
                "above_low"
            } else {
                "ok"
            };
            Watermarks {
                hot_bytes,
                hot_max_bytes: p.hot_max_bytes,
                high_bytes: high,
                low_bytes: low,
                state: state.into(),
            }
        };
        let restores = self.requested_restores().await?;
        // A request records when another may be sent (request time + restore_days).
        let days = u64::from(self.store.settings().policy.restore_days);
        let oldest_restore_ms = restores
            .iter()
            .filter_map(|r| r.restore.expiry_ms)
            .map(|e| e.saturating_sub(days * DAY_MS))
            .min();
        let costs = &self.store.settings().costs;
        let tiers = self.store.pack_tiers();
        let price = |class: crate::object::StorageClass| {
            costs
                .storage_gb_month
                .get(class.as_str())
                .copied()
                .unwrap_or(0.0)
        };
        // Packs are priced by the class their tier writes now.
        let monthly_cost = vec![
            TierCost {
                tier: "hot".into(),
                bytes: usage.hot.bytes,
                usd_per_month: usage.hot.bytes as f64 / GB * costs.hot_gb_month,
            },
            TierCost {
                tier: "warm".into(),
                bytes: usage.warm.bytes,
                usd_per_month: usage.warm.bytes as f64 / GB * price(tiers.warm.class()),
            },
            TierCost {
                tier: "cold".into(),
                bytes: usage.cold.bytes,
                usd_per_month: usage.cold.bytes as f64 / GB * price(tiers.cold.class()),
            },
        ];
        Ok(TierStatus {
            node,
            usage,
            watermarks,
            pending_restores: restores.len() as u64,
            oldest_restore_ms,
            workers: meta.passes().await?,
            backlog: self.make_plan().await?,
            monthly_cost,
        })
    }
}
