//! The switch the fault-injection wrappers share (`hot::faults`, `meta::faults`): let a
//! number of calls through, then fail every later one, as a disk filling up or a
//! connection dropping halfway through a put would.

use std::sync::atomic::{AtomicU64, Ordering};

/// Lets calls through until it is armed and `limit` calls in all have passed; every call
/// after that fails. Starts disarmed (no call fails).
#[derive(Debug)]
pub struct FailAfter {
    limit: AtomicU64,
    passed: AtomicU64,
}

impl Default for FailAfter {
    fn default() -> Self {
        FailAfter {
            limit: AtomicU64::new(u64::MAX),
            passed: AtomicU64::new(0),
        }
    }
}

impl FailAfter {
    /// Fail every call once `limit` calls in all (counted since creation) have passed.
    pub fn arm(&self, limit: u64) {
        self.limit.store(limit, Ordering::SeqCst);
    }

    /// Let every call through again.
    pub fn disarm(&self) {
        self.arm(u64::MAX);
    }

    /// Calls let through so far.
    pub fn passed(&self) -> u64 {
        self.passed.load(Ordering::SeqCst)
    }

    /// Whether this call may go on; counts it if so. Atomic, so concurrent callers
    /// never let more than `limit` through.
    pub fn pass(&self) -> bool {
        self.passed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.limit.load(Ordering::SeqCst)).then_some(n + 1)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lets_through_until_armed_limit_then_fails_until_disarmed() {
        let f = FailAfter::default();
        assert!((0..10).all(|_| f.pass()));
        f.arm(12);
        assert!(f.pass() && f.pass());
        assert!(!f.pass());
        assert_eq!(f.passed(), 12);
        f.disarm();
        assert!(f.pass());
        assert_eq!(f.passed(), 13);
    }
}
