//! Counters in one shape for every service.
//!
//! Each engine owns a plain `Default + Copy` stats struct (quinn's way): scalar counters, and
//! arrays indexed by a fieldless enum (`reason as usize`) whose names are written once, by
//! [`counter_enum!`]. A service reads its engines' structs when asked and hands the server a
//! [`Report`]: a list of [`Sample`]s, each a counter's value for one bridge or for the whole
//! service. The server sums them for the stats log line; metrics and the control socket read
//! the same samples, labels and all.

use std::fmt;
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
            value,
        });
    }

    /// Appends another report's samples.
    pub fn extend(&mut self, other: Report) {
        self.samples.extend(other.samples);
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
