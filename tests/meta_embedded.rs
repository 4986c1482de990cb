//! The metadata conformance suite against the embedded (RocksDB) store.

#[path = "common/meta_conformance.rs"]
mod meta_conformance;
#[path = "common/placement_conformance.rs"]
mod placement_conformance;

use std::sync::Arc;

use meta_conformance::Fixture;

/// A fresh embedded store in its own temporary directory (removed when the test ends).
async fn make() -> Option<Fixture> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let meta = strata::meta::embedded::EmbeddedMeta::open(dir.path())
        .expect("open embedded metadata store");
    Some(Fixture {
        store: Arc::new(meta),
        guard: Box::new(dir),
    })
}

meta_conformance_tests!(make);
placement_conformance_tests!(make);
