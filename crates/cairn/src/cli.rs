//! The admin CLI on a pool file or device that no daemon holds: each command opens the pool,
//! performs one operation (which the engine commits before returning), and closes the pool.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use cairn_engine::{ErrorKind, Pool, VolumeInfo, VolumeOptions};
use serde_json::json;

use crate::device::{cli_pool_options, open_device};
use crate::output::{
    check_json, pool_json, print_check, print_json, print_pool, print_volumes, volume_json,
};
use crate::size::parse_size_bytes;
use crate::{PoolCommand, SnapshotCommand, VolumeCommand};

/// An open pool that is closed (final commit) when the command is done.
struct OpenPool(Arc<Pool>);

impl OpenPool {
    fn open(path: &Path) -> Result<OpenPool> {
        let dev = open_device(path, None)?;
        let pool = Pool::open(dev, cli_pool_options())
            .with_context(|| format!("Cannot open pool {}", path.display()))?;
        Ok(OpenPool(pool))
    }

    fn volume(&self, name: &str) -> Result<VolumeInfo> {
        self.0
            .volume_by_name(name)
            .with_context(|| format!("No volume named '{name}' in pool {}", self.0.name()))
    }

    fn close(self) -> Result<()> {
        self.0.close().context("Cannot close the pool")
    }
}

pub fn pool(cmd: PoolCommand, json: bool) -> Result<()> {
    match cmd {
        PoolCommand::Create { path, name, size } => {
            let size = size.as_deref().map(parse_size_bytes).transpose()?;
            if !path.exists() && size.is_none() {
                bail!(
                    "{} does not exist: give --size to create it",
                    path.display()
                );
            }
            let dev = open_device(&path, size)?;
            match Pool::open(dev.clone(), cli_pool_options()) {
                Ok(existing) => {
                    existing.close()?;
                    bail!(
                        "{} already holds Cairn pool '{}'",
                        path.display(),
                        existing.name()
                    );
                }
                Err(err) if err.kind() == ErrorKind::NotAPool => {}
                Err(err) => bail!(
                    "{} looks like a damaged Cairn pool ({err}); not overwriting it",
                    path.display()
                ),
            }
            let pool = Pool::create(dev, &name, cli_pool_options())
                .with_context(|| format!("Cannot create pool on {}", path.display()))?;
            report_pool(&pool, json);
            pool.close().context("Cannot close the pool")
        }
        PoolCommand::Info { path } => {
            let pool = OpenPool::open(&path)?;
            report_pool(&pool.0, json);
            pool.close()
        }
        PoolCommand::Grow { path, size } => {
            if let Some(size) = size {
                grow_file(&path, parse_size_bytes(&size)?)?;
            }
            let pool = OpenPool::open(&path)?;
            let info = pool.0.grow().context("Cannot grow the pool")?;
            if json {
                print_json(&pool_json(&info));
            } else {
                print_pool(&info);
            }
            pool.close()
        }
        PoolCommand::Check { path } => {
            let pool = OpenPool::open(&path)?;
            let report = pool.0.check().context("Check could not run")?;
            if json {
                print_json(&check_json(&report));
            } else {
                print_check(&report);
            }
            pool.close()?;
            if !report.is_clean() {
                bail!("{} finding(s) in {}", report.findings.len(), path.display());
            }
            Ok(())
        }
    }
}

pub fn volume(cmd: VolumeCommand, json: bool) -> Result<()> {
    match cmd {
        VolumeCommand::Create {
            pool,
            name,
            size,
            block_size,
            read_only,
        } => {
            let pool = OpenPool::open(&pool)?;
            let opts = VolumeOptions {
                logical_block_size: block_size,
                read_only,
                hidden: false,
            };
            let info = pool
                .0
                .create_volume(&name, parse_size_bytes(&size)?, opts)?;
            report_volume(&info, json);
            pool.close()
        }
        VolumeCommand::List { pool, all } => {
            let pool = OpenPool::open(&pool)?;
            let volumes: Vec<VolumeInfo> = pool
                .0
                .volumes()
                .into_iter()
                .filter(|v| all || !v.hidden)
                .collect();
            report_volumes(&volumes, json, false);
            pool.close()
        }
        VolumeCommand::Delete { pool, name } => delete(&pool, &name, json),
        VolumeCommand::Grow { pool, name, size } => {
            let pool = OpenPool::open(&pool)?;
            let id = pool.volume(&name)?.id;
            let info = pool.0.resize_volume(id, parse_size_bytes(&size)?)?;
            report_volume(&info, json);
            pool.close()
        }
        VolumeCommand::Rename {
            pool,
            name,
            new_name,
        } => {
            let pool = OpenPool::open(&pool)?;
            let id = pool.volume(&name)?.id;
            let info = pool.0.rename_volume(id, &new_name)?;
            report_volume(&info, json);
            pool.close()
        }
        VolumeCommand::Set {
            pool,
            name,
            read_only,
        } => {
            let pool = OpenPool::open(&pool)?;
            let id = pool.volume(&name)?.id;
            let info = pool.0.set_read_only(id, read_only)?;
            report_volume(&info, json);
            pool.close()
        }
    }
}

pub fn snapshot(cmd: SnapshotCommand, json: bool) -> Result<()> {
    match cmd {
        SnapshotCommand::Create {
            pool,
            source,
            name,
            read_only,
        } => {
            let pool = OpenPool::open(&pool)?;
            let id = pool.volume(&source)?.id;
            let opts = VolumeOptions {
                read_only,
                ..VolumeOptions::default()
            };
            let info = pool.0.snapshot(id, &name, opts)?;
            report_volume(&info, json);
            pool.close()
        }
        SnapshotCommand::List { pool } => {
            let pool = OpenPool::open(&pool)?;
            let all = pool.0.volumes();
            let snapshots: Vec<VolumeInfo> = all
                .iter()
                .filter(|v| v.parent.is_some() && !v.hidden)
                .cloned()
                .collect();
            report_volumes(&snapshots, json, true);
            pool.close()
        }
        SnapshotCommand::Delete { pool, name } => delete(&pool, &name, json),
        SnapshotCommand::Restore {
            pool,
            volume,
            snapshot,
        } => {
            let pool = OpenPool::open(&pool)?;
            let vol = pool.volume(&volume)?.id;
            let snap = pool.volume(&snapshot)?.id;
            pool.0.restore(vol, snap)?;
            let info = pool.0.volume(vol)?;
            report_volume(&info, json);
            pool.close()
        }
    }
}

fn delete(path: &Path, name: &str, json: bool) -> Result<()> {
    let pool = OpenPool::open(path)?;
    let info = pool.volume(name)?;
    pool.0.delete_volume(info.id)?;
    pool.0
        .wait_reclaim()
        .context("Reclaiming the deleted volume's space failed")?;
    if json {
        print_json(&json!({ "deleted": info.name, "id": info.id.to_string() }));
    } else {
        println!("deleted {}", info.name);
    }
    pool.close()
}

fn grow_file(path: &Path, size_bytes: u64) -> Result<()> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("Cannot stat {}", path.display()))?;
    if !meta.is_file() {
        bail!("--size only applies to a pool file; grow the device itself");
    }
    if size_bytes < meta.len() {
        bail!(
            "A pool cannot shrink ({} is larger than the requested size)",
            path.display()
        );
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(size_bytes))
        .with_context(|| format!("Cannot grow {}", path.display()))
}

fn report_pool(pool: &Pool, json: bool) {
    let info = pool.info();
    if json {
        print_json(&pool_json(&info));
    } else {
        print_pool(&info);
    }
}

fn report_volume(info: &VolumeInfo, json: bool) {
    if json {
        print_json(&volume_json(info));
    } else {
        print_volumes(std::slice::from_ref(info), info.parent.is_some());
    }
}

fn report_volumes(volumes: &[VolumeInfo], json: bool, with_parent: bool) {
    if json {
        print_json(&serde_json::Value::Array(
            volumes.iter().map(volume_json).collect(),
        ));
    } else {
        print_volumes(volumes, with_parent);
    }
}
