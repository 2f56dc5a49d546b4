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

fn digest(v: &str, slot: &mut bool) -> Option<Answer> {
    let crc = v.split(',').find_map(|d| match d {
        "None" => Some(false),
        "CRC32C" => Some(true),
        _ => None,
    })?;
    *slot = crc;
    Some(Answer::Value(if crc { "CRC32C" } else { "None" }.into()))
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

/// Keys whose answer is fixed by what the target serves, whatever was offered (in range).
fn fixed(key: &str, v: &str) -> Option<Option<Answer>> {
    let answer = match key {
        // MaxOutstandingR2T, ErrorRecoveryLevel, MaxConnections: minimum with 1, 0 and 1.
        "MaxOutstandingR2T" => ranged(v, 1, 65535).map(|_| value(1)),
        "ErrorRecoveryLevel" => ranged(v, 0, 2).map(|_| value(0)),
        "MaxConnections" => ranged(v, 1, 65535).map(|_| value(1)),
        // OR with the target's Yes: data in order is the only mode served.
        "DataPDUInOrder" | "DataSequenceInOrder" => parse_bool(v).map(|_| yes_no(true)),
        "IFMarker" | "OFMarker" => parse_bool(v).map(|_| yes_no(false)),
        "IFMarkInt" | "OFMarkInt" => Some(Answer::Value("Irrelevant".into())),
        // Minimum with the target's 0: no task outlives its connection at level 0.
        "DefaultTime2Retain" => ranged(v, 0, 3600).map(|_| value(0)),
        _ => return None,
    };
    Some(answer)
}

/// Applies one offered operational key to `p`; `None` if the key is not operational.
pub fn negotiate(p: &mut Params, key: &str, v: &str) -> Option<Answer> {
    if let Some(answer) = fixed(key, v) {
        match key {
            "MaxOutstandingR2T" if answer.is_some() => p.max_outstanding_r2t = 1,
            "DefaultTime2Retain" if answer.is_some() => p.default_time2retain_secs = 0,
            _ => {}
        }
        return Some(answer.unwrap_or(Answer::Reject));
    }
    let answer = match key {
        "HeaderDigest" => digest(v, &mut p.header_digest),
        "DataDigest" => digest(v, &mut p.data_digest),
        "MaxRecvDataSegmentLength" => segment(v).map(|n| {
            p.initiator_recv_data_bytes = n;
            Answer::Silent
        }),
        "MaxBurstLength" | "FirstBurstLength" => burst(p, key, v),
        // InitialR2T (OR) and ImmediateData (AND): the target is content with either.
        "InitialR2T" => parse_bool(v).map(|b| {
            p.initial_r2t = b;
            yes_no(b)
        }),
        "ImmediateData" => parse_bool(v).map(|b| {
            p.immediate_data = b;
            yes_no(b)
        }),
        // Maximum with the target's 0: the initiator's wait stands.
        "DefaultTime2Wait" => ranged(v, 0, 3600).map(|n| {
            p.default_time2wait_secs = n;
            value(n)
        }),
        _ => return None,
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
