//! Every limit of the Ceph layer, in one place.
//!
//! Invariants (checked below): a connection gives up well before librados's own 300 s default;
//! an operation times out no sooner than a mount, so a slow OSD is not mistaken for a lost
//! monitor; the I/O limit is the export layer's.

/// `client_mount_timeout`: how long connecting waits for the monitors, in seconds.
pub const MOUNT_TIMEOUT_S: u32 = 10;
/// `rados_osd_op_timeout` and `rados_mon_op_timeout`: how long one operation waits, in seconds.
pub const OP_TIMEOUT_S: u32 = 30;
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
const _: () = assert!(OP_TIMEOUT_S >= MOUNT_TIMEOUT_S && OP_TIMEOUT_S < 300);
const _: () = assert!(IO_BYTES_MAX > 0 && IO_BYTES_MAX <= isize::MAX as usize);
const _: () = assert!(METADATA_VALUE_BYTES_MAX >= 4096);
/// Seconds between connection attempts to an unavailable RBD pool.
pub const RECONNECT_INTERVAL_S: u64 = 5;
const _: () = assert!(RECONNECT_INTERVAL_S > 0 && RECONNECT_INTERVAL_S <= 60);
