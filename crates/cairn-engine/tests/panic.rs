//! A panic inside a locked section of the pool (here: the device panics while a commit holds the
//! pool lock) fails the pool: no later call succeeds, nothing half-done is committed, `close`
//! returns the failure, and a reopen finds the last durable state.

mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cairn_engine::{BlockDevice, ErrorKind, PoolOptions, VolumeOptions};
use cairn_io::{IoResult, MemDevice};

/// A memory device whose flush panics while `armed`: a bug below the pool, met under its lock.
#[derive(Debug)]
struct PanickingFlush {
    mem: MemDevice,
    armed: AtomicBool,
}

impl BlockDevice for PanickingFlush {
    fn size_bytes(&self) -> u64 {
        self.mem.size_bytes()
    }
    fn alignment(&self) -> u64 {
        self.mem.alignment()
    }
    fn refresh_size(&self) -> IoResult<u64> {
        self.mem.refresh_size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> IoResult<()> {
        self.mem.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> IoResult<()> {
        self.mem.write_at(offset, data)
    }
    fn flush(&self) -> IoResult<()> {
        assert!(!self.armed.load(Ordering::SeqCst), "device flush panics");
        self.mem.flush()
    }
    fn discard(&self, offset: u64, len: u64) -> IoResult<()> {
        self.mem.discard(offset, len)
    }
}

#[test]
fn a_panic_under_the_pool_lock_fails_the_pool_and_close_reports_it() {
    let dev = Arc::new(PanickingFlush {
        mem: MemDevice::new(16 << 20),
        armed: AtomicBool::new(false),
    });
    let opts = PoolOptions {
        commit_interval: None,
        node_cache_bytes: 1 << 20,
        preallocate: false,
    };
    let p = support::create(dev.clone(), "p", opts.clone()).unwrap();
    let v = p
        .create_volume("v", 1 << 20, VolumeOptions::default())
        .unwrap();
    p.write(v.id, 0, &[1u8; 4096]).unwrap();
    p.flush().unwrap();
    p.write(v.id, 0, &[2u8; 4096]).unwrap();
    dev.armed.store(true, Ordering::SeqCst);
    let r = catch_unwind(AssertUnwindSafe(|| p.flush()));
    assert!(r.is_err(), "the flush panicked");
    dev.armed.store(false, Ordering::SeqCst);
    let e = p.flush().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PoolFailed, "{e}");
    let mut buf = vec![0u8; 4096];
    assert_eq!(
        p.read(v.id, 0, &mut buf).unwrap_err().kind(),
        ErrorKind::PoolFailed
    );
    assert_eq!(p.close().unwrap_err().kind(), ErrorKind::PoolFailed);
    assert_eq!(p.close().unwrap_err().kind(), ErrorKind::PoolFailed);
    drop(p);
    let p = support::open(dev.clone(), opts).unwrap();
    let v = p.volume_by_name("v").unwrap();
    p.read(v.id, 0, &mut buf).unwrap();
    assert!(
        buf == vec![1u8; 4096] || buf == vec![2u8; 4096],
        "one of the two writes"
    );
    assert!(p.check().unwrap().is_clean());
    p.close().unwrap();
}
