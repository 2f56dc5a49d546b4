//! Every limit of the export layer, in one place.
//!
//! Invariants (checked at compile time below): the largest request is the engine's largest I/O,
//! a whole number of the largest logical block, and fits a protocol's 32-bit length field; the
//! zero buffer used to store zeroes as data divides it.

/// Largest single read or write a [`crate::Volume`] accepts, in bytes (the engine's largest I/O).
pub const REQUEST_BYTES_MAX: u32 = cairn_engine::limits::IO_BYTES_MAX as u32;
/// Largest logical block size a volume may have.
pub const LOGICAL_BLOCK_BYTES_MAX: u32 = 4096;
/// Buffer of zeroes written when [`crate::Zeroing::Allocate`] stores zeroes as data.
pub const ZERO_BUFFER_BYTES: usize = 1 << 20;

const _: () = assert!(cairn_engine::limits::IO_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(REQUEST_BYTES_MAX as usize == cairn_engine::limits::IO_BYTES_MAX);
/// Most requests a server hands to one [`crate::Volume::read_many`] or
/// [`crate::Volume::write_many`]. A call answers none of them before its slowest is done, so
/// requests that arrived together go out in calls of at most this many, side by side: fio at
/// queue depth 32 over NBD on a file pool got 21–29k 4 KiB reads a second with p99 2.8–5.1 ms at
/// 4, against 15–23k and 5.5–9.4 ms with all of them in one call, 21k with 2, and 11–17k with
/// one blocking job per read (the same CPU per read at 2 to 32).
pub const BATCH_REQUESTS_MAX: usize = 4;
/// Most LUNs one initiator is given by the access model (SCSI single-level LUNs below 256).
pub const LUNS_PER_INITIATOR_MAX: u16 = 255;

const _: () = assert!(REQUEST_BYTES_MAX.is_power_of_two());
const _: () = assert!(REQUEST_BYTES_MAX % LOGICAL_BLOCK_BYTES_MAX == 0);
const _: () = assert!(ZERO_BUFFER_BYTES <= REQUEST_BYTES_MAX as usize);
const _: () = assert!(REQUEST_BYTES_MAX as usize % ZERO_BUFFER_BYTES == 0);
const _: () = assert!(ZERO_BUFFER_BYTES % LOGICAL_BLOCK_BYTES_MAX as usize == 0);
const _: () = assert!(LUNS_PER_INITIATOR_MAX <= 255);
const _: () = assert!(BATCH_REQUESTS_MAX >= 1);
