//! What `sluice top` shows, computed from two scrapes of `/metrics`: rates
//! are the counters' differences over the time between the scrapes, and
//! quantiles come from the histogram buckets' differences (so they describe
//! that interval, as Prometheus' `histogram_quantile(rate(…))` does).

use std::collections::BTreeSet;

use crate::cli::scrape::Series;

/// One scrape and when it was taken.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub series: Vec<Series>,
    pub secs: f64,
}

impl Scrape {
    /// The series of `name` whose labels include `filter`.
    fn matching<'a>(&'a self, name: &'a str, filter: &'a [(&str, &str)]) -> impl Iterator<Item = &'a Series> {
        self.series.iter().filter(move |s| s.name == name && filter.iter().all(|(k, v)| s.label(k) == Some(v)))
    }

    /// Sum of `name` over the series whose labels include `filter`.
    fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.matching(name, filter).map(|s| s.value).sum()
    }

    fn has(&self, name: &str, filter: &[(&str, &str)]) -> bool {
        self.matching(name, filter).next().is_some()
    }

    /// `(upper bound, cumulative count)` of a histogram's buckets.
    fn buckets(&self, name: &str, filter: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let bucket = format!("{name}_bucket");
        let mut out: Vec<(f64, f64)> = Vec::new();
        for s in self.matching(&bucket, filter) {
            let Some(le) =
                s.label("le").and_then(|le| if le == "+Inf" { Some(f64::INFINITY) } else { le.parse().ok() })
            else {
                continue;
            };
            match out.iter_mut().find(|(b, _)| *b == le) {
                Some((_, n)) => *n += s.value,
                None => out.push((le, s.value)),
            }
        }
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }
}

/// One listener's line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListenerRow {
    pub name: String,
    /// `None` for a listener that takes no events (admin).
    pub events_per_sec: Option<f64>,
    pub bytes_per_sec: f64,
    /// `None` for a listener without connections (UDP).
    pub connections: Option<f64>,
    pub refused_per_sec: f64,
    pub cut_per_sec: f64,
    pub dropped_per_sec: f64,
    /// Ack latency over the interval, for listeners that acknowledge.
    pub ack_p50: Option<f64>,
    pub ack_p99: Option<f64>,
}

/// Everything on the screen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    pub listeners: Vec<ListenerRow>,
    pub stored_per_sec: f64,
    pub duplicates_per_sec: f64,
    pub commits_per_sec: f64,
    pub commit_failures_per_sec: f64,
    pub commit_p50: Option<f64>,
    pub commit_p99: Option<f64>,
    pub batches_per_commit: Option<f64>,
    /// `(stage, p50, p99)` in the order the stages come.
    pub stages: Vec<(String, Option<f64>, Option<f64>)>,
    pub inflight_bytes: f64,
    pub untrusted_bytes: f64,
    pub budget_bytes: f64,
    pub stored_bytes: f64,
    pub retention_max_bytes: f64,
    pub disk_free_bytes: Option<f64>,
    pub disk_total_bytes: Option<f64>,
    /// CPU use of the daemon in percent of one core.
    pub cpu_percent: f64,
    pub resident_bytes: f64,
}

const STAGES: [&str; 8] = ["receive", "decode", "encode", "budget", "queue", "write", "commit", "reply"];

/// The view of the interval from `before` to `now`.
pub fn view(before: &Scrape, now: &Scrape) -> View {
    let secs = (now.secs - before.secs).max(1e-3);
    let rate = |name: &str, f: &[(&str, &str)]| ((now.sum(name, f) - before.sum(name, f)) / secs).max(0.0);
    let quantiles = |name: &str, f: &[(&str, &str)]| {
        let d = delta(&before.buckets(name, f), &now.buckets(name, f));
        (quantile(&d, 0.5), quantile(&d, 0.99))
    };
    let names: BTreeSet<&str> = now
        .series
        .iter()
        .filter(|s| s.name == "sluice_bytes_received_total")
        .filter_map(|s| s.label("listener"))
        .collect();
    let listeners = names
        .into_iter()
        .map(|l| {
            let f = [("listener", l)];
            let (ack_p50, ack_p99) = quantiles("sluice_ack_duration_seconds", &f);
            ListenerRow {
                name: l.to_owned(),
                events_per_sec: now
                    .has("sluice_events_received_total", &f)
                    .then(|| rate("sluice_events_received_total", &f)),
                bytes_per_sec: rate("sluice_bytes_received_total", &f),
                connections: now.has("sluice_connections_open", &f).then(|| now.sum("sluice_connections_open", &f)),
                refused_per_sec: rate("sluice_frames_refused_total", &f),
                cut_per_sec: rate("sluice_connections_cut_total", &f),
                dropped_per_sec: rate("sluice_events_dropped_overload_total", &f)
                    + rate("sluice_udp_kernel_drops_total", &f),
                ack_p50,
                ack_p99,
            }
        })
        .collect();
    let (commit_p50, commit_p99) = quantiles("sluice_commit_duration_seconds", &[]);
    let commits = rate("sluice_commit_batches_count", &[]);
    let stages = STAGES
        .iter()
        .map(|s| {
            let (p50, p99) = quantiles("sluice_ack_stage_duration_seconds", &[("stage", s)]);
            (s.to_string(), p50, p99)
        })
        .collect();
    let gauge = |name: &str| now.sum(name, &[]);
    View {
        listeners,
        stored_per_sec: rate("sluice_events_stored_total", &[]),
        duplicates_per_sec: rate("sluice_batches_duplicate_total", &[]),
        commits_per_sec: rate("sluice_commits_total", &[]),
        commit_failures_per_sec: rate("sluice_commit_failures_total", &[]),
        commit_p50,
        commit_p99,
        batches_per_commit: (commits > 0.0).then(|| rate("sluice_commit_batches_sum", &[]) / commits),
        stages,
        inflight_bytes: gauge("sluice_inflight_bytes"),
        untrusted_bytes: gauge("sluice_untrusted_inflight_bytes"),
        budget_bytes: gauge("sluice_inflight_budget_bytes"),
        stored_bytes: gauge("sluice_stored_chunk_bytes"),
        retention_max_bytes: gauge("sluice_retention_max_bytes"),
        disk_free_bytes: now.has("sluice_disk_free_bytes", &[]).then(|| gauge("sluice_disk_free_bytes")),
        disk_total_bytes: now.has("sluice_disk_total_bytes", &[]).then(|| gauge("sluice_disk_total_bytes")),
        cpu_percent: rate("process_cpu_seconds_total", &[]) * 100.0,
        resident_bytes: gauge("process_resident_memory_bytes"),
    }
}

/// Bucket counts of the interval (a restarted daemon counts from zero).
fn delta(before: &[(f64, f64)], now: &[(f64, f64)]) -> Vec<(f64, f64)> {
    now.iter()
        .map(|&(le, n)| {
            let was = before.iter().find(|(b, _)| *b == le).map_or(0.0, |(_, v)| *v);
            (le, if n >= was { n - was } else { n })
        })
        .collect()
}

/// The `q` quantile of cumulative buckets, interpolated linearly inside
/// its bucket as `histogram_quantile` does; `None` without observations.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let target = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, cumulative) in buckets {
        if cumulative >= target {
            if le.is_infinite() {
                return Some(lower);
            }
            let inside = cumulative - below;
            let share = if inside > 0.0 { (target - below) / inside } else { 1.0 };
            return Some(lower + (le - lower) * share);
        }
        (lower, below) = (le, cumulative);
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::scrape::parse;

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let b = [(0.001, 50.0), (0.01, 90.0), (0.1, 100.0), (f64::INFINITY, 100.0)];
        assert_eq!(quantile(&b, 0.5), Some(0.001));
        let p90 = quantile(&b, 0.9).unwrap();
        assert!((p90 - 0.01).abs() < 1e-12);
        let p95 = quantile(&b, 0.95).unwrap();
        assert!((p95 - 0.055).abs() < 1e-9, "{p95}");
        assert_eq!(quantile(&[(0.1, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
        assert_eq!(quantile(&[(0.1, 1.0), (f64::INFINITY, 5.0)], 0.99), Some(0.1));
    }

    #[test]
    fn rates_and_listeners_come_from_two_scrapes() {
        let a = Scrape {
            series: parse(
                "sluice_bytes_received_total{listener=\"tcp\"} 100\nsluice_events_received_total{listener=\"tcp\"} 10\n\
                 sluice_connections_open{listener=\"tcp\"} 2\nsluice_bytes_received_total{listener=\"syslog_udp\"} 0\n\
                 sluice_ack_duration_seconds_bucket{listener=\"tcp\",le=\"0.01\"} 0\n\
                 sluice_ack_duration_seconds_bucket{listener=\"tcp\",le=\"+Inf\"} 0\nprocess_cpu_seconds_total 1\n",
            ),
            secs: 10.0,
        };
        let b = Scrape {
            series: parse(
                "sluice_bytes_received_total{listener=\"tcp\"} 300\nsluice_events_received_total{listener=\"tcp\"} 30\n\
                 sluice_connections_open{listener=\"tcp\"} 4\nsluice_bytes_received_total{listener=\"syslog_udp\"} 8\n\
                 sluice_ack_duration_seconds_bucket{listener=\"tcp\",le=\"0.01\"} 4\n\
                 sluice_ack_duration_seconds_bucket{listener=\"tcp\",le=\"+Inf\"} 4\nprocess_cpu_seconds_total 1.5\n",
            ),
            secs: 12.0,
        };
        let v = view(&a, &b);
        assert_eq!(v.listeners.len(), 2);
        let tcp = v.listeners.iter().find(|l| l.name == "tcp").unwrap();
        assert_eq!((tcp.events_per_sec, tcp.bytes_per_sec, tcp.connections), (Some(10.0), 100.0, Some(4.0)));
        assert!(tcp.ack_p50.unwrap() > 0.0 && tcp.ack_p99.unwrap() <= 0.01);
        let udp = v.listeners.iter().find(|l| l.name == "syslog_udp").unwrap();
        assert_eq!((udp.connections, udp.ack_p50), (None, None));
        assert!((v.cpu_percent - 25.0).abs() < 1e-9);
    }
}
