//! RBD images: creating, listing, opening, cloning and removing them in a [`Pool`], and an opened
//! [`Image`]'s size, identity, metadata, snapshots, flattening and allocation.
//!
//! Invariants: images this crate creates (and clones) have the layering, exclusive-lock,
//! object-map, fast-diff and deep-flatten features, so allocation queries use the object map
//! instead of one query per object; clones are RBD clone format 2 (no protected snapshot); an
//! [`Image`] keeps the cluster connection alive and is closed exactly once, in `Drop`.

use std::ffi::{c_int, c_void, CStr};
use std::sync::Arc;

use libc::size_t;
use parking_lot::{Condvar, Mutex};

use crate::cluster::{cstring, Handle, Pool};
use crate::error::{check, Error, ErrorKind, Result};
use crate::ffi;
use crate::limits;

/// The features of every image this crate creates.
pub const IMAGE_FEATURES: u64 = ffi::RBD_FEATURE_LAYERING
    | ffi::RBD_FEATURE_EXCLUSIVE_LOCK
    | ffi::RBD_FEATURE_OBJECT_MAP
    | ffi::RBD_FEATURE_FAST_DIFF
    | ffi::RBD_FEATURE_DEEP_FLATTEN;

/// One image of a pool: its RBD id and its RADOS name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    pub id: String,
    pub name: String,
}

/// One extent reported by [`Image::allocated`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
}

/// Image creation options (format 2, [`IMAGE_FEATURES`], and clone format 2 for a clone), freed
/// on drop.
struct Options(ffi::RbdImageOptionsT);

impl Options {
    fn new(clone: bool) -> Result<Options> {
        let mut raw: ffi::RbdImageOptionsT = std::ptr::null_mut();
        // SAFETY: `raw` is written by the call and owned by the returned value.
        unsafe { ffi::rbd_image_options_create(&mut raw) };
        let opts = Options(raw);
        let mut set = vec![
            (ffi::RBD_IMAGE_OPTION_FORMAT, 2),
            (ffi::RBD_IMAGE_OPTION_FEATURES, IMAGE_FEATURES),
        ];
        if clone {
            set.push((ffi::RBD_IMAGE_OPTION_CLONE_FORMAT, 2));
        }
        for (name, value) in set {
            // SAFETY: `opts.0` is a live options handle.
            let rc = unsafe { ffi::rbd_image_options_set_uint64(opts.0, name, value) };
            check(rc.into(), || format!("setting image option {name}"))?;
        }
        Ok(opts)
    }
}

impl Drop for Options {
    fn drop(&mut self) {
        // SAFETY: created by `rbd_image_options_create`, destroyed once.
        unsafe { ffi::rbd_image_options_destroy(self.0) }
    }
}

impl Pool {
    /// Creates the image `name` of `size_bytes`.
    pub fn create_image(&self, name: &str, size_bytes: u64) -> Result<()> {
        let c_name = cstring(name, "image name")?;
        let opts = Options::new(false)?;
        // SAFETY: the I/O context and options are live; `c_name` outlives the call.
        let rc = unsafe { ffi::rbd_create4(self.raw, c_name.as_ptr(), size_bytes, opts.0) };
        check(rc.into(), || format!("creating image {name:?}")).map(drop)
    }

    /// Removes the image `name`: [`ErrorKind::InUse`] while it is open anywhere (it has a
    /// watcher) or has snapshots.
    pub fn remove_image(&self, name: &str) -> Result<()> {
        let c_name = cstring(name, "image name")?;
        // SAFETY: the I/O context is live; `c_name` outlives the call.
        let rc = unsafe { ffi::rbd_remove(self.raw, c_name.as_ptr()) };
        check(rc.into(), || format!("removing image {name:?}")).map(drop)
    }

    /// Renames the image `from` to `to` (its id stays).
    pub fn rename_image(&self, from: &str, to: &str) -> Result<()> {
        let (f, t) = (cstring(from, "image name")?, cstring(to, "image name")?);
        // SAFETY: the I/O context is live; both strings outlive the call.
        let rc = unsafe { ffi::rbd_rename(self.raw, f.as_ptr(), t.as_ptr()) };
        check(rc.into(), || format!("renaming image {from:?} to {to:?}")).map(drop)
    }

    /// Moves the image `name` to the pool's trash (deferred removal): it leaves the pool's
    /// directory at once, while clones of its snapshots keep reading from it.
    pub fn trash_image(&self, name: &str) -> Result<()> {
        let c_name = cstring(name, "image name")?;
        // SAFETY: the I/O context is live; `c_name` outlives the call.
        let rc = unsafe { ffi::rbd_trash_move(self.raw, c_name.as_ptr(), 0) };
        check(rc.into(), || format!("moving image {name:?} to the trash")).map(drop)
    }

    /// Sets every `(key, value)` of `pairs` on the image with RBD id `image_id` in one request,
    /// all or none: the RBD object class's `metadata_set` method on the image's header object
    /// takes the whole map (librbd's `rbd_metadata_set` sends it one pair per round trip). It
    /// does not tell other clients' open handles of the image to refresh, as librbd does, so it
    /// is for images no other client uses yet (Cairn's staged images).
    pub fn set_image_metadata(&self, image_id: &str, pairs: &[(&str, &str)]) -> Result<()> {
        let header = cstring(&format!("rbd_header.{image_id}"), "image id")?;
        let input = encode_metadata_map(pairs)?;
        let mut out = [0u8; 1];
        // SAFETY: the I/O context is live; every pointer is to memory that outlives the call,
        // which reads `input.len()` bytes of `input` and writes at most `out.len()` of `out`.
        let rc = unsafe {
            ffi::rados_exec(
                self.raw,
                header.as_ptr(),
                c"rbd".as_ptr(),
                c"metadata_set".as_ptr(),
                input.as_ptr().cast(),
                input.len(),
                out.as_mut_ptr().cast(),
                out.len(),
            )
        };
        check(rc.into(), || {
            format!(
                "setting {} metadata keys of image {image_id:?}",
                pairs.len()
            )
        })
        .map(drop)
    }

    /// Removes the trashed image with RBD id `id` for good; [`ErrorKind::NotFound`] if it is
    /// not in the trash, [`ErrorKind::InUse`] while it still has snapshots.
    pub fn purge_trashed(&self, id: &str) -> Result<()> {
        let c_id = cstring(id, "image id")?;
        // SAFETY: the I/O context is live; `c_id` outlives the call.
        let rc = unsafe { ffi::rbd_trash_remove(self.raw, c_id.as_ptr(), false) };
        check(rc.into(), || format!("removing trashed image {id:?}")).map(drop)
    }

    /// Opens the image with RBD id `id` (its head, writable), in the directory or the trash.
    pub fn open_image_by_id(&self, id: &str) -> Result<Image> {
        let c_id = cstring(id, "image id")?;
        let mut raw: ffi::RbdImageT = std::ptr::null_mut();
        // SAFETY: the I/O context is live; `raw` is written by the call; no snapshot name.
        let rc =
            unsafe { ffi::rbd_open_by_id(self.raw, c_id.as_ptr(), &mut raw, std::ptr::null()) };
        check(rc.into(), || format!("opening image id {id:?}"))?;
        Ok(Image::opened(raw, id, self.cluster.clone()))
    }

    /// Clones `parent@snap` into this pool as `name`, a copy-on-write child (clone format 2).
    pub fn clone_image(
        &self,
        parent: &Pool,
        parent_name: &str,
        snap: &str,
        name: &str,
    ) -> Result<()> {
        let (p, s, c) = (
            cstring(parent_name, "image name")?,
            cstring(snap, "snapshot name")?,
            cstring(name, "image name")?,
        );
        let opts = Options::new(true)?;
        // SAFETY: both I/O contexts and the options are live; the strings outlive the call.
        let rc = unsafe {
            ffi::rbd_clone3(
                parent.raw,
                p.as_ptr(),
                s.as_ptr(),
                self.raw,
                c.as_ptr(),
                opts.0,
            )
        };
        check(rc.into(), || {
            format!("cloning {parent_name}@{snap} as {name:?}")
        })
        .map(drop)
    }

    /// Every image of the pool.
    pub fn list_images(&self) -> Result<Vec<ImageSpec>> {
        let mut capacity: size_t = 64;
        loop {
            let mut specs: Vec<ffi::RbdImageSpec> = Vec::with_capacity(capacity);
            let mut n = capacity;
            // SAFETY: `specs` has room for `n` entries, which the call fills (and sets `n`).
            let rc = unsafe { ffi::rbd_list2(self.raw, specs.as_mut_ptr(), &mut n) };
            if rc == -libc::ERANGE && n > capacity && n <= limits::IMAGES_PER_POOL_MAX {
                capacity = n;
                continue;
            }
            check(rc.into(), || {
                format!("listing images of pool {:?}", self.name())
            })?;
            // SAFETY: on success the call initialised the first `n` entries.
            unsafe { specs.set_len(n) };
            let out = specs.iter().map(|s| ImageSpec {
                // SAFETY: librbd gave each entry two NUL-terminated strings, freed below.
                id: unsafe { CStr::from_ptr(s.id) }
                    .to_string_lossy()
                    .into_owned(),
                // SAFETY: as above.
                name: unsafe { CStr::from_ptr(s.name) }
                    .to_string_lossy()
                    .into_owned(),
            });
            let out = out.collect();
            // SAFETY: frees the strings librbd allocated in the `n` entries, once.
            unsafe { ffi::rbd_image_spec_list_cleanup(specs.as_mut_ptr(), n) };
            return Ok(out);
        }
    }

    /// Opens the image `name` (its head, writable).
    pub fn open_image(&self, name: &str) -> Result<Image> {
        let c_name = cstring(name, "image name")?;
        let mut raw: ffi::RbdImageT = std::ptr::null_mut();
        // SAFETY: the I/O context is live; `raw` is written by the call; no snapshot name.
        let rc = unsafe { ffi::rbd_open(self.raw, c_name.as_ptr(), &mut raw, std::ptr::null()) };
        check(rc.into(), || format!("opening image {name:?}"))?;
        Ok(Image::opened(raw, name, self.cluster.clone()))
    }
}

/// The argument of the RBD class's `metadata_set`: a map of strings to byte strings in Ceph's
/// encoding (a little-endian u32 count, then each key and each value as a little-endian u32
/// length and its bytes). A value is a string as librbd stores it, without a terminating NUL.
fn encode_metadata_map(pairs: &[(&str, &str)]) -> Result<Vec<u8>> {
    fn put_len(out: &mut Vec<u8>, len: usize, what: &str) -> Result<()> {
        let n = u32::try_from(len)
            .map_err(|_| Error::new(ErrorKind::InvalidArgument, format!("{what} of {len}")))?;
        out.extend_from_slice(&n.to_le_bytes());
        Ok(())
    }
    let mut out = Vec::new();
    put_len(&mut out, pairs.len(), "a metadata map")?;
    for (k, v) in pairs {
        for bytes in [k.as_bytes(), v.as_bytes()] {
            if bytes.len() > limits::METADATA_VALUE_BYTES_MAX {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!("a metadata key or value of {} bytes", bytes.len()),
                ));
            }
            put_len(&mut out, bytes.len(), "a metadata key or value")?;
            out.extend_from_slice(bytes);
        }
    }
    Ok(out)
}

/// An opened RBD image.
pub struct Image {
    pub(crate) raw: ffi::RbdImageT,
    name: String,
    /// Requests started with a completion callback and not yet called back.
    pub(crate) flights: Arc<Flights>,
    _cluster: Arc<Handle>,
}

impl Image {
    fn opened(raw: ffi::RbdImageT, name: &str, cluster: Arc<Handle>) -> Image {
        Image {
            raw,
            name: name.to_string(),
            flights: Arc::new(Flights {
                image: name.to_string(),
                count: Mutex::new(0),
                landed: Condvar::new(),
            }),
            _cluster: cluster,
        }
    }
}

/// The count of an image's requests in flight with a callback ([`crate::Image::start`]);
/// closing the image waits for it to fall to zero.
pub(crate) struct Flights {
    /// The image's name, for the errors of its requests.
    image: String,
    count: Mutex<usize>,
    landed: Condvar,
}

/// One request in flight, counted in its image's [`Flights`] until dropped.
pub(crate) struct Ticket(pub(crate) Arc<Flights>);

impl Flights {
    /// Counts one more request in flight until the ticket is dropped.
    pub(crate) fn ticket(self: &Arc<Flights>) -> Ticket {
        *self.count.lock() += 1;
        Ticket(self.clone())
    }

    /// The name of the image the requests go to.
    pub(crate) fn image(&self) -> &str {
        &self.image
    }

    /// Waits until no request is in flight.
    fn wait_landed(&self) {
        let mut count = self.count.lock();
        while *count > 0 {
            self.landed.wait(&mut count);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut count = self.0.count.lock();
        assert!(*count > 0, "a ticket is counted until it is dropped");
        *count -= 1;
        if *count == 0 {
            self.0.landed.notify_all();
        }
    }
}

// SAFETY: librbd image handles are thread-safe: every call this crate makes on one takes the
// image's own locks; it is closed only in `Drop`, when no other reference exists.
unsafe impl Send for Image {}
// SAFETY: as for `Send`.
unsafe impl Sync for Image {}

impl Drop for Image {
    fn drop(&mut self) {
        // A request started with a callback holds no reference on the image: wait for the last
        // callback (each `Pending` borrows the image until its completion instead). Never
        // reached on a callback thread: a callback holds no `Image`.
        self.flights.wait_landed();
        // SAFETY: `raw` came from `rbd_open`; no request is in flight (see above), so closing
        // cannot race one.
        unsafe { ffi::rbd_close(self.raw) };
    }
}

/// Trampoline of [`Image::flatten`]: `arg` is the caller's `&mut dyn FnMut(u64, u64)`.
unsafe extern "C" fn on_progress(done: u64, total: u64, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `&mut &mut dyn FnMut` that `flatten` passed, alive for its whole call.
    let f = unsafe { &mut *arg.cast::<&mut dyn FnMut(u64, u64)>() };
    f(done, total);
    0
}

/// Trampoline of [`Image::allocated`]: `arg` is the caller's `Vec<Extent>`.
unsafe extern "C" fn on_extent(offset: u64, len: size_t, exists: c_int, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `&mut Vec<Extent>` that `allocated` passed, alive for its whole call.
    let out = unsafe { &mut *arg.cast::<Vec<Extent>>() };
    if exists != 0 {
        out.push(Extent {
            offset,
            len: len as u64,
        });
    }
    0
}

impl Image {
    /// The name it was opened by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Size in bytes, as of now.
    pub fn size_bytes(&self) -> Result<u64> {
        let mut size = 0u64;
        // SAFETY: the image is open; `size` is written by the call.
        let rc = unsafe { ffi::rbd_get_size(self.raw, &mut size) };
        check(rc.into(), || format!("reading the size of {:?}", self.name))?;
        Ok(size)
    }

    /// Grows or shrinks the image to `size_bytes`.
    pub fn resize(&self, size_bytes: u64) -> Result<()> {
        // SAFETY: the image is open.
        let rc = unsafe { ffi::rbd_resize(self.raw, size_bytes) };
        check(rc.into(), || {
            format!("resizing {:?} to {size_bytes}", self.name)
        })
        .map(drop)
    }

    /// The RBD feature bits.
    pub fn features(&self) -> Result<u64> {
        let mut f = 0u64;
        // SAFETY: the image is open; `f` is written by the call.
        let rc = unsafe { ffi::rbd_get_features(self.raw, &mut f) };
        check(rc.into(), || {
            format!("reading the features of {:?}", self.name)
        })?;
        Ok(f)
    }

    /// The image's RBD id, unique within its pool and never reused.
    pub fn id(&self) -> Result<String> {
        let mut buf = [0u8; limits::IMAGE_ID_BYTES_MAX];
        // SAFETY: `buf` is ours; the call writes at most `buf.len()` bytes, NUL included.
        let rc = unsafe { ffi::rbd_get_id(self.raw, buf.as_mut_ptr().cast(), buf.len()) };
        check(rc.into(), || format!("reading the id of {:?}", self.name))?;
        let id = CStr::from_bytes_until_nul(&buf)
            .map_err(|_| Error::new(ErrorKind::Io, "image id is not NUL-terminated"))?;
        Ok(id.to_string_lossy().into_owned())
    }

    /// The image's RADOS name as of now (an image opened by id learns it here).
    pub fn rados_name(&self) -> Result<String> {
        let mut buf = [0u8; limits::IMAGE_NAME_BYTES_MAX];
        let mut len: size_t = buf.len();
        // SAFETY: `buf` is ours; the call writes at most `len` bytes, NUL included.
        let rc = unsafe { ffi::rbd_get_name(self.raw, buf.as_mut_ptr().cast(), &mut len) };
        check(rc.into(), || format!("reading the name of {:?}", self.name))?;
        let name = CStr::from_bytes_until_nul(&buf)
            .map_err(|_| Error::new(ErrorKind::Io, "image name is not NUL-terminated"))?;
        Ok(name.to_string_lossy().into_owned())
    }

    /// Takes the image's exclusive lock and keeps it until the image is closed, breaking (and
    /// blocklisting) a dead owner's, so no other client's write (a stale one included) lands
    /// while this handle serves the image; [`ErrorKind::InUse`] if a live client holds it.
    pub fn lock_exclusive(&self) -> Result<()> {
        // SAFETY: the image is open.
        let rc = unsafe { ffi::rbd_lock_acquire(self.raw, ffi::RBD_LOCK_MODE_EXCLUSIVE) };
        check(rc.into(), || format!("locking {:?}", self.name)).map(drop)
    }

    /// The clients holding the image's exclusive lock (their RADOS addresses); empty if none.
    pub fn lock_owners(&self) -> Result<Vec<String>> {
        let mut owners: [*mut libc::c_char; limits::LOCK_OWNERS_MAX] =
            [std::ptr::null_mut(); limits::LOCK_OWNERS_MAX];
        let mut n: size_t = owners.len();
        let mut mode: c_int = 0;
        // SAFETY: the image is open; `owners` has room for `n` pointers, which the call fills
        // with strings it allocates (freed below, once) and sets `n` to their count.
        let rc =
            unsafe { ffi::rbd_lock_get_owners(self.raw, &mut mode, owners.as_mut_ptr(), &mut n) };
        if rc == -libc::ENOENT {
            return Ok(Vec::new());
        }
        check(rc.into(), || {
            format!("reading the lock owners of {:?}", self.name)
        })?;
        let n = n.min(owners.len());
        let out = owners[..n]
            .iter()
            .filter(|p| !p.is_null())
            // SAFETY: each of the first `n` entries is a NUL-terminated string from librbd.
            .map(|&p| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
            .collect();
        // SAFETY: frees the `n` strings librbd allocated above, once.
        unsafe { ffi::rbd_lock_get_owners_cleanup(owners.as_mut_ptr(), n) };
        Ok(out)
    }

    /// Takes the exclusive lock after breaking whoever holds it: librbd blocklists the old
    /// owner, so no write of that client (one that timed out here but is still on its way
    /// included) lands afterwards. For an image this daemon served through a connection it has
    /// given up after a timeout; [`Image::lock_exclusive`] otherwise.
    pub fn take_over(&self) -> Result<()> {
        for owner in self.lock_owners()? {
            let c_owner = cstring(&owner, "lock owner")?;
            // SAFETY: the image is open; `c_owner` outlives the call.
            let rc = unsafe {
                ffi::rbd_lock_break(self.raw, ffi::RBD_LOCK_MODE_EXCLUSIVE, c_owner.as_ptr())
            };
            match check(rc.into(), || {
                format!("breaking the lock of {owner} on {:?}", self.name)
            }) {
                // Released meanwhile: nothing left to break.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                other => other.map(drop)?,
            }
            tracing::info!(image = %self.name, %owner, "exclusive lock broken");
        }
        self.lock_exclusive()
    }

    /// The metadata value of `key`, `None` if unset.
    pub fn metadata(&self, key: &str) -> Result<Option<String>> {
        let c_key = cstring(key, "metadata key")?;
        let mut len: size_t = 256;
        loop {
            let mut buf = vec![0u8; len];
            // SAFETY: `buf` has `len` bytes; the call writes at most that, or sets `len` to the
            // size it needs and fails with ERANGE.
            let rc = unsafe {
                ffi::rbd_metadata_get(self.raw, c_key.as_ptr(), buf.as_mut_ptr().cast(), &mut len)
            };
            if rc == -libc::ERANGE && len > buf.len() && len <= limits::METADATA_VALUE_BYTES_MAX {
                continue;
            }
            if rc == -libc::ENOENT {
                return Ok(None);
            }
            check(rc.into(), || {
                format!("reading metadata {key:?} of {:?}", self.name)
            })?;
            let value = CStr::from_bytes_until_nul(&buf)
                .map_err(|_| Error::new(ErrorKind::Io, "metadata value is not NUL-terminated"))?;
            return Ok(Some(value.to_string_lossy().into_owned()));
        }
    }

    /// Every metadata key and value of the image, in one request.
    pub fn metadata_all(&self) -> Result<Vec<(String, String)>> {
        let (mut keys_len, mut vals_len): (size_t, size_t) = (1024, 4096);
        loop {
            let mut keys = vec![0u8; keys_len];
            let mut vals = vec![0u8; vals_len];
            // SAFETY: both buffers have the lengths passed; the call writes at most that, or sets
            // the lengths it needs and fails with ERANGE. No start key, no count limit.
            let rc = unsafe {
                ffi::rbd_metadata_list(
                    self.raw,
                    c"".as_ptr(),
                    0,
                    keys.as_mut_ptr().cast(),
                    &mut keys_len,
                    vals.as_mut_ptr().cast(),
                    &mut vals_len,
                )
            };
            let fits = keys_len <= limits::METADATA_VALUE_BYTES_MAX
                && vals_len <= limits::METADATA_VALUE_BYTES_MAX;
            if rc == -libc::ERANGE && fits && (keys_len > keys.len() || vals_len > vals.len()) {
                continue;
            }
            check(rc.into(), || {
                format!("listing the metadata of {:?}", self.name)
            })?;
            keys.truncate(keys_len.min(keys.len()));
            vals.truncate(vals_len.min(vals.len()));
            let split = |b: &[u8]| -> Vec<String> {
                b.split(|&c| c == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            };
            let (k, v) = (
                split(&keys),
                vals.split(|&c| c == 0)
                    .map(|s| String::from_utf8_lossy(s).into_owned()),
            );
            return Ok(k.into_iter().zip(v).collect());
        }
    }

    /// Sets the metadata `key` to `value`.
    pub fn set_metadata(&self, key: &str, value: &str) -> Result<()> {
        let (k, v) = (
            cstring(key, "metadata key")?,
            cstring(value, "metadata value")?,
        );
        // SAFETY: the image is open; both strings outlive the call, which copies them.
        let rc = unsafe { ffi::rbd_metadata_set(self.raw, k.as_ptr(), v.as_ptr()) };
        check(rc.into(), || {
            format!("setting metadata {key:?} of {:?}", self.name)
        })
        .map(drop)
    }

    /// Takes a snapshot called `snap` of the image as of now.
    pub fn snap_create(&self, snap: &str) -> Result<()> {
        let c = cstring(snap, "snapshot name")?;
        // SAFETY: the image is open; `c` outlives the call.
        let rc = unsafe { ffi::rbd_snap_create(self.raw, c.as_ptr()) };
        check(rc.into(), || {
            format!("snapshotting {:?} as {snap:?}", self.name)
        })
        .map(drop)
    }

    /// Removes the snapshot `snap` (clone format 2 keeps it in the trash while clones use it).
    pub fn snap_remove(&self, snap: &str) -> Result<()> {
        let c = cstring(snap, "snapshot name")?;
        // SAFETY: the image is open; `c` outlives the call.
        let rc = unsafe { ffi::rbd_snap_remove(self.raw, c.as_ptr()) };
        check(rc.into(), || {
            format!("removing snapshot {:?}@{snap:?}", self.name)
        })
        .map(drop)
    }

    /// Copies everything a clone still reads from its parent into the clone, calling
    /// `progress(done, total)` as it goes; afterwards the image has no parent.
    pub fn flatten(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        let mut f: &mut dyn FnMut(u64, u64) = progress;
        let arg = (&mut f as *mut &mut dyn FnMut(u64, u64)).cast::<c_void>();
        // SAFETY: `arg` points at `f`, which outlives the call; librbd calls `on_progress` only
        // during it.
        let rc = unsafe { ffi::rbd_flatten_with_progress(self.raw, Some(on_progress), arg) };
        check(rc.into(), || format!("flattening {:?}", self.name)).map(drop)
    }

    /// The allocated extents of `[offset, offset + len)` (a clone's parent data included), at
    /// object granularity when the object map is valid: an extent not listed reads as zeros.
    pub fn allocated(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let mut out: Vec<Extent> = Vec::new();
        let arg = (&mut out as *mut Vec<Extent>).cast::<c_void>();
        // SAFETY: `arg` points at `out`, which outlives the call; librbd calls `on_extent` only
        // during it. No start snapshot: everything allocated is reported.
        let rc = unsafe {
            ffi::rbd_diff_iterate2(
                self.raw,
                std::ptr::null(),
                offset,
                len,
                1,
                1,
                Some(on_extent),
                arg,
            )
        };
        check(rc.into(), || {
            format!("reading the allocation of {:?}", self.name)
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metadata_map_is_encoded_as_ceph_decodes_it() {
        let bytes = encode_metadata_map(&[("cairn.name", "v1"), ("k", "")]).unwrap();
        let mut want = vec![2, 0, 0, 0];
        want.extend_from_slice(&[10, 0, 0, 0]);
        want.extend_from_slice(b"cairn.name");
        want.extend_from_slice(&[2, 0, 0, 0]);
        want.extend_from_slice(b"v1");
        want.extend_from_slice(&[1, 0, 0, 0, b'k', 0, 0, 0, 0]);
        assert_eq!(bytes, want);
        assert_eq!(encode_metadata_map(&[]).unwrap(), [0, 0, 0, 0]);
    }

    #[test]
    fn an_oversized_metadata_value_is_refused_before_it_is_sent() {
        let big = "x".repeat(limits::METADATA_VALUE_BYTES_MAX + 1);
        let e = encode_metadata_map(&[("cairn.replica", &big)]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }
}
