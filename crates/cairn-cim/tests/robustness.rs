//! Mutated client requests never make the server panic, and every answer it gives is well-formed:
//! each captured body is mutated (bytes changed, cut, spliced, markup and entities injected) with a
//! fixed seed and sent through `CimServer::handle` with the headers that match its method.

mod common;

use std::path::PathBuf;

use cairn_cim::request::{Call, MethodTarget};
use cairn_cim::{CimHttpOutcome, HttpCimRequest};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const MUTATIONS_PER_FILE: usize = 150;

fn mutate(rng: &mut SmallRng, body: &[u8]) -> Vec<u8> {
    let mut b = body.to_vec();
    for _ in 0..rng.gen_range(1..4) {
        if b.is_empty() {
            break;
        }
        let i = rng.gen_range(0..b.len());
        match rng.gen_range(0..6) {
            0 => b[i] = rng.gen(),
            1 => b.truncate(i),
            2 => {
                let j = rng.gen_range(i..b.len());
                let chunk = b[i..j].to_vec();
                let k = rng.gen_range(0..b.len());
                b.splice(k..k, chunk);
            }
            3 => {
                let inserts: [&[u8]; 6] =
                    [b"<", b"&", b"&lol;", b"</VALUE>", b"<VALUE.ARRAY>", b"\"'"];
                let s = inserts[rng.gen_range(0..inserts.len())];
                b.splice(i..i, s.iter().copied());
            }
            4 => {
                let j = rng.gen_range(i..b.len());
                b.drain(i..j);
            }
            _ => b[i] = b[i].to_ascii_lowercase(),
        }
    }
    b
}

#[test]
fn mutated_corpus_requests_never_panic() {
    let server = common::server();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/cim-xml");
    let mut rng = SmallRng::seed_from_u64(0xCA1B_0001);
    let mut responses = 0usize;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for f in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
    {
        let body = std::fs::read(f).expect("read");
        let Ok(req) = cairn_cim::xml::decode::decode_request(&body) else {
            panic!("{} decodes", f.display())
        };
        let method = req.call.method().to_owned();
        let ns = match &req.call {
            Call::Intrinsic(c) => c.namespace.clone(),
            Call::Extrinsic(c) => match &c.target {
                MethodTarget::Instance(p) => format!("{}:{}", c.namespace, p.class_name),
                MethodTarget::Class(n) => format!("{}:{n}", c.namespace),
            },
        };
        for _ in 0..MUTATIONS_PER_FILE {
            let m = mutate(&mut rng, &body);
            let out = server.handle(&HttpCimRequest {
                cim_operation: Some("MethodCall"),
                cim_method: Some(&method),
                cim_object: Some(&ns),
                cim_protocol_version: None,
                body: &m,
            });
            if let CimHttpOutcome::Response(r) = out {
                common::assert_well_formed(std::str::from_utf8(&r).expect("UTF-8"));
                responses += 1;
            }
        }
    }
    // Some mutations leave the request valid (e.g. inside a value): those were answered.
    assert!(responses > 0);
}
