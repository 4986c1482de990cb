//! Settings as a user writes them: sections that leave keys out, misspelled keys,
//! values out of range, empty environment overrides, and the README's example.

use strata::tier::settings::MIN_RESTORE_POLL_MS;
use strata::{ErrorKind, Settings, Store};

/// The error of parsing and validating `toml`.
fn rejected(toml: &str) -> strata::Error {
    match Settings::from_toml(toml) {
        Ok(s) => s.validate().expect_err(toml),
        Err(e) => e,
    }
}

#[test]
fn a_chunking_section_with_one_key_defaults_the_others() {
    let s = Settings::from_toml("[chunking]\nmax = 524288").expect("max alone parses");
    s.validate().expect("valid");
    assert_eq!(
        (s.chunking.min, s.chunking.avg, s.chunking.max),
        (16384, 65536, 524288)
    );
    let s = Settings::from_toml("[chunking]\nmin = 4096").expect("min alone parses");
    assert_eq!(
        (s.chunking.min, s.chunking.avg, s.chunking.max),
        (4096, 65536, 262144)
    );
    let s = Settings::from_toml("[chunking]").expect("empty section parses");
    assert_eq!(s.chunking, Settings::default().chunking);
}

#[test]
fn a_misspelled_key_is_reported_as_unknown_in_every_section() {
    for (toml, key) in [
        ("data_dirr = \"x\"", "data_dirr"),
        ("[chunking]\nminn = 4096", "minn"),
        ("[cache]\nbyte = 1", "byte"),
        ("[meta]\nuses = \"embedded\"", "uses"),
        ("[hot]\nflush_thread = 2", "flush_thread"),
        ("[gc]\ngrace = 1", "grace"),
        ("[access]\nflush_interval = 1", "flush_interval"),
        ("[tiers]\nrestore_poll = 1000", "restore_poll"),
        ("[tiers.warm]\npack_byte = 4096", "pack_byte"),
        ("[tiers.cold]\nrestore_delay = 1", "restore_delay"),
        ("[durability]\nmodes = \"local\"", "modes"),
        (
            "[connections.s3]\ntype = \"s3\"\nbucket = \"b\"\npathstyle = true",
            "pathstyle",
        ),
        (
            "[connections.pg]\ntype = \"postgres\"\nurl = \"postgres://h/d\"\npoolsize = 2",
            "poolsize",
        ),
    ] {
        let err = Settings::from_toml(toml).expect_err(toml);
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{toml}");
        let msg = err.to_string();
        assert!(
            msg.contains("unknown field") && msg.contains(key),
            "{toml}: {msg}"
        );
        assert!(!msg.contains("missing field"), "{toml}: {msg}");
    }
}

#[test]
fn every_section_defaults_the_keys_it_leaves_out() {
    for toml in [
        "[cache]",
        "[meta]",
        "[hot]\nsync = false",
        "[gc]",
        "[access]",
        "[tiers]\npromote = false",
        "[tiers.warm]\nzstd_level = 1",
        "[tiers.cold]\npack_bytes = 65536",
        "[durability]",
        "[connections.s3]\ntype = \"s3\"\nbucket = \"b\"",
        "[connections.pg]\ntype = \"postgres\"\nurl = \"postgres://h/d\"",
    ] {
        let s = Settings::from_toml(toml).unwrap_or_else(|e| panic!("{toml}: {e}"));
        s.validate().unwrap_or_else(|e| panic!("{toml}: {e}"));
    }
}

#[test]
fn chunking_values_are_checked_naming_the_key() {
    for (toml, key) in [
        ("[chunking]\nmin = 32", "chunking.min"),
        ("[chunking]\navg = 128", "chunking.avg"),
        ("[chunking]\nmax = 33554432", "chunking.max"),
        ("[chunking]\navg = 1048576", "chunking.avg"),
        ("[chunking]\nmin = 131072", "chunking.min"),
        ("[chunking]\nmax = 4096", "chunking.avg"),
    ] {
        let err = rejected(toml);
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{toml}");
        assert!(err.to_string().contains(key), "{toml}: {err}");
    }
}

#[test]
fn restore_poll_below_the_minimum_is_refused_naming_key_and_minimum() {
    for ms in [0, 1, MIN_RESTORE_POLL_MS - 1] {
        let toml = format!("[tiers]\nrestore_poll_ms = {ms}");
        let err = rejected(&toml);
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{toml}");
        let msg = err.to_string();
        assert!(
            msg.contains("tiers.restore_poll_ms") && msg.contains(&MIN_RESTORE_POLL_MS.to_string()),
            "{toml}: {msg}"
        );
    }
    let s = Settings::from_toml(&format!("[tiers]\nrestore_poll_ms = {MIN_RESTORE_POLL_MS}"))
        .expect("parses");
    s.validate().expect("the minimum itself is allowed");
}

/// A store's restore waits poll at `tiers.restore_poll_ms`; a store built from
/// settings in code (not a file) must not get past the minimum either.
#[tokio::test]
async fn a_store_refuses_to_open_with_a_busy_restore_poll() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Settings {
        data_dir: dir.path().join("data"),
        ..Settings::default()
    };
    s.tiers.restore_poll_ms = 0;
    let err = Store::open(s).await.err().expect("refused");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("tiers.restore_poll_ms"), "{err}");
}

#[test]
fn empty_environment_overrides_are_refused() {
    for key in [
        "STRATA_DATA_DIR",
        "STRATA_CACHE_BYTES",
        "STRATA_META_USE",
        "STRATA_META_URL",
    ] {
        let mut s = Settings::default();
        let err = s
            .apply_env(|k| (k == key).then(String::new))
            .expect_err(key);
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{key}");
        assert!(
            err.to_string().contains(&format!("{key} is empty")),
            "{err}"
        );
    }
    let s = Settings {
        data_dir: "".into(),
        ..Settings::default()
    };
    let err = s.validate().expect_err("empty data_dir");
    assert!(err.to_string().contains("data_dir is empty"), "{err}");
}

/// The settings block of README.md is valid TOML and valid settings, so a user can
/// start from it.
#[test]
fn the_readme_settings_example_parses() {
    let readme = include_str!("../README.md");
    let section = &readme[readme.find("## Settings").expect("a Settings section")..];
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let block = &section[start..];
    let block = &block[..block.find("```").expect("end of block")];
    let s = Settings::from_toml(block).unwrap_or_else(|e| panic!("README settings: {e}"));
    s.validate()
        .unwrap_or_else(|e| panic!("README settings: {e}"));
    let d = Settings::default();
    // The example shows the defaults.
    assert_eq!(s.chunking, d.chunking);
    assert_eq!(s.cache.bytes, d.cache.bytes);
    assert_eq!(s.tiers.restore_poll_ms, d.tiers.restore_poll_ms);
    assert_eq!(s.hot.write_buffer_bytes, d.hot.write_buffer_bytes);
}

/// Every bad `[policy]`, `[workers]`, `[costs]` and `[server]` value is refused before
/// anything is opened, naming the key.
#[test]
fn bad_policy_values_name_their_key() {
    for (toml, key) in [
        (
            "[policy]\nhot_low_watermark = 0.9\nhot_high_watermark = 0.9",
            "policy.hot_low_watermark",
        ),
        (
            "[policy]\nhot_low_watermark = 0.95",
            "policy.hot_low_watermark",
        ),
        (
            "[policy]\nhot_high_watermark = 1.5",
            "policy.hot_high_watermark",
        ),
        (
            "[policy]\nhot_high_watermark = 0.0",
            "policy.hot_high_watermark",
        ),
        (
            "[policy]\nhot_low_watermark = -0.1",
            "policy.hot_low_watermark",
        ),
        (
            "[policy]\nhot_high_watermark = nan",
            "policy.hot_high_watermark",
        ),
        ("[policy]\nrestore_days = 0", "policy.restore_days"),
        (
            "[policy.classes.fast]\nrestore_days = 0",
            "policy.classes.fast.restore_days",
        ),
        ("[policy]\nrestore_tier = \"Slow\"", "policy.restore_tier"),
        (
            "[policy]\nrestore_tier = \"standard\"",
            "policy.restore_tier",
        ),
        (
            "[policy.classes.x]\nrestore_tier = \"Instant\"",
            "policy.classes.x.restore_tier",
        ),
        (
            "[tiers.cold]\nstorage_class = \"STANDARD\"\n[policy]\nwarm_idle_secs = 10",
            "policy.warm_idle_secs",
        ),
        (
            "[tiers.cold]\nstorage_class = \"STANDARD\"\n[policy.classes.a]\nwarm_idle_secs = 10",
            "policy.classes.a.warm_idle_secs",
        ),
        (
            "[policy]\npromote_after_reads = 2\npromote_window_secs = 0",
            "policy.promote_window_secs",
        ),
        (
            "[policy]\npromote_window_secs = 0\n[policy.classes.a]\npromote_after_reads = 3",
            "policy.classes.a.promote_window_secs",
        ),
        ("[workers]\nlease_secs = 0", "workers.lease_secs"),
        ("[policy.classes.\"\"]\nhot_idle_secs = 1", "policy.classes"),
        ("[policy.classes.Big]\nhot_idle_secs = 1", "policy.classes"),
        (
            "[policy.classes.\"a b\"]\nhot_idle_secs = 1",
            "policy.classes",
        ),
        (
            "[server]\nmetrics_listen = \"localhost\"",
            "server.metrics_listen",
        ),
        (
            "[server]\nmetrics_listen = \"1.2.3.4\"",
            "server.metrics_listen",
        ),
        ("[costs]\nhot_gb_month = -1.0", "costs.hot_gb_month"),
        (
            "[costs]\nstorage_gb_month = { GLACIER = -0.1 }",
            "costs.storage_gb_month.GLACIER",
        ),
        ("[tiers]\nrestore_days = 3", "policy] restore_days"),
    ] {
        let err = rejected(toml);
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{toml}: {err}");
        assert!(err.to_string().contains(key), "{toml}: {err}");
    }
    // A misspelled policy key is unknown, as in every section.
    let err = Settings::from_toml("[policy]\nhot_idle = 1").unwrap_err();
    assert!(err.to_string().contains("hot_idle"), "{err}");
}

#[test]
fn good_policy_values_are_accepted() {
    for toml in [
        "[policy]\nhot_low_watermark = 0.5\nhot_high_watermark = 1.0",
        "[policy]\nwarm_idle_secs = 86400",
        "[tiers.cold]\nstorage_class = \"STANDARD_IA\"\n[policy]\nwarm_idle_secs = 86400",
        "[tiers.cold]\nstorage_class = \"GLACIER_IR\"\n[policy.classes.a]\nwarm_idle_secs = 1",
        "[tiers.cold]\nstorage_class = \"DEEP_ARCHIVE\"\n[policy]\nrestore_tier = \"Bulk\"",
        "[policy]\npromote_after_reads = 1\npromote_window_secs = 0",
        "[policy]\npromote_after_reads = 0\npromote_window_secs = 0",
        "[policy.classes.cold-ish_2]\nrestore_tier = \"Expedited\"\nrestore_days = 1",
        "[server]\nmetrics_listen = \"127.0.0.1:9464\"",
        "[server]\nmetrics_listen = \"[::1]:0\"",
        "[costs]\nhot_gb_month = 0.0",
        "[workers]\ndemote_interval_secs = 0\nlease_secs = 1",
    ] {
        let s = Settings::from_toml(toml).unwrap_or_else(|e| panic!("{toml}: {e}"));
        s.validate().unwrap_or_else(|e| panic!("{toml}: {e}"));
    }
    let s = Settings::from_toml("[tiers.cold]\nstorage_class = \"STANDARD_IA\"").unwrap();
    s.validate().unwrap();
    assert_eq!(s.tiers.cold.storage_class.unwrap().as_str(), "STANDARD_IA");
}

/// The settings are checked before the store touches the data directory.
#[tokio::test]
async fn bad_policy_fails_before_anything_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = Settings::from_toml("[policy]\nrestore_tier = \"Whenever\"").unwrap();
    s.data_dir = data.clone();
    let err = Store::open(s).await.err().expect("refused");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("policy.restore_tier"), "{err}");
    assert!(!data.exists(), "nothing was created");
}
