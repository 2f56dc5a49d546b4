//! A raw NBD client for tests that need what real clients do not expose: many requests in flight
//! on one connection, or each reply's error code. Negotiates with NBD_OPT_EXPORT_NAME (fixed
//! newstyle, simple replies), as the NBD protocol specification describes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// NBD_CMD_READ.
pub const CMD_READ: u16 = 0;
/// NBD_CMD_WRITE.
pub const CMD_WRITE: u16 = 1;
/// NBD_CMD_FLUSH.
pub const CMD_FLUSH: u16 = 3;
/// NBD_EIO.
pub const EIO: u32 = 5;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

/// A connection to `export` at `addr`, negotiated and ready for transmission.
pub fn connect(addr: SocketAddr, export: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut greeting = [0u8; 18];
    s.read_exact(&mut greeting).expect("greeting");
    assert_eq!(&greeting[..8], b"NBDMAGIC");
    // Fixed newstyle, no zeroes.
    s.write_all(&3u32.to_be_bytes()).expect("flags");
    let mut opt = b"IHAVEOPT".to_vec();
    opt.extend_from_slice(&1u32.to_be_bytes());
    opt.extend_from_slice(&(export.len() as u32).to_be_bytes());
    opt.extend_from_slice(export.as_bytes());
    s.write_all(&opt).expect("export name");
    let mut info = [0u8; 10];
    s.read_exact(&mut info).expect("export info");
    s
}

/// Appends one request (and its payload) to `wire`.
pub fn request(
    wire: &mut Vec<u8>,
    command: u16,
    cookie: u64,
    offset: u64,
    payload: &[u8],
    len: u32,
) {
    wire.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
    wire.extend_from_slice(&0u16.to_be_bytes());
    wire.extend_from_slice(&command.to_be_bytes());
    wire.extend_from_slice(&cookie.to_be_bytes());
    wire.extend_from_slice(&offset.to_be_bytes());
    wire.extend_from_slice(&len.to_be_bytes());
    wire.extend_from_slice(payload);
}

/// One simple reply: its cookie, its error (0 for success) and, if it succeeded, `data_len`
/// bytes of data.
pub fn reply(s: &mut TcpStream, data_len: usize) -> (u64, u32, Vec<u8>) {
    let mut head = [0u8; 16];
    s.read_exact(&mut head).expect("reply");
    let be32 = |b: &[u8]| u32::from_be_bytes(b.try_into().expect("4 bytes"));
    assert_eq!(be32(&head[..4]), SIMPLE_REPLY_MAGIC);
    let cookie = u64::from_be_bytes(head[8..].try_into().expect("8 bytes"));
    let error = be32(&head[4..8]);
    let mut data = vec![0u8; if error == 0 { data_len } else { 0 }];
    s.read_exact(&mut data).expect("read data");
    (cookie, error, data)
}

/// Sends one request and reads its reply: the reply's error and data.
pub fn call(
    s: &mut TcpStream,
    command: u16,
    offset: u64,
    payload: &[u8],
    len: u32,
) -> (u32, Vec<u8>) {
    let mut wire = Vec::new();
    request(&mut wire, command, 1, offset, payload, len);
    s.write_all(&wire).expect("request");
    let data_len = if command == CMD_READ { len as usize } else { 0 };
    let (_, error, data) = reply(s, data_len);
    (error, data)
}
