//! Every limit of the I/O crate in one place, with the relations between them asserted at compile
//! time. Units are last in the names.

/// The smallest alignment a device may require of offsets and lengths (one legacy sector).
pub const ALIGNMENT_BYTES_MIN: u64 = 512;
/// The largest alignment a device may require (one 4 KiB page / sector).
pub const ALIGNMENT_BYTES_MAX: u64 = 4096;
/// The unit in which the in-memory device stores data, and the unit at which the recording device
/// tears or reorders unflushed writes when it rebuilds a crash image (a 4 KiB device sector).
pub const SECTOR_BYTES: u64 = 4096;
/// Alignment of [`crate::AlignedBuf`] memory: enough for O_DIRECT on every device Cairn supports.
pub const BUFFER_ALIGN_BYTES: usize = 4096;
/// Entries in the io_uring submission queue of one ring: the requests one batch keeps in flight at
/// once (its completion queue holds twice as many, so no completion can overflow it).
pub const URING_QUEUE_DEPTH: u32 = 128;
/// Rings one io_uring file device sets up at most, one per request running at the same time; a
/// request finding all of them busy waits for one. With [`URING_QUEUE_DEPTH`] this bounds the
/// entries a device has in flight.
pub const URING_RINGS_MAX: usize = 64;
/// The most entries one io_uring file device has in flight at once.
pub const URING_IN_FLIGHT_MAX: usize = URING_RINGS_MAX * URING_QUEUE_DEPTH as usize;
/// The largest single read or write request handed to the kernel; longer requests are split.
pub const REQUEST_BYTES_MAX: u64 = 8 << 20;
/// Bounce-buffer bytes one batch may hold at once when O_DIRECT needs copies of unaligned
/// caller memory; a larger batch is submitted in several rounds.
pub const BATCH_BOUNCE_BYTES_MAX: u64 = 16 << 20;

const _: () = assert!(ALIGNMENT_BYTES_MIN.is_power_of_two());
const _: () = assert!(ALIGNMENT_BYTES_MAX.is_power_of_two());
const _: () = assert!(ALIGNMENT_BYTES_MIN <= ALIGNMENT_BYTES_MAX);
const _: () = assert!(SECTOR_BYTES % ALIGNMENT_BYTES_MAX == 0);
const _: () = assert!(BUFFER_ALIGN_BYTES as u64 >= ALIGNMENT_BYTES_MAX);
const _: () = assert!(URING_QUEUE_DEPTH.is_power_of_two());
// One batch alone keeps a deep queue; the completion queue (twice the depth) stays a power of two
// within the kernel's bound.
const _: () = assert!(URING_QUEUE_DEPTH >= 128 && URING_QUEUE_DEPTH * 2 <= 4096);
// Sixteen threads each with a full queue fit without waiting for a ring.
const _: () = assert!(URING_RINGS_MAX >= 16);
const _: () = assert!(URING_IN_FLIGHT_MAX <= 1 << 16);
const _: () = assert!(REQUEST_BYTES_MAX % ALIGNMENT_BYTES_MAX == 0);
const _: () = assert!(REQUEST_BYTES_MAX <= i32::MAX as u64);
const _: () = assert!(BATCH_BOUNCE_BYTES_MAX >= REQUEST_BYTES_MAX);
