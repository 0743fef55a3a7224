//! The cache of forwarded answers: an upstream's reply kept as it came (its OPT record left
//! out), with where its TTL fields are, so that a hit is a copy and a few patched fields: the
//! client's id and question (its letter case), the flags, and every TTL counted down by the
//! time the entry has spent here. Negative answers are kept for their SOA's minimum (RFC 2308);
//! truncated replies and replies with a zero TTL are not kept. Bounded: the oldest entry goes
//! when a new one would not fit.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Longest time anything is kept, whatever the TTL says.
pub const MAX_TTL: u32 = 86_400;

/// What a cached answer is found by: the name (wire format, lower case), type and class.
pub type Key = (Vec<u8>, u16, u16);

/// A kept reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The reply, without its OPT record.
    pub message: Box<[u8]>,
    /// Offsets of its TTL fields.
    pub ttl_offsets: Box<[usize]>,
    /// Where its question section ends (the client's question replaces it, same length).
    pub question_end: usize,
    /// When it was stored.
    pub stored: Duration,
    /// When it expires.
    pub expires: Duration,
}

/// The cache.
#[derive(Debug, Default)]
pub struct Cache {
    capacity: usize,
    entries: HashMap<Key, (Entry, u64)>,
    /// Keys in insertion order, with the generation they were inserted at (a key inserted again
    /// leaves a stale older pair here, skipped on eviction).
    order: VecDeque<(Key, u64)>,
    generation: u64,
}

impl Cache {
    /// A cache of at most `capacity` answers (0: nothing is kept).
    pub fn new(capacity: usize) -> Cache {
        Cache {
            capacity,
            ..Cache::default()
        }
    }

    /// Changes the capacity (a reload), dropping the oldest entries beyond it.
    pub fn resize(&mut self, capacity: usize) {
        self.capacity = capacity;
        self.evict_to(capacity);
    }

    /// The live entry for a key at `now`. An expired one is not answered with; it stays until
    /// the fresh answer replaces it or it is the oldest (one hash lookup per hit).
    pub fn get(&self, key: &Key, now: Duration) -> Option<&Entry> {
        self.entries
            .get(key)
            .map(|(e, _)| e)
            .filter(|e| e.expires > now)
    }

    /// Keeps a reply for `ttl` seconds (capped at [`MAX_TTL`]); a TTL of 0 keeps nothing.
    pub fn insert(&mut self, key: Key, mut entry: Entry, ttl: u32, now: Duration) {
        if self.capacity == 0 || ttl == 0 {
            return;
        }
        entry.stored = now;
        entry.expires = now + Duration::from_secs(u64::from(ttl.min(MAX_TTL)));
        if !self.entries.contains_key(&key) {
            self.evict_to(self.capacity.saturating_sub(1));
        }
        self.generation += 1;
        self.order.push_back((key.clone(), self.generation));
        self.entries.insert(key, (entry, self.generation));
        // Stale pairs of re-inserted keys must not make the queue grow without bound.
        if self.order.len() > 2 * self.capacity.max(16) {
            let entries = &self.entries;
            self.order
                .retain(|(k, g)| entries.get(k).is_some_and(|(_, live)| live == g));
        }
    }

    fn evict_to(&mut self, size: usize) {
        while self.entries.len() > size {
            let Some((key, generation)) = self.order.pop_front() else {
                break;
            };
            if self
                .entries
                .get(&key)
                .is_some_and(|(_, g)| *g == generation)
            {
                self.entries.remove(&key);
            }
        }
    }

    /// How many answers are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes the kept messages take (for reports).
    pub fn bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|(k, (e, _))| k.0.len() + e.message.len() + 8 * e.ttl_offsets.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            message: Box::new([1, 2, 3]),
            ttl_offsets: Box::new([]),
            question_end: 0,
            stored: Duration::ZERO,
            expires: Duration::ZERO,
        }
    }

    fn key(n: u8) -> Key {
        (vec![1, n, 0], 1, 1)
    }

    #[test]
    fn entries_expire_and_the_oldest_goes_first() {
        let s = Duration::from_secs;
        let mut c = Cache::new(2);
        c.insert(key(1), entry(), 10, s(0));
        c.insert(key(2), entry(), 10, s(1));
        assert!(c.get(&key(1), s(5)).is_some());
        assert!(c.get(&key(1), s(10)).is_none(), "expired at 10 s");
        c.insert(key(1), entry(), 10, s(11));
        c.insert(key(3), entry(), 10, s(12));
        assert_eq!(c.len(), 2);
        assert!(c.get(&key(2), s(12)).is_none(), "the oldest went");
        assert!(c.get(&key(1), s(12)).is_some() && c.get(&key(3), s(12)).is_some());
        c.insert(key(4), entry(), 0, s(12));
        assert!(c.get(&key(4), s(12)).is_none(), "a zero TTL keeps nothing");
        c.resize(1);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn reinserting_one_key_keeps_the_queue_bounded() {
        let mut c = Cache::new(4);
        for i in 0..10_000u64 {
            c.insert(key(1), entry(), 10, Duration::from_secs(i));
        }
        assert_eq!(c.len(), 1);
        assert!(c.order.len() <= 32);
    }
}
