//! The methods of `Cairn_GroupMaskingMappingService` (CreateGroup, AddMembers, RemoveMembers,
//! DeleteGroup, CreateMaskingView, DeleteMaskingView) and of
//! `Cairn_StorageHardwareIDManagementService` (CreateStorageHardwareID, DeleteStorageHardwareID)
//! and, through [`super::expose`], of `Cairn_ControllerConfigurationService`,
//! each one `HostAccess::apply` answered at once (0 with the new element, never a job).
//!
//! Invariant: a refused change answers its return code and changes nothing (the access model
//! checks the whole change before keeping any of it); return codes come from [`code`] alone.

use cairn_cim::{InstancePath, MethodCall, MethodName, MethodResult, Value};
use cairn_export::access::{Change, GroupKind, HostAccess, View};
use cairn_export::ErrorKind;

use super::{
    group_of, group_path, hwid_of, hwid_path, ports, view_of, view_path, CCS_CLASS, GMMS_CLASS,
    HWMS_CLASS,
};
use crate::model;
use crate::provider::ArrayProvider;
use crate::retcode::{self, Refusal};

/// CreateStorageHardwareID: "ID already created".
const ID_ALREADY_CREATED: u32 = 0x1000;
/// CreateStorageHardwareID: "Hardware implementation does not support specified IDType".
const ID_TYPE_NOT_SUPPORTED: u32 = 0x1001;
/// DeleteStorageHardwareID: "Specified instance not found".
const ID_NOT_FOUND: u32 = 0x1000;
/// StorageHardwareID.IDType: iSCSI Name.
const ID_TYPE_ISCSI: u16 = 5;

pub(super) type Outcome = Result<MethodResult, Refusal>;

/// One host-access method's implementation.
type Handler = fn(&ArrayProvider, &dyn HostAccess, &MethodCall<'_>) -> Outcome;

const fn name(class: &'static str, method: &'static str) -> MethodName {
    MethodName { class, method }
}

/// Every host-access method with its implementation: what the provider lists after the array's
/// own methods (when host access is wired), in the order [`invoke_resolved`] indexes.
const METHODS: [(MethodName, Handler); 11] = [
    (name(GMMS_CLASS, "CreateGroup"), |_, a, c| {
        create_group(a, c)
    }),
    (name(GMMS_CLASS, "AddMembers"), |_, a, c| {
        members(a, c, true)
    }),
    (name(GMMS_CLASS, "RemoveMembers"), |_, a, c| {
        members(a, c, false)
    }),
    (name(GMMS_CLASS, "DeleteGroup"), |_, a, c| {
        delete_group(a, c)
    }),
    (name(GMMS_CLASS, "CreateMaskingView"), create_view),
    (name(GMMS_CLASS, "DeleteMaskingView"), |_, a, c| {
        delete_view(a, c)
    }),
    (name(CCS_CLASS, "ExposePaths"), super::expose::expose_paths),
    (name(CCS_CLASS, "HidePaths"), super::expose::hide_paths),
    (name(CCS_CLASS, "DeleteProtocolController"), |_, a, c| {
        super::expose::delete_controller(a, c)
    }),
    (name(HWMS_CLASS, "CreateStorageHardwareID"), |_, a, c| {
        create_hwid(a, c)
    }),
    (name(HWMS_CLASS, "DeleteStorageHardwareID"), |_, a, c| {
        delete_hwid(a, c)
    }),
];

/// The host-access methods, in the order [`invoke_resolved`] indexes.
pub fn names() -> Vec<MethodName> {
    METHODS.iter().map(|(n, _)| *n).collect()
}

/// Runs host-access method `METHODS[implementation]`; `None` when no host access is wired or
/// the position is not one of them.
pub fn invoke_resolved(
    p: &ArrayProvider,
    call: &MethodCall<'_>,
    implementation: usize,
) -> Option<MethodResult> {
    let access = p.opts.host_access.as_deref()?;
    let (_, handler) = METHODS.get(implementation)?;
    let _ops = p.ops.lock();
    let result = handler(p, access, call).unwrap_or_else(|r| {
        tracing::info!(method = call.method, code = r.code, reason = %r.reason, "refused");
        r.into_result()
    });
    p.host_access_ran();
    Some(result)
}

/// The return value of a refused change: unknown element, taken name or bad argument → 5
/// Invalid Parameter; a LUN already used or a group in a view → 6 In Use where the method
/// declares it (`in_use`), else 4 Failed; anything else → 4.
fn code(kind: ErrorKind, in_use: bool) -> u32 {
    match kind {
        ErrorKind::NotFound | ErrorKind::AlreadyExists | ErrorKind::InvalidArgument => {
            retcode::INVALID_PARAMETER
        }
        ErrorKind::InUse if in_use => retcode::IN_USE,
        _ => retcode::FAILED,
    }
}

fn apply(access: &dyn HostAccess, change: Change, in_use: bool) -> Result<(), Refusal> {
    access
        .apply(change)
        .map(|_| ())
        .map_err(|e| Refusal::new(code(e.kind(), in_use), e.context().to_owned()))
}

fn done(name: &str, path: InstancePath) -> MethodResult {
    MethodResult::code(Value::Uint32(retcode::COMPLETED)).with_out(name, Value::Reference(path))
}

fn ref_param<'a>(call: &'a MethodCall<'_>, name: &str) -> Result<&'a InstancePath, Refusal> {
    call.param(name)
        .and_then(Value::as_reference)
        .ok_or_else(|| Refusal::invalid(format!("{name} is required and must be a reference")))
}

pub(super) fn refs<'a>(
    call: &'a MethodCall<'_>,
    name: &str,
) -> Result<Vec<&'a InstancePath>, Refusal> {
    match call.param(name) {
        None => Ok(Vec::new()),
        Some(Value::Array(_, items)) => items
            .iter()
            .map(|v| {
                v.as_reference()
                    .ok_or_else(|| Refusal::invalid(format!("{name} holds a non-reference")))
            })
            .collect(),
        Some(_) => Err(Refusal::invalid(format!("{name} must be an array"))),
    }
}

/// The model names of `paths` as members of a group of `kind`.
fn member_names(kind: GroupKind, paths: &[&InstancePath]) -> Result<Vec<String>, Refusal> {
    paths
        .iter()
        .map(|path| {
            let name = match kind {
                GroupKind::Initiator => hwid_of(path).map(str::to_owned),
                GroupKind::Target => ports::endpoint_name(path)
                    .filter(|_| path.class_name.to_ascii_lowercase().contains("iscsi"))
                    .map(str::to_owned),
                GroupKind::Device => model::volume_id_of(path).map(|id| id.to_string()),
            };
            name.ok_or_else(|| Refusal::invalid(format!("{path} cannot be in a {kind:?} group")))
        })
        .collect()
}

fn group_param(call: &MethodCall<'_>, name: &str) -> Result<(GroupKind, String), Refusal> {
    let path = ref_param(call, name)?;
    group_of(path).ok_or_else(|| Refusal::invalid(format!("{path} is not a masking group")))
}

fn create_group(access: &dyn HostAccess, call: &MethodCall<'_>) -> Outcome {
    let name = call
        .param("GroupName")
        .and_then(Value::as_str)
        .ok_or_else(|| Refusal::invalid("GroupName is required"))?
        .to_owned();
    let kind = match call.param("Type").and_then(Value::as_u64) {
        Some(2) => GroupKind::Initiator,
        Some(3) => GroupKind::Target,
        Some(4) => GroupKind::Device,
        _ => return Err(Refusal::invalid("Type must be 2, 3 or 4")),
    };
    let members = member_names(kind, &refs(call, "Members")?)?;
    apply(
        access,
        Change::CreateGroup {
            kind,
            name: name.clone(),
            members,
        },
        false,
    )?;
    Ok(done("MaskingGroup", group_path(kind, &name)))
}

/// DeviceNumbers as LUNs (decimal, or hexadecimal with 0x).
pub(super) fn device_numbers(call: &MethodCall<'_>) -> Result<Vec<u16>, Refusal> {
    let Some(Value::Array(_, items)) = call.param("DeviceNumbers") else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .map(|v| {
            let s = v.as_str().unwrap_or_default().trim();
            let n = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(hex) => u16::from_str_radix(hex, 16),
                None => s.parse(),
            };
            n.map_err(|_| Refusal::invalid(format!("DeviceNumber {s:?} is not a LUN")))
        })
        .collect()
}

fn members(access: &dyn HostAccess, call: &MethodCall<'_>, add: bool) -> Outcome {
    let (kind, name) = group_param(call, "MaskingGroup")?;
    let members = member_names(kind, &refs(call, "Members")?)?;
    let change = if add {
        Change::AddMembers {
            kind,
            name: name.clone(),
            members,
            luns: device_numbers(call)?,
        }
    } else {
        Change::RemoveMembers {
            kind,
            name: name.clone(),
            members,
        }
    };
    apply(access, change, add)?;
    Ok(done("MaskingGroup", group_path(kind, &name)))
}

fn delete_group(access: &dyn HostAccess, call: &MethodCall<'_>) -> Outcome {
    let (kind, name) = group_param(call, "MaskingGroup")?;
    let force = call
        .param("Force")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    apply(access, Change::DeleteGroup { kind, name, force }, false)?;
    Ok(MethodResult::code(Value::Uint32(retcode::COMPLETED)))
}

fn create_view(p: &ArrayProvider, access: &dyn HostAccess, call: &MethodCall<'_>) -> Outcome {
    if device_numbers(call).is_ok_and(|n| !n.is_empty()) {
        return Err(Refusal::not_supported(
            "DeviceNumbers: LUNs are given when volumes join the device group",
        ));
    }
    let mut names = Vec::new();
    for (param, kind) in [
        ("InitiatorMaskingGroup", GroupKind::Initiator),
        ("TargetMaskingGroup", GroupKind::Target),
        ("DeviceMaskingGroup", GroupKind::Device),
    ] {
        match group_param(call, param)? {
            (k, name) if k == kind => names.push(name),
            _ => {
                return Err(Refusal::invalid(format!(
                    "{param} is a group of another type"
                )))
            }
        }
    }
    let name = match call.param("ElementName").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => names[0].clone(),
    };
    let [initiator_group, target_group, device_group]: [String; 3] =
        names.try_into().map_err(|_| Refusal::invalid("groups"))?;
    let view = View {
        name: name.clone(),
        initiator_group,
        target_group,
        device_group,
    };
    apply(access, Change::CreateView(view), true)?;
    Ok(done("ProtocolController", view_path(&p.identity, &name)))
}

fn delete_view(access: &dyn HostAccess, call: &MethodCall<'_>) -> Outcome {
    let path = ref_param(call, "ProtocolController")?;
    let name = view_of(path)
        .ok_or_else(|| Refusal::invalid(format!("{path} is not a masking view")))?
        .to_owned();
    apply(access, Change::DeleteView(name), true)?;
    Ok(MethodResult::code(Value::Uint32(retcode::COMPLETED)))
}

fn create_hwid(access: &dyn HostAccess, call: &MethodCall<'_>) -> Outcome {
    let id = call
        .param("StorageID")
        .and_then(Value::as_str)
        .ok_or_else(|| Refusal::invalid("StorageID is required"))?
        .to_lowercase();
    if call.param("IDType").and_then(Value::as_u64) != Some(u64::from(ID_TYPE_ISCSI)) {
        return Err(Refusal::new(
            ID_TYPE_NOT_SUPPORTED,
            "Only iSCSI names (IDType 5)",
        ));
    }
    match access.apply(Change::AddInitiator(id.clone())) {
        Ok(_) => Ok(done("HardwareID", hwid_path(&id))),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            Err(Refusal::new(ID_ALREADY_CREATED, e.context().to_owned()))
        }
        Err(e) => Err(Refusal::new(code(e.kind(), false), e.context().to_owned())),
    }
}

fn delete_hwid(access: &dyn HostAccess, call: &MethodCall<'_>) -> Outcome {
    let path = ref_param(call, "HardwareID")?;
    let id = hwid_of(path)
        .ok_or_else(|| Refusal::new(ID_NOT_FOUND, format!("{path} is not a hardware ID")))?;
    match access.apply(Change::RemoveInitiator(id.to_owned())) {
        Ok(_) => Ok(MethodResult::code(Value::Uint32(retcode::COMPLETED))),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            Err(Refusal::new(ID_NOT_FOUND, e.context().to_owned()))
        }
        Err(e) => Err(Refusal::new(code(e.kind(), false), e.context().to_owned())),
    }
}
