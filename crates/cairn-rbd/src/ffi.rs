//! The C API of librados and librbd (Ceph 16.2, librbd 1.16), declared by hand: exactly the calls
//! this crate makes, with the signatures of `rados/librados.h` and `rbd/librbd.h`.
//!
//! Nothing here is public outside the crate; the safe layer in the sibling modules is the only
//! caller. Handles are opaque pointers owned by the wrapper that created them.

use libc::{c_char, c_int, c_void, size_t, ssize_t};

pub type RadosT = *mut c_void;
pub type RadosIoctxT = *mut c_void;
pub type RbdImageT = *mut c_void;
pub type RbdImageOptionsT = *mut c_void;
pub type RbdCompletionT = *mut c_void;
pub type RbdCallbackT = Option<unsafe extern "C" fn(RbdCompletionT, *mut c_void)>;
pub type ProgressFn = Option<unsafe extern "C" fn(u64, u64, *mut c_void) -> c_int>;
pub type DiffFn = Option<unsafe extern "C" fn(u64, size_t, c_int, *mut c_void) -> c_int>;

#[repr(C)]
pub struct RbdImageSpec {
    pub id: *mut c_char,
    pub name: *mut c_char,
}

pub const RBD_IMAGE_OPTION_FORMAT: c_int = 0;
pub const RBD_IMAGE_OPTION_FEATURES: c_int = 1;
pub const RBD_IMAGE_OPTION_CLONE_FORMAT: c_int = 12;
pub const RBD_FEATURE_LAYERING: u64 = 1 << 0;
pub const RBD_FEATURE_EXCLUSIVE_LOCK: u64 = 1 << 2;
pub const RBD_FEATURE_OBJECT_MAP: u64 = 1 << 3;
pub const RBD_FEATURE_FAST_DIFF: u64 = 1 << 4;
pub const RBD_FEATURE_DEEP_FLATTEN: u64 = 1 << 5;
pub const RBD_WRITE_ZEROES_FLAG_THICK_PROVISION: c_int = 1 << 0;
pub const RBD_LOCK_MODE_EXCLUSIVE: c_int = 0;

/// `struct rados_pool_stat_t` of librados 16.2: sixteen `uint64_t`, of which the first is the
/// pool's used bytes.
#[repr(C)]
#[derive(Default)]
pub struct RadosPoolStat {
    pub num_bytes: u64,
    pub rest: [u64; 15],
}

/// `struct rados_cluster_stat_t`: total, used and available KiB, and the object count.
#[repr(C)]
#[derive(Default)]
pub struct RadosClusterStat {
    pub kb: u64,
    pub kb_used: u64,
    pub kb_avail: u64,
    pub num_objects: u64,
}

#[link(name = "rados")]
extern "C" {
    pub fn rados_create2(
        cluster: *mut RadosT,
        cluster_name: *const c_char,
        name: *const c_char,
        flags: u64,
    ) -> c_int;
    pub fn rados_conf_read_file(cluster: RadosT, path: *const c_char) -> c_int;
    pub fn rados_conf_set(cluster: RadosT, option: *const c_char, value: *const c_char) -> c_int;
    pub fn rados_connect(cluster: RadosT) -> c_int;
    pub fn rados_shutdown(cluster: RadosT);
    pub fn rados_cluster_fsid(cluster: RadosT, buf: *mut c_char, len: size_t) -> c_int;
    pub fn rados_ioctx_create(cluster: RadosT, pool: *const c_char, io: *mut RadosIoctxT) -> c_int;
    pub fn rados_ioctx_destroy(io: RadosIoctxT);
    pub fn rados_ioctx_get_id(io: RadosIoctxT) -> i64;
    pub fn rados_ioctx_pool_stat(io: RadosIoctxT, stats: *mut RadosPoolStat) -> c_int;
    pub fn rados_exec(
        io: RadosIoctxT,
        oid: *const c_char,
        cls: *const c_char,
        method: *const c_char,
        in_buf: *const c_char,
        in_len: size_t,
        buf: *mut c_char,
        out_len: size_t,
    ) -> c_int;
    pub fn rados_cluster_stat(cluster: RadosT, result: *mut RadosClusterStat) -> c_int;
    pub fn rados_mon_command(
        cluster: RadosT,
        cmd: *mut *const c_char,
        cmdlen: size_t,
        inbuf: *const c_char,
        inbuflen: size_t,
        outbuf: *mut *mut c_char,
        outbuflen: *mut size_t,
        outs: *mut *mut c_char,
        outslen: *mut size_t,
    ) -> c_int;
    pub fn rados_buffer_free(buf: *mut c_char);
}

#[link(name = "rbd")]
extern "C" {
    pub fn rbd_image_options_create(opts: *mut RbdImageOptionsT);
    pub fn rbd_image_options_destroy(opts: RbdImageOptionsT);
    pub fn rbd_image_options_set_uint64(opts: RbdImageOptionsT, optname: c_int, v: u64) -> c_int;
    pub fn rbd_create4(
        io: RadosIoctxT,
        name: *const c_char,
        size: u64,
        opts: RbdImageOptionsT,
    ) -> c_int;
    pub fn rbd_clone3(
        p_ioctx: RadosIoctxT,
        p_name: *const c_char,
        p_snapname: *const c_char,
        c_ioctx: RadosIoctxT,
        c_name: *const c_char,
        c_opts: RbdImageOptionsT,
    ) -> c_int;
    pub fn rbd_remove(io: RadosIoctxT, name: *const c_char) -> c_int;
    pub fn rbd_rename(io: RadosIoctxT, src: *const c_char, dst: *const c_char) -> c_int;
    pub fn rbd_trash_move(io: RadosIoctxT, name: *const c_char, delay: u64) -> c_int;
    pub fn rbd_trash_remove(io: RadosIoctxT, id: *const c_char, force: bool) -> c_int;
    pub fn rbd_open_by_id(
        io: RadosIoctxT,
        id: *const c_char,
        image: *mut RbdImageT,
        snap: *const c_char,
    ) -> c_int;
    pub fn rbd_list2(io: RadosIoctxT, images: *mut RbdImageSpec, max: *mut size_t) -> c_int;
    pub fn rbd_image_spec_list_cleanup(images: *mut RbdImageSpec, num: size_t);
    pub fn rbd_open(
        io: RadosIoctxT,
        name: *const c_char,
        image: *mut RbdImageT,
        snap: *const c_char,
    ) -> c_int;
    pub fn rbd_close(image: RbdImageT) -> c_int;
    pub fn rbd_resize(image: RbdImageT, size: u64) -> c_int;
    pub fn rbd_get_size(image: RbdImageT, size: *mut u64) -> c_int;
    pub fn rbd_get_features(image: RbdImageT, features: *mut u64) -> c_int;
    pub fn rbd_get_name(image: RbdImageT, name: *mut c_char, len: *mut size_t) -> c_int;
    pub fn rbd_get_id(image: RbdImageT, id: *mut c_char, len: size_t) -> c_int;
    pub fn rbd_lock_acquire(image: RbdImageT, mode: c_int) -> c_int;
    pub fn rbd_lock_get_owners(
        image: RbdImageT,
        mode: *mut c_int,
        owners: *mut *mut c_char,
        max_owners: *mut size_t,
    ) -> c_int;
    pub fn rbd_lock_get_owners_cleanup(owners: *mut *mut c_char, count: size_t);
    pub fn rbd_lock_break(image: RbdImageT, mode: c_int, owner: *const c_char) -> c_int;
    pub fn rbd_metadata_get(
        image: RbdImageT,
        key: *const c_char,
        value: *mut c_char,
        len: *mut size_t,
    ) -> c_int;
    pub fn rbd_metadata_list(
        image: RbdImageT,
        start: *const c_char,
        max: u64,
        keys: *mut c_char,
        key_len: *mut size_t,
        values: *mut c_char,
        vals_len: *mut size_t,
    ) -> c_int;
    pub fn rbd_metadata_set(image: RbdImageT, key: *const c_char, value: *const c_char) -> c_int;
    pub fn rbd_snap_create(image: RbdImageT, name: *const c_char) -> c_int;
    pub fn rbd_snap_remove(image: RbdImageT, name: *const c_char) -> c_int;
    pub fn rbd_flatten_with_progress(image: RbdImageT, cb: ProgressFn, arg: *mut c_void) -> c_int;
    pub fn rbd_diff_iterate2(
        image: RbdImageT,
        from_snap: *const c_char,
        ofs: u64,
        len: u64,
        include_parent: u8,
        whole_object: u8,
        cb: DiffFn,
        arg: *mut c_void,
    ) -> c_int;
    pub fn rbd_aio_create_completion(
        arg: *mut c_void,
        cb: RbdCallbackT,
        c: *mut RbdCompletionT,
    ) -> c_int;
    pub fn rbd_aio_wait_for_complete(c: RbdCompletionT) -> c_int;
    pub fn rbd_aio_get_return_value(c: RbdCompletionT) -> ssize_t;
    pub fn rbd_aio_release(c: RbdCompletionT);
    pub fn rbd_aio_write(
        image: RbdImageT,
        off: u64,
        len: size_t,
        buf: *const c_char,
        c: RbdCompletionT,
    ) -> c_int;
    pub fn rbd_aio_read(
        image: RbdImageT,
        off: u64,
        len: size_t,
        buf: *mut c_char,
        c: RbdCompletionT,
    ) -> c_int;
    pub fn rbd_aio_discard(image: RbdImageT, off: u64, len: u64, c: RbdCompletionT) -> c_int;
    pub fn rbd_aio_write_zeroes(
        image: RbdImageT,
        off: u64,
        len: size_t,
        c: RbdCompletionT,
        zero_flags: c_int,
        op_flags: c_int,
    ) -> c_int;
    pub fn rbd_aio_flush(image: RbdImageT, c: RbdCompletionT) -> c_int;
}
