//! The tiering engine's metadata on PostgreSQL: leases on the database clock and
//! fencing, the hot index and its counters kept in step with every location write,
//! pins, classes, pack read times, and query plans that use indexes. Against a real
//! server (`STRATA_TEST_PG_URL`; skipped without it, a failure under `CI=true`).

#[path = "common/engine_conformance.rs"]
mod engine_conformance;
#[path = "common/meta_conformance.rs"]
mod meta_conformance;
mod support;

use std::sync::Arc;
use std::time::Duration;

use meta_conformance::{chunk, commit_of, commit_ok, warm, Fixture, NODE, OTHER, T0};
use strata::meta::postgres::{scan_statements, PostgresMeta};
use strata::meta::{
    EngineStore, HotOrder, MetaStore, PackRecord, PackRestore, PlacementChange, PlacementStore,
};
use strata::model::{Location, Tier};
use strata::object::StorageClass;
use strata::settings::PostgresConnection;
use strata::ErrorKind;
use support::pg;
use tokio_postgres::NoTls;

async fn store() -> Option<(PostgresMeta, String)> {
    let url = pg::fresh_schema_url().await?;
    let meta = PostgresMeta::connect(&PostgresConnection {
        url: url.clone(),
        pool_size: 4,
        connect_timeout_secs: 5,
    })
    .await
    .expect("connect");
    Some((meta, url))
}

/// A fresh store for the engine conformance suite. The database clock cannot be moved,
/// so leases are granted for 1 s and lapse by sleeping 1.2 s.
async fn make_engine() -> Option<engine_conformance::EngineFixture> {
    let (meta, _) = store().await?;
    Some(engine_conformance::EngineFixture {
        fixture: Fixture {
            store: Arc::new(meta),
            guard: Box::new(()),
        },
        lapse: engine_conformance::Lapse {
            ttl_ms: 1000,
            run: Arc::new(|| Box::pin(tokio::time::sleep(Duration::from_millis(1200)))),
        },
    })
}

engine_conformance_tests!(make_engine);

async fn plain(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

fn pack(id: &str, class: &str, created_ms: u64) -> PackRecord {
    PackRecord {
        id: id.to_string(),
        tier: Tier::Warm,
        storage_class: StorageClass::Standard,
        size: 1000,
        live_bytes: 900,
        created_ms,
        restore: PackRestore::NONE,
        class: class.to_string(),
        min_keep_until_ms: Some(created_ms + 5),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lapsed_lease_fences_the_late_commit() {
    let Some((s, _)) = store().await else { return };
    let c = commit_of("fenced", &[(chunk(1), 100), (chunk(2), 50)], NODE, true);
    commit_ok(&s, &c).await;
    let a = s
        .acquire_lease("demote:node-a", "A", 500)
        .await
        .unwrap()
        .expect("free lease");
    let now = s.db_now_ms().await.unwrap();
    assert!(
        a.until_ms > now && a.until_ms <= now + 600,
        "{a:?} at {now}"
    );
    // Live and held by A: B is refused, A renews with the same token.
    assert!(s
        .acquire_lease("demote:node-a", "B", 500)
        .await
        .unwrap()
        .is_none());
    let again = s
        .acquire_lease("demote:node-a", "A", 500)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.token, a.token);
    // A pauses; the database clock moves on and B takes over with a larger token.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let b = s
        .acquire_lease("demote:node-a", "B", 60_000)
        .await
        .unwrap()
        .expect("lapsed lease is free");
    assert!(b.token > a.token);

    let demote = |n: u32, len: u64, pack_id: &str| PlacementChange {
        packs: vec![pack(pack_id, "", T0)],
        add: vec![warm(chunk(n), pack_id, 0, len)],
        remove: vec![Location::hot(chunk(n), NODE, len, T0)],
        ..Default::default()
    };
    let err = s
        .commit_placement(Some(&a.fence()), &demote(1, 100, "warm/a"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fenced, "{err}");
    assert!(s.pack("warm/a").await.unwrap().is_none());
    assert_eq!(s.locations(&chunk(1)).await.unwrap().len(), 1);
    assert_eq!(s.hot_bytes(NODE).await.unwrap(), 150);

    let removed = s
        .commit_placement(Some(&b.fence()), &demote(1, 100, "warm/b"))
        .await
        .unwrap();
    assert_eq!(removed, vec![Location::hot(chunk(1), NODE, 100, T0)]);
    assert_eq!(s.hot_bytes(NODE).await.unwrap(), 50);
    let locs = s.locations(&chunk(1)).await.unwrap();
    assert_eq!(locs, vec![warm(chunk(1), "warm/b", 0, 100)]);
    let usage = s.usage().await.unwrap();
    assert_eq!((usage.warm.chunks, usage.warm.objects), (1, 1));
    assert_eq!((usage.hot.bytes, usage.hot.chunks), (50, 1));

    // Released: the next grant takes a new token.
    s.release_lease(&b).await.unwrap();
    let a2 = s
        .acquire_lease("demote:node-a", "A", 1000)
        .await
        .unwrap()
        .unwrap();
    assert!(a2.token > b.token);
    // A stale fence with the right holder but an old token is refused too.
    let err = s
        .commit_placement(Some(&a.fence()), &PlacementChange::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fenced);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_counter_follows_every_location_write() {
    let Some((s, _)) = store().await else { return };
    let c = commit_of("x", &[(chunk(1), 100), (chunk(2), 10)], NODE, true);
    commit_ok(&s, &c).await;
    assert_eq!(s.hot_bytes(NODE).await.unwrap(), 110);
    // Another blob re-writing the same copies (an upsert) does not count them twice.
    let y = commit_of("y", &[(chunk(2), 10), (chunk(3), 7)], NODE, true);
    commit_ok(&s, &y).await;
    assert_eq!(s.hot_bytes(NODE).await.unwrap(), 117);
    // add_locations on another node, then again (idempotent).
    let other = Location::hot(chunk(1), OTHER, 100, T0);
    s.add_locations(std::slice::from_ref(&other)).await.unwrap();
    s.add_locations(std::slice::from_ref(&other)).await.unwrap();
    assert_eq!(s.hot_bytes(OTHER).await.unwrap(), 100);
    // A refused removal changes nothing; an allowed one decrements.
    let mine = Location::hot(chunk(3), NODE, 7, T0);
    assert!(s
        .remove_locations(std::slice::from_ref(&mine), NODE)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.hot_bytes(NODE).await.unwrap(), 117);
    // OTHER's hot copy of chunk 1 keeps nothing readable for NODE: add a shared one.
    s.add_locations(&[warm(chunk(1), "warm/p9", 0, 100)])
        .await
        .unwrap();
    assert_eq!(
        s.remove_locations(&[Location::hot(chunk(1), NODE, 100, T0)], NODE)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(s.hot_bytes(NODE).await.unwrap(), 17);
    // gc_remove of an unreferenced chunk.
    s.delete_blob(&y.blob.id, T0 + 1).await.unwrap();
    assert_eq!(
        s.gc_remove(&[chunk(3)], NODE).await.unwrap(),
        vec![chunk(3)]
    );
    assert_eq!(s.hot_bytes(NODE).await.unwrap(), 10);
    let usage = s.usage().await.unwrap();
    assert_eq!(usage.hot.bytes, 110);
    assert_eq!(usage.hot.chunks, 2);
    let nodes: Vec<&str> = usage.hot_by_node.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(nodes, vec![NODE, OTHER]);
    assert_eq!(s.hot_bytes("node-none").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_index_pages_by_last_read_and_class() {
    let Some((s, _)) = store().await else { return };
    let mut c = commit_of("classy", &[(chunk(1), 10), (chunk(2), 20)], NODE, true);
    c.blob.class = "archive".into();
    commit_ok(&s, &c).await;
    let d = commit_of("plain", &[(chunk(3), 30)], NODE, true);
    commit_ok(&s, &d).await;
    // Blob class and pin round-trip.
    assert_eq!(s.blob(&c.blob.id).await.unwrap().unwrap().class, "archive");
    // Reads move chunk 1 to the back; an older time does not move it back.
    s.touch_hot(NODE, &[(chunk(1), T0 + 50), (chunk(1), T0 + 40)])
        .await
        .unwrap();
    s.touch_hot(NODE, &[(chunk(1), T0 + 10), (chunk(9), T0 + 99)])
        .await
        .unwrap();
    let all = s
        .hot_copies(NODE, &HotOrder::LeastRecentlyRead, u64::MAX, None, 10)
        .await
        .unwrap();
    let order: Vec<_> = all.iter().map(|h| (h.chunk, h.last_read_ms)).collect();
    let mut first_two = [(chunk(2), T0), (chunk(3), T0)];
    first_two.sort();
    assert_eq!(order[..2], first_two[..]);
    assert_eq!(order[2], (chunk(1), T0 + 50));
    let one = all.iter().find(|h| h.chunk == chunk(1)).unwrap();
    assert_eq!(one.class, "archive");
    assert_eq!(one.blob, Some(c.blob.id));
    assert_eq!(one.placed_ms, T0);
    // Paging with the cursor, and the read_before bound.
    let page = s
        .hot_copies(
            NODE,
            &HotOrder::LeastRecentlyRead,
            u64::MAX,
            Some(all[0].cursor()),
            1,
        )
        .await
        .unwrap();
    assert_eq!(page, vec![all[1].clone()]);
    let idle = s
        .hot_copies(NODE, &HotOrder::LeastRecentlyRead, T0 + 49, None, 10)
        .await
        .unwrap();
    assert_eq!(idle.len(), 2);
    let archive = s
        .hot_copies(NODE, &HotOrder::Class("archive".into()), u64::MAX, None, 10)
        .await
        .unwrap();
    assert_eq!(
        archive.iter().map(|h| h.chunk).collect::<Vec<_>>(),
        vec![chunk(2), chunk(1)]
    );
    let default = s
        .hot_copies(NODE, &HotOrder::Class(String::new()), u64::MAX, None, 10)
        .await
        .unwrap();
    assert_eq!(default.len(), 1);
    assert!(s
        .hot_copies(OTHER, &HotOrder::LeastRecentlyRead, u64::MAX, None, 10)
        .await
        .unwrap()
        .is_empty());
    // A promotion indexes the new copy under its class and blob, read now.
    let promote = PlacementChange {
        add: vec![Location::hot(chunk(3), OTHER, 30, T0 + 5)],
        hot_class: "hotclass".into(),
        hot_blob: Some(d.blob.id),
        read_ms: Some(T0 + 500),
        ..Default::default()
    };
    assert!(s.commit_placement(None, &promote).await.unwrap().is_empty());
    let got = s
        .hot_copies(
            OTHER,
            &HotOrder::Class("hotclass".into()),
            u64::MAX,
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].placed_ms, got[0].last_read_ms), (T0 + 5, T0 + 500));
    assert_eq!(got[0].blob, Some(d.blob.id));
    // Adding a copy of a chunk without a record writes nothing.
    let bad = PlacementChange {
        packs: vec![pack("warm/bad", "", T0)],
        add: vec![warm(chunk(77), "warm/bad", 0, 1)],
        ..Default::default()
    };
    let err = s.commit_placement(None, &bad).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(s.pack("warm/bad").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_count_distinct_chunks_and_follow_deletes() {
    let Some((s, _)) = store().await else { return };
    let c = commit_of(
        "p",
        &[(chunk(1), 10), (chunk(1), 10), (chunk(2), 5)],
        NODE,
        true,
    );
    commit_ok(&s, &c).await;
    let mut d = commit_of("q", &[(chunk(2), 5)], NODE, false);
    d.blob.pin = Some(Tier::Warm);
    commit_ok(&s, &d).await;
    assert_eq!(
        s.blob(&d.blob.id).await.unwrap().unwrap().pin,
        Some(Tier::Warm)
    );
    assert!(s.set_pin(&c.blob.id, Some(Tier::Hot)).await.unwrap());
    assert_eq!(
        s.blob(&c.blob.id).await.unwrap().unwrap().pin,
        Some(Tier::Hot)
    );
    let pins = s.pins(&[chunk(1), chunk(2), chunk(3)]).await.unwrap();
    assert_eq!(pins.len(), 2);
    assert_eq!(
        (pins[0].0 == chunk(1)) as u8 + (pins[1].0 == chunk(1)) as u8,
        1
    );
    let of = |c| pins.iter().find(|(x, _)| *x == c).unwrap().1;
    assert_eq!((of(chunk(1)).hot, of(chunk(1)).warm), (1, 1));
    assert_eq!((of(chunk(2)).hot, of(chunk(2)).warm), (1, 2));
    assert_eq!(of(chunk(2)).floor(), Some(Tier::Hot));
    // Re-pinning replaces; unpinning and deleting decrement.
    assert!(s.set_pin(&c.blob.id, Some(Tier::Warm)).await.unwrap());
    assert!(s.set_pin(&c.blob.id, Some(Tier::Warm)).await.unwrap());
    let pins = s.pins(&[chunk(2)]).await.unwrap();
    assert_eq!((pins[0].1.hot, pins[0].1.warm), (0, 2));
    s.delete_blob(&d.blob.id, T0).await.unwrap();
    assert!(s.set_pin(&c.blob.id, None).await.unwrap());
    assert!(s.pins(&[chunk(1), chunk(2)]).await.unwrap().is_empty());
    assert!(!s
        .set_pin(&meta_conformance::blob_id("none"), Some(Tier::Hot))
        .await
        .unwrap());
    let listed = s.list_blobs(None, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].pin, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_candidates_follow_pack_reads() {
    let Some((s, _)) = store().await else { return };
    let c = commit_of(
        "a",
        &[(chunk(1), 10), (chunk(2), 20), (chunk(3), 30)],
        NODE,
        true,
    );
    commit_ok(&s, &c).await;
    for (id, class, n) in [("warm/p1", "", 1), ("warm/p2", "", 2), ("warm/p3", "x", 3)] {
        let change = PlacementChange {
            packs: vec![pack(id, class, T0)],
            add: vec![warm(chunk(n), id, 0, 10)],
            ..Default::default()
        };
        s.commit_placement(None, &change).await.unwrap();
    }
    let p = s.pack("warm/p3").await.unwrap().unwrap();
    // Live bytes are those of the copy committed with it (10), not the record's.
    assert_eq!(
        p,
        strata::meta::PackRecord {
            live_bytes: 10,
            ..pack("warm/p3", "x", T0)
        }
    );
    s.record_access(&[(chunk(2), T0 + 100, 1)]).await.unwrap();
    let names = |v: Vec<strata::meta::ArchiveCandidate>| {
        v.into_iter()
            .map(|c| (c.pack.id, c.last_read_ms))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(s.archive_candidates("", T0 + 50, None, 10).await.unwrap()),
        vec![("warm/p1".to_string(), T0)]
    );
    assert_eq!(
        names(s.archive_candidates("", T0 + 100, None, 10).await.unwrap()),
        vec![
            ("warm/p1".to_string(), T0),
            ("warm/p2".to_string(), T0 + 100)
        ]
    );
    assert_eq!(
        names(
            s.archive_candidates("", T0 + 100, Some("warm/p1"), 10)
                .await
                .unwrap()
        ),
        vec![("warm/p2".to_string(), T0 + 100)]
    );
    assert_eq!(
        names(s.archive_candidates("x", T0, None, 10).await.unwrap()),
        vec![("warm/p3".to_string(), T0)]
    );
    assert_eq!(
        s.pack_locations("warm/p2").await.unwrap(),
        vec![warm(chunk(2), "warm/p2", 0, 10)]
    );
    // Restore requests and passes.
    let requested = PackRestore {
        state: strata::meta::RestoreState::Requested,
        expiry_ms: Some(T0 + 9),
    };
    assert!(s
        .set_pack_restore("warm/p2", &PackRestore::NONE, &requested)
        .await
        .unwrap());
    let r = s.restore_requests(None, 10).await.unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].id, "warm/p2");
    assert!(s
        .restore_requests(Some("warm/p2"), 10)
        .await
        .unwrap()
        .is_empty());
    let pass = strata::meta::PassRecord {
        node: NODE.into(),
        worker: "demote".into(),
        started_ms: T0,
        duration_ms: 5,
        error: Some("boom".into()),
        chunks: 3,
        bytes: 4,
    };
    s.record_pass(&pass).await.unwrap();
    let mut later = pass.clone();
    later.error = None;
    s.record_pass(&later).await.unwrap();
    assert_eq!(s.passes().await.unwrap(), vec![later]);
}

/// The engine's scans use indexes on a table with enough rows, with the planner's
/// defaults (sequential scans allowed) and fresh statistics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_scans_use_indexes() {
    let Some((_s, url)) = store().await else {
        return;
    };
    let db = plain(&url).await;
    db.batch_execute(
        "INSERT INTO hot_copies (node, chunk, length, placed_ms, last_read_ms, class) \
         SELECT 'node-' || (i % 20), sha256(int8send(i)), 65536, i, i, \
                CASE WHEN i % 3 = 0 THEN 'archive' ELSE '' END \
         FROM generate_series(1, 60000) i; \
         INSERT INTO packs (id, tier, storage_class, size, live_bytes, created_ms, class, \
                            last_read_ms) \
         SELECT 'warm/' || lpad(i::text, 8, '0'), 'warm', 'STANDARD', 1, 1, i, \
                CASE WHEN i % 3 = 0 THEN 'archive' ELSE '' END, i + 10 \
         FROM generate_series(1, 20000) i; \
         ANALYZE hot_copies; ANALYZE packs;",
    )
    .await
    .expect("populate");
    let params: [(&str, &str); 3] = [
        (
            "hot_copies least recently read",
            "('node-3', 30000, -1, ''::bytea, 100)",
        ),
        (
            "hot_copies of a class",
            "('node-3', 30000, -1, ''::bytea, 100, 'archive')",
        ),
        ("archive_candidates", "('', 100, '', 100)"),
    ];
    let statements = scan_statements();
    assert_eq!(statements.len(), params.len());
    for ((name, sql), (pname, args)) in statements.iter().zip(params) {
        assert_eq!(*name, pname);
        db.batch_execute(&format!("DEALLOCATE ALL; PREPARE q AS {sql}"))
            .await
            .expect("prepare");
        let rows = db
            .query(&format!("EXPLAIN EXECUTE q{args}"), &[])
            .await
            .expect("explain");
        let plan: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        let plan = plan.join("\n");
        assert!(
            plan.contains("Index"),
            "{name} does not use an index:\n{plan}"
        );
        assert!(!plan.contains("Seq Scan"), "{name} scans a table:\n{plan}");
    }
}
