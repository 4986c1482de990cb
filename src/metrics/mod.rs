//! Metrics (docs/tiers.md, "Running the engine"): the code records through the
//! `metrics` crate's macros; `strata serve` installs this crate's [`Registry`] as the
//! process's recorder once ([`Registry::global`]) and serves it in the Prometheus text
//! exposition format ([`http`]). Without a recorder installed (every other command)
//! the macros do nothing.
//!
//! Counters, gauges and histograms with labels. Histograms have fixed buckets:
//! [`BYTE_BUCKETS`] for names ending in `_bytes`, [`SECONDS_BUCKETS`] otherwise.

pub mod http;
pub mod names;
mod render;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata,
    SharedString, Unit,
};

use crate::error::{Error, Result};

/// Upper bounds of the buckets of duration histograms, seconds: a request of a few
/// milliseconds to a pass of an hour.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0,
];

/// Upper bounds of the buckets of size histograms (names ending in `_bytes`): 1 KiB to
/// 4 GiB by factors of 4.
pub const BYTE_BUCKETS: &[f64] = &[
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
    4294967296.0,
];

/// One series: a metric name and its labels, sorted by label name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SeriesKey {
    name: String,
    labels: Vec<(String, String)>,
}

impl SeriesKey {
    fn of(key: &Key) -> Self {
        let mut labels: Vec<(String, String)> = key
            .labels()
            .map(|l| (l.key().to_string(), l.value().to_string()))
            .collect();
        labels.sort();
        SeriesKey {
            name: key.name().to_string(),
            labels,
        }
    }
}

#[derive(Debug, Default)]
struct CounterCell(AtomicU64);

impl CounterFn for CounterCell {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }
}

/// An `f64` in an atomic, as its bits.
#[derive(Debug, Default)]
struct AtomicF64(AtomicU64);

impl AtomicF64 {
    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    fn add(&self, d: f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + d).to_bits())
            });
    }
}

#[derive(Debug, Default)]
struct GaugeCell(AtomicF64);

impl GaugeFn for GaugeCell {
    fn increment(&self, value: f64) {
        self.0.add(value);
    }

    fn decrement(&self, value: f64) {
        self.0.add(-value);
    }

    fn set(&self, value: f64) {
        self.0.set(value);
    }
}

#[derive(Debug)]
struct HistogramCell {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); one more than `bounds` for `+Inf`.
    counts: Vec<AtomicU64>,
    sum: AtomicF64,
}

impl HistogramCell {
    fn new(name: &str) -> Self {
        let bounds = if name.ends_with("_bytes") {
            BYTE_BUCKETS
        } else {
            SECONDS_BUCKETS
        };
        HistogramCell {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicF64::default(),
        }
    }
}

impl HistogramFn for HistogramCell {
    fn record(&self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum.add(value);
    }
}

#[derive(Debug, Default)]
struct Inner {
    counters: Mutex<BTreeMap<SeriesKey, Arc<CounterCell>>>,
    gauges: Mutex<BTreeMap<SeriesKey, Arc<GaugeCell>>>,
    histograms: Mutex<BTreeMap<SeriesKey, Arc<HistogramCell>>>,
    help: Mutex<BTreeMap<String, String>>,
}

/// A `metrics` recorder keeping every series in memory for [`Registry::render`].
/// Cloning shares the series.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    inner: Arc<Inner>,
}

static GLOBAL: OnceLock<Registry> = OnceLock::new();

/// The cell of `key` in `map`, created on first use. A poisoned lock only means another
/// thread panicked while inserting; the map itself is still whole.
fn cell<T: Default>(map: &Mutex<BTreeMap<SeriesKey, Arc<T>>>, key: &Key) -> Arc<T> {
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(SeriesKey::of(key)).or_default().clone()
}

impl Registry {
    /// An empty registry, not installed.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process's registry, installed as the `metrics` recorder on first call. Fails
    /// if another recorder was installed first.
    pub fn global() -> Result<&'static Registry> {
        if let Some(r) = GLOBAL.get() {
            return Ok(r);
        }
        let registry = Registry::new();
        metrics::set_global_recorder(registry.clone()).map_err(|_| {
            Error::internal("another metrics recorder is already installed in this process")
        })?;
        names::describe_all(&registry);
        Ok(GLOBAL.get_or_init(|| registry))
    }

    /// Set the `# HELP` text of a metric.
    pub fn describe(&self, name: &str, help: &str) {
        let mut h = self.inner.help.lock().unwrap_or_else(|e| e.into_inner());
        h.insert(name.to_string(), help.to_string());
    }

    /// Every series in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let snapshot = render::Snapshot {
            help: lock_clone(&self.inner.help, |v| v.clone()),
            counters: lock_clone(&self.inner.counters, |c| c.0.load(Ordering::Relaxed)),
            gauges: lock_clone(&self.inner.gauges, |g| g.0.get()),
            histograms: lock_clone(&self.inner.histograms, |h| render::HistogramValues {
                bounds: h.bounds,
                counts: h.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
                sum: h.sum.get(),
            }),
        };
        snapshot.render()
    }
}

fn lock_clone<K: Clone + Ord, V, T>(
    map: &Mutex<BTreeMap<K, V>>,
    f: impl Fn(&V) -> T,
) -> BTreeMap<K, T> {
    let map = map.lock().unwrap_or_else(|e| e.into_inner());
    map.iter().map(|(k, v)| (k.clone(), f(v))).collect()
}

impl metrics::Recorder for Registry {
    fn describe_counter(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.describe(key.as_str(), &description);
    }

    fn describe_gauge(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.describe(key.as_str(), &description);
    }

    fn describe_histogram(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.describe(key.as_str(), &description);
    }

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> Counter {
        Counter::from_arc(cell(&self.inner.counters, key))
    }

    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(cell(&self.inner.gauges, key))
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        let mut map = self
            .inner
            .histograms
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let cell = map
            .entry(SeriesKey::of(key))
            .or_insert_with(|| Arc::new(HistogramCell::new(key.name())))
            .clone();
        Histogram::from_arc(cell)
    }
}
