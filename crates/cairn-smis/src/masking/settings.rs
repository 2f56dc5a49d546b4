//! iSCSI Target Ports 1.1's negotiation settings, from what each target port tells of its logins
//! ([`cairn_export::access::LoginOffer`]): a `Cairn_iSCSISessionSettings` per iSCSI endpoint (the session-wide keys),
//! a `Cairn_iSCSIConnectionSettings` per TCP endpoint (the portal's per-connection keys and its
//! authentication), each tied to its endpoint by `Cairn_ElementSettingData`, and one
//! `Cairn_iSCSICapabilities` for the system (the iSCSI versions and authentication methods of
//! all its ports), tied to it by `Cairn_ElementCapabilities`.
//!
//! Invariants: every value is the target's side of the key as the target negotiates it (its
//! result functions never go beyond it), read from the port at the request: only the CIM value
//! map codes are this crate's; a settings instance exists exactly while its endpoint does.

use cairn_cim::{Instance, InstancePath, Value};
use cairn_export::access::{AuthMethod, Digest, TargetPort};

use super::ports;
use crate::interop::association;
use crate::model::{id_path, u16s, Identity};

const SESSION_CLASS: &str = "Cairn_iSCSISessionSettings";
const CONNECTION_CLASS: &str = "Cairn_iSCSIConnectionSettings";
const CAPABILITIES_CLASS: &str = "Cairn_iSCSICapabilities";
const CAPABILITIES_ID: &str = "CAIRN:ISCSI-CAPABILITIES";

fn session_path(p: &TargetPort) -> InstancePath {
    id_path(SESSION_CLASS, &format!("CAIRN:ISCSI-SESSION:{}", p.name))
}

fn connection_path(p: &TargetPort) -> InstancePath {
    id_path(
        CONNECTION_CLASS,
        &format!("CAIRN:ISCSI-CONNECTION:{}", p.addr),
    )
}

/// Path of the system's iSCSI capabilities (for its `Cairn_ElementCapabilities`).
pub fn capabilities_path() -> InstancePath {
    id_path(CAPABILITIES_CLASS, CAPABILITIES_ID)
}

fn keyed(path: InstancePath, name: String) -> Instance {
    let iid = crate::model::key_text(&path, "InstanceID")
        .unwrap_or_default()
        .to_owned();
    Instance::new(path.class_name.clone())
        .with("InstanceID", Value::string(iid))
        .with("ElementName", Value::string(name))
        .with_path(path)
}

fn session(p: &TargetPort) -> Instance {
    let o = &p.login;
    keyed(
        session_path(p),
        format!("iSCSI session settings of {}", p.name),
    )
    .with("MaxConnectionsPerSession", Value::Uint32(o.max_connections))
    .with("InitialR2TPreference", Value::Boolean(o.initial_r2t))
    .with("ImmediateDataPreference", Value::Boolean(o.immediate_data))
    .with("MaxOutstandingR2T", Value::Uint32(o.max_outstanding_r2t))
    .with(
        "MaxUnsolicitedFirstDataBurstLength",
        Value::Uint32(o.first_burst_bytes),
    )
    .with("MaxDataBurstLength", Value::Uint32(o.max_burst_bytes))
    .with(
        "DataSequenceInOrderPreference",
        Value::Boolean(o.data_sequence_in_order),
    )
    .with(
        "DataPDUInOrderPreference",
        Value::Boolean(o.data_pdu_in_order),
    )
    .with(
        "DefaultTimeToWaitPreference",
        Value::Uint32(o.default_time2wait_secs),
    )
    .with(
        "DefaultTimeToRetainPreference",
        Value::Uint32(o.default_time2retain_secs),
    )
    .with(
        "ErrorRecoveryLevelPreference",
        Value::Uint32(u32::from(o.error_recovery_level)),
    )
}

/// iSCSIConnectionSettings' digest values: 2 No Digest, 3 CRC32C; 4 No Secondary Preference.
fn digest_value(d: Option<&Digest>) -> Value {
    Value::Uint16(match d {
        Some(Digest::None) => 2,
        Some(Digest::Crc32c) => 3,
        None => 4,
    })
}

fn connection(p: &TargetPort) -> Instance {
    let o = &p.login;
    let (primary, secondary) = (
        digest_value(o.digests.first()),
        digest_value(o.digests.get(1)),
    );
    // PrimaryAuthenticationMethod: 3 No Authentication, 5 CHAP; the secondary 2 None (no
    // other method is accepted).
    let auth = match o.auth {
        AuthMethod::None => 3,
        AuthMethod::Chap => 5,
    };
    keyed(
        connection_path(p),
        format!("iSCSI connection settings of {}", p.addr),
    )
    .with(
        "MaxReceiveDataSegmentLength",
        Value::Uint32(o.recv_data_segment_bytes),
    )
    .with("PrimaryHeaderDigestMethod", primary.clone())
    .with("SecondaryHeaderDigestMethod", secondary.clone())
    .with("PrimaryDataDigestMethod", primary)
    .with("SecondaryDataDigestMethod", secondary)
    .with("RequestingMarkersOnReceive", Value::Boolean(o.markers))
    .with("PrimaryAuthenticationMethod", Value::Uint16(auth))
    .with("SecondaryAuthenticationMethod", Value::Uint16(2))
}

/// The system's capabilities over all its ports. AuthenticationMethodsSupported uses
/// iSCSICapabilities' own value map (2 None, 3 SRP, 4 CHAP, 5 Kerberos), which differs from
/// the connection settings' one.
fn capabilities(ports: &[TargetPort]) -> Instance {
    let mut methods: Vec<u16> = ports
        .iter()
        .map(|p| match p.login.auth {
            AuthMethod::None => 2,
            AuthMethod::Chap => 4,
        })
        .collect();
    methods.sort_unstable();
    methods.dedup();
    let min = ports.iter().map(|p| p.login.version_min).min();
    let max = ports.iter().map(|p| p.login.version_max).max();
    let mut inst = keyed(capabilities_path(), "iSCSI capabilities".to_owned())
        .with("AuthenticationMethodsSupported", u16s(&methods))
        // 2: iSCSI sessions.
        .with("SupportedFeatures", u16s(&[2]));
    // NULL with no port: no version is served then.
    inst.set(
        "MinimumSpecificationVersionSupported",
        min.map(Value::Uint8),
    );
    inst.set(
        "MaximumSpecificationVersionSupported",
        max.map(Value::Uint8),
    );
    inst
}

fn setting_data(element: InstancePath, setting: InstancePath) -> Instance {
    association(
        "Cairn_ElementSettingData",
        ("ManagedElement", element),
        ("SettingData", setting),
    )
    // The settings in force, and the only ones: the defaults.
    .with("IsCurrent", Value::Uint16(1))
    .with("IsDefault", Value::Uint16(1))
}

/// The instances of class `c` (lower case) this module owns; `None` for any other class.
/// ElementSettingData and ElementCapabilities are shared with the array model, which adds its
/// own.
pub fn instances(id: &Identity, ports: &[TargetPort], c: &str) -> Option<Vec<Instance>> {
    let out = match c {
        "cairn_iscsisessionsettings" => ports.iter().map(session).collect(),
        "cairn_iscsiconnectionsettings" => ports.iter().map(connection).collect(),
        "cairn_iscsicapabilities" => vec![capabilities(ports)],
        "cairn_elementsettingdata" => ports
            .iter()
            .flat_map(|p| {
                [
                    setting_data(ports::endpoint_path(id, &p.name), session_path(p)),
                    setting_data(ports::tcp_path(id, p.addr), connection_path(p)),
                ]
            })
            .collect(),
        _ => return None,
    };
    Some(out)
}
