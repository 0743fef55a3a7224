//! A [`Report`] in Prometheus text format, through prometheus-client: the report is the
//! collector, read once per scrape (no global registry, no counters kept twice).

use std::fmt::Write as _;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::families::{self, Family, Label, Type};
use crate::stats::{HistogramSample, Report, Sample};

/// The Prometheus text format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every family's name starts with this.
pub const PREFIX: &str = "netnode";

/// The report as `/metrics` serves it, with `netnode_build_info`.
pub fn render(report: Report) -> String {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(ReportCollector(report)));
    let mut out = String::new();
    // Writing into a String cannot fail; an encoder error would be a bug in a family name.
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        let _ = writeln!(out, "# encoding failed: {e}");
    }
    out
}

/// Samples that are neither in [`families::FAMILIES`] nor left out there (a service's new
/// counter that was never named): exported under their own name so nothing is hidden, and
/// listed by a test so they get a proper family.
pub fn unnamed(report: &Report) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = report
        .samples
        .iter()
        .filter(|s| families::family(s.name).is_none())
        .map(|s| s.name)
        .collect();
    out.extend(
        report
            .histograms
            .iter()
            .filter(|h| !families::HISTOGRAMS.iter().any(|(n, _)| *n == h.name))
            .map(|h| h.name),
    );
    out.sort_unstable();
    out.dedup();
    out
}

#[derive(Debug)]
struct ReportCollector(Report);

/// A sample's labels: bridge, network, then the family's own.
fn labels(s: &Sample, label: Label) -> Vec<(&'static str, Arc<str>)> {
    let mut out = Vec::with_capacity(3);
    if let Some(b) = &s.bridge {
        out.push(("bridge", b.clone()));
    }
    if let Some(n) = &s.network {
        out.push(("network", n.clone()));
    }
    match label {
        Label::None => {}
        Label::Kind(name) => out.push((name, s.kind.unwrap_or("").into())),
        Label::Name(name) => out.push((name, s.name.into())),
    }
    out
}

impl Collector for ReportCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Families in the order first reported; each one's samples together.
        let mut order: Vec<(Family, Vec<&Sample>)> = Vec::new();
        for s in &self.0.samples {
            let family = match families::family(s.name) {
                Some(Some(f)) => f,
                Some(None) => continue,
                None => Family {
                    name: s.name,
                    help: "(no description yet)",
                    kind: Type::Counter,
                    label: Label::Kind("kind"),
                },
            };
            match order.iter_mut().find(|(f, _)| f.name == family.name) {
                Some((_, v)) => v.push(s),
                None => order.push((family, vec![s])),
            }
        }
        for (family, samples) in &order {
            let metric_type = match family.kind {
                Type::Counter => MetricType::Counter,
                Type::Gauge => MetricType::Gauge,
            };
            let mut metric =
                encoder.encode_descriptor(family.name, family.help, None, metric_type)?;
            for s in samples {
                let set = labels(s, family.label);
                let e = metric.encode_family(&set)?;
                match family.kind {
                    Type::Counter => ConstCounter::new(s.value).encode(e)?,
                    Type::Gauge => ConstGauge::new(s.value as i64).encode(e)?,
                }
            }
        }
        let mut histograms: Vec<(&str, Vec<&HistogramSample>)> = Vec::new();
        for h in &self.0.histograms {
            match histograms.iter_mut().find(|(n, _)| *n == h.name) {
                Some((_, v)) => v.push(h),
                None => histograms.push((h.name, vec![h])),
            }
        }
        for (name, samples) in &histograms {
            let help = families::HISTOGRAMS
                .iter()
                .find(|(n, _)| n == name)
                .map_or("(no description yet)", |(_, h)| h);
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for h in samples {
                let buckets: Vec<(f64, u64)> = h
                    .bounds
                    .iter()
                    .copied()
                    .zip(h.counts.iter().copied())
                    .collect();
                let set: Vec<(&str, Arc<str>)> =
                    h.bridge.iter().map(|b| ("bridge", b.clone())).collect();
                let mut e = metric.encode_family(&set)?;
                e.encode_histogram::<Vec<(&str, Arc<str>)>>(h.sum, h.count(), &buckets, None)?;
            }
        }
        let info = [("version", env!("CARGO_PKG_VERSION"))];
        let mut metric = encoder.encode_descriptor(
            "build_info",
            "netnode's version; always 1",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1i64).encode(metric.encode_family(&info)?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Counters, Histogram};

    /// Every counter every engine reports has a family (or is left out on purpose).
    #[test]
    fn every_reported_counter_is_named() {
        let mut r = Report::default();
        let b: Arc<str> = "br100".into();
        crate::dhcp::Stats::default().report(Some(&b), &mut r);
        crate::ra::engine::Stats::default().report(Some(&b), &mut r);
        crate::metadata::server::Stats::default().report(None, &mut r);
        crate::dns::stats::Stats::default().report(Some(&b), &mut r);
        assert_eq!(unnamed(&r), Vec::<&str>::new());
    }

    #[test]
    fn families_render_once_with_their_labels() {
        let (a, b): (Arc<str>, Arc<str>) = ("br1".into(), "br2".into());
        let mut r = Report::default();
        r.push("discover", None, Some(&a), 3);
        r.push("ack", None, Some(&a), 2);
        r.push("discover", None, Some(&b), 1);
        r.push("received", None, Some(&a), 9);
        r.push("drop", Some("unknown_client"), Some(&a), 4);
        r.push_network("leases", &"net1".into(), 5);
        static BOUNDS: [f64; 2] = [0.001, 0.01];
        let h = Histogram::new(&BOUNDS);
        h.observe(0.0005);
        h.observe(0.5);
        r.push_histogram("dhcp_journal_commit_seconds", None, &h);
        let text = render(r);
        assert_eq!(
            text.matches("# TYPE netnode_dhcp_received_packets_total counter")
                .count(),
            1
        );
        assert!(text
            .contains("netnode_dhcp_received_packets_total{bridge=\"br1\",type=\"discover\"} 3\n"));
        assert!(text
            .contains("netnode_dhcp_received_packets_total{bridge=\"br2\",type=\"discover\"} 1\n"));
        assert!(text.contains("netnode_dhcp_sent_packets_total{bridge=\"br1\",type=\"ack\"} 2\n"));
        assert!(
            text.contains("netnode_dhcp_drops_total{bridge=\"br1\",reason=\"unknown_client\"} 4\n")
        );
        assert!(text.contains("netnode_dhcp_leases{network=\"net1\"} 5\n"));
        // The sum of the typed counters is not exported.
        assert!(!text.contains("} 9\n"), "{text}");
        assert!(text.contains("netnode_dhcp_journal_commit_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(text.contains("netnode_dhcp_journal_commit_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("netnode_dhcp_journal_commit_seconds_count 2\n"));
        assert!(text.contains("netnode_build_info{version=\""));
    }
}
