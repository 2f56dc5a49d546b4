//! Reclaim of deleted volumes: tombstones are dropped in bounded, committed transactions.
//!
//! Invariants:
//! - A reclaim transaction removes at most `RECLAIM_ENTRIES_PER_TXN` mapping entries.
//! - A tombstone leaves the directory only once its whole tree has been dropped.
//! - A reclaim step runs on a clean transaction (it commits first), so a bad block met in the
//!   tombstone's tree is undone by going back to the durable state, touching nothing else; the
//!   tombstone is then quarantined (flag `VF_QUARANTINED`, durable, never retried, its space
//!   lost) and the pool stays healthy. Only a failure of the commit itself fails the pool.

use crate::error::{Error, ErrorKind, Result};
use crate::format::VF_QUARANTINED;
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
        self.vols.values().any(|r| r.deleting() && !r.quarantined())
    }

    /// One bounded reclaim transaction on the first tombstone not quarantined, committed.
    pub(super) fn reclaim_step(&mut self) -> Result<()> {
        let Some((&seq, rec)) = self
            .vols
            .iter()
            .find(|(_, r)| r.deleting() && !r.quarantined())
        else {
            return Ok(());
        };
        let root = rec.root;
        self.commit()?;
        assert!(
            !self.is_dirty(),
            "a reclaim step starts from a clean transaction"
        );
        let mut budget = RECLAIM_ENTRIES_PER_TXN;
        let root = match self.meta.drop_tree_step(root, &mut budget) {
            Ok(root) => root,
            Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::Io) => {
                self.quarantine(seq, &e);
                return self.commit();
            }
            Err(e) => {
                self.fail(&e);
                return Err(e);
            }
        };
        self.meta_phase(|st| {
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

    /// Gives up on tombstone `seq` after `e` met its tree: the step's changes are undone and
    /// the tombstone is flagged (committed by the caller).
    fn quarantine(&mut self, seq: u64, e: &Error) {
        tracing::error!(
            "pool {}: reclaim of deleted volume {seq} failed, quarantined with its space lost: {e}",
            self.name
        );
        self.rollback_to_durable();
        let rec = self
            .vols
            .get_mut(&seq)
            .expect("the tombstone being reclaimed");
        assert!(rec.deleting(), "only a tombstone is quarantined");
        rec.flags |= VF_QUARANTINED;
        self.dirty_vols.insert(seq);
    }

    /// Drops the metadata changes of the open transaction, which held nothing but a failed
    /// reclaim step (the directory records were not touched).
    fn rollback_to_durable(&mut self) {
        assert!(
            self.dirty_vols.is_empty() && self.removed_vols.is_empty(),
            "rollback of a transaction holding directory changes"
        );
        let m = &mut self.meta;
        m.forget_dirty();
        let sb = m.durable.clone();
        m.dir_root = sb.dir;
        m.rc_root = sb.rc;
        m.space_root = sb.space;
        m.allocated_blocks = sb.allocated_blocks;
        m.data_blocks = sb.data_blocks;
        m.meta_blocks = sb.meta_blocks;
        m.pending_blocks = 0;
        m.freed_data.clear();
        debug_assert!(!m.is_dirty(), "back at the durable state");
    }
}
