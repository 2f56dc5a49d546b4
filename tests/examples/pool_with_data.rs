//! Writes a 4 TiB sparse pool file holding 1 GiB of data — a volume of 1 GiB written whole in
//! 1 MiB steps, snapshotted every 128 MiB written — for measuring `cairn pool check` on it, e.g.
//! `/usr/bin/time -v cairn --pool-file PATH pool check` (its "Maximum resident set size"; the
//! target is 64 MiB).
//!
//! The pool is built by `cairn_tests::fixture::build_pool` (no preallocated metadata reserve:
//! 3% of 4 TiB would not fit a test machine's file system; one sync at the end).
//!
//! Usage: `cargo run -p cairn-tests --example pool_with_data -- PATH`

use std::path::PathBuf;

use anyhow::{Context, Result};
use cairn_engine::{PoolOptions, VolumeOptions};
use cairn_tests::fixture::build_pool;

const MIB: u64 = 1 << 20;
const POOL_BYTES: u64 = 4 << 40;
const DATA_BYTES: u64 = 1 << 30;
const SNAPSHOT_EVERY_BYTES: u64 = 128 * MIB;

fn main() -> Result<()> {
    let path: PathBuf = std::env::args()
        .nth(1)
        .context("usage: pool_with_data PATH")?
        .into();
    let opts = PoolOptions {
        commit_interval: None,
        ..PoolOptions::default()
    };
    build_pool(&path, "pool0", POOL_BYTES, opts, |storage| {
        let (p, v) = storage.create_volume("pool0", "v", DATA_BYTES, VolumeOptions::default())?;
        let chunk = vec![0x5au8; MIB as usize];
        for offset in (0..DATA_BYTES).step_by(MIB as usize) {
            if offset % SNAPSHOT_EVERY_BYTES == 0 {
                let name = format!("s{}", offset / SNAPSHOT_EVERY_BYTES);
                storage.snapshot(v.id, &name, VolumeOptions::default())?;
            }
            p.write(v.id, offset, &chunk)?;
        }
        Ok(())
    })?;
    println!("{}: 4 TiB pool, 1 GiB of data", path.display());
    Ok(())
}
