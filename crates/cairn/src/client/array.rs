//! The array as an SMI-S client sees it: pools, volumes (with their pool from
//! CIM_AllocatedFromStoragePool and their source from CIM_StorageSynchronized), jobs, and the two
//! services the verbs invoke methods on — all found by enumeration in `root/cairn`, joined here.
//!
//! Invariant: only what the daemon answered over SMI-S is used; nothing is derived from the
//! daemon's internals (so any SMI-S array that answers the same way works the same).

use anyhow::{anyhow, bail, Result};
use cairn_cim::{Instance, InstancePath, KeyValue, Value};

use super::session::Session;
use crate::output::{JobRow, PoolRow, VolumeRow};

/// A volume row with the path the methods take.
#[derive(Debug, Clone)]
pub struct Volume {
    pub row: VolumeRow,
    pub path: InstancePath,
}

/// A pool row with its path.
#[derive(Debug, Clone)]
pub struct Pool {
    pub row: PoolRow,
    pub path: InstancePath,
}

/// A replica relationship: source id, target id, and the association's path.
#[derive(Debug, Clone)]
pub struct Relationship {
    pub source: String,
    pub target: String,
    pub path: InstancePath,
}

/// One consistent read of the array's volumes, pools and relationships.
pub struct ArrayView {
    pub pools: Vec<Pool>,
    pub volumes: Vec<Volume>,
    pub relationships: Vec<Relationship>,
}

fn text<'a>(i: &'a Instance, name: &str) -> Option<&'a str> {
    i.get(name).and_then(Value::as_str)
}

fn number(i: &Instance, name: &str) -> Option<u64> {
    i.get(name).and_then(Value::as_u64)
}

fn key_text<'a>(p: &'a InstancePath, name: &str) -> Option<&'a str> {
    match p.key(name)? {
        KeyValue::String(s) | KeyValue::Numeric(s, _) => Some(s),
        _ => None,
    }
}

fn reference<'a>(i: &'a Instance, name: &str) -> Option<&'a InstancePath> {
    i.get(name).and_then(Value::as_reference)
}

fn path_of(i: &Instance) -> Result<InstancePath> {
    i.path
        .clone()
        .ok_or_else(|| anyhow!("The daemon returned a {} without a path", i.class_name))
}

/// Seconds since the epoch of a CIM datetime timestamp (`yyyymmddHHMMSS.mmmmmmsUUU`).
fn unix_secs(v: Option<&Value>) -> Option<u64> {
    let Value::DateTime(d) = v? else { return None };
    let s = d.as_str();
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, day) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hh, mm, ss) = (n(8..10)?, n(10..12)?, n(12..14)?);
    let sign = if s.get(21..22)? == "-" { -1 } else { 1 };
    let offset_min = sign * n(22..25)?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss - offset_min * 60).ok()
}

impl ArrayView {
    pub fn load(s: &Session) -> Result<ArrayView> {
        let pools: Vec<Pool> = s
            .enumerate("CIM_StoragePool")?
            .iter()
            .filter(|p| p.get("Primordial").and_then(Value::as_bool) != Some(true))
            .map(pool)
            .collect::<Result<_>>()?;
        let mut pool_of = Vec::new();
        for a in s.enumerate("CIM_AllocatedFromStoragePool")? {
            if let (Some(ante), Some(dep)) =
                (reference(&a, "Antecedent"), reference(&a, "Dependent"))
            {
                if let (Some(pool), Some(vol)) = (
                    pools.iter().find(|p| p.path.same_keys(ante)),
                    key_text(dep, "DeviceID"),
                ) {
                    pool_of.push((vol.to_owned(), pool.row.name.clone()));
                }
            }
        }
        let relationships: Vec<Relationship> = s
            .enumerate("CIM_StorageSynchronized")?
            .iter()
            .filter_map(|r| {
                Some(Relationship {
                    source: key_text(reference(r, "SystemElement")?, "DeviceID")?.to_owned(),
                    target: key_text(reference(r, "SyncedElement")?, "DeviceID")?.to_owned(),
                    path: r.path.clone()?,
                })
            })
            .collect();
        let mut volumes = Vec::new();
        for v in s.enumerate("CIM_StorageVolume")? {
            let mut vol = volume(&v)?;
            vol.row.pool = pool_of
                .iter()
                .find(|(id, _)| *id == vol.row.id)
                .map(|(_, p)| p.clone())
                .unwrap_or_default();
            vol.row.parent = relationships
                .iter()
                .find(|r| r.target == vol.row.id)
                .map(|r| r.source.clone());
            volumes.push(vol);
        }
        let mut pools = pools;
        for p in &mut pools {
            p.row.volume_count = volumes.iter().filter(|v| v.row.pool == p.row.name).count() as u64;
        }
        volumes.sort_by(|a, b| a.row.name.cmp(&b.row.name));
        Ok(ArrayView {
            pools,
            volumes,
            relationships,
        })
    }

    /// The volume or snapshot called `name`.
    pub fn volume(&self, name: &str) -> Result<&Volume> {
        self.volumes
            .iter()
            .find(|v| v.row.name == name)
            .ok_or_else(|| anyhow!("No volume named '{name}' on the daemon"))
    }

    /// The pool called `name`, or the only pool when `name` is `None`; `how` tells the user how
    /// to name one when there are several.
    pub fn pool(&self, name: Option<&str>, how: &str) -> Result<&Pool> {
        match name {
            Some(n) => self.pools.iter().find(|p| p.row.name == n).ok_or_else(|| {
                anyhow!(
                    "No pool named '{n}' on the daemon (pools: {})",
                    self.pool_names()
                )
            }),
            None => match self.pools.as_slice() {
                [only] => Ok(only),
                _ => bail!(
                    "The daemon has several pools ({}): {how}",
                    self.pool_names()
                ),
            },
        }
    }

    fn pool_names(&self) -> String {
        let names: Vec<&str> = self.pools.iter().map(|p| p.row.name.as_str()).collect();
        names.join(", ")
    }
}

fn pool(i: &Instance) -> Result<Pool> {
    let total = number(i, "TotalManagedSpace").unwrap_or(0);
    let free = number(i, "RemainingManagedSpace").unwrap_or(0);
    Ok(Pool {
        row: PoolRow {
            name: text(i, "ElementName")
                .or_else(|| text(i, "PoolID"))
                .unwrap_or_default()
                .to_owned(),
            data_bytes_total: total,
            data_bytes_used: total.saturating_sub(free),
            data_bytes_free: free,
            volume_count: 0,
            detail: None,
        },
        path: path_of(i)?,
    })
}

fn volume(i: &Instance) -> Result<Volume> {
    let block = number(i, "BlockSize").unwrap_or(0);
    let blocks = number(i, "NumberOfBlocks").unwrap_or(0);
    let status = i.get("OperationalStatus");
    let copying =
        matches!(status, Some(Value::Array(_, s)) if s.iter().any(|v| v.as_u64() == Some(8)));
    Ok(Volume {
        row: VolumeRow {
            id: text(i, "DeviceID").unwrap_or_default().to_owned(),
            name: text(i, "ElementName").unwrap_or_default().to_owned(),
            pool: String::new(),
            size_bytes: block.saturating_mul(blocks),
            logical_block_size: block,
            read_only: number(i, "Access") == Some(1),
            hidden: false,
            copying,
            parent: None,
            created_unix_secs: unix_secs(i.get("InstallDate")),
        },
        path: path_of(i)?,
    })
}

/// A job row from a CIM_ConcreteJob instance (id = the InstanceID after its last `:`).
pub fn job(i: &Instance) -> JobRow {
    let iid = text(i, "InstanceID").unwrap_or_default();
    JobRow {
        id: iid.rsplit(':').next().unwrap_or(iid).to_owned(),
        state_code: number(i, "JobState")
            .and_then(|n| u16::try_from(n).ok())
            .unwrap_or(0),
        state: text(i, "JobStatus").unwrap_or_default().to_owned(),
        percent_complete: number(i, "PercentComplete")
            .and_then(|n| u16::try_from(n).ok())
            .unwrap_or(0),
        description: text(i, "Description").unwrap_or_default().to_owned(),
        error: text(i, "ErrorDescription").map(str::to_owned),
        target: None,
    }
}

/// The two services the verbs invoke methods on.
pub struct Services {
    pub configuration: InstancePath,
    pub replication: InstancePath,
}

impl Services {
    pub fn find(s: &Session) -> Result<Services> {
        let one = |class: &str| -> Result<InstancePath> {
            let found = s.enumerate(class)?;
            match found.as_slice() {
                [only] => path_of(only),
                _ => bail!("The daemon has {} {class} instances, not one", found.len()),
            }
        };
        Ok(Services {
            configuration: one("CIM_StorageConfigurationService")?,
            replication: one("CIM_ReplicationService")?,
        })
    }
}
