//! The comparison half of `check`: the walk's records (metadata claims, data extents, refcount
//! entries, bitmap index entries) sorted by block and merged against the space map one bitmap
//! page at a time. Only pages that are indexed or hold a referenced block are visited, and only
//! one page's state is held at once (a few bytes per block of that page).

use std::collections::VecDeque;

use super::runs::{Runs, Sorted};
use super::{CheckPhase, Checker, DataRef, FindingKind, PageEntry, Role};
use crate::error::Result;
use crate::limits::BLOCK_SIZE_BYTES;
use crate::meta::{Page, PAGE_BITS, PAGE_WORDS};
use crate::node::TreeKind;

/// A record covering blocks `[start, start + len)`.
trait Span {
    fn span(&self) -> (u64, u64);
}

impl Span for DataRef {
    fn span(&self) -> (u64, u64) {
        (self.phys, self.len)
    }
}

impl Span for (u64, u64, u32) {
    fn span(&self) -> (u64, u64) {
        (self.0, self.1)
    }
}

/// Records in order of first block.
trait Source {
    type Item: Span;
    fn peek(&self) -> Option<&Self::Item>;
    fn pop(&mut self) -> Result<Option<Self::Item>>;
}

impl Source for Sorted {
    type Item = DataRef;
    fn peek(&self) -> Option<&DataRef> {
        Sorted::peek(self)
    }
    fn pop(&mut self) -> Result<Option<DataRef>> {
        Sorted::pop(self)
    }
}

impl Source for VecDeque<(u64, u64, u32)> {
    type Item = (u64, u64, u32);
    fn peek(&self) -> Option<&Self::Item> {
        self.front()
    }
    fn pop(&mut self) -> Result<Option<Self::Item>> {
        Ok(self.pop_front())
    }
}

/// Walks records sorted by start, page by page, keeping those that reach into the current page.
struct Sweep<S: Source> {
    src: S,
    active: Vec<S::Item>,
}

impl<S: Source> Sweep<S> {
    fn new(src: S) -> Sweep<S> {
        Sweep {
            src,
            active: Vec::new(),
        }
    }

    /// The first page at or after `from` that a remaining record reaches.
    fn next_page(&self, from: u64) -> Option<u64> {
        let reaches = |it: &S::Item| {
            let (s, l) = it.span();
            s + l > from * PAGE_BITS
        };
        if self.active.iter().any(reaches) {
            return Some(from);
        }
        self.src
            .peek()
            .map(|it| (it.span().0 / PAGE_BITS).max(from))
    }

    /// Makes `active` the records reaching into page `p` (pages are visited in increasing order).
    fn enter(&mut self, p: u64) -> Result<&[S::Item]> {
        let (lo, hi) = (p * PAGE_BITS, (p + 1) * PAGE_BITS);
        self.active.retain(|it| {
            let (s, l) = it.span();
            s + l > lo
        });
        while self.src.peek().is_some_and(|it| it.span().0 < hi) {
            let it = self.src.pop()?.expect("peeked");
            self.active.push(it);
        }
        Ok(&self.active)
    }
}

/// Counts over the whole device, compared with the superblock at the end.
#[derive(Default)]
struct Tally {
    allocated: u64,
    data: u64,
    meta: u64,
}

/// The state of one page's blocks, indexed by block within the page.
struct PageState {
    base: u64,
    alloc: Vec<u64>,
    meta: Vec<Option<Role>>,
    data_refs: Vec<u32>,
    /// Index + 1 into the page's data records of the first extent mapping the block (0: none).
    data_first: Vec<u32>,
    rc: Vec<u32>,
}

impl Checker {
    /// Merges the records with the space map; returns the blocks in use.
    pub(super) fn compare(&mut self) -> Result<u64> {
        let mut metas: Vec<u64> = self.meta.keys().copied().collect();
        metas.sort_unstable();
        let data = std::mem::replace(&mut self.data, Runs::new(1)).into_sorted()?;
        let mut rc = std::mem::take(&mut self.rc);
        rc.sort_unstable_by_key(|r| r.0);
        let mut pages = std::mem::take(&mut self.pages);
        pages.sort_by_key(|e| e.page);
        let mut data_sweep = Sweep::new(data);
        let mut rc_sweep = Sweep::new(VecDeque::from(rc));
        let (mut mi, mut pi, mut from) = (0, 0, 0);
        let (mut tally, mut in_use) = (Tally::default(), 0);
        let pages_total = self.sb.device_blocks.div_ceil(PAGE_BITS);
        self.meter.start(CheckPhase::Compare, pages_total);
        loop {
            let next = [
                metas.get(mi).map(|b| b / PAGE_BITS),
                pages.get(pi).map(|e| e.page),
                data_sweep.next_page(from),
                rc_sweep.next_page(from),
            ];
            let Some(p) = next.into_iter().flatten().min() else {
                break;
            };
            let mut st = PageState::new(p, self.sb.device_blocks);
            while pages.get(pi).is_some_and(|e| e.page == p) {
                self.read_page(&pages[pi], &mut st.alloc);
                pi += 1;
            }
            while metas.get(mi).is_some_and(|b| b / PAGE_BITS == p) {
                st.meta[(metas[mi] - st.base) as usize] = Some(self.meta[&metas[mi]].role);
                mi += 1;
            }
            for (i, d) in data_sweep.enter(p)?.iter().enumerate() {
                st.cover(d.span(), |j, st| {
                    st.data_refs[j] = st.data_refs[j].saturating_add(1);
                    if st.data_first[j] == 0 {
                        st.data_first[j] = i as u32 + 1;
                    }
                });
            }
            for r in rc_sweep.enter(p)? {
                st.cover(r.span(), |j, st| st.rc[j] = r.2);
            }
            in_use += self.compare_page(&st, &data_sweep.active, &mut tally);
            from = p + 1;
            self.meter.advance_to(from);
        }
        self.meter.finish();
        self.compare_counters(&tally);
        Ok(in_use)
    }

    /// Reads one indexed bitmap page into `alloc` (ORed), reporting a bad page, a wrong free
    /// count or bits past the device end.
    fn read_page(&mut self, e: &PageEntry, alloc: &mut [u64]) {
        let path = format!("space/page {}", e.page);
        let mut b = vec![0u8; BLOCK_SIZE_BYTES as usize];
        let id = self.sb.identity();
        let page = match self.dev.read_at(e.loc * BLOCK_SIZE_BYTES, &mut b) {
            Ok(()) => Page::decode_with_gen(&b, e.loc, e.page, self.sb.gen, &id),
            Err(err) => Err(crate::error::Error::io("read bitmap page", err)),
        };
        let bits = match page {
            Ok((_, gen)) if id.stamped() && gen != e.gen => {
                let detail = format!(
                    "written by generation {gen}, the space index expects {} (stale)",
                    e.gen
                );
                return self.find(FindingKind::BadBlock, e.loc, &path, detail);
            }
            Ok((bits, _)) => bits,
            Err(err) => return self.find(FindingKind::BadBlock, e.loc, &path, err.to_string()),
        };
        let ones: u64 = bits.iter().map(|w| u64::from(w.count_ones())).sum();
        if PAGE_BITS - ones != e.free {
            let detail = "free count differs from index";
            self.find(FindingKind::Accounting, e.loc, &path, detail);
        }
        for i in 0..PAGE_BITS {
            if bits[(i / 64) as usize] >> (i % 64) & 1 == 1 {
                let blk = e.page * PAGE_BITS + i;
                if blk >= self.sb.device_blocks {
                    let detail = "allocated past the device end";
                    self.find(FindingKind::Dangling, blk, &path, detail);
                } else {
                    alloc[(i / 64) as usize] |= 1 << (i % 64);
                }
            }
        }
    }

    /// Compares every block of one page; returns the blocks in use there.
    fn compare_page(&mut self, st: &PageState, data: &[DataRef], tally: &mut Tally) -> u64 {
        let mut in_use = 0;
        for j in 0..st.meta.len() {
            let b = st.base + j as u64;
            let is_alloc = st.alloc[j / 64] >> (j % 64) & 1 == 1;
            tally.allocated += u64::from(is_alloc);
            let first = st.data_first[j].checked_sub(1).map(|i| &data[i as usize]);
            let role = match (st.meta[j], first) {
                (Some(r), Some(d)) => {
                    let detail = format!("also used as {r:?} at {}", self.path_of(b));
                    let path = self.data_path(d);
                    self.find(FindingKind::DoubleOwned, b, &path, detail);
                    r
                }
                (Some(r), None) => r,
                (None, Some(_)) => Role::Data,
                (None, None) => {
                    self.unused_block(b, is_alloc, st.rc[j]);
                    continue;
                }
            };
            in_use += 1;
            match role {
                Role::Data => tally.data += 1,
                _ => tally.meta += 1,
            }
            if !is_alloc {
                let p = self.block_path(b, role, first);
                self.find(
                    FindingKind::Dangling,
                    b,
                    &p,
                    "in use but free in the space map",
                );
            }
            let counted = match role {
                Role::Data => st.data_refs[j],
                Role::Node(TreeKind::Volume) => self.node_refs.get(&b).copied().unwrap_or(0),
                _ => 1,
            };
            let stored = if st.rc[j] == 0 { 1 } else { st.rc[j] };
            if counted != stored || (!role.shareable() && st.rc[j] != 0) {
                let p = self.block_path(b, role, first);
                let detail = format!("{counted} references, refcount {stored}");
                self.find(FindingKind::RefcountMismatch, b, &p, detail);
            }
        }
        in_use
    }

    /// The path of block `b` in use in `role` (`first`: the first extent mapping it).
    fn block_path(&self, b: u64, role: Role, first: Option<&DataRef>) -> String {
        match first {
            Some(d) if role == Role::Data => self.data_path(d),
            _ => self.path_of(b),
        }
    }

    /// A block nothing references: it must be free and have no refcount.
    fn unused_block(&mut self, b: u64, is_alloc: bool, rc: u32) {
        if is_alloc {
            let detail = "allocated, used by nothing";
            self.find(FindingKind::Leaked, b, "space map", detail);
        }
        if rc != 0 {
            let detail = format!("unused block with refcount {rc}");
            self.find(FindingKind::RefcountMismatch, b, "refcount", detail);
        }
    }

    fn compare_counters(&mut self, tally: &Tally) {
        let counters = [
            ("allocated", tally.allocated, self.sb.allocated_blocks),
            ("data", tally.data, self.sb.data_blocks),
            ("metadata", tally.meta, self.sb.meta_blocks),
        ];
        for (what, found, recorded) in counters {
            if found != recorded {
                let detail = format!("{what} blocks: {found} found, superblock says {recorded}");
                self.find(FindingKind::Accounting, 0, "superblock", detail);
            }
        }
    }
}

impl PageState {
    fn new(p: u64, device_blocks: u64) -> PageState {
        let base = p * PAGE_BITS;
        let n = device_blocks.saturating_sub(base).min(PAGE_BITS) as usize;
        PageState {
            base,
            alloc: vec![0; PAGE_WORDS],
            meta: vec![None; n],
            data_refs: vec![0; n],
            data_first: vec![0; n],
            rc: vec![0; n],
        }
    }

    /// Calls `f` for each block of this page inside `[start, start + len)`.
    fn cover(&mut self, (start, len): (u64, u64), mut f: impl FnMut(usize, &mut PageState)) {
        let end = (self.base + self.meta.len() as u64).min(start + len);
        for b in start.max(self.base)..end {
            f((b - self.base) as usize, self);
        }
    }
}
