//! The names (and labels) of strata's metrics: the interface dashboards and alerts are
//! written against (docs/tiers.md lists them). Code records through these constants.

use super::Registry;

/// Counter, labels `op` (`put`, `get`, `get_range`, `head`, `delete`, `list`, `copy`,
/// `restore`, `restore_status`) and `tier` (`warm`, `cold`): object-store requests.
pub const OBJECT_REQUESTS: &str = "strata_object_requests_total";
/// Counter, labels `op`, `tier` and `kind` (the error kind, e.g. `unavailable`):
/// object-store requests that failed.
pub const OBJECT_REQUEST_ERRORS: &str = "strata_object_request_errors_total";
/// Counter, labels `from` and `to` (tiers): chunk bytes moved between tiers.
pub const BYTES_MOVED: &str = "strata_bytes_moved_total";
/// Counter, label `state` (`requested`, `completed`, `expired`, `failed`): archive
/// restores by the state they reached.
pub const RESTORES: &str = "strata_restores_total";
/// Histogram, label `worker`: duration of each worker pass, seconds.
pub const PASS_DURATION: &str = "strata_worker_pass_seconds";
/// Counter, label `worker`: passes that failed or met errors.
pub const PASS_ERRORS: &str = "strata_worker_errors_total";
/// Counter: promotions dropped because the queue was full or over the rate limit.
pub const PROMOTION_DROPS: &str = "strata_promotion_drops_total";
/// Counter, label `cache`: lookups answered from an in-memory cache.
pub const CACHE_HITS: &str = "strata_cache_hits_total";
/// Counter, label `cache`: lookups an in-memory cache could not answer.
pub const CACHE_MISSES: &str = "strata_cache_misses_total";
/// Gauge, label `version`: always 1 while `strata serve` runs.
pub const BUILD_INFO: &str = "strata_build_info";

/// Set the `# HELP` text of every metric above.
pub fn describe_all(r: &Registry) {
    for (name, help) in [
        (
            OBJECT_REQUESTS,
            "Object-store requests by operation and tier.",
        ),
        (
            OBJECT_REQUEST_ERRORS,
            "Object-store requests that failed, by operation, tier and error kind.",
        ),
        (BYTES_MOVED, "Chunk bytes moved between tiers."),
        (RESTORES, "Archive restores by the state they reached."),
        (PASS_DURATION, "Duration of worker passes in seconds."),
        (PASS_ERRORS, "Worker passes that failed or met errors."),
        (
            PROMOTION_DROPS,
            "Promotions dropped (queue full or over the rate limit).",
        ),
        (CACHE_HITS, "Cache lookups answered from memory."),
        (CACHE_MISSES, "Cache lookups that missed."),
        (BUILD_INFO, "Always 1; the version label names the build."),
    ] {
        r.describe(name, help);
    }
}
