//! Fuzzes the NBD transmission-phase request decoder and validator on an arbitrary byte stream:
//! no panic, framing always advances, every accepted request lies inside the export.
#![no_main]

use bytes::BytesMut;
use cairn_nbd::{check, Action, ExportInfo, Negotiated, RequestDecoder};
use libfuzzer_sys::fuzz_target;

const SIZE_BYTES: u64 = 1 << 30;

fuzz_target!(|data: &[u8]| {
    let negotiated = Negotiated {
        export: ExportInfo { name: "vol".into(), size_bytes: SIZE_BYTES, read_only: false, block_size_min_bytes: 4096 },
        structured_replies: true,
        base_allocation: Some(1),
    };
    let mut decoder = RequestDecoder::new();
    let mut input = BytesMut::from(data);
    while let Ok(Some(req)) = decoder.decode(&mut input) {
        let range = match check(&req.header, &negotiated) {
            Ok(Action::Read { offset, len }) | Ok(Action::Write { offset, len, .. }) => Some((offset, len)),
            Ok(Action::Trim { offset, len, .. }) | Ok(Action::WriteZeroes { offset, len, .. }) => Some((offset, len)),
            Ok(Action::BlockStatus { offset, len, .. }) => Some((offset, len)),
            _ => None,
        };
        if let Some((offset, len)) = range {
            assert!(offset + u64::from(len) <= SIZE_BYTES);
        }
    }
});
