//! Consistency check of a pool's durable state, online (under the pool lock) or offline (on a
//! device no pool holds) — the same code.
//!
//! It reads every metadata block straight from the device and verifies its checksum, type, own
//! address and generation; checks B-tree invariants (key order, bounds from the parent, levels,
//! fill, root height); recounts references to volume-tree nodes and data blocks from every
//! volume tree, tombstones pending reclaim included (a shared node's children are counted once,
//! as the reference counts are); compares them with the refcount tree and the space map; and
//! reports leaked, doubly-owned and dangling blocks with their tree path.
//!
//! The walk is bounded whatever the device holds: a tree taller than `BTREE_HEIGHT_MAX` is not
//! entered, each child is expected one level below its parent, and a subtree whose node fails to
//! read, sits at the wrong level or was already reached (directory, refcount and space trees
//! share no nodes; volume trees share whole subtrees, walked once) is reported and not entered.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cairn_io::BlockDevice;

use crate::btree::extent_of;
use crate::error::Result;
use crate::format::{get_u64, Root, Superblock, VolumeRecord, SUPER_ADDRS};
use crate::limits::{BLOCK_SIZE_BYTES, BTREE_HEIGHT_MAX};
use crate::meta::{read_node, Meta, Page, PAGE_BITS};
use crate::node::{Node, TreeKind};
use crate::refcount::rc_entry;

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
}

/// One problem found, with the block and the tree path leading to it.
#[derive(Clone, Debug)]
pub struct Finding {
    pub kind: FindingKind,
    pub block: u64,
    pub path: String,
    pub detail: String,
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
    let sb = crate::format::read_superblock(dev.as_ref())?;
    if sb.device_blocks > dev.size_bytes() / BLOCK_SIZE_BYTES {
        return Err(crate::error::corrupt(format!(
            "superblock names {} blocks, the device holds {}",
            sb.device_blocks,
            dev.size_bytes() / BLOCK_SIZE_BYTES
        )));
    }
    Ok(Checker::new(dev, sb).run())
}

/// Checks the durable state of an open pool; the caller holds its lock and has committed.
pub(crate) fn check_locked(meta: &mut Meta) -> Result<CheckReport> {
    Ok(Checker::new(meta.dev.clone(), meta.durable.clone()).run())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Super,
    Page,
    Node(TreeKind),
    Data,
}

/// Per-block state is kept in flat vectors (a few bytes per block), paths only for metadata.
struct Checker {
    dev: Arc<dyn BlockDevice>,
    sb: Superblock,
    findings: Vec<Finding>,
    /// Role code of every block in use (0: none).
    roles: Vec<u8>,
    /// Path of every metadata block in use.
    paths: HashMap<u64, String>,
    /// For data blocks: index into `volume_paths` of the first volume mapping it.
    data_owner: Vec<u32>,
    volume_paths: Vec<String>,
    /// References to volume nodes and data blocks.
    refs: Vec<u32>,
    visited: HashSet<u64>,
    /// Volume-tree nodes reached in the volume being walked: one tree never reaches a node
    /// twice (sharing is between trees), so a second reach is a cycle or a doubly-linked child.
    tree_nodes: HashSet<u64>,
    allocated: Vec<u64>,
    volumes: usize,
    /// End of the previous extent in the volume walk (None after a skipped shared subtree).
    prev_end: Option<u64>,
    /// Walking a tombstone: its partly dropped nodes may be under-full.
    tombstone: bool,
}

fn role_code(role: Role) -> u8 {
    match role {
        Role::Super => 1,
        Role::Page => 2,
        Role::Node(TreeKind::Volume) => 3,
        Role::Node(TreeKind::Refcount) => 4,
        Role::Node(TreeKind::Directory) => 5,
        Role::Node(TreeKind::Space) => 6,
        Role::Data => 7,
    }
}

fn role_of(code: u8) -> Option<Role> {
    Some(match code {
        1 => Role::Super,
        2 => Role::Page,
        3 => Role::Node(TreeKind::Volume),
        4 => Role::Node(TreeKind::Refcount),
        5 => Role::Node(TreeKind::Directory),
        6 => Role::Node(TreeKind::Space),
        7 => Role::Data,
        _ => return None,
    })
}

impl Checker {
    fn new(dev: Arc<dyn BlockDevice>, sb: Superblock) -> Checker {
        let blocks = sb.device_blocks as usize;
        Checker {
            dev,
            findings: Vec::new(),
            roles: vec![0; blocks],
            paths: HashMap::new(),
            data_owner: vec![0; blocks],
            volume_paths: Vec::new(),
            refs: vec![0; blocks],
            visited: HashSet::new(),
            tree_nodes: HashSet::new(),
            allocated: vec![0; blocks.div_ceil(64)],
            volumes: 0,
            prev_end: None,
            tombstone: false,
            sb,
        }
    }

    fn find(&mut self, kind: FindingKind, block: u64, path: &str, detail: impl Into<String>) {
        self.findings.push(Finding {
            kind,
            block,
            path: path.to_string(),
            detail: detail.into(),
        });
    }

    fn path_of(&self, b: u64) -> String {
        match role_of(self.roles[b as usize]) {
            Some(Role::Data) => {
                let owner = self.data_owner[b as usize] as usize;
                format!("{}/data", self.volume_paths[owner])
            }
            _ => self.paths.get(&b).cloned().unwrap_or_default(),
        }
    }

    fn add_ref(&mut self, b: u64) {
        if b < self.sb.device_blocks {
            let r = &mut self.refs[b as usize];
            *r = r.saturating_add(1);
        }
    }

    /// Records `block` in `role`; a block in two roles (or a non-shareable block reached twice)
    /// is reported. Returns true when this is the block's first claim (a walk may enter it),
    /// false when it is outside the device or was claimed before.
    fn claim(&mut self, block: u64, role: Role, path: &str) -> bool {
        if block >= self.sb.device_blocks {
            self.find(
                FindingKind::Dangling,
                block,
                path,
                "block past the device end",
            );
            return false;
        }
        let cur = self.roles[block as usize];
        if let Some(r) = role_of(cur) {
            if r != role || !matches!(role, Role::Data | Role::Node(TreeKind::Volume)) {
                let detail = format!("also used as {r:?} at {}", self.path_of(block));
                self.find(FindingKind::DoubleOwned, block, path, detail);
            }
            return false;
        }
        self.roles[block as usize] = role_code(role);
        if role == Role::Data {
            self.data_owner[block as usize] = (self.volume_paths.len() - 1) as u32;
        } else {
            self.paths.insert(block, path.to_string());
        }
        true
    }

    fn run(mut self) -> CheckReport {
        for a in SUPER_ADDRS {
            self.claim(a, Role::Super, "superblock");
        }
        self.load_space_map();
        let rc = self.load_refcounts();
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
        self.compare(&rc);
        CheckReport {
            findings: self.findings,
            generation: self.sb.gen,
            volumes: self.volumes,
            blocks_in_use: self.roles.iter().filter(|r| **r != 0).count() as u64,
        }
    }

    fn load_space_map(&mut self) {
        for (p, v) in self.walk(TreeKind::Space, self.sb.space, "space") {
            let loc = get_u64(&v, 0);
            let free = get_u64(&v, 8) & 0xffff_ffff;
            let path = format!("space/page {p}");
            self.claim(loc, Role::Page, &path);
            if p >= self.sb.device_blocks.div_ceil(PAGE_BITS) || loc >= self.sb.device_blocks {
                self.find(
                    FindingKind::TreeInvariant,
                    loc,
                    &path,
                    "page beyond the device",
                );
                continue;
            }
            let mut b = vec![0u8; BLOCK_SIZE_BYTES as usize];
            let bits = match self.dev.read_at(loc * BLOCK_SIZE_BYTES, &mut b) {
                Ok(()) => Page::decode(&b, loc, p, self.sb.gen),
                Err(e) => Err(crate::error::Error::io("read bitmap page", e)),
            };
            let bits = match bits {
                Ok(bits) => bits,
                Err(e) => {
                    self.find(FindingKind::BadBlock, loc, &path, e.to_string());
                    continue;
                }
            };
            let ones: u64 = bits.iter().map(|w| u64::from(w.count_ones())).sum();
            if PAGE_BITS - ones != free {
                self.find(
                    FindingKind::Accounting,
                    loc,
                    &path,
                    "free count differs from index",
                );
            }
            for i in 0..PAGE_BITS {
                if bits[(i / 64) as usize] >> (i % 64) & 1 == 1 {
                    let blk = p * PAGE_BITS + i;
                    if blk >= self.sb.device_blocks {
                        self.find(
                            FindingKind::Dangling,
                            blk,
                            &path,
                            "allocated past the device end",
                        );
                    } else {
                        self.allocated[(blk / 64) as usize] |= 1 << (blk % 64);
                    }
                }
            }
        }
    }

    fn is_allocated(&self, b: u64) -> bool {
        b < self.sb.device_blocks && self.allocated[(b / 64) as usize] >> (b % 64) & 1 == 1
    }

    /// Refcount entries as each covered block's count (0: no entry).
    fn load_refcounts(&mut self) -> Vec<u32> {
        let mut rc = vec![0u32; self.sb.device_blocks as usize];
        let mut prev_end = 0;
        for (k, v) in self.walk(TreeKind::Refcount, self.sb.rc, "refcount") {
            let (len, count) = rc_entry(&v);
            let path = format!("refcount/{k}");
            if len == 0 || count < 2 || k < prev_end {
                self.find(
                    FindingKind::TreeInvariant,
                    k,
                    &path,
                    "empty, overlapping or below two",
                );
            }
            prev_end = k + len;
            for b in k..(k + len).min(self.sb.device_blocks) {
                rc[b as usize] = count;
            }
        }
        rc
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
        self.volume_paths.push(path.clone());
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
        self.add_ref(root.addr);
        self.prev_end = None;
        self.tree_nodes.clear();
        self.tree_nodes.insert(root.addr);
        if !self.height_ok(root, &path) {
            return;
        }
        if self.visited.insert(root.addr) {
            self.node_rec(
                TreeKind::Volume,
                root.addr,
                root.height - 1,
                None,
                None,
                true,
                &path,
                &mut Vec::new(),
            );
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

    /// Walks a non-shared tree, returning its leaf entries in order.
    fn walk(&mut self, kind: TreeKind, root: Root, path: &str) -> Vec<(u64, Vec<u8>)> {
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
        self.node_rec(
            kind,
            root.addr,
            root.height - 1,
            None,
            None,
            true,
            path,
            &mut out,
        );
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn node_rec(
        &mut self,
        kind: TreeKind,
        addr: u64,
        level: u32,
        lo: Option<u64>,
        hi: Option<u64>,
        is_root: bool,
        path: &str,
        out: &mut Vec<(u64, Vec<u8>)>,
    ) {
        debug_assert!(level < BTREE_HEIGHT_MAX, "descent below the height bound");
        let here = format!("{path}/node {addr}");
        if !self.claim(addr, Role::Node(kind), &here) {
            // Outside the device, or reached before: a tree that must not share nodes does
            // (a cycle is one case), or a volume node is also another tree's.
            return;
        }
        let node = match read_node(self.dev.as_ref(), kind, addr, self.sb.gen) {
            Ok(n) => n,
            Err(e) => {
                self.find(FindingKind::BadBlock, addr, &here, e.to_string());
                return;
            }
        };
        if !self.node_invariants(&node, addr, level, lo, hi, is_root, &here) {
            return;
        }
        debug_assert_eq!(node.level, level, "entered only at its expected level");
        if node.is_leaf() {
            if kind == TreeKind::Volume {
                self.leaf_extents(&node, &here);
            } else {
                out.extend((0..node.len()).map(|i| (node.keys[i], node.val(i).to_vec())));
            }
            return;
        }
        for i in 0..node.len() {
            let c = node.children[i];
            let clo = if i == 0 { lo } else { Some(node.keys[i]) };
            let chi = node.keys.get(i + 1).copied().or(hi);
            if kind == TreeKind::Volume {
                self.add_ref(c);
                if !self.tree_nodes.insert(c) {
                    let detail = format!("child {c} reached twice in one tree");
                    self.find(FindingKind::TreeInvariant, c, &here, detail);
                    continue;
                }
                if !self.visited.insert(c) {
                    self.prev_end = None;
                    continue;
                }
            }
            self.node_rec(kind, c, level - 1, clo, chi, false, &here, out);
        }
    }

    /// Reports the broken invariants of one node; returns whether it sits at the level its
    /// parent expects (only then is it entered: its children's levels follow from it).
    #[allow(clippy::too_many_arguments)]
    fn node_invariants(
        &mut self,
        node: &Node,
        addr: u64,
        level: u32,
        lo: Option<u64>,
        hi: Option<u64>,
        is_root: bool,
        here: &str,
    ) -> bool {
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
            node.len() >= node.min_fill()
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
        for b in bad {
            self.find(FindingKind::TreeInvariant, addr, here, b);
        }
        level_ok
    }

    fn leaf_extents(&mut self, node: &Node, here: &str) {
        for i in 0..node.len() {
            let k = node.keys[i];
            let (phys, len) = extent_of(node.val(i));
            if len == 0 || self.prev_end.is_some_and(|p| k < p) {
                self.find(
                    FindingKind::TreeInvariant,
                    phys,
                    here,
                    format!("extent {k}+{len} overlaps"),
                );
            }
            self.prev_end = Some(k + len);
            if phys + len > self.sb.device_blocks {
                self.find(
                    FindingKind::Dangling,
                    phys,
                    here,
                    format!("extent {k}+{len} past the device end"),
                );
                continue;
            }
            for b in phys..phys + len {
                self.add_ref(b);
                if self.roles[b as usize] != role_code(Role::Data) {
                    self.claim(b, Role::Data, &format!("{here}/extent {k}"));
                }
            }
        }
    }

    fn compare(&mut self, rc: &[u32]) {
        let mut data = 0u64;
        let mut meta = 0u64;
        let mut allocated = 0u64;
        for b in 0..self.sb.device_blocks {
            let i = b as usize;
            let is_alloc = self.is_allocated(b);
            allocated += u64::from(is_alloc);
            let Some(role) = role_of(self.roles[i]) else {
                if is_alloc {
                    self.find(
                        FindingKind::Leaked,
                        b,
                        "space map",
                        "allocated, used by nothing",
                    );
                }
                if rc[i] != 0 {
                    let detail = format!("unused block with refcount {}", rc[i]);
                    self.find(FindingKind::RefcountMismatch, b, "refcount", detail);
                }
                continue;
            };
            match role {
                Role::Data => data += 1,
                _ => meta += 1,
            }
            if !is_alloc {
                let path = self.path_of(b);
                self.find(
                    FindingKind::Dangling,
                    b,
                    &path,
                    "in use but free in the space map",
                );
            }
            let shareable = matches!(role, Role::Data | Role::Node(TreeKind::Volume));
            let counted = if shareable { self.refs[i] } else { 1 };
            let stored = if rc[i] == 0 { 1 } else { rc[i] };
            if counted != stored || (!shareable && rc[i] != 0) {
                let path = self.path_of(b);
                let detail = format!("{counted} references, refcount {stored}");
                self.find(FindingKind::RefcountMismatch, b, &path, detail);
            }
        }
        let counters = [
            ("allocated", allocated, self.sb.allocated_blocks),
            ("data", data, self.sb.data_blocks),
            ("metadata", meta, self.sb.meta_blocks),
        ];
        for (what, found, recorded) in counters {
            if found != recorded {
                let detail = format!("{what} blocks: {found} found, superblock says {recorded}");
                self.find(FindingKind::Accounting, 0, "superblock", detail);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{PoolOptions, VolumeOptions};
    use cairn_io::MemDevice;

    fn pool_with_data() -> Arc<MemDevice> {
        let dev = Arc::new(MemDevice::new(16 << 20));
        let opts = PoolOptions {
            commit_interval: None,
            node_cache_bytes: 1 << 20,
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
        Meta::new(dev.clone(), sb, 64)
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
        let dev = pool_with_data();
        let mut m = meta_of(&dev);
        let data_block = (2..m.device_blocks)
            .find(|b| {
                let mut buf = vec![0u8; 4096];
                dev.read_at(b * 4096, &mut buf).unwrap();
                buf == vec![1u8; 4096]
            })
            .unwrap();
        m.rc_inc(data_block, 1).unwrap();
        m.commit(m.durable.clone()).unwrap();
        let report = check_device(dev).unwrap();
        let f = report
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::RefcountMismatch)
            .expect("mismatch reported");
        assert_eq!(f.block, data_block);
        assert!(f.path.starts_with("volume \"v\""), "{f:?}");
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
