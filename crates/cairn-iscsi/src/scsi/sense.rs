//! SCSI status and fixed-format sense data (SPC-4 §4.5.3).
//!
//! Invariant: every sense buffer built here is 18 bytes, response code 0x70 (current error),
//! with the sense-key-specific field pointer set only when [`Sense::field`] names one.

/// SCSI status codes.
pub mod status {
    pub const GOOD: u8 = 0x00;
    pub const CHECK_CONDITION: u8 = 0x02;
}

/// Sense keys.
pub mod key {
    pub const NO_SENSE: u8 = 0x0;
    pub const MEDIUM_ERROR: u8 = 0x3;
    pub const ILLEGAL_REQUEST: u8 = 0x5;
    pub const UNIT_ATTENTION: u8 = 0x6;
    pub const DATA_PROTECT: u8 = 0x7;
    pub const ABORTED_COMMAND: u8 = 0xb;
    pub const MISCOMPARE: u8 = 0xe;
}

/// Fixed-format sense data length.
pub const SENSE_BYTES: usize = 18;

/// Where in the CDB or parameter list the invalid field is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// True if the field is in the CDB, false if in the parameter list.
    pub in_cdb: bool,
    pub byte: u16,
    pub bit: Option<u8>,
}

/// One sense condition: key, additional sense code and qualifier, optional field pointer and
/// information field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
    pub field: Option<Field>,
    pub information: Option<u32>,
}

impl Sense {
    pub const fn new(key: u8, asc: u8, ascq: u8) -> Sense {
        Sense {
            key,
            asc,
            ascq,
            field: None,
            information: None,
        }
    }

    /// INVALID FIELD IN CDB pointing at `byte` (and `bit`).
    pub const fn invalid_cdb(byte: u16, bit: Option<u8>) -> Sense {
        let mut s = Sense::new(key::ILLEGAL_REQUEST, 0x24, 0x00);
        s.field = Some(Field {
            in_cdb: true,
            byte,
            bit,
        });
        s
    }

    /// INVALID FIELD IN PARAMETER LIST pointing at `byte`.
    pub const fn invalid_parameter(byte: u16) -> Sense {
        let mut s = Sense::new(key::ILLEGAL_REQUEST, 0x26, 0x00);
        s.field = Some(Field {
            in_cdb: false,
            byte,
            bit: None,
        });
        s
    }

    /// The 18 bytes of fixed-format sense data.
    pub fn to_bytes(&self) -> [u8; SENSE_BYTES] {
        let mut b = [0u8; SENSE_BYTES];
        b[0] = 0x70;
        if let Some(info) = self.information {
            b[0] |= 0x80;
            b[3..7].copy_from_slice(&info.to_be_bytes());
        }
        b[2] = self.key & 0x0f;
        b[7] = (SENSE_BYTES - 8) as u8;
        b[12] = self.asc;
        b[13] = self.ascq;
        if let Some(f) = self.field {
            b[15] = 0x80 | if f.in_cdb { 0x40 } else { 0 };
            if let Some(bit) = f.bit {
                debug_assert!(bit < 8);
                b[15] |= 0x08 | (bit & 7);
            }
            b[16..18].copy_from_slice(&f.byte.to_be_bytes());
        }
        b
    }
}

pub const INVALID_OPCODE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x20, 0x00);
pub const LBA_OUT_OF_RANGE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x21, 0x00);
pub const LUN_NOT_SUPPORTED: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x25, 0x00);
pub const PARAMETER_LIST_LENGTH: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x1a, 0x00);
pub const SAVING_NOT_SUPPORTED: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x39, 0x00);
pub const WRITE_PROTECTED: Sense = Sense::new(key::DATA_PROTECT, 0x27, 0x00);
/// Thin provisioning: SPACE ALLOCATION FAILED WRITE PROTECT.
pub const SPACE_ALLOCATION_FAILED: Sense = Sense::new(key::DATA_PROTECT, 0x27, 0x07);
pub const UNRECOVERED_READ_ERROR: Sense = Sense::new(key::MEDIUM_ERROR, 0x11, 0x00);
pub const WRITE_ERROR: Sense = Sense::new(key::MEDIUM_ERROR, 0x0c, 0x00);
pub const MISCOMPARE_DURING_VERIFY: Sense = Sense::new(key::MISCOMPARE, 0x1d, 0x00);
pub const POWER_ON_RESET: Sense = Sense::new(key::UNIT_ATTENTION, 0x29, 0x00);
pub const LUN_RESET_OCCURRED: Sense = Sense::new(key::UNIT_ATTENTION, 0x29, 0x03);
pub const CAPACITY_CHANGED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2a, 0x09);
pub const REPORTED_LUNS_CHANGED: Sense = Sense::new(key::UNIT_ATTENTION, 0x3f, 0x0e);
pub const NO_SENSE: Sense = Sense::new(key::NO_SENSE, 0, 0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_format_layout() {
        let b = Sense::invalid_cdb(2, Some(5)).to_bytes();
        assert_eq!(b[0], 0x70);
        assert_eq!(b[2], key::ILLEGAL_REQUEST);
        assert_eq!(b[7], 10);
        assert_eq!((b[12], b[13]), (0x24, 0));
        assert_eq!(b[15], 0x80 | 0x40 | 0x08 | 5);
        assert_eq!(&b[16..18], &[0, 2]);
        let mut s = MISCOMPARE_DURING_VERIFY;
        s.information = Some(7);
        let b = s.to_bytes();
        assert_eq!(b[0], 0xf0);
        assert_eq!(&b[3..7], &[0, 0, 0, 7]);
        assert_eq!(b[15], 0);
        assert_eq!(Sense::invalid_parameter(9).to_bytes()[15], 0x80);
    }
}
