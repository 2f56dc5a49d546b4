//! Reports what opening a pool with many snapshots costs: wall time of `Pool::open`, the device
//! reads it issues and the resident memory the open pool adds (`VmRSS` after the open less
//! before it; the in-memory device's own pages are resident before), on a 4 TiB in-memory
//! (sparse) pool holding a volume and N snapshots of it (each snapshot followed by a one-block
//! write, so the trees diverge).
//!
//! Usage: `cargo run --release -p cairn-engine --example open_scale -- [snapshots]`
//! (default 40000).

use std::sync::Arc;
use std::time::Instant;

use cairn_engine::{Pool, PoolOptions, Storage, VolumeOptions};
use cairn_io::MemDevice;

const POOL_BYTES: u64 = 4 << 40;
const VOLUME_BYTES: u64 = 1 << 30;

fn main() {
    let snapshots: u64 = match std::env::args().nth(1) {
        Some(a) => a.parse().expect("snapshot count"),
        None => 40_000,
    };
    let opts = PoolOptions {
        commit_interval: None,
        ..PoolOptions::default()
    };
    let dev = Arc::new(MemDevice::new(POOL_BYTES));
    let storage = Storage::new();
    storage
        .add_pool(Pool::create(dev.clone(), "scale", opts.clone()).expect("create"))
        .expect("add");
    let (p, v) = storage
        .create_volume("scale", "v", VOLUME_BYTES, VolumeOptions::default())
        .expect("volume");
    let block = vec![7u8; 4096];
    let built = Instant::now();
    for i in 0..snapshots {
        storage
            .snapshot(v.id, &format!("s{i}"), VolumeOptions::default())
            .expect("snapshot");
        let off = (i * 4096 * 97) % VOLUME_BYTES;
        p.write(v.id, off, &block).expect("write");
    }
    p.close().expect("close");
    let built = built.elapsed();
    let before = dev.stats();
    let rss_before = resident_bytes();
    let opened = Instant::now();
    let p = Pool::open(dev.clone(), opts).expect("open");
    let open_time = opened.elapsed();
    let after = dev.stats();
    let rss_added = resident_bytes().saturating_sub(rss_before);
    println!(
        "{snapshots} snapshots (built in {:.1} s): open {:.1} ms, {} device reads ({} KiB), \
         {} volumes listed, {} KiB resident added by the open pool",
        built.as_secs_f64(),
        open_time.as_secs_f64() * 1e3,
        after.reads - before.reads,
        (after.read_bytes - before.read_bytes) / 1024,
        p.volumes().len(),
        rss_added / 1024
    );
    p.close().expect("close");
}

/// This process's resident size (`VmRSS`), in bytes.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}
