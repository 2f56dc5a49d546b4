//! A minimal iSCSI initiator on a raw socket, written from RFC 7143 independently of the target's
//! codec: it builds PDUs byte by byte so tests can send well-formed and deliberately malformed
//! ones and check each answer.
//!
//! Invariant: every read has a timeout, so a target that does not answer fails the test instead of
//! hanging it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// How long one PDU may take to arrive.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// CRC32C (Castagnoli), bitwise, for the digests.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PDU as received: header and data segment.
#[derive(Debug, Clone)]
pub struct Received {
    pub bhs: [u8; 48],
    pub data: Vec<u8>,
}

impl Received {
    pub fn opcode(&self) -> u8 {
        self.bhs[0] & 0x3f
    }
    pub fn u32_at(&self, at: usize) -> u32 {
        u32::from_be_bytes(self.bhs[at..at + 4].try_into().unwrap())
    }
}

/// One connection.
pub struct Initiator {
    stream: TcpStream,
    pub header_digest: bool,
    pub data_digest: bool,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    itt: u32,
}

/// A Basic Header Segment with opcode, flags and data-segment length set.
pub fn bhs(opcode: u8, flags: u8, data_len: usize) -> [u8; 48] {
    let mut b = [0u8; 48];
    b[0] = opcode;
    b[1] = flags;
    b[5..8].copy_from_slice(&(data_len as u32).to_be_bytes()[1..]);
    b
}

pub fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

impl Initiator {
    pub fn connect(addr: SocketAddr) -> Result<Initiator> {
        let stream = TcpStream::connect(addr).context("connect to the iSCSI portal")?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        Ok(Initiator {
            stream,
            header_digest: false,
            data_digest: false,
            cmd_sn: 1,
            exp_stat_sn: 0,
            itt: 1,
        })
    }

    pub fn next_itt(&mut self) -> u32 {
        self.itt += 1;
        self.itt
    }

    /// Writes a header and data with padding and the digests in force (`corrupt` flips a digest).
    pub fn send_raw(
        &mut self,
        header: &[u8; 48],
        data: &[u8],
        corrupt_header: bool,
        corrupt_data: bool,
    ) -> Result<()> {
        let mut out = header.to_vec();
        if self.header_digest {
            let d = crc32c(header) ^ u32::from(corrupt_header);
            out.extend_from_slice(&d.to_le_bytes());
        }
        if !data.is_empty() {
            let mut padded = data.to_vec();
            padded.resize(data.len().div_ceil(4) * 4, 0);
            out.extend_from_slice(&padded);
            if self.data_digest {
                let d = crc32c(&padded) ^ u32::from(corrupt_data);
                out.extend_from_slice(&d.to_le_bytes());
            }
        }
        self.stream.write_all(&out)?;
        Ok(())
    }

    /// Reads one PDU; `Ok(None)` when the target closed the connection.
    pub fn recv(&mut self) -> Result<Option<Received>> {
        let mut bhs = [0u8; 48];
        match self.stream.read_exact(&mut bhs) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
            Err(e) => return Err(e).context("read a PDU header"),
        }
        let ahs = bhs[4] as usize * 4;
        let mut skip = vec![0u8; ahs + if self.header_digest { 4 } else { 0 }];
        self.stream.read_exact(&mut skip)?;
        let len = u32::from_be_bytes([0, bhs[5], bhs[6], bhs[7]]) as usize;
        let mut data =
            vec![0u8; len.div_ceil(4) * 4 + if self.data_digest && len > 0 { 4 } else { 0 }];
        self.stream.read_exact(&mut data)?;
        data.truncate(len);
        let r = Received { bhs, data };
        if matches!(r.opcode(), 0x21 | 0x22 | 0x23 | 0x24 | 0x26 | 0x3f)
            || (r.opcode() == 0x25 && bhs[1] & 1 != 0)
        {
            self.exp_stat_sn = r.u32_at(24).wrapping_add(1);
        }
        Ok(Some(r))
    }

    /// True if the target closes the connection (possibly after sending something first).
    pub fn closed(&mut self) -> Result<bool> {
        for _ in 0..4 {
            if self.recv()?.is_none() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A one-PDU login straight to full feature phase with `extra` keys; returns the response.
    pub fn login(&mut self, target: &str, extra: &str) -> Result<Received> {
        let text = format!("InitiatorName=iqn.2026-01.org.cairn.test:raw\0SessionType=Normal\0TargetName={target}\0{extra}");
        self.login_text(0x87, text.as_bytes())
    }

    /// Sends one login request with `flags` (T, C, CSG, NSG) and `text`.
    pub fn login_text(&mut self, flags: u8, text: &[u8]) -> Result<Received> {
        let mut h = bhs(0x43, flags, text.len());
        h[8..14].copy_from_slice(&[0x80, 0x12, 0x34, 0x56, 0x00, 0x01]);
        put32(&mut h, 16, self.next_itt());
        put32(&mut h, 24, self.cmd_sn);
        put32(&mut h, 28, self.exp_stat_sn);
        self.send_raw(&h, text, false, false)?;
        self.recv()?.context("no login response")
    }

    /// Logs in and switches to the digests the response agreed to.
    pub fn login_ok(&mut self, target: &str, extra: &str) -> Result<Received> {
        let r = self.login(target, extra)?;
        if r.opcode() != 0x23 || r.bhs[36] != 0 {
            bail!("login refused: class {} detail {}", r.bhs[36], r.bhs[37]);
        }
        let text = String::from_utf8_lossy(&r.data).to_string();
        self.header_digest = text.contains("HeaderDigest=CRC32C");
        self.data_digest = text.contains("DataDigest=CRC32C");
        Ok(r)
    }

    /// A SCSI Command header for `cdb` on `lun` with the read (R) or write (W) bit and EDTL.
    pub fn command(
        &mut self,
        lun: u16,
        cdb: &[u8],
        read: bool,
        edtl: u32,
        data_len: usize,
    ) -> [u8; 48] {
        let flags = 0x80
            | if read {
                0x40
            } else if edtl > 0 {
                0x20
            } else {
                0
            };
        let mut h = bhs(0x01, flags, data_len);
        h[8..10].copy_from_slice(&lun.to_be_bytes());
        let itt = self.next_itt();
        put32(&mut h, 16, itt);
        put32(&mut h, 20, edtl);
        put32(&mut h, 24, self.cmd_sn);
        put32(&mut h, 28, self.exp_stat_sn);
        h[32..32 + cdb.len()].copy_from_slice(cdb);
        self.cmd_sn += 1;
        h
    }

    /// Runs a command that reads `edtl` bytes; returns the data and the SCSI status.
    pub fn read_command(&mut self, lun: u16, cdb: &[u8], edtl: u32) -> Result<(Vec<u8>, u8)> {
        let h = self.command(lun, cdb, true, edtl, 0);
        self.send_raw(&h, &[], false, false)?;
        let mut data = Vec::new();
        loop {
            let r = self.recv()?.context("connection closed during a command")?;
            match r.opcode() {
                0x25 => {
                    data.extend_from_slice(&r.data);
                    if r.bhs[1] & 1 != 0 {
                        return Ok((data, r.bhs[3]));
                    }
                }
                // A SCSI Response: its data segment is the sense (length-prefixed), if any.
                0x21 => return Ok((if data.is_empty() { r.data } else { data }, r.bhs[3])),
                op => bail!("unexpected opcode {op:#x} during a command"),
            }
        }
    }

    /// Runs a command that writes `data` as immediate data (within FirstBurstLength).
    pub fn write_command(&mut self, lun: u16, cdb: &[u8], data: &[u8]) -> Result<u8> {
        let h = self.command(lun, cdb, false, data.len() as u32, data.len());
        self.send_raw(&h, data, false, false)?;
        let r = self.recv()?.context("connection closed during a command")?;
        if r.opcode() != 0x21 {
            bail!("expected a SCSI Response, got opcode {:#x}", r.opcode());
        }
        Ok(r.bhs[3])
    }

    /// A NOP-Out ping with `data`; the caller reads the NOP-In.
    pub fn nop_out(&mut self, data: &[u8], corrupt_data: bool) -> Result<u32> {
        let mut h = bhs(0x00, 0x80, data.len());
        let itt = self.next_itt();
        put32(&mut h, 16, itt);
        put32(&mut h, 20, 0xffff_ffff);
        put32(&mut h, 24, self.cmd_sn);
        put32(&mut h, 28, self.exp_stat_sn);
        self.cmd_sn += 1;
        self.send_raw(&h, data, false, corrupt_data)?;
        Ok(itt)
    }
}

/// READ(10) of `blocks` at `lba`.
pub fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = 0x28;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// WRITE(10) of `blocks` at `lba`.
pub fn write10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = read10(lba, blocks);
    c[0] = 0x2a;
    c
}

/// INQUIRY of VPD `page`.
pub fn inquiry_vpd(page: u8) -> [u8; 6] {
    [0x12, 0x01, page, 0x10, 0x00, 0]
}

/// The NAA designator (type 3) of a Device Identification VPD page, as upper-case hex.
pub fn naa_of_vpd83(page: &[u8]) -> Option<String> {
    let mut at = 4;
    while at + 4 <= page.len() {
        let (kind, len) = (page[at + 1] & 0x0f, page[at + 3] as usize);
        let value = page.get(at + 4..at + 4 + len)?;
        if kind == 3 {
            return Some(value.iter().map(|b| format!("{b:02X}")).collect());
        }
        at += 4 + len;
    }
    None
}
