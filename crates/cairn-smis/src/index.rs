//! The volume index: the model's copy of the array's volumes by id, by pool (in creation order)
//! and by replica source, kept exact by the backend's change events, so that an answer about one
//! volume, its pool or its replicas costs the same whatever the number of volumes, and an
//! enumeration reads nothing from the backend but the pools.
//!
//! Invariants:
//! - Before a request reads it ([`VolumeIndex::snapshot`]), the index is brought to the state of
//!   the backend: every volume an event named since then is read again from the backend (events
//!   only say *what* changed, so an event delivered late can never bring back an older state), and
//!   a pool whose change count (`PoolInfo::volume_changes`, one step per change) is not the one the
//!   index accounts for is read again whole. The index accounts for a step only when the backend
//!   reports it: a `PoolChanged` whose count is exactly one past the one accounted for (the
//!   backend sends one per change, after the change's volume events), or one at or below a count
//!   the pool was read at (that read saw the change). A change without its event (a pool added, a
//!   change made around the backend, the cleanup of a failed operation) leaves a gap that no
//!   later event closes, so it is never missed: the index is just not used for it.
//! - A pool exactly one step ahead while volume events of it were noted since its last
//!   `PoolChanged` is not read again: that step is the change whose events were noted (it has
//!   not sent its `PoolChanged` yet), and the volumes they name are read again. So a listener
//!   that reads the model while a change is being reported (the indication producer) costs one
//!   volume read, not a read of the whole pool.
//! - `by_source[s]` holds every indexed volume whose replica record or snapshot parent names `s`.
//! - Noted volumes are bounded by [`CHANGED_VOLUMES_MAX`]; past it the index forgets them and
//!   reads every pool again.
//! - A volume keeps its position in the creation order (`Entry::order`, unique, never reused)
//!   for as long as the index holds it, even when its pool is read again, so an enumeration
//!   paging by position ([`VolumeIndex::page`]) never returns a volume twice.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cairn_array::{ArrayBackend, ChangeEvent, PoolInfo, Volume, VolumeId};
use parking_lot::Mutex;

use crate::limits::CHANGED_VOLUMES_MAX;
use crate::model::{in_model, PoolView, Snapshot};

/// What part of the array a request reads.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// The pools, no volume.
    Pools,
    /// The pools and every volume in the model.
    All,
    /// These volumes (those in the model) and their pools.
    Ids(&'a [VolumeId]),
    /// Volume `id`, the volume it is a replica of and its own replicas, with their pools: every
    /// volume an association referring to `id` names.
    Around(VolumeId),
}

/// The index (see the module documentation).
#[derive(Debug)]
pub struct VolumeIndex {
    state: Mutex<State>,
    /// The backend delivers its change events here; if it cannot, every request reads every
    /// pool again (the index is never used on its own).
    followed: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    /// How many times a pool was read whole.
    #[cfg(test)]
    pool_reads: u64,
    /// The backend's pools in its order, as last read.
    pools: Vec<PoolEntry>,
    volumes: HashMap<VolumeId, Entry>,
    /// Every indexed volume by its position in the creation order.
    by_order: BTreeMap<u64, VolumeId>,
    by_source: HashMap<VolumeId, BTreeSet<VolumeId>>,
    /// Volumes named by events since the last request.
    changed: HashSet<VolumeId>,
    /// Every pool must be read again (too many changed volumes were noted).
    reread_all: bool,
    next_order: u64,
}

#[derive(Debug)]
struct PoolEntry {
    info: PoolInfo,
    /// The change count the index accounts for.
    seen_changes: u64,
    /// A `PoolChanged` skipped a step: the pool must be read again.
    gap: bool,
    /// Volume events of this pool noted since its last `PoolChanged`.
    pending: u32,
    /// The pool's volumes by creation order.
    order: BTreeMap<u64, VolumeId>,
}

#[derive(Debug)]
struct Entry {
    volume: Volume,
    order: u64,
}

/// One page of the model's volumes in creation order ([`VolumeIndex::page`]).
pub struct VolumePage {
    /// The page's volumes (and, if asked for, their replica sources) with their pools.
    pub snapshot: Snapshot,
    /// The page's volumes, in order.
    pub ids: Vec<VolumeId>,
    /// The position to continue after; `None` after the last page.
    pub next: Option<u64>,
}

/// One page of the replicas of a volume ([`VolumeIndex::replicas_page`]).
pub struct ReplicaPage {
    /// The volume, its page of replicas and, on the first page, its source, with their pools.
    pub snapshot: Snapshot,
    /// The page's replicas, in id order.
    pub replicas: Vec<VolumeId>,
    /// The replica to continue after; `None` after the last page.
    pub next: Option<VolumeId>,
}

/// The volume `v`'s relationship may name as its source (a superset of the model's).
fn source_of(v: &Volume) -> Option<VolumeId> {
    match v.replica {
        Some(r) => Some(r.source),
        None => v.parent,
    }
}

impl VolumeIndex {
    /// An index of `array`'s volumes, subscribed to its change events. Reads nothing yet: the
    /// first request reads every pool.
    pub fn following(array: &dyn ArrayBackend) -> Arc<VolumeIndex> {
        let index = Arc::new(VolumeIndex {
            state: Mutex::new(State::default()),
            followed: AtomicBool::new(false),
        });
        let listener = index.clone();
        match array.subscribe(Arc::new(move |e: &ChangeEvent| listener.note(e))) {
            Ok(()) => index.followed.store(true, Ordering::Release),
            Err(e) => tracing::warn!("the model reads every pool at each request: {e}"),
        }
        index
    }

    /// Notes one change event (what a backend listener calls; never calls the backend).
    pub fn note(&self, event: &ChangeEvent) {
        let mut st = self.state.lock();
        let (id, pool) = match event {
            ChangeEvent::VolumeCreated(v) | ChangeEvent::VolumeChanged(v) => (v.id, v.pool.clone()),
            ChangeEvent::VolumeDeleted(id) => match st.volumes.get(id) {
                Some(e) => (*id, e.volume.pool.clone()),
                None => (*id, String::new()),
            },
            ChangeEvent::PoolChanged(info) => {
                if let Some(p) = st.pool_mut(&info.name) {
                    p.account(info.volume_changes);
                }
                return;
            }
            _ => return,
        };
        if let Some(p) = st.pool_mut(&pool) {
            p.pending = p.pending.saturating_add(1);
        }
        if st.changed.len() >= CHANGED_VOLUMES_MAX {
            st.changed.clear();
            st.reread_all = true;
        }
        st.changed.insert(id);
    }

    /// The array state `scope` covers, as the backend holds it now.
    pub fn snapshot(&self, array: &dyn ArrayBackend, scope: Scope<'_>) -> Snapshot {
        self.snapshot_without_space(array, scope).with_space(array)
    }

    /// As [`VolumeIndex::snapshot`], without the space the volumes consume (no volume's tree is
    /// walked).
    pub fn snapshot_without_space(&self, array: &dyn ArrayBackend, scope: Scope<'_>) -> Snapshot {
        let mut st = self.state.lock();
        if !self.followed.load(Ordering::Acquire) {
            st.reread_all = true;
        }
        st.sync(array);
        match scope {
            Scope::Pools => Snapshot::new(st.pools.iter().map(|p| view(p, Vec::new())).collect()),
            Scope::All => st.all(),
            Scope::Ids(ids) => st.only(ids.iter().copied()),
            Scope::Around(id) => {
                let mut ids = vec![id];
                if let Some(e) = st.volumes.get(&id) {
                    ids.extend(source_of(&e.volume));
                }
                ids.extend(st.by_source.get(&id).into_iter().flatten().copied());
                st.only(ids.into_iter())
            }
        }
    }
}

impl VolumeIndex {
    /// Up to `max` of the model's volumes after position `after` (`None`: from the first), in
    /// creation order, as the backend holds them now; with `sources`, the snapshot also holds
    /// the volumes they are replicas of.
    pub fn page(
        &self,
        array: &dyn ArrayBackend,
        after: Option<u64>,
        max: usize,
        sources: bool,
    ) -> VolumePage {
        let mut st = self.state.lock();
        if !self.followed.load(Ordering::Acquire) {
            st.reread_all = true;
        }
        st.sync(array);
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut ids = Vec::new();
        let mut last = None;
        for (order, id) in st.by_order.range((start, Bound::Unbounded)) {
            if ids.len() == max {
                break;
            }
            last = Some(*order);
            if st.volumes.get(id).is_some_and(|e| in_model(&e.volume)) {
                ids.push(*id);
            }
        }
        let more = last.is_some_and(|l| st.by_order.range(l + 1..).next().is_some());
        let mut wanted = ids.clone();
        if sources {
            let of = |id: &VolumeId| st.volumes.get(id).and_then(|e| source_of(&e.volume));
            wanted.extend(ids.iter().filter_map(of));
        }
        VolumePage {
            snapshot: st.only(wanted.into_iter()).with_space(array),
            ids,
            next: last.filter(|_| more),
        }
    }
}

impl VolumeIndex {
    /// Up to `max` of the volumes whose replica record or snapshot parent names `of`, in id
    /// order, after replica `after` (`None`: from the first, and then the snapshot also holds
    /// the volume `of` is a replica of), as the backend holds them now.
    pub fn replicas_page(
        &self,
        array: &dyn ArrayBackend,
        of: VolumeId,
        after: Option<VolumeId>,
        max: usize,
    ) -> ReplicaPage {
        let mut st = self.state.lock();
        if !self.followed.load(Ordering::Acquire) {
            st.reread_all = true;
        }
        st.sync(array);
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut replicas = Vec::new();
        let mut more = false;
        if let Some(set) = st.by_source.get(&of) {
            let mut range = set.range((start, Bound::Unbounded));
            replicas.extend(range.by_ref().take(max.max(1)).copied());
            more = range.next().is_some();
        }
        let mut wanted = vec![of];
        if after.is_none() {
            wanted.extend(st.volumes.get(&of).and_then(|e| source_of(&e.volume)));
        }
        wanted.extend(replicas.iter().copied());
        ReplicaPage {
            snapshot: st.only(wanted.into_iter()),
            next: replicas.last().copied().filter(|_| more),
            replicas,
        }
    }
}

impl PoolEntry {
    /// A `PoolChanged` at change count `changes` was delivered.
    fn account(&mut self, changes: u64) {
        if self.seen_changes.checked_add(1) == Some(changes) {
            self.seen_changes = changes;
        } else if changes > self.seen_changes {
            self.gap = true;
        }
        self.pending = 0;
    }

    /// True if the index holds this pool as the backend reports it at change count `changes`
    /// (the pool itself need not be read again; noted volumes still are).
    fn current(&self, changes: u64) -> bool {
        !self.gap
            && (self.seen_changes == changes
                || (self.pending > 0 && self.seen_changes.checked_add(1) == Some(changes)))
    }
}

fn view(p: &PoolEntry, volumes: Vec<Volume>) -> PoolView {
    PoolView {
        info: p.info.clone(),
        volumes,
    }
}

impl State {
    /// Brings the index to the backend's state (see the module invariants).
    fn sync(&mut self, array: &dyn ArrayBackend) {
        let reread_all = std::mem::take(&mut self.reread_all);
        let mut old: HashMap<String, PoolEntry> = self
            .pools
            .drain(..)
            .map(|p| (p.info.name.clone(), p))
            .collect();
        for info in array.pools() {
            let known = old
                .remove(&info.name)
                .filter(|p| !reread_all && p.current(info.volume_changes));
            let entry = match known {
                Some(mut p) => {
                    p.info = info;
                    p
                }
                None => self.read_pool(array, info),
            };
            self.pools.push(entry);
        }
        for (_, gone) in old {
            self.forget_pool(&gone);
        }
        for id in std::mem::take(&mut self.changed) {
            match array.volume(id) {
                Some(v) => self.upsert(v),
                None => self.remove(id),
            }
        }
    }

    /// Reads pool `info` whole; its previous entries are dropped.
    /// Volumes already indexed keep their position in the creation order.
    fn read_pool(&mut self, array: &dyn ArrayBackend, info: PoolInfo) -> PoolEntry {
        #[cfg(test)]
        {
            self.pool_reads += 1;
        }
        let stale: Vec<(VolumeId, u64)> = self
            .volumes
            .iter()
            .filter(|(_, e)| e.volume.pool == info.name)
            .map(|(id, e)| (*id, e.order))
            .collect();
        let known: HashMap<VolumeId, u64> = stale.iter().copied().collect();
        for (id, _) in stale {
            self.remove(id);
        }
        let mut entry = PoolEntry {
            seen_changes: info.volume_changes,
            gap: false,
            pending: 0,
            order: BTreeMap::new(),
            info,
        };
        for v in array.volumes(&entry.info.name) {
            let order = match known.get(&v.id) {
                Some(order) => *order,
                None => self.take_order(),
            };
            entry.order.insert(order, v.id);
            self.by_order.insert(order, v.id);
            self.link(&v);
            self.volumes.insert(v.id, Entry { volume: v, order });
        }
        entry
    }

    fn forget_pool(&mut self, gone: &PoolEntry) {
        for id in gone.order.values() {
            self.remove(*id);
        }
    }

    fn pool_mut(&mut self, name: &str) -> Option<&mut PoolEntry> {
        self.pools.iter_mut().find(|p| p.info.name == name)
    }

    fn link(&mut self, v: &Volume) {
        if let Some(s) = source_of(v) {
            self.by_source.entry(s).or_default().insert(v.id);
        }
    }

    fn unlink(&mut self, v: &Volume) {
        let Some(s) = source_of(v) else { return };
        if let Some(set) = self.by_source.get_mut(&s) {
            set.remove(&v.id);
            if set.is_empty() {
                self.by_source.remove(&s);
            }
        }
    }

    /// Records `v` as the backend holds it now.
    fn upsert(&mut self, v: Volume) {
        let order = match self.volumes.get(&v.id).map(|e| e.order) {
            Some(order) => order,
            None => self.take_order(),
        };
        self.remove(v.id);
        let Some(pool) = self.pool_mut(&v.pool) else {
            return;
        };
        pool.order.insert(order, v.id);
        self.by_order.insert(order, v.id);
        self.link(&v);
        self.volumes.insert(v.id, Entry { volume: v, order });
    }

    /// The next unused position in the creation order.
    fn take_order(&mut self) -> u64 {
        self.next_order += 1;
        self.next_order - 1
    }

    fn remove(&mut self, id: VolumeId) {
        let Some(e) = self.volumes.remove(&id) else {
            return;
        };
        self.by_order.remove(&e.order);
        self.unlink(&e.volume);
        if let Some(pool) = self.pool_mut(&e.volume.pool) {
            pool.order.remove(&e.order);
        }
    }

    fn all(&self) -> Snapshot {
        let pools = self
            .pools
            .iter()
            .map(|p| {
                let volumes = p
                    .order
                    .values()
                    .map(|id| &self.volumes[id].volume)
                    .filter(|v| in_model(v))
                    .cloned()
                    .collect();
                view(p, volumes)
            })
            .collect();
        Snapshot::new(pools)
    }

    /// The volumes `ids` that are in the model, with their pools, in pool order.
    fn only(&self, ids: impl Iterator<Item = VolumeId>) -> Snapshot {
        let mut picked: Vec<&Entry> = ids
            .filter_map(|id| self.volumes.get(&id))
            .filter(|e| in_model(&e.volume))
            .collect();
        picked.sort_by_key(|e| e.order);
        picked.dedup_by_key(|e| e.order);
        let pools = self
            .pools
            .iter()
            .filter_map(|p| {
                let volumes: Vec<Volume> = picked
                    .iter()
                    .filter(|e| e.volume.pool == p.info.name)
                    .map(|e| e.volume.clone())
                    .collect();
                (!volumes.is_empty()).then(|| view(p, volumes))
            })
            .collect();
        Snapshot::new(pools)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_array::engine::EngineArray;
    use cairn_array::VolumeSpec;
    use cairn_engine::{Pool, PoolOptions, Storage, VolumeOptions};

    fn add_pool(storage: &Storage, name: &str) {
        let dev = Arc::new(cairn_io::MemDevice::new(64 << 20));
        let pool = Pool::create(dev, name, PoolOptions::default()).expect("pool");
        storage.add_pool(pool).expect("add pool");
    }

    fn array() -> (Arc<Storage>, Arc<dyn ArrayBackend>) {
        let storage = Arc::new(Storage::new());
        add_pool(&storage, "p");
        let array: Arc<dyn ArrayBackend> = Arc::new(EngineArray::new(storage.clone()));
        (storage, array)
    }

    fn names(index: &VolumeIndex, array: &dyn ArrayBackend, scope: Scope<'_>) -> Vec<String> {
        let snap = index.snapshot(array, scope);
        snap.pools
            .iter()
            .flat_map(|p| p.volumes.iter().map(|v| v.name.clone()))
            .collect()
    }

    fn create(array: &dyn ArrayBackend, name: &str) -> Volume {
        array
            .create_volume("p", name, 1 << 20, &VolumeSpec::default())
            .expect("create")
    }

    #[test]
    fn follows_changes_made_through_the_backend_and_around_it() {
        let (storage, array) = array();
        let array = array.as_ref();
        let index = VolumeIndex::following(array);
        let a = create(array, "a");
        assert_eq!(names(&index, array, Scope::All), ["a"]);
        let s = array
            .snapshot(a.id, "s", &VolumeSpec::default())
            .expect("snapshot");
        array.rename_volume(a.id, "a2").expect("rename");
        assert_eq!(names(&index, array, Scope::All), ["a2", "s"]);
        // No event for these: the pool's change counter says it changed.
        let engine_s = cairn_engine::VolumeId(s.id.0);
        storage.rename_volume(engine_s, "s2").expect("rename");
        storage
            .create_volume("p", "b", 1 << 20, VolumeOptions::default())
            .expect("create");
        // A change reported by an event after them does not hide them.
        create(array, "d");
        assert_eq!(names(&index, array, Scope::All), ["a2", "s2", "b", "d"]);
        add_pool(&storage, "q");
        storage
            .create_volume("q", "c", 1 << 20, VolumeOptions::default())
            .expect("create");
        assert_eq!(
            names(&index, array, Scope::All),
            ["a2", "s2", "b", "d", "c"]
        );
        array.delete_volume(s.id).expect("delete");
        assert!(names(&index, array, Scope::Ids(&[s.id])).is_empty());
        assert_eq!(names(&index, array, Scope::Ids(&[a.id])), ["a2"]);
        let pools = index.snapshot(array, Scope::Pools).pools;
        assert_eq!(pools.len(), 2);
        assert!(pools.iter().all(|p| p.volumes.is_empty()));
    }

    #[test]
    fn a_listener_reading_while_a_change_is_reported_reads_no_pool_again() {
        let (_storage, array) = array();
        let index = VolumeIndex::following(array.as_ref());
        let a = create(array.as_ref(), "a");
        assert_eq!(names(&index, array.as_ref(), Scope::All), ["a"]);
        let reads = || index.state.lock().pool_reads;
        assert_eq!(reads(), 1);
        // Subscribed after the index, as the indication producer is: it reads the model
        // between a change's volume event and its PoolChanged.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (listener_index, listener_array, listener_seen) =
            (index.clone(), array.clone(), seen.clone());
        array
            .subscribe(Arc::new(move |e: &ChangeEvent| {
                if matches!(e, ChangeEvent::VolumeCreated(_)) {
                    let now = names(&listener_index, listener_array.as_ref(), Scope::All);
                    listener_seen.lock().push(now);
                }
            }))
            .expect("subscribe");
        let spec = VolumeSpec::default();
        array.snapshot(a.id, "s", &spec).expect("snapshot");
        create(array.as_ref(), "b");
        assert_eq!(*seen.lock(), [vec!["a", "s"], vec!["a", "s", "b"]]);
        assert_eq!(names(&index, array.as_ref(), Scope::All), ["a", "s", "b"]);
        assert_eq!(reads(), 1, "no pool was read again");
    }

    #[test]
    fn around_a_volume_are_its_source_and_its_replicas_only() {
        let (_storage, array) = array();
        let array = array.as_ref();
        let index = VolumeIndex::following(array);
        let a = create(array, "a");
        let b = create(array, "b");
        let spec = VolumeSpec::default();
        let s1 = array.snapshot(a.id, "s1", &spec).expect("snapshot");
        array.snapshot(s1.id, "s2", &spec).expect("snapshot");
        array.snapshot(b.id, "t", &spec).expect("snapshot");
        assert_eq!(
            names(&index, array, Scope::Around(s1.id)),
            ["a", "s1", "s2"]
        );
        assert_eq!(names(&index, array, Scope::Around(b.id)), ["b", "t"]);
        array.delete_volume(s1.id).expect("delete");
        assert_eq!(names(&index, array, Scope::Around(a.id)), ["a"]);
    }
}
