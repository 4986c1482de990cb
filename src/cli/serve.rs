//! `strata serve`: the daemon. Opens the store, starts the engine's workers on their
//! `[workers]` intervals, serves metrics on `[server] metrics_listen` if set, and runs
//! until SIGINT or SIGTERM. Then it shuts down in order:
//!
//! 1. the metrics endpoint stops accepting connections (answers in flight finish);
//! 2. the engine's workers stop: each finishes the pass it is in (which commits or
//!    abandons its batch and releases its leases) and starts no other;
//! 3. the store closes: access statistics are flushed and the hot tier synced.
//!
//! One line goes to standard error at start and one at stop (the log of a daemon).

use std::process::ExitCode;

use tokio::signal::unix::{signal, SignalKind};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::metrics::http::MetricsServer;
use crate::metrics::{names, Registry};
use crate::settings::Settings;
use crate::store::Store;
use crate::worker::WorkerSet;

pub(super) async fn run(settings: Settings) -> Result<ExitCode> {
    // Signals first: one arriving while the store opens must still stop us cleanly.
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| Error::internal("cannot handle SIGTERM").with_source(e))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| Error::internal("cannot handle SIGINT").with_source(e))?;
    // Installed before the store opens, so that its first requests are counted.
    let registry = Registry::global()?;
    metrics::gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let listen = settings.server.metrics_listen.clone();
    let workers = settings.workers.clone();
    let store = Store::open(settings).await?;
    let metrics = match &listen {
        Some(addr) => match MetricsServer::bind(addr, registry.clone()).await {
            Ok(server) => Some(server),
            Err(e) => {
                let _ = store.close().await;
                return Err(e);
            }
        },
        None => None,
    };
    let engine = Engine::new(store.clone());
    let mut set = WorkerSet::new();
    engine.start(&mut set);
    let every = |secs: u64| {
        if secs == 0 {
            "off".to_string()
        } else {
            format!("{secs}s")
        }
    };
    note!(
        "strata serve: node {} started; workers demote {}, archive {}, restore {}, gc {}, scrub {}; metrics {}",
        store.node_id(),
        every(workers.demote_interval_secs),
        every(workers.archive_interval_secs),
        every(workers.restore_interval_secs),
        every(workers.gc_interval_secs),
        every(workers.scrub_interval_secs),
        metrics
            .as_ref()
            .map_or("off".to_string(), |m| format!("on http://{}/metrics", m.local_addr()))
    );
    let why = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    note!("strata serve: {why} received, stopping");
    if let Some(m) = metrics {
        m.stop().await;
    }
    let workers_closed = set.close().await;
    let store_closed = store.close().await;
    workers_closed?;
    store_closed?;
    note!("strata serve: node {} stopped cleanly", store.node_id());
    Ok(ExitCode::SUCCESS)
}
