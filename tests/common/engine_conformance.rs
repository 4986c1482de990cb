//! Conformance checks of [`EngineStore`](strata::meta::EngineStore) (the invariants in
//! the doc comment of `src/meta/engine.rs`), run against every metadata store beside the
//! `meta_conformance` suite, whose helpers they share:
//!
//! ```ignore
//! #[path = "common/meta_conformance.rs"]
//! mod meta_conformance;
//! #[path = "common/engine_conformance.rs"]
//! mod engine_conformance;
//!
//! async fn make_engine() -> Option<engine_conformance::EngineFixture> { /* ... */ }
//! engine_conformance_tests!(make_engine);
//! ```
//!
//! Leases are measured on the store's own clock, so each store says how a check makes a
//! lease lapse ([`Lapse`]): the embedded store moves its injected clock past the ttl;
//! PostgreSQL, whose clock is `now()`, grants a short ttl and sleeps past it.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use strata::meta::{
    Fence, HotCopy, HotOrder, MetaStore, PackRecord, PackRestore, PassRecord, PinCounts,
    PlacementChange, RestoreState, TierUsage,
};
use strata::model::{Health, Location, Tier, VerifyRecord};
use strata::object::StorageClass;
use strata::{ChunkId, ErrorKind};

use crate::meta_conformance::{
    blob_id, chunk, commit_of, commit_ok, key, warm, Fixture, NODE, OTHER, T0,
};

/// How a check makes the leases it holds lapse on the store's clock.
#[derive(Clone)]
pub struct Lapse {
    /// The ttl every check grants its leases with (ms).
    pub ttl_ms: u64,
    /// Returns once every lease granted with `ttl_ms` before the call has lapsed on the
    /// store's clock (moves an injected clock, or sleeps past the ttl).
    pub run: Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>,
}

impl Lapse {
    /// Let every lease granted so far lapse.
    pub async fn wait(&self) {
        (self.run)().await
    }
}

/// A fresh, empty store, and how to make its leases lapse.
pub struct EngineFixture {
    /// The store and what must outlive it.
    pub fixture: Fixture,
    /// See [`Lapse`].
    pub lapse: Lapse,
}

/// Generates one `#[tokio::test]` per engine check, each on a store from `$make`
/// (an `async fn() -> Option<EngineFixture>`; `None` skips).
#[macro_export]
macro_rules! engine_conformance_tests {
    ($make:path) => {
        $crate::engine_conformance_tests!(@each $make;
            engine_lease_is_exclusive_and_renewal_keeps_token,
            engine_lease_concurrent_acquire_has_one_winner,
            engine_lease_lapse_and_release_take_new_tokens,
            engine_live_leases_by_prefix,
            engine_fenced_commit_is_refused_and_writes_nothing,
            engine_commit_placement_is_atomic_and_keeps_last_copy,
            engine_racing_moves_of_one_copy_leave_one_new_copy,
            engine_hot_index_orders_and_pages,
            engine_hot_index_by_class,
            engine_touch_hot_keeps_later_time,
            engine_hot_bytes_track_every_change,
            engine_pins_count_distinct_chunks_per_blob,
            engine_archive_candidates_follow_pack_reads,
            engine_pack_locations_by_offset,
            engine_dead_packs_wait_for_grace_and_min_keep,
            engine_restore_requests_page_by_name,
            engine_list_packs_pages_by_name,
            engine_recount_pack_live_bytes_sums_its_copies,
            engine_usage_sums_tiers_and_nodes,
            engine_passes_keep_the_last_per_worker,
        );
    };
    (@each $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(f) = $make().await else { return };
                $crate::engine_conformance::$name(f.fixture.store.clone(), f.lapse.clone()).await;
                drop(f);
            }
        )*
    };
}

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

fn hot_on(n: u32, node: &str, length: u64) -> Location {
    Location::hot(chunk(n), node, length, T0)
}

fn warm_pack(name: &str, class: &str, created_ms: u64, size: u64) -> PackRecord {
    PackRecord {
        id: name.to_string(),
        tier: Tier::Warm,
        storage_class: StorageClass::Standard,
        size,
        live_bytes: size,
        created_ms,
        restore: PackRestore::NONE,
        class: class.to_string(),
        min_keep_until_ms: None,
    }
}

/// Pack GC's view: a pack is dead once no copy names it, and only past the grace cutoff
/// and its minimum storage duration; the delete re-checks in one atomic step.
pub async fn engine_dead_packs_wait_for_grace_and_min_keep(s: Arc<dyn MetaStore>, _l: Lapse) {
    let s = &*s;
    commit_ok(
        s,
        &commit_of("a", &[(chunk(1), 10), (chunk(2), 10)], NODE, true),
    )
    .await;
    let mut kept = warm_pack("warm/p2", "", T0, 20);
    kept.min_keep_until_ms = Some(T0 + 1000);
    let change = PlacementChange {
        packs: vec![warm_pack("warm/p1", "", T0, 10), kept],
        add: vec![
            warm(chunk(1), "warm/p1", 0, 10),
            warm(chunk(2), "warm/p2", 0, 10),
        ],
        node: NODE.to_string(),
        ..Default::default()
    };
    s.commit_placement(None, &change).await.expect("commit");
    let names = |v: Vec<PackRecord>| v.into_iter().map(|p| p.id).collect::<Vec<_>>();
    let dead = |before: u64, now: u64| async move {
        names(
            s.dead_packs(before, now, None, 10)
                .await
                .expect("dead packs"),
        )
    };
    assert!(
        dead(T0, T0 + 5000).await.is_empty(),
        "both packs hold copies"
    );
    assert!(!s.delete_dead_pack("warm/p1", T0, T0).await.expect("delete"));
    // Their hot copies remain: the warm copies may go.
    let removed = s
        .remove_locations(
            &[
                warm(chunk(1), "warm/p1", 0, 10),
                warm(chunk(2), "warm/p2", 0, 10),
            ],
            NODE,
        )
        .await
        .expect("remove");
    assert_eq!(removed.len(), 2);
    assert!(dead(T0 - 1, T0).await.is_empty(), "within the grace period");
    assert_eq!(
        dead(T0, T0).await,
        vec!["warm/p1".to_string()],
        "p2 is kept"
    );
    assert_eq!(
        dead(T0, T0 + 1000).await,
        vec!["warm/p1".to_string(), "warm/p2".to_string()]
    );
    assert_eq!(
        names(
            s.dead_packs(T0, T0 + 1000, Some("warm/p1"), 10)
                .await
                .expect("page")
        ),
        vec!["warm/p2".to_string()]
    );
    assert!(!s.delete_dead_pack("warm/p2", T0, T0).await.expect("delete"));
    assert!(!s
        .delete_dead_pack("warm/p1", T0 - 1, T0)
        .await
        .expect("delete"));
    assert!(s.delete_dead_pack("warm/p1", T0, T0).await.expect("delete"));
    assert!(!s.delete_dead_pack("warm/p1", T0, T0).await.expect("again"));
    assert_eq!(s.pack("warm/p1").await.expect("pack"), None);
    assert!(s.pack("warm/p2").await.expect("pack").is_some());
}

fn cold_pack(name: &str, restore: PackRestore, size: u64) -> PackRecord {
    PackRecord {
        id: name.to_string(),
        tier: Tier::Cold,
        storage_class: StorageClass::Glacier,
        size,
        live_bytes: size,
        created_ms: T0,
        restore,
        class: String::new(),
        min_keep_until_ms: Some(T0 + 90 * 86_400_000),
    }
}

/// Every hot copy of `node` in least-recently-read order.
async fn all_hot(s: &dyn MetaStore, node: &str) -> Vec<HotCopy> {
    s.hot_copies(node, &HotOrder::LeastRecentlyRead, u64::MAX, None, 10_000)
        .await
        .expect("hot_copies")
}

/// The usage of `node`'s hot tier as `usage` reports it (zero when it is left out).
async fn node_usage(s: &dyn MetaStore, node: &str) -> TierUsage {
    let u = s.usage().await.expect("usage");
    u.hot_by_node
        .iter()
        .find(|(n, _)| n == node)
        .map(|(_, t)| t.clone())
        .unwrap_or_default()
}

/// `node`'s hot-bytes counter is `bytes`, and agrees with its hot index and `usage`.
async fn assert_hot(s: &dyn MetaStore, node: &str, bytes: u64, copies: usize) {
    assert_eq!(
        s.hot_bytes(node).await.expect("hot_bytes"),
        bytes,
        "hot bytes of {node}"
    );
    let index = all_hot(s, node).await;
    assert_eq!(index.len(), copies, "hot index of {node}: {index:?}");
    assert_eq!(
        index.iter().map(|c| c.length).sum::<u64>(),
        bytes,
        "hot index lengths of {node}"
    );
    let u = node_usage(s, node).await;
    assert_eq!(
        (u.bytes, u.chunks),
        (bytes, copies as u64),
        "usage of {node}"
    );
}

/// Pin counts as a map, chunks at zero left out (a store may keep or drop zero rows).
async fn pins_of(s: &dyn MetaStore, ids: &[ChunkId]) -> Vec<(ChunkId, PinCounts)> {
    let mut v: Vec<_> = s
        .pins(ids)
        .await
        .expect("pins")
        .into_iter()
        .filter(|(_, p)| *p != PinCounts::default())
        .collect();
    v.sort_by_key(|(c, _)| *c);
    v
}

fn sorted_pins(mut v: Vec<(ChunkId, PinCounts)>) -> Vec<(ChunkId, PinCounts)> {
    v.sort_by_key(|(c, _)| *c);
    v
}

fn keys(v: &[Location]) -> Vec<(ChunkId, Tier, String, String)> {
    let mut k: Vec<_> = v.iter().map(key).collect();
    k.sort();
    k
}

async fn copies_of(s: &dyn MetaStore, n: u32) -> Vec<(ChunkId, Tier, String, String)> {
    keys(&s.locations(&chunk(n)).await.expect("locations"))
}

// ---------------------------------------------------------------------------------
// Leases
// ---------------------------------------------------------------------------------

/// A lease is held by one holder; its times come from the store's clock; renewing it
/// keeps the token; any other grant takes a larger one.
pub async fn engine_lease_is_exclusive_and_renewal_keeps_token(s: Arc<dyn MetaStore>, l: Lapse) {
    let t = l.ttl_ms;
    let before = s.db_now_ms().await.expect("db_now_ms");
    let a = s
        .acquire_lease("demote:x", NODE, t)
        .await
        .expect("acquire")
        .expect("a free lease is granted");
    let after = s.db_now_ms().await.expect("db_now_ms");
    assert_eq!((a.name.as_str(), a.holder.as_str()), ("demote:x", NODE));
    assert!(
        before + t <= a.until_ms && a.until_ms <= after + t,
        "lease until {} not within the store clock's [{before}, {after}] + ttl {t}",
        a.until_ms
    );
    assert_eq!(
        s.acquire_lease("demote:x", OTHER, t)
            .await
            .expect("acquire"),
        None,
        "a live lease is not granted to another holder"
    );
    let renewed = s
        .acquire_lease("demote:x", NODE, t)
        .await
        .expect("renew")
        .expect("the holder renews");
    assert_eq!(renewed.token, a.token, "renewal keeps the token");
    assert!(renewed.until_ms >= a.until_ms);
    let b = s
        .acquire_lease("pack:y", OTHER, t)
        .await
        .expect("acquire")
        .expect("another name is free");
    assert!(b.token > a.token, "tokens grow over every lease");
    assert_eq!(a.fence().token, a.token);
}

/// Of several holders asking for one free lease at once, exactly one gets it.
pub async fn engine_lease_concurrent_acquire_has_one_winner(s: Arc<dyn MetaStore>, l: Lapse) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        let t = l.ttl_ms;
        tasks.push(tokio::spawn(async move {
            s.acquire_lease("gc", &format!("node-{i}"), t).await
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        if let Some(lease) = t.await.expect("join").expect("acquire") {
            winners.push(lease);
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
}

/// A lease that lapsed goes to the next holder with a larger token; a stale release
/// does nothing; a release frees the lease; a grant after lapse to the same holder
/// takes a new token too.
pub async fn engine_lease_lapse_and_release_take_new_tokens(s: Arc<dyn MetaStore>, l: Lapse) {
    let t = l.ttl_ms;
    let a = s
        .acquire_lease("restore:p", NODE, t)
        .await
        .expect("acquire")
        .expect("a");
    l.wait().await;
    let b = s
        .acquire_lease("restore:p", OTHER, t)
        .await
        .expect("acquire")
        .expect("a lapsed lease goes to another holder");
    assert!(b.token > a.token, "a grant after lapse takes a new token");
    assert_eq!(
        s.acquire_lease("restore:p", NODE, t)
            .await
            .expect("acquire"),
        None
    );
    s.release_lease(&a).await.expect("stale release");
    assert_eq!(
        s.acquire_lease("restore:p", "node-c", t)
            .await
            .expect("acquire"),
        None,
        "a release by the former holder does not free the lease"
    );
    s.release_lease(&b).await.expect("release");
    let c = s
        .acquire_lease("restore:p", "node-c", t)
        .await
        .expect("acquire")
        .expect("a released lease is free");
    assert!(c.token > b.token);
    l.wait().await;
    let c2 = s
        .acquire_lease("restore:p", "node-c", t)
        .await
        .expect("acquire")
        .expect("regrant");
    assert!(
        c2.token > c.token,
        "a grant after lapse to the same holder takes a new token"
    );
}

/// `live_leases` lists the live leases under a prefix, by name, with their holder and
/// token; lapsed and released ones, and other prefixes, are not listed.
pub async fn engine_live_leases_by_prefix(s: Arc<dyn MetaStore>, l: Lapse) {
    let s = &*s;
    let a = s
        .acquire_lease("pack-write:warm/a/w1", "w1", l.ttl_ms)
        .await
        .expect("acquire")
        .expect("a");
    let b = s
        .acquire_lease("pack-write:warm/a/w2", "w2", l.ttl_ms)
        .await
        .expect("acquire")
        .expect("b");
    s.acquire_lease("pack-write:warm/ab/w3", "w3", l.ttl_ms)
        .await
        .expect("acquire")
        .expect("c");
    s.acquire_lease("pack-delete:warm/a", "gc", l.ttl_ms)
        .await
        .expect("acquire")
        .expect("d");
    let live = s.live_leases("pack-write:warm/a/").await.expect("live");
    assert_eq!(live, vec![a.clone(), b.clone()]);
    s.release_lease(&a).await.expect("release");
    let live = s.live_leases("pack-write:warm/a/").await.expect("live");
    assert_eq!(live, vec![b.clone()]);
    assert_eq!(
        s.live_leases("pack-delete:warm/a")
            .await
            .expect("live")
            .len(),
        1
    );
    assert!(s.live_leases("nothing:").await.expect("live").is_empty());
    l.wait().await;
    assert!(
        s.live_leases("pack-").await.expect("live").is_empty(),
        "lapsed leases are not live"
    );
}

// ---------------------------------------------------------------------------------
// Fenced placement commits
// ---------------------------------------------------------------------------------

/// A commit under a fence that does not match the live lease (wrong token, wrong
/// holder, lapsed, taken over, released) is `Fenced` and writes nothing; under the
/// current holder's fence it commits everything.
pub async fn engine_fenced_commit_is_refused_and_writes_nothing(s: Arc<dyn MetaStore>, l: Lapse) {
    let s = &*s;
    commit_ok(s, &commit_of("a", &[(chunk(1), 100)], NODE, true)).await;
    let change = PlacementChange {
        packs: vec![warm_pack("warm/p1", "", T0, 1000)],
        add: vec![warm(chunk(1), "warm/p1", 0, 100)],
        remove: vec![hot_on(1, NODE, 100)],
        ..Default::default()
    };
    let nothing_written = || async move {
        assert_eq!(s.pack("warm/p1").await.expect("pack"), None, "pack written");
        assert_eq!(
            copies_of(s, 1).await,
            keys(&[hot_on(1, NODE, 100)]),
            "copies changed"
        );
        assert!(s
            .pack_locations("warm/p1")
            .await
            .expect("pack_locations")
            .is_empty());
        assert_hot(s, NODE, 100, 1).await;
    };
    let name = format!("demote:{NODE}");
    let lease = s
        .acquire_lease(&name, NODE, l.ttl_ms)
        .await
        .expect("acquire")
        .expect("lease");
    let change = &change;
    let refused = |fence: Fence| async move {
        let err = s
            .commit_placement(Some(&fence), change)
            .await
            .expect_err("fenced commit");
        assert_eq!(err.kind(), ErrorKind::Fenced, "{err}");
    };
    let mut wrong = lease.fence();
    wrong.token += 1000;
    refused(wrong).await;
    nothing_written().await;
    let mut wrong = lease.fence();
    wrong.holder = OTHER.to_string();
    refused(wrong).await;
    let mut wrong = lease.fence();
    wrong.name = "demote:elsewhere".to_string();
    refused(wrong).await;
    nothing_written().await;

    l.wait().await;
    refused(lease.fence()).await;
    nothing_written().await;
    let taken = s
        .acquire_lease(&name, OTHER, l.ttl_ms)
        .await
        .expect("acquire")
        .expect("taken over");
    refused(lease.fence()).await;
    nothing_written().await;

    let removed = s
        .commit_placement(Some(&taken.fence()), change)
        .await
        .expect("commit under the live lease");
    assert_eq!(keys(&removed), keys(&[hot_on(1, NODE, 100)]));
    assert_eq!(removed[0].length, 100);
    assert_eq!(
        s.pack("warm/p1").await.expect("pack"),
        Some(PackRecord {
            live_bytes: 100,
            ..change.packs[0].clone()
        }),
        "live bytes are those of the copies in it"
    );
    assert_eq!(
        copies_of(s, 1).await,
        keys(&[warm(chunk(1), "warm/p1", 0, 100)])
    );
    assert_hot(s, NODE, 0, 0).await;

    s.release_lease(&taken).await.expect("release");
    let back = PlacementChange {
        add: vec![hot_on(1, NODE, 100)],
        ..Default::default()
    };
    let err = s
        .commit_placement(Some(&taken.fence()), &back)
        .await
        .expect_err("released");
    assert_eq!(err.kind(), ErrorKind::Fenced);
    assert_hot(s, NODE, 0, 0).await;
}

/// A placement change is all or nothing (`NotFound` for a chunk without a record, with
/// nothing written), and its removals never take the last healthy copy of a referenced
/// chunk, exactly as `remove_locations` refuses them.
pub async fn engine_commit_placement_is_atomic_and_keeps_last_copy(
    s: Arc<dyn MetaStore>,
    _l: Lapse,
) {
    let s = &*s;
    commit_ok(
        s,
        &commit_of("a", &[(chunk(1), 10), (chunk(2), 20)], NODE, true),
    )
    .await;
    let bad = PlacementChange {
        packs: vec![warm_pack("warm/p1", "", T0, 100)],
        add: vec![
            warm(chunk(1), "warm/p1", 0, 10),
            warm(chunk(99), "warm/p1", 10, 10),
        ],
        remove: vec![hot_on(1, NODE, 10)],
        ..Default::default()
    };
    let err = s
        .commit_placement(None, &bad)
        .await
        .expect_err("unknown chunk");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(s.pack("warm/p1").await.expect("pack"), None);
    assert_eq!(copies_of(s, 1).await, keys(&[hot_on(1, NODE, 10)]));
    assert!(s
        .pack_locations("warm/p1")
        .await
        .expect("pack_locations")
        .is_empty());
    assert_hot(s, NODE, 30, 2).await;

    let good = PlacementChange {
        packs: vec![warm_pack("warm/p1", "", T0, 100)],
        add: vec![warm(chunk(1), "warm/p1", 0, 10)],
        remove: vec![hot_on(1, NODE, 10), hot_on(2, NODE, 20)],
        ..Default::default()
    };
    let removed = s.commit_placement(None, &good).await.expect("commit");
    assert_eq!(
        keys(&removed),
        keys(&[hot_on(1, NODE, 10)]),
        "chunk 2's only copy must stay"
    );
    assert_eq!(
        copies_of(s, 1).await,
        keys(&[warm(chunk(1), "warm/p1", 0, 10)])
    );
    assert_eq!(copies_of(s, 2).await, keys(&[hot_on(2, NODE, 20)]));
    assert_hot(s, NODE, 20, 1).await;
    // Removing copies that do not exist is ignored.
    let again = s.commit_placement(None, &good).await.expect("commit again");
    assert!(again.is_empty(), "{again:?}");
}

/// Two moves of the same warm copy (gc rewriting its pack, the archive worker sending
/// it to cold), each computed before the other committed: the first adds its copy; the
/// second finds its source gone and adds nothing for that chunk, while its chunks whose
/// source is still there move. Without `moves` every add is made.
pub async fn engine_racing_moves_of_one_copy_leave_one_new_copy(s: Arc<dyn MetaStore>, _l: Lapse) {
    let s = &*s;
    commit_ok(
        s,
        &commit_of("a", &[(chunk(1), 10), (chunk(2), 20)], NODE, true),
    )
    .await;
    let first = PlacementChange {
        packs: vec![warm_pack("warm/p1", "", T0, 30)],
        add: vec![
            warm(chunk(1), "warm/p1", 0, 10),
            warm(chunk(2), "warm/p1", 10, 20),
        ],
        remove: vec![hot_on(1, NODE, 10), hot_on(2, NODE, 20)],
        node: NODE.to_string(),
        moves: true,
        ..Default::default()
    };
    let moved = s.commit_placement(None, &first).await.expect("demote");
    assert_eq!(moved.len(), 2, "{moved:?}");
    let rewrite = PlacementChange {
        packs: vec![warm_pack("warm/p2", "", T0, 10)],
        add: vec![warm(chunk(1), "warm/p2", 0, 10)],
        remove: vec![warm(chunk(1), "warm/p1", 0, 10)],
        node: NODE.to_string(),
        moves: true,
        ..Default::default()
    };
    let mut cold_pack_3 = cold_pack("cold/p3", PackRestore::NONE, 30);
    cold_pack_3.min_keep_until_ms = None;
    let archive = PlacementChange {
        packs: vec![cold_pack_3],
        add: vec![
            Location {
                tier: Tier::Cold,
                pack: "cold/p3".into(),
                ..warm(chunk(1), "cold/p3", 0, 10)
            },
            Location {
                tier: Tier::Cold,
                pack: "cold/p3".into(),
                ..warm(chunk(2), "cold/p3", 10, 20)
            },
        ],
        remove: first.add.clone(),
        node: NODE.to_string(),
        moves: true,
        ..Default::default()
    };
    s.commit_placement(None, &rewrite).await.expect("rewrite");
    let removed = s.commit_placement(None, &archive).await.expect("archive");
    assert_eq!(
        keys(&removed),
        keys(&[warm(chunk(2), "warm/p1", 10, 20)]),
        "only chunk 2's source was still there"
    );
    assert_eq!(
        copies_of(s, 1).await,
        keys(&[warm(chunk(1), "warm/p2", 0, 10)]),
        "chunk 1 keeps the rewrite's copy only"
    );
    let c2 = copies_of(s, 2).await;
    assert_eq!(c2.len(), 1, "{c2:?}");
    assert_eq!((c2[0].1, c2[0].3.as_str()), (Tier::Cold, "cold/p3"));
    let p3 = s.pack("cold/p3").await.expect("pack").expect("cold/p3");
    assert_eq!(p3.live_bytes, 20, "the cold pack holds chunk 2 only");

    // The same change without `moves` adds the copy whose source is gone.
    let plain = PlacementChange {
        moves: false,
        ..rewrite.clone()
    };
    s.commit_placement(None, &plain).await.expect("plain");
    let again = PlacementChange {
        packs: vec![warm_pack("warm/p4", "", T0, 10)],
        add: vec![warm(chunk(1), "warm/p4", 0, 10)],
        remove: vec![warm(chunk(1), "warm/p1", 0, 10)],
        node: NODE.to_string(),
        moves: false,
        ..Default::default()
    };
    s.commit_placement(None, &again).await.expect("not a move");
    assert_eq!(
        copies_of(s, 1).await.len(),
        2,
        "without moves the add is made though its source is gone"
    );
}

// ---------------------------------------------------------------------------------
// The hot index
// ---------------------------------------------------------------------------------

/// The hot index of a node lists its copies least recently read first (ties by chunk),
/// pages with cursors, filters by last read, and holds nothing of other nodes.
pub async fn engine_hot_index_orders_and_pages(s: Arc<dyn MetaStore>, _l: Lapse) {
    let s = &*s;
    let parts: Vec<_> = (1..=6).map(|n| (chunk(n), 10 * n)).collect();
    commit_ok(s, &commit_of("a", &parts, NODE, true)).await;
    commit_ok(s, &commit_of("o", &[(chunk(7), 70)], OTHER, true)).await;
    let times = [
        (1, T0 + 500),
        (2, T0 + 100),
        (3, T0 + 300),
        (4, T0 + 300),
        (5, T0 + 50),
    ];
    let reads: Vec<_> = times.iter().map(|&(n, t)| (chunk(n), t)).collect();
    s.touch_hot(NODE, &reads).await.expect("touch_hot");
    let mut want: Vec<(u64, ChunkId)> = times.iter().map(|&(n, t)| (t, chunk(n))).collect();
    want.push((T0, chunk(6)));
    want.sort();

    let all = all_hot(s, NODE).await;
    assert_eq!(
        all.iter()
            .map(|c| (c.last_read_ms, c.chunk))
            .collect::<Vec<_>>(),
        want
    );
    let six = all.iter().find(|c| c.chunk == chunk(6)).expect("chunk 6");
    assert_eq!(
        six,
        &HotCopy {
            chunk: chunk(6),
            length: 60,
            placed_ms: T0,
            last_read_ms: T0,
            class: String::new(),
            blob: Some(blob_id("a")),
        }
    );
    let one = all.iter().find(|c| c.chunk == chunk(1)).expect("chunk 1");
    assert_eq!(
        (one.placed_ms, one.last_read_ms, one.length),
        (T0, T0 + 500, 10)
    );

    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .hot_copies(NODE, &HotOrder::LeastRecentlyRead, u64::MAX, after, 2)
            .await
            .expect("page");
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.cursor());
        paged.extend(page);
    }
    assert_eq!(paged, all, "pages join up to the whole index");

    let old = s
        .hot_copies(NODE, &HotOrder::LeastRecentlyRead, T0 + 300, None, 100)
        .await
        .expect("read_before");
    assert_eq!(
        old.iter()
            .map(|c| (c.last_read_ms, c.chunk))
            .collect::<Vec<_>>(),
        want.iter()
            .copied()
            .filter(|(t, _)| *t <= T0 + 300)
            .collect::<Vec<_>>()
    );
    assert!(s
        .hot_copies(NODE, &HotOrder::LeastRecentlyRead, T0 - 1, None, 100)
        .await
        .expect("nothing that old")
        .is_empty());
    let other = all_hot(s, OTHER).await;
    assert_eq!(other.len(), 1);
    assert_eq!((other[0].chunk, other[0].length), (chunk(7), 70));
    assert!(all_hot(s, "node-none").await.is_empty());
}

/// `HotOrder::Class` scans only one policy class's copies, in last-read order.
pub async fn engine_hot_index_by_class(s: Arc<dyn MetaStore>, _l: Lapse) {
    let s = &*s;
    let mut x = commit_of("x", &[(chunk(1), 10), (chunk(2), 20)], NODE, true);
    x.blob.class = "archive".to_string();
    commit_ok(s, &x).await;
    assert_eq!(
        s.blob(&blob_id("x")).await.expect("blob").expect("x").class,
        "archive"
    );
    commit_ok(
        s,
        &commit_of("d", &[(chunk(3), 30), (chunk(4), 40)], NODE, true),
    )
    .await;
    let mut y = commit_of("y", &[(chunk(5), 50)], OTHER, true);
    y.blob.class = "archive".to_string();
    commit_ok(s, &y).await;
    s.touch_hot(NODE, &[(chunk(1), T0 + 10), (chunk(3), T0 + 20)])
        .await
        .expect("touch");

    let class = |c: &str| HotOrder::Class(c.to_string());
    let archive = s
        .hot_copies(NODE, &class("archive"), u64::MAX, None, 100)
        .await
        .expect("class scan");
    assert_eq!(
        archive.iter().map(|c| c.chunk).collect::<Vec<_>>(),
        vec![chunk(2), chunk(1)]
    );
    assert!(archive
        .iter()
        .all(|c| c.class == "archive" && c.blob == Some(blob_id("x"))));
    let default = s
        .hot_copies(NODE, &class(""), u64::MAX, None, 100)
        .await
        .expect("default class");
    assert_eq!(
        default.iter().map(|c| c.chunk).collect::<Vec<_>>(),
        vec![chunk(4), chunk(3)]
    );
    assert!(default.iter().all(|c| c.class.is_empty()));
    let page = s
        .hot_copies(
            NODE,
            &class("archive"),
            u64::MAX,
            Some(archive[0].cursor()),
            100,
        )
        .await
        .expect("class page");
    assert_eq!(page, archive[1..].to_vec());
    let idle = s
        .hot_copies(NODE, &class("archive"), T0 + 5, None, 100)
        .await
        .expect("class read_before");
    assert_eq!(
        idle.iter().map(|c| c.chunk).collect::<Vec<_>>(),
        vec![chunk(2)]
    );
    assert!(s
        .hot_copies(NODE, &class("nope"), u64::MAX, None, 100)
        .await
        .expect("unknown class")
        .is_empty());
    assert_eq!(all_hot(s, NODE).await.len(), 4);
}

/// `touch_hot` keeps the later of the recorded and the given time, and ignores chunks
/// with no hot copy on that node.
pub async fn engine_touch_hot_keeps_later_time(s: Arc<dyn MetaStore>, _l: Lapse) {
    let s = &*s;
    commit_ok(
        s,
        &commit_of("a", &[(chunk(1), 10), (chunk(2), 20)], NODE, true),
    )
    .await;
    commit_ok(s, &commit_of("o", &[(chunk(3), 30)], OTHER, true)).await;
    s.touch_hot(
        NODE,
        &[
            (chunk(1), T0 + 100),
            (chunk(1), T0 + 50),
            (chunk(3), T0 + 9),
        ],
    )
    .await
    .expect("touch");
    s.touch_hot(NODE, &[(chunk(1), T0 + 70), (chunk(2), T0 - 5)])
        .await
        .expect("touch earlier");
    let all = all_hot(s, NODE).await;
    assert_eq!(
        all.iter()
            .map(|c| (c.chunk, c.last_read_ms))
            .collect::<Vec<_>>(),
        vec![(chunk(2), T0), (chunk(1), T0 + 100)]
    );
    assert!(all.iter().all(|c| c.placed_ms == T0));
    let other = all_hot(s, OTHER).await;
    assert_eq!(
        other[0].last_read_ms, T0,
        "another node's copy is not touched"
    );
    assert_hot(s, NODE, 30, 2).await;
}

/// The per-node hot-bytes counter follows every hot copy added or removed by every
/// operation, and an upsert of an existing copy does not count it twice.
pub async fn engine_hot_bytes_track_every_change(s: Arc<dyn MetaStore>, _l: Lapse) {
    let s = &*s;
    assert_hot(s, NODE, 0, 0).await;
    commit_ok(
        s,
        &commit_of("a", &[(chunk(1), 100), (chunk(2), 200)], NODE, true),
    )
    .await;
    assert_hot(s, NODE, 300, 2).await;
    commit_ok(s, &commit_of("b", &[(chunk(3), 50)], OTHER, true)).await;
    assert_hot(s, OTHER, 50, 1).await;
    assert_hot(s, NODE, 300, 2).await;
    // Brings chunk 1 again (an upsert) and chunk 4.
    commit_ok(
        s,
        &commit_of("c", &[(chunk(1), 100), (chunk(4), 40)], NODE, true),
    )
    .await;
    assert_hot(s, NODE, 340, 3).await;

    s.add_locations(&[hot_on(3, NODE, 50)]).await.expect("add");
    assert_hot(s, NODE, 390, 4).await;
    s.add_locations(&[hot_on(3, NODE, 50)])
        .await
        .expect("add again");
    assert_hot(s, NODE, 390, 4).await;
    s.add_locations(&[hot_on(3, NODE, 60)])
        .await
        .expect("new length");
    assert_hot(s, NODE, 400, 4).await;
    // OTHER's hot copy of chunk 3 is its local cache and keeps nothing readable for
    // NODE: the removal needs a shared copy.
    s.add_locations(&[warm(chunk(3), "warm/p9", 0, 50)])
        .await
        .expect("warm copy");
    let removed = s
        .remove_locations(&[hot_on(3, NODE, 60)], NODE)
        .await
        .expect("remove");
    assert_eq!(removed.len(), 1);
    assert_hot(s, NODE, 340, 3).await;
    assert_hot(s, OTHER, 50, 1).await;

    s.delete_blob(&blob_id("a"), T0).await.expect("delete a");
    s.delete_blob(&blob_id("c"), T0).await.expect("delete c");
    let gone = s
        .gc_remove(&[chunk(1), chunk(2), chunk(4)], NODE)
        .await
        .expect("gc_remove");
    assert_eq!(gone.len(), 3);
    assert_hot(s, NODE, 0, 0).await;

    let promote = PlacementChange {
        add: vec![hot_on(3, NODE, 50)],
        hot_class: "archive".to_string(),
        hot_blob: Some(blob_id("b")),
        read_ms: Some(T0 + 5),
        ..Default::default()
    };
    s.commit_placement(None, &promote).await.expect("promote");
    assert_hot(s, NODE, 50, 1).await;
    let copy = all_hot(s, NODE).await.remove(0);
    assert_eq!(
        (
            copy.chunk,
            copy.class.as_str(),
            copy.blob,
            copy.last_read_ms
        ),
        (chunk(3), "archive", Some(blob_id("b")), T0 + 5)
    );
    s.commit_placement(None, &promote)
        .await
        .expect("promote again");
    assert_hot(s, NODE, 50, 1).await;
    let demote = PlacementChange {
        remove: vec![hot_on(3, NODE, 50)],
        ..Default::default()
    };
    assert_eq!(
        s.commit_placement(None, &demote)
            .await
            .expect("demote")
            .len(),
        1
    );
    assert_hot(s, NODE, 0, 0).await;
    assert_hot(s, OTHER, 50, 1).await;
}

// ---------------------------------------------------------------------------------
// Pins
// ---------------------------------------------------------------------------------

/// A pin counts once per distinct chunk of the pinned blob; a hot pin counts for warm
/// too; re-pinning replaces, unpinning and deleting the blob take the counts back.
pub async fn engine_pins_count_distinct_chunks_per_blob(s: Arc<dyn MetaStore>, _l: Lapse) {
    let s = &*s;
    let (c1, c2, c3) = (chunk(1), chunk(2), chunk(3));
    commit_ok(
        s,
        &commit_of("a", &[(c1, 10), (c2, 20), (c1, 10)], NODE, true),
    )
    .await;
    commit_ok(s, &commit_of("b", &[(c2, 20), (c3, 30)], NODE, true)).await;
    let ids = [c1, c2, c3];
    let pc = |hot, warm| PinCounts { hot, warm };
    assert!(pins_of(s, &ids).await.is_empty());

    assert!(s
        .set_pin(&blob_id("a"), Some(Tier::Hot))
        .await
        .expect("pin"));
    let a = s.blob(&blob_id("a")).await.expect("blob").expect("a");
    assert_eq!(a.pin, Some(Tier::Hot));
    assert_eq!((a.size, a.chunk_count, a.created_ms), (40, 3, T0));
    assert_eq!(
        pins_of(s, &ids).await,
        sorted_pins(vec![(c1, pc(1, 1)), (c2, pc(1, 1))])
    );
    assert_eq!(pc(1, 1).floor(), Some(Tier::Hot));

    assert!(s
        .set_pin(&blob_id("b"), Some(Tier::Warm))
        .await
        .expect("pin"));
    assert_eq!(
        pins_of(s, &ids).await,
        sorted_pins(vec![(c1, pc(1, 1)), (c2, pc(1, 2)), (c3, pc(0, 1))])
    );
    assert!(s
        .set_pin(&blob_id("a"), Some(Tier::Warm))
        .await
        .expect("re-pin"));
    assert_eq!(
        pins_of(s, &ids).await,
        sorted_pins(vec![(c1, pc(0, 1)), (c2, pc(0, 2)), (c3, pc(0, 1))])
    );
    assert!(!s
        .set_pin(&blob_id("none"), Some(Tier::Hot))
        .await
        .expect("unknown blob"));

    assert!(s.set_pin(&blob_id("b"), None).await.expect("unpin"));
    assert_eq!(
        s.blob(&blob_id("b")).await.expect("blob").expect("b").pin,
        None
    );
    assert_eq!(
        pins_of(s, &ids).await,
        sorted_pins(vec![(c1, pc(0, 1)), (c2, pc(0, 1))])
    );
    assert!(s.set_pin(&blob_id("b"), None).await.expect("unpin again"));
    assert_eq!(pins_of(s, &ids).await.len(), 2);

    s.delete_blob(&blob_id("a"), T0)
        .await
        .expect("delete pinned blob");
    assert!(
        pins_of(s, &ids).await.is_empty(),
        "deleting a pinned blob drops its pins"
    );
}

// ---------------------------------------------------------------------------------
// Packs
// ---------------------------------------------------------------------------------

/// Archive candidates are the warm packs of one class whose creation and last read
/// (raised by `record_access` of any chunk they hold) are old enough, by name.
pub async fn engine_archive_candidates_follow_pack_reads(s: Arc<dyn MetaStore>, _l: Lapse) {
    let s = &*s;
    commit_ok(
        s,
        &commit_of(
            "a",
            &[(chunk(1), 10), (chunk(2), 20), (chunk(3), 30)],
            NODE,
            true,
        ),
    )
    .await;
    let p1 = warm_pack("warm/p1", "", T0, 100);
    let p2 = warm_pack("warm/p2", "", T0 + 1000, 100);
    let p3 = warm_pack("warm/p3", "archive", T0, 100);
    let c1 = cold_pack("cold/c1", PackRestore::NONE, 100);
    for p in [&p1, &p2, &p3, &c1] {
        s.put_pack(p).await.expect("put_pack");
    }
    s.add_locations(&[
        warm(chunk(1), "warm/p1", 0, 10),
        warm(chunk(2), "warm/p2", 0, 20),
        warm(chunk(3), "warm/p3", 0, 30),
        Location {
            tier: Tier::Cold,
            ..warm(chunk(1), "cold/c1", 0, 10)
        },
    ])
    .await
    .expect("add");
    let names = |v: Vec<strata::meta::ArchiveCandidate>| {
        v.into_iter()
            .map(|c| (c.pack.id, c.last_read_ms))
            .collect::<Vec<_>>()
    };
    let cand = |class: &'static str, before: u64, after: Option<&'static str>, limit: usize| async move {
        s.archive_candidates(class, before, after, limit)
            .await
            .expect("archive_candidates")
    };
    assert_eq!(
        names(cand("", T0 + 500, None, 10).await),
        vec![("warm/p1".into(), T0)]
    );
    let both = cand("", T0 + 2000, None, 10).await;
    assert_eq!(
        both[0].pack,
        PackRecord {
            live_bytes: 10,
            ..p1.clone()
        },
        "the candidate carries the pack record, with its copies' live bytes"
    );
    assert_eq!(
        names(both),
        vec![("warm/p1".into(), T0), ("warm/p2".into(), T0 + 1000)]
    );
    assert_eq!(
        names(cand("", T0 + 2000, None, 1).await),
        vec![("warm/p1".into(), T0)]
    );
    assert_eq!(
        names(cand("", T0 + 2000, Some("warm/p1"), 10).await),
        vec![("warm/p2".into(), T0 + 1000)]
    );
    assert_eq!(
        names(cand("archive", T0 + 2000, None, 10).await),
        vec![("warm/p3".into(), T0)]
    );
    assert!(cand("nope", u64::MAX, None, 10).await.is_empty());

    s.record_access(&[(chunk(1), T0 + 3000, 1)])
        .await
        .expect("record_access");
    assert_eq!(
        names(cand("", T0 + 2000, None, 10).await),
        vec![("warm/p2".into(), T0 + 1000)],
        "a read of one of its chunks keeps a pack warm"
    );
    assert_eq!(
        names(cand("", T0 + 3000, None, 10).await),
        vec![("warm/p1".into(), T0 + 3000), ("warm/p2".into(), T0 + 1000)]
    );
    // An older read does not move the last read back.
    s.record_access(&[(chunk(1), T0 + 10, 1)])
        .await
        .expect("record_access");
    assert_eq!(names(cand("", T0 + 2000, None, 10).await).len(), 1);
}

/// `pack_locations` lists the copies in one pack by offset, current as of the last
/// change (upserts move them, removals drop them, verification updates them).
pub async fn engine_pack_locations_by_offset(s: Arc<dyn MetaStore>, _l: Lapse) {
    let s = &*s;
    commit_ok(
        s,
        &commit_of(
            "a",
            &[(chunk(1), 10), (chunk(2), 20), (chunk(3), 30)],
            NODE,
            true,
        ),
    )
    .await;
    s.put_pack(&warm_pack("warm/p1", "", T0, 300))
        .await
        .expect("put_pack");
    s.add_locations(&[
        warm(chunk(3), "warm/p1", 0, 30),
        warm(chunk(1), "warm/p1", 100, 10),
        warm(chunk(2), "warm/p1", 50, 20),
        warm(chunk(1), "warm/p2", 0, 10),
    ])
    .await
    .expect("add");
    assert_eq!(
        s.pack_locations("warm/p1").await.expect("pack_locations"),
        vec![
            warm(chunk(3), "warm/p1", 0, 30),
            warm(chunk(2), "warm/p1", 50, 20),
            warm(chunk(1), "warm/p1", 100, 10),
        ]
    );
    s.add_locations(&[warm(chunk(1), "warm/p1", 200, 10)])
        .await
        .expect("move");
    s.remove_locations(&[warm(chunk(2), "warm/p1", 50, 20)], NODE)
        .await
        .expect("remove");
    s.record_verification(&[VerifyRecord {
        location: warm(chunk(3), "warm/p1", 0, 30),
        health: Health::Corrupt,
        at_ms: T0 + 7,
        detail: "test".into(),
    }])
    .await
    .expect("verify");
    let mut bad = warm(chunk(3), "warm/p1", 0, 30);
    bad.health = Health::Corrupt;
    bad.last_verified_ms = Some(T0 + 7);
    assert_eq!(
        s.pack_locations("warm/p1").await.expect("pack_locations"),
        vec![bad, warm(chunk(1), "warm/p1", 200, 10)]
    );
    let change = PlacementChange {
        add: vec![warm(chunk(2), "warm/p3", 0, 20)],
        ..Default::default()
    };
    s.commit_placement(None, &change).await.expect("commit");
    assert_eq!(
        s.pack_locations("warm/p3").await.expect("pack_locations"),
        vec![warm(chunk(2), "warm/p3", 0, 20)]
    );
    assert_eq!(
        s.pack_locations("warm/p2").await.expect("pack_locations"),
        vec![warm(chunk(1), "warm/p2", 0, 10)]
    );
    assert!(s
        .pack_locations("warm/none")
        .await
        .expect("none")
        .is_empty());
    assert!(s
        .pack_locations("warm/p")
        .await
        .expect("a prefix of a name")
        .is_empty());
}

/// `restore_requests` lists the packs whose restore state is `Requested`, by name.
pub async fn engine_restore_requests_page_by_name(s: Arc<dyn MetaStore>, _l: Lapse) {
    let s = &*s;
    let requested = PackRestore {
        state: RestoreState::Requested,
        expiry_ms: Some(T0 + 1000),
    };
    let restored = PackRestore {
        state: RestoreState::Restored,
        expiry_ms: Some(T0 + 5000),
    };
    // No copies recorded in them: live bytes 0.
    let a = PackRecord {
        live_bytes: 0,
        ..cold_pack("cold/a", requested, 10)
    };
    let c = PackRecord {
        live_bytes: 0,
        ..cold_pack("cold/c", requested, 30)
    };
    s.put_pack(&a).await.expect("put");
    s.put_pack(&cold_pack("cold/b", PackRestore::NONE, 20))
        .await
        .expect("put");
    s.put_pack(&c).await.expect("put");
    s.put_pack(&cold_pack("cold/d", restored, 40))
        .await
        .expect("put");
    assert!(s.restore_requests(None, 10).await.expect("none yet").len() == 2);
    assert_eq!(
        s.restore_requests(None, 10).await.expect("requests"),
        vec![a.clone(), c.clone()]
    );
    assert_eq!(
        s.restore_requests(None, 1).await.expect("requests"),
        vec![a.clone()]
    );
    assert_eq!(
        s.restore_requests(Some("cold/a"), 10)
            .await
            .expect("requests"),
        vec![c.clone()]
    );
    assert!(s
        .set_pack_restore("cold/c", &requested, &restored)
        .await
        .expect("cas"));
    assert_eq!(
        s.restore_requests(None, 10).await.expect("requests"),
        vec![a]
    );
}

/// `list_packs` pages through every pack record in byte order of their names.
pub async fn engine_list_packs_pages_by_name(s: Arc<dyn MetaStore>, _l: Lapse) {
    let s = &*s;
    assert!(s.list_packs(None, 10).await.expect("empty").is_empty());
    let names = ["cold/a", "warm/B", "warm/a", "warm/a0", "warm/b"];
    for (i, name) in names.iter().enumerate().rev() {
        let rec = if name.starts_with("cold/") {
            cold_pack(name, PackRestore::NONE, i as u64)
        } else {
            warm_pack(name, "", T0, i as u64)
        };
        s.put_pack(&rec).await.expect("put");
    }
    let ids = |v: Vec<PackRecord>| v.into_iter().map(|p| p.id).collect::<Vec<_>>();
    assert_eq!(ids(s.list_packs(None, 10).await.expect("all")), names);
    let mut seen = Vec::new();
    loop {
        let page = s
            .list_packs(seen.last().map(String::as_str), 2)
            .await
            .expect("page");
        let done = page.len() < 2;
        seen.extend(ids(page));
        if done {
            break;
        }
    }
    assert_eq!(seen, names);
    assert_eq!(
        ids(s.list_packs(Some("warm/a"), 1).await.expect("after")),
        ["warm/a0"]
    );
    assert_eq!(
        ids(s.list_packs(Some("warm/"), 10).await.expect("not a name")),
        ["warm/B", "warm/a", "warm/a0", "warm/b"]
    );
    assert!(s.list_packs(None, 0).await.expect("zero").is_empty());
    let full = s.list_packs(Some("cold/"), 1).await.expect("record");
    assert_eq!(full, vec![cold_pack("cold/a", PackRestore::NONE, 0)]);
}

/// `recount_pack_live_bytes` sets a pack's `live_bytes` to the sum of the lengths of
/// the copies recorded in it, whatever their health.
pub async fn engine_recount_pack_live_bytes_sums_its_copies(s: Arc<dyn MetaStore>, _l: Lapse) {
    let s = &*s;
    commit_ok(
        s,
        &commit_of(
            "a",
            &[(chunk(1), 10), (chunk(2), 20), (chunk(3), 30)],
            NODE,
            true,
        ),
    )
    .await;
    s.put_pack(&warm_pack("warm/p1", "", T0, 1000))
        .await
        .expect("put_pack");
    s.put_pack(&warm_pack("warm/p2", "", T0, 50))
        .await
        .expect("put_pack");
    s.add_locations(&[
        warm(chunk(1), "warm/p1", 0, 7),
        warm(chunk(2), "warm/p1", 7, 15),
        warm(chunk(3), "warm/p2", 0, 30),
    ])
    .await
    .expect("add");
    s.record_verification(&[VerifyRecord {
        location: warm(chunk(2), "warm/p1", 7, 15),
        health: Health::Corrupt,
        at_ms: T0 + 1,
        detail: "test".into(),
    }])
    .await
    .expect("verify");
    // Kept exact as copies come and go (the recorded 1000 was never used).
    assert_eq!(
        s.pack("warm/p1")
            .await
            .expect("pack")
            .expect("rec")
            .live_bytes,
        22
    );
    assert_eq!(
        s.recount_pack_live_bytes("warm/p1").await.expect("recount"),
        Some(22)
    );
    let rec = s.pack("warm/p1").await.expect("pack").expect("rec");
    assert_eq!((rec.live_bytes, rec.size), (22, 1000));
    // Nothing else of the record changes.
    assert_eq!(
        rec,
        PackRecord {
            live_bytes: 22,
            ..warm_pack("warm/p1", "", T0, 1000)
        }
    );
    s.remove_locations(&[warm(chunk(2), "warm/p1", 7, 15)], NODE)
        .await
        .expect("remove");
    assert_eq!(
        s.recount_pack_live_bytes("warm/p1").await.expect("recount"),
        Some(7)
    );
    assert_eq!(
        s.recount_pack_live_bytes("warm/p2").await.expect("recount"),
        Some(30)
    );
    s.put_pack(&warm_pack("warm/empty", "", T0, 9))
        .await
        .expect("put_pack");
    assert_eq!(
        s.recount_pack_live_bytes("warm/empty")
            .await
            .expect("recount"),
        Some(0)
    );
    assert_eq!(
        s.recount_pack_live_bytes("warm/none").await.expect("none"),
        None
    );
    assert_eq!(s.pack("warm/none").await.expect("pack"), None);
}

/// `usage` sums hot copies per node and over nodes, and warm and cold packs.
pub async fn engine_usage_sums_tiers_and_nodes(s: Arc<dyn MetaStore>, _l: Lapse) {
    let s = &*s;
    let empty = s.usage().await.expect("usage");
    assert_eq!(
        (empty.hot.clone(), empty.warm.clone(), empty.cold.clone()),
        Default::default()
    );
    commit_ok(
        s,
        &commit_of("a", &[(chunk(1), 100), (chunk(2), 200)], NODE, true),
    )
    .await;
    commit_ok(s, &commit_of("b", &[(chunk(3), 50)], OTHER, true)).await;
    s.put_pack(&warm_pack("warm/p1", "", T0, 1000))
        .await
        .expect("put");
    s.put_pack(&cold_pack("cold/c1", PackRestore::NONE, 5000))
        .await
        .expect("put");
    s.add_locations(&[
        warm(chunk(1), "warm/p1", 0, 100),
        warm(chunk(2), "warm/p1", 100, 200),
        Location {
            tier: Tier::Cold,
            ..warm(chunk(3), "cold/c1", 0, 50)
        },
    ])
    .await
    .expect("add");
    let u = s.usage().await.expect("usage");
    let t = |bytes, chunks, objects| TierUsage {
        bytes,
        chunks,
        objects,
    };
    assert_eq!(u.hot, t(350, 3, 0));
    assert_eq!(u.warm, t(1000, 2, 1));
    assert_eq!(u.cold, t(5000, 1, 1));
    let by_node: Vec<_> = u
        .hot_by_node
        .into_iter()
        .filter(|(_, t)| t.chunks > 0)
        .collect();
    assert_eq!(
        by_node,
        vec![
            (NODE.to_string(), t(300, 2, 0)),
            (OTHER.to_string(), t(50, 1, 0))
        ]
    );
}

/// `record_pass` keeps the last pass per `(node, worker)`; `passes` lists them by node,
/// then worker.
pub async fn engine_passes_keep_the_last_per_worker(s: Arc<dyn MetaStore>, _l: Lapse) {
    let s = &*s;
    assert!(s.passes().await.expect("passes").is_empty());
    let pass = |node: &str, worker: &str, started_ms: u64, error: Option<&str>| PassRecord {
        node: node.to_string(),
        worker: worker.to_string(),
        started_ms,
        duration_ms: 12,
        error: error.map(str::to_string),
        chunks: 3,
        bytes: 4096,
    };
    s.record_pass(&pass(OTHER, "demote", T0, None))
        .await
        .expect("record");
    s.record_pass(&pass(NODE, "demote", T0, None))
        .await
        .expect("record");
    s.record_pass(&pass(NODE, "archive", T0 + 1, None))
        .await
        .expect("record");
    let last = pass(NODE, "demote", T0 + 2, Some("object store unavailable"));
    s.record_pass(&last).await.expect("replace");
    assert_eq!(
        s.passes().await.expect("passes"),
        vec![
            pass(NODE, "archive", T0 + 1, None),
            last,
            pass(OTHER, "demote", T0, None)
        ]
    );
}
