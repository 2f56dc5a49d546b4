//! The volume directory of a pool: volume records, their names, create, delete, resize,
//! rename, flags and tags, snapshot and restore.
//!
//! Every change runs as one directory change ([`Change`]): when its commit is refused (no
//! backing storage for a metadata block, a bad metadata block read on the way) the records it
//! touched, the sequence numbers it took, their indexes and its metadata operation (a
//! snapshot's or restore's reference) are put back, so the call changed nothing, the open
//! transaction holds what it held before and no later commit makes the change durable.
//!
//! Invariants:
//! - Every record change is committed before the call returns, or undone.
//! - A live record is indexed by its id in `by_id` and by its name in `by_name` (kept exact
//!   on create, snapshot, rename, delete and open); a tombstone (flag `deleting`) is not, has
//!   no name, and stays in the directory until reclaim has dropped its tree.
//! - Record sequence numbers (and the ids derived from them) are never reused.

use crate::error::{corrupt, err, ErrorKind, Result};
use crate::format::{Root, VolumeRecord, SHARE_EPOCH_MAX, VF_DELETING, VF_HIDDEN, VF_READ_ONLY};
use crate::limits::{
    BLOCK_SIZE_BYTES, LOGICAL_BLOCK_SIZES, TAG_BYTES_MAX, VOLUME_NAME_BYTES_MAX,
    VOLUME_NAME_CHARS_MAX, VOLUME_SEQ_MAX, VOLUME_SIZE_BYTES_MAX,
};
use crate::meta::Meta;
use crate::node::TreeKind;
use crate::types::{VolumeId, VolumeInfo, VolumeOptions};
use crate::undo::Undo;

use super::{now_unix_secs, Exclusive, Pool, State, StateGuard, Tier};

/// What one directory change altered, to put back when its commit is refused.
pub(super) struct Change {
    /// The first sequence number the change may take: records from it on are its own.
    next_seq: u64,
    volume_changes: u64,
    /// Records it changes, as they were before.
    saved: Vec<Saved>,
    /// The log of its metadata operation, kept until the commit.
    meta: Option<Box<Undo>>,
}

/// A record as it was before a change, with its dirty mark and write hint.
struct Saved {
    seq: u64,
    rec: VolumeRecord,
    dirty: bool,
    hint: Option<u64>,
}

/// Checks a volume name: 1–64 printable characters, no control characters, no '/', no leading
/// or trailing space.
pub fn validate_volume_name(name: &str) -> Result<()> {
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
    if size_bytes == 0 || size_bytes % BLOCK_SIZE_BYTES != 0 || size_bytes > VOLUME_SIZE_BYTES_MAX {
        return Err(err(
            ErrorKind::InvalidArgument,
            format!("volume size {size_bytes} (a non-zero multiple of 4096, at most 1 PiB)"),
        ));
    }
    Ok(())
}

fn validate_tag(tag: &[u8]) -> Result<()> {
    if tag.len() > TAG_BYTES_MAX {
        return Err(err(
            ErrorKind::InvalidArgument,
            format!("tag of {} bytes", tag.len()),
        ));
    }
    Ok(())
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
    /// For directory changes other than delete: no I/O in flight, and room for their commit
    /// above the floor that only delete and reclaim may use.
    fn exclusive_with_room(&self) -> Result<(Exclusive<'_>, StateGuard<'_>)> {
        let (gate, st) = self.exclusive()?;
        st.ensure_room(Tier::Ordinary)?;
        Ok((gate, st))
    }

    /// A new thin volume with the flags and tag of `opts`, committed on return.
    pub(crate) fn create_volume(
        &self,
        name: &str,
        size_bytes: u64,
        opts: VolumeOptions,
    ) -> Result<VolumeInfo> {
        validate_volume_name(name)?;
        validate_size(size_bytes)?;
        validate_tag(&opts.tag)?;
        if !LOGICAL_BLOCK_SIZES.contains(&opts.logical_block_size) {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!("logical block size {}", opts.logical_block_size),
            ));
        }
        let (_gate, mut st) = self.exclusive_with_room()?;
        st.ensure_name_free(name)?;
        let change = st.begin_change(&[]);
        let flags = record_flags(&opts);
        let mut rec = st.new_record(
            name,
            size_bytes,
            opts.logical_block_size,
            flags,
            None,
            Root::default(),
        );
        rec.tag = opts.tag;
        let info = info_of(&rec);
        st.add_record(rec);
        st.commit_change(change)?;
        Ok(info)
    }

    /// O(1) tombstone + commit; the space is reclaimed in the background.
    pub(crate) fn delete_volume(&self, id: VolumeId) -> Result<()> {
        {
            let (_gate, mut st) = self.exclusive()?;
            let seq = st.seq_of(id)?;
            let change = st.begin_change(&[seq]);
            st.unindex_record(seq);
            let rec = st.vols.get_mut(&seq).expect("indexed");
            rec.flags |= VF_DELETING | VF_HIDDEN;
            rec.name.clear();
            st.family_touch(seq);
            st.index_record(seq);
            st.dirty_vols.insert(seq);
            st.hints.remove(&seq);
            st.volume_changes += 1;
            st.commit_change(change)?;
        }
        self.inner.wake.notify_all();
        Ok(())
    }

    /// Grows a volume (shrinking is refused).
    pub(crate) fn resize_volume(&self, id: VolumeId, size_bytes: u64) -> Result<VolumeInfo> {
        validate_size(size_bytes)?;
        let (_gate, mut st) = self.exclusive_with_room()?;
        let seq = st.seq_of(id)?;
        if size_bytes < st.vols[&seq].size_bytes {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!("shrinking volume {id}"),
            ));
        }
        st.update(seq, |r| r.size_bytes = size_bytes)
    }

    pub(crate) fn rename_volume(&self, id: VolumeId, name: &str) -> Result<VolumeInfo> {
        validate_volume_name(name)?;
        let (_gate, mut st) = self.exclusive_with_room()?;
        let seq = st.seq_of(id)?;
        if st.vols[&seq].name != name {
            st.ensure_name_free(name)?;
        }
        st.update(seq, |r| r.name = name.to_string())
    }

    pub(crate) fn set_read_only(&self, id: VolumeId, read_only: bool) -> Result<VolumeInfo> {
        let (_gate, mut st) = self.exclusive_with_room()?;
        let seq = st.seq_of(id)?;
        st.update(seq, |r| {
            r.flags = if read_only {
                r.flags | VF_READ_ONLY
            } else {
                r.flags & !VF_READ_ONLY
            }
        })
    }

    pub(crate) fn set_hidden(&self, id: VolumeId, hidden: bool) -> Result<VolumeInfo> {
        let (_gate, mut st) = self.exclusive_with_room()?;
        let seq = st.seq_of(id)?;
        st.update(seq, |r| {
            r.flags = if hidden {
                r.flags | VF_HIDDEN
            } else {
                r.flags & !VF_HIDDEN
            }
        })
    }

    pub(crate) fn set_tag(&self, id: VolumeId, tag: &[u8]) -> Result<VolumeInfo> {
        validate_tag(tag)?;
        let (_gate, mut st) = self.exclusive_with_room()?;
        let seq = st.seq_of(id)?;
        st.update(seq, |r| r.tag = tag.to_vec())
    }

    /// O(1) snapshot of `source` with the tag `opts` carries, one commit before it returns;
    /// inherits the logical block size.
    pub(crate) fn snapshot(
        &self,
        source: VolumeId,
        name: &str,
        opts: VolumeOptions,
    ) -> Result<VolumeInfo> {
        validate_volume_name(name)?;
        validate_tag(&opts.tag)?;
        let (_gate, mut st) = self.exclusive_with_room()?;
        let src_seq = st.seq_of(source)?;
        st.ensure_name_free(name)?;
        let epoch = st.next_share_epoch()?;
        let flags = record_flags(&opts);
        let mut change = st.begin_change(&[src_seq]);
        let src_root = st.vols[&src_seq].root;
        if src_root.addr != 0 {
            st.meta_in_change(&mut change, |meta| meta.rc_inc(src_root.addr, 1))?;
        }
        // Source and snapshot share every block from here: their mappings so far are shared.
        st.share(epoch, &[src_seq]);
        let src = st.vols[&src_seq].clone();
        let mut rec = st.new_record(
            name,
            src.size_bytes,
            src.logical_block_size,
            flags,
            Some(src.id),
            src.root,
        );
        rec.tag = opts.tag;
        rec.family = src.family;
        let info = info_of(&rec);
        st.add_record(rec);
        st.commit_change(change)?;
        Ok(info)
    }

    /// O(1): `volume` takes `snapshot`'s contents and size; committed on return.
    pub(crate) fn restore(&self, volume: VolumeId, snapshot: VolumeId) -> Result<()> {
        {
            // Every block of the volume: a trim or write-zeroes in steps finishes on the contents
            // it started on, never half on the old and half on the restored ones.
            let _blocks = self.inner.blocks.lock(volume, 0, u64::MAX);
            let (_gate, mut st) = self.exclusive_with_room()?;
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
            let epoch = st.next_share_epoch()?;
            let old_root = st.vols[&vseq].root;
            let mut change = st.begin_change(&[vseq, sseq]);
            let snap_root = st.vols[&sseq].root;
            if snap_root.addr != 0 {
                st.meta_in_change(&mut change, |meta| meta.rc_inc(snap_root.addr, 1))?;
            }
            // The volume takes the snapshot's blocks: both hold them shared from here.
            st.share(epoch, &[vseq, sseq]);
            let snap = st.vols[&sseq].clone();
            if old_root.addr != 0 {
                let mut tomb = st.new_record("", 0, 4096, VF_DELETING | VF_HIDDEN, None, old_root);
                tomb.family = st.vols[&vseq].family;
                let seq = st.next_seq - 1;
                st.vols.insert(seq, tomb);
                st.family_join(seq);
                st.index_tombstone(seq);
                st.dirty_vols.insert(seq);
            }
            // The volume shares the snapshot's blocks from here, and no longer its old tree's
            // (its tombstone keeps the old family): it joins the snapshot's family.
            st.family_leave(vseq);
            let rec = st.vols.get_mut(&vseq).expect("indexed");
            rec.root = snap.root;
            rec.size_bytes = snap.size_bytes;
            rec.family = snap.family;
            st.family_join(vseq);
            st.dirty_vols.insert(vseq);
            st.hints.remove(&vseq);
            st.volume_changes += 1;
            st.commit_change(change)?;
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
        let seq = st.by_name.get(name)?;
        let rec = &st.vols[seq];
        debug_assert!(!rec.deleting() && rec.name == name, "name index is exact");
        Some(info_of(rec))
    }
}
impl State {
    pub(super) fn load_directory(&mut self) -> Result<()> {
        let entries = self.meta.range(
            TreeKind::Directory,
            self.meta.dir_root,
            0,
            u64::MAX,
            usize::MAX,
        )?;
        for (seq, v) in entries {
            let rec = VolumeRecord::decode(&v)?;
            if rec.share_epoch > self.meta.share_epoch {
                return Err(corrupt(format!(
                    "pool {}: volume record {seq} of share epoch {}, the pool's is {}",
                    self.name, rec.share_epoch, self.meta.share_epoch
                )));
            }
            if !rec.deleting() {
                self.by_id.insert(VolumeId(rec.id), seq);
                if let Some(first) = self.by_name.insert(rec.name.clone(), seq) {
                    // Only a damaged directory holds a name twice: the older record keeps it.
                    tracing::error!("pool {}: volume name {:?} held twice", self.name, rec.name);
                    self.by_name.insert(rec.name.clone(), first);
                }
            }
            let tombstone = rec.deleting();
            self.vols.insert(seq, rec);
            self.family_join(seq);
            if tombstone {
                self.index_tombstone(seq);
            }
        }
        // New volumes take `next_seq` onwards: it must lie past every record, or a new id would
        // repeat an old one, and below the limit, so counting on from it cannot overflow.
        let last = self.vols.keys().next_back().copied().unwrap_or(0);
        if self.next_seq <= last || self.next_seq > VOLUME_SEQ_MAX {
            return Err(corrupt(format!(
                "pool {}: next volume sequence number {} with {last} in the directory",
                self.name, self.next_seq
            )));
        }
        Ok(())
    }
    pub(super) fn seq_of(&self, id: VolumeId) -> Result<u64> {
        self.by_id
            .get(&id)
            .copied()
            .ok_or_else(|| err(ErrorKind::NotFound, format!("volume {id}")))
    }

    pub(super) fn ensure_name_free(&self, name: &str) -> Result<()> {
        if self.by_name.contains_key(name) {
            return Err(err(
                ErrorKind::AlreadyExists,
                format!("volume name {name:?}"),
            ));
        }
        Ok(())
    }

    /// A new record with the next sequence number and an id derived from it (never reused).
    pub(super) fn new_record(
        &mut self,
        name: &str,
        size_bytes: u64,
        logical_block_size: u32,
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
            logical_block_size,
            flags,
            created_unix_secs: now_unix_secs(),
            name: name.to_string(),
            tag: Vec::new(),
            // No mapping the volume holds is older than it.
            share_epoch: self.meta.share_epoch,
            // A family of its own; a record made from another volume's tree takes that one's.
            family: id,
        }
    }

    pub(super) fn add_record(&mut self, rec: VolumeRecord) {
        let seq = u64::from_be_bytes(rec.id[8..].try_into().expect("8 bytes"));
        debug_assert!(!rec.deleting(), "a new record is live");
        let before = self.vols.insert(seq, rec);
        assert!(before.is_none(), "record {seq} is new");
        self.family_join(seq);
        self.index_record(seq);
        self.dirty_vols.insert(seq);
        self.volume_changes += 1;
    }

    /// Changes live record `seq` with `f` (its indexes follow) and commits, as one change.
    pub(super) fn update(
        &mut self,
        seq: u64,
        f: impl FnOnce(&mut VolumeRecord),
    ) -> Result<VolumeInfo> {
        let change = self.begin_change(&[seq]);
        self.unindex_record(seq);
        let rec = self.vols.get_mut(&seq).expect("indexed");
        f(rec);
        assert!(!rec.deleting(), "an update keeps a volume live");
        let info = info_of(rec);
        self.index_record(seq);
        self.dirty_vols.insert(seq);
        self.volume_changes += 1;
        self.commit_change(change)?;
        Ok(info)
    }

    /// Starts a directory change that may alter the records `touched` and add new ones.
    pub(super) fn begin_change(&self, touched: &[u64]) -> Change {
        let saved = touched
            .iter()
            .map(|&seq| Saved {
                seq,
                rec: self.vols[&seq].clone(),
                dirty: self.dirty_vols.contains(&seq),
                hint: self.hints.get(&seq).copied(),
            })
            .collect();
        Change {
            next_seq: self.next_seq,
            volume_changes: self.volume_changes,
            saved,
            meta: None,
        }
    }

    /// Runs the metadata operation of `change` (at most one): undone at once if it fails,
    /// with the change if its commit is refused.
    pub(super) fn meta_in_change<T>(
        &mut self,
        change: &mut Change,
        f: impl FnOnce(&mut Meta) -> Result<T>,
    ) -> Result<T> {
        assert!(change.meta.is_none(), "one metadata operation per change");
        let (v, undo) = self.meta_op_kept(Tier::Ordinary, f)?;
        change.meta = Some(undo);
        Ok(v)
    }

    /// Commits `change`; when the commit is refused, or fails the pool, the change is put
    /// back and the error answered.
    pub(super) fn commit_change(&mut self, change: Change) -> Result<()> {
        let r = self.commit();
        if r.is_err() {
            self.undo_change(change);
        }
        r
    }

    /// Puts back what `change` altered. The commit that refused it was undone, so the state is
    /// the one the change left; a failed pool has dropped its metadata changes already.
    fn undo_change(&mut self, change: Change) {
        if let Some(undo) = change.meta {
            if self.failed.is_none() {
                self.meta.undo_kept(undo);
            }
        }
        for seq in change.next_seq..self.next_seq {
            self.unindex_record(seq);
            self.family_leave(seq);
            self.vols.remove(&seq);
            self.dirty_vols.remove(&seq);
            self.hints.remove(&seq);
        }
        for s in change.saved {
            self.unindex_record(s.seq);
            // Its family too may have changed (a restore).
            self.family_leave(s.seq);
            self.vols.insert(s.seq, s.rec);
            self.family_join(s.seq);
            self.index_record(s.seq);
            if !s.dirty {
                self.dirty_vols.remove(&s.seq);
            }
            match s.hint {
                Some(h) => self.hints.insert(s.seq, h),
                None => self.hints.remove(&s.seq),
            };
        }
        self.next_seq = change.next_seq;
        self.volume_changes = change.volume_changes;
        #[cfg(debug_assertions)]
        self.assert_tombstones_indexed();
    }

    /// Takes record `seq` out of the index it is in: by id and name, or the reclaim queue.
    fn unindex_record(&mut self, seq: u64) {
        let rec = &self.vols[&seq];
        if !rec.deleting() {
            let by_id = self.by_id.remove(&VolumeId(rec.id));
            assert_eq!(by_id, Some(seq), "live volume {seq} indexed by id");
            let by_name = self.by_name.remove(&rec.name);
            assert_eq!(
                by_name,
                Some(seq),
                "live volume {:?} indexed by name",
                rec.name
            );
        } else if rec.quarantined() {
            self.quarantined_count -= 1;
        } else {
            let queued = self.tombstones.remove(&seq);
            assert!(queued, "tombstone {seq} queued for reclaim");
        }
    }

    /// Indexes record `seq`: a live one by id and name, a tombstone for reclaim.
    fn index_record(&mut self, seq: u64) {
        let rec = &self.vols[&seq];
        if rec.deleting() {
            return self.index_tombstone(seq);
        }
        let id = VolumeId(rec.id);
        let named = self.by_name.insert(rec.name.clone(), seq);
        assert!(
            named.is_none(),
            "volume name {:?} checked free first",
            rec.name
        );
        self.by_id.insert(id, seq);
    }

    /// The share epoch the next operation that adds an owner to blocks takes;
    /// `ShareEpochExhausted` when the epoch is at its maximum (a mapping's field could not tell
    /// it apart). Changes nothing: a share is taken as the last step of its change that may
    /// fail on its own, so a refused share leaves every volume's blocks as exclusive as before.
    pub(super) fn next_share_epoch(&self) -> Result<u64> {
        self.meta
            .share_epoch
            .checked_add(1)
            .filter(|&e| e <= SHARE_EPOCH_MAX)
            .ok_or_else(|| {
                err(
                    ErrorKind::ShareEpochExhausted,
                    format!(
                        "pool {}: share epoch {} is the last",
                        self.name, self.meta.share_epoch
                    ),
                )
            })
    }

    /// Advances the pool's share epoch to `epoch` (from [`State::next_share_epoch`]) for an
    /// operation that adds an owner to the blocks of the volumes `seqs`, and makes it their last
    /// share: every mapping they hold now was written before it, so none is overwritten in place
    /// again. Their records must be saved in the operation's change, so a refused commit puts
    /// their last share back (the pool's epoch may stay advanced: it only has to be at least
    /// every record's and mapping's). Called under the exclusive I/O gate: no in-place write to
    /// them is in flight.
    pub(super) fn share(&mut self, epoch: u64, seqs: &[u64]) {
        debug_assert!(
            self.meta.io_gate.is_locked_exclusive(),
            "a share with writes in flight"
        );
        assert_eq!(
            epoch,
            self.meta.share_epoch + 1,
            "share epoch taken in order"
        );
        self.meta.share_epoch = epoch;
        for &seq in seqs {
            self.vols.get_mut(&seq).expect("indexed").share_epoch = epoch;
            self.family_touch(seq);
            self.dirty_vols.insert(seq);
        }
    }

    /// Sets the root of record `seq`, after any change of its tree (a root changed in place in
    /// the open transaction keeps its address).
    pub(super) fn set_root(&mut self, seq: u64, root: Root) {
        self.family_touch(seq);
        let rec = self.vols.get_mut(&seq).expect("indexed");
        if rec.root != root {
            rec.root = root;
            self.dirty_vols.insert(seq);
        }
    }
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
