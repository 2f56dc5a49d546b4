//! Bounded LRU caches of clean (durable, unmodified) metadata: nodes and space-map bitmap pages.
//!
//! Invariants: a cache holds at most `capacity` entries; every cached entry equals the durable
//! block (or bitmap page) it was read from. A freed node address is removed before it can be
//! reused, so a stale node is never served. Dirty nodes and pages are never kept here: they are
//! pinned by their owner until their commit, and an entry leaves the cache before it is changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::node::Node;

/// Least-recently-used map from a block (or page) number to a value.
pub struct Lru<V> {
    capacity: usize,
    tick: u64,
    map: HashMap<u64, (V, u64)>,
    lru: BTreeMap<u64, u64>,
}

/// The cache of clean nodes by block address.
pub type NodeCache = Lru<Arc<Node>>;

impl<V> Lru<V> {
    pub fn new(capacity: usize) -> Lru<V> {
        assert!(capacity > 0, "an LRU cache holds at least one entry");
        Lru {
            capacity,
            tick: 0,
            map: HashMap::new(),
            lru: BTreeMap::new(),
        }
    }

    /// The entry at `key`, made the most recently used.
    pub fn get(&mut self, key: u64) -> Option<&V> {
        let (value, tick) = self.map.get_mut(&key)?;
        self.lru.remove(tick);
        self.tick += 1;
        *tick = self.tick;
        self.lru.insert(self.tick, key);
        Some(value)
    }

    /// The entry at `key`, its recency unchanged.
    pub fn peek(&self, key: u64) -> Option<&V> {
        self.map.get(&key).map(|(v, _)| v)
    }

    /// Inserts (or replaces) the entry at `key` as the most recently used and returns the entries
    /// evicted to stay within the capacity (never the one just inserted).
    pub fn insert(&mut self, key: u64, value: V) -> Vec<(u64, V)> {
        self.remove(key);
        self.tick += 1;
        self.map.insert(key, (value, self.tick));
        self.lru.insert(self.tick, key);
        let mut evicted = Vec::new();
        while self.map.len() > self.capacity {
            let Some((_, victim)) = self.lru.pop_first() else {
                break;
            };
            if let Some((v, _)) = self.map.remove(&victim) {
                evicted.push((victim, v));
            }
        }
        evicted
    }

    pub fn remove(&mut self, key: u64) -> Option<V> {
        let (value, tick) = self.map.remove(&key)?;
        self.lru.remove(&tick);
        Some(value)
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.lru.clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::TreeKind;

    #[test]
    fn evicts_least_recently_used() {
        let mut c = NodeCache::new(16);
        for a in 0..16 {
            assert!(c
                .insert(a, Arc::new(Node::new_leaf(TreeKind::Volume)))
                .is_empty());
        }
        assert!(c.get(0).is_some());
        let evicted = c.insert(100, Arc::new(Node::new_leaf(TreeKind::Volume)));
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].0, 1);
        assert_eq!(c.len(), 16);
        assert!(c.get(0).is_some());
        assert!(c.get(1).is_none());
        assert!(c.peek(100).is_some());
        assert!(c.remove(0).is_some());
        assert!(c.get(0).is_none());
    }
}
