//! A pool: volumes, snapshots and their data on one device, with commits and background work.
//!
//! This module owns the pool state, its locks, its lifecycle (create, open, grow, close), the
//! commit and the background thread; `directory` the volume records (names, snapshot, restore,
//! tags), `data` the data path (read, write, block status), `zero` trim and write-zeroes,
//! `plan` write plans, `ranges` the per-block exclusion of writes, `reclaim` the reclaim of
//! deleted volumes, `group` the group commit of flushes.
//!
//! `check` runs online: it holds the gate for one commit, then reads that durable state from
//! the device while blocks freed after it stay reserved (`Meta::frees_held`).
//!
//! Concurrency: one mutex over the metadata state, an I/O gate (a read-write lock taken before
//! the mutex) and a commit lock (taken before the gate). Reads and writes hold the gate shared:
//! they look up (and for writes, allocate) under the mutex, do their device I/O without it, and
//! writes map their new blocks under it again. Every commit holds the commit lock from its start
//! until it lands and the gate exclusively while it freezes the transaction, so it never sees a
//! write half done, and every read that could use a block it frees has finished before the
//! block can become reusable (when it lands). The interval commit, flushes and the dirty bound's
//! commit let the gate go once frozen: the frozen commit is written and flushed while I/O and
//! the next transaction go on (see `Meta::freeze`), then lands under the mutex. Volume and
//! snapshot operations, reclaim and `check` hold the gate for their whole commit. Hence a write
//! acknowledged before `snapshot()` begins is in the snapshot, and one started after it began
//! waits and is not. Writes, trims and write-zeroes first hold the virtual blocks they touch in
//! a range lock (`ranges`, taken before the gate), so a read-modify-write of a partial block
//! never races another write to it. A background thread commits while dirty every
//! `commit_interval` and reclaims deleted volumes in bounded transactions, pausing between them
//! with the locks released. Flushes (and FUA writes that need a commit) share commits: each
//! waits for the commit that holds what it follows — the one freezing, the one being written
//! when nothing changed since it froze, or the next one, which one of them runs for all
//! (`group`).
//!
//! Invariants:
//! - Every volume and snapshot operation commits before it returns.
//! - A data block is overwritten in place only if its mapping was written in its volume's last
//!   share epoch or later (see `plan` and `directory::State::share`): then the volume owns it
//!   exclusively now and in every durable commit since; any other write is redirected to fresh
//!   blocks and remapped, old data is never read or copied. Shares hold the I/O gate
//!   exclusively, so they wait for in-place writes in flight, and commit before they return.
//! - A flush returns `Ok` only once a commit that froze after every write acknowledged before
//!   the flush is durable; it fails with the error of that commit if it is refused. A flush
//!   with nothing changed and nothing written in place since the last commit froze takes no
//!   lock but the state's, and commits nothing (it waits for the commit in flight, if any).
//! - One commit at a time: a commit freezes only after the one before it landed, so commits
//!   become durable in number order and a frozen commit's blocks are never written by another.
//! - A flush flushes the device even when nothing is left to commit, if data was written in
//!   place since the device was last flushed.
//! - A failed metadata write or flush, or an error in the middle of a metadata change other
//!   than `NoSpace` or a bad metadata block met on the way (`Corrupt`, `Io`: undone, that call
//!   fails alone), puts the pool in a failed state; every later call returns `PoolFailed` until
//!   it is reopened, and `close` returns that failure. A panic while the state lock is held does
//!   the same (the lock's guard fails the pool as it unwinds): a half-applied change is never
//!   committed.
//! - A reclaim error in a tombstone's tree quarantines that tombstone instead (see `reclaim`).
//! - Metadata reserve: every metadata change (`meta_op`) leaves usable what the next commit may
//!   allocate (`commit_need_blocks`) plus, unless it is reclaim, the floor only delete and
//!   reclaim may use; otherwise it is undone and answers `NoSpace`. The commit checks that it
//!   took no more than that bound.
//! - A write that finds no data space while blocks freed in the open transaction wait for its
//!   commit (reclamation rule) commits once and retries; `NoSpace` means the pool is really full.
//! - The commit a data request (write, trim, write-zeroes) calls for when it leaves too much
//!   dirty metadata bounds memory; it is not part of the request, whose change already stands
//!   in the open transaction. When that commit is refused and undone (the pool stays healthy,
//!   the transaction open), the next commit makes the change durable, and the request goes on
//!   as if the commit had not been due. A commit that failed the pool fails the request.
//! - Deleted volumes are tombstones (flag `deleting`, name freed) until the reclaimer has dropped
//!   their tree; tombstones are durable, so reclaim resumes after a crash.

mod data;
mod directory;
pub use directory::validate_volume_name;
#[cfg(test)]
mod dirty_bound_tests;
mod group;
mod plan;
mod ranges;
mod reclaim;
mod space;
pub use space::SpaceReport;
mod zero;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_io::BlockDevice;
use parking_lot::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::check::{check_durable, CheckReport, ProgressFn};
use crate::error::{err, Error, ErrorKind, Result};
use crate::format::{
    read_superblock, Root, Superblock, VolumeRecord, FORMAT_VERSION, SUPER_ADDRS,
    VOLUME_RECORD_BYTES,
};
use crate::limits::{
    BLOCK_SIZE_BYTES, BLOCK_SIZE_USIZE, COMMIT_SLACK_BLOCKS, DATA_ALLOC_HEADROOM_BLOCKS,
    DIRTY_BLOCKS_MAX, META_FLOOR_PER_MILLE, META_RESERVE_BLOCKS_MIN, META_RESERVE_PER_MILLE,
    NODE_CACHE_BYTES_MIN, POOL_BLOCKS_MIN, POOL_NAME_BYTES_MAX, RECLAIM_STEP_PAUSE,
};
use crate::meta::{Frozen, Meta};
use crate::node::TreeKind;
use crate::types::{PoolInfo, PoolOptions, VolumeId};
use crate::undo::Undo;
use group::{Commits, Turn};

/// An open pool. Send + Sync; every method takes `&self`. Its volumes are read and written here;
/// they are created, changed and deleted only through [`crate::Storage`], which keeps the daemon's
/// name registry exact.
pub struct Pool {
    inner: Arc<Inner>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

struct Inner {
    /// Held by every commit from its start until it has landed, and by everything that takes
    /// the gate exclusively: one commit at a time. Lock order: commit lock, gate, state.
    committing: Mutex<()>,
    /// The I/O gate (also in `Meta`): data I/O outside the state lock holds it shared, every
    /// commit holds it exclusively while it freezes (an operation that commits, for all of it).
    gate: Arc<RwLock<()>>,
    state: Mutex<State>,
    /// The numbered commits and the flushes waiting for them (also in `State`; taken after the
    /// state lock, see `group`).
    commits: Arc<Commits>,
    /// Blocks held by writes in flight (taken before the gate).
    blocks: ranges::BlockLocks,
    wake: Condvar,
    opts: PoolOptions,
}

/// Pools opened in this process so far: each opening counts its volume changes from its own
/// `opening << VOLUME_CHANGES_OPENING_SHIFT` (see `PoolInfo::volume_changes`).
static OPENINGS: AtomicU64 = AtomicU64::new(1);
/// 2^40 volume changes per opening before two openings' counts could meet.
const VOLUME_CHANGES_OPENING_SHIFT: u32 = 40;

pub(crate) struct State {
    pub meta: Meta,
    /// Numbers every commit as it begins and records how it ended (see `group`).
    commits: Arc<Commits>,
    name: String,
    uuid: [u8; 16],
    created_unix_secs: u64,
    next_seq: u64,
    vols: BTreeMap<u64, VolumeRecord>,
    by_id: HashMap<VolumeId, u64>,
    /// Live volumes by name (tombstones have none): names are checked and found in O(1).
    by_name: HashMap<String, u64>,
    dirty_vols: BTreeSet<u64>,
    removed_vols: BTreeSet<u64>,
    /// Tombstones reclaim has still to drop (not quarantined), oldest first; kept exact by
    /// every change of a record's `deleting` or `quarantined` flag (see `reclaim`).
    tombstones: BTreeSet<u64>,
    /// Tombstones quarantined.
    quarantined_count: usize,
    /// Tombstones keeping the tree a volume had when a write-zeroes of more than one step began
    /// on it, by volume; queued for reclaim when that request ends (see `zero`).
    keepers: HashMap<VolumeId, u64>,
    /// Every record by volume family, with the family's space figures (see `space`).
    families: HashMap<[u8; 16], space::Family>,
    hints: HashMap<u64, u64>,
    /// See `PoolInfo::volume_changes`.
    volume_changes: u64,
    failed: Option<String>,
    closed: bool,
    stop: bool,
    /// Test hook: the background thread leaves reclaim alone.
    reclaim_paused: bool,
    /// Dirty metadata blocks past which a data request commits: `DIRTY_BLOCKS_MAX`, lowered by
    /// the engine's own tests (the bound is out of reach of a test-sized pool).
    dirty_blocks_max: usize,
    /// Background reclaim met `NoSpace`; it waits for the next commit before trying again.
    reclaim_stalled: bool,
    /// Bounded steps run (trim, write-zeroes, reclaim) and the most mapping entries one of them
    /// covered: what one hold of the locks may cost a waiting request.
    steps: (u64, usize),
    last_commit: Instant,
    /// Data was written in place since the device was last flushed: a flush with no metadata
    /// to commit still flushes the device.
    data_unflushed: bool,
}

fn now_unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Checks a pool name: 1–64 of `A-Za-z0-9._-`.
pub(crate) fn validate_pool_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= POOL_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(err(
            ErrorKind::InvalidArgument,
            format!("pool name {name:?}"),
        ))
    }
}

fn reserve_for(blocks: u64) -> u64 {
    (blocks * META_RESERVE_PER_MILLE / 1000).max(META_RESERVE_BLOCKS_MIN)
}

/// Gives the superblocks and the reserve's room after them (see `Meta::reserve_region_end`)
/// their backing storage: in a pool file, metadata written there never meets a full host file
/// system.
fn preallocate_reserve(dev: &dyn BlockDevice, reserve_blocks: u64) -> Result<()> {
    let blocks = SUPER_ADDRS.len() as u64 + reserve_blocks;
    dev.preallocate(0, blocks * BLOCK_SIZE_BYTES)
        .map_err(|e| Error::io("preallocate the metadata reserve", e))
}

/// Preallocates the whole device when the pool is configured so (`PoolOptions::preallocate`).
fn preallocate_whole(dev: &dyn BlockDevice, opts: &PoolOptions) -> Result<()> {
    if !opts.preallocate {
        return Ok(());
    }
    dev.preallocate(0, dev.size_bytes())
        .map_err(|e| Error::io("preallocate the pool file", e))
}

/// The part of a metadata reserve of `reserve_blocks` that only delete and reclaim may use.
fn floor_for(reserve_blocks: u64) -> u64 {
    reserve_blocks * META_FLOOR_PER_MILLE / 1000
}

/// Errors a metadata change (or a commit's preparation) is undone for, failing that call
/// alone: no block within its floor (`NoSpace`), or a bad metadata block met on the way
/// (`Corrupt`, or `Io` reading it).
fn undoable(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::NoSpace | ErrorKind::Corrupt | ErrorKind::Io
    )
}

/// Who may draw on the metadata floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tier {
    /// Writes, trims, write-zeroes, snapshots, restores: they leave the floor alone.
    Ordinary,
    /// Reclaim of deleted volumes: may use the floor, never what the next commit needs.
    Release,
}
impl Pool {
    /// Formats `dev` as a new, empty pool named `name`.
    pub fn create(dev: Arc<dyn BlockDevice>, name: &str, opts: PoolOptions) -> Result<Arc<Pool>> {
        validate_pool_name(name)?;
        let blocks = dev.size_bytes() / BLOCK_SIZE_BYTES;
        if blocks < POOL_BLOCKS_MIN {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!(
                    "device of {} bytes is too small for a pool",
                    dev.size_bytes()
                ),
            ));
        }
        preallocate_reserve(dev.as_ref(), reserve_for(blocks))?;
        preallocate_whole(dev.as_ref(), &opts)?;
        let zero = vec![0u8; BLOCK_SIZE_USIZE];
        for a in SUPER_ADDRS {
            dev.write_at(a * BLOCK_SIZE_BYTES, &zero)
                .map_err(|e| Error::io("clear superblocks", e))?;
        }
        let mut uuid = [0u8; 16];
        rand::Rng::fill(&mut rand::thread_rng(), &mut uuid[..]);
        let sb = Superblock {
            gen: 0,
            version: FORMAT_VERSION,
            uuid,
            name: name.to_string(),
            device_blocks: blocks,
            dir: Root::default(),
            rc: Root::default(),
            space: Root::default(),
            next_seq: 1,
            allocated_blocks: 0,
            data_blocks: 0,
            meta_blocks: 0,
            reserve_blocks: reserve_for(blocks),
            created_unix_secs: now_unix_secs(),
            share_epoch: 0,
        };
        let mut st = State::new(dev, sb, &opts);
        st.meta.mark_superblocks()?;
        let gate = st.meta.io_gate.clone();
        let excl = gate.write();
        st.commit()?;
        drop(excl);
        Pool::start(st, opts)
    }

    /// Opens the pool on `dev`: the valid superblock with the highest generation, then the volume
    /// directory (O(volumes); no volume tree, refcount or space-map block is read). A pool of an
    /// older format version is first upgraded to the current one (all its metadata rewritten in
    /// one commit; see `docs/format.md`).
    pub fn open(dev: Arc<dyn BlockDevice>, opts: PoolOptions) -> Result<Arc<Pool>> {
        let sb = read_superblock(dev.as_ref())?;
        if dev.size_bytes() / BLOCK_SIZE_BYTES < sb.device_blocks {
            return Err(err(
                ErrorKind::Corrupt,
                format!(
                    "device holds {} blocks, the pool {}",
                    dev.size_bytes() / BLOCK_SIZE_BYTES,
                    sb.device_blocks
                ),
            ));
        }
        preallocate_whole(dev.as_ref(), &opts)?;
        let mut st = State::new(dev, sb, &opts);
        if st.meta.id.version < FORMAT_VERSION {
            st.meta.upgrade()?;
        }
        st.load_directory()?;
        Pool::start(st, opts)
    }

    fn start(st: State, opts: PoolOptions) -> Result<Arc<Pool>> {
        let inner = Arc::new(Inner {
            committing: Mutex::new(()),
            gate: st.meta.io_gate.clone(),
            commits: st.commits.clone(),
            state: Mutex::new(st),
            blocks: ranges::BlockLocks::default(),
            wake: Condvar::new(),
            opts,
        });
        let bg = inner.clone();
        let handle = std::thread::Builder::new()
            .name("cairn-pool".into())
            .spawn(move || background(bg))
            .map_err(|e| err(ErrorKind::Io, "start the pool thread").with_source(e))?;
        Ok(Arc::new(Pool {
            inner,
            worker: Mutex::new(Some(handle)),
        }))
    }

    fn lock(&self) -> StateGuard<'_> {
        self.inner.lock()
    }

    fn live(&self) -> Result<StateGuard<'_>> {
        let st = self.lock();
        st.live()?;
        Ok(st)
    }

    /// For operations that commit: no data I/O in flight, nothing else running.
    fn exclusive(&self) -> Result<(Exclusive<'_>, StateGuard<'_>)> {
        self.inner.exclusive()
    }

    /// For data operations: commits wait until the guard is dropped.
    fn shared(&self) -> Result<(RwLockReadGuard<'_, ()>, StateGuard<'_>)> {
        let gate = self.inner.gate.read();
        let st = self.live()?;
        Ok((gate, st))
    }

    /// Commits when the dirty metadata grew past its bound (called with no guard held, after
    /// the request's change was made). A refusal that left the pool healthy is not the
    /// request's (see the invariants); one that failed the pool is.
    fn commit_if_too_dirty(&self, too_dirty: bool) -> Result<()> {
        if !too_dirty {
            return Ok(());
        }
        match self.inner.commit_concurrently(|| false) {
            Err(e) if self.lock().failed.is_none() => {
                tracing::debug!("the dirty bound's commit refused: {e}");
                Ok(())
            }
            r => r,
        }
    }

    pub fn name(&self) -> String {
        self.lock().name.clone()
    }

    pub fn info(&self) -> PoolInfo {
        self.lock().info()
    }

    /// Re-reads the device size and extends the pool to it.
    pub fn grow(&self) -> Result<PoolInfo> {
        let (_gate, mut st) = self.exclusive()?;
        let size = st
            .meta
            .dev
            .refresh_size()
            .map_err(|e| Error::io("re-read device size", e))?;
        let blocks = size / BLOCK_SIZE_BYTES;
        if blocks < st.meta.device_blocks {
            return Err(err(
                ErrorKind::InvalidArgument,
                "device is smaller than the pool",
            ));
        }
        preallocate_reserve(st.meta.dev.as_ref(), reserve_for(blocks))?;
        preallocate_whole(st.meta.dev.as_ref(), &self.inner.opts)?;
        st.meta.device_blocks = blocks;
        st.meta.reserve_blocks = reserve_for(blocks);
        st.meta.reset_backing(self.inner.opts.preallocate);
        st.meta.touch()?;
        st.commit()?;
        Ok(st.info())
    }

    /// Final commit and stop of background work; later calls fail with `PoolFailed`.
    pub fn close(&self) -> Result<()> {
        let res = {
            let _excl = self.inner.exclusive_guard();
            let mut st = self.lock();
            if st.closed {
                return st.failure().map_or(Ok(()), Err);
            }
            let r = match st.failure() {
                None => st.commit(),
                Some(e) => Err(e),
            };
            if let (Err(e), true) = (&r, st.failed.is_none()) {
                // A final commit the host refused: what it held goes with the pool's memory.
                st.fail(e);
            }
            debug_assert!(
                r.is_ok() == st.failed.is_none(),
                "close reports the failure"
            );
            st.closed = true;
            st.stop = true;
            r
        };
        self.inner.wake.notify_all();
        if let Some(h) = self.worker.lock().take() {
            let _ = h.join();
        }
        res
    }

    /// Makes everything acknowledged before the call durable (group commit, see `group`):
    /// nothing to do if nothing changed since the last commit; else it joins the commit running,
    /// or the next one, which one of the flushes waiting for it runs for all of them.
    pub fn flush(&self) -> Result<()> {
        let target = {
            let st = self.lock();
            st.live()?;
            match self
                .inner
                .commits
                .target(st.is_dirty() || st.data_unflushed)
            {
                Some(target) => target,
                None => return Ok(()),
            }
        };
        loop {
            match self.inner.commits.wait(target) {
                Turn::Settled(r) => return r,
                Turn::Lead(_leading) => self.lead_commit(target)?,
            }
        }
    }

    /// Runs the commit flushes up to `target` wait for, unless one that began while this one
    /// waited for the gate covered it. Its outcome reaches every flush waiting (see `group`).
    fn lead_commit(&self, target: u64) -> Result<()> {
        // Settled already: the waiting loop returns its outcome.
        let commits = &self.inner.commits;
        self.inner
            .commit_concurrently(|| commits.settled_for_leader(target))
    }

    /// Checks the last durable state (committing first, so it is the current state) online:
    /// the gate is held for that commit only, then I/O, commits and volume changes go on while
    /// the check reads the frozen commit's blocks straight from the device. None of them is
    /// reused meanwhile: blocks freed after it stay reserved until the check ends (the first
    /// commit after it makes them reusable), so a long check on a busy pool holds that space.
    pub fn check(&self) -> Result<CheckReport> {
        self.check_inner(None)
    }

    /// [`Pool::check`], reporting its progress to `progress` (called on the checking thread,
    /// no pool lock held).
    pub fn check_with_progress(&self, progress: ProgressFn) -> Result<CheckReport> {
        self.check_inner(Some(progress))
    }

    fn check_inner(&self, progress: Option<ProgressFn>) -> Result<CheckReport> {
        let (dev, durable) = {
            let (_gate, mut st) = self.exclusive()?;
            st.commit()?;
            st.assert_tombstones_indexed();
            st.assert_families_indexed();
            st.meta.frees_held += 1;
            (st.meta.dev.clone(), st.meta.durable.clone())
        };
        let _held = FreesHeld(self);
        check_durable(dev, durable, progress)
    }

    /// Test hook: flushes waiting for a commit that another flush (or the pool) runs.
    #[doc(hidden)]
    pub fn flush_waiters(&self) -> usize {
        self.inner.commits.waiting()
    }

    /// Test hook: bounded steps run so far (trim, write-zeroes, reclaim) and the most mapping
    /// entries one step covered (each step holds the locks once).
    #[doc(hidden)]
    pub fn step_counts(&self) -> (u64, usize) {
        self.lock().steps
    }

    /// Test hook: forgets the clean metadata held in memory, so the next calls read it again.
    #[doc(hidden)]
    pub fn drop_clean_caches(&self) {
        self.lock().meta.drop_clean();
    }

    /// Test and benchmark hook: blocks currently allocated in the space map.
    #[doc(hidden)]
    pub fn allocated_blocks(&self) -> u64 {
        self.lock().meta.allocated_blocks
    }
}

/// An online check running: blocks freed stay reserved until it is dropped.
struct FreesHeld<'a>(&'a Pool);

impl Drop for FreesHeld<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        assert!(st.meta.frees_held > 0, "a check holds frees");
        st.meta.frees_held -= 1;
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.inner.state.try_lock() {
            Some(st) => f
                .debug_struct("Pool")
                .field("name", &st.name)
                .field("generation", &st.meta.gen())
                .field("failed", &st.failed)
                .finish(),
            None => f.debug_struct("Pool").finish_non_exhaustive(),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        {
            let mut st = self.lock();
            st.stop = true;
        }
        self.inner.wake.notify_all();
        if let Some(h) = self.worker.get_mut().take() {
            let _ = h.join();
        }
    }
}

impl Inner {
    fn lock(&self) -> StateGuard<'_> {
        StateGuard(self.state.lock())
    }

    /// The commit lock and the gate, exclusively.
    fn exclusive_guard(&self) -> Exclusive<'_> {
        let committing = self.committing.lock();
        Exclusive {
            _gate: self.gate.write(),
            _committing: committing,
        }
    }

    fn exclusive(&self) -> Result<(Exclusive<'_>, StateGuard<'_>)> {
        let excl = self.exclusive_guard();
        let st = self.lock();
        st.live()?;
        Ok((excl, st))
    }

    /// Commits while I/O goes on: the gate is held only while the transaction freezes; reads,
    /// writes and the next transaction's changes go on while the frozen commit is written, and
    /// it lands under the state lock. Nothing is done when `covered` (asked under the gate)
    /// says the commit is not needed any more.
    fn commit_concurrently(&self, covered: impl FnOnce() -> bool) -> Result<()> {
        let _committing = self.committing.lock();
        let (ticket, frozen, dev) = {
            let gate = self.gate.write();
            let mut st = self.lock();
            st.live()?;
            if covered() {
                return Ok(());
            }
            let ticket = self.commits.begin();
            let frozen = match st.freeze() {
                Ok(Some(frozen)) => frozen,
                r => {
                    let r = r.map(|_| ());
                    ticket.end(&r);
                    return r;
                }
            };
            // Writes acknowledged from now on are the next commit's.
            ticket.frozen();
            let dev = st.meta.dev.clone();
            drop((st, gate));
            (ticket, frozen, dev)
        };
        let written = {
            let _writing = Writing(self);
            frozen.write(dev.as_ref())
        };
        let r = self.lock().land(frozen, written);
        ticket.end(&r);
        r
    }
}

/// The commit lock and the I/O gate held exclusively (the gate is released first).
struct Exclusive<'a> {
    _gate: RwLockWriteGuard<'a, ()>,
    _committing: MutexGuard<'a, ()>,
}

/// A frozen commit being written with no pool lock held: a panic on the way fails the pool
/// (its commit never lands).
struct Writing<'a>(&'a Inner);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut st = self.0.lock();
            if st.failed.is_none() {
                st.fail(&err(
                    ErrorKind::PoolFailed,
                    "a panic while a commit was written",
                ));
            }
        }
    }
}

/// The state lock, held. parking_lot mutexes do not poison, so a panic inside a locked section
/// would leave a half-applied change for a later commit to make durable: this guard, dropped
/// while the thread unwinds, fails the pool instead (dropping the open transaction).
pub(crate) struct StateGuard<'a>(MutexGuard<'a, State>);

impl std::ops::Deref for StateGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.0
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.0
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() && self.0.failed.is_none() {
            let e = err(ErrorKind::PoolFailed, "a panic inside a metadata change");
            self.0.fail(&e);
        }
    }
}

/// Background work: interval commits and reclaim of deleted volumes.
fn background(inner: Arc<Inner>) {
    let interval = inner.opts.commit_interval;
    loop {
        {
            let mut st = inner.lock();
            if st.stop {
                return;
            }
            if !st.background_work(interval) {
                let wait = interval.unwrap_or(Duration::from_secs(3600));
                inner.wake.wait_for(&mut st.0, wait);
                continue;
            }
        }
        // Work to do: take the commit lock and the gate first (lock order), then check again
        // under the state lock.
        let Ok((excl, mut st)) = inner.exclusive() else {
            continue;
        };
        if st.stop {
            return;
        }
        if st.reclaim_due() {
            if let Err(e) = st.reclaim_step() {
                tracing::warn!("pool {}: reclaim waits for a commit: {e}", st.name);
                // Out of space, or its commit refused (undone, the transaction open).
                st.reclaim_stalled = undoable(&e);
            }
            // Paced: the locks are free between steps, so foreground requests get in.
            drop((st, excl));
            let mut st = inner.lock();
            if !st.stop {
                inner.wake.wait_for(&mut st.0, RECLAIM_STEP_PAUSE);
            }
        } else if st.background_work(interval) {
            drop((st, excl));
            if inner.commit_concurrently(|| false).is_err() {
                // Refused (and undone): tried again after another interval, not at once.
                let mut st = inner.lock();
                if st.healthy() && !st.stop {
                    inner
                        .wake
                        .wait_for(&mut st.0, interval.unwrap_or(RECLAIM_STEP_PAUSE));
                }
            }
        }
    }
}

impl State {
    fn new(dev: Arc<dyn BlockDevice>, sb: Superblock, opts: &PoolOptions) -> State {
        let cache_nodes = opts.node_cache_bytes.max(NODE_CACHE_BYTES_MIN) / BLOCK_SIZE_USIZE;
        State {
            name: sb.name.clone(),
            uuid: sb.uuid,
            created_unix_secs: sb.created_unix_secs,
            next_seq: sb.next_seq,
            meta: Meta::new(dev, sb, cache_nodes, opts.preallocate),
            commits: Arc::default(),
            vols: BTreeMap::new(),
            by_id: HashMap::new(),
            by_name: HashMap::new(),
            dirty_vols: BTreeSet::new(),
            removed_vols: BTreeSet::new(),
            tombstones: BTreeSet::new(),
            quarantined_count: 0,
            keepers: HashMap::new(),
            families: HashMap::new(),
            hints: HashMap::new(),
            volume_changes: OPENINGS.fetch_add(1, Ordering::Relaxed)
                << VOLUME_CHANGES_OPENING_SHIFT,
            failed: None,
            closed: false,
            stop: false,
            reclaim_paused: false,
            dirty_blocks_max: DIRTY_BLOCKS_MAX,
            reclaim_stalled: false,
            steps: (0, 0),
            last_commit: Instant::now(),
            data_unflushed: false,
        }
    }

    fn live(&self) -> Result<()> {
        if self.closed {
            return Err(err(
                ErrorKind::PoolFailed,
                format!("pool {} is closed", self.name),
            ));
        }
        match self.failure() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn fail(&mut self, e: &Error) {
        tracing::error!("pool {} failed: {e}", self.name);
        self.failed = Some(e.to_string());
        self.meta.forget_dirty();
        debug_assert!(
            !self.meta.is_dirty(),
            "a failed pool keeps nothing to commit"
        );
    }

    /// The error a failed pool answers with (`None` while healthy).
    fn failure(&self) -> Option<Error> {
        let f = self.failed.as_ref()?;
        Some(err(
            ErrorKind::PoolFailed,
            format!("pool {}: {f}", self.name),
        ))
    }

    /// Blocks the next commit may allocate at most for the changes made so far: every dirty
    /// bitmap page is rewritten to a fresh block and re-indexed in the space tree (a path shadowed
    /// and split), and so is the page its old location lies in; every changed volume record is
    /// rewritten in the directory tree.
    fn commit_need_blocks(&self) -> u64 {
        let m = &self.meta;
        let pages = 2 * (m.dirty_pages() as u64 + 1);
        let space_path = 2 * u64::from(m.space_root.height) + 2;
        let records = (self.dirty_vols.len() + self.removed_vols.len() + 1) as u64;
        let dir_path = 2 * u64::from(m.dir_root.height) + 2;
        pages * (1 + space_path) + records * dir_path + COMMIT_SLACK_BLOCKS
    }

    /// Usable blocks an operation of `tier` must leave: what the commit needs, and for ordinary
    /// operations the floor that only delete and reclaim may use.
    fn floor_blocks(&self, tier: Tier) -> u64 {
        let floor = match tier {
            Tier::Ordinary => floor_for(self.meta.reserve_blocks),
            Tier::Release => 0,
        };
        self.commit_need_blocks() + floor
    }

    /// Fails with `NoSpace` unless the floor of `tier` is still usable.
    pub(crate) fn ensure_room(&self, tier: Tier) -> Result<()> {
        if self.meta.usable_blocks() < self.floor_blocks(tier) {
            return Err(err(
                ErrorKind::NoSpace,
                "metadata reserve reached: too little left for the commit",
            ));
        }
        Ok(())
    }

    /// Runs one metadata change. It either finishes leaving its tier's floor usable, or changes
    /// nothing and answers `NoSpace` (the pool stays healthy). A bad metadata block met on the
    /// way (`Corrupt`, or `Io` reading it) is undone the same way and fails that request only.
    /// Any other error in it fails the pool (its state may be half-changed).
    pub(crate) fn meta_op<T>(
        &mut self,
        tier: Tier,
        f: impl FnOnce(&mut Meta) -> Result<T>,
    ) -> Result<T> {
        self.meta_op_kept(tier, f).map(|(v, _)| v)
    }

    /// [`State::meta_op`], handing back the log of what it changed (see `Meta::undo_kept`).
    pub(crate) fn meta_op_kept<T>(
        &mut self,
        tier: Tier,
        f: impl FnOnce(&mut Meta) -> Result<T>,
    ) -> Result<(T, Box<Undo>)> {
        self.meta.begin_op(self.floor_blocks(tier));
        // What it changed may have grown what the commit needs past what is left.
        let r = f(&mut self.meta).and_then(|v| self.ensure_room(tier).map(|()| v));
        match r {
            Ok(v) => Ok((v, self.meta.end_op_kept())),
            Err(e) if undoable(&e) => {
                self.meta.abort_op();
                Err(e)
            }
            Err(e) => {
                self.meta.end_op();
                self.fail(&e);
                Err(e)
            }
        }
    }

    fn healthy(&self) -> bool {
        self.failed.is_none() && !self.closed
    }

    /// Is there reclaim to do, or a dirty transaction older than the commit interval?
    fn background_work(&self, interval: Option<Duration>) -> bool {
        if !self.healthy() {
            return false;
        }
        if self.reclaim_due() {
            return true;
        }
        interval.is_some_and(|iv| self.is_dirty() && self.last_commit.elapsed() >= iv)
    }

    /// Should the background thread run a reclaim step now?
    fn reclaim_due(&self) -> bool {
        !self.reclaim_paused && !self.reclaim_stalled && self.reclaim_pending()
    }

    fn is_dirty(&self) -> bool {
        self.meta.is_dirty() || !self.dirty_vols.is_empty() || !self.removed_vols.is_empty()
    }

    /// Commits the transaction at once. The caller holds the I/O gate exclusively (and with it
    /// the commit lock): no data I/O is in flight, so no write is half done and no read still
    /// uses a block freed here. The commit is numbered for the flushes that wait for it (see
    /// `group`), with its outcome.
    pub(crate) fn commit(&mut self) -> Result<()> {
        debug_assert!(
            self.meta.io_gate.is_locked_exclusive(),
            "commit without the I/O gate"
        );
        self.live()?;
        let commits = self.commits.clone();
        let ticket = commits.begin();
        let r = match self.freeze() {
            Ok(Some(frozen)) => {
                let written = frozen.write(self.meta.dev.as_ref());
                self.land(frozen, written)
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        ticket.end(&r);
        r
    }

    /// Freezes the transaction for its commit (the caller holds the I/O gate exclusively); the
    /// state goes on as the next transaction. `None`: nothing to commit (data written in place
    /// is flushed). Refused before anything changed (`NoSpace`, a bad metadata block): undone,
    /// the transaction stays open. Any other error fails the pool.
    fn freeze(&mut self) -> Result<Option<Frozen>> {
        if !self.is_dirty() {
            return self.flush_data().map(|()| None);
        }
        // Every operation left this much usable; the commit must not take more.
        let need = self.commit_need_blocks();
        let allocs_before = self.meta.unfloored_allocs;
        match self.prepare_commit() {
            Err(e) if undoable(&e) && self.meta.undo.is_none() => {
                debug_assert!(self.is_dirty(), "a refused commit keeps its transaction");
                tracing::warn!("pool {}: commit refused: {e}", self.name);
                return Err(e);
            }
            Err(e) => {
                self.fail(&e);
                return Err(e);
            }
            Ok(()) => {}
        }
        let frozen = match self.meta.freeze(self.superblock_fields()) {
            Ok(f) => f,
            Err(e) => {
                self.fail(&e);
                return Err(e);
            }
        };
        // Its flush covers every write done in place so far (none is in flight).
        self.data_unflushed = false;
        let took = self.meta.unfloored_allocs - allocs_before;
        // A bound that is too low is a bug, but not one of this commit, which found its blocks.
        debug_assert!(
            took <= need,
            "commit took {took} metadata blocks, bound {need}"
        );
        if took > need {
            tracing::error!(
                "pool {}: commit took {took} metadata blocks, bound {need}",
                self.name
            );
        }
        Ok(Some(frozen))
    }

    /// The frozen commit was written (`written`): it lands, or its failure fails the pool (what
    /// it lost cannot be told). A pool that failed meanwhile stays failed.
    fn land(&mut self, frozen: Frozen, written: Result<()>) -> Result<()> {
        if let Err(e) = written {
            if self.failed.is_none() {
                self.fail(&e);
            }
            return Err(e);
        }
        if let Some(e) = self.failure() {
            return Err(e);
        }
        self.meta.land(frozen);
        self.last_commit = Instant::now();
        self.reclaim_stalled = false;
        Ok(())
    }

    /// Makes every metadata change of the commit (directory records, bitmap page locations,
    /// the space tree), each allocation preallocated where it must be, as one operation: when
    /// a block is refused (`NoSpace`) or a metadata block it reads is bad (`Corrupt`, `Io`),
    /// all of it is undone (nothing is written yet). Any other error leaves the operation open
    /// (the caller fails the pool).
    fn prepare_commit(&mut self) -> Result<()> {
        let removed = std::mem::take(&mut self.removed_vols);
        let dirty = std::mem::take(&mut self.dirty_vols);
        self.meta.begin_commit_op();
        match self.commit_directory(&removed, &dirty) {
            Ok(()) => {
                self.meta.end_op();
                Ok(())
            }
            Err(e) if undoable(&e) => {
                self.meta.abort_op();
                (self.removed_vols, self.dirty_vols) = (removed, dirty);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    fn commit_directory(&mut self, removed: &BTreeSet<u64>, dirty: &BTreeSet<u64>) -> Result<()> {
        let mut buf = vec![0u8; VOLUME_RECORD_BYTES];
        for &seq in removed {
            self.meta.dir_root = self
                .meta
                .remove(TreeKind::Directory, self.meta.dir_root, seq)?
                .0;
        }
        for &seq in dirty {
            self.vols[&seq].encode(&mut buf);
            self.meta.dir_root =
                self.meta
                    .insert(TreeKind::Directory, self.meta.dir_root, seq, &buf)?;
        }
        self.meta.converge_space()
    }

    /// The superblock fields the pool keeps (the space fields are the metadata's).
    fn superblock_fields(&self) -> Superblock {
        Superblock {
            gen: 0,
            version: FORMAT_VERSION,
            uuid: self.uuid,
            name: self.name.clone(),
            device_blocks: 0,
            dir: Root::default(),
            rc: Root::default(),
            space: Root::default(),
            next_seq: self.next_seq,
            allocated_blocks: 0,
            data_blocks: 0,
            meta_blocks: 0,
            reserve_blocks: 0,
            created_unix_secs: self.created_unix_secs,
            share_epoch: 0,
        }
    }

    /// Flushes the device when data was written in place since its last flush (nothing to
    /// commit: the mappings of those blocks are durable). A failed flush fails the pool: which
    /// writes it lost cannot be told, so no later flush may pretend they are durable.
    fn flush_data(&mut self) -> Result<()> {
        if !self.data_unflushed {
            return Ok(());
        }
        if let Err(e) = self.meta.dev.flush() {
            let e = Error::io("flush data written in place", e);
            self.fail(&e);
            return Err(e);
        }
        self.data_unflushed = false;
        Ok(())
    }

    /// Counts one bounded step that covered `entries` mapping entries.
    fn count_step(&mut self, entries: usize) {
        self.steps = (self.steps.0 + 1, self.steps.1.max(entries));
    }

    /// Dirty nodes and bitmap pages of the open transaction, one block of memory each, past the
    /// bound.
    fn too_dirty(&self) -> bool {
        self.meta.dirty.len() + self.meta.open_pages() > self.dirty_blocks_max
    }

    fn info(&self) -> PoolInfo {
        #[cfg(debug_assertions)]
        self.assert_tombstones_indexed();
        #[cfg(debug_assertions)]
        self.assert_families_indexed();
        let m = &self.meta;
        let usable = m.usable_blocks();
        PoolInfo {
            name: self.name.clone(),
            uuid: self.uuid,
            size_bytes: m.device_blocks * BLOCK_SIZE_BYTES,
            data_bytes_total: m.device_blocks.saturating_sub(m.reserve_blocks + 2)
                * BLOCK_SIZE_BYTES,
            data_bytes_used: m.data_blocks * BLOCK_SIZE_BYTES,
            data_bytes_free: usable.saturating_sub(m.reserve_blocks + DATA_ALLOC_HEADROOM_BLOCKS)
                * BLOCK_SIZE_BYTES,
            metadata_bytes_total: m.reserve_blocks * BLOCK_SIZE_BYTES,
            metadata_bytes_used: m.meta_blocks * BLOCK_SIZE_BYTES,
            volume_count: self.by_id.len(),
            volume_changes: self.volume_changes,
            generation: m.gen(),
            reclaim_pending: self.reclaim_pending(),
            quarantined_volumes: self.quarantined_count,
            failed: self.failed.clone(),
        }
    }
}
