//! Space consumed: the data bytes each volume of the pool is charged for.
//!
//! The rule: every data block a tree holds is charged to exactly one party. A block one live
//! volume holds alone (no other tree, no other leaf) is that volume's. Every block two or more
//! members of a family share is charged to the family's oldest live volume. So a snapshot costs
//! nothing until its source diverges, and then it is charged with the old blocks it alone
//! preserves (`rbd du` reports a snapshot's size the same way); what the chain still shares is
//! charged once, to its origin. Blocks a deleted volume (a tombstone) holds alone, and the
//! shared blocks of a family with no live volume left, are charged to no volume: they are
//! being reclaimed.
//! Hence, for a pool with no write in flight,
//! `sum of SpaceReport::volumes + SpaceReport::reclaiming_bytes = SpaceReport::data_bytes_used`
//! (the pool's data bytes, taken with the charges under one lock).
//!
//! Cost: the figures of a family are computed by one walk of its trees ([`Meta::family_blocks`])
//! when first asked for, and kept until the family changes (a mapping changed, a share, a
//! member added, deleted or removed): a query of a family unchanged since is O(1), whatever the
//! pool holds, and a change costs one walk of that family only, at the next query. In-place
//! overwrites change no mapping and keep the figures.
//!
//! Invariants: the family index holds exactly the records of the directory, each under the
//! family its record names (debug builds compare it with the records); every change of a
//! member's tree or record goes through `family_touch`, `family_join` or `family_leave`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::error::Result;
use crate::limits::BLOCK_SIZE_BYTES;
use crate::types::VolumeId;

use super::{Pool, State};

/// A family's key: the id its records carry (all zero: the legacy family).
type FamilyKey = [u8; 16];

/// The members of one family and its figures, if computed since its last change.
#[derive(Default)]
pub(super) struct Family {
    members: BTreeSet<u64>,
    version: u64,
    cached: Option<(u64, Arc<Charges>)>,
}

/// A family's charges, in blocks.
#[derive(Debug, Default)]
struct Charges {
    by_seq: HashMap<u64, u64>,
    reclaiming: u64,
}

/// The space of a pool's volumes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpaceReport {
    /// Data bytes charged to each live volume (snapshots included).
    pub volumes: Vec<(VolumeId, u64)>,
    /// Data bytes held by deleted volumes alone, awaiting reclaim.
    pub reclaiming_bytes: u64,
    /// The pool's data bytes in use at the same moment (`PoolInfo::data_bytes_used`): with no
    /// write in flight, `volumes` and `reclaiming_bytes` add up to it.
    pub data_bytes_used: u64,
}

impl Pool {
    /// Data bytes charged to volume `id` (see the module's rule).
    pub fn space_consumed(&self, id: VolumeId) -> Result<u64> {
        let mut st = self.live()?;
        let seq = st.seq_of(id)?;
        let family = st.vols[&seq].family;
        let charges = st.charges(family)?;
        Ok(charges.by_seq[&seq] * BLOCK_SIZE_BYTES)
    }

    /// The charges of every volume of the pool, what is being reclaimed and the pool's data
    /// bytes, all taken at one moment.
    pub fn space_report(&self) -> Result<SpaceReport> {
        self.live()?.space_report()
    }

    /// Test hook: the report from the figures kept, then the report every family's walk gives
    /// afresh, both at one moment (background reclaim cannot run between them).
    #[doc(hidden)]
    pub fn space_report_kept_and_walked(&self) -> Result<(SpaceReport, SpaceReport)> {
        let mut st = self.live()?;
        let kept = st.space_report()?;
        for f in st.families.values_mut() {
            f.cached = None;
        }
        let walked = st.space_report()?;
        Ok((kept, walked))
    }
}

impl State {
    fn space_report(&mut self) -> Result<SpaceReport> {
        let keys: Vec<FamilyKey> = self.families.keys().copied().collect();
        let mut report = SpaceReport {
            data_bytes_used: self.meta.data_blocks * BLOCK_SIZE_BYTES,
            ..SpaceReport::default()
        };
        for key in keys {
            let charges = self.charges(key)?;
            report.reclaiming_bytes += charges.reclaiming * BLOCK_SIZE_BYTES;
            for (&seq, &blocks) in &charges.by_seq {
                let id = VolumeId(self.vols[&seq].id);
                report.volumes.push((id, blocks * BLOCK_SIZE_BYTES));
            }
        }
        report.volumes.sort();
        Ok(report)
    }
    /// The charges of family `key`, walked again if it changed since they were computed.
    fn charges(&mut self, key: FamilyKey) -> Result<Arc<Charges>> {
        let family = &self.families[&key];
        if let Some((version, charges)) = &family.cached {
            if *version == family.version {
                return Ok(charges.clone());
            }
        }
        let seqs: Vec<u64> = family.members.iter().copied().collect();
        let roots: Vec<_> = seqs.iter().map(|s| self.vols[s].root).collect();
        let blocks = self.meta.family_blocks(&roots)?;
        let own_total: u64 = blocks.own.iter().sum();
        assert!(
            own_total <= blocks.held,
            "a family holds what its members own"
        );
        let mut charges = Charges::default();
        let mut rest = blocks.held - own_total;
        for (&seq, &own) in seqs.iter().zip(&blocks.own) {
            if self.vols[&seq].deleting() {
                charges.reclaiming += own;
            } else {
                // Members go oldest first: the first live one takes what nobody owns.
                charges.by_seq.insert(seq, own + std::mem::take(&mut rest));
            }
        }
        charges.reclaiming += rest;
        let charges = Arc::new(charges);
        let family = self.families.get_mut(&key).expect("looked up");
        family.cached = Some((family.version, charges.clone()));
        Ok(charges)
    }

    /// Record `seq` (just added to `vols`) joins its family.
    pub(super) fn family_join(&mut self, seq: u64) {
        let key = self.vols[&seq].family;
        let family = self.families.entry(key).or_default();
        let fresh = family.members.insert(seq);
        assert!(fresh, "record {seq} joins its family once");
        family.version += 1;
    }

    /// Record `seq` (about to leave `vols`) leaves its family.
    pub(super) fn family_leave(&mut self, seq: u64) {
        let key = self.vols[&seq].family;
        let family = self.families.get_mut(&key).expect("a record's family");
        let was = family.members.remove(&seq);
        assert!(was, "record {seq} was in its family");
        family.version += 1;
        if family.members.is_empty() {
            self.families.remove(&key);
        }
    }

    /// The tree or the record of member `seq` changed: its family's figures are stale.
    pub(super) fn family_touch(&mut self, seq: u64) {
        let key = self.vols[&seq].family;
        self.families
            .get_mut(&key)
            .expect("a record's family")
            .version += 1;
    }

    /// The family index agrees with the records (a full scan: for `check` and debug builds).
    pub(super) fn assert_families_indexed(&self) {
        let indexed: usize = self.families.values().map(|f| f.members.len()).sum();
        assert_eq!(indexed, self.vols.len(), "every record is in one family");
        for (key, family) in &self.families {
            assert!(
                family.members.iter().all(|s| self.vols[s].family == *key),
                "each record is indexed under the family it names"
            );
        }
    }
}
