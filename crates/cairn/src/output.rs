//! What the CLI prints: one human table or one JSON document per command. Both modes (a pool
//! file, or the daemon over SMI-S) fill the same rows, so `--json` has one schema whichever mode
//! answered (docs/smis.md, "The cairn CLI", lists it); a field one mode cannot know is `null`.

use cairn_engine::{CheckReport, PoolInfo, VolumeInfo};
use serde_json::{json, Value};

use crate::size::format_size_bytes;

/// One volume or snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeRow {
    pub id: String,
    pub name: String,
    pub pool: String,
    pub size_bytes: u64,
    pub logical_block_size: u64,
    pub read_only: bool,
    pub hidden: bool,
    /// Being filled by a copy job (not usable yet).
    pub copying: bool,
    /// Id of the volume this one is a snapshot or copy of.
    pub parent: Option<String>,
    pub created_unix_secs: Option<u64>,
}

impl VolumeRow {
    pub fn from_engine(v: &VolumeInfo, pool: &str) -> VolumeRow {
        VolumeRow {
            id: v.id.to_string(),
            name: v.name.clone(),
            pool: pool.to_owned(),
            size_bytes: v.size_bytes,
            logical_block_size: v.logical_block_size.into(),
            read_only: v.read_only,
            hidden: v.hidden,
            copying: false,
            parent: v.parent.map(|p| p.to_string()),
            created_unix_secs: Some(v.created_unix_secs),
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "pool": self.pool,
            "size_bytes": self.size_bytes,
            "logical_block_size": self.logical_block_size,
            "read_only": self.read_only,
            "hidden": self.hidden,
            "copying": self.copying,
            "parent": self.parent,
            "created_unix_secs": self.created_unix_secs,
        })
    }
}

/// One pool.
#[derive(Debug, Clone)]
pub struct PoolRow {
    pub name: String,
    pub data_bytes_total: u64,
    pub data_bytes_used: u64,
    pub data_bytes_free: u64,
    pub volume_count: u64,
    /// Known offline only (the engine's view), `None` over SMI-S.
    pub detail: Option<PoolInfo>,
}

impl PoolRow {
    pub fn from_engine(p: &PoolInfo) -> PoolRow {
        PoolRow {
            name: p.name.clone(),
            data_bytes_total: p.data_bytes_total,
            data_bytes_used: p.data_bytes_used,
            data_bytes_free: p.data_bytes_free,
            volume_count: p.volume_count as u64,
            detail: Some(p.clone()),
        }
    }

    pub fn json(&self) -> Value {
        let d = self.detail.as_ref();
        json!({
            "name": self.name,
            "data_bytes_total": self.data_bytes_total,
            "data_bytes_used": self.data_bytes_used,
            "data_bytes_free": self.data_bytes_free,
            "volume_count": self.volume_count,
            "size_bytes": d.map(|d| d.size_bytes),
            "metadata_bytes_total": d.map(|d| d.metadata_bytes_total),
            "metadata_bytes_used": d.map(|d| d.metadata_bytes_used),
            "generation": d.map(|d| d.generation),
            "reclaim_pending": d.map(|d| d.reclaim_pending),
            "quarantined_volumes": d.map(|d| d.quarantined_volumes),
        })
    }
}

/// One job of the daemon.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub id: String,
    /// CIM JobState (2..=10).
    pub state_code: u16,
    /// JobStatus text (Running, Completed, Exception, Terminated, Killed).
    pub state: String,
    pub percent_complete: u16,
    pub description: String,
    pub error: Option<String>,
    /// DeviceID of the volume the job creates, while it exists.
    pub target: Option<String>,
}

impl JobRow {
    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "state": self.state,
            "state_code": self.state_code,
            "percent_complete": self.percent_complete,
            "description": self.description,
            "error": self.error,
            "target": self.target,
        })
    }
}

/// What `pool check` found, from the engine (`--pool-file`) or the daemon's CheckConsistency.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckRow {
    pub pool: String,
    /// The generation (commit) checked.
    pub generation: u64,
    /// Volumes, snapshots and deleted volumes pending reclaim walked.
    pub volumes: u64,
    pub blocks_in_use: u64,
    /// Every finding, also those not shown.
    pub finding_count: u64,
    /// The findings shown, each `{"text"}` with `"kind", "block", "path", "detail"` offline
    /// (the daemon sends the line only, and at most its first few thousand).
    pub findings: Vec<Value>,
}

impl CheckRow {
    pub fn from_engine(report: &CheckReport, pool: &str) -> CheckRow {
        CheckRow {
            pool: pool.to_owned(),
            generation: report.generation,
            volumes: report.volumes as u64,
            blocks_in_use: report.blocks_in_use,
            finding_count: report.findings.len() as u64,
            findings: report
                .findings
                .iter()
                .map(|f| {
                    json!({
                        "text": f.to_string(),
                        "kind": format!("{:?}", f.kind),
                        "block": f.block,
                        "path": f.path,
                        "detail": f.detail,
                    })
                })
                .collect(),
        }
    }

    fn json(&self) -> Value {
        json!({
            "pool": self.pool,
            "clean": self.finding_count == 0,
            "finding_count": self.finding_count,
            "generation": self.generation,
            "volumes": self.volumes,
            "blocks_in_use": self.blocks_in_use,
            "findings": self.findings,
        })
    }
}

/// Prints what `pool check` found; a finding makes the command fail (exit 1).
pub fn report_check(row: &CheckRow, json: bool) -> anyhow::Result<()> {
    if json {
        print_json(&row.json());
    } else if row.finding_count == 0 {
        println!("clean");
    } else {
        for f in &row.findings {
            println!("{}", f["text"].as_str().unwrap_or_default());
        }
        let hidden = row.finding_count - row.findings.len() as u64;
        if hidden > 0 {
            println!("... and {hidden} more");
        }
        println!("{} finding(s)", row.finding_count);
    }
    if row.finding_count > 0 {
        anyhow::bail!("{} finding(s) in pool '{}'", row.finding_count, row.pool);
    }
    Ok(())
}

pub fn print_json(value: &Value) {
    println!("{value:#}");
}

pub fn report_pool(p: &PoolRow, json: bool) {
    if json {
        print_json(&p.json());
        return;
    }
    println!("pool        {}", p.name);
    if let Some(d) = &p.detail {
        println!("size        {}", format_size_bytes(d.size_bytes));
    }
    println!(
        "data        {} used of {} ({} free)",
        format_size_bytes(p.data_bytes_used),
        format_size_bytes(p.data_bytes_total),
        format_size_bytes(p.data_bytes_free)
    );
    if let Some(d) = &p.detail {
        println!(
            "metadata    {} used of {}",
            format_size_bytes(d.metadata_bytes_used),
            format_size_bytes(d.metadata_bytes_total)
        );
    }
    println!("volumes     {}", p.volume_count);
    if let Some(d) = &p.detail {
        println!("generation  {}", d.generation);
        if d.reclaim_pending {
            println!("reclaim     pending");
        }
        if d.quarantined_volumes > 0 {
            println!(
                "quarantined {} deleted volume(s): reclaim met a bad block, space lost (see pool check)",
                d.quarantined_volumes
            );
        }
    }
}

pub fn report_pools(pools: &[PoolRow], json: bool) {
    if json {
        print_json(&Value::Array(pools.iter().map(PoolRow::json).collect()));
        return;
    }
    println!(
        "{:<24} {:>12} {:>12} {:>8}",
        "NAME", "SIZE", "FREE", "VOLUMES"
    );
    for p in pools {
        println!(
            "{:<24} {:>12} {:>12} {:>8}",
            p.name,
            format_size_bytes(p.data_bytes_total),
            format_size_bytes(p.data_bytes_free),
            p.volume_count
        );
    }
}

pub fn report_volume(v: &VolumeRow, json: bool) {
    if json {
        print_json(&v.json());
    } else {
        print_volumes(std::slice::from_ref(v), v.parent.is_some());
    }
}

pub fn report_volumes(volumes: &[VolumeRow], json: bool, with_parent: bool) {
    if json {
        print_json(&Value::Array(volumes.iter().map(VolumeRow::json).collect()));
    } else {
        print_volumes(volumes, with_parent);
    }
}

pub fn report_deleted(v: &VolumeRow, json: bool) {
    if json {
        print_json(&json!({ "deleted": v.name, "id": v.id }));
    } else {
        println!("deleted {}", v.name);
    }
}

pub fn report_jobs(jobs: &[JobRow], json: bool) {
    if json {
        print_json(&Value::Array(jobs.iter().map(JobRow::json).collect()));
        return;
    }
    println!("{:<8} {:<11} {:>5} DESCRIPTION", "ID", "STATE", "DONE");
    for j in jobs {
        println!(
            "{:<8} {:<11} {:>4}% {}{}",
            j.id,
            j.state,
            j.percent_complete,
            j.description,
            j.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
}

/// One row per volume; a parent is shown by name when it is in the list, by id otherwise.
fn print_volumes(volumes: &[VolumeRow], with_parent: bool) {
    if with_parent {
        println!(
            "{:<32} {:>12} {:<4} {:<16} {:<32}",
            "NAME", "SIZE", "RO", "POOL", "PARENT"
        );
    } else {
        println!(
            "{:<32} {:>12} {:>6} {:<4} {:<16} ID",
            "NAME", "SIZE", "BLOCK", "RO", "POOL"
        );
    }
    for v in volumes {
        let ro = if v.read_only { "yes" } else { "no" };
        let size = format_size_bytes(v.size_bytes);
        if with_parent {
            let parent = v
                .parent
                .as_ref()
                .map(|p| {
                    volumes
                        .iter()
                        .find(|o| &o.id == p)
                        .map_or_else(|| p.clone(), |o| o.name.clone())
                })
                .unwrap_or_default();
            println!(
                "{:<32} {:>12} {:<4} {:<16} {:<32}",
                v.name, size, ro, v.pool, parent
            );
        } else {
            let state = if v.copying { " (copying)" } else { "" };
            println!(
                "{:<32} {:>12} {:>6} {:<4} {:<16} {}{state}",
                v.name, size, v.logical_block_size, ro, v.pool, v.id
            );
        }
    }
}
