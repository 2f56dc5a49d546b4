//! Every captured client request decodes, and every captured HTTP request gets a well-formed CIM
//! response from the real dispatcher (interop model over the in-test array), naming its method.

mod common;

use std::path::PathBuf;

use cairn_cim::request::{Call, MethodTarget, RawValue};
use cairn_cim::xml::decode::decode_request;
use cairn_cim::{CimHttpOutcome, CimType, HttpCimRequest, KeyValue};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/cim-xml")
}

fn files(ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("corpus dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(corpus_dir().join(name)).expect("corpus file")
}

#[test]
fn every_captured_body_decodes() {
    let all = files("xml");
    assert_eq!(all.len(), 83);
    for f in all {
        let body = std::fs::read(&f).expect("read");
        let r = decode_request(&body).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let stem = f.file_stem().and_then(|s| s.to_str()).expect("name");
        let method = stem.split('-').nth(2).expect("method in file name");
        assert_eq!(r.call.method(), method, "{}", f.display());
    }
}

struct Http {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn parse_http(raw: &[u8]) -> Http {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = std::str::from_utf8(&raw[..split]).expect("ASCII headers");
    let headers = head
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Http {
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

impl Http {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[test]
fn every_captured_http_request_gets_a_cim_response() {
    let server = common::server();
    let all = files("http");
    assert_eq!(all.len(), 83);
    for f in all {
        let http = parse_http(&std::fs::read(&f).expect("read"));
        let req = HttpCimRequest {
            cim_operation: http.header("cimoperation"),
            cim_method: http.header("cimmethod"),
            cim_object: http.header("cimobject"),
            cim_protocol_version: http.header("cimprotocolversion"),
            body: &http.body,
        };
        let CimHttpOutcome::Response(body) = server.handle(&req) else {
            panic!("{}: not a CIM response", f.display());
        };
        let body = String::from_utf8(body).expect("UTF-8");
        common::assert_well_formed(&body);
        let method = http.header("cimmethod").expect("CIMMethod");
        assert!(
            body.contains(&format!("RESPONSE NAME=\"{method}\"")),
            "{}: {body}",
            f.display()
        );
    }
}

#[test]
fn wbemcli_quirks_decode() {
    // KEYVALUE without TYPE, <NAMESPACE></NAMESPACE>, LF between elements.
    let r = decode_request(&read("wbemcli-06-GetInstance.xml")).expect("decode");
    let Call::Intrinsic(c) = r.call else {
        panic!("intrinsic")
    };
    assert_eq!(c.namespace, "root/cairn");
    assert_eq!(r.message_id, "4711");
    let p = c
        .params
        .iter()
        .find(|p| p.name == "InstanceName")
        .expect("InstanceName");
    let RawValue::InstanceName(path) = &p.value else {
        panic!("instance name")
    };
    assert_eq!(path.class_name, "CIM_StorageVolume");
    assert_eq!(
        path.key("deviceid"),
        Some(&KeyValue::String("LUN-0001".into()))
    );
    // PARAMVALUE without PARAMTYPE, static method on a class.
    let r = decode_request(&read("wbemcli-31-CairnStaticMethod.xml")).expect("decode");
    let Call::Extrinsic(c) = r.call else {
        panic!("extrinsic")
    };
    assert_eq!(c.target, MethodTarget::Class("CAIRN_Service".into()));
    assert!(c.params.iter().all(|p| p.param_type.is_none()));
    let names = c.params.iter().find(|p| p.name == "Names").expect("Names");
    assert_eq!(
        names.value,
        RawValue::Array(vec![Some("a".into()), Some("b c".into())])
    );
}

#[test]
fn pywbem_all_types_decode() {
    let r = decode_request(&read("pywbem-25-CairnAllTypes.xml")).expect("decode");
    let Call::Extrinsic(c) = r.call else {
        panic!("extrinsic")
    };
    let get = |n: &str| c.params.iter().find(|p| p.name == n).expect(n);
    assert_eq!(
        get("PStringSpecial").value,
        RawValue::Scalar("<tag> & \"quote\" 'apos' Zürich ☃ 😀".into())
    );
    assert_eq!(get("PUint64").param_type, Some(CimType::Uint64));
    assert_eq!(get("PNull").value, RawValue::Null);
    assert!(get("PEmbeddedInstance").embedded_instance);
    let RawValue::Scalar(text) = &get("PEmbeddedInstance").value else {
        panic!("embedded text")
    };
    let inst = cairn_cim::xml::decode::decode_instance(text).expect("embedded instance");
    assert_eq!(inst.class_name, "CIM_StorageSetting");
    assert_eq!(
        inst.get("DataRedundancyGoal"),
        Some(&cairn_cim::Value::Uint16(2))
    );
    let RawValue::RefArray(refs) = &get("PRefArray").value else {
        panic!("ref array")
    };
    assert_eq!(refs.len(), 2);
    let r0 = refs[0].as_ref().expect("ref");
    assert_eq!(r0.host.as_deref(), Some("cairn-array-01.example.com"));
    assert_eq!(r0.namespace.as_deref(), Some("root/cairn"));
}

#[test]
fn create_instance_and_modify_instance_decode_their_instances() {
    let r = decode_request(&read("wbemcli-35-CreateInstance.xml")).expect("decode");
    let Call::Intrinsic(c) = r.call else {
        panic!("intrinsic")
    };
    let RawValue::Instance(i) = &c.params[0].value else {
        panic!("instance")
    };
    assert_eq!(
        i.get("OperationalStatus"),
        Some(&cairn_cim::Value::Array(
            CimType::Uint16,
            vec![cairn_cim::Value::Uint16(2), cairn_cim::Value::Uint16(32768)]
        ))
    );
    let r = decode_request(&read("pywbem-28-ModifyInstance.xml")).expect("decode");
    let Call::Intrinsic(c) = r.call else {
        panic!("intrinsic")
    };
    assert!(
        matches!(&c.params[0].value, RawValue::NamedInstance(p, i) if p.class_name == "CIM_StorageVolume" && i.get("ElementName").is_some())
    );
}

#[test]
fn libstoragemgmt_probe_gets_namespace_errors_then_success() {
    let server = common::server();
    for (file, want) in [
        ("libstoragemgmt-01-EnumerateInstances.http", None),
        ("libstoragemgmt-02-EnumerateInstances.http", Some(3)),
        ("libstoragemgmt-03-EnumerateInstances.http", Some(3)),
    ] {
        let http = parse_http(&read(file));
        let req = HttpCimRequest {
            cim_operation: http.header("cimoperation"),
            cim_method: http.header("cimmethod"),
            cim_object: http.header("cimobject"),
            cim_protocol_version: http.header("cimprotocolversion"),
            body: &http.body,
        };
        let CimHttpOutcome::Response(body) = server.handle(&req) else {
            panic!("response")
        };
        let body = String::from_utf8(body).expect("UTF-8");
        assert_eq!(common::error_code(&body), want, "{file}: {body}");
        if want.is_none() {
            // Server, Array and Block Services profiles, RegisteredOrganization typed uint16.
            assert_eq!(common::count(&body, "<VALUE.NAMEDINSTANCE>"), 3, "{body}");
            assert!(
                body.contains(
                    "<PROPERTY NAME=\"RegisteredOrganization\" TYPE=\"uint16\"><VALUE>11</VALUE>"
                ),
                "{body}"
            );
        }
    }
}
