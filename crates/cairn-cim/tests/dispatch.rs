//! Operation dispatch through `CimServer::handle`: intrinsic operations, extrinsic methods and errors,
//! over the real interop model wrapping the in-test array (`common::TestArray`).

mod common;

use std::sync::Arc;

use cairn_cim::limits::{REQUEST_BODY_BYTES_MAX, XML_DEPTH_MAX};
use cairn_cim::{CimHttpOutcome, HttpCimRequest};
use common::{
    count, error_code, imethod, instancename_xml, method, server, server_with, volume_name_xml,
    TestArray, SYSTEM,
};

fn classname(param: &str, class: &str) -> String {
    format!("<IPARAMVALUE NAME=\"{param}\"><CLASSNAME NAME=\"{class}\"/></IPARAMVALUE>")
}

fn value(param: &str, v: &str) -> String {
    format!("<IPARAMVALUE NAME=\"{param}\"><VALUE>{v}</VALUE></IPARAMVALUE>")
}

fn plist(names: &[&str]) -> String {
    let v: String = names
        .iter()
        .map(|n| format!("<VALUE>{n}</VALUE>"))
        .collect();
    format!("<IPARAMVALUE NAME=\"PropertyList\"><VALUE.ARRAY>{v}</VALUE.ARRAY></IPARAMVALUE>")
}

fn system_name_xml() -> String {
    instancename_xml(
        "CIM_ComputerSystem",
        &[
            ("CreationClassName", "Cairn_StorageSystem"),
            ("Name", SYSTEM),
        ],
    )
}

fn param(name: &str, inner: &str) -> String {
    format!("<IPARAMVALUE NAME=\"{name}\">{inner}</IPARAMVALUE>")
}

// ---- namespaces and classes -------------------------------------------------------------------

#[test]
fn only_interop_and_root_cairn_exist() {
    let s = server();
    for ns in ["root/interop", "root/PG_Interop", "root/cimv2"] {
        let r = imethod(
            &s,
            ns,
            "EnumerateInstances",
            &classname("ClassName", "CIM_RegisteredProfile"),
        );
        assert_eq!(error_code(&r), Some(3), "{ns}");
    }
    for ns in ["interop", "root/cairn", "ROOT/Cairn"] {
        let r = imethod(
            &s,
            ns,
            "EnumerateInstanceNames",
            &classname("ClassName", "CIM_Namespace"),
        );
        assert_eq!(error_code(&r), None, "{ns}: {r}");
    }
}

#[test]
fn unknown_class_is_invalid_class() {
    let s = server();
    let r = imethod(
        &s,
        "root/cairn",
        "EnumerateInstances",
        &classname("ClassName", "CIM_NoSuchThing"),
    );
    assert_eq!(error_code(&r), Some(5));
    let r = imethod(
        &s,
        "root/cairn",
        "EnumerateClassNames",
        &classname("ClassName", "CIM_NoSuchThing"),
    );
    assert_eq!(error_code(&r), Some(5));
    // Known SMI-S classes Cairn has no instances of answer an empty list.
    for known in [
        "CIM_SCSIProtocolController",
        "CIM_StorageHardwareID",
        "CIM_FCPort",
        "CIM_IndicationSubscription",
    ] {
        let r = imethod(
            &s,
            "root/cairn",
            "EnumerateInstances",
            &classname("ClassName", known),
        );
        assert_eq!(
            (error_code(&r), count(&r, "<VALUE.NAMEDINSTANCE>")),
            (None, 0),
            "{known}"
        );
    }
    // GetClass of a class that does not exist: CIM_ERR_NOT_FOUND (DSP0200).
    let r = imethod(
        &s,
        "root/cairn",
        "GetClass",
        &classname("ClassName", "CIM_NoSuchThing"),
    );
    assert_eq!(error_code(&r), Some(6));
}

#[test]
fn get_class_registered_profile_with_qualifiers() {
    let s = server();
    let params = classname("ClassName", "CIM_RegisteredProfile")
        + &value("LocalOnly", "false")
        + &value("IncludeQualifiers", "true");
    let r = imethod(&s, "interop", "GetClass", &params);
    common::assert_well_formed(&r);
    assert!(
        r.contains(
            "<CLASS NAME=\"CIM_RegisteredProfile\" SUPERCLASS=\"CIM_RegisteredSpecification\">"
        ),
        "{r}"
    );
    assert!(r.contains("<PROPERTY NAME=\"RegisteredOrganization\" TYPE=\"uint16\""));
    assert!(r.contains("<QUALIFIER NAME=\"ValueMap\" TYPE=\"string\""));
    assert!(r.contains("<VALUE>SNIA</VALUE>"));
    assert!(r.contains("<PROPERTY NAME=\"InstanceID\" TYPE=\"string\" PROPAGATED=\"true\">"));
    // LocalOnly defaults to TRUE: inherited properties go; qualifiers can be switched off.
    let r = imethod(
        &s,
        "interop",
        "GetClass",
        &(classname("ClassName", "CIM_RegisteredProfile") + &value("IncludeQualifiers", "false")),
    );
    assert!(!r.contains("NAME=\"InstanceID\""));
    assert!(!r.contains("<QUALIFIER"));
    assert!(
        r.contains("<PROPERTY.ARRAY NAME=\"ImplementedFeatures\" TYPE=\"string\">"),
        "{r}"
    );
    // LocalOnly also drops the inherited qualifiers of an overriding property (Cairn_ObjectManager
    // overrides nothing; CIM_ObjectManager overrides Name, whose Key qualifier comes from CIM_Service).
    let r = imethod(
        &s,
        "interop",
        "GetClass",
        &classname("ClassName", "CIM_ObjectManager"),
    );
    let name_prop = r
        .split("<PROPERTY NAME=\"Name\"")
        .nth(1)
        .expect("Name is overridden locally");
    let name_prop = name_prop.split("</PROPERTY>").next().expect("property end");
    assert!(!name_prop.contains("NAME=\"Key\""), "{name_prop}");
    let r = imethod(
        &s,
        "interop",
        "GetClass",
        &(classname("ClassName", "CIM_ObjectManager") + &value("LocalOnly", "false")),
    );
    let name_prop = r
        .split("<PROPERTY NAME=\"Name\"")
        .nth(1)
        .expect("Name")
        .split("</PROPERTY>")
        .next()
        .expect("end");
    assert!(name_prop.contains("<QUALIFIER NAME=\"Key\" TYPE=\"boolean\" PROPAGATED=\"true\" OVERRIDABLE=\"false\"><VALUE>TRUE</VALUE></QUALIFIER>"), "{name_prop}");
    // IncludeClassOrigin and PropertyList.
    let r = imethod(
        &s,
        "interop",
        "GetClass",
        &(classname("ClassName", "Cairn_RegisteredProfile")
            + &value("LocalOnly", "false")
            + &value("IncludeClassOrigin", "true")
            + &plist(&["RegisteredName"])),
    );
    assert_eq!(count(&r, "<PROPERTY"), 1, "{r}");
    assert!(r.contains("CLASSORIGIN=\"CIM_RegisteredSpecification\""));
}

#[test]
fn class_enumeration_depth() {
    let s = server();
    let r = imethod(&s, "root/cairn", "EnumerateClassNames", "");
    assert!(r.contains("<CLASSNAME NAME=\"CIM_ManagedElement\"/>"));
    assert!(!r.contains("CIM_StorageVolume"));
    let r = imethod(
        &s,
        "root/cairn",
        "EnumerateClassNames",
        &classname("ClassName", "CIM_StorageVolume"),
    );
    assert!(
        r.contains("<IRETURNVALUE><CLASSNAME NAME=\"Cairn_StorageVolume\"/></IRETURNVALUE>"),
        "{r}"
    );
    let r = imethod(
        &s,
        "root/cairn",
        "EnumerateClassNames",
        &(classname("ClassName", "CIM_ManagedElement") + &value("DeepInheritance", "true")),
    );
    assert!(r.contains("\"Cairn_StorageVolume\"") && r.contains("\"CIM_StorageExtent\""));
    let r = imethod(
        &s,
        "root/cairn",
        "EnumerateClasses",
        &(classname("ClassName", "CIM_StoragePool") + &value("LocalOnly", "false")),
    );
    assert_eq!(count(&r, "<CLASS "), 1);
    assert!(r.contains("<CLASS NAME=\"Cairn_StoragePool\" SUPERCLASS=\"CIM_StoragePool\">"));
    assert!(
        r.contains("<METHOD NAME=\"GetSupportedSizeRange\" TYPE=\"uint32\" PROPAGATED=\"true\">"),
        "{r}"
    );
    assert!(r.contains("<PARAMETER.REFERENCE NAME=\"Goal\" REFERENCECLASS=\"CIM_StorageSetting\">"));
}

// ---- instances ---------------------------------------------------------------------------------

#[test]
fn enumerate_instances_returns_subclasses_with_declared_types() {
    let s = server();
    let r = imethod(
        &s,
        "root/cairn",
        "EnumerateInstances",
        &classname("ClassName", "CIM_StorageVolume"),
    );
    common::assert_well_formed(&r);
    assert_eq!(count(&r, "<VALUE.NAMEDINSTANCE>"), 3);
    assert_eq!(count(&r, "<INSTANCE CLASSNAME=\"Cairn_StorageVolume\">"), 3);
    assert!(
        r.contains("<PROPERTY NAME=\"BlockSize\" TYPE=\"uint64\"><VALUE>512</VALUE></PROPERTY>")
    );
    assert!(r.contains("<PROPERTY.ARRAY NAME=\"OperationalStatus\" TYPE=\"uint16\"><VALUE.ARRAY><VALUE>2</VALUE></VALUE.ARRAY></PROPERTY.ARRAY>"));
    // Unset properties are present as NULL with their declared type.
    assert!(r.contains("<PROPERTY NAME=\"Caption\" TYPE=\"string\"></PROPERTY>"));
    // Escaping of values.
    assert!(r.contains("<VALUE>vol &lt;two&gt; &amp; &quot;more&quot;</VALUE>"));
    // DeepInheritance=FALSE keeps subclass instances but only the requested class's properties.
    let r = imethod(
        &s,
        "root/cairn",
        "EnumerateInstances",
        &(classname("ClassName", "CIM_ManagedElement") + &value("DeepInheritance", "FALSE")),
    );
    assert!(r.contains("<INSTANCE CLASSNAME=\"Cairn_StorageVolume\">"));
    assert!(!r.contains("NAME=\"BlockSize\""));
    assert!(r.contains("NAME=\"ElementName\""));
}

#[test]
fn provider_values_take_the_declared_type() {
    // The fixture gives Dedicated (uint16[]) as uint32 values.
    let s = server();
    let r = imethod(
        &s,
        "root/cairn",
        "EnumerateInstances",
        &(classname("ClassName", "CIM_ComputerSystem") + &plist(&["Dedicated"])),
    );
    assert!(
        r.contains("<PROPERTY.ARRAY NAME=\"Dedicated\" TYPE=\"uint16\"><VALUE.ARRAY><VALUE>3</VALUE><VALUE>15</VALUE></VALUE.ARRAY></PROPERTY.ARRAY>"),
        "{r}"
    );
}

#[test]
fn property_list_and_class_origin() {
    let s = server();
    let r = imethod(
        &s,
        "root/cairn",
        "EnumerateInstances",
        &(classname("ClassName", "CIM_StoragePool")
            + &plist(&["ElementName", "usage"])
            + &value("IncludeClassOrigin", "TRUE")),
    );
    assert_eq!(count(&r, "<PROPERTY"), 4, "{r}");
    assert!(r.contains("<PROPERTY NAME=\"Usage\" TYPE=\"uint16\" CLASSORIGIN=\"CIM_StoragePool\"><VALUE>2</VALUE></PROPERTY>"), "{r}");
    let r = imethod(
        &s,
        "root/cairn",
        "EnumerateInstances",
        &(classname("ClassName", "CIM_StoragePool") + &plist(&[])),
    );
    assert_eq!(count(&r, "<PROPERTY"), 0);
    assert_eq!(count(&r, "<VALUE.NAMEDINSTANCE>"), 2);
}

#[test]
fn instance_names_get_paths_from_keys() {
    let s = server();
    let r = imethod(
        &s,
        "root/cairn",
        "EnumerateInstanceNames",
        &classname("ClassName", "CIM_StoragePool"),
    );
    assert_eq!(
        count(&r, "<INSTANCENAME CLASSNAME=\"Cairn_StoragePool\">"),
        2
    );
    assert!(r.contains("<KEYBINDING NAME=\"InstanceID\"><KEYVALUE VALUETYPE=\"string\" TYPE=\"string\">CAIRN:POOL-A</KEYVALUE></KEYBINDING>"));
}

#[test]
fn get_instance_by_superclass_name_and_untyped_keys() {
    let s = server();
    let r = imethod(
        &s,
        "root/cairn",
        "GetInstance",
        &param(
            "InstanceName",
            &volume_name_xml("CIM_StorageVolume", "LUN-0002"),
        ),
    );
    assert!(
        r.contains("<IRETURNVALUE><INSTANCE CLASSNAME=\"Cairn_StorageVolume\">"),
        "{r}"
    );
    assert!(r.contains("<VALUE>LUN-0002</VALUE>"));
    let r = imethod(
        &s,
        "root/cairn",
        "GetInstance",
        &param(
            "InstanceName",
            &volume_name_xml("CIM_StorageVolume", "LUN-9999"),
        ),
    );
    assert_eq!(error_code(&r), Some(6));
    let r = imethod(
        &s,
        "root/cairn",
        "GetInstance",
        &param("InstanceName", &volume_name_xml("CIM_Nope", "LUN-0001")),
    );
    assert_eq!(error_code(&r), Some(5));
    let r = imethod(&s, "root/cairn", "GetInstance", "");
    assert_eq!(error_code(&r), Some(4));
    let r = imethod(
        &s,
        "root/cairn",
        "GetInstance",
        &(param(
            "InstanceName",
            &volume_name_xml("CIM_StorageVolume", "LUN-0001"),
        ) + &value("LocalOnly", "maybe")),
    );
    assert_eq!(error_code(&r), Some(4));
}

#[test]
fn delete_instance_only_where_the_provider_allows() {
    let s = server();
    let job = instancename_xml("CIM_ConcreteJob", &[("InstanceID", "CAIRN:JOB-1")]);
    let r = imethod(
        &s,
        "root/cairn",
        "DeleteInstance",
        &param("InstanceName", &job),
    );
    assert_eq!(error_code(&r), None, "{r}");
    assert!(r.contains("<IMETHODRESPONSE NAME=\"DeleteInstance\"></IMETHODRESPONSE>"));
    let r = imethod(
        &s,
        "root/cairn",
        "DeleteInstance",
        &param("InstanceName", &job),
    );
    assert_eq!(error_code(&r), Some(6));
    let r = imethod(
        &s,
        "root/cairn",
        "DeleteInstance",
        &param(
            "InstanceName",
            &volume_name_xml("CIM_StorageVolume", "LUN-0001"),
        ),
    );
    assert_eq!(error_code(&r), Some(7));
}

#[test]
fn other_intrinsic_operations_are_not_supported() {
    let s = server();
    let sub = "<IPARAMVALUE NAME=\"NewInstance\"><INSTANCE CLASSNAME=\"CIM_IndicationSubscription\"></INSTANCE></IPARAMVALUE>";
    for (m, p) in [
        ("CreateInstance", sub.to_owned()),
        (
            "ExecQuery",
            value("QueryLanguage", "WQL") + &value("Query", "select * from CIM_StorageVolume"),
        ),
        ("GetProperty", String::new()),
        ("EnumerateQualifiers", String::new()),
        ("OpenQueryInstances", String::new()),
        ("NoSuchOperation", String::new()),
    ] {
        let r = imethod(&s, "root/cairn", m, &p);
        assert_eq!(error_code(&r), Some(7), "{m}");
        assert!(r.contains(&format!("<IMETHODRESPONSE NAME=\"{m}\">")));
    }
}

// ---- associations ------------------------------------------------------------------------------

#[test]
fn associators_are_subclass_aware_and_filtered() {
    let s = server();
    let obj = param("ObjectName", &system_name_xml());
    let r = imethod(
        &s,
        "root/cairn",
        "Associators",
        &(obj.clone()
            + &classname("AssocClass", "CIM_HostedStoragePool")
            + &classname("ResultClass", "CIM_StoragePool")
            + &value("Role", "GroupComponent")
            + &value("ResultRole", "PartComponent")
            + &plist(&["InstanceID", "ElementName"])),
    );
    common::assert_well_formed(&r);
    assert_eq!(count(&r, "<VALUE.OBJECTWITHPATH>"), 2, "{r}");
    assert_eq!(count(&r, "<PROPERTY "), 4);
    assert!(r.contains("<INSTANCEPATH><NAMESPACEPATH><HOST>localhost</HOST><LOCALNAMESPACEPATH><NAMESPACE NAME=\"root\"/><NAMESPACE NAME=\"cairn\"/></LOCALNAMESPACEPATH></NAMESPACEPATH><INSTANCENAME CLASSNAME=\"Cairn_StoragePool\">"));
    // Wrong role, wrong result class: empty, not an error.
    let r = imethod(
        &s,
        "root/cairn",
        "Associators",
        &(obj.clone() + &value("Role", "PartComponent")),
    );
    assert_eq!(
        (error_code(&r), count(&r, "<VALUE.OBJECTWITHPATH>")),
        (None, 0)
    );
    let r = imethod(
        &s,
        "root/cairn",
        "AssociatorNames",
        &(obj.clone() + &classname("ResultClass", "CIM_StorageVolume")),
    );
    assert_eq!(count(&r, "<OBJECTPATH>"), 3, "{r}");
    let r = imethod(&s, "root/cairn", "AssociatorNames", &obj);
    assert_eq!(count(&r, "<OBJECTPATH>"), 5);
    let r = imethod(
        &s,
        "root/cairn",
        "AssociatorNames",
        &(obj + &classname("AssocClass", "CIM_NoSuch")),
    );
    assert_eq!(error_code(&r), Some(4));
}

#[test]
fn association_fast_path_is_used_and_still_filtered() {
    let array = Arc::new(TestArray::with_extra_volumes(4));
    let s = server_with(array.clone());
    let pool_b = param(
        "ObjectName",
        &instancename_xml("CIM_StoragePool", &[("InstanceID", "CAIRN:POOL-B")]),
    );
    let r = imethod(
        &s,
        "root/cairn",
        "AssociatorNames",
        &(pool_b.clone() + &classname("AssocClass", "CIM_AllocatedFromStoragePool")),
    );
    assert_eq!(count(&r, "<OBJECTPATH>"), 4, "{r}");
    let calls = array.calls.lock().unwrap().clone();
    assert!(calls.contains(&"fast:root/cairn:Cairn_AllocatedFromStoragePool".to_owned()));
    assert!(
        !calls
            .iter()
            .any(|c| c == "root/cairn:Cairn_AllocatedFromStoragePool"),
        "{calls:?}"
    );
    // Role and result class are still applied to what the fast path returned.
    let r = imethod(
        &s,
        "root/cairn",
        "AssociatorNames",
        &(pool_b.clone() + &value("Role", "Dependent")),
    );
    assert_eq!(count(&r, "<OBJECTPATH>"), 0);
    let r = imethod(
        &s,
        "root/cairn",
        "AssociatorNames",
        &(pool_b + &classname("ResultClass", "CIM_StoragePool")),
    );
    assert_eq!(count(&r, "<OBJECTPATH>"), 0);
}

#[test]
fn class_level_associations_come_from_the_repository() {
    let s = server();
    let vol_class = classname("ObjectName", "CIM_StorageVolume");
    let r = imethod(
        &s,
        "root/cairn",
        "AssociatorNames",
        &(vol_class.clone() + &classname("AssocClass", "CIM_AllocatedFromStoragePool")),
    );
    assert_eq!(count(&r, "<OBJECTPATH><CLASSPATH>"), 1, "{r}");
    assert!(r.contains("<NAMESPACE NAME=\"cairn\"/></LOCALNAMESPACEPATH></NAMESPACEPATH><CLASSNAME NAME=\"CIM_StoragePool\"/></CLASSPATH>"), "{r}");
    let r = imethod(
        &s,
        "root/cairn",
        "Associators",
        &(vol_class.clone() + &classname("AssocClass", "CIM_AllocatedFromStoragePool")),
    );
    assert!(r.contains("<VALUE.OBJECTWITHPATH><CLASSPATH>"), "{r}");
    assert!(r.contains("<CLASS NAME=\"CIM_StoragePool\" SUPERCLASS=\"CIM_ResourcePool\">"));
    assert!(
        !r.contains("<QUALIFIER"),
        "IncludeQualifiers defaults to FALSE"
    );
    let r = imethod(
        &s,
        "root/cairn",
        "ReferenceNames",
        &(vol_class.clone()
            + &classname("ResultClass", "CIM_AllocatedFromStoragePool")
            + &value("Role", "Dependent")),
    );
    assert_eq!(
        count(&r, "<CLASSPATH>"),
        2,
        "CIM_ and Cairn_AllocatedFromStoragePool: {r}"
    );
    let r = imethod(
        &s,
        "root/cairn",
        "ReferenceNames",
        &(vol_class.clone() + &value("Role", "NoSuchRole")),
    );
    assert_eq!((error_code(&r), count(&r, "<CLASSPATH>")), (None, 0));
    // Pull operations are for instances only.
    let r = imethod(
        &s,
        "root/cairn",
        "OpenAssociatorInstancePaths",
        &classname("InstanceName", "CIM_StorageVolume"),
    );
    assert_eq!(error_code(&r), Some(4));
}

#[test]
fn references_to_storage_synchronized_are_empty_not_errors() {
    let s = server();
    let refs = |id: &str, names: bool| {
        imethod(
            &s,
            "root/cairn",
            if names {
                "ReferenceNames"
            } else {
                "References"
            },
            &(param("ObjectName", &volume_name_xml("CIM_StorageVolume", id))
                + &classname("ResultClass", "CIM_StorageSynchronized")),
        )
    };
    let r = refs("LUN-0001", false);
    assert_eq!(count(&r, "<VALUE.OBJECTWITHPATH>"), 1, "{r}");
    assert!(r.contains("<PROPERTY.REFERENCE NAME=\"SystemElement\" REFERENCECLASS=\"CIM_ManagedElement\"><VALUE.REFERENCE><LOCALINSTANCEPATH>"), "{r}");
    assert!(r.contains("<PROPERTY NAME=\"SyncState\" TYPE=\"uint16\"></PROPERTY>"));
    let r = refs("LUN-0003", true);
    assert_eq!(count(&r, "<OBJECTPATH>"), 1);
    let r = refs("LUN-0002", false);
    assert_eq!(
        (error_code(&r), count(&r, "<VALUE.OBJECTWITHPATH>")),
        (None, 0)
    );
    assert!(r.contains("<IRETURNVALUE></IRETURNVALUE>"));
}

// ---- interop model -----------------------------------------------------------------------------

#[test]
fn interop_model_object_manager_namespaces_profiles() {
    let s = server();
    let r = imethod(
        &s,
        "interop",
        "EnumerateInstances",
        &classname("ClassName", "CIM_ObjectManager"),
    );
    assert_eq!(count(&r, "<VALUE.NAMEDINSTANCE>"), 1);
    assert!(r.contains("<PROPERTY NAME=\"ElementName\" TYPE=\"string\"><VALUE>Cairn</VALUE>"));
    let r = imethod(
        &s,
        "interop",
        "EnumerateInstances",
        &classname("ClassName", "CIM_Namespace"),
    );
    assert_eq!(count(&r, "<VALUE.NAMEDINSTANCE>"), 2);
    assert!(r.contains("<KEYVALUE VALUETYPE=\"string\" TYPE=\"string\">interop</KEYVALUE>"));
    assert!(r.contains("<KEYVALUE VALUETYPE=\"string\" TYPE=\"string\">root/cairn</KEYVALUE>"));
    let r = imethod(
        &s,
        "interop",
        "EnumerateInstanceNames",
        &classname("ClassName", "CIM_RegisteredProfile"),
    );
    assert_eq!(count(&r, "<INSTANCENAME"), 3);
    // The Server profile conforms through the object manager.
    let server_profile = instancename_xml(
        "CIM_RegisteredProfile",
        &[("InstanceID", cairn_smis::interop::SERVER_PROFILE_ID)],
    );
    let r = imethod(
        &s,
        "interop",
        "Associators",
        &(param("ObjectName", &server_profile)
            + &classname("AssocClass", "CIM_ElementConformsToProfile")),
    );
    assert_eq!(
        count(&r, "<INSTANCE CLASSNAME=\"Cairn_ObjectManager\">"),
        1,
        "{r}"
    );
    // libstoragemgmt: the array's system, with its namespace, from the Array profile.
    let array = instancename_xml(
        "CIM_RegisteredProfile",
        &[("InstanceID", "CAIRN:Profile:Array")],
    );
    let r = imethod(
        &s,
        "interop",
        "AssociatorNames",
        &(param("ObjectName", &array) + &classname("AssocClass", "CIM_ElementConformsToProfile")),
    );
    assert_eq!(count(&r, "<OBJECTPATH>"), 1);
    assert!(r.contains("<NAMESPACE NAME=\"root\"/><NAMESPACE NAME=\"cairn\"/></LOCALNAMESPACEPATH></NAMESPACEPATH><INSTANCENAME CLASSNAME=\"Cairn_StorageSystem\">"), "{r}");
    // ... and the instance itself, fetched across namespaces.
    let r = imethod(
        &s,
        "interop",
        "Associators",
        &(param("ObjectName", &array) + &classname("AssocClass", "CIM_ElementConformsToProfile")),
    );
    assert_eq!(
        count(&r, "<INSTANCE CLASSNAME=\"Cairn_StorageSystem\">"),
        1,
        "{r}"
    );
    // Component profiles, SNIA direction.
    let r = imethod(
        &s,
        "interop",
        "AssociatorNames",
        &(param("ObjectName", &array)
            + &classname("AssocClass", "CIM_ReferencedProfile")
            + &value("ResultRole", "Dependent")),
    );
    assert!(r.contains("CAIRN:Profile:BlockServices"), "{r}");
}

// ---- extrinsic methods -------------------------------------------------------------------------

fn service_target(class: &str) -> String {
    format!(
        "<LOCALINSTANCEPATH><LOCALNAMESPACEPATH><NAMESPACE NAME=\"root\"/><NAMESPACE NAME=\"cairn\"/></LOCALNAMESPACEPATH>{}</LOCALINSTANCEPATH>",
        instancename_xml(
            class,
            &[("CreationClassName", "Cairn_ReplicationService"), ("Name", "ReplicationService"), ("SystemCreationClassName", "Cairn_StorageSystem"), ("SystemName", SYSTEM)]
        )
    )
}

fn source_ref() -> String {
    format!(
        "<VALUE.REFERENCE>{}</VALUE.REFERENCE>",
        volume_name_xml("CIM_StorageVolume", "LUN-0001")
    )
}

#[test]
fn create_element_replica_untyped_params_are_typed_from_the_class() {
    let array = Arc::new(TestArray::new());
    let s = server_with(array);
    let params = format!(
        "<PARAMVALUE NAME=\"ElementName\"><VALUE>snap 2</VALUE></PARAMVALUE><PARAMVALUE NAME=\"SyncType\"><VALUE>7</VALUE></PARAMVALUE><PARAMVALUE NAME=\"SourceElement\">{}</PARAMVALUE><PARAMVALUE NAME=\"TargetPool\"/>",
        source_ref()
    );
    let hdr =
        "root%2Fcairn%3ACIM_ReplicationService.CreationClassName=%22Cairn_ReplicationService%22";
    let r = method(
        &s,
        hdr,
        "CreateElementReplica",
        &service_target("CIM_ReplicationService"),
        &params,
    );
    common::assert_well_formed(&r);
    assert!(r.contains("<METHODRESPONSE NAME=\"CreateElementReplica\"><RETURNVALUE PARAMTYPE=\"uint32\"><VALUE>0</VALUE></RETURNVALUE>"), "{r}");
    assert!(r.contains("<PARAMVALUE NAME=\"TargetElement\" PARAMTYPE=\"reference\"><VALUE.REFERENCE><LOCALINSTANCEPATH>"), "{r}");
    let r = imethod(
        &s,
        "root/cairn",
        "EnumerateInstanceNames",
        &classname("ClassName", "CIM_StorageVolume"),
    );
    assert_eq!(count(&r, "<INSTANCENAME"), 4);
    let r = imethod(
        &s,
        "root/cairn",
        "ReferenceNames",
        &(param(
            "ObjectName",
            &volume_name_xml("CIM_StorageVolume", "LUN-0001"),
        ) + &classname("ResultClass", "CIM_StorageSynchronized")),
    );
    assert_eq!(count(&r, "<OBJECTPATH>"), 2);
}

#[test]
fn method_errors() {
    let s = server();
    let hdr = "root/cairn:CIM_ReplicationService";
    let target = service_target("CIM_ReplicationService");
    let r = method(&s, hdr, "NoSuchMethod", &target, "");
    assert_eq!(error_code(&r), Some(17));
    assert!(r.contains("<METHODRESPONSE NAME=\"NoSuchMethod\">"));
    let r = method(
        &s,
        hdr,
        "CreateElementReplica",
        &target,
        "<PARAMVALUE NAME=\"SyncType\"><VALUE>seven</VALUE></PARAMVALUE>",
    );
    assert_eq!(error_code(&r), Some(4));
    let r = method(
        &s,
        hdr,
        "CreateElementReplica",
        &target,
        "<PARAMVALUE NAME=\"Bogus\"><VALUE>1</VALUE></PARAMVALUE>",
    );
    assert_eq!(error_code(&r), Some(4));
    let r = method(
        &s,
        hdr,
        "CreateElementReplica",
        &target,
        "<PARAMVALUE NAME=\"SourceElement\"><VALUE>not a ref</VALUE></PARAMVALUE>",
    );
    assert_eq!(error_code(&r), Some(4));
    // Case-insensitive names: method, parameter, class.
    let r = method(&s, "root/cairn:CAIRN_REPLICATIONSERVICE", "createelementreplica", &service_target("CAIRN_REPLICATIONSERVICE"), &format!("<PARAMVALUE NAME=\"synctype\" PARAMTYPE=\"uint16\"><VALUE>8</VALUE></PARAMVALUE><PARAMVALUE NAME=\"SOURCEELEMENT\" PARAMTYPE=\"reference\">{}</PARAMVALUE>", source_ref()));
    assert!(r.contains("<METHODRESPONSE NAME=\"createelementreplica\"><RETURNVALUE PARAMTYPE=\"uint32\"><VALUE>0</VALUE>"), "{r}");
    // Missing target instance.
    let missing = service_target("CIM_ReplicationService")
        .replace("ReplicationService</KEYVALUE>", "Other</KEYVALUE>");
    let r = method(&s, hdr, "CreateElementReplica", &missing, "");
    assert_eq!(error_code(&r), Some(6));
    // Static call on an unknown class.
    let target = "<LOCALCLASSPATH><LOCALNAMESPACEPATH><NAMESPACE NAME=\"root/cairn\"/></LOCALNAMESPACEPATH><CLASSNAME NAME=\"CAIRN_Service\"/></LOCALCLASSPATH>";
    let r = method(
        &s,
        "root/cairn:CAIRN_Service",
        "CairnStaticMethod",
        target,
        "",
    );
    assert_eq!(error_code(&r), Some(5));
    // The interop model's own objects have no methods to run.
    let om = format!(
        "<LOCALINSTANCEPATH><LOCALNAMESPACEPATH><NAMESPACE NAME=\"interop\"/></LOCALNAMESPACEPATH>{}</LOCALINSTANCEPATH>",
        instancename_xml("CIM_ObjectManager", &[("SystemCreationClassName", "Cairn_StorageSystem"), ("SystemName", SYSTEM), ("CreationClassName", "Cairn_ObjectManager"), ("Name", "Cairn")])
    );
    let r = method(
        &s,
        "interop:CIM_ObjectManager",
        "RequestStateChange",
        &om,
        "<PARAMVALUE NAME=\"RequestedState\"><VALUE>3</VALUE></PARAMVALUE>",
    );
    assert_eq!(error_code(&r), Some(7), "{r}");
}

// ---- pull operations ---------------------------------------------------------------------------

fn context_of(r: &str) -> String {
    let prefix = "<PARAMVALUE NAME=\"EnumerationContext\" PARAMTYPE=\"string\"><VALUE>";
    let start = r.find(prefix).expect("context") + prefix.len();
    r[start..].split('<').next().expect("value").to_owned()
}

fn eos(r: &str) -> bool {
    r.contains(
        "<PARAMVALUE NAME=\"EndOfSequence\" PARAMTYPE=\"boolean\"><VALUE>TRUE</VALUE></PARAMVALUE>",
    )
}

#[test]
fn pull_instances_page_through_everything() {
    let s = server_with(Arc::new(TestArray::with_extra_volumes(22)));
    let r = imethod(
        &s,
        "root/cairn",
        "OpenEnumerateInstances",
        &(classname("ClassName", "CIM_StorageVolume")
            + &value("MaxObjectCount", "10")
            + &value("OperationTimeout", "30")),
    );
    common::assert_well_formed(&r);
    assert_eq!(
        count(&r, "<VALUE.INSTANCEWITHPATH><INSTANCEPATH>"),
        10,
        "{r}"
    );
    assert!(!eos(&r));
    let ctx = context_of(&r);
    let pull = |n: u32| {
        imethod(
            &s,
            "root/cairn",
            "PullInstancesWithPath",
            &(value("EnumerationContext", &ctx) + &value("MaxObjectCount", &n.to_string())),
        )
    };
    let r = pull(10);
    assert_eq!(
        (count(&r, "<VALUE.INSTANCEWITHPATH>"), eos(&r)),
        (10, false)
    );
    let r = pull(0);
    assert_eq!((count(&r, "<VALUE.INSTANCEWITHPATH>"), eos(&r)), (0, false));
    let r = pull(10);
    assert_eq!((count(&r, "<VALUE.INSTANCEWITHPATH>"), eos(&r)), (5, true));
    assert!(
        r.contains("<PARAMVALUE NAME=\"EnumerationContext\" PARAMTYPE=\"string\"></PARAMVALUE>")
    );
    assert_eq!(error_code(&pull(10)), Some(21));
}

#[test]
fn pull_paths_close_and_errors() {
    let s = server_with(Arc::new(TestArray::with_extra_volumes(5)));
    let r = imethod(
        &s,
        "root/cairn",
        "OpenEnumerateInstancePaths",
        &(classname("ClassName", "CIM_StorageVolume") + &value("MaxObjectCount", "3")),
    );
    assert_eq!(count(&r, "<INSTANCEPATH>"), 3, "{r}");
    let ctx = context_of(&r);
    // An instance pull on a paths context is refused; the context stays usable.
    let r = imethod(
        &s,
        "root/cairn",
        "PullInstancesWithPath",
        &(value("EnumerationContext", &ctx) + &value("MaxObjectCount", "3")),
    );
    assert_eq!(error_code(&r), Some(4));
    let r = imethod(
        &s,
        "root/cairn",
        "PullInstancePaths",
        &(value("EnumerationContext", &ctx) + &value("MaxObjectCount", "3")),
    );
    assert_eq!((count(&r, "<INSTANCEPATH>"), eos(&r)), (3, false));
    let r = imethod(
        &s,
        "interop",
        "CloseEnumeration",
        &value("EnumerationContext", &ctx),
    );
    assert_eq!(error_code(&r), Some(21), "context belongs to root/cairn");
    let r = imethod(
        &s,
        "root/cairn",
        "CloseEnumeration",
        &value("EnumerationContext", &ctx),
    );
    assert_eq!(error_code(&r), None);
    let r = imethod(
        &s,
        "root/cairn",
        "PullInstancePaths",
        &(value("EnumerationContext", &ctx) + &value("MaxObjectCount", "3")),
    );
    assert_eq!(error_code(&r), Some(21));
    let r = imethod(
        &s,
        "root/cairn",
        "PullInstancePaths",
        &value("EnumerationContext", &ctx),
    );
    assert_eq!(error_code(&r), Some(4), "MaxObjectCount is required");
    let base = classname("ClassName", "CIM_StorageVolume");
    let r = imethod(
        &s,
        "root/cairn",
        "OpenEnumerateInstances",
        &(base.clone()
            + &value("FilterQueryLanguage", "DMTF:FQL")
            + &value("FilterQuery", "x = 1")),
    );
    assert_eq!(error_code(&r), Some(25));
    let r = imethod(
        &s,
        "root/cairn",
        "OpenEnumerateInstances",
        &(base.clone() + &value("ContinueOnError", "TRUE")),
    );
    assert_eq!(error_code(&r), Some(26));
    let r = imethod(
        &s,
        "root/cairn",
        "OpenEnumerateInstances",
        &(base.clone() + &value("OperationTimeout", "100000")),
    );
    assert_eq!(error_code(&r), Some(22));
    let r = imethod(
        &s,
        "root/cairn",
        "OpenEnumerateInstances",
        &(base + &value("MaxObjectCount", "-1")),
    );
    assert_eq!(error_code(&r), Some(4));
    let r = imethod(
        &s,
        "root/cairn",
        "OpenEnumerateInstances",
        &classname("ClassName", "CIM_Nope"),
    );
    assert_eq!(error_code(&r), Some(5));
}

#[test]
fn open_association_pulls() {
    let s = server();
    let r = imethod(
        &s,
        "root/cairn",
        "OpenAssociatorInstances",
        &(param("InstanceName", &system_name_xml())
            + &classname("AssocClass", "CIM_HostedStoragePool")
            + &value("MaxObjectCount", "1")),
    );
    assert_eq!(
        (
            count(&r, "<INSTANCE CLASSNAME=\"Cairn_StoragePool\">"),
            eos(&r)
        ),
        (1, false),
        "{r}"
    );
    let r = imethod(
        &s,
        "root/cairn",
        "PullInstancesWithPath",
        &(value("EnumerationContext", &context_of(&r)) + &value("MaxObjectCount", "5")),
    );
    assert_eq!(
        (
            count(&r, "<INSTANCE CLASSNAME=\"Cairn_StoragePool\">"),
            eos(&r)
        ),
        (1, true)
    );
    let r = imethod(
        &s,
        "root/cairn",
        "OpenReferenceInstancePaths",
        &(param(
            "InstanceName",
            &volume_name_xml("CIM_StorageVolume", "LUN-0002"),
        ) + &classname("ResultClass", "CIM_StorageSynchronized")
            + &value("MaxObjectCount", "10")),
    );
    assert_eq!(
        (count(&r, "<INSTANCEPATH>"), eos(&r), error_code(&r)),
        (0, true, None),
        "{r}"
    );
    let r = imethod(
        &s,
        "root/cairn",
        "OpenAssociatorInstancePaths",
        &(param(
            "InstanceName",
            &volume_name_xml("CIM_StorageVolume", "LUN-0001"),
        ) + &value("MaxObjectCount", "10")),
    );
    assert_eq!(
        count(&r, "<INSTANCEPATH>"),
        3,
        "pool, system, snapshot: {r}"
    );
    let r = imethod(
        &s,
        "root/cairn",
        "OpenReferenceInstances",
        &(param(
            "InstanceName",
            &volume_name_xml("CIM_StorageVolume", "LUN-0001"),
        ) + &value("MaxObjectCount", "10")),
    );
    assert_eq!(count(&r, "<VALUE.INSTANCEWITHPATH>"), 3, "{r}");
}

// ---- HTTP-level checks -------------------------------------------------------------------------

const GOOD: &str = "<?xml version=\"1.0\"?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"1\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ><IMETHODCALL NAME=\"EnumerateClassNames\"><LOCALNAMESPACEPATH><NAMESPACE NAME=\"root\"/><NAMESPACE NAME=\"cairn\"/></LOCALNAMESPACEPATH></IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>";

fn handle(
    op: Option<&str>,
    m: Option<&str>,
    obj: Option<&str>,
    ver: Option<&str>,
    body: &[u8],
) -> CimHttpOutcome {
    server().handle(&HttpCimRequest {
        cim_operation: op,
        cim_method: m,
        cim_object: obj,
        cim_protocol_version: ver,
        body,
    })
}

#[test]
fn header_checks() {
    let ok = |o: CimHttpOutcome| matches!(o, CimHttpOutcome::Response(_));
    let bad = |e: &'static str| CimHttpOutcome::BadRequest { cim_error: e };
    let g = GOOD.as_bytes();
    assert!(ok(handle(
        Some("MethodCall"),
        Some("EnumerateClassNames"),
        Some("root/cairn"),
        None,
        g
    )));
    assert!(ok(handle(
        Some("methodcall"),
        Some("EnumerateClassNames"),
        Some("root%2Fcairn"),
        Some("1.0"),
        g
    )));
    assert!(ok(handle(
        Some("MethodCall"),
        Some("EnumerateClassNames"),
        Some("root/cairn"),
        Some("1.1"),
        g
    )));
    assert_eq!(
        handle(
            None,
            Some("EnumerateClassNames"),
            Some("root/cairn"),
            None,
            g
        ),
        bad("unsupported-operation")
    );
    assert_eq!(
        handle(
            Some("MethodResponse"),
            Some("EnumerateClassNames"),
            Some("root/cairn"),
            None,
            g
        ),
        bad("unsupported-operation")
    );
    assert_eq!(
        handle(Some("MethodCall"), None, Some("root/cairn"), None, g),
        bad("header-mismatch")
    );
    assert_eq!(
        handle(
            Some("MethodCall"),
            Some("EnumerateClassNames"),
            None,
            None,
            g
        ),
        bad("header-mismatch")
    );
    assert_eq!(
        handle(
            Some("MethodCall"),
            Some("GetClass"),
            Some("root/cairn"),
            None,
            g
        ),
        bad("header-mismatch")
    );
    assert_eq!(
        handle(
            Some("MethodCall"),
            Some("EnumerateClassNames"),
            Some("interop"),
            None,
            g
        ),
        bad("header-mismatch")
    );
    assert_eq!(
        handle(
            Some("MethodCall"),
            Some("EnumerateClassNames"),
            Some("root%zzcairn"),
            None,
            g
        ),
        bad("header-mismatch")
    );
    assert_eq!(
        handle(
            Some("MethodCall"),
            Some("EnumerateClassNames"),
            Some("root/cairn"),
            Some("2.0"),
            g
        ),
        CimHttpOutcome::NotImplemented {
            cim_error: "unsupported-protocol-version"
        }
    );
}

#[test]
fn extrinsic_header_must_name_the_target_class() {
    let body = format!(
        "<?xml version=\"1.0\"?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"1\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ><METHODCALL NAME=\"CreateElementReplica\">{}</METHODCALL></SIMPLEREQ></MESSAGE></CIM>",
        service_target("CIM_ReplicationService")
    );
    let b = body.as_bytes();
    let mm = Some("MethodCall");
    assert!(matches!(
        handle(
            mm,
            Some("CreateElementReplica"),
            Some("root/cairn:CIM_ReplicationService.Name=\"x\""),
            None,
            b
        ),
        CimHttpOutcome::Response(_)
    ));
    assert!(matches!(
        handle(
            mm,
            Some("CreateElementReplica"),
            Some("root%2Fcairn%3Acim_replicationservice"),
            None,
            b
        ),
        CimHttpOutcome::Response(_)
    ));
    for obj in [
        "root/cairn",
        "root/cairn:CIM_StorageVolume",
        "interop:CIM_ReplicationService",
    ] {
        assert_eq!(
            handle(mm, Some("CreateElementReplica"), Some(obj), None, b),
            CimHttpOutcome::BadRequest {
                cim_error: "header-mismatch"
            },
            "{obj}"
        );
    }
}

#[test]
fn bad_bodies_get_their_cim_errors_and_the_server_keeps_serving() {
    let h = |method: &str, body: &[u8]| {
        handle(
            Some("MethodCall"),
            Some(method),
            Some("root/cairn"),
            None,
            body,
        )
    };
    let bad = |e: &'static str| CimHttpOutcome::BadRequest { cim_error: e };
    assert_eq!(
        h("EnumerateClassNames", b"<CIM><MESSAGE"),
        bad("request-not-well-formed")
    );
    assert_eq!(
        h("EnumerateClassNames", b""),
        bad("request-not-well-formed")
    );
    assert_eq!(
        h("EnumerateClassNames", b"\xff\xfe<"),
        bad("request-not-well-formed")
    );
    let laughs = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">{}]><CIM>&lol9;</CIM>",
        (1..10)
            .map(|i| format!(
                "<!ENTITY lol{i} \"{}\">",
                format!("&lol{};", i - 1).repeat(10)
            ))
            .collect::<String>()
    );
    assert_eq!(
        h("EnumerateClassNames", laughs.as_bytes()),
        bad("request-not-well-formed")
    );
    let deep = format!(
        "<CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\">{}{}</CIM>",
        "<X>".repeat(XML_DEPTH_MAX * 4),
        "</X>".repeat(XML_DEPTH_MAX * 4)
    );
    assert_eq!(
        h("EnumerateClassNames", deep.as_bytes()),
        bad("request-not-valid")
    );
    let huge = vec![b' '; REQUEST_BODY_BYTES_MAX + 1];
    assert_eq!(h("EnumerateClassNames", &huge), bad("request-not-valid"));
    assert_eq!(
        h("EnumerateClassNames", b"<FOO/>"),
        bad("request-not-valid")
    );
    assert_eq!(
        h(
            "EnumerateClassNames",
            &GOOD
                .replace("CIMVERSION=\"2.0\"", "CIMVERSION=\"3.0\"")
                .into_bytes()
        ),
        bad("unsupported-cim-version")
    );
    assert_eq!(
        h(
            "EnumerateClassNames",
            &GOOD
                .replace("DTDVERSION=\"2.0\"", "DTDVERSION=\"1.1\"")
                .into_bytes()
        ),
        bad("unsupported-dtd-version")
    );
    assert_eq!(
        h(
            "EnumerateClassNames",
            &GOOD
                .replace("PROTOCOLVERSION=\"1.0\"", "PROTOCOLVERSION=\"2.0\"")
                .into_bytes()
        ),
        CimHttpOutcome::NotImplemented {
            cim_error: "unsupported-protocol-version"
        }
    );
    assert_eq!(
        h(
            "EnumerateClassNames",
            &GOOD.replace("SIMPLEREQ>", "MULTIREQ>").into_bytes()
        ),
        CimHttpOutcome::NotImplemented {
            cim_error: "multiple-requests-unsupported"
        }
    );
    assert!(matches!(
        h("EnumerateClassNames", GOOD.as_bytes()),
        CimHttpOutcome::Response(_)
    ));
}
