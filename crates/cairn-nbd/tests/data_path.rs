//! The data path from the socket to an O_DIRECT pool file: write payloads and read replies live in
//! aligned buffers all the way down, so the device makes no bounce copy of them.

mod raw;

use std::sync::Arc;

use cairn_engine::{Pool, PoolOptions, Storage, VolumeOptions};
use cairn_io::{uring_available, Backend, FileDevice, OpenOptions};
use cairn_nbd::proto::*;
use cairn_nbd::{start, NbdServerConfig};
use raw::Client;

const SIZE_BYTES: u64 = 16 << 20;

/// 4 KiB writes and reads over NBD on a pool file opened with O_DIRECT, on both engines: every
/// request reaches the device and none is bounced. Metadata commits (their own buffers) are kept
/// out of the measured window: no flush, no FUA, no commit interval.
#[test]
fn four_kib_writes_and_reads_make_no_bounce_copy() {
    for backend in [Backend::Pread, Backend::Uring] {
        if backend == Backend::Uring && uring_available().is_err() {
            println!("skipped io_uring: not available here");
            continue;
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let options = OpenOptions {
            create_size_bytes: Some(64 << 20),
            direct: true,
            backend,
        };
        let dev = Arc::new(FileDevice::open(dir.path().join("pool.img"), options).unwrap());
        assert!(dev.is_direct(), "the temp dir takes O_DIRECT");
        let opts = PoolOptions {
            commit_interval: None,
            ..PoolOptions::default()
        };
        let pool = Pool::create(dev.clone(), "p0", opts).unwrap();
        let storage = Arc::new(Storage::new());
        storage.add_pool(pool).unwrap();
        storage
            .create_volume("p0", "v", SIZE_BYTES, VolumeOptions::default())
            .unwrap();
        let cfg = NbdServerConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        };
        let server = rt.block_on(start(cfg, storage.clone())).unwrap();
        let mut c = Client::connect(server.local_addr().port(), "v", false);

        let before = dev.stats();
        for i in 0..16u64 {
            let block = vec![i as u8 + 1; 4096];
            let offset = i * 8192;
            assert_eq!(c.request(CMD_WRITE, 0, offset, 4096, &block).0, 0);
            let (errno, data, _) = c.request(CMD_READ, 0, offset, 4096, &[]);
            assert_eq!(errno, 0);
            assert!(data[8..] == block[..], "block {i} reads back");
        }
        let after = dev.stats();
        assert!(
            after.writes >= before.writes + 16,
            "{backend:?}: writes reached the device"
        );
        assert!(
            after.reads >= before.reads + 16,
            "{backend:?}: reads reached the device"
        );
        assert_eq!(
            (after.bounces, after.bounce_bytes),
            (before.bounces, before.bounce_bytes),
            "{backend:?}: no bounce copy on the data path"
        );
        drop(c);
        rt.block_on(server.shutdown()).unwrap();
        storage.close().unwrap();
    }
}
