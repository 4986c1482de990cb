//! Whether foreground work (puts and reads of this process) is running, so background
//! passes can yield: on a small machine a demotion pass that takes every core halves
//! the puts and reads that run beside it. Process-local by nature (it is about this
//! process's CPUs and disk), and a monotonic clock, not the store's: it schedules
//! work, it orders nothing shared.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Foreground work that ended less than this ago still counts as running: a client
/// issuing reads back to back is busy between them too.
const LINGER_MS: u64 = 200;

/// Counts foreground operations in flight and remembers when the last one ended.
pub(crate) struct Foreground {
    origin: Instant,
    running: AtomicUsize,
    last_end_ms: AtomicU64,
}

impl Default for Foreground {
    fn default() -> Self {
        Foreground {
            origin: Instant::now(),
            running: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
        }
    }
}

/// One foreground operation; ends when dropped (it may live in a returned stream).
pub(crate) struct ForegroundOp(Arc<Foreground>);

impl Foreground {
    /// Mark an operation as running until the returned guard drops.
    pub(crate) fn begin(self: &Arc<Self>) -> ForegroundOp {
        self.running.fetch_add(1, Ordering::Relaxed);
        ForegroundOp(self.clone())
    }

    /// Whether an operation runs now or ended within [`LINGER_MS`].
    pub(crate) fn busy(&self) -> bool {
        if self.running.load(Ordering::Relaxed) > 0 {
            return true;
        }
        let ended = self.last_end_ms.load(Ordering::Relaxed);
        ended > 0 && self.now_ms().saturating_sub(ended) < LINGER_MS
    }

    fn now_ms(&self) -> u64 {
        // +1 so that 0 keeps meaning "never".
        self.origin.elapsed().as_millis() as u64 + 1
    }
}

impl Drop for ForegroundOp {
    fn drop(&mut self) {
        self.0.last_end_ms.store(self.0.now_ms(), Ordering::Relaxed);
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_while_running_and_shortly_after() {
        let f = Arc::new(Foreground::default());
        assert!(!f.busy(), "nothing ran yet");
        let op = f.begin();
        assert!(f.busy());
        drop(op);
        assert!(f.busy(), "just ended");
        std::thread::sleep(std::time::Duration::from_millis(LINGER_MS + 50));
        assert!(!f.busy());
    }
}
