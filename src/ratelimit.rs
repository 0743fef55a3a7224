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

/// Lets up to `per_second` lines through each second and counts the rest: for lines an
/// operator wants every one of in normal times (who got which address), which a flood must
/// still not turn into a second flood.
#[derive(Debug)]
pub struct LogBudget {
    per_second: u32,
    window: Option<Instant>,
    used: u32,
    held: u64,
}

impl LogBudget {
    /// A budget of `per_second` lines a second (`u32::MAX`: every line, for `--log-dhcp`).
    pub fn new(per_second: u32) -> LogBudget {
        LogBudget {
            per_second,
            window: None,
            used: 0,
            held: 0,
        }
    }

    /// `Some(suppressed)` when a line may be logged now, with how many were held back since
    /// the last one that was; `None` when it must be suppressed.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .window
            .is_none_or(|w| now.duration_since(w) >= Duration::from_secs(1))
        {
            self.window = Some(now);
            self.used = 0;
        }
        if self.used >= self.per_second {
            self.held += 1;
            return None;
        }
        self.used += 1;
        Some(std::mem::take(&mut self.held))
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

    #[test]
    #[allow(clippy::disallowed_methods)] // an arbitrary starting instant; the test steps it itself
    fn a_budget_lets_n_lines_a_second_through() {
        let mut b = LogBudget::new(2);
        let t0 = Instant::now();
        assert_eq!(b.allow(t0), Some(0));
        assert_eq!(b.allow(t0), Some(0));
        assert_eq!(b.allow(t0 + Duration::from_millis(500)), None);
        assert_eq!(b.allow(t0 + Duration::from_millis(600)), None);
        assert_eq!(b.allow(t0 + Duration::from_secs(1)), Some(2));
    }
}
