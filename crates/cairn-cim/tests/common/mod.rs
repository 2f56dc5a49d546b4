//! A small in-test array model implementing `Provider`, shared by the integration tests: one
//! system, two pools, three volumes (one a snapshot of another), the associations between them, a
//! replication service with a real `CreateElementReplica`, a finished job that can be deleted, and
//! the Array profile registration in `interop`.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use cairn_cim::{
    CimError, CimHttpOutcome, CimServer, CimType, HttpCimRequest, Instance, InstancePath,
    MethodCall, MethodResult, Provider, Value,
};
use cairn_smis::interop::{
    association, registered_profile, InteropProvider, ObjectManagerInfo, CAIRN_NAMESPACE,
    INTEROP_NAMESPACE,
};

pub const SYSTEM: &str = "CAIRN-ARRAY-01";

pub fn system_path() -> InstancePath {
    InstancePath::new("Cairn_StorageSystem")
        .in_namespace(CAIRN_NAMESPACE)
        .with_key("CreationClassName", "Cairn_StorageSystem")
        .with_key("Name", SYSTEM)
}

pub fn pool_path(id: &str) -> InstancePath {
    InstancePath::new("Cairn_StoragePool")
        .in_namespace(CAIRN_NAMESPACE)
        .with_key("InstanceID", id)
}

pub fn volume_path(id: &str) -> InstancePath {
    InstancePath::new("Cairn_StorageVolume")
        .in_namespace(CAIRN_NAMESPACE)
        .with_key("CreationClassName", "Cairn_StorageVolume")
        .with_key("DeviceID", id)
        .with_key("SystemCreationClassName", "Cairn_StorageSystem")
        .with_key("SystemName", SYSTEM)
}

pub fn service_path() -> InstancePath {
    InstancePath::new("Cairn_ReplicationService")
        .in_namespace(CAIRN_NAMESPACE)
        .with_key("CreationClassName", "Cairn_ReplicationService")
        .with_key("Name", "ReplicationService")
        .with_key("SystemCreationClassName", "Cairn_StorageSystem")
        .with_key("SystemName", SYSTEM)
}

pub fn job_path(id: &str) -> InstancePath {
    InstancePath::new("Cairn_ConcreteJob")
        .in_namespace(CAIRN_NAMESPACE)
        .with_key("InstanceID", id)
}

struct Volume {
    id: String,
    name: String,
    pool: String,
    blocks: u64,
}

/// The array model.
pub struct TestArray {
    volumes: Mutex<Vec<Volume>>,
    /// (snapshot id, source id)
    snapshots: Mutex<Vec<(String, String)>>,
    jobs: Mutex<Vec<String>>,
    /// Number of volumes in pool P2 (for paging tests).
    pub calls: Mutex<Vec<String>>,
}

impl TestArray {
    pub fn new() -> TestArray {
        TestArray::with_extra_volumes(0)
    }

    /// The base model plus `n` more volumes in pool P2.
    pub fn with_extra_volumes(n: usize) -> TestArray {
        let mut volumes = vec![
            Volume {
                id: "LUN-0001".into(),
                name: "vol one".into(),
                pool: "CAIRN:POOL-A".into(),
                blocks: 131_072,
            },
            Volume {
                id: "LUN-0002".into(),
                name: "vol <two> & \"more\"".into(),
                pool: "CAIRN:POOL-A".into(),
                blocks: 8,
            },
            Volume {
                id: "LUN-0003".into(),
                name: "snap of one".into(),
                pool: "CAIRN:POOL-A".into(),
                blocks: 131_072,
            },
        ];
        for i in 0..n {
            volumes.push(Volume {
                id: format!("X-{i:05}"),
                name: format!("extra {i}"),
                pool: "CAIRN:POOL-B".into(),
                blocks: 1,
            });
        }
        TestArray {
            volumes: Mutex::new(volumes),
            snapshots: Mutex::new(vec![("LUN-0003".into(), "LUN-0001".into())]),
            jobs: Mutex::new(vec!["CAIRN:JOB-1".into()]),
            calls: Mutex::new(Vec::new()),
        }
    }

    fn volume(&self, v: &Volume) -> Instance {
        Instance::new("Cairn_StorageVolume")
            .with("CreationClassName", Value::string("Cairn_StorageVolume"))
            .with("DeviceID", Value::string(&v.id))
            .with(
                "SystemCreationClassName",
                Value::string("Cairn_StorageSystem"),
            )
            .with("SystemName", Value::string(SYSTEM))
            .with("ElementName", Value::string(&v.name))
            .with("BlockSize", Value::Uint64(512))
            .with("NumberOfBlocks", Value::Uint64(v.blocks))
            .with(
                "OperationalStatus",
                Value::Array(CimType::Uint16, vec![Value::Uint16(2)]),
            )
            .with_path(volume_path(&v.id))
    }

    fn pool(&self, id: &str, name: &str) -> Instance {
        // No path: the dispatcher builds it from the key property.
        Instance::new("Cairn_StoragePool")
            .with("InstanceID", Value::string(id))
            .with("ElementName", Value::string(name))
            .with("PoolID", Value::string(name))
            .with("Primordial", Value::Boolean(false))
            .with("TotalManagedSpace", Value::Uint64(17_179_869_184))
            .with("RemainingManagedSpace", Value::Uint64(1 << 30))
            .with("Usage", Value::Uint16(2))
    }
}

impl Provider for TestArray {
    fn namespaces(&self) -> Vec<String> {
        vec![CAIRN_NAMESPACE.into(), INTEROP_NAMESPACE.into()]
    }

    fn class_names(&self, namespace: &str) -> Vec<String> {
        let names: &[&str] = if namespace == INTEROP_NAMESPACE {
            &[
                "Cairn_RegisteredProfile",
                "Cairn_ReferencedProfile",
                "Cairn_ElementConformsToProfile",
            ]
        } else {
            &[
                "Cairn_StorageSystem",
                "Cairn_StoragePool",
                "Cairn_StorageVolume",
                "Cairn_HostedStoragePool",
                "Cairn_AllocatedFromStoragePool",
                "Cairn_SystemDevice",
                "Cairn_StorageSynchronized",
                "Cairn_ReplicationService",
                "Cairn_ConcreteJob",
            ]
        };
        names.iter().map(|s| s.to_string()).collect()
    }

    fn enumerate_instances(
        &self,
        namespace: &str,
        class_name: &str,
    ) -> Result<Vec<Instance>, CimError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("{namespace}:{class_name}"));
        let vols = self.volumes.lock().unwrap();
        Ok(match class_name {
            "Cairn_RegisteredProfile" => vec![
                registered_profile("CAIRN:Profile:Array", "Array", "1.6.1"),
                registered_profile("CAIRN:Profile:BlockServices", "Block Services", "1.6.1"),
            ],
            "Cairn_ReferencedProfile" => vec![association(
                "Cairn_ReferencedProfile",
                (
                    "Antecedent",
                    registered_profile("CAIRN:Profile:Array", "Array", "1.6.1")
                        .path
                        .unwrap(),
                ),
                (
                    "Dependent",
                    registered_profile("CAIRN:Profile:BlockServices", "Block Services", "1.6.1")
                        .path
                        .unwrap(),
                ),
            )],
            "Cairn_ElementConformsToProfile" => vec![association(
                "Cairn_ElementConformsToProfile",
                (
                    "ConformantStandard",
                    registered_profile("CAIRN:Profile:Array", "Array", "1.6.1")
                        .path
                        .unwrap(),
                ),
                ("ManagedElement", system_path()),
            )],
            "Cairn_StorageSystem" => vec![Instance::new("Cairn_StorageSystem")
                .with("CreationClassName", Value::string("Cairn_StorageSystem"))
                .with("Name", Value::string(SYSTEM))
                .with("ElementName", Value::string("Cairn array"))
                .with(
                    "Dedicated",
                    Value::Array(CimType::Uint32, vec![Value::Uint32(3), Value::Uint32(15)]),
                )
                .with_path(system_path())],
            "Cairn_StoragePool" => vec![
                self.pool("CAIRN:POOL-A", "pool0"),
                self.pool("CAIRN:POOL-B", "pool1"),
            ],
            "Cairn_StorageVolume" => vols.iter().map(|v| self.volume(v)).collect(),
            "Cairn_HostedStoragePool" => ["CAIRN:POOL-A", "CAIRN:POOL-B"]
                .iter()
                .map(|p| {
                    association(
                        "Cairn_HostedStoragePool",
                        ("GroupComponent", system_path()),
                        ("PartComponent", pool_path(p)),
                    )
                })
                .collect(),
            "Cairn_SystemDevice" => vols
                .iter()
                .map(|v| {
                    association(
                        "Cairn_SystemDevice",
                        ("GroupComponent", system_path()),
                        ("PartComponent", volume_path(&v.id)),
                    )
                })
                .collect(),
            "Cairn_AllocatedFromStoragePool" => vols
                .iter()
                .map(|v| {
                    association(
                        "Cairn_AllocatedFromStoragePool",
                        ("Antecedent", pool_path(&v.pool)),
                        ("Dependent", volume_path(&v.id)),
                    )
                })
                .collect(),
            "Cairn_StorageSynchronized" => self
                .snapshots
                .lock()
                .unwrap()
                .iter()
                .map(|(snap, src)| {
                    association(
                        "Cairn_StorageSynchronized",
                        ("SystemElement", volume_path(src)),
                        ("SyncedElement", volume_path(snap)),
                    )
                    .with("SyncType", Value::Uint16(7))
                    .with("CopyType", Value::Uint16(4))
                    .with("CopyState", Value::Uint16(4))
                })
                .collect(),
            "Cairn_ReplicationService" => vec![Instance::new("Cairn_ReplicationService")
                .with(
                    "CreationClassName",
                    Value::string("Cairn_ReplicationService"),
                )
                .with("Name", Value::string("ReplicationService"))
                .with(
                    "SystemCreationClassName",
                    Value::string("Cairn_StorageSystem"),
                )
                .with("SystemName", Value::string(SYSTEM))
                .with_path(service_path())],
            "Cairn_ConcreteJob" => self
                .jobs
                .lock()
                .unwrap()
                .iter()
                .map(|j| {
                    Instance::new("Cairn_ConcreteJob")
                        .with("InstanceID", Value::string(j))
                        .with("JobState", Value::Uint16(7))
                        .with("PercentComplete", Value::Uint16(100))
                        .with_path(job_path(j))
                })
                .collect(),
            _ => Vec::new(),
        })
    }

    fn associations_referring_to(
        &self,
        namespace: &str,
        assoc_class: &str,
        object: &InstancePath,
    ) -> Result<Option<Vec<Instance>>, CimError> {
        if assoc_class != "Cairn_AllocatedFromStoragePool" {
            return Ok(None);
        }
        self.calls
            .lock()
            .unwrap()
            .push(format!("fast:{namespace}:{assoc_class}"));
        let key = |k: &str| match object.key(k) {
            Some(cairn_cim::KeyValue::String(s)) => Some(s.clone()),
            _ => None,
        };
        let (device, pool) = (key("DeviceID"), key("InstanceID"));
        let vols = self.volumes.lock().unwrap();
        Ok(Some(
            vols.iter()
                .filter(|v| device.as_deref() == Some(&v.id) || pool.as_deref() == Some(&v.pool))
                .map(|v| {
                    association(
                        "Cairn_AllocatedFromStoragePool",
                        ("Antecedent", pool_path(&v.pool)),
                        ("Dependent", volume_path(&v.id)),
                    )
                })
                .collect(),
        ))
    }

    fn delete_instance(&self, _namespace: &str, path: &InstancePath) -> Result<(), CimError> {
        if path.class_name != "Cairn_ConcreteJob" {
            return Err(CimError::not_supported("DeleteInstance"));
        }
        let Some(cairn_cim::KeyValue::String(id)) = path.key("InstanceID") else {
            return Err(CimError::not_found(path));
        };
        let mut jobs = self.jobs.lock().unwrap();
        let before = jobs.len();
        jobs.retain(|j| j != id);
        if jobs.len() == before {
            return Err(CimError::not_found(path));
        }
        Ok(())
    }

    fn invoke_method(&self, call: &MethodCall<'_>) -> Result<MethodResult, CimError> {
        match (call.class_name, call.method) {
            ("Cairn_ReplicationService", "CreateElementReplica") => {
                let Some(Value::Uint16(sync)) = call.param("SyncType") else {
                    return Ok(MethodResult::code(Value::Uint32(5)));
                };
                if *sync != 7 && *sync != 8 {
                    return Ok(MethodResult::code(Value::Uint32(1)));
                }
                let Some(Value::Reference(src)) = call.param("SourceElement") else {
                    return Ok(MethodResult::code(Value::Uint32(5)));
                };
                let Some(cairn_cim::KeyValue::String(src_id)) = src.key("DeviceID") else {
                    return Ok(MethodResult::code(Value::Uint32(5)));
                };
                let name = call
                    .param("ElementName")
                    .and_then(Value::as_str)
                    .unwrap_or("snapshot")
                    .to_owned();
                let mut vols = self.volumes.lock().unwrap();
                let id = format!("LUN-{:04}", vols.len() + 1);
                vols.push(Volume {
                    id: id.clone(),
                    name,
                    pool: "CAIRN:POOL-A".into(),
                    blocks: 131_072,
                });
                self.snapshots
                    .lock()
                    .unwrap()
                    .push((id.clone(), src_id.clone()));
                Ok(MethodResult::code(Value::Uint32(0))
                    .with_out("TargetElement", Value::Reference(volume_path(&id))))
            }
            _ => Err(CimError::not_supported(format!(
                "{}.{}",
                call.class_name, call.method
            ))),
        }
    }
}

/// A server over the interop model wrapping a `TestArray`.
pub fn server_with(array: Arc<TestArray>) -> CimServer {
    let info = ObjectManagerInfo::new(SYSTEM, "0.1.0");
    CimServer::new(Arc::new(InteropProvider::new(array, info)))
}

pub fn server() -> CimServer {
    server_with(Arc::new(TestArray::new()))
}

/// Sends an IMETHODCALL with the given IPARAMVALUE XML; returns the response body as text.
pub fn imethod(server: &CimServer, ns: &str, method: &str, params: &str) -> String {
    let ns_xml: String = ns
        .split('/')
        .map(|p| format!("<NAMESPACE NAME=\"{p}\"/>"))
        .collect();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"42\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ><IMETHODCALL NAME=\"{method}\"><LOCALNAMESPACEPATH>{ns_xml}</LOCALNAMESPACEPATH>{params}</IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>"
    );
    call(server, method, ns, &body)
}

/// Sends a METHODCALL on `target_xml` (LOCALINSTANCEPATH or LOCALCLASSPATH element).
pub fn method(
    server: &CimServer,
    object_hdr: &str,
    method: &str,
    target_xml: &str,
    params: &str,
) -> String {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"43\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ><METHODCALL NAME=\"{method}\">{target_xml}{params}</METHODCALL></SIMPLEREQ></MESSAGE></CIM>"
    );
    call(server, method, object_hdr, &body)
}

fn call(server: &CimServer, method: &str, object: &str, body: &str) -> String {
    let req = HttpCimRequest {
        cim_operation: Some("MethodCall"),
        cim_method: Some(method),
        cim_object: Some(object),
        cim_protocol_version: None,
        body: body.as_bytes(),
    };
    match server.handle(&req) {
        CimHttpOutcome::Response(b) => String::from_utf8(b).expect("UTF-8 response"),
        other => panic!("expected a response, got {other:?}"),
    }
}

/// INSTANCENAME XML for a path (keys as string KEYVALUEs without TYPE, as wbemcli sends them).
pub fn instancename_xml(class: &str, keys: &[(&str, &str)]) -> String {
    let kb: String = keys
        .iter()
        .map(|(k, v)| format!("<KEYBINDING NAME=\"{k}\"><KEYVALUE VALUETYPE=\"string\">{v}</KEYVALUE></KEYBINDING>"))
        .collect();
    format!("<INSTANCENAME CLASSNAME=\"{class}\">{kb}</INSTANCENAME>")
}

pub fn volume_name_xml(class: &str, id: &str) -> String {
    instancename_xml(
        class,
        &[
            ("CreationClassName", "Cairn_StorageVolume"),
            ("DeviceID", id),
            ("SystemCreationClassName", "Cairn_StorageSystem"),
            ("SystemName", SYSTEM),
        ],
    )
}

/// Number of occurrences of `needle` in `hay`.
pub fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

/// The ERROR CODE in a response, if any.
pub fn error_code(body: &str) -> Option<u32> {
    let i = body.find("<ERROR CODE=\"")? + 13;
    body[i..].split('"').next()?.parse().ok()
}

/// Checks the response is well-formed XML (every element closed, only known entities).
pub fn assert_well_formed(body: &str) {
    let mut r = quick_xml::Reader::from_str(body);
    let mut depth = 0i32;
    loop {
        match r.read_event().expect("well-formed response") {
            quick_xml::events::Event::Start(_) => depth += 1,
            quick_xml::events::Event::End(_) => depth -= 1,
            quick_xml::events::Event::Text(t) => {
                t.unescape().expect("valid escapes");
            }
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(depth, 0);
}
