//! The metadata state of an open pool: node access (dirty set + clean cache), the space map
//! (copy-on-write bitmap pages found through the space tree) and the commit protocol.
//!
//! Invariants:
//! - A node is modified in place only while dirty, i.e. allocated in the current transaction;
//!   anything durable is shadowed first (see `btree.rs`).
//! - Reclamation rule: a block freed in transaction N is not reused before N is durable. Blocks
//!   freed in the current transaction are marked `reserved`; when it freezes they move to its
//!   pages' flight (`held`), and both are skipped by the allocator until the commit has landed
//!   (after its second flush returned); `mark_allocated` asserts it. The one exception is a
//!   block allocated and freed inside the same transaction: no durable state references it.
//! - One commit in flight at most (`freeze` asserts it): while it is written, its nodes are found
//!   in its own set (not the dirty set, so the next transaction shadows them before changing
//!   them), its pages stay pinned, its allocations count as not durable (`is_fresh`) and
//!   `txn_gen` is the generation after it.
//! - The on-disk bitmap of commit N already has N's frees applied (they are free once N is
//!   durable); a page missing from the space tree is all free.
//! - Chunks that freed data runs leave wholly free are discarded once the transaction that
//!   freed them is durable, before anything can reuse them (the rule is in `layout`).
//! - Metadata is written only to backed storage: the reserve's room after the superblocks is
//!   preallocated at create and grow, and a metadata block outside it is preallocated (with its
//!   chunk, see `layout`) before it is allocated; when the host refuses, that allocation
//!   answers `NoSpace` and allocates nothing.
//! - Bitmap pages are written copy-on-write at commit; the commit loops until the allocations it
//!   makes for its own pages and space-tree nodes converge.
//! - Bounded pages: a changed (dirty) page is pinned in `pages` until its commit lands, with its
//!   `reserved` and `fresh` bits (and the flight of the commit in flight); a clean page lives in
//!   the bounded `clean_pages` LRU and is dropped when evicted (it equals its durable block). A
//!   page with reserved or held bits is therefore never evicted, so the reclamation rule holds
//!   at any pool size; `cache_clean_page` asserts it. Commits touch only the pinned pages.
//! - Every block read is verified against the pool's `Identity` (format version and UUID), and
//!   in a version-2 pool every node and page must carry the generation its pointer expects;
//!   `upgrade` rewrites a version-1 pool as version 2 in one transaction.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use cairn_io::BlockDevice;
use hashbrown::HashMap;
use parking_lot::RwLock;

use crate::cache::{Lru, NodeCache};
use crate::error::{corrupt, err, Error, ErrorKind, Result};
use crate::format::{
    get_u64, put_u64, seal_block, verify_block, BlockType, Identity, Root, Seal, Superblock,
    FORMAT_VERSION, HDR_AUX, HEADER_BYTES, SUPER_ADDRS,
};
use crate::limits::{
    BLOCK_SIZE_BYTES, BLOCK_SIZE_USIZE, DATA_ALLOC_HEADROOM_BLOCKS, NODE_CACHE_NODES_MIN,
    PAGE_CACHE_PAGES_MIN, PAGE_CACHE_SHARE_DIVISOR,
};
use crate::node::{Node, TreeKind, SPACE_VAL_GEN};
use crate::undo::{BitChange, Undo};

mod layout;
mod upgrade;

use layout::Backing;

/// Words of one bitmap page.
pub const PAGE_WORDS: usize = (BLOCK_SIZE_USIZE - HEADER_BYTES) / 8;
/// Blocks one bitmap page covers.
pub const PAGE_BITS: u64 = PAGE_WORDS as u64 * 64;

/// One bitmap page in memory.
#[derive(Clone, Debug)]
pub struct Page {
    /// Block holding the page on disk (0 = never written).
    pub loc: u64,
    /// `loc` was allocated in this transaction.
    pub loc_fresh: bool,
    /// Allocated blocks as of this transaction (frees applied).
    pub bits: Vec<u64>,
    /// Freed in this transaction: not reusable before the commit is durable (empty when none,
    /// so a clean page costs one bitmap of memory).
    pub reserved: Vec<u64>,
    /// Allocated in this transaction (empty when none).
    pub fresh: Vec<u64>,
    /// Zero bits in `bits`.
    pub free: u32,
    /// Set bits in `reserved`.
    pub reserved_count: u32,
    /// What the commit in flight (or, for its frees, an online check) still holds here.
    flight: Option<Box<Flight>>,
}

/// What a commit frozen and being written leaves in a page until it is durable: its frees
/// (not reusable before then, nor while an online check runs) and its allocations (not
/// durable before then).
#[derive(Clone, Debug, Default)]
struct Flight {
    held: Vec<u64>,
    /// Set bits in `held`.
    held_count: u32,
    fresh: Vec<u64>,
}

impl Page {
    fn empty() -> Page {
        Page {
            loc: 0,
            loc_fresh: false,
            bits: vec![0; PAGE_WORDS],
            reserved: Vec::new(),
            fresh: Vec::new(),
            free: PAGE_BITS as u32,
            reserved_count: 0,
            flight: None,
        }
    }

    /// Holds nothing of the current transaction or of a commit in flight: equal to its durable
    /// block, safe to drop.
    fn is_clean(&self) -> bool {
        self.reserved_count == 0
            && !self.loc_fresh
            && self.fresh.iter().all(|&w| w == 0)
            && self.flight.is_none()
    }

    fn held_count(&self) -> u32 {
        self.flight.as_ref().map_or(0, |f| f.held_count)
    }

    fn avail(&self) -> u32 {
        self.free - self.reserved_count - self.held_count()
    }

    /// Word `w` of the blocks free in `bits` that are not reusable yet (freed in the open
    /// transaction or in the commit in flight).
    fn waiting_word(&self, w: usize) -> u64 {
        let held = self.flight.as_ref().map_or(0, |f| word_or_zero(&f.held, w));
        word_or_zero(&self.reserved, w) | held
    }

    /// Whether block `i` was allocated in a transaction that is not durable yet.
    fn undurable(&self, i: u64) -> bool {
        bit_or_zero(&self.fresh, i)
            || self
                .flight
                .as_ref()
                .is_some_and(|f| bit_or_zero(&f.fresh, i))
    }

    /// The transaction is frozen for its commit: what it allocated and freed here moves to the
    /// flight (merged with frees an online check still holds), and the page is the next
    /// transaction's, at its location of that commit.
    fn freeze(&mut self) {
        self.loc_fresh = false;
        let fresh = std::mem::take(&mut self.fresh);
        let reserved = std::mem::take(&mut self.reserved);
        let count = std::mem::take(&mut self.reserved_count);
        if count == 0 && fresh.iter().all(|&w| w == 0) && self.flight.is_none() {
            return;
        }
        let f = self.flight.get_or_insert_with(Box::default);
        assert!(
            f.fresh.is_empty(),
            "one commit in flight: the last one's allocations landed"
        );
        f.fresh = fresh;
        if count > 0 {
            for (h, r) in words_of(&mut f.held).iter_mut().zip(&reserved) {
                assert_eq!(*h & r, 0, "a block is freed once");
                *h |= r;
            }
            f.held_count += count;
        }
    }

    /// The commit in flight is durable: its allocations are, and its frees become reusable
    /// unless `keep_frees` (an online check runs). Returns the blocks that became reusable.
    fn land(&mut self, keep_frees: bool) -> u32 {
        let Some(f) = self.flight.as_mut() else {
            return 0;
        };
        f.fresh = Vec::new();
        if keep_frees && f.held_count > 0 {
            return 0;
        }
        let n = f.held_count;
        self.flight = None;
        n
    }

    pub(crate) fn set(&mut self, i: u64, v: bool) {
        set_bit(&mut self.bits, i, v);
    }

    pub(crate) fn set_fresh(&mut self, i: u64, v: bool) {
        set_bit(words_of(&mut self.fresh), i, v);
    }

    pub(crate) fn set_reserved(&mut self, i: u64, v: bool) {
        set_bit(words_of(&mut self.reserved), i, v);
    }

    /// Whether no block of `[a, b)` (indexes in the page) is allocated, nor freed in the open
    /// transaction (a block freed in the commit in flight counts as free: it is free once that
    /// commit lands).
    fn range_free(&self, a: u64, b: u64) -> bool {
        (a..b).all(|i| !bit(&self.bits, i) && !bit_or_zero(&self.reserved, i))
    }

    /// Encodes page `page_no` for its location, written by generation `gen` of pool `uuid`.
    pub fn encode(&self, page_no: u64, gen: u64, uuid: [u8; 16]) -> Vec<u8> {
        let mut b = vec![0u8; BLOCK_SIZE_USIZE];
        for (i, w) in self.bits.iter().enumerate() {
            put_u64(&mut b, HEADER_BYTES + 8 * i, *w);
        }
        put_u64(&mut b, HDR_AUX, page_no);
        let at = Seal {
            addr: self.loc,
            gen,
            uuid,
        };
        seal_block(&mut b, BlockType::Bitmap, 0, 0, at);
        b
    }

    /// Decodes the bitmap of page `page_no` read from `addr` of pool `id`.
    pub fn decode(
        b: &[u8],
        addr: u64,
        page_no: u64,
        gen_max: u64,
        id: &Identity,
    ) -> Result<Vec<u64>> {
        Ok(Page::decode_with_gen(b, addr, page_no, gen_max, id)?.0)
    }

    /// [`Page::decode`] with the generation that wrote the page.
    pub fn decode_with_gen(
        b: &[u8],
        addr: u64,
        page_no: u64,
        gen_max: u64,
        id: &Identity,
    ) -> Result<(Vec<u64>, u64)> {
        let hdr = verify_block(b, BlockType::Bitmap, addr, gen_max, id)?;
        if hdr.aux != page_no {
            return Err(corrupt(format!(
                "bitmap block {addr}: holds page {} not {page_no}",
                hdr.aux
            )));
        }
        let words = (0..PAGE_WORDS)
            .map(|i| get_u64(b, HEADER_BYTES + 8 * i))
            .collect();
        Ok((words, hdr.gen))
    }
}

fn bit(words: &[u64], i: u64) -> bool {
    words[(i / 64) as usize] >> (i % 64) & 1 == 1
}
/// A bit of a bitmap that is empty while all its bits are zero.
fn bit_or_zero(words: &[u64], i: u64) -> bool {
    !words.is_empty() && bit(words, i)
}
/// A word of such a bitmap.
fn word_or_zero(words: &[u64], w: usize) -> u64 {
    words.get(w).copied().unwrap_or(0)
}
/// The words of such a bitmap, allocated on first use.
fn words_of(words: &mut Vec<u64>) -> &mut [u64] {
    if words.is_empty() {
        words.resize(PAGE_WORDS, 0);
    }
    words
}
fn set_bit(words: &mut [u64], i: u64, v: bool) {
    let w = &mut words[(i / 64) as usize];
    if v {
        *w |= 1 << (i % 64);
    } else {
        *w &= !(1 << (i % 64));
    }
}

/// What an allocation is for (kept as separate counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    Data,
    Meta,
}

/// Metadata state of an open pool.
pub struct Meta {
    pub dev: Arc<dyn BlockDevice>,
    /// Last durable superblock.
    pub durable: Superblock,
    /// The pool every block read must belong to, and the format version it is read as (a
    /// version-1 pool until its upgrade commits; every commit writes the current version).
    pub id: Identity,
    pub dir_root: Root,
    pub rc_root: Root,
    pub space_root: Root,
    pub device_blocks: u64,
    pub reserve_blocks: u64,
    pub allocated_blocks: u64,
    pub data_blocks: u64,
    pub meta_blocks: u64,
    /// The pool's share epoch (see `format::Superblock::share_epoch`): mappings made now are
    /// written in it.
    pub share_epoch: u64,
    /// Blocks freed in this transaction (not yet reusable).
    pub pending_blocks: u64,
    pub cache: NodeCache,
    pub dirty: HashMap<u64, Arc<Node>>,
    /// Bitmap pages changed in this transaction (the dirty set), pinned until the commit.
    pub pages: BTreeMap<u64, Page>,
    /// Clean bitmap pages, bounded; a page moves to `pages` before it changes.
    clean_pages: Lru<Page>,
    meta_cursor: u64,
    /// Data extents freed by this transaction, discarded once it is durable.
    pub freed_data: Vec<(u64, u64)>,
    /// Held shared by data reads running outside the pool lock; the commit takes it exclusively
    /// before blocks freed in the transaction become reusable.
    pub io_gate: Arc<RwLock<()>>,
    /// The open operation's undo log (see `undo.rs`).
    pub(crate) undo: Option<Box<Undo>>,
    /// Metadata blocks allocated by commits, counted to check the bound operations leave for
    /// them.
    pub unfloored_allocs: u64,
    /// Which chunks of the device have backing storage, and where metadata past the reserve
    /// room goes (see `layout`).
    backing: Backing,
    /// The end of the last data allocation: the chunk the allocator fills now.
    data_cursor: u64,
    /// Online checks reading a durable state: while any runs, blocks freed stay reserved past
    /// their commit (their pages stay pinned), so no block of the state it reads is reused.
    pub frees_held: u32,
    /// The commit frozen and being written while the next transaction goes on (see
    /// [`Meta::freeze`]).
    in_flight: Option<InFlight>,
    /// A bitmap page changed since the last freeze (or holds frees an online check keeps past
    /// their commit): the next commit has pages to write.
    pub(crate) pages_changed: bool,
}

/// What the state keeps of the commit in flight until it is durable.
struct InFlight {
    gen: u64,
    /// Its nodes, found here until they are durable (none is in the cache or the dirty set).
    nodes: HashMap<u64, Arc<Node>>,
    /// Data extents it freed, discarded once it is durable.
    freed_data: Vec<(u64, u64)>,
    /// Pages pinned when it froze (they are not the next transaction's changes).
    pages: usize,
}

/// A commit frozen: everything it writes, taken from the state, which goes on as the next
/// transaction while this is written ([`Frozen::write`], no lock needed) and then lands
/// ([`Meta::land`]).
pub struct Frozen {
    sb: Superblock,
    id: Identity,
    nodes: Vec<(u64, Arc<Node>)>,
    /// Encoded bitmap pages at their locations.
    pages: Vec<(u64, Vec<u8>)>,
}

impl Meta {
    /// `cache_blocks` bounds the clean nodes and pages kept (one block of memory each); a
    /// `PAGE_CACHE_SHARE_DIVISOR`th of it goes to bitmap pages.
    /// With `preallocated`, the whole device has backing storage (nothing is punched out).
    pub fn new(
        dev: Arc<dyn BlockDevice>,
        sb: Superblock,
        cache_blocks: usize,
        preallocated: bool,
    ) -> Meta {
        let pages_max = (cache_blocks / PAGE_CACHE_SHARE_DIVISOR).max(PAGE_CACHE_PAGES_MIN);
        let backing = Backing::new(sb.device_blocks, preallocated);
        let nodes_max = cache_blocks
            .saturating_sub(pages_max)
            .max(NODE_CACHE_NODES_MIN);
        Meta {
            dev,
            dir_root: sb.dir,
            rc_root: sb.rc,
            space_root: sb.space,
            device_blocks: sb.device_blocks,
            reserve_blocks: sb.reserve_blocks,
            allocated_blocks: sb.allocated_blocks,
            data_blocks: sb.data_blocks,
            meta_blocks: sb.meta_blocks,
            share_epoch: sb.share_epoch,
            pending_blocks: 0,
            id: sb.identity(),
            durable: sb,
            cache: NodeCache::new(nodes_max),
            dirty: HashMap::new(),
            pages: BTreeMap::new(),
            clean_pages: Lru::new(pages_max),
            meta_cursor: 2,
            freed_data: Vec::new(),
            io_gate: Arc::new(RwLock::new(())),
            undo: None,
            unfloored_allocs: 0,
            frees_held: 0,
            backing,
            data_cursor: 0,
            in_flight: None,
            pages_changed: false,
        }
    }

    /// The counters an operation may change, with the metadata allocation cursor.
    pub(crate) fn counters(&self) -> [u64; 5] {
        [
            self.allocated_blocks,
            self.data_blocks,
            self.meta_blocks,
            self.pending_blocks,
            self.meta_cursor,
        ]
    }

    pub(crate) fn set_counters(&mut self, c: [u64; 5]) {
        [
            self.allocated_blocks,
            self.data_blocks,
            self.meta_blocks,
            self.pending_blocks,
            self.meta_cursor,
        ] = c;
    }

    /// The dirty page holding block `b`.
    pub(crate) fn page_mut(&mut self, b: u64) -> &mut Page {
        self.pages
            .get_mut(&(b / PAGE_BITS))
            .expect("the page of a changed block is pinned")
    }

    /// Bitmap pages changed in this transaction (the commit rewrites each of them).
    pub fn dirty_pages(&self) -> usize {
        self.pages.len()
    }

    /// Clean bitmap pages held in memory (bounded by the page share of the cache).
    #[cfg(test)]
    pub fn clean_pages(&self) -> usize {
        self.clean_pages.len()
    }

    /// The loaded page `p` (dirty or clean).
    fn page(&self, p: u64) -> &Page {
        match self.pages.get(&p) {
            Some(pg) => pg,
            None => self.clean_pages.peek(p).expect("page loaded"),
        }
    }

    /// Marks page `p` (loaded) dirty: pins it until the commit.
    fn dirty_page(&mut self, p: u64) {
        self.pages_changed = true;
        if !self.pages.contains_key(&p) {
            let pg = self.clean_pages.remove(p).expect("page loaded");
            self.pages.insert(p, pg);
        }
    }

    /// Unpins page `p`, which holds nothing of the transaction any more (its commit is durable,
    /// or the operation that changed it was undone).
    pub(crate) fn undirty_page(&mut self, p: u64) {
        let mut pg = self.pages.remove(&p).expect("page is dirty");
        assert!(
            pg.is_clean(),
            "bitmap page {p} unpinned while it holds reserved or fresh bits"
        );
        pg.reserved = Vec::new();
        pg.fresh = Vec::new();
        self.cache_clean_page(p, pg);
    }

    /// Keeps a clean page in the bounded LRU, dropping the least recently used ones.
    fn cache_clean_page(&mut self, p: u64, pg: Page) {
        assert!(
            pg.is_clean(),
            "bitmap page {p} cached while it holds reserved or fresh bits"
        );
        for (victim, v) in self.clean_pages.insert(p, pg) {
            // Reclamation rule: dropping a page with reserved bits would make them reusable.
            assert!(
                v.is_clean(),
                "evicting bitmap page {victim} with reserved or fresh bits"
            );
        }
    }

    pub fn gen(&self) -> u64 {
        self.durable.gen
    }

    /// The generation the open transaction commits as: what its new nodes and pages are
    /// written by, and what pointers to them expect.
    pub fn txn_gen(&self) -> u64 {
        self.in_flight.as_ref().map_or(self.durable.gen, |f| f.gen) + 1
    }

    /// Anything changed since the last commit froze?
    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty() || self.pages_changed
    }

    /// Bitmap pages changed in the open transaction, at most (pages a commit in flight pinned
    /// are not counted, unless it changed them too).
    pub fn open_pages(&self) -> usize {
        let frozen = self.in_flight.as_ref().map_or(0, |f| f.pages);
        self.pages.len().saturating_sub(frozen)
    }

    // ---- node access --------------------------------------------------------------------

    /// The node at `addr`: dirty copy, cached copy, or read and verified from the device.
    pub fn node(&mut self, kind: TreeKind, addr: u64) -> Result<Arc<Node>> {
        if let Some(n) = self.dirty.get(&addr) {
            return Ok(n.clone());
        }
        if let Some(n) = self.cache.get(addr).cloned() {
            if n.kind != kind {
                return Err(corrupt(format!(
                    "block {addr}: {:?} node used as {kind:?}",
                    n.kind
                )));
            }
            return Ok(n);
        }
        if let Some(n) = self.in_flight.as_ref().and_then(|f| f.nodes.get(&addr)) {
            // Written by the commit in flight: perhaps not on the device yet.
            if n.kind != kind {
                return Err(corrupt(format!(
                    "block {addr}: {:?} node used as {kind:?}",
                    n.kind
                )));
            }
            return Ok(n.clone());
        }
        let n = Arc::new(read_node(
            self.dev.as_ref(),
            kind,
            addr,
            self.gen(),
            &self.id,
        )?);
        self.cache.insert(addr, n.clone());
        Ok(n)
    }

    /// Mutable access to a dirty node.
    pub fn dirty_mut(&mut self, addr: u64) -> &mut Node {
        self.log_node(addr);
        Arc::make_mut(self.dirty.get_mut(&addr).expect("node is dirty"))
    }

    /// Places a new node at a freshly allocated block and returns its address; the node is
    /// written by the open transaction.
    pub fn new_node(&mut self, mut node: Node) -> Result<u64> {
        let addr = self.alloc_meta()?;
        self.log_node(addr);
        node.gen = self.txn_gen();
        self.dirty.insert(addr, Arc::new(node));
        Ok(addr)
    }

    /// Releases a metadata block (a node or a bitmap page location).
    pub fn free_meta_block(&mut self, addr: u64) -> Result<()> {
        self.log_node(addr);
        self.dirty.remove(&addr);
        self.cache.remove(addr);
        self.free(addr, 1, Use::Meta)
    }

    // ---- space map ------------------------------------------------------------------------

    /// Makes page `p` loaded (reading it if needed); it stays loaded until the next load.
    fn load_page(&mut self, p: u64) -> Result<()> {
        if self.pages.contains_key(&p) || self.clean_pages.get(p).is_some() {
            return Ok(());
        }
        let mut page = Page::empty();
        if let Some(v) = self.get(TreeKind::Space, self.space_root, p)? {
            let loc = get_u64(&v, 0);
            let mut b = vec![0u8; BLOCK_SIZE_USIZE];
            self.dev
                .read_at(loc * BLOCK_SIZE_BYTES, &mut b)
                .map_err(|e| Error::io(format!("read bitmap page {p}"), e))?;
            let (bits, gen) = Page::decode_with_gen(&b, loc, p, self.gen(), &self.id)?;
            let want = get_u64(&v, SPACE_VAL_GEN);
            if self.id.stamped() && gen != want {
                return Err(corrupt(format!(
                    "bitmap page {p} at block {loc}: written by generation {gen}, the space \
                     index expects {want} (a stale or misplaced block)"
                )));
            }
            page.bits = bits;
            page.loc = loc;
            let ones: u32 = page.bits.iter().map(|w| w.count_ones()).sum();
            page.free = PAGE_BITS as u32 - ones;
            if u64::from(page.free) != get_u64(&v, 8) & 0xffff_ffff {
                return Err(corrupt(format!(
                    "bitmap page {p}: free count differs from index"
                )));
            }
        }
        self.cache_clean_page(p, page);
        Ok(())
    }

    fn page_avail(&mut self, p: u64) -> Result<u32> {
        if let Some(pg) = self.pages.get(&p).or_else(|| self.clean_pages.peek(p)) {
            return Ok(pg.avail());
        }
        Ok(match self.get(TreeKind::Space, self.space_root, p)? {
            Some(v) => (get_u64(&v, 8) & 0xffff_ffff) as u32,
            None => PAGE_BITS as u32,
        })
    }

    /// Was block `b` allocated in a transaction that is not durable yet (the open one, or the
    /// commit in flight)?
    pub fn is_fresh(&mut self, b: u64) -> Result<bool> {
        let p = b / PAGE_BITS;
        self.load_page(p)?;
        Ok(self.page(p).undurable(b % PAGE_BITS))
    }

    /// Blocks an allocation may still take (free and not awaiting durability).
    pub fn usable_blocks(&self) -> u64 {
        self.device_blocks
            .saturating_sub(self.allocated_blocks + self.pending_blocks)
    }

    /// The blocks after the superblocks that data never takes: the metadata reserve's own room,
    /// preallocated in a pool file, so metadata written there cannot meet a full host file system.
    pub fn reserve_region_end(&self) -> u64 {
        (SUPER_ADDRS.len() as u64 + self.reserve_blocks).min(self.device_blocks)
    }

    /// Finds up to `want` contiguous free blocks in `[lo, hi)`, searching from `hint` (inside the
    /// range, else from `lo`) to `hi` and then from `lo` to `hint`; a run shorter than `min` is
    /// taken only where it reaches the end of its bitmap page (it may go on in the next).
    fn find_run(
        &mut self,
        want: u64,
        hint: u64,
        (lo, hi): (u64, u64),
        min: u64,
    ) -> Result<Option<(u64, u64)>> {
        let hi = hi.min(self.device_blocks);
        if lo >= hi {
            return Ok(None);
        }
        let hint = if (lo..hi).contains(&hint) { hint } else { lo };
        for (a, b) in [(hint, hi), (lo, hint)] {
            if let Some(run) = self.find_run_in(want, a, b, min)? {
                return Ok(Some(run));
            }
        }
        Ok(None)
    }

    fn find_run_in(&mut self, want: u64, a: u64, b: u64, min: u64) -> Result<Option<(u64, u64)>> {
        let mut p = a / PAGE_BITS;
        while p * PAGE_BITS < b {
            if self.page_avail(p)? > 0 {
                self.load_page(p)?;
                let from = a.max(p * PAGE_BITS) - p * PAGE_BITS;
                let limit = (b - p * PAGE_BITS).min(PAGE_BITS);
                if let Some(r) = scan_page(self.page(p), from..limit, want, min) {
                    return Ok(Some((p * PAGE_BITS + r.0, r.1)));
                }
            }
            p += 1;
        }
        Ok(None)
    }

    fn mark_allocated(&mut self, start: u64, len: u64, usage: Use) {
        assert!(
            start / PAGE_BITS == (start + len - 1) / PAGE_BITS,
            "an allocated run lies in one page"
        );
        let p = start / PAGE_BITS;
        self.log_bits(p, BitChange::Alloc { start, len });
        self.dirty_page(p);
        let pg = self.pages.get_mut(&p).expect("page loaded by find_run");
        for b in start..start + len {
            let i = b % PAGE_BITS;
            assert!(!bit(&pg.bits, i), "allocating an allocated block {b}");
            assert!(
                pg.waiting_word((i / 64) as usize) >> (i % 64) & 1 == 0,
                "reclamation rule: block {b} reused before the commit that freed it is durable"
            );
            pg.set(i, true);
            pg.set_fresh(i, true);
            pg.free -= 1;
        }
        self.allocated_blocks += len;
        match usage {
            Use::Data => self.data_blocks += len,
            Use::Meta => self.meta_blocks += len,
        }
    }

    /// One metadata block; may use the reserve.
    pub fn alloc_meta(&mut self) -> Result<u64> {
        self.check_meta_floor()?;
        // The reserve's room first, then anywhere.
        let (hint, region_end) = (self.meta_cursor, self.reserve_region_end());
        let found = match self.find_run(1, hint, (0, region_end), 1)? {
            Some(run) => Some(run.0),
            None => self.find_meta_overflow()?,
        };
        let Some(b) = found else {
            return Err(err(ErrorKind::NoSpace, "no block left for metadata"));
        };
        if b >= region_end {
            self.back_meta_block(b)?;
        }
        self.mark_allocated(b, 1, Use::Meta);
        self.meta_cursor = b + 1;
        if self.undo.as_ref().is_none_or(|u| u.commit) {
            self.unfloored_allocs += 1;
        }
        Ok(b)
    }

    /// `want` data blocks as one or more extents: right after `near` (the physical block after
    /// the write's virtual neighbour) when the write is small and a run fits there, else
    /// preferring one contiguous run after `hint` (see `layout`). Their chunks are backed
    /// before this returns. Fails with `NoSpace` (allocating nothing) when the data space
    /// cannot hold them.
    pub fn alloc_data_near(
        &mut self,
        want: u64,
        near: Option<u64>,
        hint: u64,
    ) -> Result<Vec<(u64, u64)>> {
        let needed = want + self.reserve_blocks + DATA_ALLOC_HEADROOM_BLOCKS;
        if self.usable_blocks() < needed {
            return Err(err(ErrorKind::NoSpace, format!("{want} data blocks")));
        }
        let got = match near.map(|n| self.find_near(want, n)).transpose()?.flatten() {
            Some(run) => {
                self.mark_allocated(run.0, run.1, Use::Data);
                vec![run]
            }
            None => self.alloc_runs(want, hint)?,
        };
        let last = got.last().expect("a data allocation takes blocks");
        self.data_cursor = last.0 + last.1;
        self.back_data_runs(&got);
        Ok(got)
    }

    /// [`Meta::alloc_data_near`] with no neighbour.
    #[cfg(test)]
    pub fn alloc_data(&mut self, want: u64, hint: u64) -> Result<Vec<(u64, u64)>> {
        self.alloc_data_near(want, None, hint)
    }

    /// `want` blocks in runs from `hint`, long runs first for a large write (see `layout`).
    fn alloc_runs(&mut self, want: u64, hint: u64) -> Result<Vec<(u64, u64)>> {
        let mut got = Vec::new();
        let mut hint = hint;
        let mut left = want;
        let mut min = Meta::run_min_for(want);
        let range = (self.reserve_region_end(), self.device_blocks);
        while left > 0 {
            let run = match self.find_run(left, hint, range, min.min(left)) {
                Ok(Some(r)) => r,
                // No long run left: shorter pieces.
                Ok(None) if min > 1 => {
                    min = 1;
                    continue;
                }
                Ok(None) => {
                    self.unalloc_data(&got);
                    return Err(err(ErrorKind::NoSpace, format!("{want} data blocks")));
                }
                Err(e) => {
                    self.unalloc_data(&got);
                    return Err(e);
                }
            };
            self.mark_allocated(run.0, run.1, Use::Data);
            got.push(run);
            hint = run.0 + run.1;
            left -= run.1;
        }
        Ok(got)
    }

    /// Gives back data blocks allocated in this transaction and never mapped (nobody can be
    /// reading them), reusable at once.
    pub fn unalloc_data(&mut self, runs: &[(u64, u64)]) {
        for &(s, l) in runs {
            self.free_inner(s, l, Use::Data, true)
                .expect("blocks allocated in this transaction are loaded and set");
        }
    }

    /// Frees blocks. They are reserved until the transaction is durable (reclamation rule),
    /// except metadata blocks allocated in this transaction, which nothing durable or in flight
    /// can refer to. Data blocks always wait: a read running outside the pool lock may still be
    /// reading them (the commit waits for such reads before releasing reserved blocks).
    pub fn free(&mut self, start: u64, len: u64, usage: Use) -> Result<()> {
        self.free_inner(start, len, usage, usage == Use::Meta)
    }

    fn free_inner(&mut self, start: u64, len: u64, usage: Use, fresh_at_once: bool) -> Result<()> {
        for b in start..start + len {
            if b >= self.device_blocks {
                return Err(corrupt(format!("freeing block {b} past the device end")));
            }
            let p = b / PAGE_BITS;
            let i = b % PAGE_BITS;
            self.load_page(p)?;
            if !bit(&self.page(p).bits, i) {
                return Err(corrupt(format!("block {b} freed twice")));
            }
            let at_once = fresh_at_once && bit_or_zero(&self.page(p).fresh, i);
            self.log_free(p, b, at_once);
            self.dirty_page(p);
            let pg = self.pages.get_mut(&p).expect("loaded");
            pg.set(i, false);
            pg.free += 1;
            if at_once {
                // Never durable: reusable at once, so not discarded after the commit either.
                pg.set_fresh(i, false);
            } else {
                pg.set_reserved(i, true);
                pg.reserved_count += 1;
                self.pending_blocks += 1;
                if usage == Use::Data {
                    match self.freed_data.last_mut() {
                        Some(last) if last.0 + last.1 == b => last.1 += 1,
                        _ => self.freed_data.push((b, 1)),
                    }
                }
            }
        }
        // Saturating: the counters come from disk; `check` reports any disagreement.
        self.allocated_blocks = self.allocated_blocks.saturating_sub(len);
        match usage {
            Use::Data => self.data_blocks = self.data_blocks.saturating_sub(len),
            Use::Meta => self.meta_blocks = self.meta_blocks.saturating_sub(len),
        }
        Ok(())
    }

    /// Marks the two superblock blocks allocated (pool creation).
    pub fn mark_superblocks(&mut self) -> Result<()> {
        self.load_page(0)?;
        for a in SUPER_ADDRS {
            self.mark_allocated(a, 1, Use::Meta);
        }
        Ok(())
    }

    /// Makes the transaction dirty so the next commit writes a new superblock.
    pub fn touch(&mut self) -> Result<()> {
        self.load_page(0)?;
        self.log_page(0);
        self.dirty_page(0);
        Ok(())
    }

    // ---- commit ---------------------------------------------------------------------------

    /// Gives every dirty bitmap page a fresh location and an up-to-date index entry, looping
    /// until the allocations this makes converge.
    pub(crate) fn converge_space(&mut self) -> Result<()> {
        for _round in 0..64 {
            let mut changed = false;
            let dirty: Vec<u64> = self.pages.keys().copied().collect();
            for p in dirty {
                if !self.pages[&p].loc_fresh {
                    let new = self.alloc_meta()?;
                    self.log_page_loc(p);
                    let old = self.pages[&p].loc;
                    let pg = self.pages.get_mut(&p).expect("dirty page");
                    pg.loc = new;
                    pg.loc_fresh = true;
                    if old != 0 {
                        self.free(old, 1, Use::Meta)?;
                    }
                    changed = true;
                }
                let pg = &self.pages[&p];
                let mut want = vec![0u8; TreeKind::Space.value_bytes()];
                put_u64(&mut want, 0, pg.loc);
                put_u64(&mut want, 8, u64::from(pg.free));
                put_u64(&mut want, SPACE_VAL_GEN, self.txn_gen());
                if self.get(TreeKind::Space, self.space_root, p)?.as_deref() != Some(&want[..]) {
                    self.space_root = self.insert(TreeKind::Space, self.space_root, p, &want)?;
                    changed = true;
                }
            }
            if !changed {
                return Ok(());
            }
        }
        unreachable!("space map allocation does not converge")
    }

    /// Commits the transaction at once: [`Meta::freeze`], [`Frozen::write`], [`Meta::land`].
    /// `sb` carries the non-space fields; on success it becomes durable.
    pub fn commit(&mut self, sb: Superblock) -> Result<()> {
        let frozen = self.freeze(sb)?;
        frozen.write(self.dev.as_ref())?;
        self.land(frozen);
        Ok(())
    }

    /// Freezes the transaction for its commit: converges the space map, encodes the bitmap
    /// pages and takes the dirty nodes. From here the state is the next transaction's: a node
    /// of the frozen one is shadowed before it changes (it is no longer dirty) and found in the
    /// flight until it lands; its frees stay unusable and its allocations count as not durable
    /// until then. No other commit may freeze before this one lands. `sb` carries the non-space
    /// fields.
    pub fn freeze(&mut self, mut sb: Superblock) -> Result<Frozen> {
        assert!(self.undo.is_none(), "commit inside an operation");
        assert!(self.in_flight.is_none(), "one commit in flight at a time");
        self.converge_space()?;
        let gen = self.txn_gen();
        sb.gen = gen;
        sb.version = FORMAT_VERSION;
        sb.dir = self.dir_root;
        sb.rc = self.rc_root;
        sb.space = self.space_root;
        sb.device_blocks = self.device_blocks;
        sb.allocated_blocks = self.allocated_blocks;
        sb.data_blocks = self.data_blocks;
        sb.meta_blocks = self.meta_blocks;
        sb.reserve_blocks = self.reserve_blocks;
        sb.share_epoch = self.share_epoch;
        let id = Identity::current(sb.uuid);
        let mut pages = Vec::with_capacity(self.pages.len());
        for (&p, pg) in &self.pages {
            let b = pg.encode(p, gen, id.uuid);
            assert_eq!(
                Page::decode(&b, pg.loc, p, gen, &id)?,
                pg.bits,
                "bitmap page {p} encoding"
            );
            pages.push((pg.loc * BLOCK_SIZE_BYTES, b));
        }
        for pg in self.pages.values_mut() {
            pg.freeze();
        }
        self.pages_changed = false;
        let nodes = std::mem::take(&mut self.dirty);
        self.in_flight = Some(InFlight {
            gen,
            nodes: nodes.clone(),
            freed_data: std::mem::take(&mut self.freed_data),
            pages: self.pages.len(),
        });
        Ok(Frozen {
            sb,
            id,
            nodes: nodes.into_iter().collect(),
            pages,
        })
    }

    /// The frozen commit is durable (its [`Frozen::write`] returned `Ok`): its superblock is
    /// the durable one, its nodes go to the cache, its frees become reusable (unless an online
    /// check holds them) and the chunks they leave wholly free are discarded.
    pub fn land(&mut self, frozen: Frozen) {
        let flight = self.in_flight.take().expect("a commit in flight lands");
        assert_eq!(flight.gen, frozen.sb.gen, "the commit in flight lands");
        // The pool froze the commit holding the I/O gate exclusively: no read that looked up a
        // block freed by it is still running when the block becomes reusable below (a read
        // begun since looks up the next transaction, which does not map it).
        self.id = frozen.sb.identity();
        self.durable = frozen.sb;
        // Decided while the pages of those frees are still pinned; a block freed since (the
        // next transaction's, still `reserved`) keeps its chunk.
        let freed = coalesce(flight.freed_data);
        let punch = self.chunks_to_punch(&freed);
        for (addr, node) in flight.nodes {
            // A node the next transaction freed already is not cached again.
            let (p, i) = (addr / PAGE_BITS, addr % PAGE_BITS);
            if self.pages.get(&p).is_none_or(|pg| bit(&pg.bits, i)) {
                self.cache.insert(addr, node);
            }
        }
        let keep_frees = self.frees_held > 0;
        let pinned: Vec<u64> = self.pages.keys().copied().collect();
        for p in pinned {
            let pg = self.pages.get_mut(&p).expect("dirty page");
            let released = pg.land(keep_frees);
            self.pending_blocks -= u64::from(released);
            if pg.is_clean() {
                self.undirty_page(p);
            }
        }
        // What stays pinned changed since, or holds frees for an online check (the next
        // commit rewrites it).
        self.pages_changed |= !self.pages.is_empty();
        self.punched(&punch);
        for (s, l) in punch {
            if let Err(e) = self.dev.discard(s * BLOCK_SIZE_BYTES, l * BLOCK_SIZE_BYTES) {
                tracing::warn!("discard of freed blocks {s}+{l} failed: {e}");
            }
        }
    }

    /// Drops the clean nodes and bitmap pages held in memory (they are read again when needed;
    /// a test hook).
    pub fn drop_clean(&mut self) {
        self.cache.clear();
        self.clean_pages.clear();
    }

    /// Drops everything not durable (used when a pool fails; the pool is not used again).
    pub fn forget_dirty(&mut self) {
        self.undo = None;
        self.in_flight = None;
        self.pages_changed = false;
        self.dirty.clear();
        self.pages.clear();
        self.clean_pages.clear();
        self.cache.clear();
    }
}

/// Sorts extents and merges the ones that touch (frees arrive in mapping order, not address
/// order, so runs freed piecemeal are found whole here).
fn coalesce(mut runs: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    runs.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(runs.len());
    for (s, l) in runs {
        match out.last_mut() {
            Some(last) if last.0 + last.1 == s => last.1 += l,
            _ => out.push((s, l)),
        }
    }
    out
}

/// Scans one page for a run of up to `want` available blocks in `range`; a run shorter than
/// `min` is taken only where it reaches the end of the page.
fn scan_page(pg: &Page, range: Range<u64>, want: u64, min: u64) -> Option<(u64, u64)> {
    let (mut i, limit) = (range.start, range.end);
    let used = |i: u64| {
        (pg.bits[(i / 64) as usize] | pg.waiting_word((i / 64) as usize)) >> (i % 64) & 1 == 1
    };
    while i < limit {
        let w = (i / 64) as usize;
        let word = pg.bits[w] | pg.waiting_word(w);
        if word == u64::MAX {
            i = (w as u64 + 1) * 64;
            continue;
        }
        if word >> (i % 64) & 1 == 1 {
            i += 1;
            continue;
        }
        let start = i;
        while i < limit && i - start < want && !used(i) {
            i += 1;
        }
        if i - start >= min || i == PAGE_BITS {
            return Some((start, i - start));
        }
    }
    None
}

impl Frozen {
    /// Writes the frozen commit: its nodes and pages to their fresh blocks, flush, the alternate
    /// superblock, flush. Runs without the pool lock: everything it writes is its own.
    pub fn write(&self, dev: &dyn BlockDevice) -> Result<()> {
        let (gen, id) = (self.sb.gen, &self.id);
        let own: std::collections::HashSet<u64> = self.nodes.iter().map(|(a, _)| *a).collect();
        let mut blocks: Vec<(u64, Vec<u8>)> = Vec::with_capacity(self.nodes.len());
        for (addr, node) in &self.nodes {
            let addr = *addr;
            assert!(
                node.children
                    .iter()
                    .all(|c| !own.contains(&c.addr) || c.gen == gen),
                "node {addr} points at a node of this transaction with another generation"
            );
            let b = node.encode(Seal {
                addr,
                gen,
                uuid: id.uuid,
            });
            let back = Node::decode(node.kind, &b, addr, gen, id)?;
            assert_eq!(
                &back,
                node.as_ref(),
                "node {addr} does not survive its encoding"
            );
            blocks.push((addr * BLOCK_SIZE_BYTES, b));
        }
        let mut batch: Vec<(u64, &[u8])> = blocks
            .iter()
            .chain(&self.pages)
            .map(|(o, b)| (*o, &b[..]))
            .collect();
        batch.sort_by_key(|(o, _)| *o);
        let ctx = |what: &str| format!("commit of generation {gen}: {what}");
        dev.write_batch(&batch)
            .map_err(|e| Error::io(ctx("write metadata"), e))?;
        dev.flush().map_err(|e| Error::io(ctx("flush"), e))?;
        let sbb = self.sb.encode();
        let slot = SUPER_ADDRS[(gen % 2) as usize];
        assert_eq!(
            Superblock::decode(&sbb, slot)?,
            self.sb,
            "superblock encoding"
        );
        dev.write_at(slot * BLOCK_SIZE_BYTES, &sbb)
            .map_err(|e| Error::io(ctx("write superblock"), e))?;
        dev.flush()
            .map_err(|e| Error::io(ctx("flush superblock"), e))?;
        Ok(())
    }
}

/// Reads and verifies one node of pool `id` straight from the device.
pub fn read_node(
    dev: &dyn BlockDevice,
    kind: TreeKind,
    addr: u64,
    gen_max: u64,
    id: &Identity,
) -> Result<Node> {
    if addr < 2 || addr >= dev.size_bytes() / BLOCK_SIZE_BYTES {
        return Err(corrupt(format!(
            "{kind:?} node address {addr} out of range"
        )));
    }
    let mut b = vec![0u8; BLOCK_SIZE_USIZE];
    dev.read_at(addr * BLOCK_SIZE_BYTES, &mut b)
        .map_err(|e| Error::io(format!("read {kind:?} node {addr}"), e))?;
    Node::decode(kind, &b, addr, gen_max, id)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::error::ErrorKind;

    fn meta(blocks: u64) -> Meta {
        crate::btree::tests::test_meta(blocks)
    }

    #[test]
    fn a_commit_in_flight_keeps_its_frees_apart_from_the_next_transactions() {
        let mut m = meta(8192);
        let lo = m.reserve_region_end();
        let a = m.alloc_data(8, lo).unwrap()[0].0;
        m.commit(m.durable.clone()).unwrap();
        // Transaction N frees a..a+2 and allocates one block; then it freezes.
        m.free(a, 2, Use::Data).unwrap();
        let n_block = m.alloc_data(1, a + 100).unwrap()[0].0;
        let val = vec![7u8; TreeKind::Directory.value_bytes()];
        let root = m
            .insert(TreeKind::Directory, Root::default(), 1, &val)
            .unwrap();
        let frozen = m.freeze(m.durable.clone()).unwrap();
        assert!(
            !m.is_dirty(),
            "the next transaction has changed nothing yet"
        );
        // Its node is not on the device yet: found in the flight, even with the cache dropped.
        m.drop_clean();
        assert_eq!(
            m.get(TreeKind::Directory, root, 1).unwrap().as_deref(),
            Some(&val[..])
        );
        assert!(
            m.is_fresh(n_block).unwrap(),
            "not durable before its commit lands"
        );
        // The next transaction frees a+2..a+4: nothing freed by either is reused.
        m.free(a + 2, 2, Use::Data).unwrap();
        assert!(m.is_dirty());
        let got = m.alloc_data(1, a).unwrap()[0].0;
        assert!(
            got >= a + 8,
            "block {got} reused before the commit that freed it landed"
        );
        frozen.write(m.dev.as_ref()).unwrap();
        m.land(frozen);
        assert!(!m.is_fresh(n_block).unwrap(), "durable once landed");
        assert_eq!(
            m.pending_blocks, 2,
            "the next transaction's frees still wait"
        );
        // N's frees are reusable now, the next transaction's only after its own commit.
        assert_eq!(m.alloc_data(2, a).unwrap(), vec![(a, 2)]);
        assert_ne!(m.alloc_data(1, a + 2).unwrap(), vec![(a + 2, 1)]);
        m.commit(m.durable.clone()).unwrap();
        assert_eq!(m.pending_blocks, 0);
        assert_eq!(m.alloc_data(2, a + 2).unwrap(), vec![(a + 2, 2)]);
    }

    #[test]
    fn bitmap_pages_stay_bounded_across_a_pool_far_larger_than_the_bound() {
        // 64 pages of space map (8 GiB, sparse); `test_meta` keeps at most 16 clean pages.
        let (pages, bound) = (64u64, 16);
        let mut m = meta(pages * PAGE_BITS);
        let mut held = Vec::new();
        for round in 0..3 {
            for p in 0..pages {
                let runs = m.alloc_data(1, p * PAGE_BITS + 100 + round).unwrap();
                assert_eq!(runs, vec![(p * PAGE_BITS + 100 + round, 1)]);
                held.push(runs[0].0);
                if p % 4 == 3 {
                    m.commit(m.durable.clone()).unwrap();
                    assert_eq!(m.dirty_pages(), 0, "a commit unpins every page");
                }
                assert!(m.clean_pages() <= bound, "{} clean pages", m.clean_pages());
                assert!(m.dirty_pages() <= 6, "{} dirty pages", m.dirty_pages());
            }
        }
        // Free one block in every page: all 64 pages hold reserved bits and stay pinned while
        // allocations in every page evict clean ones; none of the freed blocks comes back.
        for &b in &held[..pages as usize] {
            m.free(b, 1, Use::Data).unwrap();
        }
        assert_eq!(m.dirty_pages(), pages as usize);
        for &b in &held[..pages as usize] {
            let runs = m.alloc_data(1, b).unwrap();
            assert_eq!(
                runs,
                vec![(b + 3, 1)],
                "freed block {b} reused before commit"
            );
        }
        m.commit(m.durable.clone()).unwrap();
        assert_eq!(m.dirty_pages(), 0);
        assert!(m.clean_pages() <= bound);
        for &b in &held[..pages as usize] {
            assert_eq!(
                m.alloc_data(1, b).unwrap(),
                vec![(b, 1)],
                "reusable once durable"
            );
            m.commit(m.durable.clone()).unwrap();
            assert!(m.clean_pages() <= bound);
        }
        assert_eq!(m.allocated_blocks, m.meta_blocks + 4 * pages);
    }

    #[test]
    fn freed_blocks_wait_for_the_commit() {
        let mut m = meta(2048);
        let held: Vec<u64> = (0..100).map(|_| m.alloc_meta().unwrap()).collect();
        m.commit(m.durable.clone()).unwrap();
        let freed: HashSet<u64> = held[10..60].iter().copied().collect();
        for &b in &freed {
            m.free(b, 1, Use::Meta).unwrap();
        }
        // Take every other block: none of the freed ones may come back before the commit.
        let mut taken = Vec::new();
        loop {
            match m.alloc_meta() {
                Ok(b) => {
                    assert!(
                        !freed.contains(&b),
                        "block {b} reused before its free was durable"
                    );
                    taken.push(b);
                }
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::NoSpace);
                    break;
                }
            }
        }
        for b in taken.drain(..1900) {
            m.free(b, 1, Use::Meta).unwrap();
        }
        m.commit(m.durable.clone()).unwrap();
        let mut again = HashSet::new();
        while let Ok(b) = m.alloc_meta() {
            again.insert(b);
        }
        assert!(
            freed.is_subset(&again),
            "freed blocks reusable once durable"
        );
    }

    #[test]
    fn never_mapped_data_blocks_are_reusable_at_once_mapped_ones_wait() {
        let mut m = meta(2048);
        let run = m.alloc_data(8, 100).unwrap();
        assert_eq!(run, vec![(100, 8)], "contiguous run at the hint");
        assert!(m.is_fresh(103).unwrap());
        m.unalloc_data(&run);
        assert!(m.freed_data.is_empty(), "never durable, nothing to discard");
        assert_eq!(m.alloc_data(8, 100).unwrap(), vec![(100, 8)]);
        // Freed after being mapped (a reader may hold it): waits for the commit.
        m.free(100, 8, Use::Data).unwrap();
        assert_eq!(m.alloc_data(8, 100).unwrap(), vec![(108, 8)]);
        m.commit(m.durable.clone()).unwrap();
        assert_eq!(m.freed_data, vec![], "discarded after the commit");
        assert_eq!(m.alloc_data(8, 100).unwrap(), vec![(100, 8)]);
    }

    #[test]
    fn data_never_takes_the_reserve_region_metadata_takes_it_first() {
        let mut m = meta(2048);
        let end = m.reserve_region_end();
        assert_eq!(end, 2 + m.reserve_blocks);
        let runs = m.alloc_data(16, 0).unwrap();
        assert!(
            runs.iter().all(|r| r.0 >= end),
            "{runs:?} in the reserve region"
        );
        for _ in 0..m.reserve_blocks {
            assert!(m.alloc_meta().unwrap() < end);
        }
        assert!(m.alloc_meta().unwrap() >= end, "then anywhere");
    }

    #[test]
    fn freed_runs_are_sorted_and_merged_before_discard() {
        assert_eq!(
            coalesce(vec![(10, 2), (0, 4), (4, 6), (20, 1), (12, 3)]),
            vec![(0, 15), (20, 1)]
        );
        assert_eq!(coalesce(Vec::new()), Vec::new());
    }

    #[test]
    fn data_allocation_leaves_the_metadata_reserve() {
        let mut m = meta(2048);
        let usable = m.usable_blocks();
        let most = usable - m.reserve_blocks - DATA_ALLOC_HEADROOM_BLOCKS;
        let e = m.alloc_data(most + 1, 0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NoSpace);
        assert_eq!(
            m.usable_blocks(),
            usable,
            "a failed allocation takes nothing"
        );
        let got: u64 = m.alloc_data(most, 0).unwrap().iter().map(|r| r.1).sum();
        assert_eq!(got, most);
        // Metadata still finds room in the reserve.
        for _ in 0..m.reserve_blocks {
            m.alloc_meta().unwrap();
        }
    }
}
