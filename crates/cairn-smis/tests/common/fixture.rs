//! A small storage provider for the end-to-end tests of the HTTP server, standing in for the SMI-S
//! array model until that lands: one array, one pool, `VOLUME_COUNT` volumes, their
//! `Cairn_AllocatedFromStoragePool` associations, a configuration service with one method, and the
//! Array profile in `interop`. It is wrapped by the real `InteropProvider` and served by the real
//! `CimServer`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cairn_cim::path::namespace_eq;
use cairn_cim::{
    CimError, CimServer, Instance, InstancePath, MethodCall, MethodResult, Provider, Value,
};
use cairn_smis::interop::{
    association, registered_profile, InteropProvider, ObjectManagerInfo, CAIRN_NAMESPACE,
    INTEROP_NAMESPACE,
};

pub const SYSTEM_NAME: &str = "CAIRN-TEST-01";
pub const VOLUME_COUNT: usize = 7;
pub const ARRAY_PROFILE_VERSION: &str = "1.8.0";

/// The fixture, counting method calls so tests can see they arrived.
#[derive(Default)]
pub struct Fixture {
    pub method_calls: AtomicUsize,
}

fn system_path() -> InstancePath {
    InstancePath::new("Cairn_StorageSystem")
        .in_namespace(CAIRN_NAMESPACE)
        .with_key("CreationClassName", "Cairn_StorageSystem")
        .with_key("Name", SYSTEM_NAME)
}

fn pool_path() -> InstancePath {
    InstancePath::new("Cairn_StoragePool")
        .in_namespace(CAIRN_NAMESPACE)
        .with_key("InstanceID", "CAIRN:POOL:pool0")
}

fn volume_path(i: usize) -> InstancePath {
    InstancePath::new("Cairn_StorageVolume")
        .in_namespace(CAIRN_NAMESPACE)
        .with_key("SystemCreationClassName", "Cairn_StorageSystem")
        .with_key("SystemName", SYSTEM_NAME)
        .with_key("CreationClassName", "Cairn_StorageVolume")
        .with_key("DeviceID", format!("vol{i}"))
}

fn service_path() -> InstancePath {
    InstancePath::new("Cairn_StorageConfigurationService")
        .in_namespace(CAIRN_NAMESPACE)
        .with_key("SystemCreationClassName", "Cairn_StorageSystem")
        .with_key("SystemName", SYSTEM_NAME)
        .with_key("CreationClassName", "Cairn_StorageConfigurationService")
        .with_key("Name", "CAIRN:SCS")
}

fn system() -> Instance {
    Instance::new("Cairn_StorageSystem")
        .with("CreationClassName", Value::string("Cairn_StorageSystem"))
        .with("Name", Value::string(SYSTEM_NAME))
        .with("ElementName", Value::string("Cairn test array"))
        .with_path(system_path())
}

fn pool() -> Instance {
    Instance::new("Cairn_StoragePool")
        .with("InstanceID", Value::string("CAIRN:POOL:pool0"))
        .with("PoolID", Value::string("pool0"))
        .with("ElementName", Value::string("pool0"))
        .with("TotalManagedSpace", Value::Uint64(16 << 30))
        .with_path(pool_path())
}

fn volume(i: usize) -> Instance {
    Instance::new("Cairn_StorageVolume")
        .with(
            "SystemCreationClassName",
            Value::string("Cairn_StorageSystem"),
        )
        .with("SystemName", Value::string(SYSTEM_NAME))
        .with("CreationClassName", Value::string("Cairn_StorageVolume"))
        .with("DeviceID", Value::string(format!("vol{i}")))
        .with("ElementName", Value::string(format!("volume {i}")))
        .with("BlockSize", Value::Uint64(512))
        .with("NumberOfBlocks", Value::Uint64(2048 * (i as u64 + 1)))
        .with_path(volume_path(i))
}

fn service() -> Instance {
    Instance::new("Cairn_StorageConfigurationService")
        .with(
            "SystemCreationClassName",
            Value::string("Cairn_StorageSystem"),
        )
        .with("SystemName", Value::string(SYSTEM_NAME))
        .with(
            "CreationClassName",
            Value::string("Cairn_StorageConfigurationService"),
        )
        .with("Name", Value::string("CAIRN:SCS"))
        .with_path(service_path())
}

fn array_profile() -> Instance {
    registered_profile("CAIRN:Profile:Array", "Array", ARRAY_PROFILE_VERSION)
}

impl Provider for Fixture {
    fn namespaces(&self) -> Vec<String> {
        vec![INTEROP_NAMESPACE.to_owned(), CAIRN_NAMESPACE.to_owned()]
    }

    fn class_names(&self, namespace: &str) -> Vec<String> {
        let names: &[&str] = if namespace_eq(namespace, CAIRN_NAMESPACE) {
            &[
                "Cairn_StorageSystem",
                "Cairn_StoragePool",
                "Cairn_StorageVolume",
                "Cairn_AllocatedFromStoragePool",
                "Cairn_StorageConfigurationService",
            ]
        } else if namespace_eq(namespace, INTEROP_NAMESPACE) {
            &["Cairn_RegisteredProfile", "Cairn_ElementConformsToProfile"]
        } else {
            &[]
        };
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    fn enumerate_instances(
        &self,
        namespace: &str,
        class_name: &str,
    ) -> Result<Vec<Instance>, CimError> {
        let class = class_name.to_ascii_lowercase();
        let interop = namespace_eq(namespace, INTEROP_NAMESPACE);
        Ok(match (interop, class.as_str()) {
            (false, "cairn_storagesystem") => vec![system()],
            (false, "cairn_storagepool") => vec![pool()],
            (false, "cairn_storagevolume") => (0..VOLUME_COUNT).map(volume).collect(),
            (false, "cairn_allocatedfromstoragepool") => (0..VOLUME_COUNT)
                .map(|i| {
                    let a = ("Antecedent", pool_path());
                    association(
                        "Cairn_AllocatedFromStoragePool",
                        a,
                        ("Dependent", volume_path(i)),
                    )
                })
                .collect(),
            (false, "cairn_storageconfigurationservice") => vec![service()],
            (true, "cairn_registeredprofile") => vec![array_profile()],
            (true, "cairn_elementconformstoprofile") => {
                let profile = array_profile()
                    .path
                    .expect("registered_profile sets a path");
                let c = ("ConformantStandard", profile);
                vec![association(
                    "Cairn_ElementConformsToProfile",
                    c,
                    ("ManagedElement", system_path()),
                )]
            }
            _ => Vec::new(),
        })
    }

    fn invoke_method(&self, call: &MethodCall<'_>) -> Result<MethodResult, CimError> {
        self.method_calls.fetch_add(1, Ordering::SeqCst);
        // The fixture supports nothing: 1 = Not Supported, as a real provider answers.
        let _ = call;
        Ok(MethodResult::code(Value::Uint32(1)))
    }
}

/// The real CIM server over the real interop model over the fixture.
pub fn cim_server() -> (Arc<CimServer>, Arc<Fixture>) {
    let fixture = Arc::new(Fixture::default());
    let info = ObjectManagerInfo::new(SYSTEM_NAME, env!("CARGO_PKG_VERSION"));
    let interop = InteropProvider::new(fixture.clone(), info);
    (Arc::new(CimServer::new(Arc::new(interop))), fixture)
}
