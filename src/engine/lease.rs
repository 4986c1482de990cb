//! Leases on shared work (`demote:<node>`, `pack:<name>`, `restore:<pack>`, `gc`): taken
//! from the metadata store (on its clock), renewed in the background while the work
//! runs, released at the end. Every commit made under one carries its fence, so a holder
//! whose lease lapsed (a paused process) cannot commit over the node that took over.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::error::Result;
use crate::meta::{Fence, Lease, MetaStore};

/// A lease held by this process; renewed until [`LeaseGuard::release`] or drop.
pub struct LeaseGuard {
    meta: Arc<dyn MetaStore>,
    lease: Arc<Mutex<Lease>>,
    /// `None` once stopped. The task holds the metadata store: `release` waits for it
    /// to end, so that nothing keeps the store open after its owner closed it.
    renewer: Option<JoinHandle<()>>,
}

impl LeaseGuard {
    /// Take lease `name` for `holder` for `ttl_ms`, or `None` when another holder has it.
    pub async fn acquire(
        meta: &Arc<dyn MetaStore>,
        name: &str,
        holder: &str,
        ttl_ms: u64,
    ) -> Result<Option<LeaseGuard>> {
        let ttl_ms = ttl_ms.max(1);
        let Some(lease) = meta.acquire_lease(name, holder, ttl_ms).await? else {
            return Ok(None);
        };
        let lease = Arc::new(Mutex::new(lease));
        let renewer = tokio::spawn(renew(meta.clone(), lease.clone(), ttl_ms));
        Ok(Some(LeaseGuard {
            meta: meta.clone(),
            lease,
            renewer: Some(renewer),
        }))
    }

    /// The fence commits made under this lease carry. A renewal keeps the token, so the
    /// fence stays valid while the lease is held; once it is lost the commit is refused.
    pub fn fence(&self) -> Fence {
        self.current().fence()
    }

    /// The lease as last granted.
    pub fn current(&self) -> Lease {
        self.lease.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stop renewing and give the lease up.
    pub async fn release(mut self) -> Result<()> {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
            let _ = renewer.await;
        }
        let lease = self.current();
        self.meta.release_lease(&lease).await
    }
}

impl Drop for LeaseGuard {
    /// Dropped without `release` (an error path): stop renewing; the lease lapses.
    fn drop(&mut self) {
        if let Some(renewer) = &self.renewer {
            renewer.abort();
        }
    }
}

/// Renew at a third of the lease time, so two renewals can fail before it lapses. A
/// renewal that finds the lease taken over stops: the fence then fails every commit.
async fn renew(meta: Arc<dyn MetaStore>, lease: Arc<Mutex<Lease>>, ttl_ms: u64) {
    let every = Duration::from_millis((ttl_ms / 3).max(10));
    loop {
        tokio::time::sleep(every).await;
        let (name, holder, token) = {
            let l = lease.lock().unwrap_or_else(|e| e.into_inner());
            (l.name.clone(), l.holder.clone(), l.token)
        };
        match meta.acquire_lease(&name, &holder, ttl_ms).await {
            Ok(Some(renewed)) if renewed.token == token => {
                *lease.lock().unwrap_or_else(|e| e.into_inner()) = renewed;
            }
            Ok(Some(regranted)) => {
                // It lapsed and was granted again under a new token: the work done so far
                // is under the old one and must not commit. Give the new grant back.
                tracing::warn!(lease = %name, "lease lapsed while working; its commits will be refused");
                let _ = meta.release_lease(&regranted).await;
                return;
            }
            Ok(None) => {
                tracing::warn!(lease = %name, "lease taken over while working; its commits will be refused");
                return;
            }
            Err(e) => {
                tracing::warn!(lease = %name, error = %e, "lease renewal failed; retrying");
            }
        }
    }
}
