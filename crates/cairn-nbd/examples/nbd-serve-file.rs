//! Serves one volume of a file-backed pool over NBD, for peer benchmarks (`tools/nbd-bench.sh`)
//! and manual testing without the full daemon.
//!
//! ```text
//! nbd-serve-file --pool FILE --pool-size BYTES --volume NAME --volume-size BYTES \
//!                [--snapshot NAME] [--addr 127.0.0.1:10809]
//! ```
//! Creates the pool file and the volume when missing, optionally snapshots the volume first,
//! prints `listening ADDR` once the server accepts connections, and on SIGINT/SIGTERM shuts the
//! server down and closes the pool.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use cairn_engine::{Pool, PoolOptions, Storage, VolumeOptions};
use cairn_io::FileDevice;
use cairn_nbd::{start, NbdServerConfig};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn args() -> AnyResult<HashMap<String, String>> {
    let mut map = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(key) = it.next() {
        let Some(key) = key.strip_prefix("--") else {
            return Err(format!("unexpected argument {key:?}").into());
        };
        let value = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
        map.insert(key.to_string(), value);
    }
    Ok(map)
}

fn required<'a>(args: &'a HashMap<String, String>, key: &str) -> AnyResult<&'a str> {
    args.get(key)
        .map(String::as_str)
        .ok_or_else(|| format!("missing --{key}").into())
}

#[tokio::main]
async fn main() -> AnyResult<()> {
    let args = args()?;
    let path = required(&args, "pool")?;
    let pool_size: u64 = required(&args, "pool-size")?.parse()?;
    let volume = required(&args, "volume")?;
    let volume_size: u64 = required(&args, "volume-size")?.parse()?;
    let addr: SocketAddr = args
        .get("addr")
        .map_or("127.0.0.1:10809", String::as_str)
        .parse()?;

    let existed = std::path::Path::new(path).exists();
    let dev = Arc::new(FileDevice::open(path, Some(pool_size))?);
    let pool = if existed {
        Pool::open(dev, PoolOptions::default())?
    } else {
        Pool::create(dev, "bench", PoolOptions::default())?
    };
    let storage = Arc::new(Storage::new());
    storage.add_pool(pool.clone())?;
    let info = match pool.volume_by_name(volume) {
        Some(info) => info,
        None => {
            let pool_name = pool.name();
            let opts = VolumeOptions::default();
            storage
                .create_volume(&pool_name, volume, volume_size, opts)?
                .1
        }
    };
    if let Some(snapshot) = args.get("snapshot") {
        let started = std::time::Instant::now();
        storage.snapshot(info.id, snapshot, VolumeOptions::default())?;
        eprintln!(
            "snapshot {snapshot} of {volume} took {:?}",
            started.elapsed()
        );
    }

    let cfg = NbdServerConfig {
        addr,
        ..NbdServerConfig::default()
    };
    let server = start(cfg, storage.clone()).await?;
    println!("listening {}", server.local_addr());

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    server.shutdown().await?;
    storage.close()?;
    Ok(())
}
