//! Consistency check of a pool's durable state, online (a commit of an open pool, whose blocks
//! the pool does not reuse until the check ends, while I/O goes on) or offline (on a device no
//! pool holds) — the same code.
//!
//! It reads every metadata block straight from the device and verifies its checksum, type, own
//! address and generation, and in a version-2 pool its pool UUID and that it carries the
//! generation its pointer expects (a stale block is reported, not entered); a version-1 pool is
//! checked as version 1 (its layout, capacities and fill, no generations to compare); checks B-tree invariants (key order, bounds from the parent, levels,
//! fill, root height); recounts references to volume-tree nodes and data blocks from every
//! volume tree, tombstones pending reclaim included (a shared node's children are counted once,
//! as the reference counts are); compares them with the refcount tree and the space map; and
//! reports leaked, doubly-owned and dangling blocks with their tree path. In a version-3 pool it
//! also checks the rule in-place overwrite rests on: a mapping written in or after its volume's
//! last share epoch (which the engine overwrites in place) has no second owner — neither its data
//! blocks nor any node on its tree path has a durable reference count above one — and no
//! mapping carries an epoch past the pool's.
//!
//! Memory is proportional to the metadata walked, not to the pool: the walk records the metadata
//! blocks it claims (with the parent that led to each, so a path is built only for a finding),
//! the data extents the volume leaves map, the refcount entries and the bitmap pages' index
//! entries; the data extents, the bulk of it, are kept in sorted runs spilled to a temporary file
//! past `CHECK_EXTENTS_IN_MEMORY_MAX` (`runs.rs`). `merge.rs` then compares the sorted records
//! with the space map one bitmap page at a time, visiting only pages that are indexed or
//! referenced.
//!
//! The walk is bounded whatever the device holds: a tree taller than `BTREE_HEIGHT_MAX` is not
//! entered, each child is expected one level below its parent, and a subtree whose node fails to
//! read, sits at the wrong level or was already reached (directory, refcount and space trees
//! share no nodes; volume trees share whole subtrees, walked once) is reported and not entered.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cairn_io::BlockDevice;

use crate::btree::{extent_epoch, extent_of};
use crate::error::Result;
use crate::format::{get_u64, Root, Superblock, VolumeRecord, SUPER_ADDRS, VERSION_SHARE_EPOCH};
use crate::limits::{BLOCK_SIZE_BYTES, BTREE_HEIGHT_MAX, CHECK_EXTENTS_IN_MEMORY_MAX};
use crate::meta::{read_node, PAGE_BITS};
use crate::node::{Node, Ptr, TreeKind, SPACE_VAL_GEN};
use crate::refcount::rc_entry;

mod merge;
mod progress;
mod runs;

use progress::Meter;
pub use progress::{CheckPhase, CheckProgress, ProgressFn};
use runs::Runs;

/// What a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FindingKind {
    /// A block failed to read or to verify (checksum, magic, type, address, generation).
    BadBlock,
    /// A B-tree invariant is broken (order, bounds, level, fill, height, overlapping extents).
    TreeInvariant,
    /// Allocated in the space map, referenced by nothing.
    Leaked,
    /// Used in two roles (e.g. a metadata node also mapped as data).
    DoubleOwned,
    /// Referenced but free in the space map, or past the device end.
    Dangling,
    /// The refcount tree disagrees with the references counted.
    RefcountMismatch,
    /// Superblock counters disagree with the space map.
    Accounting,
    /// A deleted volume whose reclaim failed on a bad block: its space is lost.
    Quarantined,
    /// A mapping written in or after its volume's last share epoch (so the engine overwrites it
    /// in place) whose data block or tree node has a second owner: an in-place write to it
    /// would change another volume.
    NotExclusive,
}

/// One problem found, with the block and the tree path leading to it.
#[derive(Clone, Debug)]
pub struct Finding {
    pub kind: FindingKind,
    pub block: u64,
    pub path: String,
    pub detail: String,
}

/// The one-line form every report of a finding uses (the CLI, SMI-S):
/// `<kind> block <block> at <path>: <detail>`.
impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} block {} at {}: {}",
            self.kind, self.block, self.path, self.detail
        )
    }
}

/// The result of a check. `is_clean()` when there is no finding.
#[derive(Clone, Debug)]
pub struct CheckReport {
    pub findings: Vec<Finding>,
    /// Generation of the state checked.
    pub generation: u64,
    /// Volumes, snapshots and tombstones walked.
    pub volumes: usize,
    /// Blocks referenced by metadata or data.
    pub blocks_in_use: u64,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Checks the pool on `dev` (offline: nothing else may use the device meanwhile).
pub fn check_device(dev: Arc<dyn BlockDevice>) -> Result<CheckReport> {
    check_device_inner(dev, None)
}

/// [`check_device`], reporting its progress to `progress` as it goes.
pub fn check_device_with_progress(
    dev: Arc<dyn BlockDevice>,
    progress: ProgressFn,
) -> Result<CheckReport> {
    check_device_inner(dev, Some(progress))
}

fn check_device_inner(
    dev: Arc<dyn BlockDevice>,
    progress: Option<ProgressFn>,
) -> Result<CheckReport> {
    let sb = crate::format::read_superblock(dev.as_ref())?;
    if sb.device_blocks > dev.size_bytes() / BLOCK_SIZE_BYTES {
        return Err(crate::error::corrupt(format!(
            "superblock names {} blocks, the device holds {}",
            sb.device_blocks,
            dev.size_bytes() / BLOCK_SIZE_BYTES
        )));
    }
    Checker::new(dev, sb, CHECK_EXTENTS_IN_MEMORY_MAX)
        .with_progress(progress)
        .run()
}

/// Checks the durable state `durable` of an open pool on `dev`, with no pool lock held: the
/// caller keeps every block of that state from being reused until this returns (see
/// `Pool::check`).
pub(crate) fn check_durable(
    dev: Arc<dyn BlockDevice>,
    durable: Superblock,
    progress: Option<ProgressFn>,
) -> Result<CheckReport> {
    Checker::new(dev, durable, CHECK_EXTENTS_IN_MEMORY_MAX)
        .with_progress(progress)
        .run()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Super,
    Page,
    Node(TreeKind),
    Data,
}

impl Role {
    /// May more than one reference lead to a block of this role?
    fn shareable(self) -> bool {
        matches!(self, Role::Data | Role::Node(TreeKind::Volume))
    }
}

/// What leads to a claimed metadata block: enough to build its path for a finding.
#[derive(Clone, Copy, Debug)]
enum Origin {
    Super,
    Page(u64),
    /// A node of tree `tree` (index into `Checker::trees`) reached from `parent` (0: the root).
    Node {
        parent: u64,
        tree: u32,
    },
}

/// A metadata block claimed by the walk.
#[derive(Clone, Copy, Debug)]
struct Claim {
    role: Role,
    origin: Origin,
}

/// A data extent mapped by a volume leaf (the leaf and key give its path).
#[derive(Clone, Copy, Debug)]
struct DataRef {
    phys: u64,
    len: u64,
    leaf: u64,
    key: u64,
}

/// A bitmap page's index entry.
#[derive(Clone, Copy, Debug)]
struct PageEntry {
    page: u64,
    loc: u64,
    free: u64,
    /// The generation the page must carry (version 2).
    gen: u64,
}

/// Records of what the metadata references (memory proportional to it; see the module doc).
struct Checker {
    dev: Arc<dyn BlockDevice>,
    sb: Superblock,
    findings: Vec<Finding>,
    /// Every metadata block claimed, with its role and origin.
    meta: HashMap<u64, Claim>,
    /// Path of each tree walked ("space", "refcount", "directory", then volumes).
    trees: Vec<String>,
    /// Data extents mapped by volume leaves (each leaf walked once), spilled past a bound.
    data: Runs,
    /// The first failure to record a data extent (the check then fails with it).
    data_error: Option<crate::error::Error>,
    /// References to volume nodes from parents and directory records.
    node_refs: HashMap<u64, u32>,
    /// Refcount entries `(first block, blocks, count)` in key order.
    rc: Vec<(u64, u64, u32)>,
    /// The space index's entries in page order.
    pages: Vec<PageEntry>,
    visited: HashSet<u64>,
    /// Generation of each volume-tree node read, to compare with the other pointers to a
    /// shared node (it is read once).
    node_gens: HashMap<u64, u64>,
    /// Volume-tree nodes reached in the volume being walked: one tree never reaches a node
    /// twice (sharing is between trees), so a second reach is a cycle or a doubly-linked child.
    tree_nodes: HashSet<u64>,
    volumes: usize,
    /// End of the previous extent in the volume walk (None after a skipped shared subtree).
    prev_end: Option<u64>,
    /// Walking a tombstone: its partly dropped nodes may be under-full.
    tombstone: bool,
    /// The last share epoch of the live volume being walked, in a pool that records epochs:
    /// its mappings of this epoch or later must be exclusively owned.
    exclusive_since: Option<u64>,
    /// Reports the walk's claims and the comparison's pages to the caller.
    meter: Meter,
}

impl Checker {
    /// `extents_in_memory_max`: data extent records kept in memory before spilling.
    fn new(dev: Arc<dyn BlockDevice>, sb: Superblock, extents_in_memory_max: usize) -> Checker {
        Checker {
            dev,
            findings: Vec::new(),
            meta: HashMap::new(),
            trees: Vec::new(),
            data: Runs::new(extents_in_memory_max),
            data_error: None,
            node_refs: HashMap::new(),
            rc: Vec::new(),
            pages: Vec::new(),
            visited: HashSet::new(),
            node_gens: HashMap::new(),
            tree_nodes: HashSet::new(),
            volumes: 0,
            prev_end: None,
            tombstone: false,
            exclusive_since: None,
            meter: Meter::new(None),
            sb,
        }
    }

    fn with_progress(mut self, progress: Option<ProgressFn>) -> Checker {
        self.meter = Meter::new(progress);
        self
    }

    fn find(&mut self, kind: FindingKind, block: u64, path: &str, detail: impl Into<String>) {
        self.findings.push(Finding {
            kind,
            block,
            path: path.to_string(),
            detail: detail.into(),
        });
    }

    /// The path of a claimed metadata block ("" when unclaimed), built from its origins.
    fn path_of(&self, b: u64) -> String {
        let mut chain = Vec::new();
        let mut at = b;
        // Parents are claimed before their children, so the chain ends at a root; the bound
        // only guards the loop.
        for _ in 0..=BTREE_HEIGHT_MAX {
            let Some(c) = self.meta.get(&at) else {
                break;
            };
            match c.origin {
                Origin::Super => return "superblock".to_string(),
                Origin::Page(p) => return format!("space/page {p}"),
                Origin::Node { parent, tree } => {
                    chain.push(at);
                    if parent == 0 {
                        let mut path = self.trees[tree as usize].clone();
                        for n in chain.iter().rev() {
                            path.push_str(&format!("/node {n}"));
                        }
                        return path;
                    }
                    at = parent;
                }
            }
        }
        String::new()
    }

    /// The path a claim of `origin` would give its block (for a finding about the claim).
    fn origin_path(&self, block: u64, origin: Origin) -> String {
        match origin {
            Origin::Super => "superblock".to_string(),
            Origin::Page(p) => format!("space/page {p}"),
            Origin::Node { parent: 0, tree } => {
                format!("{}/node {block}", self.trees[tree as usize])
            }
            Origin::Node { parent, .. } => format!("{}/node {block}", self.path_of(parent)),
        }
    }

    /// The path of data extent `d`.
    fn data_path(&self, d: &DataRef) -> String {
        format!("{}/extent {}", self.path_of(d.leaf), d.key)
    }

    fn add_node_ref(&mut self, b: u64) {
        let r = self.node_refs.entry(b).or_insert(0);
        *r = r.saturating_add(1);
    }

    /// Records metadata `block` in `role`; a block in two roles (or a non-shareable block
    /// reached twice) is reported. Returns true when this is the block's first claim (a walk may
    /// enter it), false when it is outside the device or was claimed before. Data blocks are not
    /// claimed here: `merge.rs` finds a data block that is also metadata.
    fn claim(&mut self, block: u64, role: Role, origin: Origin) -> bool {
        debug_assert_ne!(role, Role::Data);
        if block >= self.sb.device_blocks {
            let path = self.origin_path(block, origin);
            self.find(
                FindingKind::Dangling,
                block,
                &path,
                "block past the device end",
            );
            return false;
        }
        if let Some(c) = self.meta.get(&block).copied() {
            if c.role != role || !role.shareable() {
                let detail = format!("also used as {:?} at {}", c.role, self.path_of(block));
                let path = self.origin_path(block, origin);
                self.find(FindingKind::DoubleOwned, block, &path, detail);
            }
            return false;
        }
        self.meta.insert(block, Claim { role, origin });
        self.meter.step();
        true
    }

    fn run(mut self) -> Result<CheckReport> {
        self.meter.start(CheckPhase::Walk, self.sb.meta_blocks);
        for a in SUPER_ADDRS {
            self.claim(a, Role::Super, Origin::Super);
        }
        self.load_space_index();
        self.load_refcounts();
        let dir = self.walk(TreeKind::Directory, self.sb.dir, "directory");
        for (seq, v) in dir {
            match VolumeRecord::decode(&v) {
                Ok(rec) => self.walk_volume(seq, &rec),
                Err(e) => self.find(
                    FindingKind::BadBlock,
                    0,
                    &format!("directory/{seq}"),
                    e.to_string(),
                ),
            }
        }
        if let Some(e) = self.data_error.take() {
            return Err(e);
        }
        self.meter.finish();
        let blocks_in_use = self.compare()?;
        Ok(CheckReport {
            findings: self.findings,
            generation: self.sb.gen,
            volumes: self.volumes,
            blocks_in_use,
        })
    }

    /// Claims every bitmap page's block and keeps the index entries (the pages are read when
    /// compared, one at a time).
    fn load_space_index(&mut self) {
        for (p, v) in self.walk(TreeKind::Space, self.sb.space, "space") {
            let loc = get_u64(&v, 0);
            let free = get_u64(&v, 8) & 0xffff_ffff;
            let gen = get_u64(&v, SPACE_VAL_GEN);
            self.claim(loc, Role::Page, Origin::Page(p));
            if p >= self.sb.device_blocks.div_ceil(PAGE_BITS) || loc >= self.sb.device_blocks {
                let path = format!("space/page {p}");
                self.find(
                    FindingKind::TreeInvariant,
                    loc,
                    &path,
                    "page beyond the device",
                );
                continue;
            }
            self.pages.push(PageEntry {
                page: p,
                loc,
                free,
                gen,
            });
        }
    }

    /// Keeps the refcount entries, reporting malformed ones.
    fn load_refcounts(&mut self) {
        let mut prev_end = 0;
        for (k, v) in self.walk(TreeKind::Refcount, self.sb.rc, "refcount") {
            let (len, count) = rc_entry(&v);
            if len == 0 || count < 2 || k < prev_end {
                let path = format!("refcount/{k}");
                self.find(
                    FindingKind::TreeInvariant,
                    k,
                    &path,
                    "empty, overlapping or below two",
                );
            }
            prev_end = k.saturating_add(len);
            let len = len.min(self.sb.device_blocks.saturating_sub(k));
            if len > 0 {
                self.rc.push((k, len, count));
            }
        }
    }

    fn walk_volume(&mut self, seq: u64, rec: &VolumeRecord) {
        self.volumes += 1;
        let path = if rec.deleting() {
            format!("tombstone {seq}")
        } else {
            format!("volume {:?} ({seq})", rec.name)
        };
        let root = rec.root;
        self.tombstone = rec.deleting();
        self.exclusive_since =
            (self.sb.version >= VERSION_SHARE_EPOCH && !rec.deleting()).then_some(rec.share_epoch);
        self.trees.push(path.clone());
        if rec.quarantined() {
            let detail = "reclaim failed on its tree; its space is lost";
            self.find(FindingKind::Quarantined, root.addr, &path, detail);
        }
        if root.addr == 0 {
            if root.height != 0 {
                self.find(
                    FindingKind::TreeInvariant,
                    0,
                    &path,
                    "empty tree with a height",
                );
            }
            return;
        }
        self.add_node_ref(root.addr);
        self.prev_end = None;
        self.tree_nodes.clear();
        self.tree_nodes.insert(root.addr);
        if !self.height_ok(root, &path) {
            return;
        }
        let ptr = crate::btree::root_ptr(root);
        if self.visited.insert(root.addr) {
            let origin = self.root_origin();
            let at = Descent::root(root.height - 1, root.gen);
            self.node_rec(TreeKind::Volume, root.addr, at, origin, &mut Vec::new());
        } else {
            self.shared_gen_ok(ptr, &path);
        }
    }

    /// A second pointer to an already read (shared) volume node expects its generation too.
    fn shared_gen_ok(&mut self, c: Ptr, path: &str) {
        let Some(&gen) = self.node_gens.get(&c.addr) else {
            return;
        };
        if self.sb.identity().stamped() && gen != c.gen {
            let detail = stale_detail(gen, c.gen);
            self.find(FindingKind::BadBlock, c.addr, path, detail);
        }
    }

    /// A non-empty tree's height is within `1..=BTREE_HEIGHT_MAX` (else it is not walked).
    fn height_ok(&mut self, root: Root, path: &str) -> bool {
        debug_assert_ne!(root.addr, 0);
        let ok = (1..=BTREE_HEIGHT_MAX).contains(&root.height);
        if !ok {
            let detail = format!("root height {} outside 1..={BTREE_HEIGHT_MAX}", root.height);
            self.find(FindingKind::TreeInvariant, root.addr, path, detail);
        }
        ok
    }

    /// The origin of the root node of the tree last pushed to `trees`.
    fn root_origin(&self) -> Origin {
        Origin::Node {
            parent: 0,
            tree: (self.trees.len() - 1) as u32,
        }
    }

    /// Walks a non-shared tree, returning its leaf entries in order.
    fn walk(&mut self, kind: TreeKind, root: Root, path: &str) -> Vec<(u64, Vec<u8>)> {
        self.trees.push(path.to_string());
        let mut out = Vec::new();
        if root.addr == 0 {
            if root.height != 0 {
                self.find(
                    FindingKind::TreeInvariant,
                    0,
                    path,
                    "empty tree with a height",
                );
            }
            return out;
        }
        if !self.height_ok(root, path) {
            return out;
        }
        let origin = self.root_origin();
        self.node_rec(
            kind,
            root.addr,
            Descent::root(root.height - 1, root.gen),
            origin,
            &mut out,
        );
        out
    }

    fn node_rec(
        &mut self,
        kind: TreeKind,
        addr: u64,
        at: Descent,
        origin: Origin,
        out: &mut Vec<(u64, Vec<u8>)>,
    ) {
        debug_assert!(
            at.level < BTREE_HEIGHT_MAX,
            "descent below the height bound"
        );
        if !self.claim(addr, Role::Node(kind), origin) {
            // Outside the device, or reached before: a tree that must not share nodes does
            // (a cycle is one case), or a volume node is also another tree's.
            return;
        }
        let Some(node) = self.read_verified(kind, addr, at) else {
            return;
        };
        if !self.node_invariants(&node, addr, at) {
            return;
        }
        debug_assert_eq!(node.level, at.level, "entered only at its expected level");
        if node.is_leaf() {
            if kind == TreeKind::Volume {
                self.leaf_extents(&node, addr);
            } else {
                out.extend((0..node.len()).map(|i| (node.keys[i], node.val(i).to_vec())));
            }
            return;
        }
        let Origin::Node { tree, .. } = origin else {
            unreachable!("nodes are claimed with a node origin");
        };
        for i in 0..node.len() {
            let ptr = node.children[i];
            let c = ptr.addr;
            let lo = if i == 0 { at.lo } else { Some(node.keys[i]) };
            let hi = node.keys.get(i + 1).copied().or(at.hi);
            if kind == TreeKind::Volume {
                self.add_node_ref(c);
                if !self.tree_nodes.insert(c) {
                    let detail = format!("child {c} reached twice in one tree");
                    let here = self.path_of(addr);
                    self.find(FindingKind::TreeInvariant, c, &here, detail);
                    continue;
                }
                if !self.visited.insert(c) {
                    self.prev_end = None;
                    let here = self.path_of(addr);
                    self.shared_gen_ok(ptr, &format!("{here}/node {c}"));
                    continue;
                }
            }
            let child = Descent {
                level: at.level - 1,
                lo,
                hi,
                is_root: false,
                gen: ptr.gen,
            };
            let origin = Origin::Node { parent: addr, tree };
            self.node_rec(kind, c, child, origin, out);
        }
    }

    /// The node at `addr`, read and verified, carrying the generation its pointer expects (in a
    /// version-2 pool); None, with a `BadBlock` finding, when it is not.
    fn read_verified(&mut self, kind: TreeKind, addr: u64, at: Descent) -> Option<Node> {
        let id = self.sb.identity();
        let detail = match read_node(self.dev.as_ref(), kind, addr, self.sb.gen, &id) {
            Ok(n) if id.stamped() && n.gen != at.gen => {
                format!("level {}: {}", at.level, stale_detail(n.gen, at.gen))
            }
            Ok(n) => {
                if kind == TreeKind::Volume {
                    self.node_gens.insert(addr, n.gen);
                }
                return Some(n);
            }
            Err(e) => e.to_string(),
        };
        let here = self.path_of(addr);
        self.find(FindingKind::BadBlock, addr, &here, detail);
        None
    }

    /// Reports the broken invariants of one node; returns whether it sits at the level its
    /// parent expects (only then is it entered: its children's levels follow from it).
    fn node_invariants(&mut self, node: &Node, addr: u64, at: Descent) -> bool {
        let Descent {
            level,
            lo,
            hi,
            is_root,
            ..
        } = at;
        let mut bad = Vec::new();
        let level_ok = node.level == level;
        if !level_ok {
            bad.push(format!("level {} where {level} expected", node.level));
        }
        let fill_ok = if self.tombstone && node.kind == TreeKind::Volume {
            node.len() >= 1
        } else if is_root {
            node.len() >= if node.is_leaf() { 1 } else { 2 }
        } else {
            node.len() >= node.min_fill_in(self.sb.version)
        };
        if !fill_ok {
            bad.push(format!("{} entries, under-full", node.len()));
        }
        // Key 0 of an internal node is not a bound; every leaf key and other keys are.
        let checked = if node.is_leaf() {
            &node.keys[..]
        } else {
            node.keys.get(1..).unwrap_or(&[])
        };
        if checked
            .iter()
            .any(|k| lo.is_some_and(|l| *k < l) || hi.is_some_and(|h| *k >= h))
        {
            bad.push(format!("keys outside [{lo:?}, {hi:?})"));
        }
        if !bad.is_empty() {
            let here = self.path_of(addr);
            for b in bad {
                self.find(FindingKind::TreeInvariant, addr, &here, b);
            }
        }
        level_ok
    }

    /// Records the data extents of a volume leaf, reporting overlapping or out-of-range ones.
    fn leaf_extents(&mut self, node: &Node, leaf: u64) {
        for i in 0..node.len() {
            let k = node.keys[i];
            let (phys, len) = extent_of(node.val(i));
            if len == 0 || self.prev_end.is_some_and(|p| k < p) {
                let here = self.path_of(leaf);
                let detail = format!("extent {k}+{len} overlaps");
                self.find(FindingKind::TreeInvariant, phys, &here, detail);
            }
            self.prev_end = Some(k.saturating_add(len));
            if phys.saturating_add(len) > self.sb.device_blocks {
                let here = self.path_of(leaf);
                let detail = format!("extent {k}+{len} past the device end");
                self.find(FindingKind::Dangling, phys, &here, detail);
                continue;
            }
            self.epoch_ok(extent_epoch(node.val(i)), k, phys, len, leaf);
            if len > 0 && self.data_error.is_none() {
                let d = DataRef {
                    phys,
                    len,
                    leaf,
                    key: k,
                };
                self.data_error = self.data.push(d).err();
            }
        }
    }
}

impl Checker {
    /// Checks the share epoch of extent `key -> (phys, len)` in `leaf`: not past the pool's, and
    /// exclusively owned when the engine would overwrite it in place.
    fn epoch_ok(&mut self, epoch: u64, key: u64, phys: u64, len: u64, leaf: u64) {
        let Some(since) = self.exclusive_since else {
            return;
        };
        if epoch > self.sb.share_epoch {
            let here = self.path_of(leaf);
            let detail = format!(
                "extent {key}+{len} of share epoch {epoch}, the pool's is {}",
                self.sb.share_epoch
            );
            self.find(FindingKind::TreeInvariant, phys, &here, detail);
            return;
        }
        if epoch < since {
            return;
        }
        if let Some((b, count)) = self.shared_in(phys, len) {
            let here = self.path_of(leaf);
            let detail = format!(
                "extent {key}+{len} of share epoch {epoch} (overwritten in place since the \
                 volume's last share {since}) maps block {b} of {count} references"
            );
            self.find(FindingKind::NotExclusive, b, &here, detail);
        }
        if let Some((node, count)) = self.shared_ancestor(leaf) {
            let here = self.path_of(leaf);
            let detail = format!(
                "extent {key}+{len} of share epoch {epoch} (overwritten in place since the \
                 volume's last share {since}) lies under node {node} of {count} references"
            );
            self.find(FindingKind::NotExclusive, node, &here, detail);
        }
    }

    /// The first block of `[first, first + len)` whose durable reference count is above one,
    /// with that count (the refcount tree holds only counts of two or more).
    fn shared_in(&self, first: u64, len: u64) -> Option<(u64, u32)> {
        let end = first.saturating_add(len);
        let i = self
            .rc
            .partition_point(|&(k, n, _)| k.saturating_add(n) <= first);
        self.rc
            .get(i)
            .filter(|&&(k, _, _)| k < end)
            .map(|&(k, _, count)| (k.max(first), count))
    }

    /// The first node from `leaf` up to its tree's root whose durable reference count is above
    /// one, with that count.
    fn shared_ancestor(&self, leaf: u64) -> Option<(u64, u32)> {
        let mut at = leaf;
        // Parents are claimed before their children, so the chain ends at a root; the bound
        // only guards the loop.
        for _ in 0..=BTREE_HEIGHT_MAX {
            if let Some(shared) = self.shared_in(at, 1) {
                return Some(shared);
            }
            match self.meta.get(&at).map(|c| c.origin) {
                Some(Origin::Node { parent, .. }) if parent != 0 => at = parent,
                _ => return None,
            }
        }
        None
    }
}

/// Where a node is entered: the level and key bounds its parent expects.
#[derive(Clone, Copy, Debug)]
struct Descent {
    level: u32,
    lo: Option<u64>,
    hi: Option<u64>,
    is_root: bool,
    /// The generation the pointer expects the node to carry (version 2).
    gen: u64,
}

impl Descent {
    fn root(level: u32, gen: u64) -> Descent {
        Descent {
            level,
            lo: None,
            hi: None,
            is_root: true,
            gen,
        }
    }
}

/// The detail of a finding about a block carrying another generation than its pointer expects.
fn stale_detail(found: u64, expected: u64) -> String {
    format!(
        "written by generation {found}, its pointer expects {expected} (a stale or misplaced block)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Meta;
    use crate::types::{PoolOptions, VolumeOptions};
    use cairn_io::MemDevice;

    fn pool_with_data() -> Arc<MemDevice> {
        let dev = Arc::new(MemDevice::new(16 << 20));
        let opts = PoolOptions {
            commit_interval: None,
            node_cache_bytes: 1 << 20,
            preallocate: false,
        };
        let p = crate::Pool::create(dev.clone(), "c", opts).unwrap();
        let v = p
            .create_volume("v", 1 << 20, VolumeOptions::default())
            .unwrap();
        p.write(v.id, 0, &[1u8; 8192]).unwrap();
        p.close().unwrap();
        dev
    }

    fn meta_of(dev: &Arc<MemDevice>) -> Meta {
        let sb = crate::format::read_superblock(dev.as_ref()).unwrap();
        Meta::new(dev.clone(), sb, 64, false)
    }

    fn kinds(dev: Arc<MemDevice>) -> Vec<FindingKind> {
        check_device(dev)
            .unwrap()
            .findings
            .iter()
            .map(|f| f.kind)
            .collect()
    }

    #[test]
    fn clean_pool_is_clean() {
        assert!(check_device(pool_with_data()).unwrap().is_clean());
    }

    #[test]
    fn spilled_extents_give_the_same_report() {
        let dev = Arc::new(MemDevice::new(16 << 20));
        let p = crate::Pool::create(dev.clone(), "c", PoolOptions::default()).unwrap();
        let v = p
            .create_volume("v", 4 << 20, VolumeOptions::default())
            .unwrap();
        for i in 0..300u64 {
            p.write(v.id, (i * 7 % 600) * 4096, &[i as u8; 4096])
                .unwrap();
        }
        p.close().unwrap();
        let mut m = meta_of(&dev);
        let stray = m.alloc_meta().unwrap();
        m.commit(m.durable.clone()).unwrap();
        let sb = crate::format::read_superblock(dev.as_ref()).unwrap();
        let whole = Checker::new(dev.clone(), sb.clone(), CHECK_EXTENTS_IN_MEMORY_MAX);
        let spilled = Checker::new(dev.clone(), sb, 16);
        let (a, b) = (whole.run().unwrap(), spilled.run().unwrap());
        let key = |r: &CheckReport| {
            let mut f: Vec<_> = r.findings.iter().map(|f| (f.block, f.kind)).collect();
            f.sort_by_key(|x| x.0);
            (f, r.blocks_in_use, r.volumes)
        };
        assert_eq!(key(&a), key(&b));
        // The stray block: leaked, and counted as metadata by the superblock only.
        let kinds: Vec<_> = a.findings.iter().map(|f| (f.kind, f.block)).collect();
        assert_eq!(
            kinds,
            [(FindingKind::Leaked, stray), (FindingKind::Accounting, 0)],
            "{:?}",
            a.findings
        );
    }

    #[test]
    fn reports_a_leaked_block() {
        let dev = pool_with_data();
        let mut m = meta_of(&dev);
        let stray = m.alloc_meta().unwrap();
        m.commit(m.durable.clone()).unwrap();
        let report = check_device(dev).unwrap();
        assert!(report
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::Leaked && f.block == stray));
    }

    #[test]
    fn reports_a_wrong_refcount_with_its_path() {
        let (report, data_block) = second_reference_on_a_data_block();
        let f = report
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::RefcountMismatch)
            .expect("mismatch reported");
        assert_eq!(f.block, data_block);
        assert!(f.path.starts_with("volume \"v\""), "{f:?}");
    }

    /// The first data block holding `byte` in every position.
    fn block_filled_with(dev: &Arc<MemDevice>, blocks: u64, byte: u8) -> u64 {
        (2..blocks)
            .find(|b| {
                let mut buf = vec![0u8; 4096];
                dev.read_at(b * 4096, &mut buf).unwrap();
                buf == vec![byte; 4096]
            })
            .unwrap()
    }

    /// The check of a pool whose one volume's first data block got a second reference in the
    /// refcount tree, and that block.
    fn second_reference_on_a_data_block() -> (CheckReport, u64) {
        let dev = pool_with_data();
        let mut m = meta_of(&dev);
        let data_block = block_filled_with(&dev, m.device_blocks, 1);
        m.rc_inc(data_block, 1).unwrap();
        m.commit(m.durable.clone()).unwrap();
        (check_device(dev).unwrap(), data_block)
    }

    #[test]
    fn a_snapshot_and_writes_after_it_are_clean() {
        let dev = Arc::new(MemDevice::new(16 << 20));
        let p = crate::Pool::create(dev.clone(), "c", PoolOptions::default()).unwrap();
        let v = p
            .create_volume("v", 1 << 20, VolumeOptions::default())
            .unwrap();
        p.write(v.id, 0, &[1u8; 65536]).unwrap();
        p.snapshot(v.id, "s", VolumeOptions::default()).unwrap();
        p.write(v.id, 4096, &[2u8; 4096]).unwrap();
        p.write(v.id, 4096, &[3u8; 4096]).unwrap();
        p.close().unwrap();
        let report = check_device(dev).unwrap();
        assert!(report.is_clean(), "{:?}", report.findings);
    }

    #[test]
    fn a_second_owner_of_an_in_place_block_is_not_exclusive() {
        let (report, data_block) = second_reference_on_a_data_block();
        let f = report
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::NotExclusive)
            .expect("not exclusive reported");
        assert_eq!(f.block, data_block);
        assert!(f.path.starts_with("volume \"v\""), "{f:?}");
    }

    #[test]
    fn a_second_owner_of_an_in_place_leaf_is_not_exclusive() {
        let dev = pool_with_data();
        let sb = crate::format::read_superblock(dev.as_ref()).unwrap();
        let mut m = meta_of(&dev);
        let dir = m
            .range(TreeKind::Directory, sb.dir, 0, u64::MAX, usize::MAX)
            .unwrap();
        let root = VolumeRecord::decode(&dir[0].1).unwrap().root;
        m.rc_inc(root.addr, 1).unwrap();
        m.commit(m.durable.clone()).unwrap();
        let report = check_device(dev).unwrap();
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.kind == FindingKind::NotExclusive && f.block == root.addr),
            "{:?}",
            report.findings
        );
    }

    #[test]
    fn reports_a_data_extent_on_a_metadata_block_with_both_paths() {
        let dev = pool_with_data();
        let sb = crate::format::read_superblock(dev.as_ref()).unwrap();
        let mut m = meta_of(&dev);
        let dir = m
            .range(TreeKind::Directory, sb.dir, 0, u64::MAX, usize::MAX)
            .unwrap();
        let root = VolumeRecord::decode(&dir[0].1).unwrap().root;
        assert_eq!(root.height, 1, "one leaf maps the volume");
        let id = sb.identity();
        let mut leaf = read_node(dev.as_ref(), TreeKind::Volume, root.addr, sb.gen, &id).unwrap();
        let (data_block, len) = extent_of(leaf.val(0));
        // Remap the volume's first extent onto the directory root (and the block after it).
        let vs = leaf.vals.len() / leaf.len();
        leaf.vals[..vs].copy_from_slice(&crate::btree::extent_val(sb.dir.addr, len, 0));
        let at = crate::format::Seal {
            addr: root.addr,
            gen: leaf.gen,
            uuid: sb.uuid,
        };
        let b = leaf.encode(at);
        dev.write_at(root.addr * BLOCK_SIZE_BYTES, &b).unwrap();
        let report = check_device(dev).unwrap();
        let dup = report
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::DoubleOwned && f.block == sb.dir.addr)
            .expect("doubly owned block reported");
        assert!(dup.path.starts_with("volume \"v\""), "{dup:?}");
        assert!(dup.path.ends_with("/extent 0"), "{dup:?}");
        let dir_path = format!("directory/node {}", sb.dir.addr);
        assert!(dup.detail.contains(&dir_path), "{dup:?}");
        assert!(report
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::Leaked && f.block == data_block));
    }

    #[test]
    fn reports_a_block_in_use_but_free() {
        let dev = pool_with_data();
        let mut m = meta_of(&dev);
        let dir_root = m.dir_root.addr;
        m.free(dir_root, 1, crate::meta::Use::Meta).unwrap();
        m.commit(m.durable.clone()).unwrap();
        let found = kinds(dev);
        assert!(found.contains(&FindingKind::Dangling), "{found:?}");
        assert!(found.contains(&FindingKind::Accounting), "{found:?}");
    }
}
