//! The interop model built from `Provider::registered_profiles`: profiles, conformance to the
//! central element (across namespaces) and component-profile references in the SNIA direction.

mod common;

use std::sync::Arc;

use cairn_cim::{
    CimError, CimServer, Instance, MethodCall, MethodResult, ProfileRegistration, Provider, Value,
};
use cairn_smis::interop::{InteropProvider, ObjectManagerInfo, CAIRN_NAMESPACE};
use common::{count, error_code, imethod, instancename_xml, system_path, SYSTEM};

/// A storage provider with one system in root/cairn and its profiles declared, nothing in interop.
struct Declared;

impl Provider for Declared {
    fn namespaces(&self) -> Vec<String> {
        vec![CAIRN_NAMESPACE.into()]
    }
    fn class_names(&self, namespace: &str) -> Vec<String> {
        if namespace == CAIRN_NAMESPACE {
            vec!["Cairn_StorageSystem".into()]
        } else {
            Vec::new()
        }
    }
    fn enumerate_instances(
        &self,
        _namespace: &str,
        class_name: &str,
    ) -> Result<Vec<Instance>, CimError> {
        Ok(match class_name {
            "Cairn_StorageSystem" => vec![Instance::new("Cairn_StorageSystem")
                .with("CreationClassName", Value::string("Cairn_StorageSystem"))
                .with("Name", Value::string(SYSTEM))
                .with_path(system_path())],
            _ => Vec::new(),
        })
    }
    fn registered_profiles(&self) -> Vec<ProfileRegistration> {
        let mut array = ProfileRegistration::snia("CAIRN:Profile:Array", "Array", "1.6.1");
        array.conforming_elements.push(system_path());
        let mut block =
            ProfileRegistration::snia("CAIRN:Profile:BlockServices", "Block Services", "1.6.1");
        block.component_of.push("CAIRN:Profile:Array".into());
        let mut jobs =
            ProfileRegistration::snia("CAIRN:Profile:JobControl", "Job Control", "1.5.0");
        jobs.component_of.push("CAIRN:Profile:Array".into());
        vec![array, block, jobs]
    }
    fn invoke_method(&self, call: &MethodCall<'_>) -> Result<MethodResult, CimError> {
        Err(CimError::not_supported(call.method))
    }
}

fn server() -> CimServer {
    CimServer::new(Arc::new(InteropProvider::new(
        Arc::new(Declared),
        ObjectManagerInfo::new(SYSTEM, "0.1.0"),
    )))
}

fn class(param: &str, name: &str) -> String {
    format!("<IPARAMVALUE NAME=\"{param}\"><CLASSNAME NAME=\"{name}\"/></IPARAMVALUE>")
}

fn object(xml: &str) -> String {
    format!("<IPARAMVALUE NAME=\"ObjectName\">{xml}</IPARAMVALUE>")
}

#[test]
fn declared_profiles_are_served_with_typed_organization() {
    let s = server();
    let r = imethod(
        &s,
        "interop",
        "EnumerateInstances",
        &class("ClassName", "CIM_RegisteredProfile"),
    );
    assert_eq!(
        count(&r, "<VALUE.NAMEDINSTANCE>"),
        4,
        "Server + 3 declared: {r}"
    );
    assert_eq!(count(&r, "<PROPERTY NAME=\"RegisteredOrganization\" TYPE=\"uint16\"><VALUE>11</VALUE></PROPERTY>"), 4);
    assert!(r.contains(
        "<PROPERTY NAME=\"RegisteredVersion\" TYPE=\"string\"><VALUE>1.5.0</VALUE></PROPERTY>"
    ));
}

#[test]
fn array_profile_leads_to_the_system_and_its_components() {
    let s = server();
    let array = object(&instancename_xml(
        "CIM_RegisteredProfile",
        &[("InstanceID", "CAIRN:Profile:Array")],
    ));
    let r = imethod(
        &s,
        "interop",
        "AssociatorNames",
        &(array.clone() + &class("AssocClass", "CIM_ElementConformsToProfile")),
    );
    assert_eq!(count(&r, "<OBJECTPATH>"), 1);
    assert!(r.contains("<NAMESPACE NAME=\"root\"/><NAMESPACE NAME=\"cairn\"/></LOCALNAMESPACEPATH></NAMESPACEPATH><INSTANCENAME CLASSNAME=\"Cairn_StorageSystem\">"));
    let components = format!(
        "{array}{}<IPARAMVALUE NAME=\"Role\"><VALUE>Antecedent</VALUE></IPARAMVALUE>",
        class("AssocClass", "CIM_ReferencedProfile")
    );
    let r = imethod(&s, "interop", "Associators", &components);
    assert_eq!(
        count(&r, "<INSTANCE CLASSNAME=\"Cairn_RegisteredProfile\">"),
        2,
        "{r}"
    );
    assert!(
        r.contains("<VALUE>Block Services</VALUE>") && r.contains("<VALUE>Job Control</VALUE>")
    );
    // Seen from a component, the Array profile is the Antecedent.
    let block = object(&instancename_xml(
        "CIM_RegisteredProfile",
        &[("InstanceID", "CAIRN:Profile:BlockServices")],
    ));
    let r = imethod(
        &s,
        "interop",
        "AssociatorNames",
        &(block + "<IPARAMVALUE NAME=\"ResultRole\"><VALUE>Antecedent</VALUE></IPARAMVALUE>"),
    );
    assert_eq!(count(&r, "<OBJECTPATH>"), 1);
    assert!(r.contains("CAIRN:Profile:Array"));
    // The system itself is fetched from root/cairn.
    let r = imethod(
        &s,
        "interop",
        "Associators",
        &(array + &class("ResultClass", "CIM_ComputerSystem")),
    );
    assert_eq!(
        count(&r, "<INSTANCE CLASSNAME=\"Cairn_StorageSystem\">"),
        1,
        "{r}"
    );
    assert_eq!(error_code(&r), None);
}
