//! One conformance suite for every [`MetaStore`] implementation: the invariants in the
//! doc comment of `src/meta/mod.rs`, one named test each.
//!
//! Use from a test crate:
//!
//! ```ignore
//! #[path = "common/meta_conformance.rs"]
//! mod meta_conformance;
//!
//! async fn make() -> Option<meta_conformance::Fixture> { /* a fresh, empty store */ }
//! meta_conformance_tests!(make);
//! ```
//!
//! `make` returns `None` to skip (a service that is not configured); the fixture keeps
//! whatever the store needs alive (a temporary directory, a schema) until the test ends.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use strata::meta::MetaStore;
use strata::model::{
    BlobCommit, BlobRecord, ChunkerParams, ClaimOrder, ClaimRequest, CommitOutcome, GcCandidate,
    Health, Location, ManifestEntry, Tier, VerifyRecord,
};
use strata::{BlobId, ChunkId};

/// A fresh, empty store plus whatever must outlive it.
pub struct Fixture {
    /// The store under test.
    pub store: Arc<dyn MetaStore>,
    /// Dropped after the test (temporary directory, schema cleanup, server lock, ...).
    pub guard: Box<dyn std::any::Any + Send + Sync>,
}

/// Generates one `#[tokio::test]` per conformance check, each on a store from `$make`.
#[macro_export]
macro_rules! meta_conformance_tests {
    ($make:path) => {
        $crate::meta_conformance_tests!(@each $make;
            commit_makes_everything_visible,
            empty_blob_commits,
            list_blobs_pages_in_id_order,
            list_chunks_pages_in_id_order,
            second_commit_is_already_exists_and_changes_nothing,
            invalid_manifest_is_rejected_and_commits_nothing,
            missing_chunk_commits_nothing,
            other_nodes_hot_copy_does_not_count,
            corrupt_copy_does_not_count,
            new_copy_replaces_a_corrupt_one,
            readable_chunks_semantics,
            refcount_counts_manifest_entries,
            repair_refcount_is_a_compare_and_set,
            delete_decrements_and_reports_zeroed,
            gc_candidates_respect_grace_and_limit,
            gc_candidates_page_with_a_cursor,
            gc_remove_removes_hot_copy_and_record,
            gc_remove_skips_referenced_and_revived_chunks,
            gc_remove_keeps_record_while_copies_remain,
            gc_remove_takes_shared_copies_with_the_record,
            manifest_range_edges,
            locations_many_covers_every_id,
            record_verification_updates_health,
            record_access_accumulates,
            claims_are_exclusive_while_leased,
            claims_filter_and_order,
            concurrent_claims_never_overlap,
            stats_count_rows,
        );
    };
    (@each $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(fixture) = $make().await else { return };
                $crate::meta_conformance::$name(fixture.store.clone()).await;
                drop(fixture);
            }
        )*
    };
}

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

/// The committing node in most checks.
pub const NODE: &str = "node-a";
/// Another node.
pub const OTHER: &str = "node-b";
/// A third node (claims).
pub const THIRD: &str = "node-c";
/// A base time, milliseconds since the epoch.
pub const T0: u64 = 1_700_000_000_000;

/// The chunk id numbered `n` (ids are arbitrary hashes; order is by bytes).
pub fn chunk(n: u32) -> ChunkId {
    ChunkId::of(format!("conformance chunk {n}").as_bytes())
}

/// The blob id named `name`.
pub fn blob_id(name: &str) -> BlobId {
    BlobId::of(format!("conformance blob {name}").as_bytes())
}

/// A commit of blob `name` made of `parts` (chunk, length) in order. With `write`,
/// it brings a fresh hot copy on `node` of each distinct chunk.
pub fn commit_of(name: &str, parts: &[(ChunkId, u32)], node: &str, write: bool) -> BlobCommit {
    let mut entries = Vec::with_capacity(parts.len());
    let mut offset = 0u64;
    for &(chunk, length) in parts {
        entries.push(ManifestEntry {
            offset,
            length,
            chunk,
        });
        offset += u64::from(length);
    }
    let mut new_locations = Vec::new();
    if write {
        let mut seen = HashSet::new();
        for &(chunk, length) in parts {
            if seen.insert(chunk) {
                new_locations.push(Location::hot(chunk, node, u64::from(length), T0));
            }
        }
    }
    BlobCommit {
        blob: BlobRecord {
            id: blob_id(name),
            size: offset,
            chunk_count: parts.len() as u64,
            params: ChunkerParams::default(),
            created_ms: T0,
            class: String::new(),
            pin: None,
        },
        entries,
        new_locations,
        node: node.to_string(),
    }
}

/// A warm copy of `chunk` in `pack`, never verified.
pub fn warm(chunk: ChunkId, pack: &str, offset: u64, length: u64) -> Location {
    Location {
        chunk,
        tier: Tier::Warm,
        node: String::new(),
        pack: pack.to_string(),
        offset,
        length,
        health: Health::Ok,
        last_verified_ms: None,
    }
}

/// Commit and insist it succeeded.
pub async fn commit_ok(s: &dyn MetaStore, c: &BlobCommit) {
    let outcome = s.commit_blob(c).await.expect("commit_blob");
    assert_eq!(outcome, CommitOutcome::Committed, "commit of {}", c.blob.id);
}

/// A claim request with defaults: any tier, oldest verified first, a 1 s lease.
pub fn claim(node: &str, limit: usize, now_ms: u64) -> ClaimRequest {
    ClaimRequest {
        node: node.to_string(),
        tier: None,
        own_hot_only: false,
        readable_only: false,
        order: ClaimOrder::OldestVerified,
        limit,
        now_ms,
        lease_ms: 1_000,
    }
}

/// Identity of a copy, for set comparisons.
pub fn key(l: &Location) -> (ChunkId, Tier, String, String) {
    (l.chunk, l.tier, l.node.clone(), l.pack.clone())
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// The invariants that hold after any sequence of operations: reference counts match
/// the manifests, and the row counts agree with what the listings show.
pub async fn assert_consistent(s: &dyn MetaStore) {
    let mismatches = s.refcount_mismatches().await.expect("refcount_mismatches");
    assert!(
        mismatches.is_empty(),
        "reference counts disagree with manifests: {mismatches:?}"
    );
    let stats = s.stats().await.expect("stats");
    let mut blobs = 0u64;
    let mut entries = 0u64;
    let mut after = None;
    loop {
        let page = s.list_blobs(after, 100).await.expect("list_blobs");
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        blobs += page.len() as u64;
        entries += page.iter().map(|b| b.chunk_count).sum::<u64>();
    }
    assert_eq!(stats.blobs, blobs, "stats.blobs vs list_blobs");
    assert_eq!(
        stats.manifest_entries, entries,
        "stats.manifest_entries vs chunk counts"
    );
    let mut chunks = 0u64;
    let mut refs = 0u64;
    let mut after = None;
    loop {
        let page = s.list_chunks(after, 100).await.expect("list_chunks");
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        chunks += page.len() as u64;
        refs += page.iter().map(|c| c.refcount).sum::<u64>();
    }
    assert_eq!(stats.chunks, chunks, "stats.chunks vs list_chunks");
    assert_eq!(refs, entries, "sum of reference counts vs manifest entries");
}

// ---------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------

/// A commit makes the blob record, the manifest, the chunk records and the new copies
/// visible together.
pub async fn commit_makes_everything_visible(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let (a, b, c) = (chunk(1), chunk(2), chunk(3));
    let commit = commit_of("x", &[(a, 100), (b, 200), (c, 50)], NODE, true);
    assert_eq!(s.blob(&commit.blob.id).await.unwrap(), None);
    commit_ok(s, &commit).await;

    assert_eq!(
        s.blob(&commit.blob.id).await.unwrap(),
        Some(commit.blob.clone())
    );
    assert_eq!(
        s.manifest_range(&commit.blob.id, 0, 350).await.unwrap(),
        commit.entries
    );
    let listed = s.list_blobs(None, 10).await.unwrap();
    assert_eq!(listed, vec![commit.blob.clone()]);
    for (id, len) in [(a, 100u32), (b, 200), (c, 50)] {
        let rec = s.chunk(&id).await.unwrap().expect("chunk record");
        assert_eq!((rec.id, rec.size, rec.refcount), (id, len, 1));
        assert_eq!(rec.zero_since_ms, None);
        assert_eq!(
            s.locations(&id).await.unwrap(),
            vec![Location::hot(id, NODE, len.into(), T0)]
        );
    }
    let stats = s.stats().await.unwrap();
    assert_eq!(
        (
            stats.blobs,
            stats.manifest_entries,
            stats.chunks,
            stats.locations
        ),
        (1, 3, 3, 3)
    );
    assert!(stats.schema_version >= 1);
    assert_consistent(s).await;
}

/// The empty blob has no chunks and still commits.
pub async fn empty_blob_commits(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let commit = commit_of("empty", &[], NODE, true);
    commit_ok(s, &commit).await;
    let rec = s.blob(&commit.blob.id).await.unwrap().expect("empty blob");
    assert_eq!((rec.size, rec.chunk_count), (0, 0));
    assert!(s
        .manifest_range(&commit.blob.id, 0, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.delete_blob(&commit.blob.id, T0).await.unwrap(),
        Some(vec![])
    );
    assert_eq!(s.blob(&commit.blob.id).await.unwrap(), None);
    assert_consistent(s).await;
}

/// `list_blobs` returns blobs in id order, page by page, without gaps or repeats.
pub async fn list_blobs_pages_in_id_order(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let mut ids = Vec::new();
    for i in 0..7 {
        let c = commit_of(&format!("page {i}"), &[(chunk(i), 10)], NODE, true);
        commit_ok(s, &c).await;
        ids.push(c.blob.id);
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.list_blobs(after, 3).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        seen.extend(page.iter().map(|b| b.id));
    }
    assert_eq!(seen, ids);
    assert_eq!(
        s.list_blobs(Some(ids[2]), 2)
            .await
            .unwrap()
            .iter()
            .map(|b| b.id)
            .collect::<Vec<_>>(),
        ids[3..5]
    );
    assert!(s.list_blobs(Some(ids[6]), 10).await.unwrap().is_empty());
    assert!(s.list_blobs(None, 0).await.unwrap().is_empty());
}

/// `list_chunks` pages through chunk records in id order.
pub async fn list_chunks_pages_in_id_order(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let parts: Vec<(ChunkId, u32)> = (0..9).map(|i| (chunk(i), 10 + i)).collect();
    commit_ok(s, &commit_of("chunks", &parts, NODE, true)).await;
    let want = sorted(parts.iter().map(|p| p.0).collect());
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.list_chunks(after, 4).await.unwrap();
        assert!(page.len() <= 4);
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        seen.extend(page.iter().map(|c| c.id));
    }
    assert_eq!(seen, want);
    assert!(s.list_chunks(None, 0).await.unwrap().is_empty());
}

/// Committing an existing blob again reports `AlreadyExists` with the stored record
/// and changes nothing: no reference counted twice, no copy added.
pub async fn second_commit_is_already_exists_and_changes_nothing(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let (a, b) = (chunk(1), chunk(2));
    let first = commit_of("twice", &[(a, 10), (b, 20), (a, 10)], NODE, true);
    commit_ok(s, &first).await;
    let before = s.stats().await.unwrap();

    let mut again = first.clone();
    again.blob.created_ms = T0 + 5_000;
    again.new_locations.push(warm(a, "pack-1", 0, 10));
    match s.commit_blob(&again).await.unwrap() {
        CommitOutcome::AlreadyExists(rec) => assert_eq!(rec, first.blob),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(s.chunk(&a).await.unwrap().unwrap().refcount, 2);
    assert_eq!(s.chunk(&b).await.unwrap().unwrap().refcount, 1);
    assert_eq!(
        s.locations(&a).await.unwrap().len(),
        1,
        "the second commit added a copy"
    );
    assert_eq!(s.stats().await.unwrap(), before);
    assert_eq!(
        s.blob(&first.blob.id).await.unwrap().unwrap().created_ms,
        T0
    );
    assert_consistent(s).await;
}

/// A manifest that is not contiguous from 0 to the blob size is refused, atomically.
pub async fn invalid_manifest_is_rejected_and_commits_nothing(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let mut bad = commit_of("gap", &[(chunk(1), 10), (chunk(2), 10)], NODE, true);
    bad.entries[1].offset = 11;
    assert!(s.commit_blob(&bad).await.is_err());
    let mut short = commit_of("short", &[(chunk(1), 10)], NODE, true);
    short.blob.size = 11;
    assert!(s.commit_blob(&short).await.is_err());
    assert_eq!(s.blob(&bad.blob.id).await.unwrap(), None);
    assert_eq!(s.blob(&short.blob.id).await.unwrap(), None);
    let stats = s.stats().await.unwrap();
    assert_eq!(
        (
            stats.blobs,
            stats.manifest_entries,
            stats.chunks,
            stats.locations
        ),
        (0, 0, 0, 0)
    );
}

/// A referenced chunk with no readable healthy copy makes the commit report it, and
/// nothing of the commit (blob, counts, the copies it did bring) becomes visible.
pub async fn missing_chunk_commits_nothing(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let (a, b, c) = (chunk(1), chunk(2), chunk(3));
    let mut commit = commit_of("missing", &[(a, 10), (b, 20), (c, 30)], NODE, true);
    commit.new_locations.retain(|l| l.chunk == a); // b and c were "thought present"
    match s.commit_blob(&commit).await.unwrap() {
        CommitOutcome::MissingChunks(ids) => assert_eq!(sorted(ids), sorted(vec![b, c])),
        other => panic!("expected MissingChunks, got {other:?}"),
    }
    assert_eq!(s.blob(&commit.blob.id).await.unwrap(), None);
    assert!(s
        .manifest_range(&commit.blob.id, 0, 60)
        .await
        .unwrap()
        .is_empty());
    for id in [a, b, c] {
        assert_eq!(
            s.chunk(&id).await.unwrap(),
            None,
            "chunk record left behind"
        );
        assert!(
            s.locations(&id).await.unwrap().is_empty(),
            "copy left behind"
        );
    }
    let stats = s.stats().await.unwrap();
    assert_eq!(
        (
            stats.blobs,
            stats.manifest_entries,
            stats.chunks,
            stats.locations
        ),
        (0, 0, 0, 0)
    );

    // Written and committed again, it succeeds.
    commit_ok(
        s,
        &commit_of("missing", &[(a, 10), (b, 20), (c, 30)], NODE, true),
    )
    .await;
    assert_consistent(s).await;
}

/// Another node's hot copy is not readable by the committing node.
pub async fn other_nodes_hot_copy_does_not_count(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let a = chunk(1);
    commit_ok(s, &commit_of("on b", &[(a, 10)], OTHER, true)).await;
    let mine = commit_of("on a", &[(a, 10)], NODE, false);
    assert_eq!(
        s.commit_blob(&mine).await.unwrap(),
        CommitOutcome::MissingChunks(vec![a])
    );
    assert_eq!(s.chunk(&a).await.unwrap().unwrap().refcount, 1);
    // OTHER itself dedups against its copy.
    commit_ok(s, &commit_of("on b again", &[(a, 10)], OTHER, false)).await;
    // A shared-tier copy is readable by everyone.
    let mut with_warm = commit_of("warm", &[(a, 10)], OTHER, false);
    with_warm.new_locations.push(warm(a, "pack-1", 0, 10));
    commit_ok(s, &with_warm).await;
    commit_ok(s, &mine).await;
    assert_eq!(s.chunk(&a).await.unwrap().unwrap().refcount, 4);
    assert_consistent(s).await;
}

/// A copy marked corrupt (or missing) does not count as readable.
pub async fn corrupt_copy_does_not_count(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let (a, b) = (chunk(1), chunk(2));
    commit_ok(s, &commit_of("first", &[(a, 10), (b, 10)], NODE, true)).await;
    let verify = |id: ChunkId, health: Health| VerifyRecord {
        location: Location::hot(id, NODE, 10, T0),
        health,
        at_ms: T0 + 1,
        detail: "test".into(),
    };
    s.record_verification(&[verify(a, Health::Corrupt), verify(b, Health::Missing)])
        .await
        .unwrap();
    let second = commit_of("second", &[(a, 10), (b, 10)], NODE, false);
    match s.commit_blob(&second).await.unwrap() {
        CommitOutcome::MissingChunks(ids) => assert_eq!(sorted(ids), sorted(vec![a, b])),
        other => panic!("expected MissingChunks, got {other:?}"),
    }
    assert_eq!(s.chunk(&a).await.unwrap().unwrap().refcount, 1);
    assert_consistent(s).await;
}

/// A put that rewrites a chunk whose copy on this node went bad records the new copy
/// in place of the bad one.
pub async fn new_copy_replaces_a_corrupt_one(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let a = chunk(1);
    commit_ok(s, &commit_of("first", &[(a, 10)], NODE, true)).await;
    let bad = VerifyRecord {
        location: Location::hot(a, NODE, 10, T0),
        health: Health::Corrupt,
        at_ms: T0 + 1,
        detail: "hash mismatch".into(),
    };
    s.record_verification(&[bad]).await.unwrap();
    let mut again = commit_of("second", &[(a, 10)], NODE, true);
    again.new_locations[0].last_verified_ms = Some(T0 + 2);
    commit_ok(s, &again).await;
    let locs = s.locations(&a).await.unwrap();
    assert_eq!(locs.len(), 1, "{locs:?}");
    assert_eq!(
        (locs[0].health, locs[0].last_verified_ms),
        (Health::Ok, Some(T0 + 2))
    );
    assert!(s.readable_chunks(&[a], NODE).await.unwrap().contains(&a));
}

/// `readable_chunks`: hot copies only for their node, shared tiers for everyone, bad
/// copies for no one, and chunks at zero references still count.
pub async fn readable_chunks_semantics(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let (hot_a, hot_b, shared, bad, zero, unknown) =
        (chunk(1), chunk(2), chunk(3), chunk(4), chunk(5), chunk(6));
    commit_ok(s, &commit_of("a", &[(hot_a, 10), (bad, 10)], NODE, true)).await;
    commit_ok(s, &commit_of("b", &[(hot_b, 10)], OTHER, true)).await;
    let mut w = commit_of("w", &[(shared, 10)], NODE, false);
    w.new_locations.push(warm(shared, "pack-1", 0, 10));
    commit_ok(s, &w).await;
    let z = commit_of("z", &[(zero, 10)], NODE, true);
    commit_ok(s, &z).await;
    assert_eq!(
        s.delete_blob(&z.blob.id, T0).await.unwrap(),
        Some(vec![zero])
    );
    s.record_verification(&[VerifyRecord {
        location: Location::hot(bad, NODE, 10, T0),
        health: Health::Corrupt,
        at_ms: T0,
        detail: String::new(),
    }])
    .await
    .unwrap();

    let all = [hot_a, hot_b, shared, bad, zero, unknown, hot_a];
    let for_a = s.readable_chunks(&all, NODE).await.unwrap();
    assert_eq!(for_a, HashSet::from([hot_a, shared, zero]));
    let for_b = s.readable_chunks(&all, OTHER).await.unwrap();
    assert_eq!(for_b, HashSet::from([hot_b, shared]));
    assert!(s.readable_chunks(&[], NODE).await.unwrap().is_empty());
}

/// A chunk's count is the number of manifest entries naming it, repeats included.
pub async fn refcount_counts_manifest_entries(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let (a, b) = (chunk(1), chunk(2));
    commit_ok(
        s,
        &commit_of("rep", &[(a, 10), (b, 20), (a, 10), (a, 10)], NODE, true),
    )
    .await;
    assert_eq!(s.chunk(&a).await.unwrap().unwrap().refcount, 3);
    assert_eq!(s.chunk(&b).await.unwrap().unwrap().refcount, 1);
    commit_ok(s, &commit_of("one", &[(a, 10)], NODE, false)).await;
    assert_eq!(s.chunk(&a).await.unwrap().unwrap().refcount, 4);
    assert_eq!(s.stats().await.unwrap().manifest_entries, 5);
    assert_consistent(s).await;
}

/// `repair_refcount` sets a count only while it is still what the mismatch says, keeps
/// the GC queue in step with zero counts, and `refcount_mismatches` sees what it did.
pub async fn repair_refcount_is_a_compare_and_set(s: Arc<dyn MetaStore>) {
    use strata::model::RefcountMismatch;
    let s = &*s;
    let (a, b) = (chunk(1), chunk(2));
    commit_ok(s, &commit_of("r", &[(a, 10), (b, 20), (a, 10)], NODE, true)).await;
    let set = |chunk, stored, actual| RefcountMismatch {
        chunk,
        stored,
        actual,
    };
    // A stale expectation changes nothing.
    assert!(!s.repair_refcount(&set(a, 1, 5), T0).await.expect("cas"));
    assert_eq!(s.chunk(&a).await.unwrap().unwrap().refcount, 2);
    assert!(s.refcount_mismatches().await.expect("check").is_empty());
    // Damage both counts through the same call: a too high, b at zero.
    assert!(s.repair_refcount(&set(a, 2, 5), T0).await.expect("cas"));
    assert!(s.repair_refcount(&set(b, 1, 0), T0 + 5).await.expect("cas"));
    let found = s.refcount_mismatches().await.expect("check");
    // In chunk id order.
    let mut expected = vec![set(a, 5, 2), set(b, 0, 1)];
    expected.sort_by_key(|m| m.chunk);
    assert_eq!(found, expected);
    let zeroed = s.chunk(&b).await.unwrap().unwrap();
    assert_eq!(zeroed.zero_since_ms, Some(T0 + 5));
    let queued = s.gc_candidates(u64::MAX, None, 10).await.expect("gc");
    assert_eq!(queued.iter().map(|c| c.chunk).collect::<Vec<_>>(), vec![b]);
    // Repair what the check found.
    for m in &found {
        assert!(s.repair_refcount(m, T0 + 9).await.expect("repair"));
    }
    assert!(s.refcount_mismatches().await.expect("check").is_empty());
    assert_eq!(s.chunk(&b).await.unwrap().unwrap().zero_since_ms, None);
    assert!(s
        .gc_candidates(u64::MAX, None, 10)
        .await
        .expect("gc")
        .is_empty());
    // Repairing twice does nothing the second time; no record, nothing to set.
    assert!(!s.repair_refcount(&set(a, 5, 2), T0).await.expect("again"));
    assert!(!s
        .repair_refcount(&set(chunk(99), 0, 1), T0)
        .await
        .expect("no record"));
    assert_consistent(s).await;
}

/// Deleting drops the manifest, decrements per entry, stamps chunks reaching zero and
/// returns them; deleting again (or an unknown blob) returns `None`.
pub async fn delete_decrements_and_reports_zeroed(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let (a, b, c) = (chunk(1), chunk(2), chunk(3));
    let x = commit_of("x", &[(a, 10), (b, 10), (a, 10), (c, 10)], NODE, true);
    let y = commit_of("y", &[(b, 10)], NODE, false);
    commit_ok(s, &x).await;
    commit_ok(s, &y).await;

    let zeroed = s
        .delete_blob(&x.blob.id, T0 + 100)
        .await
        .unwrap()
        .expect("x existed");
    assert_eq!(sorted(zeroed), sorted(vec![a, c]));
    assert_eq!(s.blob(&x.blob.id).await.unwrap(), None);
    assert!(s
        .manifest_range(&x.blob.id, 0, 40)
        .await
        .unwrap()
        .is_empty());
    for id in [a, c] {
        let rec = s.chunk(&id).await.unwrap().expect("record kept until gc");
        assert_eq!((rec.refcount, rec.zero_since_ms), (0, Some(T0 + 100)));
        assert_eq!(
            s.locations(&id).await.unwrap().len(),
            1,
            "copies stay until gc"
        );
    }
    let rec_b = s.chunk(&b).await.unwrap().unwrap();
    assert_eq!((rec_b.refcount, rec_b.zero_since_ms), (1, None));
    assert_eq!(s.blob(&y.blob.id).await.unwrap(), Some(y.blob.clone()));

    assert_eq!(s.delete_blob(&x.blob.id, T0 + 200).await.unwrap(), None);
    assert_eq!(s.delete_blob(&blob_id("never"), T0).await.unwrap(), None);
    assert_eq!(
        s.chunk(&a).await.unwrap().unwrap().zero_since_ms,
        Some(T0 + 100)
    );

    assert_eq!(
        s.delete_blob(&y.blob.id, T0 + 300).await.unwrap(),
        Some(vec![b])
    );
    let stats = s.stats().await.unwrap();
    assert_eq!(
        (stats.blobs, stats.manifest_entries, stats.chunks),
        (0, 0, 3)
    );
    assert_consistent(s).await;
}

/// The chunks of the first page of GC candidates.
async fn gc_ids(s: &dyn MetaStore, zero_before_ms: u64, limit: usize) -> Vec<ChunkId> {
    let page = s.gc_candidates(zero_before_ms, None, limit).await.unwrap();
    page.iter().map(|c| c.chunk).collect()
}

/// GC candidates are the chunks at zero since at or before the cut-off, at most
/// `limit`.
pub async fn gc_candidates_respect_grace_and_limit(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let (a, b, c, live) = (chunk(1), chunk(2), chunk(3), chunk(4));
    commit_ok(s, &commit_of("x", &[(a, 10), (live, 10)], NODE, true)).await;
    commit_ok(s, &commit_of("y", &[(b, 10), (c, 10)], NODE, true)).await;
    commit_ok(s, &commit_of("keep", &[(live, 10)], NODE, false)).await;
    s.delete_blob(&blob_id("x"), T0 + 100).await.unwrap();
    s.delete_blob(&blob_id("y"), T0 + 200).await.unwrap();

    assert!(gc_ids(s, T0 + 99, 10).await.is_empty());
    assert_eq!(gc_ids(s, T0 + 100, 10).await, vec![a]);
    assert_eq!(sorted(gc_ids(s, T0 + 200, 10).await), sorted(vec![a, b, c]));
    assert_eq!(sorted(gc_ids(s, u64::MAX, 10).await), sorted(vec![a, b, c]));
    let two = gc_ids(s, T0 + 200, 2).await;
    assert_eq!(two.len(), 2);
    assert!(two.iter().all(|id| [a, b, c].contains(id)));
    assert!(gc_ids(s, T0 + 200, 0).await.is_empty());
}

/// Pages of GC candidates follow the queue order `(zero_since_ms, chunk)`; a cursor
/// resumes after the last candidate given, so candidates that stay queued (copies left
/// only in another node's hot tier) do not hide the ones behind them.
pub async fn gc_candidates_page_with_a_cursor(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let early: Vec<ChunkId> = (1..=5).map(chunk).collect();
    let late: Vec<ChunkId> = (6..=8).map(chunk).collect();
    let parts = |ids: &[ChunkId]| ids.iter().map(|&c| (c, 10)).collect::<Vec<_>>();
    // Only copies in OTHER's hot tier: gc_remove on NODE keeps these queued.
    commit_ok(s, &commit_of("x", &parts(&early), OTHER, true)).await;
    commit_ok(s, &commit_of("y", &parts(&late), NODE, true)).await;
    s.delete_blob(&blob_id("x"), T0 + 100).await.unwrap();
    s.delete_blob(&blob_id("y"), T0 + 200).await.unwrap();

    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = s.gc_candidates(u64::MAX, after, 2).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(*last);
        let ids: Vec<ChunkId> = page.iter().map(|c| c.chunk).collect();
        assert!(s
            .gc_remove(&ids, NODE)
            .await
            .unwrap()
            .iter()
            .all(|c| late.contains(c)));
        pages.push(page);
        assert!(pages.len() <= 4, "the cursor does not advance: {pages:?}");
    }
    let seen: Vec<GcCandidate> = pages.concat();
    assert_eq!(seen.len(), 8, "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "queue order: {seen:?}"
    );
    assert!(seen[..5].iter().all(|c| c.zero_since_ms == T0 + 100));
    assert!(seen[5..].iter().all(|c| c.zero_since_ms == T0 + 200));
    // The late chunks were reached and removed; the early ones stay queued.
    assert_eq!(
        sorted(gc_ids(s, u64::MAX, 100).await),
        sorted(early.clone())
    );
    for c in &late {
        assert_eq!(s.chunk(c).await.unwrap(), None);
    }
    // A cursor past everything, and one at the cut-off.
    assert!(s
        .gc_candidates(u64::MAX, after, 10)
        .await
        .unwrap()
        .is_empty());
    let first = s.gc_candidates(T0 + 100, None, 1).await.unwrap();
    let rest = s
        .gc_candidates(T0 + 100, first.last().copied(), 10)
        .await
        .unwrap();
    assert_eq!(first.len() + rest.len(), 5);
    assert_consistent(s).await;
}

/// `gc_remove` removes this node's hot copy of chunks at zero and, once no copies
/// remain, their records.
pub async fn gc_remove_removes_hot_copy_and_record(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let (a, b) = (chunk(1), chunk(2));
    let x = commit_of("x", &[(a, 10), (b, 10)], NODE, true);
    commit_ok(s, &x).await;
    s.delete_blob(&x.blob.id, T0).await.unwrap();
    // Another node has no hot copy of them: nothing to remove there.
    assert!(s.gc_remove(&[a, b], OTHER).await.unwrap().is_empty());
    assert_eq!(s.locations(&a).await.unwrap().len(), 1);

    let removed = s.gc_remove(&[a, b], NODE).await.unwrap();
    assert_eq!(sorted(removed), sorted(vec![a, b]));
    for id in [a, b] {
        assert!(s.locations(&id).await.unwrap().is_empty());
        assert_eq!(s.chunk(&id).await.unwrap(), None);
    }
    assert!(gc_ids(s, u64::MAX, 10).await.is_empty());
    assert!(s.readable_chunks(&[a, b], NODE).await.unwrap().is_empty());
    assert!(s.gc_remove(&[a, b], NODE).await.unwrap().is_empty());
    let stats = s.stats().await.unwrap();
    assert_eq!((stats.chunks, stats.locations), (0, 0));
    assert_consistent(s).await;
}

/// `gc_remove` leaves referenced chunks alone, including a candidate that a later
/// commit revived.
pub async fn gc_remove_skips_referenced_and_revived_chunks(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let (a, live) = (chunk(1), chunk(2));
    commit_ok(s, &commit_of("x", &[(a, 10), (live, 10)], NODE, true)).await;
    commit_ok(s, &commit_of("keep", &[(live, 10)], NODE, false)).await;
    s.delete_blob(&blob_id("x"), T0).await.unwrap();
    assert_eq!(gc_ids(s, T0, 10).await, vec![a]);

    // A put dedups against the candidate before GC gets to it.
    commit_ok(s, &commit_of("revive", &[(a, 10)], NODE, false)).await;
    let rec = s.chunk(&a).await.unwrap().unwrap();
    assert_eq!((rec.refcount, rec.zero_since_ms), (1, None));
    assert!(gc_ids(s, u64::MAX, 10).await.is_empty());

    assert!(s.gc_remove(&[a, live], NODE).await.unwrap().is_empty());
    assert_eq!(s.locations(&a).await.unwrap().len(), 1);
    assert_eq!(s.locations(&live).await.unwrap().len(), 1);
    assert!(s.readable_chunks(&[a], NODE).await.unwrap().contains(&a));
    assert_consistent(s).await;
}

/// A chunk at zero loses this node's hot copy and its shared copies (any node may
/// remove those), but keeps its record while another node's hot copy remains.
pub async fn gc_remove_keeps_record_while_copies_remain(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let a = chunk(1);
    let mut x = commit_of("x", &[(a, 10)], NODE, true);
    x.new_locations.push(warm(a, "pack-1", 64, 10));
    commit_ok(s, &x).await;
    let theirs = Location::hot(a, OTHER, 10, T0);
    s.add_locations(std::slice::from_ref(&theirs))
        .await
        .unwrap();
    s.delete_blob(&x.blob.id, T0).await.unwrap();
    assert_eq!(s.gc_remove(&[a], NODE).await.unwrap(), vec![a]);
    let locs = s.locations(&a).await.unwrap();
    assert_eq!(locs, vec![theirs]);
    let rec = s
        .chunk(&a)
        .await
        .unwrap()
        .expect("record kept while a copy remains");
    assert_eq!(rec.refcount, 0);
    assert_consistent(s).await;
}

/// A chunk at zero whose only copies are shared loses them and its record, though no
/// hot copy of this node was removed (so no bytes of this node's are to delete).
pub async fn gc_remove_takes_shared_copies_with_the_record(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let a = chunk(1);
    let mut x = commit_of("x", &[(a, 10)], NODE, false);
    x.new_locations = vec![warm(a, "pack-1", 0, 10)];
    commit_ok(s, &x).await;
    s.delete_blob(&x.blob.id, T0).await.unwrap();
    assert!(s.gc_remove(&[a], NODE).await.unwrap().is_empty());
    assert!(s.locations(&a).await.unwrap().is_empty());
    assert_eq!(s.chunk(&a).await.unwrap(), None);
    assert!(gc_ids(s, u64::MAX, 10).await.is_empty());
    assert_consistent(s).await;
}

/// `manifest_range` returns exactly the entries overlapping the range, in order.
pub async fn manifest_range_edges(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let (a, b, c) = (chunk(1), chunk(2), chunk(3));
    // [0, 100) a, [100, 250) b, [250, 300) c
    let x = commit_of("range", &[(a, 100), (b, 150), (c, 50)], NODE, true);
    commit_ok(s, &x).await;
    let e = &x.entries;
    let id = x.blob.id;
    let cases: &[(u64, u64, &[ManifestEntry])] = &[
        (0, 300, &e[..]),
        (0, u64::MAX, &e[..]),
        (0, 1, &e[0..1]),
        (50, 60, &e[0..1]),
        (99, 101, &e[0..2]),
        (100, 101, &e[1..2]),
        (120, 260, &e[1..3]),
        (249, 250, &e[1..2]),
        (250, 300, &e[2..3]),
        (299, 1_000, &e[2..3]),
        (300, 400, &[]),
        (1_000, 2_000, &[]),
        (150, 150, &[]),
        (0, 0, &[]),
        (200, 100, &[]),
        (u64::MAX - 1, u64::MAX, &[]),
    ];
    for (start, end, want) in cases {
        let got = s.manifest_range(&id, *start, *end).await.unwrap();
        assert_eq!(&got, want, "range {start}..{end}");
    }
    assert!(s
        .manifest_range(&blob_id("absent"), 0, 100)
        .await
        .unwrap()
        .is_empty());
}

/// `locations_many` answers for every id asked, with no copies for unknown chunks.
pub async fn locations_many_covers_every_id(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let (a, b, unknown) = (chunk(1), chunk(2), chunk(3));
    let mut x = commit_of("x", &[(a, 10), (b, 20)], NODE, true);
    x.new_locations.push(warm(a, "pack-1", 0, 10));
    commit_ok(s, &x).await;
    let many = s.locations_many(&[a, b, unknown]).await.unwrap();
    assert_eq!(many.len(), 3);
    let keys = |v: &Vec<Location>| v.iter().map(key).collect::<BTreeSet<_>>();
    assert_eq!(keys(&many[&a]), keys(&s.locations(&a).await.unwrap()));
    assert_eq!(many[&a].len(), 2);
    assert_eq!(many[&b], vec![Location::hot(b, NODE, 20, T0)]);
    assert!(many[&unknown].is_empty());
}

/// `record_verification` sets health and last-verified time of each copy; a result for
/// a copy that no longer exists is ignored.
pub async fn record_verification_updates_health(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let (a, b) = (chunk(1), chunk(2));
    let mut x = commit_of("x", &[(a, 10), (b, 10)], NODE, true);
    x.new_locations.push(warm(a, "pack-1", 0, 10));
    commit_ok(s, &x).await;
    let hot_a = Location::hot(a, NODE, 10, T0);
    let warm_a = warm(a, "pack-1", 0, 10);
    let gone = Location::hot(chunk(9), NODE, 10, T0);
    let rec = |location: &Location, health, at_ms| VerifyRecord {
        location: location.clone(),
        health,
        at_ms,
        detail: "scrub".into(),
    };
    s.record_verification(&[
        rec(&hot_a, Health::Corrupt, T0 + 10),
        rec(&warm_a, Health::Ok, T0 + 11),
        rec(&gone, Health::Ok, T0 + 12),
    ])
    .await
    .unwrap();
    let locs = s.locations(&a).await.unwrap();
    let find = |tier| locs.iter().find(|l| l.tier == tier).expect("copy").clone();
    assert_eq!(
        (find(Tier::Hot).health, find(Tier::Hot).last_verified_ms),
        (Health::Corrupt, Some(T0 + 10))
    );
    assert_eq!(
        (find(Tier::Warm).health, find(Tier::Warm).last_verified_ms),
        (Health::Ok, Some(T0 + 11))
    );
    assert!(s.locations(&chunk(9)).await.unwrap().is_empty());
    // The hot copy no longer counts for NODE; the warm one still does.
    assert!(s.readable_chunks(&[a], NODE).await.unwrap().contains(&a));
    s.record_verification(&[rec(&warm_a, Health::Missing, T0 + 20)])
        .await
        .unwrap();
    assert!(s.readable_chunks(&[a], NODE).await.unwrap().is_empty());
    s.record_verification(&[rec(&hot_a, Health::Ok, T0 + 30)])
        .await
        .unwrap();
    assert!(s.readable_chunks(&[a], NODE).await.unwrap().contains(&a));
    s.record_verification(&[]).await.unwrap();
    assert_eq!(s.stats().await.unwrap().locations, 3);
}

/// `record_access` adds up reads and keeps the latest read time.
pub async fn record_access_accumulates(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let (a, b, c) = (chunk(1), chunk(2), chunk(3));
    commit_ok(s, &commit_of("x", &[(a, 10), (b, 10), (c, 10)], NODE, true)).await;
    let fresh = s.chunk(&c).await.unwrap().unwrap();
    assert_eq!((fresh.last_access_ms, fresh.access_count), (None, 0));

    s.record_access(&[(a, T0 + 10, 2), (b, T0 + 5, 1), (a, T0 + 20, 3)])
        .await
        .unwrap();
    s.record_access(&[(a, T0 + 15, 1), (chunk(99), T0, 7)])
        .await
        .unwrap();
    s.record_access(&[]).await.unwrap();
    let ra = s.chunk(&a).await.unwrap().unwrap();
    assert_eq!((ra.last_access_ms, ra.access_count), (Some(T0 + 20), 6));
    let rb = s.chunk(&b).await.unwrap().unwrap();
    assert_eq!((rb.last_access_ms, rb.access_count), (Some(T0 + 5), 1));
    assert_eq!(
        s.chunk(&chunk(99)).await.unwrap(),
        None,
        "access must not create records"
    );
    assert_eq!(ra.refcount, 1);
}

/// A claimed copy goes to no other node until its lease ends or it is released; then
/// it can be claimed again. Releasing someone else's claim does nothing.
pub async fn claims_are_exclusive_while_leased(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let parts: Vec<(ChunkId, u32)> = (0..6).map(|i| (chunk(i), 10)).collect();
    let mut x = commit_of("claims", &parts, NODE, true);
    for (i, (id, _)) in parts.iter().enumerate().take(3) {
        x.new_locations.push(warm(*id, "pack-1", i as u64 * 10, 10));
    }
    commit_ok(s, &x).await;
    let all: BTreeSet<_> = x.new_locations.iter().map(key).collect();
    assert_eq!(all.len(), 9);
    let t1 = T0 + 1_000;

    let first = s.claim_locations(&claim(NODE, 4, t1)).await.unwrap();
    assert_eq!(first.len(), 4);
    let second = s.claim_locations(&claim(OTHER, 100, t1)).await.unwrap();
    assert_eq!(second.len(), 5);
    let first_keys: BTreeSet<_> = first.iter().map(key).collect();
    let second_keys: BTreeSet<_> = second.iter().map(key).collect();
    assert!(
        first_keys.is_disjoint(&second_keys),
        "a copy was claimed twice"
    );
    assert_eq!(
        first_keys
            .union(&second_keys)
            .cloned()
            .collect::<BTreeSet<_>>(),
        all
    );

    // Still leased one millisecond before the end ...
    assert!(s
        .claim_locations(&claim(THIRD, 100, t1 + 999))
        .await
        .unwrap()
        .is_empty());
    // ... and free when it ends.
    let third = s
        .claim_locations(&claim(THIRD, 100, t1 + 1_000))
        .await
        .unwrap();
    assert_eq!(third.iter().map(key).collect::<BTreeSet<_>>(), all);

    // Releasing another node's claims changes nothing.
    s.release_claims(OTHER, &third).await.unwrap();
    assert!(s
        .claim_locations(&claim(NODE, 100, t1 + 1_500))
        .await
        .unwrap()
        .is_empty());
    // The owner's release frees them at once.
    s.release_claims(THIRD, &third[..3]).await.unwrap();
    let again = s
        .claim_locations(&claim(OTHER, 100, t1 + 1_500))
        .await
        .unwrap();
    assert_eq!(
        again.iter().map(key).collect::<BTreeSet<_>>(),
        third[..3].iter().map(key).collect::<BTreeSet<_>>()
    );
    assert!(s
        .claim_locations(&claim(NODE, 0, t1 + 1_500))
        .await
        .unwrap()
        .is_empty());
    s.release_claims(NODE, &[]).await.unwrap();
}

/// Claims honour the tier filter, `own_hot_only`, and both orders.
pub async fn claims_filter_and_order(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let (a, b, c, d) = (chunk(1), chunk(2), chunk(3), chunk(4));
    let mut x = commit_of("mine", &[(a, 10), (b, 10), (c, 10)], NODE, true);
    x.new_locations.push(warm(a, "pack-1", 0, 10));
    x.new_locations.push(warm(b, "pack-1", 10, 10));
    commit_ok(s, &x).await;
    commit_ok(s, &commit_of("theirs", &[(d, 10)], OTHER, true)).await;
    let t1 = T0 + 10_000;
    let claimed = |v: Vec<Location>| v.iter().map(key).collect::<BTreeSet<_>>();

    let mut warm_only = claim(THIRD, 100, t1);
    warm_only.tier = Some(Tier::Warm);
    let got = s.claim_locations(&warm_only).await.unwrap();
    assert!(got.iter().all(|l| l.tier == Tier::Warm));
    assert_eq!(got.len(), 2);

    let mut own_hot = claim(NODE, 100, t1);
    own_hot.own_hot_only = true;
    let got = s.claim_locations(&own_hot).await.unwrap();
    let want: BTreeSet<_> = [a, b, c]
        .iter()
        .map(|id| key(&Location::hot(*id, NODE, 10, T0)))
        .collect();
    assert_eq!(claimed(got), want);

    // Readable only: shared copies and the claimer's own hot copies, never another
    // node's hot copy (d is OTHER's), once THIRD's 1 s claims on the warm copies lapse.
    let mut readable = claim(NODE, 100, t1 + 2_000);
    readable.readable_only = true;
    let got = s.claim_locations(&readable).await.unwrap();
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(got.iter().all(|l| l.readable_by(NODE)), "{got:?}");
    s.release_claims(NODE, &got).await.unwrap();

    // Oldest verified first (never verified before anything), one claim at a time.
    let t2 = t1 + 100_000; // all leases above have ended
    let v = |id: ChunkId, at_ms: u64| VerifyRecord {
        location: Location::hot(id, NODE, 10, T0),
        health: Health::Ok,
        at_ms,
        detail: String::new(),
    };
    s.record_verification(&[v(a, T0 + 300), v(b, T0 + 100), v(c, T0 + 200)])
        .await
        .unwrap();
    let mut order = Vec::new();
    for i in 0..3 {
        let mut req = claim(&format!("scrubber-{i}"), 1, t2);
        req.tier = Some(Tier::Hot);
        let got = s.claim_locations(&req).await.unwrap();
        assert_eq!(got.len(), 1);
        order.push(got[0].chunk);
    }
    // d (OTHER's hot copy) was verified at T0, before all of them.
    assert_eq!(order, vec![d, b, c]);

    // Least recently read chunk first (never read before anything).
    let t3 = t2 + 100_000;
    s.record_access(&[(a, T0 + 50, 1), (b, T0 + 10, 1), (d, T0 + 30, 1)])
        .await
        .unwrap();
    let mut order = Vec::new();
    for i in 0..4 {
        let mut req = claim(&format!("demoter-{i}"), 1, t3);
        req.tier = Some(Tier::Hot);
        req.order = ClaimOrder::LeastRecentlyAccessed;
        let got = s.claim_locations(&req).await.unwrap();
        assert_eq!(got.len(), 1, "claim {i}");
        assert_eq!(got[0].tier, Tier::Hot);
        order.push(got[0].chunk);
    }
    assert_eq!(order, vec![c, b, d, a]);
}

/// Many nodes claiming at once never receive the same copy.
pub async fn concurrent_claims_never_overlap(s: Arc<dyn MetaStore>) {
    let parts: Vec<(ChunkId, u32)> = (0..40).map(|i| (chunk(i), 10)).collect();
    commit_ok(&*s, &commit_of("many", &parts, NODE, true)).await;
    let t1 = T0 + 1_000;
    let mut tasks = Vec::new();
    for n in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            // A fresh node name per round: a node may be handed its own unexpired
            // claims again, and this check is about different nodes.
            for round in 0.. {
                let mut req = claim(&format!("worker-{n}-{round}"), 3, t1);
                req.lease_ms = 60_000;
                let got = s.claim_locations(&req).await.expect("claim");
                if got.is_empty() {
                    break;
                }
                mine.extend(got);
                tokio::task::yield_now().await;
            }
            mine
        }));
    }
    let mut seen = BTreeSet::new();
    for t in tasks {
        for l in t.await.expect("claim task") {
            assert!(seen.insert(key(&l)), "copy {:?} claimed twice", key(&l));
        }
    }
    assert_eq!(seen.len(), 40);
}

/// `stats` counts blobs, manifest entries, chunk records and copies.
pub async fn stats_count_rows(s: Arc<dyn MetaStore>) {
    let s = &*s;
    let empty = s.stats().await.unwrap();
    assert_eq!(
        (
            empty.blobs,
            empty.manifest_entries,
            empty.chunks,
            empty.locations
        ),
        (0, 0, 0, 0)
    );
    assert!(empty.schema_version >= 1);
    let (a, b, c) = (chunk(1), chunk(2), chunk(3));
    let mut x = commit_of("x", &[(a, 10), (b, 10), (a, 10)], NODE, true);
    x.new_locations.push(warm(b, "pack-1", 0, 10));
    commit_ok(s, &x).await;
    commit_ok(s, &commit_of("y", &[(c, 10), (b, 10)], NODE, true)).await;
    let st = s.stats().await.unwrap();
    assert_eq!(
        (st.blobs, st.manifest_entries, st.chunks, st.locations),
        (2, 5, 3, 4)
    );
    s.delete_blob(&blob_id("x"), T0).await.unwrap();
    s.gc_remove(&[a, b, c], NODE).await.unwrap();
    let st = s.stats().await.unwrap();
    assert_eq!(
        (st.blobs, st.manifest_entries, st.chunks, st.locations),
        (1, 2, 2, 3)
    );
    assert_eq!(st.schema_version, empty.schema_version);
    assert_consistent(s).await;
}
