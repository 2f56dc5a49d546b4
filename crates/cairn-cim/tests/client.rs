//! The client half of the codec against the server half: requests the client encodes are decoded
//! by the server decoder as sent, responses the server encodes are decoded by the client as
//! written, and whole exchanges run through the real `CimServer` over the shared test array.

mod common;

use cairn_cim::client::{decode_response, encode_request, Operation, Reply, Returned};
use cairn_cim::request::{Call, MethodTarget, RawValue};
use cairn_cim::xml::decode::decode_request;
use cairn_cim::xml::encode::{imethod_response, method_response, ClassOptions, IReturn};
use cairn_cim::xml::encode::{MethodReturn, OutParam};
use cairn_cim::{
    CimError, CimHttpOutcome, CimStatus, CimType, HttpCimRequest, Instance, InstancePath, Value,
};
use cairn_smis::interop::CAIRN_NAMESPACE;
use common::{pool_path, server, service_path, volume_path};

const OPTS: ClassOptions = ClassOptions {
    include_qualifiers: false,
    include_class_origin: false,
};

fn params_of(op: &Operation) -> Vec<(String, RawValue)> {
    let req = encode_request("7", CAIRN_NAMESPACE, op);
    let decoded = decode_request(&req.body).expect("the server decodes what the client encodes");
    assert_eq!(decoded.message_id, "7");
    assert_eq!(decoded.call.method(), op.method());
    assert_eq!(decoded.call.namespace(), CAIRN_NAMESPACE);
    let params = match decoded.call {
        Call::Intrinsic(c) => c.params,
        Call::Extrinsic(c) => c.params,
    };
    params.into_iter().map(|p| (p.name, p.value)).collect()
}

/// `path` as the server writes it in an INSTANCEPATH (host filled in).
fn hosted(path: InstancePath) -> InstancePath {
    InstancePath {
        host: Some(cairn_cim::xml::encode::DEFAULT_HOST.to_owned()),
        ..path
    }
}

fn local(path: &InstancePath) -> InstancePath {
    let mut p = path.clone();
    p.namespace = None;
    p.host = None;
    p
}

#[test]
fn intrinsic_requests_decode_as_encoded() {
    let vol = volume_path("LUN-0001");
    let got = params_of(&Operation::GetInstance { path: vol.clone() });
    assert_eq!(
        got,
        vec![("InstanceName".into(), RawValue::InstanceName(local(&vol)))]
    );
    let got = params_of(&Operation::OpenEnumerateInstances {
        class_name: "CIM_StorageVolume".into(),
        max_object_count: 100,
    });
    assert_eq!(
        got,
        vec![
            (
                "ClassName".into(),
                RawValue::ClassName("CIM_StorageVolume".into())
            ),
            ("MaxObjectCount".into(), RawValue::Scalar("100".into())),
        ]
    );
    let got = params_of(&Operation::PullInstancesWithPath {
        context: "ctx <&> \"1\"".into(),
        max_object_count: 5,
    });
    assert_eq!(got[0].1, RawValue::Scalar("ctx <&> \"1\"".into()));
    let got = params_of(&Operation::Associators {
        object: vol.clone(),
        assoc_class: Some("CIM_AllocatedFromStoragePool".into()),
        result_class: None,
    });
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[1].1,
        RawValue::ClassName("CIM_AllocatedFromStoragePool".into())
    );
}

#[test]
fn modify_instance_carries_the_named_instance_and_property_list() {
    let vol = volume_path("LUN-0001");
    let inst =
        Instance::new("Cairn_StorageVolume").with("ElementName", Value::string("new <name>"));
    let got = params_of(&Operation::ModifyInstance {
        instance: inst.clone(),
        path: vol.clone(),
        property_list: vec!["ElementName".into()],
    });
    let RawValue::NamedInstance(path, decoded) = &got[0].1 else {
        panic!("ModifiedInstance is {:?}", got[0].1)
    };
    assert_eq!(path, &local(&vol));
    assert_eq!(
        decoded.get("ElementName"),
        Some(&Value::string("new <name>"))
    );
    assert_eq!(
        got[1].1,
        RawValue::Array(vec![Some("ElementName".to_owned())])
    );
}

#[test]
fn method_calls_carry_typed_reference_and_embedded_parameters() {
    let target = service_path();
    let embedded = Instance::new("CIM_SettingData").with("ElementName", Value::string("a&b"));
    let op = Operation::InvokeMethod {
        target: target.clone(),
        method: "CreateElementReplica".into(),
        params: vec![
            ("ElementName".into(), Value::string("snap 1")),
            ("SyncType".into(), Value::Uint16(7)),
            (
                "SourceElement".into(),
                Value::Reference(volume_path("LUN-0001")),
            ),
            ("Goal".into(), Value::Instance(Box::new(embedded.clone()))),
            (
                "Sizes".into(),
                Value::Array(CimType::Uint64, vec![Value::Uint64(1), Value::Uint64(2)]),
            ),
        ],
    };
    let req = encode_request("9", "ignored", &op);
    assert_eq!(req.cim_method, "CreateElementReplica");
    assert!(
        req.cim_object
            .starts_with("root/cairn:Cairn_ReplicationService."),
        "{}",
        req.cim_object
    );
    assert!(!req.cim_object.contains('"') && req.cim_object.is_ascii());
    let decoded = decode_request(&req.body).expect("decodes");
    let Call::Extrinsic(call) = decoded.call else {
        panic!("not extrinsic")
    };
    assert_eq!(call.namespace, CAIRN_NAMESPACE);
    assert_eq!(call.target, MethodTarget::Instance(target));
    let p = &call.params;
    assert_eq!(p[0].param_type, Some(CimType::String));
    assert_eq!(p[0].value, RawValue::Scalar("snap 1".into()));
    assert_eq!(p[1].param_type, Some(CimType::Uint16));
    assert_eq!(p[2].value, RawValue::Reference(volume_path("LUN-0001")));
    assert!(p[3].embedded_instance);
    let RawValue::Scalar(text) = &p[3].value else {
        panic!("embedded instance as text")
    };
    assert_eq!(
        cairn_cim::xml::decode::decode_instance(text).expect("instance"),
        embedded
    );
    assert_eq!(
        p[4].value,
        RawValue::Array(vec![Some("1".into()), Some("2".into())])
    );
}

#[test]
fn pulled_instances_and_paths_decode_with_their_context() {
    let vol = volume_path("LUN-0001");
    let inst = Instance::new("Cairn_StorageVolume")
        .with("DeviceID", Value::string("LUN-0001"))
        .with("NumberOfBlocks", Value::Uint64(1 << 40))
        .with(
            "OperationalStatus",
            Value::Array(CimType::Uint16, vec![Value::Uint16(2)]),
        )
        .with_path(vol.clone());
    let body = imethod_response(
        "3",
        "OpenEnumerateInstances",
        &Ok(IReturn::PulledInstances {
            instances: vec![inst.clone()],
            end_of_sequence: false,
            context: Some("c-1".into()),
        }),
        OPTS,
    );
    let r = decode_response(&body).expect("decodes");
    assert_eq!(
        (r.message_id.as_str(), r.method.as_str()),
        ("3", "OpenEnumerateInstances")
    );
    let Ok(Reply::Intrinsic(reply)) = r.reply else {
        panic!("{:?}", r.reply)
    };
    let inst = inst.with_path(hosted(vol.clone()));
    assert_eq!(reply.returned, Returned::Instances(vec![inst]));
    assert_eq!(reply.end_of_sequence, Some(false));
    assert_eq!(reply.enumeration_context.as_deref(), Some("c-1"));

    let body = imethod_response(
        "4",
        "EnumerateInstanceNames",
        &Ok(IReturn::InstanceNames(vec![local(&vol)])),
        OPTS,
    );
    let Ok(Reply::Intrinsic(reply)) = decode_response(&body).expect("decodes").reply else {
        panic!("no reply")
    };
    assert_eq!(reply.returned, Returned::Paths(vec![local(&vol)]));
    assert_eq!(reply.end_of_sequence, None);
}

#[test]
fn method_returns_decode_typed_with_references_and_embedded_objects() {
    let error = Instance::new("CIM_Error").with("Message", Value::string("pool <full>"));
    let ret = MethodReturn {
        return_value: Some(Value::Uint32(4096)),
        return_type: CimType::Uint32,
        out_params: vec![
            OutParam {
                name: "Job".into(),
                ty: CimType::Reference,
                is_array: false,
                value: Some(Value::Reference(common::job_path("J1"))),
            },
            OutParam {
                name: "Size".into(),
                ty: CimType::Uint64,
                is_array: false,
                value: Some(Value::Uint64(4096)),
            },
            OutParam {
                name: "Error".into(),
                ty: CimType::Instance,
                is_array: false,
                value: Some(Value::Instance(Box::new(error.clone()))),
            },
            OutParam {
                name: "Nothing".into(),
                ty: CimType::String,
                is_array: false,
                value: None,
            },
        ],
    };
    let body = method_response("5", "CreateElementReplica", &Ok(ret));
    let Ok(Reply::Method(m)) = decode_response(&body).expect("decodes").reply else {
        panic!("no method reply")
    };
    assert_eq!(m.return_value, Some(Value::Uint32(4096)));
    assert_eq!(
        m.out("Job"),
        Some(&Value::Reference(common::job_path("J1")))
    );
    assert_eq!(m.out("size"), Some(&Value::Uint64(4096)));
    assert_eq!(m.out("Error"), Some(&Value::Instance(Box::new(error))));
    assert_eq!(m.out("Nothing"), None);
}

#[test]
fn errors_decode_with_code_and_description() {
    let err = CimError::new(CimStatus::NotFound, "No volume \"x\"");
    let body = imethod_response("6", "GetInstance", &Err(err.clone()), OPTS);
    assert_eq!(
        decode_response(&body).expect("decodes").reply,
        Err(err.clone())
    );
    let body = method_response("6", "ReturnToStoragePool", &Err(err.clone()));
    assert_eq!(decode_response(&body).expect("decodes").reply, Err(err));
}

#[test]
fn responses_beyond_the_bounds_are_refused() {
    for bad in [
        &b""[..],
        b"<CIM/>",
        b"<CIM><MESSAGE ID=\"1\"><SIMPLERSP><IMETHODRESPONSE NAME=\"X\"><ERROR CODE=\"99\"/></IMETHODRESPONSE></SIMPLERSP></MESSAGE></CIM>",
        b"<CIM><MESSAGE ID=\"1\"><SIMPLERSP><METHODRESPONSE NAME=\"X\"><RETURNVALUE PARAMTYPE=\"uint32\"><VALUE>-1</VALUE></RETURNVALUE></METHODRESPONSE></SIMPLERSP></MESSAGE></CIM>",
    ] {
        assert!(decode_response(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
    let deep = "<A>".repeat(cairn_cim::limits::XML_DEPTH_MAX + 1);
    assert!(decode_response(deep.as_bytes()).is_err());
    let huge = vec![b' '; cairn_cim::limits::RESPONSE_BODY_BYTES_MAX + 1];
    assert!(decode_response(&huge).is_err());
}

/// Sends one client-encoded request through the real server and decodes its answer.
fn exchange(op: &Operation) -> Reply {
    try_exchange(op).expect("no CIM error")
}

fn try_exchange(op: &Operation) -> Result<Reply, CimError> {
    let server = server();
    let req = encode_request("11", CAIRN_NAMESPACE, op);
    let out = server.handle(&HttpCimRequest {
        cim_operation: Some("MethodCall"),
        cim_method: Some(&req.cim_method),
        cim_object: Some(&req.cim_object),
        cim_protocol_version: None,
        body: &req.body,
    });
    let CimHttpOutcome::Response(body) = out else {
        panic!("{out:?}")
    };
    let r = decode_response(&body).expect("the client decodes what the server sends");
    assert_eq!(r.method, op.method());
    r.reply
}

#[test]
fn modify_instance_reaches_the_provider_only_for_an_existing_instance() {
    let modify = |id: &str| {
        try_exchange(&Operation::ModifyInstance {
            instance: Instance::new("Cairn_StorageVolume")
                .with("ElementName", Value::string("renamed")),
            path: volume_path(id),
            property_list: vec!["ElementName".into()],
        })
        .expect_err("the test array does not modify")
        .status
    };
    assert_eq!(modify("LUN-0001"), CimStatus::NotSupported);
    assert_eq!(modify("LUN-9999"), CimStatus::NotFound);
}

#[test]
fn whole_exchanges_through_the_server() {
    let Reply::Intrinsic(open) = exchange(&Operation::OpenEnumerateInstances {
        class_name: "CIM_StorageVolume".into(),
        max_object_count: 1000,
    }) else {
        panic!("not intrinsic")
    };
    let Returned::Instances(vols) = open.returned else {
        panic!("no instances")
    };
    assert_eq!(open.end_of_sequence, Some(true));
    assert!(vols.len() >= 3);
    assert!(vols
        .iter()
        .all(|v| v.path.as_ref().is_some_and(|p| p.namespace.is_some())));

    let Reply::Intrinsic(get) = exchange(&Operation::GetInstance {
        path: pool_path("CAIRN:POOL-A"),
    }) else {
        panic!("not intrinsic")
    };
    let Returned::Instances(pools) = get.returned else {
        panic!("no instance")
    };
    assert_eq!(pools.len(), 1);

    let Reply::Method(m) = exchange(&Operation::InvokeMethod {
        target: service_path(),
        method: "CreateElementReplica".into(),
        params: vec![
            ("SyncType".into(), Value::Uint16(7)),
            (
                "SourceElement".into(),
                Value::Reference(volume_path("LUN-0001")),
            ),
            ("ElementName".into(), Value::string("snap")),
        ],
    }) else {
        panic!("not a method reply")
    };
    assert_eq!(m.return_value, Some(Value::Uint32(0)));
    assert!(m
        .out("TargetElement")
        .and_then(Value::as_reference)
        .is_some());
}

#[test]
fn responses_captured_from_the_daemon_decode() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/cim_response");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("seed directory") {
        let path = entry.expect("entry").path();
        let body = std::fs::read(&path).expect("seed");
        let r = decode_response(&body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(r.message_id, "1");
        seen += 1;
    }
    assert!(seen >= 5, "only {seen} seeds in {}", dir.display());
}
