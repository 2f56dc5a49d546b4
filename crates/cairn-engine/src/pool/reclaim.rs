//! Reclaim of deleted volumes: tombstones are dropped in bounded, committed transactions.
//!
//! Invariants:
//! - A reclaim transaction removes at most `RECLAIM_ENTRIES_PER_TXN` mapping entries.
//! - A tombstone leaves the directory only once its whole tree has been dropped.

use crate::error::Result;
use crate::limits::RECLAIM_ENTRIES_PER_TXN;

use super::{Pool, State};

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
        self.vols.values().any(|r| r.deleting())
    }

    /// One bounded reclaim transaction on the first tombstone, committed.
    pub(super) fn reclaim_step(&mut self) -> Result<()> {
        let Some((&seq, rec)) = self.vols.iter().find(|(_, r)| r.deleting()) else {
            return Ok(());
        };
        let root = rec.root;
        self.meta_phase(|st| {
            let mut budget = RECLAIM_ENTRIES_PER_TXN;
            let root = st.meta.drop_tree_step(root, &mut budget)?;
            if root.addr == 0 {
                st.vols.remove(&seq);
                st.dirty_vols.remove(&seq);
                st.removed_vols.insert(seq);
                st.hints.remove(&seq);
            } else {
                st.set_root(seq, root);
            }
            Ok(())
        })?;
        self.commit()
    }
}
