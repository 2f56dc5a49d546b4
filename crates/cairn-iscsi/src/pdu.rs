//! PDU framing (RFC 7143 §11): the 48-byte Basic Header Segment, additional header segments, the
//! padded data segment and the optional CRC32C header and data digests.
//!
//! Invariants: [`PduDecoder::decode`] consumes a PDU only once all of it (digests included) is in
//! the buffer, never reads past a length it has not checked against its limits, and reports every
//! fault as a [`FrameError`]; [`Pdu::encode`] always emits the padding and the digests the
//! connection negotiated. Digests are CRC32C, sent least significant byte first.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::limits::{AHS_BYTES_MAX, BHS_BYTES};

/// Opcodes an initiator sends.
pub mod op {
    pub const NOP_OUT: u8 = 0x00;
    pub const SCSI_COMMAND: u8 = 0x01;
    pub const TASK_MGMT: u8 = 0x02;
    pub const LOGIN: u8 = 0x03;
    pub const TEXT: u8 = 0x04;
    pub const DATA_OUT: u8 = 0x05;
    pub const LOGOUT: u8 = 0x06;
    pub const SNACK: u8 = 0x10;
    pub const NOP_IN: u8 = 0x20;
    pub const SCSI_RESPONSE: u8 = 0x21;
    pub const TASK_MGMT_RESPONSE: u8 = 0x22;
    pub const LOGIN_RESPONSE: u8 = 0x23;
    pub const TEXT_RESPONSE: u8 = 0x24;
    pub const DATA_IN: u8 = 0x25;
    pub const LOGOUT_RESPONSE: u8 = 0x26;
    pub const R2T: u8 = 0x31;
    pub const ASYNC: u8 = 0x32;
    pub const REJECT: u8 = 0x3f;
}

/// Reject reasons (RFC 7143 §11.17.1).
pub mod reject {
    pub const DATA_DIGEST: u8 = 0x02;
    pub const SNACK: u8 = 0x03;
    pub const PROTOCOL_ERROR: u8 = 0x04;
    pub const NOT_SUPPORTED: u8 = 0x05;
    pub const INVALID_FIELD: u8 = 0x09;
    pub const WAITING_FOR_LOGOUT: u8 = 0x0c;
}

/// The "no tag" value of Initiator and Target Transfer Tags.
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// One PDU: its header (BHS), additional headers and unpadded data segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pdu {
    pub bhs: [u8; BHS_BYTES],
    pub ahs: Bytes,
    pub data: Bytes,
}

/// Why a byte stream could not be framed into PDUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The header digest does not match: the stream can no longer be trusted (close).
    HeaderDigest,
    /// The data digest does not match: the PDU is dropped and rejected (RFC 7143 §7.8).
    DataDigest { bhs: [u8; BHS_BYTES] },
    /// The data segment is longer than this side declared.
    DataTooLong { len: u32, max: u32 },
    /// The additional header segments are longer than this side accepts.
    AhsTooLong { len: usize },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::HeaderDigest => f.write_str("header digest mismatch"),
            FrameError::DataDigest { .. } => f.write_str("data digest mismatch"),
            FrameError::DataTooLong { len, max } => {
                write!(f, "data segment of {len} bytes exceeds {max}")
            }
            FrameError::AhsTooLong { len } => write!(f, "{len} bytes of AHS"),
        }
    }
}

pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
pub(crate) fn be64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(v)
}

fn padded(len: usize) -> usize {
    len.div_ceil(4) * 4
}

fn digest(parts: &[&[u8]]) -> u32 {
    parts.iter().fold(0, |crc, p| crc32c::crc32c_append(crc, p))
}

impl Pdu {
    /// A PDU with an empty header of `opcode` (the Final bit set, as most target PDUs need).
    pub fn new(opcode: u8) -> Pdu {
        let mut bhs = [0u8; BHS_BYTES];
        bhs[0] = opcode & 0x3f;
        bhs[1] = 0x80;
        Pdu {
            bhs,
            ahs: Bytes::new(),
            data: Bytes::new(),
        }
    }

    pub fn opcode(&self) -> u8 {
        self.bhs[0] & 0x3f
    }
    /// The Immediate delivery bit.
    pub fn immediate(&self) -> bool {
        self.bhs[0] & 0x40 != 0
    }
    pub fn final_bit(&self) -> bool {
        self.bhs[1] & 0x80 != 0
    }
    pub fn flags(&self) -> u8 {
        self.bhs[1]
    }
    pub fn lun(&self) -> u64 {
        be64(&self.bhs, 8)
    }
    pub fn itt(&self) -> u32 {
        be32(&self.bhs, 16)
    }
    /// A big-endian u32 field at `at` (for the opcode-specific fields).
    pub fn u32_at(&self, at: usize) -> u32 {
        be32(&self.bhs, at)
    }
    pub fn u16_at(&self, at: usize) -> u16 {
        be16(&self.bhs, at)
    }
    pub fn set_u32(&mut self, at: usize, v: u32) {
        self.bhs[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_u16(&mut self, at: usize, v: u16) {
        self.bhs[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_lun(&mut self, lun: u64) {
        self.bhs[8..16].copy_from_slice(&lun.to_be_bytes());
    }
    pub fn set_itt(&mut self, itt: u32) {
        self.set_u32(16, itt);
    }
    /// Sets the data segment (and its length field).
    pub fn set_data(&mut self, data: Bytes) {
        assert!(data.len() < 1 << 24, "data segment longer than 2^24 - 1");
        let len = (data.len() as u32).to_be_bytes();
        self.bhs[5..8].copy_from_slice(&len[1..]);
        self.data = data;
    }

    /// Appends the PDU to `out` with padding and the digests in force.
    pub fn encode(&self, digests: Digests, out: &mut BytesMut) {
        let (head, tail) = self.encode_parts(digests);
        out.put_slice(&head);
        out.put_slice(&self.data);
        out.put_slice(&tail);
    }

    /// The wire form without copying the data segment: what goes before it (BHS, AHS, header
    /// digest) and after it (padding, data digest).
    pub fn encode_parts(&self, digests: Digests) -> (Bytes, Bytes) {
        debug_assert_eq!(self.ahs.len() % 4, 0);
        debug_assert_eq!(data_segment_len(&self.bhs) as usize, self.data.len());
        let mut head = BytesMut::with_capacity(BHS_BYTES + self.ahs.len() + 4);
        head.put_slice(&self.bhs);
        head.put_slice(&self.ahs);
        if digests.header {
            head.put_u32_le(digest(&[&self.bhs, &self.ahs]));
        }
        if self.data.is_empty() {
            return (head.freeze(), Bytes::new());
        }
        let pad = [0u8; 3];
        let pad = &pad[..padded(self.data.len()) - self.data.len()];
        let mut tail = BytesMut::with_capacity(pad.len() + 4);
        tail.put_slice(pad);
        if digests.data {
            tail.put_u32_le(digest(&[&self.data, pad]));
        }
        (head.freeze(), tail.freeze())
    }
}

fn data_segment_len(bhs: &[u8]) -> u32 {
    u32::from_be_bytes([0, bhs[5], bhs[6], bhs[7]])
}

/// Which digests a connection negotiated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Digests {
    pub header: bool,
    pub data: bool,
}

/// Cuts PDUs out of a byte stream.
#[derive(Clone, Copy, Debug)]
pub struct PduDecoder {
    pub digests: Digests,
    /// The MaxRecvDataSegmentLength this side declared.
    pub data_bytes_max: u32,
}

impl PduDecoder {
    /// Takes one whole PDU off the front of `buf`, or `None` if more bytes are needed.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Pdu>, FrameError> {
        if buf.len() < BHS_BYTES {
            return Ok(None);
        }
        let ahs_len = buf[4] as usize * 4;
        if ahs_len > AHS_BYTES_MAX {
            return Err(FrameError::AhsTooLong { len: ahs_len });
        }
        let data_len = data_segment_len(buf);
        if data_len > self.data_bytes_max {
            return Err(FrameError::DataTooLong {
                len: data_len,
                max: self.data_bytes_max,
            });
        }
        let header_len = BHS_BYTES + ahs_len + if self.digests.header { 4 } else { 0 };
        let data_padded = padded(data_len as usize);
        let data_digest = if self.digests.data && data_len > 0 {
            4
        } else {
            0
        };
        if buf.len() < header_len + data_padded + data_digest {
            buf.reserve(header_len + data_padded + data_digest - buf.len());
            return Ok(None);
        }
        let head = buf.split_to(header_len).freeze();
        let mut bhs = [0u8; BHS_BYTES];
        bhs.copy_from_slice(&head[..BHS_BYTES]);
        if self.digests.header {
            let sent = (&head[BHS_BYTES + ahs_len..]).get_u32_le();
            if sent != digest(&[&head[..BHS_BYTES + ahs_len]]) {
                return Err(FrameError::HeaderDigest);
            }
        }
        let body = buf.split_to(data_padded + data_digest).freeze();
        if data_digest > 0 {
            let sent = (&body[data_padded..]).get_u32_le();
            if sent != digest(&[&body[..data_padded]]) {
                return Err(FrameError::DataDigest { bhs });
            }
        }
        Ok(Some(Pdu {
            bhs,
            ahs: head.slice(BHS_BYTES..BHS_BYTES + ahs_len),
            data: body.slice(..data_len as usize),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder(header: bool, data: bool) -> PduDecoder {
        PduDecoder {
            digests: Digests { header, data },
            data_bytes_max: 8192,
        }
    }

    fn sample() -> Pdu {
        let mut p = Pdu::new(op::NOP_IN);
        p.set_itt(7);
        p.set_data(Bytes::from_static(b"hello"));
        p
    }

    #[test]
    fn crc32c_matches_the_rfc_vector() {
        // RFC 3720 B.4: 32 bytes of zeros digest to aa 36 91 8a on the wire.
        assert_eq!(
            digest(&[&[0u8; 32]]).to_le_bytes(),
            [0xaa, 0x36, 0x91, 0x8a]
        );
    }

    #[test]
    fn round_trips_with_and_without_digests() {
        for (h, d) in [(false, false), (true, false), (false, true), (true, true)] {
            let dec = decoder(h, d);
            let mut buf = BytesMut::new();
            sample().encode(dec.digests, &mut buf);
            assert_eq!(buf.len() % 4, 0);
            let whole = buf.clone();
            // Every strict prefix is incomplete.
            for cut in 0..whole.len() {
                let mut part = BytesMut::from(&whole[..cut]);
                assert_eq!(dec.decode(&mut part), Ok(None));
            }
            assert_eq!(dec.decode(&mut buf), Ok(Some(sample())));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn corrupt_digests_are_reported() {
        let dec = decoder(true, true);
        let mut buf = BytesMut::new();
        sample().encode(dec.digests, &mut buf);
        let mut bad_header = buf.clone();
        bad_header[16] ^= 1;
        assert_eq!(dec.decode(&mut bad_header), Err(FrameError::HeaderDigest));
        let mut bad_data = buf.clone();
        bad_data[BHS_BYTES + 4] ^= 1;
        assert!(matches!(
            dec.decode(&mut bad_data),
            Err(FrameError::DataDigest { .. })
        ));
    }

    #[test]
    fn oversize_segments_are_refused_before_reading_them() {
        let dec = decoder(false, false);
        let mut buf = BytesMut::from(&[0u8; BHS_BYTES][..]);
        buf[5] = 0x01; // 65536 bytes
        assert!(matches!(
            dec.decode(&mut buf),
            Err(FrameError::DataTooLong { len: 65536, .. })
        ));
        let mut buf = BytesMut::from(&[0u8; BHS_BYTES][..]);
        buf[4] = 255;
        assert!(matches!(
            dec.decode(&mut buf),
            Err(FrameError::AhsTooLong { .. })
        ));
    }
}
