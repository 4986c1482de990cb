//! One conformance suite for every `ObjectStore`: the local directory store (with a
//! manual clock for the restore-in-progress state), moto's server (archive semantics)
//! and SeaweedFS (a real store that checks credentials but not archive classes).
//!
//!     eval "$(bash scripts/s3.sh)" && cargo test --release --test object_conformance
//!
//! Without the endpoint variables the S3 tests print "skipping" (and fail under CI=true).

mod object_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use object_support::{random_bytes, Backend, LOCAL_RESTORE_DELAY_MS};
use strata::object::{
    FaultyObjectStore, LocalObjectStore, ObjectStore, RestoreStatus, S3ObjectStore, StorageClass,
};
use strata::{ErrorKind, ManualClock};

const DAY_MS: u64 = 86_400_000;

/// The kind of an error result, panicking on success.
fn kind<T: std::fmt::Debug>(r: strata::Result<T>) -> ErrorKind {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.kind(),
    }
}

/// Run each check against each backend: `local::check`, `moto::check`, `seaweed::check`.
macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let b = super::object_support::local();
                    super::$check(&b).await;
                    b.cleanup().await;
                }
            )*
        }
        mod moto {
            use super::object_support::{s3, Server};
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let Some(b) = s3(Server::Moto).await else { return };
                    super::$check(&b).await;
                    b.cleanup().await;
                }
            )*
        }
        mod seaweed {
            use super::object_support::{s3, Server};
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let Some(b) = s3(Server::Seaweed).await else { return };
                    super::$check(&b).await;
                    b.cleanup().await;
                }
            )*
        }
    };
}

conformance!(
    put_get_round_trip,
    get_range_bounds,
    head_reports_size_and_class,
    delete_then_not_found,
    list_by_prefix,
    list_paginates,
    list_page_walks_in_pages,
    copy_changes_class,
    multipart_body,
    malformed_keys_rejected,
    archive_classes,
    restore_state_machine,
    copy_resets_restore,
    ranged_get_latency,
);

async fn put_get_round_trip(b: &Backend) {
    let s = &b.store;
    for (i, len) in [0usize, 1, 1000, 100 * 1024].into_iter().enumerate() {
        let key = format!("rt/obj-{i}");
        let body = random_bytes(len, i as u64);
        s.put(&key, body.clone(), StorageClass::Standard)
            .await
            .unwrap();
        assert_eq!(s.get(&key).await.unwrap(), body, "{} len {len}", b.name);
        assert_eq!(s.head(&key).await.unwrap().size, len as u64);
    }
    // Overwrite replaces.
    s.put(
        "rt/obj-1",
        Bytes::from_static(b"second"),
        StorageClass::Standard,
    )
    .await
    .unwrap();
    assert_eq!(&s.get("rt/obj-1").await.unwrap()[..], b"second");
    assert_eq!(kind(s.get("rt/missing").await), ErrorKind::NotFound);
}

async fn get_range_bounds(b: &Backend) {
    let s = &b.store;
    let body = random_bytes(1000, 7);
    s.put("range/x", body.clone(), StorageClass::Standard)
        .await
        .unwrap();
    for r in [0..10u64, 990..1000, 0..1000, 123..456, 999..1000] {
        let got = s.get_range("range/x", r.clone()).await.unwrap();
        assert_eq!(
            got,
            body.slice(r.start as usize..r.end as usize),
            "{} {r:?}",
            b.name
        );
    }
    // Empty ranges: no bytes, no request, even at or past the end or on a missing key.
    assert!(s.get_range("range/x", 500..500).await.unwrap().is_empty());
    assert!(s.get_range("range/x", 1000..1000).await.unwrap().is_empty());
    assert!(s.get_range("range/missing", 0..0).await.unwrap().is_empty());
    // Ranges that leave the object are refused, never clamped.
    for r in [995..1005u64, 1000..1001, 2000..3000, 0..1001] {
        assert_eq!(
            kind(s.get_range("range/x", r.clone()).await),
            ErrorKind::InvalidInput,
            "{r:?}"
        );
    }
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 10..5;
    assert_eq!(
        kind(s.get_range("range/x", backwards).await),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        kind(s.get_range("range/missing", 0..10).await),
        ErrorKind::NotFound
    );
}

async fn head_reports_size_and_class(b: &Backend) {
    let s = &b.store;
    for (i, class) in StorageClass::ALL.into_iter().enumerate() {
        let key = format!("head/{class}");
        s.put(&key, random_bytes(100 + i, i as u64), class)
            .await
            .unwrap();
        let meta = s.head(&key).await.unwrap();
        assert_eq!(meta.key, key);
        assert_eq!(meta.size, 100 + i as u64);
        assert_eq!(meta.storage_class, class, "{}", b.name);
        assert!(meta.last_modified_ms.is_some());
        let expected = if class.needs_restore() {
            RestoreStatus::Archived
        } else {
            RestoreStatus::NotArchived
        };
        assert_eq!(meta.restore, expected, "{} {class}", b.name);
    }
    assert_eq!(kind(s.head("head/missing").await), ErrorKind::NotFound);
}

async fn delete_then_not_found(b: &Backend) {
    let s = &b.store;
    s.put("del/x", Bytes::from_static(b"x"), StorageClass::Standard)
        .await
        .unwrap();
    s.delete("del/x").await.unwrap();
    assert_eq!(kind(s.get("del/x").await), ErrorKind::NotFound);
    assert_eq!(kind(s.head("del/x").await), ErrorKind::NotFound);
    assert_eq!(kind(s.get_range("del/x", 0..1).await), ErrorKind::NotFound);
    s.delete("del/x").await.unwrap();
    s.delete("del/never-was").await.unwrap();
    assert!(s.list("del/").await.unwrap().is_empty());
}

async fn list_by_prefix(b: &Backend) {
    let s = &b.store;
    let keys = ["list/a/1", "list/a/2", "list/b/1", "listx", "other/1"];
    for (i, k) in keys.iter().enumerate() {
        let class = if i == 1 {
            StorageClass::GlacierIr
        } else {
            StorageClass::Standard
        };
        s.put(k, random_bytes(10 * (i + 1), i as u64), class)
            .await
            .unwrap();
    }
    let names =
        |v: Vec<strata::object::ObjectMeta>| v.into_iter().map(|m| m.key).collect::<Vec<_>>();
    assert_eq!(
        names(s.list("list/a/").await.unwrap()),
        ["list/a/1", "list/a/2"]
    );
    assert_eq!(
        names(s.list("list/").await.unwrap()),
        ["list/a/1", "list/a/2", "list/b/1"]
    );
    assert_eq!(
        names(s.list("list").await.unwrap()),
        ["list/a/1", "list/a/2", "list/b/1", "listx"]
    );
    assert_eq!(names(s.list("list/a/1").await.unwrap()), ["list/a/1"]);
    assert_eq!(names(s.list("").await.unwrap()).len(), keys.len());
    assert!(s.list("nothing/").await.unwrap().is_empty());
    let a = s.list("list/a/").await.unwrap();
    assert_eq!(
        (a[0].size, a[0].storage_class),
        (10, StorageClass::Standard)
    );
    assert_eq!(
        (a[1].size, a[1].storage_class),
        (20, StorageClass::GlacierIr),
        "{}",
        b.name
    );
    assert_eq!(kind(s.list("/list").await), ErrorKind::InvalidInput);
    assert_eq!(kind(s.list("../").await), ErrorKind::InvalidInput);
}

async fn list_paginates(b: &Backend) {
    // More than one page of ListObjectsV2 (1000 keys).
    let n = 1050;
    let s = b.store.clone();
    futures::stream::iter(0..n)
        .map(|i| {
            let s = s.clone();
            async move {
                let body = Bytes::from(format!("{i}"));
                s.put(&format!("page/{i:05}"), body, StorageClass::Standard)
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    let listed = s.list("page/").await.unwrap();
    assert_eq!(listed.len(), n, "{}", b.name);
    for (i, m) in listed.iter().enumerate() {
        assert_eq!(m.key, format!("page/{i:05}"));
        assert_eq!(m.size, format!("{i}").len() as u64);
    }
}

async fn list_page_walks_in_pages(b: &Backend) {
    // Keys across directories (in the local store) whose order is not the order of
    // their directory names: `d-x` sorts before `d/…` ('-' < '/'), `d0` after.
    let s = b.store.clone();
    let mut keys: Vec<String> = (0..37).map(|i| format!("walk/d/{i:03}")).collect();
    keys.extend(["walk/d0", "walk/d/sub/z", "walk/e/1", "walkz"].map(String::from));
    // SeaweedFS lists in its filer's directory order (`d/…` before `d-x`), not in S3's
    // byte order; strata's pack keys (`warm/<hex>`, paged after the last key listed)
    // sort the same either way.
    let byte_order = b.name != "seaweed";
    if byte_order {
        keys.push("walk/d-x".to_string());
    }
    futures::stream::iter(keys.clone())
        .map(|k| {
            let s = s.clone();
            async move {
                s.put(&k, Bytes::from(k.clone()), StorageClass::Standard)
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    keys.retain(|k| k.starts_with("walk/"));
    keys.sort();
    for limit in [1, 7, 10, 1000] {
        let mut seen: Vec<String> = Vec::new();
        let mut pages = 0;
        loop {
            let after = seen.last().cloned();
            let page = s.list_page("walk/", after.as_deref(), limit).await.unwrap();
            pages += 1;
            assert!(page.len() <= limit, "{}: page of {}", b.name, page.len());
            for m in &page {
                assert_eq!(m.size, m.key.len() as u64);
            }
            let done = page.len() < limit;
            seen.extend(page.into_iter().map(|m| m.key));
            if done {
                break;
            }
        }
        assert_eq!(seen, keys, "{} with pages of {limit}", b.name);
        assert_eq!(pages, keys.len() / limit + 1, "{}", b.name);
    }
    // A start key that is no object, inside a directory and past everything.
    let names =
        |v: Vec<strata::object::ObjectMeta>| v.into_iter().map(|m| m.key).collect::<Vec<_>>();
    assert_eq!(
        names(s.list_page("walk/", Some("walk/d/035x"), 3).await.unwrap()),
        ["walk/d/036", "walk/d/sub/z", "walk/d0"]
    );
    if byte_order {
        assert_eq!(
            names(s.list_page("walk/d", Some("walk/d-"), 2).await.unwrap()),
            ["walk/d-x", "walk/d/000"]
        );
    }
    // SeaweedFS also skips a whole directory named by a start key that is no object.
    if byte_order {
        assert_eq!(
            names(s.list_page("walk/d", Some("walk/d/sub"), 10).await.unwrap()),
            ["walk/d/sub/z", "walk/d0"]
        );
    }
    assert!(s
        .list_page("walk/", Some("walk/zz"), 5)
        .await
        .unwrap()
        .is_empty());
    assert!(s.list_page("walk/", None, 0).await.unwrap().is_empty());
    assert_eq!(
        kind(s.list_page("../", None, 5).await),
        ErrorKind::InvalidInput
    );
}

async fn copy_changes_class(b: &Backend) {
    let s = &b.store;
    let body = random_bytes(5000, 3);
    s.put("copy/src", body.clone(), StorageClass::Standard)
        .await
        .unwrap();
    s.copy("copy/src", "copy/dst", StorageClass::GlacierIr)
        .await
        .unwrap();
    let dst = s.head("copy/dst").await.unwrap();
    assert_eq!(
        (dst.size, dst.storage_class),
        (5000, StorageClass::GlacierIr),
        "{}",
        b.name
    );
    assert_eq!(s.get("copy/dst").await.unwrap(), body);
    assert_eq!(
        s.head("copy/src").await.unwrap().storage_class,
        StorageClass::Standard
    );
    // In place: warm → cold.
    s.copy("copy/src", "copy/src", StorageClass::GlacierIr)
        .await
        .unwrap();
    assert_eq!(
        s.head("copy/src").await.unwrap().storage_class,
        StorageClass::GlacierIr
    );
    assert_eq!(s.get("copy/src").await.unwrap(), body);
    s.copy("copy/src", "copy/src", StorageClass::Glacier)
        .await
        .unwrap();
    let meta = s.head("copy/src").await.unwrap();
    assert_eq!(
        (meta.size, meta.storage_class),
        (5000, StorageClass::Glacier)
    );
    if b.enforces_archive {
        assert_eq!(kind(s.get("copy/src").await), ErrorKind::RestorePending);
        assert_eq!(
            kind(
                s.copy("copy/src", "copy/again", StorageClass::Standard)
                    .await
            ),
            ErrorKind::RestorePending
        );
    }
    assert_eq!(
        kind(
            s.copy("copy/missing", "copy/x", StorageClass::Standard)
                .await
        ),
        ErrorKind::NotFound
    );
    // Onto itself without a class change: allowed, changes nothing.
    s.copy("copy/dst", "copy/dst", StorageClass::GlacierIr)
        .await
        .unwrap();
    assert_eq!(
        s.head("copy/dst").await.unwrap().storage_class,
        StorageClass::GlacierIr
    );
    assert_eq!(s.get("copy/dst").await.unwrap(), body);
}

async fn multipart_body(b: &Backend) {
    let s = &b.store;
    let body = random_bytes(40 << 20, 11);
    let started = Instant::now();
    s.put("big/x", body.clone(), StorageClass::Standard)
        .await
        .unwrap();
    eprintln!("{}: put 40 MiB in {:?}", b.name, started.elapsed());
    assert_eq!(s.head("big/x").await.unwrap().size, 40 << 20);
    let got = s.get("big/x").await.unwrap();
    assert_eq!(got.len(), body.len());
    assert!(got == body, "{}: 40 MiB body differs", b.name);
    let edge = 16u64 << 20;
    let r = edge - 10..edge + 10;
    let got = s.get_range("big/x", r.clone()).await.unwrap();
    assert_eq!(got, body.slice(r.start as usize..r.end as usize));
    let tail = (40u64 << 20) - 3..40 << 20;
    assert_eq!(s.get_range("big/x", tail.clone()).await.unwrap().len(), 3);
}

async fn malformed_keys_rejected(b: &Backend) {
    let s = &b.store;
    let long = "k".repeat(1025);
    let bad = [
        "",
        "/abs",
        "../escape",
        "a/../../etc/passwd",
        "a//b",
        "a/",
        "./x",
        "sp ace",
        "q?x",
        "ü",
        &long,
    ];
    for key in bad {
        let body = Bytes::from_static(b"x");
        assert_eq!(
            kind(s.put(key, body, StorageClass::Standard).await),
            ErrorKind::InvalidInput,
            "{key:?}"
        );
        assert_eq!(kind(s.get(key).await), ErrorKind::InvalidInput);
        assert_eq!(kind(s.get_range(key, 0..1).await), ErrorKind::InvalidInput);
        assert_eq!(kind(s.get_range(key, 0..0).await), ErrorKind::InvalidInput);
        assert_eq!(kind(s.head(key).await), ErrorKind::InvalidInput);
        assert_eq!(kind(s.delete(key).await), ErrorKind::InvalidInput);
        assert_eq!(kind(s.restore(key, 1).await), ErrorKind::InvalidInput);
        assert_eq!(kind(s.restore_status(key).await), ErrorKind::InvalidInput);
        assert_eq!(
            kind(s.copy(key, "ok", StorageClass::Standard).await),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            kind(s.copy("ok", key, StorageClass::Standard).await),
            ErrorKind::InvalidInput
        );
    }
    assert!(
        s.list("").await.unwrap().is_empty(),
        "{}: nothing was written",
        b.name
    );
}

async fn archive_classes(b: &Backend) {
    let s = &b.store;
    let body = random_bytes(3000, 5);
    // GLACIER_IR is an archive class that is read directly.
    s.put("arch/ir", body.clone(), StorageClass::GlacierIr)
        .await
        .unwrap();
    assert_eq!(s.get("arch/ir").await.unwrap(), body);
    assert_eq!(
        s.restore_status("arch/ir").await.unwrap(),
        RestoreStatus::NotArchived
    );
    s.put("arch/std", body.clone(), StorageClass::Standard)
        .await
        .unwrap();
    for class in [StorageClass::Glacier, StorageClass::DeepArchive] {
        let key = format!("arch/{class}");
        s.put(&key, body.clone(), class).await.unwrap();
        assert_eq!(
            s.restore_status(&key).await.unwrap(),
            RestoreStatus::Archived
        );
        if !b.enforces_archive {
            eprintln!(
                "{}: does not enforce archive classes; {class} is readable at once",
                b.name
            );
            assert_eq!(s.get(&key).await.unwrap(), body);
            continue;
        }
        assert_eq!(
            kind(s.get(&key).await),
            ErrorKind::RestorePending,
            "{} {class}",
            b.name
        );
        assert_eq!(
            kind(s.get_range(&key, 0..10).await),
            ErrorKind::RestorePending
        );
        // Listings see the class too.
        let listed = s.list(&key).await.unwrap();
        assert_eq!(listed[0].storage_class, class);
        assert_eq!(listed[0].restore, RestoreStatus::Archived);
    }
    if b.enforces_archive {
        // Restoring what needs no restore, or what is not there.
        assert_eq!(
            kind(s.restore("arch/std", 1).await),
            ErrorKind::InvalidInput
        );
        assert_eq!(kind(s.restore("arch/ir", 1).await), ErrorKind::InvalidInput);
        assert_eq!(
            kind(s.restore("arch/missing", 1).await),
            ErrorKind::NotFound
        );
    } else {
        eprintln!(
            "{}: skipping restore requests (RestoreObject not implemented)",
            b.name
        );
    }
}

async fn restore_state_machine(b: &Backend) {
    if !b.enforces_archive {
        eprintln!(
            "{}: skipping the restore state machine (no archive semantics)",
            b.name
        );
        return;
    }
    let s = &b.store;
    let body = random_bytes(2048, 9);
    s.put("restore/x", body.clone(), StorageClass::Glacier)
        .await
        .unwrap();
    assert_eq!(
        s.restore_status("restore/x").await.unwrap(),
        RestoreStatus::Archived
    );
    assert_eq!(kind(s.get("restore/x").await), ErrorKind::RestorePending);
    s.restore("restore/x", 2).await.unwrap();
    if let Some(clock) = &b.clock {
        // Local: the restore takes LOCAL_RESTORE_DELAY_MS of the manual clock.
        assert_eq!(
            s.restore_status("restore/x").await.unwrap(),
            RestoreStatus::InProgress
        );
        assert_eq!(
            s.head("restore/x").await.unwrap().restore,
            RestoreStatus::InProgress
        );
        let e = s.get("restore/x").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RestorePending);
        assert!(e.to_string().contains("in progress"), "{e}");
        clock.advance(LOCAL_RESTORE_DELAY_MS / 2);
        s.restore("restore/x", 2).await.unwrap(); // again while in progress: fine
        assert_eq!(
            s.restore_status("restore/x").await.unwrap(),
            RestoreStatus::InProgress
        );
        clock.advance(LOCAL_RESTORE_DELAY_MS / 2 - 1);
        assert_eq!(
            kind(s.get_range("restore/x", 0..1).await),
            ErrorKind::RestorePending
        );
        clock.advance(1);
    }
    let RestoreStatus::Restored { expiry_ms } = s.restore_status("restore/x").await.unwrap() else {
        panic!("{}: not restored", b.name);
    };
    let expiry_ms = expiry_ms.expect("expiry date");
    assert_eq!(s.get("restore/x").await.unwrap(), body);
    assert_eq!(
        s.get_range("restore/x", 10..20).await.unwrap(),
        body.slice(10..20)
    );
    // A second request on a restored copy succeeds (and extends it).
    s.restore("restore/x", 2).await.unwrap();
    assert!(s.restore_status("restore/x").await.unwrap().is_readable());
    if let Some(clock) = &b.clock {
        assert_eq!(expiry_ms, clock_now(clock) + 2 * DAY_MS);
        clock.advance(2 * DAY_MS);
        assert_eq!(
            s.restore_status("restore/x").await.unwrap(),
            RestoreStatus::Archived
        );
        assert_eq!(kind(s.get("restore/x").await), ErrorKind::RestorePending);
    }
    // DEEP_ARCHIVE goes the same way.
    s.put("restore/deep", body.clone(), StorageClass::DeepArchive)
        .await
        .unwrap();
    s.restore("restore/deep", 1).await.unwrap();
    if let Some(clock) = &b.clock {
        clock.advance(LOCAL_RESTORE_DELAY_MS);
    }
    assert_eq!(s.get("restore/deep").await.unwrap(), body);
}

fn clock_now(clock: &ManualClock) -> u64 {
    use strata::Clock;
    clock.now_ms()
}

async fn copy_resets_restore(b: &Backend) {
    if !b.enforces_archive {
        eprintln!("{}: skipping restore resets (no archive semantics)", b.name);
        return;
    }
    let s = &b.store;
    let body = random_bytes(4096, 13);
    s.put("reset/x", body.clone(), StorageClass::Glacier)
        .await
        .unwrap();
    s.restore("reset/x", 1).await.unwrap();
    if let Some(clock) = &b.clock {
        clock.advance(LOCAL_RESTORE_DELAY_MS);
    }
    assert_eq!(s.get("reset/x").await.unwrap(), body);
    // A restored object can be copied out of the archive class…
    s.copy("reset/x", "reset/warm", StorageClass::Standard)
        .await
        .unwrap();
    assert_eq!(s.get("reset/warm").await.unwrap(), body);
    // …and a copy into another archive class starts unrestored.
    s.copy("reset/x", "reset/x", StorageClass::DeepArchive)
        .await
        .unwrap();
    assert_eq!(
        s.restore_status("reset/x").await.unwrap(),
        RestoreStatus::Archived
    );
    assert_eq!(kind(s.get("reset/x").await), ErrorKind::RestorePending);
}

async fn ranged_get_latency(b: &Backend) {
    let s = &b.store;
    let body = random_bytes(1 << 20, 17);
    s.put("lat/x", body.clone(), StorageClass::Standard)
        .await
        .unwrap();
    let mut times = Vec::new();
    for i in 0..20u64 {
        let start = (i * 37_000) % ((1 << 20) - 65_536);
        let t = Instant::now();
        let got = s.get_range("lat/x", start..start + 65_536).await.unwrap();
        times.push(t.elapsed());
        assert_eq!(got.len(), 65_536);
    }
    times.sort();
    eprintln!(
        "{}: 64 KiB ranged GET median {:?}, max {:?}",
        b.name, times[10], times[19]
    );
}

// ---- outside the macro ------------------------------------------------------------------

/// A store on `conn` with made-up static credentials, so a test of a failing endpoint
/// does not walk the default chain out to instance metadata first.
async fn with_static_credentials(
    conn: &strata::settings::S3Connection,
    prefix: &str,
) -> S3ObjectStore {
    let config = S3ObjectStore::client_config(conn)
        .await
        .unwrap()
        .to_builder()
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "k", "s", None, None, "test",
        ))
        .build();
    S3ObjectStore::from_client(aws_sdk_s3::Client::from_conf(config), &conn.bucket, prefix).unwrap()
}

/// An endpoint nobody listens on is `Unavailable`, promptly, for reads and writes.
#[tokio::test]
async fn unreachable_endpoint_is_unavailable() {
    let mut conn = object_support::connection("http://127.0.0.1:1", "nobucket");
    conn.timeout_secs = 2;
    conn.max_attempts = 2;
    let store = with_static_credentials(&conn, "p/").await;
    let started = Instant::now();
    assert_eq!(kind(store.head("a").await), ErrorKind::Unavailable);
    assert_eq!(
        kind(store.get_range("a", 0..10).await),
        ErrorKind::Unavailable
    );
    let e = store
        .put("a", Bytes::from_static(b"x"), StorageClass::Standard)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

/// An HTTPS endpoint whose certificate does not verify (moto with `--ssl` serves a
/// self-signed one) is a clear `InvalidInput` naming the TLS certificate, not an
/// `Unavailable` "could not reach the endpoint" that invites retrying. Runs where the
/// S3 test servers are (moto installed).
#[tokio::test]
async fn untrusted_tls_certificate_is_a_clear_error() {
    if object_support::endpoint("STRATA_TEST_MOTO_ENDPOINT").is_none() {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(
        std::process::Command::new("python3")
            .args(["-m", "moto.server", "--ssl", "-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start moto with --ssl"),
    );
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "moto --ssl did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut conn = object_support::connection(&format!("https://127.0.0.1:{port}"), "b");
    conn.timeout_secs = 5;
    conn.max_attempts = 1;
    let store = with_static_credentials(&conn, "").await;
    let e = store.head("a").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("TLS certificate"), "{e}");
}

/// SeaweedFS checks signatures: a wrong secret is a clear credentials error, not
/// `Unavailable`, and the secret is not in the message.
#[tokio::test]
async fn seaweed_wrong_credentials() {
    let Some(endpoint) = object_support::endpoint("STRATA_TEST_SEAWEED_ENDPOINT") else {
        return;
    };
    let Some(access_key) = std::env::var("AWS_ACCESS_KEY_ID").ok() else {
        panic!("AWS_ACCESS_KEY_ID must be set with STRATA_TEST_SEAWEED_ENDPOINT");
    };
    let conn = object_support::connection(&endpoint, "strata-wrong-credentials");
    let secret = "definitely-not-the-secret";
    let config = S3ObjectStore::client_config(&conn)
        .await
        .unwrap()
        .to_builder()
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            &access_key,
            secret,
            None,
            None,
            "test",
        ))
        .build();
    let store = S3ObjectStore::from_client(aws_sdk_s3::Client::from_conf(config), &conn.bucket, "")
        .unwrap();
    let e = store.get("a").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let text = format!("{e} {e:?}");
    assert!(text.contains("check credentials"), "{text}");
    assert!(!text.contains(secret), "the secret leaked: {text}");
}

/// The wrapper counts every call and fails them on demand.
#[tokio::test]
async fn faulty_store_counts_and_fails() {
    let b = object_support::local();
    let f = Arc::new(FaultyObjectStore::new(b.store.clone()));
    let s: Arc<dyn ObjectStore> = f.clone();
    s.put("f/x", Bytes::from_static(b"hello"), StorageClass::Standard)
        .await
        .unwrap();
    assert_eq!(&s.get("f/x").await.unwrap()[..], b"hello");
    s.get_range("f/x", 0..2).await.unwrap();
    s.head("f/x").await.unwrap();
    assert_eq!(f.count("put"), 1);
    assert_eq!(f.count("get"), 1);
    assert_eq!(f.counts()["get_range"], 1);
    assert_eq!(f.counts()["list"], 0);
    assert_eq!(f.total(), 4);

    f.set_fail_all(true);
    assert_eq!(kind(s.get("f/x").await), ErrorKind::Unavailable);
    assert_eq!(kind(s.delete("f/x").await), ErrorKind::Unavailable);
    f.set_fail_all(false);
    f.set_fail_writes(true);
    assert_eq!(
        kind(s.put("f/y", Bytes::new(), StorageClass::Standard).await),
        ErrorKind::Unavailable
    );
    s.get("f/x").await.unwrap();
    f.set_fail_writes(false);
    f.set_fail_reads(true);
    assert_eq!(kind(s.list("").await), ErrorKind::Unavailable);
    f.set_fail_reads(false);
    f.fail_next(2);
    assert_eq!(kind(s.head("f/x").await), ErrorKind::Unavailable);
    assert_eq!(kind(s.get("f/x").await), ErrorKind::Unavailable);
    s.head("f/x").await.unwrap();
    f.set_corrupt_reads(true);
    assert_ne!(&s.get("f/x").await.unwrap()[..], b"hello");
    f.set_corrupt_reads(false);
    assert_eq!(f.count("get"), 5);
    f.reset_counts();
    assert_eq!(f.total(), 0);
}

/// The local store's files: data and sidecar trees, no temporary files left, keys that
/// would need a file and a directory at one path refused.
#[tokio::test]
async fn local_layout_and_collisions() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("objects");
    let s = LocalObjectStore::new(root.clone(), ManualClock::new(1000), 10);
    s.put(
        "packs/abc",
        Bytes::from_static(b"data"),
        StorageClass::Glacier,
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(root.join("data/packs/abc")).unwrap(), b"data");
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("meta/packs/abc")).unwrap()).unwrap();
    assert_eq!(sidecar["storage_class"], "GLACIER");
    assert_eq!(sidecar["created_ms"], 1000);
    let names: Vec<_> = std::fs::read_dir(root.join("data/packs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["abc"], "no temporary files left behind");

    // An object written by hand, without a sidecar, is STANDARD.
    std::fs::write(root.join("data/packs/manual"), b"m").unwrap();
    let meta = s.head("packs/manual").await.unwrap();
    assert_eq!((meta.size, meta.storage_class), (1, StorageClass::Standard));

    assert_eq!(
        kind(
            s.put("packs/abc/x", Bytes::new(), StorageClass::Standard)
                .await
        ),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        kind(s.put("packs", Bytes::new(), StorageClass::Standard).await),
        ErrorKind::InvalidInput
    );
    assert_eq!(kind(s.get("packs").await), ErrorKind::NotFound);
    assert_eq!(kind(s.get("packs/abc/x").await), ErrorKind::NotFound);
    s.delete("packs").await.unwrap();
    s.delete("packs/abc/x").await.unwrap();
    assert_eq!(s.list("").await.unwrap().len(), 2);
    // A restore for 0 days is refused.
    assert_eq!(
        kind(s.restore("packs/abc", 0).await),
        ErrorKind::InvalidInput
    );
}

/// Concurrent writers of one key: readers see one whole body or the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_concurrent_puts_are_atomic() {
    let b = object_support::local();
    let bodies: Vec<Bytes> = (0..4).map(|i| random_bytes(256 * 1024, i)).collect();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = b.store.clone();
        let body = bodies[i % 4].clone();
        tasks.push(tokio::spawn(async move {
            s.put("race/x", body, StorageClass::Standard).await
        }));
    }
    for _ in 0..16 {
        if let Ok(got) = b.store.get("race/x").await {
            assert!(bodies.contains(&got), "a torn read");
        }
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(bodies.contains(&b.store.get("race/x").await.unwrap()));
    assert_eq!(b.store.list("").await.unwrap().len(), 1);
}
