//! CDB decoding (SPC-4, SBC-3) for the command set the target serves.
//!
//! Invariants: decoding reads only the bytes of the CDB it was given and returns a [`Sense`] for
//! any CDB that is short, has an unsupported operation code or sets a field the target does not
//! support (protection information, reserved bits, saved pages), pointing at that field.

use crate::pdu::{be16, be32, be64};
use crate::scsi::sense::{self, Sense};

/// Operation codes.
pub mod opcode {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const READ_6: u8 = 0x08;
    pub const WRITE_6: u8 = 0x0a;
    pub const INQUIRY: u8 = 0x12;
    pub const MODE_SELECT_6: u8 = 0x15;
    pub const RESERVE_6: u8 = 0x16;
    pub const RELEASE_6: u8 = 0x17;
    pub const MODE_SENSE_6: u8 = 0x1a;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2a;
    pub const VERIFY_10: u8 = 0x2f;
    pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    pub const WRITE_SAME_10: u8 = 0x41;
    pub const UNMAP: u8 = 0x42;
    pub const MODE_SELECT_10: u8 = 0x55;
    pub const PERSISTENT_RESERVE_IN: u8 = 0x5e;
    pub const PERSISTENT_RESERVE_OUT: u8 = 0x5f;
    pub const MODE_SENSE_10: u8 = 0x5a;
    pub const READ_16: u8 = 0x88;
    pub const COMPARE_AND_WRITE: u8 = 0x89;
    pub const WRITE_16: u8 = 0x8a;
    pub const VERIFY_16: u8 = 0x8f;
    pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    pub const WRITE_SAME_16: u8 = 0x93;
    pub const SERVICE_ACTION_IN_16: u8 = 0x9e;
    pub const REPORT_LUNS: u8 = 0xa0;
    pub const MAINTENANCE_IN: u8 = 0xa3;
    pub const READ_12: u8 = 0xa8;
    pub const WRITE_12: u8 = 0xaa;
    pub const VERIFY_12: u8 = 0xaf;
    /// SERVICE ACTION IN(16) service actions.
    pub const SA_READ_CAPACITY_16: u16 = 0x10;
    pub const SA_GET_LBA_STATUS: u16 = 0x12;
    /// MAINTENANCE IN service action.
    pub const SA_REPORT_SUPPORTED_OPCODES: u16 = 0x0c;
}

/// A decoded command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cdb {
    TestUnitReady,
    RequestSense {
        alloc: u32,
    },
    Inquiry {
        evpd: bool,
        page: u8,
        alloc: u32,
    },
    ReadCapacity10,
    ReadCapacity16 {
        alloc: u32,
    },
    GetLbaStatus {
        lba: u64,
        alloc: u32,
    },
    Read {
        lba: u64,
        blocks: u32,
        fua: bool,
    },
    Write {
        lba: u64,
        blocks: u32,
        fua: bool,
    },
    /// Compares `blocks` at `lba` with the first half of the data-out and, if equal, writes the
    /// second half there, atomically against every other write.
    CompareAndWrite {
        lba: u64,
        blocks: u32,
        fua: bool,
    },
    /// `bytchk`: 0 checks the medium only, 1 compares with the data-out buffer.
    Verify {
        lba: u64,
        blocks: u32,
        bytchk: bool,
    },
    WriteSame {
        lba: u64,
        blocks: u64,
        unmap: bool,
        /// No data-out buffer: the blocks are zeroed.
        ndob: bool,
    },
    Unmap {
        param_len: u32,
    },
    SynchronizeCache {
        lba: u64,
        blocks: u32,
    },
    ModeSense {
        long: bool,
        dbd: bool,
        pc: u8,
        page: u8,
        subpage: u8,
        alloc: u32,
    },
    ModeSelect {
        long: bool,
        param_len: u32,
    },
    ReportLuns {
        alloc: u32,
    },
    PersistentReserveIn {
        sa: u8,
        alloc: u32,
    },
    PersistentReserveOut {
        prout: crate::pr::Prout,
        param_len: u32,
    },
    /// RESERVE(6) of the whole logical unit (SPC-2; no third-party or extent reservations).
    Reserve6,
    /// RELEASE(6) of the logical unit.
    Release6,
    ReportOpcodes {
        options: u8,
        rctd: bool,
        opcode: u8,
        sa: u16,
        alloc: u32,
    },
}

fn need(cdb: &[u8], len: usize) -> Result<(), Sense> {
    if cdb.len() < len {
        return Err(Sense::invalid_cdb(0, None));
    }
    Ok(())
}

/// Refuses a non-zero 3-bit protection field (RDPROTECT, WRPROTECT, VRPROTECT) in byte 1.
fn no_protect(cdb: &[u8]) -> Result<(), Sense> {
    if cdb[1] & 0xe0 != 0 {
        return Err(Sense::invalid_cdb(1, Some(7)));
    }
    Ok(())
}

fn fua(cdb: &[u8]) -> bool {
    cdb[1] & 0x08 != 0
}

/// Decodes a CDB.
pub fn decode(cdb: &[u8]) -> Result<Cdb, Sense> {
    need(cdb, 6)?;
    use opcode::*;
    let op = cdb[0];
    let c = match op {
        TEST_UNIT_READY => Cdb::TestUnitReady,
        REQUEST_SENSE => {
            if cdb[1] & 0x01 != 0 {
                // Descriptor-format sense is not served.
                return Err(Sense::invalid_cdb(1, Some(0)));
            }
            Cdb::RequestSense {
                alloc: cdb[4] as u32,
            }
        }
        INQUIRY => inquiry(cdb)?,
        READ_6 | WRITE_6 => rw6(cdb),
        MODE_SENSE_6 => mode_sense(cdb, false, cdb[4] as u32),
        MODE_SELECT_6 => mode_select(cdb, false)?,
        RESERVE_6 | RELEASE_6 => reserve_release(cdb)?,
        _ => return decode_long(cdb),
    };
    Ok(c)
}

fn decode_long(cdb: &[u8]) -> Result<Cdb, Sense> {
    use opcode::*;
    let len = match cdb[0] >> 5 {
        1 | 2 => 10,
        4 => 16,
        5 => 12,
        _ => return Err(sense::INVALID_OPCODE),
    };
    need(cdb, len)?;
    match cdb[0] {
        READ_CAPACITY_10 => Ok(Cdb::ReadCapacity10),
        READ_10 | WRITE_10 | VERIFY_10 => rw10(cdb),
        READ_12 | WRITE_12 | VERIFY_12 => rw12(cdb),
        READ_16 | WRITE_16 | VERIFY_16 => rw16(cdb),
        COMPARE_AND_WRITE => compare_and_write(cdb),
        SYNCHRONIZE_CACHE_10 => Ok(Cdb::SynchronizeCache {
            lba: be32(cdb, 2) as u64,
            blocks: be16(cdb, 7) as u32,
        }),
        SYNCHRONIZE_CACHE_16 => Ok(Cdb::SynchronizeCache {
            lba: be64(cdb, 2),
            blocks: be32(cdb, 10),
        }),
        WRITE_SAME_10 => write_same(cdb, be32(cdb, 2) as u64, be16(cdb, 7) as u64),
        WRITE_SAME_16 => write_same(cdb, be64(cdb, 2), be32(cdb, 10) as u64),
        UNMAP => unmap(cdb),
        MODE_SENSE_10 => Ok(mode_sense(cdb, true, be16(cdb, 7) as u32)),
        MODE_SELECT_10 => mode_select(cdb, true),
        PERSISTENT_RESERVE_IN => persistent_reserve_in(cdb),
        PERSISTENT_RESERVE_OUT => persistent_reserve_out(cdb),
        SERVICE_ACTION_IN_16 => service_action_in(cdb),
        REPORT_LUNS => report_luns(cdb),
        MAINTENANCE_IN if (be16(cdb, 0) & 0x1f) == SA_REPORT_SUPPORTED_OPCODES => {
            report_opcodes(cdb)
        }
        MAINTENANCE_IN => Err(Sense::invalid_cdb(1, Some(4))),
        _ => Err(sense::INVALID_OPCODE),
    }
}

/// MODE SENSE(6) and (10): the same fields, the allocation length where each puts it.
fn mode_sense(cdb: &[u8], long: bool, alloc: u32) -> Cdb {
    Cdb::ModeSense {
        long,
        dbd: cdb[1] & 0x08 != 0,
        pc: cdb[2] >> 6,
        page: cdb[2] & 0x3f,
        subpage: cdb[3],
        alloc,
    }
}

/// COMPARE AND WRITE: at most `COMPARE_AND_WRITE_BLOCKS_MAX` blocks, no protection information.
fn compare_and_write(cdb: &[u8]) -> Result<Cdb, Sense> {
    no_protect(cdb)?;
    if cdb[13] > crate::limits::COMPARE_AND_WRITE_BLOCKS_MAX {
        return Err(Sense::invalid_cdb(13, None));
    }
    Ok(Cdb::CompareAndWrite {
        lba: be64(cdb, 2),
        blocks: cdb[13] as u32,
        fua: fua(cdb),
    })
}

fn unmap(cdb: &[u8]) -> Result<Cdb, Sense> {
    if cdb[1] & 0x01 != 0 {
        // ANCHOR: anchored blocks are not served.
        return Err(Sense::invalid_cdb(1, Some(0)));
    }
    Ok(Cdb::Unmap {
        param_len: be16(cdb, 7) as u32,
    })
}

fn persistent_reserve_in(cdb: &[u8]) -> Result<Cdb, Sense> {
    if cdb[1] & 0x1f > crate::pr::read::READ_FULL_STATUS {
        return Err(Sense::invalid_cdb(1, Some(4)));
    }
    Ok(Cdb::PersistentReserveIn {
        sa: cdb[1] & 0x1f,
        alloc: be16(cdb, 7) as u32,
    })
}

fn persistent_reserve_out(cdb: &[u8]) -> Result<Cdb, Sense> {
    if cdb[1] & 0x1f > crate::pr::action::REGISTER_AND_IGNORE {
        // REGISTER AND MOVE is not served.
        return Err(Sense::invalid_cdb(1, Some(4)));
    }
    Ok(Cdb::PersistentReserveOut {
        prout: crate::pr::Prout {
            sa: cdb[1] & 0x1f,
            scope: cdb[2] >> 4,
            kind: cdb[2] & 0x0f,
        },
        param_len: be32(cdb, 5),
    })
}

/// REPORT LUNS: select reports 0–2 are served.
fn report_luns(cdb: &[u8]) -> Result<Cdb, Sense> {
    if cdb[2] > 2 {
        return Err(Sense::invalid_cdb(2, None));
    }
    Ok(Cdb::ReportLuns {
        alloc: be32(cdb, 6),
    })
}

/// RESERVE(6) and RELEASE(6): third-party (bit 4) and extent (bit 0) forms are refused.
fn reserve_release(cdb: &[u8]) -> Result<Cdb, Sense> {
    for bit in [4, 0] {
        if cdb[1] & (1 << bit) != 0 {
            return Err(Sense::invalid_cdb(1, Some(bit)));
        }
    }
    Ok(if cdb[0] == opcode::RESERVE_6 {
        Cdb::Reserve6
    } else {
        Cdb::Release6
    })
}

fn inquiry(cdb: &[u8]) -> Result<Cdb, Sense> {
    let evpd = cdb[1] & 0x01 != 0;
    if cdb[1] & 0xfe != 0 {
        return Err(Sense::invalid_cdb(1, None));
    }
    if !evpd && cdb[2] != 0 {
        return Err(Sense::invalid_cdb(2, None));
    }
    Ok(Cdb::Inquiry {
        evpd,
        page: cdb[2],
        alloc: be16(cdb, 3) as u32,
    })
}

fn rw6(cdb: &[u8]) -> Cdb {
    let lba = (u32::from_be_bytes([0, cdb[1] & 0x1f, cdb[2], cdb[3]])) as u64;
    // A transfer length of 0 means 256 blocks in the 6-byte forms.
    let blocks = if cdb[4] == 0 { 256 } else { cdb[4] as u32 };
    if cdb[0] == opcode::READ_6 {
        Cdb::Read {
            lba,
            blocks,
            fua: false,
        }
    } else {
        Cdb::Write {
            lba,
            blocks,
            fua: false,
        }
    }
}

fn rw(cdb: &[u8], lba: u64, blocks: u32) -> Result<Cdb, Sense> {
    no_protect(cdb)?;
    Ok(match cdb[0] {
        opcode::READ_10 | opcode::READ_12 | opcode::READ_16 => Cdb::Read {
            lba,
            blocks,
            fua: fua(cdb),
        },
        opcode::WRITE_10 | opcode::WRITE_12 | opcode::WRITE_16 => Cdb::Write {
            lba,
            blocks,
            fua: fua(cdb),
        },
        _ => {
            // BYTCHK is bits 1-2; 0 and 1 are served (2 and 3 compare a single block pattern).
            let bytchk = (cdb[1] >> 1) & 3;
            if bytchk > 1 {
                return Err(Sense::invalid_cdb(1, Some(2)));
            }
            Cdb::Verify {
                lba,
                blocks,
                bytchk: bytchk == 1,
            }
        }
    })
}

fn rw10(cdb: &[u8]) -> Result<Cdb, Sense> {
    rw(cdb, be32(cdb, 2) as u64, be16(cdb, 7) as u32)
}

fn rw12(cdb: &[u8]) -> Result<Cdb, Sense> {
    rw(cdb, be32(cdb, 2) as u64, be32(cdb, 6))
}

fn rw16(cdb: &[u8]) -> Result<Cdb, Sense> {
    rw(cdb, be64(cdb, 2), be32(cdb, 10))
}

fn write_same(cdb: &[u8], lba: u64, blocks: u64) -> Result<Cdb, Sense> {
    no_protect(cdb)?;
    if cdb[1] & 0x10 != 0 {
        // ANCHOR.
        return Err(Sense::invalid_cdb(1, Some(4)));
    }
    Ok(Cdb::WriteSame {
        lba,
        blocks,
        unmap: cdb[1] & 0x08 != 0,
        ndob: cdb[0] == opcode::WRITE_SAME_16 && cdb[1] & 0x01 != 0,
    })
}

fn mode_select(cdb: &[u8], long: bool) -> Result<Cdb, Sense> {
    if cdb[1] & 0x01 != 0 {
        // SP: saved pages are not kept.
        return Err(sense::SAVING_NOT_SUPPORTED);
    }
    let param_len = if long {
        be16(cdb, 7) as u32
    } else {
        cdb[4] as u32
    };
    Ok(Cdb::ModeSelect { long, param_len })
}

fn service_action_in(cdb: &[u8]) -> Result<Cdb, Sense> {
    match (cdb[1] & 0x1f) as u16 {
        opcode::SA_READ_CAPACITY_16 => Ok(Cdb::ReadCapacity16 {
            alloc: be32(cdb, 10),
        }),
        opcode::SA_GET_LBA_STATUS => Ok(Cdb::GetLbaStatus {
            lba: be64(cdb, 2),
            alloc: be32(cdb, 10),
        }),
        _ => Err(Sense::invalid_cdb(1, Some(4))),
    }
}

fn report_opcodes(cdb: &[u8]) -> Result<Cdb, Sense> {
    let options = cdb[2] & 0x07;
    if options > 3 {
        return Err(Sense::invalid_cdb(2, Some(2)));
    }
    Ok(Cdb::ReportOpcodes {
        options,
        rctd: cdb[2] & 0x80 != 0,
        opcode: cdb[3],
        sa: be16(cdb, 4),
        alloc: be32(cdb, 6),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cdb(bytes: &[u8]) -> Result<Cdb, Sense> {
        decode(bytes)
    }

    #[test]
    fn reads_and_writes() {
        let mut c = [0u8; 16];
        c[0] = opcode::READ_10;
        c[1] = 0x08;
        c[2..6].copy_from_slice(&7u32.to_be_bytes());
        c[7..9].copy_from_slice(&3u16.to_be_bytes());
        assert_eq!(
            cdb(&c[..10]),
            Ok(Cdb::Read {
                lba: 7,
                blocks: 3,
                fua: true
            })
        );
        let mut c = [0u8; 16];
        c[0] = opcode::WRITE_16;
        c[2..10].copy_from_slice(&(1u64 << 40).to_be_bytes());
        c[10..14].copy_from_slice(&9u32.to_be_bytes());
        assert_eq!(
            cdb(&c),
            Ok(Cdb::Write {
                lba: 1 << 40,
                blocks: 9,
                fua: false
            })
        );
        assert_eq!(
            cdb(&[opcode::READ_6, 0x1f, 0xff, 0xff, 0, 0]),
            Ok(Cdb::Read {
                lba: 0x1fffff,
                blocks: 256,
                fua: false
            })
        );
    }

    #[test]
    fn malformed_cdbs_are_refused_with_a_pointer() {
        assert_eq!(cdb(&[]), Err(Sense::invalid_cdb(0, None)));
        assert_eq!(
            cdb(&[opcode::READ_10, 0, 0, 0, 0, 0]),
            Err(Sense::invalid_cdb(0, None))
        );
        assert_eq!(
            cdb(&[opcode::READ_16; 12]),
            Err(Sense::invalid_cdb(0, None))
        );
        assert_eq!(cdb(&[0xff; 16]), Err(sense::INVALID_OPCODE));
        assert_eq!(cdb(&[0x04, 0, 0, 0, 0, 0]), Err(sense::INVALID_OPCODE));
        let mut c = [0u8; 10];
        c[0] = opcode::READ_10;
        c[1] = 0x20;
        assert_eq!(cdb(&c), Err(Sense::invalid_cdb(1, Some(7))));
        assert_eq!(
            cdb(&[opcode::INQUIRY, 0, 0x80, 0, 0xff, 0]),
            Err(Sense::invalid_cdb(2, None))
        );
        assert_eq!(
            cdb(&[opcode::REQUEST_SENSE, 1, 0, 0, 0, 0]),
            Err(Sense::invalid_cdb(1, Some(0)))
        );
        let mut c = [0u8; 16];
        c[0] = opcode::SERVICE_ACTION_IN_16;
        c[1] = 0x1f;
        assert_eq!(cdb(&c), Err(Sense::invalid_cdb(1, Some(4))));
        let mut c = [0u8; 12];
        c[0] = opcode::REPORT_LUNS;
        c[2] = 3;
        assert_eq!(cdb(&c), Err(Sense::invalid_cdb(2, None)));
        let mut c = [0u8; 10];
        c[0] = opcode::UNMAP;
        c[1] = 1;
        assert_eq!(cdb(&c), Err(Sense::invalid_cdb(1, Some(0))));
        let mut c = [0u8; 10];
        c[0] = opcode::VERIFY_10;
        c[1] = 0x04;
        assert_eq!(cdb(&c), Err(Sense::invalid_cdb(1, Some(2))));
        assert_eq!(
            cdb(&[opcode::MODE_SELECT_6, 1, 0, 0, 0, 0]),
            Err(sense::SAVING_NOT_SUPPORTED)
        );
    }

    #[test]
    fn compare_and_write_and_persistent_reserve() {
        let mut c = [0u8; 16];
        c[0] = opcode::COMPARE_AND_WRITE;
        c[1] = 0x08;
        c[9] = 5;
        c[13] = 2;
        assert_eq!(
            cdb(&c),
            Ok(Cdb::CompareAndWrite {
                lba: 5,
                blocks: 2,
                fua: true
            })
        );
        c[13] = crate::limits::COMPARE_AND_WRITE_BLOCKS_MAX + 1;
        assert_eq!(cdb(&c), Err(Sense::invalid_cdb(13, None)));
        let c = [
            opcode::PERSISTENT_RESERVE_OUT,
            1,
            0x03,
            0,
            0,
            0,
            0,
            0,
            24,
            0,
        ];
        assert_eq!(
            cdb(&c),
            Ok(Cdb::PersistentReserveOut {
                prout: crate::pr::Prout {
                    sa: 1,
                    scope: 0,
                    kind: 3
                },
                param_len: 24
            })
        );
        let c = [opcode::PERSISTENT_RESERVE_OUT, 7, 0, 0, 0, 0, 0, 0, 24, 0];
        assert_eq!(cdb(&c), Err(Sense::invalid_cdb(1, Some(4))));
        let c = [opcode::PERSISTENT_RESERVE_IN, 4, 0, 0, 0, 0, 0, 0, 8, 0];
        assert_eq!(cdb(&c), Err(Sense::invalid_cdb(1, Some(4))));
    }

    #[test]
    fn service_actions_and_write_same() {
        let mut c = [0u8; 16];
        c[0] = opcode::SERVICE_ACTION_IN_16;
        c[1] = 0x10;
        c[13] = 32;
        assert_eq!(cdb(&c), Ok(Cdb::ReadCapacity16 { alloc: 32 }));
        let mut c = [0u8; 10];
        c[0] = opcode::WRITE_SAME_10;
        c[1] = 0x08;
        c[8] = 4;
        assert_eq!(
            cdb(&c),
            Ok(Cdb::WriteSame {
                lba: 0,
                blocks: 4,
                unmap: true,
                ndob: false
            })
        );
        c[1] = 0x10;
        assert_eq!(cdb(&c), Err(Sense::invalid_cdb(1, Some(4))));
        let mut c = [0u8; 12];
        c[0] = opcode::MAINTENANCE_IN;
        c[1] = 0x0c;
        c[2] = 0x81;
        c[3] = opcode::READ_10;
        assert!(matches!(
            cdb(&c),
            Ok(Cdb::ReportOpcodes {
                options: 1,
                rctd: true,
                opcode: opcode::READ_10,
                ..
            })
        ));
    }
}
