//! The `[policy]`, `[policy.classes.NAME]`, `[workers]`, `[costs]` and `[server]`
//! sections: what the tiering engine (`src/engine/`) does and how often (docs/tiers.md,
//! "Policy").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::object::StorageClass;

/// `[policy]`: when chunks move between tiers. Every key can be overridden per class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySettings {
    /// This node's hot capacity in bytes; 0 = no capacity limit (TTL only). Default 0.
    pub hot_max_bytes: u64,
    /// Above this fraction of `hot_max_bytes` watermark demotion starts. Default 0.90.
    pub hot_high_watermark: f64,
    /// ... and runs until hot bytes are at most this fraction. Default 0.75.
    pub hot_low_watermark: f64,
    /// A hot copy not read on this node for this long goes to warm. Default 604800 (7 d).
    pub hot_idle_secs: u64,
    /// Nothing written or promoted less than this ago is demoted. Default 3600.
    pub hot_min_residency_secs: u64,
    /// A warm pack whose live chunks were all idle this long goes cold. Default 7776000
    /// (90 d) when the cold tier has an archive storage class; setting it while the cold
    /// tier has none is an error.
    pub warm_idle_secs: Option<u64>,
    /// Never write a cold object smaller than this. Default 1048576.
    pub archive_min_object_bytes: u64,
    /// Promote a warm or cold chunk to hot on its Nth read within `promote_window_secs`;
    /// 0 = never promote. Default 1.
    pub promote_after_reads: u32,
    /// See `promote_after_reads`. Default 86400.
    pub promote_window_secs: u64,
    /// Promotion budget in bytes per second; 0 = unlimited. Over it promotions are
    /// skipped (and counted), not queued without bound. Default 0.
    pub promote_max_bytes_per_sec: u64,
    /// `Bulk`, `Standard` or `Expedited`, sent with RestoreObject. Default `Standard`.
    pub restore_tier: String,
    /// Days a restored copy stays readable. Default 2.
    pub restore_days: u32,
    /// Named overrides, chosen per blob at put (`strata put --class NAME`).
    pub classes: BTreeMap<String, PolicyClass>,
}

impl Default for PolicySettings {
    fn default() -> Self {
        PolicySettings {
            hot_max_bytes: 0,
            hot_high_watermark: 0.90,
            hot_low_watermark: 0.75,
            hot_idle_secs: 604_800,
            hot_min_residency_secs: 3600,
            warm_idle_secs: None,
            archive_min_object_bytes: 1 << 20,
            promote_after_reads: 1,
            promote_window_secs: 86_400,
            promote_max_bytes_per_sec: 0,
            restore_tier: "Standard".to_string(),
            restore_days: 2,
            classes: BTreeMap::new(),
        }
    }
}

/// `[policy.classes.NAME]`: any key of `[policy]` except the node-wide capacity ones;
/// a key left out takes the `[policy]` value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyClass {
    /// See [`PolicySettings::hot_idle_secs`].
    pub hot_idle_secs: Option<u64>,
    /// See [`PolicySettings::hot_min_residency_secs`].
    pub hot_min_residency_secs: Option<u64>,
    /// See [`PolicySettings::warm_idle_secs`].
    pub warm_idle_secs: Option<u64>,
    /// See [`PolicySettings::archive_min_object_bytes`].
    pub archive_min_object_bytes: Option<u64>,
    /// See [`PolicySettings::promote_after_reads`].
    pub promote_after_reads: Option<u32>,
    /// See [`PolicySettings::promote_window_secs`].
    pub promote_window_secs: Option<u64>,
    /// See [`PolicySettings::restore_tier`].
    pub restore_tier: Option<String>,
    /// See [`PolicySettings::restore_days`].
    pub restore_days: Option<u32>,
}

/// The policy one class runs under: `[policy]` with the class's overrides applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassPolicy {
    /// The class name (`""` for the default policy).
    pub name: String,
    /// Idle time after which a hot copy is demoted, ms.
    pub hot_idle_ms: u64,
    /// Minimum residency in hot after a write or promotion, ms.
    pub hot_min_residency_ms: u64,
    /// Idle time after which a warm pack is archived, ms; `None` = never archive.
    pub warm_idle_ms: Option<u64>,
    /// Smallest cold object written.
    pub archive_min_object_bytes: u64,
    /// Reads within the window that promote a chunk (0 = never).
    pub promote_after_reads: u32,
    /// The promotion window, ms.
    pub promote_window_ms: u64,
    /// Restore tier sent with RestoreObject.
    pub restore_tier: String,
    /// Days a restored copy stays readable.
    pub restore_days: u32,
}

/// `[workers]`: seconds between passes of each worker; 0 = off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersSettings {
    /// Demotion of this node's idle hot copies. Default 60.
    pub demote_interval_secs: u64,
    /// Archiving of idle warm packs. Default 3600.
    pub archive_interval_secs: u64,
    /// Polling of requested restores. Default 30.
    pub restore_interval_secs: u64,
    /// Garbage collection. Default 3600.
    pub gc_interval_secs: u64,
    /// Scrubbing: re-verifying copies verified longer ago than
    /// `scrub.reverify_after_secs`, at `scrub.bytes_per_sec`, and repairing damaged
    /// ones. Default 3600.
    pub scrub_interval_secs: u64,
    /// How long a worker's lease on shared work lasts before another node may take the
    /// work over, seconds; renewed while the work runs. Default 60.
    pub lease_secs: u64,
}

impl Default for WorkersSettings {
    fn default() -> Self {
        WorkersSettings {
            demote_interval_secs: 60,
            archive_interval_secs: 3600,
            restore_interval_secs: 30,
            gc_interval_secs: 3600,
            scrub_interval_secs: 3600,
            lease_secs: 60,
        }
    }
}

/// `[costs]`: storage prices in US dollars per GB-month by storage class, for the
/// estimated monthly cost in `strata tier status`. Defaults are public list prices
/// (docs/tiers.md says which and when).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostsSettings {
    /// The hot tier (local disk), per GB-month.
    pub hot_gb_month: f64,
    /// Per storage class name (`STANDARD`, `GLACIER`, ...), per GB-month.
    pub storage_gb_month: BTreeMap<String, f64>,
    /// Per storage class name, per GB read back (retrieval, including a restore's);
    /// what compacting a cold pack costs besides its requests.
    pub retrieval_gb: BTreeMap<String, f64>,
    /// Per 1,000 requests (PUT, GET, HEAD, DELETE, restore), any class.
    pub requests_per_1000: f64,
}

impl Default for CostsSettings {
    fn default() -> Self {
        let storage_gb_month = [
            ("STANDARD", 0.023),
            ("STANDARD_IA", 0.0125),
            ("GLACIER_IR", 0.004),
            ("GLACIER", 0.0036),
            ("DEEP_ARCHIVE", 0.00099),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let retrieval_gb = [
            ("STANDARD", 0.0),
            ("STANDARD_IA", 0.01),
            ("GLACIER_IR", 0.03),
            ("GLACIER", 0.01),
            ("DEEP_ARCHIVE", 0.02),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        CostsSettings {
            hot_gb_month: 0.08,
            storage_gb_month,
            retrieval_gb,
            requests_per_1000: 0.05,
        }
    }
}

/// `[server]`: what `strata serve` exposes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address (`127.0.0.1:9464`) serving Prometheus text metrics at `/metrics`; unset =
    /// off (the default).
    pub metrics_listen: Option<String>,
}

impl PolicySettings {
    /// The policy of `class` (`""` = the default policy), or `None` if no such class is
    /// defined. `archive_default` says whether the cold tier has an archive storage
    /// class (then `warm_idle_secs` defaults to 90 days; else packs are not archived).
    pub fn class(&self, class: &str, archive_default: bool) -> Option<ClassPolicy> {
        let c = if class.is_empty() {
            PolicyClass::default()
        } else {
            self.classes.get(class)?.clone()
        };
        let default_warm = if archive_default {
            Some(7_776_000)
        } else {
            None
        };
        Some(ClassPolicy {
            name: class.to_string(),
            hot_idle_ms: c.hot_idle_secs.unwrap_or(self.hot_idle_secs) * 1000,
            hot_min_residency_ms: c
                .hot_min_residency_secs
                .unwrap_or(self.hot_min_residency_secs)
                * 1000,
            warm_idle_ms: c
                .warm_idle_secs
                .or(self.warm_idle_secs)
                .or(default_warm)
                .map(|s| s.saturating_mul(1000)),
            archive_min_object_bytes: c
                .archive_min_object_bytes
                .unwrap_or(self.archive_min_object_bytes),
            promote_after_reads: c.promote_after_reads.unwrap_or(self.promote_after_reads),
            promote_window_ms: c
                .promote_window_secs
                .unwrap_or(self.promote_window_secs)
                .saturating_mul(1000),
            restore_tier: c
                .restore_tier
                .clone()
                .unwrap_or_else(|| self.restore_tier.clone()),
            restore_days: c.restore_days.unwrap_or(self.restore_days),
        })
    }
}

/// The restore tiers RestoreObject accepts.
pub const RESTORE_TIERS: [&str; 3] = ["Bulk", "Standard", "Expedited"];

/// Check `[policy]`, its classes, `[workers]`, `[costs]` and `[server]`. `cold_class` is
/// the cold tier's storage class: archiving (`warm_idle_secs`) needs an archive class.
/// Every error is `InvalidInput` naming the key.
pub fn validate(
    policy: &PolicySettings,
    workers: &WorkersSettings,
    costs: &CostsSettings,
    server: &ServerSettings,
    cold_class: StorageClass,
) -> Result<()> {
    for (key, v) in [
        ("policy.hot_high_watermark", policy.hot_high_watermark),
        ("policy.hot_low_watermark", policy.hot_low_watermark),
    ] {
        // Written so that NaN fails too.
        if !(v > 0.0 && v <= 1.0) {
            return Err(Error::invalid(format!(
                "{key} = {v}: expected a fraction in (0, 1]"
            )));
        }
    }
    if policy.hot_low_watermark >= policy.hot_high_watermark {
        return Err(Error::invalid(format!(
            "policy.hot_low_watermark = {} must be below policy.hot_high_watermark = {}",
            policy.hot_low_watermark, policy.hot_high_watermark
        )));
    }
    check_keys("policy", None, policy, cold_class)?;
    for (name, class) in &policy.classes {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(Error::invalid(format!(
                "policy.classes.{name:?}: a class name is 1 or more of a-z, 0-9, _ and -"
            )));
        }
        check_keys(
            &format!("policy.classes.{name}"),
            Some(class),
            policy,
            cold_class,
        )?;
    }
    if workers.lease_secs == 0 {
        return Err(Error::invalid(
            "workers.lease_secs = 0: expected at least 1 (a lease must outlive a request)",
        ));
    }
    let bad_cost = |v: f64| !(v.is_finite() && v >= 0.0);
    if bad_cost(costs.hot_gb_month) {
        return Err(Error::invalid(format!(
            "costs.hot_gb_month = {}: expected a price of 0 or more",
            costs.hot_gb_month
        )));
    }
    for (class, v) in &costs.storage_gb_month {
        if bad_cost(*v) {
            return Err(Error::invalid(format!(
                "costs.storage_gb_month.{class} = {v}: expected a price of 0 or more"
            )));
        }
    }
    if let Some(addr) = &server.metrics_listen {
        if addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(Error::invalid(format!(
                "server.metrics_listen = {addr:?}: expected an address and port such as \"127.0.0.1:9464\""
            )));
        }
    }
    Ok(())
}

/// The keys `[policy]` and a class share: `class` is `None` for `[policy]` itself. A
/// class's unset keys take `[policy]`'s value, so combinations are checked on the
/// effective values.
fn check_keys(
    section: &str,
    class: Option<&PolicyClass>,
    policy: &PolicySettings,
    cold_class: StorageClass,
) -> Result<()> {
    let own = class.cloned().unwrap_or_else(|| PolicyClass {
        restore_tier: Some(policy.restore_tier.clone()),
        restore_days: Some(policy.restore_days),
        warm_idle_secs: policy.warm_idle_secs,
        ..PolicyClass::default()
    });
    if let Some(tier) = &own.restore_tier {
        if !RESTORE_TIERS.contains(&tier.as_str()) {
            return Err(Error::invalid(format!(
                "{section}.restore_tier = {tier:?}: expected Bulk, Standard or Expedited"
            )));
        }
    }
    if own.restore_days == Some(0) {
        return Err(Error::invalid(format!(
            "{section}.restore_days = 0: expected at least 1"
        )));
    }
    if own.warm_idle_secs.is_some() && !cold_class.is_archive() {
        return Err(Error::invalid(format!(
            "{section}.warm_idle_secs is set but tiers.cold.storage_class = {cold_class} is not an archive class (STANDARD_IA, GLACIER_IR, GLACIER or DEEP_ARCHIVE): nothing would be archived"
        )));
    }
    let after = own
        .promote_after_reads
        .unwrap_or(policy.promote_after_reads);
    let window = own
        .promote_window_secs
        .unwrap_or(policy.promote_window_secs);
    if after > 1 && window == 0 {
        return Err(Error::invalid(format!(
            "{section}.promote_window_secs = 0 with promote_after_reads = {after}: no chunk could reach {after} reads within the window"
        )));
    }
    Ok(())
}
