//! Fuzzes the SCSI CDB decoder and the pages built from decoded commands: no panic, and every
//! page a decoded INQUIRY, MODE SENSE or REPORT SUPPORTED OPERATION CODES asks for is well formed.
#![no_main]

use cairn_iscsi::scsi::cdb::{self, Cdb};
use cairn_iscsi::scsi::pages::{self, Unit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let unit = Unit {
        size_bytes: 1 << 30,
        block_bytes: 512,
        read_only: data.first().is_some_and(|b| b & 1 != 0),
        naa: [0x60; 16],
        serial: "0".repeat(32),
        target_name: "iqn.2026-01.org.cairn:fuzz".into(),
    };
    let Ok(c) = cdb::decode(data) else { return };
    match c {
        Cdb::Inquiry { evpd: true, page, .. } => {
            if let Ok(p) = pages::vpd_page(&unit, page) {
                assert_eq!(u16::from_be_bytes([p[2], p[3]]) as usize + 4, p.len());
            }
        }
        Cdb::ModeSense { long, dbd, pc, page, subpage, .. } => {
            if let Ok(p) = pages::mode_pages(pc, page, subpage) {
                let m = pages::mode_sense(&unit, long, dbd, &p);
                assert_eq!(pages::mode_select(&unit, long, &m).is_ok(), pc != 1);
            }
        }
        Cdb::ReportOpcodes { options, rctd, opcode, sa, .. } => {
            let _ = pages::report_opcodes(options, rctd, opcode, sa);
        }
        Cdb::ModeSelect { long, .. } => {
            let _ = pages::mode_select(&unit, long, data);
        }
        _ => {}
    }
});
