//! Fuzzes the client half of the CIM-XML codec: arbitrary bytes as a response body through
//! `client::decode_response`. Must never panic; a decoded response's instances re-encode and
//! decode again as the same values (the server encoder is the reference writer).
//! Seeds: fuzz/seeds/cim_response/*.xml, responses captured from a running `cairn serve`
//! (copy them into the corpus directory).
#![no_main]

use cairn_cim::client::{decode_response, Reply, Returned};
use cairn_cim::xml::decode::decode_instance;
use cairn_cim::xml::encode::instance_xml;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(response) = decode_response(data) else {
        return;
    };
    if let Ok(Reply::Intrinsic(reply)) = &response.reply {
        if let Returned::Instances(instances) = &reply.returned {
            for inst in instances {
                let mut plain = inst.clone();
                plain.path = None;
                let again = decode_instance(&instance_xml(&plain)).expect("re-encoded instance");
                assert_eq!(again.class_name, plain.class_name);
                assert_eq!(again.properties.len(), plain.properties.len());
            }
        }
    }
});
