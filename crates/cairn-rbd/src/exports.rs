//! The export layer over one RBD pool: every image carrying a Cairn name is a volume a host may
//! open over NBD.
//!
//! Mapping: a volume is an image whose RADOS name is an id (`cairn-` and 16 hex digits, never
//! reused) and whose Cairn name (any text, spaces included) is the image metadata
//! [`NAME_KEY`]; images without it are not Cairn's and are not exported. The 128-bit volume id is
//! derived from the cluster fsid, the pool id and the RBD image id (see [`volume_id`]), so it is
//! the same in every daemon that opens the pool, and the NAA identity follows from it.
//!
//! Invariants:
//! - Names and leases live in the daemon's [`Registry`], shared with every other pool: a name is
//!   reserved there before the image is made (and freed if that fails), so no two pools of any
//!   backend hold one name; an image whose name another pool holds is not exported. An image
//!   another client made is registered when a lookup first finds it; one another client removed
//!   keeps its name registered until this pool deletes it or the daemon restarts.
//! - An opened volume holds a registry lease until it is dropped, and the image's exclusive lock
//!   is held by the one handle every host handle on the image shares ([`crate::opened`]), kept
//!   a little after the last is dropped: [`RbdExports::delete_volume`] refuses a leased volume
//!   with `InUse` (and closes an idle handle first), and librbd refuses removal while any client
//!   anywhere has it open; no other client writes meanwhile.
//! - After a request timed out, the handle serves nothing until the pool has connected anew and
//!   the image's lock was taken over through the new connection (see [`crate::opened`]).
//! - A host handle is also an [`AsyncVolume`]: requests start from the caller's thread and
//!   complete on librbd's (see [`crate::aio`]), with the same range checks and error mapping;
//!   one that would have to wait for the handle (being replaced after an outage) is declined
//!   and goes the blocking way, which fails it at once while the pool has lost its cluster.
//! - FUA and FLUSH are an rbd flush; block status comes from diff iteration: a range reported
//!   unmapped reads as zeros.
//! - Ceph errors become [`cairn_export::ErrorKind`]s here, in [`translate`], and nowhere else.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cairn_export::{
    AsyncVolume, Declined, Error as ExportError, ErrorKind as ExportKind, Exports, Io, IoDone,
    Lease, OnDone, Registry, Result as ExportResult, Run, Volume, VolumeInfo, Zeroing,
};

use crate::cluster::{Cluster, ConnectOptions, Pool};
use crate::error::{Error, ErrorKind, Result};
use crate::image::Image;
use crate::meta::Meta;
use crate::opened::{Conn, Link, Served, Slot};

pub use crate::meta::NAME_KEY;
/// Logical block size of every RBD volume.
pub const LOGICAL_BLOCK_BYTES: u32 = 512;
/// Prefix of the RADOS names of images Cairn creates.
pub const IMAGE_PREFIX: &str = "cairn-";
/// Prefix of an image Cairn is still making (its metadata not yet all written); removed at the
/// next connection if a crash leaves one.
pub const STAGING_PREFIX: &str = "cairn.new-";

/// The one translation of a Ceph error into the export layer's terms.
pub fn translate(e: Error) -> ExportError {
    let kind = match e.kind() {
        ErrorKind::NotFound => ExportKind::NotFound,
        ErrorKind::InUse | ErrorKind::Exists => ExportKind::InUse,
        ErrorKind::NoSpace => ExportKind::NoSpace,
        ErrorKind::InvalidArgument => ExportKind::InvalidArgument,
        _ => ExportKind::Io,
    };
    ExportError::new(kind, e.to_string()).with_source(e)
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The volume id of image `image_id` in pool `pool_id` of cluster `fsid`: bytes 0..4 a hash of
/// the fsid, 4..8 the pool id, 8..16 the image id (its value when it is at most 16 hex digits,
/// as librbd 16.2 makes them, so distinct images of a pool get distinct ids; a hash otherwise).
pub fn volume_id(fsid: &[u8; 16], pool_id: i64, image_id: &str) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&(fnv1a64(fsid) as u32).to_be_bytes());
    id[4..8].copy_from_slice(&(pool_id as u32).to_be_bytes());
    let image = match u64::from_str_radix(image_id, 16) {
        Ok(v) if image_id.len() <= 16 => v,
        _ => fnv1a64(image_id.as_bytes()),
    };
    id[8..].copy_from_slice(&image.to_be_bytes());
    id
}

/// A registry refusal (the name is taken, the volume is open or being deleted) as the export
/// layer's `InUse`.
fn refused(e: impl std::fmt::Display) -> ExportError {
    ExportError::new(ExportKind::InUse, e.to_string())
}

/// The volumes of one RBD pool, through one connection.
pub struct RbdExports {
    pub(crate) pool: Pool,
    fsid: [u8; 16],
    /// The name this pool's volumes are registered under.
    pub(crate) owner: String,
    pub(crate) registry: Arc<Registry>,
    /// The pool's served images and connections, shared with the connections made after this
    /// one (see [`crate::opened`]).
    link: Arc<Link>,
    conn: Arc<Conn>,
}

/// A Cairn volume found in the pool: its RADOS name, RBD id, what a host sees and Cairn's
/// metadata.
pub(crate) struct Found {
    pub(crate) rados_name: String,
    pub(crate) image_id: String,
    pub(crate) info: VolumeInfo,
    pub(crate) meta: Meta,
}

impl RbdExports {
    /// Connects to the cluster and opens `rados_pool` (fails within the connect timeout when
    /// the cluster is down), with a registry of its own.
    pub fn connect(opts: &ConnectOptions, rados_pool: &str) -> Result<RbdExports> {
        RbdExports::connect_in(opts, rados_pool, rados_pool, Registry::new())
    }

    /// Connects like [`RbdExports::connect`], keeping names and leases in the daemon's
    /// `registry` under the pool name `owner`.
    pub fn connect_in(
        opts: &ConnectOptions,
        rados_pool: &str,
        owner: &str,
        registry: Arc<Registry>,
    ) -> Result<RbdExports> {
        let link = Arc::new(Link::default());
        let exports = RbdExports::connect_linked(opts, rados_pool, owner, registry, link)?;
        // A connection of its own: its images are served through it until it is lost, and
        // nothing connects anew after that.
        exports.link.standalone(&exports.conn);
        Ok(exports)
    }

    /// Connects like [`RbdExports::connect_in`], as a new connection of `link` (which
    /// [`Link::install`] then makes current).
    pub(crate) fn connect_linked(
        opts: &ConnectOptions,
        rados_pool: &str,
        owner: &str,
        registry: Arc<Registry>,
        link: Arc<Link>,
    ) -> Result<RbdExports> {
        let cluster = Cluster::connect(opts)?;
        let fsid = cluster.fsid()?;
        let pool = cluster.pool(rados_pool)?;
        let exports = RbdExports {
            pool,
            fsid,
            owner: owner.to_string(),
            registry,
            conn: link.new_conn(),
            link,
        };
        exports.remove_staged()?;
        // Registers the names the pool holds now.
        exports.scan_all()?;
        Ok(exports)
    }

    /// The RADOS pool's name.
    pub fn pool_name(&self) -> &str {
        self.pool.name()
    }

    /// This connection's standing (lost after a timeout?).
    pub(crate) fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    /// The served images and connections of the pool.
    pub(crate) fn link(&self) -> &Arc<Link> {
        &self.link
    }

    /// Does volume id `id` belong to this pool (same cluster, same RADOS pool)?
    pub(crate) fn owns(&self, id: &[u8; 16]) -> bool {
        id[..8] == volume_id(&self.fsid, self.pool.id(), "0")[..8]
    }

    fn describe(&self, name: String, image: &Image) -> Result<(String, VolumeInfo)> {
        let image_id = image.id()?;
        let info = VolumeInfo {
            name,
            id: volume_id(&self.fsid, self.pool.id(), &image_id),
            size_bytes: image.size_bytes()?,
            logical_block_size: LOGICAL_BLOCK_BYTES,
            read_only: false,
        };
        Ok((image_id, info))
    }

    /// The Cairn volume behind the open `image` called `rados_name`, if it is one this pool
    /// exports (named, not waiting in the trash, its name registered to it).
    pub(crate) fn found(&self, rados_name: String, image: &Image) -> Result<Option<Found>> {
        let Some(meta) = Meta::read(image)? else {
            return Ok(None);
        };
        if meta.deleted || !rados_name.starts_with(IMAGE_PREFIX) {
            return Ok(None);
        }
        let (image_id, info) = self.describe(meta.name.clone(), image)?;
        if !self.admitted(&info) {
            return Ok(None);
        }
        Ok(Some(Found {
            rados_name,
            image_id,
            info,
            meta,
        }))
    }

    /// Every Cairn volume of the pool, hidden ones included (images without a Cairn name are
    /// skipped, as are images removed while being listed).
    pub(crate) fn scan_all(&self) -> Result<Vec<Found>> {
        let mut out = Vec::new();
        for spec in self.pool.list_images()? {
            if !spec.name.starts_with(IMAGE_PREFIX) {
                continue;
            }
            let image = match self.pool.open_image(&spec.name) {
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                other => other?,
            };
            out.extend(self.found(spec.name, &image)?);
        }
        out.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        Ok(out)
    }

    /// The volumes hosts see: every Cairn volume but the hidden ones.
    fn scan(&self) -> Result<Vec<Found>> {
        let mut all = self.scan_all()?;
        all.retain(|f| !f.meta.hidden);
        Ok(all)
    }

    /// The volume `id` of this pool and its open image; `None` if the pool has no such volume.
    pub(crate) fn find_id(&self, id: &[u8; 16]) -> Result<Option<(Found, Image)>> {
        if !self.owns(id) {
            return Ok(None);
        }
        // Management opens its own handle: one no host holds gives its lock up first.
        self.link.close_idle(id);
        let image_id = format!(
            "{:x}",
            u64::from_be_bytes(id[8..].try_into().expect("8 bytes"))
        );
        let image = match self.pool.open_image_by_id(&image_id) {
            Err(e) if e.kind() == ErrorKind::NotFound => return self.find_id_by_scan(id),
            other => other?,
        };
        let found = self.found(image.rados_name()?, &image)?;
        Ok(found.filter(|f| f.info.id == *id).map(|f| (f, image)))
    }

    /// [`RbdExports::find_id`] for an image id too long to be read back from the volume id.
    fn find_id_by_scan(&self, id: &[u8; 16]) -> Result<Option<(Found, Image)>> {
        let Some(found) = self.scan_all()?.into_iter().find(|f| f.info.id == *id) else {
            return Ok(None);
        };
        let image = self.pool.open_image(&found.rados_name)?;
        Ok(Some((found, image)))
    }

    /// Removes images a crash left half-made (staged under [`STAGING_PREFIX`]), with the RBD
    /// snapshot a staged clone was made from.
    fn remove_staged(&self) -> Result<()> {
        for spec in self.pool.list_images()? {
            if !spec.name.starts_with(STAGING_PREFIX) {
                continue;
            }
            let origin = self
                .pool
                .open_image(&spec.name)
                .and_then(|i| Meta::read(&i))
                .ok()
                .flatten()
                .and_then(|m| m.origin);
            tracing::info!(pool = %self.owner, image = %spec.name, "removing a half-made image");
            self.pool.remove_image(&spec.name)?;
            if let Some((parent, snap)) = origin {
                self.release_origin(&parent, &snap);
            }
        }
        Ok(())
    }

    /// Does the registry give `info.name` to this volume? A name nobody holds is registered for it
    /// now; one held by a volume of another pool (or reserved) is not.
    fn admitted(&self, info: &VolumeInfo) -> bool {
        match self.registry.lookup(&info.name) {
            Some((id, owner)) => id == info.id && *owner == *self.owner,
            None => match self.registry.insert(&info.name, info.id, &self.owner) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(pool = %self.owner, error = %e, "RBD volume not exported");
                    false
                }
            },
        }
    }

    fn find(&self, name: &str) -> ExportResult<Found> {
        self.scan()
            .map_err(translate)?
            .into_iter()
            .find(|f| f.info.name == name)
            .ok_or_else(|| ExportError::new(ExportKind::NotFound, format!("export {name:?}")))
    }

    /// Creates a volume called `name` of `size_bytes` (a multiple of 512); `InUse` if the name
    /// is taken.
    pub fn create_volume(&self, name: &str, size_bytes: u64) -> ExportResult<VolumeInfo> {
        if size_bytes == 0 || size_bytes % u64::from(LOGICAL_BLOCK_BYTES) != 0 {
            return Err(ExportError::new(
                ExportKind::InvalidArgument,
                format!("volume size {size_bytes} is not a positive multiple of 512"),
            ));
        }
        let claim = self.registry.reserve(name).map_err(refused)?;
        let meta = Meta {
            name: name.to_string(),
            created_unix_secs: now_unix_secs(),
            ..Meta::default()
        };
        let found = self
            .make(&meta, |staged| self.pool.create_image(staged, size_bytes))
            .map_err(translate)?;
        claim.settle(found.info.id, &self.owner);
        Ok(found.info)
    }

    /// Makes an image with `make` under a staging name, writes `meta` to it and gives it its
    /// final RADOS name, so no reader ever sees it without its metadata; on failure nothing is
    /// left (the first error is the one reported).
    pub(crate) fn make(&self, meta: &Meta, make: impl FnOnce(&str) -> Result<()>) -> Result<Found> {
        let token = new_token();
        let staged = format!("{STAGING_PREFIX}{token:016x}");
        let rados_name = format!("{IMAGE_PREFIX}{token:016x}");
        make(&staged)?;
        let described = self.pool.open_image(&staged).and_then(|image| {
            meta.write(&self.pool, &image)?;
            self.describe(meta.name.clone(), &image)
        });
        let renamed = described.and_then(|d| {
            self.pool.rename_image(&staged, &rados_name)?;
            Ok(d)
        });
        match renamed {
            Ok((image_id, info)) => Ok(Found {
                rados_name,
                image_id,
                info,
                meta: meta.clone(),
            }),
            Err(e) => {
                let _ = self.pool.remove_image(&staged);
                Err(e)
            }
        }
    }

    /// The RADOS name of the image behind the volume `name` (for Ceph's own tools).
    pub fn image_name(&self, name: &str) -> ExportResult<String> {
        self.scan_all()
            .map_err(translate)?
            .into_iter()
            .find(|f| f.info.name == name)
            .map(|f| f.rados_name)
            .ok_or_else(|| ExportError::new(ExportKind::NotFound, format!("volume {name:?}")))
    }

    /// Deletes the volume `name`: `InUse` while a host has it open, here or anywhere.
    pub fn delete_volume(&self, name: &str) -> ExportResult<()> {
        let found = self.find(name)?;
        self.delete_found(found).map_err(|e| match e.kind() {
            ErrorKind::InUse => {
                ExportError::new(ExportKind::InUse, format!("volume {name:?} is open"))
            }
            _ => translate(e),
        })
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now_unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// 64 bits from the kernel's random source, for image names that are never reused.
pub(crate) fn new_token() -> u64 {
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .expect("the kernel's random source is readable");
    u64::from_ne_bytes(bytes)
}

impl Exports for RbdExports {
    fn list(&self) -> ExportResult<Vec<VolumeInfo>> {
        Ok(self
            .scan()
            .map_err(translate)?
            .into_iter()
            .map(|f| f.info)
            .collect())
    }

    fn info(&self, name: &str) -> ExportResult<VolumeInfo> {
        self.find(name).map(|f| f.info)
    }

    fn open(&self, name: &str) -> ExportResult<Arc<dyn Volume>> {
        self.link.close_expired();
        // An image already served (iSCSI opens its volume for each command) is found through
        // the registry, without listing the pool.
        if let Some((id, owner)) = self.registry.lookup(name) {
            if *owner == *self.owner {
                if let Some(served) = self.link.get(&id) {
                    let lease = self.registry.lease(id).map_err(refused)?;
                    let size_bytes = served.fresh(&self.link)?.image.size_bytes();
                    let info = VolumeInfo {
                        name: name.to_string(),
                        id,
                        size_bytes: size_bytes.map_err(translate)?,
                        logical_block_size: LOGICAL_BLOCK_BYTES,
                        read_only: false,
                    };
                    return Ok(self.volume(served, info, lease));
                }
            }
        }
        let found = self.find(name)?;
        // Taken first, so a delete that has not begun is refused until the handle is dropped.
        let lease = self.registry.lease(found.info.id).map_err(refused)?;
        let served = self
            .link
            .serve(found.info.id, &found.rados_name, &self.conn, || {
                self.pool.open_image(&found.rados_name)
            })
            .map_err(translate)?;
        Ok(self.volume(served, found.info, lease))
    }
}

impl RbdExports {
    fn volume(&self, served: Arc<Served>, opened: VolumeInfo, lease: Lease) -> Arc<dyn Volume> {
        Arc::new(RbdVolume {
            seen_losses: AtomicU64::new(served.losses()),
            served,
            link: self.link.clone(),
            opened,
            _lease: lease,
        })
    }
}

/// A host's handle on a served image.
struct RbdVolume {
    served: Arc<Served>,
    link: Arc<Link>,
    /// What it was when opened; the size is asked again on every [`Volume::info`].
    opened: VolumeInfo,
    /// The image's [`Served::losses`] this handle has reported (or that predate it).
    seen_losses: AtomicU64,
    _lease: Lease,
}

impl Drop for RbdVolume {
    fn drop(&mut self) {
        self.served.released();
    }
}

impl RbdVolume {
    /// Runs `f` on the image's current handle after checking the range (misaligned, past the
    /// end, or a transfer over the export limit is refused); a failure that says the cluster
    /// did not answer marks the handle's connection lost.
    fn with<T>(
        &self,
        offset: u64,
        len: u64,
        transfer: bool,
        f: impl FnOnce(&Slot) -> Result<T>,
    ) -> ExportResult<T> {
        let slot = self.served.fresh(&self.link)?;
        self.check(&slot, offset, len, transfer)?;
        let done = f(&slot);
        if let Err(e) = &done {
            slot.conn.note(e);
        }
        done.map_err(translate)
    }

    /// Fails a flush once for each handle of the image replaced, since this host handle last
    /// heard, while it held changes no flush covered: they may never reach the cluster.
    fn owed(&self) -> ExportResult<()> {
        let losses = self.served.losses();
        if self.seen_losses.swap(losses, Ordering::AcqRel) >= losses {
            return Ok(());
        }
        Err(ExportError::new(
            ExportKind::Io,
            format!(
                "{:?}: changes acknowledged before the pool lost its cluster were never flushed \
                 and may be lost",
                self.opened.name
            ),
        ))
    }

    fn check(&self, slot: &Slot, offset: u64, len: u64, transfer: bool) -> ExportResult<()> {
        let block = u64::from(LOGICAL_BLOCK_BYTES);
        let what = || format!("{len} bytes at {offset} on {:?}", self.opened.name);
        if offset % block != 0 || len % block != 0 {
            return Err(ExportError::new(ExportKind::InvalidArgument, what()));
        }
        if transfer && len > u64::from(cairn_export::limits::REQUEST_BYTES_MAX) {
            return Err(ExportError::new(ExportKind::InvalidArgument, what()));
        }
        let size = slot.image.size_bytes().map_err(translate)?;
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(ExportError::new(ExportKind::OutOfRange, what()));
        }
        Ok(())
    }
}

/// Runs covering `[offset, end)` from sorted allocated extents: mapped where an extent overlaps,
/// unmapped in the gaps, adjacent runs of one kind merged.
fn runs(offset: u64, end: u64, extents: &[crate::Extent]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    let mut push = |from: u64, to: u64, mapped: bool| {
        if from >= to {
            return;
        }
        match out.last_mut() {
            Some(last) if last.mapped == mapped && last.offset + last.len == from => {
                last.len = to - last.offset
            }
            _ => out.push(Run {
                offset: from,
                len: to - from,
                mapped,
            }),
        }
    };
    let mut at = offset;
    for e in extents {
        let (from, to) = (e.offset.max(at), (e.offset + e.len).min(end));
        if to <= from {
            continue;
        }
        push(at, from, false);
        push(from, to, true);
        at = to;
    }
    push(at, end, false);
    out
}

impl AsyncVolume for RbdVolume {
    fn submit(&self, io: Io, done: OnDone) -> std::result::Result<(), Declined> {
        let Some(slot) = self.served.ready(&self.link) else {
            return Err(Declined { io, done });
        };
        let (offset, len, transfer) = io.span();
        if let Err(e) = self.check(&slot, offset, len, transfer) {
            done(IoDone::new(io.into_buf(), Err(e)));
            return Ok(());
        }
        let flush_mark = match io {
            Io::Flush => {
                if let Err(e) = self.owed() {
                    done(IoDone::new(io.into_buf(), Err(e)));
                    return Ok(());
                }
                Some(slot.unflushed.mark())
            }
            _ => None,
        };
        let changes = !matches!(io, Io::Read { .. } | Io::Flush);
        let (conn, unflushed) = (slot.conn.clone(), slot.unflushed.clone());
        let landed = move |buf, result: Result<()>| {
            match &result {
                Err(e) => conn.note(e),
                Ok(()) if changes => unflushed.changed(),
                Ok(()) => {
                    if let Some(mark) = flush_mark {
                        unflushed.flushed(mark);
                    }
                }
            }
            done(IoDone::new(buf, result.map_err(translate)));
        };
        slot.image.start(io, Box::new(landed));
        Ok(())
    }
}

impl Volume for RbdVolume {
    fn asynchronous(&self) -> Option<&dyn AsyncVolume> {
        Some(self)
    }

    fn info(&self) -> VolumeInfo {
        let mut info = self.opened.clone();
        let size = self
            .served
            .fresh(&self.link)
            .ok()
            .map(|s| s.image.size_bytes());
        if let Some(Ok(size)) = size {
            info.size_bytes = size;
        }
        info
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> ExportResult<()> {
        self.with(offset, buf.len() as u64, true, |s| {
            s.image.read_at(offset, buf)
        })
    }

    fn read_many(&self, reads: &mut [(u64, &mut [u8])]) -> Vec<ExportResult<()>> {
        let Ok(slot) = self.served.fresh(&self.link) else {
            // The image cannot be served now: each read alone reports why.
            return reads
                .iter_mut()
                .map(|(offset, buf)| self.read(*offset, buf))
                .collect();
        };
        let failed = |e: Error| {
            slot.conn.note(&e);
            translate(e)
        };
        // Every read is in flight before the first is waited for: librbd runs them together.
        let pending: Vec<ExportResult<_>> = reads
            .iter()
            .map(|(offset, buf)| {
                self.check(&slot, *offset, buf.len() as u64, true)?;
                slot.image.submit_read(*offset, buf.len()).map_err(failed)
            })
            .collect();
        pending
            .into_iter()
            .zip(reads.iter_mut())
            .map(|(p, (_, buf))| {
                buf.copy_from_slice(&p?.wait().map_err(failed)?);
                Ok(())
            })
            .collect()
    }

    fn write(&self, offset: u64, data: &[u8], fua: bool) -> ExportResult<()> {
        self.with(offset, data.len() as u64, true, |s| {
            s.change(|i| i.write_at(offset, data))?;
            if fua {
                s.flush()?;
            }
            Ok(())
        })
    }

    fn write_many(&self, writes: &[(u64, &[u8])]) -> Vec<ExportResult<()>> {
        let Ok(slot) = self.served.fresh(&self.link) else {
            // The image cannot be served now: each write alone reports why.
            return writes
                .iter()
                .map(|&(offset, data)| self.write(offset, data, false))
                .collect();
        };
        let failed = |e: Error| {
            slot.conn.note(&e);
            translate(e)
        };
        // Every write is in flight before the first is waited for, as for reads.
        let pending: Vec<ExportResult<_>> = writes
            .iter()
            .map(|&(offset, data)| {
                self.check(&slot, offset, data.len() as u64, true)?;
                slot.image
                    .submit_write(offset, data.to_vec())
                    .map_err(failed)
            })
            .collect();
        pending
            .into_iter()
            .map(|p| {
                p?.wait().map_err(failed)?;
                slot.unflushed.changed();
                Ok(())
            })
            .collect()
    }

    fn flush(&self) -> ExportResult<()> {
        self.owed()?;
        self.with(0, 0, false, Slot::flush)
    }

    fn trim(&self, offset: u64, len: u64) -> ExportResult<()> {
        self.with(offset, len, false, |s| s.change(|i| i.discard(offset, len)))
    }

    fn write_zeroes(&self, offset: u64, len: u64, how: Zeroing) -> ExportResult<()> {
        let allocate = how == Zeroing::Allocate;
        self.with(offset, len, false, |s| {
            s.change(|i| i.write_zeroes(offset, len, allocate))
        })
    }

    fn block_status(&self, offset: u64, len: u64) -> ExportResult<Vec<Run>> {
        let mut extents = self.with(offset, len, false, |s| s.image.allocated(offset, len))?;
        extents.sort_by_key(|e| e.offset);
        Ok(runs(offset, offset + len, &extents))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Extent;

    #[test]
    fn runs_cover_the_range_clip_and_merge() {
        let e = |offset, len| Extent { offset, len };
        let r = |offset, len, mapped| Run {
            offset,
            len,
            mapped,
        };
        assert_eq!(runs(0, 100, &[]), vec![r(0, 100, false)]);
        assert_eq!(
            runs(10, 100, &[e(0, 20), e(20, 10), e(50, 100)]),
            vec![r(10, 20, true), r(30, 20, false), r(50, 50, true)]
        );
        assert_eq!(runs(10, 20, &[e(40, 5)]), vec![r(10, 10, false)]);
    }

    #[test]
    fn volume_ids_separate_clusters_pools_and_images() {
        let (f1, f2) = ([1u8; 16], [2u8; 16]);
        let a = volume_id(&f1, 1, "101e7c46cbfc");
        assert_eq!(a, volume_id(&f1, 1, "101e7c46cbfc"), "stable");
        assert_ne!(a, volume_id(&f2, 1, "101e7c46cbfc"));
        assert_ne!(a, volume_id(&f1, 2, "101e7c46cbfc"));
        assert_ne!(a, volume_id(&f1, 1, "101e7c46cbfd"));
        assert_ne!(volume_id(&f1, 1, "x"), volume_id(&f1, 1, "y"));
        assert_eq!(&a[8..], &0x101e_7c46_cbfc_u64.to_be_bytes());
    }
}
