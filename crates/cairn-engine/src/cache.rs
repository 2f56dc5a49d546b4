//! Bounded LRU cache of clean (durable, unmodified) metadata nodes.
//!
//! Invariants: holds at most `capacity` nodes; every cached node equals the block at its address
//! in the current durable state. A freed address is removed before it can be reused, so a stale
//! node is never served. Dirty nodes are not kept here: they are pinned elsewhere until commit.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::node::Node;

pub struct NodeCache {
    capacity: usize,
    tick: u64,
    map: HashMap<u64, (Arc<Node>, u64)>,
    lru: BTreeMap<u64, u64>,
}

impl NodeCache {
    pub fn new(capacity: usize) -> NodeCache {
        NodeCache {
            capacity: capacity.max(16),
            tick: 0,
            map: HashMap::new(),
            lru: BTreeMap::new(),
        }
    }

    pub fn get(&mut self, addr: u64) -> Option<Arc<Node>> {
        let (node, tick) = self.map.get_mut(&addr)?;
        self.lru.remove(tick);
        self.tick += 1;
        *tick = self.tick;
        self.lru.insert(self.tick, addr);
        Some(node.clone())
    }

    pub fn insert(&mut self, addr: u64, node: Arc<Node>) {
        self.remove(addr);
        self.tick += 1;
        self.map.insert(addr, (node, self.tick));
        self.lru.insert(self.tick, addr);
        while self.map.len() > self.capacity {
            let Some((_, victim)) = self.lru.pop_first() else {
                break;
            };
            self.map.remove(&victim);
        }
    }

    pub fn remove(&mut self, addr: u64) {
        if let Some((_, tick)) = self.map.remove(&addr) {
            self.lru.remove(&tick);
        }
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
            c.insert(a, Arc::new(Node::new_leaf(TreeKind::Volume)));
        }
        assert!(c.get(0).is_some());
        c.insert(100, Arc::new(Node::new_leaf(TreeKind::Volume)));
        assert_eq!(c.len(), 16);
        assert!(c.get(0).is_some());
        assert!(c.get(1).is_none());
        c.remove(0);
        assert!(c.get(0).is_none());
    }
}
