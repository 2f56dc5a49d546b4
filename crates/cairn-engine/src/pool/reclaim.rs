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
    pub(super) fn reclaim_pending(&self) -> bool {
        // Every record is a live volume (indexed by id) or a tombstone.
        let tombstones = self.vols.len() - self.by_id.len();
        debug_assert!(
            tombstones >= self.quarantined,
            "quarantined records are tombstones"
        );
        tombstones > self.quarantined
    }

    /// One bounded reclaim transaction on the first tombstone not quarantined, committed. It
    /// removes at most
    /// `RECLAIM_ENTRIES_PER_TXN` entries and dirties at most `RECLAIM_PAGES_PER_TXN` bitmap
    /// pages; it may use the metadata floor, and when even that is short it retries with half
    /// the entries (freeing helps only once committed: a freed block waits for durability).
    pub(super) fn reclaim_step(&mut self) -> Result<()> {
        let Some((&seq, rec)) = self
            .vols
            .iter()
            .find(|(_, r)| r.deleting() && !r.quarantined())
        else {
            return Ok(());
        };
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
        self.quarantined += 1;
        self.dirty_vols.insert(seq);
    }
}
