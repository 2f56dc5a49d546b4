//! Fuzzes login negotiation: a sequence of login requests cut from arbitrary bytes, against a
//! target that requires CHAP and one that does not. No panic; full feature phase is never reached
//! through CHAP without the right response (the fuzzer cannot know the random challenge).
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use cairn_iscsi::login::{Login, Step};
use cairn_iscsi::pdu::{op, Pdu};
use cairn_iscsi::{Auth, ChapCredential, LoginConfig};
use libfuzzer_sys::fuzz_target;

fn config(chap: bool) -> Arc<LoginConfig> {
    let cred = ChapCredential { name: "host".into(), secret: b"secretsecret".to_vec() };
    Arc::new(LoginConfig {
        target_name: "iqn.2026-01.org.cairn:fuzz".into(),
        auth: Auth { initiators: if chap { vec![cred.clone()] } else { vec![] }, target: Some(cred) },
    })
}

fuzz_target!(|data: &[u8]| {
    for chap in [false, true] {
        let mut login = Login::new(config(chap));
        // Each request: one flags byte, one version byte, a length byte, then that much text.
        let mut rest = data;
        while let [flags, version, len, tail @ ..] = rest {
            let n = (*len as usize).min(tail.len());
            let mut pdu = Pdu::new(op::LOGIN);
            pdu.bhs[1] = *flags;
            pdu.bhs[3] = *version;
            pdu.set_data(Bytes::copy_from_slice(&tail[..n]));
            rest = &tail[n..];
            match login.step(&pdu) {
                Step::Continue(_) => {}
                Step::Done(_, negotiated) => {
                    assert!(!chap || negotiated.chap_name.is_some());
                    break;
                }
                Step::Fail(reply) => {
                    assert!(reply.status >= 0x0200);
                    break;
                }
            }
        }
    }
});
