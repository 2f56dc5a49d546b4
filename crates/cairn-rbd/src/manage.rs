//! Volume management in one RBD pool: snapshots as RBD snapshot + clone, deletion (deferred
//! through the trash while clones still read from the image), and changes of Cairn's metadata.
//!
//! Invariants:
//! - A snapshot replica is a clone (format 2) of an RBD snapshot `cairn-<token>` of its source,
//!   made under a staging name and renamed once its metadata is written; its `origin` names that
//!   snapshot, which is removed when the clone is deleted (never before).
//! - A volume whose snapshots still back clones is not removed but marked deleted and moved to the
//!   trash, where its clones keep reading it; when its last clone goes, its snapshot goes, and the
//!   trashed image is removed for good (and so on up a chain of trashed parents).
//! - Every change takes the daemon's registry first: a name is reserved before the image carries
//!   it, a delete is refused while a host holds a lease.

use cairn_export::Registry;

use crate::error::{Error, ErrorKind, Result};
use crate::exports::{new_token, Found, RbdExports, IMAGE_PREFIX};
use crate::image::Image;
use crate::meta::Meta;

/// A refusal of the daemon's registry in this crate's terms.
pub(crate) fn from_registry(e: cairn_engine::Error) -> Error {
    let kind = match e.kind() {
        cairn_engine::ErrorKind::AlreadyExists => ErrorKind::Exists,
        cairn_engine::ErrorKind::InUse => ErrorKind::InUse,
        _ => ErrorKind::InvalidArgument,
    };
    Error::new(kind, e.to_string())
}

/// Checks a Cairn volume name (the engine's rules, so names mean the same in every pool).
pub(crate) fn check_name(name: &str) -> Result<()> {
    cairn_engine::validate_volume_name(name)
        .map_err(|e| Error::new(ErrorKind::InvalidArgument, e.to_string()))
}

impl RbdExports {
    /// The daemon's registry this pool keeps its names and leases in.
    pub(crate) fn registry(&self) -> &std::sync::Arc<Registry> {
        &self.registry
    }

    /// A copy-on-write replica of `source` (whose image is `image`) as a new volume with `meta`
    /// (its origin is set here): an RBD snapshot of the source, cloned.
    pub(crate) fn snapshot_of(
        &self,
        source: &Found,
        image: &Image,
        mut meta: Meta,
    ) -> Result<Found> {
        let snap = format!("{IMAGE_PREFIX}{:016x}", new_token());
        image.snap_create(&snap)?;
        meta.origin = Some((source.image_id.clone(), snap.clone()));
        let made = self.make(&meta, |staged| {
            self.pool
                .clone_image(&self.pool, &source.rados_name, &snap, staged)
        });
        if made.is_err() {
            let _ = image.snap_remove(&snap);
        }
        made
    }

    /// Deletes the volume `found`: `InUse` while a host holds it (here or anywhere). An image
    /// whose snapshots back clones goes to the trash until they are gone.
    pub(crate) fn delete_found(&self, found: Found) -> Result<()> {
        let _deleting = self
            .registry
            .begin_delete(found.info.id)
            .map_err(from_registry)?;
        // No host holds it (no lease): the handle kept open for hosts is closed.
        self.link().close_idle(&found.info.id);
        match self.pool.remove_image(&found.rados_name) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::InUse => self.defer_removal(&found)?,
            Err(e) => return Err(e),
        }
        self.registry.remove(found.info.id);
        if let Some((parent, snap)) = &found.meta.origin {
            self.release_origin(parent, snap);
        }
        Ok(())
    }

    /// Marks `found` deleted and moves it to the trash (its clones keep reading it); undone if
    /// the move is refused (a client has it open).
    fn defer_removal(&self, found: &Found) -> Result<()> {
        let mark = |deleted: bool| -> Result<()> {
            let image = self.pool.open_image(&found.rados_name)?;
            image.set_metadata(crate::meta::DELETED_KEY, if deleted { "1" } else { "0" })
        };
        mark(true)?;
        if let Err(e) = self.pool.trash_image(&found.rados_name) {
            let _ = mark(false);
            return Err(e);
        }
        Ok(())
    }

    /// Removes snapshot `snap` of image `parent` (its clone is gone); a trashed parent left with
    /// no snapshot is removed for good, and its own origin released in turn. Failures are logged:
    /// they leave an unused snapshot, never a missing one.
    pub(crate) fn release_origin(&self, parent: &str, snap: &str) {
        let (mut parent, mut snap) = (parent.to_string(), snap.to_string());
        loop {
            let next = match self.release_one(&parent, &snap) {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(pool = %self.owner, %parent, %snap, error = %e,
                        "RBD snapshot not removed");
                    None
                }
            };
            match next {
                Some((p, s)) => (parent, snap) = (p, s),
                None => return,
            }
        }
    }

    /// One step of [`RbdExports::release_origin`]: the next origin to release, if the parent was
    /// removed for good.
    fn release_one(&self, parent: &str, snap: &str) -> Result<Option<(String, String)>> {
        let image = self.pool.open_image_by_id(parent)?;
        image.snap_remove(snap)?;
        let meta = Meta::read(&image)?;
        drop(image);
        let Some(meta) = meta.filter(|m| m.deleted) else {
            return Ok(None);
        };
        match self.pool.purge_trashed(parent) {
            Ok(()) => Ok(meta.origin),
            Err(e) if matches!(e.kind(), ErrorKind::InUse | ErrorKind::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Renames volume `found` (image `image`) to `name`.
    pub(crate) fn rename_found(&self, found: &Found, image: &Image, name: &str) -> Result<()> {
        check_name(name)?;
        let claim = self
            .registry
            .reserve_rename(name, found.info.id)
            .map_err(from_registry)?;
        image.set_metadata(crate::meta::NAME_KEY, name)?;
        claim.settle(found.info.id, &self.owner);
        Ok(())
    }
}
