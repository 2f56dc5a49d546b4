//! The registry of one daemon: the volume names of every pool, whatever its backend (Cairn
//! engine pools through [`crate::Storage`], Ceph RBD pools through `cairn-rbd`), and the leases
//! hosts hold on opened volumes. It knows no pool format: a volume is a name, a 128-bit id and
//! the name of the pool (its owner) that holds it.
//!
//! How a backend changes names without holding the registry lock while its pool commits:
//! [`Registry::reserve`] claims the name (refused with `AlreadyExists` if any pool holds it or
//! another change has it reserved), the pool commits, then [`NameClaim::settle`] records the new
//! holder (and frees the volume's previous name on a rename); a claim dropped unsettled, because
//! the commit failed, frees the name again ([`Registry::reserve_rename`] also keeps the volume
//! from being deleted until then). A delete is bracketed the same way:
//! [`Registry::begin_delete`] refuses a leased volume with `InUse` and refuses new leases until the
//! returned [`Deletion`] is dropped; [`Registry::remove`] frees the name once the delete is durable.
//!
//! Invariants:
//! - a name is held by at most one volume and reserved by at most one change at a time;
//! - every held name maps to its volume and back (`names` and `by_id` agree);
//! - a volume with a lease is never being deleted, and a volume being deleted gets no lease;
//! - the lock is held only for map updates: never across I/O, a commit or a backend call.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{err, ErrorKind, Result};

/// What a name is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Claim {
    /// A change that will create or rename a volume to this name is committing.
    Reserved,
    /// The name of volume `id` in pool `owner`.
    Held { id: [u8; 16], owner: Arc<str> },
}

#[derive(Debug, Default)]
struct State {
    names: HashMap<String, Claim>,
    by_id: HashMap<[u8; 16], String>,
    leases: HashMap<[u8; 16], usize>,
    deleting: HashSet<[u8; 16]>,
    /// Volumes a rename is committing for: not deleted meanwhile, so the new name never ends up
    /// held by a deleted volume.
    renaming: HashSet<[u8; 16]>,
}

impl State {
    fn check(&self) {
        debug_assert!(
            self.by_id.iter().all(|(id, name)| matches!(
                self.names.get(name),
                Some(Claim::Held { id: held, .. }) if held == id
            )),
            "every id's name is held by that id"
        );
        debug_assert!(
            self.deleting.iter().all(|id| !self.leases.contains_key(id)),
            "no volume being deleted is leased"
        );
        debug_assert!(
            self.deleting.is_disjoint(&self.renaming),
            "no volume being deleted is renamed"
        );
    }
}

/// Volume names unique across every pool of a daemon, and the leases on its volumes. Send + Sync.
#[derive(Debug, Default)]
pub struct Registry {
    state: Mutex<State>,
}

/// A name reserved for a change in progress; dropped unsettled, it frees the name.
#[derive(Debug)]
pub struct NameClaim {
    reg: Arc<Registry>,
    name: String,
    /// The volume being renamed, if this claim is for a rename.
    renaming: Option<[u8; 16]>,
    settled: bool,
}

/// A counted use of a volume (a host has it open); dropping it releases the use. Send + Sync.
#[derive(Debug)]
pub struct Lease {
    reg: Arc<Registry>,
    id: [u8; 16],
}

/// A delete in progress: the volume gets no lease until this is dropped.
#[derive(Debug)]
pub struct Deletion {
    reg: Arc<Registry>,
    id: [u8; 16],
}

/// The error of a name some volume holds or a change has reserved.
pub(crate) fn name_exists(name: &str) -> crate::Error {
    err(
        ErrorKind::AlreadyExists,
        format!("volume name {name:?} exists"),
    )
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// Reserves `name` for a volume about to be created or renamed.
    pub fn reserve(self: &Arc<Self>, name: &str) -> Result<NameClaim> {
        let mut st = self.state.lock();
        if st.names.contains_key(name) {
            return Err(name_exists(name));
        }
        st.names.insert(name.to_string(), Claim::Reserved);
        Ok(NameClaim {
            reg: self.clone(),
            name: name.to_string(),
            renaming: None,
            settled: false,
        })
    }

    /// Reserves `name` for renaming volume `id`; until the claim is settled or dropped the
    /// volume cannot be deleted (`InUse`), and a volume being deleted cannot be renamed.
    pub fn reserve_rename(self: &Arc<Self>, name: &str, id: [u8; 16]) -> Result<NameClaim> {
        let mut st = self.state.lock();
        if st.deleting.contains(&id) || st.renaming.contains(&id) {
            return Err(err(
                ErrorKind::InUse,
                format!("volume {} is being changed", hex(&id)),
            ));
        }
        if st.names.contains_key(name) {
            return Err(name_exists(name));
        }
        st.names.insert(name.to_string(), Claim::Reserved);
        st.renaming.insert(id);
        st.check();
        Ok(NameClaim {
            reg: self.clone(),
            name: name.to_string(),
            renaming: Some(id),
            settled: false,
        })
    }

    /// Records `name` as held by volume `id` of pool `owner` (a volume found when a pool is
    /// opened); `AlreadyExists` if the name is taken.
    pub fn insert(&self, name: &str, id: [u8; 16], owner: &str) -> Result<()> {
        let mut st = self.state.lock();
        if st.names.contains_key(name) || st.by_id.contains_key(&id) {
            return Err(name_exists(name));
        }
        st.names.insert(name.to_string(), held(id, owner));
        st.by_id.insert(id, name.to_string());
        st.check();
        Ok(())
    }

    /// Frees the name of volume `id` (deleted, or its pool closed); nothing if it holds none.
    pub fn remove(&self, id: [u8; 16]) {
        let mut st = self.state.lock();
        if let Some(name) = st.by_id.remove(&id) {
            st.names.remove(&name);
        }
        st.check();
    }

    /// The volume holding `name` and the pool it is in; `None` while it is only reserved.
    pub fn lookup(&self, name: &str) -> Option<([u8; 16], Arc<str>)> {
        match self.state.lock().names.get(name)? {
            Claim::Held { id, owner } => Some((*id, owner.clone())),
            Claim::Reserved => None,
        }
    }

    /// The pool holding volume `id`, if it holds a name.
    pub fn owner_of(&self, id: [u8; 16]) -> Option<Arc<str>> {
        let st = self.state.lock();
        match st.names.get(st.by_id.get(&id)?)? {
            Claim::Held { owner, .. } => Some(owner.clone()),
            Claim::Reserved => None,
        }
    }

    /// Counts a user of volume `id` until the lease is dropped; `InUse` while it is being
    /// deleted. The caller checks that the volume exists after taking the lease.
    pub fn lease(self: &Arc<Self>, id: [u8; 16]) -> Result<Lease> {
        let mut st = self.state.lock();
        if st.deleting.contains(&id) {
            return Err(err(
                ErrorKind::InUse,
                format!("volume {} is being deleted", hex(&id)),
            ));
        }
        *st.leases.entry(id).or_insert(0) += 1;
        st.check();
        Ok(Lease {
            reg: self.clone(),
            id,
        })
    }

    /// How many leases volume `id` has.
    pub fn users(&self, id: [u8; 16]) -> usize {
        self.state.lock().leases.get(&id).copied().unwrap_or(0)
    }

    /// Starts deleting volume `id`: `InUse` while it has a lease, is being renamed, or another
    /// delete is running.
    pub fn begin_delete(self: &Arc<Self>, id: [u8; 16]) -> Result<Deletion> {
        let mut st = self.state.lock();
        if st.leases.contains_key(&id) || st.deleting.contains(&id) || st.renaming.contains(&id) {
            return Err(err(ErrorKind::InUse, format!("volume {}", hex(&id))));
        }
        st.deleting.insert(id);
        st.check();
        Ok(Deletion {
            reg: self.clone(),
            id,
        })
    }
}

fn held(id: [u8; 16], owner: &str) -> Claim {
    Claim::Held {
        id,
        owner: Arc::from(owner),
    }
}

fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

impl NameClaim {
    /// The change committed: volume `id` of pool `owner` now holds the name, and the name it
    /// held before (if renamed) is free.
    pub fn settle(mut self, id: [u8; 16], owner: &str) {
        let mut st = self.reg.state.lock();
        debug_assert!(
            self.renaming.is_none_or(|r| r == id),
            "a rename settles its volume"
        );
        if let Some(r) = self.renaming {
            st.renaming.remove(&r);
        }
        if let Some(old) = st.by_id.insert(id, self.name.clone()) {
            st.names.remove(&old);
        }
        let was = st.names.insert(self.name.clone(), held(id, owner));
        assert_eq!(was, Some(Claim::Reserved), "a settled name was reserved");
        st.check();
        self.settled = true;
    }

    /// The reserved name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for NameClaim {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let mut st = self.reg.state.lock();
        if let Some(r) = self.renaming {
            st.renaming.remove(&r);
        }
        let was = st.names.remove(&self.name);
        debug_assert_eq!(was, Some(Claim::Reserved), "an unsettled claim is reserved");
    }
}

impl Lease {
    /// The volume this lease holds.
    pub fn volume(&self) -> [u8; 16] {
        self.id
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut st = self.reg.state.lock();
        let n = st
            .leases
            .get_mut(&self.id)
            .expect("a held lease is counted");
        *n -= 1;
        if *n == 0 {
            st.leases.remove(&self.id);
        }
    }
}

impl Drop for Deletion {
    fn drop(&mut self) {
        self.reg.state.lock().deleting.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_reserved_once_and_freed_unless_settled() {
        let reg = Registry::new();
        let claim = reg.reserve("a").expect("free");
        let e = reg.reserve("a").expect_err("reserved");
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        assert!(e.to_string().contains("exists"), "{e}");
        assert_eq!(reg.lookup("a"), None, "a reservation is not a volume");
        drop(claim);
        let claim = reg.reserve("a").expect("freed by the failed change");
        claim.settle([1; 16], "p");
        assert_eq!(
            reg.lookup("a").map(|(id, o)| (id, o.to_string())),
            Some(([1; 16], "p".into()))
        );
        assert!(reg.reserve("a").is_err(), "held");
        assert!(reg.insert("a", [2; 16], "q").is_err(), "held");
    }

    #[test]
    fn a_rename_frees_the_old_name_and_a_removal_the_current_one() {
        let reg = Registry::new();
        reg.insert("old", [1; 16], "p").expect("insert");
        reg.reserve("new").expect("free").settle([1; 16], "p");
        assert_eq!(reg.lookup("old"), None);
        assert!(reg.lookup("new").is_some());
        reg.remove([1; 16]);
        assert_eq!(reg.lookup("new"), None);
        reg.reserve("old").expect("free again");
    }

    #[test]
    fn a_volume_is_not_deleted_while_renamed_nor_renamed_while_deleted() {
        let reg = Registry::new();
        reg.insert("a", [1; 16], "p").expect("insert");
        let rename = reg.reserve_rename("b", [1; 16]).expect("free");
        assert_eq!(
            reg.begin_delete([1; 16]).expect_err("renaming").kind(),
            ErrorKind::InUse
        );
        rename.settle([1; 16], "p");
        let deleting = reg.begin_delete([1; 16]).expect("renamed");
        let e = reg.reserve_rename("c", [1; 16]).expect_err("deleting");
        assert_eq!(e.kind(), ErrorKind::InUse);
        assert!(
            reg.lookup("c").is_none(),
            "a refused rename reserves nothing"
        );
        drop(deleting);
        reg.remove([1; 16]);
        assert!(reg.lookup("b").is_none());
    }

    #[test]
    fn leases_and_deletes_exclude_each_other() {
        let reg = Registry::new();
        let lease = reg.lease([1; 16]).expect("lease");
        assert_eq!(reg.users([1; 16]), 1);
        let e = reg.begin_delete([1; 16]).expect_err("leased");
        assert_eq!(e.kind(), ErrorKind::InUse);
        drop(lease);
        assert_eq!(reg.users([1; 16]), 0);
        let deleting = reg.begin_delete([1; 16]).expect("no lease");
        assert_eq!(
            reg.lease([1; 16]).expect_err("deleting").kind(),
            ErrorKind::InUse
        );
        drop(deleting);
        drop(reg.lease([1; 16]).expect("the delete ended"));
    }
}
