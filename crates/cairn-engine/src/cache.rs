//! Bounded LRU caches of clean (durable, unmodified) metadata: nodes and space-map bitmap pages.
//!
//! Invariants: a cache holds at most `capacity` entries; every cached entry equals the durable
//! block (or bitmap page) it was read from. A freed node address is removed before it can be
//! reused, so a stale node is never served. Dirty nodes and pages are never kept here: they are
//! pinned by their owner until their commit, and an entry leaves the cache before it is changed.

use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;

use crate::node::Node;

/// Least-recently-used map from a block (or page) number to a value (O(1) lookups and
/// recency updates: a cached node is found on every step of every tree descent).
pub struct Lru<V> {
    map: LruCache<u64, V>,
}

/// The cache of clean nodes by block address.
pub type NodeCache = Lru<Arc<Node>>;

impl<V> Lru<V> {
    pub fn new(capacity: usize) -> Lru<V> {
        let capacity = NonZeroUsize::new(capacity).expect("an LRU cache holds at least one entry");
        Lru {
            map: LruCache::new(capacity),
        }
    }

    /// The entry at `key`, made the most recently used.
    pub fn get(&mut self, key: u64) -> Option<&V> {
        self.map.get(&key)
    }

    /// The entry at `key`, its recency unchanged.
    pub fn peek(&self, key: u64) -> Option<&V> {
        self.map.peek(&key)
    }

    /// Inserts (or replaces) the entry at `key` as the most recently used and returns the entries
    /// evicted to stay within the capacity (never the one just inserted).
    pub fn insert(&mut self, key: u64, value: V) -> Vec<(u64, V)> {
        self.map.pop(&key);
        let evicted: Vec<(u64, V)> = self.map.push(key, value).into_iter().collect();
        debug_assert!(
            evicted.iter().all(|(k, _)| *k != key),
            "the entry inserted is not evicted"
        );
        debug_assert!(self.map.len() <= self.map.cap().get(), "within capacity");
        evicted
    }

    pub fn remove(&mut self, key: u64) -> Option<V> {
        self.map.pop(&key)
    }

    pub fn clear(&mut self) {
        self.map.clear();
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
