//! Persistent reservations (SPC-4 §5.13): registrations and the reservation of each logical
//! unit, PERSISTENT RESERVE IN and OUT, the conflict rules every other command is checked
//! against, and the unit attentions reservations cause; beside them the SPC-2 reservation of
//! RESERVE(6) and RELEASE(6), with SPC-4's rules where the two meet (§5.13.3).
//!
//! Invariants:
//! - An SPC-2 reservation and registrations never coexist: RESERVE(6) conflicts while any
//!   nexus is registered, and PERSISTENT RESERVE IN and OUT conflict while an SPC-2
//!   reservation is held (SPC-2 §7.11, §7.12). It is never kept on disk; the holder's session
//!   ending, a LOGICAL UNIT RESET and a target reset release it.
//! - State is per logical unit (per volume), shared by every session that opens it; an I_T nexus
//!   is the initiator port (initiator name and ISID) on the target's single port.
//! - A PERSISTENT RESERVE OUT is computed on a copy; when the last APTPL received for the unit is
//!   1 (or was 1 and becomes 0) the copy is written to the store file (write, fsync, rename)
//!   before it replaces the state, so a command that returns GOOD is on disk.
//! - Only a registered nexus with the matching key changes the reservation; at most
//!   [`REGISTRATIONS_MAX`] registrations per unit; unit attentions per nexus are bounded.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::limits::{PR_ATTENTION_NEXUSES_MAX, REGISTRATIONS_MAX, UNIT_ATTENTIONS_MAX};
use crate::lunmap::write_atomic;
use crate::pdu::be64;
use crate::scsi::sense::{self, Failure, Sense};
use crate::target::lock;

/// Reservation types (SPC-4 table 213).
pub mod kind {
    pub const WRITE_EXCLUSIVE: u8 = 1;
    pub const EXCLUSIVE_ACCESS: u8 = 3;
    pub const WRITE_EXCLUSIVE_REGISTRANTS_ONLY: u8 = 5;
    pub const EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: u8 = 6;
    pub const WRITE_EXCLUSIVE_ALL_REGISTRANTS: u8 = 7;
    pub const EXCLUSIVE_ACCESS_ALL_REGISTRANTS: u8 = 8;
}

/// PERSISTENT RESERVE OUT service actions.
pub mod action {
    pub const REGISTER: u8 = 0;
    pub const RESERVE: u8 = 1;
    pub const RELEASE: u8 = 2;
    pub const CLEAR: u8 = 3;
    pub const PREEMPT: u8 = 4;
    pub const PREEMPT_AND_ABORT: u8 = 5;
    pub const REGISTER_AND_IGNORE: u8 = 6;
}

/// PERSISTENT RESERVE IN service actions.
pub mod read {
    pub const READ_KEYS: u8 = 0;
    pub const READ_RESERVATION: u8 = 1;
    pub const REPORT_CAPABILITIES: u8 = 2;
    pub const READ_FULL_STATUS: u8 = 3;
}

/// The PERSISTENT RESERVE OUT parameter list length (no SPEC_I_PT).
pub const PROUT_PARAMETER_BYTES: u32 = 24;

pub const RESERVATIONS_PREEMPTED: Sense = Sense::new(sense::key::UNIT_ATTENTION, 0x2a, 0x03);
pub const RESERVATIONS_RELEASED: Sense = Sense::new(sense::key::UNIT_ATTENTION, 0x2a, 0x04);
pub const REGISTRATIONS_PREEMPTED: Sense = Sense::new(sense::key::UNIT_ATTENTION, 0x2a, 0x05);
pub const INVALID_RELEASE: Sense = Sense::new(sense::key::ILLEGAL_REQUEST, 0x26, 0x04);
pub const INSUFFICIENT_REGISTRATION_RESOURCES: Sense =
    Sense::new(sense::key::ILLEGAL_REQUEST, 0x55, 0x04);

fn valid_kind(k: u8) -> bool {
    matches!(k, 1 | 3 | 5 | 6 | 7 | 8)
}

fn all_registrants(k: u8) -> bool {
    k == kind::WRITE_EXCLUSIVE_ALL_REGISTRANTS || k == kind::EXCLUSIVE_ACCESS_ALL_REGISTRANTS
}

fn registrants_only(k: u8) -> bool {
    k == kind::WRITE_EXCLUSIVE_REGISTRANTS_ONLY || k == kind::EXCLUSIVE_ACCESS_REGISTRANTS_ONLY
}

/// An I_T nexus: the initiator port; the target has one port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Nexus {
    pub initiator: String,
    pub isid: [u8; 6],
}

impl Nexus {
    /// The iSCSI TransportID of the initiator port (SPC-4 §7.6.4.6, format 01b).
    fn transport_id(&self) -> Vec<u8> {
        let isid: String = self.isid.iter().map(|b| format!("{b:02x}")).collect();
        let mut name = format!("{},i,0x{isid}", self.initiator).into_bytes();
        name.push(0);
        name.resize(name.len().div_ceil(4) * 4, 0);
        let mut t = vec![0x40 | 0x05, 0];
        t.extend_from_slice(&(name.len() as u16).to_be_bytes());
        t.extend_from_slice(&name);
        t
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Registrant {
    nexus: Nexus,
    key: u64,
    all_ports: bool,
}

/// The reservation: its type and holder (`None` for the all-registrants types).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Hold {
    kind: u8,
    holder: Option<Nexus>,
}

/// What a power loss keeps when APTPL is 1.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Durable {
    generation: u32,
    registrants: Vec<Registrant>,
    hold: Option<Hold>,
}

/// How a command touches the medium, for the conflict rules (SPC-4 table 65, SBC-3 table 13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Allowed under every reservation, SPC-2 ones included (INQUIRY, REQUEST SENSE, REPORT
    /// SUPPORTED OPERATION CODES; RESERVE(6) and RELEASE(6), which apply their own rules).
    Always,
    /// PERSISTENT RESERVE IN and OUT: their own rules, but conflict with any SPC-2 reservation.
    Persistent,
    /// Allowed under every persistent reservation (TEST UNIT READY, READ CAPACITY, ...); a
    /// conflict under another nexus's SPC-2 reservation.
    Free,
    /// Reads: conflict under the exclusive-access types.
    Read,
    /// Writes: conflict under every type.
    Write,
}

/// The reservation state of one logical unit.
#[derive(Debug, Default)]
pub struct LuReservation {
    state: Durable,
    aptpl: bool,
    pending: HashMap<Nexus, VecDeque<Sense>>,
    /// The holder of the SPC-2 reservation (RESERVE(6)), if any.
    spc2: Option<Nexus>,
}

impl LuReservation {
    fn key_of(&self, n: &Nexus) -> Option<u64> {
        key_in(&self.state, n)
    }

    /// True if `n` may not run a command of `access` under the current reservations.
    pub fn conflicts(&self, n: &Nexus, access: Access) -> bool {
        if access == Access::Always {
            return false;
        }
        if let Some(holder) = &self.spc2 {
            debug_assert!(self.state.registrants.is_empty(), "SPC-2 and SPC-4 apart");
            return access == Access::Persistent || holder != n;
        }
        let Some(hold) = &self.state.hold else {
            return false;
        };
        if matches!(access, Access::Free | Access::Persistent) || holds(&self.state, n) {
            return false;
        }
        let registered = self.key_of(n).is_some();
        match hold.kind {
            kind::WRITE_EXCLUSIVE => access == Access::Write,
            kind::EXCLUSIVE_ACCESS => true,
            k if k == kind::WRITE_EXCLUSIVE_REGISTRANTS_ONLY
                || k == kind::WRITE_EXCLUSIVE_ALL_REGISTRANTS =>
            {
                access == Access::Write && !registered
            }
            _ => !registered,
        }
    }

    /// True if SPC-4 §5.13.3 makes RESERVE(6) and RELEASE(6) from `n` succeed without effect:
    /// `n` holds the persistent reservation, or is registered under a registrants-only or
    /// all-registrants one.
    fn spc2_exempt(&self, n: &Nexus) -> bool {
        self.state.hold.as_ref().is_some_and(|h| {
            holds(&self.state, n)
                || (self.key_of(n).is_some()
                    && (registrants_only(h.kind) || all_registrants(h.kind)))
        })
    }

    /// RESERVE(6) from `n` (SPC-2 §7.21 with SPC-4 §5.13.3): the unit is reserved for `n`, or it
    /// already was; a conflict if another nexus holds it or any nexus is registered.
    pub fn reserve6(&mut self, n: &Nexus) -> Result<Vec<u8>, Failure> {
        if self.spc2_exempt(n) {
            return Ok(Vec::new());
        }
        if !self.state.registrants.is_empty() || self.spc2.as_ref().is_some_and(|h| h != n) {
            return conflict();
        }
        self.spc2 = Some(n.clone());
        Ok(Vec::new())
    }

    /// RELEASE(6) from `n`: the holder's reservation is released; from any other nexus it is
    /// GOOD without effect (SPC-2 §7.19), unless a registration makes it a conflict.
    pub fn release6(&mut self, n: &Nexus) -> Result<Vec<u8>, Failure> {
        if self.spc2_exempt(n) {
            return Ok(Vec::new());
        }
        if !self.state.registrants.is_empty() {
            return conflict();
        }
        if self.spc2.as_ref() == Some(n) {
            self.spc2 = None;
        }
        Ok(Vec::new())
    }

    /// Releases the SPC-2 reservation (a reset of the unit), or only `n`'s (its nexus is lost).
    pub fn release_spc2(&mut self, n: Option<&Nexus>) {
        if n.is_none() || self.spc2.as_ref() == n {
            self.spc2 = None;
        }
    }

    /// The next unit attention reservations left for `n`.
    pub fn take_attention(&mut self, n: &Nexus) -> Option<Sense> {
        let q = self.pending.get_mut(n)?;
        let s = q.pop_front();
        if q.is_empty() {
            self.pending.remove(n);
        }
        s
    }

    fn notify(&mut self, n: Nexus, s: Sense) {
        if !self.pending.contains_key(&n) && self.pending.len() >= PR_ATTENTION_NEXUSES_MAX {
            return;
        }
        let q = self.pending.entry(n).or_default();
        if q.contains(&s) {
            return;
        }
        if q.len() == UNIT_ATTENTIONS_MAX {
            q.pop_front();
        }
        q.push_back(s);
    }

    /// PERSISTENT RESERVE IN data for service action `sa`.
    pub fn read(&self, sa: u8) -> Result<Vec<u8>, Failure> {
        if self.spc2.is_some() {
            return conflict();
        }
        let s = &self.state;
        let mut b = s.generation.to_be_bytes().to_vec();
        b.extend_from_slice(&[0; 4]);
        match sa {
            read::READ_KEYS => {
                for r in &s.registrants {
                    b.extend_from_slice(&r.key.to_be_bytes());
                }
            }
            read::READ_RESERVATION => {
                if let Some(h) = &s.hold {
                    let key = h.holder.as_ref().and_then(|n| key_in(s, n)).unwrap_or(0);
                    b.extend_from_slice(&key.to_be_bytes());
                    b.extend_from_slice(&[0, 0, 0, 0, 0, h.kind, 0, 0]);
                }
            }
            read::REPORT_CAPABILITIES => return Ok(self.capabilities()),
            read::READ_FULL_STATUS => self.full_status(&mut b),
            _ => return Err(Sense::invalid_cdb(1, Some(4)).into()),
        }
        let len = (b.len() - 8) as u32;
        b[4..8].copy_from_slice(&len.to_be_bytes());
        Ok(b)
    }

    fn capabilities(&self) -> Vec<u8> {
        // ATP_C (one port: all ports) and PTPL_C; TMV with the types served; PTPL_A.
        let mut b = vec![0, 8, 0x04 | 0x01, 0x80 | self.aptpl as u8, 0, 0, 0, 0];
        b[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02;
        b[5] = 0x01;
        b
    }

    fn full_status(&self, b: &mut Vec<u8>) {
        let s = &self.state;
        for r in &s.registrants {
            let holder = holds(s, &r.nexus) && s.hold.is_some();
            b.extend_from_slice(&r.key.to_be_bytes());
            b.extend_from_slice(&[0; 4]);
            b.push((r.all_ports as u8) << 1 | holder as u8);
            b.push(if holder {
                s.hold.as_ref().map_or(0, |h| h.kind)
            } else {
                0
            });
            b.extend_from_slice(&[0; 4]);
            // Relative target port 1 (VPD 0x83).
            b.extend_from_slice(&1u16.to_be_bytes());
            let t = r.nexus.transport_id();
            b.extend_from_slice(&(t.len() as u32).to_be_bytes());
            b.extend_from_slice(&t);
        }
    }
}

fn key_in(s: &Durable, n: &Nexus) -> Option<u64> {
    s.registrants.iter().find(|r| r.nexus == *n).map(|r| r.key)
}

/// True if `n` holds the reservation (any registrant, for the all-registrants types).
fn holds(s: &Durable, n: &Nexus) -> bool {
    match &s.hold {
        Some(h) if all_registrants(h.kind) => key_in(s, n).is_some(),
        Some(h) => h.holder.as_ref() == Some(n),
        None => false,
    }
}

/// A decoded PERSISTENT RESERVE OUT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prout {
    pub sa: u8,
    pub scope: u8,
    pub kind: u8,
}

struct Params {
    key: u64,
    sark: u64,
    all_ports: bool,
    aptpl: bool,
}

fn params(list: &[u8], param_len: usize) -> Result<Params, Sense> {
    if param_len != PROUT_PARAMETER_BYTES as usize || list.len() < param_len {
        return Err(sense::PARAMETER_LIST_LENGTH);
    }
    if list[20] & 0x08 != 0 {
        // SPEC_I_PT: SIP_C is 0.
        let mut s = Sense::invalid_parameter(20);
        if let Some(f) = &mut s.field {
            f.bit = Some(3);
        }
        return Err(s);
    }
    Ok(Params {
        key: be64(list, 0),
        sark: be64(list, 8),
        all_ports: list[20] & 0x04 != 0,
        aptpl: list[20] & 0x01 != 0,
    })
}

/// The result of a PERSISTENT RESERVE OUT on a copy of the state.
struct Change {
    state: Durable,
    aptpl: Option<bool>,
    notices: Vec<(Nexus, Sense)>,
}

fn conflict<T>() -> Result<T, Failure> {
    Err(Failure::Conflict)
}

fn check_scope_kind(c: &Prout) -> Result<(), Sense> {
    if c.scope != 0 || !valid_kind(c.kind) {
        return Err(Sense::invalid_cdb(2, None));
    }
    Ok(())
}

/// Computes a PERSISTENT RESERVE OUT from `n` against `old` (pure).
fn prout(old: &Durable, n: &Nexus, c: &Prout, p: &Params) -> Result<Change, Failure> {
    let mut ch = Change {
        state: old.clone(),
        aptpl: None,
        notices: Vec::new(),
    };
    let registered = key_in(old, n);
    if c.sa == action::REGISTER || c.sa == action::REGISTER_AND_IGNORE {
        register(&mut ch, n, registered, c.sa == action::REGISTER, p)?;
        return Ok(ch);
    }
    if c.sa == action::RESERVE || c.sa == action::RELEASE {
        check_scope_kind(c)?;
    }
    if registered != Some(p.key) {
        return conflict();
    }
    match c.sa {
        action::RESERVE => reserve(&mut ch, n, c.kind)?,
        action::RELEASE => release(&mut ch, n, c.kind)?,
        action::CLEAR => {
            for r in old.registrants.iter().filter(|r| r.nexus != *n) {
                ch.notices.push((r.nexus.clone(), RESERVATIONS_PREEMPTED));
            }
            ch.state.registrants.clear();
            ch.state.hold = None;
            ch.state.generation = ch.state.generation.wrapping_add(1);
        }
        _ => preempt(&mut ch, n, c, p.sark)?,
    }
    Ok(ch)
}

fn register(
    ch: &mut Change,
    n: &Nexus,
    registered: Option<u64>,
    check_key: bool,
    p: &Params,
) -> Result<(), Failure> {
    let s = &mut ch.state;
    match registered {
        None if check_key && p.key != 0 => return conflict(),
        None if p.sark == 0 => return Ok(()),
        None => {
            if s.registrants.len() >= REGISTRATIONS_MAX {
                return Err(INSUFFICIENT_REGISTRATION_RESOURCES.into());
            }
            s.registrants.push(Registrant {
                nexus: n.clone(),
                key: p.sark,
                all_ports: p.all_ports,
            });
        }
        Some(k) if check_key && k != p.key => return conflict(),
        Some(_) if p.sark == 0 => unregister(ch, n),
        Some(_) => {
            if let Some(r) = s.registrants.iter_mut().find(|r| r.nexus == *n) {
                r.key = p.sark;
            }
        }
    }
    ch.aptpl = Some(p.aptpl);
    ch.state.generation = ch.state.generation.wrapping_add(1);
    Ok(())
}

/// Removes `n`'s registration; a holder that leaves releases the reservation (for the
/// all-registrants types, the last registrant that leaves).
fn unregister(ch: &mut Change, n: &Nexus) {
    let was_holder = holds(&ch.state, n);
    ch.state.registrants.retain(|r| r.nexus != *n);
    let Some(h) = ch.state.hold.clone() else {
        return;
    };
    if !was_holder || (all_registrants(h.kind) && !ch.state.registrants.is_empty()) {
        return;
    }
    ch.state.hold = None;
    if registrants_only(h.kind) {
        for r in &ch.state.registrants {
            ch.notices.push((r.nexus.clone(), RESERVATIONS_RELEASED));
        }
    }
}

fn reserve(ch: &mut Change, n: &Nexus, k: u8) -> Result<(), Failure> {
    match &ch.state.hold {
        None => {
            ch.state.hold = Some(Hold {
                kind: k,
                holder: (!all_registrants(k)).then(|| n.clone()),
            });
            Ok(())
        }
        Some(h) if h.kind == k && holds(&ch.state, n) => Ok(()),
        Some(_) => conflict(),
    }
}

fn release(ch: &mut Change, n: &Nexus, k: u8) -> Result<(), Failure> {
    let Some(h) = ch.state.hold.clone() else {
        return Ok(());
    };
    if !holds(&ch.state, n) {
        return Ok(());
    }
    if h.kind != k {
        return Err(INVALID_RELEASE.into());
    }
    ch.state.hold = None;
    if registrants_only(h.kind) || all_registrants(h.kind) {
        for r in ch.state.registrants.iter().filter(|r| r.nexus != *n) {
            ch.notices.push((r.nexus.clone(), RESERVATIONS_RELEASED));
        }
    }
    Ok(())
}

/// Removes every registration with key `sark` but `n`'s; false if there was none.
fn remove_key(ch: &mut Change, n: &Nexus, sark: u64) -> bool {
    let before = ch.state.registrants.len();
    let mut removed = Vec::new();
    ch.state.registrants.retain(|r| {
        let out = r.key == sark && r.nexus != *n;
        if out {
            removed.push(r.nexus.clone());
        }
        !out
    });
    for r in removed {
        ch.notices.push((r, REGISTRATIONS_PREEMPTED));
    }
    ch.state.registrants.len() != before
}

fn preempt(ch: &mut Change, n: &Nexus, c: &Prout, sark: u64) -> Result<(), Failure> {
    let hold = ch.state.hold.clone();
    let holder_key = hold
        .as_ref()
        .and_then(|h| h.holder.as_ref())
        .and_then(|h| key_in(&ch.state, h));
    match hold {
        Some(h) if all_registrants(h.kind) && sark == 0 => {
            check_scope_kind(c)?;
            let others: Vec<Nexus> = ch
                .state
                .registrants
                .iter()
                .filter(|r| r.nexus != *n)
                .map(|r| r.nexus.clone())
                .collect();
            ch.state.registrants.retain(|r| r.nexus == *n);
            ch.notices
                .extend(others.into_iter().map(|o| (o, REGISTRATIONS_PREEMPTED)));
            take_over(ch, n, c.kind, h.kind);
        }
        Some(h) if holder_key == Some(sark) => {
            check_scope_kind(c)?;
            remove_key(ch, n, sark);
            take_over(ch, n, c.kind, h.kind);
        }
        _ if sark == 0 => return Err(Sense::invalid_parameter(8).into()),
        _ => {
            if !remove_key(ch, n, sark) {
                return conflict();
            }
        }
    }
    ch.state.generation = ch.state.generation.wrapping_add(1);
    Ok(())
}

/// `n` takes the reservation with type `k`; a changed type releases it for the registrants.
fn take_over(ch: &mut Change, n: &Nexus, k: u8, old_kind: u8) {
    ch.state.hold = Some(Hold {
        kind: k,
        holder: (!all_registrants(k)).then(|| n.clone()),
    });
    if k != old_kind {
        for r in ch.state.registrants.iter().filter(|r| r.nexus != *n) {
            ch.notices.push((r.nexus.clone(), RESERVATIONS_RELEASED));
        }
    }
}

/// The file the units with APTPL 1 are kept in.
#[derive(Default, Serialize, Deserialize)]
struct Saved {
    units: BTreeMap<String, Durable>,
}

fn bad_file(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

fn check_loaded(d: &Durable) -> std::io::Result<()> {
    if d.registrants.len() > REGISTRATIONS_MAX {
        return Err(bad_file("too many registrations"));
    }
    if let Some(h) = &d.hold {
        let holder_ok = match &h.holder {
            None => all_registrants(h.kind) && !d.registrants.is_empty(),
            Some(n) => !all_registrants(h.kind) && key_in(d, n).is_some(),
        };
        if !valid_kind(h.kind) || !holder_ok {
            return Err(bad_file("reservation without a registered holder"));
        }
    }
    Ok(())
}

/// Every unit's reservation state, and the store of those with APTPL 1.
pub struct Reservations {
    path: PathBuf,
    units: Mutex<HashMap<String, Arc<Mutex<LuReservation>>>>,
    saved: Mutex<Saved>,
}

impl Reservations {
    /// Loads the units kept at `path` (missing: none).
    pub fn load(path: &Path) -> std::io::Result<Reservations> {
        let saved: Saved = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(e) => return Err(e),
        };
        let mut units = HashMap::new();
        for (id, d) in &saved.units {
            check_loaded(d)?;
            let lu = LuReservation {
                state: d.clone(),
                aptpl: true,
                pending: HashMap::new(),
                spc2: None,
            };
            units.insert(id.clone(), Arc::new(Mutex::new(lu)));
        }
        Ok(Reservations {
            path: path.to_path_buf(),
            units: Mutex::new(units),
            saved: Mutex::new(saved),
        })
    }

    /// The state of the unit of volume `id` (hex).
    pub fn of(&self, id: &str) -> Arc<Mutex<LuReservation>> {
        lock(&self.units).entry(id.to_string()).or_default().clone()
    }

    /// Forgets every unit whose volume is not in `live` (hex ids): a deleted volume's
    /// registrations, reservation and unit attentions go, from memory and from the store, so
    /// nothing of them reaches a unit made later under the same id or LUN.
    pub fn retain(&self, live: &[String]) -> std::io::Result<()> {
        lock(&self.units).retain(|id, _| live.contains(id));
        let mut saved = lock(&self.saved);
        let before = saved.units.len();
        saved.units.retain(|id, _| live.contains(id));
        if saved.units.len() == before {
            return Ok(());
        }
        let bytes = serde_json::to_vec_pretty(&*saved).map_err(std::io::Error::other)?;
        write_atomic(&self.path, &bytes)
    }

    /// Releases the SPC-2 reservations `n` holds, on every unit (its I_T nexus is lost).
    pub fn nexus_lost(&self, n: &Nexus) {
        for unit in lock(&self.units).values() {
            lock(unit).release_spc2(Some(n));
        }
    }

    /// Releases every unit's SPC-2 reservation (a target reset).
    pub fn reset_all(&self) {
        for unit in lock(&self.units).values() {
            lock(unit).release_spc2(None);
        }
    }

    /// Runs a PERSISTENT RESERVE OUT from `n` on the unit `id`; returns the nexuses whose tasks
    /// on the unit are to be aborted (those a PREEMPT AND ABORT preempted).
    pub fn out(
        &self,
        id: &str,
        unit: &Mutex<LuReservation>,
        n: &Nexus,
        c: &Prout,
        list: &[u8],
        param_len: u32,
    ) -> Result<Vec<Nexus>, Failure> {
        let p = params(list, param_len as usize)?;
        let mut lu = lock(unit);
        if lu.spc2.is_some() {
            return conflict();
        }
        let ch = prout(&lu.state, n, c, &p)?;
        let aptpl = ch.aptpl.unwrap_or(lu.aptpl);
        if aptpl || lu.aptpl {
            self.persist(id, aptpl.then_some(&ch.state))?;
        }
        lu.state = ch.state;
        lu.aptpl = aptpl;
        let mut abort = Vec::new();
        for (who, s) in ch.notices {
            if c.sa == action::PREEMPT_AND_ABORT && s == REGISTRATIONS_PREEMPTED {
                abort.push(who.clone());
            }
            lu.notify(who, s);
        }
        Ok(abort)
    }

    /// Writes the store with unit `id` set to `state` (or removed); on failure nothing changes.
    fn persist(&self, id: &str, state: Option<&Durable>) -> Result<(), Failure> {
        let mut saved = lock(&self.saved);
        let before = saved.units.get(id).cloned();
        match state {
            Some(s) => saved.units.insert(id.to_string(), s.clone()),
            None => saved.units.remove(id),
        };
        let written = serde_json::to_vec_pretty(&*saved)
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_atomic(&self.path, &bytes));
        if let Err(e) = written {
            tracing::error!(path = %self.path.display(), error = %e, "reservations not saved");
            match before {
                Some(b) => saved.units.insert(id.to_string(), b),
                None => saved.units.remove(id),
            };
            return Err(sense::INTERNAL_TARGET_FAILURE.into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nexus(name: &str) -> Nexus {
        Nexus {
            initiator: name.to_string(),
            isid: [0x80, 0, 0, 0, 0, 1],
        }
    }

    fn list(key: u64, sark: u64, aptpl: bool) -> Vec<u8> {
        let mut b = vec![0u8; 24];
        b[0..8].copy_from_slice(&key.to_be_bytes());
        b[8..16].copy_from_slice(&sark.to_be_bytes());
        b[20] = aptpl as u8;
        b
    }

    fn out(r: &Reservations, n: &Nexus, sa: u8, k: u8, p: &[u8]) -> Result<Vec<Nexus>, Failure> {
        let unit = r.of("v");
        let c = Prout {
            sa,
            scope: 0,
            kind: k,
        };
        r.out("v", &unit, n, &c, p, p.len() as u32)
    }

    fn keys(r: &Reservations) -> Vec<u64> {
        let b = lock(&r.of("v")).read(read::READ_KEYS).unwrap();
        b[8..].chunks(8).map(|c| be64(c, 0)).collect()
    }

    #[test]
    fn register_reserve_conflict_and_preempt() {
        let dir = tempfile::tempdir().unwrap();
        let r = Reservations::load(&dir.path().join("pr.json")).unwrap();
        let (a, b, c) = (nexus("a"), nexus("b"), nexus("c"));
        assert_eq!(
            out(&r, &a, action::REGISTER, 0, &list(5, 1, false)),
            Err(Failure::Conflict),
            "an unregistered nexus must give key 0"
        );
        out(&r, &a, action::REGISTER, 0, &list(0, 0xa, false)).unwrap();
        out(&r, &b, action::REGISTER_AND_IGNORE, 0, &list(9, 0xb, false)).unwrap();
        assert_eq!(keys(&r), vec![0xa, 0xb]);
        let we = kind::WRITE_EXCLUSIVE;
        assert_eq!(
            out(&r, &c, action::RESERVE, we, &list(0, 0, false)),
            Err(Failure::Conflict)
        );
        out(&r, &a, action::RESERVE, we, &list(0xa, 0, false)).unwrap();
        assert_eq!(
            out(&r, &b, action::RESERVE, we, &list(0xb, 0, false)),
            Err(Failure::Conflict)
        );
        let unit = r.of("v");
        assert!(lock(&unit).conflicts(&b, Access::Write));
        assert!(!lock(&unit).conflicts(&b, Access::Read));
        assert!(!lock(&unit).conflicts(&a, Access::Write));
        // b preempts a: a's registration goes, b holds, a hears REGISTRATIONS PREEMPTED (and
        // with PREEMPT AND ABORT, a's tasks are to be aborted).
        assert_eq!(
            out(
                &r,
                &b,
                action::PREEMPT_AND_ABORT,
                we,
                &list(0xb, 0xa, false)
            ),
            Ok(vec![a.clone()])
        );
        assert_eq!(keys(&r), vec![0xb]);
        assert!(lock(&unit).conflicts(&a, Access::Write));
        assert_eq!(
            lock(&unit).take_attention(&a),
            Some(REGISTRATIONS_PREEMPTED)
        );
        assert_eq!(lock(&unit).take_attention(&a), None);
        let res = lock(&unit).read(read::READ_RESERVATION).unwrap();
        assert_eq!((be64(&res, 8), res[21]), (0xb, we));
        assert_eq!(
            out(
                &r,
                &b,
                action::RELEASE,
                kind::EXCLUSIVE_ACCESS,
                &list(0xb, 0, false)
            ),
            Err(Failure::Check(INVALID_RELEASE))
        );
        assert_eq!(
            out(&r, &b, action::PREEMPT, we, &list(0xb, 0, false)),
            Err(Failure::Check(Sense::invalid_parameter(8)))
        );
        assert_eq!(
            out(&r, &b, action::REGISTER, 0, &[0; 16]),
            Err(Failure::Check(sense::PARAMETER_LIST_LENGTH))
        );
    }

    #[test]
    fn spc2_reservations_keep_apart_from_persistent_ones() {
        let dir = tempfile::tempdir().unwrap();
        let r = Reservations::load(&dir.path().join("pr.json")).unwrap();
        let (a, b) = (nexus("a"), nexus("b"));
        let unit = r.of("v");
        lock(&unit).reserve6(&a).unwrap();
        lock(&unit).reserve6(&a).unwrap();
        assert_eq!(lock(&unit).reserve6(&b), Err(Failure::Conflict));
        assert!(lock(&unit).conflicts(&b, Access::Free));
        assert!(!lock(&unit).conflicts(&b, Access::Always));
        assert!(!lock(&unit).conflicts(&a, Access::Write));
        // PERSISTENT RESERVE IN and OUT conflict with it, even from the holder.
        assert!(lock(&unit).conflicts(&a, Access::Persistent));
        assert_eq!(
            out(&r, &a, action::REGISTER, 0, &list(0, 1, false)),
            Err(Failure::Conflict)
        );
        assert_eq!(lock(&unit).read(read::READ_KEYS), Err(Failure::Conflict));
        // RELEASE(6) from another nexus is GOOD and changes nothing.
        lock(&unit).release6(&b).unwrap();
        assert!(lock(&unit).conflicts(&b, Access::Read));
        // The holder's nexus is lost: released.
        r.nexus_lost(&a);
        assert!(!lock(&unit).conflicts(&b, Access::Write));
        lock(&unit).reserve6(&b).unwrap();
        r.reset_all();
        assert!(!lock(&unit).conflicts(&a, Access::Write));
        // A registration makes RESERVE(6) and RELEASE(6) conflict for the unregistered...
        out(&r, &a, action::REGISTER, 0, &list(0, 1, false)).unwrap();
        assert_eq!(lock(&unit).reserve6(&b), Err(Failure::Conflict));
        assert_eq!(lock(&unit).release6(&b), Err(Failure::Conflict));
        assert_eq!(lock(&unit).reserve6(&a), Err(Failure::Conflict));
        // ...while the persistent reservation holder's succeed without effect.
        let we = kind::WRITE_EXCLUSIVE;
        out(&r, &a, action::RESERVE, we, &list(1, 0, false)).unwrap();
        lock(&unit).reserve6(&a).unwrap();
        lock(&unit).release6(&a).unwrap();
        assert!(!lock(&unit).conflicts(&a, Access::Persistent));
        assert!(lock(&unit).conflicts(&b, Access::Write));
        assert!(!lock(&unit).conflicts(&b, Access::Read));
    }

    #[test]
    fn registrants_types_release_with_attentions_and_clear_preempts() {
        let dir = tempfile::tempdir().unwrap();
        let r = Reservations::load(&dir.path().join("pr.json")).unwrap();
        let (a, b, c) = (nexus("a"), nexus("b"), nexus("c"));
        for (n, k) in [(&a, 1), (&b, 2)] {
            out(&r, n, action::REGISTER, 0, &list(0, k, false)).unwrap();
        }
        let ro = kind::EXCLUSIVE_ACCESS_REGISTRANTS_ONLY;
        out(&r, &a, action::RESERVE, ro, &list(1, 0, false)).unwrap();
        let unit = r.of("v");
        assert!(!lock(&unit).conflicts(&b, Access::Read));
        assert!(lock(&unit).conflicts(&c, Access::Read));
        // The holder unregisters: released, the other registrant is told.
        out(&r, &a, action::REGISTER, 0, &list(1, 0, false)).unwrap();
        assert!(!lock(&unit).conflicts(&c, Access::Write));
        assert_eq!(lock(&unit).take_attention(&b), Some(RESERVATIONS_RELEASED));
        let ar = kind::WRITE_EXCLUSIVE_ALL_REGISTRANTS;
        out(&r, &a, action::REGISTER, 0, &list(0, 1, false)).unwrap();
        out(&r, &b, action::RESERVE, ar, &list(2, 0, false)).unwrap();
        // Every registrant holds an all-registrants reservation; the last one leaving ends it.
        out(&r, &b, action::REGISTER, 0, &list(2, 0, false)).unwrap();
        assert!(lock(&unit).conflicts(&c, Access::Write));
        assert!(!lock(&unit).conflicts(&a, Access::Write));
        out(&r, &a, action::CLEAR, 0, &list(1, 0, false)).unwrap();
        assert!(keys(&r).is_empty());
        assert!(!lock(&unit).conflicts(&c, Access::Write));
        let caps = lock(&unit).read(read::REPORT_CAPABILITIES).unwrap();
        assert_eq!((caps[1], caps[2] & 1, caps[3] & 1), (8, 1, 0));
    }

    #[test]
    fn only_aptpl_state_survives_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pr.json");
        let r = Reservations::load(&path).unwrap();
        let a = nexus("a");
        out(&r, &a, action::REGISTER, 0, &list(0, 7, true)).unwrap();
        out(
            &r,
            &a,
            action::RESERVE,
            kind::EXCLUSIVE_ACCESS,
            &list(7, 0, false),
        )
        .unwrap();
        let again = Reservations::load(&path).unwrap();
        assert_eq!(keys(&again), vec![7]);
        assert!(lock(&again.of("v")).conflicts(&nexus("b"), Access::Read));
        let caps = lock(&again.of("v"))
            .read(read::REPORT_CAPABILITIES)
            .unwrap();
        assert_eq!(caps[3] & 1, 1, "PTPL_A");
        // An APTPL of 0 takes the unit out of the file.
        out(&again, &a, action::REGISTER, 0, &list(7, 8, false)).unwrap();
        assert!(keys(&Reservations::load(&path).unwrap()).is_empty());
        std::fs::write(
            &path,
            br#"{"units":{"v":{"generation":1,"registrants":[],"hold":{"kind":3,"holder":null}}}}"#,
        )
        .unwrap();
        assert!(
            Reservations::load(&path).is_err(),
            "a holder must be registered"
        );
    }

    #[test]
    fn a_deleted_unit_leaves_no_reservation_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pr.json");
        let r = Reservations::load(&path).unwrap();
        let a = nexus("a");
        out(&r, &a, action::REGISTER, 0, &list(0, 7, true)).unwrap();
        out(
            &r,
            &a,
            action::RESERVE,
            kind::WRITE_EXCLUSIVE,
            &list(7, 0, true),
        )
        .unwrap();
        let other = r.of("w");
        lock(&other).reserve6(&a).unwrap();
        // Unit "w" is still there: it keeps its state; "v" is gone.
        r.retain(&["w".to_string()]).unwrap();
        assert!(
            keys(&r).is_empty(),
            "a new unit under the old id starts clean"
        );
        assert!(!lock(&r.of("v")).conflicts(&nexus("b"), Access::Write));
        assert!(lock(&r.of("w")).conflicts(&nexus("b"), Access::Write));
        let again = Reservations::load(&path).unwrap();
        assert!(keys(&again).is_empty(), "the APTPL entry left the file");
        assert!(!lock(&again.of("v")).conflicts(&nexus("b"), Access::Write));
    }
}
