//! Operational keys (RFC 7143 §13): their result functions and the values a session runs with.
//!
//! Invariants: every numeric result lies in the key's range and never exceeds the target's own
//! limit; FirstBurstLength never exceeds MaxBurstLength; the target answers every key it was
//! offered (NotUnderstood for unknown ones) and declares its MaxRecvDataSegmentLength.

use cairn_export::access::Digest;

use crate::limits::{
    BURST_BYTES_MAX, DATA_SEGMENT_BYTES_CEILING, DATA_SEGMENT_BYTES_FLOOR, FIRST_BURST_BYTES_MAX,
    RECV_DATA_SEGMENT_BYTES,
};

// The target's side of each key its result function combines with the initiator's offer
// (RFC 7143 §13); with the burst and segment limits of [`crate::limits`] they are what
// `LoginConfig::offer` tells management.
/// MaxConnections (minimum): one connection per session.
pub const MAX_CONNECTIONS: u32 = 1;
/// MaxOutstandingR2T (minimum): one R2T at a time per task.
pub const MAX_OUTSTANDING_R2T: u32 = 1;
/// ErrorRecoveryLevel (minimum): level 0, a failed connection ends its session.
pub const ERROR_RECOVERY_LEVEL: u8 = 0;
/// DefaultTime2Wait (maximum): 0, the initiator's wait stands.
pub const DEFAULT_TIME2WAIT_SECS: u32 = 0;
/// DefaultTime2Retain (minimum): 0, no task outlives its connection at level 0.
pub const DEFAULT_TIME2RETAIN_SECS: u32 = 0;
/// InitialR2T (OR): No, unsolicited data is taken unless the initiator asks for R2T first.
pub const INITIAL_R2T: bool = false;
/// ImmediateData (AND): Yes.
pub const IMMEDIATE_DATA: bool = true;
/// DataPDUInOrder and DataSequenceInOrder (OR): Yes, the only mode served.
pub const DATA_IN_ORDER: bool = true;
/// IFMarker and OFMarker (AND): No, markers are never used.
pub const MARKERS: bool = false;
/// The digests accepted (HeaderDigest, DataDigest), RFC 7143's default first.
pub const DIGESTS: [(&str, Digest); 2] = [("None", Digest::None), ("CRC32C", Digest::Crc32c)];

/// What a session runs with once login is done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    pub header_digest: bool,
    pub data_digest: bool,
    /// The initiator's MaxRecvDataSegmentLength: the longest data segment the target may send.
    pub initiator_recv_data_bytes: u32,
    pub max_burst_bytes: u32,
    pub first_burst_bytes: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub max_outstanding_r2t: u32,
    pub default_time2wait_secs: u32,
    pub default_time2retain_secs: u32,
}

impl Default for Params {
    /// RFC 7143's defaults, capped by the target's limits.
    fn default() -> Self {
        Params {
            header_digest: false,
            data_digest: false,
            initiator_recv_data_bytes: 8192,
            max_burst_bytes: 262144.min(BURST_BYTES_MAX),
            first_burst_bytes: 65536.min(FIRST_BURST_BYTES_MAX),
            initial_r2t: true,
            immediate_data: true,
            max_outstanding_r2t: 1,
            default_time2wait_secs: 2,
            default_time2retain_secs: 20,
        }
    }
}

/// The answer to one offered key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Send `key=value` back.
    Value(String),
    /// A declarative key: nothing to send.
    Silent,
    /// The offer was out of range or not of the key's type: `key=Reject`.
    Reject,
}

fn parse_number(v: &str) -> Option<u64> {
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.len() <= 16 => u64::from_str_radix(hex, 16).ok(),
        Some(_) => None,
        None if !v.is_empty() && v.len() <= 20 => v.parse().ok(),
        None => None,
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

fn yes_no(b: bool) -> Answer {
    Answer::Value(if b { "Yes" } else { "No" }.into())
}

fn ranged(v: &str, min: u64, max: u64) -> Option<u32> {
    parse_number(v)
        .filter(|n| (min..=max).contains(n))
        .map(|n| n as u32)
}

/// The first digest of the initiator's list the target accepts.
fn digest(v: &str, slot: &mut bool) -> Option<Answer> {
    let (name, kind) = v
        .split(',')
        .find_map(|offered| DIGESTS.iter().find(|(name, _)| *name == offered))?;
    *slot = *kind == Digest::Crc32c;
    Some(Answer::Value((*name).into()))
}

fn segment(v: &str) -> Option<u32> {
    ranged(
        v,
        DATA_SEGMENT_BYTES_FLOOR as u64,
        DATA_SEGMENT_BYTES_CEILING as u64,
    )
}

fn value(n: u32) -> Answer {
    Answer::Value(n.to_string())
}

/// Burst lengths: minimum with the target's limits; FirstBurstLength never above MaxBurstLength.
fn burst(p: &mut Params, key: &str, v: &str) -> Option<Answer> {
    let n = segment(v)?;
    if key == "MaxBurstLength" {
        p.max_burst_bytes = n.min(BURST_BYTES_MAX);
        p.first_burst_bytes = p.first_burst_bytes.min(p.max_burst_bytes);
        Some(value(p.max_burst_bytes))
    } else {
        p.first_burst_bytes = n.min(FIRST_BURST_BYTES_MAX).min(p.max_burst_bytes);
        Some(value(p.first_burst_bytes))
    }
}

/// RFC 7143's Minimum result function over the initiator's offer and the target's side.
fn minimum(offered: u32, target: u32) -> u32 {
    offered.min(target)
}

/// RFC 7143's Maximum result function.
fn maximum(offered: u32, target: u32) -> u32 {
    offered.max(target)
}

/// Keys the session keeps nothing of: answered from the target's side alone.
fn stateless(key: &str, v: &str) -> Option<Option<Answer>> {
    let answer = match key {
        "ErrorRecoveryLevel" => {
            ranged(v, 0, 2).map(|n| value(minimum(n, u32::from(ERROR_RECOVERY_LEVEL))))
        }
        "MaxConnections" => ranged(v, 1, 65535).map(|n| value(minimum(n, MAX_CONNECTIONS))),
        "DataPDUInOrder" | "DataSequenceInOrder" => {
            parse_bool(v).map(|b| yes_no(b || DATA_IN_ORDER))
        }
        "IFMarker" | "OFMarker" => parse_bool(v).map(|b| yes_no(b && MARKERS)),
        "IFMarkInt" | "OFMarkInt" => Some(Answer::Value("Irrelevant".into())),
        _ => return None,
    };
    Some(answer)
}

/// Applies one offered operational key to `p`; `None` if the key is not operational.
pub fn negotiate(p: &mut Params, key: &str, v: &str) -> Option<Answer> {
    let answer = match key {
        "HeaderDigest" => digest(v, &mut p.header_digest),
        "DataDigest" => digest(v, &mut p.data_digest),
        "MaxRecvDataSegmentLength" => segment(v).map(|n| {
            p.initiator_recv_data_bytes = n;
            Answer::Silent
        }),
        "MaxBurstLength" | "FirstBurstLength" => burst(p, key, v),
        "InitialR2T" => parse_bool(v).map(|b| {
            p.initial_r2t = b || INITIAL_R2T;
            yes_no(p.initial_r2t)
        }),
        "ImmediateData" => parse_bool(v).map(|b| {
            p.immediate_data = b && IMMEDIATE_DATA;
            yes_no(p.immediate_data)
        }),
        "DefaultTime2Wait" => ranged(v, 0, 3600).map(|n| {
            p.default_time2wait_secs = maximum(n, DEFAULT_TIME2WAIT_SECS);
            value(p.default_time2wait_secs)
        }),
        "DefaultTime2Retain" => ranged(v, 0, 3600).map(|n| {
            p.default_time2retain_secs = minimum(n, DEFAULT_TIME2RETAIN_SECS);
            value(p.default_time2retain_secs)
        }),
        "MaxOutstandingR2T" => ranged(v, 1, 65535).map(|n| {
            p.max_outstanding_r2t = minimum(n, MAX_OUTSTANDING_R2T);
            value(p.max_outstanding_r2t)
        }),
        _ => return stateless(key, v).map(|a| a.unwrap_or(Answer::Reject)),
    };
    Some(answer.unwrap_or(Answer::Reject))
}

/// The target's own declaration, sent in the operational stage.
pub fn target_declarations() -> Vec<(String, String)> {
    vec![(
        "MaxRecvDataSegmentLength".into(),
        RECV_DATA_SEGMENT_BYTES.to_string(),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(key: &str, value: &str) -> (Answer, Params) {
        let mut p = Params::default();
        (negotiate(&mut p, key, value).unwrap(), p)
    }

    #[test]
    fn result_functions() {
        assert_eq!(
            answer("HeaderDigest", "CRC32C,None").0,
            Answer::Value("CRC32C".into())
        );
        assert!(answer("HeaderDigest", "CRC32C,None").1.header_digest);
        assert_eq!(
            answer("DataDigest", "X,None").0,
            Answer::Value("None".into())
        );
        assert_eq!(answer("DataDigest", "X").0, Answer::Reject);
        let (a, p) = answer("MaxBurstLength", "16776192");
        assert_eq!(a, Answer::Value(BURST_BYTES_MAX.to_string()));
        assert_eq!(p.max_burst_bytes, BURST_BYTES_MAX);
        assert_eq!(answer("MaxBurstLength", "511").0, Answer::Reject);
        assert_eq!(answer("MaxBurstLength", "0x1000").1.max_burst_bytes, 4096);
        assert_eq!(
            answer("ErrorRecoveryLevel", "2").0,
            Answer::Value("0".into())
        );
        assert_eq!(answer("MaxConnections", "8").0, Answer::Value("1".into()));
        assert_eq!(answer("MaxConnections", "0").0, Answer::Reject);
        assert_eq!(answer("InitialR2T", "No").0, Answer::Value("No".into()));
        assert_eq!(answer("ImmediateData", "maybe").0, Answer::Reject);
        assert_eq!(
            answer("DataPDUInOrder", "No").0,
            Answer::Value("Yes".into())
        );
        assert_eq!(
            answer("DefaultTime2Retain", "20").0,
            Answer::Value("0".into())
        );
        assert_eq!(answer("DefaultTime2Wait", "3601").0, Answer::Reject);
        let (a, p) = answer("MaxRecvDataSegmentLength", "65536");
        assert_eq!((a, p.initiator_recv_data_bytes), (Answer::Silent, 65536));
        assert_eq!(
            answer("MaxRecvDataSegmentLength", "99999999999999999999999").0,
            Answer::Reject
        );
        assert!(negotiate(&mut Params::default(), "X-vendor", "1").is_none());
    }

    #[test]
    fn first_burst_never_exceeds_max_burst() {
        let mut p = Params::default();
        negotiate(&mut p, "FirstBurstLength", "262144");
        negotiate(&mut p, "MaxBurstLength", "4096");
        assert_eq!((p.first_burst_bytes, p.max_burst_bytes), (4096, 4096));
        negotiate(&mut p, "FirstBurstLength", "65536");
        assert_eq!(p.first_burst_bytes, 4096);
    }
}
