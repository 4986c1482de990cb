//! The metadata conformance suites against the embedded (RocksDB) store.

#[path = "common/engine_conformance.rs"]
mod engine_conformance;
#[path = "common/meta_conformance.rs"]
mod meta_conformance;
#[path = "common/placement_conformance.rs"]
mod placement_conformance;

use std::sync::Arc;

use engine_conformance::{EngineFixture, Lapse};
use meta_conformance::Fixture;
use strata::clock::ManualClock;
use strata::meta::embedded::EmbeddedMeta;

/// A fresh embedded store in its own temporary directory (removed when the test ends).
async fn make() -> Option<Fixture> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let meta = EmbeddedMeta::open(dir.path()).expect("open embedded metadata store");
    Some(Fixture {
        store: Arc::new(meta),
        guard: Box::new(dir),
    })
}

/// Leases granted by the engine checks on the embedded store.
const TTL_MS: u64 = 30_000;

/// A fresh embedded store on a manual clock, which the checks move past a lease's ttl
/// instead of sleeping.
async fn make_engine() -> Option<EngineFixture> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let clock = ManualClock::new(meta_conformance::T0);
    let meta = EmbeddedMeta::open_with_clock(dir.path(), clock.clone())
        .expect("open embedded metadata store");
    let run = Arc::new(move || {
        clock.advance(TTL_MS + 1);
        Box::pin(async {}) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
    });
    Some(EngineFixture {
        fixture: Fixture {
            store: Arc::new(meta),
            guard: Box::new(dir),
        },
        lapse: Lapse {
            ttl_ms: TTL_MS,
            run,
        },
    })
}

meta_conformance_tests!(make);
placement_conformance_tests!(make);
engine_conformance_tests!(make_engine);
