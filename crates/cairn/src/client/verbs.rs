//! The verbs against the daemon, each one SMI-S call on the objects `ArrayView` found:
//! create and grow → CreateOrModifyElementFromStoragePool, delete → ReturnToStoragePool, rename →
//! ModifyInstance of ElementName, snapshot → CreateElementReplica (SyncType 7), restore →
//! ModifyReplicaSynchronization (Operation 15), lists → the pull operations, job cancel →
//! RequestStateChange (Terminate), pool check → Cairn_StoragePool.CheckConsistency (Cairn's
//! vendor method).
//!
//! Invariant: a name is resolved to its volume's path before any method is invoked, so an
//! unknown name is refused without changing anything.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use cairn_cim::{InstancePath, Value};
use serde_json::json;

use super::array::{ArrayView, Pool, Services, Volume};
use super::jobs;
use super::session::Session;
use crate::output::{
    print_json, report_check, report_deleted, report_jobs, report_pool, report_pools,
    report_volume, report_volumes, CheckRow, VolumeRow,
};
use crate::size::parse_size_bytes;
use crate::{Command, JobCommand, PoolCommand, SnapshotCommand, VolumeCommand};

/// How long the daemon's check of one pool may take (it reads every metadata block of the pool's
/// last commit).
const CHECK_TIMEOUT: Duration = Duration::from_secs(3600);
/// SyncType 7: Snapshot.
const SYNC_TYPE_SNAPSHOT: u16 = 7;
/// CIM_StorageConfigurationService element type 5: Thin Provisioned Volume.
const ELEMENT_TYPE_THIN_VOLUME: u16 = 5;
/// ModifyReplicaSynchronization Operation 15: Restore.
const OPERATION_RESTORE: u16 = 15;
/// How `pool info` and `pool check` take a pool when the daemon has several.
const POOL_BY_NAME: &str = "name one of them";

/// Refuses, before connecting, what SMI-S cannot do.
pub fn check_supported(cmd: &Command) -> Result<()> {
    let offline_only = |what: &str| -> Result<()> {
        bail!("{what} has no SMI-S method: run it with --pool-file on a pool no daemon holds")
    };
    match cmd {
        Command::Pool(PoolCommand::Create { .. }) => offline_only("pool create"),
        Command::Pool(PoolCommand::Grow { .. }) => offline_only("pool grow"),
        Command::Volume(VolumeCommand::Create {
            block_size: Some(b),
            ..
        }) if *b != 4096 => offline_only("A logical block size other than 4096"),
        Command::Volume(VolumeCommand::Create {
            read_only: true, ..
        })
        | Command::Snapshot(SnapshotCommand::Create {
            read_only: true, ..
        }) => offline_only("--read-only"),
        Command::Volume(VolumeCommand::Set { .. }) => offline_only("volume set"),
        Command::Volume(VolumeCommand::List { all: true }) => {
            offline_only("Listing hidden volumes (--all)")
        }
        _ => Ok(()),
    }
}

pub fn run(cmd: Command, s: &Session, json: bool) -> Result<()> {
    match cmd {
        Command::Pool(cmd) => pool(cmd, s, json),
        Command::Volume(cmd) => volume(cmd, s, json),
        Command::Snapshot(cmd) => snapshot(cmd, s, json),
        Command::Job(cmd) => job(cmd, s, json),
        Command::Serve(_) => unreachable!("serve is dispatched by main"),
    }
}

fn pool(cmd: PoolCommand, s: &Session, json: bool) -> Result<()> {
    let view = ArrayView::load(s)?;
    match cmd {
        PoolCommand::List => {
            let rows: Vec<_> = view.pools.iter().map(|p| p.row.clone()).collect();
            report_pools(&rows, json);
        }
        PoolCommand::Info { name } => {
            report_pool(&view.pool(name.as_deref(), POOL_BY_NAME)?.row, json)
        }
        PoolCommand::Check { name } => {
            return check(s, view.pool(name.as_deref(), POOL_BY_NAME)?, json)
        }
        _ => unreachable!("refused by check_supported"),
    }
    Ok(())
}

/// `pool check` through the daemon: Cairn's vendor method Cairn_StoragePool.CheckConsistency,
/// the engine's online check of the pool's last commit (hosts keep writing meanwhile).
fn check(s: &Session, pool: &Pool, json: bool) -> Result<()> {
    let (_, reply) = s.invoke_within(
        CHECK_TIMEOUT,
        &pool.path,
        "CheckConsistency",
        Vec::new(),
        &[0],
    )?;
    let number = |name: &str| {
        reply
            .out(name)
            .and_then(Value::as_u64)
            .ok_or_else(|| anyhow!("CheckConsistency returned no {name}"))
    };
    let findings = match reply.out("Findings") {
        Some(Value::Array(_, lines)) => lines
            .iter()
            .map(|l| json!({ "text": l.as_str().unwrap_or_default() }))
            .collect(),
        _ => Vec::new(),
    };
    let row = CheckRow {
        pool: pool.row.name.clone(),
        generation: number("Generation")?,
        volumes: number("VolumesChecked")?,
        blocks_in_use: number("BlocksInUse")?,
        finding_count: number("FindingCount")?,
        findings,
    };
    report_check(&row, json)
}

/// The volume `id` as the daemon shows it now.
fn reload(s: &Session, id: &str) -> Result<VolumeRow> {
    ArrayView::load(s)?
        .volumes
        .into_iter()
        .find(|v| v.row.id == id)
        .map(|v| v.row)
        .ok_or_else(|| anyhow!("Volume {id} is gone"))
}

/// DeviceID of the volume a method returned in out parameter `name`.
fn returned_id(reply: &cairn_cim::client::MethodReply, name: &str) -> Result<String> {
    let path = reply
        .out(name)
        .and_then(Value::as_reference)
        .ok_or_else(|| anyhow!("The daemon returned no {name}"))?;
    match path.key("DeviceID") {
        Some(cairn_cim::KeyValue::String(id)) => Ok(id.clone()),
        _ => bail!("{name} {path} has no DeviceID"),
    }
}

fn create_or_modify(s: &Session, params: Vec<(String, Value)>) -> Result<VolumeRow> {
    let services = Services::find(s)?;
    let (_, reply) = s.invoke(
        &services.configuration,
        "CreateOrModifyElementFromStoragePool",
        params,
        &[0],
    )?;
    reload(s, &returned_id(&reply, "TheElement")?)
}

fn return_to_pool(s: &Session, v: &Volume, json: bool) -> Result<()> {
    let services = Services::find(s)?;
    s.invoke(
        &services.configuration,
        "ReturnToStoragePool",
        vec![("TheElement".into(), Value::Reference(v.path.clone()))],
        &[0],
    )?;
    report_deleted(&v.row, json);
    Ok(())
}

fn volume(cmd: VolumeCommand, s: &Session, json: bool) -> Result<()> {
    let view = ArrayView::load(s)?;
    let row = match cmd {
        VolumeCommand::Create {
            name, size, pool, ..
        } => {
            let size = parse_size_bytes(&size)?;
            let pool = view.pool(pool.as_deref(), "give --pool")?;
            create_or_modify(
                s,
                vec![
                    ("ElementName".into(), Value::string(name)),
                    (
                        "ElementType".into(),
                        Value::Uint16(ELEMENT_TYPE_THIN_VOLUME),
                    ),
                    ("InPool".into(), Value::Reference(pool.path.clone())),
                    ("Size".into(), Value::Uint64(size)),
                ],
            )?
        }
        VolumeCommand::List { .. } => {
            let rows: Vec<_> = view.volumes.iter().map(|v| v.row.clone()).collect();
            report_volumes(&rows, json, false);
            return Ok(());
        }
        VolumeCommand::Delete { name } => return return_to_pool(s, view.volume(&name)?, json),
        VolumeCommand::Grow { name, size } => {
            let v = view.volume(&name)?;
            create_or_modify(
                s,
                vec![
                    ("TheElement".into(), Value::Reference(v.path.clone())),
                    ("Size".into(), Value::Uint64(parse_size_bytes(&size)?)),
                ],
            )?
        }
        VolumeCommand::Rename { name, new_name } => {
            let v = view.volume(&name)?;
            s.modify(&v.path, &[("ElementName", Value::string(new_name))])?;
            reload(s, &v.row.id)?
        }
        VolumeCommand::Set { .. } => unreachable!("refused by check_supported"),
    };
    report_volume(&row, json);
    Ok(())
}

fn snapshot(cmd: SnapshotCommand, s: &Session, json: bool) -> Result<()> {
    let view = ArrayView::load(s)?;
    match cmd {
        SnapshotCommand::Create {
            source,
            name,
            pool,
            no_wait,
            ..
        } => create_snapshot(s, &view, &source, &name, pool.as_deref(), no_wait, json),
        SnapshotCommand::List => {
            let rows: Vec<_> = view
                .volumes
                .iter()
                .filter(|v| v.row.parent.is_some())
                .map(|v| v.row.clone())
                .collect();
            report_volumes(&rows, json, true);
            Ok(())
        }
        SnapshotCommand::Delete { name } => return_to_pool(s, view.volume(&name)?, json),
        SnapshotCommand::Restore { volume, snapshot } => {
            let vol = view.volume(&volume)?;
            let snap = view.volume(&snapshot)?;
            let rel = view
                .relationships
                .iter()
                .find(|r| r.source == vol.row.id && r.target == snap.row.id)
                .ok_or_else(|| anyhow!("'{snapshot}' is not a snapshot of '{volume}'"))?;
            let services = Services::find(s)?;
            s.invoke(
                &services.replication,
                "ModifyReplicaSynchronization",
                vec![
                    ("Operation".into(), Value::Uint16(OPERATION_RESTORE)),
                    ("Synchronization".into(), Value::Reference(rel.path.clone())),
                ],
                &[0],
            )?;
            report_volume(&reload(s, &vol.row.id)?, json);
            Ok(())
        }
    }
}

fn create_snapshot(
    s: &Session,
    view: &ArrayView,
    source: &str,
    name: &str,
    pool: Option<&str>,
    no_wait: bool,
    json: bool,
) -> Result<()> {
    let src = view.volume(source)?;
    let mut params = vec![
        ("ElementName".into(), Value::string(name)),
        ("SyncType".into(), Value::Uint16(SYNC_TYPE_SNAPSHOT)),
        ("SourceElement".into(), Value::Reference(src.path.clone())),
    ];
    if let Some(p) = pool {
        params.push((
            "TargetPool".into(),
            Value::Reference(view.pool(Some(p), POOL_BY_NAME)?.path.clone()),
        ));
    }
    let services = Services::find(s)?;
    let (code, reply) = s.invoke(
        &services.replication,
        "CreateElementReplica",
        params,
        &[0, 4096],
    )?;
    if code == 4096 {
        let job_path: InstancePath = reply
            .out("Job")
            .and_then(Value::as_reference)
            .cloned()
            .ok_or_else(|| anyhow!("CreateElementReplica started a job but returned none"))?;
        if no_wait {
            let mut job = super::array::job(&s.get(&job_path)?);
            job.target = returned_id(&reply, "TargetElement").ok();
            if json {
                print_json(&job.json());
            } else {
                println!("job {} started", job.id);
            }
            return Ok(());
        }
        jobs::wait(s, &job_path, json)?;
    }
    report_volume(&reload(s, &returned_id(&reply, "TargetElement")?)?, json);
    Ok(())
}

fn job(cmd: JobCommand, s: &Session, json: bool) -> Result<()> {
    match cmd {
        JobCommand::List => {
            let rows: Vec<_> = jobs::list(s)?.into_iter().map(|(j, _)| j).collect();
            report_jobs(&rows, json);
        }
        JobCommand::Show { id } => {
            let (j, _) = jobs::find(s, &id)?;
            report_jobs(&[j], json);
        }
        JobCommand::Cancel { id } => {
            let (_, path) = jobs::find(s, &id)?;
            jobs::cancel(s, &path)?;
            let (j, _) = jobs::find(s, &id)?;
            report_jobs(&[j], json);
        }
    }
    Ok(())
}
