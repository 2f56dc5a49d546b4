//! Fuzzes the CIM-XML request path: arbitrary bytes as a request body (and, from the first byte,
//! arbitrary header choices) through `CimServer::handle` over the real interop model, plus the
//! decoder alone. Must never panic; every successful outcome must be well-formed UTF-8.
//! Seeds: crates/cairn-cim/tests/data/cim-xml/*.xml (copy them into the corpus directory).
#![no_main]

use std::sync::{Arc, OnceLock};

use cairn_cim::request::{Call, MethodTarget};
use cairn_cim::{
    CimError, CimHttpOutcome, CimServer, HttpCimRequest, Instance, InstancePath, MethodCall,
    MethodResult, Provider, Value,
};
use cairn_smis::interop::{InteropProvider, ObjectManagerInfo};
use libfuzzer_sys::fuzz_target;

/// A storage provider with one volume, so instance, association and method paths are reached.
struct OneVolume;

impl Provider for OneVolume {
    fn namespaces(&self) -> Vec<String> {
        vec!["root/cairn".into()]
    }
    fn class_names(&self, namespace: &str) -> Vec<String> {
        if namespace == "root/cairn" {
            vec!["Cairn_StorageVolume".into()]
        } else {
            Vec::new()
        }
    }
    fn enumerate_instances(
        &self,
        _namespace: &str,
        class_name: &str,
    ) -> Result<Vec<Instance>, CimError> {
        if class_name != "Cairn_StorageVolume" {
            return Ok(Vec::new());
        }
        Ok(vec![Instance::new("Cairn_StorageVolume")
            .with("DeviceID", Value::string("LUN-0001"))
            .with("CreationClassName", Value::string("Cairn_StorageVolume"))
            .with("SystemName", Value::string("CAIRN-ARRAY-01"))
            .with(
                "SystemCreationClassName",
                Value::string("Cairn_StorageSystem"),
            )
            .with_path(
                InstancePath::new("Cairn_StorageVolume")
                    .with_key("CreationClassName", "Cairn_StorageVolume")
                    .with_key("DeviceID", "LUN-0001")
                    .with_key("SystemCreationClassName", "Cairn_StorageSystem")
                    .with_key("SystemName", "CAIRN-ARRAY-01"),
            )])
    }
    fn invoke_method(&self, _call: &MethodCall<'_>) -> Result<MethodResult, CimError> {
        Ok(MethodResult::code(Value::Uint32(0)))
    }
}

fn server() -> &'static CimServer {
    static SERVER: OnceLock<CimServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        CimServer::new(Arc::new(InteropProvider::new(
            Arc::new(OneVolume),
            ObjectManagerInfo::new("CAIRN-ARRAY-01", "0"),
        )))
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = cairn_cim::xml::decode::decode_request(data);
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    // Derive the headers from the body when asked to, so dispatch is reached; otherwise vary them.
    let decoded = cairn_cim::xml::decode::decode_request(body).ok();
    let method = decoded
        .as_ref()
        .map(|r| r.call.method().to_owned())
        .unwrap_or_else(|| "GetClass".into());
    let object = match decoded.as_ref().map(|r| &r.call) {
        Some(Call::Intrinsic(c)) => c.namespace.clone(),
        Some(Call::Extrinsic(c)) => match &c.target {
            MethodTarget::Instance(p) => format!("{}:{}", c.namespace, p.class_name),
            MethodTarget::Class(n) => format!("{}:{n}", c.namespace),
        },
        None => "root%2Fcairn".into(),
    };
    let req = HttpCimRequest {
        cim_operation: (flags & 1 == 0).then_some("MethodCall"),
        cim_method: (flags & 2 == 0).then_some(method.as_str()),
        cim_object: (flags & 4 == 0).then_some(object.as_str()),
        cim_protocol_version: (flags & 8 != 0).then_some("1.0"),
        body,
    };
    if let CimHttpOutcome::Response(out) = server().handle(&req) {
        assert!(std::str::from_utf8(&out).is_ok());
    }
});
