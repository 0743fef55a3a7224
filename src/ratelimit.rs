//! Rate-limited log lines: hostile traffic must not turn the log into a second flood.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Lets one line per key through per interval and counts the rest.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    keys: HashMap<&'static str, (Instant, u64)>,
}

impl LogLimiter {
    /// A limiter letting one line per key through every `interval`.
    pub fn new(interval: Duration) -> LogLimiter {
        LogLimiter {
            interval,
            keys: HashMap::new(),
        }
    }

    /// `Some(suppressed)` when a line for `key` may be logged now, with how many lines for it
    /// were held back since the last one; `None` when it must be suppressed.
    pub fn allow(&mut self, key: &'static str, now: Instant) -> Option<u64> {
        match self.keys.get_mut(key) {
            Some((last, suppressed)) if now.duration_since(*last) < self.interval => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                *last = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                self.keys.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)] // an arbitrary starting instant; the test steps it itself
    fn one_line_per_interval_per_key() {
        let mut l = LogLimiter::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(l.allow("a", t0), Some(0));
        assert_eq!(l.allow("a", t0 + Duration::from_millis(10)), None);
        assert_eq!(l.allow("a", t0 + Duration::from_millis(20)), None);
        assert_eq!(l.allow("b", t0), Some(0));
        assert_eq!(l.allow("a", t0 + Duration::from_secs(2)), Some(2));
    }
}
