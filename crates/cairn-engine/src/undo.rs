//! Metadata operations that either finish or change nothing.
//!
//! An operation (one mapping update, one trim step, one reclaim step, a snapshot's reference)
//! runs between [`Meta::begin_op`] and [`Meta::end_op`]. While it runs, every change to the
//! in-memory metadata state — dirty nodes, bitmap bits, roots, counters — is logged the first
//! time it happens, and [`Meta::abort_op`] puts all of it back. So an operation that finds no
//! metadata block within its floor (or that would leave too little for the next commit) is
//! undone and answers `NoSpace`; the pool stays healthy and the operation changed nothing.
//!
//! A commit's metadata changes (directory records, bitmap page locations and the space tree:
//! every allocation the commit makes) run as an operation of their own, before anything is
//! written ([`Meta::begin_commit_op`]): a commit the host refuses backing storage for changes
//! nothing either.
//!
//! A directory change (a record created, changed or deleted) keeps the log of its metadata
//! operation past [`Meta::end_op`] until its own commit ([`Meta::end_op_kept`]): a commit that
//! is refused is undone first, so the state is again the one the operation left, and
//! [`Meta::undo_kept`] puts the operation back too — the change made nothing durable.
//!
//! Invariants:
//! - At most one operation is open; commits happen only between operations (their own
//!   preparation aside).
//! - An aborted operation leaves the state equal to the state at `begin_op`, except for clean
//!   nodes and bitmap pages read into memory (they hold durable contents).
//! - Undo entries are replayed in reverse order, so the bits of a block allocated and freed in
//!   one operation end as they began.

use std::sync::Arc;

use hashbrown::HashMap;

use crate::error::{err, ErrorKind, Result};
use crate::format::Root;
use crate::meta::{Meta, PAGE_BITS};
use crate::node::Node;

/// One bitmap change, in the order it happened.
#[derive(Clone, Copy, Debug)]
pub(crate) enum BitChange {
    /// `[start, start + len)` allocated (set in `bits` and `fresh`).
    Alloc { start: u64, len: u64 },
    /// Block freed at once (it was fresh: cleared in `bits` and `fresh`).
    FreedAtOnce { block: u64 },
    /// `[start, start + len)` freed until the commit (cleared in `bits`, set in `reserved`).
    FreedReserved { start: u64, len: u64 },
}

/// What an open operation changed.
#[derive(Default)]
pub(crate) struct Undo {
    roots: [Root; 3],
    counters: [u64; 5],
    pages_changed: bool,
    freed_data: (usize, Option<(u64, u64)>),
    /// Dirty-set entries before their first change (`None`: the address was not dirty).
    nodes: HashMap<u64, Option<Arc<Node>>>,
    /// Bitmap pages before their first change: were they dirty?
    pages_dirty: HashMap<u64, bool>,
    /// Bitmap page locations (`loc`, `loc_fresh`) before the commit's preparation changed them.
    page_locs: HashMap<u64, (u64, bool)>,
    bits: Vec<BitChange>,
    /// `usable_blocks()` must stay above this for a metadata allocation inside the operation.
    pub floor_blocks: u64,
    /// The operation is a commit's preparation (its allocations count as the commit's).
    pub commit: bool,
}

impl Meta {
    /// Opens an operation whose metadata allocations must leave `floor_blocks` usable.
    pub fn begin_op(&mut self, floor_blocks: u64) {
        assert!(self.undo.is_none(), "an operation is already open");
        self.undo = Some(Box::new(Undo {
            roots: [self.dir_root, self.rc_root, self.space_root],
            counters: self.counters(),
            pages_changed: self.pages_changed,
            freed_data: (self.freed_data.len(), self.freed_data.last().copied()),
            floor_blocks,
            ..Undo::default()
        }));
    }

    /// Opens a commit's preparation: no floor (the commit may use everything operations left),
    /// its allocations counted as the commit's.
    pub fn begin_commit_op(&mut self) {
        self.begin_op(0);
        self.undo.as_mut().expect("just opened").commit = true;
    }

    /// Keeps what the open operation did.
    pub fn end_op(&mut self) {
        assert!(self.undo.take().is_some(), "no operation open");
    }

    /// Ends the open operation like [`Meta::end_op`], handing its log back: valid for
    /// [`Meta::undo_kept`] as long as nothing else changes the state (an undone commit
    /// preparation aside).
    pub fn end_op_kept(&mut self) -> Box<Undo> {
        self.undo.take().expect("no operation open")
    }

    /// Puts back everything an operation ended with [`Meta::end_op_kept`] changed. Nothing may
    /// have changed the state since, except a commit preparation that was undone.
    pub fn undo_kept(&mut self, undo: Box<Undo>) {
        assert!(self.undo.is_none(), "an operation is open");
        assert!(!undo.commit, "a commit's preparation is never kept");
        self.undo = Some(undo);
        self.abort_op();
    }

    /// Puts back everything the open operation changed.
    pub fn abort_op(&mut self) {
        let undo = self.undo.take().expect("no operation open");
        for change in undo.bits.iter().rev() {
            self.undo_bits(*change);
        }
        for (p, (loc, loc_fresh)) in undo.page_locs {
            let pg = self
                .pages
                .get_mut(&p)
                .expect("a relocated page stays pinned");
            (pg.loc, pg.loc_fresh) = (loc, loc_fresh);
        }
        for (p, was_dirty) in undo.pages_dirty {
            assert!(self.pages.contains_key(&p), "a changed page stays pinned");
            if !was_dirty {
                self.undirty_page(p);
            }
        }
        for (addr, before) in undo.nodes {
            match before {
                Some(n) => self.dirty.insert(addr, n),
                None => self.dirty.remove(&addr),
            };
        }
        [self.dir_root, self.rc_root, self.space_root] = undo.roots;
        self.set_counters(undo.counters);
        self.pages_changed = undo.pages_changed;
        let (len, last) = undo.freed_data;
        self.freed_data.truncate(len);
        if let (Some(slot), Some(was)) = (self.freed_data.last_mut(), last) {
            *slot = was;
        }
    }

    /// The floor for a metadata allocation now: the open operation's, or none (commit).
    pub fn meta_floor_blocks(&self) -> u64 {
        self.undo.as_ref().map_or(0, |u| u.floor_blocks)
    }

    /// Fails with `NoSpace` when a metadata allocation would go below the floor.
    pub fn check_meta_floor(&self) -> Result<()> {
        if self.usable_blocks() <= self.meta_floor_blocks() {
            return Err(err(
                ErrorKind::NoSpace,
                "metadata reserve reached: no block left for this operation",
            ));
        }
        Ok(())
    }

    /// Logs the dirty-set entry at `addr` before its first change in the operation.
    pub fn log_node(&mut self, addr: u64) {
        if let Some(u) = self.undo.as_mut() {
            u.nodes
                .entry(addr)
                .or_insert_with(|| self.dirty.get(&addr).cloned());
        }
    }

    /// Logs the dirty flag of page `p` before the operation first changes it.
    pub fn log_page(&mut self, p: u64) {
        if let Some(u) = self.undo.as_mut() {
            let was = self.pages.contains_key(&p);
            u.pages_dirty.entry(p).or_insert(was);
        }
    }

    /// Logs the location of dirty page `p` before the commit's preparation first moves it.
    pub fn log_page_loc(&mut self, p: u64) {
        if let Some(u) = self.undo.as_mut() {
            let pg = self.pages.get(&p).expect("a relocated page is dirty");
            u.page_locs.entry(p).or_insert((pg.loc, pg.loc_fresh));
        }
    }

    /// Logs a bitmap change of page `p`.
    pub fn log_bits(&mut self, p: u64, change: BitChange) {
        self.log_page(p);
        if let Some(u) = self.undo.as_mut() {
            u.bits.push(change);
        }
    }

    /// Logs the free of block `b` in page `p`; consecutive reserved frees share one entry.
    pub fn log_free(&mut self, p: u64, b: u64, at_once: bool) {
        if at_once {
            return self.log_bits(p, BitChange::FreedAtOnce { block: b });
        }
        self.log_page(p);
        if let Some(u) = self.undo.as_mut() {
            match u.bits.last_mut() {
                Some(BitChange::FreedReserved { start, len }) if *start + *len == b => *len += 1,
                _ => u.bits.push(BitChange::FreedReserved { start: b, len: 1 }),
            }
        }
    }

    fn undo_bits(&mut self, change: BitChange) {
        match change {
            BitChange::Alloc { start, len } => {
                for b in start..start + len {
                    let pg = self.page_mut(b);
                    let i = b % PAGE_BITS;
                    pg.set(i, false);
                    pg.set_fresh(i, false);
                    pg.free += 1;
                }
            }
            BitChange::FreedAtOnce { block } => {
                let pg = self.page_mut(block);
                let i = block % PAGE_BITS;
                pg.set(i, true);
                pg.set_fresh(i, true);
                pg.free -= 1;
            }
            BitChange::FreedReserved { start, len } => {
                for b in start..start + len {
                    let pg = self.page_mut(b);
                    let i = b % PAGE_BITS;
                    pg.set(i, true);
                    pg.set_reserved(i, false);
                    pg.reserved_count -= 1;
                    pg.free -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btree::tests::test_meta;
    use crate::meta::Page;

    /// Everything an operation may change, comparable (lazily allocated bitmaps normalised).
    fn image(m: &Meta) -> impl PartialEq + std::fmt::Debug {
        let words = |w: &Vec<u64>| {
            if w.iter().all(|&x| x == 0) {
                Vec::new()
            } else {
                w.clone()
            }
        };
        let page = |p: &Page| {
            let shape = (p.loc, p.loc_fresh, p.free, p.reserved_count);
            (shape, words(&p.bits), words(&p.reserved), words(&p.fresh))
        };
        let mut dirty: Vec<(u64, Node)> =
            m.dirty.iter().map(|(a, n)| (*a, (**n).clone())).collect();
        dirty.sort_by_key(|d| d.0);
        let pages: Vec<_> = m.pages.iter().map(|(k, p)| (*k, page(p))).collect();
        let roots = [m.dir_root, m.rc_root, m.space_root];
        (
            roots,
            m.counters(),
            m.freed_data.clone(),
            m.dirty_pages(),
            dirty,
            pages,
        )
    }

    /// A volume tree of `n` single-block extents on freshly allocated data blocks.
    fn tree(m: &mut Meta, n: u64) -> Root {
        let mut root = Root::default();
        for k in 0..n {
            let run = m.alloc_data(1, 0).unwrap();
            root = m.map_replace(root, 2 * k, run[0].0, 1).unwrap();
        }
        root
    }

    #[test]
    fn an_aborted_operation_leaves_the_state_as_it_began() {
        let mut m = test_meta(8192);
        let root = tree(&mut m, 600);
        m.commit(m.durable.clone()).unwrap();
        // Some of the transaction dirty already, some durable.
        let root = m.map_remove(root, 0, 40).unwrap();
        let before = image(&m);
        m.begin_op(0);
        let mut r = m.map_remove(root, 100, 900).unwrap();
        let run = m.alloc_data(5, 0).unwrap();
        r = m.map_replace(r, 101, run[0].0, 1).unwrap();
        m.rc_inc(r.addr, 1).unwrap();
        m.free(run[0].0 + 1, 2, crate::meta::Use::Data).unwrap();
        assert_ne!(image(&m), before);
        m.abort_op();
        assert_eq!(image(&m), before);
        // The state still works: the same change runs and commits.
        m.begin_op(0);
        m.map_remove(root, 100, 900).unwrap();
        m.end_op();
        m.commit(m.durable.clone()).unwrap();
    }

    #[test]
    fn an_undone_commit_preparation_leaves_pages_where_they_were() {
        let mut m = test_meta(8192);
        let root = tree(&mut m, 300);
        m.commit(m.durable.clone()).unwrap();
        m.map_remove(root, 0, 200).unwrap();
        let before = image(&m);
        m.begin_commit_op();
        m.converge_space().unwrap();
        assert_ne!(image(&m), before, "pages moved to fresh blocks");
        m.abort_op();
        assert_eq!(image(&m), before);
        m.commit(m.durable.clone()).unwrap();
        assert!(!m.is_dirty());
    }

    #[test]
    fn a_kept_operation_is_undone_after_an_undone_commit_preparation() {
        let mut m = test_meta(8192);
        let root = tree(&mut m, 300);
        m.commit(m.durable.clone()).unwrap();
        m.map_remove(root, 0, 20).unwrap();
        let before = image(&m);
        m.begin_op(0);
        m.rc_inc(root.addr, 1).unwrap();
        let kept = m.end_op_kept();
        let after_op = image(&m);
        assert_ne!(after_op, before);
        // The commit that would make it durable is refused and undone...
        m.begin_commit_op();
        m.converge_space().unwrap();
        m.abort_op();
        assert_eq!(image(&m), after_op);
        // ...and so is the operation: the transaction holds what it held before.
        m.undo_kept(kept);
        assert_eq!(image(&m), before);
        m.commit(m.durable.clone()).unwrap();
        assert!(!m.is_dirty());
    }

    #[test]
    fn a_floor_refuses_metadata_allocations_below_it() {
        let mut m = test_meta(4096);
        let usable = m.usable_blocks();
        m.begin_op(usable - 3);
        // Each allocation leaves at least the floor usable.
        for _ in 0..3 {
            m.alloc_meta().unwrap();
        }
        let e = m.alloc_meta().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NoSpace);
        m.abort_op();
        assert_eq!(m.usable_blocks(), usable);
        assert!(m.dirty.is_empty());
        // Outside an operation (the commit) there is no floor.
        m.alloc_meta().unwrap();
    }
}
