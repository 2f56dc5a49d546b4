//! Every size and count limit of the iSCSI codec and server, in one place.
//!
//! Invariants (checked at compile time below): the largest data segment we accept fits a
//! connection's in-flight budget; the largest transfer a command may ask for fits it too, so one
//! command can always make progress; every length we declare lies in RFC 7143's ranges.

/// Basic Header Segment length (RFC 7143 §11.2).
pub const BHS_BYTES: usize = 48;
/// Largest additional header segment total accepted (TotalAHSLength is in 4-byte words).
pub const AHS_BYTES_MAX: usize = 256;
/// Smallest data-segment length a side may declare (RFC 7143 §13.12).
pub const DATA_SEGMENT_BYTES_FLOOR: u32 = 512;
/// Largest data-segment length a side may declare (2^24 - 1).
pub const DATA_SEGMENT_BYTES_CEILING: u32 = (1 << 24) - 1;
/// MaxRecvDataSegmentLength the target declares: the largest data segment it reads.
pub const RECV_DATA_SEGMENT_BYTES: u32 = 256 << 10;
/// Data segment accepted in login and text PDUs (RFC 7143 §6.1 fixes 8192 during login).
pub const LOGIN_DATA_SEGMENT_BYTES_MAX: u32 = 8192;
/// The target's MaxBurstLength offer: the most solicited bytes in one sequence.
pub const BURST_BYTES_MAX: u32 = 1 << 20;
/// The target's FirstBurstLength offer: the most unsolicited bytes of one command.
pub const FIRST_BURST_BYTES_MAX: u32 = 256 << 10;
/// Largest transfer of one SCSI command (reported in VPD B0 as MAXIMUM TRANSFER LENGTH): the
/// export layer's request limit.
pub const TRANSFER_BYTES_MAX: u32 = cairn_export::limits::REQUEST_BYTES_MAX;
/// Most text bytes gathered over a login or text exchange (continued PDUs included).
pub const TEXT_BYTES_MAX: usize = 64 << 10;
/// Most key=value pairs in one login or text exchange (key bombs are refused).
pub const TEXT_KEYS_MAX: usize = 64;
/// Longest key name (RFC 7143 §6.1: at most 63 bytes).
pub const KEY_BYTES_MAX: usize = 63;
/// Longest value (RFC 7143 §6.1: 8192 bytes for the longest binary values).
pub const VALUE_BYTES_MAX: usize = 8192;
/// Most login request PDUs before the login is abandoned.
pub const LOGIN_PDUS_MAX: u32 = 64;
/// Commands the target admits into its CmdSN window at once (MaxCmdSN - ExpCmdSN + 1).
pub const COMMAND_WINDOW: u32 = 32;
/// Data bytes one connection may hold for commands in flight (reads and writes).
pub const CONNECTION_IN_FLIGHT_BYTES_MAX: u64 = 96 << 20;
/// Data bytes the whole server may hold for commands in flight.
pub const SERVER_IN_FLIGHT_BYTES_MAX: u64 = 1 << 30;
/// Fixed in-flight charge of a command without data.
pub const COMMAND_CHARGE_BYTES: u64 = 4096;
/// Commands whose remaining unsolicited Data-Out a connection remembers to drop.
pub const DISCARDING_MAX: usize = 4 * COMMAND_WINDOW as usize;
/// Most connections served at once.
pub const CONNECTIONS_MAX: usize = 256;
/// Most descriptors in one UNMAP parameter list (reported in VPD B0).
pub const UNMAP_DESCRIPTORS_MAX: u32 = 256;
/// Most blocks one WRITE SAME may cover (reported in VPD B0 as MAXIMUM WRITE SAME LENGTH).
pub const WRITE_SAME_BLOCKS_MAX: u64 = 1 << 24;
/// Most LUNs one initiator sees.
pub const LUNS_MAX: usize = cairn_export::limits::LUNS_PER_INITIATOR_MAX as usize;
/// Most GET LBA STATUS descriptors in one reply.
pub const LBA_STATUS_DESCRIPTORS_MAX: usize = 512;
/// Time a client has to finish a login.
pub const LOGIN_TIMEOUT_SECS: u64 = 30;
/// Time a closing connection has to finish its commands in flight.
pub const DRAIN_TIMEOUT_SECS: u64 = 30;
/// Depth of the queue of PDUs waiting for the connection's writer.
pub const RESPONSE_QUEUE_DEPTH: usize = 64;
/// Bytes of PDUs a connection queues before it writes them.
pub const WRITE_GATHER_BYTES: usize = 1 << 20;
/// Slices in one vectored write (below the kernel's IOV_MAX of 1024).
pub const WRITE_SLICES_MAX: usize = 64;
/// Smallest class of the command data buffers (see `buffers`).
pub const BUFFER_CLASS_BYTES_MIN: usize = 4096;
/// Idle command data buffers kept for reuse, in bytes, for the whole server.
pub const IDLE_BUFFER_BYTES_MAX: usize = 32 << 20;
/// Idle command data buffers kept for reuse per size class.
pub const IDLE_BUFFERS_PER_CLASS_MAX: usize = 2 * COMMAND_WINDOW as usize;
/// Unit attentions queued per I_T nexus and LUN; older ones beyond are dropped (SAM-5 allows
/// reporting the most important one).
pub const UNIT_ATTENTIONS_MAX: usize = 8;
/// Resets queued for one session by others (a reset already queued is not queued twice).
pub const RESETS_MAX: usize = 16;
/// Blocks of one COMPARE AND WRITE (VPD B0 MAXIMUM COMPARE AND WRITE LENGTH, one byte).
pub const COMPARE_AND_WRITE_BLOCKS_MAX: u8 = 128;
/// Registrations per logical unit (PERSISTENT RESERVE OUT REGISTER beyond: INSUFFICIENT
/// REGISTRATION RESOURCES).
pub const REGISTRATIONS_MAX: usize = 64;
/// I_T nexuses with reservation unit attentions pending, per logical unit.
pub const PR_ATTENTION_NEXUSES_MAX: usize = 2 * REGISTRATIONS_MAX;
/// Bytes of the CHAP challenge the target sends.
pub const CHAP_CHALLENGE_BYTES: usize = 16;
/// Longest CHAP challenge accepted from an initiator (mutual CHAP), in bytes.
pub const CHAP_CHALLENGE_BYTES_MAX: usize = 1024;

const _: () = assert!(RECV_DATA_SEGMENT_BYTES >= DATA_SEGMENT_BYTES_FLOOR);
const _: () = assert!(RECV_DATA_SEGMENT_BYTES <= DATA_SEGMENT_BYTES_CEILING);
const _: () = assert!(BURST_BYTES_MAX <= DATA_SEGMENT_BYTES_CEILING);
const _: () = assert!(FIRST_BURST_BYTES_MAX <= BURST_BYTES_MAX);
const _: () = assert!(FIRST_BURST_BYTES_MAX >= DATA_SEGMENT_BYTES_FLOOR);
const _: () = assert!(LOGIN_DATA_SEGMENT_BYTES_MAX <= RECV_DATA_SEGMENT_BYTES);
const _: () =
    assert!(TRANSFER_BYTES_MAX as u64 + COMMAND_CHARGE_BYTES <= CONNECTION_IN_FLIGHT_BYTES_MAX);
const _: () = assert!(PR_ATTENTION_NEXUSES_MAX >= REGISTRATIONS_MAX);
const _: () = assert!(CONNECTION_IN_FLIGHT_BYTES_MAX <= SERVER_IN_FLIGHT_BYTES_MAX);
const _: () = assert!(SERVER_IN_FLIGHT_BYTES_MAX <= u32::MAX as u64);
const _: () = assert!(AHS_BYTES_MAX % 4 == 0 && AHS_BYTES_MAX <= 255 * 4);
const _: () = assert!(COMMAND_WINDOW >= 1 && COMMAND_WINDOW < (1 << 31));
const _: () = assert!(TEXT_KEYS_MAX * (KEY_BYTES_MAX + 2) <= TEXT_BYTES_MAX);
const _: () = assert!(LUNS_MAX <= 255);
const _: () = assert!(IDLE_BUFFER_BYTES_MAX >= (1 << 20) * 8);
const _: () = assert!(WRITE_SLICES_MAX >= 3 && WRITE_SLICES_MAX <= 1024);
