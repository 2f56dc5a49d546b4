//! Fuzzes the NBD handshake state machine: arbitrary client bytes, delivered in arbitrary pieces,
//! must never panic, never loop without consuming input, and never grow the server's output without
//! bound. Whatever follows a successful negotiation is fed to the request decoder and validator.
#![no_main]

use bytes::BytesMut;
use cairn_nbd::{check, Catalog, ExportInfo, Handshake, RequestDecoder, Step, TlsMode};
use libfuzzer_sys::fuzz_target;

struct Exports;

impl Catalog for Exports {
    fn list(&self) -> Vec<String> {
        vec!["vol".into(), String::new()]
    }
    fn info(&self, name: &str) -> Option<ExportInfo> {
        (name == "vol" || name.is_empty()).then(|| ExportInfo {
            name: name.into(),
            size_bytes: 1 << 30,
            read_only: name.is_empty(),
            block_size_min_bytes: 512,
        })
    }
    fn open(&mut self, name: &str) -> Option<ExportInfo> {
        self.info(name)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let tls = if first & 1 == 0 { TlsMode::Off } else { TlsMode::Required };
    let piece = usize::from(first >> 1).max(1);
    let mut hs = Handshake::new(tls);
    let mut input = BytesMut::new();
    let mut out = BytesMut::new();
    let mut chunks = rest.chunks(piece);
    let negotiated = loop {
        match hs.step(&mut input, &mut Exports, &mut out) {
            Ok(Step::Continue) => {}
            Ok(Step::NeedMore) => match chunks.next() {
                Some(c) => input.extend_from_slice(c),
                None => return,
            },
            Ok(Step::StartTls) => hs.tls_started(),
            Ok(Step::Abort) | Err(_) => return,
            Ok(Step::Transmission(n)) => break n,
        }
        assert!(out.len() < 64 << 20, "option replies grow without bound");
        out.clear();
    };
    let mut decoder = RequestDecoder::new();
    for c in chunks {
        input.extend_from_slice(c);
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(req)) => {
                    let _ = check(&req.header, &negotiated);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
