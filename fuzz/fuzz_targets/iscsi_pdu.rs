//! Fuzzes the iSCSI PDU framer and the text parser on an arbitrary byte stream: no panic, every
//! PDU taken consumes bytes, no data segment exceeds the declared limit, and text that parses
//! re-encodes to a list that parses the same.
#![no_main]

use bytes::BytesMut;
use cairn_iscsi::pdu::{Digests, PduDecoder};
use cairn_iscsi::text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, stream)) = data.split_first() else { return };
    let decoder = PduDecoder {
        digests: Digests { header: flags & 1 != 0, data: flags & 2 != 0 },
        data_bytes_max: 8192,
    };
    let mut input = BytesMut::from(stream);
    loop {
        let before = input.len();
        match decoder.decode(&mut input) {
            Ok(Some(pdu)) => {
                assert!(input.len() < before);
                assert!(pdu.data.len() <= 8192);
                if let Ok(pairs) = text::parse(&pdu.data) {
                    assert_eq!(text::parse(&text::encode(&pairs)), Ok(pairs));
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
});
