//! The CLI on a pool file or device that no daemon holds (`--pool-file`): each command opens the
//! pool into a `Storage` of its own, performs one operation through it (which the engine commits
//! before returning), and closes the pool.
//!
//! Invariant: what needs a daemon (jobs, a copy into another pool) is refused with a message
//! saying so, before the pool is opened.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use cairn_engine::{ErrorKind, Pool, Storage, VolumeInfo, VolumeOptions};

use crate::check_bar::{check_bar, feed};
use crate::device::{cli_pool_options, open_device};
use crate::output::{
    report_check, report_deleted, report_pool, report_pools, report_volume, report_volumes,
    CheckRow, PoolRow, VolumeRow,
};
use crate::size::parse_size_bytes;
use crate::{Command, PoolCommand, SnapshotCommand, VolumeCommand};

/// Runs one command on the pool at `path`.
pub fn run(cmd: Command, path: &Path, json: bool) -> Result<()> {
    match cmd {
        Command::Pool(PoolCommand::Create { name, size }) => create_pool(path, &name, size, json),
        Command::Pool(cmd) => {
            if let PoolCommand::Grow { size: Some(size) } = &cmd {
                grow_file(path, parse_size_bytes(size)?)?;
            }
            with_pool(path, |p| pool(cmd, p, path, json))
        }
        Command::Volume(cmd) => with_pool(path, |p| volume(cmd, p, json)),
        Command::Snapshot(cmd) => with_pool(path, |p| snapshot(cmd, p, json)),
        Command::Job(_) => bail!("Jobs exist only in a running daemon: drop --pool-file"),
        Command::Serve(_) => unreachable!("serve is dispatched by main"),
    }
}

/// Opens the pool at `path`, runs `f` on it and closes it (the final commit), whatever `f` did.
fn with_pool(path: &Path, f: impl FnOnce(&OpenPool) -> Result<()>) -> Result<()> {
    let pool = OpenPool::open(path)?;
    let done = f(&pool);
    let closed = pool.pool.close().context("Cannot close the pool");
    done.and(closed)
}

/// An open pool that is closed (final commit) when the command is done; its volumes are changed
/// through the storage that holds it.
struct OpenPool {
    pool: Arc<Pool>,
    storage: Storage,
}

impl OpenPool {
    fn open(path: &Path) -> Result<OpenPool> {
        let dev = open_device(path, None)?;
        let pool = Pool::open(dev, cli_pool_options())
            .with_context(|| format!("Cannot open pool {}", path.display()))?;
        let storage = Storage::new();
        storage
            .add_pool(pool.clone())
            .with_context(|| format!("Cannot open pool {}", path.display()))?;
        Ok(OpenPool { pool, storage })
    }

    fn volume(&self, name: &str) -> Result<VolumeInfo> {
        self.pool
            .volume_by_name(name)
            .with_context(|| format!("No volume named '{name}' in pool {}", self.pool.name()))
    }

    fn row(&self, v: &VolumeInfo) -> VolumeRow {
        VolumeRow::from_engine(v, &self.pool.name())
    }
}

fn create_pool(path: &Path, name: &str, size: Option<String>, json: bool) -> Result<()> {
    let size = size.as_deref().map(parse_size_bytes).transpose()?;
    if !path.exists() && size.is_none() {
        bail!(
            "{} does not exist: give --size to create it",
            path.display()
        );
    }
    let dev = open_device(path, size)?;
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
    let pool = Pool::create(dev, name, cli_pool_options())
        .with_context(|| format!("Cannot create pool on {}", path.display()))?;
    let row = PoolRow::from_engine(&pool.info());
    pool.close().context("Cannot close the pool")?;
    report_pool(&row, json);
    Ok(())
}

fn pool(cmd: PoolCommand, pool: &OpenPool, path: &Path, json: bool) -> Result<()> {
    match cmd {
        PoolCommand::List => {
            report_pools(&[PoolRow::from_engine(&pool.pool.info())], json);
            Ok(())
        }
        PoolCommand::Info { name } => {
            holds(pool, name.as_deref(), path)?;
            report_pool(&PoolRow::from_engine(&pool.pool.info()), json);
            Ok(())
        }
        PoolCommand::Grow { .. } => {
            let info = pool.pool.grow().context("Cannot grow the pool")?;
            report_pool(&PoolRow::from_engine(&info), json);
            Ok(())
        }
        PoolCommand::Check { name } => {
            holds(pool, name.as_deref(), path)?;
            let bar = check_bar(json);
            let report = match &bar {
                Some(bar) => pool.pool.check_with_progress(feed(bar)),
                None => pool.pool.check(),
            };
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            let report = report.context("Check could not run")?;
            report_check(&CheckRow::from_engine(&report, &pool.pool.name()), json)
        }
        PoolCommand::Create { .. } => unreachable!("pool create is dispatched by run"),
    }
}

/// Refuses a pool name other than the one the pool file at `path` holds.
fn holds(pool: &OpenPool, name: Option<&str>, path: &Path) -> Result<()> {
    match name {
        Some(n) if n != pool.pool.name() => bail!(
            "{} holds pool '{}', not '{n}'",
            path.display(),
            pool.pool.name()
        ),
        _ => Ok(()),
    }
}

/// Refuses `--pool OTHER` on a pool file that holds another pool.
fn check_pool_name(pool: &OpenPool, wanted: Option<&str>, what: &str) -> Result<()> {
    match wanted {
        Some(n) if n != pool.pool.name() => bail!(
            "This pool file holds pool '{}', not '{n}'; {what}",
            pool.pool.name()
        ),
        _ => Ok(()),
    }
}

fn volume(cmd: VolumeCommand, pool: &OpenPool, json: bool) -> Result<()> {
    let info = match cmd {
        VolumeCommand::Create {
            name,
            size,
            pool: wanted,
            block_size,
            read_only,
        } => {
            check_pool_name(pool, wanted.as_deref(), "give the file of that pool")?;
            let opts = VolumeOptions {
                logical_block_size: block_size.unwrap_or(4096),
                read_only,
                ..VolumeOptions::default()
            };
            let size_bytes = parse_size_bytes(&size)?;
            let in_pool = pool.pool.name();
            pool.storage
                .create_volume(&in_pool, &name, size_bytes, opts)?
                .1
        }
        VolumeCommand::List { all } => {
            let rows: Vec<VolumeRow> = pool
                .pool
                .volumes()
                .iter()
                .filter(|v| all || !v.hidden)
                .map(|v| pool.row(v))
                .collect();
            report_volumes(&rows, json, false);
            return Ok(());
        }
        VolumeCommand::Delete { name } => return delete(pool, &name, json),
        VolumeCommand::Grow { name, size } => {
            let id = pool.volume(&name)?.id;
            pool.storage.resize_volume(id, parse_size_bytes(&size)?)?
        }
        VolumeCommand::Rename { name, new_name } => {
            let id = pool.volume(&name)?.id;
            pool.storage.rename_volume(id, &new_name)?
        }
        VolumeCommand::Set { name, read_only } => {
            let id = pool.volume(&name)?.id;
            pool.storage.set_read_only(id, read_only)?
        }
    };
    report_volume(&pool.row(&info), json);
    Ok(())
}

fn snapshot(cmd: SnapshotCommand, pool: &OpenPool, json: bool) -> Result<()> {
    let info = match cmd {
        SnapshotCommand::Create {
            source,
            name,
            pool: wanted,
            read_only,
            no_wait: _,
        } => {
            check_pool_name(
                pool,
                wanted.as_deref(),
                "a copy into another pool needs the daemon (drop --pool-file)",
            )?;
            let id = pool.volume(&source)?.id;
            let opts = VolumeOptions {
                read_only,
                ..VolumeOptions::default()
            };
            pool.storage.snapshot(id, &name, opts)?.1
        }
        SnapshotCommand::List => {
            let rows: Vec<VolumeRow> = pool
                .pool
                .volumes()
                .iter()
                .filter(|v| v.parent.is_some() && !v.hidden)
                .map(|v| pool.row(v))
                .collect();
            report_volumes(&rows, json, true);
            return Ok(());
        }
        SnapshotCommand::Delete { name } => return delete(pool, &name, json),
        SnapshotCommand::Restore { volume, snapshot } => {
            let vol = pool.volume(&volume)?.id;
            let snap = pool.volume(&snapshot)?.id;
            pool.storage.restore(vol, snap)?;
            pool.pool.volume(vol)?
        }
    };
    report_volume(&pool.row(&info), json);
    Ok(())
}

fn delete(pool: &OpenPool, name: &str, json: bool) -> Result<()> {
    let info = pool.volume(name)?;
    pool.storage.delete_volume(info.id)?;
    pool.pool
        .wait_reclaim()
        .context("Reclaiming the deleted volume's space failed")?;
    report_deleted(&pool.row(&info), json);
    Ok(())
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
