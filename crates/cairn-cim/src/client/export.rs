//! The export half of the client codec (DSP0200 §5.3, CIM export messages): the
//! `ExportIndication` request an indication sender posts to a listener, and the reading of the
//! listener's answer.
//!
//! Invariants: the request carries exactly one indication as an INSTANCE in the `NewIndication`
//! EXPPARAMVALUE, every text escaped (embedded instances as escaped INSTANCE text); the answer is
//! read with the response decoder's bounds and never panics.

use crate::error::{CimError, CimStatus, DecodeError};
use crate::instance::Instance;
use crate::limits::RESPONSE_BODY_BYTES_MAX;
use crate::xml::dom::{self, Node};
use crate::xml::encode::{escape, instance_xml};

/// The export method name, also the value of the `CIMExportMethod` header.
pub const EXPORT_INDICATION: &str = "ExportIndication";

/// The body of an `ExportIndication` request carrying `indication` (sent with the headers
/// `CIMExport: MethodRequest` and `CIMExportMethod: ExportIndication`).
pub fn encode_export_indication(message_id: &str, indication: &Instance) -> Vec<u8> {
    let mut s = String::with_capacity(2048);
    s.push_str("<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n<CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.4\"><MESSAGE ID=\"");
    s.push_str(&escape(message_id));
    s.push_str("\" PROTOCOLVERSION=\"1.0\"><SIMPLEEXPREQ><EXPMETHODCALL NAME=\"");
    s.push_str(EXPORT_INDICATION);
    s.push_str("\"><EXPPARAMVALUE NAME=\"NewIndication\">");
    s.push_str(&instance_xml(indication));
    s.push_str("</EXPPARAMVALUE></EXPMETHODCALL></SIMPLEEXPREQ></MESSAGE></CIM>\n");
    s.into_bytes()
}

/// Reads a listener's answer to an export request: `Ok(Ok(()))` when it accepted the
/// indication, `Ok(Err(e))` when it answered with an ERROR, `Err` when the body is not an
/// export response.
pub fn decode_export_response(body: &[u8]) -> Result<Result<(), CimError>, DecodeError> {
    if body.len() > RESPONSE_BODY_BYTES_MAX {
        return Err(DecodeError::not_valid("Response body too large"));
    }
    let root = dom::parse(body)?;
    let message = expect(&root, "CIM")?.only_child()?;
    let rsp = expect(message, "MESSAGE")?.only_child()?;
    let call = expect(rsp, "SIMPLEEXPRSP")?.only_child()?;
    expect(call, "EXPMETHODRESPONSE")?;
    match call.child("ERROR") {
        None => Ok(Ok(())),
        Some(e) => {
            let code = e.req_attr("CODE")?;
            let status = code
                .trim()
                .parse::<u32>()
                .ok()
                .and_then(CimStatus::from_code)
                .ok_or_else(|| DecodeError::not_valid(format!("Unknown ERROR CODE {code}")))?;
            Ok(Err(CimError::new(
                status,
                e.attr("DESCRIPTION").unwrap_or_default(),
            )))
        }
    }
}

fn expect<'a>(n: &'a Node, name: &str) -> Result<&'a Node, DecodeError> {
    if n.name == name {
        Ok(n)
    } else {
        Err(DecodeError::not_valid(format!(
            "Expected {name}, found {}",
            n.name
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Value;

    #[test]
    fn an_export_request_holds_the_indication_with_its_embedded_instance() {
        let source = Instance::new("Cairn_StorageVolume").with("ElementName", Value::string("a<b"));
        let ind = Instance::new("CIM_InstCreation")
            .with("SourceInstance", Value::Instance(Box::new(source)))
            .with("SequenceNumber", Value::Sint64(3));
        let body = String::from_utf8(encode_export_indication("7", &ind)).expect("utf8");
        assert!(body.contains("<SIMPLEEXPREQ><EXPMETHODCALL NAME=\"ExportIndication\"><EXPPARAMVALUE NAME=\"NewIndication\"><INSTANCE CLASSNAME=\"CIM_InstCreation\">"), "{body}");
        assert!(body.contains("EmbeddedObject=\"instance\""), "{body}");
        assert!(
            body.contains("a&amp;lt;b"),
            "the embedded text is escaped twice: {body}"
        );
    }

    #[test]
    fn export_responses_are_read_with_their_errors() {
        let ok = b"<?xml version=\"1.0\"?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.4\"><MESSAGE ID=\"1\" PROTOCOLVERSION=\"1.0\"><SIMPLEEXPRSP><EXPMETHODRESPONSE NAME=\"ExportIndication\"><IRETURNVALUE/></EXPMETHODRESPONSE></SIMPLEEXPRSP></MESSAGE></CIM>";
        assert_eq!(decode_export_response(ok).expect("decode"), Ok(()));
        let err = b"<CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.4\"><MESSAGE ID=\"1\" PROTOCOLVERSION=\"1.0\"><SIMPLEEXPRSP><EXPMETHODRESPONSE NAME=\"ExportIndication\"><ERROR CODE=\"1\" DESCRIPTION=\"no\"/></EXPMETHODRESPONSE></SIMPLEEXPRSP></MESSAGE></CIM>";
        let got = decode_export_response(err).expect("decode");
        assert_eq!(got.map_err(|e| e.status), Err(CimStatus::Failed));
        assert!(
            decode_export_response(b"<CIM><MESSAGE ID=\"1\"><SIMPLERSP/></MESSAGE></CIM>").is_err()
        );
        assert!(decode_export_response(b"\xff<").is_err());
    }
}
