//! The data-in pages of the target: INQUIRY (standard and VPD 00/80/83/B0/B1/B2), READ CAPACITY
//! 10/16, MODE SENSE 6/10 (caching and control pages), REPORT LUNS and REPORT SUPPORTED
//! OPERATION CODES.
//!
//! Invariants: every page is built whole from a [`Unit`] and cut to the allocation length by the
//! caller; the write cache is reported enabled and not changeable, DPOFUA is set, the
//! write-protect bit follows the volume's read-only state; LBPME and LBPRZ are set (unmapped
//! blocks read as zeros).

use crate::limits::{
    COMPARE_AND_WRITE_BLOCKS_MAX, TRANSFER_BYTES_MAX, UNMAP_DESCRIPTORS_MAX, WRITE_SAME_BLOCKS_MAX,
};
use crate::scsi::cdb::opcode;
use crate::scsi::sense::{self, Sense};

/// What the pages describe: one logical unit.
#[derive(Clone, Debug)]
pub struct Unit {
    pub size_bytes: u64,
    pub block_bytes: u32,
    pub read_only: bool,
    /// The NAA type 6 designator (VPD 0x83), the volume's SMI-S Name.
    pub naa: [u8; 16],
    /// The unit serial number (VPD 0x80): the volume's id.
    pub serial: String,
    /// The target node's IQN.
    pub target_name: String,
}

impl Unit {
    pub fn blocks(&self) -> u64 {
        self.size_bytes / self.block_bytes as u64
    }
}

/// Engine blocks per logical block exponent: the engine's 4 KiB unit over the logical block.
fn physical_exponent(block_bytes: u32) -> u8 {
    (4096 / block_bytes).trailing_zeros() as u8
}

const VENDOR: &[u8; 8] = b"CAIRN   ";
const PRODUCT: &[u8; 16] = b"VOLUME          ";
const REVISION: &[u8; 4] = b"0001";
/// SAM-5, iSCSI, SPC-4, SBC-3.
const VERSION_DESCRIPTORS: [u16; 4] = [0x00a0, 0x0960, 0x0460, 0x04c0];
/// VPD pages served, in order.
pub const VPD_PAGES: [u8; 6] = [0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2];

/// Standard INQUIRY data; `present == false` answers with peripheral qualifier 3.
pub fn standard_inquiry(present: bool) -> Vec<u8> {
    let mut b = vec![0u8; 96];
    b[0] = if present { 0x00 } else { 0x7f };
    b[2] = 0x06; // SPC-4
    b[3] = 0x12; // HISUP, response data format 2
    b[4] = (b.len() - 5) as u8;
    b[7] = 0x02; // CMDQUE
    b[8..16].copy_from_slice(VENDOR);
    b[16..32].copy_from_slice(PRODUCT);
    b[32..36].copy_from_slice(REVISION);
    for (i, d) in VERSION_DESCRIPTORS.iter().enumerate() {
        b[58 + 2 * i..60 + 2 * i].copy_from_slice(&d.to_be_bytes());
    }
    b
}

fn vpd(page: u8, body: &[u8]) -> Vec<u8> {
    let mut b = vec![0x00, page];
    b.extend_from_slice(&(body.len() as u16).to_be_bytes());
    b.extend_from_slice(body);
    b
}

/// One designation descriptor of VPD 0x83.
fn designator(protocol_code_set: u8, piv_assoc_type: u8, value: &[u8]) -> Vec<u8> {
    let mut d = vec![protocol_code_set, piv_assoc_type, 0, value.len() as u8];
    d.extend_from_slice(value);
    d
}

/// A SCSI name string designator value: NUL-terminated, padded to a multiple of 4.
fn name_string(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v.resize(v.len().div_ceil(4) * 4, 0);
    v
}

/// A VPD page, or INVALID FIELD IN CDB for a page that is not served.
pub fn vpd_page(u: &Unit, page: u8) -> Result<Vec<u8>, Sense> {
    let blocks_per = |bytes: u64| (bytes / u.block_bytes as u64).min(u32::MAX as u64) as u32;
    let body = match page {
        0x00 => VPD_PAGES.to_vec(),
        0x80 => u.serial.as_bytes().to_vec(),
        0x83 => {
            // iSCSI protocol identifier 5; code sets 1 binary, 3 UTF-8.
            let mut b = designator(0x01, 0x03, &u.naa);
            let port = crate::node::target_port_name(&u.target_name);
            b.extend(designator(0x53, 0x98, &name_string(&port)));
            b.extend(designator(0x51, 0x94, &[0, 0, 0, 1]));
            b.extend(designator(0x53, 0xa8, &name_string(&u.target_name)));
            b
        }
        0xb0 => {
            let mut b = vec![0u8; 0x3c];
            b[0] = 0x01; // WSNZ: a WRITE SAME of 0 blocks is refused
            b[1] = COMPARE_AND_WRITE_BLOCKS_MAX;
            let granularity = 4096 / u.block_bytes;
            b[2..4].copy_from_slice(&(granularity as u16).to_be_bytes());
            b[4..8].copy_from_slice(&blocks_per(TRANSFER_BYTES_MAX as u64).to_be_bytes());
            b[8..12].copy_from_slice(&blocks_per(1 << 20).to_be_bytes());
            b[16..20].copy_from_slice(&blocks_per(u64::MAX).to_be_bytes());
            b[20..24].copy_from_slice(&UNMAP_DESCRIPTORS_MAX.to_be_bytes());
            b[24..28].copy_from_slice(&granularity.to_be_bytes());
            b[28..32].copy_from_slice(&0x8000_0000u32.to_be_bytes()); // UGAVALID, alignment 0
            b[32..40].copy_from_slice(&WRITE_SAME_BLOCKS_MAX.to_be_bytes());
            b
        }
        0xb1 => {
            let mut b = vec![0u8; 0x3c];
            b[1] = 0x01; // non-rotating medium
            b
        }
        0xb2 => vec![0, 0xe4, 0x02, 0], // LBPU, LBPWS, LBPWS10, LBPRZ; thin provisioned
        _ => return Err(Sense::invalid_cdb(2, None)),
    };
    Ok(vpd(page, &body))
}

pub fn read_capacity_10(u: &Unit) -> Vec<u8> {
    let last = u.blocks().saturating_sub(1).min(u32::MAX as u64) as u32;
    let mut b = last.to_be_bytes().to_vec();
    b.extend_from_slice(&u.block_bytes.to_be_bytes());
    b
}

pub fn read_capacity_16(u: &Unit) -> Vec<u8> {
    let mut b = vec![0u8; 32];
    b[0..8].copy_from_slice(&u.blocks().saturating_sub(1).to_be_bytes());
    b[8..12].copy_from_slice(&u.block_bytes.to_be_bytes());
    b[13] = physical_exponent(u.block_bytes);
    b[14] = 0xc0; // LBPME, LBPRZ
    b
}

/// Mode page codes.
const PAGE_CACHING: u8 = 0x08;
const PAGE_CONTROL: u8 = 0x0a;
const PAGE_ALL: u8 = 0x3f;

fn caching_page(changeable: bool) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = PAGE_CACHING;
    p[1] = 18;
    if !changeable {
        p[2] = 0x04; // WCE
    }
    p
}

fn control_page(changeable: bool) -> Vec<u8> {
    let mut p = vec![0u8; 12];
    p[0] = PAGE_CONTROL;
    p[1] = 10;
    if !changeable {
        p[3] = 0x10; // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering
        p[8..10].copy_from_slice(&0xffffu16.to_be_bytes()); // busy timeout: unlimited
    }
    p
}

/// The mode pages for MODE SENSE: page control 0/2 current and default (the same), 1 changeable
/// (nothing is), 3 saved (not kept).
pub fn mode_pages(pc: u8, page: u8, subpage: u8) -> Result<Vec<u8>, Sense> {
    if pc == 3 {
        return Err(sense::SAVING_NOT_SUPPORTED);
    }
    let changeable = pc == 1;
    let pages = match (page, subpage) {
        (PAGE_CACHING, 0) => caching_page(changeable),
        (PAGE_CONTROL, 0) => control_page(changeable),
        (PAGE_ALL, 0 | 0xff) => [caching_page(changeable), control_page(changeable)].concat(),
        (PAGE_CACHING | PAGE_CONTROL | PAGE_ALL, _) => return Err(Sense::invalid_cdb(3, None)),
        _ => return Err(Sense::invalid_cdb(2, Some(5))),
    };
    Ok(pages)
}

/// The whole MODE SENSE (6 or 10) data: header, optional block descriptor, pages.
pub fn mode_sense(u: &Unit, long: bool, dbd: bool, pages: &[u8]) -> Vec<u8> {
    let device_specific = 0x10 | if u.read_only { 0x80 } else { 0 }; // DPOFUA, WP
    let mut descriptor = Vec::new();
    if !dbd {
        let blocks = u.blocks().min(0xff_ffff) as u32;
        descriptor.extend_from_slice(&blocks.to_be_bytes());
        descriptor[0] = 0; // density code
        descriptor.extend_from_slice(&u.block_bytes.to_be_bytes());
        descriptor[4] = 0;
    }
    let mut b = if long {
        let mut h = vec![0u8; 8];
        h[3] = device_specific;
        h[6..8].copy_from_slice(&(descriptor.len() as u16).to_be_bytes());
        h
    } else {
        vec![0, 0, device_specific, descriptor.len() as u8]
    };
    b.extend(descriptor);
    b.extend_from_slice(pages);
    if long {
        let len = (b.len() - 2) as u16;
        b[0..2].copy_from_slice(&len.to_be_bytes());
    } else {
        b[0] = (b.len() - 1) as u8;
    }
    b
}

/// Checks a MODE SELECT parameter list: every page must equal the current one (nothing is
/// changeable); a block descriptor must repeat the block length.
pub fn mode_select(u: &Unit, long: bool, list: &[u8]) -> Result<(), Sense> {
    let header = if long { 8 } else { 4 };
    if list.len() < header {
        return if list.is_empty() {
            Ok(())
        } else {
            Err(sense::PARAMETER_LIST_LENGTH)
        };
    }
    let descriptor_len = if long {
        u16::from_be_bytes([list[6], list[7]]) as usize
    } else {
        list[3] as usize
    };
    let mut at = header + descriptor_len;
    if at > list.len() || (descriptor_len != 0 && descriptor_len != 8) {
        return Err(Sense::invalid_parameter(if long { 6 } else { 3 }));
    }
    if descriptor_len == 8 && list[header + 4..header + 8] != u.block_bytes.to_be_bytes()[..] {
        return Err(Sense::invalid_parameter(header as u16 + 5));
    }
    while at + 2 <= list.len() {
        let code = list[at] & 0x3f;
        let page_len = list[at + 1] as usize + 2;
        let current = match code {
            PAGE_CACHING => caching_page(false),
            PAGE_CONTROL => control_page(false),
            _ => return Err(Sense::invalid_parameter(at as u16)),
        };
        let Some(given) = list.get(at..at + page_len) else {
            return Err(sense::PARAMETER_LIST_LENGTH);
        };
        // The PS bit (byte 0, bit 7) is reserved in MODE SELECT; compare the rest.
        if given.len() != current.len() || given[1..] != current[1..] {
            return Err(Sense::invalid_parameter(at as u16));
        }
        at += page_len;
    }
    Ok(())
}

/// REPORT LUNS data for `luns` (sorted), with peripheral device addressing below 256 and flat
/// addressing above.
pub fn report_luns(luns: &[u16]) -> Vec<u8> {
    let mut b = vec![0u8; 8];
    b[0..4].copy_from_slice(&((luns.len() * 8) as u32).to_be_bytes());
    for &lun in luns {
        let mut entry = [0u8; 8];
        entry[0..2].copy_from_slice(&encode_lun(lun).to_be_bytes());
        b.extend_from_slice(&entry);
    }
    b
}

/// The first two bytes of an 8-byte LUN.
pub fn encode_lun(lun: u16) -> u16 {
    if lun < 256 {
        lun
    } else {
        0x4000 | (lun & 0x3fff)
    }
}

/// The LUN number an initiator addressed, or `None` for an address form not served.
pub fn decode_lun(lun: u64) -> Option<u16> {
    let bytes = lun.to_be_bytes();
    if bytes[2..].iter().any(|&b| b != 0) {
        return None;
    }
    match bytes[0] >> 6 {
        0 if bytes[0] == 0 => Some(bytes[1] as u16),
        1 => Some(u16::from_be_bytes([bytes[0] & 0x3f, bytes[1]])),
        _ => None,
    }
}

/// A supported command: opcode, service action (if any) and its CDB usage bit mask.
struct Supported {
    opcode: u8,
    sa: Option<u16>,
    usage: &'static [u8],
}

const fn cmd(opcode: u8, usage: &'static [u8]) -> Supported {
    Supported {
        opcode,
        sa: None,
        usage,
    }
}

const fn cmd_sa(opcode: u8, sa: u16, usage: &'static [u8]) -> Supported {
    Supported {
        opcode,
        sa: Some(sa),
        usage,
    }
}

/// Every command served, with the bits of its CDB the target looks at (SPC-4 §6.35.3).
static SUPPORTED: &[Supported] = &[
    cmd(opcode::TEST_UNIT_READY, &[0x00, 0, 0, 0, 0, 0x00]),
    cmd(opcode::REQUEST_SENSE, &[0x03, 0x01, 0, 0, 0xff, 0x00]),
    cmd(opcode::READ_6, &[0x08, 0x1f, 0xff, 0xff, 0xff, 0x00]),
    cmd(opcode::WRITE_6, &[0x0a, 0x1f, 0xff, 0xff, 0xff, 0x00]),
    cmd(opcode::INQUIRY, &[0x12, 0x01, 0xff, 0xff, 0xff, 0x00]),
    cmd(opcode::MODE_SELECT_6, &[0x15, 0x11, 0, 0, 0xff, 0x00]),
    cmd(opcode::RESERVE_6, &[0x16, 0x11, 0, 0, 0, 0x00]),
    cmd(opcode::RELEASE_6, &[0x17, 0x11, 0, 0, 0, 0x00]),
    cmd(opcode::MODE_SENSE_6, &[0x1a, 0x08, 0xff, 0xff, 0xff, 0x00]),
    cmd(
        opcode::READ_CAPACITY_10,
        &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0x00],
    ),
    cmd(
        opcode::READ_10,
        &[0x28, 0xf8, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0x00],
    ),
    cmd(
        opcode::WRITE_10,
        &[0x2a, 0xf8, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0x00],
    ),
    cmd(
        opcode::VERIFY_10,
        &[0x2f, 0xf6, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0x00],
    ),
    cmd(
        opcode::SYNCHRONIZE_CACHE_10,
        &[0x35, 0, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0x00],
    ),
    cmd(
        opcode::WRITE_SAME_10,
        &[0x41, 0xf8, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0x00],
    ),
    cmd(
        opcode::UNMAP,
        &[0x42, 0x01, 0, 0, 0, 0, 0, 0xff, 0xff, 0x00],
    ),
    cmd(
        opcode::MODE_SELECT_10,
        &[0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0x00],
    ),
    cmd(
        opcode::MODE_SENSE_10,
        &[0x5a, 0x08, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0x00],
    ),
    cmd_sa(
        opcode::PERSISTENT_RESERVE_IN,
        0,
        &[0x5e, 0x00, 0, 0, 0, 0, 0, 0xff, 0xff, 0x00],
    ),
    cmd_sa(
        opcode::PERSISTENT_RESERVE_IN,
        1,
        &[0x5e, 0x01, 0, 0, 0, 0, 0, 0xff, 0xff, 0x00],
    ),
    cmd_sa(
        opcode::PERSISTENT_RESERVE_IN,
        2,
        &[0x5e, 0x02, 0, 0, 0, 0, 0, 0xff, 0xff, 0x00],
    ),
    cmd_sa(
        opcode::PERSISTENT_RESERVE_IN,
        3,
        &[0x5e, 0x03, 0, 0, 0, 0, 0, 0xff, 0xff, 0x00],
    ),
    cmd_sa(
        opcode::PERSISTENT_RESERVE_OUT,
        0,
        &[0x5f, 0x00, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x00],
    ),
    cmd_sa(
        opcode::PERSISTENT_RESERVE_OUT,
        1,
        &[0x5f, 0x01, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x00],
    ),
    cmd_sa(
        opcode::PERSISTENT_RESERVE_OUT,
        2,
        &[0x5f, 0x02, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x00],
    ),
    cmd_sa(
        opcode::PERSISTENT_RESERVE_OUT,
        3,
        &[0x5f, 0x03, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x00],
    ),
    cmd_sa(
        opcode::PERSISTENT_RESERVE_OUT,
        4,
        &[0x5f, 0x04, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x00],
    ),
    cmd_sa(
        opcode::PERSISTENT_RESERVE_OUT,
        5,
        &[0x5f, 0x05, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x00],
    ),
    cmd_sa(
        opcode::PERSISTENT_RESERVE_OUT,
        6,
        &[0x5f, 0x06, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x00],
    ),
    cmd(
        opcode::COMPARE_AND_WRITE,
        &[
            0x89, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0xff, 0, 0x00,
        ],
    ),
    cmd(
        opcode::READ_16,
        &[
            0x88, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0x00,
        ],
    ),
    cmd(
        opcode::WRITE_16,
        &[
            0x8a, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0x00,
        ],
    ),
    cmd(
        opcode::VERIFY_16,
        &[
            0x8f, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0x00,
        ],
    ),
    cmd(
        opcode::SYNCHRONIZE_CACHE_16,
        &[
            0x91, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0x00,
        ],
    ),
    cmd(
        opcode::WRITE_SAME_16,
        &[
            0x93, 0xf9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0x00,
        ],
    ),
    cmd_sa(
        opcode::SERVICE_ACTION_IN_16,
        opcode::SA_READ_CAPACITY_16,
        &[
            0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0x00,
        ],
    ),
    cmd_sa(
        opcode::SERVICE_ACTION_IN_16,
        opcode::SA_GET_LBA_STATUS,
        &[
            0x9e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0x00,
        ],
    ),
    cmd(
        opcode::REPORT_LUNS,
        &[0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0x00],
    ),
    cmd_sa(
        opcode::MAINTENANCE_IN,
        opcode::SA_REPORT_SUPPORTED_OPCODES,
        &[
            0xa3, 0x0c, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0x00,
        ],
    ),
    cmd(
        opcode::READ_12,
        &[
            0xa8, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0x00,
        ],
    ),
    cmd(
        opcode::WRITE_12,
        &[
            0xaa, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0x00,
        ],
    ),
    cmd(
        opcode::VERIFY_12,
        &[
            0xaf, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0x00,
        ],
    ),
];

fn timeouts() -> [u8; 12] {
    let mut t = [0u8; 12];
    t[1] = 0x0a;
    t[4..8].copy_from_slice(&30u32.to_be_bytes());
    t[8..12].copy_from_slice(&60u32.to_be_bytes());
    t
}

/// REPORT SUPPORTED OPERATION CODES data for reporting options 0 (all), 1 (opcode) and 2/3
/// (opcode and service action).
pub fn report_opcodes(options: u8, rctd: bool, op: u8, sa: u16) -> Result<Vec<u8>, Sense> {
    if options == 0 {
        let mut b = vec![0u8; 4];
        for s in SUPPORTED {
            let flags = s.sa.map_or(0, |_| 0x01) | if rctd { 0x02 } else { 0 };
            b.extend_from_slice(&[s.opcode, 0]);
            b.extend_from_slice(&s.sa.unwrap_or(0).to_be_bytes());
            b.extend_from_slice(&[0, flags]);
            b.extend_from_slice(&(s.usage.len() as u16).to_be_bytes());
            if rctd {
                b.extend_from_slice(&timeouts());
            }
        }
        let len = (b.len() - 4) as u32;
        b[0..4].copy_from_slice(&len.to_be_bytes());
        return Ok(b);
    }
    let has_sa = SUPPORTED.iter().any(|s| s.opcode == op && s.sa.is_some());
    if (options == 1 && has_sa) || (options == 2 && !has_sa) {
        return Err(Sense::invalid_cdb(2, Some(2)));
    }
    let found = SUPPORTED
        .iter()
        .find(|s| s.opcode == op && (!has_sa || s.sa == Some(sa)));
    let mut b = vec![0u8; 4];
    if let Some(s) = found {
        b[1] = 0x03 | if rctd { 0x80 } else { 0 };
        b[2..4].copy_from_slice(&(s.usage.len() as u16).to_be_bytes());
        b.extend_from_slice(s.usage);
        if rctd {
            b.extend_from_slice(&timeouts());
        }
    } else {
        b[1] = 0x01; // not supported
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(read_only: bool) -> Unit {
        Unit {
            size_bytes: 1 << 30,
            block_bytes: 512,
            read_only,
            naa: [0x60; 16],
            serial: "0123".into(),
            target_name: "iqn.2026-01.org.cairn:a".into(),
        }
    }

    #[test]
    fn capacity_and_provisioning() {
        let rc = read_capacity_16(&unit(false));
        assert_eq!(
            u64::from_be_bytes(rc[0..8].try_into().unwrap()),
            (1 << 21) - 1
        );
        assert_eq!((rc[13], rc[14]), (3, 0xc0));
        assert_eq!(read_capacity_10(&unit(false))[4..], [0, 0, 2, 0]);
        let b2 = vpd_page(&unit(false), 0xb2).unwrap();
        assert_eq!(b2[5] & 0x04, 0x04);
        assert_eq!(
            vpd_page(&unit(false), 0x99),
            Err(Sense::invalid_cdb(2, None))
        );
    }

    #[test]
    fn device_identification_carries_the_naa() {
        let p = vpd_page(&unit(false), 0x83).unwrap();
        assert_eq!(&p[4..8], &[0x01, 0x03, 0, 16]);
        assert_eq!(&p[8..24], &[0x60; 16]);
        assert_eq!(u16::from_be_bytes([p[2], p[3]]) as usize, p.len() - 4);
    }

    #[test]
    fn mode_sense_headers() {
        let pages = mode_pages(0, 0x3f, 0).unwrap();
        let m = mode_sense(&unit(true), false, false, &pages);
        assert_eq!(m[0] as usize, m.len() - 1);
        assert_eq!(m[2], 0x90);
        assert_eq!(m[3], 8);
        let m = mode_sense(&unit(false), true, true, &pages);
        assert_eq!(u16::from_be_bytes([m[0], m[1]]) as usize, m.len() - 2);
        assert_eq!(m[3], 0x10);
        assert_eq!(m[8], PAGE_CACHING);
        assert_eq!(m[10] & 0x04, 0x04);
        assert_eq!(mode_pages(1, 0x08, 0).unwrap()[2], 0);
        assert_eq!(mode_pages(3, 0x08, 0), Err(sense::SAVING_NOT_SUPPORTED));
        assert_eq!(mode_pages(0, 0x19, 0), Err(Sense::invalid_cdb(2, Some(5))));
    }

    #[test]
    fn mode_select_accepts_only_current_values() {
        let u = unit(false);
        let current = mode_sense(&u, false, true, &caching_page(false));
        assert_eq!(mode_select(&u, false, &current), Ok(()));
        let mut changed = current.clone();
        changed[6] = 0; // clear WCE
        assert_eq!(
            mode_select(&u, false, &changed),
            Err(Sense::invalid_parameter(4))
        );
        assert_eq!(
            mode_select(&u, false, &current[..6]),
            Err(sense::PARAMETER_LIST_LENGTH)
        );
        assert_eq!(
            mode_select(&u, false, &[0, 0, 0, 200]),
            Err(Sense::invalid_parameter(3))
        );
    }

    #[test]
    fn lun_addressing_round_trips() {
        for lun in [0u16, 1, 255, 256, 0x3fff] {
            let wire = (encode_lun(lun) as u64) << 48;
            assert_eq!(decode_lun(wire), Some(lun));
        }
        assert_eq!(decode_lun(0x8000 << 48), None);
        assert_eq!(decode_lun(1), None);
        let r = report_luns(&[0, 3]);
        assert_eq!(&r[0..4], &[0, 0, 0, 16]);
        assert_eq!(r[17], 3);
    }

    #[test]
    fn supported_opcodes() {
        let all = report_opcodes(0, false, 0, 0).unwrap();
        assert_eq!(
            u32::from_be_bytes(all[0..4].try_into().unwrap()) as usize,
            SUPPORTED.len() * 8
        );
        let one = report_opcodes(1, false, opcode::READ_10, 0).unwrap();
        assert_eq!((one[1], one[4]), (0x03, opcode::READ_10));
        assert_eq!(report_opcodes(1, false, 0xff, 0).unwrap()[1], 0x01);
        assert!(report_opcodes(1, false, opcode::SERVICE_ACTION_IN_16, 0).is_err());
        let sa = report_opcodes(2, true, opcode::SERVICE_ACTION_IN_16, 0x10).unwrap();
        assert_eq!(sa[1], 0x83);
        for s in SUPPORTED {
            assert_eq!(s.usage[0], s.opcode);
        }
    }
}
