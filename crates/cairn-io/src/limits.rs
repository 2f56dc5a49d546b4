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
/// Entries in the io_uring submission queue of one ring (requests in flight per ring).
pub const URING_QUEUE_DEPTH: u32 = 64;
/// Rings of one io_uring file device; a request picks a free ring, so this many threads can
/// submit at the same time without waiting for each other.
pub const URING_RINGS: usize = 4;
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
const _: () = assert!(REQUEST_BYTES_MAX % ALIGNMENT_BYTES_MAX == 0);
const _: () = assert!(REQUEST_BYTES_MAX <= i32::MAX as u64);
const _: () = assert!(BATCH_BOUNCE_BYTES_MAX >= REQUEST_BYTES_MAX);
