//! The target node's durable identity and secrets in the data directory: its IQN (made once from
//! the system name, then kept so a host-name change does not move hosts) and the CHAP secrets
//! file (mode 0600, refused when others may read it).
//!
//! Invariants: a stored IQN is never rewritten; a generated IQN is lower case and uses only the
//! characters RFC 3722 allows; secrets are read only from a file that no one but its owner can read.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::Deserialize;

use crate::chap::ChapCredential;
use crate::login::Auth;
use crate::lunmap::write_atomic;

/// Naming authority and date of generated IQNs.
pub const IQN_PREFIX: &str = "iqn.2026-01.org.cairn";

/// The target portal group tag of the one portal group every portal belongs to: sent as
/// TargetPortalGroupTag at login, after the address in SendTargets, and part of the target
/// port's name.
pub const PORTAL_GROUP_TAG: u16 = 1;

/// The SCSI target port name of `target_name` (RFC 7143 §13.3: `<iSCSI name>,t,0x<TPGT>`, the
/// tag as four hex digits).
pub fn target_port_name(target_name: &str) -> String {
    format!("{target_name},t,0x{PORTAL_GROUP_TAG:04x}")
}

/// An IQN for `system_name`: the prefix, a colon and the name lower-cased, with characters
/// outside `a-z0-9.-` replaced by `-`.
pub fn iqn_for(system_name: &str) -> String {
    let name: String = system_name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = if name.is_empty() {
        "array".to_string()
    } else {
        name
    };
    format!("{IQN_PREFIX}:{name}")
}

/// The IQN stored at `path`, or (first start) `configured` or one made from `system_name`,
/// stored there.
pub fn load_or_create_target_name(
    path: &Path,
    configured: Option<&str>,
    system_name: &str,
) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => {
            let stored = s.trim().to_string();
            if configured.is_some_and(|c| c.to_lowercase() != stored) {
                tracing::warn!(stored = %stored, "iSCSI target name kept from the data directory; the configured one is ignored");
            }
            return Ok(stored);
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let name = configured
        .map(str::to_lowercase)
        .unwrap_or_else(|| iqn_for(system_name));
    write_atomic(path, format!("{name}\n").as_bytes())?;
    Ok(name)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
    name: String,
    secret: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecrets {
    #[serde(default)]
    initiators: Vec<RawCredential>,
    target: Option<RawCredential>,
}

/// Shortest CHAP secret accepted (RFC 7143 §12.1.3 asks for at least 96 bits).
pub const CHAP_SECRET_BYTES_MIN: usize = 12;

fn credential(raw: RawCredential) -> std::io::Result<ChapCredential> {
    if raw.secret.len() < CHAP_SECRET_BYTES_MIN || raw.name.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "CHAP secret of {} shorter than {CHAP_SECRET_BYTES_MIN} bytes",
                raw.name
            ),
        ));
    }
    Ok(ChapCredential {
        name: raw.name,
        secret: raw.secret.into_bytes(),
    })
}

/// Reads the CHAP secrets at `path`; a missing file means no CHAP.
pub fn load_auth(path: &Path) -> std::io::Result<Auth> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Auth::default()),
        Err(e) => return Err(e),
    };
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{} must be mode 0600", path.display()),
        ));
    }
    let raw: RawSecrets = serde_json::from_slice(&std::fs::read(path)?)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(Auth {
        initiators: raw
            .initiators
            .into_iter()
            .map(credential)
            .collect::<Result<_, _>>()?,
        target: raw.target.map(credential).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_name_carries_the_portal_group_tag_in_four_hex_digits() {
        assert_eq!(
            target_port_name("iqn.2026-01.org.cairn:t"),
            "iqn.2026-01.org.cairn:t,t,0x0001"
        );
    }

    #[test]
    fn iqn_is_made_once_and_kept() {
        assert_eq!(
            iqn_for("CAIRN-Node_1"),
            "iqn.2026-01.org.cairn:cairn-node-1"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("iscsi-target-name");
        let first = load_or_create_target_name(&path, None, "HostA").unwrap();
        assert_eq!(first, "iqn.2026-01.org.cairn:hosta");
        assert_eq!(
            load_or_create_target_name(&path, None, "HostB").unwrap(),
            first
        );
    }

    #[test]
    fn secrets_file_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chap.json");
        assert!(load_auth(&path).unwrap().initiators.is_empty());
        std::fs::write(
            &path,
            r#"{"initiators":[{"name":"h","secret":"0123456789ab"}]}"#,
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_auth(&path).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_auth(&path).unwrap().initiators[0].name, "h");
        std::fs::write(&path, r#"{"initiators":[{"name":"h","secret":"short"}]}"#).unwrap();
        assert!(load_auth(&path).is_err());
    }
}
