//! Login negotiation (RFC 7143 §6, §11.12-13) as a pure state machine: one login request in, one
//! login response out.
//!
//! Invariants: full feature phase is reached only after the security stage succeeded (AuthMethod
//! None where allowed, or a verified CHAP response, and for mutual CHAP a target response sent);
//! every failure ends the login with a status class 2 or 3; the text of one exchange is bounded by
//! [`text`]'s limits and the number of login PDUs by [`LOGIN_PDUS_MAX`].

use std::sync::Arc;

use cairn_export::access::{AuthMethod, LoginOffer};

use crate::chap::{self, ChapCredential};
use crate::keys::{self, Answer, Params};
use crate::limits::{
    BURST_BYTES_MAX, CHAP_CHALLENGE_BYTES, FIRST_BURST_BYTES_MAX, LOGIN_PDUS_MAX,
    RECV_DATA_SEGMENT_BYTES, TEXT_BYTES_MAX,
};
use crate::pdu::Pdu;
use crate::text::{self, Pairs};

/// Login status codes (class << 8 | detail).
pub mod status {
    pub const SUCCESS: u16 = 0x0000;
    pub const AUTH_FAILURE: u16 = 0x0201;
    pub const NOT_FOUND: u16 = 0x0203;
    pub const UNSUPPORTED_VERSION: u16 = 0x0205;
    pub const TOO_MANY_CONNECTIONS: u16 = 0x0206;
    pub const MISSING_PARAMETER: u16 = 0x0207;
    pub const SESSION_TYPE_NOT_SUPPORTED: u16 = 0x0209;
    pub const SESSION_DOES_NOT_EXIST: u16 = 0x020a;
    pub const INVALID_DURING_LOGIN: u16 = 0x020b;
    pub const TARGET_ERROR: u16 = 0x0300;
}

/// The only iSCSI version there is (RFC 7143 §11.12.4: Version-max and Version-active 0x00).
pub const VERSION: u8 = 0;

/// Login stages.
pub const STAGE_SECURITY: u8 = 0;
pub const STAGE_OPERATIONAL: u8 = 1;
pub const STAGE_FULL_FEATURE: u8 = 3;

/// What the target authenticates with.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    /// Initiator credentials; when not empty every initiator must pass CHAP.
    pub initiators: Vec<ChapCredential>,
    /// The target's own credential, for initiators that ask for mutual CHAP.
    pub target: Option<ChapCredential>,
}

impl Auth {
    /// True when every login must pass CHAP.
    pub fn chap_required(&self) -> bool {
        !self.initiators.is_empty()
    }
}

/// The target as login sees it.
#[derive(Clone, Debug)]
pub struct LoginConfig {
    pub target_name: String,
    pub auth: Auth,
}

impl LoginConfig {
    /// What a login through a portal of this target starts from: the target's side of every
    /// key ([`keys`], [`crate::limits`]) and the authentication method its security stage takes.
    pub fn offer(&self) -> LoginOffer {
        LoginOffer {
            version_min: VERSION,
            version_max: VERSION,
            max_connections: keys::MAX_CONNECTIONS,
            initial_r2t: keys::INITIAL_R2T,
            immediate_data: keys::IMMEDIATE_DATA,
            max_outstanding_r2t: keys::MAX_OUTSTANDING_R2T,
            first_burst_bytes: FIRST_BURST_BYTES_MAX,
            max_burst_bytes: BURST_BYTES_MAX,
            data_sequence_in_order: keys::DATA_IN_ORDER,
            data_pdu_in_order: keys::DATA_IN_ORDER,
            default_time2wait_secs: keys::DEFAULT_TIME2WAIT_SECS,
            default_time2retain_secs: keys::DEFAULT_TIME2RETAIN_SECS,
            error_recovery_level: keys::ERROR_RECOVERY_LEVEL,
            recv_data_segment_bytes: RECV_DATA_SEGMENT_BYTES,
            markers: keys::MARKERS,
            digests: keys::DIGESTS.iter().map(|(_, d)| *d).collect(),
            auth: if self.auth.chap_required() {
                AuthMethod::Chap
            } else {
                AuthMethod::None
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionType {
    Normal,
    Discovery,
}

/// A login that reached full feature phase.
#[derive(Clone, Debug)]
pub struct Negotiated {
    pub session_type: SessionType,
    pub initiator_name: String,
    pub isid: [u8; 6],
    pub params: Params,
    /// The CHAP name the initiator authenticated as, if it used CHAP.
    pub chap_name: Option<String>,
}

/// The fields of one login response the connection fills in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub transit: bool,
    pub csg: u8,
    pub nsg: u8,
    pub status: u16,
    pub text: Vec<u8>,
}

/// The outcome of one login request.
#[derive(Clone, Debug)]
pub enum Step {
    /// Send the reply and wait for the next request.
    Continue(Reply),
    /// Send the reply (transit to full feature phase) and start the session.
    Done(Reply, Box<Negotiated>),
    /// Send the reply (a failure status) and close the connection.
    Fail(Reply),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum AuthState {
    Start,
    None,
    ChapAlgorithm,
    ChapResponse { id: u8, challenge: Vec<u8> },
    Passed,
}

/// One connection's login.
pub struct Login {
    cfg: Arc<LoginConfig>,
    stage: u8,
    pdus: u32,
    pending: Vec<u8>,
    initiator_name: Option<String>,
    session_type: Option<SessionType>,
    isid: [u8; 6],
    auth: AuthState,
    chap_name: Option<String>,
    params: Params,
    declared: bool,
    tpgt_sent: bool,
    target_named: bool,
}

impl Login {
    pub fn new(cfg: Arc<LoginConfig>) -> Login {
        Login {
            cfg,
            stage: STAGE_SECURITY,
            pdus: 0,
            pending: Vec::new(),
            initiator_name: None,
            session_type: None,
            isid: [0; 6],
            auth: AuthState::Start,
            chap_name: None,
            params: Params::default(),
            declared: false,
            tpgt_sent: false,
            target_named: false,
        }
    }

    fn chap_required(&self) -> bool {
        self.cfg.auth.chap_required()
    }

    fn fail(&self, status: u16) -> Step {
        Step::Fail(Reply {
            transit: false,
            csg: self.stage,
            nsg: 0,
            status,
            text: Vec::new(),
        })
    }

    /// Handles one login request PDU.
    pub fn step(&mut self, req: &Pdu) -> Step {
        self.pdus += 1;
        let flags = req.flags();
        let (transit, cont) = (flags & 0x80 != 0, flags & 0x40 != 0);
        let (csg, nsg) = ((flags >> 2) & 3, flags & 3);
        if self.pdus > LOGIN_PDUS_MAX || (transit && cont) {
            return self.fail(status::INVALID_DURING_LOGIN);
        }
        if req.bhs[3] > VERSION {
            // Version-min above the only version there is.
            return self.fail(status::UNSUPPORTED_VERSION);
        }
        if self.pdus == 1 {
            self.isid.copy_from_slice(&req.bhs[8..14]);
            if csg == STAGE_OPERATIONAL && !self.chap_required() {
                self.stage = STAGE_OPERATIONAL;
                self.auth = AuthState::None;
            }
        }
        if csg != self.stage || (transit && (nsg <= csg || nsg == 2)) {
            return self.fail(if csg == STAGE_OPERATIONAL && self.chap_required() {
                status::AUTH_FAILURE
            } else {
                status::INVALID_DURING_LOGIN
            });
        }
        if self.pending.len() + req.data.len() > TEXT_BYTES_MAX {
            return self.fail(status::INVALID_DURING_LOGIN);
        }
        self.pending.extend_from_slice(&req.data);
        if cont {
            return Step::Continue(self.reply(false, 0, Vec::new()));
        }
        let data = std::mem::take(&mut self.pending);
        match text::parse(&data) {
            Ok(pairs) => self.exchange(pairs, transit, nsg),
            Err(_) => self.fail(status::INVALID_DURING_LOGIN),
        }
    }

    fn reply(&self, transit: bool, nsg: u8, text: Vec<u8>) -> Reply {
        Reply {
            transit,
            csg: self.stage,
            nsg: if transit { nsg } else { 0 },
            status: status::SUCCESS,
            text,
        }
    }

    fn exchange(&mut self, pairs: Pairs, transit: bool, nsg: u8) -> Step {
        let mut out = Pairs::new();
        for (key, value) in &pairs {
            if let Err(status) = self.key(key, value, &mut out) {
                return self.fail(status);
            }
        }
        if let Err(status) = self.check_identity() {
            return self.fail(status);
        }
        if self.stage == STAGE_SECURITY {
            if let Err(status) = self.security(&pairs, &mut out) {
                return self.fail(status);
            }
        }
        if !self.tpgt_sent && self.session_type == Some(SessionType::Normal) {
            self.tpgt_sent = true;
            out.push((
                "TargetPortalGroupTag".into(),
                crate::node::PORTAL_GROUP_TAG.to_string(),
            ));
        }
        let may_transit = transit && self.auth_done();
        if may_transit
            && !self.declared
            && (self.stage == STAGE_OPERATIONAL || nsg == STAGE_FULL_FEATURE)
        {
            self.declared = true;
            out.extend(keys::target_declarations());
        }
        let reply = self.reply(may_transit, nsg, text::encode(&out));
        if !may_transit {
            return Step::Continue(reply);
        }
        self.stage = nsg;
        if nsg != STAGE_FULL_FEATURE {
            return Step::Continue(reply);
        }
        let negotiated = Negotiated {
            session_type: self.session_type.unwrap_or(SessionType::Normal),
            initiator_name: self.initiator_name.clone().unwrap_or_default(),
            isid: self.isid,
            params: self.params.clone(),
            chap_name: self.chap_name.clone(),
        };
        Step::Done(reply, Box::new(negotiated))
    }

    fn auth_done(&self) -> bool {
        matches!(self.auth, AuthState::None | AuthState::Passed)
    }

    /// Declarative and operational keys; security keys are left to [`Login::security`].
    fn key(&mut self, key: &str, value: &str, out: &mut Pairs) -> Result<(), u16> {
        match key {
            "InitiatorName" => self.initiator_name = Some(value.to_ascii_lowercase()),
            "InitiatorAlias" => {}
            "TargetName" if value != self.cfg.target_name => return Err(status::NOT_FOUND),
            "TargetName" => self.target_named = true,
            "SessionType" => {
                self.session_type = Some(match value {
                    "Normal" => SessionType::Normal,
                    "Discovery" => SessionType::Discovery,
                    _ => return Err(status::SESSION_TYPE_NOT_SUPPORTED),
                })
            }
            "AuthMethod" | "CHAP_A" | "CHAP_N" | "CHAP_R" | "CHAP_I" | "CHAP_C" => {
                if self.stage != STAGE_SECURITY {
                    return Err(status::INVALID_DURING_LOGIN);
                }
            }
            _ => match keys::negotiate(&mut self.params, key, value) {
                Some(Answer::Value(v)) => out.push((key.into(), v)),
                Some(Answer::Silent) => {}
                Some(Answer::Reject) => out.push((key.into(), "Reject".into())),
                None => out.push((key.into(), "NotUnderstood".into())),
            },
        }
        Ok(())
    }

    fn check_identity(&mut self) -> Result<(), u16> {
        if self.initiator_name.is_none() {
            return Err(status::MISSING_PARAMETER);
        }
        let session_type = *self.session_type.get_or_insert(SessionType::Normal);
        // A normal session names its target (checked against ours in `key`).
        if session_type == SessionType::Normal && !self.target_named {
            return Err(status::MISSING_PARAMETER);
        }
        Ok(())
    }

    fn security(&mut self, pairs: &Pairs, out: &mut Pairs) -> Result<(), u16> {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        match self.auth.clone() {
            AuthState::Start => {
                let offered = get("AuthMethod").ok_or(status::AUTH_FAILURE)?;
                let methods: Vec<&str> = offered.split(',').collect();
                if self.chap_required() || !methods.contains(&"None") {
                    if !methods.contains(&"CHAP") || !self.chap_required() {
                        return Err(status::AUTH_FAILURE);
                    }
                    self.auth = AuthState::ChapAlgorithm;
                    out.push(("AuthMethod".into(), "CHAP".into()));
                } else {
                    self.auth = AuthState::None;
                    out.push(("AuthMethod".into(), "None".into()));
                }
                Ok(())
            }
            AuthState::ChapAlgorithm => {
                let algorithms = get("CHAP_A").ok_or(status::AUTH_FAILURE)?;
                if !algorithms.split(',').any(|a| a == "5") {
                    return Err(status::AUTH_FAILURE);
                }
                let id: u8 = rand::random();
                let challenge: Vec<u8> =
                    (0..CHAP_CHALLENGE_BYTES).map(|_| rand::random()).collect();
                out.push(("CHAP_A".into(), "5".into()));
                out.push(("CHAP_I".into(), id.to_string()));
                out.push(("CHAP_C".into(), chap::encode_hex(&challenge)));
                self.auth = AuthState::ChapResponse { id, challenge };
                Ok(())
            }
            AuthState::ChapResponse { id, challenge } => {
                self.chap_verify(id, &challenge, pairs, out)?;
                self.auth = AuthState::Passed;
                Ok(())
            }
            AuthState::None | AuthState::Passed => Ok(()),
        }
    }

    fn chap_verify(
        &mut self,
        id: u8,
        challenge: &[u8],
        pairs: &Pairs,
        out: &mut Pairs,
    ) -> Result<(), u16> {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let name = get("CHAP_N").ok_or(status::AUTH_FAILURE)?;
        let given = get("CHAP_R")
            .and_then(chap::decode_binary)
            .ok_or(status::AUTH_FAILURE)?;
        let cred = self.cfg.auth.initiators.iter().find(|c| c.name == name);
        let expected = cred.map(|c| chap::response(id, &c.secret, challenge));
        if !expected.is_some_and(|e| chap::same(&e, &given)) {
            return Err(status::AUTH_FAILURE);
        }
        self.chap_name = Some(name.to_string());
        match (get("CHAP_I"), get("CHAP_C")) {
            (None, None) => Ok(()),
            (Some(i), Some(c)) => {
                let target = self.cfg.auth.target.as_ref().ok_or(status::AUTH_FAILURE)?;
                let i: u8 = i.parse().map_err(|_| status::AUTH_FAILURE)?;
                let c = chap::decode_binary(c).ok_or(status::AUTH_FAILURE)?;
                if chap::same(&c, challenge) {
                    return Err(status::AUTH_FAILURE);
                }
                out.push(("CHAP_N".into(), target.name.clone()));
                out.push((
                    "CHAP_R".into(),
                    chap::encode_hex(&chap::response(i, &target.secret, &c)),
                ));
                Ok(())
            }
            _ => Err(status::AUTH_FAILURE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_export::access::Digest;

    const TARGET: &str = "iqn.2026-01.org.cairn:array";

    fn config(chap: bool, mutual: bool) -> Arc<LoginConfig> {
        let cred = |name: &str, secret: &str| ChapCredential {
            name: name.into(),
            secret: secret.as_bytes().to_vec(),
        };
        Arc::new(LoginConfig {
            target_name: TARGET.into(),
            auth: Auth {
                initiators: if chap {
                    vec![cred("host", "secretsecret1")]
                } else {
                    vec![]
                },
                target: mutual.then(|| cred("array", "targetsecret2")),
            },
        })
    }

    fn request(flags: u8, text: &str) -> Pdu {
        let mut p = Pdu::new(crate::pdu::op::LOGIN);
        p.bhs[1] = flags;
        p.set_data(bytes::Bytes::from(text.replace(';', "\0")));
        p
    }

    fn pairs(r: &Reply) -> Pairs {
        text::parse(&r.text).unwrap()
    }

    fn value(r: &Reply, key: &str) -> Option<String> {
        pairs(r).into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    const FIRST: &str =
        "InitiatorName=iqn.x:h;SessionType=Normal;TargetName=iqn.2026-01.org.cairn:array;";

    #[test]
    fn auth_none_straight_to_full_feature() {
        let mut login = Login::new(config(false, false));
        let step = login.step(&request(0x81, &format!("{FIRST}AuthMethod=None;")));
        let Step::Continue(r) = step else {
            panic!("{step:?}")
        };
        assert!(r.transit);
        assert_eq!(value(&r, "AuthMethod").as_deref(), Some("None"));
        assert_eq!(value(&r, "TargetPortalGroupTag").as_deref(), Some("1"));
        let step = login.step(&request(
            0x87,
            "HeaderDigest=CRC32C,None;MaxConnections=4;X-foo=1;",
        ));
        let Step::Done(r, n) = step else {
            panic!("{step:?}")
        };
        assert_eq!(value(&r, "HeaderDigest").as_deref(), Some("CRC32C"));
        assert_eq!(value(&r, "MaxConnections").as_deref(), Some("1"));
        assert_eq!(value(&r, "X-foo").as_deref(), Some("NotUnderstood"));
        assert!(value(&r, "MaxRecvDataSegmentLength").is_some());
        assert!(n.params.header_digest);
        assert_eq!(n.initiator_name, "iqn.x:h");
    }

    fn chap_login(mutual: bool, secret: &str, challenge: Option<&[u8]>) -> Step {
        let mut login = Login::new(config(true, mutual));
        let Step::Continue(r) =
            login.step(&request(0x81, &format!("{FIRST}AuthMethod=CHAP,None;")))
        else {
            panic!()
        };
        assert!(!r.transit);
        assert_eq!(value(&r, "AuthMethod").as_deref(), Some("CHAP"));
        let Step::Continue(r) = login.step(&request(0x01, "CHAP_A=7,5;")) else {
            panic!()
        };
        let id: u8 = value(&r, "CHAP_I").unwrap().parse().unwrap();
        let c = chap::decode_binary(&value(&r, "CHAP_C").unwrap()).unwrap();
        let resp = chap::encode_hex(&chap::response(id, secret.as_bytes(), &c));
        let mut text = format!("CHAP_N=host;CHAP_R={resp};");
        if let Some(ch) = challenge {
            text += &format!(
                "CHAP_I=9;CHAP_C={};",
                chap::encode_hex(if ch.is_empty() { &c } else { ch })
            );
        }
        login.step(&request(0x81, &text))
    }

    #[test]
    fn chap_one_way_and_mutual() {
        let Step::Continue(r) = chap_login(false, "secretsecret1", None) else {
            panic!()
        };
        assert!(r.transit && r.nsg == STAGE_OPERATIONAL);
        let Step::Continue(r) = chap_login(true, "secretsecret1", Some(b"abcdefgh")) else {
            panic!()
        };
        let expected = chap::encode_hex(&chap::response(9, b"targetsecret2", b"abcdefgh"));
        assert_eq!(value(&r, "CHAP_R"), Some(expected));
        assert_eq!(value(&r, "CHAP_N").as_deref(), Some("array"));
    }

    #[test]
    fn chap_refusals() {
        let failed = |s: Step| matches!(s, Step::Fail(r) if r.status == status::AUTH_FAILURE);
        assert!(failed(chap_login(false, "wrong", None)));
        // Mutual CHAP without a target secret, and a reflected challenge.
        assert!(failed(chap_login(
            false,
            "secretsecret1",
            Some(b"abcdefgh")
        )));
        assert!(failed(chap_login(true, "secretsecret1", Some(b""))));
        // AuthMethod None when CHAP is required; skipping the security stage.
        let mut login = Login::new(config(true, false));
        assert!(failed(
            login.step(&request(0x81, &format!("{FIRST}AuthMethod=None;")))
        ));
        let mut login = Login::new(config(true, false));
        assert!(failed(login.step(&request(0x87, FIRST))));
    }

    #[test]
    fn malformed_logins_fail() {
        let fails = |flags: u8, text: &str, want: u16| {
            let mut login = Login::new(config(false, false));
            match login.step(&request(flags, text)) {
                Step::Fail(r) => assert_eq!(r.status, want, "{text}"),
                s => panic!("{text}: {s:?}"),
            }
        };
        fails(
            0x81,
            "SessionType=Normal;TargetName=iqn.2026-01.org.cairn:array;",
            status::MISSING_PARAMETER,
        );
        fails(
            0x81,
            "InitiatorName=i;SessionType=Normal;",
            status::MISSING_PARAMETER,
        );
        fails(
            0x81,
            "InitiatorName=i;TargetName=iqn.other;",
            status::NOT_FOUND,
        );
        fails(
            0x81,
            "InitiatorName=i;SessionType=Weird;",
            status::SESSION_TYPE_NOT_SUPPORTED,
        );
        fails(0xc1, FIRST, status::INVALID_DURING_LOGIN);
        fails(0x8f, FIRST, status::INVALID_DURING_LOGIN);
        fails(0x81, "garbage", status::INVALID_DURING_LOGIN);
        // Full feature phase straight from the security stage is allowed.
        let mut login = Login::new(config(false, false));
        assert!(matches!(
            login.step(&request(0x83, &format!("{FIRST}AuthMethod=None;"))),
            Step::Done(..)
        ));
    }

    /// An initiator offering the far end of every key gets the target's side of it: the offer
    /// management shows is what the result functions give.
    #[test]
    fn an_initiator_offering_the_extremes_gets_the_offer() {
        let cfg = config(false, false);
        let offer = cfg.offer();
        assert_eq!(offer.auth, AuthMethod::None);
        assert_eq!(config(true, false).offer().auth, AuthMethod::Chap);
        assert_eq!(offer.digests, [Digest::None, Digest::Crc32c]);
        let yes_no = |b: bool| if b { "Yes" } else { "No" }.to_string();
        let table = [
            ("MaxConnections", "65535", offer.max_connections.to_string()),
            ("InitialR2T", "No", yes_no(offer.initial_r2t)),
            ("ImmediateData", "Yes", yes_no(offer.immediate_data)),
            (
                "MaxOutstandingR2T",
                "65535",
                offer.max_outstanding_r2t.to_string(),
            ),
            (
                "MaxBurstLength",
                "16777215",
                offer.max_burst_bytes.to_string(),
            ),
            (
                "FirstBurstLength",
                "16777215",
                offer.first_burst_bytes.to_string(),
            ),
            ("DataPDUInOrder", "No", yes_no(offer.data_pdu_in_order)),
            (
                "DataSequenceInOrder",
                "No",
                yes_no(offer.data_sequence_in_order),
            ),
            (
                "DefaultTime2Wait",
                "0",
                offer.default_time2wait_secs.to_string(),
            ),
            (
                "DefaultTime2Retain",
                "3600",
                offer.default_time2retain_secs.to_string(),
            ),
            (
                "ErrorRecoveryLevel",
                "2",
                offer.error_recovery_level.to_string(),
            ),
            ("IFMarker", "Yes", yes_no(offer.markers)),
            ("OFMarker", "Yes", yes_no(offer.markers)),
            // Each accepted digest is taken when the initiator asks for it first.
            ("HeaderDigest", "CRC32C,None", "CRC32C".to_string()),
            ("DataDigest", "None,CRC32C", "None".to_string()),
        ];
        let keys: String = table.iter().map(|(k, v, _)| format!("{k}={v};")).collect();
        let mut login = Login::new(cfg);
        let step = login.step(&request(0x81, &format!("{FIRST}AuthMethod=None;")));
        assert!(matches!(step, Step::Continue(r) if r.transit));
        let Step::Done(r, _) = login.step(&request(0x87, &keys)) else {
            panic!("login did not complete")
        };
        for (key, _, want) in &table {
            assert_eq!(value(&r, key).as_ref(), Some(want), "{key}");
        }
        assert_eq!(
            value(&r, "MaxRecvDataSegmentLength"),
            Some(offer.recv_data_segment_bytes.to_string())
        );
    }

    #[test]
    fn continued_text_is_gathered() {
        let mut login = Login::new(config(false, false));
        let Step::Continue(r) = login.step(&request(0x41, "InitiatorName=iqn.x:h;")) else {
            panic!()
        };
        assert!(r.text.is_empty() && !r.transit);
        let step = login.step(&request(0x81, "SessionType=Discovery;AuthMethod=None;"));
        assert!(matches!(step, Step::Continue(r) if r.transit));
    }
}
