//! A volume's mapping: virtual block -> physical extent, kept in a volume tree.
//!
//! Entries never overlap: entry `v -> (p, n)` maps virtual blocks `[v, v + n)` to physical blocks
//! `[p, p + n)`. Every mapped physical block holds one reference per distinct leaf mapping it
//! (see `refcount.rs`). Tree changes happen before reference drops, so shadowing a shared leaf
//! has propagated its references by the time one is dropped.

use crate::btree::{extent_of, extent_val};
use crate::error::Result;
use crate::format::Root;
use crate::limits::EXTENT_BLOCKS_MAX;
use crate::meta::{Meta, Use};
use crate::node::TreeKind;

const K: TreeKind = TreeKind::Volume;

/// One mapped piece: virtual block, physical block, length in blocks.
pub type Piece = (u64, u64, u64);

impl Meta {
    /// Mapped pieces within `[vs, ve)`, clipped to it, in order.
    pub fn map_lookup(&mut self, root: Root, vs: u64, ve: u64) -> Result<Vec<Piece>> {
        let mut raw: Vec<Piece> = Vec::new();
        if let Some((k, v)) = self.get_le(K, root, vs)? {
            let (p, n) = extent_of(&v);
            if k < vs && k + n > vs {
                raw.push((k, p, n));
            }
        }
        for (k, v) in self.range(K, root, vs, ve, usize::MAX)? {
            let (p, n) = extent_of(&v);
            raw.push((k, p, n));
        }
        Ok(raw
            .into_iter()
            .map(|(k, p, n)| {
                let a = k.max(vs);
                let b = (k + n).min(ve);
                (a, p + (a - k), b - a)
            })
            .collect())
    }

    /// Unmaps `[vs, ve)`, dropping one reference from each physical block unmapped and freeing
    /// the ones no longer referenced. Returns the new root.
    pub fn map_remove(&mut self, root: Root, vs: u64, ve: u64) -> Result<Root> {
        let mut root = root;
        let mut entries: Vec<Piece> = Vec::new();
        if let Some((k, v)) = self.get_le(K, root, vs)? {
            let (p, n) = extent_of(&v);
            if k < vs && k + n > vs {
                entries.push((k, p, n));
            }
        }
        for (k, v) in self.range(K, root, vs, ve, usize::MAX)? {
            let (p, n) = extent_of(&v);
            entries.push((k, p, n));
        }
        for (k, p, n) in entries {
            root = if k < vs {
                self.insert(K, root, k, &extent_val(p, vs - k))?
            } else {
                self.remove(K, root, k)?.0
            };
            if k + n > ve {
                root = self.insert(K, root, ve, &extent_val(p + (ve - k), k + n - ve))?;
            }
            let a = k.max(vs);
            let b = (k + n).min(ve);
            self.drop_data(p + (a - k), b - a)?;
        }
        Ok(root)
    }

    /// Drops one reference from each block of a data run; frees what is left unreferenced.
    pub fn drop_data(&mut self, phys: u64, len: u64) -> Result<()> {
        for (s, l) in self.rc_dec(phys, len)? {
            self.free(s, l, Use::Data)?;
        }
        Ok(())
    }

    /// Maps `[vs, vs + len)` (currently unmapped) to `[phys, phys + len)`, extending the
    /// preceding entry when it ends exactly there on both sides. Returns the new root.
    pub fn map_insert(&mut self, root: Root, vs: u64, phys: u64, len: u64) -> Result<Root> {
        if vs > 0 {
            if let Some((k, v)) = self.get_le(K, root, vs - 1)? {
                let (p, n) = extent_of(&v);
                if k + n == vs && p + n == phys && n + len <= EXTENT_BLOCKS_MAX {
                    return self.insert(K, root, k, &extent_val(p, n + len));
                }
            }
        }
        self.insert(K, root, vs, &extent_val(phys, len))
    }
}
