//! The SCSI NAA identity of a volume, derived from its 128-bit id.
//!
//! The designator is NAA IEEE Registered Extended (type 6): the id's 16 bytes with the first
//! nibble replaced by 6. Its text form (32 upper-case hex digits) is what SMI-S reports as
//! `StorageVolume.Name` and `OtherIdentifyingInfo`; its bytes are the designator of a SCSI Device
//! Identification VPD page (0x83, designator type 3, NAA). Both come from here, so a volume has one
//! identity over SMI-S, iSCSI and any later protocol.
//!
//! Invariant: stable for the life of the volume (ids are never reused); unique because engine ids
//! differ in their last 8 bytes within a pool and in their pool part across pools.

/// Length of the NAA type 6 designator.
pub const NAA_DESIGNATOR_BYTES: usize = 16;

/// The NAA type 6 designator of a volume id, as a VPD 0x83 designator carries it.
pub fn naa_designator(id: &[u8; 16]) -> [u8; NAA_DESIGNATOR_BYTES] {
    let mut d = *id;
    d[0] = 0x60 | (d[0] & 0x0f);
    d
}

/// The NAA type 6 identity of a volume id as text: 32 upper-case hex digits starting with 6.
pub fn naa_name(id: &[u8; 16]) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(2 * NAA_DESIGNATOR_BYTES);
    for b in naa_designator(id) {
        // Writing into a String cannot fail.
        let _ = write!(text, "{b:02X}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The form SMI-S reported before the derivation moved here: the engine id's text, upper
    /// case, with its first digit replaced by 6.
    fn smis_form(id: &[u8; 16]) -> String {
        let hex = cairn_engine::VolumeId(*id).to_string().to_ascii_uppercase();
        format!("6{}", &hex[1..])
    }

    #[test]
    fn name_is_the_smis_form_and_the_designator_in_hex() {
        let ids = [[0xab; 16], [0u8; 16], [0xff; 16], {
            let mut id = [0u8; 16];
            for (i, b) in id.iter_mut().enumerate() {
                *b = (i as u8).wrapping_mul(37).wrapping_add(0x91);
            }
            id
        }];
        for id in ids {
            let name = naa_name(&id);
            assert_eq!(name, smis_form(&id));
            assert_eq!(name.len(), 32);
            assert!(name.starts_with('6'));
            let d = naa_designator(&id);
            assert_eq!(d[0] >> 4, 6, "NAA type 6");
            assert_eq!(d[0] & 0x0f, id[0] & 0x0f);
            assert_eq!(d[1..], id[1..]);
        }
    }

    #[test]
    fn different_ids_have_different_identities() {
        let mut a = [0x12; 16];
        let b = a;
        a[15] ^= 1;
        assert_ne!(naa_designator(&a), naa_designator(&b));
        assert_ne!(naa_name(&a), naa_name(&b));
    }
}
