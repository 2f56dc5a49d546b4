//! Human byte sizes on the command line and in the configuration: `4096`, `512K`, `64MiB`, `16G`,
//! `1TiB`. Binary units (K = KiB = 1024); the result must fit in a u64.

use anyhow::{bail, Context, Result};

/// Parses a size such as `16GiB`, `16G`, `512k` or `1048576` into bytes.
pub fn parse_size_bytes(text: &str) -> Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        bail!("Size '{text}' does not start with a number");
    }
    let value: u64 = digits
        .parse()
        .with_context(|| format!("Size '{text}' is too large"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "p" | "pb" | "pib" => 50,
        other => bail!("Size '{text}' has an unknown unit '{other}' (use K, M, G, T or P)"),
    };
    value
        .checked_mul(1u64 << shift)
        .with_context(|| format!("Size '{text}' is too large"))
}

/// Formats bytes with the largest binary unit that keeps the value exact, e.g. `16 GiB`, `4096 B`.
pub fn format_size_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u32); 5] = [
        ("PiB", 50),
        ("TiB", 40),
        ("GiB", 30),
        ("MiB", 20),
        ("KiB", 10),
    ];
    for (name, shift) in UNITS {
        let unit = 1u64 << shift;
        if bytes >= unit && bytes % unit == 0 {
            return format!("{} {name}", bytes / unit);
        }
    }
    if bytes >= 1 << 20 {
        return format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64);
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_size_bytes("4096").unwrap(), 4096);
        assert_eq!(parse_size_bytes("512K").unwrap(), 512 << 10);
        assert_eq!(parse_size_bytes("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size_bytes("16g").unwrap(), 16 << 30);
        assert_eq!(parse_size_bytes(" 1 TiB ").unwrap(), 1 << 40);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_size_bytes("").is_err());
        assert!(parse_size_bytes("G").is_err());
        assert!(parse_size_bytes("12X").is_err());
        assert!(parse_size_bytes("99999999999P").is_err());
    }

    #[test]
    fn formats_exact_units() {
        assert_eq!(format_size_bytes(16 << 30), "16 GiB");
        assert_eq!(format_size_bytes(4096), "4 KiB");
        assert_eq!(format_size_bytes(100), "100 B");
    }
}
