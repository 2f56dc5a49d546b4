//! A minimal raw NBD client written against the specification, for requests the real clients
//! refuse to send and for exact control over what goes on the wire. Each test binary uses a part
//! of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;

use cairn_nbd::proto::*;

pub struct Client {
    pub s: TcpStream,
}

pub fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}

impl Client {
    /// Connects and negotiates: fixed newstyle, structured replies, optionally base:allocation, GO.
    pub fn connect(port: u16, export: &str, meta: bool) -> Client {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut greeting = [0u8; 18];
        s.read_exact(&mut greeting).unwrap();
        assert_eq!(&greeting[..8], b"NBDMAGIC");
        s.write_all(&(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).to_be_bytes())
            .unwrap();
        let mut c = Client { s };
        assert_eq!(c.option(OPT_STRUCTURED_REPLY, &[]), vec![REP_ACK]);
        if meta {
            let mut data = (export.len() as u32).to_be_bytes().to_vec();
            data.extend_from_slice(export.as_bytes());
            data.extend_from_slice(&1u32.to_be_bytes());
            data.extend_from_slice(&(META_BASE_ALLOCATION.len() as u32).to_be_bytes());
            data.extend_from_slice(META_BASE_ALLOCATION.as_bytes());
            assert_eq!(
                c.option(OPT_SET_META_CONTEXT, &data),
                vec![REP_META_CONTEXT, REP_ACK]
            );
        }
        let mut data = (export.len() as u32).to_be_bytes().to_vec();
        data.extend_from_slice(export.as_bytes());
        data.extend_from_slice(&0u16.to_be_bytes());
        assert_eq!(c.option(OPT_GO, &data).last(), Some(&REP_ACK));
        c
    }

    /// Sends an option and returns the reply types up to the final one.
    pub fn option(&mut self, option: u32, data: &[u8]) -> Vec<u32> {
        let mut msg = IHAVEOPT.to_be_bytes().to_vec();
        msg.extend_from_slice(&option.to_be_bytes());
        msg.extend_from_slice(&(data.len() as u32).to_be_bytes());
        msg.extend_from_slice(data);
        self.s.write_all(&msg).unwrap();
        let mut kinds = Vec::new();
        loop {
            let mut head = [0u8; 20];
            self.s.read_exact(&mut head).unwrap();
            let kind = be32(&head[12..]);
            let mut payload = vec![0u8; be32(&head[16..]) as usize];
            self.s.read_exact(&mut payload).unwrap();
            kinds.push(kind);
            if kind == REP_ACK || is_reply_error(kind) {
                return kinds;
            }
        }
    }

    pub fn send(
        &mut self,
        command: u16,
        flags: u16,
        cookie: u64,
        offset: u64,
        len: u32,
        payload: &[u8],
    ) {
        let mut msg = REQUEST_MAGIC.to_be_bytes().to_vec();
        msg.extend_from_slice(&flags.to_be_bytes());
        msg.extend_from_slice(&command.to_be_bytes());
        msg.extend_from_slice(&cookie.to_be_bytes());
        msg.extend_from_slice(&offset.to_be_bytes());
        msg.extend_from_slice(&len.to_be_bytes());
        self.s.write_all(&msg).unwrap();
        self.s.write_all(payload).unwrap();
    }

    /// Reads one complete reply: (cookie, errno, data bytes, structured chunk types seen).
    pub fn reply(&mut self) -> (u64, u32, Vec<u8>, Vec<u16>) {
        let mut magic = [0u8; 4];
        self.s.read_exact(&mut magic).unwrap();
        match be32(&magic) {
            SIMPLE_REPLY_MAGIC => {
                let mut rest = [0u8; 12];
                self.s.read_exact(&mut rest).unwrap();
                (
                    u64::from_be_bytes(rest[4..].try_into().unwrap()),
                    be32(&rest),
                    Vec::new(),
                    Vec::new(),
                )
            }
            STRUCTURED_REPLY_MAGIC => {
                let mut rest = [0u8; 16];
                self.s.read_exact(&mut rest).unwrap();
                let flags = u16::from_be_bytes([rest[0], rest[1]]);
                let kind = u16::from_be_bytes([rest[2], rest[3]]);
                let cookie = u64::from_be_bytes(rest[4..12].try_into().unwrap());
                let mut payload = vec![0u8; be32(&rest[12..]) as usize];
                self.s.read_exact(&mut payload).unwrap();
                assert_ne!(
                    flags & REPLY_FLAG_DONE,
                    0,
                    "Cairn sends one chunk per reply"
                );
                let errno = if kind == REPLY_TYPE_ERROR {
                    be32(&payload)
                } else {
                    0
                };
                (cookie, errno, payload, vec![kind])
            }
            other => panic!("bad reply magic {other:#x}"),
        }
    }

    pub fn request(
        &mut self,
        command: u16,
        flags: u16,
        offset: u64,
        len: u32,
        payload: &[u8],
    ) -> (u32, Vec<u8>, Vec<u16>) {
        self.send(command, flags, 42, offset, len, payload);
        let (cookie, errno, data, kinds) = self.reply();
        assert_eq!(cookie, 42);
        (errno, data, kinds)
    }

    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0) | Err(_))
    }
}
