//! A timer queue: one deadline per key, the earliest first. A service with many timers (a router
//! advertisement per bridge) sleeps once, until the earliest, instead of one task per timer.
//! Times are monotonic `Duration`s from an origin the owner chooses, as the engines take them.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::time::Duration;

/// Deadlines by key.
#[derive(Debug)]
pub struct TimerQueue<K> {
    by_time: BTreeSet<(Duration, K)>,
    by_key: HashMap<K, Duration>,
}

impl<K> Default for TimerQueue<K> {
    fn default() -> Self {
        TimerQueue {
            by_time: BTreeSet::new(),
            by_key: HashMap::new(),
        }
    }
}

impl<K: Ord + Hash + Clone> TimerQueue<K> {
    /// Sets (or moves) `key`'s deadline to `at`.
    pub fn set(&mut self, key: K, at: Duration) {
        if let Some(old) = self.by_key.insert(key.clone(), at) {
            self.by_time.remove(&(old, key.clone()));
        }
        self.by_time.insert((at, key));
    }

    /// Removes `key`'s deadline, if it has one.
    pub fn cancel(&mut self, key: &K) {
        if let Some(old) = self.by_key.remove(key) {
            self.by_time.remove(&(old, key.clone()));
        }
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Duration> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Removes and returns the keys whose deadline is at or before `now`, earliest first.
    pub fn pop_due(&mut self, now: Duration) -> Vec<K> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.by_time.first() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = self.by_time.pop_first() {
                self.by_key.remove(&key);
                due.push(key);
            }
        }
        due
    }

    /// Whether no deadline is set.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_due_in_order_and_a_moved_deadline_counts_once() {
        let s = Duration::from_secs;
        let mut q = TimerQueue::default();
        q.set("b", s(5));
        q.set("a", s(3));
        q.set("c", s(9));
        q.set("b", s(1)); // moved earlier
        assert_eq!(q.next(), Some(s(1)));
        assert_eq!(q.pop_due(s(4)), vec!["b", "a"]);
        q.cancel(&"c");
        assert!(q.is_empty());
        assert_eq!(q.next(), None);
        assert!(q.pop_due(s(100)).is_empty());
    }
}
