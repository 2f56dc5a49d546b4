//! Measures the resident memory of `cairn serve` on a 4 TiB pool file holding one volume and N
//! snapshots of it (each snapshot followed by a one-block write, so the trees diverge): the
//! daemon's resident size and peak (`VmRSS`, `VmHWM` from /proc) once it is ready, and again
//! after a client has read and written the volume over NBD, after the CLI has listed every
//! volume and snapshot through it (SMI-S pull operations, 500 a batch), and after pywbem has
//! enumerated every volume (`tests/py/enumerate.py`: pulls of 1,000, then one
//! EnumerateInstances). The target is 128 MiB plus the node cache.
//!
//! With `--open-only` it starts no daemon and reports instead what opening that pool costs the
//! daemon before it is ready: `Pool::open` on the pool file, then `Storage::add_pool`, which
//! lists every volume into the daemon's name registry — the wall time and device reads of each
//! (the file was just written, so its blocks are in the page cache: warm-cache times).
//!
//! The pool file is sparse, built by `cairn_tests::fixture::build_pool` (no preallocated
//! metadata reserve, one sync at the end).
//!
//! Usage: `cargo build -p cairn && cargo run -p cairn-tests --example serve_memory --
//! [snapshots] [--open-only]` (default 10000; the same profile for both, so the example finds
//! the binary).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use cairn_engine::{Pool, PoolOptions, Storage, VolumeOptions};
use cairn_io::{FileDevice, IoStats};
use cairn_tests::fixture::build_pool;
use cairn_tests::{cairn_bin, python, qemu_io, Daemon};

const MIB: u64 = 1 << 20;
const POOL_BYTES: u64 = 4 << 40;
const VOLUME_BYTES: u64 = 1 << 30;
const NODE_CACHE_MIB: u64 = 64;

/// Writes the pool: a volume "v" and `snapshots` snapshots of it.
fn build(path: &Path, snapshots: u64) -> Result<()> {
    let opts = PoolOptions {
        commit_interval: None,
        node_cache_bytes: (NODE_CACHE_MIB * MIB) as usize,
        preallocate: false,
    };
    build_pool(path, "pool0", POOL_BYTES, opts, |storage| {
        let (p, v) = storage.create_volume("pool0", "v", VOLUME_BYTES, VolumeOptions::default())?;
        let block = vec![7u8; 4096];
        for i in 0..snapshots {
            storage.snapshot(v.id, &format!("s{i}"), VolumeOptions::default())?;
            p.write(v.id, (i * 4096 * 97) % VOLUME_BYTES, &block)?;
        }
        Ok(())
    })
}

/// One step of the open: its wall time and the device reads it issued.
fn report_step(what: &str, started: Instant, before: IoStats, after: IoStats) {
    println!(
        "{what}: {:.1} ms, {} device reads ({} KiB)",
        started.elapsed().as_secs_f64() * 1e3,
        after.reads - before.reads,
        (after.read_bytes - before.read_bytes) / 1024
    );
}

/// `--open-only`: opens the pool file as `cairn serve` does (its node cache, the daemon's
/// `Storage`), reporting each step.
fn open_only(path: &Path) -> Result<()> {
    let dev = Arc::new(FileDevice::open(path, None)?);
    let opts = PoolOptions {
        node_cache_bytes: (NODE_CACHE_MIB * MIB) as usize,
        ..PoolOptions::default()
    };
    let (started, before) = (Instant::now(), dev.stats());
    let pool = Pool::open(dev.clone(), opts)?;
    let opened = dev.stats();
    report_step("Pool::open", started, before, opened);
    let (started, storage) = (Instant::now(), Storage::new());
    storage.add_pool(pool.clone())?;
    let volumes = pool.volumes().len();
    report_step(
        &format!("Storage::add_pool ({volumes} volumes named)"),
        started,
        opened,
        dev.stats(),
    );
    storage.close()?;
    Ok(())
}

/// `VmRSS` and `VmHWM` of process `pid`, in MiB.
fn resident_mib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("{name} missing"))?;
        let kb: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()?;
        Ok(kb * 1024 / MIB)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// Runs the CLI against the daemon on `data`; returns the number of rows listed.
fn list(data: &Path, what: &str) -> Result<usize> {
    let out = Command::new(cairn_bin())
        .args(["--json", "--data-dir", data.to_str().unwrap(), what, "list"])
        .output()?;
    ensure!(
        out.status.success(),
        "{what} list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    v.as_array().map(Vec::len).context("a JSON array")
}

/// Enumerates every volume of `daemon` with pywbem (`mode` `pull` or `whole`); returns the
/// number of volumes and the seconds the client took.
fn enumerate(daemon: &Daemon, mode: &str) -> Result<(u64, f64)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/enumerate.py");
    let url = format!("http://{}", daemon.listen.smis_http.context("SMI-S HTTP")?);
    let credentials = std::fs::read_to_string(daemon.data_dir.join("credentials"))?;
    let password = credentials.lines().next().context("a password")?;
    let out = Command::new(python())
        .arg(script)
        .args([url.as_str(), USER, password, mode])
        .output()?;
    ensure!(
        out.status.success(),
        "enumerate.py {mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let count = v["count"].as_u64().context("count")?;
    ensure!(v["distinct"].as_u64() == Some(count), "duplicates: {v}");
    Ok((count, v["seconds"].as_f64().unwrap_or_default()))
}

/// The user the daemon makes when its config names none (its password is in `credentials`).
const USER: &str = "admin";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let open_only_mode = args.iter().any(|a| a == "--open-only");
    let snapshots: u64 = match args.iter().find(|a| !a.starts_with("--")) {
        Some(a) => a.parse().context("snapshot count")?,
        None => 10_000,
    };
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let built = Instant::now();
    build(&data.join("pool0.img"), snapshots)?;
    println!(
        "{snapshots} snapshots on a 4 TiB pool file, built in {:.1} s",
        built.elapsed().as_secs_f64()
    );
    if open_only_mode {
        return open_only(&data.join("pool0.img"));
    }
    let config = format!(
        "[listen]\nsmis_http = \"127.0.0.1:0\"\nsmis_https = \"127.0.0.1:0\"\nnbd = \"127.0.0.1:0\"\n\
         iscsi = \"127.0.0.1:0\"\n[engine]\nnode_cache_mib = {NODE_CACHE_MIB}\n\
         [[pool]]\nname = \"pool0\"\npath = \"pool0.img\"\nsize = \"4TiB\"\n"
    );
    let started = Instant::now();
    let daemon = Daemon::start(&data, &config)?;
    let ready = started.elapsed();
    let pid = daemon.pid();
    let show = |what: &str| -> Result<()> {
        let (rss, hwm) = resident_mib(pid)?;
        println!("{what}: resident {rss} MiB, peak {hwm} MiB");
        Ok(())
    };
    show(&format!("ready in {:.1} s", ready.as_secs_f64()))?;
    ensure!(
        qemu_io(&daemon, "v", &["write -P 0x5a 0 1M", "read -P 0x5a 0 1M"]),
        "qemu-io over NBD"
    );
    show("after 1 MiB written and read over NBD")?;
    let volumes = list(&data, "volume")?;
    show(&format!("after listing {volumes} volumes"))?;
    let snaps = list(&data, "snapshot")?;
    ensure!(snaps as u64 == snapshots, "{snaps} snapshots listed");
    show(&format!("after listing {snaps} snapshots"))?;
    list(&data, "volume")?;
    show("after listing the volumes again")?;
    for mode in ["pull", "whole"] {
        let (count, secs) = enumerate(&daemon, mode)?;
        ensure!(
            count == snapshots + 1,
            "{count} volumes enumerated ({mode})"
        );
        show(&format!(
            "after pywbem enumerated {count} volumes ({mode}, {secs:.2} s)"
        ))?;
    }
    println!(
        "target: {} MiB (128 plus the {NODE_CACHE_MIB} MiB node cache)",
        128 + NODE_CACHE_MIB
    );
    daemon.stop()?;
    Ok(())
}
