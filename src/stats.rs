//! Counters in one shape for every service.
//!
//! Each engine owns a plain `Default + Copy` stats struct (quinn's way): scalar counters, and
//! arrays indexed by a fieldless enum (`reason as usize`) whose names are written once, by
//! [`counter_enum!`]. A service reads its engines' structs when asked and hands the server a
//! [`Report`]: a list of [`Sample`]s, each a counter's value for one bridge or for the whole
//! service. The server sums them for the stats log line; metrics and the control socket read
//! the same samples, labels and all.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Defines a fieldless enum whose values index counter arrays (`kind as usize`), each with the
/// stable name used in logs and metrics: `Variant => "name"`. Adds `ALL` (index order),
/// `COUNT` (the array length) and `name()`.
#[macro_export]
macro_rules! counter_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in index order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];
            /// How many values there are: the length of a counter array indexed by them.
            pub const COUNT: usize = [$($text,)+].len();

            /// The short stable name used in logs and metrics.
            pub const fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }
    };
}

/// One counter's value, for one bridge or for the whole service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The counter, as the stats line names it: `ack`, `drop`, `ra_multicast`, `md_requests`.
    pub name: &'static str,
    /// Which one within it (a drop reason, say), written `name.kind` in the stats line.
    pub kind: Option<&'static str>,
    /// The bridge it counts on, when it is per bridge.
    pub bridge: Option<Arc<str>>,
    /// The network it counts in, when it is per network (leases held, addresses bound).
    pub network: Option<Arc<str>>,
    /// The count.
    pub value: u64,
}

impl Sample {
    /// The key of the stats line: `name` or `name.kind`.
    pub fn key(&self) -> String {
        match self.kind {
            Some(kind) => format!("{}.{kind}", self.name),
            None => self.name.to_string(),
        }
    }
}

/// What a service reports: every counter, per bridge where it has bridges. Its `Display` is the
/// stats line: each counter summed over bridges, as `key=value`, in the order first reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The samples.
    pub samples: Vec<Sample>,
    /// Distributions (latencies, sizes): in metrics, not in the stats line.
    pub histograms: Vec<HistogramSample>,
}

impl Report {
    /// Adds one sample.
    pub fn push(
        &mut self,
        name: &'static str,
        kind: Option<&'static str>,
        bridge: Option<&Arc<str>>,
        value: u64,
    ) {
        self.samples.push(Sample {
            name,
            kind,
            bridge: bridge.cloned(),
            network: None,
            value,
        });
    }

    /// Adds one sample counted in a network.
    pub fn push_network(&mut self, name: &'static str, network: &Arc<str>, value: u64) {
        self.samples.push(Sample {
            name,
            kind: None,
            bridge: None,
            network: Some(network.clone()),
            value,
        });
    }

    /// Adds a histogram's state now.
    pub fn push_histogram(&mut self, name: &'static str, bridge: Option<&Arc<str>>, h: &Histogram) {
        self.histograms.push(h.sample(name, bridge));
    }

    /// Appends another report's samples.
    pub fn extend(&mut self, other: Report) {
        self.samples.extend(other.samples);
        self.histograms.extend(other.histograms);
    }

    /// A counter summed over bridges (0 when no sample has that key).
    pub fn total(&self, key: &str) -> u64 {
        self.samples
            .iter()
            .filter(|s| s.key() == key)
            .map(|s| s.value)
            .sum()
    }

    /// Every key with its total over bridges, in the order first reported.
    pub fn totals(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = Vec::new();
        let mut index = std::collections::HashMap::new();
        for s in &self.samples {
            let key = s.key();
            match index.get(&key) {
                Some(&i) => {
                    if let Some((_, v)) = out.get_mut(i) {
                        *v += s.value;
                    }
                }
                None => {
                    index.insert(key.clone(), out.len());
                    out.push((key, s.value));
                }
            }
        }
        out
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (key, value)) in self.totals().iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{key}={value}")?;
        }
        Ok(())
    }
}

/// A distribution with fixed bucket bounds, filled from any thread (atomics, no lock): what an
/// IO shell measures (a journal commit's latency, a request's), read at scrape time.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds of the buckets, increasing; a last bucket takes everything above.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative), `bounds.len() + 1` of them.
    counts: Box<[AtomicU64]>,
    /// The sum of the observations, as `f64` bits.
    sum: AtomicU64,
}

impl Histogram {
    /// An empty histogram over `bounds` (increasing).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        let i = self.bounds.partition_point(|b| *b < value);
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    /// Its state now, as a sample named `name`.
    pub fn sample(&self, name: &'static str, bridge: Option<&Arc<str>>) -> HistogramSample {
        HistogramSample {
            name,
            bridge: bridge.cloned(),
            bounds: self.bounds,
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            sum: f64::from_bits(self.sum.load(Ordering::Relaxed)),
        }
    }
}

/// A histogram's state at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSample {
    /// Its name (the metric's, without prefix).
    pub name: &'static str,
    /// The bridge it measures on, when it is per bridge.
    pub bridge: Option<Arc<str>>,
    /// Upper bounds of the buckets.
    pub bounds: &'static [f64],
    /// Observations per bucket (not cumulative), one more than `bounds` (the +Inf bucket).
    pub counts: Vec<u64>,
    /// The sum of the observations.
    pub sum: f64,
}

impl HistogramSample {
    /// How many observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

// Report holds f64 sums now; equality of reports is still exact (tests compare them).
impl Eq for HistogramSample {}

/// An engine's counters: added up across restarts of the engine, and reported as samples.
pub trait Counters: Copy + Default {
    /// Adds another set of the same counters.
    fn add(&mut self, other: &Self);
    /// Writes every counter (zeros included, so a reader can tell an unknown name from a zero)
    /// into `out`, for `bridge`.
    fn report(&self, bridge: Option<&Arc<str>>, out: &mut Report);
}

/// Adds two counter arrays element by element.
pub fn add_arrays<const N: usize>(a: &mut [u64; N], b: &[u64; N]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    counter_enum! {
        /// A test enum.
        enum Colour {
            /// Red.
            Red => "red",
            /// Blue.
            Blue => "blue",
        }
    }

    #[test]
    fn counter_enums_index_and_name() {
        assert_eq!(Colour::COUNT, 2);
        assert_eq!(Colour::ALL, &[Colour::Red, Colour::Blue]);
        assert_eq!(Colour::Blue as usize, 1);
        assert_eq!(Colour::Red.name(), "red");
    }

    #[test]
    fn histograms_bucket_by_upper_bound_and_sum() {
        static BOUNDS: [f64; 3] = [1.0, 2.0, 5.0];
        let h = Histogram::new(&BOUNDS);
        for v in [0.5, 1.0, 1.5, 5.0, 7.0] {
            h.observe(v);
        }
        let s = h.sample("x", None);
        // `le` bounds are inclusive: 1.0 goes in the first bucket, 5.0 in the third.
        assert_eq!(s.counts, vec![2, 1, 1, 1]);
        assert_eq!(s.count(), 5);
        assert_eq!(s.sum, 15.0);
    }

    #[test]
    fn the_stats_line_sums_over_bridges_in_first_seen_order() {
        let (a, b): (Arc<str>, Arc<str>) = ("br1".into(), "br2".into());
        let mut r = Report::default();
        r.push("ack", None, Some(&a), 2);
        r.push("drop", Some("unknown_client"), Some(&a), 0);
        r.push("ack", None, Some(&b), 3);
        r.push("drop", Some("unknown_client"), Some(&b), 1);
        r.push("md_requests", None, None, 7);
        assert_eq!(r.to_string(), "ack=5 drop.unknown_client=1 md_requests=7");
        assert_eq!(r.total("ack"), 5);
        assert_eq!(r.total("drop.unknown_client"), 1);
        assert_eq!(r.total("nope"), 0);
    }
}
