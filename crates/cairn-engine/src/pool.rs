//! A pool: volumes, snapshots and their data on one device, with commits and background work.
//!
//! Concurrency: one mutex over the metadata state, and an I/O gate (a read-write lock taken
//! before the mutex). Reads and writes hold the gate shared: they look up (and for writes,
//! allocate) under the mutex, do their device I/O without it, and writes map their new blocks
//! under it again. Every commit — flush, volume and snapshot operations, background work —
//! holds the gate exclusively, so it never sees a write half done, and no read still uses a
//! block the commit makes reusable. Hence a write acknowledged before `snapshot()` begins is in
//! the snapshot, and one started after it began waits and is not.
//! A background thread commits while dirty every `commit_interval` and reclaims deleted volumes
//! in bounded transactions.
//!
//! Invariants:
//! - Every volume and snapshot operation commits before it returns.
//! - A data block is overwritten in place only if it was allocated in the current transaction
//!   (then it is exclusively owned now and unknown to the durable state); any other write is
//!   redirected to fresh blocks and remapped, old data is never read or copied.
//! - A failed metadata write or flush, or an error in the middle of a metadata change, puts the
//!   pool in a failed state; every later call returns `PoolFailed` until it is reopened.
//! - A write that finds no data space while blocks freed in the open transaction wait for its
//!   commit (reclamation rule) commits once and retries; `NoSpace` means the pool is really full.
//! - Deleted volumes are tombstones (flag `deleting`, name freed) until the reclaimer has dropped
//!   their tree; tombstones are durable, so reclaim resumes after a crash.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_io::BlockDevice;
use parking_lot::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::check::{check_locked, CheckReport};
use crate::error::{err, Error, ErrorKind, Result};
use crate::format::{
    Root, Superblock, VolumeRecord, SUPER_ADDRS, VF_DELETING, VF_HIDDEN, VF_READ_ONLY,
    VOLUME_RECORD_BYTES,
};
use crate::limits::*;
use crate::mapping::Piece;
use crate::meta::Meta;
use crate::node::TreeKind;
use crate::types::{Extent, PoolInfo, PoolOptions, VolumeId, VolumeInfo, VolumeOptions};

const BS: u64 = BLOCK_SIZE_BYTES;

/// An open pool. Send + Sync; every method takes `&self`.
pub struct Pool {
    inner: Arc<Inner>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

struct Inner {
    /// The I/O gate (also in `Meta`): data I/O outside the state lock holds it shared, every
    /// commit holds it exclusively. Lock order: gate, then state.
    gate: Arc<RwLock<()>>,
    state: Mutex<State>,
    wake: Condvar,
    opts: PoolOptions,
}

pub(crate) struct State {
    pub meta: Meta,
    name: String,
    uuid: [u8; 16],
    created_unix_secs: u64,
    next_seq: u64,
    vols: BTreeMap<u64, VolumeRecord>,
    by_id: HashMap<VolumeId, u64>,
    dirty_vols: BTreeSet<u64>,
    removed_vols: BTreeSet<u64>,
    hints: HashMap<u64, u64>,
    failed: Option<String>,
    closed: bool,
    stop: bool,
    /// Test hook: the background thread leaves reclaim alone.
    reclaim_paused: bool,
    last_commit: Instant,
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

/// Checks a volume name: 1–64 printable characters, no control characters, no '/', no leading
/// or trailing space.
pub(crate) fn validate_volume_name(name: &str) -> Result<()> {
    let chars = name.chars().count();
    let ok = (1..=VOLUME_NAME_CHARS_MAX).contains(&chars)
        && name.len() <= VOLUME_NAME_BYTES_MAX
        && !name.chars().any(|c| c.is_control() || c == '/')
        && !name.starts_with(char::is_whitespace)
        && !name.ends_with(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(err(
            ErrorKind::InvalidArgument,
            format!("volume name {name:?}"),
        ))
    }
}

fn validate_size(size_bytes: u64) -> Result<()> {
    if size_bytes == 0 || size_bytes % BS != 0 || size_bytes > VOLUME_SIZE_BYTES_MAX {
        return Err(err(
            ErrorKind::InvalidArgument,
            format!("volume size {size_bytes} (a non-zero multiple of 4096, at most 1 PiB)"),
        ));
    }
    Ok(())
}

fn reserve_for(blocks: u64) -> u64 {
    (blocks * META_RESERVE_PER_MILLE / 1000).max(META_RESERVE_BLOCKS_MIN)
}

fn info_of(r: &VolumeRecord) -> VolumeInfo {
    VolumeInfo {
        id: VolumeId(r.id),
        name: r.name.clone(),
        size_bytes: r.size_bytes,
        logical_block_size: r.logical_block_size,
        read_only: r.flags & VF_READ_ONLY != 0,
        hidden: r.flags & VF_HIDDEN != 0,
        parent: r.parent.map(VolumeId),
        created_unix_secs: r.created_unix_secs,
        tag: r.tag.clone(),
    }
}

impl Pool {
    /// Formats `dev` as a new, empty pool named `name`.
    pub fn create(dev: Arc<dyn BlockDevice>, name: &str, opts: PoolOptions) -> Result<Arc<Pool>> {
        validate_pool_name(name)?;
        let blocks = dev.size_bytes() / BS;
        if blocks < POOL_BLOCKS_MIN {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!(
                    "device of {} bytes is too small for a pool",
                    dev.size_bytes()
                ),
            ));
        }
        let zero = vec![0u8; BLOCK_SIZE_USIZE];
        for a in SUPER_ADDRS {
            dev.write_at(a * BS, &zero)
                .map_err(|e| Error::io("clear superblocks", e))?;
        }
        let mut uuid = [0u8; 16];
        rand::Rng::fill(&mut rand::thread_rng(), &mut uuid[..]);
        let sb = Superblock {
            gen: 0,
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
        };
        let mut st = State::new(dev, sb, &opts);
        st.meta.mark_superblocks()?;
        let gate = st.meta.io_gate.clone();
        let excl = gate.write();
        st.commit()?;
        drop(excl);
        Pool::start(st, opts)
    }

    /// Opens the pool on `dev`: the valid superblock with the highest generation, no scan.
    pub fn open(dev: Arc<dyn BlockDevice>, opts: PoolOptions) -> Result<Arc<Pool>> {
        let sb = read_superblock(dev.as_ref())?;
        if dev.size_bytes() / BS < sb.device_blocks {
            return Err(err(
                ErrorKind::Corrupt,
                format!(
                    "device holds {} blocks, the pool {}",
                    dev.size_bytes() / BS,
                    sb.device_blocks
                ),
            ));
        }
        let mut st = State::new(dev, sb, &opts);
        st.load_directory()?;
        Pool::start(st, opts)
    }

    fn start(st: State, opts: PoolOptions) -> Result<Arc<Pool>> {
        let inner = Arc::new(Inner {
            gate: st.meta.io_gate.clone(),
            state: Mutex::new(st),
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

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock()
    }

    fn live(&self) -> Result<MutexGuard<'_, State>> {
        let st = self.lock();
        st.live()?;
        Ok(st)
    }

    /// For operations that commit: no data I/O in flight, nothing else running.
    fn exclusive(&self) -> Result<(RwLockWriteGuard<'_, ()>, MutexGuard<'_, State>)> {
        let gate = self.inner.gate.write();
        let st = self.live()?;
        Ok((gate, st))
    }

    /// For data operations: commits wait until the guard is dropped.
    fn shared(&self) -> Result<(RwLockReadGuard<'_, ()>, MutexGuard<'_, State>)> {
        let gate = self.inner.gate.read();
        let st = self.live()?;
        Ok((gate, st))
    }

    /// Commits when the dirty metadata grew past its bound (called with no guard held).
    fn commit_if_too_dirty(&self, too_dirty: bool) -> Result<()> {
        if too_dirty {
            let (_gate, mut st) = self.exclusive()?;
            st.commit()?;
        }
        Ok(())
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
        let blocks = size / BS;
        if blocks < st.meta.device_blocks {
            return Err(err(
                ErrorKind::InvalidArgument,
                "device is smaller than the pool",
            ));
        }
        st.meta.device_blocks = blocks;
        st.meta.reserve_blocks = reserve_for(blocks);
        st.meta.touch()?;
        st.commit()?;
        Ok(st.info())
    }

    /// Final commit and stop of background work; later calls fail with `PoolFailed`.
    pub fn close(&self) -> Result<()> {
        let res = {
            let _gate = self.inner.gate.write();
            let mut st = self.lock();
            if st.closed {
                return Ok(());
            }
            let r = if st.failed.is_none() {
                st.commit()
            } else {
                Ok(())
            };
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

    pub fn create_volume(
        &self,
        name: &str,
        size_bytes: u64,
        opts: VolumeOptions,
    ) -> Result<VolumeInfo> {
        validate_volume_name(name)?;
        validate_size(size_bytes)?;
        if !LOGICAL_BLOCK_SIZES.contains(&opts.logical_block_size) {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!("logical block size {}", opts.logical_block_size),
            ));
        }
        let (_gate, mut st) = self.exclusive()?;
        st.ensure_name_free(name)?;
        let flags = record_flags(&opts);
        let rec = st.new_record(
            name,
            size_bytes,
            opts.logical_block_size,
            flags,
            None,
            Root::default(),
        );
        let info = info_of(&rec);
        st.add_record(rec);
        st.commit()?;
        Ok(info)
    }

    /// O(1) tombstone + commit; the space is reclaimed in the background.
    pub fn delete_volume(&self, id: VolumeId) -> Result<()> {
        {
            let (_gate, mut st) = self.exclusive()?;
            let seq = st.seq_of(id)?;
            st.by_id.remove(&id);
            let rec = st.vols.get_mut(&seq).expect("indexed");
            rec.flags |= VF_DELETING | VF_HIDDEN;
            rec.name.clear();
            st.dirty_vols.insert(seq);
            st.hints.remove(&seq);
            st.commit()?;
        }
        self.inner.wake.notify_all();
        Ok(())
    }

    /// Grows a volume (shrinking is refused).
    pub fn resize_volume(&self, id: VolumeId, size_bytes: u64) -> Result<VolumeInfo> {
        validate_size(size_bytes)?;
        let (_gate, mut st) = self.exclusive()?;
        let seq = st.seq_of(id)?;
        if size_bytes < st.vols[&seq].size_bytes {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!("shrinking volume {id}"),
            ));
        }
        st.update(seq, |r| r.size_bytes = size_bytes)
    }

    pub fn rename_volume(&self, id: VolumeId, name: &str) -> Result<VolumeInfo> {
        validate_volume_name(name)?;
        let (_gate, mut st) = self.exclusive()?;
        let seq = st.seq_of(id)?;
        if st.vols[&seq].name != name {
            st.ensure_name_free(name)?;
        }
        st.update(seq, |r| r.name = name.to_string())
    }

    pub fn set_read_only(&self, id: VolumeId, read_only: bool) -> Result<VolumeInfo> {
        let (_gate, mut st) = self.exclusive()?;
        let seq = st.seq_of(id)?;
        st.update(seq, |r| {
            r.flags = if read_only {
                r.flags | VF_READ_ONLY
            } else {
                r.flags & !VF_READ_ONLY
            }
        })
    }

    pub fn set_hidden(&self, id: VolumeId, hidden: bool) -> Result<VolumeInfo> {
        let (_gate, mut st) = self.exclusive()?;
        let seq = st.seq_of(id)?;
        st.update(seq, |r| {
            r.flags = if hidden {
                r.flags | VF_HIDDEN
            } else {
                r.flags & !VF_HIDDEN
            }
        })
    }

    pub fn set_tag(&self, id: VolumeId, tag: &[u8]) -> Result<VolumeInfo> {
        if tag.len() > TAG_BYTES_MAX {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!("tag of {} bytes", tag.len()),
            ));
        }
        let (_gate, mut st) = self.exclusive()?;
        let seq = st.seq_of(id)?;
        st.update(seq, |r| r.tag = tag.to_vec())
    }

    /// O(1) snapshot of `source`, committed on return; inherits the logical block size.
    pub fn snapshot(
        &self,
        source: VolumeId,
        name: &str,
        opts: VolumeOptions,
    ) -> Result<VolumeInfo> {
        validate_volume_name(name)?;
        let (_gate, mut st) = self.exclusive()?;
        let src_seq = st.seq_of(source)?;
        st.ensure_name_free(name)?;
        let src = st.vols[&src_seq].clone();
        let flags = record_flags(&opts);
        let rec = st.new_record(
            name,
            src.size_bytes,
            src.logical_block_size,
            flags,
            Some(src.id),
            src.root,
        );
        let info = info_of(&rec);
        st.meta_phase(|st| {
            if src.root.addr != 0 {
                st.meta.rc_inc(src.root.addr, 1)?;
            }
            Ok(())
        })?;
        st.add_record(rec);
        st.commit()?;
        Ok(info)
    }

    /// O(1): `volume` takes `snapshot`'s contents and size; committed on return.
    pub fn restore(&self, volume: VolumeId, snapshot: VolumeId) -> Result<()> {
        {
            let (_gate, mut st) = self.exclusive()?;
            let vseq = st.seq_of(volume)?;
            let sseq = st.seq_of(snapshot)?;
            if vseq == sseq {
                return Err(err(
                    ErrorKind::InvalidArgument,
                    "restoring a volume from itself",
                ));
            }
            if st.vols[&vseq].flags & VF_READ_ONLY != 0 {
                return Err(err(
                    ErrorKind::ReadOnly,
                    format!("restore into volume {volume}"),
                ));
            }
            let snap = st.vols[&sseq].clone();
            let old_root = st.vols[&vseq].root;
            st.meta_phase(|st| {
                if snap.root.addr != 0 {
                    st.meta.rc_inc(snap.root.addr, 1)?;
                }
                Ok(())
            })?;
            if old_root.addr != 0 {
                let tomb = st.new_record("", 0, 4096, VF_DELETING | VF_HIDDEN, None, old_root);
                let seq = st.next_seq - 1;
                st.vols.insert(seq, tomb);
                st.dirty_vols.insert(seq);
            }
            let rec = st.vols.get_mut(&vseq).expect("indexed");
            rec.root = snap.root;
            rec.size_bytes = snap.size_bytes;
            st.dirty_vols.insert(vseq);
            st.hints.remove(&vseq);
            st.commit()?;
        }
        self.inner.wake.notify_all();
        Ok(())
    }

    /// Visible volumes and snapshots (hidden ones included, tombstones not).
    pub fn volumes(&self) -> Vec<VolumeInfo> {
        let st = self.lock();
        st.vols
            .values()
            .filter(|r| !r.deleting())
            .map(info_of)
            .collect()
    }

    pub fn volume(&self, id: VolumeId) -> Result<VolumeInfo> {
        let st = self.lock();
        let seq = st.seq_of(id)?;
        Ok(info_of(&st.vols[&seq]))
    }

    pub fn volume_by_name(&self, name: &str) -> Option<VolumeInfo> {
        let st = self.lock();
        st.vols
            .values()
            .find(|r| !r.deleting() && r.name == name)
            .map(info_of)
    }

    /// Reads data. The mapping is looked up under the pool lock; the device reads run after it
    /// is released, under the shared I/O gate, so blocks they read cannot be reused meanwhile.
    pub fn read(&self, id: VolumeId, offset: u64, buf: &mut [u8]) -> Result<()> {
        if buf.is_empty() {
            let st = self.live()?;
            st.io_target(id, offset, 0, false)?;
            return Ok(());
        }
        let vs = offset / BS;
        let ve = (offset + buf.len() as u64).div_ceil(BS);
        let (_gate, mut st) = self.shared()?;
        let seq = st.io_target(id, offset, buf.len() as u64, false)?;
        let root = st.vols[&seq].root;
        let pieces = st.meta.map_lookup(root, vs, ve)?;
        let dev = st.meta.dev.clone();
        drop(st);
        if offset % BS == 0 && buf.len() as u64 % BS == 0 {
            return read_pieces(dev.as_ref(), vs, &pieces, buf);
        }
        let mut tmp = vec![0u8; ((ve - vs) * BS) as usize];
        read_pieces(dev.as_ref(), vs, &pieces, &mut tmp)?;
        let skip = (offset - vs * BS) as usize;
        let n = buf.len();
        buf.copy_from_slice(&tmp[skip..skip + n]);
        Ok(())
    }

    /// Writes data. The write is planned (and its fresh blocks allocated) under the pool lock,
    /// the device writes run after it is released, and the new blocks are mapped under the lock
    /// again; the shared I/O gate is held throughout, so no commit (or snapshot) sees a write
    /// half done.
    pub fn write(&self, id: VolumeId, offset: u64, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            let st = self.live()?;
            st.io_target(id, offset, 0, true)?;
            return Ok(());
        }
        let mut too_dirty = false;
        for (i, chunk) in data.chunks(IO_BYTES_MAX).enumerate() {
            let at = offset + (i * IO_BYTES_MAX) as u64;
            let mut committed = false;
            loop {
                match self.write_chunk(id, offset, data.len() as u64, at, chunk) {
                    Ok(dirty) => {
                        too_dirty = dirty;
                        break;
                    }
                    // Space freed in this transaction becomes reusable once it is durable:
                    // commit once and try again before reporting the pool full.
                    Err((e, pending))
                        if e.kind() == ErrorKind::NoSpace && pending && !committed =>
                    {
                        committed = true;
                        let (_gate, mut st) = self.exclusive()?;
                        st.commit()?;
                    }
                    Err((e, _)) => return Err(e),
                }
            }
        }
        self.commit_if_too_dirty(too_dirty)
    }

    /// One chunk of a write; returns whether the transaction grew past its bound, or the error
    /// and whether blocks freed in this transaction are waiting for a commit.
    fn write_chunk(
        &self,
        id: VolumeId,
        offset: u64,
        len: u64,
        at: u64,
        chunk: &[u8],
    ) -> std::result::Result<bool, (Error, bool)> {
        let (_gate, mut st) = self.shared().map_err(|e| (e, false))?;
        let r = st.io_target(id, offset, len, true).and_then(|seq| {
            if at % BS != 0 || chunk.len() as u64 % BS != 0 {
                // Read-modify-write of a partial block stays under the lock: two writes to
                // different sectors of one block must not both start from its old contents.
                st.write_bytes(seq, at, chunk).map(|()| None)
            } else {
                st.plan_write(seq, at, chunk).map(Some)
            }
        });
        let plan = match r {
            Ok(Some(plan)) => plan,
            Ok(None) => return Ok(st.too_dirty()),
            Err(e) => {
                let pending = st.meta.pending_blocks > 0;
                return Err((e, pending));
            }
        };
        let dev = st.meta.dev.clone();
        drop(st);
        let res = plan.execute(dev.as_ref());
        let mut st = self.lock();
        st.finish_write(plan, res).map_err(|e| (e, false))?;
        Ok(st.too_dirty())
    }

    pub fn trim(&self, id: VolumeId, offset: u64, len: u64) -> Result<()> {
        let too_dirty = {
            let (_gate, mut st) = self.shared()?;
            let seq = st.io_target(id, offset, len, true)?;
            st.zero_range(seq, offset, len)?;
            st.too_dirty()
        };
        self.commit_if_too_dirty(too_dirty)
    }

    pub fn write_zeroes(&self, id: VolumeId, offset: u64, len: u64) -> Result<()> {
        self.trim(id, offset, len)
    }

    /// Mapped and unmapped runs of `[offset, offset + len)`.
    pub fn block_status(&self, id: VolumeId, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let mut st = self.live()?;
        let seq = st.io_target(id, offset, len, false)?;
        st.block_status(seq, offset, len)
    }

    /// Commits: everything acknowledged before is durable on return.
    pub fn flush(&self) -> Result<()> {
        let (_gate, mut st) = self.exclusive()?;
        st.commit()
    }

    /// Checks the last durable state (committing first, so it is the current state).
    pub fn check(&self) -> Result<CheckReport> {
        let (_gate, mut st) = self.exclusive()?;
        st.commit()?;
        check_locked(&mut st.meta)
    }

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

    /// Test and benchmark hook: blocks currently allocated in the space map.
    #[doc(hidden)]
    pub fn allocated_blocks(&self) -> u64 {
        self.lock().meta.allocated_blocks
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

/// Background work: interval commits and reclaim of deleted volumes.
fn background(inner: Arc<Inner>) {
    let interval = inner.opts.commit_interval;
    loop {
        {
            let mut st = inner.state.lock();
            if st.stop {
                return;
            }
            if !st.background_work(interval) {
                let wait = interval.unwrap_or(Duration::from_secs(3600));
                inner.wake.wait_for(&mut st, wait);
                continue;
            }
        }
        // Work to do: take the gate first (lock order), then check again under the lock.
        let _gate = inner.gate.write();
        let mut st = inner.state.lock();
        if st.stop {
            return;
        }
        if st.healthy() && !st.reclaim_paused && st.reclaim_pending() {
            let _ = st.reclaim_step();
        } else if st.background_work(interval) {
            let _ = st.commit();
        }
    }
}

pub(crate) fn read_superblock(dev: &dyn BlockDevice) -> Result<Superblock> {
    if dev.size_bytes() < 2 * BS {
        return Err(err(ErrorKind::NotAPool, "device smaller than two blocks"));
    }
    let mut best: Option<Superblock> = None;
    let mut first_err: Option<Error> = None;
    for a in SUPER_ADDRS {
        let mut b = vec![0u8; BLOCK_SIZE_USIZE];
        dev.read_at(a * BS, &mut b)
            .map_err(|e| Error::io("read superblock", e))?;
        match Superblock::decode(&b, a) {
            Ok(sb) if best.as_ref().is_none_or(|x| x.gen < sb.gen) => best = Some(sb),
            Ok(_) => {}
            Err(e) => {
                let worse = match &first_err {
                    None => true,
                    Some(f) => f.kind() == ErrorKind::NotAPool,
                };
                if worse {
                    first_err = Some(e);
                }
            }
        }
    }
    match best {
        Some(sb) => Ok(sb),
        None => Err(first_err.unwrap_or_else(|| err(ErrorKind::NotAPool, "no superblock"))),
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
            meta: Meta::new(dev, sb, cache_nodes),
            vols: BTreeMap::new(),
            by_id: HashMap::new(),
            dirty_vols: BTreeSet::new(),
            removed_vols: BTreeSet::new(),
            hints: HashMap::new(),
            failed: None,
            closed: false,
            stop: false,
            reclaim_paused: false,
            last_commit: Instant::now(),
        }
    }

    fn live(&self) -> Result<()> {
        if self.closed {
            return Err(err(
                ErrorKind::PoolFailed,
                format!("pool {} is closed", self.name),
            ));
        }
        if let Some(f) = &self.failed {
            return Err(err(
                ErrorKind::PoolFailed,
                format!("pool {}: {f}", self.name),
            ));
        }
        Ok(())
    }

    fn fail(&mut self, e: &Error) {
        tracing::error!("pool {} failed: {e}", self.name);
        self.failed = Some(e.to_string());
        self.meta.forget_dirty();
    }

    /// Runs a metadata change; any error in it fails the pool (its state may be half-changed).
    fn meta_phase<T>(&mut self, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let r = f(self);
        if let Err(e) = &r {
            self.fail(e);
        }
        r
    }

    fn healthy(&self) -> bool {
        self.failed.is_none() && !self.closed
    }

    /// Is there reclaim to do, or a dirty transaction older than the commit interval?
    fn background_work(&self, interval: Option<Duration>) -> bool {
        if !self.healthy() {
            return false;
        }
        if !self.reclaim_paused && self.reclaim_pending() {
            return true;
        }
        interval.is_some_and(|iv| self.is_dirty() && self.last_commit.elapsed() >= iv)
    }

    fn is_dirty(&self) -> bool {
        self.meta.is_dirty() || !self.dirty_vols.is_empty() || !self.removed_vols.is_empty()
    }

    fn load_directory(&mut self) -> Result<()> {
        let entries = self.meta.range(
            TreeKind::Directory,
            self.meta.dir_root,
            0,
            u64::MAX,
            usize::MAX,
        )?;
        for (seq, v) in entries {
            let rec = VolumeRecord::decode(&v)?;
            if !rec.deleting() {
                self.by_id.insert(VolumeId(rec.id), seq);
            }
            self.vols.insert(seq, rec);
        }
        Ok(())
    }

    /// Commits the transaction. The caller holds the I/O gate exclusively: no data I/O is in
    /// flight, so no write is half done and no read still uses a block freed here.
    pub(crate) fn commit(&mut self) -> Result<()> {
        debug_assert!(
            self.meta.io_gate.is_locked_exclusive(),
            "commit without the I/O gate"
        );
        self.live()?;
        if !self.is_dirty() {
            return Ok(());
        }
        let r = self.commit_inner();
        if let Err(e) = &r {
            self.fail(e);
        }
        r
    }

    fn commit_inner(&mut self) -> Result<()> {
        let mut buf = vec![0u8; VOLUME_RECORD_BYTES];
        for seq in std::mem::take(&mut self.removed_vols) {
            self.meta.dir_root = self
                .meta
                .remove(TreeKind::Directory, self.meta.dir_root, seq)?
                .0;
        }
        for seq in std::mem::take(&mut self.dirty_vols) {
            self.vols[&seq].encode(&mut buf);
            self.meta.dir_root =
                self.meta
                    .insert(TreeKind::Directory, self.meta.dir_root, seq, &buf)?;
        }
        let sb = Superblock {
            gen: 0,
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
        };
        self.meta.commit(sb)?;
        self.last_commit = Instant::now();
        Ok(())
    }

    fn too_dirty(&self) -> bool {
        self.meta.dirty.len() > DIRTY_BLOCKS_MAX
    }

    fn info(&self) -> PoolInfo {
        let m = &self.meta;
        let usable = m.usable_blocks();
        PoolInfo {
            name: self.name.clone(),
            uuid: self.uuid,
            size_bytes: m.device_blocks * BS,
            data_bytes_total: m.device_blocks.saturating_sub(m.reserve_blocks + 2) * BS,
            data_bytes_used: m.data_blocks * BS,
            data_bytes_free: usable.saturating_sub(m.reserve_blocks + DATA_ALLOC_HEADROOM_BLOCKS)
                * BS,
            metadata_bytes_total: m.reserve_blocks * BS,
            metadata_bytes_used: m.meta_blocks * BS,
            volume_count: self.vols.values().filter(|r| !r.deleting()).count(),
            generation: m.gen(),
            reclaim_pending: self.reclaim_pending(),
        }
    }

    fn seq_of(&self, id: VolumeId) -> Result<u64> {
        self.by_id
            .get(&id)
            .copied()
            .ok_or_else(|| err(ErrorKind::NotFound, format!("volume {id}")))
    }

    fn ensure_name_free(&self, name: &str) -> Result<()> {
        if self.vols.values().any(|r| !r.deleting() && r.name == name) {
            return Err(err(
                ErrorKind::AlreadyExists,
                format!("volume name {name:?}"),
            ));
        }
        Ok(())
    }

    /// A new record with the next sequence number and an id derived from it (never reused).
    fn new_record(
        &mut self,
        name: &str,
        size_bytes: u64,
        lbs: u32,
        flags: u32,
        parent: Option<[u8; 16]>,
        root: Root,
    ) -> VolumeRecord {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.uuid[..8]);
        id[8..].copy_from_slice(&seq.to_be_bytes());
        VolumeRecord {
            id,
            parent,
            size_bytes,
            root,
            logical_block_size: lbs,
            flags,
            created_unix_secs: now_unix_secs(),
            name: name.to_string(),
            tag: Vec::new(),
        }
    }

    fn add_record(&mut self, rec: VolumeRecord) {
        let seq = u64::from_be_bytes(rec.id[8..].try_into().expect("8 bytes"));
        self.by_id.insert(VolumeId(rec.id), seq);
        self.vols.insert(seq, rec);
        self.dirty_vols.insert(seq);
    }

    fn update(&mut self, seq: u64, f: impl FnOnce(&mut VolumeRecord)) -> Result<VolumeInfo> {
        let rec = self.vols.get_mut(&seq).expect("indexed");
        f(rec);
        let info = info_of(rec);
        self.dirty_vols.insert(seq);
        self.commit()?;
        Ok(info)
    }

    /// Validates an I/O request and returns the volume's sequence number.
    fn io_target(&self, id: VolumeId, offset: u64, len: u64, write: bool) -> Result<u64> {
        let seq = self.seq_of(id)?;
        let r = &self.vols[&seq];
        let lbs = u64::from(r.logical_block_size);
        if offset % lbs != 0 || len % lbs != 0 {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!("offset {offset} length {len} not multiples of {lbs} on volume {id}"),
            ));
        }
        if offset.checked_add(len).is_none_or(|end| end > r.size_bytes) {
            return Err(err(
                ErrorKind::OutOfRange,
                format!("offset {offset} length {len} past the end of volume {id}"),
            ));
        }
        if write && r.flags & VF_READ_ONLY != 0 {
            return Err(err(ErrorKind::ReadOnly, format!("volume {id}")));
        }
        Ok(seq)
    }

    // ---- data path --------------------------------------------------------------------------

    fn read_blocks(&mut self, seq: u64, vs: u64, ve: u64, out: &mut [u8]) -> Result<()> {
        let root = self.vols[&seq].root;
        let pieces = self.meta.map_lookup(root, vs, ve)?;
        read_pieces(self.meta.dev.as_ref(), vs, &pieces, out)
    }

    /// Writes bytes under the lock (used for partial blocks of trims): plan, device write and
    /// mapping update in one go.
    fn write_bytes(&mut self, seq: u64, offset: u64, data: &[u8]) -> Result<()> {
        let plan = self.plan_write(seq, offset, data)?;
        let res = plan.execute(self.meta.dev.as_ref());
        self.finish_write(plan, res)
    }

    /// Plans a write at a logical-block-aligned offset. Partial 4 KiB blocks at either end are
    /// read and patched so the write covers whole blocks; blocks allocated in this transaction
    /// are written in place, everything else goes to fresh blocks allocated here in one go, so
    /// `NoSpace` leaves the volume untouched.
    fn plan_write<'d>(&mut self, seq: u64, offset: u64, data: &'d [u8]) -> Result<WritePlan<'d>> {
        let end = offset + data.len() as u64;
        let vb = offset / BS;
        let ve = end.div_ceil(BS);
        let buf: Cow<'d, [u8]> = if offset % BS == 0 && end % BS == 0 {
            Cow::Borrowed(data)
        } else {
            let mut buf = vec![0u8; ((ve - vb) * BS) as usize];
            let last = buf.len() - BLOCK_SIZE_USIZE;
            if offset % BS != 0 {
                self.read_blocks(seq, vb, vb + 1, &mut buf[..BLOCK_SIZE_USIZE])?;
            }
            if end % BS != 0 && (ve - 1 > vb || offset % BS == 0) {
                self.read_blocks(seq, ve - 1, ve, &mut buf[last..])?;
            }
            let at = (offset - vb * BS) as usize;
            buf[at..at + data.len()].copy_from_slice(data);
            Cow::Owned(buf)
        };
        let n = ve - vb;
        let root = self.vols[&seq].root;
        let mut in_place: Vec<Piece> = Vec::new();
        for (v, p, len) in self.meta.map_lookup(root, vb, vb + n)? {
            let mut i = 0;
            while i < len {
                if self.meta.is_fresh(p + i)? {
                    let s = i;
                    while i < len && self.meta.is_fresh(p + i)? {
                        i += 1;
                    }
                    in_place.push((v + s, p + s, i - s));
                } else {
                    i += 1;
                }
            }
        }
        // Virtual runs that need fresh blocks: the complement of `in_place` in [vb, vb + n).
        let mut need: Vec<(u64, u64)> = Vec::new();
        let mut cursor = vb;
        for &(v, _, len) in &in_place {
            if cursor < v {
                need.push((cursor, v - cursor));
            }
            cursor = v + len;
        }
        if cursor < vb + n {
            need.push((cursor, vb + n - cursor));
        }
        let total: u64 = need.iter().map(|x| x.1).sum();
        let hint = self.hints.get(&seq).copied().unwrap_or(0);
        let runs = if total > 0 {
            self.meta.alloc_data(total, hint)?
        } else {
            Vec::new()
        };
        if let Some(last) = runs.last() {
            self.hints.insert(seq, last.0 + last.1);
        }
        let placed = assign_runs(&need, &runs);
        Ok(WritePlan {
            seq,
            vb,
            buf,
            in_place,
            placed,
            runs,
        })
    }

    /// Maps a written plan's fresh blocks, or gives them back if the device write failed.
    fn finish_write(&mut self, plan: WritePlan<'_>, res: Result<()>) -> Result<()> {
        self.live()?;
        if let Err(e) = res {
            self.meta.unalloc_data(&plan.runs);
            return Err(e);
        }
        let seq = plan.seq;
        self.meta_phase(|st| {
            let mut root = st.vols[&seq].root;
            for &(v, p, len) in &plan.placed {
                root = st.meta.map_remove(root, v, v + len)?;
                root = st.meta.map_insert(root, v, p, len)?;
            }
            st.set_root(seq, root);
            Ok(())
        })
    }

    fn set_root(&mut self, seq: u64, root: Root) {
        let rec = self.vols.get_mut(&seq).expect("indexed");
        if rec.root != root {
            rec.root = root;
            self.dirty_vols.insert(seq);
        }
    }

    /// Trim / write-zeroes: whole blocks are unmapped, partial ones rewritten with zeros.
    fn zero_range(&mut self, seq: u64, offset: u64, len: u64) -> Result<()> {
        let end = offset + len;
        let first_full = offset.div_ceil(BS);
        let last_full = end / BS;
        if first_full < last_full {
            self.meta_phase(|st| {
                let root = st.vols[&seq].root;
                let root = st.meta.map_remove(root, first_full, last_full)?;
                st.set_root(seq, root);
                Ok(())
            })?;
        }
        let mut partial = |from: u64, to: u64| -> Result<()> {
            if from >= to {
                return Ok(());
            }
            let blk = from / BS;
            let root = self.vols[&seq].root;
            if self.meta.map_lookup(root, blk, blk + 1)?.is_empty() {
                return Ok(());
            }
            self.write_bytes(seq, from, &vec![0u8; (to - from) as usize])
        };
        if first_full > last_full {
            // Start and end inside one block.
            return partial(offset, end);
        }
        partial(offset, (first_full * BS).min(end))?;
        partial((last_full * BS).max(offset), end)
    }

    fn block_status(&mut self, seq: u64, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let end = offset + len;
        let root = self.vols[&seq].root;
        let pieces = self.meta.map_lookup(root, offset / BS, end.div_ceil(BS))?;
        let mut out: Vec<Extent> = Vec::new();
        let mut push = |s: u64, e: u64, mapped: bool| {
            let s = s.max(offset);
            let e = e.min(end);
            if s >= e {
                return;
            }
            match out.last_mut() {
                Some(l) if l.mapped == mapped && l.offset + l.len == s => l.len += e - s,
                _ => out.push(Extent {
                    offset: s,
                    len: e - s,
                    mapped,
                }),
            }
        };
        let mut cursor = offset;
        for (v, _, n) in pieces {
            push(cursor, v * BS, false);
            push(v * BS, (v + n) * BS, true);
            cursor = (v + n) * BS;
        }
        push(cursor, end, false);
        Ok(out)
    }

    // ---- reclaim ------------------------------------------------------------------------------

    fn reclaim_pending(&self) -> bool {
        self.vols.values().any(|r| r.deleting())
    }

    /// One bounded reclaim transaction on the first tombstone, committed.
    fn reclaim_step(&mut self) -> Result<()> {
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

/// A planned write: whole blocks from `vb`, the pieces written in place and the ones placed on
/// fresh blocks (`runs`, not yet mapped).
struct WritePlan<'d> {
    seq: u64,
    vb: u64,
    buf: Cow<'d, [u8]>,
    in_place: Vec<Piece>,
    placed: Vec<Piece>,
    runs: Vec<(u64, u64)>,
}

impl WritePlan<'_> {
    /// The device writes of the plan (no pool state involved).
    fn execute(&self, dev: &dyn BlockDevice) -> Result<()> {
        let mut writes: Vec<(u64, &[u8])> = Vec::new();
        for &(v, p, len) in self.in_place.iter().chain(self.placed.iter()) {
            let from = ((v - self.vb) * BS) as usize;
            writes.push((p * BS, &self.buf[from..from + (len * BS) as usize]));
        }
        dev.write_batch(&writes)
            .map_err(|e| Error::io(format!("write data at volume block {}", self.vb), e))
    }
}

/// Fills `out` (virtual blocks from `vs`) from the mapped pieces, zeros elsewhere.
fn read_pieces(dev: &dyn BlockDevice, vs: u64, pieces: &[Piece], out: &mut [u8]) -> Result<()> {
    let mut cursor = vs;
    for &(v, p, n) in pieces {
        let at = ((cursor - vs) * BS) as usize;
        let to = ((v - vs) * BS) as usize;
        out[at..to].fill(0);
        let end = to + (n * BS) as usize;
        dev.read_at(p * BS, &mut out[to..end])
            .map_err(|e| Error::io(format!("read data block {p}"), e))?;
        cursor = v + n;
    }
    let at = ((cursor - vs) * BS) as usize;
    out[at..].fill(0);
    Ok(())
}

/// Lays the allocated runs over the virtual runs that need blocks, in order.
fn assign_runs(need: &[(u64, u64)], runs: &[(u64, u64)]) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    let mut ri = 0;
    let mut used_in_run = 0;
    for &(v, len) in need {
        let mut left = len;
        let mut vpos = v;
        while left > 0 {
            let (rs, rl) = runs[ri];
            let take = (rl - used_in_run).min(left);
            out.push((vpos, rs + used_in_run, take));
            used_in_run += take;
            vpos += take;
            left -= take;
            if used_in_run == rl {
                ri += 1;
                used_in_run = 0;
            }
        }
    }
    out
}

/// The volume-record flags that `opts` asks for.
fn record_flags(opts: &VolumeOptions) -> u32 {
    let mut flags = 0;
    if opts.read_only {
        flags |= VF_READ_ONLY;
    }
    if opts.hidden {
        flags |= VF_HIDDEN;
    }
    flags
}
