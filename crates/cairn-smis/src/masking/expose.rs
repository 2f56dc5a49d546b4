//! Masking and Mapping: `Cairn_ControllerConfigurationService.ExposePaths` / `HidePaths` over the
//! same views as Group Masking and Mapping. LUNames are `StorageVolume.Name` values (NAA),
//! InitiatorPortIDs IQNs, TargetPortIDs iSCSI endpoint names, DeviceNumbers the LUNs.
//!
//! ExposePaths without a ProtocolController makes a view with three groups of its own (named
//! `masking-<n>`) and makes unknown initiator names known; with one, it adds the initiators,
//! ports and volumes to that view's groups (which other views sharing them see too). HidePaths
//! takes them out again; DeleteProtocolController deletes the view and the groups only it used.
//! Each call is one `Change::All`: all of it happens or none.

use cairn_cim::{MethodCall, MethodResult, Value};
use cairn_export::access::{AccessModel, Change, GroupKind, HostAccess, View};
use cairn_export::ErrorKind;

use super::methods::{device_numbers, refs, Outcome};
use super::{view_of, view_path};
use crate::model::{self, Snapshot};
use crate::provider::ArrayProvider;
use crate::retcode::{self, Refusal};

const INVALID_LU: u32 = 4097;
const INVALID_INITIATOR: u32 = 4098;
const INVALID_TARGET: u32 = 4099;
/// ExposePaths: "Invalid permission".
const INVALID_PERMISSION: u32 = 4100;
/// HidePaths: "Target/initiator combination not exposed".
const NOT_EXPOSED: u32 = 4100;
/// ExposePaths: "Requested logical unit number in use".
const LUN_IN_USE: u32 = 4102;
/// DeviceAccesses: Read Write.
const READ_WRITE: u16 = 2;

/// What ExposePaths / HidePaths name, resolved to the model's names.
struct Paths {
    volumes: Vec<String>,
    initiators: Vec<String>,
    targets: Vec<String>,
    view: Option<View>,
}

fn strings(call: &MethodCall<'_>, name: &str) -> Vec<String> {
    match call.param(name) {
        Some(Value::Array(_, items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Volume ids (hex) of the NAA names `names`.
fn volume_ids(p: &ArrayProvider, names: &[String]) -> Result<Vec<String>, Refusal> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let snap = Snapshot::take(p.array.as_ref());
    let all: Vec<_> = snap.pools.iter().flat_map(|pv| pv.volumes.iter()).collect();
    names
        .iter()
        .map(|n| {
            all.iter()
                .find(|v| model::naa_name(v.id).eq_ignore_ascii_case(n))
                .map(|v| v.id.to_string())
                .ok_or_else(|| Refusal::new(INVALID_LU, format!("No volume named {n}")))
        })
        .collect()
}

fn resolve(
    p: &ArrayProvider,
    access: &dyn HostAccess,
    call: &MethodCall<'_>,
) -> Result<Paths, Refusal> {
    let model = access.model();
    let volumes = volume_ids(p, &strings(call, "LUNames"))?;
    let initiators: Vec<String> = strings(call, "InitiatorPortIDs")
        .iter()
        .map(|i| i.to_lowercase())
        .collect();
    if let Some(bad) = initiators
        .iter()
        .find(|i| !["iqn.", "eui.", "naa."].iter().any(|p| i.starts_with(p)))
    {
        return Err(Refusal::new(
            INVALID_INITIATOR,
            format!("{bad} is not an iSCSI name"),
        ));
    }
    let ports = access.target_ports();
    let targets = strings(call, "TargetPortIDs");
    if let Some(bad) = targets
        .iter()
        .find(|t| !ports.iter().any(|p| p.name == **t))
    {
        return Err(Refusal::new(
            INVALID_TARGET,
            format!("No target port {bad}"),
        ));
    }
    let view = match refs(call, "ProtocolControllers")?.as_slice() {
        [] => None,
        [one] => {
            let name = view_of(one)
                .ok_or_else(|| Refusal::invalid(format!("{one} is not a masking view")))?;
            Some(
                model
                    .view(name)
                    .cloned()
                    .ok_or_else(|| Refusal::invalid(format!("No masking view {name}")))?,
            )
        }
        _ => return Err(Refusal::not_supported("More than one ProtocolController")),
    };
    Ok(Paths {
        volumes,
        initiators,
        targets,
        view,
    })
}

/// The first `masking-<n>` that names no view and no group.
fn free_name(m: &AccessModel) -> String {
    (1..)
        .map(|n| format!("masking-{n}"))
        .find(|n| {
            m.view(n).is_none()
                && m.group(GroupKind::Initiator, n).is_none()
                && m.group(GroupKind::Target, n).is_none()
                && m.device_group(n).is_none()
        })
        .unwrap_or_default()
}

fn add(kind: GroupKind, name: &str, members: Vec<String>, luns: Vec<u16>) -> Change {
    Change::AddMembers {
        kind,
        name: name.to_owned(),
        members,
        luns,
    }
}

/// The changes that expose `paths`: unknown initiators made known, then the new view's groups
/// and view, or the members added to the named view's groups.
fn expose_changes(
    m: &AccessModel,
    paths: Paths,
    luns: Vec<u16>,
    all_ports: Vec<String>,
) -> (Vec<Change>, String) {
    let mut changes: Vec<Change> = paths
        .initiators
        .iter()
        .filter(|i| !m.initiators.contains(i))
        .map(|i| Change::AddInitiator(i.clone()))
        .collect();
    let view = paths.view.unwrap_or_else(|| {
        let name = free_name(m);
        for kind in [GroupKind::Initiator, GroupKind::Target, GroupKind::Device] {
            changes.push(Change::CreateGroup {
                kind,
                name: name.clone(),
                members: Vec::new(),
            });
        }
        View {
            name: name.clone(),
            initiator_group: name.clone(),
            target_group: name.clone(),
            device_group: name,
        }
    });
    let new_view = m.view(&view.name).is_none();
    let targets = match paths.targets.is_empty() && new_view {
        true => all_ports,
        false => paths.targets,
    };
    changes.push(add(
        GroupKind::Initiator,
        &view.initiator_group,
        paths.initiators,
        Vec::new(),
    ));
    changes.push(add(
        GroupKind::Target,
        &view.target_group,
        targets,
        Vec::new(),
    ));
    changes.push(add(
        GroupKind::Device,
        &view.device_group,
        paths.volumes,
        luns,
    ));
    let name = view.name.clone();
    if new_view {
        changes.push(Change::CreateView(view));
    }
    (changes, name)
}

fn exposed(p: &ArrayProvider, name: &str) -> MethodResult {
    let path = Value::Reference(view_path(&p.identity, name));
    MethodResult::code(Value::Uint32(retcode::COMPLETED)).with_out(
        "ProtocolControllers",
        Value::Array(cairn_cim::CimType::Reference, vec![path]),
    )
}

pub fn expose_paths(p: &ArrayProvider, access: &dyn HostAccess, call: &MethodCall<'_>) -> Outcome {
    let accesses = match call.param("DeviceAccesses") {
        Some(Value::Array(_, items)) => items.iter().map(Value::as_u64).collect(),
        _ => Vec::new(),
    };
    if accesses.iter().any(|a| *a != Some(u64::from(READ_WRITE))) {
        return Err(Refusal::new(
            INVALID_PERMISSION,
            "Only DeviceAccess 2 (Read Write)",
        ));
    }
    let luns = device_numbers(call)?;
    let paths = resolve(p, access, call)?;
    if paths.view.is_none() && paths.initiators.is_empty() {
        return Err(Refusal::invalid("A new view needs InitiatorPortIDs"));
    }
    let all_ports = access.target_ports().into_iter().map(|t| t.name).collect();
    let (changes, name) = expose_changes(&access.model(), paths, luns, all_ports);
    access.apply(Change::All(changes)).map_err(|e| {
        let code = match e.kind() {
            ErrorKind::InUse => LUN_IN_USE,
            ErrorKind::NotFound => INVALID_LU,
            ErrorKind::Io => retcode::FAILED,
            _ => retcode::INVALID_PARAMETER,
        };
        Refusal::new(code, e.context().to_owned())
    })?;
    Ok(exposed(p, &name))
}

pub fn hide_paths(p: &ArrayProvider, access: &dyn HostAccess, call: &MethodCall<'_>) -> Outcome {
    let paths = resolve(p, access, call)?;
    let view = paths
        .view
        .ok_or_else(|| Refusal::invalid("HidePaths needs the ProtocolController"))?;
    let mut changes = Vec::new();
    for (kind, group, members) in [
        (GroupKind::Device, &view.device_group, paths.volumes),
        (
            GroupKind::Initiator,
            &view.initiator_group,
            paths.initiators,
        ),
        (GroupKind::Target, &view.target_group, paths.targets),
    ] {
        if !members.is_empty() {
            changes.push(Change::RemoveMembers {
                kind,
                name: group.clone(),
                members,
            });
        }
    }
    if changes.is_empty() {
        return Err(Refusal::invalid("Nothing to hide"));
    }
    access.apply(Change::All(changes)).map_err(|e| {
        let code = match e.kind() {
            ErrorKind::InvalidArgument => NOT_EXPOSED,
            ErrorKind::Io => retcode::FAILED,
            _ => retcode::INVALID_PARAMETER,
        };
        Refusal::new(code, e.context().to_owned())
    })?;
    Ok(exposed(p, &view.name))
}

/// DeleteProtocolController: the view goes, and with it each of its groups no other view uses.
pub fn delete_controller(access: &dyn HostAccess, call: &MethodCall<'_>) -> Outcome {
    let m = access.model();
    let view = call
        .param("ProtocolController")
        .and_then(Value::as_reference)
        .and_then(view_of)
        .and_then(|n| m.view(n).cloned())
        .ok_or_else(|| Refusal::invalid("ProtocolController is not a masking view"))?;
    let mut changes = vec![Change::DeleteView(view.name.clone())];
    let others: Vec<&View> = m.views.iter().filter(|v| v.name != view.name).collect();
    for (kind, name) in [
        (GroupKind::Initiator, &view.initiator_group),
        (GroupKind::Target, &view.target_group),
        (GroupKind::Device, &view.device_group),
    ] {
        let shared = others.iter().any(|v| match kind {
            GroupKind::Initiator => &v.initiator_group == name,
            GroupKind::Target => &v.target_group == name,
            GroupKind::Device => &v.device_group == name,
        });
        if !shared {
            changes.push(Change::DeleteGroup {
                kind,
                name: name.clone(),
                force: false,
            });
        }
    }
    access
        .apply(Change::All(changes))
        .map_err(|e| Refusal::new(retcode::FAILED, e.context().to_owned()))?;
    Ok(MethodResult::code(Value::Uint32(retcode::COMPLETED)))
}
