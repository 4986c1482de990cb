//! The Prometheus text exposition format (version 0.0.4): one `# HELP` and `# TYPE`
//! line per metric, then one line per series; histograms as cumulative `_bucket`
//! series with an `le` label, `_sum` and `_count`.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::SeriesKey;

/// A histogram's values at one moment.
pub(super) struct HistogramValues {
    pub bounds: &'static [f64],
    /// Per bucket, not cumulative; the last is `+Inf`.
    pub counts: Vec<u64>,
    pub sum: f64,
}

/// Every series at one moment.
pub(super) struct Snapshot {
    pub help: BTreeMap<String, String>,
    pub counters: BTreeMap<SeriesKey, u64>,
    pub gauges: BTreeMap<SeriesKey, f64>,
    pub histograms: BTreeMap<SeriesKey, HistogramValues>,
}

impl Snapshot {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut header = Header::default();
        for (k, v) in &self.counters {
            header.write(&mut out, &self.help, &k.name, "counter");
            series(&mut out, &name(&k.name), &k.labels, None, &v.to_string());
        }
        let mut header = Header::default();
        for (k, v) in &self.gauges {
            header.write(&mut out, &self.help, &k.name, "gauge");
            series(&mut out, &name(&k.name), &k.labels, None, &float(*v));
        }
        let mut header = Header::default();
        for (k, h) in &self.histograms {
            header.write(&mut out, &self.help, &k.name, "histogram");
            let base = name(&k.name);
            let bucket = format!("{base}_bucket");
            let mut cumulative = 0;
            for (i, count) in h.counts.iter().enumerate() {
                cumulative += count;
                let le = h.bounds.get(i).map_or("+Inf".to_string(), |b| float(*b));
                series(
                    &mut out,
                    &bucket,
                    &k.labels,
                    Some(&le),
                    &cumulative.to_string(),
                );
            }
            series(
                &mut out,
                &format!("{base}_sum"),
                &k.labels,
                None,
                &float(h.sum),
            );
            series(
                &mut out,
                &format!("{base}_count"),
                &k.labels,
                None,
                &cumulative.to_string(),
            );
        }
        out
    }
}

/// Writes `# HELP`/`# TYPE` once per metric name (series arrive sorted by name).
#[derive(Default)]
struct Header {
    last: Option<String>,
}

impl Header {
    fn write(&mut self, out: &mut String, help: &BTreeMap<String, String>, raw: &str, kind: &str) {
        if self.last.as_deref() == Some(raw) {
            return;
        }
        self.last = Some(raw.to_string());
        let n = name(raw);
        if let Some(h) = help.get(raw) {
            let h = h.replace('\\', "\\\\").replace('\n', "\\n");
            let _ = writeln!(out, "# HELP {n} {h}");
        }
        let _ = writeln!(out, "# TYPE {n} {kind}");
    }
}

fn series(
    out: &mut String,
    name: &str,
    labels: &[(String, String)],
    le: Option<&str>,
    value: &str,
) {
    out.push_str(name);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        let le = le.map(|v| ("le".to_string(), v.to_string()));
        for (k, v) in labels.iter().chain(le.iter()) {
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(out, "{}=\"{}\"", label_name(k), escape(v));
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// A metric name as Prometheus accepts it: `[a-zA-Z_:][a-zA-Z0-9_:]*`, other characters
/// (a `.` from a dotted name) as `_`.
fn name(raw: &str) -> String {
    sanitize(raw, true)
}

/// A label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn label_name(raw: &str) -> String {
    sanitize(raw, false)
}

fn sanitize(raw: &str, colon: bool) -> String {
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

/// A label value: backslash, double quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value: Go's float syntax, which Prometheus parses (`+Inf`, `-Inf`, `NaN`).
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Registry;
    use metrics::{with_local_recorder, Label};

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn counters_gauges_and_labels() {
        let r = Registry::new();
        r.describe("strata_requests_total", "Requests.\nBy op.");
        with_local_recorder(&r, || {
            metrics::counter!("strata_requests_total", "op" => "get", "tier" => "warm")
                .increment(3);
            metrics::counter!("strata_requests_total", "tier" => "warm", "op" => "get")
                .increment(2);
            metrics::counter!("strata_requests_total", "op" => "put", "tier" => "co\"ld\\")
                .increment(1);
            metrics::counter!("strata_plain_total").absolute(7);
            metrics::gauge!("strata_hot_bytes", "node" => "n1").set(1.5);
            metrics::gauge!("strata_hot_bytes", "node" => "n1").increment(1.0);
            metrics::gauge!("strata.dotted").set(f64::INFINITY);
        });
        let text = r.render();
        assert_eq!(
            lines(&text),
            vec![
                "# TYPE strata_plain_total counter",
                "strata_plain_total 7",
                "# HELP strata_requests_total Requests.\\nBy op.",
                "# TYPE strata_requests_total counter",
                "strata_requests_total{op=\"get\",tier=\"warm\"} 5",
                "strata_requests_total{op=\"put\",tier=\"co\\\"ld\\\\\"} 1",
                "# TYPE strata_dotted gauge",
                "strata_dotted +Inf",
                "# TYPE strata_hot_bytes gauge",
                "strata_hot_bytes{node=\"n1\"} 2.5",
            ],
            "{text}"
        );
    }

    #[test]
    fn histograms_are_cumulative() {
        let r = Registry::new();
        with_local_recorder(&r, || {
            let labels = vec![Label::new("worker", "demote")];
            let h = metrics::histogram!("strata_pass_seconds", labels);
            h.record(0.002);
            h.record(0.002);
            h.record(7.0);
            h.record(1e9);
        });
        let text = r.render();
        let l = lines(&text);
        assert_eq!(l[0], "# TYPE strata_pass_seconds histogram");
        assert_eq!(
            l[1],
            "strata_pass_seconds_bucket{worker=\"demote\",le=\"0.001\"} 0"
        );
        assert_eq!(
            l[2],
            "strata_pass_seconds_bucket{worker=\"demote\",le=\"0.005\"} 2"
        );
        assert!(l.contains(&"strata_pass_seconds_bucket{worker=\"demote\",le=\"5\"} 2"));
        assert!(l.contains(&"strata_pass_seconds_bucket{worker=\"demote\",le=\"10\"} 3"));
        assert!(l.contains(&"strata_pass_seconds_bucket{worker=\"demote\",le=\"3600\"} 3"));
        assert!(l.contains(&"strata_pass_seconds_bucket{worker=\"demote\",le=\"+Inf\"} 4"));
        assert!(l.contains(&"strata_pass_seconds_count{worker=\"demote\"} 4"));
        let sum = l
            .iter()
            .find_map(|s| s.strip_prefix("strata_pass_seconds_sum{worker=\"demote\"} "))
            .unwrap();
        assert_eq!(sum.parse::<f64>().unwrap(), 0.004 + 7.0 + 1e9);
        // One bucket line per bound plus +Inf, then _sum and _count.
        assert_eq!(l.len(), 1 + super::super::SECONDS_BUCKETS.len() + 1 + 2);
    }

    #[test]
    fn byte_histograms_get_byte_buckets() {
        let r = Registry::new();
        with_local_recorder(&r, || {
            metrics::histogram!("strata_pack_bytes").record(5000.0);
        });
        let text = r.render();
        assert!(
            text.contains("strata_pack_bytes_bucket{le=\"4096\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("strata_pack_bytes_bucket{le=\"16384\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn empty_registry_renders_nothing() {
        assert_eq!(Registry::new().render(), "");
    }
}
