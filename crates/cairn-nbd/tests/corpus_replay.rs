//! Replays the client streams captured from real NBD clients (tests/data/*.c2s) through the codec:
//! the handshake state machine must reach the same outcome the captured server (nbdkit) gave, every
//! request must decode, and Cairn's validation must accept exactly the requests nbdkit accepted.

use std::collections::HashMap;
use std::path::PathBuf;

use bytes::{Buf, BytesMut};
use cairn_nbd::proto::*;
use cairn_nbd::{
    check, Catalog, Command, ExportInfo, Handshake, Negotiated, RequestDecoder, Step, TlsMode,
};

const EXPORT_BYTES: u64 = 64 << 20;

/// The captured server's single export: "" of 64 MiB, here with 512-byte logical blocks (nbdkit
/// advertised no block size, and qemu-img probes with a 512-byte READ).
struct CapturedExports {
    opened: usize,
}

impl CapturedExports {
    fn export() -> ExportInfo {
        ExportInfo {
            name: String::new(),
            size_bytes: EXPORT_BYTES,
            read_only: false,
            block_size_min_bytes: 512,
        }
    }
}

impl Catalog for CapturedExports {
    fn list(&self) -> Vec<String> {
        vec![String::new()]
    }
    fn info(&self, name: &str) -> Option<ExportInfo> {
        name.is_empty().then(Self::export)
    }
    fn open(&mut self, name: &str) -> Option<ExportInfo> {
        self.opened += 1;
        self.info(name)
    }
}

fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (option, reply type) pairs of option replies in a server stream, NBD_REP_INFO left out (which
/// information a server volunteers differs), followed by the rest of the stream.
fn option_replies(stream: &[u8]) -> (Vec<(u32, u32)>, &[u8]) {
    let mut buf = stream;
    assert_eq!(buf.get_u64(), NBDMAGIC);
    assert_eq!(buf.get_u64(), IHAVEOPT);
    buf.advance(2);
    let mut replies = Vec::new();
    while buf.len() >= 20 && buf[..8] == OPTION_REPLY_MAGIC.to_be_bytes() {
        buf.advance(8);
        let (option, kind, len) = (buf.get_u32(), buf.get_u32(), buf.get_u32() as usize);
        buf.advance(len);
        if kind != REP_INFO {
            replies.push((option, kind));
        }
    }
    (replies, buf)
}

/// cookie -> `true` if the server's (final) reply reported success.
fn transmission_outcomes(mut buf: &[u8]) -> HashMap<u64, bool> {
    let mut ok = HashMap::new();
    while buf.len() >= 16 {
        match buf.get_u32() {
            SIMPLE_REPLY_MAGIC => {
                let error = buf.get_u32();
                ok.insert(buf.get_u64(), error == 0);
            }
            STRUCTURED_REPLY_MAGIC => {
                let (_flags, kind, cookie, len) =
                    (buf.get_u16(), buf.get_u16(), buf.get_u64(), buf.get_u32());
                buf.advance(len as usize);
                let entry = ok.entry(cookie).or_insert(true);
                *entry &= kind & 0x8000 == 0;
            }
            magic => panic!("unexpected reply magic {magic:#x}"),
        }
    }
    ok
}

struct Replay {
    our_replies: Vec<(u32, u32)>,
    outcome: Step,
    commands: Vec<Command>,
    accepted: Vec<(u64, bool)>,
    write_payloads: Vec<(u64, u16, Vec<u8>)>,
}

fn replay(name: &str) -> Replay {
    let mut input = BytesMut::from(&data(&format!("{name}.c2s"))[..]);
    let mut out = BytesMut::new();
    Handshake::greeting(&mut out);
    let mut hs = Handshake::new(TlsMode::Off);
    let mut catalog = CapturedExports { opened: 0 };
    let outcome = loop {
        match hs
            .step(&mut input, &mut catalog, &mut out)
            .expect("captured handshake is valid")
        {
            Step::Continue => continue,
            other => break other,
        }
    };
    let (our_replies, _) = option_replies(&out);
    let mut commands = Vec::new();
    let mut accepted = Vec::new();
    let mut write_payloads = Vec::new();
    if let Step::Transmission(negotiated) = &outcome {
        let mut decoder = RequestDecoder::new();
        while let Some(req) = decoder.decode(&mut input).expect("captured requests frame") {
            let h = req.header;
            commands.push(h.command);
            if h.command != Command::Disc {
                accepted.push((h.cookie, check(&h, negotiated).is_ok()));
            }
            if let Some(p) = req.payload {
                write_payloads.push((h.offset, h.flags, p.to_vec()));
            }
        }
    }
    assert!(
        input.is_empty(),
        "{name}: {} bytes left undecoded",
        input.len()
    );
    Replay {
        our_replies,
        outcome,
        commands,
        accepted,
        write_payloads,
    }
}

/// Runs one capture and compares it with what nbdkit answered.
fn replay_against_capture(name: &str) -> Replay {
    let r = replay(name);
    let s2c = data(&format!("{name}.s2c"));
    let (theirs, rest) = option_replies(&s2c);
    assert_eq!(
        r.our_replies, theirs,
        "{name}: option replies differ from the captured server's"
    );
    let outcomes = transmission_outcomes(rest);
    for (cookie, ours) in &r.accepted {
        assert_eq!(
            Some(ours),
            outcomes.get(cookie),
            "{name}: request {cookie:#x} judged differently"
        );
    }
    r
}

fn expect_transmission(r: &Replay) -> &Negotiated {
    match &r.outcome {
        Step::Transmission(n) => n,
        other => panic!("expected transmission, got {other:?}"),
    }
}

#[test]
fn nbdinfo_uses_info_before_go() {
    let r = replay_against_capture("nbdinfo-01");
    assert_eq!(
        r.our_replies,
        vec![
            (OPT_STRUCTURED_REPLY, REP_ACK),
            (OPT_INFO, REP_ACK),
            (OPT_LIST_META_CONTEXT, REP_META_CONTEXT),
            (OPT_LIST_META_CONTEXT, REP_ACK),
            (OPT_GO, REP_ACK)
        ]
    );
    let n = expect_transmission(&r);
    assert!(n.structured_replies);
    assert_eq!(n.base_allocation, None, "LIST_META_CONTEXT selects nothing");
    assert_eq!(r.commands, vec![Command::Read, Command::Disc]);
}

#[test]
fn nbdinfo_list_ends_with_abort() {
    let r = replay_against_capture("nbdinfo-02");
    assert_eq!(r.outcome, Step::Abort);
    assert!(r.our_replies.contains(&(OPT_LIST, REP_SERVER)));
    assert_eq!(r.our_replies.last(), Some(&(OPT_ABORT, REP_ACK)));
    assert!(r.commands.is_empty());
}

#[test]
fn nbdinfo_map_selects_base_allocation() {
    let r = replay_against_capture("nbdinfo-03");
    let n = expect_transmission(&r);
    assert_eq!(
        n.base_allocation,
        Some(cairn_nbd::handshake::BASE_ALLOCATION_CONTEXT_ID)
    );
    assert_eq!(r.commands, vec![Command::BlockStatus, Command::Disc]);
}

#[test]
fn qemu_io_falls_back_from_extended_headers() {
    let r = replay_against_capture("qemu-io-01");
    assert_eq!(r.our_replies[0], (OPT_EXTENDED_HEADERS, REP_ERR_UNSUP));
    let n = expect_transmission(&r);
    assert!(n.structured_replies && n.base_allocation.is_some());
    use Command::*;
    assert_eq!(
        r.commands,
        vec![Write, Read, Flush, Trim, WriteZeroes, Flush, Disc]
    );
    let (offset, flags, payload) = &r.write_payloads[0];
    assert_eq!((*offset, payload.len()), (0, 64 << 10));
    assert!(payload.iter().all(|b| *b == 0xab));
    assert_ne!(flags & CMD_FLAG_FUA, 0, "qemu-io writes with FUA");
    assert!(r.accepted.iter().all(|(_, ok)| *ok));
}

#[test]
fn qemu_img_info() {
    let r = replay_against_capture("qemu-img-01");
    assert_eq!(r.our_replies[0], (OPT_EXTENDED_HEADERS, REP_ERR_UNSUP));
    expect_transmission(&r);
    assert_eq!(r.commands, vec![Command::Read, Command::Disc]);
}

#[test]
fn nbdcopy_starts_with_block_status_over_the_whole_export() {
    let r = replay_against_capture("nbdcopy-01");
    expect_transmission(&r);
    assert_eq!(r.commands.first(), Some(&Command::BlockStatus));
    assert_eq!(r.commands.last(), Some(&Command::Disc));
    assert!(r.commands[1..r.commands.len() - 1]
        .iter()
        .all(|c| *c == Command::Read));
    assert!(r.accepted.iter().all(|(_, ok)| *ok));
    let r2 = replay_against_capture("nbdcopy-02");
    expect_transmission(&r2);
    assert_eq!(r2.commands, vec![Command::Disc]);
}

#[test]
fn fio_connections_end_without_disc() {
    let r = replay_against_capture("fio-01");
    expect_transmission(&r);
    assert!(r.commands.is_empty());
    let r = replay_against_capture("fio-02");
    expect_transmission(&r);
    assert_eq!(r.commands, vec![Command::Write; 16]);
    assert!(r.accepted.iter().all(|(_, ok)| *ok));
    assert!(r
        .write_payloads
        .iter()
        .all(|(off, _, p)| off % 4096 == 0 && p.len() == 4096));
}

#[test]
fn every_truncation_of_every_capture_is_handled() {
    // A client that disconnects anywhere must leave the state machine waiting, never panicking.
    for name in [
        "nbdinfo-01",
        "nbdinfo-03",
        "qemu-img-01",
        "nbdcopy-02",
        "fio-01",
    ] {
        let full = data(&format!("{name}.c2s"));
        for cut in 0..full.len() {
            let mut input = BytesMut::from(&full[..cut]);
            let mut out = BytesMut::new();
            let mut hs = Handshake::new(TlsMode::Off);
            let mut catalog = CapturedExports { opened: 0 };
            while let Ok(Step::Continue) = hs.step(&mut input, &mut catalog, &mut out) {}
        }
    }
}

#[test]
fn tls_required_hides_exports_until_starttls() {
    let mut input = BytesMut::from(&data("nbdinfo-02.c2s")[..]);
    let mut out = BytesMut::new();
    Handshake::greeting(&mut out);
    let mut hs = Handshake::new(TlsMode::Required);
    let mut catalog = CapturedExports { opened: 0 };
    while let Ok(Step::Continue) = hs.step(&mut input, &mut catalog, &mut out) {}
    let (replies, _) = option_replies(&out);
    assert!(
        replies
            .iter()
            .all(|(opt, kind)| *opt == OPT_ABORT || *kind == REP_ERR_TLS_REQD),
        "{replies:?}"
    );
    assert!(!replies.iter().any(|(_, kind)| *kind == REP_SERVER));
}

/// A small deterministic generator (xorshift64*), so mutation runs are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_captures_never_panic_and_never_escape_the_export() {
    let names = [
        "nbdinfo-01",
        "nbdinfo-02",
        "nbdinfo-03",
        "qemu-img-01",
        "nbdcopy-01",
        "nbdcopy-02",
        "fio-01",
    ];
    let captures: Vec<Vec<u8>> = names.iter().map(|n| data(&format!("{n}.c2s"))).collect();
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    for round in 0..3000 {
        let mut bytes = captures[round % captures.len()].clone();
        for _ in 0..=rng.below(4) {
            let at = rng.below(bytes.len());
            match rng.below(3) {
                0 => bytes[at] ^= 1 << rng.below(8),
                1 => bytes[at] = 0xff,
                _ => bytes.truncate(at),
            }
            if bytes.is_empty() {
                break;
            }
        }
        let tls = if round % 5 == 0 {
            TlsMode::Required
        } else {
            TlsMode::Off
        };
        let mut hs = Handshake::new(tls);
        let mut input = BytesMut::from(&bytes[..]);
        let mut out = BytesMut::new();
        let mut catalog = CapturedExports { opened: 0 };
        let negotiated = loop {
            match hs.step(&mut input, &mut catalog, &mut out) {
                Ok(Step::Continue) => {}
                Ok(Step::StartTls) => hs.tls_started(),
                Ok(Step::Transmission(n)) => break Some(n),
                _ => break None,
            }
        };
        let Some(n) = negotiated else { continue };
        let mut decoder = RequestDecoder::new();
        while let Ok(Some(req)) = decoder.decode(&mut input) {
            if let Ok(action) = check(&req.header, &n) {
                let range = match action {
                    cairn_nbd::Action::Read { offset, len }
                    | cairn_nbd::Action::Write { offset, len, .. } => (offset, len),
                    cairn_nbd::Action::Trim { offset, len, .. } => (offset, len),
                    cairn_nbd::Action::WriteZeroes { offset, len, .. } => (offset, len),
                    cairn_nbd::Action::BlockStatus { offset, len, .. } => (offset, len),
                    _ => (0, 0),
                };
                assert!(
                    range.0 + u64::from(range.1) <= EXPORT_BYTES,
                    "round {round}: {action:?}"
                );
            }
        }
    }
}
