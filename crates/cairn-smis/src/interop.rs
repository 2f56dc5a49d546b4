//! The interop namespace model (SMI-S Server profile, DSP1033 profile registration):
//! `InteropProvider` wraps the storage provider and adds, in namespace `interop`, the one
//! `Cairn_ObjectManager`, a `Cairn_Namespace` for `interop` and `root/cairn` (tied to the object
//! manager by `Cairn_NamespaceInManager`), the Server `Cairn_RegisteredProfile` with its
//! `Cairn_ElementConformsToProfile` to the object manager, and `Cairn_HostedService` from the array
//! system to the object manager.
//!
//! The storage provider's profiles come from `Provider::registered_profiles` (each becomes a
//! `Cairn_RegisteredProfile` with its `Cairn_ElementConformsToProfile`s and `Cairn_ReferencedProfile`s).
//! Everything else is forwarded: all of `root/cairn`, and any instances the storage provider itself
//! places in `interop` (build them with [`registered_profile`] and [`association`]).
//! Invariants: exactly the namespaces `interop` and `root/cairn` exist; exactly one object manager;
//! the interop model's own instances are read-only.
//!
//! This is Cairn's product knowledge (its namespaces, class names, Server profile and hosting
//! system); `cairn-cim` only dispatches operations to it as to any other `Provider`.

use std::sync::Arc;

pub use cairn_cim::association;
use cairn_cim::path::namespace_eq;
pub use cairn_cim::provider::ORGANIZATION_SNIA;
use cairn_cim::{
    CimError, CimType, Instance, InstancePath, MethodCall, MethodName, MethodResult, Page,
    ProfileRegistration, Provider, Value,
};

/// The interop namespace.
pub const INTEROP_NAMESPACE: &str = "interop";
/// The implementation namespace.
pub const CAIRN_NAMESPACE: &str = "root/cairn";
/// InstanceID of the Server profile.
pub const SERVER_PROFILE_ID: &str = "CAIRN:Profile:Server";

/// What the interop model says about the object manager and the system hosting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectManagerInfo {
    /// Class of the hosting system (e.g. `Cairn_StorageSystem`).
    pub system_creation_class_name: String,
    /// Name key of the hosting system (the array).
    pub system_name: String,
    /// Name key of the object manager.
    pub name: String,
    /// ElementName (pywbem derives the server brand from it).
    pub element_name: String,
    /// Description, including the version.
    pub description: String,
    /// RegisteredVersion of the Server profile (numeric, e.g. `1.6.1`).
    pub server_profile_version: String,
}

impl ObjectManagerInfo {
    /// The usual values for a Cairn daemon on array `system_name`, software version `version`.
    pub fn new(system_name: impl Into<String>, version: &str) -> ObjectManagerInfo {
        ObjectManagerInfo {
            system_creation_class_name: "Cairn_StorageSystem".into(),
            system_name: system_name.into(),
            name: "Cairn".into(),
            element_name: "Cairn".into(),
            description: format!("Cairn CIM server version {version}"),
            server_profile_version: "1.6.1".into(),
        }
    }
}

/// A `Cairn_RegisteredProfile` (RegisteredOrganization 11 = SNIA, as a uint16) for namespace `interop`.
pub fn registered_profile(instance_id: &str, name: &str, version: &str) -> Instance {
    profile_instance(instance_id, name, version, ORGANIZATION_SNIA)
}

/// The path of the `Cairn_RegisteredProfile` with `instance_id`.
pub fn profile_path(instance_id: &str) -> InstancePath {
    InstancePath::new("Cairn_RegisteredProfile")
        .in_namespace(INTEROP_NAMESPACE)
        .with_key("InstanceID", instance_id)
}

fn profile_instance(instance_id: &str, name: &str, version: &str, organization: u16) -> Instance {
    Instance::new("Cairn_RegisteredProfile")
        .with("InstanceID", Value::string(instance_id))
        .with("RegisteredOrganization", Value::Uint16(organization))
        .with("RegisteredName", Value::string(name))
        .with("RegisteredVersion", Value::string(version))
        .with("ElementName", Value::string(name))
        .with(
            "AdvertiseTypes",
            Value::Array(CimType::Uint16, vec![Value::Uint16(2)]),
        )
        .with(
            "AdvertiseTypeDescriptions",
            Value::Array(CimType::String, vec![Value::string("Not Advertised")]),
        )
        .with_path(profile_path(instance_id))
}

/// The interop instances for the storage provider's profile registrations.
fn registration_instances(regs: &[ProfileRegistration]) -> Vec<Instance> {
    let mut out = Vec::new();
    for r in regs {
        out.push(profile_instance(
            &r.instance_id,
            &r.name,
            &r.version,
            r.organization,
        ));
        for e in &r.conforming_elements {
            out.push(association(
                "Cairn_ElementConformsToProfile",
                ("ConformantStandard", profile_path(&r.instance_id)),
                ("ManagedElement", e.clone()),
            ));
        }
        for parent in &r.component_of {
            out.push(association(
                "Cairn_ReferencedProfile",
                ("Antecedent", profile_path(parent)),
                ("Dependent", profile_path(&r.instance_id)),
            ));
        }
    }
    out
}

/// The interop model around a storage provider.
pub struct InteropProvider {
    storage: Arc<dyn Provider>,
    own: Vec<Instance>,
}

impl std::fmt::Debug for InteropProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InteropProvider")
            .field("own_instances", &self.own.len())
            .finish()
    }
}

impl InteropProvider {
    /// Wraps `storage`; reads its `registered_profiles()` now.
    pub fn new(storage: Arc<dyn Provider>, info: ObjectManagerInfo) -> InteropProvider {
        let mut own = own_instances(&info);
        own.extend(registration_instances(&storage.registered_profiles()));
        InteropProvider { storage, own }
    }

    /// Refuses a method of a class only the interop model has.
    fn refuse_own(&self, call: &MethodCall<'_>) -> Result<(), CimError> {
        if self.is_own(call.namespace, call.class_name)
            && !self.storage_has(call.namespace, call.class_name)
        {
            return Err(CimError::not_supported(format!(
                "Method {} of {}",
                call.method, call.class_name
            )));
        }
        Ok(())
    }

    fn own_class_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for i in &self.own {
            if !names.iter().any(|n| n.eq_ignore_ascii_case(&i.class_name)) {
                names.push(i.class_name.clone());
            }
        }
        names
    }

    fn storage_has(&self, ns: &str, class: &str) -> bool {
        self.storage
            .class_names(ns)
            .iter()
            .any(|c| c.eq_ignore_ascii_case(class))
    }

    fn is_own(&self, ns: &str, class: &str) -> bool {
        namespace_eq(ns, INTEROP_NAMESPACE)
            && self
                .own
                .iter()
                .any(|i| i.class_name.eq_ignore_ascii_case(class))
    }
}

fn own_instances(info: &ObjectManagerInfo) -> Vec<Instance> {
    let om = object_manager(info);
    let om_path = om
        .path
        .clone()
        .unwrap_or_else(|| InstancePath::new("Cairn_ObjectManager"));
    let mut out = vec![om];
    for ns in [INTEROP_NAMESPACE, CAIRN_NAMESPACE] {
        let namespace = namespace_instance(info, ns);
        let path = namespace
            .path
            .clone()
            .unwrap_or_else(|| InstancePath::new("Cairn_Namespace"));
        out.push(namespace);
        out.push(association(
            "Cairn_NamespaceInManager",
            ("Antecedent", om_path.clone()),
            ("Dependent", path),
        ));
    }
    out.push(registered_profile(
        SERVER_PROFILE_ID,
        "Server",
        &info.server_profile_version,
    ));
    out.push(association(
        "Cairn_ElementConformsToProfile",
        ("ConformantStandard", profile_path(SERVER_PROFILE_ID)),
        ("ManagedElement", om_path.clone()),
    ));
    let system = InstancePath::new(info.system_creation_class_name.clone())
        .in_namespace(CAIRN_NAMESPACE)
        .with_key("CreationClassName", &info.system_creation_class_name)
        .with_key("Name", &info.system_name);
    out.push(association(
        "Cairn_HostedService",
        ("Antecedent", system),
        ("Dependent", om_path),
    ));
    out
}

fn object_manager(info: &ObjectManagerInfo) -> Instance {
    let path = InstancePath::new("Cairn_ObjectManager")
        .in_namespace(INTEROP_NAMESPACE)
        .with_key("SystemCreationClassName", &info.system_creation_class_name)
        .with_key("SystemName", &info.system_name)
        .with_key("CreationClassName", "Cairn_ObjectManager")
        .with_key("Name", &info.name);
    Instance::new("Cairn_ObjectManager")
        .with(
            "SystemCreationClassName",
            Value::string(&info.system_creation_class_name),
        )
        .with("SystemName", Value::string(&info.system_name))
        .with("CreationClassName", Value::string("Cairn_ObjectManager"))
        .with("Name", Value::string(&info.name))
        .with("ElementName", Value::string(&info.element_name))
        .with("Description", Value::string(&info.description))
        .with("Started", Value::Boolean(true))
        .with("EnabledState", Value::Uint16(2))
        .with(
            "OperationalStatus",
            Value::Array(CimType::Uint16, vec![Value::Uint16(2)]),
        )
        .with_path(path)
}

fn namespace_instance(info: &ObjectManagerInfo, ns: &str) -> Instance {
    let path = InstancePath::new("Cairn_Namespace")
        .in_namespace(INTEROP_NAMESPACE)
        .with_key("SystemCreationClassName", &info.system_creation_class_name)
        .with_key("SystemName", &info.system_name)
        .with_key("ObjectManagerCreationClassName", "Cairn_ObjectManager")
        .with_key("ObjectManagerName", &info.name)
        .with_key("CreationClassName", "Cairn_Namespace")
        .with_key("Name", ns);
    Instance::new("Cairn_Namespace")
        .with(
            "SystemCreationClassName",
            Value::string(&info.system_creation_class_name),
        )
        .with("SystemName", Value::string(&info.system_name))
        .with(
            "ObjectManagerCreationClassName",
            Value::string("Cairn_ObjectManager"),
        )
        .with("ObjectManagerName", Value::string(&info.name))
        .with("CreationClassName", Value::string("Cairn_Namespace"))
        .with("Name", Value::string(ns))
        .with("ElementName", Value::string(ns))
        .with("ClassInfo", Value::Uint16(3))
        .with_path(path)
}

impl Provider for InteropProvider {
    fn namespaces(&self) -> Vec<String> {
        vec![INTEROP_NAMESPACE.to_owned(), CAIRN_NAMESPACE.to_owned()]
    }

    fn class_names(&self, namespace: &str) -> Vec<String> {
        let mut names = self.storage.class_names(namespace);
        if namespace_eq(namespace, INTEROP_NAMESPACE) {
            for n in self.own_class_names() {
                if !names.iter().any(|x| x.eq_ignore_ascii_case(&n)) {
                    names.push(n);
                }
            }
        }
        names
    }

    fn enumerate_instances(
        &self,
        namespace: &str,
        class_name: &str,
    ) -> Result<Vec<Instance>, CimError> {
        let mut out: Vec<Instance> = if namespace_eq(namespace, INTEROP_NAMESPACE) {
            self.own
                .iter()
                .filter(|i| i.class_name.eq_ignore_ascii_case(class_name))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        if self.storage_has(namespace, class_name) {
            out.extend(self.storage.enumerate_instances(namespace, class_name)?);
        }
        Ok(out)
    }

    /// The storage provider's pages for its classes; the interop model's own are few and paged
    /// by the dispatcher.
    fn enumerate_page(
        &self,
        namespace: &str,
        class_name: &str,
        cursor: Option<&str>,
        max: usize,
    ) -> Result<Option<Page>, CimError> {
        if self.is_own(namespace, class_name) || !self.storage_has(namespace, class_name) {
            return Ok(None);
        }
        self.storage
            .enumerate_page(namespace, class_name, cursor, max)
    }

    fn get_instance(
        &self,
        namespace: &str,
        path: &InstancePath,
    ) -> Result<Option<Instance>, CimError> {
        if self.is_own(namespace, &path.class_name) {
            let own = self.own.iter().find(|i| {
                i.class_name.eq_ignore_ascii_case(&path.class_name)
                    && i.path.as_ref().is_some_and(|p| p.same_keys(path))
            });
            if let Some(i) = own {
                return Ok(Some(i.clone()));
            }
        }
        if self.storage_has(namespace, &path.class_name) {
            return self.storage.get_instance(namespace, path);
        }
        Err(CimError::not_found(path))
    }

    fn associations_referring_to(
        &self,
        namespace: &str,
        assoc_class: &str,
        object: &InstancePath,
    ) -> Result<Option<Vec<Instance>>, CimError> {
        if self.is_own(namespace, assoc_class) {
            // The interop model's own associations are few: let the dispatcher scan them (and the
            // storage provider's instances of the same class, which `enumerate_instances` merges).
            return Ok(None);
        }
        self.storage
            .associations_referring_to(namespace, assoc_class, object)
    }

    fn associations_page(
        &self,
        namespace: &str,
        assoc_class: &str,
        object: &InstancePath,
        cursor: Option<&str>,
        max: usize,
    ) -> Result<Option<Page>, CimError> {
        if self.is_own(namespace, assoc_class) {
            return Ok(None);
        }
        self.storage
            .associations_page(namespace, assoc_class, object, cursor, max)
    }

    fn delete_instance(&self, namespace: &str, path: &InstancePath) -> Result<(), CimError> {
        if self.is_own(namespace, &path.class_name)
            && self.get_instance(namespace, path)?.is_some()
            && !self.storage_has(namespace, &path.class_name)
        {
            return Err(CimError::not_supported(format!(
                "DeleteInstance of {}",
                path.class_name
            )));
        }
        self.storage.delete_instance(namespace, path)
    }

    fn create_instance(
        &self,
        namespace: &str,
        instance: &Instance,
    ) -> Result<InstancePath, CimError> {
        if self.is_own(namespace, &instance.class_name)
            && !self.storage_has(namespace, &instance.class_name)
        {
            return Err(CimError::not_supported(format!(
                "CreateInstance of {}",
                instance.class_name
            )));
        }
        self.storage.create_instance(namespace, instance)
    }

    fn modify_instance(
        &self,
        namespace: &str,
        path: &InstancePath,
        modified: &Instance,
        property_list: Option<&[String]>,
    ) -> Result<(), CimError> {
        if self.is_own(namespace, &path.class_name)
            && !self.storage_has(namespace, &path.class_name)
        {
            return Err(CimError::not_supported(format!(
                "ModifyInstance of {}",
                path.class_name
            )));
        }
        self.storage
            .modify_instance(namespace, path, modified, property_list)
    }

    fn invoke_method(&self, call: &MethodCall<'_>) -> Result<MethodResult, CimError> {
        self.refuse_own(call)?;
        self.storage.invoke_method(call)
    }

    /// The storage provider's methods (the interop model has none of its own).
    fn methods(&self) -> Vec<MethodName> {
        self.storage.methods()
    }

    fn invoke_resolved(
        &self,
        call: &MethodCall<'_>,
        implementation: usize,
    ) -> Result<MethodResult, CimError> {
        self.refuse_own(call)?;
        self.storage.invoke_resolved(call, implementation)
    }
}
