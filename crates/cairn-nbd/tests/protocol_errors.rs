//! Bad input over a real socket: the server answers with the protocol's errno (or disconnects
//! where the protocol requires it) and keeps framing intact. The client here is a minimal raw
//! NBD client ([`raw`]) written against the specification, because the real clients refuse to
//! send such requests.

mod raw;

use raw::Client;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use cairn_engine::{Pool, PoolOptions, Storage, VolumeOptions};
use cairn_io::MemDevice;
use cairn_nbd::limits::PAYLOAD_BYTES_MAX;
use cairn_nbd::proto::*;
use cairn_nbd::{start, NbdServerConfig, NbdServerHandle};

const SIZE_BYTES: u64 = 16 << 20;

struct Server {
    rt: tokio::runtime::Runtime,
    handle: Option<NbdServerHandle>,
}

impl Server {
    fn start() -> Server {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let pool = Pool::create(
            Arc::new(MemDevice::new(256 << 20)),
            "p0",
            PoolOptions::default(),
        )
        .unwrap();
        let storage = Arc::new(Storage::new());
        storage.add_pool(pool).unwrap();
        storage
            .create_volume("p0", "rw", SIZE_BYTES, VolumeOptions::default())
            .unwrap();
        let ro = VolumeOptions {
            read_only: true,
            ..Default::default()
        };
        storage.create_volume("p0", "ro", SIZE_BYTES, ro).unwrap();
        let cfg = NbdServerConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        };
        let handle = rt.block_on(start(cfg, storage)).unwrap();
        Server {
            rt,
            handle: Some(handle),
        }
    }

    fn port(&self) -> u16 {
        self.handle.as_ref().unwrap().local_addr().port()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.rt.block_on(h.shutdown()).unwrap();
        }
    }
}

#[test]
fn out_of_range_misaligned_and_oversized_requests_get_errno_replies() {
    let server = Server::start();
    let mut c = Client::connect(server.port(), "rw", false);
    let block = vec![0x42u8; 4096];

    assert_eq!(
        c.request(CMD_WRITE, 0, SIZE_BYTES, 4096, &block).0,
        ENOSPC,
        "WRITE past the end"
    );
    assert_eq!(
        c.request(CMD_WRITE_ZEROES, 0, SIZE_BYTES - 4096, 8192, &[])
            .0,
        ENOSPC
    );
    let (errno, _, kinds) = c.request(CMD_READ, 0, SIZE_BYTES, 4096, &[]);
    assert_eq!(
        (errno, kinds),
        (EINVAL, vec![REPLY_TYPE_ERROR]),
        "READ past the end: structured error"
    );
    assert_eq!(
        c.request(CMD_TRIM, 0, SIZE_BYTES - 4096, 8192, &[]).0,
        EINVAL,
        "TRIM past the end"
    );
    assert_eq!(
        c.request(CMD_READ, 0, 512, 4096, &[]).0,
        EINVAL,
        "misaligned READ"
    );
    assert_eq!(
        c.request(CMD_WRITE, 0, 0, 100, &[7u8; 100]).0,
        EINVAL,
        "misaligned WRITE"
    );
    assert_eq!(
        c.request(5, 0, 0, 4096, &[]).0,
        EINVAL,
        "NBD_CMD_CACHE is not offered"
    );
    assert_eq!(
        c.request(CMD_BLOCK_STATUS, 0, 0, 4096, &[]).0,
        EINVAL,
        "no metadata context selected"
    );

    // An oversized WRITE is refused, its payload skipped, and the stream stays in sync.
    let big = vec![0x99u8; PAYLOAD_BYTES_MAX as usize + 4096];
    assert_eq!(c.request(CMD_WRITE, 0, 0, big.len() as u32, &big).0, EINVAL);
    assert_eq!(c.request(CMD_WRITE, CMD_FLAG_FUA, 4096, 4096, &block).0, 0);
    let (errno, data, kinds) = c.request(CMD_READ, 0, 0, 8192, &[]);
    assert_eq!((errno, kinds), (0, vec![REPLY_TYPE_OFFSET_DATA]));
    assert_eq!(&data[..8], &0u64.to_be_bytes(), "chunk offset");
    assert!(
        data[8..8 + 4096].iter().all(|b| *b == 0),
        "the oversized write reached nothing"
    );
    assert_eq!(&data[8 + 4096..], &block[..]);

    // A bad magic ends the connection.
    c.s.write_all(&[0u8; 28]).unwrap();
    assert!(c.closed());
}

#[test]
fn writes_to_a_read_only_export_get_eperm() {
    let server = Server::start();
    let mut c = Client::connect(server.port(), "ro", true);
    assert_eq!(c.request(CMD_WRITE, 0, 0, 4096, &[1u8; 4096]).0, EPERM);
    assert_eq!(c.request(CMD_TRIM, 0, 0, 4096, &[]).0, EPERM);
    assert_eq!(c.request(CMD_WRITE_ZEROES, 0, 0, 4096, &[]).0, EPERM);
    let (errno, data, kinds) = c.request(CMD_BLOCK_STATUS, 0, 0, SIZE_BYTES as u32, &[]);
    assert_eq!((errno, kinds), (0, vec![REPLY_TYPE_BLOCK_STATUS]));
    let expected: Vec<u8> = [1u32, SIZE_BYTES as u32, STATE_HOLE | STATE_ZERO]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    assert_eq!(data, expected, "one hole over the whole empty export");
    c.send(CMD_DISC, 0, 1, 0, 0, &[]);
    assert!(c.closed());
}

#[test]
fn unknown_exports_are_refused() {
    let server = Server::start();
    let mut s = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    let mut greeting = [0u8; 18];
    s.read_exact(&mut greeting).unwrap();
    s.write_all(&FLAG_C_FIXED_NEWSTYLE.to_be_bytes()).unwrap();
    let mut c = Client { s };
    let mut data = 4u32.to_be_bytes().to_vec();
    data.extend_from_slice(b"nope");
    data.extend_from_slice(&0u16.to_be_bytes());
    assert_eq!(c.option(OPT_GO, &data), vec![REP_ERR_UNKNOWN]);
    assert_eq!(
        c.option(OPT_EXTENDED_HEADERS, &[]),
        vec![REP_ERR_UNSUP],
        "negotiation goes on"
    );
    // NBD_OPT_EXPORT_NAME of an unknown export: the protocol requires a disconnect.
    let mut msg = IHAVEOPT.to_be_bytes().to_vec();
    msg.extend_from_slice(&OPT_EXPORT_NAME.to_be_bytes());
    msg.extend_from_slice(&4u32.to_be_bytes());
    msg.extend_from_slice(b"nope");
    c.s.write_all(&msg).unwrap();
    assert!(c.closed());
}

#[test]
fn pipelined_requests_beyond_the_in_flight_bounds_all_complete() {
    let server = Server::start();
    let mut c = Client::connect(server.port(), "rw", false);
    // More requests than a connection may have in flight, sent before reading any reply: the
    // server must apply back-pressure, not drop or deadlock.
    let count = 2 * cairn_nbd::limits::CONNECTION_REQUESTS_MAX as u64 + 7;
    for cookie in 0..count {
        c.send(CMD_READ, 0, cookie, (cookie % 256) * 65536, 65536, &[]);
    }
    let mut seen = vec![false; count as usize];
    for _ in 0..count {
        let (cookie, errno, data, _) = c.reply();
        assert_eq!((errno, data.len()), (0, 8 + 65536));
        assert!(
            !std::mem::replace(&mut seen[cookie as usize], true),
            "cookie {cookie} answered twice"
        );
    }
    assert!(seen.iter().all(|s| *s));
}

#[test]
fn reads_sent_back_to_back_each_get_their_own_data_or_error() {
    let server = Server::start();
    let mut c = Client::connect(server.port(), "rw", false);
    const BLOCK: u64 = 4096;
    for b in 0..64u64 {
        c.send(
            CMD_WRITE,
            0,
            b,
            b * BLOCK,
            BLOCK as u32,
            &[b as u8 + 1; BLOCK as usize],
        );
    }
    for _ in 0..64 {
        assert_eq!(c.reply().1, 0, "write");
    }
    // Sent before any reply is read, so the server finds them waiting together; a read past
    // the end and a write among them.
    let reads: Vec<u64> = (0..48).map(|i| (i * 7) % 64).collect();
    for (i, &b) in reads.iter().enumerate() {
        c.send(CMD_READ, 0, i as u64, b * BLOCK, BLOCK as u32, &[]);
        if i == 20 {
            c.send(CMD_READ, 0, 1000, SIZE_BYTES, BLOCK as u32, &[]);
            c.send(
                CMD_WRITE,
                0,
                1001,
                100 * BLOCK,
                BLOCK as u32,
                &[0xee; BLOCK as usize],
            );
        }
    }
    let mut seen = vec![false; reads.len()];
    for _ in 0..reads.len() + 2 {
        let (cookie, errno, data, _) = c.reply();
        match cookie {
            1000 => assert_eq!(errno, EINVAL, "read past the end"),
            1001 => assert_eq!(errno, 0, "write"),
            i => {
                let b = reads[i as usize];
                assert_eq!(errno, 0, "read of block {b}");
                assert_eq!(&data[..8], &(b * BLOCK).to_be_bytes(), "offset chunk");
                assert_eq!(&data[8..], &[b as u8 + 1; BLOCK as usize][..], "block {b}");
                assert!(
                    !std::mem::replace(&mut seen[i as usize], true),
                    "answered twice"
                );
            }
        }
    }
    assert!(seen.iter().all(|s| *s));
}

#[test]
fn writes_sent_back_to_back_each_land_or_fail_alone() {
    let server = Server::start();
    let mut c = Client::connect(server.port(), "rw", false);
    const BLOCK: u64 = 4096;
    // Sent before any reply is read, so the server finds them waiting together; a write past
    // the end, a FUA write and a read among them.
    let blocks: Vec<u64> = (0..48).map(|i| (i * 5) % 48).collect();
    for (i, &b) in blocks.iter().enumerate() {
        let data = [b as u8 + 101; BLOCK as usize];
        c.send(CMD_WRITE, 0, i as u64, b * BLOCK, BLOCK as u32, &data);
        if i == 20 {
            c.send(CMD_WRITE, 0, 1000, SIZE_BYTES, BLOCK as u32, &data);
            c.send(
                CMD_WRITE,
                CMD_FLAG_FUA,
                1001,
                100 * BLOCK,
                BLOCK as u32,
                &[0xee; BLOCK as usize],
            );
            c.send(CMD_READ, 0, 1002, 200 * BLOCK, BLOCK as u32, &[]);
        }
    }
    let mut seen = vec![false; blocks.len()];
    for _ in 0..blocks.len() + 3 {
        let (cookie, errno, _, _) = c.reply();
        match cookie {
            1000 => assert_eq!(errno, ENOSPC, "write past the end"),
            1001 | 1002 => assert_eq!(errno, 0, "request {cookie}"),
            i => {
                assert_eq!(errno, 0, "write of block {}", blocks[i as usize]);
                assert!(
                    !std::mem::replace(&mut seen[i as usize], true),
                    "answered twice"
                );
            }
        }
    }
    assert!(seen.iter().all(|s| *s));
    for b in 0..48u64 {
        let (errno, data, _) = c.request(CMD_READ, 0, b * BLOCK, BLOCK as u32, &[]);
        assert_eq!(errno, 0, "read of block {b}");
        assert_eq!(
            &data[8..],
            &[b as u8 + 101; BLOCK as usize][..],
            "block {b}"
        );
    }
    let (_, data, _) = c.request(CMD_READ, 0, 100 * BLOCK, BLOCK as u32, &[]);
    assert_eq!(&data[8..], &[0xee; BLOCK as usize][..], "the FUA write");
}
