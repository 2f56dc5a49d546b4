//! What the CLI prints: one human table or one JSON document per command, from engine types.

use cairn_engine::{CheckReport, PoolInfo, VolumeInfo};
use serde_json::{json, Value};

use crate::size::format_size_bytes;

pub fn volume_json(v: &VolumeInfo) -> Value {
    json!({
        "id": v.id.to_string(),
        "name": v.name,
        "size_bytes": v.size_bytes,
        "logical_block_size": v.logical_block_size,
        "read_only": v.read_only,
        "hidden": v.hidden,
        "parent": v.parent.map(|p| p.to_string()),
        "created_unix_secs": v.created_unix_secs,
    })
}

pub fn pool_json(p: &PoolInfo) -> Value {
    json!({
        "name": p.name,
        "size_bytes": p.size_bytes,
        "data_bytes_total": p.data_bytes_total,
        "data_bytes_used": p.data_bytes_used,
        "data_bytes_free": p.data_bytes_free,
        "metadata_bytes_total": p.metadata_bytes_total,
        "metadata_bytes_used": p.metadata_bytes_used,
        "volume_count": p.volume_count,
        "generation": p.generation,
        "reclaim_pending": p.reclaim_pending,
        "quarantined_volumes": p.quarantined_volumes,
    })
}

pub fn check_json(report: &CheckReport) -> Value {
    json!({
        "clean": report.is_clean(),
        "findings": report.findings.iter().map(|f| json!({
            "kind": format!("{:?}", f.kind),
            "block": f.block,
            "path": f.path,
            "detail": f.detail,
        })).collect::<Vec<_>>(),
    })
}

pub fn print_json(value: &Value) {
    println!("{value:#}");
}

pub fn print_pool(p: &PoolInfo) {
    println!("pool        {}", p.name);
    println!("size        {}", format_size_bytes(p.size_bytes));
    println!(
        "data        {} used of {} ({} free)",
        format_size_bytes(p.data_bytes_used),
        format_size_bytes(p.data_bytes_total),
        format_size_bytes(p.data_bytes_free)
    );
    println!(
        "metadata    {} used of {}",
        format_size_bytes(p.metadata_bytes_used),
        format_size_bytes(p.metadata_bytes_total)
    );
    println!("volumes     {}", p.volume_count);
    println!("generation  {}", p.generation);
    if p.reclaim_pending {
        println!("reclaim     pending");
    }
    if p.quarantined_volumes > 0 {
        println!(
            "quarantined {} deleted volume(s): reclaim met a bad block, space lost (see pool check)",
            p.quarantined_volumes
        );
    }
}

/// One row per volume; a parent is shown by name when it is in the list, by id otherwise.
pub fn print_volumes(volumes: &[VolumeInfo], with_parent: bool) {
    if with_parent {
        println!(
            "{:<32} {:>12} {:<4} {:<32} {:>12}",
            "NAME", "SIZE", "RO", "PARENT", "CREATED"
        );
    } else {
        println!(
            "{:<32} {:>12} {:>6} {:<4} ID",
            "NAME", "SIZE", "BLOCK", "RO"
        );
    }
    for v in volumes {
        let ro = if v.read_only { "yes" } else { "no" };
        if with_parent {
            let parent = v
                .parent
                .and_then(|p| volumes.iter().find(|o| o.id == p).map(|o| o.name.clone()))
                .or_else(|| v.parent.map(|p| p.to_string()))
                .unwrap_or_default();
            println!(
                "{:<32} {:>12} {:<4} {:<32} {:>12}",
                v.name,
                format_size_bytes(v.size_bytes),
                ro,
                parent,
                v.created_unix_secs
            );
        } else {
            println!(
                "{:<32} {:>12} {:>6} {:<4} {}",
                v.name,
                format_size_bytes(v.size_bytes),
                v.logical_block_size,
                ro,
                v.id
            );
        }
    }
}

pub fn print_check(report: &CheckReport) {
    if report.is_clean() {
        println!("clean");
        return;
    }
    for f in &report.findings {
        println!("{:?} block {} at {}: {}", f.kind, f.block, f.path, f.detail);
    }
    println!("{} finding(s)", report.findings.len());
}
