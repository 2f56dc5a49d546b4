//! iSCSI Target Ports 1.1: for each listener of the target, a `Cairn_iSCSIProtocolEndpoint`
//! (Role 3 Target, Name the port's name `<target IQN>,t,0x<TPGT>`) bound to a
//! `Cairn_TCPProtocolEndpoint` (PortNumber) bound to a `Cairn_IPProtocolEndpoint` (IPv4Address or
//! IPv6Address), all hosted by the system, and the target node as a `Cairn_SCSIProtocolController`
//! with NameFormat 3 (iSCSI Name) whose Name is the IQN.
//!
//! Invariant: every endpoint is available for exactly one NameFormat 3 controller — the node of
//! its target name — and the ports are the listeners the target reports, so a listener changed in
//! the configuration shows here after a restart.

use std::net::SocketAddr;

use cairn_cim::{Instance, InstancePath, Value};
use cairn_export::access::TargetPort;

use crate::interop::association;
use crate::model::{self, u16s, Identity};

const ISCSI_CLASS: &str = "Cairn_iSCSIProtocolEndpoint";
const TCP_CLASS: &str = "Cairn_TCPProtocolEndpoint";
const IP_CLASS: &str = "Cairn_IPProtocolEndpoint";
const NODE_CLASS: &str = "Cairn_SCSIProtocolController";
const NODE_PREFIX: &str = "CAIRN:ISCSI-NODE:";

/// Path of the iSCSI endpoint of the port named `name`.
pub fn endpoint_path(id: &Identity, name: &str) -> InstancePath {
    id.hosted(ISCSI_CLASS, "Name", name)
}

/// The name of the port an iSCSI endpoint path names.
pub fn endpoint_name(path: &InstancePath) -> Option<&str> {
    model::key_text(path, "Name")
}

pub fn endpoint_paths(id: &Identity, ports: &[TargetPort]) -> Vec<InstancePath> {
    ports.iter().map(|p| endpoint_path(id, &p.name)).collect()
}

/// Path of the TCP endpoint of the portal listening on `addr`.
pub fn tcp_path(id: &Identity, addr: SocketAddr) -> InstancePath {
    id.hosted(TCP_CLASS, "Name", &format!("CAIRN:TCP:{addr}"))
}

fn ip_path(id: &Identity, addr: SocketAddr) -> InstancePath {
    id.hosted(IP_CLASS, "Name", &format!("CAIRN:IP:{}", addr.ip()))
}

fn node_path(id: &Identity, target_name: &str) -> InstancePath {
    id.hosted(
        NODE_CLASS,
        "DeviceID",
        &format!("{NODE_PREFIX}{target_name}"),
    )
}

/// An instance carrying the keys of `path` as properties.
fn keyed(path: InstancePath) -> Instance {
    let mut inst = Instance::new(path.class_name.clone());
    for k in &path.keys {
        if let Some(v) = model::key_text(&path, &k.name) {
            inst.set(&k.name, Some(Value::string(v)));
        }
    }
    inst.with_path(path)
}

/// The target nodes (one per target name) as NameFormat 3 controllers.
pub fn node(id: &Identity, ports: &[TargetPort]) -> Vec<Instance> {
    let mut names: Vec<&str> = ports.iter().map(|p| p.target_name.as_str()).collect();
    names.dedup();
    names
        .into_iter()
        .map(|n| {
            keyed(node_path(id, n))
                .with("ElementName", Value::string(n))
                .with("Name", Value::string(n))
                .with("NameFormat", Value::Uint16(3))
                .with("OperationalStatus", u16s(&[2]))
        })
        .collect()
}

fn endpoint(id: &Identity, p: &TargetPort) -> Vec<Instance> {
    let iscsi = keyed(endpoint_path(id, &p.name))
        .with("ElementName", Value::string(&p.name))
        .with("Role", Value::Uint16(3))
        .with("Identifier", Value::string("1"))
        .with("ProtocolIFType", Value::Uint16(1))
        .with("OtherTypeDescription", Value::string("iSCSI"))
        .with("EnabledState", Value::Uint16(2))
        .with("OperationalStatus", u16s(&[2]));
    let tcp = keyed(tcp_path(id, p.addr))
        .with("PortNumber", Value::Uint32(u32::from(p.addr.port())))
        .with("ProtocolIFType", Value::Uint16(4111))
        .with("EnabledState", Value::Uint16(2));
    let ip = keyed(ip_path(id, p.addr)).with("EnabledState", Value::Uint16(2));
    let ip = match p.addr {
        SocketAddr::V4(a) => ip
            .with("IPv4Address", Value::string(a.ip().to_string()))
            .with("ProtocolIFType", Value::Uint16(4096)),
        SocketAddr::V6(a) => ip
            .with("IPv6Address", Value::string(a.ip().to_string()))
            .with("ProtocolIFType", Value::Uint16(4097)),
    };
    vec![iscsi, tcp, ip]
}

fn class_of(i: &Instance, class: &str) -> bool {
    i.class_name.eq_ignore_ascii_case(class)
}

/// The instances of class `c` (lower case) this module owns; `None` for any other class.
pub fn instances(id: &Identity, ports: &[TargetPort], c: &str) -> Option<Vec<Instance>> {
    let all = || ports.iter().flat_map(|p| endpoint(id, p));
    let out = match c {
        "cairn_iscsiprotocolendpoint" => all().filter(|i| class_of(i, ISCSI_CLASS)).collect(),
        "cairn_tcpprotocolendpoint" => all().filter(|i| class_of(i, TCP_CLASS)).collect(),
        "cairn_ipprotocolendpoint" => all().filter(|i| class_of(i, IP_CLASS)).collect(),
        "cairn_bindsto" => ports
            .iter()
            .flat_map(|p| {
                [
                    (
                        "Antecedent",
                        tcp_path(id, p.addr),
                        endpoint_path(id, &p.name),
                    ),
                    ("Antecedent", ip_path(id, p.addr), tcp_path(id, p.addr)),
                ]
            })
            .map(|(role, lower, upper)| {
                association("Cairn_BindsTo", (role, lower), ("Dependent", upper))
            })
            .collect(),
        "cairn_hostedaccesspoint" => ports
            .iter()
            .flat_map(|p| {
                [
                    endpoint_path(id, &p.name),
                    tcp_path(id, p.addr),
                    ip_path(id, p.addr),
                ]
            })
            .map(|sap| {
                association(
                    "Cairn_HostedAccessPoint",
                    ("Antecedent", id.system_path()),
                    ("Dependent", sap),
                )
            })
            .collect(),
        "cairn_sapavailableforelement" => ports
            .iter()
            .map(|p| {
                association(
                    "Cairn_SAPAvailableForElement",
                    ("AvailableSAP", endpoint_path(id, &p.name)),
                    ("ManagedElement", node_path(id, &p.target_name)),
                )
            })
            .collect(),
        _ => return None,
    };
    Some(out)
}
