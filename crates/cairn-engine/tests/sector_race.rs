//! Concurrent writes to one block of a 512-byte volume: a full-block write racing a 512-byte
//! write (a read-modify-write of the block) must leave the block as one of the two orders
//! gives it — the full block alone, or the full block with the sector patched in. Never the
//! sector over the block's old contents. A partial trim racing the full-block write likewise.

mod support;
use support::OnePool;

use std::sync::{Arc, Barrier};

use cairn_engine::{BlockDevice, PoolOptions, VolumeId, VolumeOptions};
use cairn_io::MemDevice;

const BS: usize = 4096;
const SECTOR: usize = 512;
const MIB: u64 = 1 << 20;
/// Blocks raced at once, one pair of threads each.
const PAIRS: usize = 3;
const ROUNDS: usize = 400;

/// Widens the race window: every device write yields the processor first, so a write running
/// outside the pool lock lands late.
#[derive(Debug)]
struct LateWrites(MemDevice);
impl BlockDevice for LateWrites {
    fn size_bytes(&self) -> u64 {
        self.0.size_bytes()
    }
    fn alignment(&self) -> u64 {
        self.0.alignment()
    }
    fn refresh_size(&self) -> cairn_io::IoResult<u64> {
        self.0.refresh_size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> cairn_io::IoResult<()> {
        self.0.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> cairn_io::IoResult<()> {
        for _ in 0..100 {
            std::thread::yield_now();
        }
        self.0.write_at(offset, data)
    }
    fn flush(&self) -> cairn_io::IoResult<()> {
        self.0.flush()
    }
    fn discard(&self, offset: u64, len: u64) -> cairn_io::IoResult<()> {
        self.0.discard(offset, len)
    }
}

fn sector_pool() -> (OnePool, VolumeId) {
    let dev = Arc::new(LateWrites(MemDevice::new(64 * MIB)));
    let opts = PoolOptions {
        commit_interval: None,
        node_cache_bytes: 4 << 20,
        preallocate: false,
    };
    let p = support::create(dev, "p0", opts).unwrap();
    let vopts = VolumeOptions {
        logical_block_size: 512,
        ..VolumeOptions::default()
    };
    let v = p.create_volume("v", MIB, vopts).unwrap().id;
    (p, v)
}

/// One round on block `b`: a full-block write of `full` and a write of `sector` at sector `s`
/// (a trim of that sector when `sector` is 0).
fn race(p: &OnePool, v: VolumeId, b: usize, s: usize, full: u8, sector: u8, go: &Barrier) {
    let at = (b * BS) as u64;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            go.wait();
            p.write(v, at, &[full; BS]).unwrap();
        });
        scope.spawn(|| {
            go.wait();
            let sector_at = at + (s * SECTOR) as u64;
            if sector == 0 {
                p.trim(v, sector_at, SECTOR as u64).unwrap();
            } else {
                p.write(v, sector_at, &[sector; SECTOR]).unwrap();
            }
        });
    });
}

#[test]
fn a_sector_write_racing_a_full_block_write_gives_one_of_their_orders() {
    let (p, v) = sector_pool();
    let go = Arc::new(Barrier::new(2 * PAIRS));
    for round in 0..ROUNDS {
        let full = (round % 200) as u8 + 1;
        // Odd rounds trim the sector: a partial trim is a read-modify-write too.
        let sector = if round % 2 == 1 {
            0
        } else {
            full.wrapping_add(100) | 1
        };
        let s = round % (BS / SECTOR);
        // Allocated earlier in the open transaction: the full-block write goes in place.
        for b in 0..PAIRS {
            p.write(v, (b * BS) as u64, &[0xEE; BS]).unwrap();
        }
        std::thread::scope(|scope| {
            for b in 0..PAIRS {
                let (p, go) = (&p, &go);
                scope.spawn(move || race(p, v, b, s, full, sector, go));
            }
        });
        for b in 0..PAIRS {
            let mut got = vec![0u8; BS];
            p.read(v, (b * BS) as u64, &mut got).unwrap();
            let mut patched = vec![full; BS];
            patched[s * SECTOR..(s + 1) * SECTOR].fill(sector);
            assert!(
                got == vec![full; BS] || got == patched,
                "round {round} block {b}: neither order (sector {s} holds {:#x}, the last byte {:#x}, \
                 full {full:#x}, sector {sector:#x})",
                got[s * SECTOR],
                got[BS - 1]
            );
        }
    }
    assert!(p.check().unwrap().is_clean());
}
