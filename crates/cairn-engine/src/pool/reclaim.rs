//! Reclaim of deleted volumes: tombstones are dropped in bounded, committed transactions.
//!
//! Invariants:
//! - A reclaim transaction removes at most `RECLAIM_ENTRIES_PER_TXN` mapping entries and dirties
//!   at most `RECLAIM_PAGES_PER_TXN` more bitmap pages; it may use the metadata floor that
//!   ordinary operations leave, never what its own commit needs.
//! - The background thread pauses between transactions with the locks released.
//! - A tombstone leaves the directory only once its whole tree has been dropped.
//! - A reclaim step that meets a bad block in the tombstone's tree (`Corrupt`, or `Io` reading
//!   it) is undone like any metadata operation; the tombstone is then quarantined (flag
//!   `VF_QUARANTINED`, durable, never retried, its space lost) and the pool stays healthy.
//! - The tombstones still to reclaim (`State::tombstones`) and the quarantine count are indexes
//!   kept exact by every change of the two flags (delete, restore, load, quarantine, the end of
//!   a reclaim), so finding the next tombstone and reporting them is O(1) in the volume count;
//!   `check` and debug builds compare them with the records.

use crate::error::{Error, ErrorKind, Result};
use crate::format::VF_QUARANTINED;
use crate::limits::{RECLAIM_ENTRIES_PER_TXN, RECLAIM_PAGES_PER_TXN};

use super::{Pool, State, Tier};

impl Pool {
    /// Runs reclaim to completion in the caller's thread.
    pub fn wait_reclaim(&self) -> Result<()> {
        loop {
            let (_gate, mut st) = self.exclusive()?;
            if !st.reclaim_pending() {
                return Ok(());
            }
            st.reclaim_step()?;
        }
    }

    /// Test hook: stops (or resumes) background reclaim; `wait_reclaim` still runs it.
    #[doc(hidden)]
    pub fn pause_reclaim(&self, paused: bool) {
        self.lock().reclaim_paused = paused;
        self.inner.wake.notify_all();
    }

    /// Test hook: runs one bounded reclaim transaction; returns whether reclaim is still pending.
    #[doc(hidden)]
    pub fn reclaim_once(&self) -> Result<bool> {
        let (_gate, mut st) = self.exclusive()?;
        st.reclaim_step()?;
        Ok(st.reclaim_pending())
    }
}
impl State {
    /// O(1): the tombstone index is kept exact by every flag change.
    pub(super) fn reclaim_pending(&self) -> bool {
        !self.tombstones.is_empty()
    }

    /// Indexes record `seq`, which has just become (or was loaded as) a tombstone: queued for
    /// reclaim, or counted as quarantined.
    pub(super) fn index_tombstone(&mut self, seq: u64) {
        let rec = &self.vols[&seq];
        assert!(rec.deleting(), "only a tombstone is indexed as one");
        if rec.quarantined() {
            self.quarantined_count += 1;
        } else {
            let fresh = self.tombstones.insert(seq);
            assert!(fresh, "tombstone {seq} indexed twice");
        }
    }

    /// The tombstone index and the quarantine count agree with the records (a full scan: for
    /// `check` and debug builds).
    pub(super) fn assert_tombstones_indexed(&self) {
        let queued = self
            .vols
            .iter()
            .filter(|(seq, r)| {
                r.deleting() && !r.quarantined() && !self.keepers.values().any(|k| k == *seq)
            })
            .map(|(&seq, _)| seq);
        assert!(
            queued.eq(self.tombstones.iter().copied()),
            "the reclaim queue holds exactly the tombstones not quarantined nor kept"
        );
        let quarantined = self.vols.values().filter(|r| r.quarantined()).count();
        assert_eq!(
            quarantined, self.quarantined_count,
            "the quarantine count is exact"
        );
    }

    /// One bounded reclaim transaction on the first tombstone not quarantined, committed. It
    /// removes at most
    /// `RECLAIM_ENTRIES_PER_TXN` entries and dirties at most `RECLAIM_PAGES_PER_TXN` bitmap
    /// pages; it may use the metadata floor, and when even that is short it retries with half
    /// the entries (freeing helps only once committed: a freed block waits for durability).
    pub(super) fn reclaim_step(&mut self) -> Result<()> {
        #[cfg(debug_assertions)]
        self.assert_tombstones_indexed();
        let Some(&seq) = self.tombstones.first() else {
            return Ok(());
        };
        let rec = &self.vols[&seq];
        assert!(
            rec.deleting() && !rec.quarantined(),
            "the reclaim queue holds tombstones"
        );
        let root = rec.root;
        let mut entries_max = RECLAIM_ENTRIES_PER_TXN;
        let (left, used) = loop {
            let pages_max = self.meta.dirty_pages() + RECLAIM_PAGES_PER_TXN;
            let step = self.meta_op(Tier::Release, |meta| {
                let mut budget = entries_max;
                let left = meta.drop_tree_step(root, &mut budget, pages_max)?;
                Ok((left, entries_max - budget))
            });
            match step {
                Ok(done) => break done,
                Err(e) if e.kind() == ErrorKind::NoSpace && entries_max > 1 => entries_max /= 2,
                Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::Io) => {
                    self.quarantine(seq, &e);
                    return self.commit();
                }
                Err(e) => return Err(e),
            }
        };
        assert!(
            left.addr == 0 || left != root || used > 0,
            "a reclaim step makes progress"
        );
        if left.addr == 0 {
            self.tombstones.remove(&seq);
            self.family_leave(seq);
            self.vols.remove(&seq);
            self.dirty_vols.remove(&seq);
            self.removed_vols.insert(seq);
            self.hints.remove(&seq);
        } else {
            self.set_root(seq, left);
        }
        self.count_step(used);
        self.commit()
    }

    /// Gives up on tombstone `seq` after `e` met its tree (the step was undone): flags it, to
    /// be committed by the caller.
    fn quarantine(&mut self, seq: u64, e: &Error) {
        tracing::error!(
            "pool {}: reclaim of deleted volume {seq} failed, quarantined with its space lost: {e}",
            self.name
        );
        assert!(self.healthy(), "a quarantine keeps the pool healthy");
        let rec = self
            .vols
            .get_mut(&seq)
            .expect("the tombstone being reclaimed");
        assert!(rec.deleting(), "only a tombstone is quarantined");
        assert!(
            !rec.quarantined(),
            "a quarantined tombstone is never reclaimed again"
        );
        rec.flags |= VF_QUARANTINED;
        self.family_touch(seq);
        let queued = self.tombstones.remove(&seq);
        assert!(queued, "a quarantined tombstone was queued for reclaim");
        self.quarantined_count += 1;
        self.dirty_vols.insert(seq);
    }
}
