//! Operational keys (RFC 7143 §13): their result functions and the values a session runs with.
//!
//! Invariants: every numeric result lies in the key's range and never exceeds the target's own
//! limit; FirstBurstLength never exceeds MaxBurstLength; the target answers every key it was
//! offered (NotUnderstood for unknown ones) and declares its MaxRecvDataSegmentLength.

use crate::limits::{
    BURST_BYTES_MAX, DATA_SEGMENT_BYTES_CEILING, DATA_SEGMENT_BYTES_FLOOR, FIRST_BURST_BYTES_MAX,
    RECV_DATA_SEGMENT_BYTES,
};

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

fn digest_choice(v: &str) -> Option<bool> {
    v.split(',').find_map(|d| match d {
        "None" => Some(false),
        "CRC32C" => Some(true),
        _ => None,
    })
}

/// Applies one offered operational key to `p`; `None` if the key is not operational.
pub fn negotiate(p: &mut Params, key: &str, value: &str) -> Option<Answer> {
    let seg = |v| {
        ranged(
            v,
            DATA_SEGMENT_BYTES_FLOOR as u64,
            DATA_SEGMENT_BYTES_CEILING as u64,
        )
    };
    let secs = |v| ranged(v, 0, 3600);
    let answer = match key {
        "HeaderDigest" | "DataDigest" => match digest_choice(value) {
            Some(crc) => {
                let slot = if key == "HeaderDigest" {
                    &mut p.header_digest
                } else {
                    &mut p.data_digest
                };
                *slot = crc;
                Answer::Value(if crc { "CRC32C" } else { "None" }.into())
            }
            None => Answer::Reject,
        },
        "MaxRecvDataSegmentLength" => match seg(value) {
            Some(n) => {
                p.initiator_recv_data_bytes = n;
                Answer::Silent
            }
            None => Answer::Reject,
        },
        "MaxBurstLength" => match seg(value) {
            Some(n) => {
                p.max_burst_bytes = n.min(BURST_BYTES_MAX);
                p.first_burst_bytes = p.first_burst_bytes.min(p.max_burst_bytes);
                Answer::Value(p.max_burst_bytes.to_string())
            }
            None => Answer::Reject,
        },
        "FirstBurstLength" => match seg(value) {
            Some(n) => {
                p.first_burst_bytes = n.min(FIRST_BURST_BYTES_MAX).min(p.max_burst_bytes);
                Answer::Value(p.first_burst_bytes.to_string())
            }
            None => Answer::Reject,
        },
        "InitialR2T" => match parse_bool(value) {
            // Result function OR: the target is content with either.
            Some(b) => {
                p.initial_r2t = b;
                yes_no(b)
            }
            None => Answer::Reject,
        },
        "ImmediateData" => match parse_bool(value) {
            // Result function AND.
            Some(b) => {
                p.immediate_data = b;
                yes_no(b)
            }
            None => Answer::Reject,
        },
        "MaxOutstandingR2T" => match ranged(value, 1, 65535) {
            Some(_) => {
                p.max_outstanding_r2t = 1;
                Answer::Value("1".into())
            }
            None => Answer::Reject,
        },
        // OR with the target's Yes: data in order is the only mode served.
        "DataPDUInOrder" | "DataSequenceInOrder" => match parse_bool(value) {
            Some(_) => yes_no(true),
            None => Answer::Reject,
        },
        // Maximum with the target's 0: the initiator's wait stands.
        "DefaultTime2Wait" => match secs(value) {
            Some(n) => {
                p.default_time2wait_secs = n;
                Answer::Value(n.to_string())
            }
            None => Answer::Reject,
        },
        // Minimum with the target's 0: no task outlives its connection at level 0.
        "DefaultTime2Retain" => match secs(value) {
            Some(_) => {
                p.default_time2retain_secs = 0;
                Answer::Value("0".into())
            }
            None => Answer::Reject,
        },
        // Minimum with the target's 0 (only error recovery level 0 is served).
        "ErrorRecoveryLevel" => match ranged(value, 0, 2) {
            Some(_) => Answer::Value("0".into()),
            None => Answer::Reject,
        },
        // Minimum with the target's 1 (one connection per session).
        "MaxConnections" => match ranged(value, 1, 65535) {
            Some(_) => Answer::Value("1".into()),
            None => Answer::Reject,
        },
        "IFMarker" | "OFMarker" => match parse_bool(value) {
            Some(_) => yes_no(false),
            None => Answer::Reject,
        },
        "IFMarkInt" | "OFMarkInt" => Answer::Value("Irrelevant".into()),
        _ => return None,
    };
    Some(answer)
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
