//! Requests whose end lies past `u64::MAX` are out of range for every volume: each call answers
//! `OutOfRange` (never an arithmetic overflow) and the pool keeps working.

mod support;

use std::sync::Arc;

use cairn_engine::{ErrorKind, PoolOptions, VolumeOptions, BLOCK_SIZE};
use cairn_io::MemDevice;

const MIB: u64 = 1 << 20;
/// A length that takes every offset below past `u64::MAX`.
const LONG: u64 = 1 << 40;

#[test]
fn requests_ending_past_the_address_space_are_out_of_range() {
    let dev = Arc::new(MemDevice::new(64 * MIB));
    let opts = PoolOptions {
        commit_interval: None,
        ..PoolOptions::default()
    };
    let p = support::create(dev, "p0", opts).unwrap();
    let v = p
        .create_volume("v", 4 * MIB, VolumeOptions::default())
        .unwrap()
        .id;
    let near_end = u64::MAX - (u64::MAX % BLOCK_SIZE) - 4 * BLOCK_SIZE;
    // Aligned offsets: the range check, not the alignment check, answers.
    // Longer than one write chunk (32 MiB), so the request is split before it is checked.
    let big = vec![7u8; 33 << 20];
    for offset in [near_end, u64::MAX - 4095, u64::MAX - (32 << 20) + 1] {
        let kind = |r: cairn_engine::Result<()>| r.unwrap_err().kind();
        assert_eq!(kind(p.write(v, offset, &big)), ErrorKind::OutOfRange);
        assert_eq!(
            kind(p.write(v, offset, &big[..4096])),
            ErrorKind::OutOfRange
        );
        let mut buf = vec![0u8; 33 << 20];
        assert_eq!(kind(p.read(v, offset, &mut buf)), ErrorKind::OutOfRange);
        assert_eq!(kind(p.trim(v, offset, LONG)), ErrorKind::OutOfRange);
        assert_eq!(kind(p.write_zeroes(v, offset, LONG)), ErrorKind::OutOfRange);
        assert_eq!(
            p.block_status(v, offset, LONG).unwrap_err().kind(),
            ErrorKind::OutOfRange
        );
    }
    // The pool is unharmed and the volume unchanged.
    p.write(v, 0, &big[..4096]).unwrap();
    let mut back = vec![0u8; 8192];
    p.read(v, 0, &mut back).unwrap();
    assert!(back[..4096].iter().all(|&b| b == 7) && back[4096..].iter().all(|&b| b == 0));
    assert!(p.check().unwrap().is_clean());
    p.close().unwrap();
}
