//! The one way background work runs (DESIGN §8): named workers ticking on an interval,
//! a shared cancellation token, panics captured and reported, and an ordered, awaited
//! `close()` that runs each worker's final tick (e.g. a last flush) before returning.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// A unit of background work.
pub trait Worker: Send + Sync + 'static {
    /// Name for logs and reports.
    fn name(&self) -> &str;
    /// Do one round of work. Errors are logged and the worker keeps ticking.
    fn tick(&self) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>>;
    /// Whether `close()` runs one more tick: yes for workers holding buffered work (the
    /// access statistics), no for policy passes, which would otherwise run a whole pass
    /// while the daemon is shutting down.
    fn tick_on_close(&self) -> bool {
        true
    }
}

struct Running {
    name: String,
    token: CancellationToken,
    handle: JoinHandle<()>,
    /// The worker itself, for workers the set owns ([`WorkerSet::start_owned`]).
    _owned: Option<Arc<dyn Worker>>,
}

/// Runs workers and shuts them down in reverse start order.
#[derive(Default)]
pub struct WorkerSet {
    running: Vec<Running>,
}

impl WorkerSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Start `worker`, ticking every `every`. On shutdown it ticks once more so that
    /// buffered work (such as access statistics) is not lost.
    ///
    /// The task holds the worker weakly: a worker whose owner was dropped without
    /// `close()` (a caller's early return, a simulated crash) is freed with it, along
    /// with what it holds (such as the database and its lock), and its task ends.
    pub fn start(&mut self, worker: Arc<dyn Worker>, every: Duration) {
        self.spawn(worker, every, false);
    }

    /// [`Self::start`] for a worker nothing else holds (the engine's policy workers):
    /// the set keeps it alive until `close()` or until the set is dropped. With
    /// [`Self::start`] such a worker would be freed at once and never tick.
    pub fn start_owned(&mut self, worker: Arc<dyn Worker>, every: Duration) {
        self.spawn(worker, every, true);
    }

    fn spawn(&mut self, worker: Arc<dyn Worker>, every: Duration, own: bool) {
        let owned = own.then(|| worker.clone());
        let token = CancellationToken::new();
        let child = token.clone();
        let name = worker.name().to_string();
        let weak = Arc::downgrade(&worker);
        drop(worker);
        let handle = tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.tick().await;
            loop {
                tokio::select! {
                    _ = child.cancelled() => break,
                    _ = interval.tick() => {
                        let Some(worker) = weak.upgrade() else { return };
                        if let Err(e) = worker.tick().await {
                            tracing::warn!(worker = worker.name(), error = %e, "background tick failed");
                        }
                    }
                }
            }
            if let Some(worker) = weak.upgrade().filter(|w| w.tick_on_close()) {
                if let Err(e) = worker.tick().await {
                    tracing::warn!(worker = worker.name(), error = %e, "final tick failed");
                }
            }
        });
        self.running.push(Running {
            name,
            token,
            handle,
            _owned: owned,
        });
    }

    /// Stop every worker, newest first, awaiting each. Reports the first panic.
    pub async fn close(&mut self) -> Result<()> {
        let mut first_err = None;
        while let Some(r) = self.running.pop() {
            r.token.cancel();
            if let Err(e) = r.handle.await {
                tracing::error!(worker = %r.name, error = %e, "worker panicked");
                first_err.get_or_insert_with(|| {
                    Error::internal(format!("worker {} panicked", r.name)).with_source(e)
                });
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for WorkerSet {
    /// Dropped without `close()`: tell the tasks to stop (they cannot be awaited here).
    fn drop(&mut self) {
        for r in &self.running {
            r.token.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counter(AtomicUsize);
    impl Worker for Counter {
        fn name(&self) -> &str {
            "counter"
        }
        fn tick(&self) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> {
            Box::pin(async move {
                self.0.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn close_runs_a_final_tick() {
        let c = Arc::new(Counter(AtomicUsize::new(0)));
        let mut set = WorkerSet::new();
        set.start(c.clone(), Duration::from_secs(3600));
        set.close().await.unwrap();
        assert_eq!(c.0.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn owned_worker_ticks_without_another_holder() {
        let c = Arc::new(Counter(AtomicUsize::new(0)));
        let weak = Arc::downgrade(&c);
        let mut set = WorkerSet::new();
        set.start_owned(c, Duration::from_millis(10));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while weak.upgrade().unwrap().0.load(Ordering::SeqCst) < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "owned worker never ticked"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        set.close().await.unwrap();
        drop(set);
        assert!(
            weak.upgrade().is_none(),
            "closed set still holds its worker"
        );
    }

    #[tokio::test]
    async fn dropped_worker_is_freed_and_its_task_ends() {
        let c = Arc::new(Counter(AtomicUsize::new(0)));
        let mut set = WorkerSet::new();
        set.start(c.clone(), Duration::from_millis(5));
        let weak = Arc::downgrade(&c);
        drop(c);
        assert!(
            weak.upgrade().is_none(),
            "the task does not keep the worker alive"
        );
        let handle = set.running.pop().unwrap().handle;
        tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .unwrap()
            .unwrap();
    }
}
