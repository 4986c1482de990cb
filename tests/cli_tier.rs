//! The tiering engine's command line: `strata tier run | plan | status | pin | unpin`,
//! `put --class`, and `strata serve` with its metrics endpoint and signal shutdown.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::run_strata;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A settings file in `dir` with `extra` appended; returns its path as a string.
fn config(dir: &Path, extra: &str) -> String {
    let path = dir.join("strata.toml");
    let text = format!("[hot]\nsync = false\n{extra}");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn put_file(data_dir: &Path, extra_args: &[&str]) -> std::process::Output {
    let file = data_dir.with_extension("input");
    std::fs::write(&file, b"some bytes to tier".repeat(1000)).unwrap();
    let mut args = vec!["put", file.to_str().unwrap()];
    args.extend_from_slice(extra_args);
    run_strata(data_dir, &args)
}

#[test]
fn an_unknown_worker_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = run_strata(&data, &["tier", "run", "nosuch"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("nosuch"), "{}", stderr(&out));
    assert!(!data.exists(), "the store was not opened");
    let out = run_strata(&data, &["tier", "pin", &"ab".repeat(32), "--to", "cold"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn put_with_an_unknown_class_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = put_file(&data, &["--class", "nosuch"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("\"nosuch\""), "{}", stderr(&out));
    assert!(stderr(&out).contains("invalid input"), "{}", stderr(&out));
    let out = run_strata(&data, &["ls"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "", "nothing was stored");
}

#[test]
fn put_with_a_defined_class_stores_the_blob() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(dir.path(), "[policy.classes.archive]\nhot_idle_secs = 0\n");
    let out = put_file(&data, &["--config", &cfg, "--class", "archive"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
}

#[test]
fn pin_and_unpin_round_trip_through_stat() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = put_file(&data, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    let pin_of = |data: &Path| {
        let out = run_strata(data, &["stat", &id, "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["class"], "", "{v}");
        v["pin"].clone()
    };
    assert_eq!(pin_of(&data), serde_json::Value::Null);
    let out = run_strata(&data, &["tier", "pin", &id, "--to", "warm"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(pin_of(&data), "warm");
    let out = run_strata(&data, &["stat", &id]);
    assert!(stdout(&out).contains("pin:     warm"), "{}", stdout(&out));
    let out = run_strata(&data, &["tier", "pin", &id, "--to", "hot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(pin_of(&data), "hot");
    let out = run_strata(&data, &["tier", "unpin", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(pin_of(&data), serde_json::Value::Null);
    let missing = "00".repeat(32);
    let out = run_strata(&data, &["tier", "pin", &missing, "--to", "hot"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}

fn assert_fields(v: &serde_json::Value, fields: &[&str]) {
    for f in fields {
        assert!(v.get(f).is_some(), "no field {f} in {v}");
    }
}

#[test]
fn plan_and_status_print_their_reports_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = put_file(&data, &[]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = run_strata(&data, &["tier", "plan", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for step in ["demote_idle", "demote_watermark", "archive", "restore"] {
        assert_fields(&plan[step], &["chunks", "bytes", "objects_written"]);
    }

    let out = run_strata(&data, &["tier", "status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_fields(
        &s,
        &[
            "node",
            "usage",
            "watermarks",
            "pending_restores",
            "oldest_restore_ms",
            "workers",
            "backlog",
            "monthly_cost",
        ],
    );
    assert_fields(&s["usage"], &["hot", "warm", "cold", "hot_by_node"]);
    assert_fields(&s["usage"]["hot"], &["bytes", "chunks", "objects"]);
    assert!(s["usage"]["hot"]["bytes"].as_u64().unwrap() > 0, "{s}");
    assert_fields(
        &s["watermarks"],
        &[
            "hot_bytes",
            "hot_max_bytes",
            "high_bytes",
            "low_bytes",
            "state",
        ],
    );
    let costs = s["monthly_cost"].as_array().unwrap();
    for tier in ["hot", "warm", "cold"] {
        let c = costs.iter().find(|c| c["tier"] == tier).expect(tier);
        assert_fields(c, &["bytes", "usd_per_month"]);
    }

    let out = run_strata(&data, &["tier", "status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("TIER"), "{}", stdout(&out));
}

#[test]
fn tier_run_prints_one_report_per_pass() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = run_strata(&data, &["tier", "run", "all", "--json"]);
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} / {}", stdout(&out), stderr(&out)));
    let workers: Vec<&str> = reports
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["worker"].as_str().unwrap())
        .collect();
    assert_eq!(workers, ["restore", "demote", "archive", "gc"]);
    for r in reports.as_array().unwrap() {
        assert_fields(
            r,
            &[
                "started_ms",
                "duration_ms",
                "chunks_moved",
                "bytes_moved",
                "objects_written",
                "restores",
                "kept",
                "errors",
            ],
        );
    }
    let failed = reports
        .as_array()
        .unwrap()
        .iter()
        .any(|r| !r["errors"].as_array().unwrap().is_empty());
    assert_eq!(out.status.code(), Some(if failed { 1 } else { 0 }));
    assert!(!failed, "passes over an empty store fail: {reports}");
}

/// A port no one listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scrape(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Check every line of a Prometheus text body; returns the samples as (series, value).
fn parse_exposition(body: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (_, kind) = rest.split_once(' ').expect(line);
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect(line);
        let name = series.split('{').next().unwrap();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split("\",") {
                    let (k, v) = pair.split_once("=\"").expect(line);
                    assert!(!k.is_empty(), "{line}");
                    assert!(!v.contains('\n'), "{line}");
                }
            }
        }
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        samples.push((series.to_string(), v));
    }
    samples
}

#[cfg(unix)]
#[test]
fn serve_exports_metrics_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let cfg = config(
        dir.path(),
        &format!("[server]\nmetrics_listen = \"127.0.0.1:{port}\"\n"),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "--config",
            &cfg,
            "--data-dir",
            data.to_str().unwrap(),
            "serve",
        ])
        .env_remove("STRATA_CONFIG")
        .env_remove("STRATA_META_URL")
        .env_remove("STRATA_DATA_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the endpoint: the process has to open the store first.
    let start = Instant::now();
    let response = loop {
        match scrape(port) {
            Ok(r) => break r,
            Err(e) if start.elapsed() < Duration::from_secs(60) => {
                if let Some(status) = child.try_wait().unwrap() {
                    let mut err = String::new();
                    child
                        .stderr
                        .take()
                        .unwrap()
                        .read_to_string(&mut err)
                        .unwrap();
                    panic!("serve exited with {status}: {err}");
                }
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("no metrics endpoint after 60 s: {e}"),
        }
    };
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let samples = parse_exposition(body);
    let value = |series: &str| samples.iter().find(|(s, _)| s == series).map(|s| s.1);
    assert_eq!(
        value(&format!(
            "strata_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        Some(1.0),
        "{body}"
    );
    // Opening the store checked its identity object in the warm tier: counted.
    let warm_requests: f64 = samples
        .iter()
        .filter(|(s, _)| {
            s.starts_with("strata_object_requests_total{") && s.contains("tier=\"warm\"")
        })
        .map(|s| s.1)
        .sum();
    assert!(warm_requests >= 1.0, "{body}");

    let status = signal_and_wait(&mut child, libc::SIGTERM, "SIGTERM");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("started"), "{err}");
    assert!(err.contains("SIGTERM"), "{err}");
    assert!(err.contains("stopped cleanly"), "{err}");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the endpoint is gone"
    );
    // The store was closed properly: another command opens it at once.
    let out = run_strata(&data, &["ls"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Send `signal` to `child` and wait for it to exit: at most 10 s, else the test fails.
#[cfg(unix)]
fn signal_and_wait(
    child: &mut std::process::Child,
    signal: i32,
    name: &str,
) -> std::process::ExitStatus {
    let t = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "serve did not stop within 10 s of {name}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(unix)]
#[test]
fn serve_without_metrics_stops_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--data-dir", data.to_str().unwrap(), "serve"])
        .env_remove("STRATA_CONFIG")
        .env_remove("STRATA_META_URL")
        .env_remove("STRATA_DATA_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the whole start line: then the signal handlers are installed and the store
    // open. (A pipe read may end inside the line.)
    let mut stderr_pipe = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    let whole_line = |seen: &[u8]| {
        let text = String::from_utf8_lossy(seen);
        text.find("started")
            .is_some_and(|at| text[at..].contains('\n'))
    };
    while !whole_line(&seen) {
        let n = stderr_pipe.read(&mut buf).unwrap();
        assert!(n > 0, "serve ended: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&seen).into_owned();
    assert!(line.contains("metrics off"), "{line}");
    assert!(line.contains("demote 60s"), "{line}");
    let status = signal_and_wait(&mut child, libc::SIGINT, "SIGINT");
    let mut rest = String::new();
    stderr_pipe.read_to_string(&mut rest).unwrap();
    assert_eq!(status.code(), Some(0), "{line}{rest}");
    assert!(rest.contains("SIGINT"), "{rest}");
}
