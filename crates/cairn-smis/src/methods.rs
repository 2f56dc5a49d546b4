//! The extrinsic methods of the array: replica creation (CreateElementReplica, CreateReplica),
//! ModifyReplicaSynchronization, ReturnToStoragePool, CreateOrModifyElementFromStoragePool,
//! GetSupportedSizeRange, the job methods (GetError, GetErrors, RequestStateChange), the rename
//! behind ModifyInstance of a volume's ElementName, and Cairn's vendor method
//! `Cairn_StoragePool.CheckConsistency` (the online check of one pool).
//!
//! Invariants: a method either does what it answers 0 (or 4096) for, or leaves nothing behind —
//! every volume it created before a refusal is deleted again; management methods run one at a time
//! (the provider's `ops` lock) — but for CheckConsistency, which changes nothing and may take
//! long, so it holds no lock while it reads; return values come from [`crate::retcode`] only.

use std::sync::atomic::Ordering;

use cairn_array::replica::{SYNC_TYPE_CLONE, SYNC_TYPE_SNAPSHOT};
use cairn_array::{PoolInfo, ReplicaRecord, SizeRules, Volume, VolumeId, VolumeSpec};
use cairn_cim::{CimError, CimType, InstancePath, MethodCall, MethodName, MethodResult, Value};

use crate::copy::{self, CopyPlan};
use crate::jobs::{
    now_unix_secs, JobRecord, StopOutcome, JOB_STATE_KILLED, JOB_STATE_RUNNING,
    JOB_STATE_TERMINATED,
};
use crate::limits::{
    CHECK_FINDING_LINES_MAX, CHECK_FINDING_LINE_BYTES_MAX, COPY_JOBS_RUNNING_MAX,
    GENERATED_NAME_ATTEMPTS_MAX, GENERATED_NAME_BASE_CHARS_MAX, JOB_STOP_WAIT,
};
use crate::model::{self, Snapshot};
use crate::provider::ArrayProvider;
use crate::retcode::{self, Refusal};

type Outcome = Result<MethodResult, Refusal>;

/// One method's implementation.
type Handler = fn(&ArrayProvider, &MethodCall<'_>) -> Outcome;

const fn name(class: &'static str, method: &'static str) -> MethodName {
    MethodName { class, method }
}

/// Every method the array implements, with its implementation: what
/// `Provider::methods` lists, and what a resolved call's position indexes.
const METHODS: [(MethodName, Handler); 11] = [
    (
        name(model::RS_CLASS, "CreateElementReplica"),
        create_element_replica,
    ),
    (
        name(model::RS_CLASS, "ModifyReplicaSynchronization"),
        modify_sync,
    ),
    (name(model::SCS_CLASS, "CreateReplica"), create_replica),
    (
        name(model::SCS_CLASS, "ReturnToStoragePool"),
        return_to_pool,
    ),
    (
        name(model::SCS_CLASS, "CreateOrModifyElementFromStoragePool"),
        create_or_modify,
    ),
    (name(model::POOL_CLASS, "GetSupportedSizeRange"), size_range),
    (name(model::POOL_CLASS, "GetSupportedSizes"), sizes),
    (
        name(model::POOL_CLASS, "CheckConsistency"),
        check_consistency,
    ),
    (name(model::JOB_CLASS, "GetError"), get_error),
    (name(model::JOB_CLASS, "GetErrors"), get_errors),
    (
        name(model::JOB_CLASS, "RequestStateChange"),
        job_state_change,
    ),
];

/// The methods the array implements, in the order [`invoke_resolved`] indexes.
pub fn names() -> Vec<MethodName> {
    METHODS.iter().map(|(n, _)| *n).collect()
}

/// How many methods [`names`] lists (the host-access methods are indexed after them).
pub const COUNT: usize = METHODS.len();

/// Runs method `METHODS[implementation]` (or refuses a method the array does not implement); a
/// refusal becomes its return value (and a log line with the reason).
pub fn invoke_resolved(
    p: &ArrayProvider,
    call: &MethodCall<'_>,
    implementation: Option<usize>,
) -> MethodResult {
    let outcome = match implementation.and_then(|i| METHODS.get(i)) {
        Some((_, handler)) => handler(p, call),
        None => Err(Refusal::not_supported(format!(
            "{}.{} is not implemented",
            call.class_name, call.method
        ))),
    };
    outcome.unwrap_or_else(|r| {
        tracing::info!(method = call.method, code = r.code, "refused: {}", r.reason);
        r.into_result()
    })
}

fn ok() -> MethodResult {
    MethodResult::code(Value::Uint32(retcode::COMPLETED))
}

// ---- parameters -----------------------------------------------------------------------------

fn u64_param(call: &MethodCall<'_>, name: &str) -> Result<Option<u64>, Refusal> {
    call.param(name)
        .map(|v| {
            v.as_u64()
                .ok_or_else(|| Refusal::invalid(format!("{name} is not a number")))
        })
        .transpose()
}

fn u16_param(call: &MethodCall<'_>, name: &str) -> Result<Option<u16>, Refusal> {
    u64_param(call, name)?
        .map(|v| u16::try_from(v).map_err(|_| Refusal::invalid(format!("{name} out of range"))))
        .transpose()
}

fn str_param<'a>(call: &'a MethodCall<'_>, name: &str) -> Option<&'a str> {
    call.param(name).and_then(Value::as_str)
}

fn ref_param<'a>(
    call: &'a MethodCall<'_>,
    name: &str,
) -> Result<Option<&'a InstancePath>, Refusal> {
    call.param(name)
        .map(|v| {
            v.as_reference()
                .ok_or_else(|| Refusal::invalid(format!("{name} is not a reference")))
        })
        .transpose()
}

fn required<T>(v: Option<T>, name: &str) -> Result<T, Refusal> {
    v.ok_or_else(|| Refusal::invalid(format!("{name} is required")))
}

// ---- resolving references -------------------------------------------------------------------

/// The model volume `path` names.
fn resolve_volume(p: &ArrayProvider, path: &InstancePath) -> Result<Volume, Refusal> {
    let system_ok = model::key_text(path, "SystemName").is_none_or(|s| s == p.identity.system_name);
    let id = model::volume_id_of(path)
        .filter(|_| system_ok)
        .ok_or_else(|| Refusal::invalid(format!("{path} is not a volume of this array")))?;
    p.array
        .volume(id)
        .filter(model::in_model)
        .ok_or_else(|| Refusal::invalid(format!("No volume {id}")))
}

/// The concrete pool `path` names (never the primordial pool).
fn resolve_pool(p: &ArrayProvider, path: &InstancePath) -> Result<PoolInfo, Refusal> {
    model::pool_name_of(path)
        .and_then(|n| p.array.pool(n))
        .ok_or_else(|| Refusal::invalid(format!("{path} is not a concrete pool of this array")))
}

/// A free name derived from `base` (`<base>-<kind>-<counter>`), at most 64 characters.
fn generated_name(p: &ArrayProvider, base: &str, kind: &str) -> Result<String, Refusal> {
    let base: String = base.chars().take(GENERATED_NAME_BASE_CHARS_MAX).collect();
    let base = base.trim_end();
    for _ in 0..GENERATED_NAME_ATTEMPTS_MAX {
        let n = p.names.fetch_add(1, Ordering::Relaxed);
        let name = format!("{base}-{kind}-{:06x}", n & 0xff_ffff);
        if p.array.volume_by_name(&name).is_none() {
            return Ok(name);
        }
    }
    Err(Refusal::new(retcode::FAILED, "No free generated name"))
}

// ---- replicas -------------------------------------------------------------------------------

/// One replica request, whichever method it came from.
struct ReplicaRequest<'a> {
    name: Option<&'a str>,
    sync_type: u16,
    source: &'a InstancePath,
    target_pool: Option<&'a InstancePath>,
    /// The replica keeps no relationship (CreateReplica CopyType 5).
    unassociated: bool,
}

fn create_element_replica(p: &ArrayProvider, call: &MethodCall<'_>) -> Outcome {
    let sync_type = required(u16_param(call, "SyncType")?, "SyncType")?;
    if sync_type != SYNC_TYPE_SNAPSHOT && sync_type != SYNC_TYPE_CLONE {
        return Err(Refusal::not_supported(format!(
            "SyncType {sync_type} (7 and 8 are supported)"
        )));
    }
    if !matches!(u16_param(call, "Mode")?, None | Some(2) | Some(3)) {
        return Err(Refusal::invalid("Mode must be 2 (Sync) or 3 (Async)"));
    }
    if !matches!(
        u16_param(call, "WaitForCopyState")?,
        None | Some(2) | Some(4)
    ) {
        return Err(Refusal::invalid(
            "WaitForCopyState must be 2 (Initialized) or 4 (Synchronized)",
        ));
    }
    if ref_param(call, "TargetElement")?.is_some() {
        return Err(Refusal::not_supported(
            "Replicas into an existing TargetElement",
        ));
    }
    let req = ReplicaRequest {
        name: str_param(call, "ElementName"),
        sync_type,
        source: required(ref_param(call, "SourceElement")?, "SourceElement")?,
        target_pool: ref_param(call, "TargetPool")?,
        unassociated: false,
    };
    make_replica(p, &req)
}

fn create_replica(p: &ArrayProvider, call: &MethodCall<'_>) -> Outcome {
    let (sync_type, unassociated) = match u16_param(call, "CopyType")? {
        None | Some(4) => (SYNC_TYPE_SNAPSHOT, false),
        Some(5) => (SYNC_TYPE_CLONE, true),
        Some(2) | Some(3) => return Err(Refusal::not_supported("Mirrors (CopyType 2, 3)")),
        Some(t) => return Err(Refusal::invalid(format!("CopyType {t}"))),
    };
    let req = ReplicaRequest {
        name: str_param(call, "ElementName"),
        sync_type,
        source: required(ref_param(call, "SourceElement")?, "SourceElement")?,
        target_pool: ref_param(call, "TargetPool")?,
        unassociated,
    };
    make_replica(p, &req)
}

/// Starts the worker of a cross-pool copy (a thread in production).
type CopyStarter<'a> = &'a mut dyn FnMut(CopyPlan) -> std::io::Result<()>;

fn make_replica(p: &ArrayProvider, req: &ReplicaRequest<'_>) -> Outcome {
    let array = p.array.clone();
    let jobs = p.jobs.clone();
    make_replica_with(p, req, &mut |plan| {
        copy::spawn(array.clone(), jobs.clone(), plan)
    })
}

fn make_replica_with(
    p: &ArrayProvider,
    req: &ReplicaRequest<'_>,
    start: CopyStarter<'_>,
) -> Outcome {
    let _ops = p.ops.lock();
    let src = resolve_volume(p, req.source)?;
    if model::is_copying(&src) {
        return Err(Refusal::new(
            retcode::IN_USE,
            format!("Volume {} is still being copied", src.id),
        ));
    }
    let target_pool = match req.target_pool {
        Some(path) => Some(resolve_pool(p, path)?).filter(|t| t.name != src.pool),
        None => None,
    };
    let kind = if req.sync_type == SYNC_TYPE_CLONE {
        "clone"
    } else {
        "snap"
    };
    let name = match req.name {
        Some(n) => n.to_owned(),
        None => generated_name(p, &src.name, kind)?,
    };
    match target_pool {
        None => same_pool(p, req, &src, &name),
        Some(target_pool) => cross_pool(p, req, &src, &target_pool, &name, start),
    }
}

fn same_pool(p: &ArrayProvider, req: &ReplicaRequest<'_>, src: &Volume, name: &str) -> Outcome {
    let mut tag = ReplicaRecord::replica(src.id, req.sync_type, 0);
    if req.unassociated {
        tag = tag.detached();
    }
    let spec = VolumeSpec {
        replica: Some(tag),
        ..VolumeSpec::default()
    };
    // The backend makes the replica with its record in one operation: no request sees it untagged.
    let info = p.array.snapshot(src.id, name, &spec)?;
    let source = p.identity.volume_path(src.id);
    let target = p.identity.volume_path(info.id);
    let mut out = ok().with_out("TargetElement", Value::Reference(target.clone()));
    if !req.unassociated {
        out = out.with_out(
            "Synchronization",
            Value::Reference(model::sync_path(&source, &target)),
        );
    }
    Ok(out)
}

fn remove(p: &ArrayProvider, id: VolumeId) {
    if let Err(e) = p.array.delete_volume(id) {
        tracing::warn!("cannot remove volume {id} after a failed method: {e}");
    }
}

fn cross_pool(
    p: &ArrayProvider,
    req: &ReplicaRequest<'_>,
    src: &Volume,
    target_pool: &PoolInfo,
    name: &str,
    start: CopyStarter<'_>,
) -> Outcome {
    if p.jobs.running() >= COPY_JOBS_RUNNING_MAX {
        return Err(Refusal::new(
            retcode::FAILED,
            "Too many copies running; retry when one ends",
        ));
    }
    let now = now_unix_secs();
    let rec = JobRecord {
        id: 0,
        description: format!(
            "Copy of {} into pool {} as {}",
            src.name, target_pool.name, name
        ),
        state: JOB_STATE_RUNNING,
        percent: 0,
        submitted_unix_secs: now,
        last_change_unix_secs: now,
        finished_unix_secs: None,
        error: None,
        source: src.id.to_string(),
        target_name: name.to_owned(),
        target_pool: target_pool.name.clone(),
        pit_name: format!("cairn-pit-{:016x}", rand::random::<u64>()),
        target: None,
        sync_type: req.sync_type,
        stop_requested: None,
    };
    let pit_name = rec.pit_name.clone();
    let job = p.jobs.add(rec).map_err(|e| {
        Refusal::new(
            retcode::FAILED,
            format!("Cannot record the job: {}", e.report()),
        )
    })?;
    let mut created = Vec::new();
    match prepare_copy(p, req, src, target_pool, name, &pit_name, job, &mut created) {
        Ok(plan) => {
            let target = plan.target;
            p.jobs
                .update_durably(job, |j| j.target = Some(target.to_string()));
            if let Err(e) = start(plan) {
                created.iter().for_each(|id| remove(p, *id));
                p.jobs.discard(job);
                return Err(Refusal::new(
                    retcode::FAILED,
                    format!("Cannot start the copy: {e}"),
                ));
            }
            Ok(MethodResult::code(Value::Uint32(retcode::JOB_STARTED))
                .with_out("Job", Value::Reference(model::job_path(job)))
                .with_out(
                    "TargetElement",
                    Value::Reference(p.identity.volume_path(target)),
                ))
        }
        Err(r) => {
            created.iter().rev().for_each(|id| remove(p, *id));
            p.jobs.discard(job);
            Err(r)
        }
    }
}

/// Creates the copy's target and internal snapshot (pushing each id on `created` as it exists)
/// and checks the target pool can take the mapped data.
#[allow(clippy::too_many_arguments)]
fn prepare_copy(
    p: &ArrayProvider,
    req: &ReplicaRequest<'_>,
    src: &Volume,
    target_pool: &PoolInfo,
    name: &str,
    pit_name: &str,
    job: u64,
    created: &mut Vec<VolumeId>,
) -> Result<CopyPlan, Refusal> {
    let spec = VolumeSpec {
        logical_block_size: src.logical_block_size,
        read_only: false,
        hidden: true,
        replica: Some(ReplicaRecord::copy_target(src.id, req.sync_type, job)),
    };
    let target = p
        .array
        .create_volume(&target_pool.name, name, src.size_bytes, &spec)?;
    created.push(target.id);
    let pit_spec = VolumeSpec {
        read_only: true,
        hidden: true,
        replica: Some(ReplicaRecord::point_in_time(src.id, job)),
        ..VolumeSpec::default()
    };
    let pit = p.array.snapshot(src.id, pit_name, &pit_spec)?;
    created.push(pit.id);
    let mapped = p.array.mapped_bytes(pit.id)?;
    let free = p
        .array
        .pool(&target.pool)
        .map_or(0, |pool| pool.data_bytes_free);
    if mapped > free {
        return Err(Refusal::new(
            retcode::FAILED,
            format!(
                "Pool {} is too small: the copy needs {mapped} bytes, {free} are free",
                target.pool
            ),
        ));
    }
    Ok(CopyPlan {
        job,
        source: src.id,
        sync_type: req.sync_type,
        pit: pit.id,
        target: target.id,
        mapped_bytes: mapped,
        unassociated: req.unassociated,
        rate_bytes_per_sec: p.opts.copy_rate_bytes_per_sec,
    })
}

fn modify_sync(p: &ArrayProvider, call: &MethodCall<'_>) -> Outcome {
    let op = required(u16_param(call, "Operation")?, "Operation")?;
    let sync = required(ref_param(call, "Synchronization")?, "Synchronization")?;
    let bad = || {
        Refusal::invalid(format!(
            "{sync} is not a replica relationship of this array"
        ))
    };
    let target_id = model::key_ref(sync, "SyncedElement")
        .and_then(model::volume_id_of)
        .ok_or_else(bad)?;
    let source_id = model::key_ref(sync, "SystemElement")
        .and_then(model::volume_id_of)
        .ok_or_else(bad)?;
    let _ops = p.ops.lock();
    // The relationship is computed from its two sides alone, never from every volume.
    let snap = Snapshot::take_ids(p.array.as_ref(), &[target_id, source_id]);
    let (_, target) = snap.volume(target_id).ok_or_else(bad)?;
    let rel = model::relationship(&snap, target)
        .filter(|r| r.source == source_id)
        .ok_or_else(bad)?;
    let copying = model::is_copying(target);
    let busy = || {
        Refusal::new(
            retcode::IN_USE,
            format!("Replica {target_id} is still being copied"),
        )
    };
    match op {
        // A target already tagged Replica (hidden until its job ends) has nothing left to abort.
        2 if model::is_copy_target(target) => {
            let _ = p
                .jobs
                .request_stop(rel.tag.job, JOB_STATE_TERMINATED, JOB_STOP_WAIT);
            Ok(ok())
        }
        2 => Err(Refusal::invalid(
            "Abort: the replica is complete, nothing to abort",
        )),
        8 | 9 if copying => Err(busy()),
        8 | 9 => {
            p.array.set_replica(target_id, rel.tag.detached())?;
            Ok(ok())
        }
        15 if copying => Err(busy()),
        15 => {
            let (_, source) = snap.volume(source_id).ok_or_else(bad)?;
            if source.pool != target.pool {
                return Err(Refusal::not_supported(
                    "Restore from a replica in another pool",
                ));
            }
            p.array.restore(source_id, target_id)?;
            Ok(ok())
        }
        19 if copying => Err(busy()),
        19 => {
            p.array.delete_volume(target_id)?;
            Ok(ok())
        }
        _ => Err(Refusal::not_supported(format!("Operation {op}"))),
    }
}

// ---- block services -------------------------------------------------------------------------

fn return_to_pool(p: &ArrayProvider, call: &MethodCall<'_>) -> Outcome {
    let el = required(ref_param(call, "TheElement")?, "TheElement")?;
    let _ops = p.ops.lock();
    let v = resolve_volume(p, el)?;
    if model::is_copying(&v) {
        return Err(Refusal::new(
            retcode::IN_USE,
            format!("Volume {} is being copied: terminate its job first", v.id),
        ));
    }
    if let Some(access) = &p.opts.host_access {
        if access.model().is_mapped(&v.id.to_string()) {
            return Err(Refusal::new(
                retcode::IN_USE,
                format!("Volume {} is in a masking view: unmap it first", v.id),
            ));
        }
    }
    p.array.delete_volume(v.id)?;
    Ok(ok())
}

/// `size` rounded up to the backend's granularity, or the nearest size that can be had.
fn rounded_size(size: u64, rules: SizeRules) -> Result<u64, u64> {
    if size == 0 {
        return Err(rules.granularity_bytes);
    }
    match size.checked_next_multiple_of(rules.granularity_bytes) {
        Some(s) if s <= rules.max_bytes => Ok(s),
        _ => Err(rules.max_bytes),
    }
}

fn size_not_supported(nearest: u64) -> MethodResult {
    MethodResult::code(Value::Uint32(retcode::SIZE_NOT_SUPPORTED))
        .with_out("Size", Value::Uint64(nearest))
}

fn create_or_modify(p: &ArrayProvider, call: &MethodCall<'_>) -> Outcome {
    match ref_param(call, "TheElement")? {
        None => create_volume(p, call),
        Some(el) => modify_volume(p, call, el),
    }
}

fn create_volume(p: &ArrayProvider, call: &MethodCall<'_>) -> Outcome {
    match u16_param(call, "ElementType")? {
        None | Some(5) => {}
        Some(t) => {
            return Err(Refusal::not_supported(format!(
                "ElementType {t}: Cairn volumes are thin (5)"
            )))
        }
    }
    let pool = match ref_param(call, "InPool")? {
        Some(path) => resolve_pool(p, path)?,
        None => {
            let pools = p.array.pools();
            match pools.as_slice() {
                [only] => only.clone(),
                _ => {
                    return Err(Refusal::invalid(
                        "InPool is required when there are several pools",
                    ))
                }
            }
        }
    };
    let size = required(u64_param(call, "Size")?, "Size")?;
    let size = match rounded_size(size, p.array.size_rules()) {
        Ok(s) => s,
        Err(nearest) => return Ok(size_not_supported(nearest)),
    };
    let _ops = p.ops.lock();
    let name = match str_param(call, "ElementName") {
        Some(n) => n.to_owned(),
        None => generated_name(p, "volume", "new")?,
    };
    let v = p
        .array
        .create_volume(&pool.name, &name, size, &VolumeSpec::default())?;
    Ok(ok()
        .with_out("TheElement", Value::Reference(p.identity.volume_path(v.id)))
        .with_out("Size", Value::Uint64(v.size_bytes)))
}

fn modify_volume(p: &ArrayProvider, call: &MethodCall<'_>, el: &InstancePath) -> Outcome {
    let _ops = p.ops.lock();
    let mut v = resolve_volume(p, el)?;
    if model::is_copying(&v) {
        return Err(Refusal::new(
            retcode::IN_USE,
            format!("Volume {} is being copied", v.id),
        ));
    }
    if let Some(size) = u64_param(call, "Size")? {
        let size = match rounded_size(size, p.array.size_rules()) {
            Ok(s) if s >= v.size_bytes => s,
            Ok(_) => return Ok(size_not_supported(v.size_bytes)),
            Err(nearest) => return Ok(size_not_supported(nearest.max(v.size_bytes))),
        };
        if size > v.size_bytes {
            v = p.array.grow_volume(v.id, size)?;
        }
    }
    if let Some(name) = str_param(call, "ElementName").filter(|n| *n != v.name) {
        v = p.array.rename_volume(v.id, name)?;
    }
    Ok(ok()
        .with_out("TheElement", Value::Reference(p.identity.volume_path(v.id)))
        .with_out("Size", Value::Uint64(v.size_bytes)))
}

/// ModifyInstance of a volume's ElementName: CIM errors rather than return values (an intrinsic
/// operation), mapped from the backend by [`retcode::cim_error`].
pub fn rename_volume(p: &ArrayProvider, path: &InstancePath, name: &str) -> Result<(), CimError> {
    let _ops = p.ops.lock();
    let v = resolve_volume(p, path).map_err(|r| CimError::not_found(r.reason))?;
    if model::is_copying(&v) {
        return Err(CimError::failed(format!("Volume {} is being copied", v.id)));
    }
    p.array
        .rename_volume(v.id, name)
        .map(|_| ())
        .map_err(retcode::cim_error)
}

fn sizes(_: &ArrayProvider, _: &MethodCall<'_>) -> Outcome {
    Err(Refusal::new(
        retcode::USE_SIZE_RANGE,
        "Sizes are a range: use GetSupportedSizeRange",
    ))
}

fn size_range(p: &ArrayProvider, call: &MethodCall<'_>) -> Outcome {
    let target = call
        .target
        .ok_or_else(|| Refusal::invalid("GetSupportedSizeRange is invoked on a pool"))?;
    resolve_pool(p, target)?;
    // This method's ElementType map: 3 Storage Volume, 5 Thin Provisioned Volume (the same thing
    // here); 2 Storage Pool and the logical disks are not elements Cairn creates.
    match u16_param(call, "ElementType")? {
        None | Some(3) | Some(5) => {}
        Some(t) => {
            return Err(Refusal::new(
                retcode::INVALID_ELEMENT_TYPE,
                format!("ElementType {t}: only volumes (3, 5)"),
            ))
        }
    }
    let rules = p.array.size_rules();
    Ok(ok()
        .with_out("MinimumVolumeSize", Value::Uint64(rules.granularity_bytes))
        .with_out("MaximumVolumeSize", Value::Uint64(rules.max_bytes))
        .with_out("VolumeSizeDivisor", Value::Uint64(rules.granularity_bytes)))
}

/// Cairn_StoragePool.CheckConsistency: the backend's online check of the pool's last commit.
/// FindingCount counts every finding; Findings holds the first `CHECK_FINDING_LINES_MAX`, each
/// clipped to `CHECK_FINDING_LINE_BYTES_MAX` (the answer stays bounded however damaged the pool).
fn check_consistency(p: &ArrayProvider, call: &MethodCall<'_>) -> Outcome {
    let target = call
        .target
        .ok_or_else(|| Refusal::invalid("CheckConsistency is invoked on a pool"))?;
    let pool = resolve_pool(p, target)?;
    let report = p.array.check_pool(&pool.name)?;
    let lines = report
        .findings
        .iter()
        .take(CHECK_FINDING_LINES_MAX)
        .map(|line| Value::string(clipped(line, CHECK_FINDING_LINE_BYTES_MAX)))
        .collect();
    Ok(ok()
        .with_out("FindingCount", Value::Uint64(report.findings.len() as u64))
        .with_out("Findings", Value::Array(CimType::String, lines))
        .with_out("Generation", Value::Uint64(report.generation))
        .with_out("VolumesChecked", Value::Uint64(report.volumes))
        .with_out("BlocksInUse", Value::Uint64(report.blocks_in_use)))
}

/// The longest prefix of `line` of at most `bytes_max` bytes that ends on a character boundary.
fn clipped(line: &str, bytes_max: usize) -> &str {
    let end = (0..=line.len().min(bytes_max))
        .rev()
        .find(|&i| line.is_char_boundary(i))
        .expect("0 is a boundary");
    &line[..end]
}

// ---- jobs -----------------------------------------------------------------------------------

fn job_of(p: &ArrayProvider, call: &MethodCall<'_>) -> Result<JobRecord, Refusal> {
    call.target
        .and_then(model::job_id_of)
        .and_then(|id| p.jobs.get(id))
        .ok_or_else(|| Refusal::invalid("No such job"))
}

fn get_error(p: &ArrayProvider, call: &MethodCall<'_>) -> Outcome {
    job_errors(p, call, false)
}

fn get_errors(p: &ArrayProvider, call: &MethodCall<'_>) -> Outcome {
    job_errors(p, call, true)
}

fn job_errors(p: &ArrayProvider, call: &MethodCall<'_>, many: bool) -> Outcome {
    let job = job_of(p, call)?;
    let error = model::job_error(&job).map(|e| Value::Instance(Box::new(e)));
    Ok(match (error, many) {
        (None, _) => ok(),
        (Some(e), false) => ok().with_out("Error", e),
        (Some(e), true) => ok().with_out("Errors", Value::Array(CimType::Instance, vec![e])),
    })
}

fn job_state_change(p: &ArrayProvider, call: &MethodCall<'_>) -> Outcome {
    let job = job_of(p, call)?;
    let state = match required(u16_param(call, "RequestedState")?, "RequestedState")? {
        4 => JOB_STATE_TERMINATED,
        5 => JOB_STATE_KILLED,
        s @ (2 | 3 | 6) => return Err(Refusal::not_supported(format!("RequestedState {s}"))),
        s => return Err(Refusal::invalid(format!("RequestedState {s}"))),
    };
    match p.jobs.request_stop(job.id, state, JOB_STOP_WAIT) {
        StopOutcome::Stopped => Ok(ok()),
        StopOutcome::Stopping => Ok(MethodResult::code(Value::Uint32(retcode::JOB_STARTED))),
        StopOutcome::NotRunning => Err(Refusal::new(
            retcode::INVALID_STATE_TRANSITION,
            format!("Job {} has already finished", job.id),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::Step;
    use crate::interop::CAIRN_NAMESPACE;
    use crate::jobs::JOB_STATE_COMPLETED;
    use crate::provider::ArrayOptions;
    use cairn_array::ReplicaKind;
    use cairn_cim::{Instance, Provider};
    use cairn_engine::{Pool, PoolOptions, Storage};
    use std::sync::Arc;

    fn mem_pool(storage: &Storage, name: &str) {
        let dev = Arc::new(cairn_io::MemDevice::new(64 << 20));
        let pool = Pool::create(dev, name, PoolOptions::default()).expect("pool");
        storage.add_pool(pool).expect("add pool");
    }

    /// Instances of `class` whose reference `role` names `target`.
    fn referring(p: &ArrayProvider, class: &str, role: &str, target: &InstancePath) -> usize {
        let all = p
            .enumerate_instances(CAIRN_NAMESPACE, class)
            .expect("enumerate");
        all.iter()
            .filter(|i| {
                i.path
                    .as_ref()
                    .and_then(|path| model::key_ref(path, role))
                    .is_some_and(|r| r.same_keys(target))
            })
            .count()
    }

    fn op_status(i: &Instance) -> Value {
        i.get("OperationalStatus")
            .cloned()
            .expect("OperationalStatus")
    }

    /// What a client may see of a copy target in one state of the worker: the volume itself
    /// (GetInstance and EnumerateInstances), its pool, system, job and relationship.
    /// `related`: whether the target is in a StorageSynchronized (an unassociated copy is only
    /// while it runs).
    fn assert_target_visible(
        p: &ArrayProvider,
        job: u64,
        target: &InstancePath,
        related: bool,
        at: &str,
    ) {
        let inst = p
            .get_instance(CAIRN_NAMESPACE, target)
            .expect("GetInstance")
            .unwrap_or_else(|| panic!("target missing from GetInstance {at}"));
        let listed = p
            .enumerate_instances(CAIRN_NAMESPACE, model::VOLUME_CLASS)
            .expect("enumerate volumes");
        let listed = listed
            .iter()
            .filter(|i| i.path.as_ref().is_some_and(|x| x.same_keys(target)));
        assert_eq!(
            listed.count(),
            1,
            "target missing from EnumerateInstances {at}"
        );
        for (class, role, n) in [
            ("Cairn_SystemDevice", "PartComponent", 1),
            ("Cairn_AllocatedFromStoragePool", "Dependent", 1),
            ("Cairn_AffectedJobElement", "AffectedElement", 1),
            (model::SYNC_CLASS, "SyncedElement", usize::from(related)),
        ] {
            assert_eq!(
                referring(p, class, role, target),
                n,
                "{class} of the target {at}"
            );
        }
        let state = p.jobs.get(job).expect("job").state;
        let usable = Value::Array(CimType::Uint16, vec![Value::Uint16(2)]);
        if state == JOB_STATE_COMPLETED {
            assert_eq!(
                op_status(&inst),
                usable,
                "a completed job shows a usable replica {at}"
            );
            let id = model::volume_id_of(target).expect("id");
            let v = p.array.volume(id).expect("target");
            assert!(!v.hidden, "a completed job's replica is exported {at}");
        } else {
            assert_eq!(state, JOB_STATE_RUNNING, "{at}");
        }
    }

    /// A cross-pool copy records its job before it creates anything and forgets it again if it
    /// is refused meanwhile (e.g. a target pool too small); requests see a job only once its
    /// target is recorded, right before the method answers 4096.
    #[test]
    fn a_job_is_shown_only_once_its_target_is_recorded() {
        let storage = Arc::new(Storage::new());
        let p = ArrayProvider::new(storage, ArrayOptions::new("S"));
        let rec = JobRecord {
            id: 0,
            description: "copy".into(),
            state: JOB_STATE_RUNNING,
            percent: 0,
            submitted_unix_secs: now_unix_secs(),
            last_change_unix_secs: now_unix_secs(),
            finished_unix_secs: None,
            error: None,
            source: VolumeId([1; 16]).to_string(),
            target_name: "t".into(),
            target_pool: "pool1".into(),
            pit_name: "pit".into(),
            target: None,
            sync_type: SYNC_TYPE_SNAPSHOT,
            stop_requested: None,
        };
        let job = p.jobs.add(rec).expect("add");
        let seen = |class: &str| {
            p.enumerate_instances(CAIRN_NAMESPACE, class)
                .expect("enumerate")
                .len()
        };
        assert_eq!(
            seen(model::JOB_CLASS),
            0,
            "a job being prepared is not shown"
        );
        assert_eq!(seen("Cairn_OwningJobElement"), 0);
        p.jobs
            .update_durably(job, |j| j.target = Some(VolumeId([2; 16]).to_string()));
        assert_eq!(seen(model::JOB_CLASS), 1, "the answered job is shown");
        assert_eq!(seen("Cairn_OwningJobElement"), 1);
        let path = model::job_path(job);
        let got = p.get_instance(CAIRN_NAMESPACE, &path).expect("GetInstance");
        assert!(got.is_some());
    }

    /// ModifyInstance of ElementName renames the volume (through the CIM server, as a client sends
    /// it); a taken name, another property changed, or another class is refused with a CIM error
    /// and changes nothing.
    #[test]
    fn modify_instance_renames_a_volume_and_nothing_else() {
        use cairn_cim::client::{decode_response, encode_request, Operation};
        use cairn_cim::{CimHttpOutcome, CimStatus, HttpCimRequest};
        let storage = Arc::new(Storage::new());
        mem_pool(&storage, "pool0");
        let p = ArrayProvider::new(storage.clone(), ArrayOptions::new("S"));
        let a = p
            .array
            .create_volume("pool0", "a", 1 << 20, &VolumeSpec::default())
            .expect("a");
        p.array
            .create_volume("pool0", "b", 1 << 20, &VolumeSpec::default())
            .expect("b");
        let server = p.cim_server();
        let modify = |path: &InstancePath, props: &[(&str, Value)]| {
            let mut instance = Instance::new(path.class_name.clone());
            for (n, v) in props {
                instance = instance.with(n, v.clone());
            }
            let op = Operation::ModifyInstance {
                instance,
                path: path.clone(),
                property_list: props.iter().map(|(n, _)| (*n).to_owned()).collect(),
            };
            let req = encode_request("1", CAIRN_NAMESPACE, &op);
            let out = server.handle(&HttpCimRequest {
                cim_operation: Some("MethodCall"),
                cim_method: Some(&req.cim_method),
                cim_object: Some(&req.cim_object),
                cim_protocol_version: None,
                body: &req.body,
            });
            let CimHttpOutcome::Response(body) = out else {
                panic!("{out:?}")
            };
            decode_response(&body).expect("response").reply.map(|_| ())
        };
        let path = p.identity.volume_path(a.id);
        assert_eq!(
            modify(&path, &[("ElementName", Value::string("a2"))]),
            Ok(())
        );
        assert_eq!(storage.find_volume("a2").map(|(_, v)| v.id.0), Some(a.id.0));
        let status = |r: Result<(), CimError>| r.expect_err("refused").status;
        assert_eq!(
            status(modify(&path, &[("ElementName", Value::string("b"))])),
            CimStatus::AlreadyExists
        );
        assert_eq!(
            status(modify(&path, &[("ElementName", Value::string("x/y"))])),
            CimStatus::InvalidParameter
        );
        assert_eq!(
            status(modify(&path, &[("BlockSize", Value::Uint64(512))])),
            CimStatus::NotSupported
        );
        assert_eq!(
            status(modify(
                &model::pool_path("pool0"),
                &[("ElementName", Value::string("p"))]
            )),
            CimStatus::NotSupported
        );
        // A pool's LowSpaceWarningThreshold, 0 to 100, and nothing of the primordial pool.
        let pool = model::pool_path("pool0");
        let threshold = |v: u16| [("LowSpaceWarningThreshold", Value::Uint16(v))];
        assert_eq!(modify(&pool, &threshold(30)), Ok(()));
        let now = p
            .get_instance(CAIRN_NAMESPACE, &pool)
            .expect("get")
            .expect("pool");
        assert_eq!(
            now.get("LowSpaceWarningThreshold"),
            Some(&Value::Uint16(30))
        );
        assert_eq!(
            status(modify(&pool, &threshold(101))),
            CimStatus::InvalidParameter
        );
        assert_eq!(
            status(modify(&model::primordial_path(), &threshold(5))),
            CimStatus::NotSupported
        );
        let gone = p.identity.volume_path(VolumeId([9; 16]));
        assert_eq!(
            status(modify(&gone, &[("ElementName", Value::string("z"))])),
            CimStatus::NotFound
        );
        assert_eq!(storage.find_volume("a2").map(|(_, v)| v.id.0), Some(a.id.0));
        assert!(storage.find_volume("b").is_some());
    }

    /// CheckConsistency on a pool answers the engine's check of it; on the primordial pool 5.
    #[test]
    fn check_consistency_answers_the_check_of_a_concrete_pool_only() {
        let storage = Arc::new(Storage::new());
        mem_pool(&storage, "pool0");
        let p = ArrayProvider::new(storage, ArrayOptions::new("S"));
        p.array
            .create_volume("pool0", "a", 1 << 20, &VolumeSpec::default())
            .expect("a");
        let call = |target: &InstancePath| {
            check_consistency(
                &p,
                &MethodCall {
                    namespace: CAIRN_NAMESPACE,
                    target: Some(target),
                    class_name: model::POOL_CLASS,
                    method: "CheckConsistency",
                    params: &[],
                },
            )
        };
        let done = call(&model::pool_path("pool0")).expect("checked");
        assert_eq!(done.return_value, Value::Uint32(retcode::COMPLETED));
        let out = |name: &str| {
            done.out_params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{name} missing: {done:?}"))
        };
        assert_eq!(out("FindingCount"), Value::Uint64(0));
        assert_eq!(out("Findings"), Value::Array(CimType::String, Vec::new()));
        assert_eq!(out("VolumesChecked"), Value::Uint64(1));
        assert!(out("BlocksInUse").as_u64().expect("a number") > 0);
        assert!(out("Generation").as_u64().expect("a number") > 0);
        let refused = call(&model::primordial_path()).expect_err("refused");
        assert_eq!(refused.code, retcode::INVALID_PARAMETER);
    }

    #[test]
    fn a_clipped_finding_line_ends_on_a_character_boundary() {
        assert_eq!(clipped("abc", 5), "abc");
        assert_eq!(clipped("abc", 2), "ab");
        assert_eq!(clipped("a\u{e9}", 2), "a");
        assert_eq!(clipped("a\u{e9}", 3), "a\u{e9}");
    }

    /// Same-pool clones are made by one engine snapshot carrying the record: a request running
    /// meanwhile never shows an untagged snapshot, which would read as a SyncType 7 relationship.
    #[test]
    fn a_same_pool_clone_is_never_seen_untagged() {
        let storage = Arc::new(Storage::new());
        mem_pool(&storage, "pool0");
        let p = ArrayProvider::new(storage.clone(), ArrayOptions::new("S"));
        let src = p
            .array
            .create_volume("pool0", "src", 1 << 20, &VolumeSpec::default())
            .expect("volume");
        let source = p.identity.volume_path(src.id);
        let done = std::sync::atomic::AtomicBool::new(false);
        let started = std::sync::Barrier::new(2);
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                started.wait();
                while !done.load(Ordering::Relaxed) {
                    let all = p
                        .enumerate_instances(CAIRN_NAMESPACE, model::SYNC_CLASS)
                        .expect("enumerate");
                    for i in &all {
                        assert_eq!(i.get("SyncType"), Some(&Value::Uint16(SYNC_TYPE_CLONE)));
                    }
                }
            });
            started.wait();
            for _ in 0..1000 {
                let req = ReplicaRequest {
                    name: None,
                    sync_type: SYNC_TYPE_CLONE,
                    source: &source,
                    target_pool: None,
                    unassociated: false,
                };
                let answer = make_replica(&p, &req).expect("clone");
                assert_eq!(answer.return_value, Value::Uint32(retcode::COMPLETED));
                let clone = answer
                    .out_params
                    .iter()
                    .find_map(|(n, v)| match v {
                        Value::Reference(r) if n == "TargetElement" => model::volume_id_of(r),
                        _ => None,
                    })
                    .expect("TargetElement");
                p.array.delete_volume(clone).expect("delete the clone");
            }
            done.store(true, Ordering::Relaxed);
            reader.join().expect("reader");
        });
    }

    /// Regression: the completion tagged the hidden target `Replica` in one engine operation and
    /// unhid it in the next; in between the target was in no answer of the model, so a client
    /// whose copy finished between two calls got CIM_ERR_NOT_FOUND for its TargetElement. The
    /// worker runs here step by step, and after every engine operation the target must be seen.
    #[test]
    fn a_copy_target_is_visible_in_every_intermediate_state() {
        let storage = Arc::new(Storage::new());
        mem_pool(&storage, "pool0");
        mem_pool(&storage, "pool1");
        let p = ArrayProvider::new(storage.clone(), ArrayOptions::new("S"));
        let src = p
            .array
            .create_volume("pool0", "src", 4 << 20, &VolumeSpec::default())
            .expect("volume");
        let data = vec![0x5a; 2 << 20];
        let engine_id = |id: VolumeId| cairn_engine::VolumeId(id.0);
        let pool0 = storage.pool("pool0").expect("pool0");
        pool0
            .write(engine_id(src.id), 1 << 20, &data)
            .expect("write");
        for (sync_type, unassociated) in [(SYNC_TYPE_SNAPSHOT, false), (SYNC_TYPE_CLONE, true)] {
            let source = p.identity.volume_path(src.id);
            let pool1 = model::pool_path("pool1");
            let req = ReplicaRequest {
                name: None,
                sync_type,
                source: &source,
                target_pool: Some(&pool1),
                unassociated,
            };
            let mut started = None;
            let answer = make_replica_with(&p, &req, &mut |plan| {
                started = Some(plan);
                Ok(())
            })
            .expect("CreateElementReplica");
            assert_eq!(answer.return_value, Value::Uint32(retcode::JOB_STARTED));
            let out = |name: &str| match answer.out_params.iter().find(|(n, _)| n == name) {
                Some((_, Value::Reference(r))) => r.clone(),
                other => panic!("{name}: {other:?}"),
            };
            let target = out("TargetElement");
            let job = model::job_id_of(&out("Job")).expect("job id");
            let plan = started.expect("the copy was started");
            assert_target_visible(&p, job, &target, true, "when the method answers");
            let mut steps = Vec::new();
            crate::copy::run_observed(p.array.as_ref(), &p.jobs, &plan, &mut |step| {
                let related = !unassociated || matches!(step, Step::Chunk | Step::Flushed);
                assert_target_visible(&p, job, &target, related, &format!("after {step:?}"));
                steps.push(step);
            });
            let chunks = steps.iter().filter(|s| **s == Step::Chunk).count();
            assert!(chunks >= 2, "{steps:?}");
            assert_eq!(
                steps[chunks..],
                [
                    Step::Flushed,
                    Step::Tagged,
                    Step::Unhidden,
                    Step::PitDeleted,
                    Step::Finished
                ]
            );
            let v = p.array.volume(plan.target).expect("replica");
            let kind = v.replica.map(|t| t.kind);
            let want = if unassociated {
                ReplicaKind::Detached
            } else {
                ReplicaKind::Replica
            };
            assert_eq!(kind, Some(want));
            let mut back = vec![0; data.len()];
            let pool1 = storage.pool("pool1").expect("pool1");
            pool1
                .read(engine_id(plan.target), 1 << 20, &mut back)
                .expect("read");
            assert!(back == data, "the replica holds the source's data");
        }
    }

    /// GetInstance reads only what the instance is computed from (nothing, the pools, or the
    /// volumes its path names): it must find every instance EnumerateInstances shows, the same.
    #[test]
    fn get_instance_agrees_with_enumeration_for_every_class() {
        let storage = Arc::new(Storage::new());
        mem_pool(&storage, "pool0");
        mem_pool(&storage, "pool1");
        let p = ArrayProvider::new(storage.clone(), ArrayOptions::new("S"));
        let src = p
            .array
            .create_volume("pool0", "src", 4 << 20, &VolumeSpec::default())
            .expect("volume");
        let source = p.identity.volume_path(src.id);
        let pool1 = model::pool_path("pool1");
        for target_pool in [None, Some(&pool1)] {
            let req = ReplicaRequest {
                name: None,
                sync_type: SYNC_TYPE_SNAPSHOT,
                source: &source,
                target_pool,
                unassociated: false,
            };
            make_replica_with(&p, &req, &mut |_| Ok(())).expect("replica");
        }
        let mut seen = 0;
        for class in model::CAIRN_CLASSES {
            let all = p
                .enumerate_instances(CAIRN_NAMESPACE, class)
                .expect("enumerate");
            assert!(!all.is_empty() || class == model::PACKAGE_CLASS, "{class}");
            for inst in all {
                let path = inst
                    .path
                    .clone()
                    .expect("path")
                    .in_namespace(CAIRN_NAMESPACE);
                let got = p.get_instance(CAIRN_NAMESPACE, &path).expect("GetInstance");
                assert_eq!(got.as_ref(), Some(&inst), "{class}: {path}");
                seen += 1;
            }
        }
        assert!(seen > 30, "{seen}");
        let gone = p.identity.volume_path(VolumeId([9; 16]));
        let missing = p.get_instance(CAIRN_NAMESPACE, &gone).expect_err("gone");
        assert_eq!(missing.status, cairn_cim::CimStatus::NotFound);
        associations_of_each_volume_agree_with_enumeration(&p);
    }

    /// The associations the provider computes for one volume are those among all its instances
    /// of the class that refer to the volume.
    fn associations_of_each_volume_agree_with_enumeration(p: &ArrayProvider) {
        let volumes = p
            .enumerate_instances(CAIRN_NAMESPACE, model::VOLUME_CLASS)
            .expect("volumes");
        assert!(volumes.len() >= 3, "source, replica and copy target");
        let refers = |i: &Instance, v: &InstancePath| {
            i.properties
                .iter()
                .any(|prop| matches!(&prop.value, Some(Value::Reference(r)) if r.same_keys(v)))
        };
        let mut seen = 0;
        for v in volumes.iter().filter_map(|v| v.path.as_ref()) {
            for class in model::CAIRN_CLASSES {
                let Some(some) = p
                    .associations_referring_to(CAIRN_NAMESPACE, class, v)
                    .expect("associations")
                else {
                    continue;
                };
                let some: Vec<_> = some.into_iter().filter(|i| refers(i, v)).collect();
                let all = p.enumerate_instances(CAIRN_NAMESPACE, class).expect("all");
                let all: Vec<_> = all.into_iter().filter(|i| refers(i, v)).collect();
                assert_eq!(some, all, "{class} of {v}");
                seen += some.len();
            }
        }
        assert!(seen >= 8, "{seen}");
    }

    #[test]
    fn sizes_round_up_to_blocks_within_bounds() {
        let max = 1 << 50;
        let rules = SizeRules {
            granularity_bytes: 4096,
            max_bytes: max,
        };
        assert_eq!(rounded_size(1, rules), Ok(4096));
        assert_eq!(rounded_size(4096, rules), Ok(4096));
        assert_eq!(rounded_size(4097, rules), Ok(8192));
        assert_eq!(rounded_size(0, rules), Err(4096));
        assert_eq!(rounded_size(u64::MAX, rules), Err(max));
        assert_eq!(rounded_size(max + 1, rules), Err(max));
    }
}
