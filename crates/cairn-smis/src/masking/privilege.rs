//! The privilege model of Masking and Mapping: one `Cairn_AuthorizedPrivilege` for each initiator
//! of each masking view, tied to the initiator's `Cairn_StorageHardwareID` by
//! `Cairn_AuthorizedSubject` and to the view's `Cairn_SCSIProtocolController` by
//! `Cairn_AuthorizedTarget` (one subject, one privilege, one target: privileges are never shared).
//!
//! Invariants: the privileges are computed from the access model's views alone, so an initiator
//! has a privilege on a view exactly when the target lets it see that view's volumes; every
//! view's units are Read Write (`ProtocolControllerForUnit.DeviceAccess` 2), so every privilege
//! is granted with the activities Read and Write on every CDB, as CIM_ProtocolControllerAccessesUnit
//! requires of a Read Write unit. Nothing is denied (`PrivilegeDeniedSupported` is false).

use cairn_cim::{CimType, Instance, Value};
use cairn_export::access::{AccessModel, GroupKind};

use crate::interop::association;
use crate::model::{id_path, u16s, Identity};

use super::{hwid_path, view_path};

const PRIVILEGE_CLASS: &str = "Cairn_AuthorizedPrivilege";
const SUBJECT_CLASS: &str = "Cairn_AuthorizedSubject";
const TARGET_CLASS: &str = "Cairn_AuthorizedTarget";
const PRIVILEGE_PREFIX: &str = "CAIRN:PRIV:";

/// CIM_Privilege.Activities 5 Read, 6 Write.
const ACTIVITIES: [u16; 2] = [5, 6];
/// CIM_Privilege.QualifierFormats 10 SCSI Command, one per activity.
const QUALIFIER_FORMAT_SCSI_COMMAND: u16 = 10;
/// Every CDB, one per activity.
const ACTIVITY_QUALIFIER: &str = "CDB=*";

/// The classes this module has instances of.
pub const CLASSES: [&str; 3] = [PRIVILEGE_CLASS, SUBJECT_CLASS, TARGET_CLASS];

/// The (view, initiator) pairs of the model: each initiator of each view's initiator group.
fn grants(m: &AccessModel) -> impl Iterator<Item = (&str, &str)> {
    m.views.iter().flat_map(move |v| {
        m.group(GroupKind::Initiator, &v.initiator_group)
            .into_iter()
            .flat_map(move |g| g.members.iter().map(move |i| (v.name.as_str(), i.as_str())))
    })
}

/// InstanceID of the privilege of `initiator` on `view`: the view's name is length-prefixed, so
/// no two pairs share an id whatever characters the names hold.
fn privilege_id(view: &str, initiator: &str) -> String {
    format!("{PRIVILEGE_PREFIX}{}:{view}:{initiator}", view.len())
}

fn privilege(view: &str, initiator: &str) -> Instance {
    let iid = privilege_id(view, initiator);
    let n = ACTIVITIES.len();
    Instance::new(PRIVILEGE_CLASS)
        .with("InstanceID", Value::string(iid.clone()))
        .with(
            "ElementName",
            Value::string(format!("{initiator} on {view}")),
        )
        .with("PrivilegeGranted", Value::Boolean(true))
        .with("Activities", u16s(&ACTIVITIES))
        .with(
            "ActivityQualifiers",
            Value::Array(CimType::String, vec![Value::string(ACTIVITY_QUALIFIER); n]),
        )
        .with(
            "QualifierFormats",
            u16s(&[QUALIFIER_FORMAT_SCSI_COMMAND; 2]),
        )
        .with("RepresentsAuthorizationRights", Value::Boolean(false))
        .with_path(id_path(PRIVILEGE_CLASS, &iid))
}

/// The instances of `class` (lower case) over `m`, or `None` for a class this module does not own.
pub fn instances(id: &Identity, m: &AccessModel, class: &str) -> Option<Vec<Instance>> {
    let out = match class {
        "cairn_authorizedprivilege" => grants(m).map(|(v, i)| privilege(v, i)).collect(),
        "cairn_authorizedsubject" => grants(m)
            .map(|(v, i)| {
                association(
                    SUBJECT_CLASS,
                    ("Privilege", id_path(PRIVILEGE_CLASS, &privilege_id(v, i))),
                    ("PrivilegedElement", hwid_path(i)),
                )
            })
            .collect(),
        "cairn_authorizedtarget" => grants(m)
            .map(|(v, i)| {
                association(
                    TARGET_CLASS,
                    ("Privilege", id_path(PRIVILEGE_CLASS, &privilege_id(v, i))),
                    ("TargetElement", view_path(id, v)),
                )
            })
            .collect(),
        _ => return None,
    };
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_export::access::{Group, View};

    fn model() -> AccessModel {
        let group = |name: &str, members: &[&str]| Group {
            name: name.into(),
            members: members.iter().map(|s| (*s).to_owned()).collect(),
        };
        let view = |name: &str, ig: &str| View {
            name: name.into(),
            initiator_group: ig.into(),
            target_group: "t".into(),
            device_group: "d".into(),
        };
        AccessModel {
            initiators: vec!["iqn.a".into(), "iqn.b".into()],
            initiator_groups: vec![group("both", &["iqn.a", "iqn.b"]), group("none", &[])],
            views: vec![view("v1", "both"), view("v2", "none"), view("v3", "both")],
            ..AccessModel::default()
        }
    }

    #[test]
    fn one_privilege_per_initiator_of_each_view() {
        let id = Identity {
            system_name: "S".into(),
            version: "0".into(),
        };
        let m = model();
        let privs = instances(&id, &m, "cairn_authorizedprivilege").unwrap_or_default();
        let ids: Vec<String> = privs
            .iter()
            .filter_map(|p| {
                p.get("InstanceID")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(
            ids,
            [
                "CAIRN:PRIV:2:v1:iqn.a",
                "CAIRN:PRIV:2:v1:iqn.b",
                "CAIRN:PRIV:2:v3:iqn.a",
                "CAIRN:PRIV:2:v3:iqn.b"
            ]
        );
        for class in ["cairn_authorizedsubject", "cairn_authorizedtarget"] {
            let n = instances(&id, &m, class).map(|v| v.len());
            assert_eq!(n, Some(4), "{class}");
        }
        assert!(instances(&id, &m, "cairn_storagevolume").is_none());
    }

    #[test]
    fn ids_never_collide() {
        assert_ne!(privilege_id("a:b", "c"), privilege_id("a", "b:c"));
    }
}
