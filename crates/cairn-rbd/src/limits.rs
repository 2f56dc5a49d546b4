//! Every limit of the Ceph layer, in one place.
//!
//! Invariants (checked below): a connection gives up well before librados's own 300 s default;
//! an operation times out by default no sooner than a mount, so a slow OSD is not mistaken for a
//! lost monitor, and never later than [`OP_TIMEOUT_S_MAX`]; the I/O limit is the export layer's.

/// `client_mount_timeout`: how long connecting waits for the monitors, in seconds.
pub const MOUNT_TIMEOUT_S: u32 = 10;
/// `rados_osd_op_timeout` and `rados_mon_op_timeout` by default: how long one operation waits,
/// in seconds (long enough for a cluster to fail an OSD over, about 20 s with Ceph's defaults).
pub const OP_TIMEOUT_S: u32 = 30;
/// The longest operation timeout a pool may be configured with, in seconds.
pub const OP_TIMEOUT_S_MAX: u32 = 120;
/// Largest single read or write handed to librbd, in bytes.
pub const IO_BYTES_MAX: usize = cairn_export::limits::REQUEST_BYTES_MAX as usize;
/// Largest image metadata value read back, in bytes.
pub const METADATA_VALUE_BYTES_MAX: usize = 64 << 10;
/// Largest number of images listed in one pool.
pub const IMAGES_PER_POOL_MAX: usize = 1 << 20;
/// Length of the buffer that receives an image id (RBD ids are short hex strings).
pub const IMAGE_ID_BYTES_MAX: usize = 64;
/// Length of the buffer that receives an image's RADOS name (Cairn's are 22 bytes).
pub const IMAGE_NAME_BYTES_MAX: usize = 256;

// A copy's step (the array layer's) is one read and one write to librbd.
const _: () = assert!(cairn_array::limits::COPY_CHUNK_BYTES as usize <= IO_BYTES_MAX);

const _: () = assert!(MOUNT_TIMEOUT_S > 0 && MOUNT_TIMEOUT_S < 300);
const _: () = assert!(OP_TIMEOUT_S >= MOUNT_TIMEOUT_S && OP_TIMEOUT_S <= OP_TIMEOUT_S_MAX);
const _: () = assert!(OP_TIMEOUT_S_MAX < 300);
const _: () = assert!(IO_BYTES_MAX > 0 && IO_BYTES_MAX <= isize::MAX as usize);
const _: () = assert!(METADATA_VALUE_BYTES_MAX >= 4096);
/// Seconds between connection attempts to an unavailable RBD pool.
pub const RECONNECT_INTERVAL_S: u64 = 2;
const _: () = assert!(RECONNECT_INTERVAL_S > 0 && RECONNECT_INTERVAL_S <= 60);
/// Lock owners read back at once (an exclusive lock has one).
pub const LOCK_OWNERS_MAX: usize = 8;
/// Milliseconds an image stays open after the last host handle on it is dropped, so a host
/// that opens its volume per command (iSCSI) does not reopen the image for each.
pub const IDLE_CLOSE_MS: u64 = 5_000;
/// Milliseconds between two looks of a connected pool's background thread at its connection
/// (lost after a timeout?) and at its idle images.
pub const WATCH_INTERVAL_MS: u64 = 500;
const _: () = assert!(WATCH_INTERVAL_MS < IDLE_CLOSE_MS);
