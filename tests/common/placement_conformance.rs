//! Conformance checks of [`PlacementStore`] (the invariants in the doc comment of
//! `src/meta/placement.rs`), run against every metadata store beside the
//! `meta_conformance` suite, whose helpers and fixture they share:
//!
//! ```ignore
//! #[path = "common/meta_conformance.rs"]
//! mod meta_conformance;
//! #[path = "common/placement_conformance.rs"]
//! mod placement_conformance;
//! placement_conformance_tests!(make);
//! ```
#![allow(dead_code)]

use std::sync::Arc;

use strata::meta::{MetaStore, PackRecord, PackRestore, RestoreState};
use strata::model::{Health, Location, Tier};
use strata::object::StorageClass;
use strata::ErrorKind;

use crate::meta_conformance::{blob_id, chunk, commit_of, commit_ok, warm, NODE, OTHER, T0};

/// Generates one `#[tokio::test]` per placement check, each on a store from `$make`.
#[macro_export]
macro_rules! placement_conformance_tests {
    ($make:path) => {
        $crate::placement_conformance_tests!(@each $make;
            placement_add_is_an_idempotent_upsert,
            placement_add_for_unknown_chunk_writes_nothing,
            placement_remove_refuses_last_healthy_copy,
            placement_remove_does_not_count_corrupt_copies,
            placement_remove_allows_unreferenced_chunks,
            placement_remove_ignores_other_nodes_hot_copies,
            placement_concurrent_removals_keep_a_copy,
            placement_packs_round_trip,
            placement_pack_live_bytes_follow_copies,
            placement_restore_cas_has_one_winner,
        );
    };
    (@each $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(fixture) = $make().await else { return };
                $crate::placement_conformance::$name(fixture.store.clone()).await;
                drop(fixture);
            }
        )*
    };
}

fn with_health(mut l: Location, health: Health) -> Location {
    l.health = health;
    l
}

async fn copies(s: &dyn MetaStore, n: u32) -> Vec<(Tier, String, Health)> {
    let mut v: Vec<_> = s
        .locations(&chunk(n))
        .await
        .expect("locations")
        .into_iter()
        .map(|l| (l.tier, l.pack, l.health))
        .collect();
    v.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    v
}

fn hot(n: u32) -> Location {
    Location::hot(chunk(n), NODE, 10, T0)
}

pub async fn placement_add_is_an_idempotent_upsert(s: Arc<dyn MetaStore>) {
    commit_ok(&*s, &commit_of("a", &[(chunk(1), 10)], NODE, true)).await;
    let w = warm(chunk(1), "warm/p1", 0, 7);
    s.add_locations(std::slice::from_ref(&w))
        .await
        .expect("add");
    s.add_locations(std::slice::from_ref(&w))
        .await
        .expect("add again");
    assert_eq!(copies(&*s, 1).await.len(), 2);
    let mut moved = with_health(w, Health::Corrupt);
    moved.offset = 99;
    s.add_locations(&[moved]).await.expect("upsert");
    let locs = s.locations(&chunk(1)).await.expect("locations");
    let w = locs
        .iter()
        .find(|l| l.tier == Tier::Warm)
        .expect("warm copy");
    assert_eq!((w.offset, w.health), (99, Health::Corrupt));
    assert_eq!(locs.len(), 2);
}

pub async fn placement_add_for_unknown_chunk_writes_nothing(s: Arc<dyn MetaStore>) {
    commit_ok(&*s, &commit_of("a", &[(chunk(1), 10)], NODE, true)).await;
    let err = s
        .add_locations(&[
            warm(chunk(1), "warm/p1", 0, 7),
            warm(chunk(99), "warm/p1", 7, 7),
        ])
        .await
        .expect_err("unknown chunk");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(copies(&*s, 1).await.len(), 1, "nothing written");
}

pub async fn placement_remove_refuses_last_healthy_copy(s: Arc<dyn MetaStore>) {
    commit_ok(&*s, &commit_of("a", &[(chunk(1), 10)], NODE, true)).await;
    assert!(s
        .remove_locations(&[hot(1)], NODE)
        .await
        .expect("remove")
        .is_empty());
    assert_eq!(copies(&*s, 1).await.len(), 1);
    s.add_locations(&[warm(chunk(1), "warm/p1", 0, 7)])
        .await
        .expect("add");
    let removed = s.remove_locations(&[hot(1)], NODE).await.expect("remove");
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].tier, Tier::Hot);
    assert!(s
        .remove_locations(&[warm(chunk(1), "warm/p1", 0, 7)], NODE)
        .await
        .expect("remove")
        .is_empty());
    assert_eq!(
        copies(&*s, 1).await,
        vec![(Tier::Warm, "warm/p1".to_string(), Health::Ok)]
    );
    // Removing a copy that does not exist is ignored.
    assert!(s
        .remove_locations(&[hot(1)], NODE)
        .await
        .expect("remove")
        .is_empty());
}

pub async fn placement_remove_does_not_count_corrupt_copies(s: Arc<dyn MetaStore>) {
    commit_ok(&*s, &commit_of("a", &[(chunk(1), 10)], NODE, true)).await;
    let bad = with_health(warm(chunk(1), "warm/p1", 0, 7), Health::Corrupt);
    s.add_locations(std::slice::from_ref(&bad))
        .await
        .expect("add");
    assert!(s
        .remove_locations(&[hot(1)], NODE)
        .await
        .expect("remove")
        .is_empty());
    assert_eq!(
        s.remove_locations(&[bad], NODE)
            .await
            .expect("remove corrupt")
            .len(),
        1
    );
    assert_eq!(copies(&*s, 1).await.len(), 1);
}

pub async fn placement_remove_allows_unreferenced_chunks(s: Arc<dyn MetaStore>) {
    commit_ok(&*s, &commit_of("a", &[(chunk(1), 10)], NODE, true)).await;
    s.delete_blob(&blob_id("a"), T0).await.expect("delete");
    assert_eq!(
        s.remove_locations(&[hot(1)], NODE)
            .await
            .expect("remove")
            .len(),
        1
    );
    assert!(copies(&*s, 1).await.is_empty());
}

/// Another node's hot copy is that node's local cache: it keeps nothing readable for
/// the node removing a copy (through `remove_locations` and `commit_placement` alike).
pub async fn placement_remove_ignores_other_nodes_hot_copies(s: Arc<dyn MetaStore>) {
    commit_ok(&*s, &commit_of("a", &[(chunk(1), 10)], NODE, true)).await;
    let w = warm(chunk(1), "warm/p1", 0, 7);
    s.add_locations(std::slice::from_ref(&w))
        .await
        .expect("add");
    assert!(
        s.remove_locations(std::slice::from_ref(&w), OTHER)
            .await
            .expect("remove")
            .is_empty(),
        "only NODE's hot copy would be left, which OTHER cannot read"
    );
    let change = strata::meta::PlacementChange {
        remove: vec![w.clone()],
        node: OTHER.to_string(),
        ..Default::default()
    };
    assert!(s
        .commit_placement(None, &change)
        .await
        .expect("commit")
        .is_empty());
    let strict = strata::meta::PlacementChange {
        remove: vec![w.clone()],
        ..Default::default()
    };
    assert!(
        s.commit_placement(None, &strict)
            .await
            .expect("commit")
            .is_empty(),
        "without a node only shared copies count"
    );
    assert_eq!(copies(&*s, 1).await.len(), 2, "both copies kept");
    // NODE itself may drop the warm copy: its own hot copy still serves it.
    assert_eq!(
        s.remove_locations(std::slice::from_ref(&w), NODE)
            .await
            .expect("remove")
            .len(),
        1
    );
    assert_eq!(copies(&*s, 1).await.len(), 1);
}

pub async fn placement_concurrent_removals_keep_a_copy(s: Arc<dyn MetaStore>) {
    for n in 0..10u32 {
        let c = 100 + n;
        commit_ok(
            &*s,
            &commit_of(&format!("b{n}"), &[(chunk(c), 10)], NODE, true),
        )
        .await;
        let w = warm(chunk(c), "warm/p2", 0, 7);
        s.add_locations(std::slice::from_ref(&w))
            .await
            .expect("add");
        let (a, b) = (s.clone(), s.clone());
        let h = tokio::spawn(async move { a.remove_locations(&[hot(c)], NODE).await });
        let w2 = tokio::spawn(async move { b.remove_locations(&[w], NODE).await });
        let removed = h.await.expect("join").expect("remove").len()
            + w2.await.expect("join").expect("remove").len();
        assert_eq!(removed, 1, "exactly one of the two removals wins");
        assert_eq!(copies(&*s, c).await.len(), 1);
    }
}

fn pack(id: &str) -> PackRecord {
    PackRecord {
        id: id.to_string(),
        tier: Tier::Cold,
        storage_class: StorageClass::Glacier,
        size: 1000,
        // No copy is recorded in it: the metadata store reports 0 whatever the record
        // says (see `placement_pack_live_bytes_follow_copies`).
        live_bytes: 0,
        created_ms: T0,
        restore: PackRestore::NONE,
        class: String::new(),
        min_keep_until_ms: None,
    }
}

pub async fn placement_packs_round_trip(s: Arc<dyn MetaStore>) {
    assert_eq!(s.pack("cold/none").await.expect("pack"), None);
    let p = pack("cold/p1");
    s.put_pack(&p).await.expect("put");
    assert_eq!(s.pack("cold/p1").await.expect("pack"), Some(p.clone()));
    let mut q = p.clone();
    q.tier = Tier::Warm;
    q.storage_class = StorageClass::Standard;
    q.restore = PackRestore {
        state: RestoreState::Restored,
        expiry_ms: Some(T0 + 5),
    };
    s.put_pack(&q).await.expect("replace");
    assert_eq!(s.pack("cold/p1").await.expect("pack"), Some(q));
}

/// A pack's `live_bytes` is the sum of the stored lengths of the copies recorded in it,
/// kept in the same commit that adds or removes each copy; rewriting the record (a
/// restore state change) does not reset it, and whatever the record was written with
/// is ignored.
async fn live(s: &dyn MetaStore, name: &str) -> u64 {
    s.pack(name)
        .await
        .expect("pack")
        .expect("recorded")
        .live_bytes
}

pub async fn placement_pack_live_bytes_follow_copies(s: Arc<dyn MetaStore>) {
    use strata::meta::PlacementChange;
    commit_ok(
        &*s,
        &commit_of(
            "b",
            &[(chunk(1), 10), (chunk(2), 20), (chunk(3), 30)],
            NODE,
            true,
        ),
    )
    .await;
    let mut p = pack("warm/live");
    p.tier = Tier::Warm;
    p.storage_class = StorageClass::Standard;
    p.live_bytes = 12345;
    let change = PlacementChange {
        packs: vec![p.clone()],
        add: vec![
            warm(chunk(1), "warm/live", 0, 10),
            warm(chunk(2), "warm/live", 10, 20),
        ],
        node: NODE.into(),
        ..Default::default()
    };
    s.commit_placement(None, &change).await.expect("commit");
    assert_eq!(live(&*s, "warm/live").await, 30);
    // Adding the same copy again changes nothing; a new one adds its length.
    s.add_locations(&[
        warm(chunk(2), "warm/live", 10, 20),
        warm(chunk(3), "warm/live", 30, 30),
    ])
    .await
    .expect("add");
    assert_eq!(live(&*s, "warm/live").await, 60);
    s.put_pack(&p).await.expect("rewrite the record");
    assert_eq!(live(&*s, "warm/live").await, 60);
    let removed = s
        .remove_locations(&[warm(chunk(2), "warm/live", 10, 20)], NODE)
        .await
        .expect("remove");
    assert_eq!(removed.len(), 1);
    assert_eq!(live(&*s, "warm/live").await, 40);
    // Removing a chunk's record with its copies (gc) lowers it too.
    let gone = s
        .remove_locations(
            &[
                warm(chunk(1), "warm/live", 0, 10),
                warm(chunk(3), "warm/live", 30, 30),
            ],
            NODE,
        )
        .await
        .expect("remove");
    assert_eq!(gone.len(), 2, "the hot copies keep the chunks readable");
    assert_eq!(live(&*s, "warm/live").await, 0);
}

pub async fn placement_restore_cas_has_one_winner(s: Arc<dyn MetaStore>) {
    s.put_pack(&pack("cold/p1")).await.expect("put");
    let want = PackRestore {
        state: RestoreState::Requested,
        expiry_ms: Some(T0 + 1000),
    };
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.set_pack_restore("cold/p1", &PackRestore::NONE, &want)
                .await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.expect("join").expect("cas"));
    }
    assert_eq!(wins, 1);
    assert_eq!(
        s.pack("cold/p1")
            .await
            .expect("pack")
            .expect("record")
            .restore,
        want
    );
    let stale = PackRestore {
        state: RestoreState::Requested,
        expiry_ms: Some(T0),
    };
    let done = PackRestore {
        state: RestoreState::Restored,
        expiry_ms: Some(T0 + 9),
    };
    assert!(!s
        .set_pack_restore("cold/p1", &stale, &done)
        .await
        .expect("cas"));
    assert!(s
        .set_pack_restore("cold/p1", &want, &done)
        .await
        .expect("cas"));
    assert!(!s
        .set_pack_restore("cold/none", &PackRestore::NONE, &want)
        .await
        .expect("cas"));
}
