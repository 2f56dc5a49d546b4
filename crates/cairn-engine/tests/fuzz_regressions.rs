//! Regressions found by the `pool_structured` fuzz target: metadata that is sealed with a valid
//! checksum but wrong in what it says. Each test builds a real pool, changes one decoded field
//! through `cairn_engine::test_support`, re-seals the block and asserts a typed error.

mod support;

use std::sync::Arc;

use cairn_engine::test_support::{fields, reseal};
use cairn_engine::{BlockDevice, ErrorKind, PoolOptions, VolumeOptions};
use cairn_io::MemDevice;

fn options() -> PoolOptions {
    PoolOptions {
        commit_interval: None,
        node_cache_bytes: 1 << 20,
        preallocate: false,
    }
}

/// A closed pool of three volumes.
fn pool_image() -> Arc<MemDevice> {
    let dev = Arc::new(MemDevice::new(16 << 20));
    let pool = support::create(dev.clone(), "regression", options()).expect("create");
    for name in ["a", "b", "c"] {
        let v = pool.create_volume(name, 1 << 20, VolumeOptions::default());
        pool.write(v.expect("volume").id, 0, &[1; 4096])
            .expect("write");
    }
    pool.close().expect("close");
    dev
}

/// Sets the named field of both superblocks (blocks 0 and 1) and re-seals them.
fn set_super_field(dev: &MemDevice, name: &str, value: u64) {
    for addr in [0u64, 1] {
        let mut b = vec![0u8; 4096];
        dev.read_at(addr * 4096, &mut b).expect("read");
        let field = fields(&b).into_iter().find(|f| f.name == name);
        field.expect("superblock field").set(&mut b, value);
        reseal(&mut b);
        dev.write_at(addr * 4096, &b).expect("write");
    }
}

/// A next volume sequence number at the top of `u64` overflowed when the next volume was
/// created; one at or below a record's would have given a new volume the id of an old one.
#[test]
fn next_sequence_number_out_of_range_is_corruption() {
    for next_seq in [u64::MAX, 1 << 63, 3, 1, 0] {
        let dev = pool_image();
        set_super_field(&dev, "next_seq", next_seq);
        let err = support::open(dev, options()).expect_err("open refuses");
        assert_eq!(err.kind(), ErrorKind::Corrupt, "next_seq {next_seq}: {err}");
    }
    // The untouched image opens and takes new volumes.
    let pool = support::open(pool_image(), options()).expect("open");
    let d = pool.create_volume("d", 1 << 20, VolumeOptions::default());
    assert!(d.is_ok());
    assert_eq!(pool.volumes().len(), 4);
}

/// A data block count near the top of `u64` overflowed when the next data block was allocated;
/// block counts past the pool's size (or whose sum is) are corruption at open.
#[test]
fn block_counts_past_the_pool_size_are_corruption() {
    for (field, value) in [
        ("data_blocks", u64::MAX - 1),
        ("meta_blocks", u64::MAX),
        ("allocated", 1 << 40),
        ("reserve", u64::MAX / 2),
    ] {
        let dev = pool_image();
        set_super_field(&dev, field, value);
        let err = support::open(dev, options()).expect_err("open refuses");
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{field} {value}: {err}");
    }
}
