//! One SCSI command executed against an opened volume: the block commands of SBC-3 and the
//! pages of [`crate::scsi::pages`], with volume errors turned into sense data here, once.
//!
//! Invariants: a range is checked against the volume's current size before any I/O (LBA OUT OF
//! RANGE otherwise); a write to a read-only volume fails with DATA PROTECT before touching it;
//! WRITE SAME with UNMAP zeroes through the engine's write-zeroes (never trim), only UNMAP trims;
//! an engine failure fails the command with a medium error and nothing else.

use bytes::Bytes;
use cairn_export::{ErrorKind, Volume, Zeroing};
use std::sync::Arc;

use crate::buffers::{Buffer, Buffers};

use crate::limits::{
    COMPARE_AND_WRITE_BLOCKS_MAX, LBA_STATUS_DESCRIPTORS_MAX, TRANSFER_BYTES_MAX,
    UNMAP_DESCRIPTORS_MAX, WRITE_SAME_BLOCKS_MAX,
};
use crate::pdu::{be32, be64};
use crate::pr::Access;
use crate::scsi::cdb::Cdb;
use crate::scsi::pages::{self, Unit};
use crate::scsi::sense::{self, Sense};

/// What a command produced: GOOD with data-in, or CHECK CONDITION with sense.
pub(crate) type Outcome = Result<Bytes, Sense>;

/// The bytes of data-out a command takes, from its CDB (SPDTL of the write direction).
pub(crate) fn data_out_bytes(cdb: &Cdb, block_bytes: u32) -> u64 {
    let blocks = |n: u32| n as u64 * block_bytes as u64;
    match *cdb {
        Cdb::Write { blocks: n, .. } => blocks(n),
        Cdb::Verify {
            blocks: n,
            bytchk: true,
            ..
        } => blocks(n),
        Cdb::WriteSame { ndob: false, .. } => block_bytes as u64,
        Cdb::CompareAndWrite { blocks: n, .. } => 2 * blocks(n),
        Cdb::Unmap { param_len }
        | Cdb::ModeSelect { param_len, .. }
        | Cdb::PersistentReserveOut { param_len, .. } => param_len as u64,
        _ => 0,
    }
}

/// True for commands whose data-out length must equal the expected transfer length exactly (a
/// WRITE SAME block and the halves of a COMPARE AND WRITE cannot be cut; writes and compares are
/// cut to the expected length).
pub(crate) fn data_out_exact(cdb: &Cdb) -> bool {
    matches!(
        cdb,
        Cdb::WriteSame { ndob: false, .. } | Cdb::CompareAndWrite { .. }
    )
}

/// True for the commands that change the medium and so must not run during a COMPARE AND WRITE
/// of the same unit.
pub(crate) fn changes_medium(cdb: &Cdb) -> bool {
    matches!(
        cdb,
        Cdb::Write { .. } | Cdb::WriteSame { .. } | Cdb::Unmap { .. }
    )
}

/// How `cdb` touches the medium, for the reservation conflict rules (SPC-4 table 65; MODE
/// SENSE, READ, VERIFY and GET LBA STATUS read; TEST UNIT READY and READ CAPACITY are allowed
/// under every persistent reservation; INQUIRY, REQUEST SENSE and REPORT SUPPORTED OPERATION
/// CODES under an SPC-2 reservation too; REPORT LUNS never reaches a unit).
pub(crate) fn access(cdb: &Cdb) -> Access {
    match cdb {
        Cdb::Inquiry { .. }
        | Cdb::RequestSense { .. }
        | Cdb::ReportOpcodes { .. }
        | Cdb::Reserve6
        | Cdb::Release6 => Access::Always,
        Cdb::PersistentReserveIn { .. } | Cdb::PersistentReserveOut { .. } => Access::Persistent,
        Cdb::Read { .. }
        | Cdb::Verify { .. }
        | Cdb::GetLbaStatus { .. }
        | Cdb::ModeSense { .. } => Access::Read,
        Cdb::Write { .. }
        | Cdb::WriteSame { .. }
        | Cdb::Unmap { .. }
        | Cdb::SynchronizeCache { .. }
        | Cdb::CompareAndWrite { .. }
        | Cdb::ModeSelect { .. } => Access::Write,
        _ => Access::Free,
    }
}

fn volume_sense(e: &cairn_export::Error, writing: bool) -> Sense {
    match e.kind() {
        ErrorKind::ReadOnly => sense::WRITE_PROTECTED,
        ErrorKind::OutOfRange => sense::LBA_OUT_OF_RANGE,
        ErrorKind::NoSpace => sense::SPACE_ALLOCATION_FAILED,
        ErrorKind::InvalidArgument => Sense::invalid_cdb(0, None),
        _ if writing => sense::WRITE_ERROR,
        _ => sense::UNRECOVERED_READ_ERROR,
    }
}

/// Byte range of `blocks` at `lba`, checked against the volume's size and the transfer limit.
fn range(u: &Unit, lba: u64, blocks: u64, bounded: bool) -> Result<(u64, u64), Sense> {
    let end = lba.checked_add(blocks).ok_or(sense::LBA_OUT_OF_RANGE)?;
    if end > u.blocks() {
        return Err(sense::LBA_OUT_OF_RANGE);
    }
    let bs = u.block_bytes as u64;
    if bounded && blocks * bs > TRANSFER_BYTES_MAX as u64 {
        return Err(Sense::invalid_cdb(7, None));
    }
    Ok((lba * bs, blocks * bs))
}

fn writable(u: &Unit) -> Result<(), Sense> {
    if u.read_only {
        return Err(sense::WRITE_PROTECTED);
    }
    Ok(())
}

/// Executes `cdb` on `vol` (described by `u`) with the data-out buffer `data`; read data goes
/// into a buffer of `buffers`, aligned for direct I/O (the device reads straight into it), and
/// Data-In sends it as it is.
pub(crate) fn execute(
    vol: &dyn Volume,
    u: &Unit,
    cdb: &Cdb,
    data: &[u8],
    buffers: &Arc<Buffers>,
) -> Outcome {
    match *cdb {
        Cdb::TestUnitReady => Ok(Bytes::new()),
        Cdb::RequestSense { .. } => Ok(Bytes::copy_from_slice(&sense::NO_SENSE.to_bytes())),
        Cdb::Inquiry { evpd: false, .. } => Ok(pages::standard_inquiry(true).into()),
        Cdb::Inquiry { page, .. } => pages::vpd_page(u, page).map(Bytes::from),
        Cdb::ReadCapacity10 => Ok(pages::read_capacity_10(u).into()),
        Cdb::ReadCapacity16 { .. } => Ok(pages::read_capacity_16(u).into()),
        Cdb::GetLbaStatus { lba, alloc } => lba_status(vol, u, lba, alloc),
        Cdb::Read { lba, blocks, .. } => read(vol, u, lba, blocks, buffers),
        Cdb::Write { lba, blocks, fua } => write(vol, u, lba, blocks, fua, data),
        Cdb::Verify {
            lba,
            blocks,
            bytchk,
        } => verify(vol, u, (lba, blocks), bytchk, data, buffers),
        Cdb::CompareAndWrite { lba, blocks, fua } => {
            compare_and_write(vol, u, (lba, blocks), fua, data, buffers)
        }
        Cdb::WriteSame {
            lba, blocks, unmap, ..
        } => write_same(vol, u, lba, blocks, unmap, data),
        Cdb::Unmap { .. } => unmap(vol, u, data),
        Cdb::SynchronizeCache { lba, blocks } => {
            range(u, lba, blocks as u64, false)?;
            vol.flush().map_err(|e| volume_sense(&e, true))?;
            Ok(Bytes::new())
        }
        Cdb::ModeSense {
            long,
            dbd,
            pc,
            page,
            subpage,
            ..
        } => {
            let p = pages::mode_pages(pc, page, subpage)?;
            Ok(pages::mode_sense(u, long, dbd, &p).into())
        }
        Cdb::ModeSelect { long, .. } => pages::mode_select(u, long, data).map(|()| Bytes::new()),
        Cdb::ReportOpcodes {
            options,
            rctd,
            opcode,
            sa,
            ..
        } => pages::report_opcodes(options, rctd, opcode, sa).map(Bytes::from),
        // Answered by the session, which knows the initiator's LUNs and its I_T nexus.
        Cdb::ReportLuns { .. }
        | Cdb::PersistentReserveIn { .. }
        | Cdb::PersistentReserveOut { .. }
        | Cdb::Reserve6
        | Cdb::Release6 => Err(sense::INVALID_OPCODE),
    }
}

fn read(vol: &dyn Volume, u: &Unit, lba: u64, blocks: u32, buffers: &Arc<Buffers>) -> Outcome {
    let (offset, mut buf) = read_start(u, lba, blocks, buffers)?;
    let result = vol.read(offset, &mut buf);
    read_end(buf, result)
}

/// A READ up to the volume: its byte offset, checked with its length, and a buffer for it.
pub(crate) fn read_start(
    u: &Unit,
    lba: u64,
    blocks: u32,
    buffers: &Arc<Buffers>,
) -> Result<(u64, Buffer), Sense> {
    let (offset, len) = range(u, lba, blocks as u64, true)?;
    Ok((offset, buffers.take(len as usize)))
}

/// A READ's answer once the volume has filled its buffer (or failed to).
pub(crate) fn read_end(buf: Buffer, result: cairn_export::Result<()>) -> Outcome {
    result.map_err(|e| volume_sense(&e, false))?;
    Ok(Bytes::from_owner(buf))
}

fn write(vol: &dyn Volume, u: &Unit, lba: u64, blocks: u32, fua: bool, data: &[u8]) -> Outcome {
    if let Some(offset) = write_start(u, lba, blocks, data)? {
        write_end(vol.write(offset, data, fua))?;
    }
    Ok(Bytes::new())
}

/// A WRITE up to the volume: its byte offset, checked with its length (`data`, whole blocks)
/// and the unit's write protection; `None` for a write of no blocks (nothing to write).
pub(crate) fn write_start(
    u: &Unit,
    lba: u64,
    blocks: u32,
    data: &[u8],
) -> Result<Option<u64>, Sense> {
    let (offset, len) = range(u, lba, blocks as u64, true)?;
    writable(u)?;
    debug_assert_eq!(len as usize, data.len());
    Ok((len > 0).then_some(offset))
}

/// A WRITE's answer once the volume has taken its data (or failed to).
pub(crate) fn write_end(result: cairn_export::Result<()>) -> Outcome {
    result.map_err(|e| volume_sense(&e, true))?;
    Ok(Bytes::new())
}

fn verify(
    vol: &dyn Volume,
    u: &Unit,
    (lba, blocks): (u64, u32),
    bytchk: bool,
    data: &[u8],
    buffers: &Arc<Buffers>,
) -> Outcome {
    let medium = read(vol, u, lba, blocks, buffers)?;
    if bytchk {
        if let Some(at) = medium.iter().zip(data).position(|(a, b)| a != b) {
            let mut s = sense::MISCOMPARE_DURING_VERIFY;
            s.information = Some(at as u32);
            return Err(s);
        }
    }
    Ok(Bytes::new())
}

/// COMPARE AND WRITE; the caller holds the unit's write lock across it. A mismatch is
/// MISCOMPARE with the offset of the first differing byte in the INFORMATION field.
fn compare_and_write(
    vol: &dyn Volume,
    u: &Unit,
    (lba, blocks): (u64, u32),
    fua: bool,
    data: &[u8],
    buffers: &Arc<Buffers>,
) -> Outcome {
    debug_assert!(
        blocks <= COMPARE_AND_WRITE_BLOCKS_MAX as u32,
        "checked by the decoder"
    );
    writable(u)?;
    let medium = read(vol, u, lba, blocks, buffers)?;
    debug_assert_eq!(data.len(), 2 * medium.len());
    let (compare, new) = data.split_at(medium.len());
    if let Some(at) = medium.iter().zip(compare).position(|(a, b)| a != b) {
        let mut s = sense::MISCOMPARE_DURING_VERIFY;
        s.information = Some(at as u32);
        return Err(s);
    }
    write(vol, u, lba, blocks, fua, new)
}

fn write_same(
    vol: &dyn Volume,
    u: &Unit,
    lba: u64,
    blocks: u64,
    unmap: bool,
    data: &[u8],
) -> Outcome {
    if blocks == 0 {
        // WSNZ is set in the block limits page.
        return Err(Sense::invalid_cdb(10, None));
    }
    if blocks > WRITE_SAME_BLOCKS_MAX {
        return Err(Sense::invalid_cdb(10, None));
    }
    let (offset, len) = range(u, lba, blocks, false)?;
    writable(u)?;
    let fail = |e: cairn_export::Error| volume_sense(&e, true);
    // NDOB (no data-out buffer) writes zeros too.
    if data.iter().all(|&b| b == 0) {
        // With LBPRZ the zeroes read back either way; UNMAP lets the engine deallocate.
        let how = if unmap {
            Zeroing::Unmap
        } else {
            Zeroing::Allocate
        };
        vol.write_zeroes(offset, len, how).map_err(fail)?;
        return Ok(Bytes::new());
    }
    let chunk = data.repeat((1 << 20) / data.len().max(1));
    let mut at = offset;
    while at < offset + len {
        let n = (offset + len - at).min(chunk.len() as u64) as usize;
        vol.write(at, &chunk[..n], false).map_err(fail)?;
        at += n as u64;
    }
    Ok(Bytes::new())
}

fn unmap(vol: &dyn Volume, u: &Unit, list: &[u8]) -> Outcome {
    if list.is_empty() {
        return Ok(Bytes::new());
    }
    if list.len() < 8 {
        return Err(sense::PARAMETER_LIST_LENGTH);
    }
    writable(u)?;
    let descriptors_len = u16::from_be_bytes([list[2], list[3]]) as usize;
    let body = &list[8..];
    if descriptors_len > body.len() || descriptors_len % 16 != 0 {
        return Err(sense::PARAMETER_LIST_LENGTH);
    }
    if descriptors_len / 16 > UNMAP_DESCRIPTORS_MAX as usize {
        return Err(Sense::invalid_parameter(2));
    }
    let mut ranges = Vec::with_capacity(descriptors_len / 16);
    for d in body[..descriptors_len].chunks_exact(16) {
        ranges.push(range(u, be64(d, 0), be32(d, 8) as u64, false)?);
    }
    for (offset, len) in ranges {
        if len > 0 {
            vol.trim(offset, len).map_err(|e| volume_sense(&e, true))?;
        }
    }
    Ok(Bytes::new())
}

fn lba_status(vol: &dyn Volume, u: &Unit, lba: u64, alloc: u32) -> Outcome {
    if lba >= u.blocks() {
        return Err(sense::LBA_OUT_OF_RANGE);
    }
    let bs = u.block_bytes as u64;
    let wanted = ((alloc as usize).saturating_sub(8) / 16).clamp(1, LBA_STATUS_DESCRIPTORS_MAX);
    // One GiB at most per request: the initiator asks again from where the reply ends.
    let len = ((u.blocks() - lba) * bs).min(1 << 30);
    let runs = vol
        .block_status(lba * bs, len)
        .map_err(|e| volume_sense(&e, false))?;
    let mut b = vec![0u8; 8];
    for run in runs.iter().take(wanted) {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&(run.offset / bs).to_be_bytes());
        d[8..12].copy_from_slice(&((run.len / bs).min(u32::MAX as u64) as u32).to_be_bytes());
        d[12] = if run.mapped { 0 } else { 1 };
        b.extend_from_slice(&d);
    }
    let param_len = (b.len() - 4) as u32;
    b[0..4].copy_from_slice(&param_len.to_be_bytes());
    Ok(b.into())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cairn_engine::{Pool, PoolOptions, Storage, VolumeOptions};
    use cairn_export::Exports;
    use cairn_io::MemDevice;

    use super::*;
    use crate::scsi::sense::key;

    const BS: u32 = 512;

    fn opened(read_only: bool) -> (Arc<dyn Volume>, Unit) {
        let (v, u, _) = opened_on(read_only);
        (v, u)
    }

    fn opened_on(read_only: bool) -> (Arc<dyn Volume>, Unit, Arc<MemDevice>) {
        let dev = Arc::new(MemDevice::new(64 << 20));
        let opts = PoolOptions {
            commit_interval: None,
            ..PoolOptions::default()
        };
        let storage = Storage::new();
        storage
            .add_pool(Pool::create(dev.clone(), "p", opts).unwrap())
            .unwrap();
        let vopts = VolumeOptions {
            logical_block_size: BS,
            read_only,
            ..VolumeOptions::default()
        };
        storage.create_volume("p", "v", 8 << 20, vopts).unwrap();
        let vol = storage.open("v").unwrap();
        let unit = Unit {
            size_bytes: vol.size_bytes(),
            block_bytes: BS,
            read_only,
            naa: vol.naa_designator(),
            serial: "s".into(),
            target_name: "iqn.2026-01.org.cairn:t".into(),
        };
        (vol, unit, dev)
    }

    fn run(v: &dyn Volume, u: &Unit, cdb: Cdb, data: &[u8]) -> Result<Vec<u8>, Sense> {
        execute(v, u, &cdb, data, &Arc::new(Buffers::new())).map(Vec::from)
    }

    fn read(v: &dyn Volume, u: &Unit, lba: u64, blocks: u32) -> Vec<u8> {
        run(
            v,
            u,
            Cdb::Read {
                lba,
                blocks,
                fua: false,
            },
            &[],
        )
        .unwrap()
    }

    #[test]
    fn write_same_repeats_its_block_and_with_unmap_reads_zeros() {
        let (v, u) = opened(false);
        let block = vec![0x5a; BS as usize];
        let same = |lba, blocks, unmap, data: &[u8]| {
            run(
                &*v,
                &u,
                Cdb::WriteSame {
                    lba,
                    blocks,
                    unmap,
                    ndob: false,
                },
                data,
            )
        };
        assert_eq!(same(0, 64, false, &block), Ok(Vec::new()));
        assert!(read(&*v, &u, 0, 64).iter().all(|&b| b == 0x5a));
        assert_eq!(same(8, 16, true, &vec![0; BS as usize]), Ok(Vec::new()));
        let back = read(&*v, &u, 0, 64);
        assert!(back[..8 * BS as usize].iter().all(|&b| b == 0x5a));
        assert!(back[8 * BS as usize..24 * BS as usize]
            .iter()
            .all(|&b| b == 0));
        assert!(back[24 * BS as usize..].iter().all(|&b| b == 0x5a));
        assert_eq!(same(0, 0, false, &block), Err(Sense::invalid_cdb(10, None)));
        assert_eq!(
            same(u.blocks() - 1, 2, true, &block),
            Err(sense::LBA_OUT_OF_RANGE)
        );
    }

    #[test]
    fn unmap_deallocates_and_lba_status_reports_it() {
        let (v, u) = opened(false);
        run(
            &*v,
            &u,
            Cdb::Write {
                lba: 0,
                blocks: 64,
                fua: true,
            },
            &vec![1; 64 * BS as usize],
        )
        .unwrap();
        let mut list = vec![0u8; 8 + 16];
        list[2..4].copy_from_slice(&16u16.to_be_bytes());
        list[8..16].copy_from_slice(&0u64.to_be_bytes());
        list[16..20].copy_from_slice(&64u32.to_be_bytes());
        assert_eq!(
            run(&*v, &u, Cdb::Unmap { param_len: 24 }, &list),
            Ok(Vec::new())
        );
        assert!(read(&*v, &u, 0, 64).iter().all(|&b| b == 0));
        let status = run(
            &*v,
            &u,
            Cdb::GetLbaStatus {
                lba: 0,
                alloc: 1024,
            },
            &[],
        )
        .unwrap();
        assert_eq!(&status[8..16], &0u64.to_be_bytes());
        assert_eq!(status[8 + 12], 1, "deallocated");
        assert_eq!(
            run(
                &*v,
                &u,
                Cdb::GetLbaStatus {
                    lba: u.blocks(),
                    alloc: 1024
                },
                &[]
            ),
            Err(sense::LBA_OUT_OF_RANGE)
        );
        list[8..16].copy_from_slice(&u.blocks().to_be_bytes());
        assert_eq!(
            run(&*v, &u, Cdb::Unmap { param_len: 24 }, &list),
            Err(sense::LBA_OUT_OF_RANGE)
        );
        assert_eq!(
            run(&*v, &u, Cdb::Unmap { param_len: 24 }, &list[..12]),
            Err(sense::PARAMETER_LIST_LENGTH)
        );
    }

    #[test]
    fn a_device_failure_is_a_medium_error_for_that_command_only() {
        let (v, u, dev) = opened_on(false);
        run(
            &*v,
            &u,
            Cdb::Write {
                lba: 0,
                blocks: 8,
                fua: true,
            },
            &[7; 8 * BS as usize],
        )
        .unwrap();
        dev.fail_reads_after(0);
        assert_eq!(
            run(
                &*v,
                &u,
                Cdb::Read {
                    lba: 0,
                    blocks: 8,
                    fua: false
                },
                &[]
            ),
            Err(sense::UNRECOVERED_READ_ERROR)
        );
        dev.clear_faults();
        assert!(read(&*v, &u, 0, 8).iter().all(|&b| b == 7));
    }

    #[test]
    fn a_read_only_volume_refuses_writes_and_reports_write_protect() {
        let (v, u) = opened(true);
        let write = Cdb::Write {
            lba: 0,
            blocks: 1,
            fua: false,
        };
        assert_eq!(
            run(&*v, &u, write, &[0; BS as usize]).unwrap_err().key,
            key::DATA_PROTECT
        );
        let page = run(
            &*v,
            &u,
            Cdb::ModeSense {
                long: false,
                dbd: true,
                pc: 0,
                page: 0x08,
                subpage: 0,
                alloc: 255,
            },
            &[],
        )
        .unwrap();
        assert_eq!(page[2] & 0x80, 0x80, "WP set for a read-only volume");
    }

    #[test]
    fn reads_past_the_end_are_out_of_range() {
        let (v, u) = opened(true);
        for (lba, blocks) in [(u.blocks(), 1), (u64::MAX, 2)] {
            let read = Cdb::Read {
                lba,
                blocks,
                fua: false,
            };
            assert_eq!(
                run(&*v, &u, read, &[]),
                Err(sense::LBA_OUT_OF_RANGE),
                "{lba} + {blocks}"
            );
        }
    }

    #[test]
    fn verify_reports_the_first_miscompare_and_passes_equal_data() {
        let (v, u) = opened(true);
        let verify = Cdb::Verify {
            lba: 0,
            blocks: 2,
            bytchk: true,
        };
        let mut other = vec![0u8; 2 * BS as usize];
        other[700] = 9;
        let miscompare = run(&*v, &u, verify.clone(), &other).unwrap_err();
        assert_eq!(
            (miscompare.key, miscompare.information),
            (key::MISCOMPARE, Some(700))
        );
        assert_eq!(run(&*v, &u, verify, &[0; 1024]), Ok(Vec::new()));
    }
}
