//! Images opened for hosts, and what keeps them served across a Ceph outage.
//!
//! A [`Link`] belongs to one configured RBD pool and outlives its connections: it knows the
//! newest connection ([`RbdExports`]), counts the connections made, and holds the images hosts
//! have open — one librbd handle per image, shared by every host handle on it (NBD connections,
//! iSCSI commands), so the image's exclusive lock has one owner in the daemon. An image no host
//! holds is closed [`limits::IDLE_CLOSE_MS`] later (iSCSI opens its volume for each command), at
//! once when management opens it ([`Link::close_idle`]) or deletes it.
//!
//! Outage: a request that fails because the cluster did not answer in time marks its
//! connection lost ([`Conn::note`]); the pool then connects anew (a new RADOS client) and
//! every served image, before it serves another request, is opened through the new connection
//! and takes its exclusive lock again, breaking the old client's lock and so blocklisting that
//! client ([`crate::Image::take_over`]): a write that timed out here but is still on its way
//! cannot land over newer data. Until then requests fail at once with an I/O error.
//!
//! librbd's cache is writeback (see [`crate::cluster`]): a change acknowledged to a host lives
//! only in this process until a flush sends it. Each handle counts the changes it acknowledged
//! and how many of them a flush has covered ([`Unflushed`]); a handle replaced while some are not
//! covered has lost them (its client is blocklisted by then), and every host handle's next flush
//! says so once ([`Served::losses`]) instead of succeeding on the new handle.
//!
//! Invariants: an image is served through at most one handle at a time; a handle whose
//! connection is lost or superseded serves no request (it is replaced first); an image whose
//! connection is lost is never closed by the idle sweep (closing would leave its lock held by a
//! client that cannot release it), only replaced once the pool has connected again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use cairn_export::{Error as ExportError, ErrorKind as ExportKind, Result as ExportResult};
use parking_lot::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::{Error, ErrorKind};
use crate::exports::{translate, RbdExports};
use crate::image::Image;
use crate::limits;

/// One connection's standing, as its images see it.
pub(crate) struct Conn {
    /// Which connection of its [`Link`] this is (1 for the first).
    generation: u64,
    lost: AtomicBool,
    why: Mutex<String>,
}

impl Conn {
    /// Marks the connection lost if `e` says the cluster did not answer.
    pub(crate) fn note(&self, e: &Error) {
        if e.kind() == ErrorKind::Unavailable && !self.lost.swap(true, Ordering::AcqRel) {
            *self.why.lock() = e.to_string();
            tracing::warn!(error = %e, "RBD connection lost");
        }
    }

    /// Why the connection was given up, if it was.
    pub(crate) fn lost(&self) -> Option<String> {
        self.lost
            .load(Ordering::Acquire)
            .then(|| self.why.lock().clone())
    }
}

/// Changes (writes, discards, zeroings) one handle acknowledged, and how many of them a
/// successful flush has covered.
#[derive(Default)]
pub(crate) struct Unflushed {
    changed: AtomicU64,
    covered: AtomicU64,
}

impl Unflushed {
    /// A change was acknowledged.
    pub(crate) fn changed(&self) {
        self.changed.fetch_add(1, Ordering::AcqRel);
    }

    /// Taken before a flush starts: what it covers once it has succeeded.
    pub(crate) fn mark(&self) -> u64 {
        self.changed.load(Ordering::Acquire)
    }

    /// A flush started at `mark` succeeded.
    pub(crate) fn flushed(&self, mark: u64) {
        self.covered.fetch_max(mark, Ordering::AcqRel);
    }

    /// True if some acknowledged change is not covered by a flush.
    fn any(&self) -> bool {
        self.changed.load(Ordering::Acquire) > self.covered.load(Ordering::Acquire)
    }
}

/// An image served to hosts: its handle, replaced after an outage.
pub(crate) struct Served {
    rados_name: String,
    slot: RwLock<Slot>,
    /// How many handles were replaced holding unflushed changes.
    losses: AtomicU64,
    /// When the last host handle was dropped; `None` while one is held.
    idle_since: Mutex<Option<Instant>>,
}

/// The handle an image is served through, and the connection it was opened on.
pub(crate) struct Slot {
    pub(crate) image: Image,
    pub(crate) conn: Arc<Conn>,
    pub(crate) unflushed: Arc<Unflushed>,
}

impl Slot {
    fn new(image: Image, conn: Arc<Conn>) -> Slot {
        Slot {
            image,
            conn,
            unflushed: Arc::default(),
        }
    }

    /// Runs `change` (a write, discard or zeroing) on the image and counts it if it succeeded.
    pub(crate) fn change(
        &self,
        change: impl FnOnce(&Image) -> crate::Result<()>,
    ) -> crate::Result<()> {
        change(&self.image)?;
        self.unflushed.changed();
        Ok(())
    }

    /// Flushes the image, covering every change acknowledged before.
    pub(crate) fn flush(&self) -> crate::Result<()> {
        let mark = self.unflushed.mark();
        self.image.flush()?;
        self.unflushed.flushed(mark);
        Ok(())
    }

    fn stale(&self, link: &Link) -> bool {
        self.conn.lost.load(Ordering::Acquire) || self.conn.generation != link.generation()
    }
}

fn unavailable(what: &str, why: &str) -> ExportError {
    ExportError::new(
        ExportKind::Io,
        format!("RBD image {what:?}: the pool has lost its cluster ({why})"),
    )
}

impl Served {
    /// The image's handle, opened again through the pool's newest connection (its exclusive
    /// lock taken over) if the one it had is lost or superseded.
    pub(crate) fn fresh(&self, link: &Link) -> ExportResult<RwLockReadGuard<'_, Slot>> {
        {
            let slot = self.slot.read();
            if !slot.stale(link) {
                return Ok(slot);
            }
        }
        let mut slot = self.slot.write();
        if slot.stale(link) {
            let lost = slot.unflushed.any();
            // The old handle is closed here, after the new one took the lock over.
            *slot = self.reopen(link)?;
            if lost {
                self.losses.fetch_add(1, Ordering::AcqRel);
                tracing::warn!(image = %self.rados_name, "RBD image served again; changes acknowledged before the outage and never flushed are lost");
            }
        }
        Ok(RwLockWriteGuard::downgrade(slot))
    }

    /// The image's handle if it serves now and can be had without waiting: `None` while it is
    /// being replaced or must be (the caller then goes through [`Served::fresh`] on a thread
    /// that may block).
    pub(crate) fn ready(&self, link: &Link) -> Option<RwLockReadGuard<'_, Slot>> {
        self.slot.try_read().filter(|slot| !slot.stale(link))
    }

    fn reopen(&self, link: &Link) -> ExportResult<Slot> {
        let exports = link
            .current()
            .ok_or_else(|| unavailable(&self.rados_name, "not connected"))?;
        let conn = exports.conn().clone();
        if let Some(why) = conn.lost() {
            return Err(unavailable(&self.rados_name, &why));
        }
        let opened = exports.pool.open_image(&self.rados_name).and_then(|image| {
            image.take_over()?;
            Ok(image)
        });
        match opened {
            Ok(image) => {
                tracing::info!(image = %self.rados_name, "RBD image served again, lock taken over");
                Ok(Slot::new(image, conn))
            }
            Err(e) => {
                conn.note(&e);
                Err(translate(e))
            }
        }
    }

    /// How many of its handles were replaced holding changes no flush covered; a host handle
    /// that saw fewer reports the difference at its next flush.
    pub(crate) fn losses(&self) -> u64 {
        self.losses.load(Ordering::Acquire)
    }

    /// A host handle on it was dropped.
    pub(crate) fn released(&self) {
        *self.idle_since.lock() = Some(Instant::now());
    }

    fn held(&self) {
        *self.idle_since.lock() = None;
    }

    /// True if no host holds it (only the link does) and it has been idle for `idle`, and its
    /// connection still answers.
    fn closable(self: &Arc<Served>, idle: Duration) -> bool {
        Arc::strong_count(self) == 1
            && self.idle_since.lock().is_some_and(|t| t.elapsed() >= idle)
            && self.slot.read().conn.lost().is_none()
    }
}

/// One configured pool's connections and served images (see the module doc).
#[derive(Default)]
pub(crate) struct Link {
    current: Mutex<Weak<RbdExports>>,
    generation: AtomicU64,
    images: Mutex<HashMap<[u8; 16], Arc<Served>>>,
}

impl Link {
    /// The standing of a new connection of this link (made current by [`Link::install`]).
    pub(crate) fn new_conn(&self) -> Arc<Conn> {
        Arc::new(Conn {
            generation: self.generation.load(Ordering::Acquire) + 1,
            lost: AtomicBool::new(false),
            why: Mutex::new(String::new()),
        })
    }

    /// Makes `exports` (whose connection came from [`Link::new_conn`]) the current connection,
    /// then moves every served image onto it (breaking the old connection's locks).
    pub(crate) fn install(&self, exports: &Arc<RbdExports>) {
        *self.current.lock() = Arc::downgrade(exports);
        self.generation
            .store(exports.conn().generation, Ordering::Release);
        let served: Vec<Arc<Served>> = self.images.lock().values().cloned().collect();
        for s in served {
            if let Err(e) = s.fresh(self) {
                tracing::warn!(image = %s.rados_name, error = %e, "RBD image not taken over yet");
            }
        }
    }

    /// Makes `conn` the link's connection without a current [`RbdExports`] to reconnect
    /// through: a connection made on its own, whose images serve until it is lost and then
    /// fail (nothing moves them to a new connection).
    pub(crate) fn standalone(&self, conn: &Conn) {
        debug_assert_eq!(self.generation(), 0, "a standalone link has one connection");
        self.generation.store(conn.generation, Ordering::Release);
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current connection, if it is still there.
    pub(crate) fn current(&self) -> Option<Arc<RbdExports>> {
        self.current.lock().upgrade()
    }

    /// The served image of volume `id`, if one is open; marked held.
    pub(crate) fn get(&self, id: &[u8; 16]) -> Option<Arc<Served>> {
        let served = self.images.lock().get(id).cloned()?;
        served.held();
        Some(served)
    }

    /// The served image of volume `id`: the one open, or `image` (its lock taken), marked held.
    pub(crate) fn serve(
        &self,
        id: [u8; 16],
        rados_name: &str,
        conn: &Arc<Conn>,
        image: impl FnOnce() -> crate::Result<Image>,
    ) -> crate::Result<Arc<Served>> {
        if let Some(served) = self.get(&id) {
            return Ok(served);
        }
        let image = image()?;
        image.lock_exclusive()?;
        let served = Arc::new(Served {
            rados_name: rados_name.to_string(),
            slot: RwLock::new(Slot::new(image, conn.clone())),
            losses: AtomicU64::new(0),
            idle_since: Mutex::new(None),
        });
        // A handle opened meanwhile by another host wins; ours is closed on return.
        Ok(self.images.lock().entry(id).or_insert(served).clone())
    }

    /// Closes the image of volume `id` if no host holds it (management needs the image, or
    /// is deleting it).
    pub(crate) fn close_idle(&self, id: &[u8; 16]) {
        let mut images = self.images.lock();
        if images.get(id).is_some_and(|s| Arc::strong_count(s) == 1) {
            let closed = images.remove(id);
            drop(images);
            drop(closed);
        }
    }

    /// Lets go of every image: each is closed (its lock released) now, or when the last host
    /// handle on it is dropped. For a daemon shutting down.
    pub(crate) fn close_all(&self) {
        let closed: Vec<Arc<Served>> = self.images.lock().drain().map(|(_, s)| s).collect();
        drop(closed);
    }

    /// Closes every image idle for longer than [`limits::IDLE_CLOSE_MS`].
    pub(crate) fn close_expired(&self) {
        let idle = Duration::from_millis(limits::IDLE_CLOSE_MS);
        let mut images = self.images.lock();
        let expired: Vec<[u8; 16]> = images
            .iter()
            .filter(|(_, s)| s.closable(idle))
            .map(|(id, _)| *id)
            .collect();
        let closed: Vec<Arc<Served>> = expired.iter().filter_map(|id| images.remove(id)).collect();
        drop(images);
        drop(closed);
    }
}
