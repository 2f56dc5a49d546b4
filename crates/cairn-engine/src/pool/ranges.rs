//! Per-block exclusion between writes: a range lock over the virtual blocks of a volume.
//!
//! A write, trim or write-zeroes holds the blocks it touches from before it reads or plans them
//! until its device writes are done and its mapping update is applied. So a read-modify-write of
//! a partial block never starts from contents another write is about to replace, and two writes
//! to one block always land in one order or the other. A restore holds every block of its
//! volume, so a trim or write-zeroes running in steps never spans the old and the restored
//! contents.
//!
//! Invariants:
//! - Held ranges of one volume never overlap (a lock waits until its range is free).
//! - Lock order: a block range first, then the I/O gate, then the pool state. A range is never
//!   requested while holding the gate or the state, so a commit waiting for the gate cannot
//!   deadlock with a write waiting for a range.
//! - A caller holding several ranges takes them all at once (`lock_many`), never one while
//!   holding another, so two such callers cannot each wait for the other.
//! - The table holds one entry per range of a caller in flight, so it is bounded by the callers
//!   and the ranges each takes.

use parking_lot::{Condvar, Mutex};

use crate::types::VolumeId;

/// One held range: virtual blocks `[start, end)` of a volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Held {
    volume: VolumeId,
    start: u64,
    end: u64,
}

impl Held {
    fn overlaps(&self, other: &Held) -> bool {
        self.volume == other.volume && self.start < other.end && other.start < self.end
    }
}

/// The ranges held by writes in flight.
#[derive(Default)]
pub(super) struct BlockLocks {
    held: Mutex<Vec<Held>>,
    released: Condvar,
}

/// Holds its ranges until dropped.
pub(super) struct BlockGuard<'a> {
    locks: &'a BlockLocks,
    ranges: Vec<Held>,
}

impl BlockLocks {
    /// Waits until no other caller holds a block of `[start, end)` of `volume`, then holds it.
    pub(super) fn lock(&self, volume: VolumeId, start: u64, end: u64) -> BlockGuard<'_> {
        self.lock_many(volume, &[(start, end)])
    }

    /// Waits until no other caller holds a block of any of the block ranges `[start, end)` of
    /// `volume` (non-empty, pairwise disjoint), then holds them all at once.
    pub(super) fn lock_many(&self, volume: VolumeId, spans: &[(u64, u64)]) -> BlockGuard<'_> {
        let ranges: Vec<Held> = spans
            .iter()
            .map(|&(start, end)| {
                assert!(start < end, "empty block range {start}..{end}");
                Held { volume, start, end }
            })
            .collect();
        for (i, a) in ranges.iter().enumerate() {
            assert!(
                ranges[..i].iter().all(|b| !a.overlaps(b)),
                "ranges taken together are disjoint: {ranges:?}"
            );
        }
        let mut held = self.held.lock();
        while held.iter().any(|h| ranges.iter().any(|r| h.overlaps(r))) {
            self.released.wait(&mut held);
        }
        held.extend_from_slice(&ranges);
        BlockGuard {
            locks: self,
            ranges,
        }
    }
}

impl Drop for BlockGuard<'_> {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock();
        for range in &self.ranges {
            let at = held
                .iter()
                .position(|h| h == range)
                .expect("a held range is in the table");
            held.swap_remove(at);
        }
        drop(held);
        self.locks.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: VolumeId = VolumeId([1; 16]);
    const W: VolumeId = VolumeId([2; 16]);

    #[test]
    fn overlap_is_per_volume_and_half_open() {
        let a = Held {
            volume: V,
            start: 4,
            end: 8,
        };
        assert!(a.overlaps(&Held {
            start: 7,
            end: 9,
            ..a
        }));
        assert!(!a.overlaps(&Held {
            start: 8,
            end: 9,
            ..a
        }));
        assert!(!a.overlaps(&Held {
            start: 0,
            end: 4,
            ..a
        }));
        assert!(!a.overlaps(&Held { volume: W, ..a }));
    }

    #[test]
    fn an_overlapping_lock_waits_for_the_release() {
        let locks = BlockLocks::default();
        let order = Mutex::new(Vec::new());
        let first = locks.lock(V, 0, 4);
        std::thread::scope(|s| {
            s.spawn(|| {
                let _g = locks.lock(V, 3, 5);
                order.lock().push("second");
            });
            // A disjoint range and another volume do not wait.
            drop(locks.lock(V, 4, 9));
            drop(locks.lock(W, 0, 4));
            order.lock().push("first");
            drop(first);
        });
        assert_eq!(*order.lock(), ["first", "second"]);
        assert!(locks.held.lock().is_empty());
    }

    #[test]
    fn ranges_taken_together_wait_for_any_of_them_and_go_together() {
        let locks = BlockLocks::default();
        let order = Mutex::new(Vec::new());
        let first = locks.lock(V, 10, 12);
        std::thread::scope(|s| {
            s.spawn(|| {
                let _g = locks.lock_many(V, &[(0, 2), (11, 13)]);
                order.lock().push("second");
            });
            // The one not overlapping is not taken while the caller waits for the other.
            drop(locks.lock(V, 0, 2));
            order.lock().push("first");
            drop(first);
        });
        assert_eq!(*order.lock(), ["first", "second"]);
        assert!(locks.held.lock().is_empty());
    }
}
