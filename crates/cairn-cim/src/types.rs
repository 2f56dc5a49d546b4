//! CIM intrinsic data types and typed values (DSP0004): `CimType`, `Value`, `CimDateTime`.
//!
//! Invariants: a `Value::Array` holds only elements of its element type (never nested arrays);
//! a `CimDateTime` always holds a syntactically valid 25-character timestamp or interval; text
//! produced by `Value::to_cim_text` parses back to an equal value with `Value::parse`.

use std::fmt;

use crate::instance::Instance;
use crate::path::InstancePath;

/// A CIM data type, as named in CIM-XML `TYPE`/`PARAMTYPE` attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CimType {
    Boolean,
    Uint8,
    Sint8,
    Uint16,
    Sint16,
    Uint32,
    Sint32,
    Uint64,
    Sint64,
    Real32,
    Real64,
    Char16,
    String,
    DateTime,
    Reference,
    /// A string carrying an embedded instance (`TYPE="string" EmbeddedObject="instance"`).
    Instance,
}

impl CimType {
    /// The CIM-XML name (`Instance` is sent as `string` with `EmbeddedObject="instance"`).
    pub fn xml_name(self) -> &'static str {
        match self {
            CimType::Boolean => "boolean",
            CimType::Uint8 => "uint8",
            CimType::Sint8 => "sint8",
            CimType::Uint16 => "uint16",
            CimType::Sint16 => "sint16",
            CimType::Uint32 => "uint32",
            CimType::Sint32 => "sint32",
            CimType::Uint64 => "uint64",
            CimType::Sint64 => "sint64",
            CimType::Real32 => "real32",
            CimType::Real64 => "real64",
            CimType::Char16 => "char16",
            CimType::String | CimType::Instance => "string",
            CimType::DateTime => "datetime",
            CimType::Reference => "reference",
        }
    }

    /// Parses a CIM-XML type name (case-insensitive; also the class repository's names).
    pub fn from_xml_name(name: &str) -> Option<CimType> {
        const ALL: [CimType; 15] = [
            CimType::Boolean,
            CimType::Uint8,
            CimType::Sint8,
            CimType::Uint16,
            CimType::Sint16,
            CimType::Uint32,
            CimType::Sint32,
            CimType::Uint64,
            CimType::Sint64,
            CimType::Real32,
            CimType::Real64,
            CimType::Char16,
            CimType::String,
            CimType::DateTime,
            CimType::Reference,
        ];
        ALL.into_iter()
            .find(|t| t.xml_name().eq_ignore_ascii_case(name))
    }

    /// True for the integer types.
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            CimType::Uint8
                | CimType::Sint8
                | CimType::Uint16
                | CimType::Sint16
                | CimType::Uint32
                | CimType::Sint32
                | CimType::Uint64
                | CimType::Sint64
        )
    }
}

impl fmt::Display for CimType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.xml_name())
    }
}

/// A CIM datetime: a timestamp `yyyymmddhhmmss.mmmmmmsutc` or an interval `ddddddddhhmmss.mmmmmm:000`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CimDateTime(String);

impl CimDateTime {
    /// Validates the DSP0004 syntax (digits or `*` wildcards, `.` at 14, sign or `:` at 21).
    pub fn parse(text: &str) -> Option<CimDateTime> {
        let b = text.as_bytes();
        if b.len() != 25 || b[14] != b'.' {
            return None;
        }
        let digits_ok =
            |r: std::ops::Range<usize>| b[r].iter().all(|c| c.is_ascii_digit() || *c == b'*');
        if !digits_ok(0..14) || !digits_ok(15..21) || !b[22..25].iter().all(|c| c.is_ascii_digit())
        {
            return None;
        }
        match b[21] {
            b'+' | b'-' => Some(CimDateTime(text.to_owned())),
            b':' if &b[22..25] == b"000" => Some(CimDateTime(text.to_owned())),
            _ => None,
        }
    }

    /// An interval of whole seconds.
    pub fn interval_seconds(seconds: u64) -> CimDateTime {
        let (days, rem) = (seconds / 86_400, seconds % 86_400);
        let days = days.min(99_999_999);
        CimDateTime(format!(
            "{days:08}{:02}{:02}{:02}.000000:000",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        ))
    }

    /// A UTC timestamp from seconds since the Unix epoch.
    pub fn from_unix_seconds(seconds: u64) -> CimDateTime {
        let days = seconds / 86_400;
        let rem = seconds % 86_400;
        let (y, m, d) = civil_from_days(days as i64);
        CimDateTime(format!(
            "{y:04}{m:02}{d:02}{:02}{:02}{:02}.000000+000",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        ))
    }

    /// True for an interval, false for a timestamp.
    pub fn is_interval(&self) -> bool {
        self.0.as_bytes()[21] == b':'
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A typed CIM value. NULL is represented by the absence of a value (`Option<Value>`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Boolean(bool),
    Uint8(u8),
    Sint8(i8),
    Uint16(u16),
    Sint16(i16),
    Uint32(u32),
    Sint32(i32),
    Uint64(u64),
    Sint64(i64),
    Real32(f32),
    Real64(f64),
    Char16(char),
    String(String),
    DateTime(CimDateTime),
    Reference(InstancePath),
    /// An embedded instance (sent as an escaped string with `EmbeddedObject="instance"`).
    Instance(Box<Instance>),
    /// An array: element type and elements (all of that type).
    Array(CimType, Vec<Value>),
}

impl Value {
    /// Convenience constructor for string values.
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    /// The value's type and whether it is an array.
    pub fn cim_type(&self) -> (CimType, bool) {
        let t = match self {
            Value::Boolean(_) => CimType::Boolean,
            Value::Uint8(_) => CimType::Uint8,
            Value::Sint8(_) => CimType::Sint8,
            Value::Uint16(_) => CimType::Uint16,
            Value::Sint16(_) => CimType::Sint16,
            Value::Uint32(_) => CimType::Uint32,
            Value::Sint32(_) => CimType::Sint32,
            Value::Uint64(_) => CimType::Uint64,
            Value::Sint64(_) => CimType::Sint64,
            Value::Real32(_) => CimType::Real32,
            Value::Real64(_) => CimType::Real64,
            Value::Char16(_) => CimType::Char16,
            Value::String(_) => CimType::String,
            Value::DateTime(_) => CimType::DateTime,
            Value::Reference(_) => CimType::Reference,
            Value::Instance(_) => CimType::Instance,
            Value::Array(t, _) => return (*t, true),
        };
        (t, false)
    }

    /// Parses the text of a `<VALUE>` as a scalar of type `ty` (not `Reference`/`Instance`).
    pub fn parse(ty: CimType, text: &str) -> Option<Value> {
        let t = text.trim();
        Some(match ty {
            CimType::Boolean => {
                if t.eq_ignore_ascii_case("true") {
                    Value::Boolean(true)
                } else if t.eq_ignore_ascii_case("false") {
                    Value::Boolean(false)
                } else {
                    return None;
                }
            }
            CimType::Uint8 => Value::Uint8(parse_int(t)?),
            CimType::Sint8 => Value::Sint8(parse_int(t)?),
            CimType::Uint16 => Value::Uint16(parse_int(t)?),
            CimType::Sint16 => Value::Sint16(parse_int(t)?),
            CimType::Uint32 => Value::Uint32(parse_int(t)?),
            CimType::Sint32 => Value::Sint32(parse_int(t)?),
            CimType::Uint64 => Value::Uint64(parse_int(t)?),
            CimType::Sint64 => Value::Sint64(parse_int(t)?),
            CimType::Real32 => Value::Real32(parse_real(t)? as f32),
            CimType::Real64 => Value::Real64(parse_real(t)?),
            CimType::Char16 => {
                let mut chars = text.chars();
                let c = chars.next()?;
                if chars.next().is_some() || (c as u32) > 0xFFFF {
                    return None;
                }
                Value::Char16(c)
            }
            CimType::String => Value::String(text.to_owned()),
            CimType::DateTime => Value::DateTime(CimDateTime::parse(t)?),
            CimType::Reference | CimType::Instance => return None,
        })
    }

    /// The text of a scalar's `<VALUE>` (`None` for references, embedded instances and arrays,
    /// which have their own elements).
    pub fn to_cim_text(&self) -> Option<String> {
        let mut text = String::new();
        self.write_cim_text(&mut text).then_some(text)
    }

    /// Appends the text of a scalar's `<VALUE>` (unescaped) to `out`, without an allocation of
    /// its own for any but a real; false, appending nothing, for references, embedded instances
    /// and arrays, which have their own elements.
    pub fn write_cim_text(&self, out: &mut String) -> bool {
        use fmt::Write as _;
        // Writing into a String cannot fail.
        let _ = match self {
            Value::Boolean(b) => out.write_str(if *b { "TRUE" } else { "FALSE" }),
            Value::Uint8(v) => write!(out, "{v}"),
            Value::Sint8(v) => write!(out, "{v}"),
            Value::Uint16(v) => write!(out, "{v}"),
            Value::Sint16(v) => write!(out, "{v}"),
            Value::Uint32(v) => write!(out, "{v}"),
            Value::Sint32(v) => write!(out, "{v}"),
            Value::Uint64(v) => write!(out, "{v}"),
            Value::Sint64(v) => write!(out, "{v}"),
            Value::Real32(v) => out.write_str(&real_text(f64::from(*v), true)),
            Value::Real64(v) => out.write_str(&real_text(*v, false)),
            Value::Char16(c) => out.write_char(*c),
            Value::String(s) => out.write_str(s),
            Value::DateTime(d) => out.write_str(d.as_str()),
            Value::Reference(_) | Value::Instance(_) | Value::Array(..) => return false,
        };
        true
    }

    /// The value as an unsigned integer, if it is an integer that fits.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Uint8(v) => Some(v.into()),
            Value::Uint16(v) => Some(v.into()),
            Value::Uint32(v) => Some(v.into()),
            Value::Uint64(v) => Some(v),
            Value::Sint8(v) => u64::try_from(v).ok(),
            Value::Sint16(v) => u64::try_from(v).ok(),
            Value::Sint32(v) => u64::try_from(v).ok(),
            Value::Sint64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a string slice, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a boolean, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The value as a reference, if it is one.
    pub fn as_reference(&self) -> Option<&InstancePath> {
        match self {
            Value::Reference(p) => Some(p),
            _ => None,
        }
    }
}

fn parse_int<T: TryFrom<i128>>(t: &str) -> Option<T> {
    // DSP0201 allows decimal, and for compatibility a 0x-prefixed hex form.
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let v: i128 = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i128::from_str_radix(hex, 16).ok()?
    } else {
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()?
    };
    T::try_from(if neg { -v } else { v }).ok()
}

fn parse_real(t: &str) -> Option<f64> {
    match t {
        "INF" | "+INF" => Some(f64::INFINITY),
        "-INF" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if t
            .bytes()
            .all(|c| c.is_ascii_digit() || b"+-.eE".contains(&c))
            && !t.is_empty() =>
        {
            t.parse().ok()
        }
        _ => None,
    }
}

fn real_text(v: f64, single: bool) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "INF" } else { "-INF" }.to_owned()
    } else if single {
        format!("{:?}", v as f32)
    } else {
        format!("{v:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cim_text_is_appended_for_scalars_only() {
        let mut out = String::from("x");
        assert!(Value::Uint64(u64::MAX).write_cim_text(&mut out));
        assert!(Value::Sint8(-128).write_cim_text(&mut out));
        assert!(Value::Boolean(false).write_cim_text(&mut out));
        assert!(Value::Real32(0.5).write_cim_text(&mut out));
        assert!(Value::Char16('<').write_cim_text(&mut out));
        assert!(Value::string("a&b").write_cim_text(&mut out));
        assert_eq!(out, "x18446744073709551615-128FALSE0.5<a&b");
        let array = Value::Array(CimType::Uint8, vec![Value::Uint8(1)]);
        assert!(!array.write_cim_text(&mut out));
        assert_eq!(array.to_cim_text(), None);
        assert_eq!(out.len(), 37, "nothing appended for an array");
        assert_eq!(Value::Uint16(7).to_cim_text().as_deref(), Some("7"));
    }

    #[test]
    fn integers_parse_within_range_only() {
        assert_eq!(Value::parse(CimType::Uint8, "255"), Some(Value::Uint8(255)));
        assert_eq!(Value::parse(CimType::Uint8, "256"), None);
        assert_eq!(
            Value::parse(CimType::Sint8, "-128"),
            Some(Value::Sint8(-128))
        );
        assert_eq!(
            Value::parse(CimType::Uint64, "18446744073709551615"),
            Some(Value::Uint64(u64::MAX))
        );
        assert_eq!(
            Value::parse(CimType::Sint64, "-9223372036854775808"),
            Some(Value::Sint64(i64::MIN))
        );
        assert_eq!(
            Value::parse(CimType::Uint16, "0x10"),
            Some(Value::Uint16(16))
        );
        assert_eq!(Value::parse(CimType::Uint16, "-1"), None);
        assert_eq!(Value::parse(CimType::Uint16, "1.5"), None);
        assert_eq!(Value::parse(CimType::Uint16, ""), None);
    }

    #[test]
    fn reals_booleans_chars_and_datetimes() {
        assert_eq!(
            Value::parse(CimType::Real64, "-2.5E-300"),
            Some(Value::Real64(-2.5e-300))
        );
        assert_eq!(
            Value::parse(CimType::Real64, "INF"),
            Some(Value::Real64(f64::INFINITY))
        );
        assert_eq!(Value::parse(CimType::Real32, "abc"), None);
        assert_eq!(
            Value::parse(CimType::Boolean, "false"),
            Some(Value::Boolean(false))
        );
        assert_eq!(Value::parse(CimType::Boolean, "yes"), None);
        assert_eq!(Value::parse(CimType::Char16, "X"), Some(Value::Char16('X')));
        assert_eq!(Value::parse(CimType::Char16, "XY"), None);
        assert!(Value::parse(CimType::DateTime, "20261125134507.123456+000").is_some());
        assert!(Value::parse(CimType::DateTime, "00000003040506.000007:000").is_some());
        assert!(Value::parse(CimType::DateTime, "2026112513450.123456+000").is_none());
        assert!(Value::parse(CimType::DateTime, "00000003040506.000007:001").is_none());
    }

    #[test]
    fn text_round_trips() {
        let values = [
            Value::Boolean(true),
            Value::Uint8(7),
            Value::Sint16(-300),
            Value::Uint64(u64::MAX),
            Value::Real32(1.5),
            Value::Real64(-2.5e-300),
            Value::Real64(f64::NEG_INFINITY),
            Value::Char16('é'),
            Value::string("a <b> & c"),
            Value::DateTime(CimDateTime::interval_seconds(90_061)),
        ];
        for v in values {
            let (ty, _) = v.cim_type();
            let text = v.to_cim_text().expect("scalar");
            assert_eq!(Value::parse(ty, &text), Some(v));
        }
    }

    #[test]
    fn datetime_constructors() {
        assert_eq!(
            CimDateTime::interval_seconds(90_061).as_str(),
            "00000001010101.000000:000"
        );
        assert_eq!(
            CimDateTime::from_unix_seconds(0).as_str(),
            "19700101000000.000000+000"
        );
        assert_eq!(
            CimDateTime::from_unix_seconds(1_795_000_000).as_str(),
            "20261118110640.000000+000"
        );
        assert!(CimDateTime::interval_seconds(5).is_interval());
    }
}
