//! Reference counts of shared blocks, range-encoded in the refcount tree (Rodeh 2008, btrfs).
//!
//! An entry `first block -> (len, count)` says each block of `[first, first + len)` has
//! `count >= 2` references. A block that is allocated in the space map and covered by no entry
//! has exactly one reference; a free block has none. Entries never overlap and never hold a
//! count below two: dropping to one removes the entry, dropping from one frees the block (the
//! caller releases it in the space map). Incrementing a whole extent costs O(log n) plus the
//! entries it crosses.

use crate::error::{corrupt, Result};
use crate::format::get_u32;
use crate::meta::Meta;
use crate::node::TreeKind;

const K: TreeKind = TreeKind::Refcount;

pub(crate) fn rc_val(len: u64, count: u32) -> [u8; 8] {
    let mut v = [0u8; 8];
    v[..4].copy_from_slice(&(len as u32).to_le_bytes());
    v[4..].copy_from_slice(&count.to_le_bytes());
    v
}

/// (len, count) of a refcount entry.
pub fn rc_entry(v: &[u8]) -> (u64, u32) {
    (u64::from(get_u32(v, 0)), get_u32(v, 4))
}

impl Meta {
    /// References to block `b`, assuming it is allocated.
    pub fn rc_get(&mut self, b: u64) -> Result<u32> {
        match self.get_le(K, self.rc_root, b)? {
            Some((k, v)) => {
                let (len, count) = rc_entry(&v);
                Ok(if b < k + len { count } else { 1 })
            }
            None => Ok(1),
        }
    }

    /// Entries overlapping `[s, e)`, as (first, len, count).
    fn rc_overlapping(&mut self, s: u64, e: u64) -> Result<Vec<(u64, u64, u32)>> {
        // One descent: the entry at or left of `s` (kept if it reaches `s`), then those inside.
        let mut out = Vec::new();
        for (k, v) in self.range_le(K, self.rc_root, s, e)? {
            let (len, count) = rc_entry(&v);
            if k >= s || k.saturating_add(len) > s {
                out.push((k, len, count));
            }
        }
        for w in out.windows(2) {
            if w[0].0.checked_add(w[0].1).is_none_or(|end| end > w[1].0) {
                return Err(corrupt(format!(
                    "refcount entries {} and {} overlap",
                    w[0].0, w[1].0
                )));
            }
        }
        if out.iter().any(|e| e.1 == 0 || e.2 < 2) {
            return Err(corrupt(format!("refcount entry in [{s}, {e}) below two")));
        }
        Ok(out)
    }

    /// Rewrites `[s, e)` (plus the overhang of the entries crossing it): entries inside get
    /// `f(count)`, gaps inside get `f(1)`; a result of 1 leaves no entry, 0 frees the blocks.
    /// Returns the runs whose count reached zero.
    fn rc_apply(&mut self, s: u64, len: u64, f: impl Fn(u32) -> u32) -> Result<Vec<(u64, u64)>> {
        let e = s + len;
        let old = self.rc_overlapping(s, e)?;
        let mut pieces: Vec<(u64, u64, u32)> = Vec::new();
        let mut cursor = s;
        for &(k, l, c) in &old {
            if k < s {
                pieces.push((k, s - k, c));
            }
            let a = k.max(s);
            let b = (k + l).min(e);
            if cursor < a {
                pieces.push((cursor, a - cursor, f(1)));
            }
            pieces.push((a, b - a, f(c)));
            cursor = b;
            if k + l > e {
                pieces.push((e, k + l - e, c));
            }
        }
        if cursor < e {
            pieces.push((cursor, e - cursor, f(1)));
        }
        // The pieces tile the rewritten span without gaps or overlaps, in order.
        debug_assert!(
            pieces.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0),
            "refcount pieces tile their span"
        );
        debug_assert!(pieces.iter().all(|p| p.1 > 0), "no empty refcount piece");
        let mut freed: Vec<(u64, u64)> = Vec::new();
        let mut merged: Vec<(u64, u64, u32)> = Vec::new();
        for p in pieces {
            match p.2 {
                0 => match freed.last_mut() {
                    Some(last) if last.0 + last.1 == p.0 => last.1 += p.1,
                    _ => freed.push((p.0, p.1)),
                },
                1 => {}
                _ => match merged.last_mut() {
                    Some(last)
                        if last.0 + last.1 == p.0
                            && last.2 == p.2
                            && last.1 + p.1 <= u32::MAX as u64 =>
                    {
                        last.1 += p.1
                    }
                    _ => merged.push(p),
                },
            }
        }
        // An old entry whose key starts a new one is replaced in place by its insert (one
        // descent instead of a removal and an insert): only the others are removed.
        for &(k, _, _) in &old {
            if merged.binary_search_by_key(&k, |m| m.0).is_err() {
                self.rc_root = self.remove(K, self.rc_root, k)?.0;
            }
        }
        for (k, l, c) in merged {
            assert!(
                c >= 2 && l > 0 && l <= u64::from(u32::MAX),
                "refcount entry {k}+{l} with count {c}"
            );
            self.rc_root = self.insert(K, self.rc_root, k, &rc_val(l, c))?;
        }
        debug_assert!(
            freed.iter().all(|&(b, l)| b >= s && b + l <= e),
            "only blocks of the range are freed"
        );
        Ok(freed)
    }

    /// The reference counts of the allocated run `[s, s + len)`: (count, blocks) pieces that
    /// add up to `len`, in block order.
    pub fn rc_counts(&mut self, s: u64, len: u64) -> Result<Vec<(u32, u64)>> {
        let e = s + len;
        let mut out = Vec::new();
        let mut cursor = s;
        for (k, l, c) in self.rc_overlapping(s, e)? {
            let (a, b) = (k.max(s), (k + l).min(e));
            if cursor < a {
                out.push((1, a - cursor));
            }
            out.push((c, b - a));
            cursor = b;
        }
        if cursor < e {
            out.push((1, e - cursor));
        }
        debug_assert_eq!(
            out.iter().map(|p| p.1).sum::<u64>(),
            len,
            "pieces cover the run"
        );
        Ok(out)
    }

    /// Adds one reference to each block of `[s, s + len)`.
    pub fn rc_inc(&mut self, s: u64, len: u64) -> Result<()> {
        assert!(len > 0, "incrementing an empty run at {s}");
        let freed = self.rc_apply(s, len, |c| c.checked_add(1).expect("refcount overflow"))?;
        debug_assert!(freed.is_empty());
        Ok(())
    }

    /// Drops one reference from each block of `[s, s + len)`; returns the runs now unreferenced
    /// (the caller frees them).
    pub fn rc_dec(&mut self, s: u64, len: u64) -> Result<Vec<(u64, u64)>> {
        assert!(len > 0, "decrementing an empty run at {s}");
        self.rc_apply(s, len, |c| c - 1)
    }
}
